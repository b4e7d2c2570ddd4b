//! The chat state machine: nicknames, rooms, commands, notices and output queues.
//!
//! It turns "connection K sent these bytes" into "queue these bytes for these connections,
//! close that one", and never touches a socket or reads a clock.
//!
//! # Drain rule
//! After every batch of `handle_*` calls (one turn of the event loop), the shell must:
//! 1. take every [`Closed`] from [`Chat::poll_close`], write its `final_output` once and close
//!    the socket (the core has already forgotten the connection);
//! 2. take the dirty ids from [`Chat::drain_dirty`], write each one's [`Chat::output`] once and
//!    report every attempt with [`Chat::consume_output`] (with 0 when the kernel took nothing:
//!    `--sendq` is judged there). An id is reported dirty only when its output goes from empty
//!    to non-empty: if the kernel did not take everything, the shell itself must remember the id
//!    (it waits for the socket to become writable) and write again;
//! 3. when nothing is left to write and [`Chat::wants_flush`] is set, call
//!    [`Chat::handle_flushed`] (senders held for output go on) and repeat from 1;
//! 4. take every id from [`Chat::poll_resume`] and read that socket again (flood control or
//!    output backpressure held its input, and it may go on);
//! 5. sleep in its poll until the next I/O event or [`Chat::next_deadline`], whichever is first,
//!    then call [`Chat::handle_timeout`] if the deadline passed.
//!
//! The shell may also drain in the middle of a turn whenever [`Chat::wants_flush`] is set; that
//! is what bounds the output one busy turn can pile up.
//!
//! Closes requested while a broadcast runs (a recipient passing `--sendq`) are only marked; they
//! are carried out at the end of the `handle_*` call, never in the middle of a loop over a room.

use crate::config::Config;
use crate::proto::command::{self, Command, Input};
use crate::proto::line::{self, LineAssembler, LineEvent};
use crate::proto::names::{self, Nick, RoomName, folded_hash, parse_nick, parse_room};
use crate::proto::reply;
use crate::proto::sanitize::sanitize_into;
use crate::proto::telnet::{TelnetDecoder, TelnetEvent};
use hashbrown::HashTable;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::hash::RandomState;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// One connection: a slot index chosen by the shell plus a generation, so that a stale id for a
/// reused slot never reaches the newcomer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// Slot index (the shell's slab key).
    pub index: u32,
    /// Generation, unique for the life of the server.
    pub generation: u32,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.generation)
    }
}

/// Why a connection ends; logged by the shell and, for members of a room, told to the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The user typed `/quit` or pressed Ctrl-C in telnet.
    Quit,
    /// The peer closed or reset the connection; the shell has dropped the socket.
    PeerClosed,
    /// The peer closed its sending side (end of input). It may still read, so the core hands
    /// back what is queued for it, like any close of its own.
    InputClosed,
    /// Reading from or writing to the socket failed.
    SocketError,
    /// Unsent output passed `--sendq`.
    TooSlow,
    /// Silent for `--idle-timeout`.
    IdleTimeout,
    /// No nickname within `--login-timeout`.
    LoginTimeout,
    /// `--max-clients` reached.
    ServerFull,
    /// `--max-per-ip` reached for the peer's address.
    TooManyFromAddress,
    /// The first line was an HTTP request line.
    HttpRequest,
}

impl CloseReason {
    /// What the room is told in parentheses after `*** NICK left #ROOM`.
    fn room_note(self) -> &'static str {
        match self {
            CloseReason::TooSlow => "too slow",
            CloseReason::IdleTimeout => "idle timeout",
            _ => "connection closed",
        }
    }

    /// Whether the shell asked for this close (it has already dropped the socket).
    fn is_from_shell(self) -> bool {
        matches!(self, CloseReason::PeerClosed | CloseReason::SocketError)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Quit => "quit",
            CloseReason::PeerClosed => "closed by peer",
            CloseReason::InputClosed => "end of input",
            CloseReason::SocketError => "socket error",
            CloseReason::TooSlow => "too slow",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::LoginTimeout => "login timeout",
            CloseReason::ServerFull => "server full",
            CloseReason::TooManyFromAddress => "too many connections from address",
            CloseReason::HttpRequest => "HTTP request",
        })
    }
}

/// A connection the core is done with: the shell writes `final_output` once, then closes.
#[derive(Debug)]
pub struct Closed {
    /// The connection.
    pub id: ConnId,
    /// Why it ends.
    pub reason: CloseReason,
    /// Bytes still to send (such as `*** Bye, NICK!`); empty for a client that was too slow.
    pub final_output: Vec<u8>,
}

/// The chat core. See the module docs for how the shell drives it.
pub struct Chat {
    config: Config,
    banner: Vec<u8>,
    max_clients: usize,
    epoch: Instant,
    conns: Conns,
    live: usize,
    nicks: HashTable<u32>,
    hasher: RandomState,
    rooms: slab::Slab<Room>,
    room_index: HashMap<String, usize>,
    default_room: usize,
    per_ip: HashMap<IpKey, u32>,
    guests: u64,
    timers: BinaryHeap<Reverse<Timer>>,
    closed: std::collections::VecDeque<Closed>,
    resumed: Vec<ConnId>,
    /// Senders whose input is held until the shell has written this turn's output.
    held_for_output: Vec<ConnId>,
    shutting_down: bool,
    /// Scratch: the line being assembled during one `handle_input`.
    line_buf: Vec<u8>,
    /// Scratch: one rendered line to fan out.
    fmt_buf: Vec<u8>,
    /// Scratch: cleaned text.
    text_buf: String,
}

/// Session slots plus the two lists a delivery can touch, kept apart from the rooms so a room's
/// member list can be walked while deliveries are made.
struct Conns {
    slots: Vec<Option<Session>>,
    dirty: Vec<ConnId>,
    closing: Vec<(ConnId, CloseReason)>,
    sendq: usize,
    /// Sum of every session's unsent output.
    queued: usize,
    /// Bytes queued since the shell last took the dirty list (see [`Chat::wants_flush`]).
    fresh: usize,
    /// Set when output queued since the last write is large enough that input processing
    /// should pause until the shell writes it.
    flush_wanted: bool,
}

/// Everything the core keeps per connection (about 100 bytes, no heap while idle).
struct Session {
    generation: u32,
    /// Empty until login.
    nick: Nick,
    room: u32,
    telnet: TelnetDecoder,
    line: LineAssembler,
    seen_line: bool,
    closing: bool,
    /// Input is held: flood control waits for the token bucket, or output backpressure waits
    /// for the shell to write what this turn queued.
    paused: bool,
    /// The last write attempt left output the kernel did not take.
    blocked: bool,
    ip: Option<IpKey>,
    last_input_ms: u64,
    tokens: f32,
    refilled_ms: u64,
    /// Unsent output; no allocation while empty.
    out: Vec<u8>,
    /// Rarely used buffers, boxed so an idle session pays one pointer for them.
    spill: Option<Box<Spill>>,
}

/// Per-connection buffers that only exist while needed.
#[derive(Default)]
struct Spill {
    /// An unfinished input line.
    line: Vec<u8>,
    /// Raw input read but not yet processed because of flood control.
    held: Vec<u8>,
}

struct Room {
    name: RoomName,
    /// Session indices in join order.
    members: Vec<u32>,
}

/// The address a per-address limit counts: an IPv4 address or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum IpKey {
    V4([u8; 4]),
    V6([u8; 8]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Login,
    Idle,
    Rate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at_ms: u64,
    index: u32,
    generation: u32,
    kind: TimerKind,
}

/// Why input processing stopped with bytes left over.
#[derive(Clone, Copy)]
enum Hold {
    /// The token bucket is empty; a timer resumes it.
    Rate,
    /// This turn queued a lot of output; the shell's next write resumes it.
    Output,
}

/// Output queued in one turn after which input processing pauses until the shell writes.
/// Large enough that lines from several senders share one write per recipient (fan-out cost is
/// mostly system calls), small enough to bound what a burst can hold in memory.
pub const OUTPUT_HIGH_WATER: usize = 8 << 20;

const NO_ROOM: u32 = u32::MAX;
const MAX_LISTED: usize = 100;

impl Chat {
    /// Creates the core. `max_clients` is the resolved connection limit; `now` is the epoch of
    /// the core's clock (only differences of later `now` values matter).
    pub fn new(config: Config, max_clients: usize, now: Instant) -> Chat {
        let mut rooms = slab::Slab::new();
        // Structures that grow with the number of connections are reserved up front: untouched
        // pages cost no memory, no doubling copy leaves half of a table unused, and none of them
        // is reallocated on top of the heap during a burst (which would pin freed output
        // buffers below it).
        let reserve = max_clients.min(1 << 20);
        let default_room = rooms.insert(Room {
            name: config.default_room,
            members: Vec::with_capacity(reserve),
        });
        let mut room_index = HashMap::new();
        room_index.insert(
            config.default_room.as_str().to_ascii_lowercase(),
            default_room,
        );
        Chat {
            banner: reply::banner(&config.banner),
            conns: Conns {
                slots: Vec::with_capacity(reserve),
                dirty: Vec::with_capacity(reserve),
                closing: Vec::new(),
                sendq: config.sendq,
                queued: 0,
                fresh: 0,
                flush_wanted: false,
            },
            config,
            max_clients,
            epoch: now,
            live: 0,
            nicks: HashTable::with_capacity(reserve),
            hasher: RandomState::new(),
            rooms,
            room_index,
            default_room,
            per_ip: HashMap::new(),
            guests: 0,
            timers: BinaryHeap::new(),
            closed: Default::default(),
            resumed: Vec::new(),
            held_for_output: Vec::new(),
            shutting_down: false,
            line_buf: Vec::new(),
            fmt_buf: Vec::new(),
            text_buf: String::new(),
        }
    }

    /// A new connection from `peer`: greets it, or refuses it when a limit is reached.
    pub fn handle_connect(&mut self, id: ConnId, peer: IpAddr, now: Instant) {
        if self.live >= self.max_clients {
            return self.refuse(
                id,
                CloseReason::ServerFull,
                "Server is full, try again later.",
            );
        }
        let key = IpKey::from(peer);
        let counted =
            self.config.max_per_ip > 0 && (self.config.limit_loopback || !is_loopback(peer));
        if counted {
            let n = self.per_ip.entry(key).or_insert(0);
            if *n as usize >= self.config.max_per_ip {
                return self.refuse(
                    id,
                    CloseReason::TooManyFromAddress,
                    "Too many connections from your address.",
                );
            }
            *n += 1;
        }
        let index = id.index as usize;
        if self.conns.slots.get(index).is_some_and(Option::is_some) {
            // The shell reused a slot we still hold: forget the old one first.
            self.close_slot(index, CloseReason::PeerClosed);
        }
        if self.conns.slots.len() <= index {
            self.conns.slots.resize_with(index + 1, || None);
        }
        let now_ms = self.ms(now);
        self.conns.slots[index] = Some(Session {
            generation: id.generation,
            nick: Nick::EMPTY,
            room: NO_ROOM,
            telnet: TelnetDecoder::default(),
            line: LineAssembler::default(),
            seen_line: false,
            closing: false,
            paused: false,
            blocked: false,
            ip: counted.then_some(key),
            last_input_ms: now_ms,
            tokens: self.config.burst as f32,
            refilled_ms: now_ms,
            out: Vec::new(),
            spill: None,
        });
        self.live += 1;
        self.conns.deliver(id.index, &self.banner);
        if let Some(t) = self.config.login_timeout {
            self.push_timer(now_ms + millis(t), id, TimerKind::Login);
        }
        if let Some(t) = self.config.idle_timeout {
            self.push_timer(now_ms + millis(t), id, TimerKind::Idle);
        }
    }

    /// Bytes read from connection `id`.
    pub fn handle_input(&mut self, id: ConnId, bytes: &[u8], now: Instant) {
        if self.shutting_down {
            return;
        }
        let now_ms = self.ms(now);
        let Some(s) = self.conns.open_mut(id) else {
            return;
        };
        s.last_input_ms = now_ms;
        if s.paused {
            s.spill
                .get_or_insert_default()
                .held
                .extend_from_slice(bytes);
        } else {
            self.process_input(id, bytes, now_ms);
        }
        self.finish();
    }

    /// The peer of `id` is gone or done: for [`CloseReason::InputClosed`] the core answers with a
    /// [`Closed`] carrying the output still queued; for the others the shell has already
    /// dropped the socket and gets nothing back.
    pub fn handle_disconnect(&mut self, id: ConnId, reason: CloseReason) {
        if self.conns.open_mut(id).is_some() {
            self.conns.request_close(id, reason);
        }
        self.finish();
    }

    /// Time passed: fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now_ms = self.ms(now);
        while let Some(&Reverse(t)) = self.timers.peek() {
            if t.at_ms > now_ms {
                break;
            }
            self.timers.pop();
            let id = ConnId {
                index: t.index,
                generation: t.generation,
            };
            let Some(s) = self.conns.open_mut(id) else {
                continue;
            };
            match t.kind {
                TimerKind::Login => {
                    if s.nick.is_empty() {
                        self.close_with_notice(id, "Login timeout.", CloseReason::LoginTimeout);
                    }
                }
                TimerKind::Idle => {
                    let due = s.last_input_ms + self.config.idle_timeout.map_or(0, millis);
                    if due <= now_ms {
                        self.close_with_notice(id, "Idle timeout.", CloseReason::IdleTimeout);
                    } else {
                        self.push_timer(due, id, TimerKind::Idle);
                    }
                }
                TimerKind::Rate => self.resume_input(id, now_ms),
            }
        }
        self.finish();
    }

    /// The server is shutting down: tells everyone and ignores further input.
    pub fn handle_shutdown(&mut self) {
        self.shutting_down = true;
        let mut notice = Vec::new();
        reply::notice(&mut notice, &["Server is shutting down."]);
        for index in 0..self.conns.slots.len() as u32 {
            self.conns.deliver(index, &notice);
        }
        self.finish();
    }

    /// Whether output queued since the last write is large enough that the shell should write
    /// before handling more events (input that queued it is held meanwhile). This bounds the
    /// memory one turn can fill with output, and keeps one fast reader from being judged on
    /// more than it was ever offered.
    pub fn wants_flush(&self) -> bool {
        self.conns.flush_wanted
    }

    /// The shell has written every dirty connection: resumes the senders whose input was held
    /// for output, in order, until output piles up again.
    pub fn handle_flushed(&mut self, now: Instant) {
        let now_ms = self.ms(now);
        self.conns.fresh = 0;
        self.conns.flush_wanted = false;
        let mut waiting = std::mem::take(&mut self.held_for_output).into_iter();
        for id in waiting.by_ref() {
            self.release_held_input(id, now_ms);
            if self.conns.flush_wanted {
                break;
            }
        }
        // Those not reached go first next time, then whoever paused again just now.
        let paused_again = std::mem::replace(&mut self.held_for_output, waiting.collect());
        self.held_for_output.extend(paused_again);
        self.finish();
    }

    /// Whether the shell should read from `id` now (false while flood control holds it).
    pub fn wants_input(&self, id: ConnId) -> bool {
        self.conns.get(id).is_some_and(|s| !s.paused && !s.closing)
    }

    /// Moves the ids that gained output since the last call into `into` (cleared first).
    pub fn drain_dirty(&mut self, into: &mut Vec<ConnId>) {
        into.clear();
        std::mem::swap(into, &mut self.conns.dirty);
        // The shell writes these now: output queued from here on is fresh again.
        self.conns.fresh = 0;
    }

    /// Unsent output of `id`.
    pub fn output(&self, id: ConnId) -> &[u8] {
        self.conns.get(id).map_or(&[], |s| &s.out)
    }

    /// A write attempt for `id` is over and the kernel took the first `n` bytes of its output
    /// (0 when it would block). The buffer is freed once empty; a client left with more than
    /// `--sendq` unsent bytes is closed as too slow.
    pub fn consume_output(&mut self, id: ConnId, n: usize) {
        self.conns.consume(id, n);
        self.finish();
    }

    /// The next connection to close, with its last bytes.
    pub fn poll_close(&mut self) -> Option<Closed> {
        self.closed.pop_front()
    }

    /// The next connection whose input was paused by flood control and may be read again.
    pub fn poll_resume(&mut self) -> Option<ConnId> {
        // An id may have been closed after it was resumed, later in the same call.
        while let Some(id) = self.resumed.pop() {
            if self.conns.is_open(id) {
                return Some(id);
            }
        }
        None
    }

    /// When [`Chat::handle_timeout`] next has something to do; `None` when nothing is due ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers
            .peek()
            .map(|Reverse(t)| self.epoch + Duration::from_millis(t.at_ms))
    }

    /// Bytes queued for all connections and not yet taken by [`Chat::consume_output`] (for
    /// monitoring, tests and fuzzing; [`Chat::wants_flush`] is what bounds a turn).
    pub fn queued_bytes(&self) -> usize {
        self.conns.queued
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.live
    }

    /// The nickname of `id`, once logged in.
    pub fn nick(&self, id: ConnId) -> Option<&str> {
        self.conns
            .get(id)
            .filter(|s| !s.nick.is_empty())
            .map(|s| s.nick.as_str())
    }

    /// The room `id` is in (without `#`), once logged in.
    pub fn room_of(&self, id: ConnId) -> Option<&str> {
        let s = self.conns.get(id)?;
        self.rooms.get(s.room as usize).map(|r| r.name.as_str())
    }

    /// Number of rooms (the default room included).
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Checks the core's invariants; for tests and fuzzing. Returns what is wrong.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut in_rooms = 0;
        for (r, room) in &self.rooms {
            if room.members.is_empty() && r != self.default_room {
                return Err(format!("empty room #{} kept", room.name));
            }
            for &m in &room.members {
                let s = self
                    .conns
                    .slot(m)
                    .ok_or(format!("member {m} of #{} is gone", room.name))?;
                if s.nick.is_empty() || s.room as usize != r || s.closing {
                    return Err(format!(
                        "member {m} of #{} is not a live user there",
                        room.name
                    ));
                }
            }
            in_rooms += room.members.len();
        }
        let mut users = 0;
        let mut live = 0;
        let mut queued = 0;
        for (i, s) in self.conns.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            live += 1;
            queued += s.out.len();
            if !s.nick.is_empty() {
                users += 1;
                if self.find_nick(s.nick.as_str()) != Some(i as u32) {
                    return Err(format!("{} missing from the nick registry", s.nick));
                }
            }
        }
        if self.nicks.len() != users || in_rooms != users || live != self.live {
            return Err(format!(
                "counts disagree: {} nicks, {users} users, {in_rooms} in rooms, {live}/{} live",
                self.nicks.len(),
                self.live
            ));
        }
        if queued != self.conns.queued {
            return Err(format!(
                "{queued} bytes queued, {} counted",
                self.conns.queued
            ));
        }
        if self.live == 0 && (!self.per_ip.is_empty() || self.rooms.len() != 1) {
            return Err("state left behind with no connections".to_string());
        }
        Ok(())
    }

    // ---- input ----

    /// Runs bytes through telnet decoding and line assembly, dispatching complete lines.
    fn process_input(&mut self, id: ConnId, bytes: &[u8], now_ms: u64) {
        let Some(s) = self.conns.get_mut(id) else {
            return;
        };
        let (mut telnet, mut assembler) = (s.telnet, s.line);
        let mut buf = std::mem::take(&mut self.line_buf);
        buf.clear();
        if let Some(spill) = &mut s.spill {
            buf.append(&mut spill.line);
        }
        let max_line = self.config.max_line;
        let mut held = None;
        for (i, &byte) in bytes.iter().enumerate() {
            let Some(event) = telnet.step(byte) else {
                continue;
            };
            // Replies to the sender itself can make it too slow: then act on nothing more.
            let replied = match event {
                TelnetEvent::Data(b) => match assembler.push(b, &mut buf, max_line) {
                    None => false,
                    Some(LineEvent::TooLong) => {
                        self.line_too_long(id);
                        true
                    }
                    Some(LineEvent::Line) => {
                        self.dispatch_line(id, &buf);
                        buf.clear();
                        if !self.conns.is_open(id) {
                            break;
                        }
                        if !self.take_token(id, now_ms) {
                            held = Some((i + 1, Hold::Rate));
                            break;
                        }
                        if self.conns.flush_wanted {
                            held = Some((i + 1, Hold::Output));
                            break;
                        }
                        false
                    }
                },
                TelnetEvent::Reply(bytes) => {
                    self.conns.deliver(id.index, &bytes);
                    true
                }
                TelnetEvent::Interrupt => {
                    self.quit(id, "");
                    break;
                }
                TelnetEvent::AreYouThere => {
                    self.conns.deliver(id.index, b"*** yes, still here\r\n");
                    true
                }
                TelnetEvent::EraseChar => {
                    line::erase_char(&mut buf);
                    false
                }
                TelnetEvent::EraseLine => {
                    buf.clear();
                    false
                }
            };
            if replied && !self.conns.is_open(id) {
                break;
            }
        }
        if let Some(s) = self.conns.open_mut(id) {
            s.telnet = telnet;
            s.line = assembler;
            if !buf.is_empty() {
                s.spill.get_or_insert_default().line.extend_from_slice(&buf);
            }
            if let Some((from, _)) = held {
                s.paused = true;
                s.spill
                    .get_or_insert_default()
                    .held
                    .extend_from_slice(&bytes[from..]);
            }
            if s.spill
                .as_ref()
                .is_some_and(|sp| sp.line.is_empty() && sp.held.is_empty())
            {
                s.spill = None;
            }
            match held {
                Some((_, Hold::Rate)) => {
                    let wait = self.refill_wait_ms(id);
                    self.push_timer(now_ms + wait, id, TimerKind::Rate);
                }
                Some((_, Hold::Output)) => self.held_for_output.push(id),
                None => {}
            }
        }
        buf.clear();
        self.line_buf = buf;
    }

    /// Spends one line from `id`'s token bucket; false when the bucket is now empty.
    fn take_token(&mut self, id: ConnId, now_ms: u64) -> bool {
        let (rate, burst) = (self.config.rate, self.config.burst as f32);
        if rate == 0 {
            return true;
        }
        let Some(s) = self.conns.get_mut(id) else {
            return true;
        };
        refill(s, rate, burst, now_ms);
        s.tokens -= 1.0;
        s.tokens >= 1.0
    }

    /// Milliseconds until `id`'s bucket holds one whole token again.
    fn refill_wait_ms(&self, id: ConnId) -> u64 {
        let tokens = self.conns.get(id).map_or(1.0, |s| s.tokens);
        let missing = (1.0 - tokens).max(0.0);
        ((missing * 1000.0 / self.config.rate.max(1) as f32).ceil() as u64).max(1)
    }

    /// The flood-control timer fired: processes held input and lets the shell read again.
    fn resume_input(&mut self, id: ConnId, now_ms: u64) {
        let (rate, burst) = (self.config.rate, self.config.burst as f32);
        let Some(s) = self.conns.open_mut(id) else {
            return;
        };
        refill(s, rate, burst, now_ms);
        if s.tokens < 1.0 {
            let wait = self.refill_wait_ms(id);
            return self.push_timer(now_ms + wait, id, TimerKind::Rate);
        }
        self.release_held_input(id, now_ms);
    }

    /// Unpauses `id`, processes the input it held, and tells the shell to read again unless
    /// that input paused it once more.
    fn release_held_input(&mut self, id: ConnId, now_ms: u64) {
        let Some(s) = self.conns.open_mut(id) else {
            return;
        };
        s.paused = false;
        let held = s
            .spill
            .as_mut()
            .map(|sp| std::mem::take(&mut sp.held))
            .unwrap_or_default();
        // After shutdown input is ignored, held input included.
        if !held.is_empty() && !self.shutting_down {
            self.process_input(id, &held, now_ms);
        }
        if self.conns.get(id).is_some_and(|s| !s.paused && !s.closing) {
            self.resumed.push(id);
        }
    }

    /// Acts on one complete input line.
    fn dispatch_line(&mut self, id: ConnId, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let Some(s) = self.conns.open_mut(id) else {
            return;
        };
        let first = !s.seen_line;
        s.seen_line = true;
        if first && command::is_http_request_line(&text) {
            return self.close_with_error(
                id,
                "This is a chat server, not a web server.",
                CloseReason::HttpRequest,
            );
        }
        if s.nick.is_empty() {
            self.line_before_login(id, &text);
        } else {
            self.line_after_login(id, &text);
        }
    }

    fn line_before_login(&mut self, id: ConnId, text: &str) {
        match command::parse(text) {
            Input::Command(Command::Nick(name)) => self.try_login(id, name),
            Input::Command(Command::Help) => {
                self.help(id);
                self.conns.deliver(id.index, reply::PROMPT);
            }
            Input::Command(Command::Quit(_)) => {
                self.conns.deliver(id.index, b"*** Bye!\r\n");
                self.conns.request_close(id, CloseReason::Quit);
            }
            Input::Unknown(word) => {
                self.unknown_command(id, word);
                self.conns.deliver(id.index, reply::PROMPT);
            }
            Input::Usage(usage @ "/nick NAME") => {
                self.send_error(id, &["Usage: ", usage]);
                self.conns.deliver(id.index, reply::PROMPT);
            }
            _ if text.starts_with('/') && !text.starts_with("//") => {
                self.send_error(
                    id,
                    &["Choose a nickname first: type a nickname, or an empty line for a guest name."],
                );
                self.conns.deliver(id.index, reply::PROMPT);
            }
            _ if text.trim().is_empty() => {
                let nick = self.next_guest();
                self.login(id, nick);
            }
            _ => self.try_login(id, text.trim()),
        }
    }

    fn line_after_login(&mut self, id: ConnId, text: &str) {
        match command::parse(text) {
            Input::Empty => {}
            Input::Chat(t) => self.say(id, t, "<", "> "),
            Input::Command(Command::Me(t)) => self.say(id, t, "* ", " "),
            Input::Command(Command::Nick(name)) => self.change_nick(id, name),
            Input::Command(Command::Join(room)) => self.join(id, room),
            Input::Command(Command::Rooms) => self.list_rooms(id),
            Input::Command(Command::Who) => self.who(id),
            Input::Command(Command::Whisper { to, text }) => self.whisper(id, to, text),
            Input::Command(Command::Help) => self.help(id),
            Input::Command(Command::Quit(reason)) => self.quit(id, reason),
            Input::Usage(usage) => self.send_error(id, &["Usage: ", usage]),
            Input::Unknown(word) => self.unknown_command(id, word),
        }
    }

    /// Answers an overlong line; before login the prompt follows, as after every error there.
    fn line_too_long(&mut self, id: ConnId) {
        self.fmt_buf.clear();
        reply::line_too_long(&mut self.fmt_buf, self.config.max_line);
        self.conns.deliver(id.index, &self.fmt_buf);
        if self.conns.get(id).is_some_and(|s| s.nick.is_empty()) {
            self.conns.deliver(id.index, reply::PROMPT);
        }
    }

    // ---- commands ----

    fn try_login(&mut self, id: ConnId, name: &str) {
        match parse_nick(name) {
            Err(e) => self.send_error(id, &[&e.to_string()]),
            Ok(nick) if self.find_nick(nick.as_str()).is_some() => {
                self.send_error(id, &["The nickname ", nick.as_str(), " is already taken."])
            }
            Ok(nick) => return self.login(id, nick),
        }
        self.conns.deliver(id.index, reply::PROMPT);
    }

    fn login(&mut self, id: ConnId, nick: Nick) {
        let Some(s) = self.conns.get_mut(id) else {
            return;
        };
        s.nick = nick;
        self.register_nick(id.index);
        let room = self.default_room;
        let name = self.rooms[room].name;
        self.fmt_buf.clear();
        reply::notice(
            &mut self.fmt_buf,
            &[
                "Welcome, ",
                nick.as_str(),
                "! You are in #",
                name.as_str(),
                ".",
            ],
        );
        self.conns.deliver(id.index, &self.fmt_buf);
        self.enter_room(id, room);
    }

    fn next_guest(&mut self) -> Nick {
        loop {
            self.guests += 1;
            let name = format!("guest{}", self.guests);
            if let Ok(nick) = parse_nick(&name)
                && self.find_nick(&name).is_none()
            {
                return nick;
            }
        }
    }

    /// Relays chat text (`<NICK> TEXT`) or an action (`* NICK TEXT`) to the rest of the room.
    fn say(&mut self, id: ConnId, text: &str, before: &str, after: &str) {
        let Some(s) = self.conns.get(id) else {
            return;
        };
        let (nick, room) = (s.nick, s.room);
        let mut clean = std::mem::take(&mut self.text_buf);
        clean.clear();
        sanitize_into(text, &mut clean);
        if !clean.trim().is_empty() {
            self.fmt_buf.clear();
            reply::line(&mut self.fmt_buf, &[before, nick.as_str(), after, &clean]);
            self.broadcast(room, id.index);
        }
        self.text_buf = clean;
    }

    fn whisper(&mut self, id: ConnId, to: &str, text: &str) {
        let Some(from) = self.conns.get(id).map(|s| s.nick) else {
            return;
        };
        let Some(target) = self.find_nick(to) else {
            let shown = shown_word(to);
            return self.send_error(id, &["No such user: ", &shown, "."]);
        };
        let Some(target_nick) = self.conns.slot(target).map(|s| s.nick) else {
            return;
        };
        let mut clean = std::mem::take(&mut self.text_buf);
        clean.clear();
        sanitize_into(text, &mut clean);
        if !clean.trim().is_empty() {
            self.fmt_buf.clear();
            reply::line(&mut self.fmt_buf, &["*", from.as_str(), "* ", &clean]);
            self.conns.deliver(target, &self.fmt_buf);
            self.fmt_buf.clear();
            reply::line(
                &mut self.fmt_buf,
                &["-> *", target_nick.as_str(), "* ", &clean],
            );
            self.conns.deliver(id.index, &self.fmt_buf);
        }
        self.text_buf = clean;
    }

    fn change_nick(&mut self, id: ConnId, name: &str) {
        let new = match parse_nick(name) {
            Ok(n) => n,
            Err(e) => return self.send_error(id, &[&e.to_string()]),
        };
        let Some(s) = self.conns.get(id) else {
            return;
        };
        let (old, room) = (s.nick, s.room);
        if old == new {
            return self.send_error(id, &["You are already ", old.as_str(), "."]);
        }
        if self
            .find_nick(new.as_str())
            .is_some_and(|holder| holder != id.index)
        {
            return self.send_error(id, &["The nickname ", new.as_str(), " is already taken."]);
        }
        self.unregister_nick(id.index);
        if let Some(s) = self.conns.get_mut(id) {
            s.nick = new;
        }
        self.register_nick(id.index);
        self.fmt_buf.clear();
        reply::notice(
            &mut self.fmt_buf,
            &["You are now known as ", new.as_str(), "."],
        );
        self.conns.deliver(id.index, &self.fmt_buf);
        if self.announces(self.member_count(room)) {
            self.fmt_buf.clear();
            reply::notice(
                &mut self.fmt_buf,
                &[old.as_str(), " is now known as ", new.as_str()],
            );
            self.broadcast(room, id.index);
        }
    }

    fn join(&mut self, id: ConnId, name: &str) {
        let name = match parse_room(name) {
            Ok(n) => n,
            Err(e) => return self.send_error(id, &[&e.to_string()]),
        };
        let key = name.as_str().to_ascii_lowercase();
        let current = self.conns.get(id).map_or(NO_ROOM, |s| s.room);
        if let Some(&r) = self.room_index.get(&key)
            && r as u32 == current
        {
            let shown = self.rooms[r].name;
            return self.send_error(id, &["You are already in #", shown.as_str(), "."]);
        }
        self.leave_room(id, "");
        let room = match self.room_index.get(&key) {
            Some(&r) => r,
            None => {
                let r = self.rooms.insert(Room {
                    name,
                    members: Vec::new(),
                });
                self.room_index.insert(key, r);
                r
            }
        };
        self.enter_room(id, room);
        let shown = self.rooms[room].name;
        let count = reply::users(self.member_count(room as u32));
        self.fmt_buf.clear();
        reply::notice(
            &mut self.fmt_buf,
            &["You joined #", shown.as_str(), " (", &count, ")"],
        );
        self.conns.deliver(id.index, &self.fmt_buf);
    }

    fn list_rooms(&mut self, id: ConnId) {
        let mut list: Vec<(usize, &str)> = self
            .rooms
            .iter()
            .map(|(_, r)| (r.members.len(), r.name.as_str()))
            .collect();
        list.sort_by(|a, b| {
            b.0.cmp(&a.0).then_with(|| {
                a.1.bytes()
                    .map(|c| c.to_ascii_lowercase())
                    .cmp(b.1.bytes().map(|c| c.to_ascii_lowercase()))
            })
        });
        let mut out = Vec::new();
        reply::rooms_header(&mut out, list.len());
        for (count, name) in list.iter().take(MAX_LISTED) {
            reply::notice(&mut out, &["  #", name, " (", &reply::users(*count), ")"]);
        }
        if list.len() > MAX_LISTED {
            reply::and_more(&mut out, list.len() - MAX_LISTED);
        }
        self.conns.deliver(id.index, &out);
    }

    fn who(&mut self, id: ConnId) {
        let Some(room) = self
            .conns
            .get(id)
            .and_then(|s| self.rooms.get(s.room as usize))
        else {
            return;
        };
        let mut out = Vec::new();
        let count = room.members.len();
        // The contract's template, to the letter: "K users" even for one.
        out.extend_from_slice(format!("*** {count} users in #{}: ", room.name).as_bytes());
        for (i, &m) in room.members.iter().take(MAX_LISTED).enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            if let Some(s) = self.conns.slot(m) {
                out.extend_from_slice(s.nick.as_str().as_bytes());
            }
        }
        if count > MAX_LISTED {
            out.extend_from_slice(format!(", ... and {} more", count - MAX_LISTED).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        self.conns.deliver(id.index, &out);
    }

    fn help(&mut self, id: ConnId) {
        let mut out = Vec::new();
        for line in reply::HELP {
            reply::notice(&mut out, &[line]);
        }
        self.conns.deliver(id.index, &out);
    }

    fn quit(&mut self, id: ConnId, reason: &str) {
        let Some(nick) = self.conns.open_mut(id).map(|s| s.nick) else {
            return;
        };
        if nick.is_empty() {
            self.conns.deliver(id.index, b"*** Bye!\r\n");
        } else {
            let mut clean = String::new();
            sanitize_into(reason, &mut clean);
            self.leave_room(id, clean.trim());
            self.fmt_buf.clear();
            reply::notice(&mut self.fmt_buf, &["Bye, ", nick.as_str(), "!"]);
            self.conns.deliver(id.index, &self.fmt_buf);
        }
        self.conns.request_close(id, CloseReason::Quit);
    }

    fn unknown_command(&mut self, id: ConnId, word: &str) {
        let shown = shown_word(word);
        self.send_error(
            id,
            &["Unknown command /", &shown, ". Type /help for a list."],
        );
    }

    // ---- rooms ----

    fn enter_room(&mut self, id: ConnId, room: usize) {
        let Some(s) = self.conns.get_mut(id) else {
            return;
        };
        s.room = room as u32;
        let nick = s.nick;
        let members = &mut self.rooms[room].members;
        members.push(id.index);
        let count = members.len();
        if self.announces(count) {
            let name = self.rooms[room].name;
            self.fmt_buf.clear();
            reply::notice(
                &mut self.fmt_buf,
                &[nick.as_str(), " joined #", name.as_str()],
            );
            self.broadcast(room as u32, id.index);
        }
    }

    /// Takes `id` out of its room, telling the room (with `note` in parentheses, if any).
    fn leave_room(&mut self, id: ConnId, note: &str) {
        let Some(s) = self.conns.get_mut(id) else {
            return;
        };
        let (room, nick) = (s.room, s.nick);
        s.room = NO_ROOM;
        let Some(r) = self.rooms.get_mut(room as usize) else {
            return;
        };
        let before = r.members.len();
        if let Some(pos) = r.members.iter().position(|&m| m == id.index) {
            r.members.remove(pos);
        }
        let (name, empty) = (r.name, r.members.is_empty());
        if self.announces(before) {
            self.fmt_buf.clear();
            reply::left(&mut self.fmt_buf, nick.as_str(), name.as_str(), note);
            self.broadcast(room, id.index);
        }
        if empty && room as usize != self.default_room {
            self.rooms.remove(room as usize);
            self.room_index.remove(&name.as_str().to_ascii_lowercase());
        }
    }

    fn member_count(&self, room: u32) -> usize {
        self.rooms.get(room as usize).map_or(0, |r| r.members.len())
    }

    /// Whether joins, leaves and renames are announced in a room of `count` (user included).
    fn announces(&self, count: usize) -> bool {
        self.config.quiet_above == 0 || count <= self.config.quiet_above
    }

    /// Queues `fmt_buf` (rendered once) to every member of `room` except `except`.
    fn broadcast(&mut self, room: u32, except: u32) {
        let Some(r) = self.rooms.get(room as usize) else {
            return;
        };
        for &m in &r.members {
            if m != except {
                self.conns.deliver(m, &self.fmt_buf);
            }
        }
    }

    // ---- nicknames ----

    fn find_nick(&self, name: &str) -> Option<u32> {
        let hash = folded_hash(&self.hasher, name);
        let slots = &self.conns.slots;
        self.nicks
            .find(hash, |&i| nick_at(slots, i).matches(name))
            .copied()
    }

    fn register_nick(&mut self, index: u32) {
        let (hasher, slots) = (&self.hasher, &self.conns.slots);
        let hash = folded_hash(hasher, nick_at(slots, index).as_str());
        self.nicks.insert_unique(hash, index, |&i| {
            folded_hash(hasher, nick_at(slots, i).as_str())
        });
    }

    fn unregister_nick(&mut self, index: u32) {
        let hash = folded_hash(&self.hasher, nick_at(&self.conns.slots, index).as_str());
        if let Ok(entry) = self.nicks.find_entry(hash, |&i| i == index) {
            entry.remove();
        }
    }

    // ---- closing ----

    fn refuse(&mut self, id: ConnId, reason: CloseReason, message: &str) {
        let mut out = Vec::new();
        reply::error(&mut out, &[message]);
        self.closed.push_back(Closed {
            id,
            reason,
            final_output: out,
        });
    }

    fn close_with_notice(&mut self, id: ConnId, notice: &str, reason: CloseReason) {
        self.fmt_buf.clear();
        reply::notice(&mut self.fmt_buf, &[notice]);
        self.conns.deliver(id.index, &self.fmt_buf);
        self.conns.request_close(id, reason);
    }

    fn close_with_error(&mut self, id: ConnId, error: &str, reason: CloseReason) {
        self.send_error(id, &[error]);
        self.conns.request_close(id, reason);
    }

    /// Carries out every close requested during this call (which may request more).
    fn finish(&mut self) {
        while let Some((id, reason)) = self.conns.closing.pop() {
            if self.conns.get(id).is_some() {
                self.close_slot(id.index as usize, reason);
            }
        }
    }

    /// Forgets the session in slot `index`: leaves its room, frees its nickname and address
    /// count, and hands its last output to the shell unless the shell asked for the close.
    fn close_slot(&mut self, index: usize, reason: CloseReason) {
        let Some(generation) = self.conns.slots[index].as_ref().map(|s| s.generation) else {
            return;
        };
        let id = ConnId {
            index: index as u32,
            generation,
        };
        self.leave_room(id, reason.room_note());
        self.unregister_nick(id.index);
        self.finish_close(index, id, reason);
    }

    fn finish_close(&mut self, index: usize, id: ConnId, reason: CloseReason) {
        let Some(s) = self.conns.slots[index].take() else {
            return;
        };
        self.live -= 1;
        self.drop_stale_timers();
        self.conns.queued -= s.out.len();
        if let Some(key) = s.ip
            && let Some(n) = self.per_ip.get_mut(&key)
        {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&key);
            }
        }
        if !reason.is_from_shell() {
            let final_output = if reason == CloseReason::TooSlow {
                Vec::new()
            } else {
                s.out
            };
            self.closed.push_back(Closed {
                id,
                reason,
                final_output,
            });
        }
    }

    // ---- helpers ----

    fn send_error(&mut self, id: ConnId, parts: &[&str]) {
        self.fmt_buf.clear();
        reply::error(&mut self.fmt_buf, parts);
        self.conns.deliver(id.index, &self.fmt_buf);
    }

    /// Forgets timers of closed connections: all of them once nobody is connected (an idle
    /// server has no deadline), otherwise whenever they outnumber the live ones, so churn with
    /// long timeouts cannot grow the heap.
    fn drop_stale_timers(&mut self) {
        if self.live == 0 {
            self.timers.clear();
        } else if self.timers.len() > 4 * self.live + 64 {
            let conns = &self.conns;
            self.timers.retain(|Reverse(t)| {
                conns.is_open(ConnId {
                    index: t.index,
                    generation: t.generation,
                })
            });
        }
    }

    fn push_timer(&mut self, at_ms: u64, id: ConnId, kind: TimerKind) {
        self.timers.push(Reverse(Timer {
            at_ms,
            index: id.index,
            generation: id.generation,
            kind,
        }));
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

impl Conns {
    fn slot(&self, index: u32) -> Option<&Session> {
        self.slots.get(index as usize)?.as_ref()
    }

    fn get(&self, id: ConnId) -> Option<&Session> {
        self.slot(id.index)
            .filter(|s| s.generation == id.generation)
    }

    fn get_mut(&mut self, id: ConnId) -> Option<&mut Session> {
        self.slots
            .get_mut(id.index as usize)?
            .as_mut()
            .filter(|s| s.generation == id.generation)
    }

    /// The session, unless it is gone or already closing.
    fn open_mut(&mut self, id: ConnId) -> Option<&mut Session> {
        self.get_mut(id).filter(|s| !s.closing)
    }

    fn is_open(&self, id: ConnId) -> bool {
        self.get(id).is_some_and(|s| !s.closing)
    }

    /// Queues `bytes` for the session in slot `index`; marks it too slow past `--sendq`.
    fn deliver(&mut self, index: u32, bytes: &[u8]) {
        let Some(Some(s)) = self.slots.get_mut(index as usize) else {
            return;
        };
        if s.closing {
            return;
        }
        let id = ConnId {
            index,
            generation: s.generation,
        };
        // A client the kernel is already refusing may hold at most --sendq unsent bytes; one
        // that took everything last time is judged after the next write attempt instead.
        if s.blocked && s.out.len() + bytes.len() > self.sendq {
            self.queued -= s.out.len();
            s.out = Vec::new();
            s.closing = true;
            self.closing.push((id, CloseReason::TooSlow));
            return;
        }
        if s.out.is_empty() {
            self.dirty.push(id);
            s.out.reserve(bytes.len().max(64));
        }
        s.out.extend_from_slice(bytes);
        self.queued += bytes.len();
        self.fresh += bytes.len();
        if self.fresh > OUTPUT_HIGH_WATER || (!s.blocked && s.out.len() > self.sendq / 2) {
            self.flush_wanted = true;
        }
    }

    /// Drops the first `n` bytes of `id`'s output, freeing the buffer once it is empty.
    fn consume(&mut self, id: ConnId, n: usize) {
        let Some(s) = self
            .slots
            .get_mut(id.index as usize)
            .and_then(Option::as_mut)
            .filter(|s| s.generation == id.generation)
        else {
            return;
        };
        if n >= s.out.len() {
            self.queued -= s.out.len();
            s.out = Vec::new();
        } else {
            self.queued -= n;
            s.out.drain(..n);
        }
        s.blocked = !s.out.is_empty();
        if s.out.len() > self.sendq && !s.closing {
            self.queued -= s.out.len();
            s.out = Vec::new();
            s.closing = true;
            self.closing.push((id, CloseReason::TooSlow));
        }
    }

    fn request_close(&mut self, id: ConnId, reason: CloseReason) {
        if let Some(s) = self.get_mut(id)
            && !s.closing
        {
            s.closing = true;
            self.closing.push((id, reason));
        }
    }
}

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    IpKey::V6(prefix)
                }
            },
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn refill(s: &mut Session, rate: u32, burst: f32, now_ms: u64) {
    let elapsed = now_ms.saturating_sub(s.refilled_ms);
    s.tokens = (s.tokens + elapsed as f32 * rate as f32 / 1000.0).min(burst);
    s.refilled_ms = now_ms;
}

fn nick_at(slots: &[Option<Session>], index: u32) -> Nick {
    slots
        .get(index as usize)
        .and_then(Option::as_ref)
        .map_or(Nick::EMPTY, |s| s.nick)
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// A word the user typed, cleaned and shortened so it can be echoed in an error line.
fn shown_word(word: &str) -> String {
    let mut clean = String::new();
    sanitize_into(word, &mut clean);
    if clean.chars().count() > names::MAX_ROOM {
        clean = clean.chars().take(names::MAX_ROOM).collect::<String>() + "...";
    }
    clean
}

#[cfg(test)]
mod tests;
