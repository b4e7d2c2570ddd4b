//! The core in cluster mode through the model shell of a cluster (`natter::sim::cluster`): K
//! cores and one in-memory log that delivers every entry to every node in one order. After
//! every entry the nodes' directories (with the log's shared state) are compared byte for
//! byte; the scenarios check what users see, exactly.

#[path = "../fuzz/src/driver.rs"]
mod driver;

use driver::grammar_piece;
use natter::proto::chat::{CloseReason, ConnId, Settings};
use natter::sim::Sim;
use natter::sim::cluster::SimCluster;
use proptest::collection::vec;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr};

fn settings() -> Settings {
    Settings {
        rate: 0,
        max_per_ip: 0,
        ..Settings::default()
    }
}

/// A cluster with panicking helpers.
struct Cluster {
    c: SimCluster,
}

impl Cluster {
    fn new(k: usize) -> Cluster {
        Cluster {
            c: SimCluster::new(k, settings()).unwrap(),
        }
    }

    fn connect(&mut self, node: usize) -> ConnId {
        let id = self.c.sim(node).connect_loopback().unwrap();
        self.c.settle().unwrap();
        id
    }

    fn send(&mut self, node: usize, id: ConnId, line: &str) {
        self.c
            .sim(node)
            .input(id, format!("{line}\r\n").as_bytes())
            .unwrap();
        self.c.settle().unwrap();
    }

    fn text(&mut self, node: usize, id: ConnId) -> String {
        String::from_utf8(self.c.sim(node).take(id)).unwrap()
    }

    /// Connects to `node` and logs in as `nick`; clears the banner and welcome.
    fn login(&mut self, node: usize, nick: &str) -> ConnId {
        let id = self.connect(node);
        self.send(node, id, nick);
        let got = self.text(node, id);
        assert!(
            got.ends_with(&format!("*** Welcome, {nick}! You are in #lobby.\r\n")),
            "{got:?}"
        );
        id
    }

    fn advance(&mut self, ms: u64) {
        self.c.advance(ms).unwrap();
    }
}

fn lines(ls: &[&str]) -> String {
    ls.iter().map(|l| format!("{l}\r\n")).collect()
}

#[test]
fn users_on_different_nodes_chat_as_on_one_server() {
    let mut c = Cluster::new(3);
    let alice = c.login(0, "alice");
    let bob = c.login(1, "bob");
    assert_eq!(c.text(0, alice), lines(&["*** bob joined #lobby"]));
    c.send(1, bob, "hello");
    assert_eq!(c.text(0, alice), lines(&["<bob> hello"]));
    c.send(0, alice, "/me waves");
    assert_eq!(c.text(1, bob), lines(&["* alice waves"]));
    c.send(0, alice, "/w bob psst");
    assert_eq!(c.text(0, alice), lines(&["-> *bob* psst"]));
    assert_eq!(c.text(1, bob), lines(&["*alice* psst"]));
    c.send(1, bob, "/who");
    assert_eq!(
        c.text(1, bob),
        lines(&["*** 2 users in #lobby: alice, bob"])
    );

    // A nickname is unique across nodes, in any case.
    let carol = c.connect(2);
    c.text(2, carol);
    c.send(2, carol, "ALICE");
    assert_eq!(
        c.text(2, carol),
        "!!! The nickname ALICE is already taken.\r\nYour nickname: "
    );
    c.send(2, carol, "carol");
    c.text(2, carol);
    c.send(2, carol, "/join #Rust");
    assert_eq!(c.text(2, carol), lines(&["*** You joined #Rust (1 user)"]));
    assert_eq!(
        c.text(0, alice),
        lines(&["*** carol joined #lobby", "*** carol left #lobby"])
    );
    c.send(0, alice, "/rooms");
    assert_eq!(
        c.text(0, alice),
        lines(&[
            "*** 2 rooms:",
            "***   #lobby (2 users)",
            "***   #Rust (1 user)"
        ])
    );
    c.send(0, alice, "/w nobody hi");
    assert_eq!(c.text(0, alice), lines(&["!!! No such user: nobody."]));
    c.text(1, bob);
    c.send(1, bob, "/quit bye all");
    assert_eq!(c.text(1, bob), lines(&["*** Bye, bob!"]));
    assert_eq!(c.c.sim(1).close_reason(bob), Some(CloseReason::Quit));
    assert_eq!(c.text(0, alice), lines(&["*** bob left #lobby (bye all)"]));
    c.c.check_agree().unwrap();
}

#[test]
fn lines_pipeline_through_the_log_and_replies_keep_their_order() {
    let mut c = Cluster::new(2);
    let alice = c.login(0, "alice");
    let bob = c.login(1, "bob");
    c.text(0, alice);
    // One read: every line goes into the log at once, in one entry; /help waits for 'one'
    // to come back.
    let before = c.c.log.len();
    c.c.sim(1)
        .input(bob, b"one\r\n/help\r\n/who\r\n/bogus\r\ntwo\r\n")
        .unwrap();
    assert!(
        c.c.sim(1).chat().wants_input(bob),
        "not held: the log keeps the order"
    );
    assert_eq!(
        c.text(1, bob),
        "",
        "not even /help answers before 'one' is applied"
    );
    c.c.settle().unwrap();
    assert_eq!(c.c.log.len(), before + 1, "one entry for the whole read");
    assert_eq!(c.text(0, alice), lines(&["<bob> one", "<bob> two"]));
    let help: String = natter::proto::reply::HELP
        .iter()
        .map(|l| format!("*** {l}\r\n"))
        .collect();
    assert_eq!(
        c.text(1, bob),
        format!(
            "{help}{}",
            lines(&[
                "*** 2 users in #lobby: alice, bob",
                "!!! Unknown command /bogus. Type /help for a list."
            ])
        )
    );
}

#[test]
fn a_login_holds_the_input_that_follows_until_its_outcome_is_known() {
    let mut c = Cluster::new(2);
    let _alice = c.login(0, "alice");
    let bob = c.connect(1);
    c.text(1, bob);
    c.c.sim(1).input(bob, b"alice\r\nbob\r\nhi\r\n").unwrap();
    assert!(
        !c.c.sim(1).chat().wants_input(bob),
        "held until the login is decided"
    );
    c.c.settle().unwrap();
    assert_eq!(
        c.text(1, bob),
        "!!! The nickname alice is already taken.\r\nYour nickname: \
         *** Welcome, bob! You are in #lobby.\r\n"
    );
}

#[test]
fn a_login_in_flight_still_leaves_when_its_connection_closes() {
    let mut c = Cluster::new(2);
    let alice = c.login(0, "alice");
    let bob = c.connect(1);
    c.c.sim(1).input(bob, b"bob\r\n").unwrap();
    c.c.sim(1).disconnect(bob).unwrap();
    c.c.settle().unwrap();
    assert_eq!(
        c.text(0, alice),
        lines(&[
            "*** bob joined #lobby",
            "*** bob left #lobby (connection closed)"
        ])
    );
    assert_eq!(c.c.sim(0).chat().user_count(), 1);
}

#[test]
fn duplicates_in_the_log_change_nothing() {
    let mut c = Cluster::new(2);
    c.c.duplicate = true;
    let alice = c.login(0, "alice");
    let bob = c.login(1, "bob");
    c.send(1, bob, "once");
    c.send(0, alice, "/nick al");
    assert_eq!(
        c.text(0, alice),
        lines(&[
            "*** bob joined #lobby",
            "<bob> once",
            "*** You are now known as al."
        ])
    );
    assert_eq!(c.text(1, bob), lines(&["*** alice is now known as al"]));
    c.advance(3_000);
    assert_eq!(c.text(0, alice), "");
}

#[test]
fn a_node_that_dies_is_gone_within_eleven_seconds_and_its_names_are_free() {
    let mut c = Cluster::new(3);
    let alice = c.login(0, "alice");
    let bob = c.login(1, "bob");
    let _dave = c.login(1, "dave");
    c.text(0, alice);
    c.c.kill(1);
    c.advance(10_000);
    assert_eq!(c.text(0, alice), "", "not yet");
    c.advance(1_000);
    assert_eq!(
        c.text(0, alice),
        lines(&[
            "*** bob left #lobby (connection closed)",
            "*** dave left #lobby (connection closed)",
        ])
    );
    c.login(2, "bob");
    assert!(
        c.c.sim(1).conn(bob).is_some_and(|x| x.open),
        "dead: nobody closed it"
    );
    assert_eq!(c.text(0, alice), lines(&["*** bob joined #lobby"]));
}

#[test]
fn a_node_back_after_its_death_rejoins_and_a_taken_name_becomes_a_guest() {
    let mut c = Cluster::new(2);
    let alice = c.login(0, "alice");
    let bob = c.login(1, "bob");
    let dave = c.login(1, "dave");
    c.send(1, dave, "/join den");
    c.text(0, alice);
    c.text(1, bob);
    c.text(1, dave);
    c.c.stop(1);
    c.advance(11_000);
    assert_eq!(
        c.text(0, alice),
        lines(&["*** bob left #lobby (connection closed)"])
    );
    let carol = c.login(0, "bob");
    c.text(0, alice);
    let id = c.c.nodes[1].id;
    c.c.resume(1).unwrap();
    c.advance(1_000);
    assert_eq!(c.c.nodes[1].id, id, "it read on where it was: same id");
    assert_eq!(
        c.text(1, bob),
        lines(&["*** Your nickname bob was taken while this server was away; you are now guest1."])
    );
    assert_eq!(c.text(0, alice), lines(&["*** guest1 joined #lobby"]));
    assert_eq!(c.text(0, carol), lines(&["*** guest1 joined #lobby"]));
    assert_eq!(c.text(1, dave), "", "alone in #den: nobody to tell");
    c.send(1, bob, "back");
    assert_eq!(c.text(0, alice), lines(&["<guest1> back"]));
    c.send(1, dave, "/who");
    assert_eq!(c.text(1, dave), lines(&["*** 1 user in #den: dave"]));
    c.c.check_agree().unwrap();
}

#[test]
fn lines_typed_around_a_death_are_neither_lost_nor_doubled() {
    let mut c = Cluster::new(2);
    let alice = c.login(0, "alice");
    let bob = c.login(1, "bob");
    c.text(0, alice);
    c.c.stop(1);
    c.advance(11_000);
    c.text(0, alice);
    // bob types as soon as his node runs again, before it has read of its own death.
    c.c.nodes[1].stopped = false;
    c.c.sim(1).input(bob, b"still here\r\n").unwrap();
    c.c.settle().unwrap();
    c.advance(1_000);
    assert_eq!(
        c.text(0, alice),
        lines(&["*** bob joined #lobby", "<bob> still here"])
    );
}

#[test]
fn a_restarted_log_brings_everyone_back_and_guest_names_never_repeat() {
    let mut c = Cluster::new(2);
    let alice = c.login(0, "alice");
    let g1 = c.connect(1);
    c.send(1, g1, "");
    assert!(
        c.text(1, g1)
            .ends_with("*** Welcome, guest1! You are in #lobby.\r\n")
    );
    c.send(1, g1, "/join den");
    c.c.restart_log().unwrap();
    c.advance(2_000);
    c.text(0, alice);
    c.text(1, g1);
    c.send(0, alice, "/rooms");
    assert_eq!(
        c.text(0, alice),
        lines(&[
            "*** 2 rooms:",
            "***   #den (1 user)",
            "***   #lobby (1 user)"
        ])
    );
    let g2 = c.connect(0);
    c.send(0, g2, "");
    assert!(
        c.text(0, g2)
            .ends_with("*** Welcome, guest2! You are in #lobby.\r\n")
    );
    c.c.check_agree().unwrap();
}

#[test]
fn a_node_that_starts_later_loads_the_snapshot_and_reads_on() {
    let mut c = Cluster::new(2);
    let alice = c.login(0, "alice");
    let _bob = c.login(1, "bob");
    c.send(0, alice, "/join Den");
    for _ in 0..3 {
        c.advance(6_000);
        c.send(0, alice, "tick");
    }
    assert!(c.c.snapshot.is_some(), "the lowest live node stored one");
    assert!(
        c.c.log[0].is_none(),
        "and the log was trimmed below an older one"
    );
    let n = c.c.add_node(settings()).unwrap();
    c.c.settle().unwrap();
    let carol = c.login(n, "carol");
    c.send(n, carol, "/rooms");
    assert_eq!(
        c.text(n, carol),
        lines(&[
            "*** 2 rooms:",
            "***   #lobby (2 users)",
            "***   #Den (1 user)"
        ])
    );
    c.send(n, carol, "/nick alice");
    assert_eq!(
        c.text(n, carol),
        lines(&["!!! The nickname alice is already taken."])
    );
    c.c.check_agree().unwrap();
}

#[test]
fn a_node_that_fell_behind_a_trim_starts_over_and_its_users_rejoin() {
    let mut c = Cluster::new(3);
    let alice = c.login(0, "alice");
    let bob = c.login(2, "bob");
    c.c.stop(2);
    for _ in 0..12 {
        c.advance(5_000);
        c.send(0, alice, "tick");
    }
    c.text(0, alice);
    let id = c.c.nodes[2].id;
    c.c.resume(2).unwrap();
    c.advance(2_000);
    assert_ne!(
        c.c.nodes[2].id, id,
        "it started over from the snapshot: a new id"
    );
    assert_eq!(c.text(0, alice), lines(&["*** bob joined #lobby"]));
    c.send(2, bob, "/who");
    assert_eq!(
        c.text(2, bob),
        lines(&["*** 2 users in #lobby: alice, bob"])
    );
    c.c.check_agree().unwrap();
}

#[test]
fn an_upgraded_node_waits_for_its_events_then_carries_its_cluster_state_over() {
    let mut c = Cluster::new(2);
    let alice = c.login(0, "alice");
    let bob = c.login(1, "bob");
    c.text(0, alice);
    // An event on its way: the state cannot be exported yet.
    c.c.sim(0).input(alice, b"first\r\n").unwrap();
    assert!(c.c.sim(0).chat().log_busy());
    let now = c.c.sim(0).now();
    assert!(c.c.sim(0).chat().export(now).is_err());
    c.c.settle().unwrap();
    // Quiescing: new lines wait, nothing is on its way, the state goes over.
    c.c.sim(0).chat_mut().set_quiescing(true);
    c.c.sim(0).input(alice, b"second\r\n").unwrap();
    c.c.settle().unwrap();
    assert!(!c.c.sim(0).chat().log_busy());
    assert_eq!(c.text(1, bob), lines(&["<alice> first"]), "second waits");
    c.c.sim(0).restart().unwrap();
    assert_eq!(c.c.sim(0).restarts, 1);
    c.c.sim(0).chat_mut().handle_upgraded();
    c.c.sim(0).after().unwrap();
    c.c.settle().unwrap();
    assert_eq!(c.text(0, alice), lines(&["*** Server upgraded."]));
    assert_eq!(c.text(1, bob), lines(&["<alice> second"]));
    c.send(1, bob, "/who");
    assert_eq!(
        c.text(1, bob),
        lines(&["*** 2 users in #lobby: alice, bob"])
    );
    c.advance(12_000);
    assert_eq!(
        c.text(1, bob),
        "",
        "the upgraded node heartbeats on: nobody is gone"
    );
    c.c.check_agree().unwrap();
}

#[test]
fn chat_paused_and_resumed_reach_logged_in_users_only() {
    let mut c = Cluster::new(1);
    let alice = c.login(0, "alice");
    let waiting = c.connect(0);
    c.text(0, waiting);
    c.c.sim(0).chat_mut().handle_log_stalled();
    c.c.sim(0).chat_mut().handle_log_stalled();
    c.c.sim(0).after().unwrap();
    assert_eq!(c.text(0, alice), lines(&["*** Chat paused: reconnecting."]));
    assert_eq!(c.text(0, waiting), "");
    c.c.sim(0).chat_mut().handle_log_resumed();
    c.c.sim(0).after().unwrap();
    assert_eq!(c.text(0, alice), lines(&["*** Chat resumed."]));
}

// ---- the union of the nodes' outputs is what one server gives ----

#[derive(Clone, Debug)]
enum Op {
    Connect { node: u8 },
    Input { client: u8, bytes: Vec<u8> },
    Disconnect { client: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let piece =
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(k, a, b)| grammar_piece(k, a, b));
    prop_oneof![
        2 => any::<u8>().prop_map(|node| Op::Connect { node }),
        8 => (any::<u8>(), vec(piece, 1..4))
            .prop_map(|(client, pieces)| Op::Input { client, bytes: pieces.concat() }),
        1 => any::<u8>().prop_map(|client| Op::Disconnect { client }),
    ]
}

/// What each client received, and how it was closed.
type Outcome = Vec<(Vec<u8>, Option<CloseReason>)>;

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn run_alone(settings: Settings, ops: &[Op]) -> Result<Outcome, TestCaseError> {
    let mut sim = Sim::new(settings);
    let mut clients = Vec::new();
    let fail = |e: natter::sim::SimError| TestCaseError::fail(e.to_string());
    for op in ops {
        match op {
            Op::Connect { .. } => clients.push(sim.connect(loopback()).map_err(fail)?),
            Op::Input { client, bytes } if !clients.is_empty() => {
                let id = clients[*client as usize % clients.len()];
                sim.input(id, bytes).map_err(fail)?;
            }
            Op::Disconnect { client } if !clients.is_empty() => {
                let id = clients[*client as usize % clients.len()];
                if sim.conn(id).is_some_and(|c| c.open) {
                    sim.disconnect(id).map_err(fail)?;
                }
            }
            _ => {}
        }
    }
    Ok(clients
        .iter()
        .map(|&id| (sim.take(id), sim.close_reason(id)))
        .collect())
}

fn run_cluster(
    k: usize,
    settings: Settings,
    ops: &[Op],
    duplicate: bool,
) -> Result<Outcome, TestCaseError> {
    let fail = |e: natter::sim::SimError| TestCaseError::fail(e.to_string());
    let mut c = SimCluster::new(k, settings).map_err(fail)?;
    c.duplicate = duplicate;
    let mut clients: Vec<(usize, ConnId)> = Vec::new();
    for op in ops {
        match op {
            Op::Connect { node } => {
                let n = *node as usize % k;
                clients.push((n, c.sim(n).connect(loopback()).map_err(fail)?));
            }
            Op::Input { client, bytes } if !clients.is_empty() => {
                let (n, id) = clients[*client as usize % clients.len()];
                c.sim(n).input(id, bytes).map_err(fail)?;
            }
            Op::Disconnect { client } if !clients.is_empty() => {
                let (n, id) = clients[*client as usize % clients.len()];
                if c.sim(n).conn(id).is_some_and(|c| c.open) {
                    c.sim(n).disconnect(id).map_err(fail)?;
                }
            }
            _ => {}
        }
        c.settle().map_err(fail)?;
    }
    Ok(clients
        .iter()
        .map(|&(n, id)| (c.sim(n).take(id), c.sim(n).close_reason(id)))
        .collect())
}

fn quiet_settings(quiet: u8) -> Settings {
    Settings {
        quiet_above: [0, 1, 2, 1000][quiet as usize % 4],
        ..settings()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Users spread over three nodes get byte for byte what they get from one server, and the
    /// nodes' directories agree after every entry (the model shell compares them).
    #[test]
    fn three_nodes_give_every_client_the_bytes_of_one_server(
        quiet in any::<u8>(),
        ops in vec(op(), 1..80),
    ) {
        let alone = run_alone(quiet_settings(quiet), &ops)?;
        let cluster = run_cluster(3, quiet_settings(quiet), &ops, false)?;
        prop_assert_eq!(alone, cluster);
    }

    /// Every entry stored twice changes nothing anyone sees.
    #[test]
    fn duplicate_entries_change_no_byte(quiet in any::<u8>(), ops in vec(op(), 1..60)) {
        let once = run_cluster(2, quiet_settings(quiet), &ops, false)?;
        let twice = run_cluster(2, quiet_settings(quiet), &ops, true)?;
        prop_assert_eq!(once, twice);
    }

    /// Many events on their way at once from several nodes, interleaved in the log, keep every
    /// node's directory the same after every entry and every core's invariants.
    #[test]
    fn nodes_fed_the_same_interleaved_log_agree_after_every_entry(
        ops in vec(op(), 1..120),
        settle_every in 1usize..8,
    ) {
        let fail = |e: natter::sim::SimError| TestCaseError::fail(e.to_string());
        let k = 3;
        let mut c = SimCluster::new(k, settings()).map_err(fail)?;
        let mut clients: Vec<(usize, ConnId)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Connect { node } => {
                    let n = *node as usize % k;
                    clients.push((n, c.sim(n).connect(loopback()).map_err(fail)?));
                }
                Op::Input { client, bytes } if !clients.is_empty() => {
                    let (n, id) = clients[*client as usize % clients.len()];
                    c.sim(n).input(id, bytes).map_err(fail)?;
                }
                Op::Disconnect { client } if !clients.is_empty() => {
                    let (n, id) = clients[*client as usize % clients.len()];
                    if c.sim(n).conn(id).is_some_and(|c| c.open) {
                        c.sim(n).disconnect(id).map_err(fail)?;
                    }
                }
                _ => {}
            }
            if i % settle_every == 0 {
                c.settle().map_err(fail)?;
            }
        }
        c.settle().map_err(fail)?;
        c.check_agree().map_err(fail)?;
    }
}
