//! `fanout`: R receivers and S senders in one room; every message must reach every receiver,
//! in order, once. Measures deliveries per second, latency and the server's CPU per delivery.
//!
//! Flow control: a sender keeps at most `--window` messages "in flight", i.e. sent but not yet
//! received by every receiver, so the test never fills the server's per-client send queue just
//! because the load generator is slower at reading than the server is at writing.

use super::{LOGIN_CONCURRENCY, Spec, TICK, ensure_capacity, login_all, nick, wait_quiet};
use crate::cli::{Common, Fanout};
use crate::client::{Ev, Pool, Target};
use crate::clock::{Deadline, now_ns};
use crate::error::{Error, Result};
use crate::proc::Proc;
use crate::stats::{Histogram, Report, us};
use crate::wire::Stamp;
use std::time::{Duration, Instant};

/// With messages outstanding, this long without any delivery ends the run as a failure.
const STALL: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
enum Role {
    None,
    Receiver(usize),
    Sender,
}

/// Delivery bookkeeping, separate from sockets so it is unit-tested.
#[derive(Debug)]
pub struct Tally {
    senders: usize,
    messages: u32,
    receivers: usize,
    /// Bit per (receiver, sender, seq): delivered at least once.
    seen: Vec<u64>,
    /// Per (receiver, sender): next expected seq.
    next: Vec<u32>,
    /// Per (sender, seq): how many receivers have it.
    have: Vec<u32>,
    /// Per sender: every seq below this is at every receiver.
    acked: Vec<u32>,
    /// Unique deliveries.
    pub delivered: u64,
    /// Deliveries that were not the next expected seq of their (receiver, sender).
    pub out_of_order: u64,
    /// Deliveries of a message the receiver already had.
    pub duplicates: u64,
    /// Lines that looked like load messages but were malformed or out of range.
    pub garbled: u64,
}

impl Tally {
    /// Empty tally for the given shape.
    pub fn new(receivers: usize, senders: usize, messages: u32) -> Tally {
        let m = messages as usize;
        Tally {
            senders,
            messages,
            receivers,
            seen: vec![0; (receivers * senders * m).div_ceil(64)],
            next: vec![0; receivers * senders],
            have: vec![0; senders * m],
            acked: vec![0; senders],
            delivered: 0,
            out_of_order: 0,
            duplicates: 0,
            garbled: 0,
        }
    }

    /// Records that `receiver` got (`sender`, `seq`).
    pub fn record(&mut self, receiver: usize, sender: usize, seq: u32) {
        if sender >= self.senders || seq >= self.messages || receiver >= self.receivers {
            self.garbled += 1;
            return;
        }
        let pair = receiver * self.senders + sender;
        let bit = pair * self.messages as usize + seq as usize;
        if self.seen[bit / 64] & (1 << (bit % 64)) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[bit / 64] |= 1 << (bit % 64);
        self.delivered += 1;
        if seq == self.next[pair] {
            self.next[pair] += 1;
        } else {
            self.out_of_order += 1;
            self.next[pair] = self.next[pair].max(seq + 1);
        }
        let h = sender * self.messages as usize + seq as usize;
        self.have[h] += 1;
        let base = sender * self.messages as usize;
        while self.acked[sender] < self.messages
            && self.have[base + self.acked[sender] as usize] == self.receivers as u32
        {
            self.acked[sender] += 1;
        }
    }

    /// Messages of `sender` received by every receiver, as a prefix count.
    pub fn acked(&self, sender: usize) -> u32 {
        self.acked[sender]
    }

    /// Deliveries expected in all.
    pub fn expected(&self) -> u64 {
        self.receivers as u64 * self.senders as u64 * u64::from(self.messages)
    }

    /// Expected deliveries that did not arrive.
    pub fn lost(&self) -> u64 {
        self.expected() - self.delivered
    }
}

/// Runs the scenario and returns its report (an error if anything was lost or reordered).
pub fn run(c: &Common, o: &Fanout) -> Result<Report> {
    let deadline = Deadline::in_secs(c.timeout_secs);
    let server = c.pid.map(Proc::new).transpose()?;
    ensure_capacity(o.receivers + o.senders, "fanout")?;
    let mut pool = Pool::new(Target {
        addr: c.addr,
        sources: c.sources,
    })?;
    let specs: Vec<Spec> = (0..o.receivers + o.senders)
        .map(|i| Spec {
            nick: nick(0, i),
            join: o.room.clone(),
        })
        .collect();
    eprintln!(
        "natter-load: logging in {} receivers and {} senders",
        o.receivers, o.senders
    );
    let ids = login_all(&mut pool, &deadline, &specs, LOGIN_CONCURRENCY)?;
    wait_quiet(&mut pool, &deadline, Duration::from_millis(c.quiet_ms))?;

    let max_id = ids.iter().copied().max().unwrap_or(0);
    let mut role = vec![Role::None; max_id + 1];
    for (i, &id) in ids.iter().enumerate() {
        role[id] = if i < o.receivers {
            Role::Receiver(i)
        } else {
            Role::Sender
        };
    }
    let sender_ids = &ids[o.receivers..];
    let prefixes: Vec<String> = specs[o.receivers..]
        .iter()
        .map(|s| format!("<{}> ", s.nick))
        .collect();

    let mut tally = Tally::new(o.receivers, o.senders, o.messages);
    let mut latencies = Histogram::default();
    let mut sent = vec![0u32; o.senders];
    let gap = (o.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / o.rate));
    let mut due = vec![Instant::now(); o.senders];
    let mut foreign = 0u64;
    let mut evs = Vec::new();
    let mut buf = String::new();

    eprintln!("natter-load: sending");
    let cpu0 = server.map(|p| p.cpu()).transpose()?;
    let start = Instant::now();
    let mut last_delivery = start;
    let mut stalled = false;
    while tally.delivered < tally.expected() {
        let now = Instant::now();
        let mut wake = TICK;
        for s in 0..o.senders {
            buf.clear();
            while sent[s] < o.messages && sent[s] - tally.acked(s) < o.window {
                if let Some(g) = gap {
                    if due[s] > now {
                        wake = wake.min(due[s] - now);
                        break;
                    }
                    due[s] += g;
                }
                let stamp = Stamp {
                    sender: s as u32,
                    seq: sent[s],
                    sent_ns: now_ns(),
                };
                buf.push_str(&stamp.encode());
                sent[s] += 1;
            }
            if !buf.is_empty() {
                pool.send(sender_ids[s], buf.as_bytes());
            }
        }
        if last_delivery.elapsed() > STALL {
            stalled = true;
            break;
        }
        deadline.check(|| {
            format!(
                "fanout: {} of {} deliveries",
                tally.delivered,
                tally.expected()
            )
        })?;
        pool.poll(deadline.cap(wake), &mut evs)?;
        let now_ns = now_ns();
        for ev in evs.drain(..) {
            match ev {
                Ev::Line(id, line) => match role.get(id).copied().unwrap_or(Role::None) {
                    Role::Receiver(r) => {
                        if line.starts_with("*** ") {
                            continue;
                        }
                        match Stamp::decode(&line) {
                            Some(st)
                                if prefixes
                                    .get(st.sender as usize)
                                    .is_some_and(|p| line.starts_with(p.as_str())) =>
                            {
                                latencies.record(now_ns.saturating_sub(st.sent_ns));
                                tally.record(r, st.sender as usize, st.seq);
                                last_delivery = Instant::now();
                            }
                            Some(_) => tally.garbled += 1,
                            None => foreign += 1,
                        }
                    }
                    Role::Sender | Role::None => {}
                },
                Ev::Closed(id, reason, _) => {
                    return Err(Error::Protocol(format!(
                        "during fanout, client {}: {reason}",
                        pool.nick(id)
                    )));
                }
                Ev::Ready(_) => {}
            }
        }
    }
    let elapsed = last_delivery.saturating_duration_since(start);
    let cpu1 = server.map(|p| p.cpu()).transpose()?;
    drop(pool);

    let lat = latencies.latency();
    let mut r = Report::new("fanout");
    r.add("receivers", "receivers", o.receivers, "");
    r.add("senders", "senders", o.senders, "");
    r.add("messages", "messages per sender", o.messages, "");
    r.add_key("room", o.room.as_deref().unwrap_or("default"));
    r.add("window", "window per sender", o.window, "messages");
    r.add("expected", "deliveries expected", tally.expected(), "");
    r.add("delivered", "deliveries received", tally.delivered, "");
    r.add("lost", "lost", tally.lost(), "");
    r.add("out_of_order", "out of order", tally.out_of_order, "");
    r.add("duplicates", "duplicates", tally.duplicates, "");
    r.add("garbled", "garbled", tally.garbled, "");
    r.add("other_lines", "other non-notice lines", foreign, "");
    r.add(
        "secs",
        "duration",
        format!("{:.3}", elapsed.as_secs_f64()),
        "s",
    );
    let rate = tally.delivered as f64 / elapsed.as_secs_f64().max(1e-9);
    r.add(
        "deliveries_per_s",
        "deliveries per second",
        format!("{rate:.0}"),
        "",
    );
    r.add("p50_us", "latency p50", us(lat.p50), "µs");
    r.add("p99_us", "latency p99", us(lat.p99), "µs");
    r.add("max_us", "latency max", us(lat.max), "µs");
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        let ns = b.ns - a.ns;
        r.add("cpu_ns", "server CPU (schedstat)", ns, "ns");
        r.add(
            "cpu_ns_per_delivery",
            "server CPU per delivery",
            format!("{:.0}", ns as f64 / tally.delivered.max(1) as f64),
            "ns",
        );
    }
    let bad = tally.lost() + tally.out_of_order + tally.duplicates + tally.garbled;
    if stalled {
        r.fail(format!(
            "no delivery for {} s with messages outstanding",
            STALL.as_secs()
        ));
    }
    if bad > 0 {
        r.fail(format!(
            "{} lost, {} out of order, {} duplicated, {} garbled deliveries",
            tally.lost(),
            tally.out_of_order,
            tally.duplicates,
            tally.garbled
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_in_order() {
        let mut t = Tally::new(2, 1, 3);
        for seq in 0..3 {
            t.record(0, 0, seq);
            assert_eq!(t.acked(0), seq);
            t.record(1, 0, seq);
            assert_eq!(t.acked(0), seq + 1);
        }
        assert_eq!(
            (t.delivered, t.lost(), t.out_of_order, t.duplicates),
            (6, 0, 0, 0)
        );
    }

    #[test]
    fn tally_gap_reorder_duplicate() {
        let mut t = Tally::new(1, 2, 4);
        t.record(0, 1, 0);
        t.record(0, 1, 2); // gap: out of order
        t.record(0, 1, 1); // late: out of order
        t.record(0, 1, 1); // duplicate
        t.record(0, 5, 0); // no such sender
        assert_eq!(t.delivered, 3);
        assert_eq!(t.out_of_order, 2);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.garbled, 1);
        assert_eq!(t.acked(1), 3);
        assert_eq!(t.acked(0), 0);
        assert_eq!(t.lost(), 8 - 3);
    }
}
