//! How the CLI and workers reach a coordinator: its URL, the bearer token
//! every call carries, and the certificate authority that signed its TLS
//! certificate.

use std::path::PathBuf;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

/// Why a coordinator could not be addressed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL does not parse.
    #[error("coordinator URL {url:?}: {source}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it does not parse.
        source: tonic::transport::Error,
    },
    /// A CA file for a plaintext URL.
    #[error("--tls-ca needs an https:// coordinator URL, not {0:?}")]
    CaWithoutTls(String),
    /// The CA file could not be read.
    #[error("reading the TLS CA {path}: {source}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The TLS settings were refused.
    #[error("TLS for {url}: {source}")]
    Tls {
        /// The URL.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// A token that cannot be sent as a header.
    #[error("the token is not printable ASCII")]
    Token,
    /// Nothing answered at the URL, or the TLS handshake failed.
    #[error("connecting to the coordinator at {url}: {source}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
}

/// Where a coordinator is and how to prove who we are.
#[derive(Debug, Clone, Default)]
pub struct Coordinator {
    /// `http://HOST:PORT`, or `https://HOST:PORT` for TLS.
    pub url: String,
    /// The bearer token every call carries, if any.
    pub token: Option<String>,
    /// A PEM file of the CA that signed the coordinator's certificate;
    /// without it an https URL is checked against the system's roots.
    pub tls_ca: Option<PathBuf>,
}

/// Puts `authorization: Bearer TOKEN` on every call.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry the token.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

impl Coordinator {
    /// The endpoint, with TLS for an https URL.
    pub fn endpoint(&self) -> Result<Endpoint, ConnectError> {
        let endpoint =
            Endpoint::from_shared(self.url.clone()).map_err(|source| ConnectError::Url {
                url: self.url.clone(),
                source,
            })?;
        if !self.url.starts_with("https://") {
            return match self.tls_ca {
                Some(_) => Err(ConnectError::CaWithoutTls(self.url.clone())),
                None => Ok(endpoint),
            };
        }
        let tls = match &self.tls_ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| ConnectError::Ca {
                    path: path.clone(),
                    source,
                })?;
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint
            .tls_config(tls)
            .map_err(|source| ConnectError::Tls {
                url: self.url.clone(),
                source,
            })
    }

    /// The interceptor that adds the token (none for an empty one).
    pub fn bearer(&self) -> Result<BearerToken, ConnectError> {
        self.token
            .as_ref()
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                format!("Bearer {}", t.trim())
                    .parse()
                    .map_err(|_| ConnectError::Token)
            })
            .transpose()
            .map(BearerToken)
    }

    /// A channel that connects on first use (and reconnects), with the
    /// token on every call.
    pub fn lazy(&self) -> Result<AuthChannel, ConnectError> {
        Ok(InterceptedService::new(
            self.endpoint()?.connect_lazy(),
            self.bearer()?,
        ))
    }

    /// A channel connected now, with the token on every call.
    pub async fn connect(&self) -> Result<AuthChannel, ConnectError> {
        let bearer = self.bearer()?;
        let channel =
            self.endpoint()?
                .connect()
                .await
                .map_err(|source| ConnectError::Unreachable {
                    url: self.url.clone(),
                    source,
                })?;
        Ok(InterceptedService::new(channel, bearer))
    }
}
