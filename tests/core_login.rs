//! Connect and login, driven through the model shell.

mod model;

use model::*;
use natter::proto::names::parse_room;

// Connect and login
// ---------------------------------------------------------------------------------------------

#[test]
fn banner_then_prompt() {
    let mut h = Harness::new();
    let a = h.connect();
    assert_eq!(h.text(a), BANNER);
    assert_eq!(h.chat().connection_count(), 1);
    assert_eq!(h.chat().nick(a), None);
    assert_eq!(h.chat().room_of(a), None);
    assert!(h.chat().wants_input(a));
}

#[test]
fn motd_replaces_the_banner() {
    let mut h = Harness::with_config(Settings {
        banner: vec!["Hello".into(), "".into(), "Be nice".into()],
        ..test_config()
    });
    let a = h.connect();
    assert_eq!(
        h.text(a),
        "*** Hello\r\n*** \r\n*** Be nice\r\nYour nickname: "
    );
}

#[test]
fn login_by_name_tells_the_room() {
    let mut h = Harness::new();
    let alice = h.login("alice");
    assert_eq!(h.chat().nick(alice), Some("alice"));
    assert_eq!(h.chat().room_of(alice), Some("lobby"));
    let bob = h.connect();
    h.take(bob);
    h.send(bob, "bob\r\n");
    assert_eq!(h.text(bob), "*** Welcome, bob! You are in #lobby.\r\n");
    assert_eq!(h.text(alice), "*** bob joined #lobby\r\n");
}

#[test]
fn login_by_nick_command_and_trimmed_name() {
    let mut h = Harness::new();
    let a = h.connect();
    h.take(a);
    h.send(a, "/NiCk   Alice\r\n");
    assert_eq!(h.text(a), "*** Welcome, Alice! You are in #lobby.\r\n");
    let b = h.connect();
    h.take(b);
    h.send(b, "   bob  \r\n");
    assert_eq!(h.text(b), "*** Welcome, bob! You are in #lobby.\r\n");
    assert_eq!(h.text(a), "*** bob joined #lobby\r\n");
}

#[test]
fn default_room_from_config() {
    let mut h = Harness::with_config(Settings {
        default_room: parse_room("#Den").unwrap(),
        ..test_config()
    });
    let a = h.login("alice");
    assert_eq!(h.chat().room_of(a), Some("Den"));
    h.send(a, "/who\r\n");
    assert_eq!(h.text(a), "*** 1 user in #Den: alice\r\n");
}

#[test]
fn guests_count_up_and_skip_taken_names() {
    let mut h = Harness::new();
    let g1 = h.connect();
    h.take(g1);
    h.send(g1, "\r\n");
    assert_eq!(h.text(g1), "*** Welcome, guest1! You are in #lobby.\r\n");
    let g2 = h.connect();
    h.take(g2);
    h.send(g2, "   \r\n");
    assert_eq!(h.text(g2), "*** Welcome, guest2! You are in #lobby.\r\n");
    // Someone takes the next guest name (in another case) before it is given out.
    h.login("GUEST3");
    let g4 = h.connect();
    h.take(g4);
    h.send(g4, "\n");
    assert_eq!(h.text(g4), "*** Welcome, guest4! You are in #lobby.\r\n");
    // guest1 leaves: its name is never given out again.
    h.send(g1, "/quit\r\n");
    let g5 = h.connect();
    h.take(g5);
    h.send(g5, "\r\n");
    assert_eq!(h.text(g5), "*** Welcome, guest5! You are in #lobby.\r\n");
    // A guest can rename itself like anyone.
    h.clear();
    h.send(g5, "/nick guest1\r\n");
    assert_eq!(h.text(g5), "*** You are now known as guest1.\r\n");
}

#[test]
fn taken_nick_is_refused_without_regard_to_case() {
    let mut h = Harness::new();
    let alice = h.login("alice");
    let b = h.connect();
    h.take(b);
    h.send(b, "ALICE\r\n");
    assert_eq!(
        h.text(b),
        format!("!!! The nickname ALICE is already taken.\r\n{PROMPT}")
    );
    h.send(b, "/nick aLiCe\r\n");
    assert_eq!(
        h.text(b),
        format!("!!! The nickname aLiCe is already taken.\r\n{PROMPT}")
    );
    assert!(h.take(alice).is_empty());
    h.send(b, "bob\r\n");
    assert_eq!(h.text(b), "*** Welcome, bob! You are in #lobby.\r\n");
}

#[test]
fn invalid_nicks_get_an_error_and_the_prompt() {
    let mut h = Harness::new();
    let a = h.connect();
    h.take(a);
    let long = "a".repeat(25);
    for bad in [
        "9lives", "a b", &long, "é", "_x", "-a", "a.b", "//foo", "a\x07",
    ] {
        h.send(a, format!("{bad}\r\n"));
        assert_eq!(h.text(a), format!("{INVALID_NICK}{PROMPT}"), "{bad:?}");
        h.send(a, format!("/nick {bad}\r\n"));
        assert_eq!(
            h.text(a),
            format!("{INVALID_NICK}{PROMPT}"),
            "/nick {bad:?}"
        );
    }
    let longest = "a".repeat(24);
    h.send(a, format!("{longest}\r\n"));
    assert_eq!(
        h.text(a),
        format!("*** Welcome, {longest}! You are in #lobby.\r\n")
    );
}

#[test]
fn only_nick_help_and_quit_work_before_login() {
    let mut h = Harness::new();
    let a = h.connect();
    h.take(a);
    for line in [
        "/who",
        "/rooms",
        "/join rust",
        "/join",
        "/msg hi",
        "/msg",
        "/me waves",
        "/me",
        "/w bob hi",
        "/whisper bob",
        "/JOIN rust",
    ] {
        h.send(a, format!("{line}\r\n"));
        assert_eq!(h.text(a), format!("{CHOOSE_FIRST}{PROMPT}"), "{line:?}");
    }
    h.send(a, "/nick\r\n");
    assert_eq!(h.text(a), format!("!!! Usage: /nick NAME\r\n{PROMPT}"));
    h.send(a, "/dance now\r\n");
    assert_eq!(
        h.text(a),
        format!("!!! Unknown command /dance. Type /help for a list.\r\n{PROMPT}")
    );
    h.send(a, "/help\r\n");
    assert_eq!(h.text(a), format!("{HELP}{PROMPT}"));
    assert_eq!(h.chat().nick(a), None);
    h.send(a, "/quit going already\r\nignored\r\n");
    assert_eq!(h.text(a), "*** Bye!\r\n");
    assert_eq!(h.close_reason(a), Some(CloseReason::Quit));
    assert_eq!(h.chat().connection_count(), 0);
}

#[test]
fn http_request_as_first_line_closes() {
    for request in [
        "GET / HTTP/1.1",
        "POST /chat?x=1 HTTP/1.0",
        "PRI * HTTP/2.0",
    ] {
        let mut h = Harness::new();
        let watcher = h.login("watcher");
        let a = h.connect();
        h.take(a);
        h.send(a, format!("{request}\r\nHost: x\r\n\r\nbody\r\n"));
        assert_eq!(
            h.text(a),
            "!!! This is a chat server, not a web server.\r\n",
            "{request}"
        );
        assert_eq!(h.close_reason(a), Some(CloseReason::HttpRequest));
        assert!(h.take(watcher).is_empty());
        assert_eq!(h.chat().connection_count(), 1);
    }
}

#[test]
fn http_request_line_later_is_just_text() {
    let mut h = Harness::new();
    let a = h.connect();
    h.take(a);
    h.send(a, "9\r\nGET / HTTP/1.1\r\n");
    assert_eq!(
        h.text(a),
        format!("{INVALID_NICK}{PROMPT}{INVALID_NICK}{PROMPT}")
    );
    assert!(h.closes().is_empty());
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "GET / HTTP/1.1\r\n");
    assert_eq!(h.text(bob), "<alice> GET / HTTP/1.1\r\n");
    assert!(h.closes().is_empty());
}

// ---------------------------------------------------------------------------------------------
