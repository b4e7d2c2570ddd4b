//! Property tests of the pure chat core, driven through the model shell (`natter::sim`) with a
//! fake clock, using the fuzz targets' grammar.
//!
//! The model shell follows the drain rule and checks after every step `check_invariants`, that
//! nothing is written or resumed for a connection after its close, that no timer spins and no
//! held connection is left without a deadline, and at the end, once everyone has left, that no
//! connection, room, address count or timer is left behind and that every byte sent is clean
//! text. The snapshot property checks that exporting and importing the core at a turn boundary
//! changes no byte anyone receives.

#[path = "../fuzz/src/driver.rs"]
mod driver;

use driver::{Op, Received, Shell, config_from, decode, grammar_piece, run_pair};
use natter::proto::chat::Settings;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        // PROPTEST_CASES overrides the default here too, for longer runs by hand.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(n),
        // Failures are reported with their shrunk input; nothing is written next to the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One piece of input from the grammar (commands, names, rooms, garbage, telnet bytes).
fn piece() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(k, a, b)| grammar_piece(k, a, b))
}

/// A byte stream of grammar pieces with some raw bytes mixed in.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![
            6 => piece(),
            1 => vec(any::<u8>(), 0..8),
        ],
        1..40,
    )
    .prop_map(|v| v.concat())
}

fn pair_config(flood: bool, max_line: usize) -> Settings {
    Settings {
        rate: if flood { 3 } else { 0 },
        burst: 2,
        max_line,
        max_per_ip: 0,
        ..Settings::default()
    }
}

/// Splits `input` at the points `cuts` pick.
fn split<'a>(input: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut reads = Vec::new();
    let mut from = 0;
    for p in points.into_iter().chain([input.len()]) {
        reads.push(&input[from..p]);
        from = p;
    }
    reads
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => any::<u8>().prop_map(|peer| Op::Connect { peer }),
        60 => (any::<u8>(), vec(piece(), 1..4))
            .prop_map(|(conn, pieces)| Op::Input { conn, bytes: pieces.concat() }),
        8 => (any::<u8>(), vec(any::<u8>(), 0..32)).prop_map(|(conn, bytes)| Op::Input { conn, bytes }),
        8 => any::<u8>().prop_map(|conn| Op::Disconnect { conn }),
        20 => prop_oneof![0..20u32, 0..3_000u32, 0..20_000u32].prop_map(|ms| Op::Advance { ms }),
        20 => Just(Op::Drain),
        6 => (any::<u8>(), 0..200u16).prop_map(|(conn, n)| Op::PartialWrite { conn, n }),
        6 => (any::<u8>(), any::<bool>()).prop_map(|(conn, on)| Op::Stall { conn, on }),
        1 => Just(Op::Shutdown),
        2 => Just(Op::Restart),
    ]
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn run_ops(choice: [u8; 4], ops: &[Op]) -> Result<(), TestCaseError> {
    let mut shell = Shell::new(config_from(choice));
    for (i, op) in ops.iter().enumerate() {
        shell
            .apply(op)
            .map_err(|e| fail(format!("after op {i} {op:?}: {e}")))?;
    }
    shell.finish().map_err(|e| fail(format!("at the end: {e}")))
}

/// What every connection had received after each op, then in full at the end, with the close
/// reasons: two runs that agree on this gave the same bytes at the same moments.
type Trace = (Vec<Vec<usize>>, Vec<Received>);

/// Runs `ops`, with every `Restart` either carried out or replaced by the drain it begins with.
fn trace(choice: [u8; 4], ops: &[Op], restart: bool) -> Result<Trace, TestCaseError> {
    let mut shell = Shell::new(config_from(choice));
    let mut steps = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let op = match op {
            Op::Restart if !restart => &Op::Drain,
            op => op,
        };
        shell
            .apply(op)
            .map_err(|e| fail(format!("after op {i} {op:?}: {e}")))?;
        steps.push(shell.sim.conns().iter().map(|c| c.received.len()).collect());
    }
    Ok((steps, shell.outcome().map_err(fail)?))
}

proptest! {
    #![proptest_config(cases(256))]

    /// (a) Any split of a byte stream into reads gives the same bytes to the sender and to
    /// the other member of the room, with or without flood control.
    #[test]
    fn any_split_into_reads_gives_the_same_output(
        input in stream(),
        cuts in vec(any::<Index>(), 0..24),
        flood in any::<bool>(),
        max_line in prop::sample::select(vec![512usize, 16, 3]),
    ) {
        let config = pair_config(flood, max_line);
        let whole = run_pair(config.clone(), &[&input]).map_err(fail)?;
        let reads = split(&input, &cuts);
        let parts = run_pair(config, &reads).map_err(fail)?;
        prop_assert_eq!(&whole.1, &parts.1, "the other member's bytes differ");
        prop_assert_eq!(&whole.0, &parts.0, "the sender's bytes differ");
    }

    /// (a) The extreme split: one byte per read.
    #[test]
    fn one_byte_reads_give_the_same_output(input in stream(), flood in any::<bool>()) {
        let config = pair_config(flood, 32);
        let whole = run_pair(config.clone(), &[&input]).map_err(fail)?;
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let parts = run_pair(config, &bytes).map_err(fail)?;
        prop_assert_eq!(whole, parts);
    }

    /// (b) Random event sequences keep every invariant, and nothing is left once everyone
    /// has gone.
    #[test]
    fn random_event_sequences_keep_the_invariants(
        choice in any::<[u8; 4]>(),
        ops in vec(op(), 1..150),
    ) {
        run_ops(choice, &ops)?;
    }

    /// (c) A random run with an export and import of the whole core at a random turn gives
    /// every connection byte-identical output to the same run without one.
    #[test]
    fn a_restart_from_a_snapshot_changes_no_byte(
        choice in any::<[u8; 4]>(),
        mut ops in vec(op(), 1..150),
        at in any::<Index>(),
    ) {
        ops.retain(|op| !matches!(op, Op::Restart));
        let at = at.index(ops.len() + 1);
        ops.insert(at, Op::Restart);
        let (steps_with, with) = trace(choice, &ops, true)?;
        let (steps_without, without) = trace(choice, &ops, false)?;
        for (i, (a, b)) in steps_with.iter().zip(&steps_without).enumerate() {
            prop_assert_eq!(a, b, "received lengths differ after op {} (restart at {})", i, at);
        }
        prop_assert_eq!(with, without, "final output differs (restart at {})", at);
    }

    /// (b) The same, with the fuzz target's decoding of raw bytes into events.
    #[test]
    fn decoded_byte_sequences_keep_the_invariants(data in vec(any::<u8>(), 0..800)) {
        let (choice, ops) = decode(&data);
        run_ops(choice, &ops)?;
    }
}

/// A busy room under flood control, quiet rooms, short lines, small send queues and both
/// timeouts: the hand-written sequence the random ones grow from.
#[test]
fn a_busy_scripted_sequence_keeps_the_invariants() {
    let mut ops = Vec::new();
    for peer in 0..10 {
        ops.push(Op::Connect { peer });
    }
    for round in 0..30u8 {
        for conn in 0..10u8 {
            ops.push(Op::Input {
                conn,
                bytes: grammar_piece(round.wrapping_mul(7).wrapping_add(conn), conn, round),
            });
        }
        ops.push(Op::Advance {
            ms: 137 * u32::from(round),
        });
        if round % 3 == 0 {
            ops.push(Op::Drain);
        }
        if round == 10 {
            ops.push(Op::Stall { conn: 3, on: true });
        }
    }
    for b3 in [0u8, 0x0d] {
        for b2 in [0u8, 0x15, 0x2a, 0x3f] {
            run_ops([0x06, 0x0b, b2, b3], &ops).unwrap();
        }
    }
}
