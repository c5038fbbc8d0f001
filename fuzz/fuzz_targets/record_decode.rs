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
    // The verifier's walk accepts exactly what the decoder accepts, with the same error.
    assert_eq!(
        events::cbor::item_len(data),
        events::cbor::decode_prefix(data).map(|(_, n)| n)
    );
    if let Ok(v) = events::cbor::decode(data) {
        assert_eq!(events::cbor::to_vec(&v), data);
    }
});
