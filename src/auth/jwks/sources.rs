//! Where key sets come from: the [`KeySource`] interface and its implementations — HTTPS with
//! no redirects, no ambient proxy, verified TLS and a capped body ([`HttpSource`]), a local file
//! ([`FileSource`]) — and [`source_for`], which picks one for an issuer's configured location.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config;

/// Why a fetch did not produce a new key set. Names match `jwks_fetch_total{result}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("unexpected HTTP status {0}")]
    HttpStatus(u16),
    #[error("timed out")]
    Timeout,
    #[error("TLS error: {0}")]
    Tls(String),
    #[error("unparsable key set: {0}")]
    Parse(String),
    #[error("key set too large: {0}")]
    TooLarge(String),
    #[error("no usable RS256 keys in the key set")]
    Empty,
}

impl FetchError {
    pub fn result_label(&self) -> &'static str {
        match self {
            FetchError::Connect(_) => "connect",
            FetchError::HttpStatus(_) => "http_error",
            FetchError::Timeout => "timeout",
            FetchError::Tls(_) => "tls",
            FetchError::Parse(_) => "parse",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Empty => "empty",
        }
    }
}

/// Where key sets come from: an HTTPS endpoint in production, a file or a test double.
pub trait KeySource: Send + Sync + 'static {
    /// Fetch the raw JWKS document, at most `max_bytes` long.
    fn fetch(&self, max_bytes: u64) -> futures_core::future::BoxFuture<'_, Result<Bytes, FetchError>>;
}

/// Keys read from a local file (`jwks_file`), re-read on every refresh.
pub struct FileSource {
    pub path: std::path::PathBuf,
}

impl KeySource for FileSource {
    fn fetch(&self, max_bytes: u64) -> futures_core::future::BoxFuture<'_, Result<Bytes, FetchError>> {
        Box::pin(async move {
            let meta = tokio::fs::metadata(&self.path)
                .await
                .map_err(|e| FetchError::Connect(format!("{}: {e}", self.path.display())))?;
            if meta.len() > max_bytes {
                return Err(FetchError::TooLarge(format!("{} bytes", meta.len())));
            }
            let data = tokio::fs::read(&self.path)
                .await
                .map_err(|e| FetchError::Connect(format!("{}: {e}", self.path.display())))?;
            Ok(Bytes::from(data))
        })
    }
}

/// Keys fetched over HTTP(S). Redirects are not followed, ambient proxy variables are ignored,
/// TLS is verified against the webpki roots plus `ca_file`, and the body is capped.
pub struct HttpSource {
    url: String,
    client: reqwest::Client,
}

impl HttpSource {
    pub fn new(url: &str, jwks: &config::Jwks) -> Result<Self, String> {
        let builder = outbound_client(jwks, jwks.fetch_timeout.min(Duration::from_secs(2)), jwks.fetch_timeout)?;
        let client = builder.build().map_err(|e| format!("JWKS client: {e}"))?;
        Ok(HttpSource { url: url.to_owned(), client })
    }
}

/// The one way Portcullis builds an HTTP client to the outside (the JWKS fetch, the sign-in's
/// token and revoke endpoints): TLS verified against the webpki roots plus `jwks.ca_file` (a file
/// with no certificate is an error), redirects never followed (a redirect could carry a code or a
/// client secret to another host), ambient HTTP(S)_PROXY ignored — egress only through
/// `jwks.proxy` (SPEC §2) — and both timeouts set.
pub(crate) fn outbound_client(
    jwks: &config::Jwks,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<reqwest::ClientBuilder, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &jwks.ca_file {
        use rustls_pki_types::pem::PemObject;
        let pem = std::fs::read(ca).map_err(|e| format!("jwks.ca_file {}: {e}", ca.display()))?;
        let mut added = 0;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("jwks.ca_file {}: {e}", ca.display()))?;
            roots.add(cert).map_err(|e| format!("jwks.ca_file {}: {e}", ca.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("jwks.ca_file {}: no certificates found", ca.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
    if let Some(proxy) = &jwks.proxy {
        builder = builder.proxy(reqwest::Proxy::all(proxy).map_err(|e| format!("jwks.proxy: {e}"))?);
    }
    Ok(builder)
}

fn classify(e: &reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    // Walk the source chain: rustls errors surface as a connect error wrapping an io::Error.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return FetchError::Tls(s.to_string());
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            // `io::Error::source()` skips the error an io::Error wraps, and the connector nests
            // io::Errors (Other → InvalidData → rustls::Error): unwrap them by hand.
            let mut inner = io.get_ref();
            while let Some(e) = inner {
                if e.downcast_ref::<rustls::Error>().is_some() {
                    return FetchError::Tls(e.to_string());
                }
                inner = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
            }
            if io.kind() == std::io::ErrorKind::TimedOut {
                return FetchError::Timeout;
            }
        }
        source = s.source();
    }
    FetchError::Connect(e.to_string())
}

impl KeySource for HttpSource {
    fn fetch(&self, max_bytes: u64) -> futures_core::future::BoxFuture<'_, Result<Bytes, FetchError>> {
        Box::pin(async move {
            let mut response = self.client.get(&self.url).send().await.map_err(|e| classify(&e))?;
            let status = response.status();
            if status != reqwest::StatusCode::OK {
                return Err(FetchError::HttpStatus(status.as_u16()));
            }
            if response.content_length().is_some_and(|n| n > max_bytes) {
                return Err(FetchError::TooLarge(format!("Content-Length over {max_bytes}")));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
                if body.len() as u64 + chunk.len() as u64 > max_bytes {
                    return Err(FetchError::TooLarge(format!("body over {max_bytes} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Bytes::from(body))
        })
    }
}

/// Build the source for an issuer's key location.
pub fn source_for(location: &config::KeyLocation, jwks: &config::Jwks) -> Result<Box<dyn KeySource>, String> {
    Ok(match location {
        config::KeyLocation::Url(url) => Box::new(HttpSource::new(url, jwks)?),
        config::KeyLocation::File(path) => Box::new(FileSource { path: path.clone() }),
    })
}
