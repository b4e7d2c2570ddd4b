//! Unit tests of the chat state machine, driven with bytes and a fake clock.
//!
//! The [`Harness`] plays the shell: it hands events to [`Chat`], then drains it exactly as the
//! drain rule in the module docs says (closes, resumes, dirty connections), collecting every
//! byte each connection would have been sent. Tests assert exact bytes, CR LF included.

use super::{Chat, CloseReason, ConnId};
use crate::config::Config;
use crate::proto::names::parse_room;
use crate::proto::telnet::{AYT, DO, DONT, EC, EL, IAC, IP, SB, SE, WILL, WONT};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

const BANNER: &str = "*** Welcome to natter, a chat server for telnet and netcat.\r\n\
                      *** Type /help for a list of commands.\r\n\
                      Your nickname: ";
const PROMPT: &str = "Your nickname: ";
const INVALID_NICK: &str =
    "!!! Invalid nickname: use 1 to 24 letters, digits, _ or -, starting with a letter.\r\n";
const INVALID_ROOM: &str =
    "!!! Invalid room name: use 1 to 32 letters, digits, _, - or . (a leading # is optional).\r\n";
const CHOOSE_FIRST: &str =
    "!!! Choose a nickname first: type a nickname, or an empty line for a guest name.\r\n";
const HELP: &str = "*** Commands:\r\n\
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

/// The configuration of most tests: no flood control, no per-address limit.
fn test_config() -> Config {
    Config {
        rate: 0,
        max_per_ip: 0,
        ..Config::default()
    }
}

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("IPv6 literal"))
}

/// `lines(&["a", "b"])` is `"a\r\nb\r\n"`.
fn lines(ls: &[&str]) -> String {
    ls.iter().map(|l| format!("{l}\r\n")).collect()
}

/// Plays the shell around one [`Chat`], with a fake clock.
struct Harness {
    chat: Chat,
    base: Instant,
    offset: Duration,
    /// Slot indices freed by closes, reused last-in first-out like a slab.
    free: Vec<u32>,
    next_index: u32,
    next_generation: u32,
    /// Bytes each connection was sent and the test has not taken yet.
    received: HashMap<ConnId, Vec<u8>>,
    /// Every close the core reported, in order.
    closes: Vec<(ConnId, CloseReason)>,
    /// Ids the core forgot (reported closes and shell-side disconnects).
    gone: HashSet<ConnId>,
    /// Connections whose output the "kernel" does not take.
    stalled: HashSet<ConnId>,
    /// Every id `poll_resume` reported, in order.
    resumed: Vec<ConnId>,
    /// Every id ever connected.
    ids: Vec<ConnId>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(test_config())
    }

    fn with_config(config: Config) -> Harness {
        Harness::with_limit(config, 10_000)
    }

    fn with_limit(config: Config, max_clients: usize) -> Harness {
        let base = Instant::now();
        Harness {
            chat: Chat::new(config, max_clients, base),
            base,
            offset: Duration::ZERO,
            free: Vec::new(),
            next_index: 0,
            next_generation: 1000,
            received: HashMap::new(),
            closes: Vec::new(),
            gone: HashSet::new(),
            stalled: HashSet::new(),
            resumed: Vec::new(),
            ids: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.base + self.offset
    }

    fn check(&self) {
        if let Err(e) = self.chat.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }

    /// A new connection from loopback.
    fn connect(&mut self) -> ConnId {
        self.connect_from(loopback())
    }

    /// A new connection from `peer`, with a fresh (index, generation) pair.
    fn connect_from(&mut self, peer: IpAddr) -> ConnId {
        let index = self.free.pop().unwrap_or_else(|| {
            self.next_index += 1;
            self.next_index - 1
        });
        self.next_generation += 1;
        let id = ConnId {
            index,
            generation: self.next_generation,
        };
        let now = self.now();
        self.chat.handle_connect(id, peer, now);
        self.ids.push(id);
        self.after();
        id
    }

    /// A new connection from loopback whose peer never reads.
    fn connect_stalled(&mut self) -> ConnId {
        let index = self.free.last().copied().unwrap_or(self.next_index);
        self.stalled.insert(ConnId {
            index,
            generation: self.next_generation + 1,
        });
        let id = self.connect();
        assert!(self.stalled.contains(&id));
        id
    }

    /// `n` new connections from loopback.
    fn connect_n(&mut self, n: usize) -> Vec<ConnId> {
        (0..n).map(|_| self.connect()).collect()
    }

    fn send(&mut self, id: ConnId, bytes: impl AsRef<[u8]>) {
        let now = self.now();
        self.chat.handle_input(id, bytes.as_ref(), now);
        self.after();
    }

    /// The shell lost the connection (peer closed it).
    fn disconnect(&mut self, id: ConnId) {
        self.chat.handle_disconnect(id, CloseReason::PeerClosed);
        if self.gone.insert(id) {
            self.free.push(id.index);
        }
        self.after();
    }

    /// Disconnects every connection still open.
    fn disconnect_all(&mut self) {
        for id in self.ids.clone() {
            if !self.gone.contains(&id) {
                self.disconnect(id);
            }
        }
    }

    /// Advances the fake clock by `d`, firing timers at their deadlines as a shell would.
    fn advance(&mut self, d: Duration) {
        let target = self.offset + d;
        for _ in 0..100_000 {
            match self.chat.next_deadline() {
                Some(at) if at <= self.base + target => {
                    self.offset = self.offset.max(at - self.base);
                    let now = self.now();
                    self.chat.handle_timeout(now);
                    self.after();
                }
                _ => break,
            }
        }
        self.offset = target;
        let now = self.now();
        self.chat.handle_timeout(now);
        self.after();
    }

    fn advance_ms(&mut self, ms: u64) {
        self.advance(Duration::from_millis(ms));
    }

    fn after(&mut self) {
        self.check();
        self.pump();
    }

    /// The drain rule: closes, then resumes, then dirty connections; a dirty connection whose
    /// peer is stalled gets a write attempt that the kernel refuses (0 bytes), and the shell
    /// remembers it. Once everything is written, held senders are released
    /// ([`Chat::handle_flushed`]) while the core wants a flush; repeated until nothing is left.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            while let Some(c) = self.chat.poll_close() {
                progress = true;
                assert!(
                    !self.gone.contains(&c.id),
                    "{:?} reported closed twice",
                    c.id
                );
                self.received
                    .entry(c.id)
                    .or_default()
                    .extend_from_slice(&c.final_output);
                self.closes.push((c.id, c.reason));
                self.gone.insert(c.id);
                self.free.push(c.id.index);
                assert!(self.chat.output(c.id).is_empty());
                assert!(!self.chat.wants_input(c.id));
            }
            while let Some(id) = self.chat.poll_resume() {
                progress = true;
                self.resumed.push(id);
            }
            let mut dirty = Vec::new();
            self.chat.drain_dirty(&mut dirty);
            for id in dirty {
                progress = true;
                let out = self.chat.output(id).to_vec();
                if self.gone.contains(&id) {
                    assert!(out.is_empty(), "output queued for closed {id:?}");
                    continue;
                }
                if self.stalled.contains(&id) {
                    self.chat.consume_output(id, 0);
                    continue;
                }
                self.received.entry(id).or_default().extend_from_slice(&out);
                self.chat.consume_output(id, out.len());
                assert!(self.chat.output(id).is_empty());
            }
            self.check();
            if !progress && self.chat.wants_flush() {
                let now = self.now();
                self.chat.handle_flushed(now);
                self.check();
                progress = true;
            }
            if !progress {
                return;
            }
        }
        panic!("the core never stops asking for a flush");
    }

    /// Everything `id` was sent since the last call, as bytes.
    fn take(&mut self, id: ConnId) -> Vec<u8> {
        self.pump();
        self.received.remove(&id).unwrap_or_default()
    }

    /// Everything `id` was sent since the last call, as text (it must be UTF-8).
    fn text(&mut self, id: ConnId) -> String {
        String::from_utf8(self.take(id)).expect("output is UTF-8")
    }

    /// Forgets everything sent so far to everyone.
    fn clear(&mut self) {
        self.pump();
        self.received.clear();
    }

    /// Lets the "kernel" take `id`'s output again (it was stalled).
    fn unstall(&mut self, id: ConnId) {
        self.stalled.remove(&id);
        let out = self.chat.output(id).to_vec();
        self.received.entry(id).or_default().extend_from_slice(&out);
        self.chat.consume_output(id, out.len());
    }

    /// Connects and logs in as `nick` in the default room; returns with every buffer cleared.
    fn login(&mut self, nick: &str) -> ConnId {
        let id = self.connect();
        assert_eq!(self.text(id), BANNER);
        self.send(id, format!("{nick}\r\n"));
        let room = self.chat.config.default_room;
        assert_eq!(
            self.text(id),
            format!("*** Welcome, {nick}! You are in #{room}.\r\n")
        );
        self.clear();
        id
    }

    fn login_all<const N: usize>(&mut self, nicks: [&str; N]) -> [ConnId; N] {
        nicks.map(|n| self.login(n))
    }

    fn close_reason(&self, id: ConnId) -> Option<CloseReason> {
        self.closes.iter().find(|c| c.0 == id).map(|c| c.1)
    }
}

// ---------------------------------------------------------------------------------------------
// Connect and login
// ---------------------------------------------------------------------------------------------

#[test]
fn banner_then_prompt() {
    let mut h = Harness::new();
    let a = h.connect();
    assert_eq!(h.text(a), BANNER);
    assert_eq!(h.chat.connection_count(), 1);
    assert_eq!(h.chat.nick(a), None);
    assert_eq!(h.chat.room_of(a), None);
    assert!(h.chat.wants_input(a));
}

#[test]
fn motd_replaces_the_banner() {
    let mut h = Harness::with_config(Config {
        banner: vec!["Hello".into(), "".into(), "Be nice".into()],
        ..test_config()
    });
    let a = h.connect();
    assert_eq!(
        h.text(a),
        "*** Hello\r\n*** \r\n*** Be nice\r\nYour nickname: "
    );
}

#[test]
fn login_by_name_tells_the_room() {
    let mut h = Harness::new();
    let alice = h.login("alice");
    assert_eq!(h.chat.nick(alice), Some("alice"));
    assert_eq!(h.chat.room_of(alice), Some("lobby"));
    let bob = h.connect();
    h.take(bob);
    h.send(bob, "bob\r\n");
    assert_eq!(h.text(bob), "*** Welcome, bob! You are in #lobby.\r\n");
    assert_eq!(h.text(alice), "*** bob joined #lobby\r\n");
}

#[test]
fn login_by_nick_command_and_trimmed_name() {
    let mut h = Harness::new();
    let a = h.connect();
    h.take(a);
    h.send(a, "/NiCk   Alice\r\n");
    assert_eq!(h.text(a), "*** Welcome, Alice! You are in #lobby.\r\n");
    let b = h.connect();
    h.take(b);
    h.send(b, "   bob  \r\n");
    assert_eq!(h.text(b), "*** Welcome, bob! You are in #lobby.\r\n");
    assert_eq!(h.text(a), "*** bob joined #lobby\r\n");
}

#[test]
fn default_room_from_config() {
    let mut h = Harness::with_config(Config {
        default_room: parse_room("#Den").unwrap(),
        ..test_config()
    });
    let a = h.login("alice");
    assert_eq!(h.chat.room_of(a), Some("Den"));
    h.send(a, "/who\r\n");
    assert_eq!(h.text(a), "*** 1 users in #Den: alice\r\n");
}

#[test]
fn guests_count_up_and_skip_taken_names() {
    let mut h = Harness::new();
    let g1 = h.connect();
    h.take(g1);
    h.send(g1, "\r\n");
    assert_eq!(h.text(g1), "*** Welcome, guest1! You are in #lobby.\r\n");
    let g2 = h.connect();
    h.take(g2);
    h.send(g2, "   \r\n");
    assert_eq!(h.text(g2), "*** Welcome, guest2! You are in #lobby.\r\n");
    // Someone takes the next guest name (in another case) before it is given out.
    h.login("GUEST3");
    let g4 = h.connect();
    h.take(g4);
    h.send(g4, "\n");
    assert_eq!(h.text(g4), "*** Welcome, guest4! You are in #lobby.\r\n");
    // guest1 leaves: its name is never given out again.
    h.send(g1, "/quit\r\n");
    let g5 = h.connect();
    h.take(g5);
    h.send(g5, "\r\n");
    assert_eq!(h.text(g5), "*** Welcome, guest5! You are in #lobby.\r\n");
    // A guest can rename itself like anyone.
    h.clear();
    h.send(g5, "/nick guest1\r\n");
    assert_eq!(h.text(g5), "*** You are now known as guest1.\r\n");
}

#[test]
fn taken_nick_is_refused_without_regard_to_case() {
    let mut h = Harness::new();
    let alice = h.login("alice");
    let b = h.connect();
    h.take(b);
    h.send(b, "ALICE\r\n");
    assert_eq!(
        h.text(b),
        format!("!!! The nickname ALICE is already taken.\r\n{PROMPT}")
    );
    h.send(b, "/nick aLiCe\r\n");
    assert_eq!(
        h.text(b),
        format!("!!! The nickname aLiCe is already taken.\r\n{PROMPT}")
    );
    assert!(h.take(alice).is_empty());
    h.send(b, "bob\r\n");
    assert_eq!(h.text(b), "*** Welcome, bob! You are in #lobby.\r\n");
}

#[test]
fn invalid_nicks_get_an_error_and_the_prompt() {
    let mut h = Harness::new();
    let a = h.connect();
    h.take(a);
    let long = "a".repeat(25);
    for bad in [
        "9lives", "a b", &long, "é", "_x", "-a", "a.b", "//foo", "a\x07",
    ] {
        h.send(a, format!("{bad}\r\n"));
        assert_eq!(h.text(a), format!("{INVALID_NICK}{PROMPT}"), "{bad:?}");
        h.send(a, format!("/nick {bad}\r\n"));
        assert_eq!(
            h.text(a),
            format!("{INVALID_NICK}{PROMPT}"),
            "/nick {bad:?}"
        );
    }
    let longest = "a".repeat(24);
    h.send(a, format!("{longest}\r\n"));
    assert_eq!(
        h.text(a),
        format!("*** Welcome, {longest}! You are in #lobby.\r\n")
    );
}

#[test]
fn only_nick_help_and_quit_work_before_login() {
    let mut h = Harness::new();
    let a = h.connect();
    h.take(a);
    for line in [
        "/who",
        "/rooms",
        "/join rust",
        "/join",
        "/msg hi",
        "/msg",
        "/me waves",
        "/me",
        "/w bob hi",
        "/whisper bob",
        "/JOIN rust",
    ] {
        h.send(a, format!("{line}\r\n"));
        assert_eq!(h.text(a), format!("{CHOOSE_FIRST}{PROMPT}"), "{line:?}");
    }
    h.send(a, "/nick\r\n");
    assert_eq!(h.text(a), format!("!!! Usage: /nick NAME\r\n{PROMPT}"));
    h.send(a, "/dance now\r\n");
    assert_eq!(
        h.text(a),
        format!("!!! Unknown command /dance. Type /help for a list.\r\n{PROMPT}")
    );
    h.send(a, "/help\r\n");
    assert_eq!(h.text(a), format!("{HELP}{PROMPT}"));
    assert_eq!(h.chat.nick(a), None);
    h.send(a, "/quit going already\r\nignored\r\n");
    assert_eq!(h.text(a), "*** Bye!\r\n");
    assert_eq!(h.close_reason(a), Some(CloseReason::Quit));
    assert_eq!(h.chat.connection_count(), 0);
}

#[test]
fn http_request_as_first_line_closes() {
    for request in [
        "GET / HTTP/1.1",
        "POST /chat?x=1 HTTP/1.0",
        "PRI * HTTP/2.0",
    ] {
        let mut h = Harness::new();
        let watcher = h.login("watcher");
        let a = h.connect();
        h.take(a);
        h.send(a, format!("{request}\r\nHost: x\r\n\r\nbody\r\n"));
        assert_eq!(
            h.text(a),
            "!!! This is a chat server, not a web server.\r\n",
            "{request}"
        );
        assert_eq!(h.close_reason(a), Some(CloseReason::HttpRequest));
        assert!(h.take(watcher).is_empty());
        assert_eq!(h.chat.connection_count(), 1);
    }
}

#[test]
fn http_request_line_later_is_just_text() {
    let mut h = Harness::new();
    let a = h.connect();
    h.take(a);
    h.send(a, "9\r\nGET / HTTP/1.1\r\n");
    assert_eq!(
        h.text(a),
        format!("{INVALID_NICK}{PROMPT}{INVALID_NICK}{PROMPT}")
    );
    assert!(h.closes.is_empty());
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "GET / HTTP/1.1\r\n");
    assert_eq!(h.text(bob), "<alice> GET / HTTP/1.1\r\n");
    assert!(h.closes.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

#[test]
fn nick_change() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "/nick Alicia\r\n");
    assert_eq!(h.text(alice), "*** You are now known as Alicia.\r\n");
    assert_eq!(h.text(bob), "*** alice is now known as Alicia\r\n");
    assert_eq!(h.chat.nick(alice), Some("Alicia"));
    // Own nick exactly: an error. Another case of it: a rename.
    h.send(alice, "/nick Alicia\r\n");
    assert_eq!(h.text(alice), "!!! You are already Alicia.\r\n");
    h.send(alice, "/nick ALICIA\r\n");
    assert_eq!(h.text(alice), "*** You are now known as ALICIA.\r\n");
    assert_eq!(h.text(bob), "*** Alicia is now known as ALICIA\r\n");
    // Taken, invalid, missing.
    h.send(alice, "/nick BOB\r\n");
    assert_eq!(h.text(alice), "!!! The nickname BOB is already taken.\r\n");
    h.send(alice, "/nick 1x\r\n");
    assert_eq!(h.text(alice), INVALID_NICK);
    h.send(alice, "/nick\r\n");
    assert_eq!(h.text(alice), "!!! Usage: /nick NAME\r\n");
    h.send(alice, "/nick    \r\n");
    assert_eq!(h.text(alice), "!!! Usage: /nick NAME\r\n");
    assert!(h.take(bob).is_empty());
    // The old name is free again, the new one is taken.
    let c = h.connect();
    h.take(c);
    h.send(c, "alice\r\n");
    assert_eq!(h.text(c), "*** Welcome, alice! You are in #lobby.\r\n");
    let d = h.connect();
    h.take(d);
    h.send(d, "aliciA\r\n");
    assert_eq!(
        h.text(d),
        format!("!!! The nickname aliciA is already taken.\r\n{PROMPT}")
    );
}

#[test]
fn join_leave_and_room_removal() {
    let mut h = Harness::new();
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    h.send(alice, "/join #Rust\r\n");
    assert_eq!(h.text(alice), "*** You joined #Rust (1 user)\r\n");
    assert_eq!(h.text(bob), "*** alice left #lobby\r\n");
    assert_eq!(h.text(carol), "*** alice left #lobby\r\n");
    assert_eq!(h.chat.room_of(alice), Some("Rust"));
    assert_eq!(h.chat.room_count(), 2);
    // Shown as the creator typed it, whatever the joiner types.
    h.send(bob, "/join rust\r\n");
    assert_eq!(h.text(bob), "*** You joined #Rust (2 users)\r\n");
    assert_eq!(h.text(alice), "*** bob joined #Rust\r\n");
    assert_eq!(h.text(carol), "*** bob left #lobby\r\n");
    // The room you are in.
    h.send(bob, "/join RUST\r\n");
    assert_eq!(h.text(bob), "!!! You are already in #Rust.\r\n");
    h.send(carol, "/join #lobby\r\n");
    assert_eq!(h.text(carol), "!!! You are already in #lobby.\r\n");
    // Invalid and missing names.
    for bad in ["a/b", "##x", "#", &"r".repeat(33), "a b"] {
        h.send(carol, format!("/join {bad}\r\n"));
        assert_eq!(h.text(carol), INVALID_ROOM, "{bad:?}");
    }
    h.send(carol, "/join\r\n");
    assert_eq!(h.text(carol), "!!! Usage: /join ROOM\r\n");
    assert!(h.take(alice).is_empty() && h.take(bob).is_empty());
    // Chat stays in the room.
    h.send(alice, "hi rust\r\n");
    assert_eq!(h.text(bob), "<alice> hi rust\r\n");
    assert!(h.take(carol).is_empty());
    // Everyone leaves #Rust: it is removed; the default room stays even when empty.
    h.send(alice, "/join lobby\r\n");
    assert_eq!(h.text(alice), "*** You joined #lobby (2 users)\r\n");
    assert_eq!(h.text(bob), "*** alice left #Rust\r\n");
    assert_eq!(h.text(carol), "*** alice joined #lobby\r\n");
    h.send(bob, "/join LOBBY\r\n");
    assert_eq!(h.text(bob), "*** You joined #lobby (3 users)\r\n");
    assert_eq!(h.chat.room_count(), 1);
    for id in [alice, bob, carol] {
        h.send(id, "/join elsewhere\r\n");
    }
    assert_eq!(h.chat.room_count(), 2);
    h.clear();
    h.send(alice, "/rooms\r\n");
    assert_eq!(
        h.text(alice),
        lines(&[
            "*** 2 rooms:",
            "***   #elsewhere (3 users)",
            "***   #lobby (0 users)"
        ])
    );
    // A room re-created after removal takes the new creator's spelling.
    h.send(alice, "/join Rust\r\n");
    assert_eq!(h.text(alice), "*** You joined #Rust (1 user)\r\n");
}

#[test]
fn rooms_largest_first_then_by_name() {
    let mut h = Harness::new();
    let [a, b, c, d, e, f] = h.login_all(["a", "b", "c", "d", "e", "f"]);
    h.send(a, "/join beta\r\n");
    h.send(b, "/join Alpha\r\n");
    h.send(c, "/join gamma\r\n");
    h.send(d, "/join zeta\r\n");
    h.send(e, "/join ZETA\r\n");
    h.clear();
    h.send(f, "/rooms\r\n");
    assert_eq!(
        h.text(f),
        lines(&[
            "*** 5 rooms:",
            "***   #zeta (2 users)",
            "***   #Alpha (1 user)",
            "***   #beta (1 user)",
            "***   #gamma (1 user)",
            "***   #lobby (1 user)",
        ])
    );
    // Commands are case-insensitive.
    h.send(f, "/ROOMS\r\n");
    assert!(
        h.text(f)
            .starts_with("*** 5 rooms:\r\n***   #zeta (2 users)\r\n")
    );
}

#[test]
fn rooms_lists_at_most_100() {
    let mut h = Harness::new();
    let me = h.login("me");
    for i in 0..105 {
        let id = h.login(&format!("u{i}"));
        h.send(id, format!("/join r{i:03}\r\n"));
    }
    h.clear();
    h.send(me, "/rooms\r\n");
    // 106 rooms of one user each: by name, "lobby" before "r000".
    let mut expected = vec!["*** 106 rooms:".to_string(), "***   #lobby (1 user)".into()];
    expected.extend((0..99).map(|i| format!("***   #r{i:03} (1 user)")));
    expected.push("***   ... and 6 more".into());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(h.text(me), lines(&expected));
    // Larger rooms come first, wherever their names sort.
    for i in 100..105 {
        let id = h.login(&format!("w{i}"));
        h.send(id, format!("/join r{i:03}\r\n"));
    }
    h.clear();
    h.send(me, "/rooms\r\n");
    let mut expected = vec!["*** 106 rooms:".to_string()];
    expected.extend((100..105).map(|i| format!("***   #r{i:03} (2 users)")));
    expected.push("***   #lobby (1 user)".into());
    expected.extend((0..94).map(|i| format!("***   #r{i:03} (1 user)")));
    expected.push("***   ... and 6 more".into());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(h.text(me), lines(&expected));
}

#[test]
fn rooms_exactly_100_has_no_tail() {
    let mut h = Harness::new();
    let me = h.login("me");
    for i in 0..99 {
        let id = h.login(&format!("u{i}"));
        h.send(id, format!("/join r{i:03}\r\n"));
    }
    h.clear();
    h.send(me, "/rooms\r\n");
    let text = h.text(me);
    assert!(text.starts_with("*** 100 rooms:\r\n***   #lobby (1 user)\r\n"));
    assert!(text.ends_with("***   #r098 (1 user)\r\n"));
    assert_eq!(text.matches("\r\n").count(), 101);
}

#[test]
fn who_lists_join_order_and_at_most_100() {
    let mut h = Harness::new();
    let zed = h.login("zed");
    h.send(zed, "/who\r\n");
    assert_eq!(h.text(zed), "*** 1 users in #lobby: zed\r\n");
    let [amy, bob] = h.login_all(["amy", "Bob"]);
    h.send(amy, "/WHO\r\n");
    assert_eq!(h.text(amy), "*** 3 users in #lobby: zed, amy, Bob\r\n");
    // Leaving keeps the order of the others; the room shown as created.
    h.send(zed, "/join Den\r\n");
    h.send(bob, "/join den\r\n");
    h.clear();
    h.send(bob, "/who\r\n");
    assert_eq!(h.text(bob), "*** 2 users in #Den: zed, Bob\r\n");
    h.send(amy, "/who\r\n");
    assert_eq!(h.text(amy), "*** 1 users in #lobby: amy\r\n");
    for i in 0..101 {
        h.login(&format!("n{i}"));
    }
    h.send(amy, "/who\r\n");
    let mut names = vec!["amy".to_string()];
    names.extend((0..99).map(|i| format!("n{i}")));
    assert_eq!(
        h.text(amy),
        format!(
            "*** 102 users in #lobby: {}, ... and 2 more\r\n",
            names.join(", ")
        )
    );
}

#[test]
fn who_with_exactly_100_has_no_tail() {
    let mut h = Harness::new();
    let ids: Vec<ConnId> = (0..100).map(|i| h.login(&format!("n{i}"))).collect();
    h.send(ids[0], "/who\r\n");
    let names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    assert_eq!(
        h.text(ids[0]),
        format!("*** 100 users in #lobby: {}\r\n", names.join(", "))
    );
}

#[test]
fn chat_msg_and_me() {
    let mut h = Harness::new();
    let [alice, bob, carol, dave] = h.login_all(["alice", "bob", "carol", "dave"]);
    h.send(dave, "/join elsewhere\r\n");
    h.clear();
    h.send(alice, "hello there\r\n");
    h.send(alice, "/msg   via msg \r\n");
    h.send(alice, "/MSG x\r\n");
    h.send(alice, "/me waves\r\n");
    h.send(alice, "/Me  dances  \r\n");
    let expected = lines(&[
        "<alice> hello there",
        "<alice> via msg ",
        "<alice> x",
        "* alice waves",
        "* alice dances  ",
    ]);
    assert_eq!(h.text(bob), expected);
    assert_eq!(h.text(carol), expected);
    assert!(h.take(alice).is_empty(), "no echo to the sender");
    assert!(h.take(dave).is_empty(), "other rooms hear nothing");
    h.send(alice, "/msg\r\n");
    assert_eq!(h.text(alice), "!!! Usage: /msg TEXT\r\n");
    h.send(alice, "/me   \r\n");
    assert_eq!(h.text(alice), "!!! Usage: /me TEXT\r\n");
    assert!(h.take(bob).is_empty());
}

#[test]
fn double_slash_escapes_a_leading_slash() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "//etc/passwd\r\n// hi\r\n//\r\n///x\r\n");
    assert_eq!(
        h.text(bob),
        lines(&[
            "<alice> /etc/passwd",
            "<alice> / hi",
            "<alice> /",
            "<alice> //x"
        ])
    );
    assert!(h.take(alice).is_empty());
}

#[test]
fn empty_and_blank_lines_send_nothing() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "\r\n\n\r\0\r   \r\n\t\r\n");
    // Empty after cleaning.
    h.send(
        alice,
        "\x1b[31m\x1b[0m\r\n\x07\u{202e}\r\n/me \x1b]0;x\x07\r\n",
    );
    h.send(alice, "/msg \x1b[1m \r\n");
    assert!(h.take(bob).is_empty());
    assert!(h.take(alice).is_empty());
}

#[test]
fn relayed_text_is_cleaned() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(
        alice,
        "a\tb\x1b[31mc\x1b[0m\u{202e}d\u{85}e\x00f\x1b]0;title\x07g\x1bch\r\n".as_bytes(),
    );
    assert_eq!(h.text(bob), "<alice> a bcdefgh\r\n");
    // Invalid UTF-8 becomes U+FFFD.
    // (0xFF is telnet's IAC, so it cannot be used here.)
    h.send(alice, b"x\xc3y\xe2\x82z\xc0\xaf\r\n");
    assert_eq!(
        h.text(bob),
        "<alice> x\u{FFFD}y\u{FFFD}z\u{FFFD}\u{FFFD}\r\n"
    );
    h.send(alice, "/me \u{2066}grins\u{2069}\r\n".as_bytes());
    assert_eq!(h.text(bob), "* alice grins\r\n");
}

#[test]
fn whispers() {
    let mut h = Harness::new();
    let [alice, bob, carol] = h.login_all(["alice", "Bob", "carol"]);
    h.send(carol, "/join far\r\n");
    h.clear();
    h.send(alice, "/w BOB psst, hi\r\n");
    assert_eq!(h.text(bob), "*alice* psst, hi\r\n");
    assert_eq!(h.text(alice), "-> *Bob* psst, hi\r\n");
    // Across rooms, with the long name and many spaces.
    h.send(alice, "/WHISPER   carol    far away\r\n");
    assert_eq!(h.text(carol), "*alice* far away\r\n");
    assert_eq!(h.text(alice), "-> *carol* far away\r\n");
    assert!(h.take(bob).is_empty());
    // Cleaned like any relayed text.
    h.send(alice, "/w bob \x1b[2Jboo\x07\r\n");
    assert_eq!(h.text(bob), "*alice* boo\r\n");
    assert_eq!(h.text(alice), "-> *Bob* boo\r\n");
    // To oneself.
    h.send(alice, "/w Alice note\r\n");
    assert_eq!(h.text(alice), "*alice* note\r\n-> *alice* note\r\n");
    // Unknown target, missing arguments.
    h.send(alice, "/w nobody hi\r\n");
    assert_eq!(h.text(alice), "!!! No such user: nobody.\r\n");
    h.send(alice, "/w bob\r\n");
    assert_eq!(h.text(alice), "!!! Usage: /whisper NICK TEXT\r\n");
    h.send(alice, "/whisper\r\n");
    assert_eq!(h.text(alice), "!!! Usage: /whisper NICK TEXT\r\n");
    h.send(alice, "/w bob    \r\n");
    assert_eq!(h.text(alice), "!!! Usage: /whisper NICK TEXT\r\n");
    assert!(h.take(bob).is_empty() && h.take(carol).is_empty());
}

#[test]
fn help_after_login() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "/HELP\r\n");
    assert_eq!(h.text(alice), HELP);
    assert!(h.take(bob).is_empty());
}

#[test]
fn unknown_commands() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "/dance now\r\n");
    assert_eq!(
        h.text(alice),
        "!!! Unknown command /dance. Type /help for a list.\r\n"
    );
    h.send(alice, "/\r\n");
    assert_eq!(
        h.text(alice),
        "!!! Unknown command /. Type /help for a list.\r\n"
    );
    // The echoed word is cleaned and shortened.
    h.send(alice, "/\x1b[31mfoo\x1b[0m\r\n");
    assert_eq!(
        h.text(alice),
        "!!! Unknown command /foo. Type /help for a list.\r\n"
    );
    h.send(alice, format!("/{}\r\n", "x".repeat(40)));
    assert_eq!(
        h.text(alice),
        format!(
            "!!! Unknown command /{}.... Type /help for a list.\r\n",
            "x".repeat(32)
        )
    );
    // A command word needs its space: "/whoami" is not "/who".
    h.send(alice, "/whoami\r\n");
    assert_eq!(
        h.text(alice),
        "!!! Unknown command /whoami. Type /help for a list.\r\n"
    );
    assert!(h.take(bob).is_empty());
}

#[test]
fn quit_without_and_with_reason() {
    let mut h = Harness::new();
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    h.send(alice, "/quit\r\nafter quit\r\n");
    assert_eq!(h.text(alice), "*** Bye, alice!\r\n");
    assert_eq!(h.close_reason(alice), Some(CloseReason::Quit));
    assert_eq!(h.text(bob), "*** alice left #lobby\r\n");
    assert_eq!(h.text(carol), "*** alice left #lobby\r\n");
    assert!(!h.chat.wants_input(alice));
    h.send(bob, "/QUIT   gone   home  \r\n");
    assert_eq!(h.text(bob), "*** Bye, bob!\r\n");
    assert_eq!(h.text(carol), "*** bob left #lobby (gone   home)\r\n");
    assert_eq!(h.chat.connection_count(), 1);
    // Input for a closed id is ignored.
    h.send(alice, "hello?\r\n");
    assert!(h.take(carol).is_empty());
}

#[test]
fn quit_reason_is_cleaned() {
    let mut h = Harness::new();
    let [alice, bob, carol, dave] = h.login_all(["alice", "bob", "carol", "dave"]);
    h.send(
        alice,
        "/quit \x1b[31mred\x1b[0m\tand\u{202e} \u{9b}done\x07\r\n".as_bytes(),
    );
    assert_eq!(h.text(dave), "*** alice left #lobby (red and done)\r\n");
    // Nothing left after cleaning: no parentheses.
    h.send(bob, "/quit \x1b[1m\x07\u{2066}\r\n".as_bytes());
    assert_eq!(h.text(dave), "*** bob left #lobby\r\n");
    h.send(carol, "/quit \t \r\n");
    assert_eq!(h.text(dave), "*** carol left #lobby\r\n");
}

#[test]
fn peer_close_tells_the_room_and_reports_nothing() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "/join den\r\n");
    h.send(bob, "/join den\r\n");
    h.clear();
    h.disconnect(alice);
    assert_eq!(h.text(bob), "*** alice left #den (connection closed)\r\n");
    assert!(h.closes.is_empty(), "the shell closed it, so no Closed");
    assert_eq!(h.chat.nick(alice), None);
    h.chat.handle_disconnect(bob, CloseReason::SocketError);
    h.after();
    assert_eq!(h.chat.connection_count(), 0);
    assert_eq!(h.chat.room_count(), 1);
    // Disconnecting again (stale) changes nothing.
    h.chat.handle_disconnect(bob, CloseReason::PeerClosed);
    h.after();
    assert!(h.chat.next_deadline().is_none());
}

#[test]
fn end_of_input_hands_back_the_replies_still_queued() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.clear();
    // alice's last line and her end of input arrive in one read: the reply must still reach her.
    let now = h.now();
    h.chat.handle_input(alice, b"/who\r\n", now);
    h.chat.handle_disconnect(alice, CloseReason::InputClosed);
    h.after();
    assert_eq!(h.text(alice), "*** 2 users in #lobby: alice, bob\r\n");
    assert_eq!(h.close_reason(alice), Some(CloseReason::InputClosed));
    assert_eq!(h.text(bob), "*** alice left #lobby (connection closed)\r\n");
    assert_eq!(h.chat.connection_count(), 1);
}

#[test]
fn stale_ids_never_reach_the_new_owner_of_a_slot() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.disconnect(alice);
    h.clear();
    let carol = h.login("carol");
    assert_eq!(carol.index, alice.index, "the harness reuses the slot");
    assert_ne!(carol.generation, alice.generation);
    h.send(alice, "/nick mallory\r\nimpostor\r\n");
    h.chat.handle_disconnect(alice, CloseReason::PeerClosed);
    h.after();
    assert_eq!(h.chat.nick(alice), None);
    assert_eq!(h.chat.nick(carol), Some("carol"));
    assert!(h.chat.output(alice).is_empty());
    assert!(!h.chat.wants_input(alice));
    assert!(h.take(bob).is_empty());
    assert!(h.take(carol).is_empty());
    h.send(carol, "hi\r\n");
    assert_eq!(h.text(bob), "<carol> hi\r\n");
}

#[test]
fn connect_on_a_slot_still_held_forgets_the_old_session() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    // A shell bug or race: the slot of alice is handed out again without a disconnect.
    let newcomer = ConnId {
        index: alice.index,
        generation: 99_999,
    };
    h.chat.handle_connect(newcomer, loopback(), h.now());
    h.after();
    assert_eq!(h.text(newcomer), BANNER);
    assert_eq!(h.text(bob), "*** alice left #lobby (connection closed)\r\n");
    assert_eq!(h.chat.connection_count(), 2);
    h.send(newcomer, "alice\r\n");
    assert_eq!(
        h.text(newcomer),
        "*** Welcome, alice! You are in #lobby.\r\n"
    );
}

#[test]
fn shutdown_tells_everyone_and_ignores_input() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    let c = h.connect();
    h.clear();
    h.chat.handle_shutdown();
    h.after();
    for id in [alice, bob, c] {
        assert_eq!(h.text(id), "*** Server is shutting down.\r\n");
    }
    h.send(alice, "still here\r\n");
    assert!(h.take(bob).is_empty());
}

#[test]
fn partial_writes_lose_nothing() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.stalled.insert(bob);
    h.send(alice, "one\r\n");
    assert_eq!(h.chat.output(bob), b"<alice> one\r\n");
    h.chat.consume_output(bob, 3);
    h.send(alice, "two\r\n");
    assert_eq!(h.chat.output(bob), b"ice> one\r\n<alice> two\r\n");
    h.chat.consume_output(bob, 0);
    h.unstall(bob);
    assert_eq!(h.text(bob), "ice> one\r\n<alice> two\r\n");
    h.send(alice, "three\r\n");
    assert_eq!(h.text(bob), "<alice> three\r\n");
}

// ---------------------------------------------------------------------------------------------
// --quiet-above and --max-line
// ---------------------------------------------------------------------------------------------

#[test]
fn quiet_above_counts_the_user_concerned() {
    let mut h = Harness::with_config(Config {
        quiet_above: 2,
        ..test_config()
    });
    let alice = h.login("alice");
    let bob = h.connect();
    h.take(bob);
    h.send(bob, "bob\r\n");
    assert_eq!(h.text(bob), "*** Welcome, bob! You are in #lobby.\r\n");
    assert_eq!(
        h.text(alice),
        "*** bob joined #lobby\r\n",
        "2 members: announced"
    );
    let carol = h.connect();
    h.take(carol);
    h.send(carol, "carol\r\n");
    assert_eq!(h.text(carol), "*** Welcome, carol! You are in #lobby.\r\n");
    assert!(h.take(alice).is_empty(), "3 members: quiet");
    assert!(h.take(bob).is_empty());
    // Renames and leaves in a room of 3: quiet; the user's own replies unchanged.
    h.send(carol, "/nick caro\r\n");
    assert_eq!(h.text(carol), "*** You are now known as caro.\r\n");
    h.send(carol, "/join den\r\n");
    assert_eq!(h.text(carol), "*** You joined #den (1 user)\r\n");
    assert!(h.take(alice).is_empty() && h.take(bob).is_empty());
    // Chat is never quieted.
    h.send(alice, "hi\r\n");
    assert_eq!(h.text(bob), "<alice> hi\r\n");
    // Back to 2 members (counting the user): announced again.
    h.send(bob, "/nick bobby\r\n");
    assert_eq!(h.text(bob), "*** You are now known as bobby.\r\n");
    assert_eq!(h.text(alice), "*** bob is now known as bobby\r\n");
    h.send(bob, "/join den\r\n");
    assert_eq!(h.text(alice), "*** bobby left #lobby\r\n");
    assert_eq!(h.text(carol), "*** bobby joined #den\r\n");
    assert_eq!(h.text(bob), "*** You joined #den (2 users)\r\n");
    // Joining a room that then has 3: quiet.
    h.send(alice, "/join den\r\n");
    assert_eq!(h.text(alice), "*** You joined #den (3 users)\r\n");
    assert!(h.take(bob).is_empty() && h.take(carol).is_empty());
    // Leaving a room of 3 (the leaver counted): quiet, also on disconnect and quit.
    h.disconnect(alice);
    assert!(h.take(bob).is_empty() && h.take(carol).is_empty());
    h.send(bob, "/quit bye\r\n");
    assert_eq!(h.text(carol), "*** bobby left #den (bye)\r\n");
}

#[test]
fn quiet_above_zero_always_announces() {
    let mut h = Harness::with_config(Config {
        quiet_above: 0,
        ..test_config()
    });
    let ids: Vec<ConnId> = (0..5).map(|i| h.login(&format!("u{i}"))).collect();
    let late = h.login("late");
    h.send(late, "/quit\r\n");
    assert_eq!(h.text(ids[0]), "*** late left #lobby\r\n");
    let _ = h.login("again");
    assert_eq!(h.text(ids[4]), "");
    h.clear();
    let x = h.connect();
    h.send(x, "x\r\n");
    assert_eq!(h.text(ids[2]), "*** x joined #lobby\r\n");
}

#[test]
fn overlong_lines_are_refused_once_and_discarded() {
    let mut h = Harness::with_config(Config {
        max_line: 8,
        ..test_config()
    });
    let [alice, bob] = h.login_all(["alice", "bob"]);
    let too_long = "!!! Line too long: the limit is 8 bytes, and that line was discarded.\r\n";
    h.send(alice, "12345678\r\n");
    assert_eq!(h.text(bob), "<alice> 12345678\r\n");
    assert!(h.take(alice).is_empty());
    h.send(alice, "123456789\r\nok\r\n");
    assert_eq!(h.text(alice), too_long);
    assert_eq!(h.text(bob), "<alice> ok\r\n");
    // Spread over reads, far past the limit: still one error, then the next line works.
    h.send(alice, "1234");
    h.send(alice, "56789abc");
    h.send(alice, "x".repeat(10_000));
    assert_eq!(h.text(alice), too_long);
    h.send(alice, "def\r");
    h.send(alice, "\nnext\n");
    assert!(h.take(alice).is_empty());
    assert_eq!(h.text(bob), "<alice> next\r\n");
    // The limit counts bytes, not characters, and not the line end.
    h.send(alice, "éééé\r\n");
    assert_eq!(h.text(bob), "<alice> éééé\r\n");
    h.send(alice, "ééééé\r\n");
    assert_eq!(h.text(alice), too_long);
    assert!(h.take(bob).is_empty());
    // Backspaces do not count against the limit once they erase.
    h.send(alice, "12345678\x08\x0890\r\n");
    assert_eq!(h.text(bob), "<alice> 12345690\r\n");
    assert!(h.take(alice).is_empty());
    assert_eq!(h.chat.connection_count(), 2);
}

#[test]
fn overlong_line_before_login_gets_the_prompt_again() {
    let mut h = Harness::with_config(Config {
        max_line: 8,
        ..test_config()
    });
    let a = h.connect();
    h.take(a);
    h.send(a, "abcdefghijkl\r\n");
    assert_eq!(
        h.text(a),
        format!(
            "!!! Line too long: the limit is 8 bytes, and that line was discarded.\r\n{PROMPT}"
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Telnet
// ---------------------------------------------------------------------------------------------

#[test]
fn telnet_options_are_refused() {
    let mut h = Harness::new();
    let a = h.connect();
    h.take(a);
    h.send(
        a,
        [
            IAC, WILL, 31, IAC, DO, 1, IAC, WONT, 5, IAC, DONT, 6, IAC, DO, 6,
        ],
    );
    assert_eq!(h.take(a), [IAC, DONT, 31, IAC, WONT, 1, IAC, WONT, 6]);
    // Split across reads, in the middle of a line.
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, b"he");
    h.send(alice, [IAC]);
    h.send(alice, [WILL]);
    h.send(alice, [24]);
    h.send(alice, b"llo\r\n");
    assert_eq!(h.take(alice), [IAC, DONT, 24]);
    assert_eq!(h.text(bob), "<alice> hello\r\n");
}

#[test]
fn telnet_subnegotiation_and_escaped_iac() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    let mut input = b"he".to_vec();
    input.extend([IAC, SB, 24, 0]);
    input.extend(b"ignored text\r\n".repeat(100));
    input.extend([IAC, IAC, IAC, SE]);
    input.extend(b"llo\r\n");
    input.extend([b'a', IAC, IAC, b'b', b'\r', b'\n']);
    // Other two-byte commands are dropped.
    input.extend([b'c', IAC, 241, IAC, 242, b'd', b'\n']);
    h.send(alice, &input);
    assert_eq!(
        h.text(bob),
        "<alice> hello\r\n<alice> a\u{FFFD}b\r\n<alice> cd\r\n"
    );
    assert!(h.take(alice).is_empty());
}

#[test]
fn telnet_interrupt_is_quit() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, [b'h', b'i', IAC, IP, b'\r', b'\n']);
    assert_eq!(h.text(alice), "*** Bye, alice!\r\n");
    assert_eq!(h.close_reason(alice), Some(CloseReason::Quit));
    assert_eq!(h.text(bob), "*** alice left #lobby\r\n");
    let c = h.connect();
    h.take(c);
    h.send(c, [IAC, IP]);
    assert_eq!(h.text(c), "*** Bye!\r\n");
    assert_eq!(h.close_reason(c), Some(CloseReason::Quit));
}

#[test]
fn telnet_are_you_there() {
    let mut h = Harness::new();
    let a = h.connect();
    h.take(a);
    h.send(a, [IAC, AYT]);
    assert_eq!(h.text(a), "*** yes, still here\r\n");
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, b"he");
    h.send(alice, [IAC, AYT]);
    h.send(alice, b"llo\r\n");
    assert_eq!(h.text(alice), "*** yes, still here\r\n");
    assert_eq!(h.text(bob), "<alice> hello\r\n");
}

#[test]
fn telnet_erase_char_and_line_and_backspace() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(
        alice,
        [b'h', b'e', b'l', b'o', IAC, EC, b'l', b'o', b'\r', b'\n'],
    );
    assert_eq!(h.text(bob), "<alice> hello\r\n");
    h.send(alice, b"garbage");
    h.send(alice, [IAC, EL]);
    h.send(alice, b"hi\r\n");
    assert_eq!(h.text(bob), "<alice> hi\r\n");
    h.send(alice, "xé".as_bytes());
    h.send(alice, [IAC, EC, b'\r', b'\n']);
    assert_eq!(h.text(bob), "<alice> x\r\n");
    h.send(alice, b"abc\x08d\x7fe\r\n");
    assert_eq!(h.text(bob), "<alice> abe\r\n");
    // Erasing past the start of the line does nothing.
    h.send(alice, [IAC, EC, IAC, EC, b'z', 0x7F, 0x7F, b'y', b'\n']);
    assert_eq!(h.text(bob), "<alice> y\r\n");
    // Erasing everything leaves an empty line: ignored.
    h.send(alice, [b'q', IAC, EC, b'\r', b'\n']);
    assert!(h.take(bob).is_empty());
    assert!(h.take(alice).is_empty());
}

#[test]
fn every_line_end_kind_and_crlf_across_reads() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, b"a\nb\r\nc\r\0d\re\n");
    h.send(alice, b"f\r");
    h.send(alice, b"\ng\r");
    h.send(alice, b"\0h\r");
    h.send(alice, b"i\n");
    assert_eq!(
        h.text(bob),
        lines(&[
            "<alice> a",
            "<alice> b",
            "<alice> c",
            "<alice> d",
            "<alice> e",
            "<alice> f",
            "<alice> g",
            "<alice> h",
            "<alice> i",
        ])
    );
}

/// One script that touches every part of the input pipeline.
fn pipeline_script() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(b"hello\r\n");
    s.extend([IAC, WILL, 31, IAC, DO, 1, IAC, DONT, 3]);
    s.extend("héllo €\r\n".as_bytes());
    s.extend(b"cr nul\r\0lone cr\rlf only\n");
    s.extend([b'x', IAC, IAC, b'y', b'\n']);
    s.extend([
        b'a', IAC, SB, 24, 1, 2, IAC, IAC, 3, IAC, SE, b'b', b'\r', b'\n',
    ]);
    s.extend([b'a', b'b', IAC, EC, b'c', IAC, AYT, b'\r', b'\n']);
    s.extend([b'z', b'z', IAC, EL, b'w', 0x08, b'v', b'\r', b'\n']);
    s.extend("/me smiles \u{1F600}\r\n".as_bytes());
    s.extend(b"/w bob whisper\r\n/who\r\n");
    s.extend(b"/nick alicia\r\n");
    s.extend(b"\x1b[31mred\x1b[0m\r\n");
    s.extend(b"bad \xff\xfe utf8\r\n");
    s.extend(b"\r\n   \r\n");
    s.extend("x".repeat(40).as_bytes());
    s.extend(b"\r\n");
    s.extend(b"/join den\r\n/join lobby\r\n");
    s.extend(b"//slash\r\nbye\r");
    s.extend(b"\n/quit  see you\r\nnever seen\r\n");
    s
}

/// Drives alice (the sender) and bob (the listener) with `reads`; returns what each received.
fn run_pipeline(reads: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
    let mut h = Harness::with_config(Config {
        max_line: 32,
        ..test_config()
    });
    let [alice, bob] = h.login_all(["alice", "bob"]);
    for r in reads {
        h.send(alice, r);
    }
    (h.take(alice), h.take(bob))
}

#[test]
fn input_split_at_every_byte_position_gives_the_same_output() {
    let script = pipeline_script();
    let whole = run_pipeline(&[&script]);
    // Sanity: the script did what it should.
    let bob = String::from_utf8_lossy(&whole.1).into_owned();
    assert!(bob.starts_with("<alice> hello\r\n<alice> héllo €\r\n<alice> cr nul\r\n"));
    assert!(bob.contains("<alice> x\u{FFFD}y\r\n<alice> ab\r\n<alice> ac\r\n<alice> v\r\n"));
    assert!(bob.ends_with("*** alicia left #lobby (see you)\r\n"));
    assert!(!bob.contains("never seen"));
    let alice = String::from_utf8_lossy(&whole.0).into_owned();
    assert!(alice.contains("Line too long: the limit is 32 bytes"));
    assert!(alice.ends_with("*** Bye, alicia!\r\n"));
    for split in 0..=script.len() {
        let (a, b) = script.split_at(split);
        assert_eq!(run_pipeline(&[a, b]), whole, "split at {split}");
    }
    for split in 0..script.len().saturating_sub(7) {
        let (a, rest) = script.split_at(split);
        let (b, c) = rest.split_at(7);
        assert_eq!(run_pipeline(&[a, b, c]), whole, "splits at {split}+7");
    }
    let bytes: Vec<&[u8]> = script.chunks(1).collect();
    assert_eq!(run_pipeline(&bytes), whole, "one byte per read");
}

// ---------------------------------------------------------------------------------------------
// --sendq
// ---------------------------------------------------------------------------------------------

#[test]
fn a_slow_recipient_is_dropped_and_nobody_else_loses_a_line() {
    let mut h = Harness::with_config(Config {
        sendq: 1024,
        ..test_config()
    });
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    h.stalled.insert(bob);
    // Each relayed line is 8 + 92 + 2 = 102 bytes: 10 fit in 1024, the 11th does not.
    let body = "y".repeat(92);
    let mut expected_carol = String::new();
    for i in 0..20 {
        let line = format!("{i:02}{}", &body[2..]);
        h.send(alice, format!("{line}\r\n"));
        expected_carol.push_str(&format!("<alice> {line}\r\n"));
        if i == 10 {
            expected_carol.push_str("*** bob left #lobby (too slow)\r\n");
            assert_eq!(h.close_reason(bob), Some(CloseReason::TooSlow));
        } else if i < 10 {
            assert_eq!(h.close_reason(bob), None, "line {i}");
        }
    }
    assert_eq!(h.text(carol), expected_carol);
    assert_eq!(h.text(alice), "*** bob left #lobby (too slow)\r\n");
    // A too-slow client gets no final output.
    assert!(h.take(bob).is_empty());
    assert!(h.chat.output(bob).is_empty());
    assert_eq!(h.chat.connection_count(), 2);
    h.send(carol, "/who\r\n");
    assert_eq!(h.text(carol), "*** 2 users in #lobby: alice, carol\r\n");
}

#[test]
fn a_slow_recipient_dropped_in_the_middle_of_one_input() {
    let mut h = Harness::with_config(Config {
        sendq: 4096,
        ..test_config()
    });
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    h.stalled.insert(bob);
    let mut expected = String::new();
    // Two reads of 30 lines (78 bytes each relayed): bob overflows during the second.
    for batch in 0..2 {
        let mut input = String::new();
        for i in 0..30 {
            input.push_str(&format!("line {batch} {i:02} {}\r\n", "z".repeat(60)));
            expected.push_str(&format!(
                "<alice> line {batch} {i:02} {}\r\n",
                "z".repeat(60)
            ));
        }
        h.send(alice, &input);
        assert_eq!(h.close_reason(bob).is_some(), batch == 1);
    }
    // carol gets every line, in order, and the notice once (where the core had carried out
    // the close: at the end of the handle_* call that made bob too slow).
    let notice = "*** bob left #lobby (too slow)\r\n";
    let got = h.text(carol);
    assert_eq!(got.matches(notice).count(), 1);
    assert_eq!(got.replace(notice, ""), expected);
    assert_eq!(h.close_reason(bob), Some(CloseReason::TooSlow));
    assert_eq!(h.text(alice), notice);
}

/// Was a bug (found while writing these tests, fixed in 36d1f33): --sendq was judged while a
/// turn queued output, so one paste could cut members that read everything.
#[test]
fn one_read_cannot_make_fast_readers_too_slow() {
    let mut h = Harness::with_config(Config {
        sendq: 65_536,
        ..test_config()
    });
    let nick = "a".repeat(24);
    let [alice, bob] = h.login_all([nick.as_str(), "bob"]);
    // One 16 KiB read (the shell's scratch buffer) of 2-byte lines: 8192 lines of 30 bytes.
    h.send(alice, b"x\r".repeat(8192));
    assert_eq!(h.close_reason(bob), None);
    assert_eq!(h.take(bob).len(), 8192 * 30);
}

#[test]
fn a_sender_that_never_reads_is_dropped_too() {
    let mut h = Harness::with_config(Config {
        sendq: 1024,
        ..test_config()
    });
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.stalled.insert(alice);
    h.send(alice, "/help\r\n");
    assert_eq!(h.close_reason(alice), None);
    h.send(alice, "/help\r\n");
    assert_eq!(h.close_reason(alice), Some(CloseReason::TooSlow));
    assert_eq!(h.text(bob), "*** alice left #lobby (too slow)\r\n");
    assert!(h.take(alice).is_empty());
}

/// alice, whose peer does not read, already has output the kernel refused (so she is judged
/// as soon as her queue would pass `--sendq`); bob listens.
fn blocked_sender() -> (Harness, ConnId, ConnId) {
    let mut h = Harness::with_config(Config {
        sendq: 1024,
        ..test_config()
    });
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.stalled.insert(alice);
    h.send(alice, "/who\r\n");
    assert_eq!(
        h.chat.output(alice),
        b"*** 2 users in #lobby: alice, bob\r\n"
    );
    assert_eq!(h.close_reason(alice), None);
    (h, alice, bob)
}

#[test]
fn a_blocked_sender_is_dropped_when_its_queue_would_pass_sendq() {
    let (mut h, alice, bob) = blocked_sender();
    // 36 queued + 47 AYT replies of 21 bytes = 1023; the 48th passes 1024.
    h.send(alice, [IAC, AYT].repeat(47));
    assert_eq!(h.close_reason(alice), None);
    h.send(alice, [IAC, AYT]);
    assert_eq!(h.close_reason(alice), Some(CloseReason::TooSlow));
    assert_eq!(h.text(bob), "*** alice left #lobby (too slow)\r\n");
    assert!(h.take(alice).is_empty());
}

#[test]
fn nothing_is_acted_on_after_the_sender_is_too_slow() {
    let (mut h, alice, bob) = blocked_sender();
    // The 48th AYT reply makes alice too slow; the chat line after it must not be relayed.
    let mut input = [IAC, AYT].repeat(60);
    input.extend(b"hello\r\n");
    h.send(alice, &input);
    assert_eq!(h.close_reason(alice), Some(CloseReason::TooSlow));
    assert_eq!(h.text(bob), "*** alice left #lobby (too slow)\r\n");
}

#[test]
fn too_slow_is_not_turned_into_a_quit() {
    let (mut h, alice, bob) = blocked_sender();
    let mut input = [IAC, AYT].repeat(60);
    input.extend([IAC, IP]);
    h.send(alice, &input);
    assert_eq!(h.close_reason(alice), Some(CloseReason::TooSlow));
    assert_eq!(h.text(bob), "*** alice left #lobby (too slow)\r\n");
}

#[test]
fn a_banner_larger_than_sendq_reaches_a_reader_but_not_a_stalled_peer() {
    let config = Config {
        sendq: 1024,
        banner: vec!["m".repeat(100); 20],
        ..test_config()
    };
    let banner = format!(
        "{}{PROMPT}",
        format!("*** {}\r\n", "m".repeat(100)).repeat(20)
    );
    let mut h = Harness::with_config(config);
    let a = h.connect();
    assert_eq!(h.text(a), banner);
    assert_eq!(h.close_reason(a), None);
    // A peer that takes nothing is judged on the first write attempt.
    let b = h.connect_stalled();
    assert_eq!(h.close_reason(b), Some(CloseReason::TooSlow));
    assert!(h.take(b).is_empty());
    assert_eq!(h.chat.connection_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// --max-clients and --max-per-ip
// ---------------------------------------------------------------------------------------------

#[test]
fn max_clients_refuses_one_more() {
    let mut h = Harness::with_limit(test_config(), 2);
    let [alice, _bob] = h.login_all(["alice", "bob"]);
    let c = h.connect();
    assert_eq!(h.text(c), "!!! Server is full, try again later.\r\n");
    assert_eq!(h.close_reason(c), Some(CloseReason::ServerFull));
    assert_eq!(h.chat.connection_count(), 2);
    assert!(!h.chat.wants_input(c));
    // A place frees up.
    h.disconnect(alice);
    let d = h.connect();
    assert_eq!(h.text(d), BANNER);
    assert_eq!(h.chat.connection_count(), 2);
}

#[test]
fn max_per_ip_counts_addresses_and_ipv6_prefixes() {
    let mut h = Harness::with_config(Config {
        max_per_ip: 2,
        ..test_config()
    });
    const TOO_MANY: &str = "!!! Too many connections from your address.\r\n";
    let a1 = h.connect_from(v4(10, 0, 0, 1));
    let a2 = h.connect_from(v4(10, 0, 0, 1));
    assert_eq!(h.text(a1), BANNER);
    assert_eq!(h.text(a2), BANNER);
    let a3 = h.connect_from(v4(10, 0, 0, 1));
    assert_eq!(h.text(a3), TOO_MANY);
    assert_eq!(h.close_reason(a3), Some(CloseReason::TooManyFromAddress));
    // The IPv4-mapped form is the same address.
    let a4 = h.connect_from(v6("::ffff:10.0.0.1"));
    assert_eq!(h.text(a4), TOO_MANY);
    // Another address is counted apart.
    let b = h.connect_from(v4(10, 0, 0, 2));
    assert_eq!(h.text(b), BANNER);
    // Loopback is exempt, in every form.
    for ip in [
        loopback(),
        v4(127, 1, 2, 3),
        v6("::1"),
        v6("::ffff:127.0.0.1"),
    ] {
        for _ in 0..3 {
            let id = h.connect_from(ip);
            assert_eq!(h.text(id), BANNER, "{ip}");
        }
    }
    // IPv6 counts per /64.
    let c1 = h.connect_from(v6("2001:db8::1"));
    let c2 = h.connect_from(v6("2001:db8::ffff:0:2"));
    let c3 = h.connect_from(v6("2001:db8:0:0:8000::3"));
    let d1 = h.connect_from(v6("2001:db8:0:1::1"));
    assert_eq!(h.text(c1), BANNER);
    assert_eq!(h.text(c2), BANNER);
    assert_eq!(h.text(c3), TOO_MANY);
    assert_eq!(h.text(d1), BANNER);
    // Closing one (either way) makes room again.
    h.disconnect(a1);
    let a5 = h.connect_from(v4(10, 0, 0, 1));
    assert_eq!(h.text(a5), BANNER);
    h.send(c1, "/quit\r\n");
    let c4 = h.connect_from(v6("2001:db8::4"));
    assert_eq!(h.text(c4), BANNER);
    assert_eq!(h.chat.connection_count(), 2 + 1 + 12 + 3);
    // Everyone leaves: nothing is left behind (check_invariants looks at the counters).
    h.disconnect_all();
    assert_eq!(h.chat.connection_count(), 0);
    let again = h.connect_from(v4(10, 0, 0, 1));
    assert_eq!(h.text(again), BANNER);
}

#[test]
fn limit_loopback_counts_loopback_too() {
    let mut h = Harness::with_config(Config {
        max_per_ip: 1,
        limit_loopback: true,
        ..test_config()
    });
    let a = h.connect();
    assert_eq!(h.text(a), BANNER);
    let b = h.connect();
    assert_eq!(h.text(b), "!!! Too many connections from your address.\r\n");
    let c = h.connect_from(v6("::1"));
    assert_eq!(h.text(c), BANNER);
}

#[test]
fn max_per_ip_zero_is_off() {
    let mut h = Harness::with_config(Config {
        max_per_ip: 0,
        limit_loopback: true,
        ..test_config()
    });
    for _ in 0..50 {
        let id = h.connect_from(v4(192, 0, 2, 7));
        assert_eq!(h.text(id), BANNER);
    }
}

// ---------------------------------------------------------------------------------------------
// Timers: login and idle timeouts, next_deadline
// ---------------------------------------------------------------------------------------------

#[test]
fn an_idle_server_has_no_timer() {
    let mut h = Harness::new();
    assert_eq!(h.chat.next_deadline(), None);
    let [alice, bob] = h.login_all(["alice", "bob"]);
    let c = h.connect();
    h.send(alice, "hi\r\n/join x\r\n/who\r\n");
    h.send(c, [IAC, DO, 1]);
    assert_eq!(h.chat.next_deadline(), None);
    h.advance(Duration::from_secs(86_400));
    assert!(h.closes.is_empty());
    h.disconnect(bob);
    assert_eq!(h.chat.next_deadline(), None);
}

#[test]
fn login_timeout() {
    let mut h = Harness::with_config(Config {
        login_timeout: Some(Duration::from_secs(10)),
        ..test_config()
    });
    let watcher = h.login("watcher");
    h.advance_ms(2_000);
    let a = h.connect();
    h.take(a);
    assert_eq!(
        h.chat.next_deadline(),
        Some(h.base + Duration::from_millis(10_000))
    );
    // Talking (without logging in) does not postpone it.
    h.advance_ms(5_000);
    h.send(a, "9bad\r\n");
    h.take(a);
    h.advance_ms(4_999);
    assert_eq!(h.close_reason(a), None);
    assert_eq!(
        h.chat.next_deadline(),
        Some(h.base + Duration::from_millis(12_000))
    );
    h.advance_ms(1);
    assert_eq!(h.text(a), "*** Login timeout.\r\n");
    assert_eq!(h.close_reason(a), Some(CloseReason::LoginTimeout));
    assert!(
        h.take(watcher).is_empty(),
        "nobody is told: it was in no room"
    );
    // Logging in in time cancels it.
    let b = h.connect();
    h.advance_ms(9_000);
    h.send(b, "bob\r\n");
    h.advance_ms(60_000);
    assert_eq!(h.close_reason(b), None);
    assert_eq!(h.chat.nick(b), Some("bob"));
    assert_eq!(h.chat.next_deadline(), None);
}

#[test]
fn idle_timeout() {
    let mut h = Harness::with_config(Config {
        idle_timeout: Some(Duration::from_secs(60)),
        ..test_config()
    });
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.advance_ms(30_000);
    h.send(alice, "still here\r\n");
    h.clear();
    h.advance_ms(29_999);
    assert!(h.closes.is_empty());
    h.advance_ms(1);
    assert_eq!(h.text(bob), "*** Idle timeout.\r\n");
    assert_eq!(h.close_reason(bob), Some(CloseReason::IdleTimeout));
    assert_eq!(h.text(alice), "*** bob left #lobby (idle timeout)\r\n");
    // Any input counts, a telnet command included.
    h.advance_ms(29_000);
    h.send(alice, [IAC, 241]);
    h.advance_ms(59_999);
    assert_eq!(h.close_reason(alice), None);
    h.advance_ms(1);
    assert_eq!(h.text(alice), "*** Idle timeout.\r\n");
    assert_eq!(h.close_reason(alice), Some(CloseReason::IdleTimeout));
    // Before login too.
    let c = h.connect();
    h.take(c);
    h.advance_ms(60_000);
    assert_eq!(h.text(c), "*** Idle timeout.\r\n");
    assert_eq!(h.chat.connection_count(), 0);
    assert_eq!(h.chat.room_count(), 1);
    assert_eq!(h.chat.next_deadline(), None);
}

#[test]
fn timeouts_in_one_turn_for_many_connections() {
    let mut h = Harness::with_config(Config {
        idle_timeout: Some(Duration::from_secs(5)),
        login_timeout: Some(Duration::from_secs(5)),
        ..test_config()
    });
    let users: Vec<ConnId> = (0..20).map(|i| h.login(&format!("u{i}"))).collect();
    let guests = h.connect_n(5);
    h.clear();
    // One late handle_timeout fires everything at once.
    h.offset += Duration::from_secs(100);
    let now = h.now();
    h.chat.handle_timeout(now);
    h.after();
    for id in users.iter().chain(&guests) {
        assert!(h.close_reason(*id).is_some());
    }
    assert_eq!(h.chat.connection_count(), 0);
    assert_eq!(h.chat.room_count(), 1);
}

#[test]
fn no_timer_is_left_once_everyone_has_gone() {
    let mut h = Harness::with_config(Config {
        idle_timeout: Some(Duration::from_secs(3600)),
        login_timeout: Some(Duration::from_secs(3600)),
        ..test_config()
    });
    for _ in 0..1000 {
        let id = h.connect();
        h.send(id, "\r\n");
        h.disconnect(id);
    }
    assert_eq!(h.chat.connection_count(), 0);
    assert_eq!(h.chat.next_deadline(), None);
}

// ---------------------------------------------------------------------------------------------
// Flood control
// ---------------------------------------------------------------------------------------------

fn flood_config() -> Config {
    Config {
        rate: 2,
        burst: 3,
        ..test_config()
    }
}

#[test]
fn flood_control_holds_lines_and_loses_nothing() {
    let mut h = Harness::with_config(flood_config());
    let [alice, bob] = h.login_all(["alice", "bob"]);
    // Let the login lines' tokens come back: the bucket is full (3).
    h.advance_ms(10_000);
    assert_eq!(h.chat.next_deadline(), None);
    let input: String = (0..10).map(|i| format!("m{i}\r\n")).collect();
    h.send(alice, &input);
    assert_eq!(
        h.text(bob),
        lines(&["<alice> m0", "<alice> m1", "<alice> m2"])
    );
    assert!(!h.chat.wants_input(alice));
    assert!(h.chat.wants_input(bob));
    let start = h.offset;
    assert_eq!(
        h.chat.next_deadline(),
        Some(h.base + start + Duration::from_millis(500))
    );
    // Time passes: one line per 500 ms, in order.
    for i in 3..10 {
        h.advance_ms(499);
        assert!(h.take(bob).is_empty(), "m{i} too early");
        h.advance_ms(1);
        assert_eq!(h.text(bob), format!("<alice> m{i}\r\n"));
        assert!(!h.chat.wants_input(alice));
    }
    assert!(h.resumed.is_empty());
    // The budget of the last line refills: alice may be read again.
    h.advance_ms(500);
    assert_eq!(h.resumed, vec![alice]);
    assert!(h.chat.wants_input(alice));
    assert_eq!(h.chat.next_deadline(), None);
    assert!(h.take(bob).is_empty());
    assert!(h.take(alice).is_empty());
}

#[test]
fn flood_control_keeps_an_unfinished_line_and_a_split_crlf() {
    let mut h = Harness::with_config(flood_config());
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.advance_ms(10_000);
    // The third line ends with CR; its LF and a partial line are held.
    h.send(alice, "a\r\nb\r\nc\r\nd\r\npart");
    assert_eq!(h.text(bob), lines(&["<alice> a", "<alice> b", "<alice> c"]));
    h.advance_ms(500);
    assert_eq!(h.text(bob), "<alice> d\r\n");
    // The shell did not read while paused, so "part" waits for its line end.
    h.advance_ms(500);
    assert_eq!(h.resumed, vec![alice]);
    h.send(alice, "ial\r\n");
    assert_eq!(h.text(bob), "<alice> partial\r\n");
    assert!(h.take(alice).is_empty());
}

#[test]
fn flood_control_refills_over_time_up_to_the_burst() {
    let mut h = Harness::with_config(flood_config());
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.advance_ms(10_000);
    // Two lines a second is the sustained rate: never paused.
    for i in 0..20 {
        h.send(alice, format!("s{i}\r\n"));
        assert_eq!(h.text(bob), format!("<alice> s{i}\r\n"));
        assert!(h.chat.wants_input(alice), "line {i}");
        h.advance_ms(500);
    }
    // A long pause refills only up to the burst.
    h.advance_ms(60_000);
    h.send(alice, "1\r\n2\r\n3\r\n4\r\n");
    assert_eq!(h.text(bob), lines(&["<alice> 1", "<alice> 2", "<alice> 3"]));
    assert!(!h.chat.wants_input(alice));
    h.advance_ms(500);
    assert_eq!(h.text(bob), "<alice> 4\r\n");
}

#[test]
fn flood_control_held_quit_and_disconnect_while_held() {
    let mut h = Harness::with_config(flood_config());
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    h.advance_ms(10_000);
    h.send(alice, "1\r\n2\r\n3\r\n4\r\n/quit later\r\n");
    assert_eq!(h.text(bob), lines(&["<alice> 1", "<alice> 2", "<alice> 3"]));
    h.advance_ms(1_000);
    assert_eq!(
        h.text(bob),
        lines(&["<alice> 4", "*** alice left #lobby (later)"])
    );
    assert_eq!(h.close_reason(alice), Some(CloseReason::Quit));
    assert!(h.resumed.is_empty());
    // A connection lost while held: its timer finds nobody.
    h.send(carol, "1\r\n2\r\n3\r\n4\r\n");
    h.take(bob);
    h.disconnect(carol);
    assert_eq!(h.text(bob), "*** carol left #lobby (connection closed)\r\n");
    h.advance_ms(5_000);
    assert!(h.take(bob).is_empty());
    assert!(h.resumed.is_empty());
    assert_eq!(h.chat.next_deadline(), None);
}

#[test]
fn flood_control_counts_lines_before_login_too() {
    let mut h = Harness::with_config(flood_config());
    let a = h.connect();
    h.take(a);
    h.send(a, "1\r\n2\r\n3\r\nalice\r\n");
    assert_eq!(h.text(a), format!("{INVALID_NICK}{PROMPT}").repeat(3));
    assert!(!h.chat.wants_input(a));
    h.advance_ms(500);
    assert_eq!(h.text(a), "*** Welcome, alice! You are in #lobby.\r\n");
}

#[test]
fn rooms_header_always_says_rooms() {
    let mut h = Harness::new();
    let a = h.login("alice");
    h.send(a, "/rooms\r\n");
    assert_eq!(h.text(a), "*** 1 rooms:\r\n***   #lobby (1 user)\r\n");
}

#[test]
fn held_input_is_not_relayed_after_shutdown() {
    let mut h = Harness::with_config(flood_config());
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.advance_ms(10_000);
    h.send(alice, "1\r\n2\r\n3\r\n4\r\n5\r\n");
    assert_eq!(h.text(bob), lines(&["<alice> 1", "<alice> 2", "<alice> 3"]));
    h.chat.handle_shutdown();
    h.after();
    assert_eq!(h.text(bob), "*** Server is shutting down.\r\n");
    h.advance_ms(5_000);
    assert_eq!(h.text(bob), "", "nothing after the shutdown notice");
}

/// Found by the `state_machine` fuzz target (reduced by hand).
#[test]
fn no_resume_is_reported_for_a_connection_closed_in_the_same_turn() {
    let mut h = Harness::with_config(Config {
        sendq: 1024,
        ..flood_config()
    });
    // bob first, so his flood timer fires before alice's when both are due.
    let [bob, alice] = h.login_all(["bob", "alice"]);
    h.advance_ms(10_000);
    h.stalled.insert(bob);
    // bob's queue: 2 x 410 bytes.
    for _ in 0..2 {
        h.send(alice, format!("{}\r\n", "x".repeat(400)));
        h.advance_ms(1_000);
    }
    // Both flood: bob's fourth line and alice's fourth (long) line are held.
    h.send(bob, "b1\r\nb2\r\nb3\r\nb4\r\n");
    h.send(alice, format!("a1\r\na2\r\na3\r\n{}\r\n", "y".repeat(300)));
    assert!(!h.chat.wants_input(bob) && !h.chat.wants_input(alice));
    assert_eq!(h.chat.output(bob).len(), 2 * 410 + 3 * 12);
    // A late wakeup: bob's timer resumes him, then alice's held line makes him too slow.
    h.offset += Duration::from_millis(1_500);
    let now = h.now();
    h.chat.handle_timeout(now);
    h.after();
    assert_eq!(h.close_reason(bob), Some(CloseReason::TooSlow));
    assert!(
        !h.resumed.contains(&bob),
        "resume reported for closed {bob:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Output backpressure: a sender is held while its output is written
// ---------------------------------------------------------------------------------------------

#[test]
fn a_paste_is_held_while_its_output_is_written_and_nothing_is_lost() {
    let mut h = Harness::with_config(Config {
        sendq: 4096,
        ..test_config()
    });
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    let mut input = String::new();
    let mut expected = String::new();
    for i in 0..100 {
        input.push_str(&format!("{i:03} {}\r\n", "p".repeat(66)));
        expected.push_str(&format!("<alice> {i:03} {}\r\n", "p".repeat(66)));
    }
    // Without the harness draining: the core stops once a recipient holds half of --sendq.
    let now = h.now();
    h.chat.handle_input(alice, input.as_bytes(), now);
    h.check();
    assert!(h.chat.wants_flush());
    assert!(!h.chat.wants_input(alice));
    assert!(h.chat.wants_input(bob));
    let queued = h.chat.output(bob).len();
    assert!(
        queued > 2048 && queued <= 2048 + 80,
        "{queued} bytes queued"
    );
    // The shell writes, reports the flush, and the rest comes, in order.
    h.pump();
    assert!(!h.chat.wants_flush());
    assert!(h.chat.wants_input(alice));
    assert_eq!(h.resumed, vec![alice]);
    assert_eq!(h.text(bob), expected);
    assert_eq!(h.text(carol), expected);
    assert!(h.closes.is_empty());
    assert!(h.take(alice).is_empty());
}

#[test]
fn a_stalled_member_does_not_hold_a_sender_for_long() {
    let mut h = Harness::with_config(Config {
        sendq: 4096,
        ..test_config()
    });
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    h.stalled.insert(bob);
    let mut input = String::new();
    let mut expected = String::new();
    for i in 0..100 {
        input.push_str(&format!("{i:03} {}\r\n", "q".repeat(66)));
        expected.push_str(&format!("<alice> {i:03} {}\r\n", "q".repeat(66)));
    }
    h.send(alice, &input);
    // bob is refused on the first write attempt, then dropped once his queue passes --sendq.
    assert_eq!(h.close_reason(bob), Some(CloseReason::TooSlow));
    let notice = "*** bob left #lobby (too slow)\r\n";
    let got = h.text(carol);
    assert_eq!(got.matches(notice).count(), 1);
    assert_eq!(got.replace(notice, ""), expected);
    assert!(h.chat.wants_input(alice));
    assert_eq!(h.text(alice), notice);
}

#[test]
fn senders_held_for_output_in_one_turn_all_go_on_in_order() {
    let mut h = Harness::with_config(Config {
        sendq: 2048,
        ..test_config()
    });
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    let line = |who: &str, i: usize| format!("{who}{i:02} {}", "r".repeat(60));
    let paste =
        |who: &str| -> String { (0..30).map(|i| format!("{}\r\n", line(who, i))).collect() };
    // Two senders in one turn, before the shell writes anything.
    let now = h.now();
    h.chat.handle_input(alice, paste("a").as_bytes(), now);
    h.chat.handle_input(bob, paste("b").as_bytes(), now);
    h.check();
    assert!(!h.chat.wants_input(alice) && !h.chat.wants_input(bob));
    h.pump();
    let carol_got = h.text(carol);
    let from = |who: &str| -> Vec<String> {
        carol_got
            .lines()
            .filter(|l| l.starts_with(&format!("<{who}> ")))
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect()
    };
    let want = |nick: &str, who: &str| -> Vec<String> {
        (0..30)
            .map(|i| format!("<{nick}> {}", line(who, i)))
            .collect()
    };
    assert_eq!(from("alice"), want("alice", "a"));
    assert_eq!(from("bob"), want("bob", "b"));
    assert!(h.closes.is_empty());
    assert!(h.chat.wants_input(alice) && h.chat.wants_input(bob));
}

#[test]
fn output_written_every_turn_never_adds_up_to_a_flush() {
    // The flush bound is per turn: output the shell has taken must not count again later.
    let mut h = Harness::new();
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    let line = format!("{}\r\n", "x".repeat(400));
    let per_turn = 2 * format!("<alice> {line}").len();
    let turns = crate::proto::chat::OUTPUT_HIGH_WATER / per_turn + 100;
    for turn in 0..turns {
        let now = h.now();
        h.chat.handle_input(alice, line.as_bytes(), now);
        assert!(!h.chat.wants_flush(), "flush wanted at turn {turn}");
        assert!(h.chat.wants_input(alice));
        h.clear();
    }
    assert!(h.take(bob).is_empty() && h.take(carol).is_empty());
    assert!(h.closes.is_empty());
}
