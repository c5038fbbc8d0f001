//! Fuzzes the strict record decoder and the verifier's fast paths on arbitrary bytes: they may
//! refuse anything but must never panic, and whatever they accept must re-encode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(stored) = events::record::decode(data) {
        assert_eq!(stored.record.encode(), data);
        assert_eq!(events::record::header(data), Some(stored.record.header()));
    }
    let _ = events::record::header(data);
    if let Ok(n) = events::cbor::item_len(data) {
        assert!(n <= data.len());
    }
    if let Ok(v) = events::cbor::decode(data) {
        assert_eq!(events::cbor::to_vec(&v), data);
    }
});
