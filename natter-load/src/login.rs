//! One client's way from "connected" to "ready", in either dialect, without sockets: the pool
//! feeds it what arrives and sends what it answers, so every step is unit-tested here.
//!
//! natter (PROTOCOL.md, relying on no exact reply text):
//! 1. read until the prompt `Your nickname: ` (no line end); a client whose goal is the prompt
//!    is ready here and sends nothing; otherwise it sends `NICK`;
//! 2. wait for a `*** ` line naming NICK (the login reply); an `!!! ` line instead is a refusal;
//! 3. optionally send `/join ROOM`, then whisper itself `/w NICK nlsync` and wait for the echo
//!    `-> *NICK* nlsync`: the server handles a client's lines in order, so everything the join
//!    caused for this client has been sent before that echo.
//!
//! IRC: send `NICK`/`USER`, wait for `001`, optionally `JOIN #ROOM`, then `PING :nlsync` and
//! wait for the `PONG` carrying `nlsync` (same ordering argument). An error numeric or `ERROR`
//! before that is a refusal. A `PING` from the server is answered with `PONG` in every phase
//! and never shown to the scenario.

use crate::dialect::{Dialect, IrcMsg, push_channel};
use crate::wire;

/// The token every client uses for its sync barrier.
pub const SYNC_TOKEN: &str = "nlsync";

/// How far a client goes before it counts as ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Goal {
    /// Stop at natter's nickname prompt and stay silent.
    Prompt,
    /// Log in, join `join` if given, and pass the sync barrier.
    Login {
        /// Room to join after login (`None`: stay in natter's default room).
        join: Option<String>,
        /// IRC only: `NAME PASSWORD` to become an IRC operator and set user mode `+F`
        /// (ngircd's relaxed flood protection) before joining.
        oper: Option<String>,
    },
}

impl Goal {
    /// Log in and join `join` (if given).
    pub fn join(join: Option<String>) -> Goal {
        Goal::Login { join, oper: None }
    }
}

/// Where a client is on its way; the pool counts these for timeout messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect not finished.
    Connecting,
    /// natter: waiting for the nickname prompt.
    AwaitPrompt,
    /// Waiting for the login reply (natter) or `001` (IRC).
    AwaitLogin,
    /// Waiting for the sync barrier's answer.
    AwaitSync,
    /// Done: later lines belong to the scenario.
    Ready,
}

/// What the pool must do after feeding an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing.
    Wait,
    /// Send these bytes.
    Send(String),
    /// The client just became ready.
    Ready,
    /// The server refused the client; the reason names it.
    Refused(String),
    /// A line for the scenario (only once ready).
    Deliver(String),
}

/// One client's login state.
#[derive(Debug)]
pub struct Login {
    dialect: Dialect,
    nick: String,
    goal: Goal,
    phase: Phase,
}

impl Login {
    /// A client that will log in as `nick` and go as far as `goal`.
    pub fn new(dialect: Dialect, nick: &str, goal: Goal) -> Login {
        Login {
            dialect,
            nick: nick.to_owned(),
            goal,
            phase: Phase::Connecting,
        }
    }

    /// The client's nickname.
    pub fn nick(&self) -> &str {
        &self.nick
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True once the scenario owns the client.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// True while the client waits for natter's prompt (the pool then checks its unfinished
    /// line after every read).
    pub fn wants_prompt(&self) -> bool {
        self.phase == Phase::AwaitPrompt
    }

    /// The TCP connection is established. An IRC client speaks first.
    pub fn connected(&mut self) -> Step {
        match self.dialect {
            Dialect::Natter => {
                self.phase = Phase::AwaitPrompt;
                Step::Wait
            }
            Dialect::Irc => {
                self.phase = Phase::AwaitLogin;
                let n = &self.nick;
                Step::Send(format!("NICK {n}\r\nUSER {n} 0 * :{n}\r\n"))
            }
        }
    }

    /// natter's prompt arrived (only called while [`Login::wants_prompt`]).
    pub fn prompt(&mut self) -> Step {
        match self.goal {
            Goal::Prompt => {
                self.phase = Phase::Ready;
                Step::Ready
            }
            Goal::Login { .. } => {
                self.phase = Phase::AwaitLogin;
                Step::Send(format!("{}\r\n", self.nick))
            }
        }
    }

    /// A complete line arrived (without its line end).
    pub fn line(&mut self, line: String) -> Step {
        match self.dialect {
            Dialect::Natter => self.natter_line(line),
            Dialect::Irc => self.irc_line(line),
        }
    }

    fn natter_line(&mut self, line: String) -> Step {
        match self.phase {
            Phase::Ready => Step::Deliver(line),
            Phase::AwaitLogin | Phase::AwaitSync if line.starts_with("!!! ") => {
                Step::Refused(format!("{} was refused: {line}", self.nick))
            }
            Phase::AwaitLogin if wire::notice_names(&line, &self.nick) => {
                self.phase = Phase::AwaitSync;
                let mut req = String::new();
                if let Goal::Login {
                    join: Some(room), ..
                } = &self.goal
                {
                    req.push_str(&format!("/join {room}\r\n"));
                }
                req.push_str(&wire::barrier_request(&self.nick, SYNC_TOKEN));
                Step::Send(req)
            }
            Phase::AwaitSync if wire::is_barrier_echo(&line, &self.nick, SYNC_TOKEN) => {
                self.phase = Phase::Ready;
                Step::Ready
            }
            // The banner, notices about others before we are ready: not the scenario's business.
            _ => Step::Wait,
        }
    }

    fn irc_line(&mut self, line: String) -> Step {
        let Some(msg) = IrcMsg::parse(&line) else {
            return self.irc_other(line);
        };
        if msg.command == "PING" {
            return Step::Send(format!("PONG :{}\r\n", msg.last()));
        }
        match self.phase {
            Phase::AwaitLogin | Phase::AwaitSync if msg.is_refusal() => {
                Step::Refused(format!("{} was refused: {line}", self.nick))
            }
            Phase::AwaitLogin if msg.command == "001" => {
                self.phase = Phase::AwaitSync;
                let mut req = String::new();
                let Goal::Login { join, oper } = &self.goal else {
                    return Step::Wait;
                };
                if let Some(name_password) = oper {
                    let n = &self.nick;
                    req.push_str(&format!("OPER {name_password}\r\nMODE {n} +F\r\n"));
                }
                if let Some(room) = join {
                    req.push_str("JOIN ");
                    push_channel(&mut req, room);
                    req.push_str("\r\n");
                }
                req.push_str(&format!("PING :{SYNC_TOKEN}\r\n"));
                Step::Send(req)
            }
            Phase::AwaitSync if msg.command == "PONG" && msg.last() == SYNC_TOKEN => {
                self.phase = Phase::Ready;
                Step::Ready
            }
            _ => self.irc_other(line),
        }
    }

    fn irc_other(&self, line: String) -> Step {
        if self.phase == Phase::Ready {
            Step::Deliver(line)
        } else {
            Step::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(d: Dialect, join: Option<&str>) -> Login {
        Login::new(d, "l0x1", Goal::join(join.map(str::to_owned)))
    }

    fn line(l: &mut Login, s: &str) -> Step {
        l.line(s.to_owned())
    }

    #[test]
    fn natter_login_join_and_barrier() {
        let mut l = login(Dialect::Natter, Some("r1"));
        assert_eq!(l.connected(), Step::Wait);
        assert!(l.wants_prompt());
        assert_eq!(line(&mut l, "*** Welcome to natter"), Step::Wait);
        assert_eq!(l.prompt(), Step::Send("l0x1\r\n".into()));
        // A notice naming someone else, or a longer nickname, is not our login reply.
        assert_eq!(line(&mut l, "*** l0x10 joined #lobby"), Step::Wait);
        assert_eq!(
            line(&mut l, "*** Welcome, l0x1! You are in #lobby."),
            Step::Send("/join r1\r\n/w l0x1 nlsync\r\n".into())
        );
        assert_eq!(line(&mut l, "*** You joined #r1 (3 users)."), Step::Wait);
        assert_eq!(line(&mut l, "*l0x1* nlsync"), Step::Wait);
        assert_eq!(line(&mut l, "-> *l0x1* nlsync"), Step::Ready);
        assert!(l.is_ready());
        assert_eq!(line(&mut l, "<a> hi"), Step::Deliver("<a> hi".into()));
    }

    #[test]
    fn natter_refusal_and_default_room() {
        let mut l = login(Dialect::Natter, None);
        l.connected();
        l.prompt();
        let step = line(&mut l, "!!! The nickname l0x1 is already taken.");
        assert!(matches!(step, Step::Refused(r) if r.contains("already taken")));
        let mut l = login(Dialect::Natter, None);
        l.connected();
        l.prompt();
        assert_eq!(
            line(&mut l, "*** Welcome, l0x1! You are in #lobby."),
            Step::Send("/w l0x1 nlsync\r\n".into())
        );
    }

    #[test]
    fn natter_stops_at_the_prompt() {
        let mut l = Login::new(Dialect::Natter, "l0x1", Goal::Prompt);
        l.connected();
        assert_eq!(l.prompt(), Step::Ready);
        assert!(l.is_ready() && !l.wants_prompt());
    }

    #[test]
    fn irc_register_join_and_barrier() {
        let mut l = login(Dialect::Irc, Some("nl5"));
        assert_eq!(
            l.connected(),
            Step::Send("NICK l0x1\r\nUSER l0x1 0 * :l0x1\r\n".into())
        );
        assert!(!l.wants_prompt());
        assert_eq!(
            line(&mut l, "PING :auth123"),
            Step::Send("PONG :auth123\r\n".into())
        );
        assert_eq!(line(&mut l, ":srv NOTICE * :*** Looking up"), Step::Wait);
        assert_eq!(
            line(&mut l, ":srv 001 l0x1 :Welcome"),
            Step::Send("JOIN #nl5\r\nPING :nlsync\r\n".into())
        );
        assert_eq!(
            line(&mut l, ":srv 422 l0x1 :MOTD File is missing"),
            Step::Wait
        );
        assert_eq!(line(&mut l, ":l0x1!~l0x1@h JOIN :#nl5"), Step::Wait);
        assert_eq!(line(&mut l, ":srv PONG srv :other"), Step::Wait);
        assert_eq!(line(&mut l, ":srv PONG srv :nlsync"), Step::Ready);
        assert_eq!(line(&mut l, "PING srv"), Step::Send("PONG :srv\r\n".into()));
        let msg = ":a!b@c PRIVMSG #nl5 :hi";
        assert_eq!(line(&mut l, msg), Step::Deliver(msg.into()));
    }

    #[test]
    fn irc_operator_with_relaxed_flood_protection() {
        let goal = Goal::Login {
            join: Some("r".into()),
            oper: Some("bench secret".into()),
        };
        let mut l = Login::new(Dialect::Irc, "l0x1", goal);
        l.connected();
        assert_eq!(
            line(&mut l, ":srv 001 l0x1 :Welcome"),
            Step::Send("OPER bench secret\r\nMODE l0x1 +F\r\nJOIN #r\r\nPING :nlsync\r\n".into())
        );
        assert_eq!(
            line(&mut l, ":srv 381 l0x1 :You are now an IRC Operator"),
            Step::Wait
        );
        let step = line(&mut l, ":srv 481 l0x1 :Permission denied");
        assert!(matches!(step, Step::Refused(_)));
    }

    #[test]
    fn irc_refusals() {
        for reply in [
            ":srv 433 * l0x1 :Nickname already in use",
            "ERROR :Closing connection",
        ] {
            let mut l = login(Dialect::Irc, Some("r"));
            l.connected();
            assert!(matches!(line(&mut l, reply), Step::Refused(_)), "{reply}");
        }
        let mut l = login(Dialect::Irc, Some("r"));
        l.connected();
        line(&mut l, ":srv 001 l0x1 :Welcome");
        let step = line(
            &mut l,
            ":srv 405 l0x1 #r :You have joined too many channels",
        );
        assert!(matches!(step, Step::Refused(_)));
    }
}
