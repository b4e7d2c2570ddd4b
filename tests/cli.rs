//! Command line: --help, -V, bad flags, unbindable address, --motd, --default-room,
//! --quiet-above, several listeners, stderr log lines, SIGTERM.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use support::{Client, PROMPT, Server, chat, login, login_in, login_seen_by, run_natter};

const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_exits_zero_and_prints_usage() {
    let out = run_natter(&["--help"], EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.to_lowercase().contains("usage"),
        "--help output has no usage: {all}"
    );
    for flag in [
        "--listen",
        "--max-line",
        "--motd",
        "--default-room",
        "--quiet-above",
    ] {
        assert!(all.contains(flag), "--help does not mention {flag}: {all}");
    }
}

#[test]
fn short_help_exits_zero() {
    let out = run_natter(&["-h"], EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.to_lowercase().contains("usage"), "-h output: {all}");
}

#[test]
fn version_flag_prints_version() {
    for flag in ["-V", "--version"] {
        let out = run_natter(&[flag], EXIT_TIMEOUT);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{flag}: stderr {}",
            text(&out.stderr)
        );
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            all.contains(env!("CARGO_PKG_VERSION")),
            "{flag} output lacks the version {}: {all:?}",
            env!("CARGO_PKG_VERSION")
        );
    }
}

#[test]
fn unknown_flag_exits_2_with_usage_on_stderr() {
    let out = run_natter(&["--listen", "127.0.0.1:0", "--bogus-flag"], EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.to_lowercase().contains("usage"),
        "stderr lacks usage: {err:?}"
    );
}

#[test]
fn non_numeric_max_line_exits_2() {
    let out = run_natter(
        &["--listen", "127.0.0.1:0", "--max-line", "abc"],
        EXIT_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    assert!(!out.stderr.is_empty(), "no message on stderr");
}

#[test]
fn flag_without_value_exits_2() {
    let out = run_natter(&["--listen"], EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
}

#[test]
fn bad_listen_address_exits_2() {
    let out = run_natter(&["--listen", "not-an-address"], EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
}

#[test]
fn address_in_use_exits_1_and_names_it() {
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = holder.local_addr().expect("local addr").to_string();
    let out = run_natter(&["--listen", &addr, "--rate", "0"], EXIT_TIMEOUT);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(&addr), "stderr does not name {addr}: {err:?}");
}

#[test]
fn stderr_says_listening_on_the_bound_address() {
    let server = Server::start(&[]);
    let line = format!("natter: listening on {}", server.addr);
    assert!(
        server.stderr_lines().contains(&line),
        "no line {line:?} in {:#?}",
        server.stderr_lines()
    );
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(server.addr.port(), 0);
}

#[test]
fn connects_and_disconnects_are_logged() {
    let server = Server::start(&[]);
    let before = server.stderr_lines().len();
    let mut c = login(server.addr, "alice");
    c.send_line("/quit");
    c.expect_line("*** Bye, alice!");
    c.expect_closed();
    // One line per connect and one per disconnect.
    server.wait_for_stderr_count(before + 2, |_| true);
}

#[test]
fn several_listeners_including_ipv6() {
    let server = Server::start(&["--listen", "[::1]:0"]);
    server.wait_for_stderr_count(2, |l| l.contains("listening on "));
    let addrs = server.listen_addrs();
    assert_eq!(addrs.len(), 2, "listeners: {addrs:?}");
    let v4 = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .expect("an IPv4 listener");
    let v6 = addrs
        .iter()
        .find(|a| a.is_ipv6())
        .expect("an IPv6 listener");
    let mut alice = login(*v4, "alice");
    let mut bob = login(*v6, "bob");
    alice.expect_line("*** bob joined #lobby");
    bob.send_line("over v6");
    alice.expect_line(&chat("bob", "over v6"));
}

#[test]
fn ipv4_and_ipv6_wildcards_share_a_port() {
    // A port that was free a moment ago (the test cannot ask the server for one port twice);
    // another process may take it meanwhile (as a client's source port), so try a few.
    let mut attempts = Vec::new();
    let (server, port) = loop {
        // Free on every IPv4 address, not just on 127.0.0.1 (clients bound to 127.0.0.x may
        // hold it as their source port).
        let port = std::net::TcpListener::bind("0.0.0.0:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let (v4, v6) = (format!("0.0.0.0:{port}"), format!("[::]:{port}"));
        let args = [
            "--listen",
            &v4,
            "--listen",
            &v6,
            "--rate",
            "0",
            "--max-per-ip",
            "0",
        ];
        match Server::try_start_exact(&args) {
            Ok(server) => break (server, port),
            Err(lines) if attempts.len() < 5 => attempts.push(lines),
            Err(lines) => panic!("no port worked: {attempts:#?} {lines:#?}"),
        }
    };
    server.wait_for_stderr_count(2, |l| l.contains("listening on "));
    let mut alice = login(format!("127.0.0.1:{port}").parse().expect("v4"), "alice");
    let _bob = login_seen_by(
        format!("[::1]:{port}").parse().expect("v6"),
        "bob",
        &mut [&mut alice],
    );
}

#[test]
fn motd_replaces_the_banner() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("natter-test-motd.txt");
    std::fs::write(&path, "Hello from the motd\nSecond line: be nice\n").expect("write motd");
    let server = Server::start(&["--motd", path.to_str().expect("utf-8 path")]);
    let mut c = Client::connect(server.addr);
    let mut expected = b"*** Hello from the motd\r\n*** Second line: be nice\r\n".to_vec();
    expected.extend_from_slice(PROMPT.as_bytes());
    c.expect_raw(&expected);
    c.send_line("alice");
    c.expect_line("*** Welcome, alice! You are in #lobby.");
}

#[test]
fn missing_motd_file_is_an_error() {
    let out = run_natter(
        &[
            "--listen",
            "127.0.0.1:0",
            "--motd",
            "/nonexistent/natter/motd.txt",
        ],
        EXIT_TIMEOUT,
    );
    assert_ne!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(!out.stderr.is_empty(), "no message on stderr");
}

#[test]
fn default_room_flag() {
    let server = Server::start(&["--default-room", "den"]);
    let mut alice = login_in(server.addr, "alice", "#den");
    let mut bob = login_in(server.addr, "bob", "#den");
    alice.expect_line("*** bob joined #den");
    bob.send_line("/who");
    bob.expect_line("*** 2 users in #den: alice, bob");
    bob.send_line("/join #den");
    bob.expect_line("!!! You are already in #den.");
    bob.send_line("/join side");
    bob.expect_line("*** You joined #side (1 user)");
    alice.expect_line("*** bob left #den");
    alice.send_line("/join side");
    alice.expect_line("*** You joined #side (2 users)");
    bob.expect_line("*** alice joined #side");
    // The default room stays when empty; #lobby does not exist.
    alice.send_line("/rooms");
    alice.expect_lines(&[
        "*** 2 rooms:",
        "***   #side (2 users)",
        "***   #den (0 users)",
    ]);
    alice.expect_silence();
}

#[test]
fn quiet_above_hides_joins_leaves_and_nicks_in_big_rooms() {
    let server = Server::start(&["--quiet-above", "2"]);
    let mut a = login(server.addr, "a1");
    // 2 members counting the joiner: announced.
    let mut b = login(server.addr, "b1");
    a.expect_line("*** b1 joined #lobby");
    // 3 members counting the joiner: not announced, but the joiner's own reply is unchanged.
    let mut c = login(server.addr, "c1");
    a.expect_silence();
    b.expect_silence();
    // Nick change in a room of 3: not announced; own reply unchanged.
    c.send_line("/nick c2");
    c.expect_line("*** You are now known as c2.");
    c.nick = "c2".into();
    a.expect_silence();
    b.expect_silence();
    // Chat is never hidden.
    c.send_line("still talking");
    a.expect_line(&chat("c2", "still talking"));
    b.expect_line(&chat("c2", "still talking"));
    // Leave from a room of 3 (counting the leaver): not announced.
    c.send_line("/quit");
    c.expect_line("*** Bye, c2!");
    c.expect_closed();
    a.expect_silence();
    b.expect_silence();
    // Now 2 members: a nick change and a leave are announced again.
    b.send_line("/nick b2");
    b.expect_line("*** You are now known as b2.");
    a.expect_line("*** b1 is now known as b2");
    b.send_line("/join elsewhere");
    b.expect_line("*** You joined #elsewhere (1 user)");
    a.expect_line("*** b2 left #lobby");
    a.expect_silence();
}

#[test]
fn sigterm_tells_clients_and_exits_zero() {
    let mut server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    server.terminate();
    alice.expect_line("*** Server is shutting down.");
    alice.expect_closed();
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[test]
fn sigint_tells_every_client_and_exits_zero() {
    let mut server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    let mut bob = login(server.addr, "bob");
    let mut lurker = Client::connect(server.addr);
    lurker.skip_banner();
    server.signal("INT");
    alice.read_until(|l| l == "*** Server is shutting down.");
    alice.expect_closed();
    bob.expect_line("*** Server is shutting down.");
    bob.expect_closed();
    assert_eq!(
        lurker.expect_closed(),
        vec!["*** Server is shutting down.".to_string()]
    );
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "exit status {status}");
}
