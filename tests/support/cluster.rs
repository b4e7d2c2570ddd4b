//! Cluster tests' helpers: nodes of one cluster on a test `redis-server`, and reads with the
//! longer deadlines that node deaths need. Included by path beside `mod support;`.

#![allow(dead_code)]

use crate::redis_support::RedisServer;
use crate::support::{Client, Server};
use std::time::{Duration, Instant};

/// Starts a node of cluster `name` on `redis` (with the support's base flags: a free loopback
/// port, no flood control, no per-address limit) plus `extra`.
pub fn node(redis: &RedisServer, name: &str, extra: &[&str]) -> Server {
    let addr = redis.addr();
    let mut args = vec!["--redis", addr.as_str(), "--cluster", name];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Reads lines until one satisfies `pred` (others are skipped), within `limit`.
#[track_caller]
pub fn wait_for_line(c: &mut Client, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = c.try_read_line(left).unwrap_or_else(|why| panic!("{why}"));
        if pred(&line) {
            return line;
        }
    }
}

/// Reads the next line within `limit` and checks it.
#[track_caller]
pub fn expect_line_within(c: &mut Client, limit: Duration, expected: &str) {
    let got = c.try_read_line(limit).unwrap_or_else(|why| panic!("{why}"));
    assert_eq!(got, expected, "[{}]", c.nick);
}

/// Sends a whisper to oneself tagged `tag` and reads up to its echo: everything the client's
/// node applied before it has been received.
#[track_caller]
pub fn probe(c: &mut Client, tag: &str) {
    let nick = c.nick.clone();
    c.send_line(&format!("/w {nick} {tag}"));
    let echo = format!("-> *{nick}* {tag}");
    wait_for_line(c, Duration::from_secs(10), |l| l == echo);
}

/// The names in a `/who` reply, sorted.
pub fn who_names(line: &str) -> Vec<String> {
    let mut names: Vec<String> = line
        .split_once(": ")
        .map(|(_, names)| names.split(", ").map(str::to_string).collect())
        .unwrap_or_default();
    names.sort();
    names
}
