//! One of the log's two connections across reconnects: the live [`Conn`] or the time to retry,
//! the back-off, and the clocks that say when Redis owes an answer.

use super::conn::{Conn, ConnError, Target};
use mio::{Registry, Token};
use std::time::{Duration, Instant};

/// First wait before reconnecting; doubles after each failure.
pub(super) const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// Longest wait before reconnecting. Short, because an outage under 2 s must show nothing:
/// with 1 s, Redis back after 1.6 s would be noticed only at the try at 2.55 s (50, 100, ...
/// 800 ms, 1 s) and users would see a pause. With 250 ms any outage under 1.75 s stays
/// invisible; a refused connect costs microseconds, and one that hangs is not retried until
/// it is dropped ([`DROP_AFTER`]).
pub(super) const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// A connection that owes an answer this long (or has not connected after this long) is
/// dropped and reopened: a half-open TCP connection never reports an error.
pub(super) const DROP_AFTER: Duration = Duration::from_secs(10);

/// A connection that comes back after it breaks.
pub(super) struct Link<T> {
    pub(super) token: Token,
    conn: Option<Conn<T>>,
    /// When to reconnect (while there is no connection).
    retry_at: Instant,
    backoff: Duration,
    /// Since when Redis owes this connection an answer (None: nothing owed). Kept across a
    /// reconnect, so an outage counts from its start.
    owed_since: Option<Instant>,
    /// When to give up on the current connection.
    drop_at: Option<Instant>,
}

impl<T> Link<T> {
    /// A link with no connection yet, to be opened at once.
    pub(super) fn new(token: Token, now: Instant) -> Link<T> {
        Link {
            token,
            conn: None,
            retry_at: now,
            backoff: BACKOFF_FIRST,
            owed_since: Some(now),
            drop_at: None,
        }
    }

    /// The live connection, if any (it may still be connecting: commands queue meanwhile).
    pub(super) fn conn(&mut self) -> Option<&mut Conn<T>> {
        self.conn.as_mut()
    }

    /// Whether it is time to reconnect.
    pub(super) fn should_open(&self, now: Instant) -> bool {
        self.conn.is_none() && self.retry_at <= now
    }

    /// Whether the connection owes an answer for too long.
    pub(super) fn overdue(&self, now: Instant) -> bool {
        self.conn.is_some() && self.drop_at.is_some_and(|at| at <= now)
    }

    /// Opens a connection (on failure, schedules the next try).
    pub(super) fn open(
        &mut self,
        target: &Target,
        registry: &Registry,
        now: Instant,
    ) -> Result<(), ConnError> {
        match Conn::open(target, registry, self.token) {
            Ok(conn) => {
                self.conn = Some(conn);
                self.drop_at = Some(now + DROP_AFTER);
                self.owed_since.get_or_insert(now);
                Ok(())
            }
            Err(e) => {
                self.schedule_retry(now);
                Err(e)
            }
        }
    }

    /// Drops the connection; the next try is after the back-off (or at once if `at_once`).
    pub(super) fn close(&mut self, registry: &Registry, now: Instant, at_once: bool) {
        if let Some(conn) = self.conn.take() {
            conn.close(registry);
        }
        self.drop_at = None;
        self.owed_since.get_or_insert(now);
        if at_once {
            self.retry_at = now;
        } else {
            self.schedule_retry(now);
        }
    }

    /// Handles readiness of the connection, if there is one.
    pub(super) fn on_ready(&mut self) -> Result<(), ConnError> {
        self.conn().map_or(Ok(()), |c| c.on_ready())
    }

    /// Writes the queued commands, if there is a connection; while replies are outstanding,
    /// Redis owes an answer from `now`.
    pub(super) fn flush(&mut self, now: Instant) -> Result<(), ConnError> {
        let Some(c) = self.conn() else {
            return Ok(());
        };
        let result = c.flush();
        if c.waiting() > 0 {
            self.sent(now);
        }
        result
    }

    /// Records that commands were sent: Redis owes an answer by `due` (now, or later for a
    /// blocking read) if it owed nothing yet.
    pub(super) fn sent(&mut self, due: Instant) {
        if self.owed_since.is_none() {
            self.owed_since = Some(due);
            self.drop_at = Some(due + DROP_AFTER);
        }
    }

    /// Records a reply: the connection works, so the back-off starts over; Redis owes the
    /// next answer from now if commands still wait.
    pub(super) fn answered(&mut self, now: Instant) {
        self.backoff = BACKOFF_FIRST;
        let waiting = self.conn.as_ref().is_some_and(|c| c.waiting() > 0);
        self.owed_since = waiting.then_some(now);
        self.drop_at = waiting.then_some(now + DROP_AFTER);
    }

    /// Records that the next answer is due at `due` (a blocking read's own timeout).
    pub(super) fn answer_due(&mut self, due: Instant) {
        self.owed_since = Some(due);
        self.drop_at = Some(due + DROP_AFTER);
    }

    /// Whether Redis has owed an answer for `limit` or longer.
    pub(super) fn owed_for(&self, limit: Duration, now: Instant) -> bool {
        self.owed_since.is_some_and(|since| since + limit <= now)
    }

    /// The next instant this link needs the clock: a retry, a drop, or the stall limit.
    pub(super) fn deadline(&self, stall_after: Option<Duration>) -> Option<Instant> {
        let own = match self.conn {
            None => Some(self.retry_at),
            Some(_) => self.drop_at,
        };
        let stall = stall_after.and_then(|limit| Some(self.owed_since? + limit));
        own.into_iter().chain(stall).min()
    }

    /// Whether the connection failed since it last got an answer (the back-off has grown).
    pub(super) fn failing(&self) -> bool {
        self.backoff > BACKOFF_FIRST
    }

    fn schedule_retry(&mut self, now: Instant) {
        self.retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::Poll;

    /// A port nobody listens on (connects fail, which is all these tests need).
    fn closed_port() -> Target {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Target::Tcp(listener.local_addr().unwrap())
    }

    #[test]
    fn retries_back_off_from_50_ms_doubling_to_250_ms() {
        let poll = Poll::new().unwrap();
        let t0 = Instant::now();
        let mut link: Link<()> = Link::new(Token(0), t0);
        assert!(link.should_open(t0));
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..6 {
            link.open(&closed_port(), poll.registry(), now).unwrap();
            link.close(poll.registry(), now, false);
            let retry = link.deadline(None).unwrap();
            waits.push((retry - now).as_millis());
            assert!(!link.should_open(retry - Duration::from_millis(1)));
            assert!(link.should_open(retry));
            now = retry;
        }
        assert_eq!(waits, [50, 100, 200, 250, 250, 250]);
        assert!(link.failing());
        link.open(&closed_port(), poll.registry(), now).unwrap();
        link.answered(now);
        assert!(!link.failing(), "an answer resets the back-off");
    }

    #[test]
    fn an_outage_is_owed_from_its_start_until_an_answer() {
        let poll = Poll::new().unwrap();
        let t0 = Instant::now();
        let mut link: Link<()> = Link::new(Token(0), t0);
        link.open(&closed_port(), poll.registry(), t0).unwrap();
        link.answered(t0);
        assert!(
            !link.owed_for(Duration::ZERO, t0 + DROP_AFTER),
            "nothing owed when idle"
        );

        let lost = t0 + Duration::from_secs(1);
        link.close(poll.registry(), lost, false);
        let limit = Duration::from_secs(2);
        assert_eq!(link.deadline(Some(limit)), Some(lost + BACKOFF_FIRST));
        let retry = lost + Duration::from_millis(1500);
        link.open(&closed_port(), poll.registry(), retry).unwrap();
        assert!(!link.owed_for(limit, lost + Duration::from_millis(1999)));
        assert!(
            link.owed_for(limit, lost + limit),
            "counted from the loss, not the retry"
        );

        // A blocking read owes its answer only from its own timeout on.
        link.answered(retry);
        let due = retry + Duration::from_secs(1);
        link.answer_due(due);
        assert!(!link.owed_for(limit, due + Duration::from_millis(1999)));
        assert!(link.owed_for(limit, due + limit));
        assert!(!link.overdue(due + DROP_AFTER - Duration::from_millis(1)));
        assert!(
            link.overdue(due + DROP_AFTER),
            "a silent connection is dropped"
        );
    }
}
