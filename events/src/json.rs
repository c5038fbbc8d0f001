//! The JSON form of a record, for people and their tools: `rack-audit dump` prints it and the
//! console's downloads carry it.
//!
//! ```text
//! {"seq": 7, "time": "1767225600000000000", "prev": "<64 hex>", "hash": "<64 hex>",
//!  "code": "G2003I", "event": {"user": "alice@example.com", "by": "admin@example.com"}}
//! ```
//!
//! `hash` is the leaf hash of the stored bytes and `event` names each body field as
//! [`Event::fields`](crate::event::Event::fields) does. Byte strings become lowercase hex, text
//! stays text, booleans and arrays keep their shape, and an integer becomes a JSON number only
//! when its magnitude is at most 2^53 (beyond that a double, and so many JSON readers, would
//! round it); a larger one becomes its exact decimal string, as nanosecond times always are.
//! `schemas/record.schema.json` describes this form.
//!
//! **Invariant:** the JSON form is a *view*, derived from the stored record and never read back.
//! The log's truth is its CBOR bytes and their hash; nothing here feeds hashing or verification,
//! so the JSON form may gain fields without touching a single stored record.

use serde_json::{Map, Number, Value as Json};

use crate::cbor::Value;
use crate::record::StoredRecord;

/// 2^53: the largest magnitude up to which every integer is exactly a JSON (IEEE double) number.
const MAX_EXACT_JSON_INT: u64 = 1 << 53;

/// The JSON form of a stored record:
/// `{"seq", "time", "prev", "hash", "code", "event": {<field name>: <value>, ...}}`.
pub fn record_to_json(stored: &StoredRecord) -> Json {
    let record = &stored.record;
    let event: Map<String, Json> = record
        .event
        .fields()
        .into_iter()
        .map(|f| (f.name.to_owned(), value_to_json(&f.value)))
        .collect();
    let mut out = Map::new();
    out.insert("seq".into(), value_to_json(&Value::Uint(record.seq.0)));
    out.insert("time".into(), value_to_json(&Value::int(record.time.0)));
    out.insert("prev".into(), Json::String(record.prev.to_hex()));
    out.insert("hash".into(), Json::String(stored.hash.to_hex()));
    out.insert("code".into(), Json::String(record.event.code().to_owned()));
    out.insert("event".into(), Json::Object(event));
    Json::Object(out)
}

/// The JSON form of one CBOR value.
///
/// Integers with magnitude at most 2^53 are numbers, larger ones decimal strings; byte strings
/// are lowercase hex; a map (which events do not use in their bodies) becomes an object keyed by
/// the decimal integer keys.
pub fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Uint(n) if *n <= MAX_EXACT_JSON_INT => Json::Number(Number::from(*n)),
        Value::Uint(n) => Json::String(n.to_string()),
        // Nint(n) is -1 - n, whose magnitude is n + 1: at most 2^53 exactly when n < 2^53, and
        // then -1 - n fits an i64 with room to spare.
        Value::Nint(n) if *n < MAX_EXACT_JSON_INT => match i64::try_from(*n) {
            Ok(n) => Json::Number(Number::from(-1 - n)),
            Err(_) => Json::String(nint_decimal(*n)),
        },
        Value::Nint(n) => Json::String(nint_decimal(*n)),
        Value::Bytes(b) => Json::String(hex::encode(b)),
        Value::Text(s) => Json::String(s.clone()),
        Value::Array(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), value_to_json(v)))
                .collect(),
        ),
        Value::Bool(b) => Json::Bool(*b),
        Value::Null => Json::Null,
    }
}

/// The decimal digits of `-1 - n`, exact for every `n` up to `u64::MAX` (that is -2^64).
fn nint_decimal(n: u64) -> String {
    (-1 - i128::from(n)).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{Event, Principal, TokenId};
    use crate::hash::{self, Hash};
    use crate::record::Record;
    use crate::seq::Seq;
    use crate::time::Timestamp;

    fn check(v: Value, expected: Json) {
        assert_eq!(value_to_json(&v), expected, "{v:?}");
    }

    #[test]
    fn integers_are_numbers_up_to_2_pow_53_and_exact_strings_beyond() {
        let two53 = 1u64 << 53;
        check(Value::Uint(0), json!(0));
        check(Value::Uint(two53), json!(9_007_199_254_740_992u64));
        check(Value::Uint(two53 + 1), json!("9007199254740993"));
        check(Value::Uint(u64::MAX), json!("18446744073709551615"));
        check(Value::int(-1), json!(-1));
        check(Value::Nint(two53 - 1), json!(-9_007_199_254_740_992i64));
        check(Value::Nint(two53), json!("-9007199254740993"));
        check(Value::int(i64::MIN), json!("-9223372036854775808"));
        check(Value::Nint(u64::MAX), json!("-18446744073709551616"));
    }

    #[test]
    fn bytes_are_lowercase_hex_and_containers_keep_their_shape() {
        check(Value::Bytes(vec![0x00, 0xAB, 0xff]), json!("00abff"));
        check(Value::Bytes(vec![]), json!(""));
        check(Value::Text("é\"x".into()), json!("é\"x"));
        check(Value::Bool(true), json!(true));
        check(Value::Null, json!(null));
        check(
            Value::Array(vec![Value::Array(vec![
                Value::Text("k".into()),
                Value::Text("v".into()),
            ])]),
            json!([["k", "v"]]),
        );
        check(
            Value::Map(vec![(0, Value::Uint(1)), (10, Value::Bool(false))]),
            json!({"0": 1, "10": false}),
        );
    }

    #[test]
    fn record_form_names_fields_and_carries_the_leaf_hash() {
        let prev = hash::leaf_hash(b"prev");
        let stored = Record {
            seq: Seq(7),
            time: Timestamp(1_767_225_600_000_000_000),
            prev,
            event: Event::TokenRevoked {
                token: TokenId([0xab; 16]),
                by: Principal("admin@example.com".into()),
                reason: "rotated".into(),
            },
        }
        .seal();
        assert_eq!(stored.hash, hash::leaf_hash(&stored.bytes));
        assert_eq!(
            record_to_json(&stored),
            json!({
                "seq": 7,
                "time": "1767225600000000000",
                "prev": prev.to_hex(),
                "hash": stored.hash.to_hex(),
                "code": "G3001I",
                "event": {
                    "token": "abababababababababababababababab",
                    "by": "admin@example.com",
                    "reason": "rotated",
                },
            })
        );
    }

    #[test]
    fn unset_optional_fields_are_absent_not_null() {
        let stored = Record {
            seq: Seq(0),
            time: Timestamp(-5),
            prev: Hash([0; 32]),
            event: Event::StreamClosed {
                request: crate::event::RequestId("r1".into()),
                duration_ns: 1,
                bytes_in: 2,
                bytes_out: 3,
                exit_code: None,
                sha256_in: None,
                sha256_out: None,
                ended: None,
            },
        }
        .seal();
        let json = record_to_json(&stored);
        assert_eq!(json["time"], json!(-5));
        assert_eq!(json["prev"], json!("0".repeat(64)));
        assert_eq!(
            json["event"],
            json!({"request": "r1", "duration_ns": 1, "bytes_in": 2, "bytes_out": 3})
        );
    }
}
