//! Random event sequences over several connections (connects from a few addresses, input from
//! a grammar of commands, names, garbage and telnet bytes, disconnects, a fake clock, partial
//! writes, stalled peers, shutdown, restarts from a snapshot), with every check of the model
//! shell after each step.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_fuzz::driver::{Shell, config_from, decode};

fuzz_target!(|data: &[u8]| {
    let (choice, ops) = decode(data);
    let mut shell = Shell::new(config_from(choice));
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = shell.apply(op) {
            panic!("after op {i} {op:?}: {e}");
        }
    }
    if let Err(e) = shell.finish() {
        panic!("at the end: {e}");
    }
});
