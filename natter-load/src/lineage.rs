//! One server across upgrades: which process serves now, and the CPU time of every
//! generation, summed.
//!
//! On SIGUSR2 natter starts its own program file again with the same arguments; the new
//! process is a child of the old one, which exits once the new one has taken over (so it may
//! briefly be a zombie, or be gone). [`Lineage::follow`] adopts the old process's children
//! that run the same program while it lives (so their CPU counts from birth), and once it has
//! exited makes its successor current: an adopted child that still runs, else a process found
//! in /proc with the same program file and arguments that started later.
//!
//! CPU is read from every generation that still runs each time [`Lineage::sample`] is called,
//! and the last reading of an exited one is kept: what an old process spends between our
//! last reading and its exit is not counted, so call `sample` often while an upgrade runs.

use crate::error::{Error, Result};
use crate::proc::{Cpu, Identity, Proc, same_program};

/// The processes one server has been, oldest first.
#[derive(Debug)]
pub struct Lineage {
    like: Identity,
    gens: Vec<Gen>,
    current: usize,
}

#[derive(Debug)]
struct Gen {
    proc: Proc,
    base: Cpu,
    last: Cpu,
    running: bool,
}

impl Lineage {
    /// Starts following `pid`; its CPU counts from now.
    pub fn new(pid: u32) -> Result<Lineage> {
        let proc = Proc::new(pid)?;
        let like = proc.identity().ok_or_else(|| {
            Error::Protocol(format!(
                "--pid {pid}: cannot read /proc/{pid}/exe and cmdline (not running, or not ours)"
            ))
        })?;
        let base = proc.cpu()?;
        Ok(Lineage {
            like,
            gens: vec![Gen {
                proc,
                base,
                last: base,
                running: true,
            }],
            current: 0,
        })
    }

    /// The process that serves now.
    pub fn current(&self) -> Proc {
        self.gens[self.current].proc
    }

    /// How many processes this server has been (1 before any upgrade).
    pub fn generations(&self) -> usize {
        self.gens.len()
    }

    /// Reads the CPU time of every generation that still runs.
    pub fn sample(&mut self) {
        for g in self.gens.iter_mut().filter(|g| g.running) {
            // A zombie still has its counters; once reaped the read fails and the last stays.
            if let Ok(cpu) = g.proc.cpu() {
                g.last = cpu;
            }
            g.running = g.proc.is_running();
        }
    }

    /// CPU used by all generations since they were first seen (the first: since `new`).
    pub fn cpu(&self) -> Cpu {
        self.gens.iter().fold(Cpu::default(), |sum, g| Cpu {
            ticks: sum.ticks + g.last.ticks.saturating_sub(g.base.ticks),
            ns: sum.ns + g.last.ns.saturating_sub(g.base.ns),
        })
    }

    /// Samples, adopts new children of the current process, and returns true once the current
    /// process has exited and its successor has become current.
    pub fn follow(&mut self) -> bool {
        self.sample();
        let cur = self.current();
        if self.gens[self.current].running {
            for kid in cur.children() {
                self.adopt_if_same_program(kid);
            }
            return false;
        }
        let successor = (0..self.gens.len())
            .find(|&i| i != self.current && self.gens[i].running)
            .or_else(|| {
                let known: Vec<u32> = self.gens.iter().map(|g| g.proc.pid()).collect();
                let found = same_program(&self.like, &known);
                found
                    .first()
                    .and_then(|&pid| self.adopt_if_same_program(pid))
            });
        let Some(next) = successor else {
            return false;
        };
        self.current = next;
        if let Some(id) = self.gens[next].proc.identity() {
            self.like = id;
        }
        true
    }

    /// Adds `pid` as a generation (CPU counted from its birth) if it runs our program; returns
    /// its index.
    fn adopt_if_same_program(&mut self, pid: u32) -> Option<usize> {
        if let Some(i) = self.gens.iter().position(|g| g.proc.pid() == pid) {
            return Some(i);
        }
        let proc = Proc::new(pid).ok()?;
        if proc.identity()?.exe != self.like.exe {
            return None;
        }
        let last = proc.cpu().unwrap_or_default();
        self.gens.push(Gen {
            proc,
            base: Cpu::default(),
            last,
            running: proc.is_running(),
        });
        Some(self.gens.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A shell that, on SIGUSR2, starts itself again (same program, same arguments) and exits:
    /// the shape of natter's upgrade, without the hand-over.
    const RESPAWN: &str = r#"
trap 'kill "$s"; bash "$0" "$@" & exit 0' USR2
trap 'kill "$s"; exit 0' TERM
echo "ready $$"
sleep 600 & s=$!
wait "$s"
"#;

    #[test]
    fn follows_a_process_that_replaces_itself() {
        let dir = std::env::temp_dir().join(format!("nl-lineage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("respawn.sh");
        std::fs::write(&script, RESPAWN).unwrap();
        let mut child = Command::new("bash")
            .arg(&script)
            .arg("tag")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let ready = |out: &mut std::io::BufReader<_>| -> u32 {
            let mut line = String::new();
            std::io::BufRead::read_line(out, &mut line).unwrap();
            line.trim().strip_prefix("ready ").unwrap().parse().unwrap()
        };
        let first = ready(&mut out);
        assert_eq!(first, child.id());
        let mut lin = Lineage::new(first).unwrap();
        assert!(!lin.follow(), "nothing happened yet");
        let mut pids = vec![first];
        for _ in 0..2 {
            let old = lin.current().pid();
            let usr2 = rustix::process::Signal::USR2;
            rustix::process::kill_process(
                rustix::process::Pid::from_raw(old as i32).unwrap(),
                usr2,
            )
            .unwrap();
            let new = ready(&mut out);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !lin.follow() {
                assert!(Instant::now() < deadline, "successor of {old} not found");
                std::thread::yield_now();
            }
            assert_eq!(lin.current().pid(), new);
            pids.push(new);
        }
        assert_eq!(lin.generations(), 3);
        let last = lin.current().pid();
        let term = rustix::process::Signal::TERM;
        rustix::process::kill_process(rustix::process::Pid::from_raw(last as i32).unwrap(), term)
            .unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(lin.cpu().ns > 0);
    }
}
