//! Telnet: every option refused (RFC 1143), IAC IAC, subnegotiation skipped, IP/AYT/EC/EL,
//! commands split across writes, and no telnet bytes ever sent to a plain netcat client.

mod support;

use support::{
    AO, AYT, BRK, DO, DONT, EC, EL, IAC, IP, NOP, SB, SE, Server, WILL, WONT, chat,
    connect_to_prompt, login, login_seen_by, pair,
};

#[test]
fn will_is_answered_dont() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    for opt in [0x01u8, 0x03, 0x18, 0x1F, 0x22, 0x00, 0xFE] {
        alice.send(&[IAC, WILL, opt]);
        alice.expect_raw(&[IAC, DONT, opt]);
    }
    alice.expect_silence();
}

#[test]
fn do_is_answered_wont() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    for opt in [0x01u8, 0x03, 0x05, 0x18, 0x00, 0xFE] {
        alice.send(&[IAC, DO, opt]);
        alice.expect_raw(&[IAC, WONT, opt]);
    }
    alice.expect_silence();
}

#[test]
fn do_timing_mark_is_answered_wont() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    alice.send(&[IAC, DO, 0x06]);
    alice.expect_raw(&[IAC, WONT, 0x06]);
    alice.expect_silence();
}

#[test]
fn repeated_requests_are_each_answered() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    alice.send(&[
        IAC, WILL, 0x01, IAC, WILL, 0x01, IAC, DO, 0x03, IAC, DO, 0x03,
    ]);
    alice.expect_raw(&[
        IAC, DONT, 0x01, IAC, DONT, 0x01, IAC, WONT, 0x03, IAC, WONT, 0x03,
    ]);
    alice.expect_silence();
}

#[test]
fn wont_and_dont_are_never_answered() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    alice.send(&[
        IAC, WONT, 0x01, IAC, DONT, 0x01, IAC, WONT, 0x06, IAC, DONT, 0x18,
    ]);
    alice.expect_silence();
}

#[test]
fn negotiation_in_the_middle_of_a_line() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut bytes = b"hel".to_vec();
    bytes.extend_from_slice(&[IAC, WILL, 0x01]);
    bytes.extend_from_slice(b"lo");
    bytes.extend_from_slice(&[IAC, DO, 0x03]);
    bytes.extend_from_slice(b"!\r\n");
    alice.send(&bytes);
    alice.expect_raw(&[IAC, DONT, 0x01, IAC, WONT, 0x03]);
    bob.expect_line(&chat("alice", "hello!"));
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn iac_iac_is_data_byte_ff() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut bytes = b"a".to_vec();
    bytes.extend_from_slice(&[IAC, IAC]);
    bytes.extend_from_slice(b"b\r\n");
    alice.send(&bytes);
    // 0xFF alone is not valid UTF-8: it reaches others as U+FFFD.
    bob.expect_line(&chat("alice", "a\u{FFFD}b"));
    alice.expect_silence();
}

#[test]
fn iac_iac_split_across_writes() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(&[b'x', IAC]);
    alice.send(&[IAC, b'y', b'\r', b'\n']);
    bob.expect_line(&chat("alice", "x\u{FFFD}y"));
}

#[test]
fn subnegotiation_is_skipped_whole() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut bytes = b"hello".to_vec();
    bytes.extend_from_slice(&[IAC, SB, 0x18, 0x00]);
    bytes.extend_from_slice(b"xterm-256color");
    bytes.extend_from_slice(&[IAC, SE]);
    bytes.extend_from_slice(b" world\r\n");
    alice.send(&bytes);
    bob.expect_line(&chat("alice", "hello world"));
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn subnegotiation_with_escaped_iac_inside() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut bytes = b"a".to_vec();
    bytes.extend_from_slice(&[IAC, SB, 0x1F, 0x00, IAC, IAC, 0x00, 0x18, IAC, SE]);
    bytes.extend_from_slice(b"b\r\n");
    alice.send(&bytes);
    bob.expect_line(&chat("alice", "ab"));
    alice.expect_silence();
}

#[test]
fn long_subnegotiation_is_skipped_and_not_counted_as_line() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut bytes = b"start ".to_vec();
    bytes.extend_from_slice(&[IAC, SB, 0x18]);
    // Longer than --max-line, with line ends inside: all of it is subnegotiation data.
    for _ in 0..200 {
        bytes.extend_from_slice(b"0123456789abcdefghijklmnopqrstuvwxyz\r\n/quit\r\n");
    }
    bytes.extend_from_slice(&[IAC, SE]);
    bytes.extend_from_slice(b"end\r\n");
    alice.send(&bytes);
    bob.expect_line(&chat("alice", "start end"));
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn subnegotiation_split_across_writes() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"hi ");
    alice.send(&[IAC]);
    alice.send(&[SB]);
    alice.send(&[0x18, 0x01, b'a', b'b']);
    alice.send(&[b'c', IAC]);
    alice.send(&[SE]);
    alice.send(b"there\r\n");
    bob.expect_line(&chat("alice", "hi there"));
    alice.expect_silence();
}

#[test]
fn putty_opening_burst_is_refused_and_login_works() {
    let server = Server::start(&[]);
    let mut bob = login(server.addr, "bob");
    let mut alice = connect_to_prompt(&server);
    alice.send(&[
        0xFF, 0xFB, 0x1F, 0xFF, 0xFB, 0x20, 0xFF, 0xFB, 0x18, 0xFF, 0xFB, 0x27, 0xFF, 0xFD, 0x01,
        0xFF, 0xFB, 0x03, 0xFF, 0xFD, 0x03,
    ]);
    alice.send(&[0xFF, 0xFA, 0x1F, 0x00, 0x50, 0x00, 0x18, 0xFF, 0xF0]);
    alice.expect_raw(&[
        0xFF, 0xFE, 0x1F, 0xFF, 0xFE, 0x20, 0xFF, 0xFE, 0x18, 0xFF, 0xFE, 0x27, 0xFF, 0xFC, 0x01,
        0xFF, 0xFE, 0x03, 0xFF, 0xFC, 0x03,
    ]);
    alice.send_line("alice");
    alice.expect_line("*** Welcome, alice! You are in #lobby.");
    alice.nick = "alice".into();
    bob.expect_line("*** alice joined #lobby");
    alice.send_line("hi from putty");
    bob.expect_line(&chat("alice", "hi from putty"));
    alice.expect_silence();
}

#[test]
fn putty_burst_and_nickname_in_one_write() {
    let server = Server::start(&[]);
    let mut alice = connect_to_prompt(&server);
    let mut bytes = vec![
        0xFF, 0xFB, 0x1F, 0xFF, 0xFB, 0x20, 0xFF, 0xFB, 0x18, 0xFF, 0xFB, 0x27, 0xFF, 0xFD, 0x01,
        0xFF, 0xFB, 0x03, 0xFF, 0xFD, 0x03, 0xFF, 0xFA, 0x1F, 0x00, 0x50, 0x00, 0x18, 0xFF, 0xF0,
    ];
    bytes.extend_from_slice(b"alice\r\n");
    alice.send(&bytes);
    alice.expect_raw(&[
        0xFF, 0xFE, 0x1F, 0xFF, 0xFE, 0x20, 0xFF, 0xFE, 0x18, 0xFF, 0xFE, 0x27, 0xFF, 0xFC, 0x01,
        0xFF, 0xFE, 0x03, 0xFF, 0xFC, 0x03,
    ]);
    alice.expect_line("*** Welcome, alice! You are in #lobby.");
}

#[test]
fn plain_session_never_receives_telnet_bytes() {
    let server = Server::start(&[]);
    let mut bob = login(server.addr, "bob");
    let mut alice = login_seen_by(server.addr, "alice", &mut [&mut bob]);
    alice.send_line("hello");
    bob.expect_line(&chat("alice", "hello"));
    bob.send_line("/help");
    bob.expect_line("*** Commands:");
    for c in [&mut alice, &mut bob] {
        c.send_line("/who");
        c.read_until(|l| l.starts_with("*** 2 users in #lobby"));
        c.send_line("/rooms");
        c.read_until(|l| l.starts_with("***   #lobby"));
        c.send_line("/bogus");
        c.read_until(|l| l.starts_with("!!! Unknown command"));
        c.expect_silence();
    }
    alice.send_line("/quit");
    alice.expect_line("*** Bye, alice!");
    alice.expect_closed();
    bob.expect_line("*** alice left #lobby");
    bob.expect_silence();
    for (name, c) in [("alice", &alice), ("bob", &bob)] {
        let telnet: Vec<usize> = c
            .received()
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == IAC)
            .map(|(i, _)| i)
            .collect();
        assert!(
            telnet.is_empty(),
            "{name} received IAC bytes at offsets {telnet:?}"
        );
        assert!(
            std::str::from_utf8(c.received()).is_ok(),
            "{name} received non-UTF-8 bytes"
        );
    }
}

#[test]
fn interrupt_process_acts_as_quit() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(&[IAC, IP]);
    alice.expect_line("*** Bye, alice!");
    assert_eq!(alice.expect_closed(), Vec::<String>::new());
    bob.expect_line("*** alice left #lobby");
    bob.expect_silence();
}

#[test]
fn interrupt_process_with_pending_text_acts_as_quit() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut bytes = b"half typed".to_vec();
    bytes.extend_from_slice(&[IAC, IP]);
    alice.send(&bytes);
    alice.expect_line("*** Bye, alice!");
    alice.expect_closed();
    bob.expect_line("*** alice left #lobby");
    bob.expect_silence();
}

#[test]
fn interrupt_process_before_login_says_bye() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send(&[IAC, IP]);
    c.expect_line("*** Bye!");
    assert_eq!(c.expect_closed(), Vec::<String>::new());
}

#[test]
fn are_you_there_is_answered() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(&[IAC, AYT]);
    alice.expect_line("*** yes, still here");
    alice.expect_silence();
    // AYT in the middle of a line does not disturb the line.
    let mut bytes = b"ab".to_vec();
    bytes.extend_from_slice(&[IAC, AYT]);
    bytes.extend_from_slice(b"cd\r\n");
    alice.send(&bytes);
    alice.expect_line("*** yes, still here");
    bob.expect_line(&chat("alice", "abcd"));
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn erase_character_erases_one_character() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut bytes = b"abcd".to_vec();
    bytes.extend_from_slice(&[IAC, EC]);
    bytes.extend_from_slice(b"e\r\n");
    alice.send(&bytes);
    bob.expect_line(&chat("alice", "abce"));
    let mut bytes = "na\u{ef}".as_bytes().to_vec();
    bytes.extend_from_slice(&[IAC, EC]);
    bytes.extend_from_slice(b"ve\r\n");
    alice.send(&bytes);
    bob.expect_line(&chat("alice", "nave"));
    alice.expect_silence();
}

#[test]
fn erase_line_erases_the_pending_line() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut bytes = b"oops, wrong text".to_vec();
    bytes.extend_from_slice(&[IAC, EL]);
    bytes.extend_from_slice(b"right text\r\n");
    alice.send(&bytes);
    bob.expect_line(&chat("alice", "right text"));
    // Erasing the whole line leaves an empty line: nothing is sent.
    let mut bytes = b"/quit".to_vec();
    bytes.extend_from_slice(&[IAC, EL]);
    bytes.extend_from_slice(b"\r\n");
    alice.send(&bytes);
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn other_two_byte_commands_are_dropped() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut bytes = b"a".to_vec();
    bytes.extend_from_slice(&[IAC, NOP]);
    bytes.push(b'b');
    bytes.extend_from_slice(&[IAC, AO]);
    bytes.push(b'c');
    bytes.extend_from_slice(&[IAC, BRK]);
    bytes.push(b'd');
    bytes.extend_from_slice(&[IAC, 0xF9]); // GA
    bytes.push(b'e');
    bytes.extend_from_slice(&[IAC, 0xF2]); // DM
    bytes.extend_from_slice(b"f\r\n");
    alice.send(&bytes);
    bob.expect_line(&chat("alice", "abcdef"));
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn command_split_across_writes() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(&[IAC]);
    alice.send(&[AYT]);
    alice.expect_line("*** yes, still here");
    alice.send(&[IAC]);
    alice.send(&[WILL]);
    alice.send(&[0x01]);
    alice.expect_raw(&[IAC, DONT, 0x01]);
    alice.send(&[b'x', b'y', IAC]);
    alice.send(&[EC, b'z', b'\r', b'\n']);
    bob.expect_line(&chat("alice", "xz"));
    alice.send(&[IAC]);
    alice.send(&[IP]);
    alice.expect_line("*** Bye, alice!");
    alice.expect_closed();
    bob.expect_line("*** alice left #lobby");
}

#[test]
fn telnet_commands_between_cr_and_lf() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut bytes = b"one\r".to_vec();
    bytes.extend_from_slice(&[IAC, NOP]);
    bytes.extend_from_slice(b"\ntwo\r\n");
    alice.send(&bytes);
    bob.expect_line(&chat("alice", "one"));
    bob.expect_line(&chat("alice", "two"));
    alice.expect_silence();
    bob.expect_silence();
}
