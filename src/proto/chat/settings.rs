//! The core's own settings: what the chat needs to know, in its own terms (the shell's flags
//! live in `crate::config`, which builds this; the core never imports it).

use crate::proto::names::{RoomName, parse_room};
use crate::proto::reply;
use std::time::Duration;

/// Everything the chat core is told at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Banner lines (without the `*** ` prefix).
    pub banner: Vec<String>,
    /// The room users enter on login; it always exists.
    pub default_room: RoomName,
    /// Longest input line in bytes, not counting the line end.
    pub max_line: usize,
    /// Most connections at once (resolved: the shell derives it from the open-file limit).
    pub max_clients: usize,
    /// Most connections per address (IPv6 per /64); 0 turns the limit off.
    pub max_per_ip: usize,
    /// Whether loopback addresses count against `max_per_ip`.
    pub limit_loopback: bool,
    /// Unsent output bytes after which a client is disconnected as too slow.
    pub sendq: usize,
    /// Input lines per second per client; 0 turns flood control off.
    pub rate: u32,
    /// Lines a client may send at once before `rate` applies.
    pub burst: u32,
    /// Joins, leaves and renames are announced only in rooms of at most this many; 0 = always.
    pub quiet_above: usize,
    /// Close connections silent this long.
    pub idle_timeout: Option<Duration>,
    /// Close connections that have not logged in after this long.
    pub login_timeout: Option<Duration>,
    /// This node's number in a cluster (0 for a standalone server; in a cluster the shell's
    /// [`super::Chat::handle_cluster_start`] gives the real one).
    pub node: u32,
    /// Whether this core is one node of a cluster: events then go through the shared log
    /// ([`super::Output::Publish`], [`super::Chat::handle_entry`]) instead of being applied
    /// at once.
    pub cluster: bool,
}

impl Default for Settings {
    /// The contract's defaults, with room for 10,000 connections.
    fn default() -> Self {
        Settings {
            banner: reply::DEFAULT_BANNER
                .iter()
                .map(|s| s.to_string())
                .collect(),
            default_room: parse_room("lobby").unwrap_or(RoomName::EMPTY),
            max_line: 512,
            max_clients: 10_000,
            max_per_ip: 32,
            limit_loopback: false,
            sendq: 262_144,
            rate: 5,
            burst: 20,
            quiet_above: 1000,
            idle_timeout: None,
            login_timeout: None,
            node: 0,
            cluster: false,
        }
    }
}

impl Settings {
    /// Whether joins, leaves and renames are announced in a room of `members` (the user
    /// concerned included).
    pub(super) fn announces(&self, members: usize) -> bool {
        self.quiet_above == 0 || members <= self.quiet_above
    }
}
