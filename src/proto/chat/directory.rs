//! The shared directory: users with their nicknames, rooms with their members in join order, and
//! the guest counter. It changes only when an event is applied (`commands`), so every
//! node that applies the same events in the same order holds the same directory. Nothing here
//! depends on hash order or on which node applies it.

use super::ConnId;
use crate::proto::names::{Nick, RoomName, folded_hash, parse_nick};
use hashbrown::HashTable;
use slab::Slab;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

const NONE: u32 = u32::MAX;

/// Who a user is in the log: the node that holds the connection and the connection there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The node (0 for a standalone server).
    pub node: u32,
    /// The connection on that node.
    pub conn: ConnId,
}

/// A logged-in user.
#[derive(Clone, Copy, Debug)]
pub(super) struct User {
    pub(super) origin: Origin,
    pub(super) nick: Nick,
    pub(super) room: u32,
}

/// A room: its name as its creator typed it, and its members in join order.
#[derive(Debug)]
pub(super) struct Room {
    pub(super) name: RoomName,
    pub(super) members: Vec<u32>,
}

pub(super) struct Directory {
    users: Slab<User>,
    /// User keys by nickname (without regard to ASCII case).
    nicks: HashTable<u32>,
    /// User keys of this node's users by connection slot (`NONE` where there is none).
    local: Vec<u32>,
    /// User keys of other nodes' users by origin.
    remote: HashTable<u32>,
    hasher: RandomState,
    rooms: Slab<Room>,
    /// Room keys by lower-case name.
    room_index: HashMap<String, u32>,
    default_room: u32,
    guests: u64,
    node: u32,
}

impl Directory {
    /// An empty directory with the default room, for this `node`; `reserve` sizes the tables
    /// that grow with the number of users (untouched pages cost nothing).
    pub(super) fn new(default_room: RoomName, node: u32, reserve: usize) -> Directory {
        let mut d = Directory {
            users: Slab::with_capacity(reserve),
            nicks: HashTable::with_capacity(reserve),
            local: Vec::with_capacity(reserve),
            remote: HashTable::new(),
            hasher: RandomState::new(),
            rooms: Slab::new(),
            room_index: HashMap::new(),
            default_room: 0,
            guests: 0,
            node,
        };
        d.default_room = d.create_room_with(default_room, reserve);
        d
    }

    pub(super) fn user(&self, u: u32) -> Option<&User> {
        self.users.get(u as usize)
    }

    pub(super) fn room(&self, r: u32) -> Option<&Room> {
        self.rooms.get(r as usize)
    }

    pub(super) fn default_room(&self) -> u32 {
        self.default_room
    }

    pub(super) fn user_count(&self) -> usize {
        self.users.len()
    }

    pub(super) fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub(super) fn rooms(&self) -> impl Iterator<Item = &Room> {
        self.rooms.iter().map(|(_, r)| r)
    }

    pub(super) fn find_nick(&self, name: &str) -> Option<u32> {
        let hash = folded_hash(&self.hasher, name);
        let users = &self.users;
        self.nicks
            .find(hash, |&u| nick_of(users, u).matches(name))
            .copied()
    }

    /// The user of a connection, on this node or another.
    pub(super) fn find(&self, origin: Origin) -> Option<u32> {
        let u = if origin.node == self.node {
            *self.local.get(origin.conn.index as usize)?
        } else {
            let hash = self.origin_hash(origin);
            let users = &self.users;
            *self.remote.find(hash, |&u| {
                users.get(u as usize).is_some_and(|x| x.origin == origin)
            })?
        };
        self.users
            .get(u as usize)
            .filter(|x| x.origin == origin)
            .map(|_| u)
    }

    /// The room named `name` (without regard to case).
    pub(super) fn find_room(&self, name: RoomName) -> Option<u32> {
        self.room_index
            .get(&name.as_str().to_ascii_lowercase())
            .copied()
    }

    /// Adds a user under `nick` (which must be free) to the default room, as its last member.
    pub(super) fn add(&mut self, origin: Origin, nick: Nick) -> u32 {
        let room = self.default_room;
        self.insert(User { origin, nick, room })
    }

    /// Adds a user under `nick` (which must be free) to the room named `room` (created if
    /// needed), as its last member; returns the user's and the room's keys.
    pub(super) fn add_in(&mut self, origin: Origin, nick: Nick, room: RoomName) -> (u32, u32) {
        let room = self.find_or_create_room(room);
        (self.insert(User { origin, nick, room }), room)
    }

    /// The users of `node`, in connection order (the same on every node of a cluster).
    pub(super) fn users_of(&self, node: u32) -> Vec<Origin> {
        let mut origins: Vec<Origin> = self
            .users
            .iter()
            .filter(|(_, u)| u.origin.node == node)
            .map(|(_, u)| u.origin)
            .collect();
        origins.sort_by_key(|o| (o.conn.index, o.conn.generation));
        origins
    }

    /// Makes the guest counter at least `guests` (a node that rejoins brings its own).
    pub(super) fn raise_guests(&mut self, guests: u64) {
        self.guests = self.guests.max(guests);
    }

    fn insert(&mut self, user: User) -> u32 {
        let u = self.users.insert(user) as u32;
        self.index_nick(u);
        if user.origin.node == self.node {
            let index = user.origin.conn.index as usize;
            if self.local.len() <= index {
                self.local.resize(index + 1, NONE);
            }
            self.local[index] = u;
        } else {
            let hash = self.origin_hash(user.origin);
            let (users, hasher) = (&self.users, &self.hasher);
            self.remote
                .insert_unique(hash, u, |&x| hasher.hash_one(users[x as usize].origin));
        }
        if let Some(room) = self.rooms.get_mut(user.room as usize) {
            room.members.push(u);
        }
        u
    }

    /// Removes user `u` from the directory and from its room (dropping the room if it is now
    /// empty and not the default room); returns the user as it was.
    pub(super) fn remove(&mut self, u: u32) -> Option<User> {
        let user = *self.users.get(u as usize)?;
        self.leave_room(u);
        self.unindex_nick(u);
        if user.origin.node == self.node {
            if let Some(slot) = self.local.get_mut(user.origin.conn.index as usize)
                && *slot == u
            {
                *slot = NONE;
            }
        } else {
            let hash = self.origin_hash(user.origin);
            if let Ok(e) = self.remote.find_entry(hash, |&x| x == u) {
                e.remove();
            }
        }
        self.users.remove(u as usize);
        Some(user)
    }

    /// Gives user `u` a new nickname (which must be free).
    pub(super) fn rename(&mut self, u: u32, nick: Nick) {
        self.unindex_nick(u);
        if let Some(user) = self.users.get_mut(u as usize) {
            user.nick = nick;
        }
        self.index_nick(u);
    }

    /// Puts user `u` (who is in no room) into the room named `name`, creating it if needed;
    /// returns the room's key and its member count now.
    pub(super) fn enter(&mut self, u: u32, name: RoomName) -> (u32, usize) {
        let room = self.find_or_create_room(name);
        if let Some(user) = self.users.get_mut(u as usize) {
            user.room = room;
        }
        let members = &mut self.rooms[room as usize].members;
        members.push(u);
        (room, members.len())
    }

    /// Takes user `u` out of its room (dropping the room if it is now empty and not the
    /// default room); returns the room's member count before. The user is then in no room
    /// until [`Directory::enter`].
    pub(super) fn leave_room(&mut self, u: u32) -> usize {
        let Some(user) = self.users.get_mut(u as usize) else {
            return 0;
        };
        let room = std::mem::replace(&mut user.room, NONE);
        let Some(r) = self.rooms.get_mut(room as usize) else {
            return 0;
        };
        let before = r.members.len();
        if let Some(pos) = r.members.iter().position(|&m| m == u) {
            r.members.remove(pos);
        }
        if r.members.is_empty() && room != self.default_room {
            let name = self.rooms.remove(room as usize).name;
            self.room_index.remove(&name.as_str().to_ascii_lowercase());
        }
        before
    }

    /// The next guest name: `guestN` with N from a counter that only grows, skipping names
    /// that are taken.
    pub(super) fn next_guest(&mut self) -> Nick {
        loop {
            self.guests += 1;
            let name = format!("guest{}", self.guests);
            if let Ok(nick) = parse_nick(&name)
                && self.find_nick(&name).is_none()
            {
                return nick;
            }
        }
    }

    pub(super) fn guests(&self) -> u64 {
        self.guests
    }

    /// Every user with its key, in key order (for snapshots and checks).
    pub(super) fn users(&self) -> impl Iterator<Item = (u32, &User)> {
        self.users.iter().map(|(k, u)| (k as u32, u))
    }

    /// Every room with its key, in key order (for snapshots and checks).
    pub(super) fn room_entries(&self) -> impl Iterator<Item = (u32, &Room)> {
        self.rooms.iter().map(|(k, r)| (k as u32, r))
    }

    /// Rebuilds a directory from a snapshot: rooms (the default room first) with their members
    /// in order, then the guest counter.
    pub(super) fn restore(
        node: u32,
        reserve: usize,
        rooms: Vec<(RoomName, Vec<(Origin, Nick)>)>,
        guests: u64,
    ) -> Directory {
        let mut rooms = rooms.into_iter();
        let (default, members) = rooms.next().unwrap_or((RoomName::EMPTY, Vec::new()));
        let mut d = Directory::new(default, node, reserve);
        d.fill(d.default_room, members);
        for (name, members) in rooms {
            let r = d.create_room_with(name, 0);
            d.fill(r, members);
        }
        d.guests = guests;
        d
    }

    fn fill(&mut self, room: u32, members: Vec<(Origin, Nick)>) {
        for (origin, nick) in members {
            self.insert(User { origin, nick, room });
        }
    }

    fn find_or_create_room(&mut self, name: RoomName) -> u32 {
        match self.find_room(name) {
            Some(r) => r,
            None => self.create_room_with(name, 0),
        }
    }

    fn create_room_with(&mut self, name: RoomName, reserve: usize) -> u32 {
        let r = self.rooms.insert(Room {
            name,
            members: Vec::with_capacity(reserve),
        }) as u32;
        self.room_index
            .insert(name.as_str().to_ascii_lowercase(), r);
        r
    }

    fn index_nick(&mut self, u: u32) {
        let (hasher, users) = (&self.hasher, &self.users);
        let hash = folded_hash(hasher, nick_of(users, u).as_str());
        self.nicks.insert_unique(hash, u, |&x| {
            folded_hash(hasher, nick_of(users, x).as_str())
        });
    }

    fn unindex_nick(&mut self, u: u32) {
        let hash = folded_hash(&self.hasher, nick_of(&self.users, u).as_str());
        if let Ok(entry) = self.nicks.find_entry(hash, |&x| x == u) {
            entry.remove();
        }
    }

    fn origin_hash(&self, origin: Origin) -> u64 {
        self.hasher.hash_one(origin)
    }
}

fn nick_of(users: &Slab<User>, u: u32) -> Nick {
    users.get(u as usize).map_or(Nick::EMPTY, |x| x.nick)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::names::parse_room;

    fn origin(node: u32, index: u32) -> Origin {
        Origin {
            node,
            conn: ConnId {
                index,
                generation: 1,
            },
        }
    }

    fn nick(s: &str) -> Nick {
        parse_nick(s).unwrap()
    }

    fn room(s: &str) -> RoomName {
        parse_room(s).unwrap()
    }

    #[test]
    fn users_rooms_and_nicknames() {
        let mut d = Directory::new(room("lobby"), 0, 8);
        let a = d.add(origin(0, 0), nick("Alice"));
        let b = d.add(origin(1, 0), nick("bob"));
        assert_eq!(d.find_nick("ALICE"), Some(a));
        assert_eq!(d.find(origin(1, 0)), Some(b));
        assert_eq!(d.find(origin(0, 0)), Some(a));
        assert_eq!(d.leave_room(a), 2);
        assert_eq!(d.enter(a, room("Rust")).1, 1);
        assert_eq!(
            d.find_room(room("RUST")).map(|r| d.room(r).unwrap().name),
            Some(room("Rust"))
        );
        d.rename(a, nick("al"));
        assert_eq!((d.find_nick("alice"), d.find_nick("AL")), (None, Some(a)));
        d.remove(a);
        assert_eq!(d.find_room(room("rust")), None, "an empty room goes");
        d.remove(b);
        assert_eq!(
            (d.user_count(), d.room_count()),
            (0, 1),
            "the default room stays"
        );
        assert_eq!(d.find(origin(1, 0)), None);
        assert_eq!(d.find(origin(0, 0)), None);
    }

    #[test]
    fn guest_names_only_grow_and_skip_taken_ones() {
        let mut d = Directory::new(room("lobby"), 0, 8);
        assert_eq!(d.next_guest(), nick("guest1"));
        d.add(origin(0, 1), nick("GUEST2"));
        assert_eq!(d.next_guest(), nick("guest3"));
        assert_eq!(d.guests(), 3);
    }
}
