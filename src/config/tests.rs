//! Flags to configuration: defaults, values, repeats, and every kind of bad flag.

use super::*;

fn run(args: &[&str]) -> Result<Config, ConfigError> {
    match parse_args(args.iter().map(OsString::from).collect())? {
        Action::Run(c) => Ok(*c),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn defaults_are_the_contract_defaults() {
    let c = run(&[]).unwrap();
    assert_eq!(c.listen, vec!["0.0.0.0:6677".parse().unwrap()]);
    assert_eq!(c.chat.default_room.as_str(), "lobby");
    assert_eq!(
        (
            c.chat.max_line,
            c.chat.max_per_ip,
            c.chat.sendq,
            c.chat.rate,
            c.chat.burst,
            c.chat.quiet_above
        ),
        (512, 32, 262_144, 5, 20, 1000)
    );
    assert_eq!((c.chat.idle_timeout, c.chat.login_timeout), (None, None));
    assert_eq!(c.shutdown_grace, Duration::from_secs(5));
    assert!(!c.chat.limit_loopback && c.max_clients.is_none());
    assert_eq!((c.redis.as_deref(), c.cluster.as_str()), (None, "natter"));
    assert!(!c.chat_settings(1).cluster);
}

#[test]
fn flags_are_read() {
    let c = run(&[
        "--listen",
        "127.0.0.1:1",
        "--listen",
        "[::1]:2",
        "--default-room",
        "#Den",
        "--max-line",
        "16",
        "--max-clients",
        "9",
        "--max-per-ip",
        "0",
        "--limit-loopback",
        "--sendq",
        "4096",
        "--rate",
        "0",
        "--burst",
        "3",
        "--quiet-above",
        "2",
        "--idle-timeout",
        "30",
        "--login-timeout",
        "0",
        "--shutdown-grace",
        "1",
        "--log-level",
        "WARN",
        "--metrics-listen",
        "127.0.0.1:9100",
        "--redis",
        "127.0.0.1:6379",
        "--cluster",
        "blue.1",
    ])
    .unwrap();
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.chat.default_room.as_str(), "Den");
    assert_eq!(
        (c.chat.max_line, c.max_clients, c.chat.max_per_ip),
        (16, Some(9), 0)
    );
    assert!(c.chat.limit_loopback);
    assert_eq!(
        (c.chat.sendq, c.chat.rate, c.chat.burst, c.chat.quiet_above),
        (4096, 0, 3, 2)
    );
    assert_eq!(c.chat.idle_timeout, Some(Duration::from_secs(30)));
    assert_eq!(c.chat.login_timeout, None);
    assert_eq!(c.log_level, Level::Warn);
    assert_eq!(c.metrics_listen, "127.0.0.1:9100".parse().ok());
    assert_eq!(c.redis.as_deref(), Some("127.0.0.1:6379"));
    assert_eq!(c.cluster, "blue.1");
    assert!(c.chat_settings(1).cluster);
}

#[test]
fn a_repeated_flag_takes_its_last_value() {
    let c = run(&[
        "--rate",
        "0",
        "--rate",
        "2",
        "--max-per-ip",
        "0",
        "--max-per-ip",
        "3",
    ])
    .unwrap();
    assert_eq!((c.chat.rate, c.chat.max_per_ip), (2, 3));
}

#[test]
fn tls_flags_are_read() {
    let c = run(&[]).unwrap();
    assert!(c.tls_listen.is_empty() && c.tls.is_none());
    assert_eq!(c.tls_handshake_timeout, Duration::from_secs(10));
    let c = run(&[
        "--tls-listen",
        "127.0.0.1:6697",
        "--tls-listen",
        "[::1]:6697",
        "--tls-cert",
        "/etc/natter/cert.pem",
        "--tls-key",
        "key.pem",
        "--tls-handshake-timeout",
        "3",
    ])
    .unwrap();
    assert_eq!(c.tls_listen.len(), 2);
    let files = c.tls.unwrap();
    assert_eq!(files.cert, PathBuf::from("/etc/natter/cert.pem"));
    assert_eq!(files.key, PathBuf::from("key.pem"));
    assert_eq!(c.tls_handshake_timeout, Duration::from_secs(3));
}

#[test]
fn tls_listen_without_cert_or_key_names_the_missing_flag() {
    let missing = |args: &[&str]| run(args).unwrap_err().to_string();
    let listen = ["--tls-listen", "127.0.0.1:6697"];
    assert_eq!(
        missing(&[&listen[..], &["--tls-key", "k.pem"]].concat()),
        "--tls-listen needs --tls-cert FILE"
    );
    assert_eq!(
        missing(&[&listen[..], &["--tls-cert", "c.pem"]].concat()),
        "--tls-listen needs --tls-key FILE"
    );
    assert_eq!(missing(&listen), "--tls-listen needs --tls-cert FILE");
    assert_eq!(
        missing(&["--tls-handshake-timeout", "0"]),
        "--tls-handshake-timeout must be at least 1"
    );
}

#[test]
fn bad_flags_are_errors() {
    for bad in [
        &["--bogus"][..],
        &["--max-line", "abc"],
        &["--max-line", "0"],
        &["--listen", "nowhere"],
        &["--default-room", "a b"],
        &["--motd", "/nonexistent/motd"],
        &["--sendq", "10"],
        &["--max-clients", "0"],
        &["--log-level", "loud"],
        &["--metrics-listen", "nowhere"],
        &["--cluster", "a{b}"],
        &["--cluster", ""],
        &["--redis", ""],
        &["--tls-listen", "nowhere"],
        &["--tls-handshake-timeout", "soon"],
        &["extra"],
    ] {
        assert!(run(bad).is_err(), "{bad:?} was accepted");
    }
}
