//! The adapter over real loopback sockets: a rustls client, and the real `openssl s_client`.

use super::*;
use crate::net::tls::testing::TestPki;
use rustls::version::TLS13;

#[test]
fn over_a_real_loopback_socket() {
    let _fds = crate::net::test_fds::opening();
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    let pki = TestPki::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client_sock = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server_sock, _) = listener.accept().unwrap();
    client_sock.set_nonblocking(true).unwrap();
    server_sock.set_nonblocking(true).unwrap();
    let mut server = TlsConn::new(pki.server_config()).unwrap();
    let mut client = pki.client(&TLS13);
    let (mut scratch, mut shared) = (vec![0; 32 * 1024], Vec::new());
    let (mut received, mut client_got) = (Vec::new(), Vec::new());
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let mut offered = 0;
    let (mut closed, mut shut) = (false, false);
    let mut client_clean_end = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    client.writer().write_all(b"hi\r\n").unwrap();
    while !client_clean_end {
        assert!(Instant::now() < deadline, "timed out");
        // Client side.
        while client.wants_write() {
            match client.write_tls(&mut client_sock) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                r => r.map(|_| ()).unwrap(),
            }
        }
        match client.read_tls(&mut client_sock) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(0) => panic!("EOF before close_notify"),
            r => {
                r.unwrap();
                let state = client.process_new_packets().unwrap();
                let mut buf = vec![0; state.plaintext_bytes_to_read()];
                client.reader().read_exact(&mut buf).unwrap();
                client_got.extend_from_slice(&buf);
                client_clean_end = state.peer_has_closed();
            }
        }
        // Server side, as the loop would drive it.
        loop {
            let outcome = server.read(&mut server_sock, &mut scratch, &mut shared, |p| {
                received.extend_from_slice(p)
            });
            if outcome.unwrap().input == Input::WouldBlock {
                break;
            }
        }
        if received == b"hi\r\n" && offered < big.len() {
            let (taken, _) = server
                .write(
                    &mut server_sock,
                    &[IoSlice::new(&big[offered..])],
                    &mut shared,
                )
                .unwrap();
            offered += taken;
        } else if offered == big.len() && !closed && server.send_pending(&mut server_sock).unwrap()
        {
            assert!(server.queue_close_notify().unwrap());
            closed = true;
        }
        if closed && !shut && server.send_pending(&mut server_sock).unwrap() {
            server_sock.shutdown(Shutdown::Write).unwrap();
            shut = true;
        }
    }
    assert_eq!(received, b"hi\r\n");
    assert!(client_got == big);
    assert_eq!(server.buffer_capacity(), 0);
}

#[test]
fn openssl_s_client_chats_and_sees_the_close() {
    let _fds = crate::net::test_fds::opening();
    use std::io::BufRead;
    use std::net::{Shutdown, TcpListener};
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::time::{Duration, Instant};

    let pki = TestPki::new();
    let ca = pki.file("ca.pem", &pki.ca_pem);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut child = KillOnDrop(
        Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-crlf",
                "-servername",
                "localhost",
                "-verify_return_error",
            ])
            .arg("-connect")
            .arg(addr.to_string())
            .arg("-CAfile")
            .arg(&ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl is installed"),
    );
    let (mut sock, _) = listener.accept().unwrap();
    sock.set_nonblocking(true).unwrap();
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line);
        }
    });
    child
        .0
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello from openssl\n")
        .unwrap();

    let mut server = TlsConn::new(pki.server_config()).unwrap();
    let (mut scratch, mut shared, mut received) = (vec![0; MAX_RECORD_LEN], Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    while received != b"hello from openssl\r\n" {
        assert!(Instant::now() < deadline, "got {received:?}");
        let outcome = server.read(&mut sock, &mut scratch, &mut shared, |p| {
            received.extend_from_slice(p)
        });
        if outcome.unwrap().handshake_finished {
            let banner = IoSlice::new(b"*** Welcome\r\n");
            assert_eq!(
                server.write(&mut sock, &[banner], &mut shared).unwrap(),
                (13, false)
            );
        }
    }
    let line = lines
        .recv_timeout(Duration::from_secs(20))
        .unwrap()
        .unwrap();
    assert_eq!(line, "*** Welcome");
    assert!(server.queue_close_notify().unwrap());
    assert!(server.send_pending(&mut sock).unwrap());
    sock.shutdown(Shutdown::Write).unwrap();
    // s_client prints nothing more, closes its output and exits on the close.
    let end = lines.recv_timeout(Duration::from_secs(20));
    assert!(
        matches!(end, Err(RecvTimeoutError::Disconnected)),
        "{end:?}"
    );
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// A child process killed (by its PID) and reaped if the test fails before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
