//! `fanout`: R receivers and S senders in one room; every message must reach every receiver,
//! in order, once. Measures deliveries per second, latency, the time until a message has
//! reached the last receiver, and the CPU per delivery of the server (or of all servers, when
//! clients are spread over several), optionally across SIGUSR2 upgrades (`upgrades.rs`).
//!
//! Flow control: a sender keeps at most `--window` messages "in flight", i.e. sent but not yet
//! received by every receiver, so the test never fills the server's per-client send queue just
//! because the load generator is slower at reading than the server is at writing.

mod report;
mod tally;
mod upgrades;

use super::{LOGIN_CONCURRENCY, Spec, TICK, ensure_capacity, login_all, nick, wait_quiet};
use crate::cli::{Common, Fanout};
use crate::client::{Ev, Id, Pool, Target};
use crate::clock::{Deadline, now_ns};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::lineage::Lineage;
use crate::login::Goal;
use crate::stats::{Histogram, Report};
use crate::wire::Stamp;
use std::time::{Duration, Instant};
use tally::Tally;
use upgrades::{Action, NOTICE, Upgrades};

/// With messages outstanding, this long without any delivery ends the run as a failure.
const STALL: Duration = Duration::from_secs(10);

/// While an upgrade runs, how often the server's processes are looked at in /proc.
const FOLLOW_EVERY: Duration = Duration::from_millis(2);

#[derive(Clone, Copy)]
enum Role {
    None,
    Receiver(usize),
    Sender,
}

/// Runs the scenario and returns its report (an error if anything was lost or reordered).
pub fn run(c: &Common, o: &Fanout) -> Result<Report> {
    let deadline = Deadline::in_secs(c.timeout_secs);
    ensure_capacity(o.receivers + o.senders, "fanout")?;
    // Checked now, counted from the first message on.
    let mut servers: Vec<Lineage> = c
        .pids
        .iter()
        .map(|&p| Lineage::new(p))
        .collect::<Result<_>>()?;
    let mut pool = Pool::new(Target {
        addrs: c.addrs.clone(),
        sources: c.sources,
        dialect: c.proto,
    })?;
    // Receivers and senders are each spread round-robin over the servers.
    let specs: Vec<Spec> = (0..o.receivers + o.senders)
        .map(|i| Spec {
            nick: nick(0, i),
            goal: Goal::Login {
                join: o.room.clone(),
                oper: o.irc_oper.clone().filter(|_| i >= o.receivers),
            },
            node: if i < o.receivers { i } else { i - o.receivers },
        })
        .collect();
    eprintln!(
        "natter-load: logging in {} receivers and {} senders",
        o.receivers, o.senders
    );
    let ids = login_all(&mut pool, &deadline, &specs, LOGIN_CONCURRENCY)?;
    wait_quiet(&mut pool, &deadline, Duration::from_millis(c.quiet_ms))?;

    eprintln!("natter-load: sending");
    for s in &mut servers {
        s.count_from_now()?;
    }
    let mut flow = Flow::new(c, o, &specs, &ids);
    flow.drive(&mut pool, &deadline, &mut servers)?;
    for s in &mut servers {
        s.sample();
    }
    drop(pool);
    let cpu: Vec<_> = servers.iter().map(Lineage::cpu).collect();
    Ok(flow.report(c, o, &cpu, &servers))
}

/// The sending phase: who sends what when, and what every receiver got.
struct Flow {
    dialect: Dialect,
    room: String,
    messages: u32,
    window: u32,
    senders: Vec<Id>,
    sender_nicks: Vec<String>,
    role: Vec<Role>,
    tally: Tally,
    latencies: Histogram,
    /// Per message: time from sending until the last receiver had it.
    last_receipt: Histogram,
    sent: Vec<u32>,
    due: Vec<Instant>,
    gap: Option<Duration>,
    other_lines: u64,
    unexpected: u64,
    upgrades: Option<Upgrades>,
    signals_after_load: u32,
    next_follow: Instant,
    start: Instant,
    last_delivery: Instant,
    failure: Option<String>,
    buf: String,
}

impl Flow {
    fn new(c: &Common, o: &Fanout, specs: &[Spec], ids: &[Id]) -> Flow {
        let max_id = ids.iter().copied().max().unwrap_or(0);
        let mut role = vec![Role::None; max_id + 1];
        for (i, &id) in ids.iter().enumerate() {
            role[id] = if i < o.receivers {
                Role::Receiver(i)
            } else {
                Role::Sender
            };
        }
        let start = Instant::now();
        let gap = Duration::from_millis(o.upgrade_gap_ms);
        Flow {
            dialect: c.proto,
            room: o.room.clone().unwrap_or_default(),
            messages: o.messages,
            window: o.window,
            senders: ids[o.receivers..].to_vec(),
            sender_nicks: specs[o.receivers..]
                .iter()
                .map(|s| s.nick.clone())
                .collect(),
            role,
            tally: Tally::new(o.receivers, o.senders, o.messages),
            latencies: Histogram::default(),
            last_receipt: Histogram::default(),
            sent: vec![0; o.senders],
            due: vec![start; o.senders],
            gap: (o.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / o.rate)),
            other_lines: 0,
            unexpected: 0,
            upgrades: (o.upgrades > 0).then(|| Upgrades::new(o.upgrades, gap, o.receivers, start)),
            signals_after_load: 0,
            next_follow: start,
            start,
            last_delivery: start,
            failure: None,
            buf: String::new(),
        }
    }

    fn loading(&self) -> bool {
        self.tally.delivered < self.tally.expected()
    }

    /// The loop: send what the windows allow, run the upgrades, read what arrives; until every
    /// delivery and every upgrade is done, or a failure.
    fn drive(
        &mut self,
        pool: &mut Pool,
        deadline: &Deadline,
        servers: &mut [Lineage],
    ) -> Result<()> {
        let mut evs = Vec::new();
        while self.loading() || self.upgrades.as_ref().is_some_and(Upgrades::pending) {
            let now = Instant::now();
            let mut wake = self.send_due(pool, now);
            if self.loading() && self.last_delivery.elapsed() > STALL {
                self.failure = Some(format!(
                    "no delivery for {} s with messages outstanding",
                    STALL.as_secs()
                ));
                break;
            }
            if let Some(server) = servers.first_mut()
                && self.upgrades.is_some()
            {
                wake = wake.min(self.run_upgrades(server, now)?);
                if self.failure.is_some() {
                    break;
                }
            }
            deadline.check(|| {
                format!(
                    "fanout: {} of {} deliveries",
                    self.tally.delivered,
                    self.tally.expected()
                )
            })?;
            pool.poll(deadline.cap(wake), &mut evs)?;
            let (now, now_ns) = (Instant::now(), now_ns());
            for ev in evs.drain(..) {
                match ev {
                    Ev::Line(id, line) => self.on_line(id, &line, now, now_ns),
                    Ev::Closed(id, reason, _) => {
                        let hint = match &self.upgrades {
                            Some(u) if u.in_flight() => format!(
                                " (during upgrade {}: a server that does not handle SIGUSR2 \
                                 is ended by it)",
                                u.started()
                            ),
                            _ => String::new(),
                        };
                        return Err(Error::Protocol(format!(
                            "during fanout, client {}: {reason}{hint}",
                            pool.nick(id)
                        )));
                    }
                    Ev::Ready(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Sends what each sender's window and rate allow; returns how long the loop may sleep.
    fn send_due(&mut self, pool: &mut Pool, now: Instant) -> Duration {
        let mut wake = TICK;
        for s in 0..self.senders.len() {
            self.buf.clear();
            while self.sent[s] < self.messages && self.sent[s] - self.tally.acked(s) < self.window {
                if let Some(g) = self.gap {
                    if self.due[s] > now {
                        wake = wake.min(self.due[s] - now);
                        break;
                    }
                    self.due[s] += g;
                }
                let stamp = Stamp {
                    sender: s as u32,
                    seq: self.sent[s],
                    sent_ns: now_ns(),
                };
                self.dialect
                    .push_chat(&mut self.buf, &self.room, &stamp.text());
                self.sent[s] += 1;
            }
            if !self.buf.is_empty() {
                pool.send(self.senders[s], self.buf.as_bytes());
            }
        }
        wake
    }

    /// Follows the server's processes and signals when due; returns how long the loop may
    /// sleep. A stuck upgrade is recorded as the run's failure.
    fn run_upgrades(&mut self, server: &mut Lineage, now: Instant) -> Result<Duration> {
        let loading = self.loading();
        let Some(u) = self.upgrades.as_mut() else {
            return Ok(TICK);
        };
        if u.in_flight() && now >= self.next_follow {
            self.next_follow = now + FOLLOW_EVERY;
            if server.follow() && u.awaiting_switch() {
                u.on_switched();
            }
        }
        match u.step(now) {
            Ok(Action::Signal) => {
                upgrades::signal(server)?;
                self.signals_after_load += u32::from(!loading);
                self.next_follow = now;
            }
            Ok(Action::Wait) => {}
            Err(why) => self.failure = Some(why),
        }
        Ok(if u.in_flight() {
            FOLLOW_EVERY
        } else {
            Duration::from_millis(10)
        })
    }

    fn on_line(&mut self, id: Id, line: &str, now: Instant, now_ns: u64) {
        let role = self.role.get(id).copied().unwrap_or(Role::None);
        let delivery = self.dialect.chat(line).and_then(|chat| {
            let st = Stamp::parse(chat.text)?;
            Some((
                st,
                self.sender_nicks
                    .get(st.sender as usize)
                    .is_some_and(|n| n == chat.from),
            ))
        });
        let Role::Receiver(r) = role else {
            // Senders get the other senders' messages, and the upgrade notices.
            let expected = line == NOTICE || delivery.is_some_and(|(_, from_sender)| from_sender);
            if self.upgrades.is_some() && !expected {
                self.unexpected += 1;
            }
            return;
        };
        match delivery {
            Some((st, true)) => {
                let latency = now_ns.saturating_sub(st.sent_ns);
                self.latencies.record(latency);
                if self.tally.record(r, st.sender as usize, st.seq) {
                    self.last_receipt.record(latency);
                }
                self.last_delivery = now;
                if let Some(u) = &mut self.upgrades {
                    u.on_delivery(r, now);
                }
            }
            Some((_, false)) => self.tally.garbled += 1,
            None => match &mut self.upgrades {
                Some(u) if line == NOTICE => u.on_notice(r),
                Some(_) => self.unexpected += 1,
                // natter's notices, and every IRC message that is not a chat line, are fine.
                None if self.dialect == Dialect::Irc || line.starts_with("*** ") => {}
                None => self.other_lines += 1,
            },
        }
    }
}
