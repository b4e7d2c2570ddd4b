//! `natter-load`: a load generator for the natter chat server, or any server that speaks the
//! line protocol of PROTOCOL.md. It relies only on that contract, never on exact reply texts.
//!
//! Scenarios (`natter-load --help` has every flag):
//! - `idle`: hold N logged-in clients (or N silent at the prompt); server memory per
//!   connection and idle CPU;
//! - `fanout`: R receivers and S senders in one room; deliveries/s, latency, loss, order,
//!   optionally across SIGUSR2 upgrades of the server;
//! - `churn`: connect-login-chat-quit N times; fds and RSS must return to baseline.
//!
//! `idle` and `fanout` also speak IRC (`--proto irc`), for a same-run comparison with an IRC
//! server, and spread clients over several servers (`--addr` given several times, e.g. the
//! nodes of a cluster), reporting the /proc figures per node and summed.
//!
//! Each prints a human table and one `natter-load-result key=value ...` line on stdout;
//! progress and errors go to stderr. Exit codes: 0 ok, 1 failed check/timeout/error, 2 usage.
//!
//! Design: std + mio only, one `Poll` for thousands of non-blocking sockets per process
//! ([`client::Pool`]); every loop is bounded in count and by the global `--timeout`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cli;
mod client;
mod clock;
mod dialect;
mod error;
mod flags;
mod help;
mod lineage;
mod login;
mod proc;
mod scenarios;
mod stats;
#[cfg(test)]
mod testkit;
mod wire;

use cli::Command;
use error::Result;
use stats::Report;
use std::process::ExitCode;

fn main() -> ExitCode {
    clock::start();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(report)) => {
            println!("{}", report.table());
            println!("{}", report.result_line());
            match report.failure() {
                None => ExitCode::SUCCESS,
                Some(why) => {
                    eprintln!("natter-load: check failed: {why}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("natter-load: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(args: &[String]) -> Result<Option<Report>> {
    let cmd = cli::parse(args)?;
    if !matches!(cmd, Command::Help) {
        // Raise the soft open-file limit now (workers too), before any socket is opened.
        scenarios::client_capacity();
    }
    match cmd {
        Command::Help => {
            print!("{}", help::HELP);
            Ok(None)
        }
        Command::Idle(c, o) => scenarios::idle::run(&c, &o).map(Some),
        Command::Fanout(c, o) => scenarios::fanout::run(&c, &o).map(Some),
        Command::Churn(c, o) => scenarios::churn::run(&c, &o).map(Some),
        Command::Worker(c, o) => scenarios::idle::run_worker(&c, &o).map(|()| None),
    }
}
