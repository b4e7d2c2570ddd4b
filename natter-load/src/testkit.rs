//! Test support: a small chat server that speaks natter's line protocol or IRC on one or more
//! loopback listeners sharing one chat (like the nodes of a cluster), and a shell process that
//! replaces itself on SIGUSR2 the way natter upgrades, to drive the scenarios end to end.
//!
//! The fake serves a handful of test clients with a thread each and one mutex; it implements
//! only what natter-load relies on, with the reply shapes of PROTOCOL.md (natter) and ngircd
//! (IRC). It also sends PINGs during and after IRC registration, which natter-load must answer.

use crate::dialect::{Dialect, IrcMsg};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What the fake saw, for the tests' assertions.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Connections accepted, per listener.
    pub accepted: Vec<usize>,
    /// Connections closed without having sent a single byte.
    pub closed_silent: usize,
    /// Connections closed.
    pub closed: usize,
    /// IRC `PONG`s received for the fake's own PINGs.
    pub pongs: usize,
}

struct Member {
    conn: usize,
    room: String,
    out: TcpStream,
}

#[derive(Default)]
struct State {
    members: Vec<Member>,
    seen: Seen,
    pinged_ready: bool,
    next_conn: usize,
}

struct Shared {
    dialect: Dialect,
    state: Mutex<State>,
    changed: Condvar,
}

/// A running fake server.
#[derive(Clone)]
pub struct Fake {
    /// Its listening addresses (127.0.0.1, kernel-chosen ports).
    pub addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
}

impl Fake {
    /// Starts `listeners` listeners that share one chat.
    pub fn start(dialect: Dialect, listeners: usize) -> Fake {
        let shared = Arc::new(Shared {
            dialect,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        shared.lock().seen.accepted = vec![0; listeners];
        let mut addrs = Vec::new();
        for l in 0..listeners {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            addrs.push(listener.local_addr().unwrap());
            let shared = shared.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    let shared = shared.clone();
                    let conn = {
                        let mut st = shared.lock();
                        st.seen.accepted[l] += 1;
                        st.next_conn += 1;
                        st.next_conn
                    };
                    std::thread::spawn(move || serve(&shared, conn, stream));
                }
            });
        }
        Fake { addrs, shared }
    }

    /// `--addr` value for all listeners.
    pub fn addr_flag(&self) -> String {
        let all: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        all.join(",")
    }

    /// Sends every logged-in member `copies` times the upgrade notice.
    pub fn upgraded(&self, copies: usize) {
        let mut st = self.shared.lock();
        for m in &mut st.members {
            for _ in 0..copies {
                let _ = m.out.write_all(b"*** Server upgraded.\r\n");
            }
        }
    }

    /// Waits (up to 10 s) until `done` holds for what the fake saw, and returns it.
    pub fn wait_until(&self, done: impl Fn(&Seen) -> bool) -> Seen {
        let st = self.shared.lock();
        let (st, _) = self
            .shared
            .changed
            .wait_timeout_while(st, Duration::from_secs(10), |st| !done(&st.seen))
            .unwrap();
        st.seen.clone()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Sends `line` to every member of `room` except connection `except`.
    fn broadcast(&self, room: &str, except: usize, line: &str) {
        let mut st = self.lock();
        for m in st
            .members
            .iter_mut()
            .filter(|m| m.room == room && m.conn != except)
        {
            let _ = m.out.write_all(line.as_bytes());
        }
    }
}

fn serve(shared: &Shared, conn: usize, stream: TcpStream) {
    let mut out = stream.try_clone().unwrap();
    let mut spoke = false;
    if shared.dialect == Dialect::Natter {
        let _ = out.write_all(b"*** fake natter\r\n*** Type /help\r\nYour nickname: ");
    }
    let mut reader = BufReader::new(stream);
    let mut nick = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        spoke = true;
        let l = line.trim_end_matches(['\r', '\n']).to_owned();
        line.clear();
        match shared.dialect {
            Dialect::Natter => natter_line(shared, conn, &mut out, &mut nick, &l),
            Dialect::Irc => irc_line(shared, conn, &mut out, &mut nick, &l),
        }
    }
    let mut st = shared.lock();
    st.members.retain(|m| m.conn != conn);
    st.seen.closed += 1;
    st.seen.closed_silent += usize::from(!spoke);
    shared.changed.notify_all();
}

/// Writes one whole line with one call: `write!` on a socket writes each piece separately,
/// and another thread's broadcast could land between them.
fn say(out: &mut TcpStream, line: &str) {
    let _ = out.write_all(line.as_bytes());
}

fn join(shared: &Shared, conn: usize, out: &TcpStream, room: &str) {
    let mut st = shared.lock();
    match st.members.iter_mut().find(|m| m.conn == conn) {
        Some(m) => m.room = room.to_owned(),
        None => st.members.push(Member {
            conn,
            room: room.to_owned(),
            out: out.try_clone().unwrap(),
        }),
    }
}

fn natter_line(shared: &Shared, conn: usize, out: &mut TcpStream, nick: &mut String, l: &str) {
    if nick.is_empty() {
        *nick = l.to_owned();
        join(shared, conn, out, "lobby");
        say(out, &format!("*** Welcome, {nick}! You are in #lobby.\r\n"));
    } else if let Some(room) = l.strip_prefix("/join ") {
        join(shared, conn, out, room);
        say(out, &format!("*** You joined #{room}.\r\n"));
    } else if let Some((to, text)) = l.strip_prefix("/w ").and_then(|r| r.split_once(' ')) {
        assert_eq!(to, nick, "natter-load only whispers itself");
        say(out, &format!("*{nick}* {text}\r\n-> *{nick}* {text}\r\n"));
    } else {
        let room = shared
            .lock()
            .members
            .iter()
            .find(|m| m.conn == conn)
            .map(|m| m.room.clone());
        shared.broadcast(
            &room.unwrap_or_default(),
            conn,
            &format!("<{nick}> {l}\r\n"),
        );
    }
}

fn irc_line(shared: &Shared, conn: usize, out: &mut TcpStream, nick: &mut String, l: &str) {
    let msg = IrcMsg::parse(l).unwrap();
    match msg.command {
        "NICK" => *nick = msg.last().to_owned(),
        "USER" => {
            let _ = out.write_all(b"PING :fake-auth\r\n");
        }
        "PONG" if msg.last() == "fake-auth" => {
            say(out, &format!(":fake 001 {nick} :Welcome\r\n"));
        }
        "PONG" => {
            shared.lock().seen.pongs += 1;
            shared.changed.notify_all();
        }
        "PING" => {
            say(out, &format!(":fake PONG fake :{}\r\n", msg.last()));
        }
        "JOIN" => {
            let room = msg.last().to_owned();
            join(shared, conn, out, &room);
            shared.broadcast(
                &room,
                usize::MAX,
                &format!(":{nick}!{nick}@fake JOIN :{room}\r\n"),
            );
            let _ = out.write_all(b"PING :fake-join\r\n");
        }
        "PRIVMSG" => {
            let room = msg.params[0].to_owned();
            let line = format!(":{nick}!{nick}@fake PRIVMSG {room} :{}\r\n", msg.last());
            let first = !std::mem::replace(&mut shared.lock().pinged_ready, true);
            if first {
                shared.broadcast(&room, usize::MAX, "PING :fake-ready\r\n");
            }
            shared.broadcast(&room, conn, &line);
        }
        other => panic!("fake IRC server: unexpected {other}"),
    }
}

/// A shell that, on SIGUSR2, starts itself again (same program file, same arguments) and
/// exits: the process shape of natter's upgrade, without the hand-over. Each generation
/// prints `ready PID` once its trap is set, then waits on its stdin (a pipe from the test, handed
/// down the generations) and exits at its end: when the [`Respawner`] is dropped, or the test
/// process dies, nothing is left behind.
const RESPAWN: &str = r#"
trap 'bash "$0" "$@" <&0 & exit 0' USR2
echo "ready $$"
read -r _
"#;

/// The shell process of [`RESPAWN`] and the generations it became.
pub struct Respawner {
    first: Child,
    pids: Arc<Mutex<Vec<u32>>>,
    dir: std::path::PathBuf,
}

impl Respawner {
    /// Starts the first generation and calls `on_new(pid)` for every later one, once it is
    /// ready, from a thread reading the generations' shared stdout.
    pub fn start(tag: &str, on_new: impl Fn(u32) + Send + 'static) -> Respawner {
        let dir = std::env::temp_dir().join(format!("nl-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("respawn.sh");
        std::fs::write(&script, RESPAWN).unwrap();
        let mut first = Command::new("bash")
            .arg(&script)
            .arg(tag)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
        let pid = lines.next().unwrap().unwrap();
        assert_eq!(pid, format!("ready {}", first.id()));
        let pids = Arc::new(Mutex::new(vec![first.id()]));
        let seen = pids.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let pid: u32 = line.strip_prefix("ready ").unwrap().parse().unwrap();
                seen.lock().unwrap().push(pid);
                on_new(pid);
            }
        });
        Respawner { first, pids, dir }
    }

    /// The first generation's pid.
    pub fn pid(&self) -> u32 {
        self.first.id()
    }

    /// Every generation's pid so far, oldest first.
    pub fn pids(&self) -> Vec<u32> {
        self.pids.lock().unwrap().clone()
    }
}

impl Drop for Respawner {
    fn drop(&mut self) {
        // End of input ends the generation that runs now; the first one is reaped here.
        drop(self.first.stdin.take());
        let _ = self.first.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
