//! The pooled client to the protected app (SPEC §2 `upstream`). Owns connecting (TCP with
//! `TCP_NODELAY`, or a unix socket), the response-header timeout (→ 504), the response-body idle
//! timeout, judging the framing of each response head (SPEC §3: relayed re-framed, or 502
//! `upstream_protocol`, and an anomalous connection is never reused), and classifying failures
//! into connect / reset / protocol / timeout. It never retries a request that may have reached
//! the app: only a request hyper hands back unwritten, because its idle connection closed first,
//! is sent again, once, on a new connection.
//!
//! On a core thread (`serve::percore`) an HTTP/1 exchange goes through that core's own pool of
//! `hyper::client::conn::http1` connections (`pool`: thread-local, no lock, no key hashing, no
//! task to return a connection; issue 15), so a request and its upstream connection stay on one
//! thread. `upstream.http2`, threads that are not cores (tests, `explain`) and requests of a
//! snapshot older than the core's pool use hyper-util's pooled client, as before; there a
//! connection is kept from reuse with `capture_connection` and [`poison`].

mod pool;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{CaptureConnection, HttpConnector, capture_connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::config::{self, UpstreamTarget};
use crate::http::body::{BoxError, IdleTimeout, Progress, ProxyBody, Streamed};

/// How many 1xx responses may come before the final one. hyper's client skips any number of them
/// while waiting for the final response; a storm of them is a protocol error, not a reason to
/// wait for the timeout (SECURITY UPS-04).
const MAX_INFORMATIONAL: usize = 16;

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
    /// The `upstream_errors_total{kind}` label (`client_body` is never counted there: the
    /// client's body failing is not the upstream's fault).
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

/// The pooled client to the configured upstream (`config::Upstream` holds its settings).
pub struct UpstreamClient {
    client: Client<Connector, ProxyBody>,
    /// `http://<authority>` used to build absolute request URIs.
    base: String,
    timeout: Duration,
    idle_timeout: Duration,
    /// Identifies these client settings to the per-core clients (newer snapshots, larger ids).
    id: u64,
    builder: hyper_util::client::legacy::Builder,
    connector: Connector,
    /// `upstream.http2`: every exchange then goes through hyper-util's client.
    http2: bool,
    /// What the connector dials (`base` as a URI: the authority of a TCP target).
    target: Uri,
}

/// Upstream client ids: one per [`UpstreamClient`] built, increasing.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Whether this thread is a core thread (`serve::percore`), which uses its own client.
    static ON_CORE: Cell<bool> = const { Cell::new(false) };
    /// A core thread's own hyper-util client (and so its own connection pool) for `upstream.http2`,
    /// for the newest snapshot it has served. Its connection tasks are spawned on the core's runtime, so a request and its
    /// upstream exchange stay on one thread.
    static CORE_CLIENT: RefCell<Option<(u64, Client<Connector, ProxyBody>)>> = const { RefCell::new(None) };
}

/// Make the current thread use a client of its own for upstream exchanges (called once by each
/// core thread, before its runtime starts; the client is built on first use).
pub fn use_a_client_per_thread() {
    ON_CORE.with(|c| c.set(true));
}

/// Close this core's idle upstream connections that have expired (`serve::percore` calls it
/// about once a second on each core thread).
pub fn sweep_idle_connections() {
    pool::sweep_this_core();
}

impl UpstreamClient {
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
        let target = base.parse().unwrap_or_else(|_| Uri::from_static("http://localhost"));
        UpstreamClient {
            client: builder.build(connector.clone()),
            target,
            http2: config.http2,
            base,
            timeout: config.timeout,
            idle_timeout: config.idle_timeout,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            builder,
            connector,
        }
    }

    /// Start an exchange on hyper-util's client: this core's own when on a core thread (built on first use
    /// with this snapshot's settings; a reload replaces it, and its idle connections close); on
    /// any other thread, or for a request of a snapshot older than the core's client, on the
    /// shared client. Either is the same hyper-util client, so `capture_connection` and
    /// [`poison`] work the same on both.
    fn dispatch(&self, request: Request<ProxyBody>) -> hyper_util::client::legacy::ResponseFuture {
        if !ON_CORE.with(Cell::get) {
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
    /// with the idle timeout. `upload` tracks the request body, when it has one, so that an
    /// answer given before the app read all of it is noticed. `on_body_error` is called (once)
    /// when the response body fails after its head was returned: the client then sees a
    /// truncated response, and only the caller can meter and log that.
    ///
    /// The response head is judged before it is returned ([`judge_framing`]): framing that cannot
    /// be relayed faithfully is a [`UpstreamError::Protocol`]; framing that can be re-framed is
    /// relayed with the length hyper computes from the body it actually reads. Either way, and
    /// after any 1xx, a `HEAD`, or an answer to an unfinished upload, the connection is marked so
    /// the pool never hands it to another request: whatever the app still sends on it (a body the
    /// head did not announce, the rest of a chunked stream) would otherwise be read as the next
    /// user's response.
    ///
    /// On this core's pool the same rule reads: the connection goes back to the pool only after a
    /// clean exchange (none of the above, not a 1xx such as a `101` upgrade), and only once the
    /// response body reached its end ([`pool::Returning`]); otherwise it is dropped and closes.
    pub async fn send(
        &self,
        mut request: Request<ProxyBody>,
        upload: Option<&Progress>,
        on_body_error: impl FnOnce(UpstreamError, &BoxError) + Send + 'static,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let head = request.method() == Method::HEAD;
        let route = if !self.http2 && ON_CORE.with(Cell::get) { pool::route(self.id) } else { pool::Route::Older };
        let connection = match route {
            pool::Route::Older => Some(capture_connection(&mut request)),
            pool::Route::Pool(_) => {
                // hyper's connection writes the URI as it is: origin-form, as hyper-util sent.
                *request.uri_mut() = origin_form(request.uri());
                None
            }
        };
        let informational = Arc::new(Informational::default());
        let seen = informational.clone();
        hyper::ext::on_informational(&mut request, move |_| {
            if seen.count.fetch_add(1, Ordering::Relaxed) + 1 > MAX_INFORMATIONAL {
                seen.storm.notify_one();
            }
        });
        let (mut response, sender) = tokio::select! {
            biased;
            _ = informational.storm.notified() => {
                poison(&connection);
                return Err(UpstreamError::Protocol);
            }
            r = tokio::time::timeout(self.timeout, self.exchange(route, request)) => match r {
                // A request dropped while in flight closes its pooled connection (hyper's
                // documented cancellation of an HTTP/1 request).
                Err(_) => {
                    poison(&connection);
                    return Err(UpstreamError::Timeout);
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(r)) => r,
            },
        };
        let verdict = judge_framing(response.status(), response.headers(), head);
        let http1 = response.version() <= Version::HTTP_11;
        let early = upload.is_some_and(|u| !u.is_done());
        if verdict == Framing::Refuse {
            tracing::warn!(
                status = response.status().as_u16(),
                transfer_encoding = ?response.headers().get_all(TRANSFER_ENCODING).iter().collect::<Vec<_>>(),
                content_length = ?response.headers().get_all(CONTENT_LENGTH).iter().collect::<Vec<_>>(),
                "upstream response framing cannot be relayed"
            );
            poison(&connection);
            return Err(UpstreamError::Protocol);
        }
        let after_1xx = informational.count.load(Ordering::Relaxed) > 0;
        let anomalous = verdict == Framing::Reframe || head || early || after_1xx;
        if http1 && anomalous {
            poison(&connection);
        }
        // Back to the core's pool only after a clean exchange: never after an upgrade (the
        // connection now carries the tunnel) or any anomaly above.
        let lease = match sender {
            Some(sender) if !anomalous && !response.status().is_informational() => Some((self.id, sender)),
            _ => None,
        };
        reframe(response.headers_mut(), head);
        let idle = self.idle_timeout;
        let mut on_body_error = Some(on_body_error);
        Ok(response.map(|b| {
            // With no lease (hyper-util's client, or an unclean exchange) this only passes through.
            Streamed::new(pool::Returning::new(b, lease), idle, false)
                .map_err(move |e| {
                    if let Some(f) = on_body_error.take() {
                        f(classify_body_error(&e), &e);
                    }
                    e
                })
                .boxed_unsync()
        }))
    }
}

impl UpstreamClient {
    /// One exchange on the route [`pool::route`] chose: the core's pool (with the connection, to
    /// give back once the response is done), or hyper-util's client.
    async fn exchange(
        &self,
        route: pool::Route,
        request: Request<ProxyBody>,
    ) -> Result<(Response<hyper::body::Incoming>, Option<pool::Sender>), UpstreamError> {
        match route {
            pool::Route::Pool(idle) => {
                let (response, sender) = pool::exchange(idle, &self.connector, &self.target, request).await?;
                Ok((response, Some(sender)))
            }
            pool::Route::Older => match self.dispatch(request).await {
                Ok(response) => Ok((response, None)),
                Err(e) => Err(classify(&e)),
            },
        }
    }
}

/// `/path?query` from an absolute URI (`/` when it has no path), as hyper-util's client sent it.
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) if pq.as_str() != "/" => {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(pq.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
    }
}

/// The 1xx responses seen before the final one, and a signal once there are too many.
#[derive(Default)]
struct Informational {
    count: AtomicUsize,
    storm: tokio::sync::Notify,
}

/// Never hand this connection to another request (hyper-util drops it instead of pooling it).
/// `None` on the core's pool, where a connection not given back is simply dropped.
fn poison(connection: &Option<CaptureConnection>) {
    if let Some(connection) = connection
        && let Some(connected) = connection.connection_metadata().as_ref()
    {
        connected.poison();
    }
}

/// What a response head says about its own framing, as hyper's client accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Relay as is.
    Clean,
    /// Relay with the framing recomputed, and never reuse the connection.
    Reframe,
    /// Cannot be relayed faithfully: 502 `upstream_protocol`.
    Refuse,
}

/// Judge a response head (SPEC §3; SECURITY UPS-04, SMUG-01, SMUG-03; RFC 9112 §6.3).
///
/// - `Transfer-Encoding` other than exactly one `chunked` (`gzip, chunked`, `identity`, two
///   fields): a transfer coding applies to one hop only, the client of this hop may not speak it
///   (HTTP/2 has none), and hyper would pass the coded bytes on as if they were the content.
///   Refused, as nginx does.
/// - `Transfer-Encoding` with `Content-Length`: the classic response-splitting shape; RFC 9112
///   §6.3 says to treat it as an error. Refused.
/// - Several `Content-Length`s (hyper's client already refuses differing ones): re-framed with
///   the one length hyper read.
/// - A head announcing a body where the status forbids one (204, 304): whatever the app wrote
///   is not part of this response. Re-framed (no body), connection not reused.
fn judge_framing(status: StatusCode, headers: &HeaderMap, head_request: bool) -> Framing {
    let te: Vec<_> = headers.get_all(TRANSFER_ENCODING).iter().collect();
    let cl: Vec<_> = headers.get_all(CONTENT_LENGTH).iter().collect();
    if !te.is_empty() {
        let only_chunked = te.len() == 1 && te[0].to_str().is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        if !only_chunked || !cl.is_empty() {
            return Framing::Refuse;
        }
    }
    if cl.len() > 1 || cl.iter().any(|v| v.as_bytes().contains(&b',')) {
        return Framing::Reframe;
    }
    let announces_body = !te.is_empty() || cl.iter().any(|v| v.as_bytes() != b"0");
    if !head_request && matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) && announces_body {
        return Framing::Reframe;
    }
    Framing::Clean
}

/// Drop the app's `Content-Length` so hyper's server writes the length of the body it relays
/// (the body hyper's client read, whose size hint is exact when the length was known) — never a
/// number copied from a head that may disagree with it. A response to `HEAD` has no body to
/// measure, so its (single) length is kept: it describes what a `GET` would return.
fn reframe(headers: &mut HeaderMap, head_request: bool) {
    let first = headers.get(CONTENT_LENGTH).cloned();
    headers.remove(CONTENT_LENGTH);
    if head_request
        && let Some(v) = first
        && let Some(n) = v.to_str().ok().and_then(|s| s.split(',').next()).map(str::trim)
        && let Ok(v) = http::HeaderValue::from_str(n)
    {
        headers.insert(CONTENT_LENGTH, v);
    }
}

/// Classify a failure of the response body after its head was relayed.
fn classify_body_error(e: &BoxError) -> UpstreamError {
    if e.is::<IdleTimeout>() {
        return UpstreamError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_too_large() {
                return UpstreamError::Protocol;
            }
            if h.is_timeout() {
                return UpstreamError::Timeout;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            // hyper's chunked decoder reports bad chunk syntax as InvalidInput / InvalidData.
            if matches!(io.kind(), std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData) {
                return UpstreamError::Protocol;
            }
        }
        source = s.source();
    }
    UpstreamError::Reset
}

fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamError {
    if e.is_connect() {
        return UpstreamError::Connect;
    }
    classify_chain(std::error::Error::source(e))
}

/// Classify a failure of hyper's own HTTP/1 client (the core's pool): as [`classify`] does for
/// the hyper error inside hyper-util's.
fn classify_hyper(e: &hyper::Error) -> UpstreamError {
    classify_chain(Some(e))
}

fn classify_chain(mut source: Option<&(dyn std::error::Error + 'static)>) -> UpstreamError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(lines: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in lines {
            h.append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    // SECURITY UPS-04, SMUG-01, SMUG-03: the verdict for each framing shape hyper's client accepts.
    #[test]
    fn framing_verdicts() {
        use Framing::*;
        let ok = StatusCode::OK;
        type Case<'a> = (StatusCode, &'a [(&'a str, &'a str)], bool, Framing);
        let cases: &[Case] = &[
            (ok, &[("content-length", "5")], false, Clean),
            (ok, &[("transfer-encoding", "chunked")], false, Clean),
            (ok, &[("transfer-encoding", "Chunked ")], false, Clean),
            (ok, &[], false, Clean),
            (ok, &[("content-length", "5"), ("transfer-encoding", "chunked")], false, Refuse),
            (ok, &[("transfer-encoding", "chunked"), ("content-length", "5")], true, Refuse),
            (ok, &[("transfer-encoding", "gzip, chunked")], false, Refuse),
            (ok, &[("transfer-encoding", "chunked, chunked")], false, Refuse),
            (ok, &[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")], false, Refuse),
            (ok, &[("transfer-encoding", "identity")], false, Refuse),
            (ok, &[("content-length", "5"), ("content-length", "5")], false, Reframe),
            (ok, &[("content-length", "5, 5")], false, Reframe),
            (ok, &[("content-length", "7")], true, Clean),
            (StatusCode::NO_CONTENT, &[("content-length", "7")], false, Reframe),
            (StatusCode::NO_CONTENT, &[("content-length", "0")], false, Clean),
            (StatusCode::NOT_MODIFIED, &[("transfer-encoding", "chunked")], false, Reframe),
            (StatusCode::NOT_MODIFIED, &[], false, Clean),
        ];
        for (status, lines, head, want) in cases {
            assert_eq!(judge_framing(*status, &headers(lines), *head), *want, "{status} {lines:?} head={head}");
        }
    }

    #[test]
    fn reframing_drops_the_length_except_for_head_where_one_is_kept() {
        let mut h = headers(&[("content-length", "5"), ("content-length", "5"), ("x-a", "b")]);
        reframe(&mut h, false);
        assert!(h.get(CONTENT_LENGTH).is_none());
        assert_eq!(h.get("x-a").unwrap(), "b");
        let mut h = headers(&[("content-length", "7, 7")]);
        reframe(&mut h, true);
        assert_eq!(h.get_all(CONTENT_LENGTH).iter().collect::<Vec<_>>(), vec!["7"]);
    }

    #[test]
    fn body_failures_are_classified() {
        let idle: BoxError = Box::new(IdleTimeout(Duration::from_secs(1)));
        assert_eq!(classify_body_error(&idle), UpstreamError::Timeout);
        let bad_chunk: BoxError = Box::new(std::io::Error::new(std::io::ErrorKind::InvalidInput, "chunk size"));
        assert_eq!(classify_body_error(&bad_chunk), UpstreamError::Protocol);
        let cut: BoxError = Box::new(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof"));
        assert_eq!(classify_body_error(&cut), UpstreamError::Reset);
    }
}
