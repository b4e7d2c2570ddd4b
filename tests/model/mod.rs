//! The core's test harness: [`natter::sim::Sim`] (the one model shell, with its drain rule and
//! checks) plus short helpers that keep the tests readable. Tests assert exact bytes, CR LF
//! included.
#![allow(dead_code)]

pub use natter::proto::chat::{Chat, CloseReason, ConnId, Settings};
pub use natter::sim::Sim;
pub use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
pub use std::time::{Duration, Instant};

pub const BANNER: &str = "*** Welcome to natter, a chat server for telnet and netcat.\r\n\
                          *** Type /help for a list of commands.\r\n\
                          Your nickname: ";
pub const PROMPT: &str = "Your nickname: ";
pub const INVALID_NICK: &str =
    "!!! Invalid nickname: use 1 to 24 letters, digits, _ or -, starting with a letter.\r\n";
pub const INVALID_ROOM: &str =
    "!!! Invalid room name: use 1 to 32 letters, digits, _, - or . (a leading # is optional).\r\n";
pub const CHOOSE_FIRST: &str =
    "!!! Choose a nickname first: type a nickname, or an empty line for a guest name.\r\n";
pub const HELP: &str = "*** Commands:\r\n\
    ***   /nick NAME           change your nickname\r\n\
    ***   /join ROOM           leave this room and join (or create) ROOM\r\n\
    ***   /rooms               list the rooms\r\n\
    ***   /who                 list the users in this room\r\n\
    ***   /msg TEXT            say TEXT to the room (or just type it)\r\n\
    ***   /me TEXT             act: the room sees \"* NICK TEXT\"\r\n\
    ***   /whisper NICK TEXT   private message to NICK (also /w)\r\n\
    ***   /help                this list\r\n\
    ***   /quit [REASON]       leave the server\r\n\
    ***   Start a line with // to say something that begins with /.\r\n\
    ***   Before you have a nickname, type one (or an empty line for a guest name).\r\n";

/// Telnet bytes (not every test file uses them all).
#[allow(unused_imports)]
pub use natter::proto::wire::telnet::{AYT, DO, DONT, EC, EL, IAC, IP, SB, SE, WILL, WONT};

/// The settings of most tests: no flood control, no per-address limit.
pub fn test_config() -> Settings {
    Settings {
        rate: 0,
        max_per_ip: 0,
        ..Settings::default()
    }
}

pub fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

pub fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

pub fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("IPv6 literal"))
}

/// `lines(&["a", "b"])` is `"a\r\nb\r\n"`.
pub fn lines(ls: &[&str]) -> String {
    ls.iter().map(|l| format!("{l}\r\n")).collect()
}

/// A [`Sim`] with panicking helpers.
pub struct Harness {
    pub sim: Sim,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(test_config())
    }

    pub fn with_config(settings: Settings) -> Harness {
        Harness {
            sim: Sim::new(settings),
        }
    }

    pub fn with_limit(settings: Settings, max_clients: usize) -> Harness {
        Harness::with_config(Settings {
            max_clients,
            ..settings
        })
    }

    pub fn chat(&self) -> &Chat {
        self.sim.chat()
    }

    pub fn chat_mut(&mut self) -> &mut Chat {
        self.sim.chat_mut()
    }

    pub fn now(&self) -> Instant {
        self.sim.now()
    }

    pub fn base(&self) -> Instant {
        self.sim.base()
    }

    /// Checks, then drains (the model shell's turn).
    pub fn after(&mut self) {
        self.sim.after().unwrap_or_else(|e| panic!("{e}"));
    }

    /// The model shell's drain, on its own.
    pub fn pump(&mut self) {
        self.sim.drain().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn check(&self) {
        self.sim.check().unwrap_or_else(|e| panic!("{e}"));
    }

    /// A new connection from loopback.
    pub fn connect(&mut self) -> ConnId {
        self.connect_from(loopback())
    }

    pub fn connect_from(&mut self, peer: IpAddr) -> ConnId {
        self.sim.connect(peer).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A new connection from loopback whose peer never reads.
    pub fn connect_stalled(&mut self) -> ConnId {
        self.sim
            .connect_stalled(loopback())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn connect_n(&mut self, n: usize) -> Vec<ConnId> {
        (0..n).map(|_| self.connect()).collect()
    }

    pub fn send(&mut self, id: ConnId, bytes: impl AsRef<[u8]>) {
        self.sim
            .input(id, bytes.as_ref())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The peer closed the connection.
    pub fn disconnect(&mut self, id: ConnId) {
        self.sim.disconnect(id).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn disconnect_all(&mut self) {
        let open: Vec<ConnId> = self
            .sim
            .conns()
            .iter()
            .filter(|c| c.open)
            .map(|c| c.id)
            .collect();
        for id in open {
            self.disconnect(id);
        }
    }

    /// Advances the fake clock, firing timers at their deadlines as a shell would.
    pub fn advance(&mut self, d: Duration) {
        self.sim
            .advance(d.as_millis() as u64)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }

    /// Moves the clock without firing anything.
    pub fn jump(&mut self, d: Duration) {
        self.sim.jump(d.as_millis() as u64);
    }

    /// The peer stops reading.
    pub fn stall(&mut self, id: ConnId) {
        self.sim.stall(id, true).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The peer reads again.
    pub fn unstall(&mut self, id: ConnId) {
        self.sim.stall(id, false).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The socket turns writable and the kernel takes at most `n` bytes.
    pub fn partial_write(&mut self, id: ConnId, n: usize) {
        self.sim
            .partial_write(id, n)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Everything `id` was sent since the last call.
    pub fn take(&mut self, id: ConnId) -> Vec<u8> {
        self.sim.drain().unwrap_or_else(|e| panic!("{e}"));
        self.sim.take(id)
    }

    /// Like [`Harness::take`], as text.
    pub fn text(&mut self, id: ConnId) -> String {
        String::from_utf8(self.take(id)).expect("output is UTF-8")
    }

    pub fn clear(&mut self) {
        self.sim.drain().unwrap_or_else(|e| panic!("{e}"));
        self.sim.clear();
    }

    /// Connects and logs in as `nick` in the default room; returns with every buffer cleared.
    pub fn login(&mut self, nick: &str) -> ConnId {
        let id = self.connect();
        assert_eq!(self.text(id), BANNER);
        self.send(id, format!("{nick}\r\n"));
        let room = self.chat().settings().default_room;
        assert_eq!(
            self.text(id),
            format!("*** Welcome, {nick}! You are in #{room}.\r\n")
        );
        self.clear();
        id
    }

    pub fn login_all<const N: usize>(&mut self, nicks: [&str; N]) -> [ConnId; N] {
        nicks.map(|n| self.login(n))
    }

    pub fn close_reason(&self, id: ConnId) -> Option<CloseReason> {
        self.sim.close_reason(id)
    }

    pub fn closes(&self) -> &[(ConnId, CloseReason)] {
        &self.sim.closes
    }

    pub fn resumed(&self) -> &[ConnId] {
        &self.sim.resumed
    }

    /// Restarts the core from its own snapshot.
    pub fn restart(&mut self) {
        self.sim.restart().unwrap_or_else(|e| panic!("{e}"));
    }
}
