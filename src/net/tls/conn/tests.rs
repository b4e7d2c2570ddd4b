use super::*;
use crate::net::tls::testing::TestPki;
use rustls::ClientConnection;
use rustls::version::{TLS12, TLS13};
use std::collections::VecDeque;

/// An in-memory socket: what the client sent waits in `inbound`; what the "kernel" took from
/// the server lands in `outbound`, at most `write_budget` bytes until the budget is refilled.
struct FakeSocket {
    inbound: VecDeque<u8>,
    outbound: Vec<u8>,
    read_limit: usize,
    write_budget: usize,
    eof: bool,
}

impl Read for FakeSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.is_empty() {
            return match self.eof {
                true => Ok(0),
                false => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = buf.len().min(self.read_limit).min(self.inbound.len());
        for (dst, src) in buf.iter_mut().zip(self.inbound.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Write for FakeSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.write_budget == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.write_budget);
        self.outbound.extend_from_slice(&buf[..n]);
        self.write_budget -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A rustls client and a [`TlsConn`] joined by a [`FakeSocket`], with the loop's buffers.
struct Pair {
    pki: TestPki,
    server: TlsConn,
    client: ClientConnection,
    sock: FakeSocket,
    scratch: Vec<u8>,
    shared: Vec<u8>,
    /// Plaintext the server decrypted.
    received: Vec<u8>,
    /// Plaintext the client decrypted.
    client_got: Vec<u8>,
    handshakes_finished: usize,
}

impl Pair {
    fn new(version: &'static rustls::SupportedProtocolVersion) -> Pair {
        let pki = TestPki::new();
        Pair {
            server: TlsConn::new(pki.server_config()).unwrap(),
            client: pki.client(version),
            pki,
            sock: FakeSocket {
                inbound: VecDeque::new(),
                outbound: Vec::new(),
                read_limit: usize::MAX,
                write_budget: usize::MAX,
                eof: false,
            },
            // The smallest scratch the adapter accepts, to show it is enough.
            scratch: vec![0; MAX_RECORD_LEN],
            shared: Vec::new(),
            received: Vec::new(),
            client_got: Vec::new(),
            handshakes_finished: 0,
        }
    }

    fn handshaken(version: &'static rustls::SupportedProtocolVersion) -> Pair {
        let mut pair = Pair::new(version);
        pair.handshake();
        pair
    }

    /// The client's pending TLS bytes, taken out of the client.
    fn client_tls(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut bytes).unwrap();
        }
        bytes
    }

    fn client_send(&mut self) {
        let bytes = self.client_tls();
        self.sock.inbound.extend(bytes);
    }

    /// One server read; plaintext goes to `received`.
    fn server_read_once(&mut self) -> Result<ReadOutcome, TlsError> {
        let received = &mut self.received;
        let outcome =
            self.server
                .read(&mut self.sock, &mut self.scratch, &mut self.shared, |p| {
                    received.extend_from_slice(p)
                })?;
        self.handshakes_finished += usize::from(outcome.handshake_finished);
        assert!(self.server.incoming.len() < MAX_RECORD_LEN);
        Ok(outcome)
    }

    /// Server reads until the socket would block (or input ends); returns the last outcome.
    fn server_read(&mut self) -> Result<ReadOutcome, TlsError> {
        loop {
            let outcome = self.server_read_once()?;
            if !matches!(outcome.input, Input::Data(_)) {
                return Ok(outcome);
            }
        }
    }

    /// Hands what the kernel took to the client, which decrypts it into `client_got`.
    /// Returns whether the client saw a clean end (close_notify).
    fn client_receive(&mut self) -> bool {
        let bytes = std::mem::take(&mut self.sock.outbound);
        let mut rest = &bytes[..];
        let mut clean_end = false;
        loop {
            if !rest.is_empty() {
                self.client.read_tls(&mut rest).unwrap();
            }
            let state = self.client.process_new_packets().unwrap();
            clean_end |= state.peer_has_closed();
            let mut buf = vec![0; state.plaintext_bytes_to_read()];
            self.client.reader().read_exact(&mut buf).unwrap();
            self.client_got.extend_from_slice(&buf);
            if rest.is_empty() {
                return clean_end;
            }
        }
    }

    fn handshake(&mut self) {
        for _ in 0..10 {
            if !self.client.is_handshaking() && !self.server.is_handshaking() {
                assert_eq!(self.handshakes_finished, 1);
                assert_eq!(self.server.buffer_capacity(), 0);
                return;
            }
            self.client_send();
            assert_eq!(self.server_read().unwrap().input, Input::WouldBlock);
            self.client_receive();
        }
        panic!("the handshake did not finish");
    }

    /// The server writes `data` as one slice; returns `(taken, blocked)`.
    fn server_write(&mut self, data: &[u8]) -> (usize, bool) {
        self.server
            .write(&mut self.sock, &[IoSlice::new(data)], &mut self.shared)
            .unwrap()
    }

    fn client_writes(&mut self, data: &[u8]) {
        self.client.writer().write_all(data).unwrap();
    }
}

#[test]
fn handshake_then_plaintext_both_ways() {
    let _fds = crate::net::test_fds::opening();
    for version in [&TLS13, &TLS12] {
        let mut pair = Pair::handshaken(version);
        pair.client_writes(b"hello\r\n");
        pair.client_send();
        assert_eq!(pair.server_read().unwrap().input, Input::WouldBlock);
        assert_eq!(pair.received, b"hello\r\n");
        assert_eq!(pair.server_write(b"*** hi\r\n"), (8, false));
        pair.client_receive();
        assert_eq!(pair.client_got, b"*** hi\r\n");
        assert_eq!(
            pair.server.buffer_capacity(),
            0,
            "an idle connection holds no buffer"
        );
        assert_eq!(pair.shared.len(), 0);
    }
}

#[test]
fn nothing_is_sent_before_the_handshake_finishes() {
    let _fds = crate::net::test_fds::opening();
    // TLS 1.3 clients send data with their Finished; TLS 1.2 ones wait for the server's.
    for (version, with_finished) in [(&TLS13, true), (&TLS12, false)] {
        let mut pair = Pair::new(version);
        // Even with rustls allowing TLS 1.3 0.5-RTT data, the adapter sends none.
        let mut config = (*pair.pki.server_config()).clone();
        config.send_half_rtt_data = true;
        pair.server = TlsConn::new(Arc::new(config)).unwrap();
        // Before the ClientHello, and after it (the server's flight is out, the client's
        // Finished is not in yet: TLS 1.3 would allow 0.5-RTT data here; we do not send any).
        for _ in 0..2 {
            let before = pair.sock.outbound.len();
            assert_eq!(pair.server_write(b"*** banner\r\n"), (0, true));
            assert_eq!(pair.sock.outbound.len(), before);
            assert!(pair.server.is_handshaking());
            assert!(!pair.server.queue_close_notify().unwrap());
            pair.client_send();
            pair.server_read().unwrap();
        }
        assert!(
            !pair.sock.outbound.is_empty(),
            "the server's flight went out"
        );
        pair.client_writes(b"early\r\n");
        pair.client_receive();
        pair.client_send();
        let outcome = pair.server_read_once().unwrap();
        assert!(outcome.handshake_finished);
        assert!(!pair.server.is_handshaking());
        if with_finished {
            assert_eq!(pair.received, b"early\r\n", "delivered in the same read");
        }
        pair.client_receive();
        pair.client_send();
        pair.server_read().unwrap();
        assert_eq!(pair.received, b"early\r\n");
        assert_eq!(pair.server_write(b"*** banner\r\n"), (12, false));
        pair.client_receive();
        assert_eq!(pair.client_got, b"*** banner\r\n");
        assert_eq!(pair.handshakes_finished, 1);
    }
}

#[test]
fn one_byte_per_client_write_and_per_socket_read() {
    let _fds = crate::net::test_fds::opening();
    for version in [&TLS13, &TLS12] {
        let mut pair = Pair::new(version);
        // Every record of the handshake arrives one byte per read.
        pair.sock.read_limit = 1;
        pair.handshake();
        let text = b"/join #rust\r\nhi there\r\n";
        for &b in text {
            pair.client_writes(&[b]);
            pair.client_send();
        }
        pair.server_read().unwrap();
        assert_eq!(pair.received, text);
        assert_eq!(pair.server.buffer_capacity(), 0);
    }
}

#[test]
fn a_record_split_at_every_byte_boundary_reads_the_same() {
    let _fds = crate::net::test_fds::opening();
    let mut pair = Pair::handshaken(&TLS13);
    let line = b"a line that is long enough to make a record of some size\r\n";
    let mut expected = Vec::new();
    for split in 1.. {
        pair.client_writes(line);
        let record = pair.client_tls();
        if split >= record.len() {
            break;
        }
        pair.sock.inbound.extend(&record[..split]);
        assert_eq!(pair.server_read().unwrap().input, Input::WouldBlock);
        assert_eq!(
            pair.received, expected,
            "nothing before the record is whole"
        );
        assert_eq!(
            pair.server.buffer_capacity(),
            split,
            "holds exactly the partial record"
        );
        pair.sock.inbound.extend(&record[split..]);
        pair.server_read().unwrap();
        expected.extend_from_slice(line);
        assert_eq!(pair.received, expected);
        assert_eq!(pair.server.buffer_capacity(), 0);
    }
    assert!(expected.len() > 50 * line.len());
}

/// The core's queue as it might hand it out: slices of varied sizes over the unsent bytes.
fn slices_of(data: &[u8]) -> Vec<IoSlice<'_>> {
    let sizes = [1, 70, 20_000, 5, 3000, 16 * 1024, 16 * 1024 + 1, 9];
    let mut slices = Vec::new();
    let mut rest = data;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(size.min(rest.len()));
        slices.push(IoSlice::new(head));
        rest = tail;
    }
    slices
}

#[test]
fn large_output_through_a_slow_kernel_arrives_whole_and_in_order() {
    let _fds = crate::net::test_fds::opening();
    for version in [&TLS13, &TLS12] {
        let mut pair = Pair::handshaken(version);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        let mut turns = 0;
        while sent < data.len() || pair.server.has_pending_output() {
            turns += 1;
            assert!(turns < 10_000, "no progress");
            // A kernel taking little at a time, and nothing every third turn.
            pair.sock.write_budget = if turns % 3 == 0 { 0 } else { 1000 };
            let had_pending = pair.server.has_pending_output();
            let pending_before = pair.server.outgoing.len();
            let slices = slices_of(&data[sent..]);
            let (taken, blocked) = pair
                .server
                .write(&mut pair.sock, &slices, &mut pair.shared)
                .unwrap();
            assert!(taken <= data.len() - sent);
            assert_eq!(blocked, pair.server.has_pending_output());
            if had_pending && pending_before > 1000 {
                assert_eq!(
                    (taken, blocked),
                    (0, true),
                    "nothing new while ciphertext waits"
                );
            }
            if !blocked {
                assert_eq!(sent + taken, data.len(), "not blocked means all taken");
            }
            assert!(
                pair.server.outgoing.len() < MAX_RECORD_LEN,
                "at most one record kept"
            );
            sent += taken;
            pair.client_receive();
        }
        assert_eq!(pair.client_got.len(), data.len());
        assert!(
            pair.client_got == data,
            "the client decrypts what was offered, in order"
        );
        assert_eq!(pair.server.buffer_capacity(), 0);
    }
}

#[test]
fn a_kernel_taking_everything_takes_everything_in_one_call() {
    let _fds = crate::net::test_fds::opening();
    let mut pair = Pair::handshaken(&TLS13);
    let data = vec![b'x'; 100_000];
    let slices = slices_of(&data);
    let result = pair.server.write(&mut pair.sock, &slices, &mut pair.shared);
    assert_eq!(result.unwrap(), (data.len(), false));
    pair.client_receive();
    assert!(pair.client_got == data);
}

#[test]
fn close_notify_follows_pending_ciphertext_then_the_client_sees_a_clean_end() {
    let _fds = crate::net::test_fds::opening();
    for version in [&TLS13, &TLS12] {
        let mut pair = Pair::handshaken(version);
        pair.sock.write_budget = 10;
        assert_eq!(pair.server_write(b"*** Bye, alice!\r\n"), (17, true));
        assert!(pair.server.queue_close_notify().unwrap());
        let err = pair
            .server
            .write(&mut pair.sock, &[IoSlice::new(b"x")], &mut pair.shared);
        // Still blocked on the pending bytes; once they are gone, more data is a mistake.
        assert_eq!(err.unwrap(), (0, true));
        let mut turns = 0;
        loop {
            pair.sock.write_budget = 10;
            if pair.server.send_pending(&mut pair.sock).unwrap() {
                break;
            }
            turns += 1;
            assert!(turns < 100);
        }
        assert!(matches!(
            pair.server
                .write(&mut pair.sock, &[IoSlice::new(b"x")], &mut pair.shared),
            Err(TlsError::WriteAfterClose)
        ));
        assert!(pair.client_receive(), "close_notify reached the client");
        assert_eq!(pair.client_got, b"*** Bye, alice!\r\n");
        // Then the TCP close: the client's reader reports a clean end, not a truncation.
        pair.client.read_tls(&mut &[][..]).unwrap();
        pair.client.process_new_packets().unwrap();
        assert_eq!(pair.client.reader().read(&mut [0; 10]).unwrap(), 0);
        assert_eq!(pair.server.buffer_capacity(), 0);
    }
}

#[test]
fn a_peer_close_notify_ends_input_after_its_last_line() {
    let _fds = crate::net::test_fds::opening();
    let mut pair = Pair::handshaken(&TLS13);
    pair.client_writes(b"/quit\r\n");
    pair.client.send_close_notify();
    pair.client_send();
    let outcome = pair.server_read().unwrap();
    assert_eq!(outcome.input, Input::Ended(InputEnd::CloseNotify));
    assert_eq!(pair.received, b"/quit\r\n");
    // Asked again, it stays ended; the server can still answer and close.
    assert_eq!(
        pair.server_read().unwrap().input,
        Input::Ended(InputEnd::CloseNotify)
    );
    assert_eq!(pair.server_write(b"*** Bye\r\n"), (9, false));
    assert!(pair.server.queue_close_notify().unwrap());
    assert!(pair.server.send_pending(&mut pair.sock).unwrap());
    assert!(pair.client_receive());
    assert_eq!(pair.client_got, b"*** Bye\r\n");
}

#[test]
fn a_tcp_eof_ends_input() {
    let _fds = crate::net::test_fds::opening();
    let mut pair = Pair::handshaken(&TLS12);
    pair.client_writes(b"half a li");
    pair.client_send();
    pair.sock.eof = true;
    assert_eq!(
        pair.server_read().unwrap().input,
        Input::Ended(InputEnd::Eof)
    );
    assert_eq!(pair.received, b"half a li");
}

#[test]
fn plain_text_on_the_tls_port_is_recognised_by_its_first_byte() {
    let _fds = crate::net::test_fds::opening();
    let mut pair = Pair::new(&TLS13);
    pair.sock.inbound.extend(b"nick alice\r\n");
    assert!(matches!(pair.server_read(), Err(TlsError::NotTls(b'n'))));
    assert!(pair.sock.outbound.is_empty(), "nothing was sent");
}

#[test]
fn garbage_after_a_handshake_byte_is_an_error_with_an_alert() {
    let _fds = crate::net::test_fds::opening();
    let mut pair = Pair::new(&TLS13);
    // A whole ClientHello record whose body is nonsense.
    let hello = [
        0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef,
    ];
    pair.sock.inbound.extend(hello);
    let err = pair.server_read().unwrap_err();
    assert!(matches!(err, TlsError::Protocol(_)), "{err:?}");
    assert_eq!(
        pair.sock.outbound.first(),
        Some(&0x15),
        "a TLS alert went out"
    );
}

#[test]
fn an_oversized_record_is_an_error_not_buffering() {
    let _fds = crate::net::test_fds::opening();
    let mut pair = Pair::handshaken(&TLS13);
    // Longer than any record of ours can be, but under rustls's own header limit.
    pair.sock.read_limit = 1000;
    pair.sock.inbound.extend([0x17, 0x03, 0x03, 0x42, 0x00]);
    pair.sock.inbound.extend(vec![0; 0x4200]);
    let err = pair.server_read().unwrap_err();
    assert!(matches!(err, TlsError::TooLarge), "{err:?}");
    // Beyond rustls's limit: refused from the header.
    let mut pair = Pair::handshaken(&TLS13);
    pair.sock.inbound.extend([0x17, 0x03, 0x03, 0xff, 0xff]);
    assert!(matches!(pair.server_read(), Err(TlsError::Protocol(_))));
}

#[test]
fn a_never_ending_handshake_message_is_cut_at_one_record() {
    let _fds = crate::net::test_fds::opening();
    let mut pair = Pair::new(&TLS13);
    pair.sock.read_limit = 4096;
    // A ClientHello announcing 64 KiB, sent in full-size handshake records.
    for i in 0..5 {
        pair.sock.inbound.extend([0x16, 0x03, 0x01, 0x40, 0x00]);
        let mut payload = vec![0u8; 0x4000];
        if i == 0 {
            payload[..4].copy_from_slice(&[0x01, 0x00, 0xff, 0xff]);
        }
        pair.sock.inbound.extend(payload);
    }
    let err = pair.server_read().unwrap_err();
    assert!(matches!(err, TlsError::TooLarge), "{err:?}");
    assert!(
        !pair.sock.inbound.is_empty(),
        "stopped before reading it all"
    );
}

#[test]
fn a_scratch_buffer_shorter_than_a_record_is_refused() {
    let _fds = crate::net::test_fds::opening();
    let mut pair = Pair::new(&TLS13);
    pair.client_send();
    let mut scratch = vec![0; 16 * 1024];
    let result = pair
        .server
        .read(&mut pair.sock, &mut scratch, &mut pair.shared, |_| {});
    assert!(matches!(result, Err(TlsError::ScratchTooSmall(16384))));
}
