//! The `natter` binary: flags to [`natter::config::Config`], then the server loop.
#![forbid(unsafe_code)]

use natter::config::{self, Action};
use std::process::ExitCode;

fn main() -> ExitCode {
    let action = match config::parse_args(std::env::args_os().skip(1).collect()) {
        Ok(action) => action,
        Err(e) => {
            eprintln!("natter: {e}\n\n{}", config::USAGE);
            return ExitCode::from(2);
        }
    };
    let config = match action {
        Action::Help => {
            print!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Action::Version => {
            println!("natter {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Action::Run(config) => *config,
    };
    let server = match natter::net::Server::bind(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("natter: {e}");
            return ExitCode::from(1);
        }
    };
    for addr in server.local_addrs() {
        eprintln!("natter: listening on {addr}");
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natter: {e}");
            ExitCode::from(1)
        }
    }
}
