//! The one model shell: drives a [`Chat`] exactly as the server does (the drain rule of the
//! crate docs), with a fake clock, connections whose "kernel" can refuse or cut writes, and a
//! restart through [`Chat::export`]/[`Chat::import`]. Unit tests, property tests, the fuzz
//! targets and the core benchmarks all use it; none keeps its own copy of the drain rule.
//!
//! After every step it checks [`Chat::check_invariants`] and what a shell can see: nothing is
//! written to or reported for a connection after its close, no close is reported twice, a
//! too-slow close carries no output, no timer fires into a busy loop, and no held connection is
//! left without a deadline to wake it.

mod check;
pub mod cluster;
mod text;

pub use text::{check_text, forbidden};

use crate::net::peer_of;
use crate::proto::chat::{Chat, CloseReason, Closed, ConnId, LogPos, Output, Peer, Settings};
use bytes::Bytes;
use std::collections::HashMap;
use std::io::IoSlice;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use thiserror::Error;

/// A check the model shell found broken.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct SimError(pub String);

fn fail<T>(what: impl Into<String>) -> Result<T, SimError> {
    Err(SimError(what.into()))
}

/// What the model shell knows about one connection.
#[derive(Debug)]
pub struct SimConn {
    /// Its id.
    pub id: ConnId,
    /// Neither closed by the core nor lost by the shell.
    pub open: bool,
    /// Its peer does not read: write attempts take nothing.
    pub stalled: bool,
    /// Every byte written to it (unless [`Sim::keep_received`] is off).
    pub received: Vec<u8>,
    /// How many bytes were written to it.
    pub bytes_received: u64,
    /// How much of `received` [`Sim::take`] has handed out.
    taken: usize,
    /// Why the core closed it, if it did.
    pub closed: Option<CloseReason>,
    /// Its output may stop in the middle of a line (a write was cut, or a too-slow client's
    /// queue was dropped).
    pub cut: bool,
    /// The kernel takes at most this much at the next write (a partial write).
    limit: Option<usize>,
}

/// The model shell around one [`Chat`].
pub struct Sim {
    chat: Chat,
    settings: Settings,
    base: Instant,
    now_ms: u64,
    conns: Vec<SimConn>,
    by_id: HashMap<ConnId, usize>,
    free: Vec<u32>,
    next_index: u32,
    next_generation: u32,
    /// Every id [`Output::Resume`] named, in order.
    pub resumed: Vec<ConnId>,
    /// Every close the core reported, in order.
    pub closes: Vec<(ConnId, CloseReason)>,
    /// Drain after every step (as unit tests like); otherwise only on [`Sim::drain`].
    pub auto_drain: bool,
    /// Check the core after every step (benchmarks turn it off).
    pub checks: bool,
    /// Keep every byte written (benchmarks turn it off and only count).
    pub keep_received: bool,
    shut_down: bool,
    /// How many times the core was restarted from its own snapshot.
    pub restarts: usize,
    /// Bytes written to all connections.
    pub bytes_written: u64,
    /// Cluster mode: entries the core published, not yet taken by [`Sim::take_published`].
    published: Vec<Bytes>,
    /// Cluster mode: snapshots the core handed out to store, not yet taken.
    snapshots: Vec<(LogPos, Bytes)>,
    /// Cluster mode: the core asked to start over from the stored snapshot.
    pub resync_wanted: bool,
}

impl Sim {
    /// A model shell around a new core, draining after every step.
    pub fn new(settings: Settings) -> Sim {
        let base = Instant::now();
        Sim {
            chat: Chat::new(settings.clone(), base),
            settings,
            base,
            now_ms: 0,
            conns: Vec::new(),
            by_id: HashMap::new(),
            free: Vec::new(),
            next_index: 0,
            next_generation: 1000,
            resumed: Vec::new(),
            closes: Vec::new(),
            auto_drain: true,
            checks: true,
            keep_received: true,
            shut_down: false,
            restarts: 0,
            bytes_written: 0,
            published: Vec::new(),
            snapshots: Vec::new(),
            resync_wanted: false,
        }
    }

    /// The core.
    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    /// The core, to hand it events directly (call [`Sim::after`] afterwards).
    pub fn chat_mut(&mut self) -> &mut Chat {
        &mut self.chat
    }

    /// The fake clock.
    pub fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.now_ms)
    }

    /// The fake clock's start.
    pub fn base(&self) -> Instant {
        self.base
    }

    /// Every connection made, in order.
    pub fn conns(&self) -> &[SimConn] {
        &self.conns
    }

    /// The connection `id`.
    pub fn conn(&self, id: ConnId) -> Option<&SimConn> {
        self.by_id.get(&id).map(|&n| &self.conns[n])
    }

    /// Why the core closed `id`, if it did.
    pub fn close_reason(&self, id: ConnId) -> Option<CloseReason> {
        self.conn(id).and_then(|c| c.closed)
    }

    /// A new connection from `ip`, with a fresh (index, generation) pair like a slab's.
    pub fn connect(&mut self, ip: IpAddr) -> Result<ConnId, SimError> {
        self.connect_peer(peer_of(ip))
    }

    /// A new connection from loopback.
    pub fn connect_loopback(&mut self) -> Result<ConnId, SimError> {
        self.connect(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// A new connection from `peer`.
    pub fn connect_peer(&mut self, peer: Peer) -> Result<ConnId, SimError> {
        self.open(peer, false)
    }

    /// A new connection from `ip` whose peer reads nothing from the start.
    pub fn connect_stalled(&mut self, ip: IpAddr) -> Result<ConnId, SimError> {
        self.open(peer_of(ip), true)
    }

    fn open(&mut self, peer: Peer, stalled: bool) -> Result<ConnId, SimError> {
        let index = self.free.pop().unwrap_or_else(|| {
            self.next_index += 1;
            self.next_index - 1
        });
        self.next_generation += 1;
        let id = ConnId {
            index,
            generation: self.next_generation,
        };
        self.add(id, peer, stalled)
    }

    /// A new connection with a given id, as a buggy or racing shell that hands out a slot the
    /// core still holds would make.
    pub fn connect_with_id(&mut self, id: ConnId, ip: IpAddr) -> Result<ConnId, SimError> {
        self.add(id, peer_of(ip), false)
    }

    fn add(&mut self, id: ConnId, peer: Peer, stalled: bool) -> Result<ConnId, SimError> {
        self.by_id.insert(id, self.conns.len());
        self.conns.push(SimConn {
            id,
            open: true,
            stalled,
            received: Vec::new(),
            bytes_received: 0,
            taken: 0,
            closed: None,
            cut: false,
            limit: None,
        });
        let now = self.now();
        self.chat.handle_connect(id, peer, now);
        self.after()?;
        Ok(id)
    }

    /// Bytes read from `id`'s socket.
    pub fn input(&mut self, id: ConnId, bytes: &[u8]) -> Result<(), SimError> {
        let now = self.now();
        self.chat.handle_input(id, bytes, now);
        self.after()
    }

    /// Like [`Sim::input`], but as a shell that respects held input: while the core does not
    /// want input from `id`, the clock moves on to the next deadline first.
    pub fn input_when_wanted(&mut self, id: ConnId, bytes: &[u8]) -> Result<(), SimError> {
        for _ in 0..100_000 {
            self.drain()?;
            let open = self.conn(id).is_some_and(|c| c.open);
            if !open || self.chat.wants_input(id) {
                return self.input(id, bytes);
            }
            let Some(at) = self.chat.next_deadline() else {
                return fail(format!("{id:?} is held with no deadline"));
            };
            let ms = at.saturating_duration_since(self.now()).as_millis() as u64;
            self.advance(ms.max(1))?;
        }
        fail("held input never let go")
    }

    /// The peer closed `id` (or reset it): the shell drops the socket.
    pub fn disconnect(&mut self, id: ConnId) -> Result<(), SimError> {
        self.chat.handle_disconnect(id, CloseReason::PeerClosed);
        self.lose(id);
        self.after()
    }

    /// Moves the clock on by `ms`, firing each deadline on the way at its time and draining
    /// after it, as the server does. The clock moves only between loop turns, and every turn
    /// ends with a drain, so the current turn is drained first.
    pub fn advance(&mut self, ms: u64) -> Result<(), SimError> {
        self.drain()?;
        let target = self.now_ms + ms;
        for _ in 0..1_000_000 {
            match self.chat.next_deadline() {
                Some(at) if at <= self.base + Duration::from_millis(target) => {
                    let at_ms = at.saturating_duration_since(self.base).as_millis() as u64;
                    self.now_ms = self.now_ms.max(at_ms);
                    self.timeout()?;
                    self.drain()?;
                }
                _ => {
                    self.now_ms = target;
                    return self.timeout();
                }
            }
        }
        fail("timers keep firing at the same time")
    }

    /// Moves the clock on without firing anything (the test calls `handle_timeout` itself).
    pub fn jump(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    /// SIGTERM: the core tells everyone and ignores input.
    pub fn shutdown(&mut self) -> Result<(), SimError> {
        self.shut_down = true;
        self.chat.handle_shutdown();
        self.after()
    }

    /// The peer of `id` stops reading (write attempts take nothing), or starts again (its
    /// socket turns writable).
    pub fn stall(&mut self, id: ConnId, on: bool) -> Result<(), SimError> {
        let Some(&n) = self.by_id.get(&id) else {
            return Ok(());
        };
        self.conns[n].stalled = on;
        if !on && self.conns[n].open {
            self.chat.handle_writable(id);
        }
        self.after()
    }

    /// The socket of `id` turns writable and the kernel takes at most `n` bytes.
    pub fn partial_write(&mut self, id: ConnId, n: usize) -> Result<(), SimError> {
        let Some(&c) = self.by_id.get(&id) else {
            return Ok(());
        };
        if self.conns[c].open {
            self.conns[c].limit = Some(n);
            self.chat.handle_writable(id);
            self.drain()?;
            self.conns[c].limit = None;
        }
        self.after()
    }

    /// Restarts the core from its own snapshot (as an upgrade does), at a turn boundary.
    pub fn restart(&mut self) -> Result<(), SimError> {
        self.drain()?;
        let now = self.now();
        if self.chat.log_busy() {
            // An upgrade of a cluster node waits until nothing is on its way through the log.
            return Ok(());
        }
        let blob = self
            .chat
            .export(now)
            .map_err(|e| SimError(format!("export: {e}")))?;
        self.chat = Chat::import(&blob, self.settings.clone(), now)
            .map_err(|e| SimError(format!("import: {e}")))?;
        self.restarts += 1;
        self.after()
    }

    /// What follows every step: the checks, and a drain when draining automatically.
    pub fn after(&mut self) -> Result<(), SimError> {
        self.check()?;
        if self.auto_drain {
            self.drain()?;
        }
        Ok(())
    }

    /// One shell turn's drain: carries out every [`Output`] until the core says what to wait
    /// for.
    pub fn drain(&mut self) -> Result<(), SimError> {
        for _ in 0..1_000_000 {
            match self.chat.poll_output() {
                Output::Write(id) => self.write(id)?,
                Output::Close(closed) => self.close(closed)?,
                Output::Resume(id) => {
                    if !self.conn(id).is_some_and(|c| c.open) {
                        return fail(format!("resume of closed {id:?}"));
                    }
                    self.resumed.push(id);
                }
                Output::Publish(entry) => self.published.push(entry),
                Output::StoreSnapshot { at, blob } => self.snapshots.push((at, blob)),
                Output::Resync => self.resync_wanted = true,
                Output::Timeout(_) => return self.check(),
            }
        }
        fail("the core never stops asking for output")
    }

    /// Everything `id` was sent since the last call.
    pub fn take(&mut self, id: ConnId) -> Vec<u8> {
        let Some(&n) = self.by_id.get(&id) else {
            return Vec::new();
        };
        let c = &mut self.conns[n];
        let out = c.received[c.taken..].to_vec();
        c.taken = c.received.len();
        out
    }

    /// Forgets everything sent so far to everyone.
    pub fn clear(&mut self) {
        for c in &mut self.conns {
            c.taken = c.received.len();
        }
    }

    /// One write attempt, as the server makes it.
    fn write(&mut self, id: ConnId) -> Result<(), SimError> {
        let Some(&n) = self.by_id.get(&id) else {
            return fail(format!("write for unknown {id:?}"));
        };
        if !self.conns[n].open {
            return fail(format!("write for closed {id:?}"));
        }
        let mut iov = [IoSlice::new(&[]); 64];
        let used = self.chat.gather(id, &mut iov);
        let offered: usize = iov[..used].iter().map(|s| s.len()).sum();
        let c = &mut self.conns[n];
        let room = match c.limit {
            Some(n) => n,
            None if c.stalled => 0,
            None => usize::MAX,
        };
        let taken = offered.min(room);
        if self.keep_received {
            let mut left = taken;
            for slice in &iov[..used] {
                let n = left.min(slice.len());
                c.received.extend_from_slice(&slice[..n]);
                left -= n;
            }
        }
        c.bytes_received += taken as u64;
        self.bytes_written += taken as u64;
        // Output that stops mid-line may stay cut if the peer goes away now.
        c.cut |= taken < offered;
        if let Some(limit) = &mut c.limit {
            *limit -= taken;
        }
        self.chat.handle_written(id, taken, taken < offered);
        Ok(())
    }

    fn close(&mut self, closed: Closed) -> Result<(), SimError> {
        let Some(&n) = self.by_id.get(&closed.id) else {
            return fail(format!("close of unknown {:?}", closed.id));
        };
        let c = &mut self.conns[n];
        if c.closed.is_some() {
            return fail(format!("close of {:?} reported twice", closed.id));
        }
        if closed.reason == CloseReason::TooSlow {
            if !closed.final_output.is_empty() {
                return fail("a too-slow close carries output");
            }
            c.cut = true;
        }
        c.closed = Some(closed.reason);
        self.closes.push((closed.id, closed.reason));
        // A connection the shell lost in the same turn ignores the close.
        if c.open {
            c.bytes_received += closed.final_output.len() as u64;
            self.bytes_written += closed.final_output.len() as u64;
            if self.keep_received {
                c.received.extend_from_slice(&closed.final_output);
            }
            self.lose(closed.id);
        }
        Ok(())
    }

    fn lose(&mut self, id: ConnId) {
        if let Some(&n) = self.by_id.get(&id)
            && self.conns[n].open
        {
            self.conns[n].open = false;
            self.free.push(id.index);
        }
    }
}
