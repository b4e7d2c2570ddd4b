//! The whole core state as a versioned blob, for an upgrade: exported at a turn boundary by the
//! old process, imported by the new one.
//!
//! # Format
//! Four bytes `NATR`, the format version as a little-endian `u32`, then the state encoded with
//! postcard (its 1.0 wire format is specified and stable: varint integers, length-prefixed
//! sequences, enums as a varint variant index). The state is made of the transfer structs
//! below, which are kept apart from the core's own types on purpose: a refactor of the core
//! cannot change the format without changing this file. A program writes [`STATE_VERSION`] and
//! reads it and the version before it ([`READABLE_VERSIONS`]); anything else is refused.
//!
//! Times are carried as durations relative to the moment of export (time since the last
//! input, time until a timer is due), so the two processes' clocks never need to agree.

use super::admit::PeerKey;
use super::directory::{Directory, Origin};
use super::outbox::Outbox;
use super::session::{Bucket, Hold, Phase, Session};
use super::timers::TimerKind;
use super::{Chat, Closer, ConnId, Counters, Settings};
use crate::proto::names::{Nick, RoomName, parse_nick, parse_room};
use crate::proto::wire::line::LineAssembler;
use crate::proto::wire::telnet::TelnetDecoder;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use thiserror::Error;

/// The version of the state format this program writes (2: version 1 plus a cluster node's
/// own state).
pub const STATE_VERSION: u32 = 2;
/// The versions this program reads: its own and the one before it.
pub const READABLE_VERSIONS: &[u32] = &[STATE_VERSION, 1];

const MAGIC: &[u8; 4] = b"NATR";

/// Why a state could not be exported or imported.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// Export was asked for during a shutdown.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// Export was asked for in the middle of a turn.
    #[error("the state can only be exported at a turn boundary (after a full drain)")]
    NotAtTurnBoundary,
    /// The blob does not start with the format's magic bytes.
    #[error("not a natter state (bad header)")]
    BadHeader,
    /// The blob has a version this program cannot read.
    #[error("state version {0} is not one this program reads ({READABLE_VERSIONS:?})")]
    Version(u32),
    /// The body could not be decoded or encoded.
    #[error("state encoding: {0}")]
    Encoding(#[from] postcard::Error),
    /// The body decoded but does not make sense.
    #[error("state is inconsistent: {0}")]
    Invalid(String),
    /// Export was asked for while an event of this node is on its way through the cluster's
    /// log (the shell stops new ones with `set_quiescing` and waits).
    #[error("events are still on their way through the cluster's log")]
    InFlight,
    /// The state is a standalone server's and this one is a cluster node, or the other way
    /// round: `--redis` cannot be added or removed by an upgrade.
    #[error("the state is a {0}; --redis cannot be added or removed by an upgrade")]
    Mode(&'static str),
}

/// Version 2 of the state: version 1, then a cluster node's own state.
#[derive(Serialize, Deserialize)]
struct StateV2 {
    base: StateV1,
    cluster: Option<super::cluster::ClusterV1>,
}

/// Version 1 of the state.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct StateV1 {
    uptime_ms: u64,
    counters: CountersV1,
    sessions: Vec<SessionV1>,
    /// The default room first.
    rooms: Vec<RoomV1>,
    guests: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct CountersV1 {
    connections: u64,
    refused_full: u64,
    refused_per_address: u64,
    dropped_too_slow: u64,
    lines_received: u64,
    lines_delivered: u64,
    bytes_in: u64,
    bytes_out: u64,
    upgrades: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct SessionV1 {
    index: u32,
    generation: u32,
    phase: PhaseV1,
    hold: HoldV1,
    telnet: TelnetV1,
    after_cr: bool,
    discarding: bool,
    partial_line: Vec<u8>,
    held_input: Vec<u8>,
    unsent: Vec<u8>,
    /// The kernel refused bytes at the last write attempt.
    blocked: bool,
    counted: Option<PeerKeyV1>,
    idle_ms: u64,
    /// How long until the flood-control bucket is full again, in nanoseconds.
    bucket_full_in_ns: u64,
    timers: Vec<TimerV1>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
enum PhaseV1 {
    Greeted,
    Prompt,
    Chatting,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
enum HoldV1 {
    Reading,
    Rate,
    Output,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
enum TelnetV1 {
    Data,
    Iac,
    Option(u8),
    Sub,
    SubIac,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
enum PeerKeyV1 {
    V4([u8; 4]),
    V6([u8; 8]),
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
struct TimerV1 {
    kind: TimerKindV1,
    due_in_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
enum TimerKindV1 {
    Login,
    Idle,
    Rate,
}

/// A room and its members (also the cluster's directory snapshot uses it).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub(super) struct RoomV1 {
    name: String,
    /// In join order.
    members: Vec<MemberV1>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub(super) struct MemberV1 {
    node: u32,
    index: u32,
    generation: u32,
    nick: String,
}

impl Chat {
    /// Exports the whole state. Call it at a turn boundary: after [`Chat::poll_output`] has
    /// returned [`super::Output::Timeout`] and before the next `handle_*` call.
    pub fn export(&self, now: Instant) -> Result<Vec<u8>, SnapshotError> {
        if self.shutting_down {
            return Err(SnapshotError::ShuttingDown);
        }
        if self.log_busy() {
            return Err(SnapshotError::InFlight);
        }
        if !self.closer.is_idle()
            || !self.resumed.is_empty()
            || !self.held_for_output.is_empty()
            || self.outbox.flush_wanted()
        {
            return Err(SnapshotError::NotAtTurnBoundary);
        }
        let now_ms = self.clock_ms(now);
        let base = StateV1 {
            uptime_ms: self.uptime_ms(now_ms),
            counters: counters_v1(self.counters),
            sessions: self
                .sessions
                .iter()
                .map(|(id, s)| self.session_v1(id, s, now_ms))
                .collect::<Result<_, _>>()?,
            rooms: self.rooms_v1(),
            guests: self.directory.guests(),
        };
        let state = StateV2 {
            base,
            cluster: self.cluster_v1(),
        };
        Ok(postcard::to_extend(&state, header(MAGIC, STATE_VERSION))?)
    }

    /// Builds a core from an exported state. `settings` are the new process's own (the
    /// banner may have changed); `now` is the new clock's epoch.
    pub fn import(blob: &[u8], settings: Settings, now: Instant) -> Result<Chat, SnapshotError> {
        let (version, body) = split_header(blob, MAGIC)?;
        if !READABLE_VERSIONS.contains(&version) {
            return Err(SnapshotError::Version(version));
        }
        let (state, cluster) = if version == 1 {
            (postcard::from_bytes::<StateV1>(body)?, None)
        } else {
            let v2: StateV2 = postcard::from_bytes(body)?;
            (v2.base, v2.cluster)
        };
        match (&cluster, settings.cluster) {
            (None, true) => return Err(SnapshotError::Mode("standalone server's")),
            (Some(_), false) => return Err(SnapshotError::Mode("cluster node's")),
            _ => {}
        }
        let mut settings = settings;
        if let Some(c) = &cluster {
            settings.node = c.node();
        }
        let mut chat = restore(state, settings, now)?;
        if let Some(c) = cluster {
            chat.restore_cluster(c);
        }
        Ok(chat)
    }

    fn session_v1(&self, id: ConnId, s: &Session, now_ms: u64) -> Result<SessionV1, SnapshotError> {
        let phase = match s.phase {
            Phase::Greeted => PhaseV1::Greeted,
            Phase::Prompt => PhaseV1::Prompt,
            Phase::Chatting => PhaseV1::Chatting,
            Phase::LoggingIn | Phase::Closing => return Err(SnapshotError::NotAtTurnBoundary),
        };
        let hold = match s.hold {
            // Held only because an upgrade stopped new events: the new process goes on with
            // the held input (input held with no reason is processed at once after import).
            Hold::Reading | Hold::Event => HoldV1::Reading,
            Hold::Rate => HoldV1::Rate,
            Hold::Output => HoldV1::Output,
        };
        let (after_cr, discarding) = s.line.flags();
        let spill = s.spill.as_deref();
        Ok(SessionV1 {
            index: id.index,
            generation: id.generation,
            phase,
            hold,
            telnet: match s.telnet {
                TelnetDecoder::Data => TelnetV1::Data,
                TelnetDecoder::Iac => TelnetV1::Iac,
                TelnetDecoder::Option(verb) => TelnetV1::Option(verb),
                TelnetDecoder::Sub => TelnetV1::Sub,
                TelnetDecoder::SubIac => TelnetV1::SubIac,
            },
            after_cr,
            discarding,
            partial_line: spill.map(|sp| sp.line.clone()).unwrap_or_default(),
            held_input: spill.map(|sp| sp.held.clone()).unwrap_or_default(),
            unsent: self.outbox.unsent(id),
            blocked: self.outbox.is_blocked(id),
            counted: s
                .counted
                .and_then(|t| self.admission.key(t))
                .map(|k| match k {
                    PeerKey::V4(a) => PeerKeyV1::V4(a),
                    PeerKey::V6(p) => PeerKeyV1::V6(p),
                }),
            idle_ms: now_ms.saturating_sub(s.last_input_ms),
            bucket_full_in_ns: s.bucket.full_at_ns.saturating_sub(now_ms * 1_000_000),
            timers: self
                .timers
                .of(id)
                .map(|t| TimerV1 {
                    kind: match t.kind {
                        TimerKind::Login => TimerKindV1::Login,
                        TimerKind::Idle => TimerKindV1::Idle,
                        TimerKind::Rate => TimerKindV1::Rate,
                    },
                    due_in_ms: t.at_ms.saturating_sub(now_ms),
                })
                .collect(),
        })
    }

    /// The rooms, the default room first and the others by name (so that every node of a
    /// cluster lists them alike), each with its members in join order.
    pub(super) fn rooms_v1(&self) -> Vec<RoomV1> {
        let d = &self.directory;
        let default = d.default_room();
        let mut rooms: Vec<_> = d.room_entries().collect();
        // Names are unique without regard to case, so the order leaves nothing to chance.
        rooms.sort_by_cached_key(|&(k, r)| (k != default, r.name.as_str().to_ascii_lowercase()));
        rooms
            .into_iter()
            .map(|(_, r)| RoomV1 {
                name: r.name.as_str().to_string(),
                members: r
                    .members
                    .iter()
                    .filter_map(|&m| d.user(m))
                    .map(|u| MemberV1 {
                        node: u.origin.node,
                        index: u.origin.conn.index,
                        generation: u.origin.conn.generation,
                        nick: u.nick.as_str().to_string(),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// The start of a blob: four magic bytes naming what it is, then its version (little-endian).
pub(super) fn header(magic: &[u8; 4], version: u32) -> Vec<u8> {
    let mut blob = magic.to_vec();
    blob.extend_from_slice(&version.to_le_bytes());
    blob
}

/// A blob's version and body, once its magic bytes are checked.
pub(super) fn split_header<'a>(
    blob: &'a [u8],
    magic: &[u8; 4],
) -> Result<(u32, &'a [u8]), SnapshotError> {
    let (version, body) = blob
        .strip_prefix(magic.as_slice())
        .and_then(<[u8]>::split_first_chunk::<4>)
        .ok_or(SnapshotError::BadHeader)?;
    Ok((u32::from_le_bytes(*version), body))
}

fn counters_v1(c: Counters) -> CountersV1 {
    CountersV1 {
        connections: c.connections,
        refused_full: c.refused_full,
        refused_per_address: c.refused_per_address,
        dropped_too_slow: c.dropped_too_slow,
        lines_received: c.lines_received,
        lines_delivered: c.lines_delivered,
        bytes_in: c.bytes_in,
        bytes_out: c.bytes_out,
        upgrades: c.upgrades,
    }
}

fn restore(state: StateV1, settings: Settings, now: Instant) -> Result<Chat, SnapshotError> {
    let mut chat = Chat::new(settings, now);
    // Start the new clock late enough that every carried-over time is still positive.
    let base = state.sessions.iter().map(|s| s.idle_ms).max().unwrap_or(0);
    chat.offset_ms = base;
    chat.now_ms = base;
    chat.uptime_base_ms = state.uptime_ms;
    let c = state.counters;
    chat.counters = Counters {
        connections: c.connections,
        refused_full: c.refused_full,
        refused_per_address: c.refused_per_address,
        dropped_too_slow: c.dropped_too_slow,
        lines_received: c.lines_received,
        lines_delivered: c.lines_delivered,
        bytes_in: c.bytes_in,
        bytes_out: c.bytes_out,
        upgrades: c.upgrades,
    };
    let rooms = rooms_from_v1(state.rooms)?;
    let reserve = chat.settings.max_clients.min(1 << 20);
    chat.directory = Directory::restore(chat.settings.node, reserve, rooms, state.guests);
    chat.outbox = Outbox::new(chat.settings.sendq, reserve);
    chat.closer = Closer::default();
    for s in state.sessions {
        restore_session(&mut chat, s, base)?;
    }
    Ok(chat)
}

/// Rooms with their members, as a snapshot lists them.
pub(super) type RoomList = Vec<(RoomName, Vec<(Origin, Nick)>)>;

/// The rooms of a snapshot, with their names and members parsed.
pub(super) fn rooms_from_v1(rooms: Vec<RoomV1>) -> Result<RoomList, SnapshotError> {
    let invalid = |what: &str| SnapshotError::Invalid(what.to_string());
    let mut out = Vec::with_capacity(rooms.len());
    for r in rooms {
        let name = parse_room(&r.name).map_err(|_| invalid("a room name"))?;
        let members = r
            .members
            .into_iter()
            .map(|m| member(m).ok_or_else(|| invalid("a member")))
            .collect::<Result<Vec<_>, _>>()?;
        out.push((name, members));
    }
    Ok(out)
}

fn member(m: MemberV1) -> Option<(Origin, Nick)> {
    let nick = parse_nick(&m.nick).ok()?;
    let conn = ConnId {
        index: m.index,
        generation: m.generation,
    };
    Some((Origin { node: m.node, conn }, nick))
}

fn restore_session(chat: &mut Chat, s: SessionV1, now_ms: u64) -> Result<(), SnapshotError> {
    let id = ConnId {
        index: s.index,
        generation: s.generation,
    };
    if chat.sessions.occupant(id.index).is_some() {
        return Err(SnapshotError::Invalid(format!(
            "slot {} used twice",
            id.index
        )));
    }
    let counted = s.counted.map(|k| match k {
        PeerKeyV1::V4(a) => PeerKey::V4(a),
        PeerKeyV1::V6(p) => PeerKey::V6(p),
    });
    let counted = counted.map(|key| chat.admission.count(key));
    let mut session = Session::new(id.generation, counted, now_ms);
    session.phase = match s.phase {
        PhaseV1::Greeted => Phase::Greeted,
        PhaseV1::Prompt => Phase::Prompt,
        PhaseV1::Chatting => Phase::Chatting,
    };
    session.telnet = match s.telnet {
        TelnetV1::Data => TelnetDecoder::Data,
        TelnetV1::Iac => TelnetDecoder::Iac,
        TelnetV1::Option(verb) => TelnetDecoder::Option(verb),
        TelnetV1::Sub => TelnetDecoder::Sub,
        TelnetV1::SubIac => TelnetDecoder::SubIac,
    };
    session.line = LineAssembler::from_flags(s.after_cr, s.discarding);
    session.keep_line(&s.partial_line);
    session.last_input_ms = now_ms - s.idle_ms.min(now_ms);
    session.bucket = Bucket {
        full_at_ns: now_ms * 1_000_000 + s.bucket_full_in_ns,
    };
    let hold = match s.hold {
        HoldV1::Reading => Hold::Reading,
        HoldV1::Rate => Hold::Rate,
        HoldV1::Output => Hold::Output,
    };
    session.hold_input(hold, &s.held_input);
    chat.sessions.insert(id, session);
    chat.outbox.restore(id, &s.unsent, s.blocked);
    if hold == Hold::Output {
        chat.held_for_output.push(id);
    }
    for t in s.timers {
        let kind = match t.kind {
            TimerKindV1::Login => TimerKind::Login,
            TimerKindV1::Idle => TimerKind::Idle,
            TimerKindV1::Rate => TimerKind::Rate,
        };
        chat.timers.push(now_ms + t.due_in_ms, id, kind);
    }
    Ok(())
}
