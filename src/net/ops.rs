//! What the server tells operators: the counters (SIGUSR1, metrics) and its status (systemd).

use super::event_loop::Server;
use super::log;
use super::metrics::Counters;
use super::notify::Status;

impl Server {
    /// The counters of the SIGUSR1 line and the metrics, from the core's own (which carry over
    /// upgrades) and this process's log.
    pub(super) fn counters(&self) -> Counters {
        let c = self.chat.counters();
        let g = self.chat.gauges();
        Counters {
            at_prompt: g.at_prompt as u64,
            logged_in: g.logged_in as u64,
            connections: self.conns.len() as u64,
            rooms: g.rooms as u64,
            lines_received: c.lines_received,
            lines_delivered: c.lines_delivered,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            refused_server_full: c.refused_full,
            refused_per_address: c.refused_per_address,
            dropped_too_slow: c.dropped_too_slow,
            uptime_seconds: g.uptime_ms / 1000,
            upgrades: c.upgrades,
            log_lines_dropped: log::dropped_total(),
        }
    }

    /// What systemd's `STATUS=` shows.
    pub(super) fn status(&self) -> Status {
        Status {
            users: self.chat.user_count(),
            rooms: self.chat.room_count(),
        }
    }
}
