//! A core thread's own pool of idle HTTP/1 connections to the one configured upstream, built on
//! `hyper::client::conn::http1` (issue 15): a thread-local list of `SendRequest`s, with no lock,
//! no key to hash and no task spawned to return a connection. Owns connecting (through the
//! [`Connector`]), spawning each connection's task on the core's runtime (with upgrades, for
//! WebSocket tunnels), checking a connection out (ready, open and idle for less than
//! [`IDLE_TIMEOUT`]), the one retry of a request hyper hands back unwritten, and giving a
//! connection back — only when the exchange on it was clean and its response body reached its
//! end ([`Returning`]); a connection not given back is dropped, which ends its task.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use tokio::time::Instant;
use tower_service::Service;

use super::{Connector, UpstreamError, classify_hyper};
use crate::http::body::ProxyBody;

/// How long an idle connection may wait for its next request (hyper-util's `pool_idle_timeout`
/// before issue 15). Checked when a connection is checked out or another is given back.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// At most this many idle connections per core; one more given back is dropped.
pub(super) const MAX_IDLE: usize = 256;

pub(super) type Sender = SendRequest<ProxyBody>;

/// The idle connections of one upstream client (`id`, one per config snapshot), oldest first.
pub(super) struct Pool {
    id: u64,
    idle: VecDeque<(Sender, Instant)>,
}

thread_local! {
    /// This core's pool, for the newest snapshot it has served.
    static POOL: RefCell<Option<Pool>> = const { RefCell::new(None) };
}

/// Where a request of client `id` goes on this core.
pub(super) enum Route {
    /// This core's pool: an idle connection when one was ready, else a new one is to be opened.
    Pool(Option<Sender>),
    /// The core's pool belongs to a newer snapshot: this request (of an older one) goes the way
    /// it went before the pool existed (the client's shared hyper-util client).
    Older,
}

/// Check out a connection for client `id` (a newer `id` replaces the core's pool, closing the
/// idle connections of the old one).
pub(super) fn route(id: u64) -> Route {
    POOL.with(|slot| {
        let mut slot = slot.borrow_mut();
        match &mut *slot {
            Some(pool) if pool.id == id => Route::Pool(pool.checkout(Instant::now())),
            Some(pool) if pool.id > id => Route::Older,
            _ => {
                *slot = Some(Pool::new(id));
                Route::Pool(None)
            }
        }
    })
}

/// Close this core's connections that have been idle for [`IDLE_TIMEOUT`] (called about once a
/// second by each core, so a core that goes quiet does not hold its connections — and the app's
/// sockets — open until its next request).
pub(super) fn sweep_this_core() {
    let _ = POOL.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut()
            && let Some(pool) = &mut *slot
        {
            pool.sweep(Instant::now());
        }
    });
}

/// Give a connection of client `id` back to this core's pool, if that pool is still the one for
/// `id` (else, or if it is full, the connection is dropped and closes).
fn give_back(id: u64, sender: Sender) {
    let _ = POOL.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut()
            && let Some(pool) = &mut *slot
            && pool.id == id
        {
            pool.put(sender, Instant::now());
        }
    });
}

impl Pool {
    pub(super) fn new(id: u64) -> Pool {
        Pool { id, idle: VecDeque::new() }
    }

    /// The most recently used connection that is open, idle for less than [`IDLE_TIMEOUT`] and
    /// ready for a request. Closed and expired ones are dropped on the way. One not ready yet
    /// (its task has not yet taken the end of its last exchange in) is left for later.
    pub(super) fn checkout(&mut self, now: Instant) -> Option<Sender> {
        let mut i = self.idle.len();
        while i > 0 {
            i -= 1;
            let (sender, since) = &self.idle[i];
            if now.saturating_duration_since(*since) >= IDLE_TIMEOUT {
                // Oldest first: every connection before this one has waited longer still.
                self.idle.drain(..=i);
                return None;
            }
            if sender.is_closed() {
                self.idle.remove(i);
            } else if sender.is_ready() {
                return self.idle.remove(i).map(|(sender, _)| sender);
            }
        }
        None
    }

    /// Keep `sender` as idle since `now`, dropping expired and closed connections first (a
    /// closed one must not take the place of a live one under [`MAX_IDLE`]).
    pub(super) fn put(&mut self, sender: Sender, now: Instant) {
        self.sweep(now);
        if self.idle.len() < MAX_IDLE && !sender.is_closed() {
            self.idle.push_back((sender, now));
        }
    }

    /// Drop every connection idle for [`IDLE_TIMEOUT`] or more, and every closed one. Dropping a
    /// `SendRequest` ends its connection's task, which closes the socket.
    pub(super) fn sweep(&mut self, now: Instant) {
        while self.idle.front().is_some_and(|(_, since)| now.saturating_duration_since(*since) >= IDLE_TIMEOUT) {
            self.idle.pop_front();
        }
        self.idle.retain(|(sender, _)| !sender.is_closed());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.len()
    }
}

/// Open a connection: connect (TCP with `TCP_NODELAY` and the connect timeout, or the unix
/// socket), hand the socket to hyper's HTTP/1 client and spawn its task on this runtime. The task
/// ends when the connection closes: after the app closes it, after an upgrade's tunnel ends, or
/// once every handle to it (the `SendRequest`, a response body still streaming) is dropped.
pub(super) async fn connect(connector: &Connector, target: &Uri) -> Result<Sender, UpstreamError> {
    let io = connector.clone().call(target.clone()).await.map_err(|_| UpstreamError::Connect)?;
    let (mut sender, connection) = Builder::new().handshake(io).await.map_err(|e| classify_hyper(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    // As hyper-util did: the connection's task has started and waits for a request.
    sender.ready().await.map_err(|e| classify_hyper(&e))?;
    Ok(sender)
}

/// Send `request` (origin-form URI, the client's `Host`) on `idle`, or on a new connection.
///
/// The one retry: when hyper hands the request back (`TrySendError::take_message`) it was never
/// taken off the queue to be written — the idle connection closed first — so the app cannot have
/// seen it, and it is sent once more on a new connection. An error without the request back
/// (written, or maybe partly) is never retried, and neither is a failure on a new connection.
pub(super) async fn exchange(
    idle: Option<Sender>,
    connector: &Connector,
    target: &Uri,
    request: Request<ProxyBody>,
) -> Result<(Response<Incoming>, Sender), UpstreamError> {
    let reused = idle.is_some();
    let mut sender = match idle {
        Some(sender) => sender,
        None => connect(connector, target).await?,
    };
    match sender.try_send_request(request).await {
        Ok(response) => Ok((response, sender)),
        Err(mut e) => match e.take_message() {
            Some(request) if reused => {
                drop(sender);
                let mut sender = connect(connector, target).await?;
                match sender.try_send_request(request).await {
                    Ok(response) => Ok((response, sender)),
                    Err(e) => Err(classify_hyper(e.error())),
                }
            }
            _ => Err(classify_hyper(e.error())),
        },
    }
}

/// A response body that gives its connection back to the core's pool when it reaches its end
/// (issue 12: only then has hyper read every byte the head announced, so nothing of this
/// response can be read as the next one). Dropped before its end, or failing, it drops the
/// connection instead, and hyper closes it.
pub(super) struct Returning {
    inner: Incoming,
    lease: Option<(u64, Sender)>,
}

impl Returning {
    /// `lease`: the client id and connection to give back, or `None` when the exchange was not
    /// clean (the connection is then dropped with the body, never reused).
    pub(super) fn new(inner: Incoming, lease: Option<(u64, Sender)>) -> Returning {
        let mut body = Returning { inner, lease };
        if body.inner.is_end_stream() {
            body.give_back();
        }
        body
    }

    fn give_back(&mut self) {
        if let Some((id, sender)) = self.lease.take() {
            give_back(id, sender);
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.give_back(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.give_back(),
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    /// (connection, request target) in arrival order.
    type Log = Arc<Mutex<Vec<(usize, String)>>>;

    /// A raw app on loopback that answers every request on a connection with [`ANSWER`].
    async fn app() -> (Uri, Connector, Log) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Log::default();
        let seen = log.clone();
        tokio::spawn(async move {
            let mut id = 0;
            while let Ok((mut s, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await
                        && n > 0
                    {
                        let head = String::from_utf8_lossy(&buf[..n]).to_string();
                        seen.lock().unwrap().push((id, head.split(' ').nth(1).unwrap_or_default().to_owned()));
                        if s.write_all(ANSWER).await.is_err() {
                            return;
                        }
                    }
                });
                id += 1;
            }
        });
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_nodelay(true);
        (format!("http://{addr}").parse().unwrap(), Connector::Tcp(http), log)
    }

    fn get(target: &'static str) -> Request<ProxyBody> {
        let mut r = Request::new(http_body_util::Empty::new().map_err(|e| match e {}).boxed_unsync());
        *r.uri_mut() = Uri::from_static(target);
        r.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("app.test"));
        r
    }

    /// A connection that served one exchange to the end, and is ready for the next.
    async fn used_connection(connector: &Connector, target: &Uri) -> Sender {
        let (response, mut sender) = exchange(None, connector, target, get("/")).await.unwrap();
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
        sender.ready().await.unwrap();
        sender
    }

    // Issue 15: a connection idle for the expiry or longer is dropped at checkout, not reused.
    #[tokio::test]
    async fn a_connection_idle_beyond_the_expiry_is_never_checked_out() {
        let (target, connector, _) = app().await;
        let mut pool = Pool::new(1);
        let since = Instant::now();
        pool.put(used_connection(&connector, &target).await, since);
        pool.put(used_connection(&connector, &target).await, since + Duration::from_secs(1));
        assert_eq!(pool.len(), 2);
        // Just before the first one expires both are there; the newest is handed out first.
        assert!(pool.checkout(since + IDLE_TIMEOUT - Duration::from_millis(1)).is_some());
        assert_eq!(pool.len(), 1);
        let later = since + Duration::from_secs(1) + IDLE_TIMEOUT;
        assert!(pool.checkout(later).is_none(), "an expired connection was checked out");
        assert_eq!(pool.len(), 0, "the expired connection is dropped");
    }

    // Issue 15: a quiet core closes its expired idle connections without waiting for a request.
    #[tokio::test]
    async fn a_sweep_closes_expired_idle_connections_and_keeps_fresh_ones() {
        let (target, connector, _) = app().await;
        let mut pool = Pool::new(1);
        let since = Instant::now();
        pool.put(used_connection(&connector, &target).await, since);
        pool.put(used_connection(&connector, &target).await, since + Duration::from_secs(10));
        pool.sweep(since + IDLE_TIMEOUT);
        assert_eq!(pool.len(), 1, "the one idle for the whole timeout is closed");
        pool.sweep(since + Duration::from_secs(10) + IDLE_TIMEOUT);
        assert_eq!(pool.len(), 0);
    }

    // Issue 15: the pool keeps at most MAX_IDLE connections per core; one more is dropped.
    #[tokio::test]
    async fn the_pool_keeps_at_most_max_idle_connections() {
        let (target, connector, _) = app().await;
        let mut pool = Pool::new(1);
        let now = Instant::now();
        for _ in 0..=MAX_IDLE {
            pool.put(used_connection(&connector, &target).await, now);
        }
        assert_eq!(pool.len(), MAX_IDLE);
    }

    // Issue 15: a request hyper hands back unwritten (its idle connection ended before taking it
    // off the queue) is sent once more, on a new connection, and the app sees it exactly once.
    #[tokio::test]
    async fn a_request_handed_back_unwritten_is_sent_again_on_a_new_connection() {
        let (target, connector, log) = app().await;
        let io = connector.clone().call(target.clone()).await.unwrap();
        let (mut sender, connection) = Builder::new().handshake::<_, ProxyBody>(io).await.unwrap();
        let task = tokio::spawn(connection.with_upgrades());
        sender.ready().await.unwrap();
        let (response, mut sender) = exchange(Some(sender), &connector, &target, get("/first")).await.unwrap();
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
        sender.ready().await.unwrap();
        // The connection's task ends (as when the app closed the idle connection) before it ever
        // takes the next request off the queue: hyper drops the queued request and hands it back.
        task.abort();
        let (response, _) = exchange(Some(sender), &connector, &target, get("/second")).await.unwrap();
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
        let log = log.lock().unwrap().clone();
        assert_eq!(log, vec![(0, "/first".to_owned()), (1, "/second".to_owned())]);
    }

    // Issue 15: a request a new connection fails is not sent again (only an idle, reused
    // connection can have closed before taking a request).
    #[tokio::test]
    async fn a_request_failing_on_a_new_connection_is_not_sent_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target: Uri = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
        // Read each request head, then close without answering. A second attempt would be read
        // (and counted) before it failed, so before the exchange returns.
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                if s.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let connector = Connector::Tcp(hyper_util::client::legacy::connect::HttpConnector::new());
        let e = exchange(None, &connector, &target, get("/once")).await.err();
        assert_eq!(e, Some(UpstreamError::Reset));
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }
}
