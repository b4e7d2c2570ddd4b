//! Counters for operators (SIGUSR1, metrics). They live in the core so that they carry over an
//! upgrade with the rest of the state.

/// What the server has done since it started (across upgrades).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections accepted (refused ones included).
    pub connections: u64,
    /// Connections refused by `--max-clients`.
    pub refused_full: u64,
    /// Connections refused by `--max-per-ip`.
    pub refused_per_address: u64,
    /// Clients disconnected as too slow (`--sendq`).
    pub dropped_too_slow: u64,
    /// Complete input lines received.
    pub lines_received: u64,
    /// Chat lines, actions and whispers delivered to recipients (one per recipient).
    pub lines_delivered: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes the kernel took for clients.
    pub bytes_out: u64,
    /// Upgrades this server has been through.
    pub upgrades: u64,
}

/// Counts that describe the present moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// This node's connections at the nickname prompt.
    pub at_prompt: usize,
    /// This node's logged-in connections.
    pub logged_in: usize,
    /// Users in the whole chat (in a cluster, on every node).
    pub users: usize,
    /// Rooms (the default room included).
    pub rooms: usize,
    /// Milliseconds since the server first started (across upgrades).
    pub uptime_ms: u64,
}
