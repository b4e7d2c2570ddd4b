//! Every command, driven through the model shell.

mod model;

use model::*;

// Commands
// ---------------------------------------------------------------------------------------------

#[test]
fn nick_change() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "/nick Alicia\r\n");
    assert_eq!(h.text(alice), "*** You are now known as Alicia.\r\n");
    assert_eq!(h.text(bob), "*** alice is now known as Alicia\r\n");
    assert_eq!(h.chat().nick(alice), Some("Alicia"));
    // Own nick exactly: an error. Another case of it: a rename.
    h.send(alice, "/nick Alicia\r\n");
    assert_eq!(h.text(alice), "!!! You are already Alicia.\r\n");
    h.send(alice, "/nick ALICIA\r\n");
    assert_eq!(h.text(alice), "*** You are now known as ALICIA.\r\n");
    assert_eq!(h.text(bob), "*** Alicia is now known as ALICIA\r\n");
    // Taken, invalid, missing.
    h.send(alice, "/nick BOB\r\n");
    assert_eq!(h.text(alice), "!!! The nickname BOB is already taken.\r\n");
    h.send(alice, "/nick 1x\r\n");
    assert_eq!(h.text(alice), INVALID_NICK);
    h.send(alice, "/nick\r\n");
    assert_eq!(h.text(alice), "!!! Usage: /nick NAME\r\n");
    h.send(alice, "/nick    \r\n");
    assert_eq!(h.text(alice), "!!! Usage: /nick NAME\r\n");
    assert!(h.take(bob).is_empty());
    // The old name is free again, the new one is taken.
    let c = h.connect();
    h.take(c);
    h.send(c, "alice\r\n");
    assert_eq!(h.text(c), "*** Welcome, alice! You are in #lobby.\r\n");
    let d = h.connect();
    h.take(d);
    h.send(d, "aliciA\r\n");
    assert_eq!(
        h.text(d),
        format!("!!! The nickname aliciA is already taken.\r\n{PROMPT}")
    );
}

#[test]
fn join_leave_and_room_removal() {
    let mut h = Harness::new();
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    h.send(alice, "/join #Rust\r\n");
    assert_eq!(h.text(alice), "*** You joined #Rust (1 user)\r\n");
    assert_eq!(h.text(bob), "*** alice left #lobby\r\n");
    assert_eq!(h.text(carol), "*** alice left #lobby\r\n");
    assert_eq!(h.chat().room_of(alice), Some("Rust"));
    assert_eq!(h.chat().room_count(), 2);
    // Shown as the creator typed it, whatever the joiner types.
    h.send(bob, "/join rust\r\n");
    assert_eq!(h.text(bob), "*** You joined #Rust (2 users)\r\n");
    assert_eq!(h.text(alice), "*** bob joined #Rust\r\n");
    assert_eq!(h.text(carol), "*** bob left #lobby\r\n");
    // The room you are in.
    h.send(bob, "/join RUST\r\n");
    assert_eq!(h.text(bob), "!!! You are already in #Rust.\r\n");
    h.send(carol, "/join #lobby\r\n");
    assert_eq!(h.text(carol), "!!! You are already in #lobby.\r\n");
    // Invalid and missing names.
    for bad in ["a/b", "##x", "#", &"r".repeat(33), "a b"] {
        h.send(carol, format!("/join {bad}\r\n"));
        assert_eq!(h.text(carol), INVALID_ROOM, "{bad:?}");
    }
    h.send(carol, "/join\r\n");
    assert_eq!(h.text(carol), "!!! Usage: /join ROOM\r\n");
    assert!(h.take(alice).is_empty() && h.take(bob).is_empty());
    // Chat stays in the room.
    h.send(alice, "hi rust\r\n");
    assert_eq!(h.text(bob), "<alice> hi rust\r\n");
    assert!(h.take(carol).is_empty());
    // Everyone leaves #Rust: it is removed; the default room stays even when empty.
    h.send(alice, "/join lobby\r\n");
    assert_eq!(h.text(alice), "*** You joined #lobby (2 users)\r\n");
    assert_eq!(h.text(bob), "*** alice left #Rust\r\n");
    assert_eq!(h.text(carol), "*** alice joined #lobby\r\n");
    h.send(bob, "/join LOBBY\r\n");
    assert_eq!(h.text(bob), "*** You joined #lobby (3 users)\r\n");
    assert_eq!(h.chat().room_count(), 1);
    for id in [alice, bob, carol] {
        h.send(id, "/join elsewhere\r\n");
    }
    assert_eq!(h.chat().room_count(), 2);
    h.clear();
    h.send(alice, "/rooms\r\n");
    assert_eq!(
        h.text(alice),
        lines(&[
            "*** 2 rooms:",
            "***   #elsewhere (3 users)",
            "***   #lobby (0 users)"
        ])
    );
    // A room re-created after removal takes the new creator's spelling.
    h.send(alice, "/join Rust\r\n");
    assert_eq!(h.text(alice), "*** You joined #Rust (1 user)\r\n");
}

#[test]
fn rooms_largest_first_then_by_name() {
    let mut h = Harness::new();
    let [a, b, c, d, e, f] = h.login_all(["a", "b", "c", "d", "e", "f"]);
    h.send(a, "/join beta\r\n");
    h.send(b, "/join Alpha\r\n");
    h.send(c, "/join gamma\r\n");
    h.send(d, "/join zeta\r\n");
    h.send(e, "/join ZETA\r\n");
    h.clear();
    h.send(f, "/rooms\r\n");
    assert_eq!(
        h.text(f),
        lines(&[
            "*** 5 rooms:",
            "***   #zeta (2 users)",
            "***   #Alpha (1 user)",
            "***   #beta (1 user)",
            "***   #gamma (1 user)",
            "***   #lobby (1 user)",
        ])
    );
    // Commands are case-insensitive.
    h.send(f, "/ROOMS\r\n");
    assert!(
        h.text(f)
            .starts_with("*** 5 rooms:\r\n***   #zeta (2 users)\r\n")
    );
}

#[test]
fn rooms_lists_at_most_100() {
    let mut h = Harness::new();
    let me = h.login("me");
    for i in 0..105 {
        let id = h.login(&format!("u{i}"));
        h.send(id, format!("/join r{i:03}\r\n"));
    }
    h.clear();
    h.send(me, "/rooms\r\n");
    // 106 rooms of one user each: by name, "lobby" before "r000".
    let mut expected = vec!["*** 106 rooms:".to_string(), "***   #lobby (1 user)".into()];
    expected.extend((0..99).map(|i| format!("***   #r{i:03} (1 user)")));
    expected.push("***   ... and 6 more".into());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(h.text(me), lines(&expected));
    // Larger rooms come first, wherever their names sort.
    for i in 100..105 {
        let id = h.login(&format!("w{i}"));
        h.send(id, format!("/join r{i:03}\r\n"));
    }
    h.clear();
    h.send(me, "/rooms\r\n");
    let mut expected = vec!["*** 106 rooms:".to_string()];
    expected.extend((100..105).map(|i| format!("***   #r{i:03} (2 users)")));
    expected.push("***   #lobby (1 user)".into());
    expected.extend((0..94).map(|i| format!("***   #r{i:03} (1 user)")));
    expected.push("***   ... and 6 more".into());
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(h.text(me), lines(&expected));
}

#[test]
fn rooms_exactly_100_has_no_tail() {
    let mut h = Harness::new();
    let me = h.login("me");
    for i in 0..99 {
        let id = h.login(&format!("u{i}"));
        h.send(id, format!("/join r{i:03}\r\n"));
    }
    h.clear();
    h.send(me, "/rooms\r\n");
    let text = h.text(me);
    assert!(text.starts_with("*** 100 rooms:\r\n***   #lobby (1 user)\r\n"));
    assert!(text.ends_with("***   #r098 (1 user)\r\n"));
    assert_eq!(text.matches("\r\n").count(), 101);
}

#[test]
fn who_lists_join_order_and_at_most_100() {
    let mut h = Harness::new();
    let zed = h.login("zed");
    h.send(zed, "/who\r\n");
    assert_eq!(h.text(zed), "*** 1 user in #lobby: zed\r\n");
    let [amy, bob] = h.login_all(["amy", "Bob"]);
    h.send(amy, "/WHO\r\n");
    assert_eq!(h.text(amy), "*** 3 users in #lobby: zed, amy, Bob\r\n");
    // Leaving keeps the order of the others; the room shown as created.
    h.send(zed, "/join Den\r\n");
    h.send(bob, "/join den\r\n");
    h.clear();
    h.send(bob, "/who\r\n");
    assert_eq!(h.text(bob), "*** 2 users in #Den: zed, Bob\r\n");
    h.send(amy, "/who\r\n");
    assert_eq!(h.text(amy), "*** 1 user in #lobby: amy\r\n");
    for i in 0..101 {
        h.login(&format!("n{i}"));
    }
    h.send(amy, "/who\r\n");
    let mut names = vec!["amy".to_string()];
    names.extend((0..99).map(|i| format!("n{i}")));
    assert_eq!(
        h.text(amy),
        format!(
            "*** 102 users in #lobby: {}, ... and 2 more\r\n",
            names.join(", ")
        )
    );
}

#[test]
fn who_with_exactly_100_has_no_tail() {
    let mut h = Harness::new();
    let ids: Vec<ConnId> = (0..100).map(|i| h.login(&format!("n{i}"))).collect();
    h.send(ids[0], "/who\r\n");
    let names: Vec<String> = (0..100).map(|i| format!("n{i}")).collect();
    assert_eq!(
        h.text(ids[0]),
        format!("*** 100 users in #lobby: {}\r\n", names.join(", "))
    );
}

#[test]
fn chat_msg_and_me() {
    let mut h = Harness::new();
    let [alice, bob, carol, dave] = h.login_all(["alice", "bob", "carol", "dave"]);
    h.send(dave, "/join elsewhere\r\n");
    h.clear();
    h.send(alice, "hello there\r\n");
    h.send(alice, "/msg   via msg \r\n");
    h.send(alice, "/MSG x\r\n");
    h.send(alice, "/me waves\r\n");
    h.send(alice, "/Me  dances  \r\n");
    let expected = lines(&[
        "<alice> hello there",
        "<alice> via msg ",
        "<alice> x",
        "* alice waves",
        "* alice dances  ",
    ]);
    assert_eq!(h.text(bob), expected);
    assert_eq!(h.text(carol), expected);
    assert!(h.take(alice).is_empty(), "no echo to the sender");
    assert!(h.take(dave).is_empty(), "other rooms hear nothing");
    h.send(alice, "/msg\r\n");
    assert_eq!(h.text(alice), "!!! Usage: /msg TEXT\r\n");
    h.send(alice, "/me   \r\n");
    assert_eq!(h.text(alice), "!!! Usage: /me TEXT\r\n");
    assert!(h.take(bob).is_empty());
}

#[test]
fn double_slash_escapes_a_leading_slash() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "//etc/passwd\r\n// hi\r\n//\r\n///x\r\n");
    assert_eq!(
        h.text(bob),
        lines(&[
            "<alice> /etc/passwd",
            "<alice> / hi",
            "<alice> /",
            "<alice> //x"
        ])
    );
    assert!(h.take(alice).is_empty());
}

#[test]
fn empty_and_blank_lines_send_nothing() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "\r\n\n\r\0\r   \r\n\t\r\n");
    // Empty after cleaning.
    h.send(
        alice,
        "\x1b[31m\x1b[0m\r\n\x07\u{202e}\r\n/me \x1b]0;x\x07\r\n",
    );
    h.send(alice, "/msg \x1b[1m \r\n");
    assert!(h.take(bob).is_empty());
    assert!(h.take(alice).is_empty());
}

#[test]
fn relayed_text_is_cleaned() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(
        alice,
        "a\tb\x1b[31mc\x1b[0m\u{202e}d\u{85}e\x00f\x1b]0;title\x07g\x1bch\r\n".as_bytes(),
    );
    assert_eq!(h.text(bob), "<alice> a bcdefgh\r\n");
    // Invalid UTF-8 becomes U+FFFD.
    // (0xFF is telnet's IAC, so it cannot be used here.)
    h.send(alice, b"x\xc3y\xe2\x82z\xc0\xaf\r\n");
    assert_eq!(
        h.text(bob),
        "<alice> x\u{FFFD}y\u{FFFD}z\u{FFFD}\u{FFFD}\r\n"
    );
    h.send(alice, "/me \u{2066}grins\u{2069}\r\n".as_bytes());
    assert_eq!(h.text(bob), "* alice grins\r\n");
}

#[test]
fn whispers() {
    let mut h = Harness::new();
    let [alice, bob, carol] = h.login_all(["alice", "Bob", "carol"]);
    h.send(carol, "/join far\r\n");
    h.clear();
    h.send(alice, "/w BOB psst, hi\r\n");
    assert_eq!(h.text(bob), "*alice* psst, hi\r\n");
    assert_eq!(h.text(alice), "-> *Bob* psst, hi\r\n");
    // Across rooms, with the long name and many spaces.
    h.send(alice, "/WHISPER   carol    far away\r\n");
    assert_eq!(h.text(carol), "*alice* far away\r\n");
    assert_eq!(h.text(alice), "-> *carol* far away\r\n");
    assert!(h.take(bob).is_empty());
    // Cleaned like any relayed text.
    h.send(alice, "/w bob \x1b[2Jboo\x07\r\n");
    assert_eq!(h.text(bob), "*alice* boo\r\n");
    assert_eq!(h.text(alice), "-> *Bob* boo\r\n");
    // To oneself.
    h.send(alice, "/w Alice note\r\n");
    assert_eq!(h.text(alice), "*alice* note\r\n-> *alice* note\r\n");
    // Unknown target, missing arguments.
    h.send(alice, "/w nobody hi\r\n");
    assert_eq!(h.text(alice), "!!! No such user: nobody.\r\n");
    h.send(alice, "/w bob\r\n");
    assert_eq!(h.text(alice), "!!! Usage: /whisper NICK TEXT\r\n");
    h.send(alice, "/whisper\r\n");
    assert_eq!(h.text(alice), "!!! Usage: /whisper NICK TEXT\r\n");
    h.send(alice, "/w bob    \r\n");
    assert_eq!(h.text(alice), "!!! Usage: /whisper NICK TEXT\r\n");
    assert!(h.take(bob).is_empty() && h.take(carol).is_empty());
}

#[test]
fn help_after_login() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "/HELP\r\n");
    assert_eq!(h.text(alice), HELP);
    assert!(h.take(bob).is_empty());
}

#[test]
fn unknown_commands() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "/dance now\r\n");
    assert_eq!(
        h.text(alice),
        "!!! Unknown command /dance. Type /help for a list.\r\n"
    );
    h.send(alice, "/\r\n");
    assert_eq!(
        h.text(alice),
        "!!! Unknown command /. Type /help for a list.\r\n"
    );
    // The echoed word is cleaned and shortened.
    h.send(alice, "/\x1b[31mfoo\x1b[0m\r\n");
    assert_eq!(
        h.text(alice),
        "!!! Unknown command /foo. Type /help for a list.\r\n"
    );
    h.send(alice, format!("/{}\r\n", "x".repeat(40)));
    assert_eq!(
        h.text(alice),
        format!(
            "!!! Unknown command /{}.... Type /help for a list.\r\n",
            "x".repeat(32)
        )
    );
    // A command word needs its space: "/whoami" is not "/who".
    h.send(alice, "/whoami\r\n");
    assert_eq!(
        h.text(alice),
        "!!! Unknown command /whoami. Type /help for a list.\r\n"
    );
    assert!(h.take(bob).is_empty());
}

#[test]
fn quit_without_and_with_reason() {
    let mut h = Harness::new();
    let [alice, bob, carol] = h.login_all(["alice", "bob", "carol"]);
    h.send(alice, "/quit\r\nafter quit\r\n");
    assert_eq!(h.text(alice), "*** Bye, alice!\r\n");
    assert_eq!(h.close_reason(alice), Some(CloseReason::Quit));
    assert_eq!(h.text(bob), "*** alice left #lobby\r\n");
    assert_eq!(h.text(carol), "*** alice left #lobby\r\n");
    assert!(!h.chat().wants_input(alice));
    h.send(bob, "/QUIT   gone   home  \r\n");
    assert_eq!(h.text(bob), "*** Bye, bob!\r\n");
    assert_eq!(h.text(carol), "*** bob left #lobby (gone   home)\r\n");
    assert_eq!(h.chat().connection_count(), 1);
    // Input for a closed id is ignored.
    h.send(alice, "hello?\r\n");
    assert!(h.take(carol).is_empty());
}

#[test]
fn quit_reason_is_cleaned() {
    let mut h = Harness::new();
    let [alice, bob, carol, dave] = h.login_all(["alice", "bob", "carol", "dave"]);
    h.send(
        alice,
        "/quit \x1b[31mred\x1b[0m\tand\u{202e} \u{9b}done\x07\r\n".as_bytes(),
    );
    assert_eq!(h.text(dave), "*** alice left #lobby (red and done)\r\n");
    // Nothing left after cleaning: no parentheses.
    h.send(bob, "/quit \x1b[1m\x07\u{2066}\r\n".as_bytes());
    assert_eq!(h.text(dave), "*** bob left #lobby\r\n");
    h.send(carol, "/quit \t \r\n");
    assert_eq!(h.text(dave), "*** carol left #lobby\r\n");
}

#[test]
fn peer_close_tells_the_room_and_reports_nothing() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.send(alice, "/join den\r\n");
    h.send(bob, "/join den\r\n");
    h.clear();
    h.disconnect(alice);
    assert_eq!(h.text(bob), "*** alice left #den (connection closed)\r\n");
    assert!(h.closes().is_empty(), "the shell closed it, so no Closed");
    assert_eq!(h.chat().nick(alice), None);
    h.chat_mut()
        .handle_disconnect(bob, CloseReason::SocketError);
    h.after();
    assert_eq!(h.chat().connection_count(), 0);
    assert_eq!(h.chat().room_count(), 1);
    // Disconnecting again (stale) changes nothing.
    h.chat_mut().handle_disconnect(bob, CloseReason::PeerClosed);
    h.after();
    assert!(h.chat().next_deadline().is_none());
}

#[test]
fn end_of_input_hands_back_the_replies_still_queued() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.clear();
    // alice's last line and her end of input arrive in one read: the reply must still reach her.
    let now = h.now();
    h.chat_mut().handle_input(alice, b"/who\r\n", now);
    h.chat_mut()
        .handle_disconnect(alice, CloseReason::InputClosed);
    h.after();
    assert_eq!(h.text(alice), "*** 2 users in #lobby: alice, bob\r\n");
    assert_eq!(h.close_reason(alice), Some(CloseReason::InputClosed));
    assert_eq!(h.text(bob), "*** alice left #lobby (connection closed)\r\n");
    assert_eq!(h.chat().connection_count(), 1);
}

#[test]
fn stale_ids_never_reach_the_new_owner_of_a_slot() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.disconnect(alice);
    h.clear();
    let carol = h.login("carol");
    assert_eq!(carol.index, alice.index, "the harness reuses the slot");
    assert_ne!(carol.generation, alice.generation);
    h.send(alice, "/nick mallory\r\nimpostor\r\n");
    h.chat_mut()
        .handle_disconnect(alice, CloseReason::PeerClosed);
    h.after();
    assert_eq!(h.chat().nick(alice), None);
    assert_eq!(h.chat().nick(carol), Some("carol"));
    assert!(h.chat().unsent(alice).is_empty());
    assert!(!h.chat().wants_input(alice));
    assert!(h.take(bob).is_empty());
    assert!(h.take(carol).is_empty());
    h.send(carol, "hi\r\n");
    assert_eq!(h.text(bob), "<carol> hi\r\n");
}

#[test]
fn connect_on_a_slot_still_held_forgets_the_old_session() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    // A shell bug or race: the slot of alice is handed out again without a disconnect.
    let newcomer = ConnId {
        index: alice.index,
        generation: 99_999,
    };
    h.sim.connect_with_id(newcomer, loopback()).unwrap();
    assert_eq!(h.text(newcomer), BANNER);
    assert_eq!(h.text(bob), "*** alice left #lobby (connection closed)\r\n");
    assert_eq!(h.chat().connection_count(), 2);
    h.send(newcomer, "alice\r\n");
    assert_eq!(
        h.text(newcomer),
        "*** Welcome, alice! You are in #lobby.\r\n"
    );
}

#[test]
fn shutdown_tells_everyone_and_ignores_input() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    let c = h.connect();
    h.clear();
    h.chat_mut().handle_shutdown();
    h.after();
    for id in [alice, bob, c] {
        assert_eq!(h.text(id), "*** Server is shutting down.\r\n");
    }
    h.send(alice, "still here\r\n");
    assert!(h.take(bob).is_empty());
}

#[test]
fn a_connection_that_cannot_be_handed_over_is_told_and_closed() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    let at_prompt = h.connect();
    h.clear();
    h.chat_mut().handle_not_handed_over(alice);
    h.chat_mut().handle_not_handed_over(at_prompt);
    h.after();
    assert_eq!(h.text(alice), "*** Server upgraded: please reconnect.\r\n");
    assert_eq!(h.close_reason(alice), Some(CloseReason::ServerUpgrade));
    assert_eq!(h.text(bob), "*** alice left #lobby (server upgrade)\r\n");
    assert_eq!(h.text(at_prompt), "", "at the prompt: just closed");
    assert_eq!(h.close_reason(at_prompt), Some(CloseReason::ServerUpgrade));
    assert_eq!(h.chat().user_count(), 1);
}

#[test]
fn partial_writes_lose_nothing() {
    let mut h = Harness::new();
    let [alice, bob] = h.login_all(["alice", "bob"]);
    h.stall(bob);
    h.send(alice, "one\r\n");
    assert_eq!(h.chat().unsent(bob), b"<alice> one\r\n");
    h.partial_write(bob, 3);
    h.send(alice, "two\r\n");
    assert_eq!(h.chat().unsent(bob), b"ice> one\r\n<alice> two\r\n");
    h.partial_write(bob, 0);
    h.unstall(bob);
    // The three bytes the kernel took first, then the rest: each byte once, in order.
    assert_eq!(h.text(bob), "<alice> one\r\n<alice> two\r\n");
    h.send(alice, "three\r\n");
    assert_eq!(h.text(bob), "<alice> three\r\n");
}

// ---------------------------------------------------------------------------------------------
// --quiet-above and --max-line
// ---------------------------------------------------------------------------------------------

#[test]
fn quiet_above_counts_the_user_concerned() {
    let mut h = Harness::with_config(Settings {
        quiet_above: 2,
        ..test_config()
    });
    let alice = h.login("alice");
    let bob = h.connect();
    h.take(bob);
    h.send(bob, "bob\r\n");
    assert_eq!(h.text(bob), "*** Welcome, bob! You are in #lobby.\r\n");
    assert_eq!(
        h.text(alice),
        "*** bob joined #lobby\r\n",
        "2 members: announced"
    );
    let carol = h.connect();
    h.take(carol);
    h.send(carol, "carol\r\n");
    assert_eq!(h.text(carol), "*** Welcome, carol! You are in #lobby.\r\n");
    assert!(h.take(alice).is_empty(), "3 members: quiet");
    assert!(h.take(bob).is_empty());
    // Renames and leaves in a room of 3: quiet; the user's own replies unchanged.
    h.send(carol, "/nick caro\r\n");
    assert_eq!(h.text(carol), "*** You are now known as caro.\r\n");
    h.send(carol, "/join den\r\n");
    assert_eq!(h.text(carol), "*** You joined #den (1 user)\r\n");
    assert!(h.take(alice).is_empty() && h.take(bob).is_empty());
    // Chat is never quieted.
    h.send(alice, "hi\r\n");
    assert_eq!(h.text(bob), "<alice> hi\r\n");
    // Back to 2 members (counting the user): announced again.
    h.send(bob, "/nick bobby\r\n");
    assert_eq!(h.text(bob), "*** You are now known as bobby.\r\n");
    assert_eq!(h.text(alice), "*** bob is now known as bobby\r\n");
    h.send(bob, "/join den\r\n");
    assert_eq!(h.text(alice), "*** bobby left #lobby\r\n");
    assert_eq!(h.text(carol), "*** bobby joined #den\r\n");
    assert_eq!(h.text(bob), "*** You joined #den (2 users)\r\n");
    // Joining a room that then has 3: quiet.
    h.send(alice, "/join den\r\n");
    assert_eq!(h.text(alice), "*** You joined #den (3 users)\r\n");
    assert!(h.take(bob).is_empty() && h.take(carol).is_empty());
    // Leaving a room of 3 (the leaver counted): quiet, also on disconnect and quit.
    h.disconnect(alice);
    assert!(h.take(bob).is_empty() && h.take(carol).is_empty());
    h.send(bob, "/quit bye\r\n");
    assert_eq!(h.text(carol), "*** bobby left #den (bye)\r\n");
}

#[test]
fn quiet_above_zero_always_announces() {
    let mut h = Harness::with_config(Settings {
        quiet_above: 0,
        ..test_config()
    });
    let ids: Vec<ConnId> = (0..5).map(|i| h.login(&format!("u{i}"))).collect();
    let late = h.login("late");
    h.send(late, "/quit\r\n");
    assert_eq!(h.text(ids[0]), "*** late left #lobby\r\n");
    let _ = h.login("again");
    assert_eq!(h.text(ids[4]), "");
    h.clear();
    let x = h.connect();
    h.send(x, "x\r\n");
    assert_eq!(h.text(ids[2]), "*** x joined #lobby\r\n");
}

#[test]
fn overlong_lines_are_refused_once_and_discarded() {
    let mut h = Harness::with_config(Settings {
        max_line: 8,
        ..test_config()
    });
    let [alice, bob] = h.login_all(["alice", "bob"]);
    let too_long = "!!! Line too long: the limit is 8 bytes, and that line was discarded.\r\n";
    h.send(alice, "12345678\r\n");
    assert_eq!(h.text(bob), "<alice> 12345678\r\n");
    assert!(h.take(alice).is_empty());
    h.send(alice, "123456789\r\nok\r\n");
    assert_eq!(h.text(alice), too_long);
    assert_eq!(h.text(bob), "<alice> ok\r\n");
    // Spread over reads, far past the limit: still one error, then the next line works.
    h.send(alice, "1234");
    h.send(alice, "56789abc");
    h.send(alice, "x".repeat(10_000));
    assert_eq!(h.text(alice), too_long);
    h.send(alice, "def\r");
    h.send(alice, "\nnext\n");
    assert!(h.take(alice).is_empty());
    assert_eq!(h.text(bob), "<alice> next\r\n");
    // The limit counts bytes, not characters, and not the line end.
    h.send(alice, "éééé\r\n");
    assert_eq!(h.text(bob), "<alice> éééé\r\n");
    h.send(alice, "ééééé\r\n");
    assert_eq!(h.text(alice), too_long);
    assert!(h.take(bob).is_empty());
    // Backspaces do not count against the limit once they erase.
    h.send(alice, "12345678\x08\x0890\r\n");
    assert_eq!(h.text(bob), "<alice> 12345690\r\n");
    assert!(h.take(alice).is_empty());
    assert_eq!(h.chat().connection_count(), 2);
}

#[test]
fn overlong_line_before_login_gets_the_prompt_again() {
    let mut h = Harness::with_config(Settings {
        max_line: 8,
        ..test_config()
    });
    let a = h.connect();
    h.take(a);
    h.send(a, "abcdefghijkl\r\n");
    assert_eq!(
        h.text(a),
        format!(
            "!!! Line too long: the limit is 8 bytes, and that line was discarded.\r\n{PROMPT}"
        )
    );
}

// ---------------------------------------------------------------------------------------------
