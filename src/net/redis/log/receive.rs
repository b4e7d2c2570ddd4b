//! What the log reads: replies matched to their commands, entries delivered once, the epoch
//! compared, and connections given up when they fail.

use super::{LogEvent, ReadOp, RedisLog, STALL_AFTER, WriteOp};
use crate::net::redis::RedisError;
use crate::net::redis::conn::ConnError;
use crate::net::redis::id::StreamId;
use crate::net::redis::reply::{self, ReplyError};
use bytes::Bytes;
use std::time::Instant;

/// Why a connection is given up.
pub(super) enum Fault {
    Conn(ConnError),
    Reply(ReplyError),
}

impl From<ConnError> for Fault {
    fn from(e: ConnError) -> Fault {
        Fault::Conn(e)
    }
}

impl From<ReplyError> for Fault {
    fn from(e: ReplyError) -> Fault {
        Fault::Reply(e)
    }
}

impl RedisLog {
    /// After a connection's readiness: handles the replies that arrived (even when the
    /// connection then broke), writes what they queued, or gives the connection up.
    pub(super) fn after_io(&mut self, io: Result<(), ConnError>, writer: bool, now: Instant) {
        let replies = if writer {
            self.take_writer_replies(now)
        } else {
            self.take_reader_replies(now)
        };
        // The reader's next XREAD goes out with the turn's flush, after the turn's work: by then
        // Redis holds whatever came meanwhile and one reply carries it all (sent at once, the
        // XREAD would block and be answered with the first new entry alone).
        let result = replies.and(io.map_err(Fault::Conn)).and_then(|()| {
            let flushed = if writer {
                self.flush_link(writer, now)
            } else {
                Ok(())
            };
            flushed.map_err(Fault::Conn)
        });
        if let Err(fault) = result {
            self.lose(writer, fault, now);
        }
    }

    pub(super) fn take_writer_replies(&mut self, now: Instant) -> Result<(), Fault> {
        loop {
            let Some(conn) = self.writer.conn() else {
                return Ok(());
            };
            let Some((op, frame)) = conn.next_reply()? else {
                return Ok(());
            };
            self.writer.answered(now);
            match op {
                WriteOp::Epoch(candidate) => {
                    self.checking = false;
                    let value = reply::optional_string("SET", frame)?.unwrap_or(candidate);
                    self.adopt_epoch(value, now);
                }
                WriteOp::Append => {
                    reply::stream_id("XADD", frame)?;
                    if let Some(payload) = self.appends.pop_front() {
                        self.append_bytes -= payload.len();
                        self.appends_sent -= 1;
                    }
                }
                WriteOp::Snapshot(id) => match reply::integer("EVAL", frame) {
                    Ok(n) => self
                        .events
                        .push_back(LogEvent::SnapshotWritten { id, stored: n == 1 }),
                    Err(e) => self.warn(Fault::Reply(e), true),
                },
            }
        }
    }

    pub(super) fn take_reader_replies(&mut self, now: Instant) -> Result<(), Fault> {
        loop {
            let Some(conn) = self.reader.conn() else {
                return Ok(());
            };
            let Some((op, frame)) = conn.next_reply()? else {
                return Ok(());
            };
            self.reader.answered(now);
            match op {
                ReadOp::Epoch(candidate) => {
                    let value = reply::optional_string("SET", frame)?.unwrap_or(candidate);
                    self.adopt_epoch(value, now);
                }
                ReadOp::Read => {
                    self.reading = false;
                    self.deliver(reply::xread_entries(frame)?);
                }
            }
            self.send_read(now);
        }
    }

    /// Queues entries newer than the last delivered one (an entry without a payload field,
    /// not written by natter, is skipped).
    pub(super) fn deliver(&mut self, entries: Vec<(StreamId, Option<Bytes>)>) {
        for (id, payload) in entries {
            if id <= self.last_id {
                continue;
            }
            self.last_id = id;
            if let Some(payload) = payload {
                self.events.push_back(LogEvent::Entry { id, payload });
            }
        }
    }

    /// Takes the epoch key's current value; a change means Redis restarted empty: reading
    /// starts over at `0-0`, on a new read connection if an `XREAD` from the old position is
    /// outstanding.
    pub(super) fn adopt_epoch(&mut self, value: Bytes, now: Instant) {
        if value == self.epoch {
            return;
        }
        self.epoch = value;
        self.last_id = StreamId::ZERO;
        self.events.push_back(LogEvent::Restarted);
        if self.reading {
            self.reading = false;
            self.reader.close(&self.registry, now, true);
            self.reconnect_due(now);
        }
    }

    pub(super) fn flush_link(&mut self, writer: bool, now: Instant) -> Result<(), ConnError> {
        if writer {
            self.writer.flush(now)
        } else {
            self.reader.flush(now)
        }
    }

    /// Gives a connection up: reports why, forgets what was sent on it (it is sent again on
    /// the next connection) and schedules the reconnect.
    pub(super) fn lose(&mut self, writer: bool, fault: Fault, now: Instant) {
        self.warn(fault, writer);
        if writer {
            self.writer.close(&self.registry, now, false);
            self.appends_sent = 0;
            self.checking = false;
        } else {
            self.reader.close(&self.registry, now, false);
            self.reading = false;
        }
    }

    /// Reports a fault, once per outage of a connection (not at every retry).
    pub(super) fn warn(&mut self, fault: Fault, writer: bool) {
        let failing = if writer {
            self.writer.failing()
        } else {
            self.reader.failing()
        };
        if failing {
            return;
        }
        let addr = self.addr.clone();
        let error = match fault {
            Fault::Conn(reason) => RedisError::Unreachable { addr, reason },
            Fault::Reply(reason) => RedisError::Reply { addr, reason },
        };
        self.events.push_back(LogEvent::Warning(error));
    }

    /// Emits [`LogEvent::Stalled`] or [`LogEvent::Resumed`] when the state changes.
    pub(super) fn update_stall(&mut self, now: Instant) {
        let owed = self.writer.owed_for(STALL_AFTER, now) || self.reader.owed_for(STALL_AFTER, now);
        if owed != self.stalled {
            self.stalled = owed;
            self.events.push_back(if owed {
                LogEvent::Stalled
            } else {
                LogEvent::Resumed
            });
        }
    }
}
