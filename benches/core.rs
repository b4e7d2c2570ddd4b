//! Micro-benchmarks of the pure core ([`natter::proto::chat::Chat`]): no sockets, no clock.
//!
//! Each iteration hands bytes to the core through the model shell ([`natter::sim::Sim`], with
//! its checks off and received bytes only counted), which drains exactly as the server does:
//! one gathered write per dirty connection, every byte taken. So state never grows between
//! iterations and the figures include the bookkeeping a real loop turn pays.
//!
//! - `fanout_*`: one member of a room of N speaks; counted per delivered line, so divan's
//!   `item/s` column is deliveries per second (ns per delivery = 1e9 / that).
//! - `input_*`: telnet decoding, line assembly, cleaning and parsing for one sender; counted in
//!   bytes, so the throughput column is MB/s of client input.
//! - `churn`: one connection's whole life (connect, nickname, `/quit`, its close) per op.
//! - `cluster_lines`: cluster mode over the model log (`natter::sim::cluster`): a user alone in
//!   its room sends 16 lines in one read; its node publishes them as one entry, and the sender's
//!   node and a second node decode and apply each line (to nobody: the cost every node pays
//!   for every line of the chat). Counted per line per node.
//!
//! Run with `cargo bench --bench core`; filter with e.g. `cargo bench --bench core -- fanout`.

use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use natter::proto::chat::{ConnId, Settings};
use natter::sim::Sim;
use natter::sim::cluster::SimCluster;

fn main() {
    divan::main();
}

/// Room sizes for the fan-out benchmarks.
const MEMBERS: &[usize] = &[10, 1_000, 10_000];

/// The chat line every fan-out iteration sends (35 bytes in, 40 bytes out per recipient).
const CHAT_LINE: &[u8] = b"hello everyone, this is a message\r\n";

/// Lines per read in the coalesced fan-out variant.
const COALESCED: usize = 16;

/// A plain ASCII chat line of 60 bytes on the wire.
const PLAIN_LINE: &[u8] = b"the quick brown fox jumps over the lazy dog, now and again\r\n";

/// A chat line of 77 bytes with telnet commands (two option offers the core must refuse, a
/// NAWS subnegotiation), ANSI colour and title escapes, UTF-8 text and a tab mixed in.
const MIXED_LINE: &[u8] = b"hi \xff\xfb\x1fthere \x1b[1;31mred\x1b[0m caf\xc3\xa9 \
\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0tab\there\xff\xfd\x01 \x1b]0;title\x07 done, bye!\r\n";

/// Size of the large-read inputs: whole lines up to this many bytes.
const BIG_READ: usize = 64 * 1024;

// ---- fan-out ----

/// One member of a room of `members` sends one chat line; every other member gets it.
#[divan::bench(args = MEMBERS, sample_count = 100)]
fn fanout_1_line(bencher: Bencher, members: usize) {
    fanout(bencher, members, CHAT_LINE.to_vec(), 1);
}

/// As [`fanout_1_line`] but the read holds 16 lines, so each recipient's 16 deliveries are
/// written once (one coalesced turn). Counted per line delivered.
#[divan::bench(args = MEMBERS, sample_count = 100)]
fn fanout_16_lines(bencher: Bencher, members: usize) {
    fanout(bencher, members, CHAT_LINE.repeat(COALESCED), COALESCED);
}

fn fanout(bencher: Bencher, members: usize, input: Vec<u8>, lines: usize) {
    let mut room = Room::new(members);
    let sender = room.ids[0];
    // Check once that the benchmark measures what it claims: every other member receives every
    // line, nobody is dropped.
    room.sim.keep_received = true;
    room.say(sender, &input);
    let text = std::str::from_utf8(CHAT_LINE).unwrap_or_default();
    let expected = format!("<u0> {text}").repeat(lines);
    for &id in &room.ids[1..] {
        assert_eq!(room.sim.take(id), expected.as_bytes());
    }
    room.sim.keep_received = false;
    let per_turn = ((members - 1) * expected.len()) as u64;

    bencher
        .counter(ItemsCount::new((members - 1) * lines))
        .bench_local(|| room.say(sender, &input));
    // Still every member, still every byte: nobody was dropped as too slow along the way.
    assert_eq!(room.say(sender, &input), per_turn);
    assert_eq!(room.sim.chat().connection_count(), members);
}

// ---- input handling ----

/// The inputs of the input benchmarks, by name.
const INPUTS: &[&str] = &[
    "line_plain",
    "line_mixed",
    "read_64k_plain",
    "read_64k_mixed",
];

fn input_bytes(name: &str) -> Vec<u8> {
    match name {
        "line_plain" => PLAIN_LINE.to_vec(),
        "line_mixed" => MIXED_LINE.to_vec(),
        "read_64k_plain" => whole_lines(PLAIN_LINE, BIG_READ),
        "read_64k_mixed" => whole_lines(MIXED_LINE, BIG_READ),
        _ => unreachable!("unknown input {name}"),
    }
}

/// `line` repeated as often as it fits in `size` bytes.
fn whole_lines(line: &[u8], size: usize) -> Vec<u8> {
    line.repeat(size / line.len())
}

/// A logged-in user alone in its room sends the input: nothing is fanned out, so this is
/// decoding, line assembly, cleaning, parsing and rendering only.
#[divan::bench(args = INPUTS, sample_count = 100)]
fn input_alone(bencher: Bencher, input: &str) {
    input_bench(bencher, 1, &input_bytes(input));
}

/// As [`input_alone`] with one other member, who receives every line.
#[divan::bench(args = INPUTS, sample_count = 100)]
fn input_pair(bencher: Bencher, input: &str) {
    input_bench(bencher, 2, &input_bytes(input));
}

fn input_bench(bencher: Bencher, members: usize, input: &[u8]) {
    let mut room = Room::new(members);
    let sender = room.ids[0];
    let per_turn = room.say(sender, input);

    bencher
        .counter(BytesCount::new(input.len()))
        .bench_local(|| room.say(sender, input));
    assert_eq!(
        room.say(sender, input),
        per_turn,
        "every turn writes the same bytes"
    );
    assert_eq!(room.sim.chat().connection_count(), members);
}

// ---- connection churn ----

/// One connection's life beside `others` logged-in members of the default room: connect,
/// choose a nickname, `/quit`, and its close. Joins and leaves are announced up to 1,000
/// members (the default `quiet_above`), so 100 includes two broadcasts and 10,000 none.
#[divan::bench(args = [0, 100, 10_000], sample_count = 100)]
fn churn(bencher: Bencher, others: usize) {
    let mut room = Room::new(others);

    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        let id = room.connect();
        room.say(id, b"churn\r\n");
        room.say(id, b"/quit\r\n")
    });
    assert_eq!(room.sim.chat().connection_count(), others);
}

// ---- cluster mode ----

/// What every node pays for every line of the chat: decoding and applying it.
#[divan::bench(sample_count = 100)]
fn cluster_lines(bencher: Bencher) {
    let settings = Settings {
        rate: 0,
        max_per_ip: 0,
        ..Settings::default()
    };
    let mut cluster = match SimCluster::new(2, settings) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    cluster.compare = false;
    for node in &mut cluster.nodes {
        node.sim.checks = false;
        node.sim.keep_received = false;
    }
    let step = |c: &mut SimCluster, input: &[u8]| {
        if let Err(e) = c.nodes[0]
            .sim
            .input(
                ConnId {
                    index: 0,
                    generation: 1001,
                },
                input,
            )
            .and_then(|()| c.settle())
        {
            panic!("{e}");
        }
    };
    if let Err(e) = cluster.nodes[0].sim.connect_loopback() {
        panic!("{e}");
    }
    step(&mut cluster, b"alone\r\n");
    assert_eq!(cluster.nodes[1].sim.chat().user_count(), 1);
    let input = CHAT_LINE.repeat(COALESCED);
    let entries = cluster.log.len();
    step(&mut cluster, &input);
    assert_eq!(cluster.log.len(), entries + 1, "one entry per read");
    bencher
        .counter(ItemsCount::new(2 * COALESCED))
        .bench_local(|| step(&mut cluster, &input));
}

// ---- harness ----

/// A core with `ids.len()` logged-in members (nicknames `u0`, `u1`, ...) of the default room,
/// in the model shell, all output already drained.
struct Room {
    sim: Sim,
    ids: Vec<ConnId>,
}

impl Room {
    fn new(members: usize) -> Room {
        let mut sim = Sim::new(Settings {
            rate: 0,
            max_per_ip: 0,
            quiet_above: 1000,
            max_clients: 1 << 20,
            ..Settings::default()
        });
        sim.checks = false;
        sim.keep_received = false;
        let mut room = Room {
            sim,
            ids: Vec::with_capacity(members),
        };
        for i in 0..members {
            let id = room.connect();
            room.say(id, format!("u{i}\r\n").as_bytes());
            room.ids.push(id);
        }
        assert_eq!(room.sim.chat().connection_count(), members);
        room
    }

    fn connect(&mut self) -> ConnId {
        match self.sim.connect_loopback() {
            Ok(id) => id,
            Err(e) => panic!("{e}"),
        }
    }

    /// `id` sends `input`; the model shell drains as the server would. Returns the bytes
    /// written to everyone, so the work cannot be optimised away.
    fn say(&mut self, id: ConnId, input: &[u8]) -> u64 {
        let before: u64 = self.written();
        if let Err(e) = self.sim.input(id, input) {
            panic!("{e}");
        }
        self.written() - before
    }

    fn written(&self) -> u64 {
        self.sim.bytes_written
    }
}
