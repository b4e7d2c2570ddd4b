//! One connection's input side: where it is in its life, its telnet and line state, its
//! flood-control bucket and the input it holds. Sessions live in a slot table indexed by the
//! shell's slab key; the generation in a [`ConnId`] guards against a reused slot.

use super::ConnId;
use super::admit::Ticket;
use crate::proto::wire::line::LineAssembler;
use crate::proto::wire::telnet::TelnetDecoder;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Greeted, no line yet (a first line that is an HTTP request ends it).
    Greeted,
    /// At the nickname prompt.
    Prompt,
    /// Its login is on its way through the event log.
    LoggingIn,
    /// Logged in: it has a nickname and a room in the directory.
    Chatting,
    /// Closing: it takes no more input or output; the close is carried out at the end of the
    /// current call.
    Closing,
}

/// Why input processing is stopped with bytes left over (the shell does not read meanwhile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hold {
    /// Not held.
    Reading,
    /// The token bucket is empty; a timer resumes it.
    Rate,
    /// This drain cycle queued a lot of output; the shell's next full write resumes it.
    Output,
    /// Cluster mode: its event is on its way through the shared log (or an upgrade stopped
    /// new events); applying the event resumes it.
    Event,
}

/// The flood-control token bucket (`--burst` lines, refilled at `--rate` per second), kept as
/// one time: when the bucket would be full again (the GCRA form of a token bucket). Each line
/// moves that time on by one line's worth; the bucket holds `burst - (full_at - now) / step`
/// tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bucket {
    /// Nanoseconds on the core's clock when the bucket is full again.
    pub(super) full_at_ns: u64,
}

impl Bucket {
    pub(super) fn full(now_ms: u64) -> Bucket {
        Bucket {
            full_at_ns: ns(now_ms),
        }
    }

    /// Spends one line; false when the bucket is now empty (the next line must wait).
    pub(super) fn take(&mut self, rate: u32, burst: u32, now_ms: u64) -> bool {
        if rate == 0 {
            return true;
        }
        self.full_at_ns = self.full_at_ns.max(ns(now_ms)) + step(rate);
        self.ready(rate, burst, now_ms)
    }

    /// Whether a whole token is there.
    pub(super) fn ready(&self, rate: u32, burst: u32, now_ms: u64) -> bool {
        self.excess_ns(rate, burst, now_ms) == 0
    }

    /// Milliseconds until the bucket holds one whole token again (at least 1).
    pub(super) fn wait_ms(&self, rate: u32, burst: u32, now_ms: u64) -> u64 {
        self.excess_ns(rate, burst, now_ms)
            .div_ceil(1_000_000)
            .max(1)
    }

    /// How far the bucket is below one whole token, in nanoseconds of refill.
    fn excess_ns(&self, rate: u32, burst: u32, now_ms: u64) -> u64 {
        let allowance = u64::from(burst.saturating_sub(1)) * step(rate);
        self.full_at_ns
            .saturating_sub(ns(now_ms))
            .saturating_sub(allowance)
    }
}

/// One line's worth of refill.
fn step(rate: u32) -> u64 {
    1_000_000_000 / u64::from(rate.max(1))
}

fn ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

/// Everything the core keeps per connection on the input side (no heap while idle).
pub(super) struct Session {
    pub(super) generation: u32,
    pub(super) phase: Phase,
    pub(super) hold: Hold,
    pub(super) telnet: TelnetDecoder,
    pub(super) line: LineAssembler,
    /// What this connection counts against `--max-per-ip`, if it counts.
    pub(super) counted: Option<Ticket>,
    pub(super) last_input_ms: u64,
    pub(super) bucket: Bucket,
    /// Rarely used buffers, boxed so an idle session pays one pointer for them.
    pub(super) spill: Option<Box<Spill>>,
}

/// Per-connection input buffers that exist only while needed.
#[derive(Default)]
pub(super) struct Spill {
    /// An unfinished input line.
    pub(super) line: Vec<u8>,
    /// Input read but not processed yet because the connection is held.
    pub(super) held: Vec<u8>,
}

impl Session {
    pub(super) fn new(generation: u32, counted: Option<Ticket>, now_ms: u64) -> Session {
        Session {
            generation,
            phase: Phase::Greeted,
            hold: Hold::Reading,
            telnet: TelnetDecoder::default(),
            line: LineAssembler::default(),
            counted,
            last_input_ms: now_ms,
            bucket: Bucket::full(now_ms),
            spill: None,
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.phase != Phase::Closing
    }

    /// Whether the user has asked to log in (applied or on its way): its close must then be
    /// told to the directory.
    pub(super) fn has_login(&self) -> bool {
        matches!(self.phase, Phase::LoggingIn | Phase::Chatting)
    }

    /// Keeps `bytes` to process once the hold is lifted.
    pub(super) fn hold_input(&mut self, hold: Hold, bytes: &[u8]) {
        self.hold = hold;
        if !bytes.is_empty() {
            self.spill
                .get_or_insert_default()
                .held
                .extend_from_slice(bytes);
        }
    }

    /// Whether input is held (read but not processed).
    pub(super) fn has_held(&self) -> bool {
        self.spill.as_ref().is_some_and(|sp| !sp.held.is_empty())
    }

    /// Lifts the hold and takes the held input.
    pub(super) fn release(&mut self) -> Vec<u8> {
        self.hold = Hold::Reading;
        let held = self
            .spill
            .as_mut()
            .map(|sp| std::mem::take(&mut sp.held))
            .unwrap_or_default();
        self.tidy();
        held
    }

    /// Takes the unfinished line into `buf` (which is cleared first).
    pub(super) fn take_line(&mut self, buf: &mut Vec<u8>) {
        buf.clear();
        if let Some(sp) = &mut self.spill {
            buf.append(&mut sp.line);
        }
    }

    /// Keeps the unfinished line for the next read.
    pub(super) fn keep_line(&mut self, line: &[u8]) {
        if !line.is_empty() {
            self.spill
                .get_or_insert_default()
                .line
                .extend_from_slice(line);
        }
        self.tidy();
    }

    /// Frees the spill buffers once both are empty.
    fn tidy(&mut self) {
        if self
            .spill
            .as_ref()
            .is_some_and(|sp| sp.line.is_empty() && sp.held.is_empty())
        {
            self.spill = None;
        }
    }
}

/// The slot table of sessions.
pub(super) struct Sessions {
    slots: Vec<Option<Session>>,
    live: usize,
}

impl Sessions {
    pub(super) fn with_capacity(reserve: usize) -> Sessions {
        Sessions {
            slots: Vec::with_capacity(reserve),
            live: 0,
        }
    }

    /// Puts a new session in `id`'s slot; returns the session it replaced, if any (the shell
    /// reused a slot the core still held).
    pub(super) fn insert(&mut self, id: ConnId, session: Session) -> Option<Session> {
        let index = id.index as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        let old = self.slots[index].replace(session);
        if old.is_none() {
            self.live += 1;
        }
        old
    }

    /// The connection holding slot `index`, if any.
    pub(super) fn occupant(&self, index: u32) -> Option<ConnId> {
        let s = self.slots.get(index as usize)?.as_ref()?;
        Some(ConnId {
            index,
            generation: s.generation,
        })
    }

    pub(super) fn remove(&mut self, id: ConnId) -> Option<Session> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.as_ref()?.generation != id.generation {
            return None;
        }
        self.live -= 1;
        slot.take()
    }

    pub(super) fn get(&self, id: ConnId) -> Option<&Session> {
        self.slots
            .get(id.index as usize)?
            .as_ref()
            .filter(|s| s.generation == id.generation)
    }

    pub(super) fn get_mut(&mut self, id: ConnId) -> Option<&mut Session> {
        self.slots
            .get_mut(id.index as usize)?
            .as_mut()
            .filter(|s| s.generation == id.generation)
    }

    /// The session, unless it is gone or closing.
    pub(super) fn open_mut(&mut self, id: ConnId) -> Option<&mut Session> {
        self.get_mut(id).filter(|s| s.is_open())
    }

    pub(super) fn is_open(&self, id: ConnId) -> bool {
        self.get(id).is_some_and(Session::is_open)
    }

    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// Every session with its id, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (ConnId, &Session)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.as_ref().map(|s| {
                let id = ConnId {
                    index: i as u32,
                    generation: s.generation,
                };
                (id, s)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::full(0);
        assert!(b.take(2, 3, 0));
        assert!(b.take(2, 3, 0));
        assert!(!b.take(2, 3, 0), "the third line empties it");
        assert_eq!(b.wait_ms(2, 3, 0), 500);
        assert!(!b.ready(2, 3, 499));
        assert!(b.ready(2, 3, 500));
        assert!(Bucket::full(0).take(0, 1, 0), "rate 0 is off");
        // A third of a second per line at 3/s rounds up to the next millisecond.
        let mut b = Bucket::full(0);
        assert!(!b.take(3, 1, 0));
        assert_eq!(b.wait_ms(3, 1, 0), 334);
        // Idle time refills, but never past a full bucket.
        assert!(b.take(3, 2, 10_000) && !b.take(3, 2, 10_000));
    }

    #[test]
    fn held_input_and_the_unfinished_line_free_their_buffers() {
        let mut s = Session::new(1, None, 0);
        s.keep_line(b"par");
        s.hold_input(Hold::Rate, b"tial\r\n");
        let mut buf = Vec::new();
        s.take_line(&mut buf);
        assert_eq!(buf, b"par");
        assert_eq!(s.release(), b"tial\r\n");
        assert_eq!(s.hold, Hold::Reading);
        assert!(s.spill.is_none());
    }

    #[test]
    fn a_session_stays_small() {
        // The memory model in the crate docs counts on this: 10,000 idle connections.
        assert!(std::mem::size_of::<Option<Session>>() <= 40);
    }

    #[test]
    fn a_stale_id_finds_nothing() {
        let mut t = Sessions::with_capacity(4);
        let id = ConnId {
            index: 2,
            generation: 9,
        };
        assert!(t.insert(id, Session::new(9, None, 0)).is_none());
        let stale = ConnId {
            index: 2,
            generation: 8,
        };
        assert!(t.get(stale).is_none() && t.remove(stale).is_none());
        assert_eq!(t.live(), 1);
        assert!(t.remove(id).is_some());
        assert_eq!(t.live(), 0);
    }
}
