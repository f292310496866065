//! Lingering close for downstream connections (SPEC §3; nginx `lingering_close`). When the proxy
//! closes a connection whose client may still be sending — a request body it refused to read, a
//! request head it rejected — closing the socket with unread bytes in it makes the kernel answer
//! them with a reset, and a reset can destroy the response the client has not read yet; a client
//! that writes its whole body before reading (Python `requests`, most HTTP/1.1 libraries) fails
//! on the write and never looks. [`Linger`] wraps the connection's I/O: when hyper shuts the
//! connection down, it sends the FIN (after the response) and then keeps reading and discarding
//! what the client still sends, until the client closes its side or a bound is reached, so the
//! client can finish writing and read the answer. Nothing here parses or keeps those bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The bounds of one lingering close: total time, time without a byte, and bytes discarded.
/// A client can keep a closing connection (and its `max_connections` slot) at most this long,
/// and never make the proxy read more than this much for nothing.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
pub const LINGER_IDLE: Duration = Duration::from_secs(2);
pub const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Turns lingering off for one connection: after a `101 Switching Protocols` the connection is a
/// tunnel, whose half-closes must not read away bytes meant for the other side.
#[derive(Debug, Clone)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    pub fn disarm(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

enum State {
    Open,
    Draining { deadline: Pin<Box<Sleep>>, idle: Pin<Box<Sleep>>, read: usize, scratch: Box<[u8]> },
    Closed,
}

/// Connection I/O whose shutdown lingers (see the module documentation). Reads and writes pass
/// straight through.
pub struct Linger<I> {
    io: I,
    armed: Arc<AtomicBool>,
    state: State,
}

impl<I> Linger<I> {
    pub fn new(io: I) -> (Self, Switch) {
        let armed = Arc::new(AtomicBool::new(true));
        (Linger { io, armed: armed.clone(), state: State::Open }, Switch(armed))
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for Linger<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Read + hyper::rt::Write + Unpin> hyper::rt::Write for Linger<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Send the FIN, then read and discard until the client's EOF, an error, or a bound.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    let shut = ready!(Pin::new(&mut this.io).poll_shutdown(cx));
                    if shut.is_err() || !this.armed.load(Ordering::Relaxed) {
                        this.state = State::Closed;
                        return Poll::Ready(shut);
                    }
                    this.state = State::Draining {
                        deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
                        idle: Box::pin(tokio::time::sleep(LINGER_IDLE)),
                        read: 0,
                        scratch: vec![0u8; 16 * 1024].into_boxed_slice(),
                    };
                }
                State::Draining { deadline, idle, read, scratch } => {
                    let mut buf = hyper::rt::ReadBuf::new(scratch);
                    match Pin::new(&mut this.io).poll_read(cx, buf.unfilled()) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            *read += buf.filled().len();
                            if *read > LINGER_BYTES {
                                this.state = State::Closed;
                            } else {
                                idle.as_mut().reset(Instant::now() + LINGER_IDLE);
                            }
                        }
                        // EOF (the client is done) or an error: nothing more to wait for.
                        Poll::Ready(_) => this.state = State::Closed,
                        Poll::Pending => {
                            if deadline.as_mut().poll(cx).is_pending() && idle.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                            this.state = State::Closed;
                        }
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Write as _;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    async fn shutdown<I: hyper::rt::Read + hyper::rt::Write + Unpin>(io: &mut Linger<I>) -> io::Result<()> {
        std::future::poll_fn(|cx| Pin::new(&mut *io).poll_shutdown(cx)).await
    }

    /// The FIN goes out first, then everything the client still sends is read (and dropped)
    /// until its EOF, so its writes never meet a reset.
    #[tokio::test]
    async fn shutdown_sends_fin_then_drains_until_the_client_closes() {
        let (mut client, server) = pair().await;
        let (mut io, _switch) = Linger::new(TokioIo::new(server));
        let closing = tokio::spawn(async move { shutdown(&mut io).await });
        let mut eof = Vec::new();
        client.read_to_end(&mut eof).await.expect("FIN, not a reset");
        assert!(eof.is_empty());
        let body = vec![7u8; 4 * 1024 * 1024];
        client.write_all(&body).await.expect("the lingering side keeps reading");
        client.shutdown().await.unwrap();
        closing.await.unwrap().expect("clean shutdown");
    }

    /// After an upgrade the connection is a tunnel: shutdown only sends the FIN.
    #[tokio::test]
    async fn a_disarmed_connection_does_not_read_on_shutdown() {
        let (mut client, server) = pair().await;
        let (mut io, switch) = Linger::new(TokioIo::new(server));
        switch.disarm();
        client.write_all(b"meant for the other side").await.unwrap();
        shutdown(&mut io).await.expect("clean shutdown");
        let mut left = [0u8; 64];
        let n = hyper_read(&mut io, &mut left).await;
        assert_eq!(&left[..n], b"meant for the other side");
    }

    async fn hyper_read<I: hyper::rt::Read + Unpin>(io: &mut Linger<I>, out: &mut [u8]) -> usize {
        use hyper::rt::Read as _;
        std::future::poll_fn(|cx| {
            let mut buf = hyper::rt::ReadBuf::new(out);
            ready!(Pin::new(&mut *io).poll_read(cx, buf.unfilled())).unwrap();
            Poll::Ready(buf.filled().len())
        })
        .await
    }

    /// A client that neither stops sending nor closes is cut at the byte bound.
    #[tokio::test]
    async fn lingering_stops_at_the_byte_bound() {
        let (mut client, server) = pair().await;
        let (mut io, _switch) = Linger::new(TokioIo::new(server));
        let flood = tokio::spawn(async move {
            let chunk = vec![1u8; 256 * 1024];
            while client.write_all(&chunk).await.is_ok() {}
        });
        shutdown(&mut io).await.expect("clean shutdown");
        drop(io);
        flood.await.unwrap();
    }

    /// A client that stalls is cut at the idle bound (the paused clock skips ahead).
    #[tokio::test(start_paused = true)]
    async fn lingering_stops_when_the_client_stalls() {
        let (client, server) = pair().await;
        let (mut io, _switch) = Linger::new(TokioIo::new(server));
        shutdown(&mut io).await.expect("clean shutdown");
        drop(client);
    }
}
