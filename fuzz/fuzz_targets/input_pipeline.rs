//! Arbitrary bytes through one logged-in connection, with a second member of the room
//! listening. The first byte picks the configuration (flood control, line limit) and how the
//! rest is split into reads. Checks: the invariants after every step; every line the other
//! member receives is valid UTF-8, ends in CR LF and holds no control character, escape or
//! bidi control; and the output is the same whether the bytes come in one read or many.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter::proto::chat::Settings;
use natter_fuzz::driver::run_pair;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let config = Settings {
        rate: [0, 0, 3, 50][first as usize & 3],
        burst: 2,
        max_line: [512, 16, 64, 1][(first as usize >> 2) & 3],
        max_per_ip: 0,
        ..Settings::default()
    };
    // Split points from a tiny generator seeded by the first byte.
    let mut reads: Vec<&[u8]> = Vec::new();
    let mut seed = u32::from(first) | 1;
    let mut at = 0;
    while at < rest.len() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let len = if first & 0x80 != 0 {
            1
        } else {
            1 + seed as usize % 24
        };
        let end = (at + len).min(rest.len());
        reads.push(&rest[at..end]);
        at = end;
    }
    let whole = match run_pair(config.clone(), &[rest]) {
        Ok(out) => out,
        Err(e) => panic!("one read: {e}"),
    };
    let split = match run_pair(config, &reads) {
        Ok(out) => out,
        Err(e) => panic!("{} reads: {e}", reads.len()),
    };
    assert_eq!(whole.1, split.1, "the other member got different bytes");
    assert_eq!(whole.0, split.0, "the sender got different bytes");
});
