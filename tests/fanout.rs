//! Fan-out in a big room: every message reaches every other member exactly once, in order.

mod support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use support::{Client, Server, login};

const CLIENTS: usize = 200;
const SENDERS: usize = 5;
const PER_SENDER: usize = 40;

/// Parses `<uS> mS-K` into (S, K).
fn parse(line: &str) -> Option<(usize, usize)> {
    let rest = line.strip_prefix("<u")?;
    let (sender, text) = rest.split_once("> ")?;
    let sender: usize = sender.parse().ok()?;
    let (tag_sender, k) = text.strip_prefix('m')?.split_once('-')?;
    if tag_sender.parse::<usize>().ok()? != sender {
        return None;
    }
    Some((sender, k.parse().ok()?))
}

/// Runs one member: senders send their messages (sender 0 in a single write, the others a
/// write per line), then every member reads until it has every message of every other sender.
/// Returns the client so that it stays connected (a member that left would make the others
/// get a leave notice) until every member is done.
fn member(i: usize, mut c: Client, start: Arc<Barrier>) -> Result<(usize, Client), String> {
    start.wait();
    if i < SENDERS {
        if i == 0 {
            let mut burst = String::new();
            for k in 0..PER_SENDER {
                burst.push_str(&format!("m{i}-{k}\r\n"));
            }
            c.send(burst.as_bytes());
        } else {
            for k in 0..PER_SENDER {
                c.send_line(&format!("m{i}-{k}"));
            }
        }
    }
    let expected = if i < SENDERS {
        (SENDERS - 1) * PER_SENDER
    } else {
        SENDERS * PER_SENDER
    };
    let mut next = [0usize; SENDERS];
    let mut got = 0;
    while got < expected {
        let line = c
            .try_read_line(Duration::from_secs(10))
            .map_err(|e| format!("u{i} after {got} of {expected} messages ({next:?}): {e}"))?;
        if line.starts_with("*** ") && line.ends_with(" joined #lobby") {
            // Join notices of members who logged in after this one.
            continue;
        }
        let (s, k) = parse(&line).ok_or_else(|| format!("u{i} got unexpected line {line:?}"))?;
        if s == i || s >= SENDERS {
            return Err(format!("u{i} got {line:?}, which it should not receive"));
        }
        if k != next[s] {
            return Err(format!(
                "u{i} got {line:?} but expected m{s}-{} next from u{s} (lost, duplicated or reordered)",
                next[s]
            ));
        }
        next[s] += 1;
        got += 1;
    }
    // Nothing more (no duplicates after the last expected message).
    c.expect_silence();
    Ok((got, c))
}

#[test]
fn every_message_reaches_every_other_member_once_and_in_order() {
    let begin = Instant::now();
    let server = Server::start(&[]);
    let clients: Vec<Client> = (0..CLIENTS)
        .map(|i| login(server.addr, &format!("u{i}")))
        .collect();
    let start = Arc::new(Barrier::new(CLIENTS));
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let start = Arc::clone(&start);
            thread::Builder::new()
                .name(format!("u{i}"))
                .stack_size(256 * 1024)
                .spawn(move || member(i, c, start))
                .expect("spawn member thread")
        })
        .collect();
    let mut failures = Vec::new();
    let mut deliveries = 0;
    let mut done = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok((n, c))) => {
                deliveries += n;
                done.push(c);
            }
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a member thread panicked".to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} members failed: {failures:#?}",
        failures.len()
    );
    assert_eq!(
        deliveries,
        SENDERS * PER_SENDER * (CLIENTS - 1),
        "total deliveries"
    );
    assert!(
        begin.elapsed() < Duration::from_secs(20),
        "fan-out took {:?}",
        begin.elapsed()
    );
}

#[test]
fn join_notices_reach_every_member_in_a_big_room() {
    let server = Server::start(&[]);
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..50 {
        let c = login(server.addr, &format!("j{i}"));
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        for j in i + 1..50 {
            c.expect_line(&format!("*** j{j} joined #lobby"));
        }
        c.expect_silence();
    }
}
