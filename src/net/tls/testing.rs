//! Test certificates (made with rcgen in a temporary directory) and a rustls client config.

use super::load_server_config;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, SupportedProtocolVersion,
};
use std::path::PathBuf;
use std::sync::Arc;

/// A CA, a server certificate for `localhost` signed by it, their keys, and a directory for
/// files made from them.
pub(crate) struct TestPki {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca_pem: String,
    ca_der: CertificateDer<'static>,
    pub(crate) leaf_pem: String,
    pub(crate) leaf_key: KeyPair,
    pub(crate) ca_key: KeyPair,
}

impl TestPki {
    pub(crate) fn new() -> TestPki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct names: OpenSSL takes a certificate whose issuer is its own subject for a root.
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "natter test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        TestPki {
            dir: tempfile::tempdir().unwrap(),
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            leaf_pem: leaf.pem(),
            leaf_key,
            ca_key,
        }
    }

    /// Writes `contents` to `name` in the directory.
    pub(crate) fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The server's chain file (certificate, then the CA).
    pub(crate) fn chain_file(&self) -> PathBuf {
        self.file("chain.pem", format!("{}{}", self.leaf_pem, self.ca_pem))
    }

    /// The server's key file.
    pub(crate) fn key_file(&self) -> PathBuf {
        self.file("key.pem", self.leaf_key.serialize_pem())
    }

    /// A server config loaded from files, as the server does it.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        load_server_config(&self.chain_file(), &self.key_file()).unwrap()
    }

    /// A client trusting the CA and speaking only `version`.
    pub(crate) fn client(&self, version: &'static SupportedProtocolVersion) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        ClientConnection::new(Arc::new(config), name).unwrap()
    }
}
