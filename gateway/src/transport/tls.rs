//! TLS of the gateway's calls to subgraphs: extra root certificates (a private CA) besides
//! the public ones, and a client certificate for subgraphs that ask for one (mutual TLS).
//! Every client is built with rustls, so `https://` URLs work with no system OpenSSL.

use std::path::{Path, PathBuf};

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
        Ok(Self { roots, identity })
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
