//! Unit tests of the chat state machine, driven with bytes and a fake clock.
