//! A model shell around natter's chat core, shared by the fuzz targets (`fuzz/fuzz_targets/`)
//! and the property tests (`tests/core_props.rs`, which includes this file by path).
//!
//! [`Shell`] hands events to [`Chat`] and drains it exactly as the drain rule says (closes,
//! resumes, dirty connections), with a fake clock, and checks after every step:
//! - [`Chat::check_invariants`];
//! - nothing is queued for, resumed for or reported dirty for a connection after its close was
//!   seen (a close reported in this turn may still appear once among the dirty ids, with no
//!   output), and no close is reported twice or for an unknown id;
//! - a too-slow close carries no final output;
//! - after `handle_timeout(now)` the next deadline is later than `now` (no busy loop), and a
//!   connection held by flood control always has a deadline to wake it (no connection stuck);
//! - the connection count matches the shell's own count.
//!
//! [`check_text`] checks what a terminal would be shown.
#![allow(dead_code)]

use natter::config::Config;
use natter::proto::chat::{Chat, CloseReason, ConnId};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Telnet bytes.
pub const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const EL: u8 = 248;
const EC: u8 = 247;
const AYT: u8 = 246;
const IP: u8 = 244;
const SE: u8 = 240;

/// One event the model shell can hand to the core.
#[derive(Clone, Debug)]
pub enum Op {
    /// A new connection from `PEERS[peer % len]`.
    Connect { peer: u8 },
    /// Bytes read from connection number `conn` (modulo the connections made so far, closed
    /// ones included, so stale ids are exercised).
    Input { conn: u8, bytes: Vec<u8> },
    /// The peer closed connection `conn`.
    Disconnect { conn: u8 },
    /// The fake clock moves on; due timers fire as a shell would fire them.
    Advance { ms: u32 },
    /// A shell turn: drain closes, resumes and dirty connections.
    Drain,
    /// The kernel took only `n` bytes of `conn`'s output.
    PartialWrite { conn: u8, n: u16 },
    /// The peer of `conn` stops (or starts again) reading.
    Stall { conn: u8, on: bool },
    /// SIGTERM: the server tells everyone and ignores input.
    Shutdown,
}

/// Addresses connections come from: loopback, two IPv4 hosts, IPv6 /64s, IPv4-mapped.
pub const PEERS: [&str; 8] = [
    "127.0.0.1",
    "10.0.0.1",
    "10.0.0.2",
    "::1",
    "2001:db8::1",
    "2001:db8::2",
    "2001:db8:0:1::1",
    "::ffff:10.0.0.1",
];

const NICKS: [&str; 14] = [
    "alice",
    "Alice",
    "bob",
    "BOB",
    "carol",
    "guest1",
    "guest2",
    "x",
    "a-_9",
    "9bad",
    "",
    "toolongnicknamexxxxxxxxxxx",
    "é",
    "aaaaaaaaaaaaaaaaaaaaaaaa",
];
const ROOMS: [&str; 12] = [
    "lobby",
    "#lobby",
    "LOBBY",
    "rust",
    "#Rust",
    "r.1",
    "a/b",
    "",
    "#",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "##x",
    "den",
];
const TEXTS: [&str; 16] = [
    "hi",
    "  ",
    "",
    "\x1b[31mred\x1b[0m",
    "\u{202e}rtl\u{2066}",
    "\t tab",
    "é€😀",
    "a\x07b\x00c",
    "\x1b]0;title\x07x",
    "\u{85}\u{9b}c1",
    "//x",
    "\x1b",
    "\x1b[",
    "\x1b]8;;http://x\x1b\\link",
    "a\x1bcb",
    "hello world, this is a longer line of chat text",
];
const LINE_ENDS: [&[u8]; 4] = [b"\r\n", b"\n", b"\r", b"\r\0"];

/// One piece of input from a grammar of commands, names, garbage and telnet bytes. `kind`,
/// `a` and `b` pick the template and its fillers.
pub fn grammar_piece(kind: u8, a: u8, b: u8) -> Vec<u8> {
    let nick = NICKS[a as usize % NICKS.len()];
    let room = ROOMS[a as usize % ROOMS.len()];
    let text = TEXTS[b as usize % TEXTS.len()];
    let end = LINE_ENDS[(b as usize / 16) % LINE_ENDS.len()];
    let line = |s: String| {
        let mut v = s.into_bytes();
        v.extend_from_slice(end);
        v
    };
    match kind % 32 {
        0 => line(nick.to_string()),
        1 => line(format!("/nick {nick}")),
        2 => line(format!("/join {room}")),
        3 => line("/rooms".into()),
        4 => line("/who".into()),
        5 => line(text.to_string()),
        6 => line(format!("/msg {text}")),
        7 => line(format!("/me {text}")),
        8 => line(format!("/w {nick} {text}")),
        9 => line(format!("/quit {text}")),
        10 => line("/help".into()),
        11 => line(format!("/{text}")),
        12 => line("GET / HTTP/1.1".into()),
        13 => line(format!("//{text}")),
        14 => line(String::new()),
        15 => line("/quit".into()),
        16 => vec![IAC, WILL, a],
        17 => vec![IAC, DO, a],
        18 => vec![IAC, WONT, a],
        19 => vec![IAC, DONT, a],
        20 => vec![IAC, IP],
        21 => vec![IAC, AYT],
        22 => vec![IAC, EC],
        23 => vec![IAC, EL],
        24 => {
            let mut v = vec![IAC, SB, a];
            v.extend(std::iter::repeat_n(b, a as usize % 40));
            v.extend([IAC, IAC, IAC, SE]);
            v
        }
        25 => vec![IAC, IAC],
        26 => vec![0x08],
        27 => vec![0x7F],
        28 => vec![IAC, a],
        29 => vec![a, b],
        30 => text.as_bytes().to_vec(),
        _ => line(format!(
            "/{} {text}",
            ["WHO", "Join", "ME", "W", "dance"][a as usize % 5]
        )),
    }
}

/// A configuration picked by four bytes: flood control, quiet rooms, short lines, small send
/// queues, timeouts and connection limits all show up.
pub fn config_from(b: [u8; 4]) -> (Config, usize) {
    let secs = |n: u64| (n > 0).then(|| Duration::from_secs(n));
    let config = Config {
        rate: [0, 0, 2, 5][b[0] as usize & 3],
        burst: 1 + (u32::from(b[0]) >> 2 & 3),
        quiet_above: [0, 1, 2, 3, 1000][b[1] as usize % 5],
        max_line: [512, 8, 16, 64][(b[1] as usize >> 3) & 3],
        sendq: [262_144, 1024, 2048, 4096][b[2] as usize & 3],
        login_timeout: secs([0, 0, 1, 5][(b[2] as usize >> 2) & 3]),
        idle_timeout: secs([0, 0, 2, 10][(b[2] as usize >> 4) & 3]),
        max_per_ip: [0, 1, 2, 3][b[3] as usize & 3],
        limit_loopback: b[3] & 4 != 0,
        ..Config::default()
    };
    (config, [4, 8, 16, 64][(b[3] as usize >> 3) & 3])
}

/// Decodes fuzzer bytes into a configuration choice and a sequence of operations.
pub fn decode(data: &[u8]) -> ([u8; 4], Vec<Op>) {
    let mut r = Reader { data, pos: 0 };
    let config = [r.u8(), r.u8(), r.u8(), r.u8()];
    let mut ops = Vec::new();
    while !r.done() && ops.len() < 400 {
        let tag = r.u8();
        let op = match tag % 16 {
            0 | 1 => Op::Connect { peer: r.u8() },
            2..=6 => {
                let conn = r.u8();
                let pieces = 1 + r.u8() % 4;
                let mut bytes = Vec::new();
                for _ in 0..pieces {
                    bytes.extend(grammar_piece(r.u8(), r.u8(), r.u8()));
                }
                Op::Input { conn, bytes }
            }
            7 => {
                let conn = r.u8();
                let len = r.u8() as usize;
                Op::Input {
                    conn,
                    bytes: r.take(len).to_vec(),
                }
            }
            8 => Op::Disconnect { conn: r.u8() },
            9 | 10 => Op::Advance {
                ms: u32::from(r.u8()) * [1, 10, 100, 1000][tag as usize >> 6],
            },
            11 | 12 => Op::Drain,
            13 => Op::PartialWrite {
                conn: r.u8(),
                n: u16::from(r.u8()) * 4,
            },
            14 => Op::Stall {
                conn: r.u8(),
                on: tag & 0x80 != 0,
            },
            _ => {
                if tag == 0xFF {
                    Op::Shutdown
                } else {
                    Op::Drain
                }
            }
        };
        ops.push(op);
    }
    (config, ops)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos = end;
        &self.data[start..end]
    }
}

/// What the shell knows about one connection.
#[derive(Debug)]
pub struct Conn {
    /// Its id.
    pub id: ConnId,
    /// Neither closed by the core nor lost by the shell.
    pub open: bool,
    /// Its peer does not read: output stays queued.
    pub stalled: bool,
    /// Every byte written to it.
    pub received: Vec<u8>,
    /// Why the core closed it, if it did.
    pub closed: Option<CloseReason>,
    /// Its output may stop in the middle of a line (partial writes, a stalled peer).
    pub cut: bool,
}

/// The model shell.
pub struct Shell {
    /// The core under test.
    pub chat: Chat,
    base: Instant,
    /// Milliseconds since `base`.
    pub now_ms: u64,
    /// Every connection made, in order.
    pub conns: Vec<Conn>,
    free: Vec<u32>,
    next_index: u32,
    next_generation: u32,
    /// Closes seen since the last drain of dirty ids.
    closed_this_turn: HashSet<ConnId>,
    /// Closes seen before the last drain of dirty ids.
    closed_before: HashSet<ConnId>,
    shut_down: bool,
    idle_timeout: bool,
    dirty: Vec<ConnId>,
}

impl Shell {
    /// A shell around a new core.
    pub fn new(config: Config, max_clients: usize) -> Shell {
        let base = Instant::now();
        let idle_timeout = config.idle_timeout.is_some();
        Shell {
            chat: Chat::new(config, max_clients, base),
            base,
            now_ms: 0,
            conns: Vec::new(),
            free: Vec::new(),
            next_index: 0,
            next_generation: 7,
            closed_this_turn: HashSet::new(),
            closed_before: HashSet::new(),
            shut_down: false,
            idle_timeout,
            dirty: Vec::new(),
        }
    }

    /// The fake clock.
    pub fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.now_ms)
    }

    /// Number of the connection an op's `conn` byte names (`None` before any connect).
    pub fn pick(&self, conn: u8) -> Option<usize> {
        (!self.conns.is_empty()).then(|| conn as usize % self.conns.len())
    }

    /// Opens a connection from `peer`; returns its number in [`Shell::conns`].
    pub fn connect(&mut self, peer: IpAddr) -> Result<usize, String> {
        let index = self.free.pop().unwrap_or_else(|| {
            self.next_index += 1;
            self.next_index - 1
        });
        self.next_generation += 1;
        let id = ConnId {
            index,
            generation: self.next_generation,
        };
        self.conns.push(Conn {
            id,
            open: true,
            stalled: false,
            received: Vec::new(),
            closed: None,
            cut: false,
        });
        let now = self.now();
        self.chat.handle_connect(id, peer, now);
        self.check()?;
        Ok(self.conns.len() - 1)
    }

    /// Hands `bytes` to connection number `n`, as read from its socket.
    pub fn input(&mut self, n: usize, bytes: &[u8]) -> Result<(), String> {
        let id = self.conns[n].id;
        let now = self.now();
        self.chat.handle_input(id, bytes, now);
        self.check()
    }

    /// Like [`Shell::input`], but as a shell that respects flood control: while the core does
    /// not want input from `n`, the clock moves to the next deadline first.
    pub fn input_when_wanted(&mut self, n: usize, bytes: &[u8]) -> Result<(), String> {
        for _ in 0..100_000 {
            self.drain()?;
            if !self.conns[n].open || self.chat.wants_input(self.conns[n].id) {
                return self.input(n, bytes);
            }
            let Some(at) = self.chat.next_deadline() else {
                return Err(format!("{:?} is held with no deadline", self.conns[n].id));
            };
            let ms = at.saturating_duration_since(self.now()).as_millis() as u32;
            self.advance(ms.max(1))?;
        }
        Err("flood control never let go".into())
    }

    /// The peer of connection number `n` closed it.
    pub fn disconnect(&mut self, n: usize) -> Result<(), String> {
        let id = self.conns[n].id;
        self.chat.handle_disconnect(id, CloseReason::PeerClosed);
        if self.conns[n].open {
            self.conns[n].open = false;
            self.free.push(id.index);
            self.closed_this_turn.insert(id);
        }
        self.check()
    }

    /// Moves the clock on by `ms`, firing each deadline on the way at its time.
    pub fn advance(&mut self, ms: u32) -> Result<(), String> {
        let target = self.now_ms + u64::from(ms);
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
        Err("timers keep firing at the same time".into())
    }

    fn timeout(&mut self) -> Result<(), String> {
        let now = self.now();
        self.chat.handle_timeout(now);
        if let Some(at) = self.chat.next_deadline()
            && at <= now
        {
            return Err(format!(
                "next_deadline {:?} is not after now {:?} after handle_timeout",
                at - self.base,
                now - self.base
            ));
        }
        self.check()
    }

    /// SIGTERM.
    pub fn shutdown(&mut self) -> Result<(), String> {
        self.shut_down = true;
        self.chat.handle_shutdown();
        self.check()
    }

    /// The kernel took `n` bytes of connection number `c`'s output.
    pub fn partial_write(&mut self, c: usize, n: usize) -> Result<(), String> {
        let id = self.conns[c].id;
        let out = self.chat.output(id);
        let n = n.min(out.len());
        let taken = out[..n].to_vec();
        if !self.conns[c].open && n > 0 {
            return Err(format!("output queued for closed {id:?}"));
        }
        // Output that stops mid-line may stay cut if the connection ends now.
        if n < out.len() {
            self.conns[c].cut = true;
        }
        self.conns[c].received.extend_from_slice(&taken);
        self.chat.consume_output(id, n);
        self.check()
    }

    /// One shell turn: the drain rule, repeated until nothing is left to do. Dirty connections
    /// are written whole, except that a stalled peer's write attempt takes nothing (0 bytes);
    /// output left behind by partial writes is written whole when the peer reads again (the
    /// socket turns writable); once everything is written, held senders are released with
    /// `handle_flushed` while the core wants a flush.
    pub fn drain(&mut self) -> Result<(), String> {
        for _ in 0..100_000 {
            let mut progress = self.drain_once()?;
            for c in 0..self.conns.len() {
                let id = self.conns[c].id;
                if self.conns[c].open && !self.conns[c].stalled && !self.chat.output(id).is_empty()
                {
                    self.partial_write(c, usize::MAX)?;
                    progress = true;
                }
            }
            if !progress && self.chat.wants_flush() {
                let now = self.now();
                self.chat.handle_flushed(now);
                self.check()?;
                progress = true;
            }
            if !progress {
                return Ok(());
            }
        }
        Err("the core never stops asking for a flush".into())
    }

    /// Closes, resumes and dirty connections once; returns whether there was anything.
    fn drain_once(&mut self) -> Result<bool, String> {
        let mut progress = false;
        while let Some(c) = self.chat.poll_close() {
            progress = true;
            let Some(conn) = self.conns.iter_mut().find(|x| x.id == c.id) else {
                return Err(format!("close of unknown {:?} ({})", c.id, c.reason));
            };
            // The core may have closed a connection that the shell then lost in the same
            // turn (its hangup came after); the shell ignores that close. Any other close of
            // a connection already closed is a bug.
            let lost_this_turn = !conn.open && self.closed_this_turn.contains(&c.id);
            if conn.closed.is_some() || (!conn.open && !lost_this_turn) {
                return Err(format!("close of {:?} ({}) reported twice", c.id, c.reason));
            }
            if c.reason == CloseReason::TooSlow && !c.final_output.is_empty() {
                return Err("a too-slow close carries output".into());
            }
            conn.closed = Some(c.reason);
            if c.reason == CloseReason::TooSlow {
                conn.cut = true;
            }
            if conn.open {
                conn.received.extend_from_slice(&c.final_output);
                conn.open = false;
                // A refused connection never had a session; its slot is free all the same.
                self.free.push(c.id.index);
                self.closed_this_turn.insert(c.id);
            }
        }
        while let Some(id) = self.chat.poll_resume() {
            progress = true;
            let open = self.conns.iter().any(|x| x.id == id && x.open);
            if !open {
                return Err(format!("resume of closed {id:?}"));
            }
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        self.chat.drain_dirty(&mut dirty);
        for &id in &dirty {
            progress = true;
            if self.closed_before.contains(&id) {
                return Err(format!("{id:?} reported dirty after its close"));
            }
            let Some(conn) = self.conns.iter_mut().find(|x| x.id == id) else {
                return Err(format!("unknown {id:?} reported dirty"));
            };
            let out = self.chat.output(id);
            if !conn.open && !out.is_empty() {
                return Err(format!("output queued for closed {id:?}"));
            }
            if !conn.open {
                continue;
            }
            if conn.stalled {
                // A write attempt the kernel refuses.
                self.chat.consume_output(id, 0);
                continue;
            }
            conn.received.extend_from_slice(out);
            let n = out.len();
            self.chat.consume_output(id, n);
        }
        self.dirty = dirty;
        self.closed_before.extend(self.closed_this_turn.drain());
        self.check()?;
        Ok(progress)
    }

    /// Applies one op (ops naming no connection are skipped).
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Connect { peer } => {
                if !self.shut_down {
                    let ip: IpAddr = PEERS[peer as usize % PEERS.len()]
                        .parse()
                        .map_err(|e| format!("{e}"))?;
                    self.connect(ip)?;
                }
            }
            Op::Input { conn, ref bytes } => {
                if let Some(n) = self.pick(conn) {
                    self.input(n, bytes)?;
                }
            }
            Op::Disconnect { conn } => {
                if let Some(n) = self.pick(conn) {
                    self.disconnect(n)?;
                }
            }
            Op::Advance { ms } => self.advance(ms)?,
            Op::Drain => self.drain()?,
            Op::PartialWrite { conn, n } => {
                if let Some(c) = self.pick(conn) {
                    self.partial_write(c, n as usize)?;
                }
            }
            Op::Stall { conn, on } => {
                if let Some(c) = self.pick(conn) {
                    self.conns[c].stalled = on;
                    self.conns[c].cut |= on;
                    if !on {
                        self.partial_write(c, usize::MAX)?;
                    }
                }
            }
            Op::Shutdown => {
                if !self.shut_down {
                    self.shutdown()?;
                }
            }
        }
        Ok(())
    }

    /// Disconnects everyone still open and checks that nothing is left behind; then lets
    /// every timer run out and checks that none is left.
    pub fn finish(&mut self) -> Result<(), String> {
        self.drain()?;
        for n in 0..self.conns.len() {
            if self.conns[n].open {
                self.disconnect(n)?;
            }
        }
        self.drain()?;
        if self.chat.connection_count() != 0 {
            return Err(format!(
                "{} connections left when everyone has gone",
                self.chat.connection_count()
            ));
        }
        if self.chat.room_count() != 1 {
            return Err(format!(
                "{} rooms left when everyone has gone",
                self.chat.room_count()
            ));
        }
        self.advance(86_400_000)?;
        self.drain()?;
        if let Some(at) = self.chat.next_deadline() {
            return Err(format!("a timer at {:?} outlives everyone", at - self.base));
        }
        for c in &self.conns {
            check_text(&c.received, c.cut).map_err(|e| format!("{:?}: {e}", c.id))?;
        }
        Ok(())
    }

    /// The checks made after every step.
    pub fn check(&mut self) -> Result<(), String> {
        self.chat.check_invariants()?;
        let open = self.conns.iter().filter(|c| c.open).count();
        // Closes reported by the core but not yet drained are still counted open here.
        let pending_close = self.chat.connection_count() < open;
        if self.chat.connection_count() > open {
            return Err(format!(
                "core counts {} connections, the shell {open}",
                self.chat.connection_count()
            ));
        }
        for c in &self.conns {
            if !c.open {
                if !self.chat.output(c.id).is_empty() {
                    return Err(format!("output queued for closed {:?}", c.id));
                }
                if self.chat.wants_input(c.id) {
                    return Err(format!("closed {:?} wants input", c.id));
                }
            } else if !pending_close
                && !self.chat.wants_flush()
                && !self.chat.wants_input(c.id)
                && self.chat.next_deadline().is_none()
            {
                return Err(format!("{:?} held by flood control with no deadline", c.id));
            }
        }
        let mut nicks = HashSet::new();
        let mut queued = 0;
        for c in self.conns.iter().filter(|c| c.open) {
            queued += self.chat.output(c.id).len();
            if let Some(nick) = self.chat.nick(c.id) {
                if !nicks.insert(nick.to_ascii_lowercase()) {
                    return Err(format!("nickname {nick} held twice"));
                }
                if self.chat.room_of(c.id).is_none() {
                    return Err(format!("{nick} is in no room"));
                }
            }
        }
        if queued != self.chat.queued_bytes() {
            return Err(format!(
                "{queued} bytes queued, queued_bytes says {}",
                self.chat.queued_bytes()
            ));
        }
        if self.idle_timeout
            && self.chat.connection_count() > 0
            && self.chat.next_deadline().is_none()
        {
            return Err("connections open with an idle timeout but no deadline".into());
        }
        Ok(())
    }
}

/// Checks bytes sent to one terminal: apart from telnet refusals (`IAC DONT x`, `IAC WONT x`),
/// valid UTF-8 in CR LF lines with no control character (C0, DEL, C1), no escape and no bidi
/// control. With `cut` the output may stop anywhere (a too-slow client's queue was dropped).
pub fn check_text(bytes: &[u8], cut: bool) -> Result<(), String> {
    let mut text = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == IAC {
            match bytes.get(i + 1) {
                Some(&DONT) | Some(&WONT) if i + 2 < bytes.len() => i += 3,
                _ if cut && i + 3 > bytes.len() => break,
                _ => return Err(format!("stray IAC at byte {i}")),
            }
        } else {
            text.push(bytes[i]);
            i += 1;
        }
    }
    let text = match std::str::from_utf8(&text) {
        Ok(t) => t,
        Err(e) if cut && e.error_len().is_none() => {
            std::str::from_utf8(&text[..e.valid_up_to()]).map_err(|e| e.to_string())?
        }
        Err(e) => return Err(format!("not UTF-8: {e}")),
    };
    let mut pieces = text.split("\r\n").peekable();
    while let Some(mut line) = pieces.next() {
        let last = pieces.peek().is_none();
        if cut && last {
            // Cut between CR and LF.
            line = line.strip_suffix('\r').unwrap_or(line);
        }
        if let Some(c) = line.chars().find(|&c| forbidden(c)) {
            return Err(format!("{c:?} in line {line:?}"));
        }
        if last && !line.is_empty() && !cut && !line.ends_with("Your nickname: ") {
            return Err(format!("unterminated line {line:?}"));
        }
    }
    Ok(())
}

/// Characters that must never reach a terminal.
pub fn forbidden(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Parses a peer address from [`PEERS`].
pub fn peer(i: usize) -> IpAddr {
    PEERS[i % PEERS.len()]
        .parse()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The IPv6 loopback, for tests.
pub fn v6_loopback() -> IpAddr {
    IpAddr::V6(Ipv6Addr::LOCALHOST)
}

/// Runs a pair: logs in `alice` (the sender) and `bob` (a second member of the room), hands
/// alice `reads` as a flood-control-respecting shell would, lets every timer run, and returns
/// (what alice received, what bob received) after login. Checks run after every step.
pub fn run_pair(config: Config, reads: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut sh = Shell::new(config, 16);
    let alice = sh.connect(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    sh.input(alice, b"alice\r\n")?;
    let bob = sh.connect(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
    sh.input(bob, b"bob\r\n")?;
    sh.advance(60_000)?;
    sh.drain()?;
    sh.conns[alice].received.clear();
    sh.conns[bob].received.clear();
    for r in reads {
        sh.input_when_wanted(alice, r)?;
        sh.drain()?;
    }
    sh.advance(600_000)?;
    sh.drain()?;
    let a = std::mem::take(&mut sh.conns[alice].received);
    let b = std::mem::take(&mut sh.conns[bob].received);
    check_text(&b, false).map_err(|e| format!("bob: {e}"))?;
    sh.finish()?;
    Ok((a, b))
}
