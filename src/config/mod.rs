//! Command-line flags, their defaults (those of the contract) and their validation.

use crate::net::log::Level;
use crate::proto::chat::Settings;
use crate::proto::names::parse_room;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Usage text for `--help` and for flag errors.
pub const USAGE: &str = "\
natter: a chat server for telnet and netcat users

Usage: natter [OPTIONS]

Options:
  --listen ADDR          address to listen on (repeatable, IPv6 too) [default: 0.0.0.0:6677]
  --motd FILE            banner lines to send on connect, each as \"*** LINE\"
  --default-room ROOM    room users enter on login [default: lobby]
  --max-line BYTES       longest input line [default: 512]
  --max-clients N        most connections at once [default: what the open-file limit allows]
  --max-per-ip N         most connections per address, IPv6 per /64; 0 = off [default: 32]
  --limit-loopback       apply --max-per-ip to loopback addresses too
  --sendq BYTES          unsent output after which a client is dropped [default: 262144]
  --rate LINES_PER_SEC   input lines per second per client; 0 = off [default: 5]
  --burst N              lines a client may send at once before --rate applies [default: 20]
  --quiet-above N        announce joins, leaves and renames only in rooms of at most N; 0 = off [default: 1000]
  --idle-timeout SECS    close connections silent this long; 0 = off [default: 0]
  --login-timeout SECS   close connections without a nickname after this long; 0 = off [default: 0]
  --shutdown-grace SECS  on SIGINT/SIGTERM, flush output for up to this long [default: 5]
  --log-level LEVEL      error, warn, info or debug [default: info]
  --metrics-listen ADDR  answer HTTP requests there with counters in Prometheus text [default: off]
  --redis ADDR           be one node of a cluster sharing one chat through the Redis at ADDR
                         (HOST:PORT or the path of a Unix socket) [default: standalone]
  --cluster NAME         the cluster's name: nodes on one Redis with the same name share a chat
                         (letters, digits, _ - .) [default: natter]
  --tls-listen ADDR      also listen there for TLS (repeatable); needs --tls-cert and --tls-key
  --tls-cert FILE        PEM certificate chain, the server's certificate first
  --tls-key FILE         PEM private key (PKCS#8, SEC1 or PKCS#1), not encrypted
  --tls-handshake-timeout SECS
                         close a TLS connection whose handshake is not done by then [default: 10]
  -h, --help             print this help
  -V, --version          print the version
";

/// Everything the server is told at start; the shell keeps what concerns it and hands the chat
/// core its own [`Settings`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The chat core's settings as the flags give them (`--motd`, `--default-room`,
    /// `--max-line`, `--max-per-ip`, `--limit-loopback`, `--sendq`, `--rate`, `--burst`,
    /// `--quiet-above`, `--idle-timeout`, `--login-timeout`); [`Config::chat_settings`] fills
    /// in what only the shell knows.
    pub chat: Settings,
    /// The `--motd` file, read again on SIGHUP.
    pub motd: Option<PathBuf>,
    /// Most connections at once; `None` means "derive from the open-file limit".
    pub max_clients: Option<usize>,
    /// How long to flush output at shutdown.
    pub shutdown_grace: Duration,
    /// How much to log.
    pub log_level: Level,
    /// Where to answer metrics requests, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The Redis of the cluster this server is a node of (`HOST:PORT` or a socket path, as
    /// given); `None` for a standalone server.
    pub redis: Option<String>,
    /// The cluster's name (`--cluster`): its keys in Redis are `natter:{NAME}:...`.
    pub cluster: String,
    /// Addresses to listen on for TLS connections (then `tls` is set).
    pub tls_listen: Vec<SocketAddr>,
    /// The certificate and key, when `tls_listen` is not empty.
    pub tls: Option<TlsFiles>,
    /// How long a TLS connection may take from accept to the end of its handshake.
    pub tls_handshake_timeout: Duration,
}

/// Where the TLS certificate chain and private key are (read at start and on SIGHUP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tls-cert`: PEM, the server's certificate first.
    pub cert: PathBuf,
    /// `--tls-key`: PEM private key.
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([0, 0, 0, 0], 6677))],
            chat: Settings::default(),
            motd: None,
            max_clients: None,
            shutdown_grace: Duration::from_secs(5),
            log_level: Level::Info,
            metrics_listen: None,
            redis: None,
            cluster: "natter".to_string(),
            tls_listen: Vec::new(),
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// The chat core's settings, with the connection limit resolved to `max_clients`.
    pub fn chat_settings(&self, max_clients: usize) -> Settings {
        Settings {
            max_clients,
            node: 0,
            cluster: self.redis.is_some(),
            ..self.chat.clone()
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    /// Run the server.
    Run(Box<Config>),
    /// Print the usage text.
    Help,
    /// Print the version.
    Version,
}

/// A command line that cannot be used; printed with the usage text, exit status 2.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// pico-args could not parse a flag or its value.
    #[error("{0}")]
    Args(#[from] pico_args::Error),
    /// A flag that natter does not know.
    #[error("unknown argument {0:?}")]
    Unknown(OsString),
    /// A value outside its allowed range.
    #[error("{flag} must be {rule}")]
    Range {
        /// The flag, as typed on the command line.
        flag: &'static str,
        /// What it must be.
        rule: &'static str,
    },
    /// The default room name is not a valid room name.
    #[error("--default-room: {0}")]
    Room(crate::proto::names::NameError),
    /// An unknown `--log-level`.
    #[error("--log-level: {0}")]
    LogLevel(crate::net::log::LevelError),
    /// `--tls-listen` without `--tls-cert` or `--tls-key`.
    #[error("--tls-listen needs {0} FILE")]
    TlsMissing(&'static str),
    /// The MOTD file cannot be read.
    #[error("cannot read --motd {path}: {source}")]
    Motd {
        /// The `--motd` file, as given.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Parses the command line (without the program name).
pub fn parse_args(args: Vec<OsString>) -> Result<Action, ConfigError> {
    let mut args = pico_args::Arguments::from_vec(args);
    if args.contains(["-h", "--help"]) {
        return Ok(Action::Help);
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Action::Version);
    }
    let mut c = Config::default();
    let listen: Vec<SocketAddr> = args.values_from_str("--listen")?;
    if !listen.is_empty() {
        c.listen = listen;
    }
    if let Some(path) = args
        .values_from_os_str("--motd", |s| {
            Ok::<PathBuf, std::convert::Infallible>(PathBuf::from(s))
        })?
        .pop()
    {
        c.chat.banner = read_motd(&path)?;
        c.motd = Some(path);
    }
    if let Some(room) = last::<String>(&mut args, "--default-room")? {
        c.chat.default_room = parse_room(&room).map_err(ConfigError::Room)?;
    }
    c.chat.max_line = last(&mut args, "--max-line")?.unwrap_or(c.chat.max_line);
    c.max_clients = last(&mut args, "--max-clients")?;
    c.chat.max_per_ip = last(&mut args, "--max-per-ip")?.unwrap_or(c.chat.max_per_ip);
    c.chat.limit_loopback = args.contains("--limit-loopback");
    c.chat.sendq = last(&mut args, "--sendq")?.unwrap_or(c.chat.sendq);
    c.chat.rate = last(&mut args, "--rate")?.unwrap_or(c.chat.rate);
    c.chat.burst = last(&mut args, "--burst")?.unwrap_or(c.chat.burst);
    c.chat.quiet_above = last(&mut args, "--quiet-above")?.unwrap_or(c.chat.quiet_above);
    c.chat.idle_timeout = seconds(last(&mut args, "--idle-timeout")?);
    c.chat.login_timeout = seconds(last(&mut args, "--login-timeout")?);
    if let Some(grace) = last::<u64>(&mut args, "--shutdown-grace")? {
        c.shutdown_grace = Duration::from_secs(grace);
    }
    if let Some(level) = last::<String>(&mut args, "--log-level")? {
        c.log_level = level.parse().map_err(ConfigError::LogLevel)?;
    }
    c.metrics_listen = last(&mut args, "--metrics-listen")?;
    c.redis = last(&mut args, "--redis")?;
    c.cluster = last(&mut args, "--cluster")?.unwrap_or(c.cluster);
    parse_tls(&mut args, &mut c)?;
    let rest = args.finish();
    if let Some(first) = rest.into_iter().next() {
        return Err(ConfigError::Unknown(first));
    }
    validate(&c)?;
    Ok(Action::Run(Box::new(c)))
}

/// The TLS flags: the certificate and key are required once there is a `--tls-listen`.
fn parse_tls(args: &mut pico_args::Arguments, c: &mut Config) -> Result<(), ConfigError> {
    c.tls_listen = args.values_from_str("--tls-listen")?;
    let path = |s: &std::ffi::OsStr| Ok::<PathBuf, std::convert::Infallible>(PathBuf::from(s));
    let cert = args.values_from_os_str("--tls-cert", path)?.pop();
    let key = args.values_from_os_str("--tls-key", path)?.pop();
    if let Some(secs) = last::<u64>(args, "--tls-handshake-timeout")? {
        if secs == 0 {
            return Err(ConfigError::Range {
                flag: "--tls-handshake-timeout",
                rule: "at least 1",
            });
        }
        c.tls_handshake_timeout = Duration::from_secs(secs);
    }
    if c.tls_listen.is_empty() {
        return Ok(());
    }
    c.tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, _) => return Err(ConfigError::TlsMissing("--tls-cert")),
        (_, None) => return Err(ConfigError::TlsMissing("--tls-key")),
    };
    Ok(())
}

/// Reads a `--motd` file: each line becomes a banner line.
pub fn read_motd(path: &std::path::Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Motd {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect())
}

/// The value of a flag that takes one value; given several times, the last one wins (as in
/// most command-line tools), so a wrapper script can override a default it passes.
fn last<T>(
    args: &mut pico_args::Arguments,
    flag: &'static str,
) -> Result<Option<T>, pico_args::Error>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    Ok(args.values_from_str(flag)?.pop())
}

fn seconds(value: Option<u64>) -> Option<Duration> {
    value.filter(|&s| s > 0).map(Duration::from_secs)
}

fn validate(c: &Config) -> Result<(), ConfigError> {
    let range = |flag, rule| Err(ConfigError::Range { flag, rule });
    if !(1..=1 << 20).contains(&c.chat.max_line) {
        return range("--max-line", "between 1 and 1048576");
    }
    if c.max_clients == Some(0) {
        return range("--max-clients", "at least 1");
    }
    if !(1024..=1 << 30).contains(&c.chat.sendq) {
        return range("--sendq", "between 1024 and 1073741824");
    }
    if c.chat.rate > 0 && c.chat.burst == 0 {
        return range("--burst", "at least 1 when --rate is on");
    }
    if c.chat.rate > 1_000_000 {
        return range("--rate", "at most 1000000");
    }
    if c.redis.as_deref().is_some_and(str::is_empty) {
        return range("--redis", "HOST:PORT or the path of a Unix socket");
    }
    let name_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    if !(1..=64).contains(&c.cluster.len()) || !c.cluster.bytes().all(name_char) {
        return range("--cluster", "1 to 64 letters, digits, _, - or .");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
