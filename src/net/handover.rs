//! The server's side of an upgrade (SIGUSR2): starting the new process and handing everything
//! over (old process), or taking everything over (new process). The channel, its messages and
//! the three-step commit are in [`super::upgrade`]; the state is the core's snapshot.

use super::cluster::ClusterLink;
use super::conns::{Conns, id_of_key, key_of, token_of};
use super::event_loop::{METRICS_TOKEN, Server, ServerError, UPGRADE_TOKEN, resolve_max_clients};
use super::listener::Listener;
use super::log::{Level, log};
use super::metrics::MetricsListener;
use super::tls_loop::TlsShell;
use super::upgrade::{FdTag, Handover, Program, Progress, Received, Takeover, UpgradeError};
use crate::config::Config;
use crate::proto::chat::Chat;
use crate::proto::chat::snapshot::{READABLE_VERSIONS, STATE_VERSION};
use mio::{Interest, Poll};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// The listener index the metrics listener travels under.
const METRICS_INDEX: u32 = u32::MAX;
/// How long a cluster node waits for its events on their way through the log to come back
/// before it gives an upgrade up (new events wait meanwhile).
const QUIESCE_LIMIT: Duration = Duration::from_millis(500);

/// Where an upgrade stands in the old process.
#[derive(Default)]
pub(crate) enum Upgrade {
    /// None under way.
    #[default]
    None,
    /// The new process is starting; this one serves as usual meanwhile.
    Starting(Handover),
    /// Cluster mode: the new process waits for the state, and this one waits (at most until
    /// `until`) for its events on their way through the log to come back; new events wait.
    Quiescing {
        handover: Handover,
        program: String,
        until: Instant,
    },
    /// Everything is sent: this one touches no client socket until the new one commits (then
    /// it exits) or fails (then it goes on).
    Frozen(Handover, Instant),
}

impl Upgrade {
    pub(crate) fn is_frozen(&self) -> bool {
        matches!(self, Upgrade::Frozen(..))
    }

    pub(crate) fn is_quiescing(&self) -> bool {
        matches!(self, Upgrade::Quiescing { .. })
    }

    /// When the loop must call [`Server::poll_upgrade`] even without an event.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            Upgrade::None => None,
            Upgrade::Starting(h) | Upgrade::Frozen(h, _) => Some(h.deadline()),
            Upgrade::Quiescing {
                handover, until, ..
            } => Some(handover.deadline().min(*until)),
        }
    }
}

impl Server {
    /// SIGUSR2: starts the program file again for an upgrade (ignored while an upgrade or a
    /// shutdown is under way).
    pub(super) fn begin_upgrade(&mut self, now: Instant) {
        if !matches!(self.upgrade, Upgrade::None) || self.is_shutting_down() {
            return log!(
                Level::Info,
                "upgrade: ignored (one is under way, or shutting down)"
            );
        }
        let program = match Program::capture() {
            Ok(p) => p,
            Err(e) => return log!(Level::Warn, "upgrade failed: {e}"),
        };
        let mut handover = match Handover::start(&program, STATE_VERSION, now) {
            Ok(h) => h,
            Err(e) => return log!(Level::Warn, "upgrade failed: {e}"),
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(handover.channel(), UPGRADE_TOKEN, interest)
        {
            handover.abandon();
            return log!(Level::Warn, "upgrade failed: cannot watch the channel: {e}");
        }
        let (path, pid) = (program.path().display(), handover.pid());
        log!(Level::Info, "upgrade: started {path} as pid {pid}");
        self.upgrade = Upgrade::Starting(handover);
    }

    /// Moves the hand-over on (channel readiness, or its deadline).
    pub(super) fn poll_upgrade(&mut self, now: Instant) {
        let Server {
            upgrade,
            listeners,
            conns,
            metrics,
            ..
        } = self;
        let result = match upgrade {
            Upgrade::None => return,
            Upgrade::Starting(h)
            | Upgrade::Frozen(h, _)
            | Upgrade::Quiescing { handover: h, .. } => {
                h.poll(now, |tag| resolve(listeners, conns, metrics.as_ref(), tag))
            }
        };
        self.on_progress(result, now);
        self.poll_quiescing(now);
    }

    /// Cluster mode: freezes once nothing of this node is on its way through the log, or
    /// gives the upgrade up when that takes too long.
    fn poll_quiescing(&mut self, now: Instant) {
        let Upgrade::Quiescing { until, .. } = &self.upgrade else {
            return;
        };
        let pending = self.cluster.as_ref().is_some_and(|c| c.pending());
        if !self.chat.log_busy() && !pending {
            self.freeze(now);
        } else if *until <= now {
            self.abandon_upgrade(&format!(
                "events were still on their way through the cluster's log after {QUIESCE_LIMIT:?}"
            ));
        }
    }

    fn on_progress(&mut self, result: Result<Progress, UpgradeError>, now: Instant) {
        match result {
            Ok(Progress::Waiting) => {}
            Ok(Progress::Accepted { program, .. }) => self.quiesce(program, now),
            Ok(Progress::Committed) => self.commit(),
            Err(e) => self.abandon_upgrade(&e.to_string()),
        }
    }

    /// The new process is ready for our state. A cluster node first stops new events and
    /// waits for its own to come back from the log; then the state is frozen and sent.
    fn quiesce(&mut self, program: String, now: Instant) {
        let Upgrade::Starting(handover) = std::mem::take(&mut self.upgrade) else {
            return;
        };
        // TLS connections cannot be handed over: closed now, their leaves go through the log
        // before the state is frozen.
        self.leave_tls_behind();
        self.chat.set_quiescing(true);
        self.upgrade = Upgrade::Quiescing {
            handover,
            program,
            until: now + QUIESCE_LIMIT,
        };
    }

    /// At this turn boundary, exports the state and sends it with every socket, then touches
    /// nothing until the new process commits or fails.
    fn freeze(&mut self, now: Instant) {
        self.drain(now);
        let blob = match self.chat.export(now) {
            Ok(blob) => blob,
            Err(e) => return self.abandon_upgrade(&format!("cannot export the state: {e}")),
        };
        let Upgrade::Quiescing {
            mut handover,
            program,
            ..
        } = std::mem::take(&mut self.upgrade)
        else {
            return;
        };
        let mut tags: Vec<FdTag> = (0..self.listeners.len() as u32)
            .map(FdTag::Listener)
            .collect();
        if self.metrics.is_some() {
            tags.push(FdTag::Listener(METRICS_INDEX));
        }
        tags.extend(
            self.conns
                .ids()
                .into_iter()
                .map(|id| FdTag::Conn(key_of(id))),
        );
        log!(
            Level::Info,
            "upgrade: handing {} connections and {} bytes of state to {program} (pid {})",
            self.conns.len(),
            blob.len(),
            handover.pid()
        );
        let (listeners, conns, metrics) = (&self.listeners, &self.conns, self.metrics.as_ref());
        let result = handover.send_state(blob, &tags, now, |tag| {
            resolve(listeners, conns, metrics, tag)
        });
        self.upgrade = Upgrade::Frozen(handover, now);
        self.on_progress(result, now);
    }

    /// The new process has everything and Commit is written: it serves from now on. This
    /// process exits without touching any socket (no shutdown, nothing written on drop).
    fn commit(&mut self) -> ! {
        let (pid, since) = match &self.upgrade {
            Upgrade::Frozen(h, since) => (h.pid(), *since),
            Upgrade::Starting(h) | Upgrade::Quiescing { handover: h, .. } => {
                (h.pid(), Instant::now())
            }
            Upgrade::None => (0, Instant::now()),
        };
        self.notifier.main_pid(pid);
        let frozen = since.elapsed().as_secs_f64() * 1000.0;
        let peak = peak_rss_kib().map_or(String::new(), |kib| format!(", peak RSS {kib} KiB"));
        log!(
            Level::Info,
            "upgrade: pid {pid} took over after {frozen:.1} ms frozen{peak}; exiting"
        );
        std::process::exit(0)
    }

    /// Gives an upgrade up (a failure, its deadline, or a shutdown): the new process is ended
    /// and this one goes on as before.
    pub(super) fn abandon_upgrade(&mut self, reason: &str) {
        let (handover, was_frozen) = match std::mem::take(&mut self.upgrade) {
            Upgrade::None => return,
            Upgrade::Starting(h) | Upgrade::Quiescing { handover: h, .. } => (h, false),
            Upgrade::Frozen(h, _) => (h, true),
        };
        self.chat.set_quiescing(false);
        let pid = handover.pid();
        let ended = handover.abandon();
        let how = ended.map_or(String::new(), |status| format!(", pid {pid}: {status}"));
        log!(Level::Warn, "upgrade failed: {reason}{how}");
        if was_frozen {
            self.unfreeze();
        }
    }

    /// Readiness that arrived while frozen was not acted on (epoll is edge-triggered): every
    /// connection is read again, written again if it has output, and every listener accepts.
    fn unfreeze(&mut self) {
        for id in self.conns.ids() {
            self.backlog.push(id);
            self.chat.handle_writable(id);
        }
        let now = Instant::now();
        if let Some(link) = &mut self.cluster {
            link.poke(now);
        }
        for i in 0..self.listeners.len() {
            self.accept(i, now);
        }
    }

    /// Starts a server that takes over from the process that started this one: it receives
    /// the state and every socket, rebuilds, confirms, and serves once the old one commits.
    pub(super) fn take_over(config: Config, mut takeover: Takeover) -> Result<Server, ServerError> {
        let fail = |e: UpgradeError| ServerError::Takeover(e.to_string());
        let received = takeover
            .receive(env!("CARGO_PKG_VERSION"), READABLE_VERSIONS)
            .map_err(fail)?;
        let (listeners, conns) = (received.listeners.len(), received.conns.len());
        let version = received.state_version;
        let mut server = match rebuild(&config, received) {
            Ok(server) => server,
            Err(e) => {
                takeover.fail(&e.to_string());
                return Err(e);
            }
        };
        takeover.confirm().map_err(fail)?;
        server.chat.handle_upgraded();
        log!(
            Level::Info,
            "upgrade: took over {conns} connections and {listeners} listeners (state version {version})"
        );
        Ok(server)
    }
}

/// This process's peak resident memory (`VmHWM`), for the log.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The descriptor an upgrade tag names.
fn resolve<'a>(
    listeners: &'a [Listener],
    conns: &'a Conns,
    metrics: Option<&'a MetricsListener>,
    tag: FdTag,
) -> Option<BorrowedFd<'a>> {
    match tag {
        FdTag::Listener(METRICS_INDEX) => metrics.map(AsFd::as_fd),
        FdTag::Listener(i) => listeners.get(i as usize).map(AsFd::as_fd),
        FdTag::Conn(key) => conns.get(id_of_key(key)).map(|c| c.stream.as_fd()),
    }
}

/// Rebuilds the server from what the old process handed over, without touching any socket
/// (registering one with the poll does not).
fn rebuild(config: &Config, received: Received) -> Result<Server, ServerError> {
    // TLS connections are not handed over, but TLS listeners are: the pair is ours to load.
    let tls = TlsShell::load(config)?;
    let poll = Poll::new().map_err(ServerError::Setup)?;
    let (listeners, metrics) = rebuild_listeners(config, received.listeners, &poll)?;
    let max_clients = resolve_max_clients(config);
    let settings = config.chat_settings(max_clients);
    let mut chat = Chat::import(&received.state, settings, Instant::now())
        .map_err(|e| ServerError::Takeover(format!("cannot import the state: {e}")))?;
    let cluster = match &config.redis {
        Some(addr) => Some(
            ClusterLink::resume(
                addr,
                &config.cluster,
                poll.registry(),
                &mut chat,
                Instant::now(),
            )
            .map_err(|e| ServerError::Takeover(format!("cannot join the cluster: {e}")))?,
        ),
        None => None,
    };
    let conns = rebuild_conns(received.conns, &chat, &poll, max_clients)?;
    let mut server = Server::assemble(poll, listeners, metrics, conns, chat, tls, config)?;
    server.cluster = cluster;
    Ok(server)
}

/// The listeners handed over, in our order: every `--listen`, then every `--tls-listen`, and
/// the metrics listener under its own index.
fn rebuild_listeners(
    config: &Config,
    received: Vec<(u32, OwnedFd)>,
    poll: &Poll,
) -> Result<(Vec<Listener>, Option<MetricsListener>), ServerError> {
    let mut listeners = Vec::new();
    let mut metrics = None;
    for (i, fd) in received {
        let socket = std::net::TcpListener::from(fd);
        if i == METRICS_INDEX {
            let m = MetricsListener::from_std(socket, poll.registry(), METRICS_TOKEN)?;
            metrics = Some(m);
        } else {
            let is_tls = i as usize >= config.listen.len();
            let socket = mio::net::TcpListener::from_std(socket);
            listeners.push(Listener::new(socket, is_tls));
        }
    }
    if listeners.len() != config.listen.len() + config.tls_listen.len() {
        return Err(ServerError::Takeover(format!(
            "{} listeners handed over for {} --listen and {} --tls-listen addresses",
            listeners.len(),
            config.listen.len(),
            config.tls_listen.len()
        )));
    }
    Ok((listeners, metrics))
}

/// The connections handed over, checked against the imported state and registered with the
/// poll (WRITABLE too for those the kernel was refusing).
fn rebuild_conns(
    received: Vec<(u64, OwnedFd)>,
    chat: &Chat,
    poll: &Poll,
    max_clients: usize,
) -> Result<Conns, ServerError> {
    let streams: Vec<_> = received
        .into_iter()
        .map(|(key, fd)| {
            let stream = std::net::TcpStream::from(fd);
            (id_of_key(key), mio::net::TcpStream::from_std(stream))
        })
        .collect();
    if streams.len() != chat.connection_count()
        || streams.iter().any(|(id, _)| !chat.has_connection(*id))
    {
        return Err(ServerError::Takeover(
            "the connections handed over do not match the state".to_string(),
        ));
    }
    let mut conns = Conns::restore(streams, max_clients);
    for id in conns.ids() {
        let blocked = chat.pending(id) > 0;
        if let Some(conn) = conns.get_mut(id) {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            poll.registry()
                .register(&mut conn.stream, token_of(id), interest)
                .map_err(ServerError::Setup)?;
            conn.writing = blocked;
        }
    }
    Ok(conns)
}
