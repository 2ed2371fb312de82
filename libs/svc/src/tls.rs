//! TLS for gRPC servers and clients (rustls through tonic), from PEM files named in config.
//!
//! A server given a certificate and key serves TLS only (a plaintext client gets a handshake
//! error, not an answer); given a client CA as well, it requires client certificates signed
//! by it (mTLS). A client trusts the CA it is given; an `https://` endpoint without one is a
//! configuration error rather than a silent fallback to system roots.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// TLS configuration errors; each names the file or flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Flags that only make sense together.
    #[error("{0}")]
    Incomplete(String),
    /// tonic refused the configuration.
    #[error("invalid TLS configuration for {endpoint}: {reason}")]
    Invalid {
        /// The endpoint or listener.
        endpoint: String,
        /// tonic's reason.
        reason: String,
    },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// A server's certificate, key and (for mTLS) client CA.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// PEM certificate chain this service presents; with `--tls-key`, TLS is on.
    #[arg(id = "tls-cert", long = "tls-cert", env = "TENANTRY_TLS_CERT")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert` (a path: the key itself never goes in a flag).
    #[arg(id = "tls-key", long = "tls-key", env = "TENANTRY_TLS_KEY")]
    pub key: Option<PathBuf>,
    /// PEM CA whose client certificates are required (mTLS); needs `--tls-cert`.
    #[arg(
        id = "tls-client-ca",
        long = "tls-client-ca",
        env = "TENANTRY_TLS_CLIENT_CA"
    )]
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsArgs {
    /// The server TLS config, `None` when TLS is off.
    pub fn load(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        let (cert, key) = match (&self.cert, &self.key) {
            (None, None) => {
                if self.client_ca.is_some() {
                    return Err(TlsError::Incomplete(
                        "--tls-client-ca needs --tls-cert and --tls-key".into(),
                    ));
                }
                return Ok(None);
            }
            (Some(c), Some(k)) => (c, k),
            _ => {
                return Err(TlsError::Incomplete(
                    "--tls-cert and --tls-key go together".into(),
                ));
            }
        };
        let identity = Identity::from_pem(read("certificate", cert)?, read("key", key)?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
        }
        Ok(Some(config))
    }

    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        self.cert.is_some()
    }
}

/// What a client trusts and (for mTLS) presents.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientTlsArgs {
    /// PEM CA that signs the certificates of the services this one calls (`https://` URLs).
    #[arg(id = "tls-ca", long = "tls-ca", env = "TENANTRY_TLS_CA")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate presented to services that require mTLS.
    #[arg(
        id = "tls-client-cert",
        long = "tls-client-cert",
        env = "TENANTRY_TLS_CLIENT_CERT"
    )]
    pub cert: Option<PathBuf>,
    /// PEM key of `--tls-client-cert`.
    #[arg(
        id = "tls-client-key",
        long = "tls-client-key",
        env = "TENANTRY_TLS_CLIENT_KEY"
    )]
    pub key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// Reads the files once.
    pub fn load(&self) -> Result<ClientTls, TlsError> {
        let ca = self
            .ca
            .as_deref()
            .map(|p| read("CA certificate", p))
            .transpose()?;
        let identity = match (&self.cert, &self.key) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((read("client certificate", c)?, read("client key", k)?)),
            _ => {
                return Err(TlsError::Incomplete(
                    "--tls-client-cert and --tls-client-key go together".into(),
                ));
            }
        };
        Ok(ClientTls { ca, identity })
    }
}

/// Loaded client TLS material; [`ClientTls::endpoint`] applies it to `https://` URLs.
#[derive(Clone, Default)]
pub struct ClientTls {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca.is_some())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Trusting `ca_pem`, presenting no client certificate.
    pub fn with_ca(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self {
            ca: Some(ca_pem.into()),
            identity: None,
        }
    }

    /// The same, presenting a client certificate (mTLS).
    pub fn with_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// An endpoint for `url`: TLS for `https://` (which then needs a CA), plaintext for
    /// `http://`.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TlsError> {
        let invalid = |reason: String| TlsError::Invalid {
            endpoint: url.to_owned(),
            reason,
        };
        let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| invalid(e.to_string()))?;
        if !url.starts_with("https://") {
            return Ok(endpoint);
        }
        let Some(ca) = &self.ca else {
            return Err(TlsError::Incomplete(format!(
                "{url} is https: give the CA that signs its certificate (--tls-ca or TENANTRY_TLS_CA)"
            )));
        };
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        endpoint
            .tls_config(config)
            .map_err(|e| invalid(e.to_string()))
    }
}
