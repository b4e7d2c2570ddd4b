//! Nodes going and coming back: a gone node's users leave (on every node, in the same order),
//! and a node that comes back re-announces its users, who re-enter their rooms; one whose
//! nickname was taken meanwhile becomes a guest.

use super::Chat;
use super::entry::{self, Rejoin, RejoinUser};
use crate::proto::chat::directory::Origin;
use crate::proto::chat::event::{Event, LeaveNote};
use crate::proto::chat::session::Hold;

impl Chat {
    /// Node `node` was declared gone at this entry: its users leave their rooms. When it is
    /// this node, its users are kept aside and re-announced at once.
    pub(super) fn node_gone(&mut self, node: u32) {
        let own = node == self.settings.node;
        if own {
            let users = self.local_users();
            if let Some(c) = &mut self.cluster {
                c.rejoining = users;
            }
        }
        self.remove_users_of(node);
        if own {
            let guests = self.directory.guests();
            self.announce(None, guests);
        }
    }

    /// Publishes a rejoin of the users waiting to rejoin (their input is held until it comes
    /// back), then every event still on its way, again, after it.
    pub(super) fn announce(&mut self, previous: Option<u32>, guests: u64) {
        let Some(c) = &mut self.cluster else {
            return;
        };
        let rejoin = Rejoin {
            previous,
            guests,
            users: c
                .rejoining
                .iter()
                .map(|(&conn, &(nick, room))| RejoinUser { conn, nick, room })
                .collect(),
        };
        c.queue_rejoin(entry::rejoin_body(&rejoin));
        for u in &rejoin.users {
            if let Some(s) = self.sessions.open_mut(u.conn)
                && s.hold == Hold::Reading
            {
                s.hold = Hold::Event;
            }
        }
    }

    /// Applies node `node`'s rejoin: the node it replaces is retired and its users leave;
    /// then every user it names enters its room (as a guest if its nickname is taken).
    pub(super) fn apply_rejoin(&mut self, node: u32, rejoin: Rejoin) {
        if let Some(previous) = rejoin.previous.filter(|&p| p != node)
            && let Some(c) = &mut self.cluster
        {
            let now = c.clock.now;
            c.nodes.retire(previous, now);
            self.remove_users_of(previous);
        }
        self.remove_users_of(node);
        self.directory.raise_guests(rejoin.guests);
        for u in rejoin.users {
            let who = Origin { node, conn: u.conn };
            self.applier().rejoin(who, u.nick, u.room);
        }
    }

    /// Every user of `node` leaves, in connection order (the same on every node).
    fn remove_users_of(&mut self, node: u32) {
        for who in self.directory.users_of(node) {
            self.apply(Event::Leave {
                who,
                note: LeaveNote::Closed,
            });
        }
    }
}
