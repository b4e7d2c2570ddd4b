//! The poll loop: waits for readiness, hands what happened to the chat core, and carries out
//! what [`Chat::poll_output`] asks for (the drain rule of the crate docs).

use super::cluster::{ClusterError, ClusterLink};
use super::conns::{Conns, RESERVED_TOKENS, id_of};
use super::fd_limit;
use super::handover::Upgrade;
use super::listener::{CHAT_BACKLOG, Listener, listen};
use super::log::{Level, log};
use super::metrics::MetricsListener;
use super::notify::Notifier;
use super::signals::{Signal, SignalSource};
use super::tls::{MAX_RECORD_LEN, TlsConfigError};
use super::tls_loop::{TlsShell, tls_tag};
use crate::config::Config;
use crate::proto::chat::{Chat, ConnId, Output};
use mio::event::Event;
use mio::{Events, Poll, Token};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Size of the one read buffer shared by every connection (a TLS record fits).
const SCRATCH: usize = 17 * 1024;
const _: () = assert!(SCRATCH >= MAX_RECORD_LEN);
/// Reads from one connection per turn before others get their turn.
pub(super) const READS_PER_TURN: usize = 8;
/// Most slices in one vectored write (a connection with more is written again at once).
pub(super) const MAX_IOV: usize = 64;
/// How long to wait before accepting again after running out of file descriptors (a close of
/// our own resumes accepting at once).
pub(super) const ACCEPT_RETRY: Duration = Duration::from_millis(500);

pub(super) const SIGNAL_TOKEN: Token = Token(usize::MAX);
pub(super) const UPGRADE_TOKEN: Token = Token(usize::MAX - 1);
pub(super) const METRICS_TOKEN: Token = Token(usize::MAX - 64);
pub(super) const LISTENER_BASE: usize = RESERVED_TOKENS;

/// Why the server could not start or keep running.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The metrics address could not be bound.
    #[error("{0}")]
    Metrics(#[from] super::metrics::MetricsError),
    /// The TLS certificate or key cannot be used.
    #[error("{0}")]
    Tls(#[from] TlsConfigError),
    /// The poll instance or the signal handlers could not be set up.
    #[error("cannot set up the event loop: {0}")]
    Setup(io::Error),
    /// Waiting for events failed.
    #[error("the event loop failed: {0}")]
    Poll(io::Error),
    /// This process was started for an upgrade and could not take over.
    #[error("cannot take over from the running server: {0}")]
    Takeover(String),
    /// A cluster node could not join its cluster (`--redis`).
    #[error("{0}")]
    Cluster(#[from] ClusterError),
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    pub(super) poll: Poll,
    pub(super) listeners: Vec<Listener>,
    pub(super) signals: SignalSource,
    pub(super) conns: Conns,
    pub(super) chat: Chat,
    pub(super) scratch: Vec<u8>,
    /// Connections to read again this turn: more input than one turn reads, or held input
    /// that was released.
    pub(super) backlog: Vec<ConnId>,
    /// The core's next deadline, from the last drain.
    pub(super) deadline: Option<Instant>,
    /// Set while accepting is paused because descriptors ran out.
    pub(super) accept_retry_at: Option<Instant>,
    pub(super) shutdown_grace: Duration,
    pub(super) shutdown_at: Option<Instant>,
    /// The `--motd` file, read again on SIGHUP.
    pub(super) motd: Option<PathBuf>,
    pub(super) upgrade: Upgrade,
    pub(super) notifier: Notifier,
    pub(super) metrics: Option<MetricsListener>,
    /// The TLS configuration and handshake deadlines, with `--tls-listen`.
    pub(super) tls: Option<TlsShell>,
    /// Cluster mode's link to Redis (`--redis`).
    pub(super) cluster: Option<ClusterLink>,
}

impl Server {
    /// Raises the open-file limit, binds every listen address and sets up signals.
    pub fn bind(config: Config) -> Result<Server, ServerError> {
        // Before anything is bound: a bad certificate or key ends the start here.
        let tls = TlsShell::load(&config)?;
        let poll = Poll::new().map_err(ServerError::Setup)?;
        let max_clients = resolve_max_clients(&config);
        let mut chat = Chat::new(config.chat_settings(max_clients), Instant::now());
        // Join the cluster before listening: a node that cannot reach Redis serves no one.
        let cluster = match &config.redis {
            Some(addr) => Some(ClusterLink::connect(
                addr,
                &config.cluster,
                poll.registry(),
                &mut chat,
                Instant::now(),
            )?),
            None => None,
        };
        let mut listeners = Vec::new();
        let plain = config.listen.iter().map(|&a| (a, false));
        for (addr, is_tls) in plain.chain(config.tls_listen.iter().map(|&a| (a, true))) {
            let socket =
                listen(addr, CHAT_BACKLOG).map_err(|source| ServerError::Bind { addr, source })?;
            listeners.push(Listener::new(socket, is_tls));
        }
        let metrics = match config.metrics_listen {
            Some(addr) => Some(MetricsListener::bind(addr, poll.registry(), METRICS_TOKEN)?),
            None => None,
        };
        let mut server = Server::assemble(
            poll,
            listeners,
            metrics,
            Conns::with_capacity(max_clients),
            chat,
            tls,
            &config,
        )?;
        server.cluster = cluster;
        Ok(server)
    }

    /// Puts the parts together and registers the listeners and signals.
    pub(super) fn assemble(
        poll: Poll,
        mut listeners: Vec<Listener>,
        metrics: Option<MetricsListener>,
        conns: Conns,
        chat: Chat,
        tls: Option<TlsShell>,
        config: &Config,
    ) -> Result<Server, ServerError> {
        for (i, l) in listeners.iter_mut().enumerate() {
            l.register(poll.registry(), Token(LISTENER_BASE + i))
                .map_err(ServerError::Setup)?;
        }
        let signals =
            SignalSource::new(poll.registry(), SIGNAL_TOKEN).map_err(ServerError::Setup)?;
        Ok(Server {
            poll,
            listeners,
            signals,
            conns,
            chat,
            scratch: vec![0; SCRATCH],
            backlog: Vec::new(),
            deadline: None,
            accept_retry_at: None,
            shutdown_grace: config.shutdown_grace,
            shutdown_at: None,
            motd: config.motd.clone(),
            upgrade: Upgrade::None,
            notifier: Notifier::from_env(),
            metrics,
            tls,
            cluster: None,
        })
    }

    /// The addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(Listener::local_addr)
            .collect()
    }

    /// The metrics address actually bound, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.local_addr().ok())
    }

    /// Runs until SIGINT or SIGTERM, then flushes for up to the shutdown grace and returns.
    /// An upgrade that commits ends this process from inside (exit status 0).
    pub fn run(mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        for l in &self.listeners {
            if let Some(addr) = l.local_addr() {
                log!(Level::Info, "listening on {addr}{}", tls_tag(l.is_tls()));
            }
        }
        if let Some(addr) = self.metrics_addr() {
            log!(Level::Info, "metrics on http://{addr}/metrics");
        }
        self.notifier.ready(self.status(), Instant::now());
        // A core taken over in an upgrade may have output already (the upgrade notice, what the
        // old process could not write): the first poll must not wait before it is written.
        self.drain(Instant::now());
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(ServerError::Poll(e));
            }
            let now = Instant::now();
            for event in events.iter() {
                self.dispatch(event, now);
            }
            if self.upgrade.is_frozen() {
                // Frozen for a hand-over: only signals and the channel are served.
                self.poll_upgrade(now);
                continue;
            }
            self.turn(now);
            if let Some(deadline) = self.shutdown_at
                && (now >= deadline || self.chat.queued_bytes() == 0 && !self.tls_output_pending())
            {
                self.close_all_tls();
                log!(Level::Info, "shut down");
                return Ok(());
            }
        }
    }

    /// The rest of a loop turn, after the events: held-over reads, timers, then the drain.
    fn turn(&mut self, now: Instant) {
        for id in std::mem::take(&mut self.backlog) {
            self.read(id, now, true);
            self.drain_if_full(now);
        }
        if self.deadline.is_some_and(|d| d <= now) {
            self.chat.handle_timeout(now);
        }
        if self.tls.is_some() {
            self.tend_handshakes(now);
        }
        self.pump_log(now);
        if self.accept_retry_at.is_some_and(|t| t <= now) {
            self.resume_accepting(now);
        }
        if let Some(m) = &mut self.metrics
            && m.next_deadline().is_some_and(|d| d <= now)
        {
            m.handle_timeout(now);
        }
        if self.upgrade.deadline().is_some_and(|d| d <= now) || self.upgrade.is_quiescing() {
            self.poll_upgrade(now);
        }
        self.drain(now);
        if let Some(link) = &mut self.cluster {
            link.flush(now);
        }
        let status = self.status();
        self.notifier.status(status, now);
    }

    fn dispatch(&mut self, event: &Event, now: Instant) {
        match event.token() {
            SIGNAL_TOKEN => self.on_signals(now),
            UPGRADE_TOKEN => self.poll_upgrade(now),
            _ if self.upgrade.is_frozen() => {}
            t if ClusterLink::owns(t) => {
                if let Some(link) = &mut self.cluster {
                    link.handle_ready(t, now);
                }
            }
            t if self.metrics.as_ref().is_some_and(|m| m.owns(t)) => {
                let counters = self.counters();
                if let Some(m) = &mut self.metrics {
                    m.handle_event(self.poll.registry(), t, now, &counters);
                }
            }
            Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE, now),
            token => {
                let id = id_of(token);
                if event.is_writable() {
                    self.on_writable(id, now);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read(id, now, event.is_read_closed() || event.is_error());
                }
                self.drain_if_full(now);
            }
        }
    }

    fn on_signals(&mut self, now: Instant) {
        for signal in self.signals.pending() {
            match signal {
                Signal::Stop => self.begin_shutdown(now),
                Signal::Reload => self.reload(),
                Signal::Counters => log!(Level::Info, "{}", self.counters()),
                Signal::Upgrade => self.begin_upgrade(now),
            }
        }
    }

    /// How long the next poll may block: until the earliest deadline, or forever.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.backlog.is_empty() && !self.upgrade.is_frozen() {
            return Some(Duration::ZERO);
        }
        [
            self.deadline,
            self.accept_retry_at,
            self.shutdown_at,
            self.upgrade.deadline(),
            self.notifier.next_deadline(),
            self.metrics
                .as_ref()
                .and_then(MetricsListener::next_deadline),
            self.tls_deadline(),
            self.cluster.as_ref().and_then(ClusterLink::next_deadline),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|d| d.saturating_duration_since(now))
    }

    /// Carries out everything the core asks for, until it says what to wait for.
    pub(super) fn drain(&mut self, now: Instant) {
        loop {
            match self.chat.poll_output() {
                Output::Write(id) => self.write(id, now),
                Output::Close(closed) => self.finish_close(closed, now),
                // Held input was released: read again this turn (epoll will not say so).
                Output::Resume(id) => self.backlog.push(id),
                out @ (Output::Publish(_) | Output::StoreSnapshot { .. } | Output::Resync) => {
                    self.cluster_output(out, now)
                }
                Output::Timeout(deadline) => {
                    self.deadline = deadline;
                    return;
                }
            }
        }
    }

    /// Writes early when this turn has already queued a lot of output.
    pub(super) fn drain_if_full(&mut self, now: Instant) {
        if self.chat.wants_flush() {
            self.drain(now);
        }
    }

    pub(super) fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown_at.is_some() {
            return;
        }
        self.abandon_upgrade("the server is shutting down");
        log!(
            Level::Info,
            "shutting down: flushing for up to {:?}",
            self.shutdown_grace
        );
        self.notifier.stopping();
        self.shutdown_at = Some(now + self.shutdown_grace);
        for l in &mut self.listeners {
            l.deregister(self.poll.registry());
        }
        self.listeners.clear();
        self.close_handshaking_tls(now);
        self.chat.handle_shutdown();
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shutdown_at.is_some()
    }

    /// SIGHUP: reads the MOTD file (and the TLS certificate and key) again; a file that cannot
    /// be read keeps the old banner (or pair).
    fn reload(&mut self) {
        self.reload_tls();
        let Some(path) = &self.motd else {
            return log!(Level::Info, "reload: no --motd file to read");
        };
        match crate::config::read_motd(path) {
            Ok(lines) => {
                self.chat.set_banner(&lines);
                log!(
                    Level::Info,
                    "reload: read {} ({} lines)",
                    path.display(),
                    lines.len()
                );
            }
            Err(e) => log!(Level::Warn, "reload: {e}; keeping the previous banner"),
        }
    }
}

/// `--max-clients`, or what the open-file limit allows (raising it first).
pub(super) fn resolve_max_clients(config: &Config) -> usize {
    let listeners = config.listen.len()
        + config.tls_listen.len()
        + usize::from(config.metrics_listen.is_some());
    let fd_capacity = fd_limit::raise_and_derive_max_clients(listeners);
    config.max_clients.unwrap_or(fd_capacity)
}
