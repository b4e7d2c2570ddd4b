//! Loads the certificate chain and private key into a rustls [`ServerConfig`].
//!
//! Called once before anything is bound, and again on SIGHUP: every call builds a new
//! `Arc<ServerConfig>`; connections made with an older one keep it.

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Why the certificate or key could not be used. Every message names the file as it was given.
#[derive(Debug, Error)]
pub enum TlsConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file as given.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The file is not valid PEM.
    #[error("{}: not valid PEM: {reason}", .path.display())]
    BadPem {
        /// The file as given.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The file holds binary DER where PEM was expected.
    #[error(
        "{}: this looks like DER (binary), not PEM; convert it with: openssl {tool} -inform der -in {} -out {out}",
        .path.display(), .path.display()
    )]
    Der {
        /// The file as given.
        path: PathBuf,
        /// `x509` for a certificate, `pkey` for a key.
        tool: &'static str,
        /// Suggested output file name.
        out: &'static str,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no certificate found (expected a PEM block '-----BEGIN CERTIFICATE-----')", .path.display())]
    NoCertificate {
        /// The file as given.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error(
        "{}: no private key found (expected a PEM private key: PKCS#8, SEC1 or PKCS#1)",
        .path.display()
    )]
    NoKey {
        /// The file as given.
        path: PathBuf,
    },
    /// The key is protected by a passphrase.
    #[error(
        "{}: the private key is encrypted; natter needs it unencrypted: openssl pkey -in {} -out key.pem",
        .path.display(), .path.display()
    )]
    EncryptedKey {
        /// The file as given.
        path: PathBuf,
    },
    /// The key could not be used for signing (unsupported type or malformed).
    #[error(
        "{}: unusable private key ({reason}); use an ECDSA P-256, Ed25519 or RSA key",
        .path.display()
    )]
    BadKey {
        /// The file as given.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The first certificate could not be parsed.
    #[error("{}: the server's certificate cannot be parsed: {reason}", .path.display())]
    BadCertificate {
        /// The file as given.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The key belongs to no certificate in the chain.
    #[error(
        "the private key in {} does not belong to the certificate in {}",
        .key.display(), .cert.display()
    )]
    KeyMismatch {
        /// The certificate file as given.
        cert: PathBuf,
        /// The key file as given.
        key: PathBuf,
    },
    /// The key belongs to a later certificate: the chain is in the wrong order.
    #[error(
        "{}: the chain must start with the server's certificate, but the private key in {} \
         belongs to certificate number {position} in the file; put that one first",
        .cert.display(), .key.display()
    )]
    ChainOrder {
        /// The certificate file as given.
        cert: PathBuf,
        /// The key file as given.
        key: PathBuf,
        /// 1-based position of the certificate the key belongs to.
        position: usize,
    },
    /// rustls refused the protocol settings (not expected with the built-in provider).
    #[error("cannot set up TLS: {0}")]
    Rustls(rustls::Error),
}

/// Loads `cert` (PEM: the server's certificate first, then any intermediates) and `key` (PEM:
/// PKCS#8, SEC1 or PKCS#1) and builds the server configuration: ring as the crypto provider,
/// TLS 1.2 and 1.3, no client authentication, no session tickets and no session cache.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = load_chain(cert)?;
    let key_der = load_key(key)?;
    let certified = certify(&provider, chain, key_der, cert, key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsConfigError::Rustls)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    // Resumption buys nothing for a chat and would hold memory per session.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Reads the certificate chain, in file order.
fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bytes = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, e))?;
    if chain.is_empty() {
        if looks_like_der(&bytes) {
            return Err(TlsConfigError::Der {
                path: path.to_owned(),
                tool: "x509",
                out: "cert.pem",
            });
        }
        return Err(TlsConfigError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// Reads the first private key in the file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let bytes = read(path)?;
    // Checked first: a legacy encrypted PKCS#1 block would otherwise fail as bad base64.
    if is_encrypted_key(&bytes) {
        return Err(TlsConfigError::EncryptedKey {
            path: path.to_owned(),
        });
    }
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) if looks_like_der(&bytes) => {
            Err(TlsConfigError::Der {
                path: path.to_owned(),
                tool: "pkey",
                out: "key.pem",
            })
        }
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsConfigError::NoKey {
            path: path.to_owned(),
        }),
        Err(e) => Err(bad_pem(path, e)),
    }
}

/// Pairs the key with the chain, checking that it belongs to the first certificate.
fn certify(
    provider: &CryptoProvider,
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, TlsConfigError> {
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsConfigError::BadKey {
            path: key.to_owned(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => return Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => {}
        Err(e) => {
            return Err(TlsConfigError::BadCertificate {
                path: cert.to_owned(),
                reason: e.to_string(),
            });
        }
    }
    // Does the key belong to a later certificate? Then the chain is merely out of order.
    let later = certified.cert.iter().enumerate().skip(1).find(|(_, c)| {
        CertifiedKey::new(vec![(*c).clone()], certified.key.clone())
            .keys_match()
            .is_ok()
    });
    Err(match later {
        Some((index, _)) => TlsConfigError::ChainOrder {
            cert: cert.to_owned(),
            key: key.to_owned(),
            position: index + 1,
        },
        None => TlsConfigError::KeyMismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        },
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

fn bad_pem(path: &Path, error: rustls_pki_types::pem::Error) -> TlsConfigError {
    TlsConfigError::BadPem {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

/// PKCS#8 `ENCRYPTED PRIVATE KEY` blocks, or OpenSSL's legacy `Proc-Type: 4,ENCRYPTED` header.
fn is_encrypted_key(bytes: &[u8]) -> bool {
    contains(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(bytes, b"Proc-Type: 4,ENCRYPTED")
}

/// DER files are one ASN.1 SEQUENCE (0x30) and have no PEM armour.
fn looks_like_der(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x30) && !contains(bytes, b"-----BEGIN ")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests;
