//! Fuzzing support for natter: a model shell that drives the chat core and checks it.

pub mod driver;
