//! Bytes in, events out: telnet decoding, line assembly and text cleaning. Each is a small state
//! value or a pure function, kept per connection by the chat core's input pipeline.

pub mod line;
pub mod sanitize;
pub mod telnet;
