//! Body plumbing shared by the pipeline: the boxed body type every response uses, and a wrapper
//! that streams a body frame by frame while enforcing an idle timeout and dropping trailers.
//! It never buffers a body whole.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
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

pin_project_lite::pin_project! {
    /// Streams `inner`, failing with [`IdleTimeout`] when no frame arrives for `idle`, and
    /// (when `drop_trailers`) discarding trailer frames. Request trailers are dropped because
    /// they could carry identity-looking fields past the header rewrite (SPEC §4); the
    /// size hint is passed through so hyper computes the same framing.
    pub struct Streamed<B> {
        #[pin]
        inner: B,
        #[pin]
        timer: Sleep,
        idle: Duration,
        drop_trailers: bool,
    }
}

impl<B> Streamed<B> {
    pub fn new(inner: B, idle: Duration, drop_trailers: bool) -> Self {
        Streamed { inner, timer: tokio::time::sleep(idle), idle, drop_trailers }
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
        loop {
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.timer.as_mut().reset(Instant::now() + *this.idle);
                    if frame.is_trailers() && *this.drop_trailers {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(Box::new(IdleTimeout(*this.idle)))));
                    }
                    return Poll::Pending;
                }
            }
        }
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
