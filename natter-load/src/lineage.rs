//! One server across upgrades: which process serves now, and the CPU time of every
//! generation, summed.
//!
//! On SIGUSR2 natter starts its own program file again with the same arguments; the new
//! process is a child of the old one, which exits once the new one has taken over (so it may
//! briefly be a zombie, or be gone). [`Lineage::follow`] adopts the old process's children
//! that run the same program while it lives (so their CPU counts from birth), and once it has
//! exited makes its successor current: the process found in /proc with the same program file
//! and arguments that started later (and is not a fork of another such process).
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
    /// Every process of our program seen: those that served, and children that did not
    /// (a failed upgrade's, or one forked for something else that died before its exec).
    gens: Vec<Gen>,
    current: usize,
    switches: usize,
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
            switches: 0,
        })
    }

    /// Counts CPU from now on (before any upgrade).
    pub fn count_from_now(&mut self) -> Result<()> {
        let g = &mut self.gens[self.current];
        g.base = g.proc.cpu()?;
        g.last = g.base;
        Ok(())
    }

    /// The process that serves now.
    pub fn current(&self) -> Proc {
        self.gens[self.current].proc
    }

    /// How many processes have served (1 before any upgrade).
    pub fn generations(&self) -> usize {
        self.switches + 1
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
        self.forget_other_programs();
        let cur = self.current();
        if self.gens[self.current].running {
            for kid in cur.children() {
                self.adopt_if_same_program(kid);
            }
            return false;
        }
        let successor = self.successor();
        let Some(next) = successor else {
            return false;
        };
        self.current = next;
        self.switches += 1;
        if let Some(id) = self.gens[next].proc.identity() {
            self.like = id;
        }
        true
    }

    /// The running process of our program that replaced the exited current one, adopted. Its
    /// own fork (before that fork's exec) looks the same, so it is the candidate whose parent
    /// is not a candidate.
    fn successor(&mut self) -> Option<usize> {
        let cur = self.current().pid();
        let candidates = same_program(&self.like, &[cur]);
        let pick = candidates.iter().copied().find(|&pid| {
            Proc::new(pid)
                .ok()
                .and_then(|p| p.ppid())
                .is_some_and(|pp| !candidates.contains(&pp))
        })?;
        self.adopt_if_same_program(pick)
    }

    /// Drops adopted children that turned into another program (a child forked for something
    /// else runs our program only until its exec).
    fn forget_other_programs(&mut self) {
        let current = self.gens[self.current].proc.pid();
        let like = &self.like;
        self.gens.retain(|g| {
            g.proc.pid() == current
                || !g.running
                || g.proc
                    .identity()
                    .is_none_or(|id| id.exe == like.exe && id.cmdline == like.cmdline)
        });
        self.current = self
            .gens
            .iter()
            .position(|g| g.proc.pid() == current)
            .unwrap_or(0);
    }

    /// Adds `pid` as a generation (CPU counted from its birth) if it runs our program; returns
    /// its index.
    fn adopt_if_same_program(&mut self, pid: u32) -> Option<usize> {
        if let Some(i) = self.gens.iter().position(|g| g.proc.pid() == pid) {
            return Some(i);
        }
        let proc = Proc::new(pid).ok()?;
        let id = proc.identity()?;
        if id.exe != self.like.exe || id.cmdline != self.like.cmdline {
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
    use crate::testkit::Respawner;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    #[test]
    fn follows_a_process_that_replaces_itself() {
        let (tx, rx) = mpsc::channel();
        let shell = Respawner::start("lineage", move |pid| {
            let _ = tx.send(pid);
        });
        let mut lin = Lineage::new(shell.pid()).unwrap();
        assert!(!lin.follow(), "nothing happened yet");
        for _ in 0..2 {
            let old = lin.current().pid();
            let pid = rustix::process::Pid::from_raw(old as i32).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::USR2).unwrap();
            let new = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !lin.follow() {
                assert!(Instant::now() < deadline, "successor of {old} not found");
                std::thread::yield_now();
            }
            assert_eq!(lin.current().pid(), new);
        }
        assert_eq!(
            lin.generations(),
            3,
            "the shells' `sleep` children are not generations"
        );
        assert_eq!(shell.pids().len(), 3);
        assert!(lin.cpu().ns > 0);
    }
}
