//! Command-line parsing (by hand, from `std::env::args`) and the `--help` text.

use crate::error::{Error, Result};
use std::net::{SocketAddr, ToSocketAddrs};

/// The `--help` text: every scenario and flag.
pub const HELP: &str = "\
natter-load: load generator for the natter chat server (and any server speaking its line protocol)

USAGE:
    natter-load SCENARIO [FLAGS]
    natter-load --help

Start the server for benchmarks with rate limiting and the per-address cap off, e.g.
    natter --listen 127.0.0.1:7001 --rate 0 --max-per-ip 0
otherwise the default flood control (5 lines/s) throttles the senders and logins.

SCENARIOS:
    idle -n N [--rooms K] [--idle-secs S] [--concurrency C]
        Log N users in (spread over K fresh rooms with /join; K=1 keeps them in the default
        room), wait until quiet, hold them. With --pid: the server's VmRSS and RssAnon before
        and after, per connection ((after-before)/N), and its CPU time over an idle window of
        S seconds (default 10): utime+stime in clock ticks and ns from schedstat. Then a fresh
        client logs in and chats, and another fresh client must receive the message.
        N above what one process may open (RLIMIT_NOFILE, 20000 here, minus a reserve) is
        split over worker processes (natter-load re-executes itself).
        --concurrency C   logins in progress at once, over all workers (default 64; keep it
                          below the server's listen backlog, see LIMITS)
        Memory figures are only meaningful on a freshly started server: memory freed by an
        earlier run is usually kept by the server's allocator.

    fanout [-r R] [-s S] [-m M] [--room NAME] [--rate PER_SEC] [--window W]
        R receivers (default 100) and S senders (default 4) join one room; each sender sends M
        messages (default 100) as fast as the server accepts them. Each message carries the
        sender index, a sequence number and a send timestamp. Reports deliveries/s, latency
        p50/p99/max, lost and out-of-order deliveries (any is a failure: exit 1), and with
        --pid the server's CPU ns per delivery.
        --room NAME    room to use (default: a fresh name; `default` = stay in the default room)
        --rate N       messages per second per sender (default 0 = as fast as possible)
        --window W     at most W messages per sender not yet received by every receiver
                       (default 64), so the server's per-client send queue is never blown
        R + S must fit in one process (see limits).

    churn -n N [--concurrency C] [--rss-slack KIB] [--settle-secs S]
        Connect, log in, chat, /quit; N times, C at once (default 50). With --pid: the
        server's RSS and open fds (/proc/PID/fd) before and after. The fd count must return
        to baseline (waits up to S seconds, default 5) and RSS may grow by at most KIB
        (default 4096): otherwise exit 1.

COMMON FLAGS:
    --addr HOST:PORT  server address, loopback only (default 127.0.0.1:6677)
    --pid PID         the server's process id, for the /proc figures (same user or root)
    --timeout SECS    bound on the whole run (default 120); when it runs out natter-load
                      prints what it was waiting for and exits 1 instead of hanging
    --sources K       bind client sockets to source addresses 127.0.0.1 ..= 127.0.0.K
                      round-robin (1..8; default: let the kernel choose), so repeated runs
                      do not exhaust the ~28000 ephemeral ports of one address
    --quiet-ms MS     \"quiet\" means no byte received for MS ms (default 500)
    --help            this text

OUTPUT:
    A human table, then one line `natter-load-result scenario=NAME key=value ...`.
    Exit 0 on success, 1 on a failed check, timeout or error, 2 on a usage error.

LIMITS:
    Nicknames are l{worker}x{index} (the server must not have them taken). natter-load raises
    its soft RLIMIT_NOFILE to the hard limit; one process holds at most that minus 64 clients,
    so idle splits bigger N over workers; fanout and churn fail with a clear message instead.
    The server itself needs one fd per client: with a 20000 limit it holds about 19990.
    Logins in progress are bounded (--concurrency) because a burst of connects beyond the
    server's listen backlog overflows its accept queue; with SYN cookies on, some clients then
    believe they are connected but never receive anything, and the run times out saying
    so. churn --concurrency should also stay below the backlog.
";

/// Flags every scenario takes.
#[derive(Debug, Clone)]
pub struct Common {
    /// Server address.
    pub addr: SocketAddr,
    /// Server pid for /proc figures.
    pub pid: Option<u32>,
    /// Whole-run bound in seconds.
    pub timeout_secs: u64,
    /// Source addresses to bind (0 = none).
    pub sources: u8,
    /// Silence that counts as quiet, in ms.
    pub quiet_ms: u64,
}

/// `idle` flags.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Clients to hold.
    pub n: usize,
    /// Rooms to spread them over.
    pub rooms: usize,
    /// Length of the CPU window in seconds.
    pub idle_secs: u64,
    /// Logins in progress at once.
    pub concurrency: usize,
}

/// `fanout` flags.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// Receivers.
    pub receivers: usize,
    /// Senders.
    pub senders: usize,
    /// Messages per sender.
    pub messages: u32,
    /// Room to join (`None` = default room).
    pub room: Option<String>,
    /// Messages per second per sender (0 = unlimited).
    pub rate: f64,
    /// Messages per sender in flight.
    pub window: u32,
}

/// `churn` flags.
#[derive(Debug, Clone)]
pub struct Churn {
    /// Connect-login-chat-quit cycles.
    pub n: usize,
    /// Cycles in progress at once.
    pub concurrency: usize,
    /// Allowed RSS growth in KiB.
    pub rss_slack_kb: u64,
    /// How long to wait for the fd count to return to baseline.
    pub settle_secs: u64,
}

/// The hidden worker subcommand used by `idle` to split clients over processes.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Worker number (1-based; the parent is 0), used in nicknames.
    pub worker: usize,
    /// Global index of this worker's first client (spreads rooms evenly).
    pub first: usize,
    /// Clients this worker holds.
    pub count: usize,
    /// Rooms, as in `idle`.
    pub rooms: usize,
    /// Tag of the fresh room names.
    pub room_tag: String,
    /// Logins in progress at once.
    pub concurrency: usize,
}

/// What to run.
#[derive(Debug, Clone)]
pub enum Command {
    /// Print [`HELP`].
    Help,
    /// The idle scenario.
    Idle(Common, Idle),
    /// The fanout scenario.
    Fanout(Common, Fanout),
    /// The churn scenario.
    Churn(Common, Churn),
    /// A worker process of `idle`.
    Worker(Common, Worker),
}

/// Name of the hidden worker subcommand.
pub const WORKER_CMD: &str = "__idle-worker";

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command> {
    let Some((scenario, rest)) = args.split_first() else {
        return Err(usage("no scenario given"));
    };
    if scenario == "--help" || scenario == "-h" || scenario == "help" {
        return Ok(Command::Help);
    }
    let mut flags = Flags::split(rest)?;
    if flags.take_switch("--help") || flags.take_switch("-h") {
        return Ok(Command::Help);
    }
    let common = Common {
        addr: flags.addr()?,
        pid: flags.num("--pid")?,
        timeout_secs: flags.num("--timeout")?.unwrap_or(120),
        sources: flags.num("--sources")?.unwrap_or(0),
        quiet_ms: flags.num("--quiet-ms")?.unwrap_or(500),
    };
    if common.sources > 8 {
        return Err(usage("--sources must be 0..=8"));
    }
    if common.sources > 0 && !common.addr.is_ipv4() {
        return Err(usage("--sources needs an IPv4 server address (127.0.0.x)"));
    }
    if common.timeout_secs == 0 {
        return Err(usage("--timeout must be at least 1"));
    }
    let cmd = match scenario.as_str() {
        "idle" => Command::Idle(
            common,
            Idle {
                n: flags.required("-n")?,
                rooms: flags.num("--rooms")?.unwrap_or(1),
                idle_secs: flags.num("--idle-secs")?.unwrap_or(10),
                concurrency: flags
                    .num("--concurrency")?
                    .unwrap_or(crate::scenarios::LOGIN_CONCURRENCY),
            },
        ),
        "fanout" => Command::Fanout(
            common,
            Fanout {
                receivers: flags.num("-r")?.unwrap_or(100),
                senders: flags.num("-s")?.unwrap_or(4),
                messages: flags.num("-m")?.unwrap_or(100),
                room: match flags.take("--room") {
                    Some(r) if r == "default" => None,
                    Some(r) => Some(r),
                    None => Some(format!("nl{}", std::process::id())),
                },
                rate: flags.num("--rate")?.unwrap_or(0.0),
                window: flags.num("--window")?.unwrap_or(64),
            },
        ),
        "churn" => Command::Churn(
            common,
            Churn {
                n: flags.required("-n")?,
                concurrency: flags.num("--concurrency")?.unwrap_or(50),
                rss_slack_kb: flags.num("--rss-slack")?.unwrap_or(4096),
                settle_secs: flags.num("--settle-secs")?.unwrap_or(5),
            },
        ),
        WORKER_CMD => Command::Worker(
            common,
            Worker {
                worker: flags.required("--worker")?,
                first: flags.num("--first")?.unwrap_or(0),
                count: flags.required("--count")?,
                rooms: flags.num("--rooms")?.unwrap_or(1),
                room_tag: flags.take("--room-tag").unwrap_or_default(),
                concurrency: flags.num("--concurrency")?.unwrap_or(500),
            },
        ),
        other => return Err(usage(&format!("unknown scenario {other:?}"))),
    };
    flags.finish()?;
    validate(&cmd)?;
    Ok(cmd)
}

fn validate(cmd: &Command) -> Result<()> {
    match cmd {
        Command::Idle(_, i) => {
            positive(i.n, "-n")?;
            positive(i.rooms, "--rooms")?;
            positive(i.concurrency, "--concurrency")
        }
        Command::Fanout(_, f) => {
            positive(f.receivers, "-r")?;
            positive(f.senders, "-s")?;
            positive(f.messages as usize, "-m")?;
            positive(f.window as usize, "--window")?;
            if let Some(room) = &f.room {
                let name = room.strip_prefix('#').unwrap_or(room);
                let ok = (1..=32).contains(&name.len())
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
                if !ok {
                    return Err(usage("--room: 1 to 32 letters, digits, _, - or ."));
                }
            }
            if !(f.rate >= 0.0 && f.rate.is_finite()) {
                return Err(usage("--rate must be a number >= 0"));
            }
            Ok(())
        }
        Command::Churn(_, c) => {
            positive(c.n, "-n")?;
            positive(c.concurrency, "--concurrency")
        }
        Command::Worker(..) | Command::Help => Ok(()),
    }
}

fn positive(v: usize, name: &str) -> Result<()> {
    if v == 0 {
        Err(usage(&format!("{name} must be at least 1")))
    } else {
        Ok(())
    }
}

fn usage(msg: &str) -> Error {
    Error::Usage(msg.to_owned())
}

/// `--flag value` / `--flag=value` pairs, consumed as they are looked up.
struct Flags {
    pairs: Vec<(String, Option<String>)>,
}

impl Flags {
    fn split(args: &[String]) -> Result<Flags> {
        let mut pairs = Vec::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            if !a.starts_with('-') {
                return Err(usage(&format!("unexpected argument {a:?}")));
            }
            if let Some((k, v)) = a.split_once('=') {
                pairs.push((k.to_owned(), Some(v.to_owned())));
            } else if a == "--help" || a == "-h" {
                pairs.push((a.clone(), None));
            } else {
                let v = it
                    .next()
                    .ok_or_else(|| usage(&format!("{a} needs a value")))?;
                pairs.push((a.clone(), Some(v.clone())));
            }
        }
        Ok(Flags { pairs })
    }

    fn take_switch(&mut self, name: &str) -> bool {
        let before = self.pairs.len();
        self.pairs.retain(|(k, _)| k != name);
        self.pairs.len() != before
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let mut found = None;
        self.pairs.retain(|(k, v)| {
            if k == name {
                found = v.clone();
                false
            } else {
                true
            }
        });
        found
    }

    fn num<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| usage(&format!("{name}: {v:?} is not a valid number"))),
        }
    }

    fn required<T: std::str::FromStr>(&mut self, name: &str) -> Result<T> {
        self.num(name)?
            .ok_or_else(|| usage(&format!("{name} is required")))
    }

    fn addr(&mut self) -> Result<SocketAddr> {
        let text = self
            .take("--addr")
            .unwrap_or_else(|| "127.0.0.1:6677".into());
        let addr = text
            .to_socket_addrs()
            .map_err(|e| usage(&format!("--addr {text}: {e}")))?
            .next()
            .ok_or_else(|| usage(&format!("--addr {text}: no address")))?;
        if !addr.ip().is_loopback() {
            return Err(usage(&format!(
                "--addr {text}: natter-load only targets loopback addresses"
            )));
        }
        Ok(addr)
    }

    fn finish(self) -> Result<()> {
        match self.pairs.first() {
            Some((k, _)) => Err(usage(&format!("unknown or repeated flag {k}"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&v)
    }

    #[test]
    fn parses_scenarios() {
        match p("idle -n 10 --rooms=3 --pid 42 --addr 127.0.0.1:7001").unwrap() {
            Command::Idle(c, i) => {
                assert_eq!((i.n, i.rooms, i.idle_secs), (10, 3, 10));
                assert_eq!(c.pid, Some(42));
                assert_eq!(c.addr.port(), 7001);
                assert_eq!(c.timeout_secs, 120);
            }
            other => panic!("{other:?}"),
        }
        match p("fanout -r 5 -s 2 -m 7 --room default --window 3").unwrap() {
            Command::Fanout(_, f) => {
                assert_eq!((f.receivers, f.senders, f.messages, f.window), (5, 2, 7, 3));
                assert_eq!(f.room, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(p("churn -n 3").unwrap(), Command::Churn(_, c) if c.concurrency == 50));
        assert!(matches!(p("--help").unwrap(), Command::Help));
        assert!(matches!(p("idle --help").unwrap(), Command::Help));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "idle",
            "idle -n x",
            "idle -n 0",
            "idle -n 5 --bogus 1",
            "idle -n 5 --pid",
            "nope",
            "idle -n 5 --addr 10.0.0.1:6677",
            "idle -n 5 --sources 9",
            "fanout --room bad#name",
            "fanout --rate -1",
        ] {
            let e = p(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
    }
}
