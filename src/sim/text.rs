//! What a terminal may be shown: the check every byte a model connection received must pass.

/// Checks bytes sent to one terminal: apart from telnet refusals (`IAC DONT x`, `IAC WONT x`),
/// valid UTF-8 in CR LF lines with no control character (C0, DEL, C1), no escape and no bidi
/// control. With `cut` the output may stop anywhere (a too-slow client's queue was dropped).
pub fn check_text(bytes: &[u8], cut: bool) -> Result<(), String> {
    const IAC: u8 = 255;
    let mut text = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == IAC {
            match bytes.get(i + 1) {
                Some(&(251..=254)) if i + 2 < bytes.len() => i += 3,
                _ if cut && i + 3 > bytes.len() => break,
                _ => return Err(format!("stray IAC at byte {i}")),
            }
        } else {
            text.push(bytes[i]);
            i += 1;
        }
    }
    let text = match std::str::from_utf8(&text) {
        Ok(t) => t,
        Err(e) if cut && e.error_len().is_none() => {
            std::str::from_utf8(&text[..e.valid_up_to()]).map_err(|e| e.to_string())?
        }
        Err(e) => return Err(format!("not UTF-8: {e}")),
    };
    let mut pieces = text.split("\r\n").peekable();
    while let Some(mut line) = pieces.next() {
        let last = pieces.peek().is_none();
        if cut && last {
            // Cut between CR and LF.
            line = line.strip_suffix('\r').unwrap_or(line);
        }
        if let Some(c) = line.chars().find(|&c| forbidden(c)) {
            return Err(format!("{c:?} in line {line:?}"));
        }
        if last && !line.is_empty() && !cut && !line.ends_with("Your nickname: ") {
            return Err(format!("unterminated line {line:?}"));
        }
    }
    Ok(())
}

/// Characters that must never reach a terminal.
pub fn forbidden(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}
