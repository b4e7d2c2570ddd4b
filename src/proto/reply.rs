//! Every line the server sends, in one place, so the wording is consistent and testable.
//!
//! Each function appends one or more complete lines (ending with CR LF) to a buffer.

use std::io::Write;

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

/// Appends the concatenation of `parts` and a line end.
pub fn line(out: &mut Vec<u8>, parts: &[&str]) {
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a `*** ` notice.
pub fn notice(out: &mut Vec<u8>, parts: &[&str]) {
    out.extend_from_slice(b"*** ");
    line(out, parts);
}

/// Appends a `!!! ` error.
pub fn error(out: &mut Vec<u8>, parts: &[&str]) {
    out.extend_from_slice(b"!!! ");
    line(out, parts);
}

/// Renders the banner (from `--motd` lines or the default) followed by the prompt.
pub fn banner<S: AsRef<str>>(lines: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        notice(&mut out, &[l.as_ref()]);
    }
    out.extend_from_slice(PROMPT);
    out
}

/// `N users`, or `1 user`.
pub fn users(count: usize) -> String {
    if count == 1 {
        "1 user".to_string()
    } else {
        format!("{count} users")
    }
}

/// Appends `*** NICK left #ROOM` with ` (REASON)` when there is one.
pub fn left(out: &mut Vec<u8>, nick: &str, room: &str, reason: &str) {
    if reason.is_empty() {
        notice(out, &[nick, " left #", room]);
    } else {
        notice(out, &[nick, " left #", room, " (", reason, ")"]);
    }
}

/// Appends the too-long-line error naming the limit.
pub fn line_too_long(out: &mut Vec<u8>, max_line: usize) {
    let _ = write!(
        out,
        "!!! Line too long: the limit is {max_line} bytes, and that line was discarded.\r\n"
    );
}

/// Appends the header of the `/rooms` reply.
pub fn rooms_header(out: &mut Vec<u8>, count: usize) {
    let _ = write!(out, "*** {count} rooms:\r\n");
}

/// Appends the `... and M more` tail of a list.
pub fn and_more(out: &mut Vec<u8>, more: usize) {
    let _ = write!(out, "***   ... and {more} more\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_with_crlf() {
        let mut out = Vec::new();
        notice(&mut out, &["a", "b"]);
        error(&mut out, &["c"]);
        left(&mut out, "bob", "lobby", "");
        left(&mut out, "bob", "lobby", "too slow");
        assert_eq!(
            out,
            b"*** ab\r\n!!! c\r\n*** bob left #lobby\r\n*** bob left #lobby (too slow)\r\n"
        );
    }

    #[test]
    fn banner_ends_with_the_prompt() {
        assert_eq!(banner(&["hi"]), b"*** hi\r\nYour nickname: ".to_vec());
    }

    #[test]
    fn user_counts() {
        assert_eq!(users(1), "1 user");
        assert_eq!(users(0), "0 users");
        assert_eq!(users(12), "12 users");
    }
}
