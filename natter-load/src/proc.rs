//! Reading the server's figures from /proc: memory (VmRSS, RssAnon), CPU time (utime+stime in
//! clock ticks, and the precise run time in ns from schedstat), the number of open fds, and
//! what identifies a process across an upgrade (program file, arguments, start time, state).
//!
//! The parsers take the files' text so they are unit-tested on sample text.

use crate::error::{IoContext, Result};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Memory figures from /proc/PID/status, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// Resident set size (`VmRSS`).
    pub rss_kb: u64,
    /// Anonymous resident memory (`RssAnon`): the heap, what a connection really costs.
    pub anon_kb: u64,
}

/// CPU time consumed by the process so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cpu {
    /// utime + stime from /proc/PID/stat, in clock ticks.
    pub ticks: u64,
    /// First field of /proc/PID/schedstat: time spent on the CPU, in ns.
    pub ns: u64,
}

/// Parses the `VmRSS` and `RssAnon` lines of /proc/PID/status.
pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss_kb: field("VmRSS:")?,
        anon_kb: field("RssAnon:")?,
    })
}

/// Parses utime + stime (fields 14 and 15) from /proc/PID/stat.
///
/// The command name (field 2) may contain spaces and parentheses, so fields are counted
/// after its last `)`.
pub fn parse_stat_ticks(text: &str) -> Option<u64> {
    let after = &text[text.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let mut it = after.split_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Fields of /proc/PID/stat that tell processes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatIds {
    /// State letter (field 3): `Z` for a zombie, `X` when dead.
    pub state: char,
    /// Parent's pid (field 4).
    pub ppid: u32,
    /// Start time in clock ticks since boot (field 22).
    pub start: u64,
}

/// Parses state, parent and start time from /proc/PID/stat.
pub fn parse_stat_ids(text: &str) -> Option<StatIds> {
    let after = &text[text.rfind(')')? + 1..];
    let mut it = after.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    let start = it.nth(17)?.parse().ok()?;
    Some(StatIds { state, ppid, start })
}

/// Parses the first field of /proc/PID/schedstat (ns on the CPU).
pub fn parse_schedstat_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Finds AT_CLKTCK (type 17) in the bytes of /proc/self/auxv (pairs of native-endian u64).
pub fn parse_auxv_clktck(bytes: &[u8]) -> Option<u64> {
    const AT_CLKTCK: u64 = 17;
    let word = |c: &[u8]| c.try_into().ok().map(u64::from_ne_bytes);
    bytes
        .chunks_exact(16)
        .find_map(|pair| match (word(&pair[..8])?, word(&pair[8..])?) {
            (AT_CLKTCK, v) if v > 0 => Some(v),
            _ => None,
        })
}

/// Clock ticks per second (what /proc/PID/stat counts in); 100 if auxv cannot be read.
pub fn clock_ticks_per_sec() -> u64 {
    fs::read("/proc/self/auxv")
        .ok()
        .and_then(|b| parse_auxv_clktck(&b))
        .unwrap_or(100)
}

/// A process whose figures we read.
#[derive(Debug, Clone, Copy)]
pub struct Proc {
    pid: u32,
}

impl Proc {
    /// Checks that /proc/PID exists and returns a handle to it.
    pub fn new(pid: u32) -> Result<Proc> {
        fs::metadata(format!("/proc/{pid}/status"))
            .ctx(|| format!("--pid {pid}: cannot read /proc/{pid}/status"))?;
        Ok(Proc { pid })
    }

    /// Current memory figures.
    pub fn memory(&self) -> Result<Memory> {
        let path = format!("/proc/{}/status", self.pid);
        let text = fs::read_to_string(&path).ctx(|| format!("reading {path}"))?;
        parse_status(&text).ok_or_else(|| bad_format(&path))
    }

    /// CPU time used so far.
    pub fn cpu(&self) -> Result<Cpu> {
        let path = format!("/proc/{}/stat", self.pid);
        let text = fs::read_to_string(&path).ctx(|| format!("reading {path}"))?;
        let ticks = parse_stat_ticks(&text).ok_or_else(|| bad_format(&path))?;
        let path = format!("/proc/{}/schedstat", self.pid);
        let text = fs::read_to_string(&path).ctx(|| format!("reading {path}"))?;
        let ns = parse_schedstat_ns(&text).ok_or_else(|| bad_format(&path))?;
        Ok(Cpu { ticks, ns })
    }

    /// Polls the fd count until it has not changed for `stable` or `max` has passed, and
    /// returns it: a previous run's sockets may still be closing.
    pub fn settled_fds(&self, stable: Duration, max: Duration) -> Result<u64> {
        let until = Instant::now() + max;
        let mut fds = self.open_fds()?;
        let mut since = Instant::now();
        while since.elapsed() < stable && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.open_fds()?;
            if now != fds {
                fds = now;
                since = Instant::now();
            }
        }
        Ok(fds)
    }

    /// Number of entries in /proc/PID/fd (needs the same user or root).
    pub fn open_fds(&self) -> Result<u64> {
        let path = format!("/proc/{}/fd", self.pid);
        let dir = fs::read_dir(&path).ctx(|| format!("listing {path}"))?;
        let mut n = 0;
        for entry in dir {
            entry.ctx(|| format!("listing {path}"))?;
            n += 1;
        }
        Ok(n)
    }
}

/// What tells one server process from another with the same program: used to find the process
/// that replaced it in an upgrade (a fresh start of the same program file, same arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The program file, without the ` (deleted)` the kernel appends once it was replaced.
    pub exe: PathBuf,
    /// The arguments, NUL-separated as in /proc/PID/cmdline.
    pub cmdline: Vec<u8>,
    /// Start time in clock ticks since boot.
    pub start: u64,
}

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Program file, arguments and start time; `None` once the process is gone (or a zombie,
    /// which has no program file any more), and for a moment during its exec (the kernel shows
    /// the new program file before the new arguments).
    pub fn identity(&self) -> Option<Identity> {
        let exe = fs::read_link(format!("/proc/{}/exe", self.pid)).ok()?;
        let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(s) => PathBuf::from(s),
            None => exe,
        };
        let cmdline = fs::read(format!("/proc/{}/cmdline", self.pid)).ok()?;
        if cmdline.is_empty() {
            return None;
        }
        Some(Identity {
            exe,
            cmdline,
            start: self.stat_ids()?.start,
        })
    }

    fn stat_ids(&self) -> Option<StatIds> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        parse_stat_ids(&stat)
    }

    /// The parent's pid, while the process exists.
    pub fn ppid(&self) -> Option<u32> {
        Some(self.stat_ids()?.ppid)
    }

    /// True while the process exists and has not exited (a zombie has exited).
    pub fn is_running(&self) -> bool {
        self.stat_ids()
            .is_some_and(|ids| !matches!(ids.state, 'Z' | 'X' | 'x'))
    }

    /// The process's children, of all its threads (from /proc/PID/task/TID/children; empty
    /// if unreadable).
    pub fn children(&self) -> Vec<u32> {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return Vec::new();
        };
        let mut kids = Vec::new();
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("children")) {
                kids.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        kids
    }
}

/// Running processes with the same program file and arguments as `like`, started no earlier,
/// other than those in `known`, in pid order: the candidates for the process that replaced
/// it. (A candidate's own fork, before its exec, is one too.)
pub fn same_program(like: &Identity, known: &[u32]) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !known.contains(pid))
        .filter(|&pid| {
            let p = Proc { pid };
            p.identity().is_some_and(|id| {
                id.exe == like.exe && id.cmdline == like.cmdline && id.start >= like.start
            }) && p.is_running()
        })
        .collect::<std::collections::BTreeSet<u32>>()
        .into_iter()
        .collect()
}

fn bad_format(path: &str) -> crate::error::Error {
    crate::error::Error::Protocol(format!("{path} has an unexpected format"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sample() {
        let text = "Name:\tnatter\nVmPeak:\t  10000 kB\nVmRSS:\t    1924 kB\nRssAnon:\t     156 kB\nRssFile:\t 1768 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss_kb: 1924,
                anon_kb: 156
            })
        );
        assert_eq!(parse_status("VmRSS:\t1 kB\n"), None);
    }

    #[test]
    fn stat_sample_with_odd_comm() {
        let text =
            "4970 (cat) R 4967 4967 4411 0 -1 4194304 98 0 0 0 7 5 0 0 20 0 1 0 52002 3133440 382";
        assert_eq!(parse_stat_ticks(text), Some(12));
        let odd = "4970 (we ird) x) S 4967 4967 4411 0 -1 4194304 98 0 0 0 70 30 0 0 20 0 1 0";
        assert_eq!(parse_stat_ticks(odd), Some(100));
        assert_eq!(parse_stat_ticks("1 (x) S 2 3"), None);
    }

    #[test]
    fn stat_state_parent_and_start() {
        let text = "4970 (we ird) x) S 4967 4967 4411 0 -1 4194304 98 0 0 0 70 30 0 0 20 0 1 0 52002 3133440 382";
        let ids = StatIds {
            state: 'S',
            ppid: 4967,
            start: 52002,
        };
        assert_eq!(parse_stat_ids(text), Some(ids));
        assert_eq!(parse_stat_ids("1 (x) Z 2 3"), None);
    }

    /// A `sleep` child, killed and reaped when dropped (also when a test fails).
    struct Sleeper(std::process::Child);

    impl Sleeper {
        fn start(arg: &str) -> (Sleeper, Proc, Identity) {
            let child = std::process::Command::new("sleep")
                .arg(arg)
                .spawn()
                .unwrap();
            let p = Proc::new(child.id()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let id = loop {
                if let Some(id) = p.identity() {
                    break id;
                }
                assert!(
                    Instant::now() < deadline,
                    "sleep never showed its arguments"
                );
                std::thread::yield_now();
            };
            (Sleeper(child), p, id)
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn finds_a_later_process_of_the_same_program() {
        // Two `sleep`s with the same unique argument: the second is the first's "successor".
        let arg = format!("1000.{}", std::process::id());
        let (mut a, pa, id_a) = Sleeper::start(&arg);
        assert!(pa.is_running());
        assert!(same_program(&id_a, &[pa.pid()]).is_empty());
        let (_b, pb, _) = Sleeper::start(&arg);
        assert_eq!(same_program(&id_a, &[pa.pid()]), vec![pb.pid()]);
        assert_eq!(pb.ppid(), Some(std::process::id()));
        let kids = Proc::new(std::process::id()).unwrap().children();
        assert!(
            kids.contains(&pa.pid()) && kids.contains(&pb.pid()),
            "{kids:?}"
        );
        // Killed but not yet reaped: a zombie has exited.
        a.0.kill().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pa.is_running() {
            assert!(Instant::now() < deadline, "sleep did not die");
            std::thread::yield_now();
        }
        drop(a);
        assert!(pa.identity().is_none());
    }

    #[test]
    fn schedstat_sample() {
        assert_eq!(parse_schedstat_ns("340136 0 3\n"), Some(340136));
        assert_eq!(parse_schedstat_ns(""), None);
    }

    #[test]
    fn auxv_sample() {
        let mut b = Vec::new();
        for (k, v) in [(6u64, 4096u64), (17, 100), (0, 0)] {
            b.extend_from_slice(&k.to_ne_bytes());
            b.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(parse_auxv_clktck(&b), Some(100));
        assert_eq!(parse_auxv_clktck(&b[..16]), None);
    }

    #[test]
    fn reads_own_process() {
        let me = Proc::new(std::process::id()).unwrap();
        assert!(me.memory().unwrap().rss_kb > 0);
        assert!(me.open_fds().unwrap() >= 3);
        me.cpu().unwrap();
    }
}
