//! Thread-per-core serving of the proxy listener (README "Performance", docs/profiling.md). Owns
//! the `SO_REUSEPORT` listener group and the core threads: each core is one OS thread running a
//! current-thread Tokio runtime with its own listener, so a connection, the requests on it and
//! their upstream exchanges (the per-core client in `proxy::upstream`) stay on one thread, with no
//! cross-thread wake-up on the request path. The kernel spreads new connections over the
//! listeners (by a hash of the 4-tuple).
//!
//! What stays process-wide, on purpose: the config snapshot (one `ArcSwap` shared by every core,
//! so a reload is seen by all of them at once), the verified-token cache (inside the snapshot),
//! the `limits.max_connections` semaphore (a process-wide cap, not one per core), the draining
//! flag and the stop signal. The JWKS refreshers, the reload watcher and the admin listener run
//! on the control runtime that called [`spawn`], never on a core.
//!
//! Does not look at requests (`proxy::pipeline`) or own the HTTP settings: each connection is
//! served by `server::serve_connection`, the same as on the single listener (connection builder
//! and hyper's header backstops, lingering close, refused-head accounting, per-connection drain).

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::proxy::runtime::Shared;
use crate::serve::server::{self, ListenerSettings};

thread_local! {
    /// The index of the core this thread serves, if it is a core thread.
    static CORE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The core serving the current thread (`None` on the control runtime and in other threads).
pub fn current() -> Option<usize> {
    CORE.with(Cell::get)
}

/// How many cores to serve on: `TOKIO_WORKER_THREADS` when set (the knob the multi-threaded
/// runtime honoured before), else `available_parallelism`, which honours the cgroup v2 CPU quota
/// (`cpu.max`) and the affinity mask on Linux.
pub fn default_cores() -> usize {
    // A process knob read as Tokio read it (not configuration, which takes the `env` lookup).
    #[allow(clippy::disallowed_methods)]
    if let Some(n) = std::env::var("TOKIO_WORKER_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok())
        && n > 0
    {
        return n;
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The bound listener group: one socket per core, all on the same address.
pub struct Listeners {
    sockets: Vec<std::net::TcpListener>,
    addr: SocketAddr,
}

impl Listeners {
    /// The address every listener of the group is bound to (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
}

/// Bind `cores` listeners to `addr` with `SO_REUSEADDR` (a restarted sidecar rebinds at once)
/// and `SO_REUSEPORT` (the group shares the port). With port 0 the first socket picks the port
/// and the others join it. Linux only lets sockets of the same effective UID join a group.
/// Must run inside a Tokio runtime (the sockets are handed over unregistered).
pub fn bind(addr: SocketAddr, cores: usize) -> std::io::Result<Listeners> {
    let mut sockets = Vec::with_capacity(cores.max(1));
    let mut at = addr;
    for _ in 0..cores.max(1) {
        let socket = if at.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(at)?;
        let listener = socket.listen(1024)?;
        at = listener.local_addr()?;
        // Registered later, with the core runtime that accepts on it.
        sockets.push(listener.into_std()?);
    }
    Ok(Listeners { sockets, addr: at })
}

/// Start one core thread per listener and return a task (on the calling runtime) that finishes
/// when every core has stopped accepting and drained its connections (each bounded by
/// `settings.grace`, in parallel). Stopping is `stop` turning true, or its sender being dropped.
pub fn spawn(
    shared: Arc<Shared>,
    listeners: Listeners,
    tls: Option<tokio_rustls::TlsAcceptor>,
    settings: ListenerSettings,
    stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    // One cap for the whole process (SECURITY DOS-07): a per-core cap would multiply it.
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let builder = Arc::new(server::builder(&settings));
    let mut done = Vec::with_capacity(listeners.sockets.len());
    for (core, socket) in listeners.sockets.into_iter().enumerate() {
        let (tx, rx) = oneshot::channel::<()>();
        done.push(rx);
        let core_state = Core {
            index: core,
            shared: shared.clone(),
            slots: slots.clone(),
            builder: builder.clone(),
            tls: tls.clone(),
            settings: settings.clone(),
            stop: stop.clone(),
        };
        std::thread::Builder::new().name(format!("portcullis-core-{core}")).spawn(move || {
            // Dropped when the thread ends, however it ends: the waiting task learns of it.
            let _done = tx;
            CORE.with(|c| c.set(Some(core)));
            crate::proxy::upstream::use_a_client_per_thread();
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(core, error = %e, "cannot start a core runtime");
                    return;
                }
            };
            runtime.block_on(core_state.run(socket));
            // Whatever is still running after the grace period is cancelled here, as before
            // at process exit; its access lines (written on drop) land in this core's buffer.
            drop(runtime);
            crate::telemetry::logbuf::flush_thread();
        })?;
    }
    Ok(tokio::spawn(async move {
        for rx in done {
            let _ = rx.await;
        }
        crate::telemetry::logbuf::flush_all();
    }))
}

struct Core {
    index: usize,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    builder: Arc<hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    settings: ListenerSettings,
    stop: watch::Receiver<bool>,
}

impl Core {
    /// Accept until told to stop, then wait (at most `grace`) for this core's connections.
    async fn run(mut self, socket: std::net::TcpListener) {
        let listener = match TcpListener::from_std(socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(core = self.index, error = %e, "cannot register the listener");
                return;
            }
        };
        let accepted_total = self.shared.metrics.core_connections_total.with_label_values(&[&self.index.to_string()]);
        let anchor = tokio::spawn(timer_anchor());
        // Every connection task holds a sender: all of them gone means this core is drained.
        let (open, mut drained) = mpsc::channel::<()>(1);
        loop {
            let accepted = tokio::select! {
                biased;
                _ = server::stopped(&mut self.stop) => break,
                r = listener.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning (SECURITY DOS-07).
                    tracing::warn!(core = self.index, error = %e, "accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                self.shared.metrics.connections_rejected_total.inc();
                drop(stream); // over limits.max_connections: close at once
                continue;
            };
            accepted_total.inc();
            let _ = stream.set_nodelay(true);
            let (shared, builder, tls, stop) =
                (self.shared.clone(), self.builder.clone(), self.tls.clone(), self.stop.clone());
            let handshake_timeout = self.settings.header_read_timeout;
            let open = open.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let _open = open;
                server::serve_stream(shared, builder, tls, stream, peer, handshake_timeout, stop).await;
            });
        }
        drop(listener);
        drop(open);
        anchor.abort();
        if tokio::time::timeout(self.settings.grace, drained.recv()).await.is_err() {
            tracing::warn!(core = self.index, "shutdown.grace elapsed with requests still in flight");
        }
        crate::telemetry::logbuf::flush_thread();
    }
}

/// How far ahead this core always has a timer registered (see [`timer_anchor`]).
const TIMER_ANCHOR: Duration = Duration::from_millis(100);

/// Tokio's timer wakes its driver — one `write(2)` to the runtime's eventfd, even from the
/// runtime's own thread — whenever a timer is registered earlier than every timer already
/// registered. Each request registers a few (the header read timeout of the next request, the
/// upstream timeout), and between requests none may be left, so without this about every other
/// request paid that system call (measured: 0.8 per request). A timer that is always at most
/// [`TIMER_ANCHOR`] away makes every request's timers (seconds away) later than it: they are
/// registered without a wake-up. Costs ten timer wake-ups a second per core; every tenth also
/// closes the core's expired idle upstream connections.
async fn timer_anchor() {
    let mut tick = tokio::time::interval(TIMER_ANCHOR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        if n % 10 == 9 {
            crate::proxy::upstream::sweep_idle_connections();
        }
    }
}
