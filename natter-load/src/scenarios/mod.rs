//! The scenarios and the steps they share: logging many clients in with bounded concurrency,
//! waiting until the server is quiet, and the "a fresh client can still chat" probe.

pub mod churn;
pub mod fanout;
pub mod idle;
pub mod servers;
#[cfg(test)]
mod tests;

use crate::client::{Ev, Id, Pool};
use crate::clock::Deadline;
use crate::error::{Error, Result};
use crate::login::Goal;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Default logins in progress at once: below natter's listen backlog (128), because an
/// overflowing accept queue with SYN cookies leaves clients that believe they are connected
/// but never get the prompt.
pub const LOGIN_CONCURRENCY: usize = 64;

/// How long one `poll` may block while we also watch the clock.
pub const TICK: Duration = Duration::from_millis(100);

/// One client to bring to its goal: its nickname, how far it goes, and which server (node)
/// it connects to.
pub struct Spec {
    /// Nickname.
    pub nick: String,
    /// At the prompt, or logged in (and joined).
    pub goal: Goal,
    /// Index into `--addr` (taken modulo their number).
    pub node: usize,
}

/// The nickname convention: `l{worker}x{index}` (at most 24 characters).
pub fn nick(worker: usize, index: usize) -> String {
    format!("l{worker}x{index}")
}

/// Logs every spec in, at most `concurrency` at a time, and returns their ids in spec order.
///
/// Lines that reach already-ready clients meanwhile are dropped. Any close is an error.
pub fn login_all(
    pool: &mut Pool,
    deadline: &Deadline,
    specs: &[Spec],
    concurrency: usize,
) -> Result<Vec<Id>> {
    let mut ids = vec![usize::MAX; specs.len()];
    let mut index_of: HashMap<Id, usize> = HashMap::with_capacity(specs.len());
    let (mut started, mut ready, mut inflight) = (0usize, 0usize, 0usize);
    let mut evs = Vec::new();
    while ready < specs.len() {
        while started < specs.len() && inflight < concurrency {
            let s = &specs[started];
            let id = pool.connect(&s.nick, s.goal.clone(), s.node)?;
            index_of.insert(id, started);
            ids[started] = id;
            started += 1;
            inflight += 1;
        }
        deadline.check(|| {
            format!(
                "logging in: {ready} of {} ready, {inflight} in progress ({}){}",
                specs.len(),
                pool.phases(),
                if pool.awaiting_prompt() > 0 {
                    "; a connection that never gets the prompt usually means the server's \
                     listen backlog overflowed (ListenOverflows in /proc/net/netstat): \
                     lower --concurrency"
                } else {
                    ""
                }
            )
        })?;
        pool.poll(deadline.cap(TICK), &mut evs)?;
        for ev in evs.drain(..) {
            match ev {
                Ev::Ready(_) => {
                    ready += 1;
                    inflight -= 1;
                }
                Ev::Line(..) => {}
                Ev::Closed(id, reason, _) => {
                    let nick = index_of.get(&id).map_or("?", |&i| specs[i].nick.as_str());
                    return Err(Error::Protocol(format!(
                        "while logging in ({ready} of {} ready), client {nick}: {reason}",
                        specs.len()
                    )));
                }
            }
        }
    }
    Ok(ids)
}

/// Waits until no byte has arrived for `quiet`, dropping lines; any close is an error.
pub fn wait_quiet(pool: &mut Pool, deadline: &Deadline, quiet: Duration) -> Result<()> {
    let mut evs = Vec::new();
    loop {
        let silent = pool.last_rx().elapsed();
        if silent >= quiet {
            return Ok(());
        }
        deadline.check(|| "waiting for the server to go quiet".into())?;
        pool.poll(deadline.cap(quiet - silent), &mut evs)?;
        closed_is_error(&mut evs, pool, "while waiting for quiet")?;
    }
}

/// Keeps all clients connected for `dur`, dropping lines; any close is an error.
pub fn hold(pool: &mut Pool, deadline: &Deadline, dur: Duration) -> Result<()> {
    let until = Instant::now() + dur;
    let mut evs = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        deadline.check(|| "holding idle clients".into())?;
        pool.poll(deadline.cap(left), &mut evs)?;
        closed_is_error(&mut evs, pool, "while holding idle clients")?;
    }
}

fn closed_is_error(evs: &mut Vec<Ev>, pool: &Pool, when: &str) -> Result<()> {
    for ev in evs.drain(..) {
        if let Ev::Closed(id, reason, _) = ev {
            return Err(Error::Protocol(format!(
                "{when}, client {}: {reason}",
                pool.nick(id)
            )));
        }
    }
    Ok(())
}

/// Result of [`probe`].
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Time for both fresh clients to connect, log in and pass the sync barrier.
    pub login: Duration,
    /// Time from sending the message to the other client receiving it.
    pub message: Duration,
}

/// Proves the server still serves: two fresh clients log in (to the default room, or to
/// `room` if given; the first on the first node, the second on the second if there are
/// several), the first sends a chat line, the second must receive it. Both are removed after.
pub fn probe(
    pool: &mut Pool,
    deadline: &Deadline,
    nicks: [&str; 2],
    room: Option<&str>,
) -> Result<Probe> {
    let t0 = Instant::now();
    let specs = [0, 1].map(|i| Spec {
        nick: nicks[i].to_owned(),
        goal: Goal::join(room.map(str::to_owned)),
        node: i,
    });
    let ids = login_all(pool, deadline, &specs, 2)?;
    let login = t0.elapsed();
    let (a, b) = (ids[0], ids[1]);
    let text = format!("probe {}", crate::clock::now_ns());
    let mut req = String::new();
    pool.dialect()
        .push_chat(&mut req, room.unwrap_or(""), &text);
    let t1 = Instant::now();
    pool.send(a, req.as_bytes());
    let mut evs = Vec::new();
    let mut got = false;
    while !got {
        deadline.check(|| {
            format!(
                "fresh client {} waiting for {}'s message",
                nicks[1], nicks[0]
            )
        })?;
        pool.poll(deadline.cap(TICK), &mut evs)?;
        for ev in evs.drain(..) {
            match ev {
                Ev::Line(id, line) if id == b => {
                    let chat = pool.dialect().chat(&line);
                    got |= chat.is_some_and(|c| c.from == nicks[0] && c.text == text);
                }
                Ev::Closed(id, reason, _) if id == a || id == b => {
                    return Err(Error::Protocol(format!(
                        "fresh client {}: {reason}",
                        pool.nick(id)
                    )));
                }
                _ => {}
            }
        }
    }
    let message = t1.elapsed();
    pool.remove(a);
    pool.remove(b);
    Ok(Probe { login, message })
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns how many clients one process
/// may hold (the soft limit minus a reserve of 64 for stdio, epoll, /proc reads, pipes).
pub fn client_capacity() -> usize {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "natter-load: cannot raise the open-file limit ({e}); run `ulimit -n` higher"
            );
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(s, _)| s)
        }
    };
    usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(64)
}

/// Fails with a clear message when `needed` clients cannot fit in one process.
pub fn ensure_capacity(needed: usize, what: &str) -> Result<()> {
    let cap = client_capacity();
    if needed > cap {
        return Err(Error::Usage(format!(
            "{what} needs {needed} sockets in one process, but the open-file limit allows {cap} \
             (RLIMIT_NOFILE minus 64); lower the numbers or raise `ulimit -n`"
        )));
    }
    Ok(())
}

/// Ms with one decimal, for tables and the summary line.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}
