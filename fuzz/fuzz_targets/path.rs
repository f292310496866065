//! Path normalisation (SECURITY PATH-01..09, RULE-12). Properties, for any input the normaliser
//! accepts: the result is canonical (absolute, no `//`, no `.` or `..` segment), normalising it
//! again changes nothing, and the path sent upstream is exactly the path that was matched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::http::path;
use portcullis::proxy::upstream::UpstreamClient;
use std::sync::OnceLock;

fn upstream() -> &'static UpstreamClient {
    static U: OnceLock<UpstreamClient> = OnceLock::new();
    U.get_or_init(|| {
        let f = portcullis_fuzz::fixture();
        let _guard = f.runtime.enter();
        UpstreamClient::new(&f.config.upstream)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for input in [s.to_owned(), format!("/{s}")] {
        let Ok(n) = path::normalise(&input) else { continue };
        assert!(n.starts_with('/'), "{input:?} → {n:?}");
        assert!(!n.contains("//"), "{input:?} → {n:?}");
        assert!(n.split('/').all(|seg| seg != "." && seg != ".."), "{input:?} → {n:?}");
        assert_eq!(path::normalise(&n).as_deref(), Ok(n.as_str()), "not idempotent: {input:?}");
        // What is matched is what is forwarded: the upstream URI carries exactly `n`.
        if let Ok(uri) = upstream().uri(&n, Some("q=1")) {
            assert_eq!(uri.path(), n, "{input:?}");
            assert_eq!(uri.query(), Some("q=1"));
        }
    }
});
