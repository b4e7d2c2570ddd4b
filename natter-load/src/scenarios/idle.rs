//! `idle`: hold N logged-in clients and measure what they cost the server at rest.
//!
//! When N does not fit in this process's open-file limit, the clients are split over worker
//! processes (this binary re-executed with the hidden [`WORKER_CMD`] subcommand). A worker
//! talks to the parent over its stdin/stdout, one word a line:
//! worker `ready` -> parent `settle` -> worker `quiet` -> parent `quit` (or EOF) -> worker exits.

use super::{Spec, client_capacity, hold, login_all, ms, nick, probe, wait_quiet};
use crate::cli::{Common, Idle, WORKER_CMD, Worker};
use crate::client::{Pool, Target};
use crate::clock::Deadline;
use crate::error::{Error, IoContext, Result};
use crate::proc::{Memory, Proc, clock_ticks_per_sec};
use crate::stats::Report;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs the scenario and returns its report.
pub fn run(c: &Common, o: &Idle) -> Result<Report> {
    let deadline = Deadline::in_secs(c.timeout_secs);
    let server = c.pid.map(Proc::new).transpose()?;
    let target = Target {
        addr: c.addr,
        sources: c.sources,
    };
    let quiet = Duration::from_millis(c.quiet_ms);
    let room_tag = format!("nl{}", std::process::id());
    let cap = client_capacity();
    if let Some(p) = server {
        // Let a previous run's connections finish closing before the baseline.
        p.settled_fds(quiet, Duration::from_secs(5))?;
    }
    let mem_before = server.map(|p| p.memory()).transpose()?;
    let t0 = Instant::now();

    // In this process when N (+2 probe clients) fits, else in workers.
    let mut pool = Pool::new(target.clone())?;
    let mut workers = Vec::new();
    let login_time;
    let probe_base = if o.n + 2 <= cap {
        let specs = specs(0, 0, o.n, o.rooms, &room_tag);
        eprintln!("natter-load: logging in {} clients", o.n);
        login_all(&mut pool, &deadline, &specs, o.concurrency)?;
        login_time = t0.elapsed();
        eprintln!("natter-load: all logged in; waiting for quiet");
        wait_quiet(&mut pool, &deadline, quiet)?;
        o.n
    } else {
        let per = cap.clamp(1, 19_000);
        let count = o.n.div_ceil(per);
        eprintln!(
            "natter-load: {} clients exceed one process's {cap}; using {count} worker processes",
            o.n
        );
        for w in 0..count {
            let first = w * per;
            let n = per.min(o.n - first);
            let job = Worker {
                worker: w + 1,
                first,
                count: n,
                rooms: o.rooms,
                room_tag: room_tag.clone(),
                concurrency: (o.concurrency / count).max(1),
            };
            workers.push(WorkerProc::spawn(c, &deadline, &job)?);
        }
        for w in &mut workers {
            w.expect("ready")?;
        }
        login_time = t0.elapsed();
        eprintln!("natter-load: all workers logged in; waiting for quiet");
        for w in &mut workers {
            w.say("settle")?;
        }
        for w in &mut workers {
            w.expect("quiet")?;
        }
        0
    };
    let mem_after = server.map(|p| p.memory()).transpose()?;

    eprintln!("natter-load: idle window of {} s", o.idle_secs);
    let rx0 = pool.rx_bytes();
    let cpu0 = server.map(|p| p.cpu()).transpose()?;
    let w0 = Instant::now();
    hold(&mut pool, &deadline, Duration::from_secs(o.idle_secs))?;
    let window = w0.elapsed();
    let cpu1 = server.map(|p| p.cpu()).transpose()?;
    let rx_idle = pool.rx_bytes() - rx0;

    let pr = probe(
        &mut pool,
        &deadline,
        &nick(0, probe_base),
        &nick(0, probe_base + 1),
    )?;
    for w in &mut workers {
        w.say("quit")?;
    }
    for w in workers {
        w.wait()?;
    }

    let mut r = Report::new("idle");
    r.add("n", "clients held", o.n, "");
    r.add("rooms", "rooms", o.rooms, "");
    r.add("login_ms", "time to log all in", ms(login_time), "ms");
    r.add(
        "logins_per_s",
        "logins per second",
        format!("{:.0}", o.n as f64 / login_time.as_secs_f64()),
        "",
    );
    if let (Some(b), Some(a)) = (mem_before, mem_after) {
        add_memory(&mut r, b, a, o.n);
    }
    r.add(
        "idle_secs",
        "idle window",
        format!("{:.1}", window.as_secs_f64()),
        "s",
    );
    r.add("idle_rx_bytes", "bytes received while idle", rx_idle, "B");
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        r.add(
            "cpu_ticks",
            "server CPU in idle window (utime+stime)",
            b.ticks - a.ticks,
            &format!("ticks (1/{} s)", clock_ticks_per_sec()),
        );
        r.add(
            "cpu_ns",
            "server CPU in idle window (schedstat)",
            b.ns - a.ns,
            "ns",
        );
    }
    r.add("probe_login_ms", "fresh clients: login", ms(pr.login), "ms");
    r.add(
        "probe_msg_ms",
        "fresh client: message delivered",
        ms(pr.message),
        "ms",
    );
    r.add("probe", "fresh client can chat", "ok", "");
    Ok(r)
}

fn add_memory(r: &mut Report, b: Memory, a: Memory, n: usize) {
    let per = |after: u64, before: u64| (after as i64 - before as i64) * 1024 / n as i64;
    r.add("rss_before_kb", "server VmRSS before", b.rss_kb, "KiB");
    r.add("rss_after_kb", "server VmRSS after", a.rss_kb, "KiB");
    r.add("anon_before_kb", "server RssAnon before", b.anon_kb, "KiB");
    r.add("anon_after_kb", "server RssAnon after", a.anon_kb, "KiB");
    r.add(
        "rss_per_conn_b",
        "VmRSS per connection",
        per(a.rss_kb, b.rss_kb),
        "B",
    );
    r.add(
        "anon_per_conn_b",
        "RssAnon per connection",
        per(a.anon_kb, b.anon_kb),
        "B",
    );
}

/// Specs for `count` clients of worker `worker`, global indices from `first`.
fn specs(worker: usize, first: usize, count: usize, rooms: usize, tag: &str) -> Vec<Spec> {
    (0..count)
        .map(|i| Spec {
            nick: nick(worker, i),
            join: (rooms > 1).then(|| format!("{tag}r{}", (first + i) % rooms)),
        })
        .collect()
}

/// Entry point of the hidden worker subcommand.
pub fn run_worker(c: &Common, o: &Worker) -> Result<()> {
    let deadline = Deadline::in_secs(c.timeout_secs);
    let target = Target {
        addr: c.addr,
        sources: c.sources,
    };
    let mut pool = Pool::new(target)?;
    let specs = specs(o.worker, o.first, o.count, o.rooms, &o.room_tag);

    // Parent commands arrive on a thread that wakes the poll loop.
    const WAKE: mio::Token = mio::Token(usize::MAX);
    let waker = mio::Waker::new(pool.registry(), WAKE).ctx(|| "creating a mio Waker".into())?;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() || waker.wake().is_err() {
                return;
            }
        }
        let _ = tx.send("quit".into());
        let _ = waker.wake();
    });

    login_all(&mut pool, &deadline, &specs, o.concurrency)?;
    say_parent("ready")?;
    loop {
        match rx.try_recv() {
            Ok(cmd) if cmd == "settle" => {
                wait_quiet(&mut pool, &deadline, Duration::from_millis(c.quiet_ms))?;
                say_parent("quiet")?;
            }
            Ok(cmd) if cmd == "quit" => return Ok(()),
            Ok(other) => {
                return Err(Error::Protocol(format!("worker got {other:?} from parent")));
            }
            Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
            Err(mpsc::TryRecvError::Empty) => {
                // Hold the clients until the parent speaks; `hold` returns after one tick.
                hold(&mut pool, &deadline, super::TICK)?;
            }
        }
    }
}

fn say_parent(word: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{word}")
        .and_then(|()| out.flush())
        .ctx(|| "writing to the parent process".into())
}

/// A running worker process and its pipes.
struct WorkerProc {
    index: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl WorkerProc {
    fn spawn(c: &Common, deadline: &Deadline, job: &Worker) -> Result<WorkerProc> {
        let index = job.worker;
        let exe = std::env::current_exe().ctx(|| "finding our own executable".into())?;
        let mut cmd = Command::new(exe);
        cmd.arg(WORKER_CMD)
            .args(["--addr", &c.addr.to_string()])
            .args(["--timeout", &deadline.remaining_secs().max(1).to_string()])
            .args(["--sources", &c.sources.to_string()])
            .args(["--quiet-ms", &c.quiet_ms.to_string()])
            .args(["--worker", &index.to_string()])
            .args(["--first", &job.first.to_string()])
            .args(["--count", &job.count.to_string()])
            .args(["--rooms", &job.rooms.to_string()])
            .args(["--room-tag", &job.room_tag])
            .args(["--concurrency", &job.concurrency.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .ctx(|| format!("starting worker process {index}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Protocol("worker pipes missing".into()));
        };
        Ok(WorkerProc {
            index,
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        })
    }

    fn say(&mut self, word: &str) -> Result<()> {
        let index = self.index;
        match self.stdin.as_mut() {
            Some(s) => writeln!(s, "{word}")
                .and_then(|()| s.flush())
                .ctx(|| format!("talking to worker {index} (it may have failed, see above)")),
            None => Ok(()),
        }
    }

    /// Blocks until the worker says `word`. Bounded: the worker has the same deadline and
    /// exits (closing the pipe) when it runs out.
    fn expect(&mut self, word: &str) -> Result<()> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .ctx(|| format!("reading from worker {}", self.index))?;
        if n == 0 {
            return Err(Error::Protocol(format!(
                "worker {} exited before saying {word:?} (its error is above)",
                self.index
            )));
        }
        if line.trim_end() != word {
            return Err(Error::Protocol(format!(
                "worker {} said {:?}, expected {word:?}",
                self.index,
                line.trim_end()
            )));
        }
        Ok(())
    }

    fn wait(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .ctx(|| format!("waiting for worker {}", self.index))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Protocol(format!(
                "worker {} failed ({status})",
                self.index
            )))
        }
    }
}
