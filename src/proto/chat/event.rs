//! The ordered-event seam: the only way the shared directory changes or is asked about.
//!
//! A line that changes or reads shared state (nicknames, rooms, membership, the guest counter)
//! becomes an [`Event`] made by one connection. The event carries the request, not its
//! outcome: whether a nickname is free, whether a whisper's target exists, what `/who`
//! answers, is decided when the event is applied (`commands`). Standalone, an event
//! is applied as soon as it is made. In a cluster every node applies every event in the order
//! of one shared log, so every node decides the same and holds the same directory; each node
//! then writes only to its own connections. Everything else (telnet, framing, flood control,
//! output queues) stays local to the node.

use super::directory::Origin;
use crate::proto::names::{Nick, RoomName};

/// One request to the shared directory, made by connection `who`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Log in as `nick`, or as the next guest name when `None`.
    Login {
        /// The connection that made the event.
        who: Origin,
        /// The nickname asked for.
        nick: Option<Nick>,
    },
    /// Change nickname.
    Rename {
        /// The connection that made the event.
        who: Origin,
        /// The nickname asked for.
        nick: Nick,
    },
    /// Leave the current room and join (or create) `room`.
    Join {
        /// The connection that made the event.
        who: Origin,
        /// The room asked for.
        room: RoomName,
    },
    /// Chat text (already cleaned and not blank) for the user's room.
    Say {
        /// The connection that made the event.
        who: Origin,
        /// The text, cleaned of control characters and escapes.
        text: &'a str,
    },
    /// An action (`/me`, already cleaned and not blank) for the user's room.
    Act {
        /// The connection that made the event.
        who: Origin,
        /// The text, cleaned of control characters and escapes.
        text: &'a str,
    },
    /// A private message (cleaned; nothing is sent when it is blank, but an unknown target is
    /// still an error).
    Whisper {
        /// The connection that made the event.
        who: Origin,
        /// The nickname the whisper is for.
        to: Nick,
        /// The text, cleaned of control characters and escapes.
        text: &'a str,
    },
    /// `/who`.
    Who {
        /// The connection that made the event.
        who: Origin,
    },
    /// `/rooms`.
    Rooms {
        /// The connection that made the event.
        who: Origin,
    },
    /// `/quit` with a reason (cleaned, may be empty): the room is told, the user gets its
    /// goodbye and the connection closes.
    Quit {
        /// The connection that made the event.
        who: Origin,
        /// What the user gave as the reason (cleaned; may be empty).
        reason: &'a str,
    },
    /// The connection of a user (or of one whose login is on its way) has closed.
    Leave {
        /// The connection that made the event.
        who: Origin,
        /// What the room is told in parentheses.
        note: LeaveNote,
    },
}

/// Why a user left without `/quit`, as the room is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveNote {
    /// `(connection closed)`
    Closed,
    /// `(too slow)`
    TooSlow,
    /// `(idle timeout)`
    IdleTimeout,
    /// `(server upgrade)`
    ServerUpgrade,
}

impl LeaveNote {
    /// The words in parentheses.
    pub fn text(self) -> &'static str {
        match self {
            LeaveNote::Closed => "connection closed",
            LeaveNote::TooSlow => "too slow",
            LeaveNote::IdleTimeout => "idle timeout",
            LeaveNote::ServerUpgrade => "server upgrade",
        }
    }
}

impl Event<'_> {
    /// The connection that made the event.
    pub fn origin(&self) -> Origin {
        match *self {
            Event::Login { who, .. }
            | Event::Rename { who, .. }
            | Event::Join { who, .. }
            | Event::Say { who, .. }
            | Event::Act { who, .. }
            | Event::Whisper { who, .. }
            | Event::Who { who }
            | Event::Rooms { who }
            | Event::Quit { who, .. }
            | Event::Leave { who, .. } => who,
        }
    }
}
