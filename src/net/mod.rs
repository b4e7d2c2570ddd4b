//! The I/O shell: the only code that touches sockets, signals and the clock.
//!
//! One single-threaded `mio` poll loop ([`Server`], in `event_loop`) owns the listeners, a
//! slab of connections (`conns`) and the pure [`crate::proto::chat::Chat`] core, and carries
//! out what the core asks for. Around it: `signals`, `handover` (the server's side of an
//! upgrade, over the channel of `upgrade`), `ops` (counters and status), [`log`], `notify`
//! (systemd), `metrics` (Prometheus text), [`tls`] (with `tls_loop`, how the loop drives it),
//! [`redis`] and `cluster` (a cluster node's link to its Redis log).

mod cluster;
mod conn_io;
mod conns;
mod event_loop;
mod fd_limit;
mod handover;
mod listener;
pub mod log;
pub mod metrics;
pub(crate) mod notify;
mod ops;
mod peer;
pub mod redis;
mod signals;
#[cfg(test)]
pub(crate) mod test_fds;
pub mod tls;
mod tls_loop;
pub(crate) mod upgrade;

pub use cluster::ClusterError;
pub use event_loop::{Server, ServerError};
pub use peer::peer_of;

impl Server {
    /// Starts the server: takes over from a running one when this process was started for an
    /// upgrade (SIGUSR2), otherwise binds every address.
    pub fn start(config: crate::config::Config) -> Result<Server, ServerError> {
        match upgrade::Takeover::detect() {
            Ok(Some(takeover)) => Server::take_over(config, takeover),
            Ok(None) => Server::bind(config),
            Err(e) => Err(ServerError::Takeover(e.to_string())),
        }
    }
}
