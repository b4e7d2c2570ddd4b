//! Command-line parsing (by hand, from `std::env::args`); the text is in `help.rs`.

use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::flags::Flags;
use std::net::SocketAddr;

/// Flags every scenario takes.
#[derive(Debug, Clone)]
pub struct Common {
    /// Server addresses (one per node; at least one).
    pub addrs: Vec<SocketAddr>,
    /// Server pids for /proc figures: none, or one per address in the same order.
    pub pids: Vec<u32>,
    /// The protocol the clients speak.
    pub proto: Dialect,
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
    /// Stay silent at the nickname prompt instead of logging in.
    pub at_prompt: bool,
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
    /// SIGUSR2 upgrades to run while the senders send.
    pub upgrades: u32,
    /// Pause after every receiver saw an upgrade's notice, before the next signal, in ms.
    pub upgrade_gap_ms: u64,
    /// IRC: senders become operators with `OPER NAME PASSWORD` and set mode `+F`.
    pub irc_oper: Option<String>,
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
    /// Stay at the prompt, as in `idle --at-prompt`.
    pub at_prompt: bool,
}

/// What to run.
#[derive(Debug, Clone)]
pub enum Command {
    /// Print the `--help` text.
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
    let common = common(&mut flags)?;
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
                at_prompt: flags.take_switch("--at-prompt"),
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
                upgrades: flags.num("--upgrades")?.unwrap_or(0),
                upgrade_gap_ms: flags.num("--upgrade-gap-ms")?.unwrap_or(200),
                irc_oper: flags.take("--irc-oper").map(|v| v.replacen(':', " ", 1)),
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
                at_prompt: flags.take_switch("--at-prompt"),
            },
        ),
        other => return Err(usage(&format!("unknown scenario {other:?}"))),
    };
    flags.finish()?;
    validate(&cmd)?;
    Ok(cmd)
}

/// The flags every scenario takes.
fn common(flags: &mut Flags) -> Result<Common> {
    let proto = match flags.take("--proto") {
        None => Dialect::Natter,
        Some(p) => Dialect::from_flag(&p)
            .ok_or_else(|| usage(&format!("--proto {p:?}: expected natter or irc")))?,
    };
    let common = Common {
        addrs: flags.addrs()?,
        pids: flags.list("--pid")?,
        proto,
        timeout_secs: flags.num("--timeout")?.unwrap_or(120),
        sources: flags.num("--sources")?.unwrap_or(0),
        quiet_ms: flags.num("--quiet-ms")?.unwrap_or(500),
    };
    if common.sources > 8 {
        return Err(usage("--sources must be 0..=8"));
    }
    if !common.pids.is_empty() && common.pids.len() != common.addrs.len() {
        return Err(usage(&format!(
            "{} --pid for {} --addr: give one --pid per --addr, in the same order",
            common.pids.len(),
            common.addrs.len()
        )));
    }
    if common.sources > 0 && common.addrs.iter().any(|a| !a.is_ipv4()) {
        return Err(usage("--sources needs an IPv4 server address (127.0.0.x)"));
    }
    if common.timeout_secs == 0 {
        return Err(usage("--timeout must be at least 1"));
    }
    Ok(common)
}

fn validate(cmd: &Command) -> Result<()> {
    match cmd {
        Command::Idle(c, i) => {
            positive(i.n, "-n")?;
            positive(i.rooms, "--rooms")?;
            positive(i.concurrency, "--concurrency")?;
            if i.at_prompt && c.proto == Dialect::Irc {
                return Err(usage(
                    "--at-prompt is for natter's nickname prompt, not --proto irc",
                ));
            }
            Ok(())
        }
        Command::Fanout(c, f) => validate_fanout(c, f),
        Command::Churn(c, ch) => {
            if c.addrs.len() > 1 || c.proto != Dialect::Natter {
                return Err(usage("churn takes one --addr and speaks natter only"));
            }
            positive(ch.n, "-n")?;
            positive(ch.concurrency, "--concurrency")
        }
        Command::Worker(..) | Command::Help => Ok(()),
    }
}

fn validate_fanout(c: &Common, f: &Fanout) -> Result<()> {
    positive(f.receivers, "-r")?;
    positive(f.senders, "-s")?;
    positive(f.messages as usize, "-m")?;
    positive(f.window as usize, "--window")?;
    match &f.room {
        Some(room) => {
            let name = room.strip_prefix('#').unwrap_or(room);
            let ok = (1..=32).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if !ok {
                return Err(usage("--room: 1 to 32 letters, digits, _, - or ."));
            }
        }
        None if c.proto == Dialect::Irc => {
            return Err(usage("--room default: IRC has no default room; name one"));
        }
        None => {}
    }
    if !(f.rate >= 0.0 && f.rate.is_finite()) {
        return Err(usage("--rate must be a number >= 0"));
    }
    if let Some(oper) = &f.irc_oper {
        let ok = c.proto == Dialect::Irc
            && oper.split(' ').count() == 2
            && oper.split(' ').all(|w| !w.is_empty());
        if !ok {
            return Err(usage("--irc-oper NAME:PASSWORD needs --proto irc"));
        }
    }
    if f.upgrades > 0 && (c.pids.len() != 1 || c.proto != Dialect::Natter) {
        return Err(usage(
            "--upgrades needs exactly one --addr and its --pid, and --proto natter",
        ));
    }
    Ok(())
}

fn positive(v: usize, name: &str) -> Result<()> {
    if v == 0 {
        Err(usage(&format!("{name} must be at least 1")))
    } else {
        Ok(())
    }
}

/// A usage error (exit code 2) saying `msg`.
pub fn usage(msg: &str) -> Error {
    Error::Usage(msg.to_owned())
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
                assert_eq!(c.pids, vec![42]);
                assert_eq!(c.addrs.len(), 1);
                assert_eq!(c.addrs[0].port(), 7001);
                assert_eq!(c.timeout_secs, 120);
                assert_eq!(c.proto, Dialect::Natter);
                assert!(!i.at_prompt);
            }
            other => panic!("{other:?}"),
        }
        match p("fanout -r 5 -s 2 -m 7 --room default --window 3").unwrap() {
            Command::Fanout(_, f) => {
                assert_eq!((f.receivers, f.senders, f.messages, f.window), (5, 2, 7, 3));
                assert_eq!(f.room, None);
                assert_eq!(f.upgrades, 0);
            }
            other => panic!("{other:?}"),
        }
        match p("fanout --upgrades 50 --upgrade-gap-ms 10 --pid 9").unwrap() {
            Command::Fanout(c, f) => {
                assert_eq!((f.upgrades, f.upgrade_gap_ms), (50, 10));
                assert_eq!(c.addrs[0].port(), 6677);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(p("churn -n 3").unwrap(), Command::Churn(_, c) if c.concurrency == 50));
        assert!(matches!(p("--help").unwrap(), Command::Help));
        assert!(matches!(p("idle --help").unwrap(), Command::Help));
        assert!(matches!(p("idle -n 3 --at-prompt").unwrap(), Command::Idle(_, i) if i.at_prompt));
    }

    #[test]
    fn several_nodes_and_irc() {
        let cmd = "fanout --proto irc --addr 127.0.0.1:1,127.0.0.1:2 --addr 127.0.0.1:3 \
                   --pid 11,12 --pid=13 --room r";
        match p(cmd).unwrap() {
            Command::Fanout(c, _) => {
                let ports: Vec<u16> = c.addrs.iter().map(|a| a.port()).collect();
                assert_eq!(ports, vec![1, 2, 3]);
                assert_eq!(c.pids, vec![11, 12, 13]);
                assert_eq!(c.proto, Dialect::Irc);
            }
            other => panic!("{other:?}"),
        }
        match p("fanout --proto irc --irc-oper bench:pw").unwrap() {
            Command::Fanout(_, f) => assert_eq!(f.irc_oper.as_deref(), Some("bench pw")),
            other => panic!("{other:?}"),
        }
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
            "fanout --proto smtp",
            "fanout --proto irc --room default",
            "fanout --addr 127.0.0.1:1,127.0.0.1:2 --pid 5",
            "fanout --upgrades 3",
            "fanout --upgrades 3 --pid 5 --proto irc",
            "fanout --upgrades 3 --addr 127.0.0.1:1,127.0.0.1:2 --pid 5,6",
            "fanout --at-prompt",
            "fanout --irc-oper a:b",
            "fanout --proto irc --irc-oper ab",
            "idle -n 5 --at-prompt --proto irc",
            "churn -n 5 --proto irc",
            "churn -n 5 --addr 127.0.0.1:1,127.0.0.1:2",
        ] {
            let e = p(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
    }
}
