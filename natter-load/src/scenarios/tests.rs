//! The scenarios end to end, through real loopback sockets, against testkit's fake servers:
//! both dialects, clients spread over several listeners of one chat, silent connections at
//! the prompt, and upgrades of a process that replaces itself on SIGUSR2.

use crate::cli::{self, Command};
use crate::dialect::Dialect;
use crate::stats::Report;
use crate::testkit::{Fake, Respawner};

fn run(args: &str) -> Report {
    let v: Vec<String> = args.split_whitespace().map(String::from).collect();
    match cli::parse(&v).unwrap() {
        Command::Fanout(c, o) => super::fanout::run(&c, &o).unwrap(),
        Command::Idle(c, o) => super::idle::run(&c, &o).unwrap(),
        other => panic!("not a scenario this test runs: {other:?}"),
    }
}

fn num(r: &Report, key: &str) -> f64 {
    let v = r
        .value(key)
        .unwrap_or_else(|| panic!("no {key} in {}", r.result_line()));
    v.parse().unwrap()
}

const FAST: &str = "--quiet-ms 50 --timeout 60";

#[test]
fn fanout_spreads_over_the_nodes_of_one_chat() {
    let fake = Fake::start(Dialect::Natter, 2);
    let me = std::process::id();
    let r = run(&format!(
        "fanout -r 5 -s 2 -m 20 --window 4 {FAST} --addr {} --pid {me} --pid {me}",
        fake.addr_flag()
    ));
    assert_eq!(r.failure(), None, "{}", r.result_line());
    assert_eq!(num(&r, "delivered"), 200.0);
    assert_eq!(
        num(&r, "lost") + num(&r, "out_of_order") + num(&r, "duplicates"),
        0.0
    );
    // Per-node CPU, summed (both "nodes" are this process's main thread, which is idle).
    let nodes = num(&r, "node1_cpu_ns") + num(&r, "node2_cpu_ns");
    assert_eq!(num(&r, "cpu_ns"), nodes);
    let last = num(&r, "last_delivery_us");
    assert!(last > 0.0 && last <= num(&r, "last_delivery_max_us"));
    assert!(num(&r, "last_delivery_max_us") <= num(&r, "max_us"));
    // Receivers 0..5 go to nodes 1,2,1,2,1 and senders 0..2 to nodes 1,2.
    let seen = fake.wait_until(|s| s.closed == 7);
    assert_eq!(seen.accepted, vec![4, 3]);
}

#[test]
fn fanout_speaks_irc_and_answers_every_ping() {
    let fake = Fake::start(Dialect::Irc, 1);
    let r = run(&format!(
        "fanout --proto irc -r 4 -s 2 -m 10 --room bench {FAST} --addr {}",
        fake.addr_flag()
    ));
    assert_eq!(r.failure(), None, "{}", r.result_line());
    assert_eq!(r.value("proto"), Some("irc"));
    assert_eq!(num(&r, "delivered"), 80.0);
    assert_eq!(num(&r, "other_lines"), 0.0);
    // Every client got a PING after its JOIN and one when the chat started.
    let seen = fake.wait_until(|s| s.pongs == 12);
    assert_eq!(seen.pongs, 12, "{seen:?}");
}

#[test]
fn idle_at_the_prompt_sends_nothing() {
    let fake = Fake::start(Dialect::Natter, 1);
    let me = std::process::id();
    let r = run(&format!(
        "idle -n 20 --at-prompt --idle-secs 0 {FAST} --addr {} --pid {me}",
        fake.addr_flag()
    ));
    assert_eq!(r.failure(), None, "{}", r.result_line());
    assert_eq!(r.value("at_prompt"), Some("true"));
    assert_eq!(r.value("probe"), Some("ok"));
    assert!(r.value("anon_per_conn_b").is_some());
    // The 20 never said a word; the two probe clients logged in.
    let seen = fake.wait_until(|s| s.closed == 22);
    assert_eq!((seen.closed, seen.closed_silent), (22, 20));
}

#[test]
fn fanout_runs_across_upgrades() {
    let fake = Fake::start(Dialect::Natter, 1);
    let notifier = fake.clone();
    let shell = Respawner::start("upgrades", move |_| notifier.upgraded(1));
    let r = run(&format!(
        "fanout -r 4 -s 2 -m 300 --rate 500 --upgrades 3 --upgrade-gap-ms 20 {FAST} \
         --addr {} --pid {}",
        fake.addr_flag(),
        shell.pid()
    ));
    assert_eq!(r.failure(), None, "{}", r.result_line());
    assert_eq!(num(&r, "upgrades"), 3.0);
    assert_eq!(num(&r, "server_generations"), 4.0);
    assert_eq!(shell.pids().len(), 4);
    assert_eq!(
        num(&r, "lost") + num(&r, "duplicates") + num(&r, "out_of_order"),
        0.0
    );
    assert_eq!(num(&r, "unexpected_lines") + num(&r, "extra_notices"), 0.0);
    assert!(num(&r, "freeze_max_ms") > 0.0);
}

#[test]
fn a_second_notice_for_one_upgrade_fails_the_run() {
    let fake = Fake::start(Dialect::Natter, 1);
    let notifier = fake.clone();
    let shell = Respawner::start("twice", move |_| notifier.upgraded(2));
    let r = run(&format!(
        "fanout -r 3 -s 1 -m 200 --rate 500 --upgrades 1 --upgrade-gap-ms 20 {FAST} \
         --addr {} --pid {}",
        fake.addr_flag(),
        shell.pid()
    ));
    assert_eq!(num(&r, "extra_notices"), 3.0, "{}", r.result_line());
    let why = r.failure().unwrap();
    assert!(
        why.contains("3 extra `*** Server upgraded.` lines"),
        "{why}"
    );
}
