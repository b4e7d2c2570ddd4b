//! Session start: banner, prompt, nickname choice, guests, errors before login, HTTP request
//! lines, join and leave notices around a session.

mod support;

use support::{BANNER, Client, PROMPT, Server, login, login_seen_by};

const INVALID_NICK: &str =
    "!!! Invalid nickname: use 1 to 24 letters, digits, _ or -, starting with a letter.";
const CHOOSE_FIRST: &str =
    "!!! Choose a nickname first: type a nickname, or an empty line for a guest name.";
const NOT_WEB: &str = "!!! This is a chat server, not a web server.";

/// Connects and consumes the banner and the first prompt.
fn connect_to_prompt(server: &Server) -> Client {
    let mut c = Client::connect(server.addr);
    c.skip_banner();
    c
}

#[test]
fn banner_then_prompt_exact_bytes() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr);
    let mut expected = Vec::new();
    for line in BANNER {
        expected.extend_from_slice(line.as_bytes());
        expected.extend_from_slice(b"\r\n");
    }
    expected.extend_from_slice(PROMPT.as_bytes());
    c.expect_raw(&expected);
    c.send_line("alice");
    c.expect_line("*** Welcome, alice! You are in #lobby.");
    c.nick = "alice".into();
    c.expect_silence();
}

#[test]
fn login_by_name_announced_to_room() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    let mut bob = login(server.addr, "Bob");
    alice.expect_line("*** Bob joined #lobby");
    // Bob gets only his welcome line.
    bob.expect_silence();
    alice.expect_silence();
}

#[test]
fn login_with_nick_command() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    let mut c = connect_to_prompt(&server);
    c.send_line("/nick bob");
    c.expect_line("*** Welcome, bob! You are in #lobby.");
    c.nick = "bob".into();
    alice.expect_line("*** bob joined #lobby");
    c.expect_silence();
}

#[test]
fn login_nick_command_is_case_insensitive_and_allows_spaces() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("/NICK    carol");
    c.expect_line("*** Welcome, carol! You are in #lobby.");
}

#[test]
fn login_name_is_trimmed_of_surrounding_spaces() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("   dave  ");
    c.expect_line("*** Welcome, dave! You are in #lobby.");
}

#[test]
fn empty_line_logs_in_as_guests_counting_up() {
    let server = Server::start(&[]);
    let mut g1 = connect_to_prompt(&server);
    g1.send_line("");
    g1.expect_line("*** Welcome, guest1! You are in #lobby.");
    let mut g2 = connect_to_prompt(&server);
    g2.send_line("");
    g2.expect_line("*** Welcome, guest2! You are in #lobby.");
    g1.expect_line("*** guest2 joined #lobby");
}

#[test]
fn guest_counter_skips_a_taken_guest_name() {
    let server = Server::start(&[]);
    let mut g1 = connect_to_prompt(&server);
    g1.send_line("");
    g1.expect_line("*** Welcome, guest1! You are in #lobby.");
    let mut g2 = connect_to_prompt(&server);
    g2.send_line("");
    g2.expect_line("*** Welcome, guest2! You are in #lobby.");
    let _manual = login(server.addr, "guest3");
    let mut g4 = connect_to_prompt(&server);
    g4.send_line("");
    g4.expect_line("*** Welcome, guest4! You are in #lobby.");
}

#[test]
fn guest_counter_skips_a_taken_guest_name_in_other_case() {
    let server = Server::start(&[]);
    let _manual = login(server.addr, "GUEST1");
    let mut g = connect_to_prompt(&server);
    g.send_line("");
    g.expect_line("*** Welcome, guest2! You are in #lobby.");
}

#[test]
fn guest_name_is_never_given_out_twice() {
    let server = Server::start(&[]);
    let mut g1 = connect_to_prompt(&server);
    g1.send_line("");
    g1.expect_line("*** Welcome, guest1! You are in #lobby.");
    g1.send_line("/quit");
    g1.expect_line("*** Bye, guest1!");
    g1.expect_closed();
    let mut g2 = connect_to_prompt(&server);
    g2.send_line("");
    g2.expect_line("*** Welcome, guest2! You are in #lobby.");
}

#[test]
fn taken_nickname_case_insensitive_then_retry() {
    let server = Server::start(&[]);
    let _alice = login(server.addr, "alice");
    let mut c = connect_to_prompt(&server);
    c.send_line("alice");
    c.expect_line("!!! The nickname alice is already taken.");
    c.expect_prompt();
    c.send_line("ALICE");
    let err = c.read_line();
    assert!(
        err == "!!! The nickname ALICE is already taken."
            || err == "!!! The nickname alice is already taken.",
        "unexpected reply to a nickname taken in another case: {err:?}"
    );
    c.expect_prompt();
    c.send_line("/nick Alice");
    let err = c.read_line();
    assert!(
        err.starts_with("!!! The nickname ") && err.ends_with(" is already taken."),
        "unexpected reply to /nick with a taken nickname: {err:?}"
    );
    c.expect_prompt();
    c.send_line("bob");
    c.expect_line("*** Welcome, bob! You are in #lobby.");
}

#[test]
fn invalid_nicknames_get_error_and_prompt() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    let too_long = "a".repeat(25);
    for bad in [
        too_long.as_str(),
        "1abc",
        "_abc",
        "-abc",
        "bad!name",
        "bad.name",
        "bad name",
        "caf\u{e9}",
        "#room",
    ] {
        c.send_line(bad);
        c.expect_line(INVALID_NICK);
        c.expect_prompt();
    }
    c.send_line("/nick 9lives");
    c.expect_line(INVALID_NICK);
    c.expect_prompt();
    let longest = format!("z{}", "9_-a".repeat(5)) + "xyz";
    assert_eq!(longest.len(), 24);
    c.send_line(&longest);
    c.expect_line(&format!("*** Welcome, {longest}! You are in #lobby."));
}

#[test]
fn single_letter_nickname_is_valid() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("x");
    c.expect_line("*** Welcome, x! You are in #lobby.");
}

#[test]
fn nick_command_without_name_before_login_is_usage_error() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("/nick");
    c.expect_line("!!! Usage: /nick NAME");
    c.expect_prompt();
    c.send_line("eve");
    c.expect_line("*** Welcome, eve! You are in #lobby.");
}

#[test]
fn help_before_login_then_prompt() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("/help");
    c.expect_line("*** Commands:");
    // The help lines, then the prompt again: read lines while they are help lines.
    let mut lines = Vec::new();
    while let Some(line) = c.read_line_or_prompt() {
        assert!(
            line.starts_with("*** "),
            "non-notice line in /help: {line:?}"
        );
        lines.push(line);
    }
    assert!(
        lines.len() >= 5,
        "expected several help lines, got {lines:#?}"
    );
    c.send_line("frank");
    c.expect_line("*** Welcome, frank! You are in #lobby.");
}

#[test]
fn other_commands_before_login_need_a_nickname_first() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    for cmd in [
        "/who",
        "/join #dev",
        "/msg hi",
        "/me waves",
        "/rooms",
        "/w bob hi",
    ] {
        c.send_line(cmd);
        c.expect_line(CHOOSE_FIRST);
        c.expect_prompt();
    }
    c.send_line("gina");
    c.expect_line("*** Welcome, gina! You are in #lobby.");
}

#[test]
fn quit_before_login_says_bye_and_closes() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("/quit");
    c.expect_line("*** Bye!");
    assert_eq!(c.expect_closed(), Vec::<String>::new());
}

#[test]
fn quit_with_reason_before_login_says_bye_and_closes() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("/QUIT never mind");
    c.expect_line("*** Bye!");
    assert_eq!(c.expect_closed(), Vec::<String>::new());
}

#[test]
fn http_get_request_line_is_refused_and_closed() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("GET / HTTP/1.1");
    c.expect_line(NOT_WEB);
    assert_eq!(c.expect_closed(), Vec::<String>::new());
}

#[test]
fn http_post_request_line_is_refused_and_closed() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("POST /x HTTP/1.0");
    c.expect_line(NOT_WEB);
    assert_eq!(c.expect_closed(), Vec::<String>::new());
}

#[test]
fn http_request_with_headers_in_same_write_is_refused_and_nothing_else_happens() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    let mut c = connect_to_prompt(&server);
    c.send(b"POST /chat HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 5\r\n\r\nhello");
    c.expect_line(NOT_WEB);
    assert_eq!(c.expect_closed(), Vec::<String>::new());
    // Nobody logged in from those header lines (no guest, no "Host:" user).
    alice.expect_silence();
}

#[test]
fn http_request_line_sent_before_the_banner_is_read_is_refused() {
    let server = Server::start(&[]);
    let mut c = Client::connect(server.addr);
    c.send_line("GET /index.html HTTP/1.1");
    c.skip_banner();
    c.expect_line(NOT_WEB);
    assert_eq!(c.expect_closed(), Vec::<String>::new());
}

#[test]
fn nickname_get_alone_is_fine() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("GET");
    c.expect_line("*** Welcome, GET! You are in #lobby.");
}

#[test]
fn http_like_line_after_first_line_is_only_a_bad_nickname() {
    // Only the first line a connection sends is checked for an HTTP request line.
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("1bad");
    c.expect_line(INVALID_NICK);
    c.expect_prompt();
    c.send_line("GET / HTTP/1.1");
    c.expect_line(INVALID_NICK);
    c.expect_prompt();
}

#[test]
fn connection_closed_without_quit_is_announced() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    let bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    drop(bob);
    alice.expect_line("*** bob left #lobby (connection closed)");
    alice.expect_silence();
}

#[test]
fn half_close_without_quit_is_announced() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    let mut bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    bob.shutdown_write();
    alice.expect_line("*** bob left #lobby (connection closed)");
}

#[test]
fn disconnect_before_login_announces_nothing() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    let c = connect_to_prompt(&server);
    drop(c);
    // The next login is the first thing alice hears about.
    let _bob = login(server.addr, "bob");
    alice.expect_line("*** bob joined #lobby");
    alice.expect_silence();
}

#[test]
fn nickname_is_free_again_after_quit() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    alice.send_line("/quit");
    alice.expect_line("*** Bye, alice!");
    alice.expect_closed();
    let mut again = login(server.addr, "Alice");
    again.expect_silence();
}

#[test]
fn http_detection_needs_an_upper_case_method() {
    let server = Server::start(&[]);
    let mut c = connect_to_prompt(&server);
    c.send_line("get / HTTP/1.1");
    c.expect_line(INVALID_NICK);
    c.expect_prompt();
}

#[test]
fn http_connect_and_options_request_lines_are_refused() {
    let server = Server::start(&[]);
    for line in ["CONNECT example.com:443 HTTP/1.1", "OPTIONS * HTTP/1.1"] {
        let mut c = connect_to_prompt(&server);
        c.send_line(line);
        c.expect_line(NOT_WEB);
        assert_eq!(c.expect_closed(), Vec::<String>::new(), "after {line:?}");
    }
}
