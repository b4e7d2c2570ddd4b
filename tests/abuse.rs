//! Abuse and resource exhaustion over real sockets: a slow consumer among fast ones, flood
//! control under load, running out of file descriptors, peer resets, half-closed connections,
//! and shutdown with a client that never reads.
//!
//! Each test is bounded (well under 20 s). Waits read until an expected line or a deadline;
//! the only timed polling is of /proc figures (CPU time, socket queues) and of process exit.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use support::{BANNER, Client, PROMPT, Server, chat, login, login_seen_by};

// ---------------------------------------------------------------------------------------------
// Numbered floods: a writer thread and reader threads that check every line arrives once, in
// order.
// ---------------------------------------------------------------------------------------------

/// Padding that makes each numbered line about 200 bytes.
const PAD: &str = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789\
                   abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789\
                   abcdefghijklmnopqrstuvwxyz01234567";
/// Overall deadline for a flood: the writer and every reader give up after it.
const FLOOD_DEADLINE: Duration = Duration::from_secs(15);

/// The text of flood line `seq` (what the sender types).
fn numbered(seq: u32) -> String {
    format!("seq {seq:07} {PAD}")
}

/// The sequence number of a relayed flood line from `from`, if it is one (and intact).
fn parse_numbered(line: &str, from: &str) -> Option<u32> {
    let rest = line.strip_prefix(&format!("<{from}> seq "))?;
    let (digits, pad) = rest.split_at_checked(7)?;
    if pad != format!(" {PAD}") {
        return None;
    }
    digits.parse().ok()
}

/// What the flood's threads share: how many flood lines each reader has read (`u32::MAX` once
/// it stopped reading) and whether one of them saw the awaited notice.
struct Flood {
    state: Mutex<FloodState>,
    changed: Condvar,
}

struct FloodState {
    read: Vec<u32>,
    notice_seen: bool,
}

impl Flood {
    fn new(readers: usize) -> Arc<Flood> {
        Arc::new(Flood {
            state: Mutex::new(FloodState {
                read: vec![0; readers],
                notice_seen: false,
            }),
            changed: Condvar::new(),
        })
    }

    fn update(&self, f: impl FnOnce(&mut FloodState)) {
        f(&mut self.state.lock().expect("flood lock"));
        self.changed.notify_all();
    }

    /// Waits until `pred` holds or `deadline` passes; returns whether it holds.
    fn wait_until(&self, deadline: Instant, pred: impl Fn(&FloodState) -> bool) -> bool {
        let mut state = self.state.lock().expect("flood lock");
        loop {
            if pred(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .expect("flood lock")
                .0;
        }
    }

    fn slowest(state: &FloodState) -> u32 {
        state.read.iter().copied().min().unwrap_or(u32::MAX)
    }
}

/// Sends numbered lines `0, 1, ...` (at most `max`), then the line `END`, 8 lines per write.
/// Once a reader saw the notice it sends `after_notice` more lines and stops. With a `window`,
/// it never gets more than that many lines ahead of the slowest reader, so the readers keep up
/// by construction. Returns how many numbered lines it sent.
fn spawn_flooder(
    mut writer: TcpStream,
    flood: Arc<Flood>,
    max: u32,
    after_notice: u32,
    window: Option<u32>,
) -> JoinHandle<Result<u32, String>> {
    thread::spawn(move || {
        let deadline = Instant::now() + FLOOD_DEADLINE;
        let (mut sent, mut extra) = (0u32, 0u32);
        let mut batch = Vec::with_capacity(8 * 256);
        while sent < max && extra < after_notice {
            let n = 8.min(max - sent);
            if let Some(window) = window {
                let ahead = (sent + n).saturating_sub(window);
                if !flood.wait_until(deadline, |s| Flood::slowest(s) >= ahead) {
                    return Err(format!("readers stalled after {sent} lines were sent"));
                }
            }
            batch.clear();
            for seq in sent..sent + n {
                batch.extend_from_slice(numbered(seq).as_bytes());
                batch.extend_from_slice(b"\r\n");
            }
            writer
                .write_all(&batch)
                .map_err(|e| format!("flood write failed after {sent} lines: {e}"))?;
            sent += n;
            if flood.state.lock().expect("flood lock").notice_seen {
                extra += n;
            }
        }
        writer
            .write_all(b"END\r\n")
            .map_err(|e| format!("writing END failed after {sent} lines: {e}"))?;
        Ok(sent)
    })
}

/// What one reader heard during a flood.
struct Heard {
    client: Client,
    seqs: Vec<u32>,
    notices: usize,
    others: Vec<String>,
    error: Option<String>,
}

/// Reader number `index` of `flood`: reads everything `client` gets until `<from> END`,
/// collecting flood sequence numbers and counting `notice`.
fn spawn_reader(
    mut client: Client,
    from: &'static str,
    notice: String,
    flood: Arc<Flood>,
    index: usize,
) -> JoinHandle<Heard> {
    thread::spawn(move || {
        let deadline = Instant::now() + FLOOD_DEADLINE;
        let end = chat(from, "END");
        let (mut seqs, mut notices, mut others, mut error) = (Vec::new(), 0, Vec::new(), None);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match client.try_read_line(left) {
                Ok(line) => line,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            if line == end {
                break;
            } else if line == notice {
                notices += 1;
                flood.update(|s| s.notice_seen = true);
            } else if let Some(seq) = parse_numbered(&line, from) {
                seqs.push(seq);
                let n = seqs.len() as u32;
                flood.update(|s| s.read[index] = n);
            } else {
                others.push(line);
            }
        }
        // Never hold the writer back once this reader stopped.
        flood.update(|s| s.read[index] = u32::MAX);
        Heard {
            client,
            seqs,
            notices,
            others,
            error,
        }
    })
}

/// Starts one reader per client, all reading the flood from `from`.
fn spawn_readers(
    clients: Vec<Client>,
    from: &'static str,
    notice: &str,
    flood: &Arc<Flood>,
) -> Vec<JoinHandle<Heard>> {
    clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| spawn_reader(c, from, notice.to_string(), Arc::clone(flood), i))
        .collect()
}

/// The server's disconnect log lines, for failure messages.
fn disconnects(server: &Server) -> Vec<String> {
    server
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("disconnect"))
        .collect()
}

/// Asserts that `heard` got flood lines `0..sent` exactly once each, in order, `notice`
/// exactly once, nothing else, and the `END` line.
#[track_caller]
fn assert_heard_all(heard: &Heard, sent: u32, notice: &str, server: &Server) {
    let nick = &heard.client.nick;
    if let Some(e) = &heard.error {
        panic!(
            "[{nick}] stopped after {} flood lines (of {sent} sent): {e}; the server logged \
             {:#?}",
            heard.seqs.len(),
            disconnects(server)
        );
    }
    assert_eq!(
        heard.notices, 1,
        "[{nick}] expected {notice:?} exactly once"
    );
    assert!(
        heard.others.is_empty(),
        "[{nick}] unexpected lines: {:?}",
        heard.others
    );
    if let Some(i) = heard
        .seqs
        .iter()
        .enumerate()
        .position(|(i, &s)| s != i as u32)
    {
        panic!(
            "[{nick}] flood line {i} has number {} (lost, duplicated or out of order); \
             got {} lines, sent {sent}",
            heard.seqs[i],
            heard.seqs.len()
        );
    }
    assert_eq!(
        heard.seqs.len() as u32,
        sent,
        "[{nick}] got {} flood lines, sent {sent}",
        heard.seqs.len()
    );
}

/// The local address of `client`'s socket.
fn local_addr(client: &Client) -> SocketAddr {
    client.writer().local_addr().expect("local addr")
}

/// The connection id (`#G`) the server logged when `client` connected.
fn conn_id(server: &Server, client: &Client) -> String {
    let suffix = format!(" from {}", local_addr(client));
    let line = server.wait_for_stderr(|l| l.contains("connect #") && l.ends_with(&suffix));
    line.split_whitespace()
        .find(|w| w.starts_with('#'))
        .expect("an id in the connect line")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. A slow consumer is cut, and nobody else is harmed.
// ---------------------------------------------------------------------------------------------

#[test]
fn slow_consumer_is_cut_and_fast_readers_lose_nothing() {
    let server = Server::start(&["--sendq", "65536"]);
    let addr = server.addr;
    let mut sender = login(addr, "sender");
    // slow never reads anything after its welcome line.
    let slow = login_seen_by(addr, "slow", &mut [&mut sender]);
    let mut r1 = login_seen_by(addr, "r1", &mut [&mut sender]);
    let mut r2 = login_seen_by(addr, "r2", &mut [&mut sender, &mut r1]);
    let r3 = login_seen_by(addr, "r3", &mut [&mut sender, &mut r1, &mut r2]);
    let slow_id = conn_id(&server, &slow);

    let notice = "*** slow left #lobby (too slow)";
    let flood = Flood::new(3);
    let readers = spawn_readers(vec![r1, r2, r3], "sender", notice, &flood);
    // The kernel buffers up to ~4 MB for a client that never reads (the server's send buffer
    // grows), so it takes about 20,000 lines before slow's queue in the server passes --sendq;
    // up to 40,000 are sent, and 400 more once the notice is seen. The writer stays within
    // 128 lines (~27 KB, well under --sendq) of the slowest reader: the readers are not slow,
    // so none of them may be cut.
    let started = Instant::now();
    let sent = spawn_flooder(sender.writer(), Arc::clone(&flood), 40_000, 400, Some(128))
        .join()
        .expect("flooder thread")
        .unwrap_or_else(|e| panic!("{e}; the server logged {:#?}", disconnects(&server)));
    let heard: Vec<Heard> = readers
        .into_iter()
        .map(|r| r.join().expect("reader thread"))
        .collect();
    for h in &heard {
        assert_heard_all(h, sent, notice, &server);
    }
    eprintln!(
        "slow consumer: {sent} lines relayed in {:?}",
        started.elapsed()
    );
    server.wait_for_stderr(|l| l == format!("natter: disconnect {slow_id} (too slow)"));
    // The sender was not harmed either: it got the notice and nothing else.
    sender.expect_line(notice);
    sender.expect_silence();
    drop(slow);
}

#[test]
fn a_paste_that_fits_the_socket_does_not_cut_a_fast_reader() {
    // bob has read everything and his socket buffers are empty; alice pastes 10 lines of
    // 450 bytes in one write. bob's share (~4.6 KB) fits his socket buffer many times over,
    // so his unsent output never passes 4096 bytes if the server writes before judging him.
    let server = Server::start(&["--sendq", "4096"]);
    let mut alice = login(server.addr, "alice");
    let mut bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    let bob_id = conn_id(&server, &bob);
    bob.expect_silence();
    let lines: Vec<String> = (0..10)
        .map(|i| format!("{i} {}", "p".repeat(448)))
        .collect();
    let paste: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
    alice.send(paste.as_bytes());
    for (i, line) in lines.iter().enumerate() {
        match bob.try_read_line(support::LINE_TIMEOUT) {
            Ok(got) if got == chat("alice", line) => {}
            other => {
                let log = server
                    .wait_for_stderr(|l| l.starts_with(&format!("natter: disconnect {bob_id} ")));
                panic!("line {i} of the paste: got {other:?}; the server logged {log:?}");
            }
        }
    }
    bob.expect_silence();
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. Flood control.
// ---------------------------------------------------------------------------------------------

#[test]
fn rate_and_burst_spread_a_burst_without_loss() {
    let server = Server::start(&["--rate", "2", "--burst", "3"]);
    let mut alice = login(server.addr, "alice");
    let mut bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    let burst: String = (0..10).map(|i| format!("line {i}\r\n")).collect();
    let sent_at = Instant::now();
    alice.send(burst.as_bytes());
    let mut at = Vec::new();
    for i in 0..10 {
        bob.expect_line(&chat("alice", &format!("line {i}")));
        at.push(sent_at.elapsed());
    }
    // The bucket holds 3 lines, but alice's nickname line spent one a moment ago, so 2 or 3
    // lines come at once (depending on how much refilled since), then one every 500 ms.
    assert!(
        at[1] < Duration::from_millis(400),
        "the first lines of the burst were held: {at:?}"
    );
    // Line k (from 0) cannot pass before (k - 2) / 2 s even with a full bucket of 3.
    for (k, &t) in at.iter().enumerate().skip(3) {
        let earliest =
            Duration::from_millis((k as u64 - 2) * 500).saturating_sub(Duration::from_millis(100));
        assert!(
            t >= earliest,
            "line {k} was relayed after {t:?}, before {earliest:?}: rate not enforced; {at:?}"
        );
    }
    assert!(
        at[9] >= Duration::from_secs(3),
        "10 lines at --rate 2 --burst 3 took only {:?}",
        at[9]
    );
    assert!(
        at[9] <= Duration::from_secs(7),
        "10 lines at --rate 2 --burst 3 took {:?}, expected about 4 s",
        at[9]
    );
    eprintln!("rate 2 burst 3: arrival times {at:?}");
    // alice was not disconnected and is heard again.
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn a_held_flood_does_not_slow_other_users() {
    let server = Server::start(&["--rate", "5"]);
    let addr = server.addr;
    let mut flooder = login(addr, "flooder");
    let mut alice = login_seen_by(addr, "alice", &mut [&mut flooder]);
    let mut bob = login_seen_by(addr, "bob", &mut [&mut flooder, &mut alice]);
    const FLOOD: usize = 300;
    let flood: String = (0..FLOOD).map(|i| format!("flood {i}\r\n")).collect();
    let started = Instant::now();
    flooder.send(flood.as_bytes());

    // alice and bob are in the flooder's room, so they receive the flood as it is let through
    // (a burst of 20, then 5 lines a second); every flood line must come once and in order.
    // Reads lines until `want`, counting flood lines in `seen`.
    fn take(c: &mut Client, seen: &mut usize, want: &str) {
        loop {
            let line = c.read_line();
            if line == want {
                return;
            }
            if line == chat("flooder", &format!("flood {seen}")) {
                *seen += 1;
            } else if !line.starts_with("-> *") {
                panic!(
                    "[{}] unexpected line {line:?} (flood lines so far: {seen})",
                    c.nick
                );
            }
        }
    }
    let (mut alice_seen, mut bob_seen) = (0usize, 0usize);
    // Past the burst, the flood trickles: each round starts when alice receives one more flood
    // line, so the whisper round trips happen while the rest of the flood is being held.
    take(&mut alice, &mut alice_seen, &chat("flooder", "flood 20"));
    alice_seen += 1;
    let mut trips = Vec::new();
    for k in 0..8 {
        let next = chat("flooder", &format!("flood {}", alice_seen));
        take(&mut alice, &mut alice_seen, &next);
        alice_seen += 1;
        let t = Instant::now();
        alice.send_line(&format!("/w bob ping {k}"));
        take(&mut bob, &mut bob_seen, &format!("*alice* ping {k}"));
        bob.send_line(&format!("/w alice pong {k}"));
        take(&mut alice, &mut alice_seen, &format!("*bob* pong {k}"));
        trips.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    let worst = trips.iter().max().copied().unwrap_or_default();
    eprintln!(
        "whisper round trips during a held flood: worst {worst:?}; flood lines seen by alice \
         {alice_seen}, by bob {bob_seen}, after {elapsed:?}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a whisper round trip took {worst:?} while another user flooded: {trips:?}"
    );
    // The flood really was held back meanwhile (burst 20, then 5 lines a second).
    let allowed = 20 + (5.0 * elapsed.as_secs_f64()).ceil() as usize + 2;
    assert!(
        alice_seen <= allowed && alice_seen < FLOOD,
        "alice saw {alice_seen} flood lines after {elapsed:?}: not rate limited"
    );
    assert!(
        elapsed >= Duration::from_millis(1400),
        "8 more flood lines at 5 a second came within {elapsed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Running out of file descriptors.
// ---------------------------------------------------------------------------------------------

/// Starts natter under a lowered open-file limit (soft and hard: the server raises its soft
/// limit to the hard one at start), through `prlimit` or, failing that, `sh -c ulimit`.
fn start_limited(nofile: u32, args: &[&str]) -> Server {
    let bin = env!("CARGO_BIN_EXE_natter");
    let has_prlimit = Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut cmd = if has_prlimit {
        let mut c = Command::new("prlimit");
        c.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(bin);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "ulimit -Sn {nofile} && ulimit -Hn {nofile} && exec \"$0\" \"$@\""
            ))
            .arg(bin);
        c
    };
    cmd.args(args);
    Server::start_command(cmd)
}

/// What happened to a connection waiting for its banner.
enum Greeting {
    Banner,
    Paused,
}

#[test]
fn out_of_descriptors_pauses_accepting_without_spinning_and_recovers() {
    let mut server = start_limited(
        64,
        &[
            "--listen",
            "127.0.0.1:0",
            "--rate",
            "0",
            "--max-per-ip",
            "0",
            "--max-clients",
            "1000",
        ],
    );
    let pid = server.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_eq!(comm.trim(), "natter", "pid {pid} is not the server");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    assert!(
        nofile.split_whitespace().filter(|w| *w == "64").count() == 2,
        "limit not applied: {nofile:?}"
    );

    // Log clients in one by one until one gets no banner because accept hit EMFILE.
    let paused = |l: &str| l.contains("accept paused");
    let mut members = Vec::new();
    let mut waiting = loop {
        assert!(members.len() < 200, "200 clients and still no accept pause");
        let mut c = Client::connect(server.addr);
        let deadline = Instant::now() + Duration::from_secs(5);
        let greeting = loop {
            assert!(
                Instant::now() < deadline,
                "client {} got neither a banner nor an accept pause; stderr: {:#?}",
                members.len(),
                server.stderr_lines()
            );
            match c.try_read_line(Duration::from_millis(50)) {
                Ok(line) => {
                    assert_eq!(line, BANNER[0]);
                    break Greeting::Banner;
                }
                Err(_) if server.count_stderr(paused) > 0 => break Greeting::Paused,
                Err(_) => {}
            }
        };
        match greeting {
            Greeting::Paused => break c,
            Greeting::Banner => {
                let nick = format!("u{}", members.len());
                c.expect_line(BANNER[1]);
                c.expect_prompt();
                c.send_line(&nick);
                c.expect_line(&format!("*** Welcome, {nick}! You are in #lobby."));
                c.nick = nick;
                members.push(c);
            }
        }
    };
    assert!(
        members.len() >= 20,
        "only {} clients fit under 64 descriptors",
        members.len()
    );
    // More clients knock: the kernel completes their handshakes into the listen backlog.
    let knockers: Vec<Client> = (0..20).map(|_| Client::connect(server.addr)).collect();

    // While paused the server must not spin: CPU time stays flat over 3 s.
    let before = server.cpu_ticks();
    let begin = Instant::now();
    let mut most = 0;
    while begin.elapsed() < Duration::from_secs(3) {
        thread::sleep(Duration::from_millis(100));
        most = most.max(server.cpu_ticks() - before);
    }
    eprintln!(
        "{} clients fit; CPU while paused with {} knocking: {most} ticks in 3 s",
        members.len(),
        knockers.len() + 1
    );
    assert!(
        most <= 3,
        "the server used {most} clock ticks of CPU in 3 s while out of descriptors (spinning?)"
    );
    assert!(
        waiting.try_read_line(Duration::from_millis(1)).is_err(),
        "the waiting client was served while descriptors were still exhausted?"
    );

    // Three members leave: the first waiting client is served, logs in and chats.
    let mut talker = members.remove(0);
    drop(members.drain(..3));
    waiting.skip_banner();
    waiting.send_line("late");
    waiting.expect_line("*** Welcome, late! You are in #lobby.");
    waiting.nick = "late".into();
    talker.read_until(|l| l == "*** late joined #lobby");
    waiting.send_line("made it");
    talker.read_until(|l| l == chat("late", "made it"));
    talker.send_line("welcome");
    waiting.read_until(|l| l == chat("u0", "welcome"));

    assert!(
        server.count_stderr(paused) >= 1,
        "stderr does not mention the paused accept"
    );
    assert!(server.is_running(), "the server exited");
    drop(knockers);
}

// ---------------------------------------------------------------------------------------------
// 5 and 6. Peers that reset or half-close.
// ---------------------------------------------------------------------------------------------

#[test]
fn peer_reset_during_a_flood_is_survived() {
    let server = Server::start(&[]);
    let addr = server.addr;
    let mut sender = login(addr, "sender");
    let victim = login_seen_by(addr, "victim", &mut [&mut sender]);
    let mut r1 = login_seen_by(addr, "r1", &mut [&mut sender]);
    let r2 = login_seen_by(addr, "r2", &mut [&mut sender, &mut r1]);
    let victim_id = conn_id(&server, &victim);

    let notice = "*** victim left #lobby (connection closed)";
    let flood = Flood::new(2);
    let readers = spawn_readers(vec![r1, r2], "sender", notice, &flood);
    let flooder = spawn_flooder(sender.writer(), Arc::clone(&flood), 20_000, 400, Some(128));

    // Once the flood is under way, the victim closes with data unread (join notices and flood
    // lines it never read): Linux answers that close with RST, not FIN.
    assert!(
        flood.wait_until(Instant::now() + Duration::from_secs(10), |s| {
            Flood::slowest(s) >= 200
        }),
        "the flood did not get going"
    );
    let raw = victim.writer();
    raw.set_read_timeout(Some(support::LINE_TIMEOUT))
        .expect("read timeout");
    let mut peek = [0u8; 1];
    assert_eq!(raw.peek(&mut peek).expect("peek"), 1, "nothing unread");
    drop(victim);
    drop(raw);

    let sent = flooder
        .join()
        .expect("flooder thread")
        .unwrap_or_else(|e| panic!("{e}; the server logged {:#?}", disconnects(&server)));
    let mut heard: Vec<Heard> = readers
        .into_iter()
        .map(|r| r.join().expect("reader thread"))
        .collect();
    for h in &heard {
        assert_heard_all(h, sent, notice, &server);
    }
    let line =
        server.wait_for_stderr(|l| l.starts_with(&format!("natter: disconnect {victim_id} ")));
    // The server logs a reset as the peer leaving ("closed by peer"), or as a socket error.
    assert!(
        line.ends_with("(closed by peer)") || line.contains("socket error"),
        "unexpected log line for the victim: {line:?}"
    );
    // The server is alive and serves newcomers.
    let _late = login(addr, "late");
    for h in &mut heard {
        h.client.expect_line("*** late joined #lobby");
    }
    sender.expect_line(notice);
    sender.expect_line("*** late joined #lobby");
    sender.expect_silence();
}

#[test]
fn half_closed_client_still_gets_its_reply() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    // The loss depends on whether the server reads the line and the FIN in one turn, so try a
    // few times.
    for i in 0..10 {
        let nick = format!("bob{i}");
        let mut bob = login_seen_by(server.addr, &nick, &mut [&mut alice]);
        bob.send_line("/who");
        bob.shutdown_write();
        assert_eq!(
            bob.expect_closed(),
            vec![format!("*** 2 users in #lobby: alice, {nick}")],
            "attempt {i}: a client that half-closed right after /who"
        );
        alice.expect_line(&format!("*** {nick} left #lobby (connection closed)"));
    }
    alice.expect_silence();
}

#[test]
fn piped_session_with_half_close_gets_every_reply() {
    // What `printf 'carol\n/who\n' | nc -N HOST PORT` does: everything at once, then FIN.
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    let mut carol = Client::connect(server.addr);
    carol.send(b"carol\r\n/who\r\n");
    carol.shutdown_write();
    let mut expected: Vec<String> = BANNER.iter().map(|s| s.to_string()).collect();
    expected.push(format!("{PROMPT}*** Welcome, carol! You are in #lobby."));
    expected.push("*** 2 users in #lobby: alice, carol".into());
    assert_eq!(carol.expect_closed(), expected);
    alice.expect_line("*** carol joined #lobby");
    alice.expect_line("*** carol left #lobby (connection closed)");
    alice.expect_silence();
}

// ---------------------------------------------------------------------------------------------
// 7. Shutdown with a client that never reads.
// ---------------------------------------------------------------------------------------------

/// `(tx_queue, rx_queue)` of the TCP socket `local` -> `remote` from /proc/net/tcp.
fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let (l, r) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4 && f[1] == l && f[2] == r {
            let (tx, rx) = f[4].split_once(':')?;
            Some((
                u64::from_str_radix(tx, 16).ok()?,
                u64::from_str_radix(rx, 16).ok()?,
            ))
        } else {
            None
        }
    })
}

#[test]
fn sigterm_does_not_wait_forever_for_a_client_that_never_reads() {
    let mut server = Server::start(&["--shutdown-grace", "1", "--sendq", "33554432"]);
    let addr = server.addr;
    let mut sender = login(addr, "sender");
    let slow = login_seen_by(addr, "slow", &mut [&mut sender]);
    let mut r1 = login_seen_by(addr, "r1", &mut [&mut sender]);
    let r2 = login_seen_by(addr, "r2", &mut [&mut sender, &mut r1]);

    // 40,000 lines (8 MB) for everyone: about twice what the kernel buffers between the server
    // and slow (~4 MB), far less than --sendq, so slow keeps a big queue in the server.
    let flood = Flood::new(2);
    let readers = spawn_readers(vec![r1, r2], "sender", "(none)", &flood);
    let sent = spawn_flooder(sender.writer(), Arc::clone(&flood), 40_000, u32::MAX, None)
        .join()
        .expect("flooder thread")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut heard: Vec<Heard> = readers
        .into_iter()
        .map(|r| r.join().expect("reader thread"))
        .collect();
    for h in &heard {
        assert!(h.error.is_none(), "[{}] {:?}", h.client.nick, h.error);
        assert_eq!(h.seqs.len() as u32, sent, "[{}]", h.client.nick);
    }
    // Everything relayed to slow after its welcome line, against what the kernel holds for it.
    let relayed: usize = ["r1", "r2"]
        .iter()
        .map(|n| format!("*** {n} joined #lobby\r\n").len())
        .sum::<usize>()
        + (0..sent)
            .map(|i| chat("sender", &numbered(i)).len() + 2)
            .sum::<usize>()
        + chat("sender", "END").len()
        + 2;
    let slow_addr = local_addr(&slow);
    let (server_tx, _) = tcp_queues(addr, slow_addr).expect("server side of slow in /proc");
    let (_, slow_rx) = tcp_queues(slow_addr, addr).expect("slow's socket in /proc");
    let in_kernel = (server_tx + slow_rx) as usize;
    eprintln!(
        "shutdown: {relayed} bytes for slow, {in_kernel} in kernel buffers (server tx {server_tx}, slow rx {slow_rx})"
    );
    assert!(
        relayed > in_kernel + 1_000_000,
        "test set-up: the kernel holds {in_kernel} of the {relayed} bytes for slow, so the \
         server's own queue for slow is not big"
    );

    server.terminate();
    let begin = Instant::now();
    for h in &mut heard {
        h.client.expect_line("*** Server is shutting down.");
    }
    sender.read_until(|l| l == "*** Server is shutting down.");
    let status = server.wait_exit(Duration::from_secs(5));
    let took = begin.elapsed();
    eprintln!("shutdown with a stuck client took {took:?}");
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        took < Duration::from_secs(3),
        "shutdown took {took:?} with --shutdown-grace 1"
    );
    for h in &mut heard {
        h.client.expect_closed();
    }
    drop(slow);
}
