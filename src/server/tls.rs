//! TLS for the listener: rustls with HTTP/2 and HTTP/1.1 by ALPN, and optional mutual TLS.
//!
//! With `server.client_ca` set, clients *may* present a certificate from that CA (researchers'
//! browsers and scripts need none); a presented certificate must verify, and its thumbprint
//! becomes part of the principal so that habilitations can require certificate-bound tokens.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Why the TLS material could not be used. Paths are named: this is for the operator.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {file}: {reason}")]
    Read { file: String, reason: String },
    #[error("{0}: no PEM certificate found")]
    NoCertificate(String),
    #[error("{0}: no PEM private key found")]
    NoKey(String),
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        file: path.display().to_string(),
        reason: e.kind().to_string(),
    })
}

pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey(path.display().to_string()))
}

/// Builds the rustls server configuration from the `[server]` section.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, TlsError> {
    crate::install_crypto_provider();
    let chain = load_certificates(cert)?;
    let key = load_key(key)?;
    let builder = rustls::ServerConfig::builder();
    let mut config = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Rustls(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    }
    .with_single_cert(chain, key)
    .map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
