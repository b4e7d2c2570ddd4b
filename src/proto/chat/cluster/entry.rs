//! The entries of the shared log: what one node tells every node, as bytes.
//!
//! # Format
//! One byte, the format version ([`ENTRY_VERSION`]), then a header, the number of bodies and
//! the bodies, each encoded with postcard (varint integers, length-prefixed strings, enums as
//! a varint index). The header is decoded on its own, so an entry whose bodies this program
//! cannot read still counts in its author's sequence. The transfer structs below are kept
//! apart from the core's types on purpose: a refactor of the core cannot change what travels
//! between nodes.
//!
//! - Header: the epoch tag of the log it was written for, the author's node id and its
//!   sequence number (per node, one more per entry: the core drops a number it has applied,
//!   and sees a missing one).
//! - Bodies, applied in order: an event of a connection (with its text already cleaned), a
//!   heartbeat (how far the author has read), or a rejoin (the author's users, re-announced;
//!   always an entry's first body).

use super::LogPos;
use crate::proto::chat::ConnId;
use crate::proto::chat::directory::Origin;
use crate::proto::chat::event::{Event, LeaveNote};
use crate::proto::names::{Nick, RoomName, parse_nick, parse_room};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The version of the entry format this program writes (and the only one it reads).
pub const ENTRY_VERSION: u8 = 1;

/// Why an entry of the log could not be read.
#[derive(Debug, Error)]
pub enum EntryError {
    /// The entry has a format version this program does not read.
    #[error("log entry version {0} is not one this program reads ({ENTRY_VERSION})")]
    Version(u8),
    /// The entry is empty.
    #[error("empty log entry")]
    Empty,
    /// The bytes do not decode.
    #[error("log entry encoding: {0}")]
    Encoding(#[from] postcard::Error),
    /// A name in the entry is not a valid name.
    #[error("log entry names an invalid {0}")]
    Invalid(&'static str),
}

/// Who wrote an entry, for which log, at which point of its own sequence.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) epoch: u32,
    pub(crate) node: u32,
    pub(crate) seq: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
struct ConnV1 {
    index: u32,
    generation: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
struct PosV1 {
    ms: u64,
    seq: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
enum NoteV1 {
    Closed,
    TooSlow,
    IdleTimeout,
    ServerUpgrade,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct RejoinUserV1<'a> {
    conn: ConnV1,
    nick: &'a str,
    room: &'a str,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
enum BodyV1<'a> {
    Login {
        conn: ConnV1,
        #[serde(borrow)]
        nick: Option<&'a str>,
    },
    Rename {
        conn: ConnV1,
        nick: &'a str,
    },
    Join {
        conn: ConnV1,
        room: &'a str,
    },
    Say {
        conn: ConnV1,
        text: &'a str,
    },
    Act {
        conn: ConnV1,
        text: &'a str,
    },
    Whisper {
        conn: ConnV1,
        to: &'a str,
        text: &'a str,
    },
    Who {
        conn: ConnV1,
    },
    Rooms {
        conn: ConnV1,
    },
    Quit {
        conn: ConnV1,
        reason: &'a str,
    },
    Leave {
        conn: ConnV1,
        note: NoteV1,
    },
    Heartbeat {
        applied: PosV1,
    },
    Rejoin {
        previous: Option<u32>,
        guests: u64,
        #[serde(borrow)]
        users: Vec<RejoinUserV1<'a>>,
    },
}

/// A user a node re-announces: its connection there, its nickname and its room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RejoinUser {
    pub(crate) conn: ConnId,
    pub(crate) nick: Nick,
    pub(crate) room: RoomName,
}

/// A node re-announcing its users (after it saw its own death, or when the log started over).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejoin {
    /// The id this node had before, when it took a new one in the same log: retired for good.
    pub(crate) previous: Option<u32>,
    /// The node's guest counter: the directory's becomes at least this.
    pub(crate) guests: u64,
    pub(crate) users: Vec<RejoinUser>,
}

/// What an entry says, typed.
#[derive(Debug)]
pub(crate) enum Body<'a> {
    Event(Event<'a>),
    Heartbeat { applied: LogPos },
    Rejoin(Rejoin),
}

/// Encodes an entry from its header and already encoded bodies.
pub(crate) fn encode(header: Header, bodies: &[&[u8]]) -> Vec<u8> {
    let size: usize = bodies.iter().map(|b| b.len()).sum();
    let mut out = Vec::with_capacity(size + 24);
    out.push(ENTRY_VERSION);
    // Encoding into a Vec cannot fail for these types.
    out = postcard::to_extend(&header, out).unwrap_or_default();
    out = postcard::to_extend(&(bodies.len() as u32), out).unwrap_or_default();
    for body in bodies {
        out.extend_from_slice(body);
    }
    out
}

/// Encodes the body of an event.
pub(crate) fn event_body(event: &Event<'_>) -> Vec<u8> {
    let conn = conn_v1(event.origin().conn);
    let body = match event {
        Event::Login { nick, .. } => BodyV1::Login {
            conn,
            nick: nick.as_ref().map(Nick::as_str),
        },
        Event::Rename { nick, .. } => BodyV1::Rename {
            conn,
            nick: nick.as_str(),
        },
        Event::Join { room, .. } => BodyV1::Join {
            conn,
            room: room.as_str(),
        },
        Event::Say { text, .. } => BodyV1::Say { conn, text },
        Event::Act { text, .. } => BodyV1::Act { conn, text },
        Event::Whisper { to, text, .. } => BodyV1::Whisper {
            conn,
            to: to.as_str(),
            text,
        },
        Event::Who { .. } => BodyV1::Who { conn },
        Event::Rooms { .. } => BodyV1::Rooms { conn },
        Event::Quit { reason, .. } => BodyV1::Quit { conn, reason },
        Event::Leave { note, .. } => BodyV1::Leave {
            conn,
            note: match note {
                LeaveNote::Closed => NoteV1::Closed,
                LeaveNote::TooSlow => NoteV1::TooSlow,
                LeaveNote::IdleTimeout => NoteV1::IdleTimeout,
                LeaveNote::ServerUpgrade => NoteV1::ServerUpgrade,
            },
        },
    };
    to_vec(&body)
}

/// Encodes the body of a heartbeat.
pub(crate) fn heartbeat_body(applied: LogPos) -> Vec<u8> {
    to_vec(&BodyV1::Heartbeat {
        applied: PosV1 {
            ms: applied.ms,
            seq: applied.seq,
        },
    })
}

/// Encodes the body of a rejoin.
pub(crate) fn rejoin_body(rejoin: &Rejoin) -> Vec<u8> {
    to_vec(&BodyV1::Rejoin {
        previous: rejoin.previous,
        guests: rejoin.guests,
        users: rejoin
            .users
            .iter()
            .map(|u| RejoinUserV1 {
                conn: conn_v1(u.conn),
                nick: u.nick.as_str(),
                room: u.room.as_str(),
            })
            .collect(),
    })
}

/// Decodes an entry's header, and returns the rest (the bodies) undecoded.
pub(crate) fn decode_header(payload: &[u8]) -> Result<(Header, &[u8]), EntryError> {
    let (&version, rest) = payload.split_first().ok_or(EntryError::Empty)?;
    if version != ENTRY_VERSION {
        return Err(EntryError::Version(version));
    }
    Ok(postcard::take_from_bytes::<Header>(rest)?)
}

/// The bodies of an entry written by `node`, decoded one by one (after one that does not
/// decode, the rest cannot be found: it is the last).
pub(crate) fn bodies(node: u32, rest: &[u8]) -> impl Iterator<Item = Result<Body<'_>, EntryError>> {
    let (mut left, mut rest, mut error) = match postcard::take_from_bytes::<u32>(rest) {
        Ok((count, rest)) => (count, rest, None),
        Err(e) => (0, &[][..], Some(EntryError::Encoding(e))),
    };
    std::iter::from_fn(move || {
        if let Some(e) = error.take() {
            return Some(Err(e));
        }
        if left == 0 {
            return None;
        }
        left -= 1;
        match postcard::take_from_bytes::<BodyV1<'_>>(rest) {
            Ok((body, more)) => {
                rest = more;
                Some(typed(node, body))
            }
            Err(e) => {
                left = 0;
                Some(Err(EntryError::Encoding(e)))
            }
        }
    })
}

/// Decodes one body written by `node` (for tests).
#[cfg(test)]
fn decode_body(node: u32, body: &[u8]) -> Result<Body<'_>, EntryError> {
    typed(node, postcard::from_bytes::<BodyV1<'_>>(body)?)
}

/// A body as the core's types.
fn typed(node: u32, body: BodyV1<'_>) -> Result<Body<'_>, EntryError> {
    match body {
        BodyV1::Heartbeat { applied } => Ok(Body::Heartbeat {
            applied: LogPos {
                ms: applied.ms,
                seq: applied.seq,
            },
        }),
        BodyV1::Rejoin {
            previous,
            guests,
            users,
        } => {
            let users = users
                .into_iter()
                .map(|u| {
                    Ok(RejoinUser {
                        conn: conn_id(u.conn),
                        nick: nick(u.nick)?,
                        room: room(u.room)?,
                    })
                })
                .collect::<Result<_, EntryError>>()?;
            Ok(Body::Rejoin(Rejoin {
                previous,
                guests,
                users,
            }))
        }
        event => Ok(Body::Event(typed_event(node, event)?)),
    }
}

/// An event body of node `node`, as the core's [`Event`].
fn typed_event(node: u32, body: BodyV1<'_>) -> Result<Event<'_>, EntryError> {
    let origin = |c: ConnV1| Origin {
        node,
        conn: conn_id(c),
    };
    Ok(match body {
        BodyV1::Login { conn, nick: n } => Event::Login {
            who: origin(conn),
            nick: n.map(nick).transpose()?,
        },
        BodyV1::Rename { conn, nick: n } => Event::Rename {
            who: origin(conn),
            nick: nick(n)?,
        },
        BodyV1::Join { conn, room: r } => Event::Join {
            who: origin(conn),
            room: room(r)?,
        },
        BodyV1::Say { conn, text } => Event::Say {
            who: origin(conn),
            text,
        },
        BodyV1::Act { conn, text } => Event::Act {
            who: origin(conn),
            text,
        },
        BodyV1::Whisper { conn, to, text } => Event::Whisper {
            who: origin(conn),
            to: nick(to)?,
            text,
        },
        BodyV1::Who { conn } => Event::Who { who: origin(conn) },
        BodyV1::Rooms { conn } => Event::Rooms { who: origin(conn) },
        BodyV1::Quit { conn, reason } => Event::Quit {
            who: origin(conn),
            reason,
        },
        BodyV1::Leave { conn, note } => Event::Leave {
            who: origin(conn),
            note: match note {
                NoteV1::Closed => LeaveNote::Closed,
                NoteV1::TooSlow => LeaveNote::TooSlow,
                NoteV1::IdleTimeout => LeaveNote::IdleTimeout,
                NoteV1::ServerUpgrade => LeaveNote::ServerUpgrade,
            },
        },
        BodyV1::Heartbeat { .. } | BodyV1::Rejoin { .. } => {
            return Err(EntryError::Invalid("event body"));
        }
    })
}

fn conn_id(c: ConnV1) -> ConnId {
    ConnId {
        index: c.index,
        generation: c.generation,
    }
}

fn nick(s: &str) -> Result<Nick, EntryError> {
    parse_nick(s).map_err(|_| EntryError::Invalid("nickname"))
}

fn room(s: &str) -> Result<RoomName, EntryError> {
    parse_room(s).map_err(|_| EntryError::Invalid("room name"))
}

/// Whether an entry's first body is a rejoin (without decoding it): postcard writes the
/// variant index first, as one byte for these few variants.
pub(crate) fn starts_with_rejoin(rest: &[u8]) -> bool {
    postcard::take_from_bytes::<u32>(rest)
        .is_ok_and(|(count, bodies)| count > 0 && bodies.first() == Some(&REJOIN_TAG))
}

/// The variant index of `BodyV1::Rejoin`.
const REJOIN_TAG: u8 = 11;

fn conn_v1(id: ConnId) -> ConnV1 {
    ConnV1 {
        index: id.index,
        generation: id.generation,
    }
}

fn to_vec(body: &BodyV1<'_>) -> Vec<u8> {
    // Encoding into a Vec cannot fail for these types.
    postcard::to_allocvec(body).unwrap_or_default()
}

#[cfg(test)]
#[path = "entry_tests.rs"]
mod tests;
