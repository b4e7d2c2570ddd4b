//! A small TLS load generator for BENCHMARKS.md (natter-load speaks plain TCP only). Run the
//! server with `--tls-listen ADDR --rate 0 --max-per-ip 0` and a certificate the client can
//! trust (`--ca`: the server's self-signed certificate, as the README makes it), then:
//!
//! ```sh
//! cargo run --release --example tls_load -- idle --addr 127.0.0.1:6697 --ca cert.pem --pid PID -n 10000
//! cargo run --release --example tls_load -- handshakes --addr 127.0.0.1:6697 --ca cert.pem --pid PID
//! cargo run --release --example tls_load -- fanout --addr 127.0.0.1:6697 --ca cert.pem --pid PID \
//!     --plain-addr 127.0.0.1:6677
//! ```
//!
//! - `idle -n N`: logs N users in over TLS (into the default room), keeps their sockets open
//!   and silent (the client forgets its TLS state once logged in, and reads and drops the
//!   join notices without decrypting them), and reports the server's RssAnon and VmRSS added
//!   per connection, the kernel's slab growth per connection (both ends of each loopback
//!   connection, so about twice the server's share), and the server's CPU over `--idle-secs`
//!   of rest.
//! - `handshakes`: `--threads` clients connect, complete a handshake and hang up, again and
//!   again for `--secs`; reports handshakes per second and the server's CPU per handshake
//!   (from /proc/PID/schedstat).
//! - `fanout`: the TLS counterpart of natter-load's `fanout`, measured the same way. `-r R`
//!   receivers (default 1000) log in over TLS and `/join` one fresh room (`--room`), `-s S`
//!   senders (default 4) join it over plain TCP (`--plain-addr`, the server's `--listen`) or,
//!   with `--tls-senders`, over TLS. Each sender sends `-m M` messages (default 200) as fast as
//!   the server takes them, `nl SENDER SEQ NS` (NS: send time), keeping at most `--window W`
//!   (default 64) not yet received by every receiver, so the server's `--sendq` is never
//!   blown. One poll loop decrypts every delivery and checks it: no loss, no duplicate, each
//!   sender's order kept. Reports deliveries, deliveries/s (up to the last delivery), latency
//!   and the server's CPU per delivery: the first field of /proc/PID/schedstat, from just
//!   before the first message to just after the last delivery. Fails (exit 1) on any bad
//!   delivery, or after 10 seconds without one.
//!
//! It prints one line `tls-load-result scenario=NAME key=value ...`. Bounded: N must fit in the
//! open-file limit, every socket has a 30-second timeout, and `fanout` gives up after
//! `--timeout` seconds (default 120).

mod fanout;

use fanout::fanout;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::error::Error;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// With fan-out messages outstanding, this long without any delivery ends the run as a failure.
const STALL: Duration = Duration::from_secs(10);

/// How long one poll may block while the fan-out loop also watches the clock.
const TICK: Duration = Duration::from_millis(100);

struct Args {
    scenario: String,
    addr: SocketAddr,
    ca: PathBuf,
    pid: u32,
    n: usize,
    threads: usize,
    secs: u64,
    idle_secs: u64,
    fanout: FanoutArgs,
}

/// The `fanout` flags.
struct FanoutArgs {
    receivers: usize,
    senders: usize,
    messages: u32,
    window: u32,
    plain_addr: Option<SocketAddr>,
    tls_senders: bool,
    room: String,
    timeout: Duration,
    quiet: Duration,
}

fn main() -> Result<()> {
    let mut a = pico_args::Arguments::from_env();
    let args = Args {
        scenario: a.free_from_str()?,
        addr: a.value_from_str("--addr")?,
        ca: a.value_from_str("--ca")?,
        pid: a.value_from_str("--pid")?,
        n: a.opt_value_from_str("-n")?.unwrap_or(1000),
        threads: a.opt_value_from_str("--threads")?.unwrap_or(8),
        secs: a.opt_value_from_str("--secs")?.unwrap_or(5),
        idle_secs: a.opt_value_from_str("--idle-secs")?.unwrap_or(10),
        fanout: FanoutArgs {
            receivers: a.opt_value_from_str("-r")?.unwrap_or(1000),
            senders: a.opt_value_from_str("-s")?.unwrap_or(4),
            messages: a.opt_value_from_str("-m")?.unwrap_or(200),
            window: a.opt_value_from_str("--window")?.unwrap_or(64),
            plain_addr: a.opt_value_from_str("--plain-addr")?,
            tls_senders: a.contains("--tls-senders"),
            room: a
                .opt_value_from_str("--room")?
                .unwrap_or_else(|| format!("tl{}", std::process::id())),
            timeout: Duration::from_secs(a.opt_value_from_str("--timeout")?.unwrap_or(120)),
            quiet: Duration::from_millis(a.opt_value_from_str("--quiet-ms")?.unwrap_or(500)),
        },
    };
    let rest = a.finish();
    if !rest.is_empty() {
        return Err(format!("unexpected arguments: {rest:?}").into());
    }
    let root = CertificateDer::from_pem_file(&args.ca)?;
    let mut roots = RootCertStore::empty();
    roots.add(root)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    match args.scenario.as_str() {
        "idle" => idle(&args, config),
        "handshakes" => handshakes(&args, config),
        "fanout" => fanout(&args, config),
        other => Err(format!("unknown scenario {other:?} (idle, handshakes or fanout)").into()),
    }
}

/// Logs `n` users in and holds them.
fn idle(args: &Args, config: Arc<ClientConfig>) -> Result<()> {
    let mem_before = Memory::of(args.pid)?;
    let slab_before = slab_kb()?;
    let start = Instant::now();
    let per_thread = args.n.div_ceil(args.threads);
    let workers: Vec<_> = (0..args.threads)
        .map(|t| {
            let (config, addr) = (config.clone(), args.addr);
            let count = per_thread.min(args.n.saturating_sub(t * per_thread));
            std::thread::spawn(move || -> Result<Vec<TcpStream>> {
                (0..count)
                    .map(|i| login(addr, &config, &format!("t{t}x{i}")))
                    .collect()
            })
        })
        .collect();
    let mut held = Vec::new();
    for w in workers {
        held.extend(w.join().map_err(|_| "a login thread panicked")??);
    }
    let login_secs = start.elapsed().as_secs_f64();
    // The join notices (rooms up to --quiet-above) are read and thrown away, undecrypted, so
    // they do not sit in the kernel's buffers.
    read_until_quiet(&mut held, Duration::from_millis(500))?;
    let mem_after = Memory::of(args.pid)?;
    let slab_after = slab_kb()?;
    let (ticks0, ns0) = cpu(args.pid)?;
    std::thread::sleep(Duration::from_secs(args.idle_secs));
    let (ticks1, ns1) = cpu(args.pid)?;
    let n = held.len() as f64;
    let per = |before: u64, after: u64| (after as f64 - before as f64) * 1024.0 / n;
    println!(
        "tls-load-result scenario=idle n={} anon_per_conn_b={:.0} rss_per_conn_b={:.0} \
         kernel_slab_per_conn_b={:.0} logins_per_s={:.0} idle_cpu_ticks={} idle_cpu_ns={}",
        held.len(),
        per(mem_before.anon_kb, mem_after.anon_kb),
        per(mem_before.rss_kb, mem_after.rss_kb),
        per(slab_before, slab_after),
        n / login_secs,
        ticks1 - ticks0,
        ns1 - ns0,
    );
    drop(held);
    Ok(())
}

/// Reads and discards whatever arrives until nothing has come for `quiet`.
fn read_until_quiet(socks: &mut [TcpStream], quiet: Duration) -> Result<()> {
    for s in socks.iter() {
        s.set_nonblocking(true)?;
    }
    let mut last = Instant::now();
    let mut chunk = [0u8; 16384];
    while last.elapsed() < quiet {
        for s in socks.iter_mut() {
            while let Ok(n @ 1..) = s.read(&mut chunk) {
                let _ = n;
                last = Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Connects, handshakes, logs in as `nick` and forgets the TLS state; returns the socket.
fn login(addr: SocketAddr, config: &Arc<ClientConfig>, nick: &str) -> Result<TcpStream> {
    let (mut sock, mut tls) = connect(addr, config)?;
    log_in(&mut rustls::Stream::new(&mut tls, &mut sock), nick, None)?;
    Ok(sock)
}

/// Sends the nickname and reads through the welcome line; with a room, then `/join`s it and
/// reads through the echo of a whisper to itself: the server handles a client's lines in
/// order, so everything the join caused has arrived by then. Returns the bytes read past that.
fn log_in(stream: &mut (impl Read + Write), nick: &str, room: Option<&str>) -> Result<Vec<u8>> {
    stream.write_all(format!("{nick}\r\n").as_bytes())?;
    let mut seen = Vec::new();
    read_through(stream, &mut seen, &format!("*** Welcome, {nick}!"), nick)?;
    if let Some(room) = room {
        stream.write_all(format!("/join {room}\r\n/w {nick} tlsync\r\n").as_bytes())?;
        read_through(stream, &mut seen, &format!("-> *{nick}* tlsync\r\n"), nick)?;
    }
    Ok(seen)
}

/// Reads until `seen` holds `marker`, then drops `seen` up to the end of the marker's line.
fn read_through(
    stream: &mut impl Read,
    seen: &mut Vec<u8>,
    marker: &str,
    nick: &str,
) -> Result<()> {
    let marker = marker.as_bytes();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = seen.windows(marker.len()).position(|w| w == marker)
            && let Some(eol) = seen[at..].iter().position(|&b| b == b'\n')
        {
            seen.drain(..at + eol + 1);
            return Ok(());
        }
        match stream.read(&mut chunk)? {
            0 => {
                return Err(format!(
                    "{nick}: closed before {:?}",
                    String::from_utf8_lossy(marker)
                )
                .into());
            }
            n => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<(TcpStream, ClientConnection)> {
    let sock = connect_plain(addr)?;
    let name = ServerName::try_from("localhost")?;
    Ok((sock, ClientConnection::new(config.clone(), name)?))
}

fn connect_plain(addr: SocketAddr) -> Result<TcpStream> {
    let sock = TcpStream::connect(addr).map_err(|e| format!("connecting to {addr}: {e}"))?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    sock.set_nodelay(true)?;
    Ok(sock)
}

/// Handshakes as fast as the server takes them.
fn handshakes(args: &Args, config: Arc<ClientConfig>) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(args.secs);
    let (_, ns0) = cpu(args.pid)?;
    let start = Instant::now();
    let workers: Vec<_> = (0..args.threads)
        .map(|_| {
            let (config, addr) = (config.clone(), args.addr);
            std::thread::spawn(move || -> Result<u64> {
                let mut done = 0;
                while Instant::now() < until {
                    let (mut sock, mut tls) = connect(addr, &config)?;
                    while tls.is_handshaking() {
                        tls.complete_io(&mut sock)?;
                    }
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut count = 0;
    for w in workers {
        count += w.join().map_err(|_| "a handshake thread panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    let (_, ns1) = cpu(args.pid)?;
    println!(
        "tls-load-result scenario=handshakes handshakes={count} handshakes_per_s={:.0} \
         server_cpu_us_per_handshake={:.0}",
        count as f64 / secs,
        (ns1 - ns0) as f64 / 1000.0 / count as f64,
    );
    Ok(())
}

/// Appends `data` to the unfinished line and calls `on_line` for each complete line (without
/// CR LF); keeps the rest.
fn split_lines(partial: &mut Vec<u8>, data: &[u8], on_line: &mut impl FnMut(&[u8])) -> Result<()> {
    partial.extend_from_slice(data);
    let mut start = 0;
    while let Some(len) = partial[start..].iter().position(|&b| b == b'\n') {
        let line = &partial[start..start + len];
        on_line(line.strip_suffix(b"\r").unwrap_or(line));
        start += len + 1;
    }
    partial.drain(..start);
    if partial.len() > 64 * 1024 {
        return Err("the server sent a line longer than 64 KiB".into());
    }
    Ok(())
}

struct Memory {
    rss_kb: u64,
    anon_kb: u64,
}

impl Memory {
    fn of(pid: u32) -> Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Ok(Memory {
            rss_kb: kb_field(&status, "VmRSS:")?,
            anon_kb: kb_field(&status, "RssAnon:")?,
        })
    }
}

/// The kernel's slab memory (all of it: the machine's, not one process's).
fn slab_kb() -> Result<u64> {
    kb_field(&std::fs::read_to_string("/proc/meminfo")?, "Slab:")
}

fn kb_field(text: &str, name: &str) -> Result<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .ok_or_else(|| format!("no {name} line"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

/// The server's CPU time: utime+stime in clock ticks, and ns on the CPU (schedstat).
fn cpu(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = &stat[stat.rfind(')').ok_or("bad /proc/PID/stat")? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let sched = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
    let ns = sched
        .split_whitespace()
        .next()
        .ok_or("bad schedstat")?
        .parse()?;
    Ok((ticks, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_lines_keeps_the_unfinished_line() {
        let mut partial = Vec::new();
        let mut lines = Vec::new();
        for chunk in [&b"a\r\nb"[..], b"c\n", b"\r\nd"] {
            split_lines(&mut partial, chunk, &mut |l| lines.push(l.to_vec())).unwrap();
        }
        assert_eq!(lines, [&b"a"[..], b"bc", b""]);
        assert_eq!(partial, b"d");
    }
}
