//! The two dialects natter-load speaks: natter's line protocol (PROTOCOL.md) and IRC (RFC 2812,
//! as far as a chat client needs it), for a same-run comparison with an IRC server (ngircd).
//!
//! Only what the scenarios need: how a chat line is sent to a room, how a delivered chat line
//! is recognised, and the few IRC messages of registration. Pure text in, text out.

/// Which protocol the clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// natter's line protocol (the default).
    Natter,
    /// IRC: `NICK`/`USER`, `JOIN #room`, `PRIVMSG #room :text`, `PING`/`PONG`.
    Irc,
}

/// A chat line delivered to a client: who said it and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chat<'a> {
    /// The sender's nickname.
    pub from: &'a str,
    /// The text as relayed.
    pub text: &'a str,
}

impl Dialect {
    /// Parses `natter` or `irc` (the `--proto` values).
    pub fn from_flag(s: &str) -> Option<Dialect> {
        match s {
            "natter" => Some(Dialect::Natter),
            "irc" => Some(Dialect::Irc),
            _ => None,
        }
    }

    /// The `--proto` value of this dialect.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Natter => "natter",
            Dialect::Irc => "irc",
        }
    }

    /// Appends the request that says `text` in `room` (the client's own room for natter, which
    /// needs no name) to `out`, with its line end. `text` must not start with `/`.
    pub fn push_chat(self, out: &mut String, room: &str, text: &str) {
        match self {
            Dialect::Natter => out.push_str(text),
            Dialect::Irc => {
                out.push_str("PRIVMSG ");
                push_channel(out, room);
                out.push_str(" :");
                out.push_str(text);
            }
        }
        out.push_str("\r\n");
    }

    /// Recognises a delivered chat line: natter's `<NICK> TEXT`, or IRC's
    /// `:NICK!USER@HOST PRIVMSG #ROOM :TEXT` (to a channel, not to a nickname).
    pub fn chat(self, line: &str) -> Option<Chat<'_>> {
        match self {
            Dialect::Natter => {
                let (from, text) = line.strip_prefix('<')?.split_once("> ")?;
                Some(Chat { from, text })
            }
            Dialect::Irc => {
                let (prefix, rest) = line.strip_prefix(':')?.split_once(' ')?;
                let (target, text) = rest.strip_prefix("PRIVMSG ")?.split_once(' ')?;
                if !target.starts_with(['#', '&', '+', '!']) {
                    return None;
                }
                let from = prefix.split_once('!').map_or(prefix, |(nick, _)| nick);
                Some(Chat {
                    from,
                    text: text.strip_prefix(':').unwrap_or(text),
                })
            }
        }
    }
}

/// Appends `room` as an IRC channel name: `#` and the name without any leading `#`.
pub fn push_channel(out: &mut String, room: &str) {
    out.push('#');
    out.push_str(room.strip_prefix('#').unwrap_or(room));
}

/// One IRC message, split into its parts (RFC 2812 section 2.3.1); the trailing parameter
/// (after ` :`) is the last of `params`, without its colon.
#[derive(Debug, PartialEq, Eq)]
pub struct IrcMsg<'a> {
    /// The prefix without its leading `:` (server name or `nick!user@host`).
    pub prefix: Option<&'a str>,
    /// The command word or three-digit numeric.
    pub command: &'a str,
    /// The parameters.
    pub params: Vec<&'a str>,
}

impl<'a> IrcMsg<'a> {
    /// Splits `line` (without its line end); `None` for an empty line.
    pub fn parse(line: &'a str) -> Option<IrcMsg<'a>> {
        let mut rest = line;
        let mut prefix = None;
        if let Some(r) = rest.strip_prefix(':') {
            let (p, r) = r.split_once(' ')?;
            prefix = Some(p);
            rest = r;
        }
        rest = rest.trim_start_matches(' ');
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing);
                break;
            }
            let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(p);
            rest = r;
        }
        Some(IrcMsg {
            prefix,
            command,
            params,
        })
    }

    /// The numeric reply code, if the command is three digits.
    pub fn numeric(&self) -> Option<u16> {
        let c = self.command;
        (c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
            .then(|| c.parse().ok())
            .flatten()
    }

    /// True for a reply that refuses something: an error numeric (400 to 599, except 422
    /// "no MOTD", which some servers send during registration) or `ERROR`.
    pub fn is_refusal(&self) -> bool {
        self.command == "ERROR"
            || self
                .numeric()
                .is_some_and(|n| (400..600).contains(&n) && n != 422)
    }

    /// The last parameter (the trailing one when there is one), or "".
    pub fn last(&self) -> &'a str {
        self.params.last().copied().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natter_chat_lines() {
        let d = Dialect::Natter;
        let mut out = String::new();
        d.push_chat(&mut out, "ignored", "nl 1 2 3");
        assert_eq!(out, "nl 1 2 3\r\n");
        assert_eq!(
            d.chat("<l0x3> nl 1 2 3"),
            Some(Chat {
                from: "l0x3",
                text: "nl 1 2 3"
            })
        );
        assert_eq!(d.chat("*** l0x3 joined #r"), None);
        assert_eq!(d.chat("* l0x3 waves"), None);
    }

    #[test]
    fn irc_chat_lines() {
        let d = Dialect::Irc;
        let mut out = String::new();
        d.push_chat(&mut out, "room", "nl 1 2 3");
        d.push_chat(&mut out, "#room", "x");
        assert_eq!(out, "PRIVMSG #room :nl 1 2 3\r\nPRIVMSG #room :x\r\n");
        let c = d
            .chat(":l0x3!~l0x3@127.0.0.1 PRIVMSG #room :nl 1 2 3")
            .unwrap();
        assert_eq!((c.from, c.text), ("l0x3", "nl 1 2 3"));
        // A one-word text may come without the colon.
        assert_eq!(d.chat(":a!b@c PRIVMSG #r hi").unwrap().text, "hi");
        assert_eq!(d.chat(":a!b@c PRIVMSG l0x1 :private"), None);
        assert_eq!(d.chat(":a!b@c NOTICE #r :hi"), None);
        assert_eq!(d.chat(":srv 353 a = #r :a b c"), None);
        assert_eq!(d.chat("PING :srv"), None);
    }

    #[test]
    fn irc_message_parts() {
        let m = IrcMsg::parse(":srv 001 l0x1 :Welcome to the net").unwrap();
        assert_eq!(m.prefix, Some("srv"));
        assert_eq!(m.command, "001");
        assert_eq!(m.params, vec!["l0x1", "Welcome to the net"]);
        assert_eq!(m.numeric(), Some(1));
        assert!(!m.is_refusal());
        let m = IrcMsg::parse("PING :abc def").unwrap();
        assert_eq!((m.prefix, m.command, m.last()), (None, "PING", "abc def"));
        let m = IrcMsg::parse("PING srv").unwrap();
        assert_eq!(m.last(), "srv");
        let m = IrcMsg::parse(":srv  PONG  srv   :nlsync").unwrap();
        assert_eq!((m.command, m.params.len(), m.last()), ("PONG", 2, "nlsync"));
        assert!(
            IrcMsg::parse(":srv 433 * l0x1 :Nickname already in use")
                .unwrap()
                .is_refusal()
        );
        assert!(
            !IrcMsg::parse(":srv 422 l0x1 :MOTD File is missing")
                .unwrap()
                .is_refusal()
        );
        assert!(IrcMsg::parse("ERROR :Closing link").unwrap().is_refusal());
        assert_eq!(IrcMsg::parse(""), None);
        assert_eq!(IrcMsg::parse(":onlyprefix"), None);
        assert_eq!(IrcMsg::parse("QUIT").unwrap().params.len(), 0);
    }

    #[test]
    fn flag_names_round_trip() {
        for d in [Dialect::Natter, Dialect::Irc] {
            assert_eq!(Dialect::from_flag(d.name()), Some(d));
        }
        assert_eq!(Dialect::from_flag("IRC"), None);
    }
}
