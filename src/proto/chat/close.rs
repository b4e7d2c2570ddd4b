//! Closing: the one path every close takes.
//!
//! A close is requested at any time ([`Closer::request`]): the session stops taking input and
//! output at once, but nothing is freed while a broadcast may still be walking a room. At the
//! end of every `handle_*` call, [`Chat::finish`] carries the requests out: the directory is
//! told (an event, so the room hears it), the address count, the queue and the session are
//! freed, and the shell gets the last bytes to send.

use super::event::{Event, LeaveNote};
use super::outbox::Outbox;
use super::session::{Phase, Sessions};
use super::{Chat, CloseReason, Closed, ConnId};
use std::collections::VecDeque;

#[derive(Default)]
pub(super) struct Closer {
    /// Requested during this call, carried out at its end (last requested first).
    pending: Vec<Pending>,
    /// Carried out, waiting for the shell.
    closed: VecDeque<Closed>,
}

struct Pending {
    id: ConnId,
    reason: CloseReason,
    /// Whether the connection had asked to log in (the directory must hear of the close).
    had_login: bool,
}

impl Closer {
    /// Asks for `id` to be closed (once; later requests for it are ignored).
    pub(super) fn request(
        &mut self,
        sessions: &mut Sessions,
        outbox: &mut Outbox,
        id: ConnId,
        reason: CloseReason,
    ) {
        let Some(s) = sessions.open_mut(id) else {
            return;
        };
        let had_login = s.has_login();
        s.phase = Phase::Closing;
        outbox.seal(id);
        self.pending.push(Pending {
            id,
            reason,
            had_login,
        });
    }

    /// A connection turned away at connect: it never had a session.
    pub(super) fn refuse(&mut self, id: ConnId, reason: CloseReason, final_output: Vec<u8>) {
        self.closed.push_back(Closed {
            id,
            reason,
            final_output,
        });
    }

    pub(super) fn next_closed(&mut self) -> Option<Closed> {
        self.closed.pop_front()
    }

    pub(super) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.closed.is_empty()
    }
}

impl CloseReason {
    /// What the room is told in parentheses after `*** NICK left #ROOM`.
    fn leave_note(self) -> LeaveNote {
        match self {
            CloseReason::TooSlow => LeaveNote::TooSlow,
            CloseReason::IdleTimeout => LeaveNote::IdleTimeout,
            CloseReason::ServerUpgrade => LeaveNote::ServerUpgrade,
            _ => LeaveNote::Closed,
        }
    }

    /// Whether the shell asked for this close (it has already dropped the socket).
    fn is_from_shell(self) -> bool {
        matches!(self, CloseReason::PeerClosed | CloseReason::SocketError)
    }
}

impl Chat {
    /// Asks for `id` to be closed at the end of this call.
    pub(super) fn request_close(&mut self, id: ConnId, reason: CloseReason) {
        self.closer
            .request(&mut self.sessions, &mut self.outbox, id, reason);
    }

    /// Carries out every close requested during this call (which may request more: a leave
    /// notice can make another member too slow).
    pub(super) fn finish(&mut self) {
        loop {
            while let Some(id) = self.outbox.take_too_slow() {
                self.request_close(id, CloseReason::TooSlow);
            }
            let Some(p) = self.closer.pending.pop() else {
                return;
            };
            self.carry_out(p);
        }
    }

    fn carry_out(&mut self, p: Pending) {
        let who = self.origin_of(p.id);
        // In a cluster the directory may not have the user yet (its login is on its way) or
        // any more (it waits to rejoin): the leave follows whatever is on its way.
        let waiting = self.cluster.as_ref().is_some_and(|c| c.is_waiting(p.id));
        if p.had_login && (waiting || self.directory.find(who).is_some()) {
            self.submit(Event::Leave {
                who,
                note: p.reason.leave_note(),
            });
        }
        let Some(session) = self.sessions.remove(p.id) else {
            return;
        };
        self.admission.release(session.counted);
        let unsent = self.outbox.close(p.id);
        let sessions = &self.sessions;
        self.timers
            .drop_stale(sessions.live(), |id| sessions.is_open(id));
        if p.reason == CloseReason::TooSlow {
            self.counters.dropped_too_slow += 1;
        }
        if !p.reason.is_from_shell() {
            let final_output = if p.reason == CloseReason::TooSlow {
                Vec::new()
            } else {
                unsent
            };
            self.closer.closed.push_back(Closed {
                id: p.id,
                reason: p.reason,
                final_output,
            });
        }
    }
}
