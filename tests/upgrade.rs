//! Upgrades (SIGUSR2) through the real binary: the same scripted session runs twice, once with
//! an upgrade and once without, and every client must receive the same bytes apart from one
//! `*** Server upgraded.` line (none for a client at the prompt). The upgrade falls where it
//! is hardest: between CR and LF, inside a telnet command and a subnegotiation, during an
//! overlong line, at the prompt, with output queued for a client that does not read, in the
//! middle of a rate-limited paste, and during a connect storm. Failures injected into the new
//! process leave the old one serving with identical transcripts. Fifty upgrades in a row leak
//! no descriptor and no memory.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

const UPGRADED: &str = "*** Server upgraded.\r\n";

/// What to do at the upgrade point of a script.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum At {
    /// Nothing: the reference run.
    Nothing,
    /// An upgrade that succeeds.
    Upgrade,
    /// An upgrade whose new process fails (the fault is set in the server's environment).
    FailedUpgrade,
}

fn start(args: &[&str], fault: Option<&str>) -> Server {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_natter"));
    cmd.args(BASE_ARGS)
        .args(["--log-level", "debug"])
        .args(args);
    if let Some(fault) = fault {
        cmd.env("NATTER_TEST_UPGRADE_FAULT", fault);
    }
    Server::start_command(cmd)
}

fn point(server: &mut Server, at: At) {
    match at {
        At::Nothing => {}
        At::Upgrade => {
            server.upgrade();
        }
        At::FailedUpgrade => {
            server.upgrade_fails();
        }
    }
}

/// Waits until the server has read `n` bytes from the connection accepted `k`-th (1-based:
/// its log id is `#k` on a fresh server).
fn wait_read(server: &Server, k: usize, n: usize) {
    let want = format!("read {n} bytes from #{k}");
    server.wait_for_stderr(|l| l.ends_with(&want));
}

/// Compares a run with an upgrade (or a failed one) to the reference run: logged-in clients
/// got exactly one upgrade notice more (none for a failed upgrade), the others nothing.
fn assert_same(reference: &[Vec<u8>], other: &[Vec<u8>], notified: &[bool], at: At) {
    assert_eq!(reference.len(), other.len());
    for (i, (want, got)) in reference.iter().zip(other).enumerate() {
        let got = String::from_utf8_lossy(got);
        let want = String::from_utf8_lossy(want);
        let notices = got.matches(UPGRADED).count();
        let expected = usize::from(at == At::Upgrade && notified[i]);
        assert_eq!(notices, expected, "client {i}: upgrade notices in {got:?}");
        assert_eq!(
            got.replacen(UPGRADED, "", 1),
            want,
            "client {i}'s transcript differs"
        );
    }
}

/// Everything a logged-in client received, once a whisper to itself has come back (so
/// everything sent to it before has arrived).
fn collect(c: &mut Client) -> Vec<u8> {
    let nick = c.nick.clone();
    c.send_line(&format!("/w {nick} sync"));
    c.read_until(|l| l == format!("-> *{nick}* sync"));
    c.received().to_vec()
}

// ---------------------------------------------------------------------------------------------
// Partial input of every kind at once
// ---------------------------------------------------------------------------------------------

/// alice, bob and dave are logged in, carol and eve are at the prompt. At the upgrade point:
/// alice has sent `x` + IAC (inside a telnet command), bob is inside a subnegotiation, dave is
/// discarding an overlong line, eve's last line ended with a lone CR (after a bad nickname),
/// carol has typed half a nickname. After it, each finishes what it started.
fn partial_input(at: At, fault: Option<&str>) -> Vec<Vec<u8>> {
    let mut server = start(&["--max-line", "16"], fault);
    let mut alice = login(server.addr, "alice"); // #1
    let mut bob = login_seen_by(server.addr, "bob", &mut [&mut alice]); // #2
    let mut dave = login_seen_by(server.addr, "dave", &mut [&mut alice, &mut bob]); // #3
    let mut carol = connect_to_prompt(&server); // #4
    let mut eve = connect_to_prompt(&server); // #5

    alice.send(&[b'x', IAC]);
    wait_read(&server, 1, 2);
    bob.send(&[IAC, SB, 31, 0, 80]);
    wait_read(&server, 2, 5);
    dave.send(&[b'y'; 20]);
    dave.expect_line("!!! Line too long: the limit is 16 bytes, and that line was discarded.");
    eve.send(b"9bad\r");
    eve.expect_line(
        "!!! Invalid nickname: use 1 to 24 letters, digits, _ or -, starting with a letter.",
    );
    eve.expect_prompt();
    carol.send(b"car");
    wait_read(&server, 4, 3);

    point(&mut server, at);

    alice.send(&[WILL, 31, b'z', b'\r', b'\n']);
    alice.read_raw_until(&[IAC, DONT, 31]);
    for c in [&mut bob, &mut dave] {
        c.read_until(|l| l == "<alice> xz");
    }
    bob.send(&[0, 24, IAC, SE, b'h', b'i', b'\r', b'\n']);
    for c in [&mut alice, &mut dave] {
        c.read_until(|l| l == "<bob> hi");
    }
    dave.send(b"more\r\nok\r\n");
    for c in [&mut alice, &mut bob] {
        c.read_until(|l| l == "<dave> ok");
    }
    // The LF of eve's CR LF: no empty line (which would log her in as a guest).
    eve.send(b"\neve\r\n");
    eve.expect_line("*** Welcome, eve! You are in #lobby.");
    eve.nick = "eve".into();
    carol.send(b"ol\r\n");
    carol.read_until(|l| l == "*** Welcome, carol! You are in #lobby.");
    carol.nick = "carol".into();
    [&mut alice, &mut bob, &mut dave, &mut carol, &mut eve]
        .into_iter()
        .map(collect)
        .collect()
}

#[test]
fn partial_input_of_every_kind_completes_across_an_upgrade() {
    let reference = partial_input(At::Nothing, None);
    let upgraded = partial_input(At::Upgrade, None);
    assert_same(
        &reference,
        &upgraded,
        &[true, true, true, false, false],
        At::Upgrade,
    );
}

#[test]
fn a_new_process_that_refuses_our_version_changes_nothing() {
    let reference = partial_input(At::Nothing, None);
    let failed = partial_input(At::FailedUpgrade, Some("refuse-version"));
    assert_same(&reference, &failed, &[false; 5], At::FailedUpgrade);
}

#[test]
fn a_new_process_that_crashes_before_confirming_changes_nothing() {
    let reference = partial_input(At::Nothing, None);
    let failed = partial_input(At::FailedUpgrade, Some("crash-before-confirm"));
    assert_same(&reference, &failed, &[false; 5], At::FailedUpgrade);
}

#[test]
fn a_new_process_that_hangs_is_ended_after_ten_seconds_and_nothing_changes() {
    let reference = partial_input(At::Nothing, None);
    let failed = partial_input(At::FailedUpgrade, Some("hang"));
    assert_same(&reference, &failed, &[false; 5], At::FailedUpgrade);
}

// ---------------------------------------------------------------------------------------------
// Output queued for a reader that does not read
// ---------------------------------------------------------------------------------------------

/// frank stops reading (a small receive buffer) while alice says 3,000 lines of 100 bytes; the
/// upgrade comes while the server holds much of that for him. Then he reads everything.
fn queued_output(at: At) -> Vec<Vec<u8>> {
    let mut server = start(&["--sendq", "8000000"], None);
    let mut alice = login(server.addr, "alice");
    let mut frank = small_buffer_login(&server, "frank", &mut alice);
    let line = "q".repeat(100);
    let mut paste = String::new();
    for i in 0..3000 {
        paste.push_str(&format!("{i:04} {line}\r\n"));
    }
    let mut writer = alice.writer();
    std::io::Write::write_all(&mut writer, paste.as_bytes()).expect("paste");
    // Every line was read and handled once alice's whisper to herself is answered.
    alice.send_line("/w alice pasted");
    alice.read_until(|l| l == "-> *alice* pasted");
    point(&mut server, at);
    let mut got = 0;
    while got < 3000 {
        let l = frank.read_line();
        if l.starts_with("<alice> ") {
            assert_eq!(
                l,
                format!("<alice> {got:04} {line}"),
                "in order, exactly once"
            );
            got += 1;
        }
    }
    vec![collect(&mut alice), collect(&mut frank)]
}

/// Logs in a client whose socket receive buffer is small, so the server must queue for it.
fn small_buffer_login(server: &Server, nick: &str, seen_by: &mut Client) -> Client {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&server.addr.into()).expect("connect");
    let mut c = Client::from_stream(TcpStream::from(socket));
    c.nick = nick.into();
    c.skip_banner();
    c.send_line(nick);
    c.expect_line(&format!("*** Welcome, {nick}! You are in #lobby."));
    seen_by.expect_line(&format!("*** {nick} joined #lobby"));
    c
}

#[test]
fn output_queued_for_a_slow_reader_is_written_by_the_new_process_in_order() {
    let reference = queued_output(At::Nothing);
    let upgraded = queued_output(At::Upgrade);
    assert_same(&reference, &upgraded, &[true, true], At::Upgrade);
    // The notice comes after everything that was queued before it.
    let frank = String::from_utf8_lossy(&upgraded[1]);
    let notice = frank.find(UPGRADED).expect("frank's notice");
    assert!(
        frank[..notice].contains("<alice> 2999 "),
        "the notice overtook queued lines"
    );
}

// ---------------------------------------------------------------------------------------------
// A rate-limited paste
// ---------------------------------------------------------------------------------------------

/// alice pastes 10 lines at 20 per second with a burst of 3; the upgrade comes after bob has
/// seen the fifth, while the rest is held by flood control (in the kernel and in the core).
fn rate_limited_paste(at: At) -> Vec<Vec<u8>> {
    let mut server = start(&["--rate", "20", "--burst", "3"], None);
    let mut bob = login(server.addr, "bob");
    let mut alice = login_seen_by(server.addr, "alice", &mut [&mut bob]);
    let paste: String = (0..10).map(|i| format!("paste {i}\r\n")).collect();
    alice.send(paste.as_bytes());
    for i in 0..5 {
        bob.expect_line(&format!("<alice> paste {i}"));
    }
    point(&mut server, at);
    for i in 5..10 {
        bob.read_until(|l| l == format!("<alice> paste {i}"));
    }
    vec![collect(&mut alice), collect(&mut bob)]
}

#[test]
fn a_rate_limited_paste_goes_on_in_order_across_an_upgrade() {
    let reference = rate_limited_paste(At::Nothing);
    let upgraded = rate_limited_paste(At::Upgrade);
    assert_same(&reference, &upgraded, &[true, true], At::Upgrade);
}

// ---------------------------------------------------------------------------------------------
// Connections arriving during an upgrade
// ---------------------------------------------------------------------------------------------

#[test]
fn a_connect_storm_during_an_upgrade_is_served_without_refusal() {
    let mut server = start(&[], None);
    let addr = server.addr;
    let storm = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut clients = Vec::new();
        for _ in 0..300 {
            assert!(Instant::now() < deadline, "the storm took too long");
            clients.push(Client::connect(addr));
        }
        // Every one is served exactly once: the banner and the prompt, nothing else.
        for c in &mut clients {
            c.skip_banner();
        }
        clients
    });
    server.upgrade();
    let mut clients = storm.join().expect("the storm");
    for c in &mut clients[..10] {
        c.send_line("");
        c.read_until(|l| l.starts_with("*** Welcome, guest"));
    }
}

// ---------------------------------------------------------------------------------------------
// Many upgrades
// ---------------------------------------------------------------------------------------------

#[test]
fn fifty_upgrades_in_a_row_leak_no_descriptor_and_no_memory() {
    let mut server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    let mut bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    let mut seen = Vec::new();
    for i in 0..50 {
        server.upgrade();
        alice.expect_line("*** Server upgraded.");
        bob.expect_line("*** Server upgraded.");
        alice.send_line(&format!("after upgrade {i}"));
        bob.expect_line(&format!("<alice> after upgrade {i}"));
        seen.push(server.fds_and_rss_kib());
    }
    let fds: Vec<usize> = seen.iter().map(|s| s.0).collect();
    assert!(
        fds.iter().all(|&n| n == fds[0]),
        "descriptors after each upgrade: {fds:?}"
    );
    let rss: Vec<u64> = seen.iter().map(|s| s.1).collect();
    let (low, high) = (rss.iter().min().unwrap(), rss.iter().max().unwrap());
    assert!(high - low < 1024, "VmRSS after each upgrade (KiB): {rss:?}");
}

// ---------------------------------------------------------------------------------------------
// Signals during an upgrade, and what the new process reads afresh
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_before_the_confirmation_abandons_the_upgrade_and_shuts_down() {
    let mut server = start(&[], Some("hang"));
    let (mut alice, _bob) = pair(&server);
    let started = server.count_stderr(|l| l.contains("upgrade: started"));
    server.signal("USR2");
    server.wait_for_stderr_count(started + 1, |l| l.contains("upgrade: started"));
    // A second SIGUSR2 while this one is under way is ignored.
    server.signal("USR2");
    server.wait_for_stderr(|l| l.contains("upgrade: ignored"));
    let line = server
        .stderr_lines()
        .into_iter()
        .find(|l| l.contains("upgrade: started"))
        .expect("started line");
    let new_pid = line
        .rsplit("as pid ")
        .next()
        .expect("pid")
        .trim()
        .to_string();
    server.terminate();
    server.wait_for_stderr(|l| l.contains("upgrade failed: the server is shutting down"));
    alice.expect_line("*** Server is shutting down.");
    assert!(server.wait_exit(LINE_TIMEOUT).success());
    // The hung new process was ended (and reaped) by the old one.
    assert!(
        !std::path::Path::new(&format!("/proc/{new_pid}")).exists(),
        "the new process {new_pid} outlived the upgrade"
    );
}

#[test]
fn the_new_process_reads_the_motd_afresh() {
    let dir = tempfile::tempdir().expect("temp dir");
    let motd = dir.path().join("motd");
    std::fs::write(&motd, "before\n").expect("write motd");
    let mut server = Server::start(&["--motd", motd.to_str().expect("utf-8 path")]);
    let mut early = Client::connect(server.addr);
    early.expect_line("*** before");
    early.expect_prompt();
    std::fs::write(&motd, "after\n").expect("write motd");
    server.upgrade();
    let mut late = Client::connect(server.addr);
    late.expect_line("*** after");
    late.expect_prompt();
    // The one at the prompt is still there, told nothing.
    early.send_line("early");
    early.expect_line("*** Welcome, early! You are in #lobby.");
}
