//! Config parsing (SECURITY OPS-03/OPS-06): any file is either a complete, valid config or a list
//! of positioned errors — never a panic, never a partial result.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    match portcullis::config::parse(s, "fuzz.yaml", &|name| (name == "SET").then(|| "value".to_owned())) {
        Ok(c) => assert!(!c.routes.is_empty() && !c.issuers.is_empty()),
        Err(e) => assert!(!e.messages.is_empty()),
    }
});
