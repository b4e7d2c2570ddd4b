//! Line assembly: turns a stream of data bytes into lines, whatever the reads look like.
//!
//! A line ends at LF, CR LF, CR NUL or a lone CR. The CR state is kept across reads, so a CR LF
//! split between two reads is one line end. BS (0x08) and DEL (0x7F) erase the previous
//! character (a whole UTF-8 sequence). A line longer than the limit is reported once and then
//! discarded up to its line end.

/// What a data byte completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineEvent {
    /// The pending line is complete; the caller takes it and clears the buffer.
    Line,
    /// The pending line just passed the length limit; it is discarded up to its line end.
    TooLong,
}

/// Per-connection line state (two flags); the pending bytes live in a buffer the caller owns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineAssembler {
    after_cr: bool,
    discarding: bool,
}

impl LineAssembler {
    /// The state as two flags: after a CR, and discarding an overlong line (for snapshots).
    pub fn flags(&self) -> (bool, bool) {
        (self.after_cr, self.discarding)
    }

    /// An assembler in the state [`LineAssembler::flags`] gave.
    pub fn from_flags(after_cr: bool, discarding: bool) -> LineAssembler {
        LineAssembler {
            after_cr,
            discarding,
        }
    }

    /// Feeds one data byte, appending it to `line` unless it ends, edits or overflows the line.
    pub fn push(&mut self, byte: u8, line: &mut Vec<u8>, max_line: usize) -> Option<LineEvent> {
        if self.after_cr {
            self.after_cr = false;
            if byte == b'\n' || byte == 0 {
                return None;
            }
        }
        match byte {
            b'\r' => {
                self.after_cr = true;
                self.end_line(line)
            }
            b'\n' => self.end_line(line),
            0x08 | 0x7F => {
                erase_char(line);
                None
            }
            _ if self.discarding => None,
            _ if line.len() >= max_line => {
                self.discarding = true;
                line.clear();
                Some(LineEvent::TooLong)
            }
            _ => {
                line.push(byte);
                None
            }
        }
    }

    fn end_line(&mut self, line: &mut Vec<u8>) -> Option<LineEvent> {
        if self.discarding {
            self.discarding = false;
            line.clear();
            None
        } else {
            Some(LineEvent::Line)
        }
    }
}

/// Removes the last character of `line`: one byte, or a whole UTF-8 sequence.
pub fn erase_char(line: &mut Vec<u8>) {
    for _ in 0..4 {
        match line.pop() {
            // A continuation byte: keep going back to the lead byte.
            Some(b) if b & 0xC0 == 0x80 => continue,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `input` through a fresh assembler; returns lines (as strings) and `!` for TooLong.
    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut a = LineAssembler::default();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for &b in input {
            match a.push(b, &mut buf, max) {
                Some(LineEvent::Line) => {
                    out.push(String::from_utf8_lossy(&buf).into_owned());
                    buf.clear();
                }
                Some(LineEvent::TooLong) => out.push("!".to_string()),
                None => {}
            }
        }
        out
    }

    #[test]
    fn every_line_end_kind() {
        assert_eq!(
            lines(b"a\nb\r\nc\r\0d\re\n", 512),
            vec!["a", "b", "c", "d", "e"]
        );
    }

    #[test]
    fn crlf_split_across_pushes_is_one_line_end() {
        // The assembler is per byte, so a split is just two pushes; no empty line appears.
        assert_eq!(lines(b"a\r\nb\r\n", 512), vec!["a", "b"]);
        assert_eq!(lines(b"\r\n\r\n", 512), vec!["", ""]);
    }

    #[test]
    fn backspace_and_delete_erase_characters() {
        assert_eq!(lines(b"abc\x08\x08d\n", 512), vec!["ad"]);
        assert_eq!(lines(b"ab\x7f\n", 512), vec!["a"]);
        assert_eq!(lines("xé\x08\n".as_bytes(), 512), vec!["x"]);
        assert_eq!(lines("€\x7f\x7fz\n".as_bytes(), 512), vec!["z"]);
    }

    #[test]
    fn overlong_line_is_reported_once_and_discarded() {
        assert_eq!(lines(b"abcdef\nok\n", 4), vec!["!", "ok"]);
        assert_eq!(lines(b"abcd\n", 4), vec!["abcd"]);
        assert_eq!(lines(b"abcdefghijkl\r\nok\r\n", 4), vec!["!", "ok"]);
    }
}
