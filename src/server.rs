//! The proxy listener: accept loop with a connection limit and EMFILE back-off, optional TLS
//! termination (rustls; the certificate is swappable at run time through [`CertStore`]),
//! HTTP/1.1 and HTTP/2 (ALPN or prior knowledge) through hyper-util's auto builder with
//! header-size, header-count and header-read-time limits, and graceful drain. Does not look at
//! requests: each one goes to `proxy::handle`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};

use crate::Shared;
use crate::config::{self, Config};
use crate::proxy::{self, Conn};

#[derive(Debug, Clone)]
pub struct Settings {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub grace: Duration,
}

impl From<&Config> for Settings {
    fn from(c: &Config) -> Self {
        Settings {
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

pub(crate) fn builder(s: &Settings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // Slowloris: the whole header section must arrive within this time (SECURITY DOS-01).
        .header_read_timeout(s.header_read_timeout)
        // Request line + headers over this → 431 (hyper), more than 100 fields → 431.
        .max_buf_size(s.max_header_bytes)
        .max_headers(100)
        .keep_alive(true)
        .half_close(false);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(s.max_header_bytes as u32)
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(256)
        .keep_alive_interval(Duration::from_secs(30));
    b
}

/// Resolves once the stop flag is set (the watch guard is not held across awaits).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Accept until told to stop, then wait (at most `grace`) for open connections to finish.
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    settings: Settings,
    mut stop: watch::Receiver<bool>,
) {
    let builder = Arc::new(builder(&settings));
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off instead of spinning (SECURITY DOS-07).
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared.metrics.connections_rejected_total.inc();
            drop(stream); // over limits.max_connections: close at once
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, builder, tls, stop) = (shared.clone(), builder.clone(), tls.clone(), stop.clone());
        let handshake_timeout = settings.header_read_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_connection(shared, builder, TokioIo::new(stream), Conn { peer, tls: false }, stop).await,
                Some(acceptor) => match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        serve_connection(shared, builder, TokioIo::new(tls_stream), Conn { peer, tls: true }, stop)
                            .await
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    // Every connection holds one slot: all slots back means fully drained.
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(settings.grace, slots.acquire_many(all)).await.is_err() {
        tracing::warn!("shutdown.grace elapsed with requests still in flight");
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
    let service = service_fn(move |req| proxy::handle(shared.clone(), req, conn));
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    tokio::select! {
        res = connection.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {
            // Finish in-flight requests, close idle keep-alives, GOAWAY on h2.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
