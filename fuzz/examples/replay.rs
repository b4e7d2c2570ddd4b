//! Replays a `state_machine` input without the fuzzer and prints each step and what every
//! connection received: `cargo run --example replay -- artifacts/state_machine/crash-...`.

use natter_fuzz::driver::{Shell, config_from, decode};

fn main() {
    let path = std::env::args().nth(1).expect("usage: replay FILE");
    let data = std::fs::read(&path).expect("read the input");
    let (choice, ops) = decode(&data);
    let settings = config_from(choice);
    println!("{settings:?}");
    let mut shell = Shell::new(settings);
    let mut result = Ok(());
    for (i, op) in ops.iter().enumerate() {
        println!("op {i}: {op:?}");
        result = shell.apply(op);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = shell.finish();
    }
    for c in shell.sim.conns() {
        println!(
            "{:?} open={} closed={:?}: {:?}",
            c.id,
            c.open,
            c.closed,
            String::from_utf8_lossy(&c.received)
        );
    }
    println!("{result:?}");
}
