//! The core's invariants, checked by tests and fuzzing after every step.

use super::session::Phase;
use super::{Chat, Origin};

impl Chat {
    /// Checks the core's invariants; returns what is wrong.
    pub fn check_invariants(&self) -> Result<(), String> {
        let in_rooms = self.check_directory()?;
        self.check_sessions(in_rooms)
    }

    /// Rooms and users agree; returns how many users the rooms hold.
    fn check_directory(&self) -> Result<usize, String> {
        let d = &self.directory;
        let mut in_rooms = 0;
        for (r, room) in d.room_entries() {
            if room.members.is_empty() && r != d.default_room() {
                return Err(format!("empty room #{} kept", room.name));
            }
            for &m in &room.members {
                let user = d
                    .user(m)
                    .ok_or(format!("member {m} of #{} is gone", room.name))?;
                if user.room != r {
                    return Err(format!(
                        "{} is listed in #{} but is elsewhere",
                        user.nick, room.name
                    ));
                }
            }
            in_rooms += room.members.len();
        }
        for (u, user) in d.users() {
            if d.find_nick(user.nick.as_str()) != Some(u) || d.find(user.origin) != Some(u) {
                return Err(format!(
                    "{} cannot be found by nickname or origin",
                    user.nick
                ));
            }
            let local = user.origin.node == self.settings.node;
            let session = self.sessions.get(user.origin.conn);
            // In a cluster a login may be applied after its connection closed: its leave is
            // on its way.
            let leaving = self
                .cluster
                .as_ref()
                .is_some_and(|c| c.is_waiting(user.origin.conn));
            if local && !leaving && !session.is_some_and(|s| s.phase == Phase::Chatting) {
                return Err(format!("{} has no logged-in session", user.nick));
            }
        }
        Ok(in_rooms)
    }

    /// Sessions, queues and the directory agree.
    fn check_sessions(&self, in_rooms: usize) -> Result<(), String> {
        let d = &self.directory;
        let mut queued = 0;
        let mut live = 0;
        for (id, s) in self.sessions.iter() {
            live += 1;
            queued += self.outbox.pending(id);
            if s.phase == Phase::Closing {
                return Err(format!("{id} is still closing between calls"));
            }
            let origin = Origin {
                node: self.settings.node,
                conn: id,
            };
            // In a cluster a user waiting to rejoin is out of the directory meanwhile.
            let rejoining = self.cluster.as_ref().is_some_and(|c| c.is_rejoining(id));
            if s.phase == Phase::Chatting && !rejoining && d.find(origin).is_none() {
                return Err(format!("{id} is logged in but not in the directory"));
            }
        }
        if in_rooms != d.user_count() || live != self.sessions.live() {
            return Err(format!(
                "counts disagree: {} users, {in_rooms} in rooms, {live}/{} live",
                d.user_count(),
                self.sessions.live()
            ));
        }
        if queued != self.outbox.queued() {
            return Err(format!(
                "{queued} bytes queued, {} counted",
                self.outbox.queued()
            ));
        }
        // Other nodes' users keep rooms of a cluster.
        let rooms_left = self.cluster.is_none() && d.room_count() != 1;
        if live == 0 && (self.admission.addresses() != 0 || rooms_left) {
            return Err("state left behind with no connections".to_string());
        }
        Ok(())
    }
}
