//! Fuzzes the checkpoint note parser and vkey parser: untrusted text must never panic, and a
//! note that parses must keep its checkpoint when re-serialized.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((cp, _)) = events::checkpoint::parse_unverified(data) {
        let body = cp.body();
        assert!(data.starts_with(body.as_bytes()));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = events::checkpoint::VerifierKey::parse(s);
    }
});
