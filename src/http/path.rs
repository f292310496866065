//! Request-path normalisation. This module owns the one normaliser whose output
//! is used for *both* route matching and the path forwarded upstream, so the
//! proxy and the backend can never disagree about which resource a request
//! names: anything a backend might read differently from us (encoded
//! separators, encoded dot segments, path parameters, control bytes, invalid
//! or overlong UTF-8, edge whitespace, slash look-alikes) is refused with
//! 400 `ambiguous_path`, and everything else is reduced to one canonical
//! spelling. It does not match routes, does not look inside or
//! rewrite the query string (which is forwarded untouched), does not choose
//! the upstream, and does not limit length (the HTTP server does that).
//!
//! Notes for callers using `hyper`/`http` 1.x (checked against `http` 1.5):
//! - `http::Uri` silently drops a fragment (`/a#x` parses with path `/a`), so
//!   [`PathError::Fragment`] can only fire when this module sees the raw
//!   target; the `#` checks here are defence in depth.
//! - `http::Uri` accepts raw (valid) UTF-8 bytes in the path, so
//!   [`PathError::NonAscii`] is reachable in practice: such requests get 400.
//! - For absolute-form targets, pass `uri.path()` (the empty path is
//!   accepted and becomes `/`); the upstream is always the configured one.

use std::fmt;

/// Why a request path was refused. Every variant maps to 400 `ambiguous_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The target (or path) does not start with `/` (e.g. asterisk-form, a
    /// relative path, or an absolute-form URI passed without splitting).
    NotOriginForm,
    /// A raw `#` (fragment delimiter) in the request target.
    Fragment,
    /// A raw `?` inside what the caller passed as the path component (the
    /// query was not split off first, so routing and forwarding would
    /// disagree about where the path ends).
    QueryInPath,
    /// `%2F` (encoded `/`).
    EncodedSlash,
    /// A raw `\` or `%5C`.
    Backslash,
    /// A raw `;` or `%3B` (path parameters).
    Semicolon,
    /// A control character: raw or encoded C0 (`%00`–`%1F`), DEL (`%7F`), or
    /// a UTF-8 encoded C1 control (U+0080–U+009F, e.g. `%C2%85`).
    ControlChar,
    /// `%` not followed by two hex digits.
    InvalidPercentEncoding,
    /// Percent-encoded bytes that are not valid UTF-8 (overlong forms,
    /// surrogates, stray continuation bytes, truncated sequences).
    InvalidUtf8,
    /// A `.` or `..` segment written with any percent-encoding (`%2e`, `.%2E`).
    EncodedDotSegment,
    /// `%3F` (encoded `?`) or `%23` (encoded `#`).
    EncodedDelimiter,
    /// A segment that starts or ends with whitespace (ASCII or Unicode
    /// White_Space, raw or encoded), or a raw space anywhere.
    Whitespace,
    /// A character some backends fold into `/`, `\` or `.` (fullwidth
    /// solidus and friends); see [`CONFUSABLES`].
    ConfusableSlash,
    /// A `..` segment that would climb above the root.
    AboveRoot,
    /// A raw (not percent-encoded) non-ASCII character.
    NonAscii,
    /// A request target that names no path (authority-form, asterisk-form) or carries userinfo.
    Target(TargetError),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Target(e) => return e.fmt(f),
            PathError::NotOriginForm => "request target is not origin-form",
            PathError::Fragment => "fragment in request target",
            PathError::QueryInPath => "query delimiter in path component",
            PathError::EncodedSlash => "encoded slash in path",
            PathError::Backslash => "backslash in path",
            PathError::Semicolon => "semicolon in path",
            PathError::ControlChar => "control character in path",
            PathError::InvalidPercentEncoding => "invalid percent-encoding in path",
            PathError::InvalidUtf8 => "percent-encoded bytes are not valid utf-8",
            PathError::EncodedDotSegment => "percent-encoded dot segment",
            PathError::EncodedDelimiter => "encoded query or fragment delimiter in path",
            PathError::Whitespace => "path segment starts or ends with whitespace",
            PathError::ConfusableSlash => "slash or dot look-alike character in path",
            PathError::AboveRoot => "dot segment climbs above the root",
            PathError::NonAscii => "raw non-ascii character in path",
        })
    }
}

impl std::error::Error for PathError {}

/// Characters rejected anywhere in a path (after percent-decoding).
///
/// Some backends (IIS/Windows "best fit" code-page conversion, Java/.NET
/// NFKC normalisation, filesystem layers) fold these into `/`, `\` or `.`
/// *after* the proxy has decided what the path means, which would reopen the
/// separator and dot-segment bypasses the other rules close (PATH-09). No
/// Unicode tables may be added as dependencies, so this is a hard-coded list:
/// every character whose NFKC form contains `/` or `\` or consists only of
/// one or two `.` (computed from Unicode 14), plus visual slash look-alikes
/// with no decomposition (U+2215, U+2044, U+29F8).
pub const CONFUSABLES: &[char] = &[
    '\u{FF0F}', // FULLWIDTH SOLIDUS (NFKC `/`)
    '\u{FF3C}', // FULLWIDTH REVERSE SOLIDUS (NFKC `\`)
    '\u{FE68}', // SMALL REVERSE SOLIDUS (NFKC `\`)
    '\u{2215}', // DIVISION SLASH (best-fit `/`)
    '\u{2044}', // FRACTION SLASH
    '\u{29F8}', // BIG SOLIDUS
    '\u{2100}', // ACCOUNT OF (NFKC `a/c`)
    '\u{2101}', // ADDRESSED TO THE SUBJECT (NFKC `a/s`)
    '\u{2105}', // CARE OF (NFKC `c/o`)
    '\u{2106}', // CADA UNA (NFKC `c/u`)
    '\u{FF0E}', // FULLWIDTH FULL STOP (NFKC `.`)
    '\u{FE52}', // SMALL FULL STOP (NFKC `.`)
    '\u{2024}', // ONE DOT LEADER (NFKC `.`)
    '\u{2025}', // TWO DOT LEADER (NFKC `..`)
    '\u{FE30}', // PRESENTATION FORM FOR VERTICAL TWO DOT LEADER (NFKC `..`)
];

/// Why a request target is not one Portcullis can authorise (SPEC §2: only origin-form and
/// absolute-form name a path). Every variant maps to 400 `bad_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Authority-form (`host:port`, RFC 9112 §3.2.3): CONNECT's form, and no path at all.
    AuthorityForm,
    /// Asterisk-form (`*`, RFC 9112 §3.2.4): a server-wide `OPTIONS`, no path at all.
    AsteriskForm,
    /// An authority with userinfo (`http://user@host/`): invalid for `http(s)` (RFC 9110 §4.2.4),
    /// and it would reach the app as `Host` when the request carries none.
    Userinfo,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetError::AuthorityForm => "authority-form request target (host:port): no path to authorise",
            TargetError::AsteriskForm => "asterisk-form request target (*): no path to authorise",
            TargetError::Userinfo => "request target with userinfo (user@host)",
        })
    }
}

impl std::error::Error for TargetError {}

/// Accepts only the request-target forms that name a path: origin-form (`/p?q`) and
/// absolute-form (`http://h/p?q`, matched on its path). `uri` is the target as hyper parsed it
/// (HTTP/1) or built it from the pseudo-headers (HTTP/2, where it is always absolute).
///
/// Authority-form has an empty path, which [`normalise`] would turn into `/`: a route for `/`
/// (or a catch-all `/**`) would then authorise, and forward, a path the client never named.
pub fn check_target(uri: &http::Uri) -> Result<(), TargetError> {
    // `http` keeps a bare `*` (and an HTTP/2 `:path: *`) as the path "*".
    if uri.path() == "*" {
        return Err(TargetError::AsteriskForm);
    }
    if uri.scheme().is_none() && uri.authority().is_some() {
        return Err(TargetError::AuthorityForm);
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(TargetError::Userinfo);
    }
    Ok(())
}

/// Normalises a raw path component into the single canonical path used for
/// both route matching and forwarding.
///
/// `path` is the path exactly as received, *without* the query: the caller
/// strips it (`http::Uri::path`). The empty path
/// (absolute-form `http://h`) becomes `/`; anything else must start with `/`.
///
/// In order: every segment is validated (even segments a later `..` removes),
/// percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded
/// exactly once, other escapes are kept with upper-case hex, repeated slashes
/// are merged, and `.`/`..` segments are resolved (`..` above the root is an
/// error). A trailing slash is kept, and a path ending in a `.` or `..`
/// segment ends in `/` (`/a/b/..` → `/a/`). The output is pure ASCII, always
/// starts with `/`, and `normalise` is idempotent on it.
///
/// Runs in linear time, never panics, and allocates one `String` of at most
/// `path.len()` bytes (one byte for the empty path).
pub fn normalise(path: &str) -> Result<String, PathError> {
    let rest = match path.strip_prefix('/') {
        Some(rest) => rest,
        None if path.is_empty() => return Ok(String::from("/")),
        None => return Err(PathError::NotOriginForm),
    };

    // The output never grows past the input: each emitted `/` stands for an
    // input `/`, decoding only shrinks, and re-encoding keeps the length.
    let mut out = String::with_capacity(path.len());
    // `..` above the root is only reported once the whole path has been
    // validated, so rejections keep the SPEC's order (validate, then resolve).
    let mut above_root = false;
    // Whether the last raw segment was empty, `.` or `..`, i.e. the
    // normalised path names a "directory" and must end in `/`.
    let mut ends_in_slash = true;

    for raw in rest.split('/') {
        let start = out.len();
        out.push('/');
        let encoded = push_segment(raw.as_bytes(), &mut out)?;
        // `out` is ASCII-only, so any index is a char boundary.
        match &out[start + 1..] {
            // PATH-04: repeated slashes are merged. Backends disagree about
            // empty segments (some collapse them, some route on them), so
            // the path we match must be the path we send.
            "" => {
                out.truncate(start);
                ends_in_slash = true;
            }
            dots @ ("." | "..") => {
                // PATH-02: `%2e`, `.%2E`, `%2e%2e` ... are refused rather than
                // resolved: servers that decode after routing (or twice) turn
                // them into traversal that the proxy never saw.
                if encoded {
                    return Err(PathError::EncodedDotSegment);
                }
                let parent = dots.len() == 2;
                out.truncate(start);
                // PATH-01: resolve dot segments here so that the path we
                // authorise is the path the backend serves. Truncating back
                // to the previous `/` touches each byte at most once, which
                // keeps the whole function linear.
                if parent {
                    match out.rfind('/') {
                        Some(i) => out.truncate(i),
                        None => above_root = true,
                    }
                }
                ends_in_slash = true;
            }
            _ => ends_in_slash = false,
        }
    }

    if above_root {
        return Err(PathError::AboveRoot);
    }
    if ends_in_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Validates one segment (the bytes between two `/`) and appends its
/// canonical spelling to `out`. Returns whether it contained any
/// percent-encoding (needed for the encoded-dot-segment rule).
fn push_segment(seg: &[u8], out: &mut String) -> Result<bool, PathError> {
    let mut encoded = false;
    let mut first_ws = None;
    let mut last_ws = false;
    let mut i = 0;
    while let Some(&b) = seg.get(i) {
        let c = if b == b'%' {
            encoded = true;
            let v = escape_at(seg, i)?;
            if v.is_ascii() {
                let c = check_encoded_ascii(v)?;
                if is_unreserved(v) {
                    // Decode once, never twice: the decoded character is
                    // unreserved, so it can never start another escape
                    // (`%252e` stays `%252e`).
                    out.push(c);
                } else {
                    push_escape(out, v);
                }
                i += 3;
                c
            } else {
                let (c, len) = decode_utf8_escapes(seg, i, v)?;
                // PATH-09: C1 controls (e.g. NEL `%C2%85`) are line breaks
                // or terminal controls to log viewers and some parsers.
                if c.is_control() {
                    return Err(PathError::ControlChar);
                }
                // PATH-09: backends that NFKC-normalise or best-fit-map
                // would turn these into separators or dots.
                if CONFUSABLES.contains(&c) {
                    return Err(PathError::ConfusableSlash);
                }
                let mut buf = [0u8; 4];
                for &byte in c.encode_utf8(&mut buf).as_bytes() {
                    push_escape(out, byte);
                }
                i += 3 * len;
                c
            }
        } else {
            let c = check_raw(b)?;
            out.push(c);
            i += 1;
            c
        };
        let ws = c.is_whitespace();
        first_ws.get_or_insert(ws);
        last_ws = ws;
    }
    // Edge whitespace is trimmed by some frameworks and file systems
    // (Windows drops trailing spaces, `admin%20` → `admin`), so a segment
    // that starts or ends with it is ambiguous; inside a segment it is not.
    if first_ws == Some(true) || last_ws {
        return Err(PathError::Whitespace);
    }
    Ok(encoded)
}

/// Checks a raw (unencoded) byte of a segment; `/` never reaches here.
fn check_raw(b: u8) -> Result<char, PathError> {
    match b {
        // Raw non-ASCII has no single canonical spelling (clients differ on
        // whether to percent-encode it), so we refuse it rather than guess.
        0x80..=0xFF => Err(PathError::NonAscii),
        // PATH-09: NUL truncates paths in C backends; CR/LF enable header
        // injection; TAB/DEL are treated as separators by some parsers.
        0x00..=0x1F | 0x7F => Err(PathError::ControlChar),
        // PATH-03: Windows/IIS and some Java servers treat `\` as `/`.
        b'\\' => Err(PathError::Backslash),
        // Tomcat/Jetty/Spring strip `;params` from segments before routing
        // (`/admin;x/` → `/admin/`), so the backend would see another path.
        b';' => Err(PathError::Semicolon),
        // PATH-07: a fragment should never reach a server; some stacks strip
        // it, others forward it, so its meaning is ambiguous.
        b'#' => Err(PathError::Fragment),
        // The caller must split the query off first; a `?` here would be a
        // path to us but a query delimiter to the backend.
        b'?' => Err(PathError::QueryInPath),
        // A raw space is not valid in a request target at all (it ends the
        // request-target in HTTP/1), so it can only come from a lenient
        // parser; refuse it rather than re-encode it.
        b' ' => Err(PathError::Whitespace),
        _ => Ok(char::from(b)),
    }
}

/// Checks a percent-decoded ASCII byte.
fn check_encoded_ascii(v: u8) -> Result<char, PathError> {
    match v {
        // PATH-03: backends disagree whether `%2F` is a separator (Envoy
        // CVE-2021-29492, Apache `AllowEncodedSlashes`, Tomcat), so the
        // segment boundaries we route on may not be the backend's.
        b'/' => Err(PathError::EncodedSlash),
        // PATH-03: `%5C` decodes to `\`, which some backends treat as `/`.
        b'\\' => Err(PathError::Backslash),
        // PATH-09: `%00` truncates in C backends; `%0D%0A` splits lines.
        0x00..=0x1F | 0x7F => Err(PathError::ControlChar),
        // Decoded `;` becomes a path-parameter delimiter in servers that
        // decode before stripping parameters.
        b';' => Err(PathError::Semicolon),
        // PATH-07: servers that decode before splitting would see a query or
        // fragment where we saw part of the path.
        b'?' | b'#' => Err(PathError::EncodedDelimiter),
        _ => Ok(char::from(v)),
    }
}

/// RFC 3986 unreserved characters: the only ones whose encoding is
/// guaranteed not to change meaning, hence the only ones we decode.
fn is_unreserved(v: u8) -> bool {
    v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~')
}

/// Value of the escape `%XY` starting at `seg[i]` (which is `%`).
fn escape_at(seg: &[u8], i: usize) -> Result<u8, PathError> {
    let hi = seg.get(i + 1).copied().and_then(hex_value);
    let lo = seg.get(i + 2).copied().and_then(hex_value);
    match (hi, lo) {
        (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
        _ => Err(PathError::InvalidPercentEncoding),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Decodes the UTF-8 sequence whose lead byte `lead` is the escape at
/// `seg[i]`; the continuation bytes must be the following escapes (raw bytes
/// are ASCII, so they can never continue a sequence). Returns the character
/// and the number of escapes it used.
///
/// PATH-09: overlong forms (`%C0%AE` for `.`, `%E0%80%AE`, `%C0%AF` for
/// `/`), surrogates and out-of-range values are rejected, because lenient
/// decoders turn them into dots and slashes after we have routed.
fn decode_utf8_escapes(seg: &[u8], i: usize, lead: u8) -> Result<(char, usize), PathError> {
    let len = match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        // 0x80..=0xBF: stray continuation; 0xC0/0xC1: always overlong;
        // 0xF5..: beyond U+10FFFF.
        _ => return Err(PathError::InvalidUtf8),
    };
    let mut buf = [lead, 0, 0, 0];
    for (k, slot) in buf.iter_mut().enumerate().take(len).skip(1) {
        let j = i + 3 * k;
        if seg.get(j) != Some(&b'%') {
            return Err(PathError::InvalidUtf8);
        }
        *slot = escape_at(seg, j)?;
    }
    // `from_utf8` is strict: it rejects overlong forms, surrogates and
    // anything above U+10FFFF.
    let text = buf.get(..len).and_then(|bytes| std::str::from_utf8(bytes).ok()).ok_or(PathError::InvalidUtf8)?;
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok((c, len)),
        _ => Err(PathError::InvalidUtf8),
    }
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0F)]));
}

#[cfg(test)]
mod tests;
