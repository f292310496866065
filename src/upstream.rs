//! The pooled client to the protected app (SPEC §2 `upstream`). Owns connecting (TCP with
//! `TCP_NODELAY`, or a unix socket), the response-header timeout (→ 504), the response-body idle
//! timeout, and classifying failures into connect / reset / protocol / timeout. It never retries
//! a request that may have reached the app: hyper-util only re-sends a request whose pooled
//! connection closed before any byte of it was written.

use std::cell::RefCell;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::{ProxyBody, Streamed};
use crate::config::{self, UpstreamTarget};

/// How an upstream exchange failed. Names match `upstream_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    Reset,
    Timeout,
    Protocol,
    /// The request body from the client failed while being forwarded (malformed chunking, idle
    /// timeout, client gone): a client error, not an upstream one.
    ClientBody,
}

impl UpstreamError {
    pub fn kind(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Reset => "reset",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Protocol => "protocol",
            UpstreamError::ClientBody => "client_body",
        }
    }
}

/// Connects to the configured target whatever the request URI's authority says.
#[derive(Clone)]
pub enum Connector {
    Tcp(HttpConnector),
    Unix(PathBuf),
}

pub enum Io {
    Tcp(TokioIo<tokio::net::TcpStream>),
    Unix(TokioIo<tokio::net::UnixStream>),
}

impl tower_service::Service<Uri> for Connector {
    type Response = Io;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Io, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Connector::Tcp(c) => c.poll_ready(cx).map_err(Into::into),
            Connector::Unix(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        match self {
            Connector::Tcp(c) => {
                let fut = c.call(uri);
                Box::pin(async move { fut.await.map(Io::Tcp).map_err(Into::into) })
            }
            Connector::Unix(path) => {
                let path = path.clone();
                Box::pin(async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok(Io::Unix(TokioIo::new(stream)))
                })
            }
        }
    }
}

impl hyper_util::client::legacy::connect::Connection for Io {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        match self {
            Io::Tcp(s) => s.connected(),
            Io::Unix(s) => s.connected(),
        }
    }
}

impl hyper::rt::Read for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

pub struct Upstream {
    client: Client<Connector, ProxyBody>,
    /// `http://<authority>` used to build absolute request URIs.
    base: String,
    timeout: Duration,
    idle_timeout: Duration,
    /// Identifies these client settings to the per-core clients (newer snapshots, larger ids).
    id: u64,
    builder: hyper_util::client::legacy::Builder,
    connector: Connector,
}

/// Upstream ids: one per [`Upstream`] built, increasing.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// A core thread's own client (and so its own connection pool), for the newest snapshot it
    /// has served. Its connection tasks are spawned on the core's runtime, so a request and its
    /// upstream exchange stay on one thread (`percore`).
    static CORE_CLIENT: RefCell<Option<(u64, Client<Connector, ProxyBody>)>> = const { RefCell::new(None) };
}

impl Upstream {
    pub fn new(config: &config::Upstream) -> Self {
        let (connector, base) = match &config.target {
            UpstreamTarget::Http { authority } => {
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                http.set_connect_timeout(Some(config.connect_timeout));
                http.enforce_http(true);
                (Connector::Tcp(http), format!("http://{authority}"))
            }
            // The authority is never dialled for a unix target; it only fills the URI.
            UpstreamTarget::Unix { path } => (Connector::Unix(path.clone()), "http://localhost".to_owned()),
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(256)
            // Hyper-util re-sends only requests whose connection closed before they were
            // written; nothing that may have reached the app is retried.
            .retry_canceled_requests(true)
            .set_host(false)
            .http2_only(config.http2);
        Upstream {
            client: builder.build(connector.clone()),
            base,
            timeout: config.timeout,
            idle_timeout: config.idle_timeout,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            builder,
            connector,
        }
    }

    /// Start the exchange on this core's own client when on a core thread (built on first use
    /// with this snapshot's settings; a reload replaces it, and its idle connections close); on
    /// any other thread, or for a request of a snapshot older than the core's client, on the
    /// shared client.
    fn dispatch(&self, request: Request<ProxyBody>) -> hyper_util::client::legacy::ResponseFuture {
        if crate::percore::current().is_none() {
            return self.client.request(request);
        }
        CORE_CLIENT.with(|slot| {
            let mut slot = slot.borrow_mut();
            match &*slot {
                Some((id, client)) if *id == self.id => return client.request(request),
                Some((id, _)) if *id > self.id => return self.client.request(request),
                _ => {}
            }
            let client = self.builder.build(self.connector.clone());
            let response = client.request(request);
            *slot = Some((self.id, client));
            response
        })
    }

    /// The absolute URI for a normalised path and the untouched query.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, UpstreamError> {
        let s = match query {
            Some(q) => format!("{}{path}?{q}", self.base),
            None => format!("{}{path}", self.base),
        };
        s.parse().map_err(|_| UpstreamError::Protocol)
    }

    /// Send and wait for response headers (at most `timeout`); the response body is streamed
    /// with the idle timeout.
    pub async fn send(&self, request: Request<ProxyBody>) -> Result<Response<ProxyBody>, UpstreamError> {
        let response = match tokio::time::timeout(self.timeout, self.dispatch(request)).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) => return Err(classify(&e)),
            Ok(Ok(r)) => r,
        };
        let idle = self.idle_timeout;
        Ok(response.map(|b| Streamed::new(b, idle, false).boxed_unsync()))
    }
}

fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamError {
    if e.is_connect() {
        return UpstreamError::Connect;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            // `is_user` here means our request body (the client's stream) yielded an error.
            if h.is_user() {
                return UpstreamError::ClientBody;
            }
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                return UpstreamError::Protocol;
            }
            if h.is_timeout() {
                return UpstreamError::Timeout;
            }
            return UpstreamError::Reset;
        }
        source = s.source();
    }
    UpstreamError::Reset
}
