//! A cluster of real nodes when things break: a node killed or stopped, its Redis connections
//! killed, Redis paused, Redis restarted empty, a node started after the log was trimmed, and
//! a node upgraded in the middle of a conversation. Each test has its own `redis-server`.
//!
//! These take 10 seconds or more each (a node is declared gone after 10 s of silence); every
//! wait reads until the expected line or a deadline.

#[path = "support/cluster.rs"]
mod cluster_support;
#[path = "support/redis.rs"]
mod redis_support;
mod support;

use cluster_support::{expect_line_within, node, probe, wait_for_line, who_names};
use redis_protocol::resp2::types::OwnedFrame;
use redis_support::RedisServer;
use std::time::{Duration, Instant};
use support::{Client, login};

/// The contract: a dead node's users leave within 12 s.
const GONE_WITHIN: Duration = Duration::from_secs(12);

#[test]
fn a_node_killed_mid_conversation_is_gone_within_12_seconds_and_its_names_are_free() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n1 = node(&redis, "kill", &[]);
    let n2 = node(&redis, "kill", &[]);
    let mut alice = login(n1.addr, "alice");
    let mut bob = login(n2.addr, "bob");
    let _dave = login(n2.addr, "dave");
    wait_for_line(&mut alice, GONE_WITHIN, |l| l == "*** dave joined #lobby");
    bob.send_line("are you there?");
    expect_line_within(&mut alice, GONE_WITHIN, "<bob> are you there?");
    let killed = Instant::now();
    n2.signal("KILL");
    expect_line_within(
        &mut alice,
        GONE_WITHIN,
        "*** bob left #lobby (connection closed)",
    );
    expect_line_within(
        &mut alice,
        GONE_WITHIN,
        "*** dave left #lobby (connection closed)",
    );
    assert!(killed.elapsed() < GONE_WITHIN, "{:?}", killed.elapsed());
    let _bob2 = login(n1.addr, "bob");
    expect_line_within(&mut alice, GONE_WITHIN, "*** bob joined #lobby");
}

#[test]
fn a_node_stopped_past_10_seconds_rejoins_and_a_taken_name_becomes_a_guest() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n1 = node(&redis, "stop", &[]);
    let n2 = node(&redis, "stop", &[]);
    let mut alice = login(n1.addr, "alice");
    let mut bob = login(n2.addr, "bob");
    wait_for_line(&mut alice, GONE_WITHIN, |l| l == "*** bob joined #lobby");
    n2.signal("STOP");
    expect_line_within(
        &mut alice,
        GONE_WITHIN,
        "*** bob left #lobby (connection closed)",
    );
    let mut carol = login(n1.addr, "bob");
    carol.nick = "bob".to_string();
    expect_line_within(&mut alice, GONE_WITHIN, "*** bob joined #lobby");
    // Typed while the node is stopped: the kernel keeps it.
    bob.send_line("I was away");
    n2.signal("CONT");
    expect_line_within(
        &mut bob,
        GONE_WITHIN,
        "*** Your nickname bob was taken while this server was away; you are now guest1.",
    );
    expect_line_within(&mut alice, GONE_WITHIN, "*** guest1 joined #lobby");
    expect_line_within(&mut alice, GONE_WITHIN, "<guest1> I was away");
    expect_line_within(&mut carol, GONE_WITHIN, "*** guest1 joined #lobby");
    expect_line_within(&mut carol, GONE_WITHIN, "<guest1> I was away");
    bob.nick = "guest1".to_string();
    bob.send_line("/who");
    let who = wait_for_line(&mut bob, GONE_WITHIN, |l| l.contains(" in #lobby: "));
    assert_eq!(who_names(&who), ["alice", "bob", "guest1"]);
}

#[test]
fn killing_the_nodes_redis_connections_loses_and_doubles_no_line() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n1 = node(&redis, "cut", &[]);
    let n2 = node(&redis, "cut", &[]);
    let mut alice = login(n1.addr, "alice");
    let mut bob = login(n2.addr, "bob");
    wait_for_line(&mut alice, GONE_WITHIN, |l| l == "*** bob joined #lobby");
    let mut sent = 0;
    for _round in 0..4 {
        // A burst (each line waits for the one before it to come back from the log), and the
        // connections killed once it flows, while its entries are on their way.
        let burst: String = (sent..sent + 200)
            .map(|i| format!("line {i}\r\n"))
            .collect();
        alice.send(burst.as_bytes());
        expect_line_within(&mut bob, GONE_WITHIN, &format!("<alice> line {sent}"));
        assert!(redis.kill_client_connections() >= 2);
        for i in sent + 1..sent + 200 {
            expect_line_within(&mut bob, GONE_WITHIN, &format!("<alice> line {i}"));
        }
        sent += 200;
    }
    probe(&mut bob, "after");
    probe(&mut alice, "after");
}

#[test]
fn a_paused_redis_pauses_the_chat_after_2_seconds_and_nothing_is_lost() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n1 = node(&redis, "pause", &[]);
    let n2 = node(&redis, "pause", &[]);
    let mut alice = login(n1.addr, "alice");
    let mut bob = login(n2.addr, "bob");
    wait_for_line(&mut alice, GONE_WITHIN, |l| l == "*** bob joined #lobby");
    redis.pause();
    let paused = Instant::now();
    alice.send_line("during the pause");
    expect_line_within(&mut alice, GONE_WITHIN, "*** Chat paused: reconnecting.");
    assert!(paused.elapsed() >= Duration::from_millis(1900));
    expect_line_within(&mut bob, GONE_WITHIN, "*** Chat paused: reconnecting.");
    redis.resume();
    expect_line_within(&mut alice, GONE_WITHIN, "*** Chat resumed.");
    expect_line_within(&mut bob, GONE_WITHIN, "*** Chat resumed.");
    expect_line_within(&mut bob, GONE_WITHIN, "<alice> during the pause");
    // A short outage shows nothing.
    redis.pause();
    alice.send_line("short");
    redis.resume();
    expect_line_within(&mut bob, GONE_WITHIN, "<alice> short");
    probe(&mut alice, "after");
}

#[test]
fn a_redis_restarted_empty_has_everyone_back_within_15_seconds() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let n1 = node(&redis, "again", &[]);
    let n2 = node(&redis, "again", &[]);
    let mut alice = login(n1.addr, "alice");
    let mut bob = login(n2.addr, "bob");
    wait_for_line(&mut alice, GONE_WITHIN, |l| l == "*** bob joined #lobby");
    let mut g = Client::connect(n2.addr);
    g.skip_banner();
    g.send_line("");
    g.expect_line("*** Welcome, guest1! You are in #lobby.");
    g.nick = "guest1".to_string();
    g.send_line("/join den");
    g.expect_line("*** You joined #den (1 user)");
    redis.restart_empty();
    let restarted = Instant::now();
    // Ask until both are back (the join and leave notices meanwhile are free).
    loop {
        alice.send_line("/who");
        let who = wait_for_line(&mut alice, Duration::from_secs(15), |l| {
            l.contains(" in #lobby: ")
        });
        if who_names(&who) == ["alice", "bob"] {
            break;
        }
        assert!(restarted.elapsed() < Duration::from_secs(15), "{who}");
        let _ = alice.try_read_line(Duration::from_millis(200));
    }
    bob.send_line("/rooms");
    wait_for_line(&mut bob, Duration::from_secs(15), |l| {
        l == "***   #den (1 user)"
    });
    let mut g2 = Client::connect(n1.addr);
    g2.skip_banner();
    g2.send_line("");
    g2.expect_line("*** Welcome, guest2! You are in #lobby.");
    assert!(restarted.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_node_started_after_the_log_was_trimmed_reads_on_from_the_snapshot() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let n1 = node(&redis, "late", &[]);
    let mut alice = login(n1.addr, "alice");
    alice.send_line("/join Den");
    alice.expect_line("*** You joined #Den (1 user)");
    // Wait (polling Redis, which has no way to tell) until alice's login was trimmed away
    // below a stored snapshot.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !trimmed_past(&redis, "late", b"alice") {
        assert!(Instant::now() < deadline, "never trimmed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let n2 = node(&redis, "late", &[]);
    let mut bob = login(n2.addr, "bob");
    bob.send_line("/rooms");
    bob.expect_lines(&[
        "*** 2 rooms:",
        "***   #Den (1 user)",
        "***   #lobby (1 user)",
    ]);
    bob.send_line("/nick alice");
    bob.expect_line("!!! The nickname alice is already taken.");
    bob.send_line("/join den");
    bob.expect_line("*** You joined #Den (2 users)");
    expect_line_within(&mut alice, GONE_WITHIN, "*** bob joined #Den");
}

#[test]
fn a_node_upgraded_mid_conversation_loses_and_doubles_no_line() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut n1 = node(&redis, "upgrade", &[]);
    let n2 = node(&redis, "upgrade", &[]);
    let mut alice = login(n1.addr, "alice");
    let mut bob = login(n2.addr, "bob");
    wait_for_line(&mut alice, GONE_WITHIN, |l| l == "*** bob joined #lobby");
    let writer = std::thread::spawn({
        let mut out = bob.writer();
        move || {
            use std::io::Write;
            for i in 0..300 {
                out.write_all(format!("from bob {i}\r\n").as_bytes())
                    .unwrap();
                if i % 50 == 0 {
                    std::thread::yield_now();
                }
            }
        }
    });
    alice.send(b"before\r\n");
    n1.upgrade();
    alice.send(b"after\r\n");
    writer.join().unwrap();
    let mut got = Vec::new();
    while got.len() < 300 {
        let line = wait_for_line(&mut alice, GONE_WITHIN, |l| {
            l.starts_with("<bob> ") || l == "*** Server upgraded."
        });
        if let Some(text) = line.strip_prefix("<bob> ") {
            got.push(text.to_string());
        }
    }
    let want: Vec<String> = (0..300).map(|i| format!("from bob {i}")).collect();
    assert_eq!(got, want);
    expect_line_within(&mut bob, GONE_WITHIN, "<alice> before");
    expect_line_within(&mut bob, GONE_WITHIN, "<alice> after");
    probe(&mut bob, "done");
}

/// Whether a snapshot is stored and no entry of the log contains `needle` any more.
fn trimmed_past(redis: &RedisServer, cluster: &str, needle: &[u8]) -> bool {
    let key = format!("natter:{{{cluster}}}:snapshot");
    if matches!(redis.command(&["HGET", &key, "ms"]), OwnedFrame::Null) {
        return false;
    }
    let log = format!("natter:{{{cluster}}}:log");
    let OwnedFrame::Array(entries) = redis.command(&["XRANGE", &log, "-", "+"]) else {
        return false;
    };
    !contains_bytes(&entries, needle)
}

fn contains_bytes(frames: &[OwnedFrame], needle: &[u8]) -> bool {
    frames.iter().any(|f| match f {
        OwnedFrame::BulkString(b) => b.windows(needle.len()).any(|w| w == needle),
        OwnedFrame::Array(inner) => contains_bytes(inner, needle),
        _ => false,
    })
}
