//! The fast access-log line against `tracing-subscriber`'s JSON formatter (byte for byte, bar the
//! timestamp's value), the escaping against `serde_json`, the timestamp against known dates, and
//! the buffers' promise: every line written out, none lost with a panicking task or an ending
//! thread, and lost lines counted when the sink fails.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>, Arc<AtomicBool>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.1.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "sink closed"));
        }
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The line `tracing-subscriber` writes for `access`, with the binary's JSON settings.
fn tracing_line(access: &Access<'_>) -> String {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || access.emit_tracing());
    String::from_utf8(capture.0.lock().unwrap().clone()).unwrap()
}

// The line's timestamp is wall-clock time, as in production.
#[allow(clippy::disallowed_methods)]
fn fast_line(access: &Access<'_>) -> String {
    let mut out = Vec::new();
    access.format(&mut out, SystemTime::now());
    String::from_utf8(out).unwrap()
}

/// `"timestamp":"…"` replaced by a fixed value, after checking its shape.
fn without_timestamp(line: &str) -> String {
    let prefix = "{\"timestamp\":\"";
    assert!(line.starts_with(prefix), "{line}");
    let ts = &line[prefix.len()..prefix.len() + 27];
    let b = ts.as_bytes();
    assert_eq!(b[26], b'Z', "{ts}");
    for (i, c) in b.iter().enumerate().take(26) {
        let want_sep = match i {
            4 | 7 => Some(b'-'),
            10 => Some(b'T'),
            13 | 16 => Some(b':'),
            19 => Some(b'.'),
            _ => None,
        };
        match want_sep {
            Some(sep) => assert_eq!(*c, sep, "{ts}"),
            None => assert!(c.is_ascii_digit(), "{ts}"),
        }
    }
    format!("{prefix}T{}", &line[prefix.len() + 27..])
}

/// SECURITY OBS-02: the hand-written line is the generic formatter's line — same fields, same
/// order, same escaping and truncation of client-controlled values — for hostile values too.
#[test]
fn access_line_is_byte_identical_to_the_tracing_json_formatter() {
    let long = "é".repeat(400);
    let hostile = "/a\"b\\c\n{\"level\":\"ERROR\"}\u{1b}[31m\u{7f}\u{85}\t\r\u{0}/ünï/😀";
    let full = Access {
        request_id: "0123456789abcdef0123456789abcdef",
        method: "GET",
        path: Some(hostile),
        route: "api",
        decision: "allow",
        reason: "ok",
        status: Some(200),
        sub: Some("u-\"1\"\\\u{1}"),
        auth_us: Some(12),
        upstream_us: Some(0),
        total_us: 18_446_744_073_709_551_615,
    };
    let minimal = Access {
        request_id: "req.id-_1",
        method: "PURGE",
        path: None,
        route: "none",
        decision: "error",
        reason: "client_abort",
        status: None,
        sub: None,
        auth_us: None,
        upstream_us: None,
        total_us: 0,
    };
    let truncated = Access { path: Some(&long), sub: Some(&long), ..minimal };
    for access in [full, minimal, truncated] {
        let expected = tracing_line(&access);
        let got = fast_line(&access);
        assert_eq!(without_timestamp(&got), without_timestamp(&expected));
        assert!(got.ends_with('\n') && got.matches('\n').count() == 1, "one line: {got}");
        let parsed: serde_json::Value = serde_json::from_str(&got).expect("JSON");
        assert_eq!(parsed["target"], "portcullis::access");
    }
}

#[test]
fn escaping_matches_serde_json_for_every_ascii_character_and_beyond() {
    let mut all: String = (0u8..0x80).map(char::from).collect();
    all.push_str("é€😀\u{85}\u{2028}");
    for s in [all.as_str(), "", "plain", "\"", "\\\\"] {
        let mut out = Vec::new();
        escape_into(&mut out, s);
        let expected = serde_json::to_string(s).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected[1..expected.len() - 1]);
    }
}

#[test]
fn timestamps_are_rfc3339_utc_with_microseconds() {
    for (secs, micros, want) in [
        (0, 0, "1970-01-01T00:00:00.000000Z"),
        (951_782_400, 7, "2000-02-29T00:00:00.000007Z"),
        (1_796_531_574, 123_456, "2026-12-06T04:32:54.123456Z"),
        (4_102_444_799, 999_999, "2099-12-31T23:59:59.999999Z"),
        (4_107_542_400, 0, "2100-03-01T00:00:00.000000Z"),
    ] {
        let mut out = Vec::new();
        write_timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros));
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}

fn line(n: usize) -> impl Fn(&mut Vec<u8>) {
    move |out: &mut Vec<u8>| out.extend_from_slice(format!("{{\"n\":{n}}}\n").as_bytes())
}

/// The buffers (one test, because the sink is process-wide): lines from several threads all
/// come out whole; a panicking task or an ending thread loses none; a failing sink's lines are
/// counted as dropped.
#[test]
fn buffered_lines_survive_panics_and_thread_exit_and_failures_are_counted() {
    let capture = Capture::default();
    install(Box::new(capture.clone()));

    // Several threads, one of which panics after writing; each ends (its buffer writes itself).
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..100 {
                    append(line(t * 1000 + i));
                }
                if t == 3 {
                    panic!("a connection task's bug");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    // A task that panics on a current-thread runtime (as on a core): its line stays buffered.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let task = tokio::spawn(async {
            append(line(9999));
            panic!("a connection task's bug");
        });
        assert!(task.await.is_err());
    });
    flush_all();
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let mut seen: Vec<usize> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("whole JSON lines")["n"].as_u64().unwrap() as usize
        })
        .collect();
    seen.sort_unstable();
    let mut want: Vec<usize> = (0..4).flat_map(|t| (0..100).map(move |i| t * 1000 + i)).collect();
    want.push(9999);
    assert_eq!(seen, want);

    // The sink fails: the lines are counted, not silently lost.
    let before = dropped_total();
    capture.1.store(true, Ordering::SeqCst);
    for i in 0..3 {
        append(line(i));
    }
    flush_all();
    capture.1.store(false, Ordering::SeqCst);
    assert_eq!(dropped_total() - before, 3);
}
