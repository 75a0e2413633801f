//! Serving over TLS: a certificate chain and its private key from PEM files, HTTP/2 and
//! HTTP/1.1 offered by ALPN (`h2` first). The handshake runs inside the connection's own
//! task, under [`ServerLimits::tls_handshake_timeout`](super::ServerLimits), so a client
//! that opens a connection and never finishes the handshake holds its slot no longer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the server's certificate or key was refused at start.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} is not a PEM certificate chain: {reason}")]
    Certificate { path: String, reason: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    Key { path: String, reason: String },
    #[error("the certificate {cert} and the key {key} do not make a usable pair: {reason}")]
    Pair {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("a server certificate needs its key, and a key its certificate")]
    Incomplete,
}

/// Where the server's certificate and key come from (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// PEM certificate chain, the server's own certificate first.
    pub cert: Option<PathBuf>,
    /// PEM private key of the first certificate.
    pub key: Option<PathBuf>,
}

/// The protocols offered by ALPN, most preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A loaded certificate and key, ready to accept TLS connections.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ServerTlsError> {
    std::fs::read(path).map_err(|source| ServerTlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl ServerTls {
    /// The TLS settings of `files`: `None` when neither is set (plain HTTP), an error when
    /// only one is, or when they do not load.
    pub fn load(files: &ServerTlsFiles) -> Result<Option<Self>, ServerTlsError> {
        match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => Self::from_files(cert, key).map(Some),
            (None, None) => Ok(None),
            _ => Err(ServerTlsError::Incomplete),
        }
    }

    fn from_files(cert_path: &Path, key_path: &Path) -> Result<Self, ServerTlsError> {
        let shown = |path: &Path| path.display().to_string();
        let chain = CertificateDer::pem_slice_iter(&read(cert_path)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| ServerTlsError::Certificate {
                path: shown(cert_path),
                reason: error.to_string(),
            })?;
        if chain.is_empty() {
            return Err(ServerTlsError::NoCertificate {
                path: shown(cert_path),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&read(key_path)?).map_err(|error| {
            ServerTlsError::Key {
                path: shown(key_path),
                reason: error.to_string(),
            }
        })?;
        let pair = |reason: String| ServerTlsError::Pair {
            cert: shown(cert_path),
            key: shown(key_path),
            reason,
        };
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| pair(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| pair(error.to_string()))?;
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn neither_file_means_plain_http() {
        assert!(
            ServerTls::load(&ServerTlsFiles::default())
                .expect("loads")
                .is_none()
        );
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let files = ServerTlsFiles {
            cert: Some("cert.pem".into()),
            key: None,
        };
        assert!(matches!(
            ServerTls::load(&files),
            Err(ServerTlsError::Incomplete)
        ));
    }

    #[test]
    fn files_that_are_not_pem_are_refused_with_their_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = write(dir.path(), "cert.pem", "not a certificate");
        let key = write(dir.path(), "key.pem", "not a key");
        let files = ServerTlsFiles {
            cert: Some(cert),
            key: Some(key),
        };
        let error = ServerTls::load(&files).expect_err("refused");
        assert!(
            matches!(error, ServerTlsError::NoCertificate { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("cert.pem"), "{error}");
    }
}
