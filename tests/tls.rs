//! TLS through the real binary (PROTOCOL.md, "TLS"): certificates made with rcgen, a rustls
//! client, raw sockets for what a TLS client cannot show, and one run of `openssl s_client`.

mod support;
#[path = "support/tls.rs"]
mod tls_support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{BANNER, Client, LINE_TIMEOUT, PROMPT, Server, chat, login, run_natter};
use tls_support::{End, Pki, TlsClient};

/// How a raw socket's peer ended the connection.
#[derive(Debug, PartialEq, Eq)]
enum Close {
    Fin,
    Reset,
}

/// Reads a raw socket until the server closes it (within [`LINE_TIMEOUT`]).
fn read_raw_to_end(sock: &mut TcpStream) -> (Vec<u8>, Close) {
    let deadline = Instant::now() + LINE_TIMEOUT;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "still open; received {got:?}");
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.read(&mut chunk) {
            Ok(0) => return (got, Close::Fin),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, Close::Reset),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read error: {e}"),
        }
    }
}

/// The first flight of a real TLS client (a ClientHello).
fn client_hello(pki: &Pki) -> Vec<u8> {
    let name = "localhost".try_into().unwrap();
    let mut client = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    hello
}

fn banner_and_prompt() -> Vec<u8> {
    format!("{}\r\n{}\r\n{PROMPT}", BANNER[0], BANNER[1]).into_bytes()
}

#[test]
fn tls_and_plain_users_chat_together() {
    let pki = Pki::new();
    let (server, tls_addr) = tls_support::start(&pki, &[]);
    let mut alice = login(server.addr, "alice");
    let mut bob = TlsClient::connect(tls_addr, pki.client_config());
    bob.nick = "bob".into();
    // The same banner and prompt as over plain text.
    bob.expect_line(BANNER[0]);
    bob.expect_line(BANNER[1]);
    bob.expect_prompt();
    bob.send_line("bob");
    bob.expect_line("*** Welcome, bob! You are in #lobby.");
    alice.expect_line("*** bob joined #lobby");
    bob.send_line("hello from TLS");
    alice.expect_line(&chat("bob", "hello from TLS"));
    alice.send_line("hello from telnet");
    bob.expect_line(&chat("alice", "hello from telnet"));
    bob.send_line("/who");
    bob.expect_line("*** 2 users in #lobby: alice, bob");
    bob.send_line("/w alice psst");
    alice.expect_line("*bob* psst");
    bob.expect_line("-> *alice* psst");
    bob.expect_silence();
    alice.expect_silence();
    server.wait_for_stderr(|l| l.contains("connect #2 from 127.0.0.1:") && l.ends_with("(TLS)"));
}

#[test]
fn quit_over_tls_ends_with_close_notify_then_eof() {
    let pki = Pki::new();
    let (server, tls_addr) = tls_support::start(&pki, &[]);
    let mut alice = login(server.addr, "alice");
    let mut bob = tls_support::login(tls_addr, &pki, "bob");
    alice.expect_line("*** bob joined #lobby");
    bob.send_line("/quit gone");
    assert_eq!(bob.expect_tls_close(), ["*** Bye, bob!"]);
    alice.expect_line("*** bob left #lobby (gone)");
    alice.expect_silence();
}

#[test]
fn a_tls_client_that_leaves_without_quit_is_gone_from_the_room() {
    let pki = Pki::new();
    let (server, tls_addr) = tls_support::start(&pki, &[]);
    let mut alice = login(server.addr, "alice");
    let mut bob = tls_support::login(tls_addr, &pki, "bob");
    alice.expect_line("*** bob joined #lobby");
    // A clean TLS end of input: the server answers with its own close_notify.
    bob.send_close_notify();
    assert_eq!(bob.expect_tls_close(), Vec::<String>::new());
    alice.expect_line("*** bob left #lobby (connection closed)");
    // A TCP close without close_notify.
    let carol = tls_support::login(tls_addr, &pki, "carol");
    alice.expect_line("*** carol joined #lobby");
    drop(carol);
    alice.expect_line("*** carol left #lobby (connection closed)");
    alice.expect_silence();
}

#[test]
fn output_the_kernel_refuses_goes_out_once_the_tls_client_reads() {
    let pki = Pki::new();
    let (server, tls_addr) = tls_support::start(&pki, &["--sendq", "16777216"]);
    let mut alice = login(server.addr, "alice");
    // bob's tiny receive buffer makes the server's socket refuse output soon.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&tls_addr.into()).unwrap();
    let mut bob = TlsClient::over(socket.into(), pki.client_config());
    bob.nick = "bob".into();
    bob.skip_banner();
    bob.send_line("bob");
    bob.expect_line("*** Welcome, bob! You are in #lobby.");
    alice.expect_line("*** bob joined #lobby");
    // 4 MB while bob does not read: more than the kernel holds (its send buffer grows to a
    // few MB on loopback), less than --sendq.
    let lines: Vec<String> = (0..8000)
        .map(|i| format!("{i:04} {}", "y".repeat(490)))
        .collect();
    let mut writer = alice.writer();
    let all: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
    writer.write_all(all.as_bytes()).unwrap();
    // Once alice's whisper to herself is back, the server has handled all 400 lines.
    alice.expect_silence();
    for line in &lines {
        bob.expect_line(&chat("alice", line));
    }
    bob.expect_silence();
}

#[test]
fn a_client_sending_one_byte_per_write_is_understood() {
    let pki = Pki::new();
    let (server, tls_addr) = tls_support::start(&pki, &[]);
    let mut alice = login(server.addr, "alice");
    let mut bob = TlsClient::connect(tls_addr, pki.client_config());
    // The handshake and every record arrive one byte per segment.
    bob.bytewise = true;
    bob.nick = "bob".into();
    bob.skip_banner();
    bob.send_line("bob");
    bob.expect_line("*** Welcome, bob! You are in #lobby.");
    alice.expect_line("*** bob joined #lobby");
    let long = "x".repeat(400);
    bob.send_line(&long);
    alice.expect_line(&chat("bob", &long));
    bob.send(b"split ");
    bob.send(b"line\r\n");
    alice.expect_line(&chat("bob", "split line"));
    bob.expect_silence();
}

#[test]
fn handshakes_not_done_within_the_timeout_are_closed_without_a_line() {
    let pki = Pki::new();
    let (server, tls_addr) = tls_support::start(&pki, &["--tls-handshake-timeout", "1"]);
    let mut done = tls_support::login(tls_addr, &pki, "bob");
    let start = Instant::now();
    let mut silent = TcpStream::connect(tls_addr).unwrap();
    let mut half = TcpStream::connect(tls_addr).unwrap();
    let hello = client_hello(&pki);
    half.write_all(&hello[..hello.len() / 2]).unwrap();
    for sock in [&mut silent, &mut half] {
        let (got, close) = read_raw_to_end(sock);
        assert_eq!((got, close), (Vec::new(), Close::Fin));
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(1), "closed after {took:?}");
    server.wait_for_stderr_count(2, |l| l.ends_with("(TLS handshake timeout)"));
    // A connection whose handshake is done is not concerned.
    done.expect_silence();
}

#[test]
fn plain_text_on_the_tls_port_gets_the_hint_then_fin() {
    let pki = Pki::new();
    let (server, tls_addr) = tls_support::start(&pki, &[]);
    let mut sock = TcpStream::connect(tls_addr).unwrap();
    // More than one read of the server's: what it has not read when it closes would make the
    // close a reset, which can destroy the hint before the client reads it.
    let text = "alice\r\n".repeat(30_000 / 7);
    sock.write_all(text.as_bytes()).unwrap();
    let (got, close) = read_raw_to_end(&mut sock);
    let hint = format!(
        "!!! This is a TLS port. Use a TLS client, e.g. openssl s_client -quiet -crlf -connect {tls_addr}\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&got), hint);
    assert_eq!(close, Close::Fin);
    // Logged once the server has closed its socket: a reset would have come by then (Linux
    // still delivers the line and the FIN that came before a reset, so ask for the error).
    server.wait_for_stderr(|l| l.ends_with("(plain text on a TLS port)"));
    assert!(
        sock.take_error().unwrap().is_none(),
        "the close was a reset"
    );
}

#[test]
fn a_client_hello_on_the_plain_port_is_closed_and_the_log_names_the_peer() {
    let pki = Pki::new();
    let (server, _) = tls_support::start(&pki, &[]);
    let mut sock = TcpStream::connect(server.addr).unwrap();
    let peer = sock.local_addr().unwrap();
    sock.write_all(&client_hello(&pki)).unwrap();
    let (got, _) = read_raw_to_end(&mut sock);
    // The banner went out at accept, before the ClientHello came; nothing after it.
    assert!(banner_and_prompt().starts_with(&got), "{got:?}");
    server.wait_for_stderr(|l| {
        l.ends_with(&format!(
            "disconnect #1 (TLS handshake on a plain-text port, from {peer})"
        ))
    });
    // The server goes on.
    let mut alice = login(server.addr, "alice");
    alice.expect_silence();
}

#[test]
fn limits_count_tls_and_plain_connections_together_and_never_answer_in_plain_text() {
    let pki = Pki::new();
    let (server, tls_addr) = tls_support::start(&pki, &["--max-clients", "2"]);
    let mut alice = login(server.addr, "alice");
    let mut bob = tls_support::login(tls_addr, &pki, "bob");
    let mut plain = Client::connect(server.addr);
    plain.expect_line("!!! Server is full, try again later.");
    plain.expect_closed();
    // Refused before its handshake: no byte in plain text, no banner.
    let mut tls = TlsClient::connect(tls_addr, pki.client_config());
    let (end, lines) = tls.read_to_end();
    assert_eq!((end, lines), (End::Eof, Vec::<String>::new()));
    assert!(tls.tls.is_handshaking());
    alice.expect_line("*** bob joined #lobby");
    alice.expect_silence();
    bob.expect_silence();
}

/// Runs natter with one TLS listener and `cert`/`key`; it must exit 1 saying `message`.
#[track_caller]
fn assert_refused(cert: &std::path::Path, key: &std::path::Path, message: &str) {
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    let out = run_natter(&args, LINE_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(message),
        "expected {message:?} in {stderr:?}"
    );
}

#[test]
fn every_bad_certificate_or_key_exits_1_with_its_message() {
    let pki = Pki::new();
    let (cert, key) = (pki.cert.clone(), pki.key.clone());
    let other = pki.leaf();
    let missing = pki.dir.path().join("missing.pem");
    let show = |p: &std::path::Path| p.display().to_string();
    assert_refused(&missing, &key, &format!("cannot read {}: ", show(&missing)));
    assert_refused(
        &cert,
        &missing,
        &format!("cannot read {}: ", show(&missing)),
    );
    let text = pki.file("text.pem", "just some text\n");
    assert_refused(
        &text,
        &key,
        &format!("{}: no certificate found", show(&text)),
    );
    assert_refused(
        &cert,
        &text,
        &format!("{}: no private key found", show(&text)),
    );
    let broken = pki.file(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    assert_refused(&broken, &key, &format!("{}: not valid PEM", show(&broken)));
    let der = pki.file("cert.der", &other.der);
    assert_refused(&der, &key, "this looks like DER (binary), not PEM");
    let key_der = pki.file("key.der", pem_body(&other.key_pem));
    assert_refused(&cert, &key_der, "openssl pkey -inform der");
    let encrypted = pki.file(
        "enc.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    assert_refused(&cert, &encrypted, "the private key is encrypted");
    let other_key = pki.file("other-key.pem", &other.key_pem);
    assert_refused(
        &cert,
        &other_key,
        &format!(
            "the private key in {} does not belong to the certificate in {}",
            show(&other_key),
            show(&cert)
        ),
    );
    // The chain in the wrong order: the key belongs to the second certificate.
    let ca_first = pki.file("ca-first.pem", format!("{}{}", pki.leaf().pem, other.pem));
    assert_refused(
        &ca_first,
        &other_key,
        "the chain must start with the server's certificate",
    );
}

/// The DER inside a PEM file.
fn pem_body(pem: &str) -> Vec<u8> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    key.secret_der().to_vec()
}

#[test]
fn the_certificate_is_loaded_before_anything_is_bound() {
    let pki = Pki::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let text = pki.file("text.pem", "no certificate here\n");
    let text = text.to_str().unwrap();
    let args = [
        "--listen",
        &busy_addr,
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        text,
        "--tls-key",
        pki.key.to_str().unwrap(),
    ];
    let out = run_natter(&args, LINE_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no certificate found"), "{stderr}");
    assert!(!stderr.contains("cannot listen"), "{stderr}");
}

#[test]
fn tls_listen_without_a_key_is_a_usage_error() {
    let out = run_natter(
        &["--tls-listen", "127.0.0.1:0", "--tls-cert", "c.pem"],
        LINE_TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--tls-listen needs --tls-key FILE"),
        "{stderr}"
    );
}

#[test]
fn sighup_swaps_the_certificate_and_a_broken_pair_keeps_the_old_one() {
    let mut pki = Pki::new();
    let (server, tls_addr) = tls_support::start(&pki, &[]);
    let first = pki.leaf_der.clone();
    let mut old = tls_support::login(tls_addr, &pki, "old");
    assert_eq!(old.server_cert(), first);
    let reloaded = |n| server.wait_for_stderr_count(n, |l| l.contains("reload: read TLS"));
    let kept = |n| server.wait_for_stderr_count(n, |l| l.contains("keeping the previous TLS"));
    let config = pki.client_config();
    let cert_of_new_connection = || {
        let mut c = TlsClient::connect(tls_addr, config.clone());
        c.server_cert()
    };

    let second = pki.leaf();
    pki.install(&second);
    server.signal("HUP");
    reloaded(1);
    assert_eq!(cert_of_new_connection(), second.der);
    // The connection made before keeps its session.
    old.expect_silence();

    // A key file that holds no key: the log names it, and the second pair stays.
    std::fs::write(&pki.key, "not a key\n").unwrap();
    server.signal("HUP");
    kept(1);
    let line = server.wait_for_stderr(|l| l.contains("keeping the previous TLS"));
    assert!(line.contains(&pki.key.display().to_string()), "{line}");
    assert_eq!(cert_of_new_connection(), second.der);

    // A pair that does not belong together: both files named, the second pair stays.
    let third = pki.leaf();
    std::fs::write(&pki.key, &second.key_pem).unwrap();
    std::fs::write(&pki.cert, &third.pem).unwrap();
    server.signal("HUP");
    kept(2);
    let mismatch = server.wait_for_stderr(|l| l.contains("does not belong"));
    assert!(
        mismatch.contains(&pki.cert.display().to_string()),
        "{mismatch}"
    );
    assert_eq!(cert_of_new_connection(), second.der);

    pki.install(&third);
    server.signal("HUP");
    reloaded(2);
    assert_eq!(cert_of_new_connection(), third.der);
    old.expect_silence();
}

#[test]
fn a_tls_reader_that_never_reads_is_dropped_at_sendq() {
    let pki = Pki::new();
    let (server, tls_addr) = tls_support::start(&pki, &["--sendq", "4096"]);
    let mut alice = login(server.addr, "alice");
    // bob never reads.
    let _bob = tls_support::login(tls_addr, &pki, "bob");
    alice.expect_line("*** bob joined #lobby");
    let stop = Arc::new(AtomicBool::new(false));
    let flood = support::flood(alice.writer(), Arc::clone(&stop));
    let result = alice.try_read_line(Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert_eq!(
        result.as_deref(),
        Ok("*** bob left #lobby (too slow)"),
        "after {sent} bytes"
    );
    server.wait_for_stderr(|l| l.ends_with("disconnect #2 (too slow)"));
}

#[test]
fn sigterm_sends_the_notice_encrypted_then_close_notify() {
    let pki = Pki::new();
    let (mut server, tls_addr) = tls_support::start(&pki, &[]);
    let mut bob = tls_support::login(tls_addr, &pki, "bob");
    let mut carol = TlsClient::connect(tls_addr, pki.client_config());
    carol.skip_banner();
    // Still handshaking at shutdown: just closed.
    let mut silent = TcpStream::connect(tls_addr).unwrap();
    bob.expect_silence();
    server.terminate();
    assert_eq!(bob.expect_tls_close(), ["*** Server is shutting down."]);
    assert_eq!(carol.expect_tls_close(), ["*** Server is shutting down."]);
    assert_eq!(read_raw_to_end(&mut silent), (Vec::new(), Close::Fin));
    assert!(server.wait_exit(LINE_TIMEOUT).success());
}

#[test]
fn sigusr2_closes_tls_users_and_hands_over_plain_ones() {
    let pki = Pki::new();
    let (mut server, tls_addr) = tls_support::start(&pki, &[]);
    let mut alice = login(server.addr, "alice");
    let mut bob = tls_support::login(tls_addr, &pki, "bob");
    alice.expect_line("*** bob joined #lobby");
    let mut carol = TlsClient::connect(tls_addr, pki.client_config());
    carol.skip_banner();
    server.upgrade();
    assert_eq!(
        bob.expect_tls_close(),
        ["*** Server upgraded: please reconnect."]
    );
    // At the prompt: closed without a word.
    assert_eq!(carol.expect_tls_close(), Vec::<String>::new());
    alice.expect_line("*** bob left #lobby (server upgrade)");
    alice.expect_line("*** Server upgraded.");
    server.wait_for_stderr(|l| l.contains("upgrade: closing 2 TLS connections (1 logged in)"));
    // The TLS listener was handed over, and the new process has the pair.
    let mut bob = tls_support::login(tls_addr, &pki, "bob");
    alice.expect_line("*** bob joined #lobby");
    bob.send_line("back");
    alice.expect_line(&chat("bob", "back"));
    alice.expect_silence();
}

/// The test certificate the README shows how to make.
const README_CERT: &[&str] = &[
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "365",
    "-keyout",
    "key.pem",
    "-out",
    "cert.pem",
    "-subj",
    "/CN=localhost",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
];

fn openssl_installed() -> bool {
    if Command::new("openssl").arg("version").output().is_ok() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "openssl is not installed");
    eprintln!("!!!!!!!! skipped: openssl is not installed !!!!!!!!");
    false
}

#[test]
fn the_readme_test_certificate_is_accepted_by_rustls_clients() {
    if !openssl_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new("openssl")
        .args(README_CERT)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let server = Server::start(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let line = server.wait_for_stderr(|l| l.ends_with("(TLS)"));
    let addr = line
        .split_whitespace()
        .rev()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let root = CertificateDer::from_pem_file(&cert).unwrap();
    let mut client = TlsClient::connect(addr, tls_support::client_trusting(root));
    client.skip_banner();
    client.send_line("sam");
    client.expect_line("*** Welcome, sam! You are in #lobby.");
}

/// Output of a child process, read by a thread, waited on with deadlines.
struct Output {
    bytes: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Output {
    fn wait_for(&mut self, pattern: &str) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        while !String::from_utf8_lossy(&self.seen).contains(pattern) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.bytes.recv_timeout(left) {
                Ok(chunk) => self.seen.extend_from_slice(&chunk),
                Err(_) => panic!(
                    "no {pattern:?} from openssl; got {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }
}

#[test]
fn openssl_s_client_chats_with_a_plain_user() {
    if !openssl_installed() {
        return;
    }
    let pki = Pki::new();
    let (server, tls_addr) = tls_support::start(&pki, &[]);
    let mut alice = login(server.addr, "alice");
    let mut child = Reaped(
        Command::new("openssl")
            .args(["s_client", "-quiet", "-crlf", "-connect"])
            .arg(tls_addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let mut stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut chunk) {
            if tx.send(chunk[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut out = Output {
        bytes: rx,
        seen: Vec::new(),
    };
    out.wait_for(&format!("{}\r\n{}\r\n{PROMPT}", BANNER[0], BANNER[1]));
    stdin.write_all(b"carol\n").unwrap();
    out.wait_for("*** Welcome, carol! You are in #lobby.\r\n");
    alice.expect_line("*** carol joined #lobby");
    alice.send_line("hello openssl");
    out.wait_for("<alice> hello openssl\r\n");
    stdin.write_all(b"hello telnet\n").unwrap();
    alice.expect_line(&chat("carol", "hello telnet"));
    stdin.write_all(b"/quit\n").unwrap();
    out.wait_for("*** Bye, carol!\r\n");
    alice.expect_line("*** carol left #lobby");
    // It exits once the server has closed the connection.
    let deadline = Instant::now() + LINE_TIMEOUT;
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "openssl s_client did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Our child process, killed (by its handle) and reaped if the test ends early.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
