//! Cleaning of text that one user sends to other users' terminals.
//!
//! Removes C0 controls (except TAB, which becomes a space), DEL, C1 controls, whole escape
//! sequences (CSI, OSC, two-byte `ESC x`) and Unicode bidi controls, so nobody can move another
//! user's cursor, retitle their window or reorder the text they read.

/// Appends the cleaned form of `input` to `out`.
pub fn sanitize_into(input: &str, out: &mut String) {
    if input.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        out.push_str(input);
        return;
    }
    let mut state = Escape::None;
    for c in input.chars() {
        state = match state {
            Escape::None => match c {
                '\x1b' => Escape::Esc,
                '\t' => {
                    out.push(' ');
                    Escape::None
                }
                c => {
                    if !is_removed(c) {
                        out.push(c);
                    }
                    Escape::None
                }
            },
            Escape::Esc => match c {
                '[' => Escape::Csi,
                ']' => Escape::Osc,
                // Two-byte `ESC x`: x goes with the ESC.
                _ => Escape::None,
            },
            Escape::Csi if ('\x40'..='\x7e').contains(&c) => Escape::None,
            Escape::Csi => Escape::Csi,
            Escape::Osc => match c {
                '\x07' => Escape::None,
                '\x1b' => Escape::OscEsc,
                _ => Escape::Osc,
            },
            // `ESC \` ends an OSC; another ESC sequence ends it too, as terminals treat it.
            Escape::OscEsc => match c {
                '[' => Escape::Csi,
                ']' => Escape::Osc,
                _ => Escape::None,
            },
        };
    }
}

/// Returns the cleaned form of `input` as a new string.
pub fn sanitize(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    sanitize_into(input, &mut out);
    out
}

/// Where the cleaner is inside an escape sequence.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    Esc,
    Csi,
    Osc,
    OscEsc,
}

/// Characters removed outright: C0 controls, DEL, C1 controls and bidi controls.
fn is_removed(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(sanitize("hello, world! é €"), "hello, world! é €");
    }

    #[test]
    fn controls_are_removed_and_tab_becomes_space() {
        assert_eq!(sanitize("a\x00b\x07c\x08d\x7fe\tf\r\n"), "abcde f");
        assert_eq!(sanitize("x\u{85}y\u{9b}z\u{80}"), "xyz");
    }

    #[test]
    fn csi_sequences_are_removed_whole() {
        assert_eq!(sanitize("\x1b[31mred\x1b[0m"), "red");
        assert_eq!(sanitize("a\x1b[2Jb\x1b[?25lc"), "abc");
        assert_eq!(sanitize("cut \x1b[12;3"), "cut ");
    }

    #[test]
    fn osc_sequences_are_removed_whole() {
        assert_eq!(sanitize("a\x1b]0;pwned\x07b"), "ab");
        assert_eq!(
            sanitize("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b"),
            "alinkb"
        );
    }

    #[test]
    fn two_byte_escapes_are_removed() {
        assert_eq!(sanitize("a\x1bcb\x1b7c\x1b"), "abc");
    }

    #[test]
    fn bidi_controls_are_removed() {
        assert_eq!(sanitize("a\u{202e}b\u{2066}c\u{2069}d\u{202a}"), "abcd");
    }

    #[test]
    fn only_controls_gives_empty() {
        assert_eq!(sanitize("\x1b[1m\x07\u{202e}"), "");
    }
}
