//! Input framing: line ends, split writes, overlong lines, UTF-8 decoding, BS and DEL.

mod support;

use support::{Client, Server, chat, connect_to_prompt, login, pair};

const INVALID_NICK: &str =
    "!!! Invalid nickname: use 1 to 24 letters, digits, _ or -, starting with a letter.";

fn too_long(limit: usize) -> String {
    format!("!!! Line too long: the limit is {limit} bytes, and that line was discarded.")
}

#[test]
fn lf_only_line_ends() {
    let server = Server::start(&[]);
    let mut bob = login(server.addr, "bob");
    let mut alice = connect_to_prompt(&server);
    alice.send(b"alice\n");
    alice.expect_line("*** Welcome, alice! You are in #lobby.");
    alice.nick = "alice".into();
    bob.expect_line("*** alice joined #lobby");
    alice.send(b"one\ntwo\n/me three\n");
    bob.expect_lines(&[
        &chat("alice", "one"),
        &chat("alice", "two"),
        "* alice three",
    ]);
    alice.expect_silence();
}

#[test]
fn crlf_line_ends() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"one\r\ntwo\r\n");
    bob.expect_lines(&[&chat("alice", "one"), &chat("alice", "two")]);
    alice.expect_silence();
}

#[test]
fn cr_nul_line_ends() {
    let server = Server::start(&[]);
    let mut bob = login(server.addr, "bob");
    let mut alice = connect_to_prompt(&server);
    alice.send(b"1abc\r\0");
    alice.expect_line(INVALID_NICK);
    alice.expect_prompt();
    // If the NUL were taken as data it would start the next line and make it invalid.
    alice.send(b"alice\r\0");
    alice.expect_line("*** Welcome, alice! You are in #lobby.");
    alice.nick = "alice".into();
    bob.expect_line("*** alice joined #lobby");
    alice.send(b"one\r\0two\r\0");
    bob.expect_lines(&[&chat("alice", "one"), &chat("alice", "two")]);
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn lone_cr_followed_by_another_line() {
    let server = Server::start(&[]);
    let mut bob = login(server.addr, "bob");
    let mut alice = connect_to_prompt(&server);
    alice.send(b"1abc\ralice\r\n");
    alice.expect_line(INVALID_NICK);
    alice.expect_prompt();
    alice.expect_line("*** Welcome, alice! You are in #lobby.");
    alice.nick = "alice".into();
    bob.expect_line("*** alice joined #lobby");
    alice.send(b"one\rtwo\rthree\r\n");
    bob.expect_lines(&[
        &chat("alice", "one"),
        &chat("alice", "two"),
        &chat("alice", "three"),
    ]);
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn lone_cr_at_end_of_write_is_handled_without_waiting() {
    let server = Server::start(&[]);
    let mut alice = connect_to_prompt(&server);
    alice.send(b"1abc\r");
    alice.expect_line(INVALID_NICK);
    alice.expect_prompt();
}

#[test]
fn cr_and_lf_in_separate_writes_make_one_line_end_at_prompt() {
    let server = Server::start(&[]);
    let mut alice = connect_to_prompt(&server);
    alice.send(b"1abc\r");
    alice.expect_line(INVALID_NICK);
    alice.expect_prompt();
    // The LF completes the CR LF: it must not count as an empty line (which would log in a
    // guest) nor produce an error.
    alice.send(b"\n");
    alice.send(b"alice\r\n");
    alice.expect_line("*** Welcome, alice! You are in #lobby.");
}

#[test]
fn cr_and_lf_in_separate_writes_after_login() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"one\r");
    bob.expect_line(&chat("alice", "one"));
    alice.send(b"\ntwo\r");
    bob.expect_line(&chat("alice", "two"));
    alice.send(b"\n");
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn cr_then_nul_in_separate_writes() {
    let server = Server::start(&[]);
    let mut alice = connect_to_prompt(&server);
    alice.send(b"1abc\r");
    alice.expect_line(INVALID_NICK);
    alice.expect_prompt();
    alice.send(b"\0");
    alice.send(b"alice\r\n");
    alice.expect_line("*** Welcome, alice! You are in #lobby.");
}

#[test]
fn whole_session_in_one_byte_writes() {
    let server = Server::start(&[]);
    let mut bob = login(server.addr, "bob");
    let mut alice = connect_to_prompt(&server);
    let bytewise = |c: &mut Client, bytes: &[u8]| {
        for b in bytes {
            c.send(&[*b]);
        }
    };
    bytewise(&mut alice, b"alice\r\n");
    alice.expect_line("*** Welcome, alice! You are in #lobby.");
    alice.nick = "alice".into();
    bob.expect_line("*** alice joined #lobby");
    bytewise(&mut alice, "hello w\u{f6}rld \u{1f600}\r\n".as_bytes());
    bob.expect_line(&chat("alice", "hello w\u{f6}rld \u{1f600}"));
    bytewise(&mut alice, b"/who\r\n");
    alice.expect_line("*** 2 users in #lobby: bob, alice");
    bytewise(&mut alice, b"/me nods\n");
    bob.expect_line("* alice nods");
    bytewise(&mut alice, b"/w bob hi\r\0");
    alice.expect_line("-> *bob* hi");
    bob.expect_line("*alice* hi");
    bytewise(&mut alice, b"/quit later\r\n");
    alice.expect_line("*** Bye, alice!");
    assert_eq!(alice.expect_closed(), Vec::<String>::new());
    bob.expect_line("*** alice left #lobby (later)");
}

#[test]
fn two_hundred_lines_in_one_write_arrive_in_order() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut burst = Vec::new();
    for i in 0..200 {
        burst.extend_from_slice(format!("line {i}\r\n").as_bytes());
    }
    alice.send(&burst);
    for i in 0..200 {
        bob.expect_line(&chat("alice", &format!("line {i}")));
    }
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn line_at_the_default_limit_is_accepted() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let text = "x".repeat(512);
    alice.send_line(&text);
    bob.expect_line(&chat("alice", &text));
    alice.expect_silence();
}

#[test]
fn line_over_the_default_limit_is_discarded_with_one_error() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut bytes = b"before\r\n".to_vec();
    bytes.extend_from_slice("y".repeat(513).as_bytes());
    bytes.extend_from_slice(b"\r\nafter\r\n");
    alice.send(&bytes);
    alice.expect_line(&too_long(512));
    bob.expect_lines(&[&chat("alice", "before"), &chat("alice", "after")]);
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn very_long_line_in_pieces_gives_one_error_and_is_discarded_to_its_end() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    // 5000 bytes over several writes; the tail after the limit must not leak as a message.
    alice.send("a".repeat(2000).as_bytes());
    alice.send("b".repeat(2000).as_bytes());
    alice.send(b"/quit leaked");
    alice.send("c".repeat(1000).as_bytes());
    alice.send(b"\r\nstill here\r\n");
    alice.expect_line(&too_long(512));
    bob.expect_line(&chat("alice", "still here"));
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn max_line_flag_sets_the_limit() {
    let server = Server::start(&["--max-line", "16"]);
    let (mut alice, mut bob) = pair(&server);
    alice.send_line("0123456789abcdef");
    bob.expect_line(&chat("alice", "0123456789abcdef"));
    alice.send_line("0123456789abcdefg");
    alice.expect_line(&too_long(16));
    alice.send_line("short again");
    bob.expect_line(&chat("alice", "short again"));
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn overlong_line_at_the_prompt_gets_error_and_prompt() {
    let server = Server::start(&["--max-line", "16"]);
    let mut alice = connect_to_prompt(&server);
    alice.send_line("abcdefghijklmnopq");
    alice.expect_line(&too_long(16));
    alice.expect_prompt();
    alice.send_line("alice");
    alice.expect_line("*** Welcome, alice! You are in #lobby.");
}

#[test]
fn invalid_utf8_becomes_replacement_character() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"caf\xE9 ok\r\n");
    bob.expect_line(&chat("alice", "caf\u{FFFD} ok"));
    alice.send(b"\x80x\xC0y\r\n");
    bob.expect_line(&chat("alice", "\u{FFFD}x\u{FFFD}y"));
    alice.expect_silence();
}

#[test]
fn truncated_utf8_sequence_is_one_replacement_character() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    // E2 82 is the start of a 3-byte sequence cut short (Unicode's "maximal subpart" rule).
    alice.send(b"a\xE2\x82 z\r\n");
    bob.expect_line(&chat("alice", "a\u{FFFD} z"));
}

#[test]
fn utf8_character_split_across_writes_is_kept() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"price: \xE2");
    alice.send(b"\x82");
    alice.send(b"\xAC 5\r\n");
    bob.expect_line(&chat("alice", "price: \u{20AC} 5"));
}

#[test]
fn backspace_and_delete_erase_previous_character() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"abc\x08d\r\n");
    bob.expect_line(&chat("alice", "abd"));
    alice.send(b"abc\x7Fd\r\n");
    bob.expect_line(&chat("alice", "abd"));
    alice.send(b"helo\x08\x08llo\r\n");
    bob.expect_line(&chat("alice", "hello"));
    alice.expect_silence();
}

#[test]
fn backspace_erases_a_whole_multibyte_character() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send("caf\u{e9}\x08e\r\n".as_bytes());
    bob.expect_line(&chat("alice", "cafe"));
    alice.send("x\u{20AC}\x7Fy\r\n".as_bytes());
    bob.expect_line(&chat("alice", "xy"));
    alice.send("ok \u{1F600}\x08!\r\n".as_bytes());
    bob.expect_line(&chat("alice", "ok !"));
    alice.expect_silence();
}

#[test]
fn backspace_on_empty_line_does_nothing() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"\x08\x08hi\r\n");
    bob.expect_line(&chat("alice", "hi"));
    alice.send(b"ab\x08\x08\x08\x08cd\r\n");
    bob.expect_line(&chat("alice", "cd"));
    // Erasing everything leaves an empty line, which is ignored.
    alice.send(b"xy\x7F\x7F\r\n");
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn backspace_in_separate_writes_character_mode() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    for chunk in [&b"t"[..], b"y", b"p", b"o", b"\x7F", b"e", b"\r", b"\0"] {
        alice.send(chunk);
    }
    bob.expect_line(&chat("alice", "type"));
}

#[test]
fn backspace_at_the_prompt() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send(b"alicx\x08e\r\n");
    c.expect_line("*** Welcome, alice! You are in #lobby.");
}

#[test]
fn backspace_erasing_the_slash_makes_chat() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"/\x08quit\r\n");
    bob.expect_line(&chat("alice", "quit"));
    alice.expect_silence();
}

#[test]
fn every_split_point_gives_the_same_result() {
    const IAC: u8 = 0xFF;
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut script = b"he".to_vec();
    script.extend_from_slice(&[IAC, 0xFB, 0x01]); // WILL ECHO
    script.extend_from_slice("l\u{e9}".as_bytes());
    script.extend_from_slice(&[IAC, 0xFA, 0x18, 0x00, b'v', b't', IAC, 0xF0]); // SB ... SE
    script.extend_from_slice(b"lo\r\na\x1b[31mb\r\0");
    script.extend_from_slice(&[IAC, IAC]);
    script.extend_from_slice(b"c\x08d\r\n");
    for split in 1..script.len() {
        alice.send(&script[..split]);
        alice.send(&script[split..]);
        alice.expect_raw(&[IAC, 0xFE, 0x01]);
        bob.expect_lines(&[
            &chat("alice", "hel\u{e9}lo"),
            &chat("alice", "ab"),
            &chat("alice", "\u{FFFD}d"),
        ]);
        alice.expect_silence();
        bob.expect_silence();
    }
}
