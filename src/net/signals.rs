//! Signals, as the loop sees them: delivered through a self-pipe that the poll watches.

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;
use std::io;

/// What a signal asks the server to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// SIGINT or SIGTERM: shut down (abandoning an upgrade that has not committed).
    Stop,
    /// SIGHUP: read the MOTD file (and the TLS certificate and key) again.
    Reload,
    /// SIGUSR1: log one line of counters.
    Counters,
    /// SIGUSR2: upgrade to a fresh start of the program file.
    Upgrade,
}

/// The signals the server handles.
pub(crate) struct SignalSource {
    signals: Signals,
}

impl SignalSource {
    /// Installs the handlers and registers the self-pipe under `token`.
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<SignalSource> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(SignalSource { signals })
    }

    /// The signals that arrived since the last call, in a fixed order (at most one of each).
    pub(crate) fn pending(&mut self) -> Vec<Signal> {
        let mut got: Vec<Signal> = self
            .signals
            .pending()
            .filter_map(|s| match s {
                SIGINT | SIGTERM => Some(Signal::Stop),
                SIGHUP => Some(Signal::Reload),
                SIGUSR1 => Some(Signal::Counters),
                SIGUSR2 => Some(Signal::Upgrade),
                _ => None,
            })
            .collect();
        got.sort_by_key(|s| *s as u8);
        got.dedup();
        got
    }
}
