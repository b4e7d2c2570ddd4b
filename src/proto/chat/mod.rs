//! The chat state machine: it turns "connection K sent these bytes" into "write these bytes to
//! these connections, close that one", and never touches a socket or reads a clock.
//!
//! [`Chat`] has four kinds of method: `handle_*` (something happened: a connection, input, a
//! write attempt, time passing), [`Chat::poll_output`] (what the shell must do now), getters,
//! and [`Chat::export`]/[`Chat::import`] (the whole state as a versioned blob). The drain rule
//! that ties them together is in the crate docs.
//!
//! The parts, one job each: `session` (a connection's input side and lifecycle), `input`
//! (the pipeline from bytes to lines to events), [`event`] (the ordered-event seam),
//! `commands` (what applying each event does), [`directory`] (nicknames, rooms, members),
//! `outbox` (shared output chunks, queues, `--sendq`), `admit` (connection limits), `timers`,
//! `close` (the one close path), [`snapshot`], and [`cluster`] (the shared log of a cluster
//! node).

mod admit;
mod check;
mod close;
pub mod cluster;
mod commands;
mod counters;
pub mod directory;
pub mod event;
mod input;
mod outbox;
mod session;
mod settings;
pub mod snapshot;
mod timers;
mod types;

pub use admit::{Peer, PeerKey};
pub use cluster::{ClusterStart, EntryError, LogPos};
pub use counters::{Counters, Gauges};
pub use directory::Origin;
pub use settings::Settings;
pub use types::{CloseReason, Closed, ConnId, Output};

use crate::proto::reply;
use admit::{Admission, Refusal};
use close::Closer;
use cluster::Cluster;
use directory::Directory;
use outbox::Outbox;
use session::{Hold, Phase, Session, Sessions};
use std::io::IoSlice;
use std::time::{Duration, Instant};
use timers::{TimerKind, Timers};

/// Output rendered in one drain cycle after which the shell should write before it hands the
/// core more input (the senders are held meanwhile). Large enough that lines from many senders
/// share one write per recipient, small enough to bound what a burst holds in memory.
pub const OUTPUT_HIGH_WATER: usize = 1 << 20;

/// The chat core. See the crate docs for how the shell drives it.
pub struct Chat {
    settings: Settings,
    banner: Vec<u8>,
    epoch: Instant,
    /// The core's clock at `epoch`: times are kept as milliseconds on this clock, and a core
    /// restored from a snapshot starts it late enough that no carried-over time is negative.
    offset_ms: u64,
    /// The core's clock at the latest `handle_*` call.
    now_ms: u64,
    /// Uptime at `epoch` (non-zero after an upgrade).
    uptime_base_ms: u64,
    sessions: Sessions,
    outbox: Outbox,
    directory: Directory,
    admission: Admission,
    timers: Timers,
    closer: Closer,
    counters: Counters,
    /// Held connections that may be read again.
    resumed: Vec<ConnId>,
    /// Connections whose input is held until the shell has written this drain's output.
    held_for_output: Vec<ConnId>,
    /// Cluster mode's state (`None` for a standalone server).
    cluster: Option<Cluster>,
    shutting_down: bool,
    /// Scratch: the line being assembled during one `handle_input`.
    line_buf: Vec<u8>,
    /// Scratch: cleaned text.
    text_buf: String,
}

impl Chat {
    /// Creates the core; `now` is the epoch of its clock (only later differences matter).
    pub fn new(settings: Settings, now: Instant) -> Chat {
        // Tables that grow with the number of connections are reserved up front: untouched
        // pages cost nothing, and nothing long-lived is reallocated on top of the heap during
        // a burst (which would pin freed output buffers below it).
        let reserve = settings.max_clients.min(1 << 20);
        Chat {
            banner: reply::banner(&settings.banner),
            epoch: now,
            offset_ms: 0,
            now_ms: 0,
            uptime_base_ms: 0,
            sessions: Sessions::with_capacity(reserve),
            outbox: Outbox::new(settings.sendq, reserve),
            directory: Directory::new(settings.default_room, settings.node, reserve),
            admission: Admission::new(
                settings.max_clients,
                settings.max_per_ip,
                settings.limit_loopback,
            ),
            timers: Timers::default(),
            closer: Closer::default(),
            counters: Counters::default(),
            resumed: Vec::new(),
            held_for_output: Vec::new(),
            cluster: settings.cluster.then(Cluster::new),
            shutting_down: false,
            line_buf: Vec::new(),
            text_buf: String::new(),
            settings,
        }
    }

    /// A new connection from `peer`: greets it, or refuses it when a limit is reached.
    pub fn handle_connect(&mut self, id: ConnId, peer: Peer, now: Instant) {
        self.tick(now);
        self.counters.connections += 1;
        let counted = match self.admission.admit(peer, self.sessions.live()) {
            Ok(counted) => counted,
            Err(refusal) => return self.refuse(id, refusal),
        };
        if let Some(old) = self.sessions.occupant(id.index) {
            // The shell reused a slot the core still holds: forget the old one first.
            self.request_close(old, CloseReason::PeerClosed);
            self.finish();
        }
        let session = Session::new(id.generation, counted, self.now_ms);
        self.sessions.insert(id, session);
        self.outbox.open(id);
        let banner = &self.banner;
        self.outbox.send(id, |b| b.extend_from_slice(banner));
        if let Some(t) = self.settings.login_timeout {
            self.timers
                .push(self.now_ms + millis(t), id, TimerKind::Login);
        }
        if let Some(t) = self.settings.idle_timeout {
            self.timers
                .push(self.now_ms + millis(t), id, TimerKind::Idle);
        }
    }

    /// Bytes read from connection `id`.
    pub fn handle_input(&mut self, id: ConnId, bytes: &[u8], now: Instant) {
        self.tick(now);
        self.counters.bytes_in += bytes.len() as u64;
        if self.shutting_down {
            return;
        }
        let now_ms = self.now_ms;
        let Some(s) = self.sessions.open_mut(id) else {
            return;
        };
        s.last_input_ms = now_ms;
        if s.hold == Hold::Reading {
            self.process_input(id, bytes);
        } else {
            s.hold_input(s.hold, bytes);
        }
        self.finish();
    }

    /// A write attempt for `id` is over: the kernel (or the TLS layer) took `taken` bytes of
    /// what [`Chat::gather`] offered, and `blocked` says whether it refused some (the shell then
    /// waits for the socket to be writable and calls [`Chat::handle_writable`]).
    pub fn handle_written(&mut self, id: ConnId, taken: usize, blocked: bool) {
        self.counters.bytes_out += taken as u64;
        self.outbox.written(id, taken, blocked);
        self.finish();
    }

    /// The socket of `id` can take bytes again.
    pub fn handle_writable(&mut self, id: ConnId) {
        self.outbox.writable(id);
    }

    /// The peer of `id` is gone or done: for [`CloseReason::InputClosed`] the core answers with
    /// an [`Output::Close`] carrying the output still queued; for the others the shell has
    /// already dropped the socket and gets nothing back.
    pub fn handle_disconnect(&mut self, id: ConnId, reason: CloseReason) {
        self.request_close(id, reason);
        self.finish();
    }

    /// Time passed: fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        while let Some(t) = self.timers.pop_due(self.now_ms) {
            self.fire(t.id(), t.kind);
        }
        self.heartbeat();
        self.finish();
    }

    /// The server is shutting down: tells everyone and ignores further input.
    pub fn handle_shutdown(&mut self) {
        self.shutting_down = true;
        self.tell_all(false, reply::shutting_down);
        self.finish();
    }

    /// The banner changed (SIGHUP re-read `--motd`): new connections get the new one.
    pub fn set_banner(&mut self, lines: &[String]) {
        self.banner = reply::banner(lines);
        self.settings.banner = lines.to_vec();
    }

    /// This core was just imported by a new process that took over: every logged-in user is
    /// told, after whatever was already queued for them.
    pub fn handle_upgraded(&mut self) {
        self.counters.upgrades += 1;
        self.tell_all(true, reply::server_upgraded);
        // Input an upgrade stopped (cluster mode) goes on now, before anything new.
        let held: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.hold == Hold::Reading && s.has_held())
            .map(|(id, _)| id)
            .collect();
        for id in held {
            self.release_held_input(id);
        }
        self.finish();
    }

    /// `id` cannot be handed over in an upgrade (a TLS connection without kernel offload): a
    /// logged-in user is told to reconnect, its room hears `(server upgrade)`, and the shell
    /// gets an [`Output::Close`] for it. One at the prompt is simply closed.
    pub fn handle_not_handed_over(&mut self, id: ConnId) {
        if self
            .sessions
            .get(id)
            .is_some_and(|s| s.phase == Phase::Chatting)
        {
            self.outbox.send(id, reply::reconnect_after_upgrade);
        }
        self.request_close(id, CloseReason::ServerUpgrade);
        self.finish();
    }

    /// What the shell must do next. Call it until it returns [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        loop {
            if let Some(closed) = self.closer.next_closed() {
                return Output::Close(closed);
            }
            if let Some(out) = self.poll_cluster() {
                return out;
            }
            if let Some(id) = self.outbox.next_dirty() {
                return Output::Write(id);
            }
            if self.outbox.take_flush_wanted() {
                self.release_held_for_output();
                continue;
            }
            self.outbox.end_drain();
            while let Some(id) = self.resumed.pop() {
                if self.sessions.is_open(id) {
                    return Output::Resume(id);
                }
            }
            return Output::Timeout(self.next_deadline());
        }
    }

    /// Fills `iov` with `id`'s unsent output, oldest first, and returns how many slices it
    /// used; write them with one vectored write.
    pub fn gather<'a>(&'a self, id: ConnId, iov: &mut [IoSlice<'a>]) -> usize {
        self.outbox.gather(id, iov)
    }

    /// Whether this drain cycle has queued so much output that the shell should drain now,
    /// before handing the core more events (the senders that queued it are held meanwhile).
    pub fn wants_flush(&self) -> bool {
        self.outbox.flush_wanted()
    }

    /// Whether the shell should read from `id` now (false while its input is held).
    pub fn wants_input(&self, id: ConnId) -> bool {
        self.sessions
            .get(id)
            .is_some_and(|s| s.is_open() && s.hold == Hold::Reading)
    }

    /// When [`Chat::handle_timeout`] next has something to do; `None` when nothing is due ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let ms = self
            .timers
            .next_ms()
            .into_iter()
            .chain(self.heartbeat_ms())
            .min();
        ms.map(|ms| self.epoch + Duration::from_millis(ms.saturating_sub(self.offset_ms)))
    }

    /// Bytes queued for all connections and not yet taken by the kernel.
    pub fn queued_bytes(&self) -> usize {
        self.outbox.queued()
    }

    /// Bytes queued for `id` and not yet taken by the kernel.
    pub fn pending(&self, id: ConnId) -> usize {
        self.outbox.pending(id)
    }

    /// `id`'s unsent output as one buffer (for tests and diagnostics; copies).
    pub fn unsent(&self, id: ConnId) -> Vec<u8> {
        self.outbox.unsent(id)
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.sessions.live()
    }

    /// Whether `id` is one of the core's open connections.
    pub fn has_connection(&self, id: ConnId) -> bool {
        self.sessions.is_open(id)
    }

    /// Logged-in users in the whole chat.
    pub fn user_count(&self) -> usize {
        self.directory.user_count()
    }

    /// The nickname of `id`, once logged in.
    pub fn nick(&self, id: ConnId) -> Option<&str> {
        let u = self.directory.find(self.origin_of(id))?;
        self.directory.user(u).map(|x| x.nick.as_str())
    }

    /// The room `id` is in (without `#`), once logged in.
    pub fn room_of(&self, id: ConnId) -> Option<&str> {
        let u = self.directory.find(self.origin_of(id))?;
        let room = self.directory.user(u)?.room;
        self.directory.room(room).map(|r| r.name.as_str())
    }

    /// Number of rooms (the default room included).
    pub fn room_count(&self) -> usize {
        self.directory.room_count()
    }

    /// The counters since the server first started.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Counts of the present moment.
    pub fn gauges(&self) -> Gauges {
        let logged_in = self
            .sessions
            .iter()
            .filter(|(_, s)| s.phase == Phase::Chatting)
            .count();
        Gauges {
            at_prompt: self.sessions.live() - logged_in,
            logged_in,
            users: self.directory.user_count(),
            rooms: self.directory.room_count(),
            uptime_ms: self.uptime_ms(self.now_ms),
        }
    }

    /// The settings the core runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    // ---- internals shared by the parts ----

    fn tick(&mut self, now: Instant) {
        self.now_ms = self.clock_ms(now);
    }

    /// The core's clock at `now`, in milliseconds; it never goes back.
    fn clock_ms(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.now_ms.max(self.offset_ms + elapsed)
    }

    /// How long the chat has run at clock `now_ms`, across upgrades.
    fn uptime_ms(&self, now_ms: u64) -> u64 {
        self.uptime_base_ms + (now_ms - self.offset_ms)
    }

    /// Renders `f` once and queues it for every connection, or only for those logged in.
    fn tell_all(&mut self, logged_in_only: bool, f: fn(&mut bytes::BytesMut)) {
        let chunk = self.outbox.render(f);
        for (id, s) in self.sessions.iter() {
            if !logged_in_only || s.phase == Phase::Chatting {
                self.outbox.deliver(id, chunk);
            }
        }
    }

    /// Who the local connection `conn` is, cluster-wide.
    fn origin_of(&self, conn: ConnId) -> Origin {
        Origin {
            node: self.settings.node,
            conn,
        }
    }

    fn refuse(&mut self, id: ConnId, refusal: Refusal) {
        let mut out = Vec::new();
        let reason = match refusal {
            Refusal::Full => {
                self.counters.refused_full += 1;
                reply::server_full(&mut out);
                CloseReason::ServerFull
            }
            Refusal::TooManyFromAddress => {
                self.counters.refused_per_address += 1;
                reply::too_many_from_address(&mut out);
                CloseReason::TooManyFromAddress
            }
        };
        self.closer.refuse(id, reason, out);
    }

    fn fire(&mut self, id: ConnId, kind: TimerKind) {
        let Some(s) = self.sessions.open_mut(id) else {
            return;
        };
        match kind {
            TimerKind::Login => {
                if !matches!(s.phase, Phase::Chatting | Phase::LoggingIn) {
                    self.outbox.send(id, reply::login_timeout);
                    self.request_close(id, CloseReason::LoginTimeout);
                }
            }
            TimerKind::Idle => {
                let due = s.last_input_ms + self.settings.idle_timeout.map_or(0, millis);
                if due <= self.now_ms {
                    self.outbox.send(id, reply::idle_timeout);
                    self.request_close(id, CloseReason::IdleTimeout);
                } else {
                    self.timers.push(due, id, TimerKind::Idle);
                }
            }
            TimerKind::Rate => {
                let (rate, burst) = (self.settings.rate, self.settings.burst);
                if s.bucket.ready(rate, burst, self.now_ms) {
                    self.release_held_input(id);
                } else {
                    let at = self.now_ms + s.bucket.wait_ms(rate, burst, self.now_ms);
                    self.timers.push(at, id, TimerKind::Rate);
                }
            }
        }
    }

    /// The shell has written everything: lets the senders held for output go on, in order,
    /// until output piles up again (those not reached go first next time).
    fn release_held_for_output(&mut self) {
        let mut waiting = std::mem::take(&mut self.held_for_output).into_iter();
        for id in waiting.by_ref() {
            self.release_held_input(id);
            self.finish();
            if self.outbox.flush_wanted() {
                break;
            }
        }
        let paused_again = std::mem::replace(&mut self.held_for_output, waiting.collect());
        self.held_for_output.extend(paused_again);
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}
