//! Every row of the contract's commands table, usage errors, unknown commands, case and
//! spacing rules.

mod support;

use support::{Client, Server, chat, login, login_seen_by};

/// Logs in alice and bob (both in #lobby) and consumes the join notice.
fn two(server: &Server) -> (Client, Client) {
    let mut alice = login(server.addr, "alice");
    let bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    (alice, bob)
}

/// Logs in alice, bob and carol (all in #lobby) and consumes the join notices.
fn three(server: &Server) -> (Client, Client, Client) {
    let (mut alice, mut bob) = two(server);
    let carol = login_seen_by(server.addr, "carol", &mut [&mut alice, &mut bob]);
    (alice, bob, carol)
}

// ---- /nick ---------------------------------------------------------------------------------

#[test]
fn nick_change_is_told_to_self_and_room() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/nick Alicia");
    alice.expect_line("*** You are now known as Alicia.");
    alice.nick = "Alicia".into();
    bob.expect_line("*** alice is now known as Alicia");
    alice.expect_silence();
    bob.expect_silence();
    // The new name is the one others see and can whisper to; the old one is free.
    alice.send_line("hello");
    bob.expect_line(&chat("Alicia", "hello"));
    bob.send_line("/w alice hi");
    bob.expect_line("!!! No such user: alice.");
    bob.send_line("/w alicia hi");
    bob.expect_line("-> *Alicia* hi");
    alice.expect_line("*bob* hi");
}

#[test]
fn nick_not_told_to_other_rooms() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    bob.send_line("/join #elsewhere");
    bob.expect_line("*** You joined #elsewhere (1 user)");
    alice.expect_line("*** bob left #lobby");
    alice.send_line("/nick al");
    alice.expect_line("*** You are now known as al.");
    alice.nick = "al".into();
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn nick_to_own_nick_is_an_error() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/nick alice");
    alice.expect_line("!!! You are already alice.");
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn nick_taken_invalid_and_missing() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/nick bob");
    alice.expect_line("!!! The nickname bob is already taken.");
    alice.send_line("/nick BOB");
    let err = alice.read_line();
    assert!(
        err == "!!! The nickname BOB is already taken."
            || err == "!!! The nickname bob is already taken.",
        "unexpected reply to /nick with a nickname taken in another case: {err:?}"
    );
    alice.send_line("/nick 2cool");
    alice.expect_line(
        "!!! Invalid nickname: use 1 to 24 letters, digits, _ or -, starting with a letter.",
    );
    alice.send_line(&format!("/nick {}", "n".repeat(25)));
    alice.expect_line(
        "!!! Invalid nickname: use 1 to 24 letters, digits, _ or -, starting with a letter.",
    );
    alice.send_line("/nick");
    alice.expect_line("!!! Usage: /nick NAME");
    alice.send_line("/nick   ");
    alice.expect_line("!!! Usage: /nick NAME");
    alice.expect_silence();
    bob.expect_silence();
}

// ---- /join ---------------------------------------------------------------------------------

#[test]
fn join_creates_room_and_tells_old_and_new_room() {
    let server = Server::start(&[]);
    let (mut alice, mut bob, mut carol) = three(&server);
    alice.send_line("/join #dev");
    alice.expect_line("*** You joined #dev (1 user)");
    bob.expect_line("*** alice left #lobby");
    carol.expect_line("*** alice left #lobby");
    bob.send_line("/join dev");
    bob.expect_line("*** You joined #dev (2 users)");
    alice.expect_line("*** bob joined #dev");
    carol.expect_line("*** bob left #lobby");
    carol.send_line("/join DEV");
    carol.expect_line("*** You joined #dev (3 users)");
    alice.expect_line("*** carol joined #dev");
    bob.expect_line("*** carol joined #dev");
    // Messages now stay inside #dev.
    carol.send_line("in dev");
    alice.expect_line(&chat("carol", "in dev"));
    bob.expect_line(&chat("carol", "in dev"));
    for c in [&mut alice, &mut bob, &mut carol] {
        c.expect_silence();
    }
}

#[test]
fn join_back_to_default_room() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/join x");
    alice.expect_line("*** You joined #x (1 user)");
    bob.expect_line("*** alice left #lobby");
    alice.send_line("/join #lobby");
    alice.expect_line("*** You joined #lobby (2 users)");
    bob.expect_line("*** alice joined #lobby");
}

#[test]
fn room_is_shown_as_its_creator_typed_it() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/join #DevRoom");
    alice.expect_line("*** You joined #DevRoom (1 user)");
    bob.expect_line("*** alice left #lobby");
    bob.send_line("/join devroom");
    bob.expect_line("*** You joined #DevRoom (2 users)");
    alice.expect_line("*** bob joined #DevRoom");
    bob.send_line("/who");
    bob.expect_line("*** 2 users in #DevRoom: alice, bob");
}

#[test]
fn join_own_room_is_an_error() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/join #lobby");
    alice.expect_line("!!! You are already in #lobby.");
    alice.send_line("/join LOBBY");
    alice.expect_line("!!! You are already in #lobby.");
    alice.send_line("/join #Dev");
    alice.expect_line("*** You joined #Dev (1 user)");
    bob.expect_line("*** alice left #lobby");
    alice.send_line("/join dev");
    alice.expect_line("!!! You are already in #Dev.");
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn join_usage_and_invalid_room_names() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    const INVALID: &str =
        "!!! Invalid room name: use 1 to 32 letters, digits, _, - or . (a leading # is optional).";
    alice.send_line("/join");
    alice.expect_line("!!! Usage: /join ROOM");
    alice.send_line("/join    ");
    alice.expect_line("!!! Usage: /join ROOM");
    let long = "r".repeat(33);
    for bad in ["bad!room", "#a/b", "caf\u{e9}", "##x", long.as_str()] {
        alice.send_line(&format!("/join {bad}"));
        alice.expect_line(INVALID);
    }
    alice.expect_silence();
    let longest = format!("{}_-.9", "R".repeat(28));
    assert_eq!(longest.len(), 32);
    alice.send_line(&format!("/join {longest}"));
    alice.expect_line(&format!("*** You joined #{longest} (1 user)"));
}

#[test]
fn room_removed_when_last_member_leaves_but_default_room_stays() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    alice.send_line("/join tmp");
    alice.expect_line("*** You joined #tmp (1 user)");
    alice.send_line("/rooms");
    alice.expect_lines(&[
        "*** 2 rooms:",
        "***   #tmp (1 user)",
        "***   #lobby (0 users)",
    ]);
    alice.send_line("/join lobby");
    alice.expect_line("*** You joined #lobby (1 user)");
    alice.send_line("/rooms");
    alice.expect_lines(&["*** 1 room:", "***   #lobby (1 user)"]);
    alice.expect_silence();
    // The room is really gone: a new creator's spelling is used.
    let mut bob = login_seen_by(server.addr, "bob", &mut [&mut alice]);
    bob.send_line("/join TMP");
    bob.expect_line("*** You joined #TMP (1 user)");
    alice.expect_line("*** bob left #lobby");
}

#[test]
fn room_removed_when_last_member_quits() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    bob.send_line("/join gone");
    bob.expect_line("*** You joined #gone (1 user)");
    alice.expect_line("*** bob left #lobby");
    bob.send_line("/quit");
    bob.expect_line("*** Bye, bob!");
    bob.expect_closed();
    alice.send_line("/rooms");
    alice.expect_lines(&["*** 1 room:", "***   #lobby (1 user)"]);
}

// ---- /rooms --------------------------------------------------------------------------------

#[test]
fn rooms_largest_first_then_by_name_case_insensitive() {
    let server = Server::start(&[]);
    let mut users: Vec<Client> = Vec::new();
    let plan = [
        ("u1", "big"),
        ("u2", "big"),
        ("u3", "big"),
        ("u4", "Mid"),
        ("u5", "Mid"),
        ("u6", "alpha"),
        ("u7", "Beta"),
        ("u8", "lobby"),
    ];
    for (nick, room) in plan {
        let mut c = login(server.addr, nick);
        if room != "lobby" {
            c.send_line(&format!("/join {room}"));
            let reply = c.read_line();
            assert!(
                reply.starts_with(&format!("*** You joined #{room} (")),
                "unexpected /join reply: {reply:?}"
            );
        }
        users.push(c);
    }
    let asker = &mut users[7];
    asker.expect_silence();
    asker.send_line("/rooms");
    asker.expect_lines(&[
        "*** 5 rooms:",
        "***   #big (3 users)",
        "***   #Mid (2 users)",
        "***   #alpha (1 user)",
        "***   #Beta (1 user)",
        "***   #lobby (1 user)",
    ]);
    asker.expect_silence();
}

#[test]
fn rooms_list_stops_at_100_rooms() {
    let server = Server::start(&[]);
    let mut users: Vec<Client> = Vec::new();
    for i in 0..101 {
        let mut c = login(server.addr, &format!("u{i}"));
        let room = format!("r{i:03}");
        c.send_line(&format!("/join {room}"));
        c.expect_line(&format!("*** You joined #{room} (1 user)"));
        users.push(c);
    }
    let asker = &mut users[0];
    asker.send_line("/rooms");
    asker.expect_line("*** 102 rooms:");
    for i in 0..100 {
        asker.expect_line(&format!("***   #r{i:03} (1 user)"));
    }
    asker.expect_line("***   ... and 2 more");
    asker.expect_silence();
}

// ---- /who ----------------------------------------------------------------------------------

#[test]
fn who_lists_members_in_join_order() {
    let server = Server::start(&[]);
    let (mut alice, mut bob, mut carol) = three(&server);
    carol.send_line("/who");
    carol.expect_line("*** 3 users in #lobby: alice, bob, carol");
    alice.send_line("/WHO");
    alice.expect_line("*** 3 users in #lobby: alice, bob, carol");
    alice.send_line("/join solo");
    alice.expect_line("*** You joined #solo (1 user)");
    bob.expect_line("*** alice left #lobby");
    carol.expect_line("*** alice left #lobby");
    alice.send_line("/who");
    alice.expect_line("*** 1 user in #solo: alice");
    bob.send_line("/who");
    bob.expect_line("*** 2 users in #lobby: bob, carol");
}

#[test]
fn who_stops_at_100_names() {
    let server = Server::start(&[]);
    let mut users: Vec<Client> = (0..102)
        .map(|i| login(server.addr, &format!("n{i}")))
        .collect();
    let names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    let asker = &mut users[101];
    asker.send_line("/who");
    asker.expect_line(&format!(
        "*** 102 users in #lobby: {}, ... and 2 more",
        names.join(", ")
    ));
}

// ---- chat ----------------------------------------------------------------------------------

#[test]
fn msg_goes_to_others_without_echo() {
    let server = Server::start(&[]);
    let (mut alice, mut bob, mut carol) = three(&server);
    alice.send_line("/msg hello there");
    bob.expect_line(&chat("alice", "hello there"));
    carol.expect_line(&chat("alice", "hello there"));
    alice.expect_silence();
}

#[test]
fn msg_without_text_is_usage_error() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/msg");
    alice.expect_line("!!! Usage: /msg TEXT");
    alice.send_line("/msg   ");
    alice.expect_line("!!! Usage: /msg TEXT");
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn plain_line_is_chat_message() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("hi bob, how are you?");
    bob.expect_line(&chat("alice", "hi bob, how are you?"));
    alice.expect_silence();
}

#[test]
fn chat_does_not_reach_other_rooms() {
    let server = Server::start(&[]);
    let (mut alice, mut bob, mut carol) = three(&server);
    carol.send_line("/join side");
    carol.expect_line("*** You joined #side (1 user)");
    alice.expect_line("*** carol left #lobby");
    bob.expect_line("*** carol left #lobby");
    alice.send_line("lobby only");
    bob.expect_line(&chat("alice", "lobby only"));
    alice.expect_silence();
    carol.expect_silence();
}

#[test]
fn double_slash_escapes_a_leading_slash() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("//not a command");
    bob.expect_line(&chat("alice", "/not a command"));
    alice.send_line("//quit");
    bob.expect_line(&chat("alice", "/quit"));
    alice.send_line("///");
    bob.expect_line(&chat("alice", "//"));
    alice.expect_silence();
}

#[test]
fn empty_line_is_ignored() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send(b"\r\n\r\n\n");
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn text_is_relayed_as_typed() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("a  b   c <tag> *x* -> \u{e9}\u{4e2d}\u{1f600} /not");
    bob.expect_line(&chat(
        "alice",
        "a  b   c <tag> *x* -> \u{e9}\u{4e2d}\u{1f600} /not",
    ));
}

// ---- /me -----------------------------------------------------------------------------------

#[test]
fn me_is_an_action_to_others() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/me waves at everyone");
    bob.expect_line("* alice waves at everyone");
    alice.expect_silence();
    alice.send_line("/me");
    alice.expect_line("!!! Usage: /me TEXT");
    alice.expect_silence();
    bob.expect_silence();
}

// ---- /whisper and /w -----------------------------------------------------------------------

#[test]
fn whisper_reaches_only_target_and_echoes_to_sender() {
    let server = Server::start(&[]);
    let (mut alice, mut bob, mut carol) = three(&server);
    alice.send_line("/whisper bob psst, a secret");
    alice.expect_line("-> *bob* psst, a secret");
    bob.expect_line("*alice* psst, a secret");
    carol.expect_silence();
    bob.send_line("/w alice ok");
    bob.expect_line("-> *alice* ok");
    alice.expect_line("*bob* ok");
    alice.expect_silence();
    bob.expect_silence();
    carol.expect_silence();
}

#[test]
fn whisper_uses_registered_spelling_and_crosses_rooms() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    let mut bob = login_seen_by(server.addr, "BoB", &mut [&mut alice]);
    bob.send_line("/join far");
    bob.expect_line("*** You joined #far (1 user)");
    alice.expect_line("*** BoB left #lobby");
    alice.send_line("/w bob across rooms");
    alice.expect_line("-> *BoB* across rooms");
    bob.expect_line("*alice* across rooms");
}

#[test]
fn whisper_unknown_target_and_usage() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/w nobody hello");
    alice.expect_line("!!! No such user: nobody.");
    alice.send_line("/whisper nobody hello");
    alice.expect_line("!!! No such user: nobody.");
    alice.send_line("/whisper");
    alice.expect_line("!!! Usage: /whisper NICK TEXT");
    alice.send_line("/whisper bob");
    alice.expect_line("!!! Usage: /whisper NICK TEXT");
    alice.send_line("/w");
    alice.expect_line("!!! Usage: /whisper NICK TEXT");
    alice.send_line("/w bob");
    alice.expect_line("!!! Usage: /whisper NICK TEXT");
    alice.expect_silence();
    bob.expect_silence();
}

// ---- /help ---------------------------------------------------------------------------------

#[test]
fn help_lists_every_command() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    alice.send_line("/help");
    alice.expect_line("*** Commands:");
    // Collect the help lines up to the sync probe's answer.
    alice.send_line("/w alice end-of-help");
    let mut lines = Vec::new();
    loop {
        let line = alice.read_line();
        if line.ends_with("end-of-help") {
            alice.read_line();
            break;
        }
        lines.push(line);
    }
    assert!(lines.len() >= 5, "expected several help lines: {lines:#?}");
    for line in &lines {
        assert!(line.starts_with("*** "), "unexpected help line {line:?}");
    }
    let text = lines.join("\n");
    for cmd in [
        "/nick", "/join", "/rooms", "/who", "/msg", "/me", "/whisper", "/w", "/help", "/quit",
    ] {
        assert!(
            mentions(&text, cmd),
            "/help does not mention {cmd}: {lines:#?}"
        );
    }
}

/// Whether `text` contains `cmd` as a whole word (not only as a prefix of a longer command).
fn mentions(text: &str, cmd: &str) -> bool {
    text.match_indices(cmd).any(|(i, _)| {
        !text[i + cmd.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[test]
fn help_is_case_insensitive() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    alice.send_line("/HeLp");
    alice.expect_line("*** Commands:");
}

// ---- /quit ---------------------------------------------------------------------------------

#[test]
fn quit_without_reason() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    bob.send_line("/quit");
    bob.expect_line("*** Bye, bob!");
    assert_eq!(bob.expect_closed(), Vec::<String>::new());
    alice.expect_line("*** bob left #lobby");
    alice.expect_silence();
}

#[test]
fn quit_with_reason() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    bob.send_line("/quit gotta go, bye all");
    bob.expect_line("*** Bye, bob!");
    assert_eq!(bob.expect_closed(), Vec::<String>::new());
    alice.expect_line("*** bob left #lobby (gotta go, bye all)");
    alice.expect_silence();
}

#[test]
fn quit_with_blank_reason_is_like_no_reason() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    bob.send_line("/quit    ");
    bob.expect_line("*** Bye, bob!");
    bob.expect_closed();
    alice.expect_line("*** bob left #lobby");
}

#[test]
fn lines_after_quit_in_same_write_are_not_processed() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    bob.send(b"/quit\r\nafter quit\r\n");
    bob.expect_line("*** Bye, bob!");
    assert_eq!(bob.expect_closed(), Vec::<String>::new());
    alice.expect_line("*** bob left #lobby");
    alice.expect_silence();
}

// ---- case, spacing, unknown ----------------------------------------------------------------

#[test]
fn commands_are_case_insensitive() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/ME dances");
    bob.expect_line("* alice dances");
    alice.send_line("/Msg hey");
    bob.expect_line(&chat("alice", "hey"));
    alice.send_line("/W bob quiet");
    alice.expect_line("-> *bob* quiet");
    bob.expect_line("*alice* quiet");
    alice.send_line("/WHISPER bob quieter");
    alice.expect_line("-> *bob* quieter");
    bob.expect_line("*alice* quieter");
    alice.send_line("/ROOMS");
    alice.expect_lines(&["*** 1 room:", "***   #lobby (2 users)"]);
    alice.send_line("/JoIn Up");
    alice.expect_line("*** You joined #Up (1 user)");
    bob.expect_line("*** alice left #lobby");
    alice.send_line("/NiCk Al");
    alice.expect_line("*** You are now known as Al.");
    alice.send_line("/Quit Bye");
    alice.expect_line("*** Bye, Al!");
    alice.expect_closed();
}

#[test]
fn multiple_spaces_before_arguments() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/me     stretches");
    bob.expect_line("* alice stretches");
    alice.send_line("/msg    spaced");
    bob.expect_line(&chat("alice", "spaced"));
    alice.send_line("/w    bob psst");
    alice.expect_line("-> *bob* psst");
    bob.expect_line("*alice* psst");
    alice.send_line("/join     #spacey");
    alice.expect_line("*** You joined #spacey (1 user)");
    bob.expect_line("*** alice left #lobby");
    alice.send_line("/nick    alice2");
    alice.expect_line("*** You are now known as alice2.");
    alice.send_line("/quit     so long");
    alice.expect_line("*** Bye, alice2!");
    alice.expect_closed();
}

#[test]
fn unknown_command() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/foo bar baz");
    alice.expect_line("!!! Unknown command /foo. Type /help for a list.");
    alice.send_line("/whisperer bob hi");
    alice.expect_line("!!! Unknown command /whisperer. Type /help for a list.");
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn slash_alone_is_not_a_chat_message() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/");
    let reply = alice.read_line();
    assert!(
        reply.starts_with("!!! "),
        "expected an error for `/`, got {reply:?}"
    );
    alice.expect_silence();
    bob.expect_silence();
}

#[test]
fn nick_change_of_case_only_is_allowed() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/nick ALICE");
    alice.expect_line("*** You are now known as ALICE.");
    bob.expect_line("*** alice is now known as ALICE");
}

#[test]
fn old_nick_is_free_after_a_change() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("/nick al");
    alice.expect_line("*** You are now known as al.");
    bob.expect_line("*** alice is now known as al");
    bob.send_line("/nick alice");
    bob.expect_line("*** You are now known as alice.");
    alice.expect_line("*** bob is now known as alice");
}

#[test]
fn whisper_to_self() {
    let server = Server::start(&[]);
    let mut alice = login(server.addr, "alice");
    alice.send_line("/w ALICE note to self");
    let lines = alice.read_lines(2);
    assert!(
        lines.contains(&"*alice* note to self".to_string())
            && lines.contains(&"-> *alice* note to self".to_string()),
        "unexpected self-whisper lines {lines:?}"
    );
}

#[test]
fn http_like_line_after_login_is_chat() {
    let server = Server::start(&[]);
    let (mut alice, mut bob) = two(&server);
    alice.send_line("GET / HTTP/1.1");
    bob.expect_line(&chat("alice", "GET / HTTP/1.1"));
    alice.expect_silence();
}

#[test]
fn join_of_a_big_room_is_quiet_with_quiet_above() {
    let server = Server::start(&["--quiet-above", "2"]);
    let (mut alice, mut bob) = two(&server);
    let mut carol = login(server.addr, "carol");
    carol.send_line("/join side");
    carol.expect_line("*** You joined #side (1 user)");
    // carol left a room of 3 (counting her): quiet. Joining back makes 3 again: quiet.
    carol.send_line("/join lobby");
    carol.expect_line("*** You joined #lobby (3 users)");
    alice.expect_silence();
    bob.expect_silence();
}
