//! TLS for the black-box tests: certificates made with rcgen in a temporary directory, and a
//! rustls client over a blocking socket that reads with deadlines, like [`super::Client`].

#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{LINE_TIMEOUT, PROMPT, Server};

/// A CA, and server certificates for `localhost` signed by it, in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    /// The chain file the server is started with (leaf, then CA).
    pub cert: PathBuf,
    /// The key file the server is started with.
    pub key: PathBuf,
    /// The DER of the leaf now in `cert`.
    pub leaf_der: Vec<u8>,
}

/// A server certificate (for `localhost`) and its key.
pub struct Leaf {
    pub pem: String,
    pub der: Vec<u8>,
    pub key_pem: String,
}

impl Pki {
    /// A CA and a first server pair, written to `cert.pem` and `key.pem`.
    pub fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "natter test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut pki = Pki {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            dir,
            ca_params,
            ca_key,
            ca_der: ca.der().clone(),
            ca_pem: ca.pem(),
            leaf_der: Vec::new(),
        };
        let leaf = pki.leaf();
        pki.install(&leaf);
        pki
    }

    /// A new server certificate signed by the CA, with a new P-256 key.
    pub fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        Leaf {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `leaf` (with the CA after it) and its key over the server's files.
    pub fn install(&mut self, leaf: &Leaf) {
        std::fs::write(&self.cert, format!("{}{}", leaf.pem, self.ca_pem)).unwrap();
        std::fs::write(&self.key, &leaf.key_pem).unwrap();
        self.leaf_der = leaf.der.clone();
    }

    /// Writes `contents` to `name` in the directory.
    pub fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The flags for one TLS listener on a free loopback port with this pair.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-listen".into(),
            "127.0.0.1:0".into(),
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }

    /// A client configuration that trusts the CA.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        client_trusting(self.ca_der.clone())
    }
}

/// A client configuration that trusts `root` only.
pub fn client_trusting(root: CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Starts a server with a plain listener (its `addr`) and a TLS listener (returned).
pub fn start(pki: &Pki, extra: &[&str]) -> (Server, SocketAddr) {
    let args = pki.args();
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    let server = Server::start(&all);
    let line = server.wait_for_stderr(|l| l.contains("listening on ") && l.ends_with("(TLS)"));
    let word = line.split("listening on ").nth(1).unwrap();
    let addr = word.split_whitespace().next().unwrap().parse().unwrap();
    (server, addr)
}

/// How a TLS connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// A TLS close_notify came.
    CloseNotify,
    /// TCP end of stream without a close_notify.
    Eof,
    /// The connection was reset.
    Reset,
    /// The server sent a TLS alert or broke the protocol.
    TlsError,
}

enum Fill {
    Data,
    Ended,
    Timeout,
}

/// One TLS connection to the server (rustls client over a blocking socket).
pub struct TlsClient {
    sock: TcpStream,
    pub tls: ClientConnection,
    buf: Vec<u8>,
    end: Option<End>,
    /// TCP end of stream seen.
    tcp_eof: bool,
    /// Write the ciphertext one byte per system call.
    pub bytewise: bool,
    pub nick: String,
}

impl TlsClient {
    /// Connects over TCP; the handshake happens as the client reads and writes.
    pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsClient {
        let sock = TcpStream::connect(addr).expect("connect to natter");
        TlsClient::over(sock, config)
    }

    /// A client over a socket the test connected itself (e.g. with a small receive buffer).
    pub fn over(sock: TcpStream, config: Arc<ClientConfig>) -> TlsClient {
        sock.set_nodelay(true).unwrap();
        sock.set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        // The ClientHello goes out with the first read or write.
        TlsClient {
            sock,
            tls: ClientConnection::new(config, name).unwrap(),
            buf: Vec::new(),
            end: None,
            tcp_eof: false,
            bytewise: false,
            nick: String::new(),
        }
    }

    /// Sends what rustls has to send.
    fn flush(&mut self) {
        while self.tls.wants_write() {
            let mut out = Vec::new();
            self.tls.write_tls(&mut out).unwrap();
            if self.bytewise {
                for b in out {
                    self.sock.write_all(&[b]).expect("send to natter");
                }
            } else {
                self.sock.write_all(&out).expect("send to natter");
            }
        }
    }

    /// Encrypts and sends `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.tls.writer().write_all(bytes).unwrap();
        self.flush();
    }

    /// Sends `line` and CR LF.
    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\r\n").as_bytes());
    }

    /// Sends a TLS close_notify (no more data from us).
    pub fn send_close_notify(&mut self) {
        self.tls.send_close_notify();
        self.flush();
    }

    /// The server's certificate (DER), once the handshake is done.
    pub fn server_cert(&mut self) -> Vec<u8> {
        self.handshake();
        self.tls.peer_certificates().expect("a certificate")[0].to_vec()
    }

    /// Completes the handshake (panics after [`LINE_TIMEOUT`] or if the connection ends).
    pub fn handshake(&mut self) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        while self.tls.is_handshaking() {
            assert!(self.end.is_none(), "the connection ended: {:?}", self.end);
            if let Fill::Timeout = self.receive(deadline) {
                panic!("no handshake within {LINE_TIMEOUT:?}");
            }
        }
    }

    /// Reads TLS from the socket once and processes it.
    fn receive(&mut self, deadline: Instant) -> Fill {
        self.flush();
        let now = Instant::now();
        if now >= deadline {
            return Fill::Timeout;
        }
        let left = (deadline - now).max(Duration::from_millis(1));
        self.sock.set_read_timeout(Some(left)).unwrap();
        match self.tls.read_tls(&mut self.sock) {
            Ok(0) => self.tcp_eof = true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Fill::Timeout;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => return Fill::Data,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                self.end = Some(End::Reset);
                return Fill::Ended;
            }
            Err(e) => panic!("[{}] read error: {e}", self.nick),
        }
        if self.tls.process_new_packets().is_err() {
            self.end = Some(End::TlsError);
            return Fill::Ended;
        }
        Fill::Data
    }

    /// Reads until more plaintext is buffered, the connection ends, or `deadline`.
    fn fill(&mut self, deadline: Instant) -> Fill {
        loop {
            if self.end.is_some() {
                return Fill::Ended;
            }
            let mut chunk = [0u8; 65536];
            match self.tls.reader().read(&mut chunk) {
                Ok(0) => {
                    self.end = Some(End::CloseNotify);
                    return Fill::Ended;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Fill::Data;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    self.end = Some(End::Eof);
                    return Fill::Ended;
                }
                Err(e) => panic!("[{}] TLS read error: {e}", self.nick),
            }
            if self.tcp_eof {
                self.end = Some(End::Eof);
                return Fill::Ended;
            }
            if let Fill::Timeout = self.receive(deadline) {
                return Fill::Timeout;
            }
        }
    }

    /// Reads one line without its CR LF; panics after [`LINE_TIMEOUT`] or at the end.
    pub fn read_line(&mut self) -> String {
        self.try_read_line(LINE_TIMEOUT)
            .unwrap_or_else(|why| panic!("{why}"))
    }

    /// Like [`TlsClient::read_line`], returning an error text instead of panicking.
    pub fn try_read_line(&mut self, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos + 2).take(pos).collect();
                return Ok(String::from_utf8(line).expect("UTF-8"));
            }
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Ended => {
                    return Err(format!(
                        "[{}] connection ended ({:?}) while waiting for a line; buffered: {:?}",
                        self.nick,
                        self.end,
                        String::from_utf8_lossy(&self.buf)
                    ));
                }
                Fill::Timeout => {
                    return Err(format!(
                        "[{}] no line within {timeout:?}; buffered: {:?}",
                        self.nick,
                        String::from_utf8_lossy(&self.buf)
                    ));
                }
            }
        }
    }

    #[track_caller]
    pub fn expect_line(&mut self, expected: &str) {
        let got = self.read_line();
        assert_eq!(got, expected, "[{}] unexpected line", self.nick);
    }

    /// Reads exactly the prompt.
    #[track_caller]
    pub fn expect_prompt(&mut self) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        while self.buf.len() < PROMPT.len() {
            if !matches!(self.fill(deadline), Fill::Data) {
                break;
            }
        }
        let n = PROMPT.len().min(self.buf.len());
        let got: Vec<u8> = self.buf.drain(..n).collect();
        assert_eq!(String::from_utf8_lossy(&got), PROMPT, "[{}]", self.nick);
    }

    /// Reads until the connection ends (within [`LINE_TIMEOUT`]); returns how it ended and
    /// the lines that came before.
    pub fn read_to_end(&mut self) -> (End, Vec<String>) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Ended => break,
                Fill::Timeout => panic!(
                    "[{}] still open after {LINE_TIMEOUT:?}; buffered: {:?}",
                    self.nick,
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
        let lines = rest.split_terminator("\r\n").map(str::to_string).collect();
        (self.end.expect("ended"), lines)
    }

    /// Asserts that the server ends the connection with close_notify and then a TCP close
    /// (FIN, not a reset); returns the lines that came before.
    #[track_caller]
    pub fn expect_tls_close(&mut self) -> Vec<String> {
        let (end, lines) = self.read_to_end();
        assert_eq!(end, End::CloseNotify, "[{}] lines {lines:?}", self.nick);
        let deadline = Instant::now() + LINE_TIMEOUT;
        while !self.tcp_eof {
            match self.receive(deadline) {
                Fill::Data => {}
                Fill::Timeout => panic!("[{}] no TCP close after close_notify", self.nick),
                Fill::Ended => panic!("[{}] {:?} after close_notify", self.nick, self.end),
            }
        }
        lines
    }

    /// Reads the banner (two lines) and the prompt.
    pub fn skip_banner(&mut self) {
        self.read_line();
        self.read_line();
        self.expect_prompt();
    }

    /// Asserts nothing is pending: a whisper to itself must be the next thing (see
    /// [`super::Client::expect_silence`]).
    #[track_caller]
    pub fn expect_silence(&mut self) {
        let nick = self.nick.clone();
        self.send_line(&format!("/w {nick} tls-sync"));
        let got = [self.read_line(), self.read_line()];
        let want = [
            format!("*{nick}* tls-sync"),
            format!("-> *{nick}* tls-sync"),
        ];
        assert!(
            got == want || got == [want[1].clone(), want[0].clone()],
            "[{nick}] expected only the probe's answer, got {got:?}"
        );
    }
}

/// Connects over TLS, reads the banner and logs in as `nick` in #lobby.
#[track_caller]
pub fn login(addr: SocketAddr, pki: &Pki, nick: &str) -> TlsClient {
    let mut c = TlsClient::connect(addr, pki.client_config());
    c.nick = nick.to_string();
    c.skip_banner();
    c.send_line(nick);
    c.expect_line(&format!("*** Welcome, {nick}! You are in #lobby."));
    c
}
