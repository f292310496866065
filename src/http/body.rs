//! Body plumbing shared by the pipeline: the boxed body type every response uses, and a wrapper
//! that streams a body frame by frame while enforcing an idle timeout, dropping trailers, noting
//! when a request body has been read to its end ([`Progress`]), and letting whoever writes the
//! body flush what it has before an error ends the stream; and [`discard`], the bounded read of
//! a body nobody will use. It never buffers a body whole.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response Portcullis sends and every request it forwards.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A body stalled longer than its idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("body idle for longer than {0:?}")]
pub struct IdleTimeout(pub Duration);

/// Whether a request body handed to the upstream exchange has been read to its end. Shared
/// between the [`Streamed`] body that the upstream client consumes and the pipeline, which needs
/// to know, when the response is ready, whether bytes of the request are still unread on the
/// client's connection (SPEC §3: then the connection cannot be kept as if nothing happened).
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicBool>);

impl Progress {
    /// The whole body has been read (every byte, and the end of the message).
    pub fn is_done(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn finish(&self) {
        self.0.store(true, Ordering::Release);
    }
}

pin_project_lite::pin_project! {
    /// Streams `inner`, failing with [`IdleTimeout`] when no frame arrives for `idle`, and
    /// (when `drop_trailers`) discarding trailer frames. Request trailers are dropped because
    /// they could carry identity-looking fields past the header rewrite (SPEC §4); the
    /// size hint is passed through so hyper computes the same framing.
    ///
    /// An error from `inner` is reported one poll late: the first time it is seen the body
    /// answers `Pending` (and wakes its task at once). hyper's HTTP/1 server, on a body error,
    /// ends the connection without flushing what it has buffered — the response head among it —
    /// so without this pause a response that fails on its first frame reaches the client as
    /// nothing at all. With it, the client gets the head and whatever body there was, then the
    /// close: a visibly truncated response (SPEC §3, issue 12).
    pub struct Streamed<B> {
        #[pin]
        inner: B,
        #[pin]
        timer: Sleep,
        idle: Duration,
        drop_trailers: bool,
        progress: Option<Progress>,
        failed: Option<BoxError>,
    }
}

impl<B> Streamed<B> {
    pub fn new(inner: B, idle: Duration, drop_trailers: bool) -> Self {
        Streamed { inner, timer: tokio::time::sleep(idle), idle, drop_trailers, progress: None, failed: None }
    }

    /// Record in `progress` when the body has been read to its end.
    pub fn watched(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }
}

impl<B> Body for Streamed<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let error = loop {
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.timer.as_mut().reset(Instant::now() + *this.idle);
                    if let Some(progress) = this.progress.as_ref().filter(|_| this.inner.is_end_stream()) {
                        progress.finish();
                    }
                    if frame.is_trailers() && *this.drop_trailers {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => break e.into(),
                Poll::Ready(None) => {
                    if let Some(progress) = this.progress.as_ref() {
                        progress.finish();
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_ready() {
                        break Box::new(IdleTimeout(*this.idle)) as BoxError;
                    }
                    return Poll::Pending;
                }
            }
        };
        // Give the writer one turn to flush before the error (see the type's documentation).
        *this.failed = Some(error);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Read and drop `body`, if it ends within `max_bytes` and `max_time`: `true` when it did, and
/// `false` at once for a body announced bigger, which is not read at all. Bounded both ways, so a
/// body nobody wants never holds the task longer than `max_time`.
pub async fn discard<B>(mut body: B, max_bytes: u64, max_time: Duration) -> bool
where
    B: Body + Unpin,
{
    if body.size_hint().lower() > max_bytes {
        return false;
    }
    let drain = async {
        let mut read = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            read += frame.data_ref().map_or(0, |d| d.remaining() as u64);
            if read > max_bytes {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(max_time, drain).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_idle_timeout() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = tokio_stream_from(rx);
        let body = Streamed::new(StreamBody::new(stream), Duration::from_secs(5), true);
        tx.send(Ok(Frame::data(Bytes::from_static(b"a")))).await.unwrap();
        let mut body = std::pin::pin!(body);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), Bytes::from_static(b"a"));
        // Nothing else arrives: the paused clock auto-advances to the timeout.
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<IdleTimeout>());
        drop(tx);
    }

    #[tokio::test]
    async fn trailers_are_dropped_and_data_kept() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-user-sub", http::HeaderValue::from_static("admin"));
        let frames: Vec<Result<Frame<Bytes>, BoxError>> =
            vec![Ok(Frame::data(Bytes::from_static(b"hello"))), Ok(Frame::trailers(trailers))];
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        for f in frames {
            tx.send(f).await.unwrap();
        }
        drop(tx);
        let body = Streamed::new(StreamBody::new(tokio_stream_from(rx)), Duration::from_secs(5), true);
        let collected = body.collect().await.unwrap();
        assert!(collected.trailers().is_none());
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"hello"));
    }

    /// hyper's HTTP/1 server drops its unflushed write buffer when a body fails: the first poll
    /// that finds the error answers `Pending` (waking the task) so the writer flushes first.
    #[tokio::test]
    async fn an_error_is_reported_one_poll_late() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        tx.send(Err("upstream cut".into())).await.unwrap();
        let body = Streamed::new(StreamBody::new(tokio_stream_from(rx)), Duration::from_secs(5), false);
        let mut body = std::pin::pin!(body);
        let waker = std::sync::Arc::new(CountingWaker::default());
        let std_waker = std::task::Waker::from(waker.clone());
        let mut cx = Context::from_waker(&std_waker);
        assert!(body.as_mut().poll_frame(&mut cx).is_pending());
        assert_eq!(waker.0.load(Ordering::SeqCst), 1, "the task must be woken to come back for the error");
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Err(e))) => assert_eq!(e.to_string(), "upstream cut"),
            other => panic!("expected the error, got {other:?}"),
        }
    }

    #[derive(Default)]
    struct CountingWaker(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for CountingWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn progress_is_done_when_the_body_ends() {
        // A sized body ends with its last byte.
        let progress = Progress::default();
        let body = Streamed::new(Full::new(Bytes::from_static(b"abc")), Duration::from_secs(5), true)
            .watched(progress.clone());
        let mut body = std::pin::pin!(body);
        assert!(!progress.is_done());
        body.frame().await.unwrap().unwrap();
        assert!(progress.is_done());

        // A streamed one with its end.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(2);
        let progress = Progress::default();
        let body = Streamed::new(StreamBody::new(tokio_stream_from(rx)), Duration::from_secs(5), true)
            .watched(progress.clone());
        let mut body = std::pin::pin!(body);
        tx.send(Ok(Frame::data(Bytes::from_static(b"a")))).await.unwrap();
        body.frame().await.unwrap().unwrap();
        assert!(!progress.is_done(), "more may come");
        drop(tx);
        assert!(body.frame().await.is_none());
        assert!(progress.is_done());
    }

    #[tokio::test(start_paused = true)]
    async fn discard_is_bounded_in_bytes_and_time() {
        let small = Full::new(Bytes::from(vec![0u8; 1000]));
        assert!(discard(small, 1024, Duration::from_secs(1)).await);
        // Announced bigger: not read at all.
        let big = Full::new(Bytes::from(vec![0u8; 2000]));
        assert!(!discard(big, 1024, Duration::from_secs(1)).await);
        // Unannounced (streamed) and bigger: read up to the bound, then given up.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        for _ in 0..3 {
            tx.send(Ok(Frame::data(Bytes::from(vec![0u8; 600])))).await.unwrap();
        }
        assert!(!discard(StreamBody::new(tokio_stream_from(rx)), 1024, Duration::from_secs(1)).await);
        // Stalled: given up when the time bound passes (the paused clock skips ahead).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"a")))).await.unwrap();
        assert!(!discard(StreamBody::new(tokio_stream_from(rx)), 1024, Duration::from_secs(1)).await);
        drop(tx);
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_core::Stream<Item = T> {
        futures_util_poll_fn(move |cx| rx.poll_recv(cx))
    }

    fn futures_util_poll_fn<T, F: FnMut(&mut Context<'_>) -> Poll<Option<T>>>(
        f: F,
    ) -> impl futures_core::Stream<Item = T> {
        struct PollFn<F>(F);
        impl<F> Unpin for PollFn<F> {}
        impl<T, F: FnMut(&mut Context<'_>) -> Poll<Option<T>>> futures_core::Stream for PollFn<F> {
            type Item = T;
            fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
                (self.0)(cx)
            }
        }
        PollFn(f)
    }
}
