//! Output: what each connection has been sent and the kernel has not taken yet.
//!
//! Everything the core says in one drain cycle (from one full drain to the next) is rendered
//! once into a shared arena. A recipient's queue is a short linked list of ranges of that arena
//! ("entries"); consecutive lines a recipient gets are usually adjacent in the arena and share
//! one entry, so a line fanned out to 10,000 members costs one render and 10,000 integer
//! updates, with no allocation per recipient. The shell writes each dirty connection once per
//! drain with one vectored write over its entries ([`Outbox::gather`]); only the bytes the kernel
//! does not take are copied into that connection's own buffer (its backlog), and the arena is
//! reset once no connection refers to it any more.
//!
//! `--sendq` is judged here: after each write attempt, a connection left with more than
//! `--sendq` unsent bytes is too slow; one the kernel is already refusing is too slow as soon as
//! a delivery would take it past `--sendq`.

use super::ConnId;
use bytes::{Buf, BytesMut};
use slab::Slab;
use std::io::IoSlice;

/// A rendered piece of output: a range of the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Chunk {
    start: u32,
    end: u32,
}

impl Chunk {
    fn len(self) -> usize {
        (self.end - self.start) as usize
    }
}

use super::OUTPUT_HIGH_WATER as ARENA_HIGH_WATER;
/// Entries after which the shell should write before the core takes more input.
const ENTRIES_HIGH_WATER: usize = 1 << 18;
/// Arena capacity kept across drains; a larger one is kept only while it is being used.
const ARENA_KEEP: usize = 64 << 10;
/// Entries kept across drains, likewise.
const ENTRIES_KEEP: usize = 4096;
const NONE: u32 = u32::MAX;

pub(super) struct Outbox {
    arena: BytesMut,
    /// Bytes the kernel refused, copied out of the arena, per connection that has some.
    backlogs: Slab<BytesMut>,
    entries: Vec<Entry>,
    queues: Vec<Queue>,
    /// Connections with output to hand to the shell, in the order they got it.
    dirty: Vec<ConnId>,
    /// How far `dirty` has been handed out.
    dirty_next: usize,
    /// Connections that passed `--sendq`; the core closes them at the end of the call.
    too_slow: Vec<ConnId>,
    sendq: usize,
    /// Bytes not yet taken by the kernel, over all connections.
    queued: usize,
    /// Connections whose queue refers to the arena.
    referring: usize,
    flush_wanted: bool,
}

/// One range of the arena in one connection's queue.
#[derive(Clone, Copy)]
struct Entry {
    chunk: Chunk,
    next: u32,
}

/// One connection's output (24 bytes; no heap while it has no backlog).
struct Queue {
    generation: u32,
    head: u32,
    tail: u32,
    /// Unsent bytes: backlog plus entries.
    pending: u32,
    /// Its key in `backlogs` (`NONE` while it has none).
    backlog: u32,
    state: State,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            generation: 0,
            head: NONE,
            tail: NONE,
            pending: 0,
            backlog: NONE,
            state: State::Closed,
        }
    }
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// No connection, or one that is closing: deliveries are dropped.
    #[default]
    Closed,
    /// The kernel took everything it was offered last time.
    Open,
    /// The last write attempt left bytes behind; the shell waits for the socket to be writable.
    Blocked,
}

impl Outbox {
    pub(super) fn new(sendq: usize, reserve: usize) -> Outbox {
        Outbox {
            arena: BytesMut::new(),
            backlogs: Slab::new(),
            entries: Vec::new(),
            queues: Vec::with_capacity(reserve),
            dirty: Vec::new(),
            dirty_next: 0,
            too_slow: Vec::new(),
            sendq,
            queued: 0,
            referring: 0,
            flush_wanted: false,
        }
    }

    /// Starts an empty queue for a new connection.
    pub(super) fn open(&mut self, id: ConnId) {
        let index = id.index as usize;
        if self.queues.len() <= index {
            self.queues.resize_with(index + 1, Queue::default);
        }
        self.queues[index] = Queue {
            generation: id.generation,
            state: State::Open,
            ..Queue::default()
        };
    }

    /// Renders output once into the arena, for any number of recipients.
    pub(super) fn render(&mut self, f: impl FnOnce(&mut BytesMut)) -> Chunk {
        let start = self.arena.len();
        f(&mut self.arena);
        Chunk {
            start: start as u32,
            end: self.arena.len() as u32,
        }
    }

    /// Queues a rendered chunk for `id`.
    pub(super) fn deliver(&mut self, id: ConnId, chunk: Chunk) {
        let Some(q) = queue_mut(&mut self.queues, id) else {
            return;
        };
        let len = chunk.len();
        if len == 0 {
            return;
        }
        match q.state {
            State::Closed => return,
            State::Blocked => {
                // The kernel is refusing this one: no point referring to the arena.
                if q.pending as usize + len > self.sendq {
                    return self.mark_too_slow(id);
                }
                let bytes = &self.arena[chunk.start as usize..chunk.end as usize];
                backlog_of(&mut self.backlogs, q).extend_from_slice(bytes);
            }
            State::Open => {
                let tail = q.tail;
                if tail != NONE && self.entries[tail as usize].chunk.end == chunk.start {
                    self.entries[tail as usize].chunk.end = chunk.end;
                } else {
                    let at = self.entries.len() as u32;
                    self.entries.push(Entry { chunk, next: NONE });
                    if tail == NONE {
                        q.head = at;
                        self.referring += 1;
                    } else {
                        self.entries[tail as usize].next = at;
                    }
                    q.tail = at;
                }
                if q.pending == 0 {
                    self.dirty.push(id);
                }
                // A reader that keeps up is never judged on more than it was offered.
                if q.pending as usize + len > self.sendq / 2 {
                    self.flush_wanted = true;
                }
            }
        }
        q.pending += len as u32;
        self.queued += len;
        if self.arena.len() > ARENA_HIGH_WATER || self.entries.len() > ENTRIES_HIGH_WATER {
            self.flush_wanted = true;
        }
    }

    /// Renders and queues output for one recipient.
    pub(super) fn send(&mut self, id: ConnId, f: impl FnOnce(&mut BytesMut)) {
        let chunk = self.render(f);
        self.deliver(id, chunk);
    }

    /// The next connection the shell should write, once per drain; `None` when all are handed
    /// out (the list is then reset).
    pub(super) fn next_dirty(&mut self) -> Option<ConnId> {
        while let Some(&id) = self.dirty.get(self.dirty_next) {
            self.dirty_next += 1;
            if queue(&self.queues, id).is_some_and(|q| q.state == State::Open && q.pending > 0) {
                return Some(id);
            }
        }
        shrink_unless_used(&mut self.dirty, ENTRIES_KEEP);
        self.dirty_next = 0;
        None
    }

    /// Fills `iov` with `id`'s unsent output, oldest first; returns how many slices it used.
    /// A connection with more pieces than `iov` holds gets the rest on its next write.
    pub(super) fn gather<'a>(&'a self, id: ConnId, iov: &mut [IoSlice<'a>]) -> usize {
        let Some(q) = queue(&self.queues, id) else {
            return 0;
        };
        let mut n = 0;
        if let Some(b) = self
            .backlogs
            .get(q.backlog as usize)
            .filter(|b| !b.is_empty())
            && n < iov.len()
        {
            iov[n] = IoSlice::new(b);
            n += 1;
        }
        let mut at = q.head;
        while at != NONE && n < iov.len() {
            let e = self.entries[at as usize];
            iov[n] = IoSlice::new(&self.arena[e.chunk.start as usize..e.chunk.end as usize]);
            n += 1;
            at = e.next;
        }
        n
    }

    /// A write attempt for `id` is over: the kernel took `taken` bytes, and `blocked` says
    /// whether it refused some (the shell then waits for the socket to be writable). What is
    /// left moves out of the arena into the connection's backlog; past `--sendq` it is too slow.
    pub(super) fn written(&mut self, id: ConnId, taken: usize, blocked: bool) {
        let Some(q) = queue_mut(&mut self.queues, id) else {
            return;
        };
        if q.state == State::Closed {
            return;
        }
        let taken = taken.min(q.pending as usize);
        q.pending -= taken as u32;
        self.queued -= taken;
        let mut skip = taken;
        if let Some(b) = self.backlogs.get_mut(q.backlog as usize) {
            let n = skip.min(b.len());
            b.advance(n);
            skip -= n;
        }
        let mut at = q.head;
        if at != NONE {
            self.referring -= 1;
        }
        while at != NONE {
            let e = self.entries[at as usize];
            let bytes = &self.arena[e.chunk.start as usize..e.chunk.end as usize];
            let n = skip.min(bytes.len());
            skip -= n;
            if n < bytes.len() {
                backlog_of(&mut self.backlogs, q).extend_from_slice(&bytes[n..]);
            }
            at = e.next;
        }
        (q.head, q.tail) = (NONE, NONE);
        if self
            .backlogs
            .get(q.backlog as usize)
            .is_some_and(BytesMut::is_empty)
        {
            self.backlogs.remove(q.backlog as usize);
            q.backlog = NONE;
        }
        q.state = if blocked { State::Blocked } else { State::Open };
        if q.pending as usize > self.sendq {
            self.mark_too_slow(id);
        } else if !blocked && q.pending > 0 {
            // More than one vectored write holds: write again in this drain.
            self.dirty.push(id);
        }
    }

    /// The socket of `id` is writable again.
    pub(super) fn writable(&mut self, id: ConnId) {
        if let Some(q) = queue_mut(&mut self.queues, id)
            && q.state == State::Blocked
        {
            q.state = State::Open;
            if q.pending > 0 {
                self.dirty.push(id);
            }
        }
    }

    /// Forgets `id`'s queue and returns what was still unsent, in order.
    pub(super) fn close(&mut self, id: ConnId) -> Vec<u8> {
        let rest = self.unsent(id);
        let Some(q) = queue_mut(&mut self.queues, id) else {
            return rest;
        };
        if q.backlog != NONE {
            self.backlogs.remove(q.backlog as usize);
        }
        if q.head != NONE {
            self.referring -= 1;
        }
        self.queued -= q.pending as usize;
        *q = Queue::default();
        rest
    }

    /// Stops deliveries to `id` (it is closing) without forgetting what it holds.
    pub(super) fn seal(&mut self, id: ConnId) {
        if let Some(q) = queue_mut(&mut self.queues, id)
            && q.state != State::Closed
        {
            // Deliveries check Closed; close() still returns the unsent bytes.
            q.state = State::Closed;
        }
    }

    /// Ends a drain cycle once every queue has let go of the arena: the arena and the entries
    /// are reset. Each keeps a large capacity only while it was well used, so a burst does
    /// not leave its peak allocated on an idle server.
    pub(super) fn end_drain(&mut self) {
        if self.referring > 0 || self.dirty_next < self.dirty.len() {
            return;
        }
        if self.arena.capacity() > ARENA_KEEP && self.arena.len() < self.arena.capacity() / 4 {
            self.arena = BytesMut::new();
        } else {
            self.arena.clear();
        }
        shrink_unless_used(&mut self.entries, ENTRIES_KEEP);
    }

    pub(super) fn take_too_slow(&mut self) -> Option<ConnId> {
        self.too_slow.pop()
    }

    /// Whether enough output piled up that the shell should write before more input is
    /// handled (see the crate docs' drain rule).
    pub(super) fn flush_wanted(&self) -> bool {
        self.flush_wanted
    }

    /// Clears the flush request; returns whether there was one.
    pub(super) fn take_flush_wanted(&mut self) -> bool {
        std::mem::take(&mut self.flush_wanted)
    }

    pub(super) fn pending(&self, id: ConnId) -> usize {
        queue(&self.queues, id).map_or(0, |q| q.pending as usize)
    }

    pub(super) fn is_blocked(&self, id: ConnId) -> bool {
        queue(&self.queues, id).is_some_and(|q| q.state == State::Blocked)
    }

    pub(super) fn queued(&self) -> usize {
        self.queued
    }

    /// `id`'s unsent output as one buffer (for snapshots and tests).
    pub(super) fn unsent(&self, id: ConnId) -> Vec<u8> {
        let Some(q) = queue(&self.queues, id) else {
            return Vec::new();
        };
        let mut out = self
            .backlogs
            .get(q.backlog as usize)
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let mut at = q.head;
        while at != NONE {
            let e = self.entries[at as usize];
            out.extend_from_slice(&self.arena[e.chunk.start as usize..e.chunk.end as usize]);
            at = e.next;
        }
        out
    }

    /// Restores a queue from a snapshot: unsent bytes go to the backlog.
    pub(super) fn restore(&mut self, id: ConnId, unsent: &[u8], blocked: bool) {
        self.open(id);
        if unsent.is_empty() {
            return;
        }
        let q = &mut self.queues[id.index as usize];
        q.backlog = self.backlogs.insert(BytesMut::from(unsent)) as u32;
        q.pending = unsent.len() as u32;
        self.queued += unsent.len();
        if blocked {
            q.state = State::Blocked;
        } else {
            self.dirty.push(id);
        }
    }

    fn mark_too_slow(&mut self, id: ConnId) {
        if let Some(q) = queue_mut(&mut self.queues, id)
            && q.state != State::Closed
        {
            q.state = State::Closed;
            self.too_slow.push(id);
        }
    }
}

/// Empties `v`, giving its memory back when it is larger than `keep` and was less than a
/// quarter used.
fn shrink_unless_used<T>(v: &mut Vec<T>, keep: usize) {
    if v.capacity() > keep && v.len() < v.capacity() / 4 {
        *v = Vec::new();
    } else {
        v.clear();
    }
}

/// The backlog of `q`, made when it has none.
fn backlog_of<'a>(backlogs: &'a mut Slab<BytesMut>, q: &mut Queue) -> &'a mut BytesMut {
    if q.backlog == NONE {
        q.backlog = backlogs.insert(BytesMut::new()) as u32;
    }
    &mut backlogs[q.backlog as usize]
}

fn queue(queues: &[Queue], id: ConnId) -> Option<&Queue> {
    queues
        .get(id.index as usize)
        .filter(|q| q.generation == id.generation)
}

fn queue_mut(queues: &mut [Queue], id: ConnId) -> Option<&mut Queue> {
    queues
        .get_mut(id.index as usize)
        .filter(|q| q.generation == id.generation)
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
