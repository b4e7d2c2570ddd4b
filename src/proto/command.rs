//! Parsing of one input line into what the user asked for, with names already parsed: the chat
//! code never sees a nickname or room name that is not valid.

use crate::proto::names::{NameError, Nick, RoomName, parse_nick, parse_room};

/// A line, understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// An empty line.
    Empty,
    /// Chat text for the room (a plain line, `//text`, or `/msg text`).
    Chat(&'a str),
    /// A known command with its arguments.
    Command(Command<'a>),
    /// A known command with a missing argument.
    Usage(Usage),
    /// A known command whose name argument is not a valid name.
    BadName(NameError),
    /// A whisper whose target cannot be anybody's nickname; holds the target as typed.
    NoSuchUser(&'a str),
    /// An unknown command; holds the word after the `/`.
    Unknown(&'a str),
}

/// A command of the contract, with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `/nick NAME`
    Nick(Nick),
    /// `/join ROOM`
    Join(RoomName),
    /// `/rooms`
    Rooms,
    /// `/who`
    Who,
    /// `/me TEXT`
    Me(&'a str),
    /// `/whisper NICK TEXT` or `/w NICK TEXT`
    Whisper {
        /// The nickname the whisper is for.
        to: Nick,
        /// The message, as typed.
        text: &'a str,
    },
    /// `/help`
    Help,
    /// `/quit [REASON]` (the reason may be empty).
    Quit(&'a str),
}

/// A command typed without its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// `/nick NAME`
    Nick,
    /// `/join ROOM`
    Join,
    /// `/msg TEXT`
    Msg,
    /// `/me TEXT`
    Me,
    /// `/whisper NICK TEXT`
    Whisper,
}

impl Usage {
    /// The command's form, as `!!! Usage: ...` shows it.
    pub fn form(self) -> &'static str {
        match self {
            Usage::Nick => "/nick NAME",
            Usage::Join => "/join ROOM",
            Usage::Msg => "/msg TEXT",
            Usage::Me => "/me TEXT",
            Usage::Whisper => "/whisper NICK TEXT",
        }
    }
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
    let needs = |usage, input| if blank { Input::Usage(usage) } else { input };
    if is("nick") {
        needs(Usage::Nick, name(parse_nick(args.trim()), Command::Nick))
    } else if is("join") {
        needs(Usage::Join, name(parse_room(args.trim()), Command::Join))
    } else if is("rooms") {
        Input::Command(Command::Rooms)
    } else if is("who") {
        Input::Command(Command::Who)
    } else if is("msg") {
        needs(Usage::Msg, Input::Chat(args))
    } else if is("me") {
        needs(Usage::Me, Input::Command(Command::Me(args)))
    } else if is("whisper") || is("w") {
        whisper(args)
    } else if is("help") {
        Input::Command(Command::Help)
    } else if is("quit") {
        Input::Command(Command::Quit(args))
    } else {
        Input::Unknown(word)
    }
}

fn name<T>(parsed: Result<T, NameError>, command: fn(T) -> Command<'static>) -> Input<'static> {
    match parsed {
        Ok(n) => Input::Command(command(n)),
        Err(e) => Input::BadName(e),
    }
}

fn whisper(args: &str) -> Input<'_> {
    match args.split_once(' ') {
        Some((to, text)) if !text.trim().is_empty() => match parse_nick(to) {
            Ok(to) => Input::Command(Command::Whisper {
                to,
                text: text.trim_start_matches(' '),
            }),
            Err(_) => Input::NoSuchUser(to),
        },
        _ => Input::Usage(Usage::Whisper),
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

    fn nick(s: &str) -> Nick {
        parse_nick(s).unwrap()
    }

    #[test]
    fn chat_lines() {
        assert_eq!(parse(""), Input::Empty);
        assert_eq!(parse("hello"), Input::Chat("hello"));
        assert_eq!(parse("//etc/passwd"), Input::Chat("/etc/passwd"));
        assert_eq!(parse("/msg  hi there "), Input::Chat("hi there "));
        assert_eq!(parse("/MSG"), Input::Usage(Usage::Msg));
    }

    #[test]
    fn commands_are_case_insensitive_and_take_many_spaces() {
        assert_eq!(
            parse("/NiCk   bob"),
            Input::Command(Command::Nick(nick("bob")))
        );
        assert_eq!(
            parse("/join #rust"),
            Input::Command(Command::Join(parse_room("rust").unwrap()))
        );
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
                to: nick("bob"),
                text: "psst hi"
            })
        );
        assert_eq!(
            parse("/whisper bob x"),
            Input::Command(Command::Whisper {
                to: nick("bob"),
                text: "x"
            })
        );
    }

    #[test]
    fn names_are_parsed_here() {
        assert_eq!(parse("/nick 9lives"), Input::BadName(NameError::Nick));
        assert_eq!(parse("/join a/b"), Input::BadName(NameError::Room));
        assert_eq!(parse("/w 9lives hi"), Input::NoSuchUser("9lives"));
    }

    #[test]
    fn missing_arguments_and_unknown_commands() {
        assert_eq!(parse("/nick"), Input::Usage(Usage::Nick));
        assert_eq!(parse("/nick   "), Input::Usage(Usage::Nick));
        assert_eq!(parse("/join"), Input::Usage(Usage::Join));
        assert_eq!(parse("/me"), Input::Usage(Usage::Me));
        assert_eq!(parse("/w bob"), Input::Usage(Usage::Whisper));
        assert_eq!(parse("/whisper bob   "), Input::Usage(Usage::Whisper));
        assert_eq!(parse("/dance now"), Input::Unknown("dance"));
        assert_eq!(parse("/"), Input::Unknown(""));
        assert_eq!(Usage::Whisper.form(), "/whisper NICK TEXT");
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
