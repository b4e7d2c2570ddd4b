//! A small TLS load generator for BENCHMARKS.md (natter-load speaks plain TCP only). Run the
//! server with `--tls-listen ADDR --rate 0 --max-per-ip 0` and a certificate the client can
//! trust (`--ca`: the server's self-signed certificate, as the README makes it), then:
//!
//! ```sh
//! cargo run --release --example tls_load -- idle --addr 127.0.0.1:6697 --ca cert.pem --pid PID -n 10000
//! cargo run --release --example tls_load -- handshakes --addr 127.0.0.1:6697 --ca cert.pem --pid PID
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
//!
//! It prints one line `tls-load-result scenario=NAME key=value ...`. Bounded: N must fit in the
//! open-file limit, and every socket has a 30-second timeout.

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

struct Args {
    scenario: String,
    addr: SocketAddr,
    ca: PathBuf,
    pid: u32,
    n: usize,
    threads: usize,
    secs: u64,
    idle_secs: u64,
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
    };
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
        other => Err(format!("unknown scenario {other:?} (idle or handshakes)").into()),
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
    let mut stream = rustls::Stream::new(&mut tls, &mut sock);
    stream.write_all(format!("{nick}\r\n").as_bytes())?;
    let welcome = format!("*** Welcome, {nick}!");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(&welcome) {
        match stream.read(&mut chunk)? {
            0 => return Err(format!("{nick}: closed before the welcome line").into()),
            n => seen.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(sock)
}

fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<(TcpStream, ClientConnection)> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    sock.set_nodelay(true)?;
    let name = ServerName::try_from("localhost")?;
    Ok((sock, ClientConnection::new(config.clone(), name)?))
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
