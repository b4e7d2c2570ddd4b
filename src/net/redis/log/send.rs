//! What the log writes: the greeting of a new connection, appends, node id requests and reads.

use super::receive::Fault;
use super::{READ_BLOCK, READ_COUNT, ReadOp, RedisLog, WriteOp};
use crate::net::redis::epoch_candidate;
use bytes::Bytes;
use std::time::Instant;

impl RedisLog {
    /// Opens whichever connection is due to be reopened.
    pub(super) fn reconnect_due(&mut self, now: Instant) {
        if self.writer.should_open(now) {
            match self.writer.open(&self.target, &self.registry, now) {
                Ok(()) => self.on_writer_open(),
                Err(e) => self.warn(Fault::Conn(e), true),
            }
        }
        if self.reader.should_open(now) {
            match self.reader.open(&self.target, &self.registry, now) {
                Ok(()) => self.on_reader_open(),
                Err(e) => self.warn(Fault::Conn(e), false),
            }
        }
    }

    /// A new write connection: check the epoch, then send every unacknowledged append (oldest
    /// first) again.
    pub(super) fn on_writer_open(&mut self) {
        self.appends_sent = 0;
        self.checking = true;
        self.send_epoch_check();
        self.send_appends();
    }

    /// A new read connection: check the epoch; the first `XREAD` follows its answer, so a
    /// restart is known before anything of the new log is read.
    pub(super) fn on_reader_open(&mut self) {
        self.reading = false;
        let candidate = Bytes::from(epoch_candidate());
        if let Some(conn) = self.reader.conn() {
            conn.send(
                &self.keys.epoch_check(&candidate),
                ReadOp::Epoch(candidate.clone()),
            );
        }
    }

    pub(super) fn send_epoch_check(&mut self) {
        let candidate = Bytes::from(epoch_candidate());
        if let Some(conn) = self.writer.conn() {
            conn.send(
                &self.keys.epoch_check(&candidate),
                WriteOp::Epoch(candidate.clone()),
            );
        }
    }

    /// Writes the appends not yet sent on the current write connection.
    pub(super) fn send_appends(&mut self) {
        let Some(conn) = self.writer.conn() else {
            return;
        };
        for payload in self.appends.iter().skip(self.appends_sent) {
            conn.send(
                &[b"XADD", &self.keys.log, b"*", b"p", payload],
                WriteOp::Append,
            );
        }
        self.appends_sent = self.appends.len();
    }

    pub(super) fn send_read(&mut self, now: Instant) {
        let Some(conn) = self.reader.conn() else {
            return;
        };
        let block = READ_BLOCK.as_millis().to_string();
        let from = self.last_id.to_string();
        let args: [&[u8]; 8] = [
            b"XREAD",
            b"BLOCK",
            block.as_bytes(),
            b"COUNT",
            READ_COUNT,
            b"STREAMS",
            &self.keys.log,
            from.as_bytes(),
        ];
        conn.send(&args, ReadOp::Read);
        self.reading = true;
        self.reader.answer_due(now + READ_BLOCK);
    }
}
