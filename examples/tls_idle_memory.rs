//! Measures the memory an idle TLS connection holds on the server side after its handshake and
//! one line each way: `cargo run --example tls_idle_memory [CONNECTIONS [tls12]]` (default 5000
//! connections over TLS 1.3).
//!
//! Each connection handshakes in memory with a rustls client (P-256 certificate),
//! which is then dropped, so its memory is reused by the next one; what stays is the
//! server's `TlsConn`. The figure is the growth of RssAnon divided by the count, so it
//! includes the allocator's overhead. The kernel's socket memory is not part of it.

use natter::net::tls::{Input, MAX_RECORD_LEN, TlsConn, load_server_config};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

/// One direction of bytes each way, as a socket would carry them.
#[derive(Default)]
struct Pipe {
    to_server: VecDeque<u8>,
    to_client: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.to_server.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.to_server.len());
        for (dst, src) in buf.iter_mut().zip(self.to_server.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.to_client.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 5000,
    };
    let tls12 = std::env::args().nth(2).as_deref() == Some("tls12");
    let dir = tempfile::tempdir()?;
    let (server_config, client_config) = configs(dir.path(), tls12)?;
    let mut scratch = vec![0; MAX_RECORD_LEN];
    let mut shared = Vec::new();
    let mut conns: Vec<Box<TlsConn>> = Vec::with_capacity(count);
    // One connection first, so lazily made process-wide state is not counted.
    let mut warm = Box::new(TlsConn::new(server_config.clone())?);
    connect(&mut warm, &client_config, &mut scratch, &mut shared)?;
    let before = rss_anon_kb()?;
    for _ in 0..count {
        let mut conn = Box::new(TlsConn::new(server_config.clone())?);
        connect(&mut conn, &client_config, &mut scratch, &mut shared)?;
        conns.push(conn);
    }
    let after = rss_anon_kb()?;
    let buffers: usize = conns.iter().map(|c| c.buffer_capacity()).sum();
    let version = if tls12 { "TLS 1.2" } else { "TLS 1.3" };
    println!("idle {version} connections: {count}");
    println!(
        "size_of::<TlsConn>(): {} bytes",
        std::mem::size_of::<TlsConn>()
    );
    println!("adapter buffers held by all of them: {buffers} bytes");
    println!(
        "RssAnon growth: {} KiB, {:.0} bytes per connection",
        after - before,
        (after - before) as f64 * 1024.0 / count as f64
    );
    Ok(())
}

/// Handshakes `conn` with a fresh client and sends one line each way.
fn connect(
    conn: &mut TlsConn,
    client_config: &Arc<ClientConfig>,
    scratch: &mut [u8],
    shared: &mut Vec<u8>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut client =
        ClientConnection::new(client_config.clone(), ServerName::try_from("localhost")?)?;
    let mut pipe = Pipe::default();
    let mut received = Vec::new();
    client.writer().write_all(b"alice\r\n")?;
    for _ in 0..10 {
        while client.wants_write() {
            let mut out = Vec::new();
            client.write_tls(&mut out)?;
            pipe.to_server.extend(out);
        }
        while let Input::Data(_) = conn
            .read(&mut pipe, scratch, shared, |p| {
                received.extend_from_slice(p)
            })?
            .input
        {}
        if !conn.is_handshaking() {
            conn.write(
                &mut pipe,
                &[IoSlice::new(b"*** Welcome, alice!\r\n")],
                shared,
            )?;
        }
        let bytes = std::mem::take(&mut pipe.to_client);
        client.read_tls(&mut &bytes[..])?;
        let state = client.process_new_packets()?;
        if state.plaintext_bytes_to_read() > 0 && received == b"alice\r\n" {
            return Ok(());
        }
    }
    Err("the exchange did not complete".into())
}

/// A CA and a P-256 server certificate for localhost, loaded as the server loads them.
fn configs(
    dir: &std::path::Path,
    tls12: bool,
) -> Result<(Arc<rustls::ServerConfig>, Arc<ClientConfig>), Box<dyn std::error::Error>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL takes a certificate whose issuer is its own subject for a root.
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "natter test CA");
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_string()])?
        .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, format!("{}{}", leaf.pem(), ca.pem()))?;
    std::fs::write(&key_path, key.serialize_pem())?;
    let server = load_server_config(&cert_path, &key_path)?;
    let versions: &[&rustls::SupportedProtocolVersion] = match tls12 {
        true => &[&rustls::version::TLS12],
        false => &[&rustls::version::TLS13],
    };
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let client =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok((server, Arc::new(client)))
}

fn rss_anon_kb() -> Result<i64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .ok_or("no RssAnon in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("bad RssAnon line")?
        .parse()?)
}
