use super::*;
use crate::net::tls::testing::TestPki;

/// Loads and returns the error, checking that its message names every file given in `names`.
fn load_err(cert: &Path, key: &Path, names: &[&Path]) -> TlsConfigError {
    let err = load_server_config(cert, key).expect_err("the load should fail");
    let message = err.to_string();
    for name in names {
        assert!(
            message.contains(&name.display().to_string()),
            "{message:?} does not name {}",
            name.display()
        );
    }
    err
}

#[test]
fn a_good_pair_loads_without_resumption() {
    let _fds = crate::net::test_fds::opening();
    let pki = TestPki::new();
    let config = load_server_config(&pki.chain_file(), &pki.key_file()).unwrap();
    assert_eq!(config.send_tls13_tickets, 0);
    assert!(!config.session_storage.can_cache());
    assert!(!config.ticketer.enabled());
}

#[test]
fn a_missing_file_is_named_with_the_reason() {
    let _fds = crate::net::test_fds::opening();
    let pki = TestPki::new();
    let missing = pki.dir.path().join("nope.pem");
    let err = load_err(&missing, &pki.key_file(), &[&missing]);
    assert!(matches!(err, TlsConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("No such file"), "{err}");
}

#[test]
fn an_encrypted_pkcs8_key_gets_the_openssl_hint() {
    let _fds = crate::net::test_fds::opening();
    let pki = TestPki::new();
    let key = pki.file(
        "enc.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let err = load_err(&pki.chain_file(), &key, &[&key]);
    assert!(
        matches!(err, TlsConfigError::EncryptedKey { .. }),
        "{err:?}"
    );
    let hint = format!("openssl pkey -in {} -out key.pem", key.display());
    assert!(err.to_string().contains(&hint), "{err}");
}

#[test]
fn a_legacy_encrypted_rsa_key_gets_the_openssl_hint() {
    let _fds = crate::net::test_fds::opening();
    let pki = TestPki::new();
    let key = pki.file(
        "legacy.pem",
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    );
    let err = load_err(&pki.chain_file(), &key, &[&key]);
    assert!(
        matches!(err, TlsConfigError::EncryptedKey { .. }),
        "{err:?}"
    );
}

#[test]
fn der_files_get_a_conversion_hint() {
    let _fds = crate::net::test_fds::opening();
    let pki = TestPki::new();
    let leaf_der = CertificateDer::from_pem_slice(pki.leaf_pem.as_bytes()).unwrap();
    let cert_der = pki.file("cert.der", leaf_der.as_ref());
    let err = load_err(&cert_der, &pki.key_file(), &[&cert_der]);
    assert!(
        matches!(err, TlsConfigError::Der { tool: "x509", .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("openssl x509 -inform der"),
        "{err}"
    );

    let key_der = pki.file("key.der", pki.leaf_key.serialize_der());
    let err = load_err(&pki.chain_file(), &key_der, &[&key_der]);
    assert!(
        matches!(err, TlsConfigError::Der { tool: "pkey", .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("openssl pkey -inform der"),
        "{err}"
    );
}

#[test]
fn files_swapped_or_empty_say_what_is_missing() {
    let _fds = crate::net::test_fds::opening();
    let pki = TestPki::new();
    let (chain, key) = (pki.chain_file(), pki.key_file());
    let err = load_err(&key, &key, &[&key]);
    assert!(
        matches!(err, TlsConfigError::NoCertificate { .. }),
        "{err:?}"
    );
    let err = load_err(&chain, &chain, &[&chain]);
    assert!(matches!(err, TlsConfigError::NoKey { .. }), "{err:?}");
    let empty = pki.file("empty.pem", "");
    let err = load_err(&empty, &key, &[&empty]);
    assert!(
        matches!(err, TlsConfigError::NoCertificate { .. }),
        "{err:?}"
    );
}

#[test]
fn broken_pem_is_reported() {
    let _fds = crate::net::test_fds::opening();
    let pki = TestPki::new();
    let cert = pki.file(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
    );
    let err = load_err(&cert, &pki.key_file(), &[&cert]);
    assert!(matches!(err, TlsConfigError::BadPem { .. }), "{err:?}");
    let truncated = pki.file("truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let err = load_err(&truncated, &pki.key_file(), &[&truncated]);
    assert!(matches!(err, TlsConfigError::BadPem { .. }), "{err:?}");
}

#[test]
fn a_key_that_is_not_a_key_is_reported() {
    let _fds = crate::net::test_fds::opening();
    let pki = TestPki::new();
    let key = pki.file(
        "junk.pem",
        "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n",
    );
    let err = load_err(&pki.chain_file(), &key, &[&key]);
    assert!(matches!(err, TlsConfigError::BadKey { .. }), "{err:?}");
}

#[test]
fn a_key_of_another_certificate_names_both_files() {
    let _fds = crate::net::test_fds::opening();
    let pki = TestPki::new();
    let chain = pki.chain_file();
    let other = pki.file(
        "other.pem",
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    );
    let err = load_err(&chain, &other, &[&chain, &other]);
    assert!(matches!(err, TlsConfigError::KeyMismatch { .. }), "{err:?}");
}

#[test]
fn a_chain_that_does_not_start_with_the_server_certificate_is_named() {
    let _fds = crate::net::test_fds::opening();
    let pki = TestPki::new();
    // The CA's key with the usual chain: it belongs to the second certificate.
    let chain = pki.chain_file();
    let ca_key = pki.file("ca-key.pem", pki.ca_key.serialize_pem());
    let err = load_err(&chain, &ca_key, &[&chain, &ca_key]);
    assert!(
        matches!(err, TlsConfigError::ChainOrder { position: 2, .. }),
        "{err:?}"
    );
    // The chain written in the wrong order, with the server's key.
    let reversed = pki.file("reversed.pem", format!("{}{}", pki.ca_pem, pki.leaf_pem));
    let key = pki.key_file();
    let err = load_err(&reversed, &key, &[&reversed, &key]);
    assert!(
        matches!(err, TlsConfigError::ChainOrder { position: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("certificate number 2"), "{err}");
}

#[test]
fn loading_again_gives_a_new_config() {
    let _fds = crate::net::test_fds::opening();
    let pki = TestPki::new();
    let first = load_server_config(&pki.chain_file(), &pki.key_file()).unwrap();
    let second = load_server_config(&pki.chain_file(), &pki.key_file()).unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
}
