//! TLS of the gateway's calls to subgraphs: extra root certificates (a private CA) besides
//! the public ones, and a client certificate for subgraphs that ask for one (mutual TLS).
//! Every client is built with rustls, so `https://` URLs work with no system OpenSSL; the
//! `wss://` connections of subscriptions get the same roots and client certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key file was refused at start.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate reqwest accepts: {source}")]
    Certificate {
        path: String,
        source: reqwest::Error,
    },
    #[error("{cert} and {key} are not a PEM certificate chain and its private key: {source}")]
    Identity {
        cert: String,
        key: String,
        source: reqwest::Error,
    },
    #[error("a client certificate needs its key, and a key its certificate")]
    Incomplete,
    #[error("{path}: {reason} (for the WebSocket connections of subscriptions)")]
    WebSocket { path: String, reason: String },
}

/// Where the certificates come from. Default: public roots only, no client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// PEM file of CA certificates trusted in addition to the public roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to subgraphs.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// The loaded certificates, applied to every subgraph client.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    /// The same roots and client certificate for `wss://` subgraph subscriptions; `None`
    /// for the public roots only.
    websocket: Option<Arc<rustls::ClientConfig>>,
}

fn read(path: &Path) -> Result<Vec<u8>, ClientTlsError> {
    std::fs::read(path).map_err(|source| ClientTlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl ClientTls {
    pub fn load(files: &ClientTlsFiles) -> Result<Self, ClientTlsError> {
        let roots = match &files.ca_file {
            Some(path) => {
                reqwest::Certificate::from_pem_bundle(&read(path)?).map_err(|source| {
                    ClientTlsError::Certificate {
                        path: path.display().to_string(),
                        source,
                    }
                })?
            }
            None => Vec::new(),
        };
        let identity = match (&files.client_cert, &files.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                Some(reqwest::Identity::from_pem(&pem).map_err(|source| {
                    ClientTlsError::Identity {
                        cert: cert.display().to_string(),
                        key: key.display().to_string(),
                        source,
                    }
                })?)
            }
            (None, None) => None,
            _ => return Err(ClientTlsError::Incomplete),
        };
        let websocket = if files == &ClientTlsFiles::default() {
            None
        } else {
            Some(Arc::new(websocket_config_from(files)?))
        };
        Ok(Self {
            roots,
            identity,
            websocket,
        })
    }

    /// The TLS of `wss://` connections to subgraphs: the public roots, the extra roots and
    /// the client certificate, as for HTTP. `Err` only if rustls refuses its own defaults.
    pub(crate) fn websocket_config(&self) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        match &self.websocket {
            Some(config) => Ok(config.clone()),
            None => rustls_config(&[], None).map(Arc::new),
        }
    }

    /// `builder` with rustls, the extra roots and the client certificate.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let mut builder = builder.use_rustls_tls();
        for root in &self.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        builder
    }
}

/// The rustls client configuration of `files` (already checked by reqwest; read again as
/// rustls types, which reqwest does not hand out).
fn websocket_config_from(files: &ClientTlsFiles) -> Result<rustls::ClientConfig, ClientTlsError> {
    let refused = |path: &Path, reason: String| ClientTlsError::WebSocket {
        path: path.display().to_string(),
        reason,
    };
    let roots = match &files.ca_file {
        Some(path) => CertificateDer::pem_slice_iter(&read(path)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| refused(path, error.to_string()))?,
        None => Vec::new(),
    };
    let identity = match (&files.client_cert, &files.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| refused(cert, error.to_string()))?;
            let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|error| refused(key, error.to_string()))?;
            Some((chain, key_der))
        }
        _ => None,
    };
    let origin = files
        .ca_file
        .as_deref()
        .or(files.client_cert.as_deref())
        .unwrap_or(Path::new("the TLS settings"));
    rustls_config(&roots, identity).map_err(|error| refused(origin, error.to_string()))
}

/// The public roots and `extra_roots`, and the client certificate when there is one.
fn rustls_config(
    extra_roots: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra_roots {
        roots.add(root.clone())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key),
        None => Ok(builder.with_no_client_auth()),
    }
}
