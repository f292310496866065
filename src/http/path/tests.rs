//! The normaliser and the target-form check, one table per rule of SPEC §2 "Paths" (and the
//! SECURITY PATH-* items they pin).
#[test]
fn only_origin_and_absolute_form_targets_are_accepted() {
    use super::TargetError::*;
    let table: &[(&str, Result<(), super::TargetError>)] = &[
        ("/", Ok(())),
        ("/a/b?q=1", Ok(())),
        ("//x", Ok(())),
        ("http://h", Ok(())),
        ("http://h:8080/a?q", Ok(())),
        ("https://h/a", Ok(())),
        ("app:80", Err(AuthorityForm)),
        ("app", Err(AuthorityForm)),
        ("127.0.0.1:8000", Err(AuthorityForm)),
        ("[::1]:80", Err(AuthorityForm)),
        ("*", Err(AsteriskForm)),
        ("http://h*", Ok(())),
        ("http://user@h/a", Err(Userinfo)),
        ("http://user:pw@h/a", Err(Userinfo)),
        ("user@h:80", Err(AuthorityForm)),
    ];
    for (target, want) in table {
        let uri: http::Uri = target.parse().unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(super::check_target(&uri), *want, "{target}");
    }
    // HTTP/2 builds absolute URIs; `:path: *` keeps the asterisk.
    let h2 = http::Uri::builder().scheme("http").authority("h").path_and_query("*").build().unwrap();
    assert_eq!(super::check_target(&h2), Err(AsteriskForm));
}

use super::PathError::*;
use super::*;
use proptest::prelude::*;

/// (input, expected). Catalog IDs refer to SECURITY.md.
const CASES: &[(&str, Result<&str, PathError>)] = &[
    // Basics.
    ("/", Ok("/")),
    ("", Ok("/")), // absolute-form `http://h` with no path
    ("/a/b", Ok("/a/b")),
    ("/a/b/", Ok("/a/b/")),
    ("/api/admin/users", Ok("/api/admin/users")),
    ("a/b", Err(NotOriginForm)),
    ("*", Err(NotOriginForm)),
    ("http://h/p", Err(NotOriginForm)),
    // Raw characters that are legal (or tolerated by `http`) stay as-is.
    ("/a:b@c!$&'()*+,=", Ok("/a:b@c!$&'()*+,=")),
    ("/{\"a\"}|[x]", Ok("/{\"a\"}|[x]")),
    // PATH-01: dot segments.
    ("/public/../api/admin/users", Ok("/api/admin/users")),
    ("/public/./../api/admin/users", Ok("/api/admin/users")),
    ("/a/..", Ok("/")),
    ("/a/../", Ok("/")),
    ("/a/./b", Ok("/a/b")),
    ("/a/b/.", Ok("/a/b/")),
    ("/a/b/..", Ok("/a/")),
    ("/a/b/../../c", Ok("/c")),
    ("/.", Ok("/")),
    ("/./", Ok("/")),
    ("/a/.../b", Ok("/a/.../b")), // not a dot segment
    ("/.a/b./..c", Ok("/.a/b./..c")),
    ("/..", Err(AboveRoot)),
    ("/../", Err(AboveRoot)),
    ("/../a", Err(AboveRoot)),
    ("/a/../..", Err(AboveRoot)),
    ("/a/../../b", Err(AboveRoot)),
    // PATH-01: validation happens before resolution, and covers segments
    // that `..` later removes.
    ("/../%00", Err(ControlChar)),
    ("/a%00/..", Err(ControlChar)),
    ("/a%2f/..", Err(EncodedSlash)),
    // PATH-02: encoded dot segments and double encoding.
    ("/public/%2e%2e/api", Err(EncodedDotSegment)),
    ("/public/.%2E/api", Err(EncodedDotSegment)),
    ("/public/%2E./api", Err(EncodedDotSegment)),
    ("/public/%2e/api", Err(EncodedDotSegment)),
    ("/public/%2e", Err(EncodedDotSegment)),
    ("/%2e%2e", Err(EncodedDotSegment)),
    ("/public/%252e%252e/api", Ok("/public/%252e%252e/api")),
    ("/%252E", Ok("/%252E")),
    ("/%2541", Ok("/%2541")), // decoded once only: stays `%2541`, not `A`
    ("/%25", Ok("/%25")),
    ("/a%2Eb", Ok("/a.b")),
    ("/a%2e", Ok("/a.")),
    ("/%2e%2e%2e", Ok("/...")), // not a dot segment after decoding
    // PATH-03: encoded slash and backslash.
    ("/public%2F..%2Fapi", Err(EncodedSlash)),
    ("/a%2fb", Err(EncodedSlash)),
    ("/api/admin%5Cusers", Err(Backslash)),
    ("/api/admin%5cusers", Err(Backslash)),
    ("/api\\admin", Err(Backslash)),
    // PATH-04: repeated slashes.
    ("//api/admin/users", Ok("/api/admin/users")),
    ("//a///b", Ok("/a/b")),
    ("/a//", Ok("/a/")),
    ("//", Ok("/")),
    ("///", Ok("/")),
    ("/a/.//b", Ok("/a/b")),
    ("//..//a", Err(AboveRoot)),
    // PATH-07: fragment, encoded `?` and `#`.
    ("/a#b", Err(Fragment)),
    ("/a%3fb", Err(EncodedDelimiter)),
    ("/a%3Fb", Err(EncodedDelimiter)),
    ("/a%23b", Err(EncodedDelimiter)),
    ("/a?b", Err(QueryInPath)), // caller forgot to split the query
    // PATH-09: NUL and control bytes, raw and encoded.
    ("/api/admin%00/users", Err(ControlChar)),
    ("/a\0b", Err(ControlChar)),
    ("/a\tb", Err(ControlChar)),
    ("/a\x7fb", Err(ControlChar)),
    ("/a%0d%0aSet-Cookie:x", Err(ControlChar)),
    ("/a%09", Err(ControlChar)),
    ("/a%1F", Err(ControlChar)),
    ("/a%7f", Err(ControlChar)),
    ("/a%C2%85b", Err(ControlChar)), // C1 NEL
    ("/a%c2%80", Err(ControlChar)),
    ("/a%C2%9F", Err(ControlChar)),
    // PATH-09: overlong and otherwise invalid UTF-8.
    ("/api/%c0%ae%c0%ae/admin", Err(InvalidUtf8)),
    ("/%e0%80%ae", Err(InvalidUtf8)),
    ("/%c0%af", Err(InvalidUtf8)), // overlong `/`
    ("/%c1%9c", Err(InvalidUtf8)), // overlong `\`
    ("/%f0%80%80%ae", Err(InvalidUtf8)),
    ("/%ed%a0%80", Err(InvalidUtf8)),    // surrogate
    ("/%f4%90%80%80", Err(InvalidUtf8)), // above U+10FFFF
    ("/%f8%88%80%80%80", Err(InvalidUtf8)),
    ("/%ff", Err(InvalidUtf8)),
    ("/%80", Err(InvalidUtf8)),    // stray continuation byte
    ("/caf%c3", Err(InvalidUtf8)), // truncated
    ("/caf%c3a", Err(InvalidUtf8)),
    ("/caf%c3/%a9", Err(InvalidUtf8)),
    ("/caf%c3%41", Err(InvalidUtf8)),
    ("/caf%c3%", Err(InvalidPercentEncoding)),
    // PATH-09: fullwidth solidus and other confusables.
    ("/%EF%BC%8Fapi", Err(ConfusableSlash)),
    ("/api%ef%bc%8fadmin", Err(ConfusableSlash)),
    ("/a%EF%BC%BCb", Err(ConfusableSlash)),        // U+FF3C
    ("/a%E2%88%95b", Err(ConfusableSlash)),        // U+2215
    ("/%EF%BC%8E%EF%BC%8E", Err(ConfusableSlash)), // U+FF0E U+FF0E
    ("/%E2%80%A5", Err(ConfusableSlash)),          // U+2025 two dot leader
    // Semicolons (path parameters).
    ("/a;b", Err(Semicolon)),
    ("/admin;jsessionid=x/", Err(Semicolon)),
    ("/a%3Bb", Err(Semicolon)),
    ("/a%3bb", Err(Semicolon)),
    // Decoding of unreserved characters; upper-casing of the rest.
    ("/%41%62c", Ok("/Abc")),
    ("/%7e%2D%5f%30%7A", Ok("/~-_0z")),
    ("/caf%c3%a9", Ok("/caf%C3%A9")),
    ("/%f0%9f%98%80", Ok("/%F0%9F%98%80")),
    ("/a%3a%40%2b%26%3d%22", Ok("/a%3A%40%2B%26%3D%22")),
    // Invalid percent-encoding.
    ("/a%2", Err(InvalidPercentEncoding)),
    ("/a%zz", Err(InvalidPercentEncoding)),
    ("/a%", Err(InvalidPercentEncoding)),
    ("/a%2/b", Err(InvalidPercentEncoding)),
    ("/a%g1", Err(InvalidPercentEncoding)),
    ("/%%41", Err(InvalidPercentEncoding)),
    ("/%+1", Err(InvalidPercentEncoding)),
    // Whitespace at segment edges, raw or encoded.
    ("/%20a", Err(Whitespace)),
    ("/a%20", Err(Whitespace)),
    ("/%20", Err(Whitespace)),
    ("/a/%20/b", Err(Whitespace)),
    ("/a%20b", Ok("/a%20b")),
    ("/a/%C2%A0", Err(Whitespace)),     // NBSP
    ("/%E3%80%80x", Err(Whitespace)),   // ideographic space
    ("/x%E2%80%A8", Err(Whitespace)),   // U+2028 line separator
    ("/x%e2%80%af/y", Err(Whitespace)), // U+202F narrow NBSP
    ("/a%C2%A0b", Ok("/a%C2%A0b")),
    ("/a b", Err(Whitespace)), // raw space is never valid in a target
    ("/ ", Err(Whitespace)),
    // Raw non-ASCII.
    ("/café", Err(NonAscii)),
    ("/\u{FF0F}", Err(NonAscii)),
];

#[test]
fn table() {
    let mut failures = Vec::new();
    for &(input, expected) in CASES {
        let got = normalise(input);
        if got.as_deref().map_err(|e| *e) != expected {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_confusable_is_rejected_when_encoded() {
    for &c in CONFUSABLES {
        let mut path = String::from("/a");
        let mut buf = [0u8; 4];
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            path.push_str(&format!("%{b:02x}"));
        }
        path.push('b');
        assert_eq!(normalise(&path), Err(ConfusableSlash), "{c:?}");
    }
}

#[test]
fn every_encoded_control_is_rejected() {
    for b in (0u8..0x20).chain([0x7F]) {
        assert_eq!(normalise(&format!("/a%{b:02X}b")), Err(ControlChar));
        assert_eq!(normalise(&format!("/a{}b", char::from(b))), Err(ControlChar));
    }
    for cp in 0x80u32..=0x9F {
        let c = char::from_u32(cp).unwrap_or_default();
        let mut buf = [0u8; 4];
        let enc: String = c.encode_utf8(&mut buf).bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(normalise(&format!("/a{enc}b")), Err(ControlChar), "{cp:#x}");
    }
}

#[test]
fn display_is_short_lower_case() {
    for &(_, expected) in CASES {
        if let Err(e) = expected {
            let text = e.to_string();
            assert!(!text.is_empty());
            assert_eq!(text, text.to_lowercase());
        }
    }
}

#[test]
fn output_fits_in_input_capacity() {
    for &(input, expected) in CASES {
        if let Ok(out) = expected {
            assert!(out.len() <= input.len().max(1), "{input:?}");
        }
    }
}

/// Paths built from pieces chosen to hit every rule and their overlaps:
/// mostly benign pieces (so that many paths normalise and the output
/// properties get exercised) mixed with hostile ones.
fn tricky_path() -> impl Strategy<Value = String> {
    let benign = prop::sample::select(vec![
        "/",
        "/",
        "/",
        "//",
        ".",
        "..",
        "a",
        "B",
        "z",
        "0",
        "e",
        "~",
        "-",
        "_",
        ":",
        "@",
        "%2e",
        "%2E",
        "%25",
        "%252e",
        "%41",
        "%7e",
        "%3a",
        "%c3%a9",
        "%F0%9F%98%80",
        "%20",
        "%C2%A0",
    ]);
    let hostile = prop::sample::select(vec![
        "%",
        "2",
        "5",
        "f",
        "F",
        "%2f",
        "%2F",
        "%3b",
        "%3f",
        "%23",
        "%5c",
        "%00",
        "%0a",
        "%C3",
        "%a9",
        "%c0%ae",
        "%e0%80%ae",
        "%C2%85",
        "%EF%BC%8F",
        "%E3%80%80",
        " ",
        "\t",
        "\\",
        ";",
        "?",
        "#",
        "é",
        "\u{3000}",
        "\u{FF0F}",
    ]);
    let piece = prop_oneof![12 => benign, 1 => hostile];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn assert_canonical(out: &str) {
    assert!(out.starts_with('/'), "{out:?}");
    assert!(out.is_ascii(), "{out:?}");
    assert!(!out.contains("//"), "{out:?}");
    assert!(!out.bytes().any(|b| b.is_ascii_control() || matches!(b, b'\\' | b';' | b'#' | b'?' | b' ')), "{out:?}");
    assert!(!out.split('/').any(|s| s == "." || s == ".."), "{out:?}");
    // Every escape is upper-case and never encodes an unreserved byte.
    let bytes = out.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
            assert!(hex.len() == 2 && hex.iter().all(|h| matches!(h, b'0'..=b'9' | b'A'..=b'F')), "{out:?}");
            let v = hex.iter().fold(0u8, |acc, &h| acc << 4 | hex_value(h).unwrap_or_default());
            assert!(!is_unreserved(v), "{out:?}");
        }
    }
}

/// Reference model for paths made only of plain segments.
fn model(segments: &[&str], trailing: bool) -> Result<String, PathError> {
    let mut stack: Vec<&str> = Vec::new();
    let mut dir = true;
    for &s in segments {
        match s {
            "" | "." => dir = true,
            ".." => {
                stack.pop().ok_or(AboveRoot)?;
                dir = true;
            }
            s => {
                stack.push(s);
                dir = false;
            }
        }
    }
    if trailing {
        dir = true;
    }
    let mut out = format!("/{}", stack.join("/"));
    if dir && !stack.is_empty() {
        out.push('/');
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_any_string(s in any::<String>()) {
        let _ = normalise(&s);
        let _ = normalise(&format!("/{s}"));
    }

    #[test]
    fn never_panics_on_any_ascii(s in "[\\x00-\\x7f]*") {
        let _ = normalise(&format!("/{s}"));
    }

    #[test]
    fn idempotent_and_canonical(p in tricky_path()) {
        for input in [p.clone(), format!("/{p}")] {
            if let Ok(n) = normalise(&input) {
                assert_canonical(&n);
                prop_assert!(n.len() <= input.len().max(1));
                prop_assert_eq!(normalise(&n), Ok(n.clone()));
            }
        }
    }

    #[test]
    fn matches_reference_model(
        segments in prop::collection::vec(
            prop::sample::select(vec!["", ".", "..", "a", "b", "c.d", "..."]), 0..12),
        trailing in any::<bool>(),
    ) {
        let mut path = format!("/{}", segments.join("/"));
        if trailing {
            path.push('/');
        }
        prop_assert_eq!(normalise(&path), model(&segments, trailing));
    }
}
