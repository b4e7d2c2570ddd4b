//! What other users' terminals receive: control characters, escape sequences and bidi
//! controls are removed from relayed text (messages, /me, whispers, quit reasons).

mod support;

use support::{Client, Server, chat, login, login_seen_by};

/// alice (sender) and bob (receiver), both in #lobby.
fn pair(server: &Server) -> (Client, Client) {
    let mut bob = login(server.addr, "bob");
    let alice = login_seen_by(server.addr, "alice", &mut [&mut bob]);
    (alice, bob)
}

/// alice sends `raw` + CR LF; bob must receive `<alice> expected`.
fn relays(raw: &[u8], expected: &str) {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    let mut line = raw.to_vec();
    line.extend_from_slice(b"\r\n");
    alice.send(&line);
    bob.expect_line(&chat("alice", expected));
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn csi_color_sequence_removed_whole() {
    relays(b"a\x1b[31mred\x1b[0m b", "ared b");
}

#[test]
fn csi_with_parameters_and_intermediates_removed_whole() {
    relays(b"x\x1b[1;32;40my\x1b[?25lz\x1b[ q!", "xyz!");
}

#[test]
fn csi_clear_screen_removed_whole() {
    relays(b"\x1b[2Jclear\x1b[H", "clear");
}

#[test]
fn osc_terminated_by_bel_removed_whole() {
    relays(b"x\x1b]0;evil title\x07y", "xy");
}

#[test]
fn osc_terminated_by_st_removed_whole() {
    relays(
        b"x\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\y",
        "xlinky",
    );
}

#[test]
fn two_byte_escape_removed_whole() {
    relays(b"a\x1bcb\x1b7c\x1b8d", "abcd");
}

#[test]
fn c0_controls_removed() {
    relays(b"a\x01b\x02c\x07d\x0Be\x0Cf\x1Fg\x00h\x0Ei", "abcdefghi");
}

#[test]
fn tab_becomes_one_space() {
    relays(b"a\tb\t\tc", "a b  c");
}

#[test]
fn c1_controls_removed() {
    relays("x\u{80}y\u{85}z\u{90}w\u{9F}v\u{9B}".as_bytes(), "xyzwv");
}

#[test]
fn non_control_latin1_kept() {
    relays("a\u{A0}b\u{A9}\u{FF}".as_bytes(), "a\u{A0}b\u{A9}\u{FF}");
}

#[test]
fn bidi_controls_removed() {
    relays(
        "a\u{202A}b\u{202B}c\u{202C}d\u{202D}e\u{202E}f\u{2066}g\u{2067}h\u{2068}i\u{2069}j"
            .as_bytes(),
        "abcdefghij",
    );
}

#[test]
fn message_empty_after_cleaning_is_not_sent() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"\x1b[31m\x01\x1b]0;t\x07\xE2\x80\xAE\r\n");
    alice.send(b"/msg \x1b[0m\r\n");
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn whitespace_only_message_is_not_sent() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"   \t \r\n");
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn me_is_cleaned() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"/me waves\x1b[5m\x07 \xE2\x80\xAEhi\r\n");
    bob.expect_line("* alice waves hi");
    alice.expect_silence();
}

#[test]
fn me_empty_after_cleaning_is_not_sent_to_others() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"/me \x1b[2J\x1b[H\r\n");
    // Whatever alice is told, bob hears nothing.
    alice.send_line("/w alice done");
    alice.read_until(|l| l == "-> *alice* done" || l == "*alice* done");
    bob.expect_silence();
}

#[test]
fn whisper_is_cleaned() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"/w bob psst\x1b[8m hidden\x1b]52;c;ZXZpbA==\x07\x01\r\n");
    let echo = alice.read_line();
    assert!(
        echo.starts_with("-> *bob* "),
        "unexpected whisper echo {echo:?}"
    );
    bob.expect_line("*alice* psst hidden");
    bob.expect_silence();
}

#[test]
fn quit_reason_is_cleaned() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"/quit bye\x1b[31m now\x07\xE2\x80\xAE\r\n");
    alice.expect_line("*** Bye, alice!");
    alice.expect_closed();
    bob.expect_line("*** alice left #lobby (bye now)");
    bob.expect_silence();
}

#[test]
fn quit_reason_empty_after_cleaning_is_no_reason() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"/quit \x1b[31m\x07\r\n");
    alice.expect_line("*** Bye, alice!");
    alice.expect_closed();
    bob.expect_line("*** alice left #lobby");
}

#[test]
fn sanitised_chat_does_not_affect_the_next_line() {
    // An unterminated escape sequence must not swallow the next line.
    let server = Server::start(&[]);
    let (mut alice, mut bob) = pair(&server);
    alice.send(b"one\x1b]0;unterminated\r\ntwo\r\n");
    bob.expect_line(&chat("alice", "one"));
    bob.expect_line(&chat("alice", "two"));
    alice.send(b"three\x1b[12\r\nfour\x1b\r\nfive\r\n");
    bob.expect_line(&chat("alice", "three"));
    bob.expect_line(&chat("alice", "four"));
    bob.expect_line(&chat("alice", "five"));
    alice.expect_silence();
    bob.expect_silence();
}
