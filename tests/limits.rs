//! Limits and protection flags: --max-clients, --max-per-ip, --login-timeout, --idle-timeout,
//! --rate/--burst, --sendq.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{Client, Server, chat, login, login_seen_by};

#[test]
fn max_clients_refuses_one_more() {
    let server = Server::start(&["--max-clients", "2"]);
    let mut alice = login(server.addr, "alice");
    let _bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    let mut third = Client::connect(server.addr);
    assert_eq!(
        third.expect_closed(),
        vec!["!!! Server is full, try again later.".to_string()]
    );
    alice.expect_silence();
}

#[test]
fn max_clients_slot_is_free_again_after_quit() {
    let server = Server::start(&["--max-clients", "1"]);
    let mut alice = login(server.addr, "alice");
    alice.send_line("/quit");
    alice.expect_line("*** Bye, alice!");
    alice.expect_closed();
    let _bob = login(server.addr, "bob");
}

#[test]
fn max_per_ip_with_limit_loopback() {
    let server = Server::start(&["--max-per-ip", "2", "--limit-loopback"]);
    let mut alice = login(server.addr, "alice");
    let _bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    let mut third = Client::connect(server.addr);
    assert_eq!(
        third.expect_closed(),
        vec!["!!! Too many connections from your address.".to_string()]
    );
    alice.expect_silence();
}

#[test]
fn loopback_is_exempt_from_max_per_ip_by_default() {
    let server = Server::start(&["--max-per-ip", "1"]);
    let mut alice = login(server.addr, "alice");
    let _bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    let _carol = login_seen_by(server.addr, "carol", &mut [&mut alice]);
}

#[test]
fn login_timeout_closes_connections_without_a_nickname() {
    let server = Server::start(&["--login-timeout", "1"]);
    let mut c = Client::connect(server.addr);
    c.skip_banner();
    assert_eq!(c.expect_closed(), vec!["*** Login timeout.".to_string()]);
}

#[test]
fn login_timeout_does_not_touch_logged_in_users() {
    let server = Server::start(&["--login-timeout", "1"]);
    let mut alice = login(server.addr, "alice");
    let mut lurker = Client::connect(server.addr);
    lurker.skip_banner();
    assert_eq!(
        lurker.expect_closed(),
        vec!["*** Login timeout.".to_string()]
    );
    // alice was logged in the whole time and is still there.
    alice.expect_silence();
}

#[test]
fn idle_timeout_closes_silent_connections() {
    let server = Server::start(&["--idle-timeout", "1"]);
    let mut alice = login(server.addr, "alice");
    assert_eq!(alice.expect_closed(), vec!["*** Idle timeout.".to_string()]);
}

#[test]
fn rate_limit_delays_but_loses_nothing() {
    let server = Server::start(&["--rate", "10", "--burst", "5"]);
    let mut bob = login(server.addr, "bob");
    let mut alice = login_seen_by(server.addr, "alice", &mut [&mut bob]);
    // The budget left after the sync probes and logins does not matter: 25 lines over a burst
    // of 5 at 10 per second take about 2 s, within the read deadlines.
    let mut burst = String::new();
    for i in 0..25 {
        burst.push_str(&format!("flood {i}\r\n"));
    }
    let begin = Instant::now();
    alice.send(burst.as_bytes());
    for i in 0..25 {
        bob.expect_line(&chat("alice", &format!("flood {i}")));
    }
    assert!(
        begin.elapsed() >= Duration::from_millis(1000),
        "25 lines with --rate 10 --burst 5 were all relayed in {:?}: no rate limit",
        begin.elapsed()
    );
    alice.expect_silence();
}

#[test]
fn slow_reader_is_disconnected_and_others_are_told() {
    let server = Server::start(&["--sendq", "4096"]);
    let mut alice = login(server.addr, "alice");
    // bob never reads.
    let _bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    let stop = Arc::new(AtomicBool::new(false));
    let flood = support::flood(alice.writer(), Arc::clone(&stop));
    // Nothing else is sent to alice before the notice, which can take a while: every line
    // alice sends must go through the server before bob's queue passes the limit.
    let result = match alice.try_read_line(Duration::from_secs(15)) {
        Ok(line) if line == "*** bob left #lobby (too slow)" => Ok(()),
        Ok(line) => Err(format!("unexpected line {line:?}")),
        Err(e) => Err(e),
    };
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().expect("writer thread");
    if let Err(e) = result {
        panic!("after sending {sent} bytes: {e}");
    }
}

#[test]
fn idle_timeout_is_announced_to_the_room() {
    let server = Server::start(&["--idle-timeout", "1"]);
    let mut alice = login(server.addr, "alice");
    let mut bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    // bob stays active (whispers to himself, one at a time) until he hears alice leave.
    let notice = "*** alice left #lobby (idle timeout)";
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut heard = false;
    while !heard {
        assert!(Instant::now() < deadline, "bob never heard {notice:?}");
        bob.send_line("/w bob ping");
        let mut answers = 0;
        while answers < 2 {
            let line = bob.read_line();
            if line == notice {
                heard = true;
            } else if line == "*bob* ping" || line == "-> *bob* ping" {
                answers += 1;
            } else {
                panic!("bob got unexpected line {line:?}");
            }
        }
    }
    assert_eq!(alice.expect_closed(), vec!["*** Idle timeout.".to_string()]);
    bob.expect_silence();
}
