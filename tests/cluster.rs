//! Several real nodes and one real `redis-server` are one chat: a scripted session over three
//! nodes gives every client the same bytes as the same session on one server; clusters with
//! different names on one Redis are different chats; a node that cannot reach Redis exits.
//!
//! The tests start their own `redis-server` (no persistence, a free loopback port, stopped by
//! PID); without one installed they are skipped with a loud line, except in CI where they fail.

#[path = "support/cluster.rs"]
mod cluster_support;
#[path = "support/redis.rs"]
mod redis_support;
mod support;

use cluster_support::{node, probe};
use redis_support::RedisServer;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use support::{Client, Server, run_natter};

/// One client per entry: which server (index into the addresses) it connects to.
const CLIENTS: [usize; 6] = [0, 1, 2, 0, 1, 2];

/// The session: (client, line). Nicknames collide across nodes, guests log in on several
/// nodes, rooms fill past `--quiet-above 3`, whispers cross nodes, `/who` and `/rooms` answer
/// at their place in the order, and one client quits.
const SCRIPT: &[(usize, &str)] = &[
    (0, "alice"),
    (1, "Alice"),
    (1, "bob"),
    (2, ""),
    (3, "carol"),
    (4, "BOB"),
    (4, "dave"),
    (5, ""),
    (0, "hello everyone"),
    (1, "/me waves"),
    (2, "/w alice hi from a guest"),
    (0, "/w nobody hi"),
    (3, "/join Rust"),
    (4, "/join #rust"),
    (5, "/join RUST"),
    (2, "/join rust"),
    (2, "in rust now"),
    (0, "/rooms"),
    (3, "/who"),
    (4, "/nick carol"),
    (4, "/nick Dave2"),
    (3, "/nick x"),
    (1, "/join den"),
    (1, "/rooms"),
    (0, "/who"),
    (5, "/quit see you"),
    (2, "/who"),
    (3, "//slash text"),
    (0, "/w guest1 psst"),
    (1, "/join lobby"),
    (4, "/join lobby"),
    (0, "/who"),
    (2, "/rooms"),
];

/// Runs the script with the clients spread over `addrs`; returns every byte each received.
fn run_script(addrs: &[SocketAddr]) -> Vec<Vec<u8>> {
    let mut clients: Vec<Client> = CLIENTS
        .iter()
        .map(|&s| {
            let mut c = Client::connect(addrs[s % addrs.len()]);
            c.skip_banner();
            c
        })
        .collect();
    let mut gone = vec![false; clients.len()];
    for (step, &(who, line)) in SCRIPT.iter().enumerate() {
        clients[who].send_line(line);
        if clients[who].nick.is_empty() {
            await_login(&mut clients[who]);
        } else if line.starts_with("/quit") {
            clients[who].expect_closed();
            gone[who] = true;
        } else if line.starts_with("/nick ") {
            let c = &mut clients[who];
            let reply = c.read_until(|l| l.starts_with("*** You are now") || l.starts_with("!!!"));
            if let Some(rest) = reply.strip_prefix("*** You are now known as ") {
                c.nick = rest.trim_end_matches('.').to_string();
            }
        }
        // The sender first, then everyone: each probe comes back after all the step caused.
        let tag = format!("step-{step}");
        if !gone[who] && !clients[who].nick.is_empty() {
            probe(&mut clients[who], &tag);
        }
        for (i, c) in clients.iter_mut().enumerate() {
            if i != who && !gone[i] && !c.nick.is_empty() {
                probe(c, &tag);
            }
        }
    }
    clients.iter().map(|c| c.received().to_vec()).collect()
}

/// After a line at the prompt: reads the welcome (and learns the nickname) or the error and
/// the prompt again.
fn await_login(c: &mut Client) {
    loop {
        match c.read_line_or_prompt() {
            None => return,
            Some(line) => {
                if let Some(rest) = line.strip_prefix("*** Welcome, ") {
                    c.nick = rest.split('!').next().unwrap_or("").to_string();
                    return;
                }
            }
        }
    }
}

#[test]
fn three_nodes_give_every_client_the_bytes_of_one_server() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let flags = ["--quiet-above", "3"];
    let alone = Server::start(&flags);
    let reference = run_script(&[alone.addr]);
    let nodes: Vec<Server> = (0..3).map(|_| node(&redis, "same", &flags)).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let clustered = run_script(&addrs);
    for (i, (a, b)) in reference.iter().zip(&clustered).enumerate() {
        assert_eq!(
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b),
            "client {i} (on node {}) got different bytes",
            CLIENTS[i]
        );
    }
    // The script did what it says: a taken name across nodes, guests, a quiet big room.
    let text: Vec<String> = reference
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    assert!(text[1].contains("!!! The nickname Alice is already taken.\r\nYour nickname: "));
    assert!(text[2].contains("*** Welcome, guest1!") && text[5].contains("*** Welcome, guest2!"));
    assert!(text[3].contains("*** dave joined #Rust\r\n"));
    assert!(!text[3].contains("guest1 joined #Rust"), "quiet above 3");
    assert!(text[0].contains("*guest1* hi from a guest\r\n"));
}

#[test]
fn clusters_with_different_names_on_one_redis_are_different_chats() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let red = node(&redis, "red", &[]);
    let blue = node(&redis, "blue", &[]);
    let mut a = support::login(red.addr, "alice");
    let mut b = support::login(blue.addr, "alice");
    b.send_line("/who");
    b.expect_line("*** 1 user in #lobby: alice");
    a.send_line("/who");
    a.expect_line("*** 1 user in #lobby: alice");
}

#[test]
fn a_node_that_cannot_reach_redis_exits_1_within_5_seconds_naming_the_address() {
    // Refused at once.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = closed.local_addr().unwrap().to_string();
    drop(closed);
    // Accepted by the kernel but never answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    for addr in [
        refused.as_str(),
        silent_addr.as_str(),
        "/nonexistent/redis.sock",
    ] {
        let started = Instant::now();
        let out = run_natter(
            &["--listen", "127.0.0.1:0", "--redis", addr],
            Duration::from_secs(10),
        );
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{addr}: {stderr}");
        assert!(took < Duration::from_secs(5), "{addr}: took {took:?}");
        assert!(stderr.contains(addr), "{addr} not named: {stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
    }
    drop(silent);
}

#[test]
fn bad_cluster_flags_are_usage_errors() {
    let out = run_natter(&["--cluster", "a{b}"], Duration::from_secs(5));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cluster"));
}
