//! `idle`: hold N logged-in clients (or N silent at the nickname prompt) and measure what they
//! cost the server, or each server when there are several, at rest.
//!
//! When N does not fit in this process's open-file limit, the clients are split over worker
//! processes (this binary re-executed with the hidden [`WORKER_CMD`] subcommand). A worker
//! talks to the parent over its stdin/stdout, one word a line:
//! worker `ready` -> parent `settle` -> worker `quiet` -> parent `quit` (or EOF) -> worker exits.

use super::servers::{self, add_cpu, add_memory, clients_per_node, used};
use super::{Spec, client_capacity, hold, login_all, ms, nick, probe, wait_quiet};
use crate::cli::{Common, Idle, WORKER_CMD, Worker};
use crate::client::{Pool, Target};
use crate::clock::Deadline;
use crate::dialect::Dialect;
use crate::error::{Error, IoContext, Result};
use crate::login::Goal;
use crate::proc::clock_ticks_per_sec;
use crate::stats::Report;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs the scenario and returns its report.
pub fn run(c: &Common, o: &Idle) -> Result<Report> {
    let deadline = Deadline::in_secs(c.timeout_secs);
    let procs = servers::procs(c)?;
    let quiet = Duration::from_millis(c.quiet_ms);
    let room_tag = format!("nl{}", std::process::id());
    for p in &procs {
        // Let a previous run's connections finish closing before the baseline.
        p.settled_fds(quiet, Duration::from_secs(5))?;
    }
    let mem_before = procs
        .iter()
        .map(|p| p.memory())
        .collect::<Result<Vec<_>>>()?;
    let t0 = Instant::now();

    let mut pool = Pool::new(target(c))?;
    let (mut workers, probe_base) = hold_clients(c, o, &deadline, &mut pool, &room_tag)?;
    let login_time = t0.elapsed();
    let mem_after = procs
        .iter()
        .map(|p| p.memory())
        .collect::<Result<Vec<_>>>()?;

    eprintln!("natter-load: idle window of {} s", o.idle_secs);
    let rx0 = pool.rx_bytes();
    let cpu0 = procs.iter().map(|p| p.cpu()).collect::<Result<Vec<_>>>()?;
    let w0 = Instant::now();
    hold(&mut pool, &deadline, Duration::from_secs(o.idle_secs))?;
    let window = w0.elapsed();
    let cpu1 = procs.iter().map(|p| p.cpu()).collect::<Result<Vec<_>>>()?;
    let rx_idle = pool.rx_bytes() - rx0;

    let probe_room = (c.proto == Dialect::Irc).then(|| format!("{room_tag}probe"));
    let nicks = [nick(0, probe_base), nick(0, probe_base + 1)];
    let pr = probe(
        &mut pool,
        &deadline,
        [&nicks[0], &nicks[1]],
        probe_room.as_deref(),
    )?;
    for w in &mut workers {
        w.say("quit")?;
    }
    for w in workers {
        w.wait()?;
    }

    let mut r = Report::new("idle");
    r.add_key("proto", c.proto.name());
    r.add("n", "clients held", o.n, "");
    r.add("rooms", "rooms", o.rooms, "");
    r.add(
        "at_prompt",
        "silent at the nickname prompt",
        o.at_prompt,
        "",
    );
    let reach = if o.at_prompt {
        "reach the prompt"
    } else {
        "log all in"
    };
    r.add(
        "login_ms",
        &format!("time to {reach}"),
        ms(login_time),
        "ms",
    );
    let rate = format!("{:.0}", o.n as f64 / login_time.as_secs_f64());
    r.add(
        "logins_per_s",
        &format!("clients per second ({reach})"),
        rate,
        "",
    );
    if !procs.is_empty() {
        let clients = clients_per_node(o.n, c.addrs.len());
        add_memory(&mut r, &mem_before, &mem_after, &clients);
    }
    let secs = format!("{:.1}", window.as_secs_f64());
    r.add("idle_secs", "idle window", secs, "s");
    r.add("idle_rx_bytes", "bytes received while idle", rx_idle, "B");
    if !procs.is_empty() {
        let cpu: Vec<_> = cpu0.iter().zip(&cpu1).map(|(&a, &b)| used(a, b)).collect();
        let unit = format!("ticks (1/{} s)", clock_ticks_per_sec());
        add_cpu(&mut r, "server CPU in idle window", &cpu, Some(&unit));
    }
    r.add("probe_login_ms", "fresh clients: login", ms(pr.login), "ms");
    let msg = ms(pr.message);
    r.add("probe_msg_ms", "fresh client: message delivered", msg, "ms");
    r.add("probe", "fresh client can chat", "ok", "");
    Ok(r)
}

fn target(c: &Common) -> Target {
    Target {
        addrs: c.addrs.clone(),
        sources: c.sources,
        dialect: c.proto,
    }
}

/// Brings the N clients to their goal, in this process when N (+2 probe clients) fits, else
/// in worker processes, and waits for quiet. Returns the workers (to be told `quit`) and the
/// first free client index of this process (for the probe's nicknames).
fn hold_clients(
    c: &Common,
    o: &Idle,
    deadline: &Deadline,
    pool: &mut Pool,
    room_tag: &str,
) -> Result<(Vec<WorkerProc>, usize)> {
    let quiet = Duration::from_millis(c.quiet_ms);
    let cap = client_capacity();
    let what = if o.at_prompt {
        "connecting"
    } else {
        "logging in"
    };
    if o.n + 2 <= cap {
        let specs = specs(c.proto, 0, 0, o.n, o.rooms, room_tag, o.at_prompt);
        eprintln!("natter-load: {what} {} clients", o.n);
        login_all(pool, deadline, &specs, o.concurrency)?;
        eprintln!("natter-load: all ready; waiting for quiet");
        wait_quiet(pool, deadline, quiet)?;
        return Ok((Vec::new(), o.n));
    }
    let per = cap.clamp(1, 19_000);
    let count = o.n.div_ceil(per);
    eprintln!(
        "natter-load: {} clients exceed one process's {cap}; using {count} worker processes",
        o.n
    );
    let mut workers = Vec::new();
    for w in 0..count {
        let first = w * per;
        let job = Worker {
            worker: w + 1,
            first,
            count: per.min(o.n - first),
            rooms: o.rooms,
            room_tag: room_tag.to_owned(),
            concurrency: (o.concurrency / count).max(1),
            at_prompt: o.at_prompt,
        };
        workers.push(WorkerProc::spawn(c, deadline, &job)?);
    }
    for w in &mut workers {
        w.expect("ready")?;
    }
    eprintln!("natter-load: all workers ready; waiting for quiet");
    for w in &mut workers {
        w.say("settle")?;
    }
    for w in &mut workers {
        w.expect("quiet")?;
    }
    Ok((workers, 0))
}

/// Specs for `count` clients of worker `worker`, global indices from `first`: client `g`
/// connects to node `g % nodes` and, with several rooms, joins room `g % rooms` (over IRC it
/// always joins a channel: IRC has no default room).
fn specs(
    dialect: Dialect,
    worker: usize,
    first: usize,
    count: usize,
    rooms: usize,
    tag: &str,
    at_prompt: bool,
) -> Vec<Spec> {
    (first..first + count)
        .enumerate()
        .map(|(i, g)| Spec {
            nick: nick(worker, i),
            goal: if at_prompt {
                Goal::Prompt
            } else {
                Goal::join(
                    (rooms > 1 || dialect == Dialect::Irc).then(|| format!("{tag}r{}", g % rooms)),
                )
            },
            node: g,
        })
        .collect()
}

/// Entry point of the hidden worker subcommand.
pub fn run_worker(c: &Common, o: &Worker) -> Result<()> {
    let deadline = Deadline::in_secs(c.timeout_secs);
    let mut pool = Pool::new(target(c))?;
    let specs = specs(
        c.proto,
        o.worker,
        o.first,
        o.count,
        o.rooms,
        &o.room_tag,
        o.at_prompt,
    );

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
        let addrs: Vec<String> = c.addrs.iter().map(|a| a.to_string()).collect();
        let mut cmd = Command::new(exe);
        cmd.arg(WORKER_CMD)
            .args(["--addr", &addrs.join(",")])
            .args(["--proto", c.proto.name()])
            .args(["--timeout", &deadline.remaining_secs().max(1).to_string()])
            .args(["--sources", &c.sources.to_string()])
            .args(["--quiet-ms", &c.quiet_ms.to_string()])
            .args(["--worker", &index.to_string()])
            .args(["--first", &job.first.to_string()])
            .args(["--count", &job.count.to_string()])
            .args(["--rooms", &job.rooms.to_string()])
            .args(["--room-tag", &job.room_tag])
            .args(["--concurrency", &job.concurrency.to_string()])
            .args(job.at_prompt.then_some("--at-prompt"))
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
