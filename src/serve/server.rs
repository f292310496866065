//! One proxy connection, from accept to close: optional TLS termination (rustls; the
//! certificate is swappable at run time through [`CertStore`]), HTTP/1.1 and HTTP/2 (ALPN or
//! prior knowledge) through hyper-util's auto builder with header-size, header-count and
//! header-read-time limits, lingering close (`linger`), and graceful drain. The accept loops,
//! connection cap and EMFILE back-off are `percore`'s (one listener per core). Does not look at
//! requests: each one goes to `proxy::pipeline::handle`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use crate::config::{self, Config};
use crate::proxy::decision::Conn;
use crate::proxy::pipeline;
use crate::proxy::runtime::Shared;
use crate::serve::linger::Linger;

/// Listener settings fixed when the proxy port is bound (a reload cannot change them in place).
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub grace: Duration,
}

impl From<&Config> for ListenerSettings {
    fn from(c: &Config) -> Self {
        ListenerSettings {
            header_read_timeout: c.limits.header_read_timeout,
            max_header_bytes: c.limits.max_header_bytes,
            max_connections: c.limits.max_connections,
            grace: c.shutdown.grace,
        }
    }
}

/// Bind with `SO_REUSEADDR` so a restarted sidecar can rebind at once.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The serving certificate and key, swapped whole when the files change (SPEC §2 `tls`: reloaded
/// like the config). Each new handshake takes the current pair; established connections keep
/// the one they were made with.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn load(t: &config::Tls) -> Result<Arc<CertStore>, String> {
        Ok(Arc::new(CertStore { current: ArcSwap::from_pointee(load_certified_key(t)?) }))
    }

    /// Install a pair made by [`load_certified_key`] (already checked to match).
    pub fn store(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    /// The end-entity certificate currently served (DER).
    pub fn current_cert(&self) -> Vec<u8> {
        self.current.load().cert.first().map(|c| c.as_ref().to_vec()).unwrap_or_default()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Read `cert_file` and `key_file` and check that the key belongs to the first certificate, so
/// a half-finished rotation (new cert, old key) is refused instead of served.
pub fn load_certified_key(t: &config::Tls) -> Result<CertifiedKey, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_file)
        .map_err(|e| format!("tls.cert_file {}: {e}", t.cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert_file {}: {e}", t.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("tls.cert_file {}: no certificates", t.cert_file.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&t.key_file).map_err(|e| format!("tls.key_file {}: {e}", t.key_file.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(certs, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!("tls: key_file does not match cert_file ({e})"),
        e => format!("tls: {e}"),
    })?;
    // `from_der` tolerates "cannot tell"; a reload must not swap in a pair it cannot vouch for.
    certified.keys_match().map_err(|e| format!("tls: key_file does not match cert_file: {e}"))?;
    Ok(certified)
}

/// A TLS acceptor (h2 and http/1.1 by ALPN) that serves whatever `store` currently holds.
pub fn tls_acceptor(store: Arc<CertStore>) -> Result<tokio_rustls::TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(store);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// hyper's own head limits: a backstop above Portcullis's (`http::request::check_head_size` answers 431
/// for anything over `max_header_bytes` or 100 fields, and counts and logs it). Heads too large
/// even for this are refused by hyper and recorded from the connection's result
/// (`proxy::pipeline::record_refused_head`).
fn backstop_header_bytes(s: &ListenerSettings) -> usize {
    s.max_header_bytes.saturating_mul(2).max(64 * 1024)
}

pub(crate) fn builder(s: &ListenerSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // Slowloris: the whole header section must arrive within this time (SECURITY DOS-01).
        .header_read_timeout(s.header_read_timeout)
        .max_buf_size(backstop_header_bytes(s))
        .max_headers(crate::http::request::MAX_HEADER_FIELDS * 2)
        .keep_alive(true)
        .half_close(false);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(u32::try_from(backstop_header_bytes(s)).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(256)
        .keep_alive_interval(Duration::from_secs(30));
    b
}

/// Resolves once the stop flag is set (the watch guard is not held across awaits).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Serve one accepted TCP connection to its end: the TLS handshake first when `listen`
/// terminates TLS (bounded by the header read timeout), then [`serve_connection`]. The accept
/// loops (`serve::percore`, one per core) hand every connection here.
pub(crate) async fn serve_stream(
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    handshake_timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    match tls {
        None => serve_connection(shared, builder, TokioIo::new(stream), Conn { peer, tls: false }, stop).await,
        Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => {
                serve_connection(shared, builder, TokioIo::new(tls_stream), Conn { peer, tls: true }, stop).await
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        },
    }
}

pub(crate) async fn serve_connection<I>(
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    io: I,
    conn: Conn,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let recorder = shared.clone();
    // Closing lingers, so a client still sending a refused body reads the answer (SPEC §3).
    let (io, linger) = Linger::new(io);
    let service = service_fn(move |req| {
        let (shared, linger) = (shared.clone(), linger.clone());
        async move {
            let response = pipeline::handle(shared, req, conn).await;
            // After a 101 the connection is a tunnel; its half-closes must not read anything away.
            if response.as_ref().is_ok_and(|r| r.status() == http::StatusCode::SWITCHING_PROTOCOLS) {
                linger.disarm();
            }
            response
        }
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let result = tokio::select! {
        res = connection.as_mut() => res,
        _ = stopped(&mut stop) => {
            // Finish in-flight requests, close idle keep-alives, GOAWAY on h2.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
        // A head hyper refused itself is still a request: counted and logged once.
        pipeline::record_refused_head(&recorder, &*e);
    }
}
