//! The Redis log client against a real `redis-server`, driven by a real `mio` loop.
//!
//! Every wait runs the loop until the expected event arrives or a deadline passes; nothing
//! sleeps to synchronise. The fault tests pause, kill or restart the server they started.

#[path = "support/redis.rs"]
mod redis_support;

use bytes::Bytes;
use mio::{Events, Poll, Token};
use natter::net::redis::{LogEvent, RedisLog, Start, StreamId};
use redis_protocol::resp2::types::OwnedFrame;
use redis_support::RedisServer;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Deadline for anything that should happen promptly.
const SOON: Duration = Duration::from_secs(10);

/// One node's log and everything it reported.
struct Node {
    log: RedisLog,
    start: Start,
    entries: Vec<(StreamId, Bytes)>,
    /// Every event but entries, in order, as short names ("stalled", "restarted", ...).
    others: Vec<String>,
    /// Where each non-entry event fell: the number of entries delivered before it.
    others_at: Vec<usize>,
    snapshots: Vec<(StreamId, bool)>,
}

/// Several nodes' logs in one `mio` loop (node i has tokens 2i and 2i+1).
struct Loop {
    poll: Poll,
    events: Events,
    nodes: Vec<Node>,
}

impl Loop {
    fn new() -> Loop {
        Loop {
            poll: Poll::new().unwrap(),
            events: Events::with_capacity(64),
            nodes: Vec::new(),
        }
    }

    /// Connects one more node to `addr`, cluster `cluster`; returns its index.
    fn add(&mut self, addr: &str, cluster: &str) -> usize {
        let i = self.nodes.len();
        let (log, start) = RedisLog::connect(
            addr,
            cluster,
            self.poll.registry(),
            Token(2 * i),
            Token(2 * i + 1),
            Instant::now(),
        )
        .unwrap();
        self.nodes.push(Node {
            log,
            start,
            entries: Vec::new(),
            others: Vec::new(),
            others_at: Vec::new(),
            snapshots: Vec::new(),
        });
        i
    }

    /// One loop turn, blocking at most `max_wait`.
    fn turn(&mut self, max_wait: Duration) {
        let now = Instant::now();
        let due = self
            .nodes
            .iter()
            .filter_map(|n| n.log.next_deadline())
            .min();
        let wait = due.map_or(max_wait, |d| d.saturating_duration_since(now).min(max_wait));
        self.poll.poll(&mut self.events, Some(wait)).unwrap();
        let now = Instant::now();
        for event in self.events.iter() {
            let Token(t) = event.token();
            self.nodes[t / 2].log.handle_ready(event.token(), now);
        }
        for node in &mut self.nodes {
            if node.log.next_deadline().is_some_and(|d| d <= now) {
                node.log.handle_timeout(now);
            }
            while let Some(event) = node.log.poll_event() {
                node.record(event);
            }
            node.log.flush(now);
        }
    }

    /// Runs the loop until `done` holds; panics with `what` after `limit`.
    fn run_until(&mut self, limit: Duration, what: &str, done: impl Fn(&Loop) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            let now = Instant::now();
            assert!(now < deadline, "timed out waiting for {what}");
            self.turn(deadline - now);
        }
    }

    /// Runs the loop for `span` of wall time (for "nothing happens in this span" checks).
    fn run_for(&mut self, span: Duration) {
        let end = Instant::now() + span;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.turn(left);
        }
    }
}

impl Node {
    fn record(&mut self, event: LogEvent) {
        let name = match event {
            LogEvent::Entry { id, payload } => {
                self.entries.push((id, payload));
                return;
            }
            LogEvent::SnapshotWritten { id, stored } => {
                self.snapshots.push((id, stored));
                return;
            }
            LogEvent::Stalled => "stalled".to_owned(),
            LogEvent::Resumed => "resumed".to_owned(),
            LogEvent::Restarted => "restarted".to_owned(),
            LogEvent::Warning(e) => format!("warning: {e}"),
        };
        self.others.push(name);
        self.others_at.push(self.entries.len());
    }

    fn count(&self, name: &str) -> usize {
        self.others.iter().filter(|o| o.as_str() == name).count()
    }

    fn payloads(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(_, p)| String::from_utf8(p.to_vec()).unwrap())
            .collect()
    }

    fn has_payload(&self, wanted: &str) -> bool {
        self.entries.iter().any(|(_, p)| p == wanted.as_bytes())
    }
}

/// The ids and payloads of the whole stream, read straight from Redis.
fn stream_contents(redis: &RedisServer, cluster: &str) -> Vec<(StreamId, Bytes)> {
    let key = format!("natter:{{{cluster}}}:log");
    let OwnedFrame::Array(entries) = redis.command(&["XRANGE", &key, "-", "+"]) else {
        panic!("XRANGE did not answer an array");
    };
    entries
        .into_iter()
        .map(|entry| match entry {
            OwnedFrame::Array(parts) => match &parts[..] {
                [OwnedFrame::BulkString(id), OwnedFrame::Array(fields)] => {
                    let id = StreamId::from_bytes(id).unwrap();
                    let [OwnedFrame::BulkString(name), OwnedFrame::BulkString(value)] = &fields[..]
                    else {
                        panic!("unexpected fields {fields:?}");
                    };
                    assert_eq!(name, b"p");
                    (id, Bytes::from(value.clone()))
                }
                other => panic!("unexpected entry {other:?}"),
            },
            other => panic!("unexpected entry {other:?}"),
        })
        .collect()
}

/// Asserts that `payloads` holds each of `appended` at least once, and that their first
/// appearances keep the order they were appended in.
fn assert_all_in_order(payloads: &[String], appended: &[String]) {
    let mut seen = HashSet::new();
    let firsts: Vec<&String> = payloads.iter().filter(|p| seen.insert(*p)).collect();
    let mine: Vec<&String> = firsts
        .into_iter()
        .filter(|p| appended.contains(p))
        .collect();
    let wanted: Vec<&String> = appended.iter().collect();
    assert_eq!(
        mine, wanted,
        "every append, first appearances in append order"
    );
}

#[test]
fn appends_from_two_nodes_come_back_in_one_order_to_both() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut cluster = Loop::new();
    let a = cluster.add(&redis.addr(), "order");
    let b = cluster.add(&redis.addr(), "order");
    assert_ne!(
        cluster.nodes[a].start.node_id,
        cluster.nodes[b].start.node_id
    );
    assert!(cluster.nodes[a].start.snapshot.is_none());

    let mut sent_a = Vec::new();
    let mut sent_b = Vec::new();
    for round in 0..50 {
        for k in 0..4 {
            let (pa, pb) = (format!("a{round}.{k}"), format!("b{round}.{k}"));
            cluster.nodes[a]
                .log
                .append(Bytes::from(pa.clone()))
                .unwrap();
            cluster.nodes[b]
                .log
                .append(Bytes::from(pb.clone()))
                .unwrap();
            sent_a.push(pa);
            sent_b.push(pb);
        }
        cluster.turn(Duration::ZERO);
    }
    cluster.run_until(SOON, "400 entries on both nodes", |c| {
        c.nodes.iter().all(|n| n.entries.len() >= 400)
    });

    let (na, nb) = (&cluster.nodes[a], &cluster.nodes[b]);
    assert_eq!(na.entries, nb.entries, "both nodes see one order");
    assert_eq!(na.entries.len(), 400, "nothing twice");
    assert!(na.entries.windows(2).all(|w| w[0].0 < w[1].0), "ids grow");
    assert_eq!(na.entries, stream_contents(&redis, "order"));
    let payloads = na.payloads();
    assert_all_in_order(&payloads, &sent_a);
    assert_all_in_order(&payloads, &sent_b);
    for node in &cluster.nodes {
        assert!(
            node.others.is_empty(),
            "no stall or warning: {:?}",
            node.others
        );
        assert_eq!(
            node.log.pending_append_bytes(),
            0,
            "every append acknowledged"
        );
    }
}

#[test]
fn entries_arrive_exactly_once_across_killed_connections_with_appends_in_flight() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut cluster = Loop::new();
    let a = cluster.add(&redis.addr(), "kill");
    let b = cluster.add(&redis.addr(), "kill");
    let mut sent = Vec::new();
    let mut killed = 0;
    for round in 0..6 {
        for k in 0..100 {
            let p = format!("r{round}.{k}");
            cluster.nodes[a].log.append(Bytes::from(p.clone())).unwrap();
            sent.push(p);
        }
        // In odd rounds Redis holds write commands, so the appends are surely unanswered when
        // their connection dies; in even rounds some may have been stored and acknowledged.
        let hold = round % 2 == 1;
        if hold {
            redis.command(&["CLIENT", "PAUSE", "10000", "WRITE"]);
        }
        cluster.nodes[a].log.flush(Instant::now());
        killed += redis.kill_client_connections();
        if hold {
            assert!(cluster.nodes[a].log.pending_append_bytes() > 0);
            redis.command(&["CLIENT", "UNPAUSE"]);
        }
        let last = sent.last().unwrap().clone();
        cluster.run_until(SOON, "the round's last append", |c| {
            c.nodes.iter().all(|n| n.has_payload(&last))
        });
    }
    assert!(killed >= 6 * 2, "connections were killed ({killed})");

    // Every entry of the stream delivered once, in order, to both nodes.
    let stream = stream_contents(&redis, "kill");
    for node in &cluster.nodes {
        assert_eq!(
            node.entries, stream,
            "each entry exactly once, in log order"
        );
        assert!(
            node.count("stalled") == 0,
            "short outages show nothing: {:?}",
            node.others
        );
        assert!(
            node.others
                .iter()
                .any(|o| o.starts_with("warning: cannot reach Redis at 127.0.0.1:")),
            "the lost connection is reported: {:?}",
            node.others
        );
    }
    // Every append stored at least once, first copies in append order.
    assert_all_in_order(&cluster.nodes[b].payloads(), &sent);
    assert_eq!(cluster.nodes[a].log.pending_append_bytes(), 0);
}

#[test]
fn stalled_after_two_seconds_of_a_paused_redis_and_resumed_after() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut cluster = Loop::new();
    let a = cluster.add(&redis.addr(), "pause");
    cluster.nodes[a]
        .log
        .append(Bytes::from_static(b"before"))
        .unwrap();
    cluster.run_until(SOON, "the first entry", |c| {
        c.nodes[a].has_payload("before")
    });

    // A pause under 2 seconds shows nothing.
    redis.pause();
    cluster.run_for(Duration::from_millis(1000));
    redis.resume();
    cluster.nodes[a]
        .log
        .append(Bytes::from_static(b"short"))
        .unwrap();
    cluster.run_until(SOON, "the entry after a short pause", |c| {
        c.nodes[a].has_payload("short")
    });
    assert!(
        cluster.nodes[a].others.is_empty(),
        "{:?}",
        cluster.nodes[a].others
    );

    let paused_at = Instant::now();
    redis.pause();
    cluster.nodes[a]
        .log
        .append(Bytes::from_static(b"during"))
        .unwrap();
    cluster.run_until(SOON, "Stalled", |c| c.nodes[a].count("stalled") == 1);
    let stalled_after = paused_at.elapsed();
    assert!(
        stalled_after >= Duration::from_millis(1900) && stalled_after < Duration::from_secs(4),
        "Stalled after {stalled_after:?}"
    );
    assert!(cluster.nodes[a].log.is_stalled());

    redis.resume();
    cluster.run_until(SOON, "Resumed and the entry appended while paused", |c| {
        c.nodes[a].count("resumed") == 1 && c.nodes[a].has_payload("during")
    });
    let node = &cluster.nodes[a];
    assert_eq!(node.others, ["stalled", "resumed"]);
    assert_eq!(node.payloads(), ["before", "short", "during"]);
}

#[test]
fn restarted_when_redis_comes_back_empty_and_reading_starts_over() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mut cluster = Loop::new();
    let a = cluster.add(&redis.addr(), "restart");
    let b = cluster.add(&redis.addr(), "restart");
    for i in 0..20 {
        cluster.nodes[a]
            .log
            .append(Bytes::from(format!("old{i}")))
            .unwrap();
    }
    cluster.run_until(SOON, "the old entries", |c| {
        c.nodes.iter().all(|n| n.has_payload("old19"))
    });

    // Gone for about a second: Restarted, but no pause notice.
    redis.kill();
    cluster.run_for(Duration::from_millis(1000));
    redis.start_again();
    cluster.run_until(SOON, "Restarted on both", |c| {
        c.nodes.iter().all(|n| n.count("restarted") == 1)
    });
    // An id far below the old log's: only a reader that started over at 0-0 sees it.
    redis.command(&["XADD", "natter:{restart}:log", "1-1", "p", "early"]);
    cluster.nodes[a]
        .log
        .append(Bytes::from_static(b"mid"))
        .unwrap();
    cluster.run_until(SOON, "the entry after the short outage", |c| {
        c.nodes.iter().all(|n| n.has_payload("mid"))
    });
    for node in &cluster.nodes {
        assert_eq!(node.count("stalled"), 0, "{:?}", node.others);
        assert_eq!(
            node.payloads()[20..],
            ["early", "mid"],
            "the new log from its start"
        );
    }

    // Gone for longer: connection refused until it is back, Stalled after 2 s.
    redis.kill();
    cluster.nodes[b]
        .log
        .append(Bytes::from_static(b"while-down"))
        .unwrap();
    cluster.run_until(SOON, "Stalled on both", |c| {
        c.nodes.iter().all(|n| n.count("stalled") == 1)
    });
    redis.start_again();
    cluster.run_until(SOON, "Restarted again and Resumed on both", |c| {
        c.nodes
            .iter()
            .all(|n| n.count("restarted") == 2 && n.count("resumed") == 1)
    });
    cluster.nodes[a]
        .log
        .append(Bytes::from_static(b"new"))
        .unwrap();
    cluster.run_until(SOON, "entries of the new log", |c| {
        c.nodes
            .iter()
            .all(|n| n.has_payload("new") && n.has_payload("while-down"))
    });

    let stream = stream_contents(&redis, "restart");
    for node in &cluster.nodes {
        let restarts: Vec<usize> = (0..node.others.len())
            .filter(|&i| node.others[i] == "restarted")
            .map(|i| node.others_at[i])
            .collect();
        assert_eq!(
            restarts,
            [20, 22],
            "Restarted comes before any entry of the new log"
        );
        assert_eq!(
            &node.entries[22..],
            &stream[..],
            "the new log, from its start, once"
        );
    }
    assert_eq!(cluster.nodes[b].log.pending_append_bytes(), 0);
}

#[test]
fn a_snapshot_trims_the_log_and_a_later_node_reads_on_from_it() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut cluster = Loop::new();
    let a = cluster.add(&redis.addr(), "snap");
    for i in 0..10 {
        cluster.nodes[a]
            .log
            .append(Bytes::from(format!("e{i}")))
            .unwrap();
    }
    cluster.run_until(SOON, "ten entries", |c| c.nodes[a].entries.len() == 10);
    let id5 = cluster.nodes[a].entries[5].0;
    let id2 = cluster.nodes[a].entries[2].0;

    assert!(cluster.nodes[a].log.write_snapshot(id5, b"state up to e5"));
    cluster.run_until(SOON, "the snapshot stored", |c| {
        !c.nodes[a].snapshots.is_empty()
    });
    assert_eq!(cluster.nodes[a].snapshots, [(id5, true)]);
    let left: Vec<StreamId> = stream_contents(&redis, "snap")
        .iter()
        .map(|e| e.0)
        .collect();
    let expected: Vec<StreamId> = cluster.nodes[a].entries[5..].iter().map(|e| e.0).collect();
    assert_eq!(left, expected, "trimmed below the snapshot's id, exactly");

    // An older snapshot never replaces a newer one.
    assert!(cluster.nodes[a].log.write_snapshot(id2, b"older"));
    cluster.run_until(SOON, "the older snapshot refused", |c| {
        c.nodes[a].snapshots.len() == 2
    });
    assert_eq!(cluster.nodes[a].snapshots[1], (id2, false));

    let b = cluster.add(&redis.addr(), "snap");
    let start = &cluster.nodes[b].start;
    assert_eq!(
        start.snapshot,
        Some((id5, Bytes::from_static(b"state up to e5")))
    );
    assert_eq!(cluster.nodes[b].log.last_id(), id5);
    cluster.nodes[a]
        .log
        .append(Bytes::from_static(b"e10"))
        .unwrap();
    cluster.run_until(SOON, "e10 on the new node", |c| {
        c.nodes[b].has_payload("e10")
    });
    assert_eq!(cluster.nodes[b].payloads(), ["e6", "e7", "e8", "e9", "e10"]);
}

#[test]
fn the_log_works_over_a_unix_socket() {
    let Some(redis) = RedisServer::start_with_unix_socket() else {
        return;
    };
    let path = redis
        .unix_socket
        .as_ref()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let mut cluster = Loop::new();
    let a = cluster.add(&path, "unix");
    let b = cluster.add(&redis.addr(), "unix");
    cluster.nodes[a]
        .log
        .append(Bytes::from_static(b"over unix"))
        .unwrap();
    cluster.nodes[b]
        .log
        .append(Bytes::from_static(b"over tcp"))
        .unwrap();
    cluster.run_until(SOON, "both entries on both nodes", |c| {
        c.nodes.iter().all(|n| n.entries.len() == 2)
    });
    assert_eq!(cluster.nodes[a].entries, cluster.nodes[b].entries);

    // The path is named as given when nothing listens there.
    let missing = format!("{path}.missing");
    let poll = Poll::new().unwrap();
    let err = RedisLog::connect(
        &missing,
        "x",
        poll.registry(),
        Token(0),
        Token(1),
        Instant::now(),
    )
    .err()
    .expect("no socket there");
    let message = err.to_string();
    assert!(
        message.contains(&format!("cannot reach Redis at {missing}")),
        "{message}"
    );
}

#[test]
fn node_ids_are_unique() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut cluster = Loop::new();
    let a = cluster.add(&redis.addr(), "ids");
    cluster.add(&redis.addr(), "ids");
    let mut all: Vec<u64> = cluster.nodes.iter().map(|n| n.start.node_id).collect();
    all.sort();
    assert_eq!(all, [1, 2]);
    assert!(cluster.nodes[a].start.redis_time_ms > 1_600_000_000_000);
}

#[test]
fn start_up_fails_within_five_seconds_naming_the_address_and_reason() {
    // A port nobody listens on: refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let poll = Poll::new().unwrap();
    let started = Instant::now();
    let err = RedisLog::connect(&addr, "x", poll.registry(), Token(0), Token(1), started)
        .err()
        .expect("no Redis there");
    assert!(started.elapsed() < Duration::from_secs(5));
    let message = err.to_string();
    assert!(
        message.contains(&format!("cannot reach Redis at {addr}")) && message.contains("refused"),
        "{message}"
    );

    // A Redis that accepts but does not answer: a timeout, still within 5 seconds.
    let Some(redis) = RedisServer::start() else {
        return;
    };
    redis.pause();
    let started = Instant::now();
    let err = RedisLog::connect(
        &redis.addr(),
        "x",
        poll.registry(),
        Token(0),
        Token(1),
        started,
    )
    .err()
    .expect("a paused Redis does not answer");
    assert!(started.elapsed() < Duration::from_secs(5));
    let message = err.to_string();
    assert!(
        message.contains(&redis.addr()) && message.contains("did not answer"),
        "{message}"
    );
    redis.resume();

    let err = RedisLog::connect(
        "no-port-here",
        "x",
        poll.registry(),
        Token(0),
        Token(1),
        started,
    )
    .err()
    .expect("not an address");
    assert!(err.to_string().contains("no-port-here"), "{err}");
}
