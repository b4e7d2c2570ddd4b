//! `churn`: connect, log in, chat, `/quit`, N times with C at once; the server's open fds must
//! return to baseline afterwards and its RSS must not grow by more than `--rss-slack`.

use super::{TICK, ensure_capacity, ms, nick};
use crate::cli::{Churn, Common};
use crate::client::{Ev, Pool, Target};
use crate::clock::Deadline;
use crate::error::{Error, Result};
use crate::login::Goal;
use crate::proc::Proc;
use crate::stats::{Latency, Report};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Runs the scenario and returns its report.
pub fn run(c: &Common, o: &Churn) -> Result<Report> {
    let deadline = Deadline::in_secs(c.timeout_secs);
    // One server (cli checks it): natter only, one --addr and at most one --pid.
    let server = c.pids.first().copied().map(Proc::new).transpose()?;
    ensure_capacity(o.concurrency, "churn --concurrency")?;
    let mut pool = Pool::new(Target {
        addrs: c.addrs.clone(),
        sources: c.sources,
        dialect: c.proto,
    })?;
    let before = match server {
        Some(p) => {
            // A previous run's sockets may still be closing: take the baseline once the
            // fd count has held still for --quiet-ms (at most --settle-secs).
            let fds = p.settled_fds(
                Duration::from_millis(c.quiet_ms),
                Duration::from_secs(o.settle_secs),
            )?;
            Some((p.memory()?, fds))
        }
        None => None,
    };

    // Per live connection: its cycle index and whether it has seen `*** ...NICK...` after /quit.
    let mut cycle: HashMap<usize, (usize, bool)> = HashMap::with_capacity(o.concurrency);
    let (mut started, mut done, mut bye_missing) = (0usize, 0usize, 0usize);
    let mut cycle_ns: Vec<u64> = Vec::with_capacity(o.n);
    let mut evs = Vec::new();
    let t0 = Instant::now();
    eprintln!("natter-load: {} cycles, {} at once", o.n, o.concurrency);
    while done < o.n {
        while started < o.n && pool.live() < o.concurrency {
            let id = pool.connect(&nick(0, started), Goal::join(None), 0)?;
            cycle.insert(id, (started, false));
            started += 1;
        }
        deadline.check(|| format!("churn: {done} of {} cycles done", o.n))?;
        pool.poll(deadline.cap(TICK), &mut evs)?;
        for ev in evs.drain(..) {
            match ev {
                Ev::Ready(id) => {
                    let i = cycle.get(&id).map_or(0, |c| c.0);
                    pool.send(id, format!("churn {i}\r\n/quit\r\n").as_bytes());
                }
                Ev::Line(id, line) => {
                    let nick = pool.nick(id).to_owned();
                    if let Some(c) = cycle.get_mut(&id)
                        && crate::wire::notice_names(&line, &nick)
                    {
                        c.1 = true;
                    }
                }
                Ev::Closed(id, reason, ready) => {
                    if !ready {
                        return Err(Error::Protocol(format!(
                            "churn client {} closed before login: {reason}",
                            pool.nick(id)
                        )));
                    }
                    if let Some((_, bye)) = cycle.remove(&id) {
                        bye_missing += usize::from(!bye);
                    }
                    cycle_ns.push(pool.age(id).as_nanos() as u64);
                    pool.remove(id);
                    done += 1;
                }
            }
        }
    }
    let elapsed = t0.elapsed();

    let lat = Latency::from_samples(&mut cycle_ns);
    let mut r = Report::new("churn");
    r.add("n", "cycles", o.n, "");
    r.add("concurrency", "at once", o.concurrency, "");
    r.add(
        "secs",
        "duration",
        format!("{:.3}", elapsed.as_secs_f64()),
        "s",
    );
    r.add(
        "cycles_per_s",
        "cycles per second",
        format!("{:.0}", o.n as f64 / elapsed.as_secs_f64().max(1e-9)),
        "",
    );
    r.add(
        "cycle_p50_ms",
        "cycle time p50",
        ms(Duration::from_nanos(lat.p50)),
        "ms",
    );
    r.add(
        "cycle_p99_ms",
        "cycle time p99",
        ms(Duration::from_nanos(lat.p99)),
        "ms",
    );
    r.add(
        "bye_missing",
        "closed without a goodbye notice",
        bye_missing,
        "",
    );
    if bye_missing > 0 {
        r.fail(format!(
            "{bye_missing} clients were closed after /quit without a `*** ` line naming them"
        ));
    }

    if let (Some(p), Some((mem0, fds0))) = (server, before) {
        // The server may still be closing the last sockets: give the fd count time to settle.
        let settle_until = Instant::now() + Duration::from_secs(o.settle_secs);
        let mut fds1 = p.open_fds()?;
        while fds1 > fds0 && Instant::now() < settle_until {
            std::thread::sleep(Duration::from_millis(100));
            fds1 = p.open_fds()?;
        }
        let mem1 = p.memory()?;
        let fd_diff = fds1 as i64 - fds0 as i64;
        let rss_diff = mem1.rss_kb as i64 - mem0.rss_kb as i64;
        r.add("fds_before", "server open fds before", fds0, "");
        r.add("fds_after", "server open fds after", fds1, "");
        r.add("fds_diff", "fd difference", fd_diff, "");
        r.add("rss_before_kb", "server VmRSS before", mem0.rss_kb, "KiB");
        r.add("rss_after_kb", "server VmRSS after", mem1.rss_kb, "KiB");
        r.add("rss_diff_kb", "VmRSS difference", rss_diff, "KiB");
        r.add(
            "anon_before_kb",
            "server RssAnon before",
            mem0.anon_kb,
            "KiB",
        );
        r.add("anon_after_kb", "server RssAnon after", mem1.anon_kb, "KiB");
        if fd_diff > 0 {
            r.fail(format!(
                "server fd count did not return to baseline ({fds0} -> {fds1}) within {} s",
                o.settle_secs
            ));
        }
        if rss_diff > o.rss_slack_kb as i64 {
            r.fail(format!(
                "server VmRSS grew by {rss_diff} KiB, more than --rss-slack {}",
                o.rss_slack_kb
            ));
        }
    }
    Ok(r)
}
