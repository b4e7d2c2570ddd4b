//! Timers, flood control and output backpressure, driven through the model shell with a fake clock.

mod model;

use model::*;

// Timers: login and idle timeouts, next_deadline
// ---------------------------------------------------------------------------------------------

#[test]
fn an_idle_server_has_no_timer() {
    let mut h = Harness::new();
    assert_eq!(h.chat().next_deadline(), None);
    let [alice, bob] = h.login_all(["alice", "bob"]);
    let c = h.connect();
    h.send(alice, "hi\r\n/join x\r\n/who\r\n");
    h.send(c, [IAC, DO, 1]);
    assert_eq!(h.chat().next_deadline(), None);
    h.advance(Duration::from_secs(86_400));
    assert!(h.closes().is_empty());
    h.disconnect(bob);
    assert_eq!(h.chat().next_deadline(), None);
}

#[test]
fn login_timeout() {
    let mut h = Harness::with_config(Settings {
        login_timeout: Some(Duration::from_secs(10)),
        ..test_config()
    });
    let watcher = h.login("watcher");
    h.advance_ms(2_000);
    let a = h.connect();
    h.take(a);
    assert_eq!(
        h.chat().next_deadline(),
        Some(h.base() + Duration::from_millis(10_000))
    );
    // Talking (without logging in) does not postpone it.
    h.advance_ms(5_000);
    h.send(a, "9bad\r\n");
    h.take(a);
    h.advance_ms(4_999);
    assert_eq!(h.close_reason(a), None);
    assert_eq!(
        h.chat().next_deadline(),
        Some(h.base() + Duration::from_millis(12_000))
    );
    h.advance_ms(1);
    assert_eq!(h.text(a), "*** Login timeout.\r\n");
    assert_eq!(h.close_reason(a), Some(CloseReason::LoginTimeout));
    assert!(
        h.take(watcher).is_empty(),
        "nobody is told: it was in no room"
    );
    // Logging in in time cancels it.
    let b = h.connect();
    h.advance_ms(9_000);
    h.send(b, "bob\r\n");
    h.advance_ms(60_000);
    assert_eq!(h.close_reason(b), None);
    assert_eq!(h.chat().nick(b), Some("bob"));
    assert_eq!(h.chat().next_deadline(), None);
}

#[test]
fn idle_timeout() {
    let mut h = Harness::with_config(Settings {
        idle_timeout: Some(Duration::from_secs(60)),
        ..test_config()
    });
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.advance_ms(30_000);
    h.send(alice, "still here\r\n");
    h.clear();
    h.advance_ms(29_999);
    assert!(h.closes().is_empty());
    h.advance_ms(1);
    assert_eq!(h.text(bob), "*** Idle timeout.\r\n");
    assert_eq!(h.close_reason(bob), Some(CloseReason::IdleTimeout));
    assert_eq!(h.text(alice), "*** bob left #lobby (idle timeout)\r\n");
    // Any input counts, a telnet command included.
    h.advance_ms(29_000);
    h.send(alice, [IAC, 241]);
    h.advance_ms(59_999);
    assert_eq!(h.close_reason(alice), None);
    h.advance_ms(1);
    assert_eq!(h.text(alice), "*** Idle timeout.\r\n");
    assert_eq!(h.close_reason(alice), Some(CloseReason::IdleTimeout));
    // Before login too.
    let c = h.connect();
    h.take(c);
    h.advance_ms(60_000);
    assert_eq!(h.text(c), "*** Idle timeout.\r\n");
    assert_eq!(h.chat().connection_count(), 0);
    assert_eq!(h.chat().room_count(), 1);
    assert_eq!(h.chat().next_deadline(), None);
}

#[test]
fn timeouts_in_one_turn_for_many_connections() {
    let mut h = Harness::with_config(Settings {
        idle_timeout: Some(Duration::from_secs(5)),
        login_timeout: Some(Duration::from_secs(5)),
        ..test_config()
    });
    let users: Vec<ConnId> = (0..20).map(|i| h.login(&format!("u{i}"))).collect();
    let guests = h.connect_n(5);
    h.clear();
    // One late handle_timeout fires everything at once.
    h.jump(Duration::from_secs(100));
    let now = h.now();
    h.chat_mut().handle_timeout(now);
    h.after();
    for id in users.iter().chain(&guests) {
        assert!(h.close_reason(*id).is_some());
    }
    assert_eq!(h.chat().connection_count(), 0);
    assert_eq!(h.chat().room_count(), 1);
}

#[test]
fn no_timer_is_left_once_everyone_has_gone() {
    let mut h = Harness::with_config(Settings {
        idle_timeout: Some(Duration::from_secs(3600)),
        login_timeout: Some(Duration::from_secs(3600)),
        ..test_config()
    });
    for _ in 0..1000 {
        let id = h.connect();
        h.send(id, "\r\n");
        h.disconnect(id);
    }
    assert_eq!(h.chat().connection_count(), 0);
    assert_eq!(h.chat().next_deadline(), None);
}

// ---------------------------------------------------------------------------------------------
// Flood control
// ---------------------------------------------------------------------------------------------

fn flood_config() -> Settings {
    Settings {
        rate: 2,
        burst: 3,
        ..test_config()
    }
}

#[test]
fn flood_control_holds_lines_and_loses_nothing() {
    let mut h = Harness::with_config(flood_config());
    let [alice, bob] = h.login_all(["alice", "bob"]);
    // Let the login lines' tokens come back: the bucket is full (3).
    h.advance_ms(10_000);
    assert_eq!(h.chat().next_deadline(), None);
    let input: String = (0..10).map(|i| format!("m{i}\r\n")).collect();
    h.send(alice, &input);
    assert_eq!(
        h.text(bob),
        lines(&["<alice> m0", "<alice> m1", "<alice> m2"])
    );
    assert!(!h.chat().wants_input(alice));
    assert!(h.chat().wants_input(bob));
    let start = h.now() - h.base();
    assert_eq!(
        h.chat().next_deadline(),
        Some(h.base() + start + Duration::from_millis(500))
    );
    // Time passes: one line per 500 ms, in order.
    for i in 3..10 {
        h.advance_ms(499);
        assert!(h.take(bob).is_empty(), "m{i} too early");
        h.advance_ms(1);
        assert_eq!(h.text(bob), format!("<alice> m{i}\r\n"));
        assert!(!h.chat().wants_input(alice));
    }
    assert!(h.resumed().is_empty());
    // The budget of the last line refills: alice may be read again.
    h.advance_ms(500);
    assert_eq!(h.resumed(), vec![alice]);
    assert!(h.chat().wants_input(alice));
    assert_eq!(h.chat().next_deadline(), None);
    assert!(h.take(bob).is_empty());
    assert!(h.take(alice).is_empty());
}

#[test]
fn flood_control_keeps_an_unfinished_line_and_a_split_crlf() {
    let mut h = Harness::with_config(flood_config());
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.advance_ms(10_000);
    // The third line ends with CR; its LF and a partial line are held.
    h.send(alice, "a\r\nb\r\nc\r\nd\r\npart");
    assert_eq!(h.text(bob), lines(&["<alice> a", "<alice> b", "<alice> c"]));
    h.advance_ms(500);
    assert_eq!(h.text(bob), "<alice> d\r\n");
    // The shell did not read while paused, so "part" waits for its line end.
    h.advance_ms(500);
    assert_eq!(h.resumed(), vec![alice]);
    h.send(alice, "ial\r\n");
    assert_eq!(h.text(bob), "<alice> partial\r\n");
    assert!(h.take(alice).is_empty());
}

#[test]
fn flood_control_refills_over_time_up_to_the_burst() {
    let mut h = Harness::with_config(flood_config());
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.advance_ms(10_000);
    // Two lines a second is the sustained rate: never paused.
    for i in 0..20 {
        h.send(alice, format!("s{i}\r\n"));
        assert_eq!(h.text(bob), format!("<alice> s{i}\r\n"));
        assert!(h.chat().wants_input(alice), "line {i}");
        h.advance_ms(500);
    }
    // A long pause refills only up to the burst.
    h.advance_ms(60_000);
    h.send(alice, "1\r\n2\r\n3\r\n4\r\n");
    assert_eq!(h.text(bob), lines(&["<alice> 1", "<alice> 2", "<alice> 3"]));
    assert!(!h.chat().wants_input(alice));
    h.advance_ms(500);
    assert_eq!(h.text(bob), "<alice> 4\r\n");
}

#[test]
fn flood_control_held_quit_and_disconnect_while_held() {
    let mut h = Harness::with_config(flood_config());
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    h.advance_ms(10_000);
    h.send(alice, "1\r\n2\r\n3\r\n4\r\n/quit later\r\n");
    assert_eq!(h.text(bob), lines(&["<alice> 1", "<alice> 2", "<alice> 3"]));
    h.advance_ms(1_000);
    assert_eq!(
        h.text(bob),
        lines(&["<alice> 4", "*** alice left #lobby (later)"])
    );
    assert_eq!(h.close_reason(alice), Some(CloseReason::Quit));
    assert!(h.resumed().is_empty());
    // A connection lost while held: its timer finds nobody.
    h.send(carol, "1\r\n2\r\n3\r\n4\r\n");
    h.take(bob);
    h.disconnect(carol);
    assert_eq!(h.text(bob), "*** carol left #lobby (connection closed)\r\n");
    h.advance_ms(5_000);
    assert!(h.take(bob).is_empty());
    assert!(h.resumed().is_empty());
    assert_eq!(h.chat().next_deadline(), None);
}

#[test]
fn flood_control_counts_lines_before_login_too() {
    let mut h = Harness::with_config(flood_config());
    let a = h.connect();
    h.take(a);
    h.send(a, "1\r\n2\r\n3\r\nalice\r\n");
    assert_eq!(h.text(a), format!("{INVALID_NICK}{PROMPT}").repeat(3));
    assert!(!h.chat().wants_input(a));
    h.advance_ms(500);
    assert_eq!(h.text(a), "*** Welcome, alice! You are in #lobby.\r\n");
}

#[test]
fn rooms_header_always_says_rooms() {
    let mut h = Harness::new();
    let a = h.login("alice");
    h.send(a, "/rooms\r\n");
    assert_eq!(h.text(a), "*** 1 room:\r\n***   #lobby (1 user)\r\n");
}

#[test]
fn held_input_is_not_relayed_after_shutdown() {
    let mut h = Harness::with_config(flood_config());
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.advance_ms(10_000);
    h.send(alice, "1\r\n2\r\n3\r\n4\r\n5\r\n");
    assert_eq!(h.text(bob), lines(&["<alice> 1", "<alice> 2", "<alice> 3"]));
    h.chat_mut().handle_shutdown();
    h.after();
    assert_eq!(h.text(bob), "*** Server is shutting down.\r\n");
    h.advance_ms(5_000);
    assert_eq!(h.text(bob), "", "nothing after the shutdown notice");
}

/// Found by the `state_machine` fuzz target (reduced by hand).
#[test]
fn no_resume_is_reported_for_a_connection_closed_in_the_same_turn() {
    let mut h = Harness::with_config(Settings {
        sendq: 1024,
        ..flood_config()
    });
    // bob first, so his flood timer fires before alice's when both are due.
    let [bob, alice] = h.login_all(["bob", "alice"]);
    h.advance_ms(10_000);
    h.stall(bob);
    // bob's queue: 2 x 410 bytes.
    for _ in 0..2 {
        h.send(alice, format!("{}\r\n", "x".repeat(400)));
        h.advance_ms(1_000);
    }
    // Both flood: bob's fourth line and alice's fourth (long) line are held.
    h.send(bob, "b1\r\nb2\r\nb3\r\nb4\r\n");
    h.send(alice, format!("a1\r\na2\r\na3\r\n{}\r\n", "y".repeat(300)));
    assert!(!h.chat().wants_input(bob) && !h.chat().wants_input(alice));
    assert_eq!(h.chat().unsent(bob).len(), 2 * 410 + 3 * 12);
    // A late wakeup: bob's timer resumes him, then alice's held line makes him too slow.
    h.jump(Duration::from_millis(1_500));
    let now = h.now();
    h.chat_mut().handle_timeout(now);
    h.after();
    assert_eq!(h.close_reason(bob), Some(CloseReason::TooSlow));
    assert!(
        !h.resumed().contains(&bob),
        "resume reported for closed {bob:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Output backpressure: a sender is held while its output is written
// ---------------------------------------------------------------------------------------------

#[test]
fn a_paste_is_held_while_its_output_is_written_and_nothing_is_lost() {
    let mut h = Harness::with_config(Settings {
        sendq: 4096,
        ..test_config()
    });
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    let mut input = String::new();
    let mut expected = String::new();
    for i in 0..100 {
        input.push_str(&format!("{i:03} {}\r\n", "p".repeat(66)));
        expected.push_str(&format!("<alice> {i:03} {}\r\n", "p".repeat(66)));
    }
    // Without the harness draining: the core stops once a recipient holds half of --sendq.
    let now = h.now();
    h.chat_mut().handle_input(alice, input.as_bytes(), now);
    h.check();
    assert!(h.chat().wants_flush());
    assert!(!h.chat().wants_input(alice));
    assert!(h.chat().wants_input(bob));
    let queued = h.chat().unsent(bob).len();
    assert!(
        queued > 2048 && queued <= 2048 + 80,
        "{queued} bytes queued"
    );
    // The shell writes, reports the flush, and the rest comes, in order.
    h.pump();
    assert!(!h.chat().wants_flush());
    assert!(h.chat().wants_input(alice));
    assert_eq!(h.resumed(), vec![alice]);
    assert_eq!(h.text(bob), expected);
    assert_eq!(h.text(carol), expected);
    assert!(h.closes().is_empty());
    assert!(h.take(alice).is_empty());
}

#[test]
fn a_stalled_member_does_not_hold_a_sender_for_long() {
    let mut h = Harness::with_config(Settings {
        sendq: 4096,
        ..test_config()
    });
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    h.stall(bob);
    let mut input = String::new();
    let mut expected = String::new();
    for i in 0..100 {
        input.push_str(&format!("{i:03} {}\r\n", "q".repeat(66)));
        expected.push_str(&format!("<alice> {i:03} {}\r\n", "q".repeat(66)));
    }
    h.send(alice, &input);
    // bob is refused on the first write attempt, then dropped once his queue passes --sendq.
    assert_eq!(h.close_reason(bob), Some(CloseReason::TooSlow));
    let notice = "*** bob left #lobby (too slow)\r\n";
    let got = h.text(carol);
    assert_eq!(got.matches(notice).count(), 1);
    assert_eq!(got.replace(notice, ""), expected);
    assert!(h.chat().wants_input(alice));
    assert_eq!(h.text(alice), notice);
}

#[test]
fn senders_held_for_output_in_one_turn_all_go_on_in_order() {
    let mut h = Harness::with_config(Settings {
        sendq: 2048,
        ..test_config()
    });
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    let line = |who: &str, i: usize| format!("{who}{i:02} {}", "r".repeat(60));
    let paste =
        |who: &str| -> String { (0..30).map(|i| format!("{}\r\n", line(who, i))).collect() };
    // Two senders in one turn, before the shell writes anything.
    let now = h.now();
    h.chat_mut().handle_input(alice, paste("a").as_bytes(), now);
    h.chat_mut().handle_input(bob, paste("b").as_bytes(), now);
    h.check();
    assert!(!h.chat().wants_input(alice) && !h.chat().wants_input(bob));
    h.pump();
    let carol_got = h.text(carol);
    let from = |who: &str| -> Vec<String> {
        carol_got
            .lines()
            .filter(|l| l.starts_with(&format!("<{who}> ")))
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect()
    };
    let want = |nick: &str, who: &str| -> Vec<String> {
        (0..30)
            .map(|i| format!("<{nick}> {}", line(who, i)))
            .collect()
    };
    assert_eq!(from("alice"), want("alice", "a"));
    assert_eq!(from("bob"), want("bob", "b"));
    assert!(h.closes().is_empty());
    assert!(h.chat().wants_input(alice) && h.chat().wants_input(bob));
}

#[test]
fn output_written_every_turn_never_adds_up_to_a_flush() {
    // The flush bound is per turn: output the shell has taken must not count again later.
    let mut h = Harness::new();
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    let line = format!("{}\r\n", "x".repeat(400));
    let per_turn = 2 * format!("<alice> {line}").len();
    let turns = natter::proto::chat::OUTPUT_HIGH_WATER / per_turn + 100;
    for turn in 0..turns {
        let now = h.now();
        h.chat_mut().handle_input(alice, line.as_bytes(), now);
        assert!(!h.chat().wants_flush(), "flush wanted at turn {turn}");
        assert!(h.chat().wants_input(alice));
        h.clear();
    }
    assert!(h.take(bob).is_empty() && h.take(carol).is_empty());
    assert!(h.closes().is_empty());
}
