//! One function per event: what applying it does to the directory and what it tells whom.
//!
//! Outcomes are decided here, at the event's place in the order (a nickname is taken if an
//! earlier event took it). Output goes only to this node's connections: a line for a room is
//! rendered once and queued for each local member.

use super::close::Closer;
use super::counters::Counters;
use super::directory::{Directory, Origin};
use super::event::{Event, LeaveNote};
use super::outbox::{Chunk, Outbox};
use super::session::{Phase, Sessions};
use super::{CloseReason, ConnId, Settings};
use crate::proto::names::{Nick, RoomName};
use crate::proto::reply;
use bytes::{BufMut, BytesMut};

/// Everything applying an event may touch.
pub(super) struct Apply<'a> {
    pub(super) settings: &'a Settings,
    pub(super) dir: &'a mut Directory,
    pub(super) sessions: &'a mut Sessions,
    pub(super) outbox: &'a mut Outbox,
    pub(super) closer: &'a mut Closer,
    pub(super) counters: &'a mut Counters,
}

impl Apply<'_> {
    /// Applies one event.
    pub(super) fn apply(&mut self, event: Event<'_>) {
        match event {
            Event::Login { who, nick } => self.login(who, nick),
            Event::Rename { who, nick } => self.rename(who, nick),
            Event::Join { who, room } => self.join(who, room),
            Event::Say { who, text } => self.say(who, text, reply::chat),
            Event::Act { who, text } => self.say(who, text, reply::action),
            Event::Whisper { who, to, text } => self.whisper(who, to, text),
            Event::Who { who } => self.who(who),
            Event::Rooms { who } => self.rooms(who),
            Event::Quit { who, reason } => self.quit(who, reason),
            Event::Leave { who, note } => self.leave(who, note),
        }
    }

    fn login(&mut self, who: Origin, nick: Option<Nick>) {
        if self.dir.find(who).is_some() {
            return;
        }
        let nick = match nick {
            Some(n) if self.dir.find_nick(n.as_str()).is_some() => {
                self.reply(who, |b| {
                    reply::nick_taken(b, n.as_str());
                    b.put_slice(reply::PROMPT);
                });
                return self.set_phase(who, Phase::Prompt);
            }
            Some(n) => n,
            None => self.dir.next_guest(),
        };
        let u = self.dir.add(who, nick);
        let room = self.dir.default_room();
        let name = self.room_name(room);
        self.reply(who, |b| reply::welcome(b, nick.as_str(), name.as_str()));
        self.set_phase(who, Phase::Chatting);
        self.announce_entry(u, room);
    }

    fn rename(&mut self, who: Origin, nick: Nick) {
        let Some((u, old, room)) = self.user(who) else {
            return;
        };
        if old == nick {
            return self.reply(who, |b| reply::already_named(b, old.as_str()));
        }
        if self.dir.find_nick(nick.as_str()).is_some_and(|h| h != u) {
            return self.reply(who, |b| reply::nick_taken(b, nick.as_str()));
        }
        self.dir.rename(u, nick);
        self.reply(who, |b| reply::you_are_now(b, nick.as_str()));
        if self.settings.announces(self.members(room)) {
            let chunk = self
                .outbox
                .render(|b| reply::renamed(b, old.as_str(), nick.as_str()));
            self.broadcast(room, u, chunk);
        }
    }

    fn join(&mut self, who: Origin, name: RoomName) {
        let Some((u, nick, old)) = self.user(who) else {
            return;
        };
        if self.dir.find_room(name) == Some(old) {
            let shown = self.room_name(old);
            return self.reply(who, |b| reply::already_in(b, shown.as_str()));
        }
        self.leave_room(u, nick, "");
        let (room, members) = self.dir.enter(u, name);
        let shown = self.room_name(room);
        self.announce_entry(u, room);
        self.reply(who, |b| reply::you_joined(b, shown.as_str(), members));
    }

    fn say(&mut self, who: Origin, text: &str, render: fn(&mut BytesMut, &str, &str)) {
        let Some((u, nick, room)) = self.user(who) else {
            return;
        };
        let chunk = self.outbox.render(|b| render(b, nick.as_str(), text));
        self.counters.lines_delivered += self.broadcast(room, u, chunk);
    }

    fn whisper(&mut self, who: Origin, to: Nick, text: &str) {
        let Some((_, from, _)) = self.user(who) else {
            return;
        };
        let Some(target) = self
            .dir
            .find_nick(to.as_str())
            .and_then(|t| self.dir.user(t))
        else {
            return self.reply(who, |b| reply::no_such_user(b, to.as_str()));
        };
        if text.trim().is_empty() {
            return;
        }
        let (origin, shown) = (target.origin, target.nick);
        let chunk = self
            .outbox
            .render(|b| reply::whisper_from(b, from.as_str(), text));
        self.counters.lines_delivered += self.deliver(origin, chunk);
        self.reply(who, |b| reply::whisper_echo(b, shown.as_str(), text));
    }

    fn who(&mut self, who: Origin) {
        let Some((_, _, room)) = self.user(who) else {
            return;
        };
        let (Some(local), Some(r)) = (self.local(who), self.dir.room(room)) else {
            return;
        };
        let dir = &*self.dir;
        let names = r
            .members
            .iter()
            .filter_map(|&m| dir.user(m))
            .map(|x| x.nick.as_str());
        self.outbox.send(local, |b| {
            reply::who(b, r.name.as_str(), r.members.len(), names)
        });
    }

    fn rooms(&mut self, who: Origin) {
        if self.user(who).is_none() {
            return;
        }
        let Some(local) = self.local(who) else {
            return;
        };
        let mut list: Vec<(usize, &str)> = self
            .dir
            .rooms()
            .map(|r| (r.members.len(), r.name.as_str()))
            .collect();
        list.sort_by(|a, b| {
            b.0.cmp(&a.0).then_with(|| {
                a.1.bytes()
                    .map(|c| c.to_ascii_lowercase())
                    .cmp(b.1.bytes().map(|c| c.to_ascii_lowercase()))
            })
        });
        self.outbox.send(local, |b| {
            reply::rooms_header(b, list.len());
            for &(count, name) in list.iter().take(reply::MAX_LISTED) {
                reply::room_entry(b, name, count);
            }
            if list.len() > reply::MAX_LISTED {
                reply::and_more(b, list.len() - reply::MAX_LISTED);
            }
        });
    }

    fn quit(&mut self, who: Origin, reason: &str) {
        let Some((u, nick, _)) = self.user(who) else {
            return;
        };
        self.remove(u, nick, reason);
        self.reply(who, |b| reply::bye(b, nick.as_str()));
        if let Some(id) = self.local(who) {
            self.closer
                .request(self.sessions, self.outbox, id, CloseReason::Quit);
        }
    }

    fn leave(&mut self, who: Origin, note: LeaveNote) {
        if let Some((u, nick, _)) = self.user(who) {
            self.remove(u, nick, note.text());
        }
    }

    /// A user re-announced by its node re-enters its room, as a guest if its nickname was
    /// taken meanwhile (it is told so).
    pub(super) fn rejoin(&mut self, who: Origin, nick: Nick, room: RoomName) {
        if self.dir.find(who).is_some() {
            return;
        }
        let taken = self.dir.find_nick(nick.as_str()).is_some();
        let shown = if taken { self.dir.next_guest() } else { nick };
        let (u, r) = self.dir.add_in(who, shown, room);
        self.announce_entry(u, r);
        if taken {
            self.reply(who, |b| {
                reply::nick_taken_while_away(b, nick.as_str(), shown.as_str())
            });
        }
    }

    // ---- helpers ----

    /// The user of `who` with its nickname and room.
    fn user(&self, who: Origin) -> Option<(u32, Nick, u32)> {
        let u = self.dir.find(who)?;
        self.dir.user(u).map(|x| (u, x.nick, x.room))
    }

    /// The connection of `who` if it is on this node and open.
    fn local(&self, who: Origin) -> Option<ConnId> {
        (who.node == self.settings.node && self.sessions.is_open(who.conn)).then_some(who.conn)
    }

    /// Renders and queues output for `who`, if it is this node's.
    fn reply(&mut self, who: Origin, f: impl FnOnce(&mut BytesMut)) {
        if let Some(id) = self.local(who) {
            self.outbox.send(id, f);
        }
    }

    fn set_phase(&mut self, who: Origin, phase: Phase) {
        if let Some(s) = self.local(who).and_then(|id| self.sessions.open_mut(id)) {
            s.phase = phase;
        }
    }

    fn room_name(&self, room: u32) -> RoomName {
        self.dir.room(room).map_or(RoomName::EMPTY, |r| r.name)
    }

    fn members(&self, room: u32) -> usize {
        self.dir.room(room).map_or(0, |r| r.members.len())
    }

    /// Tells the rest of `room` that user `u` (its last member) came in.
    fn announce_entry(&mut self, u: u32, room: u32) {
        if !self.settings.announces(self.members(room)) {
            return;
        }
        let (Some(user), Some(r)) = (self.dir.user(u), self.dir.room(room)) else {
            return;
        };
        let (nick, name) = (user.nick, r.name);
        let chunk = self
            .outbox
            .render(|b| reply::joined(b, nick.as_str(), name.as_str()));
        self.broadcast(room, u, chunk);
    }

    /// Takes user `u` out of its room, telling the rest (with `note` in parentheses, if any).
    fn leave_room(&mut self, u: u32, nick: Nick, note: &str) {
        let Some(room) = self.dir.user(u).map(|x| x.room) else {
            return;
        };
        let name = self.room_name(room);
        let before = self.dir.leave_room(u);
        // A room left empty is gone; one that is not still has its key.
        if self.settings.announces(before) && self.dir.room(room).is_some() {
            let chunk = self
                .outbox
                .render(|b| reply::left(b, nick.as_str(), name.as_str(), note));
            self.broadcast(room, u, chunk);
        }
    }

    /// Removes user `u` from the chat, telling its room.
    fn remove(&mut self, u: u32, nick: Nick, note: &str) {
        self.leave_room(u, nick, note);
        self.dir.remove(u);
    }

    /// Queues `chunk` for every local member of `room` but `except`; returns how many.
    fn broadcast(&mut self, room: u32, except: u32, chunk: Chunk) -> u64 {
        let Some(r) = self.dir.room(room) else {
            return 0;
        };
        let mut n = 0;
        for &m in &r.members {
            if m == except {
                continue;
            }
            if let Some(user) = self.dir.user(m)
                && user.origin.node == self.settings.node
            {
                self.outbox.deliver(user.origin.conn, chunk);
                n += 1;
            }
        }
        n
    }

    /// Queues `chunk` for `who` if it is this node's; returns how many (0 or 1).
    fn deliver(&mut self, who: Origin, chunk: Chunk) -> u64 {
        if who.node != self.settings.node {
            return 0;
        }
        self.outbox.deliver(who.conn, chunk);
        1
    }
}
