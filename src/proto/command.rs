//! Parsing of one input line into what the user asked for.

/// A line, understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// An empty line.
    Empty,
    /// Chat text for the room (a plain line, `//text`, or `/msg text`).
    Chat(&'a str),
    /// A known command with its arguments.
    Command(Command<'a>),
    /// A known command with a missing argument; holds its usage text (`/nick NAME`).
    Usage(&'static str),
    /// An unknown command; holds the word after the `/`.
    Unknown(&'a str),
}

/// A command of the contract, with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `/nick NAME`
    Nick(&'a str),
    /// `/join ROOM`
    Join(&'a str),
    /// `/rooms`
    Rooms,
    /// `/who`
    Who,
    /// `/me TEXT`
    Me(&'a str),
    /// `/whisper NICK TEXT` or `/w NICK TEXT`
    Whisper {
        /// The target nickname, as typed.
        to: &'a str,
        /// The message.
        text: &'a str,
    },
    /// `/help`
    Help,
    /// `/quit [REASON]` (the reason may be empty).
    Quit(&'a str),
}

/// Parses one line (already decoded, without its line end).
pub fn parse(line: &str) -> Input<'_> {
    if line.is_empty() {
        return Input::Empty;
    }
    if line.starts_with("//") {
        return Input::Chat(&line[1..]);
    }
    let Some(body) = line.strip_prefix('/') else {
        return Input::Chat(line);
    };
    let (word, args) = match body.split_once(' ') {
        Some((word, rest)) => (word, rest.trim_start_matches(' ')),
        None => (body, ""),
    };
    let is = |name: &str| word.eq_ignore_ascii_case(name);
    let blank = args.trim().is_empty();
    if is("nick") {
        if blank {
            Input::Usage("/nick NAME")
        } else {
            Input::Command(Command::Nick(args.trim()))
        }
    } else if is("join") {
        if blank {
            Input::Usage("/join ROOM")
        } else {
            Input::Command(Command::Join(args.trim()))
        }
    } else if is("rooms") {
        Input::Command(Command::Rooms)
    } else if is("who") {
        Input::Command(Command::Who)
    } else if is("msg") {
        if blank {
            Input::Usage("/msg TEXT")
        } else {
            Input::Chat(args)
        }
    } else if is("me") {
        if blank {
            Input::Usage("/me TEXT")
        } else {
            Input::Command(Command::Me(args))
        }
    } else if is("whisper") || is("w") {
        match args.split_once(' ') {
            Some((to, text)) if !text.trim().is_empty() => Input::Command(Command::Whisper {
                to,
                text: text.trim_start_matches(' '),
            }),
            _ => Input::Usage("/whisper NICK TEXT"),
        }
    } else if is("help") {
        Input::Command(Command::Help)
    } else if is("quit") {
        Input::Command(Command::Quit(args))
    } else {
        Input::Unknown(word)
    }
}

/// Whether a line looks like an HTTP request line (`METHOD TARGET HTTP/x.y`), as a browser
/// tricked into talking to us would send first.
pub fn is_http_request_line(line: &str) -> bool {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let version_ok = version
        .strip_prefix("HTTP/")
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && !target.is_empty()
        && version_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_lines() {
        assert_eq!(parse(""), Input::Empty);
        assert_eq!(parse("hello"), Input::Chat("hello"));
        assert_eq!(parse("//etc/passwd"), Input::Chat("/etc/passwd"));
        assert_eq!(parse("/msg  hi there "), Input::Chat("hi there "));
        assert_eq!(parse("/MSG"), Input::Usage("/msg TEXT"));
    }

    #[test]
    fn commands_are_case_insensitive_and_take_many_spaces() {
        assert_eq!(parse("/NiCk   bob"), Input::Command(Command::Nick("bob")));
        assert_eq!(parse("/join #rust"), Input::Command(Command::Join("#rust")));
        assert_eq!(parse("/ROOMS"), Input::Command(Command::Rooms));
        assert_eq!(parse("/who"), Input::Command(Command::Who));
        assert_eq!(parse("/me waves"), Input::Command(Command::Me("waves")));
        assert_eq!(parse("/help"), Input::Command(Command::Help));
        assert_eq!(parse("/quit"), Input::Command(Command::Quit("")));
        assert_eq!(
            parse("/quit  gone home"),
            Input::Command(Command::Quit("gone home"))
        );
        assert_eq!(
            parse("/w  bob   psst hi"),
            Input::Command(Command::Whisper {
                to: "bob",
                text: "psst hi"
            })
        );
        assert_eq!(
            parse("/whisper bob x"),
            Input::Command(Command::Whisper {
                to: "bob",
                text: "x"
            })
        );
    }

    #[test]
    fn missing_arguments_and_unknown_commands() {
        assert_eq!(parse("/nick"), Input::Usage("/nick NAME"));
        assert_eq!(parse("/nick   "), Input::Usage("/nick NAME"));
        assert_eq!(parse("/join"), Input::Usage("/join ROOM"));
        assert_eq!(parse("/me"), Input::Usage("/me TEXT"));
        assert_eq!(parse("/w bob"), Input::Usage("/whisper NICK TEXT"));
        assert_eq!(parse("/whisper bob   "), Input::Usage("/whisper NICK TEXT"));
        assert_eq!(parse("/dance now"), Input::Unknown("dance"));
        assert_eq!(parse("/"), Input::Unknown(""));
    }

    #[test]
    fn http_request_lines() {
        assert!(is_http_request_line("GET / HTTP/1.1"));
        assert!(is_http_request_line("POST /chat?x=1 HTTP/1.0"));
        assert!(is_http_request_line("PRI * HTTP/2.0"));
        assert!(!is_http_request_line("GET"));
        assert!(!is_http_request_line("get / HTTP/1.1"));
        assert!(!is_http_request_line("GET / HTTP/"));
        assert!(!is_http_request_line("hello there HTTP/1.1 fans"));
    }
}
