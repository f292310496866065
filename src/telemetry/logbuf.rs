//! The access log's fast path (README "Logging", docs/profiling.md): each access line is
//! formatted straight into a per-thread buffer — so a core's lines cost no system call on the
//! request path — and written out by one flusher thread at most every [`FLUSH_INTERVAL`], or by
//! the core itself once its buffer passes [`FLUSH_BYTES`].
//!
//! The line is the same JSON object, field for field and escape for escape, as the one
//! `tracing-subscriber`'s JSON formatter writes for the `portcullis::access` event (a unit test
//! compares the two byte for byte), so log pipelines see no difference. Values a client controls
//! (`path`, `sub`) go through [`crate::telemetry::log::truncate`] and JSON escaping exactly as before
//! (SECURITY OBS-02); tokens never reach this module at all (OBS-01).
//!
//! Lines are never lost on the way out: a buffer belongs to a thread, not to a connection task,
//! so a panicking task cannot take lines with it; core threads flush when they stop, a buffer
//! dropped with its thread writes itself out, and the binary calls [`flush_all`] before it exits.
//! The only way a line is dropped is the sink failing (stderr closed, `EPIPE`, `EIO`): those lines
//! are counted in `portcullis_log_lines_dropped_total`, never dropped silently. When the sink is
//! slow the buffers grow up to [`FLUSH_BYTES`], then the core writes (and waits) itself: the same
//! back-pressure as a direct write, not an unbounded queue.
//!
//! Only the binary turns this on ([`install`], JSON format); without it — the library in tests, or
//! `--log-format text` — the access line is an ordinary `tracing` event.

use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest a line waits in a buffer while the process is serving.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// A buffer this full is written by its own thread at once instead of waiting for the flusher.
pub const FLUSH_BYTES: usize = 256 * 1024;

type Sink = Box<dyn Write + Send>;

static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();
static FLUSHER: OnceLock<std::thread::Thread> = OnceLock::new();
static REGISTRY: Mutex<Vec<Weak<Mutex<LineBuf>>>> = Mutex::new(Vec::new());
static DROPPED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static LOCAL: Arc<Mutex<LineBuf>> = register();
}

/// One thread's pending lines. `committed` marks the end of the last complete line: a line being
/// formatted when something panicked is cut off, never written half.
#[derive(Default)]
struct LineBuf {
    bytes: Vec<u8>,
    committed: usize,
    /// An emptied buffer kept for the next swap, so steady state allocates nothing.
    spare: Vec<u8>,
}

impl Drop for LineBuf {
    fn drop(&mut self) {
        // The thread is gone (or the process is exiting it): write what it left.
        self.bytes.truncate(self.committed);
        if !self.bytes.is_empty() {
            write_out(&self.bytes);
        }
    }
}

fn register() -> Arc<Mutex<LineBuf>> {
    let buf = Arc::new(Mutex::new(LineBuf::default()));
    let mut all = lock(&REGISTRY);
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(&buf));
    buf
}

/// A poisoned lock only means a panic happened while it was held; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Send access lines through the buffers to `sink` (the binary passes stderr) and start the
/// flusher thread. Only the first call has an effect.
pub fn install(sink: Sink) {
    if SINK.set(Mutex::new(sink)).is_err() {
        return;
    }
    let flusher = std::thread::Builder::new().name("portcullis-log".into()).spawn(|| {
        loop {
            // Parked while every buffer is empty; a thread that adds to an empty buffer unparks it.
            std::thread::park();
            // The flusher is a plain thread of its own, never a runtime worker: sleeping here
            // is how the lines wait for their batch.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(FLUSH_INTERVAL);
            flush_all();
        }
    });
    match flusher {
        Ok(handle) => {
            let _ = FLUSHER.set(handle.thread().clone());
        }
        // No flusher: every line is written at once instead (see `append`).
        Err(e) => eprintln!("portcullis: cannot start the log flusher thread: {e}"),
    }
}

/// Lines dropped because the sink failed, since the process started.
pub fn dropped_total() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Write every thread's pending lines now (shutdown, exit).
pub fn flush_all() {
    if SINK.get().is_none() {
        return;
    }
    // Collected before any sink lock is taken: a buffer whose thread has ended is dropped with
    // the last of these `Arc`s, and its `Drop` writes to the sink itself.
    let bufs: Vec<Arc<Mutex<LineBuf>>> = lock(&REGISTRY).iter().filter_map(Weak::upgrade).collect();
    for buf in &bufs {
        flush_buf(buf);
    }
}

/// Write this thread's pending lines now.
pub fn flush_thread() {
    if SINK.get().is_none() {
        return;
    }
    let _ = LOCAL.try_with(|buf| flush_buf(buf));
}

/// Swap the buffer's lines out under its lock, write them without it, and keep the emptied
/// vector for the next swap.
fn flush_buf(buf: &Mutex<LineBuf>) {
    let mut out = {
        let mut b = lock(buf);
        let committed = b.committed;
        b.bytes.truncate(committed);
        if committed == 0 {
            return;
        }
        let spare = std::mem::take(&mut b.spare);
        b.committed = 0;
        std::mem::replace(&mut b.bytes, spare)
    };
    write_out(&out);
    out.clear();
    let mut b = lock(buf);
    if b.spare.capacity() == 0 {
        b.spare = out;
    }
}

/// One `write_all` under the sink's lock (lines from different threads never interleave). If
/// it fails, the lines it held are counted as dropped.
fn write_out(bytes: &[u8]) {
    let Some(sink) = SINK.get() else { return };
    let mut sink = lock(sink);
    if sink.write_all(bytes).and_then(|()| sink.flush()).is_err() {
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        DROPPED.fetch_add(lines, Ordering::Relaxed);
    }
}

/// Append one complete line (formatted by `format`) to this thread's buffer.
fn append(format: impl Fn(&mut Vec<u8>)) {
    let flusher = FLUSHER.get();
    let appended = LOCAL.try_with(|buf| {
        let mut b = lock(buf);
        let committed = b.committed;
        b.bytes.truncate(committed);
        format(&mut b.bytes);
        b.committed = b.bytes.len();
        let len = b.committed;
        drop(b);
        if flusher.is_none() || len >= FLUSH_BYTES {
            flush_buf(buf);
        } else if committed == 0 {
            // First line since the last flush: make sure the flusher will come by. `unpark` is
            // a system call only when the flusher is parked (idle), not under load.
            if let Some(t) = flusher {
                t.unpark();
            }
        }
    });
    if appended.is_err() {
        // This thread's buffer is already gone (thread exit): write the line directly.
        let mut line = Vec::with_capacity(512);
        format(&mut line);
        write_out(&line);
    }
}

/// One access-log line (SPEC §6 "Logging"): the fields, in the order the log has always had them.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    /// The normalised path; truncated and escaped when written.
    pub path: Option<&'a str>,
    pub route: &'a str,
    pub decision: &'a str,
    pub reason: &'a str,
    pub status: Option<u16>,
    /// The verified subject; truncated and escaped when written.
    pub sub: Option<&'a str>,
    pub auth_us: Option<u64>,
    pub upstream_us: Option<u64>,
    pub total_us: u64,
}

impl Access<'_> {
    /// Log the line: into the buffers when [`install`]ed and the `portcullis::access` target is
    /// enabled at INFO, else as a `tracing` event (which the filter may also turn off).
    pub fn log(&self) {
        if SINK.get().is_some() {
            if tracing::enabled!(target: "portcullis::access", tracing::Level::INFO) {
                // The line's `timestamp` is a wall-clock time, as tracing's formatter writes it.
                #[allow(clippy::disallowed_methods)]
                let now = SystemTime::now();
                append(|out| self.format(out, now));
            }
            return;
        }
        self.emit_tracing();
    }

    /// The same line as a `tracing` event.
    pub fn emit_tracing(&self) {
        tracing::info!(
            target: "portcullis::access",
            request_id = self.request_id,
            method = self.method,
            path = self.path.map(crate::telemetry::log::truncate).map(tracing::field::display),
            route = self.route,
            decision = self.decision,
            reason = self.reason,
            status = self.status,
            sub = self.sub.map(crate::telemetry::log::truncate).map(tracing::field::display),
            auth_us = self.auth_us,
            upstream_us = self.upstream_us,
            total_us = self.total_us,
        );
    }

    /// Append the JSON line (with its newline) as `tracing-subscriber`'s JSON formatter writes it
    /// with `flatten_event(true)`: timestamp, level, the fields (absent when `None`), target.
    pub fn format(&self, out: &mut Vec<u8>, now: SystemTime) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        write_timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":\"INFO\"");
        str_field(out, "request_id", self.request_id);
        str_field(out, "method", self.method);
        if let Some(p) = self.path {
            truncated_field(out, "path", p);
        }
        str_field(out, "route", self.route);
        str_field(out, "decision", self.decision);
        str_field(out, "reason", self.reason);
        if let Some(s) = self.status {
            num_field(out, "status", u64::from(s));
        }
        if let Some(s) = self.sub {
            truncated_field(out, "sub", s);
        }
        if let Some(v) = self.auth_us {
            num_field(out, "auth_us", v);
        }
        if let Some(v) = self.upstream_us {
            num_field(out, "upstream_us", v);
        }
        num_field(out, "total_us", self.total_us);
        out.extend_from_slice(b",\"target\":\"portcullis::access\"}\n");
    }
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn str_field(out: &mut Vec<u8>, name: &str, value: &str) {
    key(out, name);
    out.push(b'"');
    escape_into(out, value);
    out.push(b'"');
}

/// A client-controlled value as [`crate::telemetry::log::truncate`] displays it, JSON-escaped.
fn truncated_field(out: &mut Vec<u8>, name: &str, value: &str) {
    key(out, name);
    out.push(b'"');
    // `Truncated`'s own fast path, without the formatting machinery: short and nothing to replace
    // means it displays the value unchanged (bytes ≥ characters).
    if value.len() <= crate::telemetry::log::MAX_LOGGED_CHARS && !value.chars().any(char::is_control) {
        escape_into(out, value);
    } else {
        let _ = write!(JsonEscaped(out), "{}", crate::telemetry::log::truncate(value));
    }
    out.push(b'"');
}

fn num_field(out: &mut Vec<u8>, name: &str, value: u64) {
    key(out, name);
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = value;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A `fmt::Write` that JSON-escapes what is written through it.
struct JsonEscaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// JSON string escaping exactly as `serde_json` does it: `"` and `\` escaped, the short forms
/// for \b \f \n \r \t, `\u00XX` (lower-case hex) for the other control characters below 0x20,
/// everything else (DEL and non-ASCII included) as UTF-8.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// RFC 3339 in UTC with microseconds, as `tracing-subscriber`'s `SystemTime` timer writes it:
/// `2026-12-06T04:32:54.123456Z`.
fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let micros = d.subsec_micros();
    let two = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
    let y = year.clamp(0, 9999) as u64;
    out.extend_from_slice(&[
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
    ]);
    two(out, month);
    out.push(b'-');
    two(out, day);
    out.push(b'T');
    two(out, rem / 3600);
    out.push(b':');
    two(out, rem / 60 % 60);
    out.push(b':');
    two(out, rem % 60);
    out.push(b'.');
    let mut frac = [b'0'; 6];
    let mut m = micros;
    for c in frac.iter_mut().rev() {
        *c = b'0' + (m % 10) as u8;
        m /= 10;
    }
    out.extend_from_slice(&frac);
    out.push(b'Z');
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
