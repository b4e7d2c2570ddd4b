//! Every word the server says, in one place, so the wording is consistent and testable.
//!
//! Each function appends one or more complete lines (ending with CR LF) to a buffer: the
//! core's shared output arena, or a plain `Vec<u8>` in tests.

use crate::proto::names::{MAX_ROOM, NameError};
use bytes::BufMut;

/// The prompt for a nickname; the only output without a line end.
pub const PROMPT: &[u8] = b"Your nickname: ";
/// The default banner, sent before the prompt when no `--motd` is given.
pub const DEFAULT_BANNER: [&str; 2] = [
    "Welcome to natter, a chat server for telnet and netcat.",
    "Type /help for a list of commands.",
];
/// Reply to `/help`.
pub const HELP: [&str; 12] = [
    "Commands:",
    "  /nick NAME           change your nickname",
    "  /join ROOM           leave this room and join (or create) ROOM",
    "  /rooms               list the rooms",
    "  /who                 list the users in this room",
    "  /msg TEXT            say TEXT to the room (or just type it)",
    "  /me TEXT             act: the room sees \"* NICK TEXT\"",
    "  /whisper NICK TEXT   private message to NICK (also /w)",
    "  /help                this list",
    "  /quit [REASON]       leave the server",
    "  Start a line with // to say something that begins with /.",
    "  Before you have a nickname, type one (or an empty line for a guest name).",
];
/// Most rooms `/rooms` lists and most names `/who` shows.
pub const MAX_LISTED: usize = 100;

/// Appends the concatenation of `parts` and a line end.
pub fn line(out: &mut impl BufMut, parts: &[&str]) {
    for part in parts {
        out.put_slice(part.as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// Appends a `*** ` notice.
pub fn notice(out: &mut impl BufMut, parts: &[&str]) {
    out.put_slice(b"*** ");
    line(out, parts);
}

/// Appends a `!!! ` error.
pub fn error(out: &mut impl BufMut, parts: &[&str]) {
    out.put_slice(b"!!! ");
    line(out, parts);
}

/// Renders the banner (from `--motd` lines or the default) followed by the prompt.
pub fn banner<S: AsRef<str>>(lines: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        notice(&mut out, &[l.as_ref()]);
    }
    out.put_slice(PROMPT);
    out
}

/// `*** Welcome, NICK! You are in #ROOM.`
pub fn welcome(out: &mut impl BufMut, nick: &str, room: &str) {
    notice(out, &["Welcome, ", nick, "! You are in #", room, "."]);
}

/// `*** NICK joined #ROOM`
pub fn joined(out: &mut impl BufMut, nick: &str, room: &str) {
    notice(out, &[nick, " joined #", room]);
}

/// `*** NICK left #ROOM`, with ` (NOTE)` when there is one.
pub fn left(out: &mut impl BufMut, nick: &str, room: &str, note: &str) {
    if note.is_empty() {
        notice(out, &[nick, " left #", room]);
    } else {
        notice(out, &[nick, " left #", room, " (", note, ")"]);
    }
}

/// The user's own reply to `/join`: `*** You joined #ROOM (K users)`.
pub fn you_joined(out: &mut impl BufMut, room: &str, members: usize) {
    notice(out, &["You joined #", room, " (", &users(members), ")"]);
}

/// The user's own reply to `/nick`.
pub fn you_are_now(out: &mut impl BufMut, nick: &str) {
    notice(out, &["You are now known as ", nick, "."]);
}

/// What the room sees of a rename.
pub fn renamed(out: &mut impl BufMut, old: &str, new: &str) {
    notice(out, &[old, " is now known as ", new]);
}

/// `<NICK> TEXT`
pub fn chat(out: &mut impl BufMut, nick: &str, text: &str) {
    line(out, &["<", nick, "> ", text]);
}

/// `* NICK TEXT`
pub fn action(out: &mut impl BufMut, nick: &str, text: &str) {
    line(out, &["* ", nick, " ", text]);
}

/// What a whisper's target sees: `*FROM* TEXT`.
pub fn whisper_from(out: &mut impl BufMut, from: &str, text: &str) {
    line(out, &["*", from, "* ", text]);
}

/// The sender's echo of a whisper: `-> *TO* TEXT`.
pub fn whisper_echo(out: &mut impl BufMut, to: &str, text: &str) {
    line(out, &["-> *", to, "* ", text]);
}

/// `*** Bye, NICK!` (or `*** Bye!` before login, with an empty `nick`).
pub fn bye(out: &mut impl BufMut, nick: &str) {
    if nick.is_empty() {
        notice(out, &["Bye!"]);
    } else {
        notice(out, &["Bye, ", nick, "!"]);
    }
}

/// The reply to `/help`.
pub fn help(out: &mut impl BufMut) {
    for l in HELP {
        notice(out, &[l]);
    }
}

/// The header of the `/rooms` reply: `*** N rooms:` (`*** 1 room:` for one).
pub fn rooms_header(out: &mut impl BufMut, count: usize) {
    let n = count.to_string();
    notice(out, &[&n, if count == 1 { " room:" } else { " rooms:" }]);
}

/// One room of the `/rooms` reply: `***   #ROOM (K users)`.
pub fn room_entry(out: &mut impl BufMut, room: &str, members: usize) {
    notice(out, &["  #", room, " (", &users(members), ")"]);
}

/// The `***   ... and M more` tail of `/rooms`.
pub fn and_more(out: &mut impl BufMut, more: usize) {
    notice(out, &["  ... and ", &more.to_string(), " more"]);
}

/// The `/who` reply: `*** K users in #ROOM: a, b, c` (`*** 1 user in #ROOM: a` for one), at most
/// [`MAX_LISTED`] names, then `, ... and M more`.
pub fn who<'a>(
    out: &mut impl BufMut,
    room: &str,
    count: usize,
    names: impl Iterator<Item = &'a str>,
) {
    out.put_slice(b"*** ");
    out.put_slice(users(count).as_bytes());
    out.put_slice(b" in #");
    out.put_slice(room.as_bytes());
    out.put_slice(b": ");
    for (i, name) in names.take(MAX_LISTED).enumerate() {
        if i > 0 {
            out.put_slice(b", ");
        }
        out.put_slice(name.as_bytes());
    }
    if count > MAX_LISTED {
        out.put_slice(format!(", ... and {} more", count - MAX_LISTED).as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// `N users`, or `1 user`.
pub fn users(count: usize) -> String {
    if count == 1 {
        "1 user".to_string()
    } else {
        format!("{count} users")
    }
}

/// The answer to telnet's Are You There.
pub fn still_here(out: &mut impl BufMut) {
    notice(out, &["yes, still here"]);
}

/// The too-long-line error naming the limit.
pub fn line_too_long(out: &mut impl BufMut, max_line: usize) {
    error(
        out,
        &[
            "Line too long: the limit is ",
            &max_line.to_string(),
            " bytes, and that line was discarded.",
        ],
    );
}

/// The error for a name that does not parse.
pub fn bad_name(out: &mut impl BufMut, e: NameError) {
    error(
        out,
        &[match e {
            NameError::Nick => {
                "Invalid nickname: use 1 to 24 letters, digits, _ or -, starting with a letter."
            }
            NameError::Room => {
                "Invalid room name: use 1 to 32 letters, digits, _, - or . (a leading # is optional)."
            }
        }],
    );
}

/// `!!! The nickname NICK is already taken.`
pub fn nick_taken(out: &mut impl BufMut, nick: &str) {
    error(out, &["The nickname ", nick, " is already taken."]);
}

/// `/nick` to the nickname one already has.
pub fn already_named(out: &mut impl BufMut, nick: &str) {
    error(out, &["You are already ", nick, "."]);
}

/// `/join` of the room one is in.
pub fn already_in(out: &mut impl BufMut, room: &str) {
    error(out, &["You are already in #", room, "."]);
}

/// A whisper to nobody; `word` is the target as typed.
pub fn no_such_user(out: &mut impl BufMut, word: &str) {
    error(out, &["No such user: ", &shown_word(word), "."]);
}

/// A command without its argument; `usage` is the command's form, e.g. `/nick NAME`.
pub fn usage(out: &mut impl BufMut, usage: &str) {
    error(out, &["Usage: ", usage]);
}

/// A command that does not exist; `word` is what followed the `/`.
pub fn unknown_command(out: &mut impl BufMut, word: &str) {
    error(
        out,
        &[
            "Unknown command /",
            &shown_word(word),
            ". Type /help for a list.",
        ],
    );
}

/// A command other than `/nick`, `/help` or `/quit` before login.
pub fn choose_first(out: &mut impl BufMut) {
    error(
        out,
        &["Choose a nickname first: type a nickname, or an empty line for a guest name."],
    );
}

/// A first line that is an HTTP request.
pub fn not_a_web_server(out: &mut impl BufMut) {
    error(out, &["This is a chat server, not a web server."]);
}

/// `--max-clients` reached.
pub fn server_full(out: &mut impl BufMut) {
    error(out, &["Server is full, try again later."]);
}

/// `--max-per-ip` reached.
pub fn too_many_from_address(out: &mut impl BufMut) {
    error(out, &["Too many connections from your address."]);
}

/// `--idle-timeout` passed.
pub fn idle_timeout(out: &mut impl BufMut) {
    notice(out, &["Idle timeout."]);
}

/// `--login-timeout` passed.
pub fn login_timeout(out: &mut impl BufMut) {
    notice(out, &["Login timeout."]);
}

/// SIGINT or SIGTERM.
pub fn shutting_down(out: &mut impl BufMut) {
    notice(out, &["Server is shutting down."]);
}

/// Told to every logged-in user after an upgrade, after whatever was queued for them.
pub fn server_upgraded(out: &mut impl BufMut) {
    notice(out, &["Server upgraded."]);
}

/// Told to a logged-in user whose connection cannot be handed over in an upgrade.
pub fn reconnect_after_upgrade(out: &mut impl BufMut) {
    notice(out, &["Server upgraded: please reconnect."]);
}

/// Cluster mode: Redis has not answered for 2 seconds; input waits meanwhile.
pub fn chat_paused(out: &mut impl BufMut) {
    notice(out, &["Chat paused: reconnecting."]);
}

/// Cluster mode: Redis answers again.
pub fn chat_resumed(out: &mut impl BufMut) {
    notice(out, &["Chat resumed."]);
}

/// Cluster mode: the user's node was away long enough to be counted gone, and someone took the
/// user's nickname meanwhile.
pub fn nick_taken_while_away(out: &mut impl BufMut, nick: &str, guest: &str) {
    notice(
        out,
        &[
            "Your nickname ",
            nick,
            " was taken while this server was away; you are now ",
            guest,
            ".",
        ],
    );
}

/// A word the user typed, cleaned and shortened so it can be echoed in an error line.
fn shown_word(word: &str) -> String {
    let mut clean = String::new();
    crate::proto::wire::sanitize::sanitize_into(word, &mut clean);
    // Long enough for any valid nickname or room name, short enough for one line.
    if clean.chars().count() > MAX_ROOM {
        clean = clean.chars().take(MAX_ROOM).collect::<String>() + "...";
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_end_with_crlf() {
        let got = text(|o| {
            notice(o, &["a", "b"]);
            error(o, &["c"]);
            left(o, "bob", "lobby", "");
            left(o, "bob", "lobby", "too slow");
        });
        assert_eq!(
            got,
            "*** ab\r\n!!! c\r\n*** bob left #lobby\r\n*** bob left #lobby (too slow)\r\n"
        );
    }

    #[test]
    fn banner_ends_with_the_prompt() {
        assert_eq!(banner(&["hi"]), b"*** hi\r\nYour nickname: ".to_vec());
    }

    #[test]
    fn singular_and_plural_forms() {
        assert_eq!(users(1), "1 user");
        assert_eq!(users(0), "0 users");
        assert_eq!(users(12), "12 users");
        assert_eq!(text(|o| rooms_header(o, 1)), "*** 1 room:\r\n");
        assert_eq!(text(|o| rooms_header(o, 2)), "*** 2 rooms:\r\n");
        assert_eq!(
            text(|o| who(o, "lobby", 1, ["a"].into_iter())),
            "*** 1 user in #lobby: a\r\n"
        );
        assert_eq!(
            text(|o| who(o, "lobby", 2, ["a", "b"].into_iter())),
            "*** 2 users in #lobby: a, b\r\n"
        );
    }

    #[test]
    fn who_lists_at_most_a_hundred_names() {
        let names: Vec<String> = (0..102).map(|i| format!("n{i}")).collect();
        let got = text(|o| who(o, "big", 102, names.iter().map(String::as_str)));
        assert!(got.starts_with("*** 102 users in #big: n0, n1, "));
        assert!(got.ends_with(", n99, ... and 2 more\r\n"), "{got}");
    }

    #[test]
    fn echoed_words_are_cleaned_and_shortened() {
        assert_eq!(
            text(|o| unknown_command(o, "da\x1b[31mnce")),
            "!!! Unknown command /dance. Type /help for a list.\r\n"
        );
        let long = "x".repeat(40);
        assert_eq!(
            text(|o| no_such_user(o, &long)),
            format!("!!! No such user: {}....\r\n", "x".repeat(32))
        );
    }
}
