//! Pure protocol pieces: splitting the server's byte stream into lines, spotting the login
//! prompt, recognising natter's login replies, and the text of the load messages.
//!
//! Nothing here touches sockets or clocks, so all of it is unit-tested below.

/// The login prompt from PROTOCOL.md; it is sent without a line end.
pub const PROMPT: &[u8] = b"Your nickname: ";

/// Longest line accepted from the server before we call it a protocol error.
/// The server's own replies are short; chat lines are bounded by its `--max-line`.
pub const MAX_SERVER_LINE: usize = 64 * 1024;

/// Splits a byte stream into lines ending with LF (a CR before the LF is dropped).
///
/// Keeps only the bytes of an unfinished line between calls.
#[derive(Debug, Default)]
pub struct LineBuf {
    partial: Vec<u8>,
}

/// The stream held an unfinished line longer than [`MAX_SERVER_LINE`].
#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

impl LineBuf {
    /// Feeds `data`, calling `on_line` with each complete line (without CR LF).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut on_line: impl FnMut(&[u8]),
    ) -> Result<(), LineTooLong> {
        while let Some(pos) = data.iter().position(|&b| b == b'\n') {
            let (head, rest) = data.split_at(pos);
            data = &rest[1..];
            if self.partial.is_empty() {
                on_line(strip_cr(head));
            } else {
                self.partial.extend_from_slice(head);
                let line = std::mem::take(&mut self.partial);
                on_line(strip_cr(&line));
                // Reuse the allocation only if it is small; idle connections keep nothing.
                if line.capacity() <= 256 {
                    self.partial = line;
                    self.partial.clear();
                }
            }
        }
        if !data.is_empty() {
            if self.partial.len() + data.len() > MAX_SERVER_LINE {
                return Err(LineTooLong);
            }
            self.partial.extend_from_slice(data);
        }
        if self.partial.is_empty() && self.partial.capacity() > 0 {
            self.partial = Vec::new();
        }
        Ok(())
    }

    /// True when the unfinished line is exactly the login prompt.
    pub fn at_prompt(&self) -> bool {
        self.partial == PROMPT
    }

    /// Forgets the unfinished line (after the prompt has been answered).
    pub fn clear(&mut self) {
        self.partial = Vec::new();
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// True for a `*** ` notice that names `nick` as a whole word (ASCII case-insensitive).
///
/// This is how the contract tells a client it is logged in: "The user gets one `*** ` line
/// that names their nickname and the room".
pub fn notice_names(line: &str, nick: &str) -> bool {
    let Some(body) = line.strip_prefix("*** ") else {
        return false;
    };
    contains_word(body, nick)
}

/// True if `word` occurs in `hay` bounded by characters that cannot be part of a nickname.
pub fn contains_word(hay: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    let h = hay.as_bytes();
    let w = word.as_bytes();
    let is_nick_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    (0..h.len().saturating_sub(w.len() - 1)).any(|i| {
        h[i..i + w.len()].eq_ignore_ascii_case(w)
            && (i == 0 || !is_nick_byte(h[i - 1]))
            && (i + w.len() == h.len() || !is_nick_byte(h[i + w.len()]))
    })
}

/// The whisper-to-self line used as a sync barrier: `/w NICK TOKEN`.
pub fn barrier_request(nick: &str, token: &str) -> String {
    format!("/w {nick} {token}\r\n")
}

/// True if `line` is the echo of [`barrier_request`]: `-> *NICK* TOKEN`.
pub fn is_barrier_echo(line: &str, nick: &str, token: &str) -> bool {
    line.strip_prefix("-> *")
        .and_then(|r| r.strip_prefix(nick))
        .and_then(|r| r.strip_prefix("* "))
        == Some(token)
}

/// One load message as carried in chat text: sender index, sequence number, send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the sending client among the senders.
    pub sender: u32,
    /// Sequence number, 0-based, per sender.
    pub seq: u32,
    /// Send time in ns since the load generator's start (one monotonic clock).
    pub sent_ns: u64,
}

impl Stamp {
    /// The chat text to send: `nl SENDER SEQ NS` (the dialect adds the request around it).
    pub fn text(&self) -> String {
        format!("nl {} {} {}", self.sender, self.seq, self.sent_ns)
    }

    /// Parses a received chat text `nl SENDER SEQ NS`; `None` for any other text.
    pub fn parse(text: &str) -> Option<Stamp> {
        let mut parts = text.strip_prefix("nl ")?.split(' ');
        let sender = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let sent_ns = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Stamp {
            sender,
            seq,
            sent_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]]) -> (Vec<String>, bool) {
        let mut lb = LineBuf::default();
        let mut out = Vec::new();
        for c in chunks {
            lb.feed(c, |l| out.push(String::from_utf8_lossy(l).into_owned()))
                .unwrap();
        }
        (out, lb.at_prompt())
    }

    #[test]
    fn splits_crlf_lines_and_prompt_at_every_split_point() {
        let stream: &[u8] = b"*** Welcome\r\n*** Type /help\r\nYour nickname: ";
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            let (lines, prompt) = lines_of(&[a, b]);
            assert_eq!(lines, vec!["*** Welcome", "*** Type /help"], "cut {cut}");
            assert!(prompt, "cut {cut}");
        }
        let ones: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(lines_of(&ones).0.len(), 2);
    }

    #[test]
    fn bare_lf_and_empty_lines() {
        let (lines, prompt) = lines_of(&[b"a\n\r\nb\r\nc"]);
        assert_eq!(lines, vec!["a", "", "b"]);
        assert!(!prompt);
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut lb = LineBuf::default();
        let big = vec![b'x'; MAX_SERVER_LINE + 1];
        assert_eq!(lb.feed(&big, |_| {}), Err(LineTooLong));
    }

    #[test]
    fn notice_matching_uses_whole_words() {
        assert!(notice_names(
            "*** Welcome, l0x1! You are in #lobby.",
            "l0x1"
        ));
        assert!(notice_names("*** Hi L0X1 there", "l0x1"));
        assert!(!notice_names(
            "*** Welcome, l0x10! You are in #lobby.",
            "l0x1"
        ));
        assert!(!notice_names("*** Welcome, al0x1!", "l0x1"));
        assert!(!notice_names("<l0x1> hello", "l0x1"));
        assert!(!notice_names(
            "!!! The nickname l0x1 is already taken.",
            "l0x1"
        ));
        assert!(contains_word("l0x1", "l0x1"));
        assert!(!contains_word("l0x", "l0x1"));
    }

    #[test]
    fn barrier_round_trip() {
        assert_eq!(barrier_request("l0x3", "sync7"), "/w l0x3 sync7\r\n");
        assert!(is_barrier_echo("-> *l0x3* sync7", "l0x3", "sync7"));
        assert!(!is_barrier_echo("-> *l0x3* sync8", "l0x3", "sync7"));
        assert!(!is_barrier_echo("*l0x3* sync7", "l0x3", "sync7"));
    }

    #[test]
    fn stamp_text_round_trip() {
        let s = Stamp {
            sender: 3,
            seq: 199,
            sent_ns: 123_456_789_012,
        };
        assert_eq!(s.text(), "nl 3 199 123456789012");
        assert_eq!(Stamp::parse(&s.text()), Some(s));
        assert_eq!(Stamp::parse("hello"), None);
        assert_eq!(Stamp::parse("nl 1 2"), None);
        assert_eq!(Stamp::parse("nl 1 2 3 4"), None);
        assert_eq!(Stamp::parse("nl x 2 3"), None);
    }
}
