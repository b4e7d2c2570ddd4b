//! The `natter` binary: flags to [`natter::config::Config`], then the server loop.
#![forbid(unsafe_code)]

use natter::config::{self, Action};
use natter::net::log;
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
    log::init(config.log_level);
    let server = match natter::net::Server::start(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("natter: {e}");
            return ExitCode::from(1);
        }
    };
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natter: {e}");
            ExitCode::from(1)
        }
    }
}
