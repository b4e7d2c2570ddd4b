//! The fuzz grammar around natter's model shell ([`natter::sim::Sim`]), shared by the fuzz
//! targets (`fuzz/fuzz_targets/`) and the property tests (`tests/core_props.rs`, which
//! includes this file by path). The model shell follows the drain rule and checks the core
//! after every step; this file only turns bytes into operations and connection numbers into
//! ids.
#![allow(dead_code)]

use natter::proto::chat::{CloseReason, ConnId, Settings};
use natter::sim::{Sim, SimError, check_text};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

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
    /// The core is exported and imported again at a turn boundary (as an upgrade does).
    Restart,
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
pub fn config_from(b: [u8; 4]) -> Settings {
    let secs = |n: u64| (n > 0).then(|| Duration::from_secs(n));
    Settings {
        rate: [0, 0, 2, 5][b[0] as usize & 3],
        burst: 1 + (u32::from(b[0]) >> 2 & 3),
        quiet_above: [0, 1, 2, 3, 1000][b[1] as usize % 5],
        max_line: [512, 8, 16, 64][(b[1] as usize >> 3) & 3],
        sendq: [262_144, 1024, 2048, 4096][b[2] as usize & 3],
        login_timeout: secs([0, 0, 1, 5][(b[2] as usize >> 2) & 3]),
        idle_timeout: secs([0, 0, 2, 10][(b[2] as usize >> 4) & 3]),
        max_per_ip: [0, 1, 2, 3][b[3] as usize & 3],
        limit_loopback: b[3] & 4 != 0,
        max_clients: [4, 8, 16, 64][(b[3] as usize >> 3) & 3],
        ..Settings::default()
    }
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
            _ => match tag {
                0xFF => Op::Shutdown,
                0xEF | 0xDF => Op::Restart,
                _ => Op::Drain,
            },
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

/// What one connection received, and why it closed.
pub type Received = (Vec<u8>, Option<CloseReason>);

/// The model shell ([`Sim`]) with connections numbered in the order they were made, as the
/// ops name them.
pub struct Shell {
    /// The model shell.
    pub sim: Sim,
    ids: Vec<ConnId>,
    shut_down: bool,
}

impl Shell {
    /// A shell around a new core; nothing is drained until an op says so.
    pub fn new(settings: Settings) -> Shell {
        let mut sim = Sim::new(settings);
        sim.auto_drain = false;
        Shell {
            sim,
            ids: Vec::new(),
            shut_down: false,
        }
    }

    /// The id an op's `conn` byte names (modulo the connections made so far, closed ones
    /// included, so stale ids are exercised); `None` before any connect.
    pub fn pick(&self, conn: u8) -> Option<ConnId> {
        (!self.ids.is_empty()).then(|| self.ids[conn as usize % self.ids.len()])
    }

    /// Applies one op (ops naming no connection are skipped).
    pub fn apply(&mut self, op: &Op) -> Result<(), SimError> {
        match *op {
            Op::Connect { peer: p } => {
                if !self.shut_down {
                    let id = self.sim.connect(peer(p as usize))?;
                    self.ids.push(id);
                }
            }
            Op::Input { conn, ref bytes } => {
                if let Some(id) = self.pick(conn) {
                    self.sim.input(id, bytes)?;
                }
            }
            Op::Disconnect { conn } => {
                if let Some(id) = self.pick(conn) {
                    self.sim.disconnect(id)?;
                }
            }
            Op::Advance { ms } => self.sim.advance(u64::from(ms))?,
            Op::Drain => self.sim.drain()?,
            Op::PartialWrite { conn, n } => {
                if let Some(id) = self.pick(conn) {
                    self.sim.partial_write(id, n as usize)?;
                }
            }
            Op::Stall { conn, on } => {
                if let Some(id) = self.pick(conn) {
                    self.sim.stall(id, on)?;
                }
            }
            Op::Shutdown => {
                if !self.shut_down {
                    self.shut_down = true;
                    self.sim.shutdown()?;
                }
            }
            // An upgrade is not started during a shutdown; its drain still happens.
            Op::Restart if self.shut_down => self.sim.drain()?,
            Op::Restart => self.sim.restart()?,
        }
        Ok(())
    }

    /// Everything every connection received and why each closed, after everyone reads again
    /// and everything is written (for comparing two runs).
    pub fn outcome(&mut self) -> Result<Vec<Received>, SimError> {
        self.sim.drain()?;
        for &id in &self.ids {
            self.sim.stall(id, false)?;
        }
        self.sim.drain()?;
        Ok(self
            .sim
            .conns()
            .iter()
            .map(|c| (c.received.clone(), c.closed))
            .collect())
    }

    /// Disconnects everyone and checks that nothing is left behind (see [`Sim::finish`]).
    pub fn finish(&mut self) -> Result<(), SimError> {
        self.sim.finish()
    }
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
pub fn run_pair(settings: Settings, reads: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>), SimError> {
    let mut sim = Sim::new(Settings {
        max_clients: 16,
        ..settings
    });
    let alice = sim.connect_loopback()?;
    sim.input(alice, b"alice\r\n")?;
    let bob = sim.connect_loopback()?;
    sim.input(bob, b"bob\r\n")?;
    sim.advance(60_000)?;
    sim.drain()?;
    sim.clear();
    for r in reads {
        sim.input_when_wanted(alice, r)?;
        sim.drain()?;
    }
    sim.advance(600_000)?;
    sim.drain()?;
    let a = sim.take(alice);
    let b = sim.take(bob);
    check_text(&b, false).map_err(|e| SimError(format!("bob: {e}")))?;
    sim.finish()?;
    Ok((a, b))
}
