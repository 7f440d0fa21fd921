//! How the edge reaches the control plane: its URL and, for `https://`, the TLS it speaks. The
//! snapshots on this link carry decrypted provider keys, so an `https://` URL without a CA to
//! trust is refused at start rather than spoken in cleartext, and TLS settings on an `http://`
//! URL are refused rather than silently unused.

use std::path::Path;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid control plane URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error(
        "{url} is https:// but no CA to trust is configured: pass --control-plane-ca (the PEM file that signed the control plane's certificate)"
    )]
    HttpsWithoutTls { url: String },
    #[error("TLS options are set but {url} is plain http://; use https://")]
    TlsOnPlaintext { url: String },
    #[error("--tls-cert and --tls-key go together (the edge's client certificate for mTLS)")]
    HalfIdentity,
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// The PEM files an edge may be given for the link.
#[derive(Debug, Clone, Default)]
pub struct LinkTlsFiles<'a> {
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
}

#[derive(Debug, Clone)]
pub struct ControlPlaneLink {
    url: String,
    tls: Option<ClientTlsConfig>,
}

impl ControlPlaneLink {
    /// A link checked for a consistent scheme and TLS setup, with the PEM files read once.
    pub fn new(url: &str, files: &LinkTlsFiles<'_>) -> Result<Self, LinkError> {
        let parsed = url::Url::parse(url).map_err(|err| LinkError::Url {
            url: url.to_owned(),
            reason: err.to_string(),
        })?;
        let wants_tls = files.ca.is_some() || files.cert.is_some() || files.key.is_some();
        match parsed.scheme() {
            "http" if wants_tls => Err(LinkError::TlsOnPlaintext {
                url: url.to_owned(),
            }),
            "http" => Ok(Self::plaintext(url)),
            "https" => {
                let Some(ca) = files.ca else {
                    return Err(LinkError::HttpsWithoutTls {
                        url: url.to_owned(),
                    });
                };
                let mut tls =
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
                match (files.cert, files.key) {
                    (Some(cert), Some(key)) => {
                        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
                    }
                    (None, None) => {}
                    _ => return Err(LinkError::HalfIdentity),
                }
                Ok(Self {
                    url: url.to_owned(),
                    tls: Some(tls),
                })
            }
            other => Err(LinkError::Url {
                url: url.to_owned(),
                reason: format!("scheme {other}:// is neither http:// nor https://"),
            }),
        }
    }

    /// A cleartext link (`http://`), as tests and single-host setups use.
    pub fn plaintext(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            tls: None,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// An endpoint with the link's TLS and the timeouts every client of the plane uses.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|err| err.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|err| err.to_string())?;
        }
        Ok(endpoint)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LinkError> {
    std::fs::read(path).map_err(|source| LinkError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_needs_a_ca_and_http_refuses_tls_options() {
        let none = LinkTlsFiles::default();
        assert!(matches!(
            ControlPlaneLink::new("https://plane:8051", &none),
            Err(LinkError::HttpsWithoutTls { .. })
        ));
        let ca = LinkTlsFiles {
            ca: Some(Path::new("/nonexistent/ca.pem")),
            ..LinkTlsFiles::default()
        };
        assert!(matches!(
            ControlPlaneLink::new("http://plane:8051", &ca),
            Err(LinkError::TlsOnPlaintext { .. })
        ));
        assert!(ControlPlaneLink::new("http://plane:8051", &none).is_ok());
        assert!(matches!(
            ControlPlaneLink::new("ftp://plane", &none),
            Err(LinkError::Url { .. })
        ));
    }
}
