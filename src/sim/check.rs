//! What the model shell checks: after every step ([`Sim::check`], and after each timeout that
//! the next deadline moved on), and at the end, once everyone has gone ([`Sim::finish`]).

use super::{Sim, SimError, check_text, fail};
use crate::proto::chat::ConnId;

impl Sim {
    /// Disconnects everyone still open and checks that nothing is left behind; then lets every
    /// timer run out and checks that none is left, and that every byte sent was clean text.
    pub fn finish(&mut self) -> Result<(), SimError> {
        self.drain()?;
        let open: Vec<ConnId> = self.conns.iter().filter(|c| c.open).map(|c| c.id).collect();
        for id in open {
            self.disconnect(id)?;
        }
        self.drain()?;
        if self.chat.connection_count() != 0 || self.chat.room_count() != 1 {
            return fail(format!(
                "{} connections and {} rooms left when everyone has gone",
                self.chat.connection_count(),
                self.chat.room_count()
            ));
        }
        self.advance(86_400_000)?;
        self.drain()?;
        if let Some(at) = self.chat.next_deadline() {
            return fail(format!("a timer at {:?} outlives everyone", at - self.base));
        }
        for c in &self.conns {
            check_text(&c.received, c.cut).map_err(|e| SimError(format!("{:?}: {e}", c.id)))?;
        }
        Ok(())
    }

    /// The checks made after every step.
    pub fn check(&self) -> Result<(), SimError> {
        if !self.checks {
            return Ok(());
        }
        self.chat.check_invariants().map_err(SimError)?;
        let open = self.conns.iter().filter(|c| c.open).count();
        if self.chat.connection_count() > open {
            return fail(format!(
                "core counts {} connections, the shell {open}",
                self.chat.connection_count()
            ));
        }
        // Closes the core reported but the shell has not drained yet count as open here.
        let pending_close = self.chat.connection_count() < open;
        let mut queued = 0;
        for c in &self.conns {
            if c.open
                && !pending_close
                && !self.chat.wants_input(c.id)
                && !self.chat.wants_flush()
                && self.chat.next_deadline().is_none()
            {
                return fail(format!("{:?} is held with no deadline to wake it", c.id));
            }
            queued += self.chat.pending(c.id);
            if !c.open && (self.chat.pending(c.id) > 0 || self.chat.wants_input(c.id)) {
                return fail(format!("closed {:?} still has output or wants input", c.id));
            }
        }
        if queued != self.chat.queued_bytes() {
            return fail(format!(
                "{queued} bytes queued, queued_bytes says {}",
                self.chat.queued_bytes()
            ));
        }
        Ok(())
    }

    pub(super) fn timeout(&mut self) -> Result<(), SimError> {
        let now = self.now();
        self.chat.handle_timeout(now);
        if let Some(at) = self.chat.next_deadline()
            && at <= now
        {
            return fail(format!(
                "next deadline {:?} is not after now {:?}",
                at - self.base,
                now - self.base
            ));
        }
        self.check()
    }
}
