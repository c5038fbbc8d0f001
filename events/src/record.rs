//! The record: `{0: seq, 1: time, 2: prev, 3: event}`, its canonical bytes and its leaf hash.
//!
//! **Invariant:** the bytes a store keeps are exactly `encode(record)`, and every reader hashes
//! those stored bytes. [`decode`] is strict: it refuses any byte string that is not the canonical
//! encoding of the record it describes, so one record has one byte string and one hash.

use crate::cbor::{self, CborError, Value};
use crate::event::{Event, EventError};
use crate::hash::{self, Hash};
use crate::seq::Seq;
use crate::time::Timestamp;

/// One entry of the log, as sequenced by a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: Seq,
    pub time: Timestamp,
    /// The leaf hash of record `seq - 1`; [`hash::ZERO`] for record 0.
    pub prev: Hash,
    pub event: Event,
}

/// A record with the exact bytes it is stored as and their leaf hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub record: Record,
    pub bytes: Vec<u8>,
    pub hash: Hash,
}

/// The chain fields of a record, read without decoding its event: all verification needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub seq: Seq,
    pub time: Timestamp,
    pub prev: Hash,
}

/// Why stored bytes are not a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record is not canonical CBOR: {0}")]
    Cbor(#[from] CborError),
    #[error("record is not a map of {{0: seq, 1: time, 2: prev, 3: event}}")]
    Shape,
    #[error("record event: {0}")]
    Event(#[from] EventError),
}

// === impl Record ===

impl Record {
    /// The record as a CBOR value.
    pub fn to_value(&self) -> Value {
        Value::Map(vec![
            (0, Value::Uint(self.seq.0)),
            (1, Value::int(self.time.0)),
            (2, Value::Bytes(self.prev.0.to_vec())),
            (3, self.event.to_value()),
        ])
    }

    /// The canonical bytes of this record: `cbor::to_vec(&self.to_value())`, written without
    /// building the value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let mut w = cbor::Writer::new(&mut out);
        w.map(4);
        w.uint(0);
        w.uint(self.seq.0);
        w.uint(1);
        w.int(self.time.0);
        w.uint(2);
        w.bytes(&self.prev.0);
        w.uint(3);
        self.event.encode_into(&mut out);
        out
    }

    /// Encodes and hashes: what a sequencer stores.
    pub fn seal(self) -> StoredRecord {
        let bytes = self.encode();
        let hash = hash::leaf_hash(&bytes);
        StoredRecord {
            record: self,
            bytes,
            hash,
        }
    }

    pub fn header(&self) -> Header {
        Header {
            seq: self.seq,
            time: self.time,
            prev: self.prev,
        }
    }
}

/// Decodes stored bytes strictly and keeps them with their leaf hash.
///
/// # Errors
/// Any byte string that is not the canonical encoding of a record with a known event.
pub fn decode(bytes: &[u8]) -> Result<StoredRecord, RecordError> {
    let v = cbor::decode(bytes)?;
    let record = from_value(&v)?;
    Ok(StoredRecord {
        record,
        bytes: bytes.to_vec(),
        hash: hash::leaf_hash(bytes),
    })
}

/// Decodes a record from its CBOR value.
///
/// # Errors
/// Wrong shape or an undecodable event.
pub fn from_value(v: &Value) -> Result<Record, RecordError> {
    let Value::Map(entries) = v else {
        return Err(RecordError::Shape);
    };
    match entries.as_slice() {
        [
            (0, Value::Uint(seq)),
            (1, time),
            (2, Value::Bytes(prev)),
            (3, event),
        ] => {
            let time = time.as_int().ok_or(RecordError::Shape)?;
            let prev = Hash::from_slice(prev).ok_or(RecordError::Shape)?;
            Ok(Record {
                seq: Seq(*seq),
                time: Timestamp(time),
                prev,
                event: Event::from_value(event)?,
            })
        }
        _ => Err(RecordError::Shape),
    }
}

/// Reads seq, time and prev from canonical record bytes without decoding the event.
///
/// Verification needs only these and the leaf hash of the bytes; the event body is never
/// interpreted, so a verifier of this version also checks logs that carry newer event codes.
/// Returns `None` if the bytes do not start like a canonical record; the event is not checked.
pub fn header(bytes: &[u8]) -> Option<Header> {
    header_and_event_at(bytes).map(|(header, _)| header)
}

/// The event code of a record whose event begins at `at` (as [`header_and_event_at`] found
/// it): the verifier, which has read the header already, decodes only the few records whose
/// code it needs.
pub fn code_at(bytes: &[u8], at: usize) -> Option<&str> {
    // The event: a map of two, `0:` and a text of six bytes (every code is `G`, 4 digits and a
    // letter).
    match bytes.get(at..at.checked_add(9)?)? {
        [0xa2, 0x00, 0x66, code @ ..] => std::str::from_utf8(code).ok(),
        _ => None,
    }
}

/// As [`header`], with the position of the event that follows the header.
pub fn header_and_event_at(bytes: &[u8]) -> Option<(Header, usize)> {
    let mut r = HeaderReader { bytes, pos: 0 };
    if r.byte()? != 0xa4 || r.byte()? != 0x00 {
        return None;
    }
    let seq = r.uint_arg(0)?;
    if r.byte()? != 0x01 {
        return None;
    }
    let time = r.int()?;
    if r.byte()? != 0x02 || r.byte()? != 0x58 || r.byte()? != 0x20 {
        return None;
    }
    let prev = Hash::from_slice(bytes.get(r.pos..r.pos.checked_add(32)?)?)?;
    r.pos += 32;
    if r.byte()? != 0x03 {
        return None;
    }
    let header = Header {
        seq: Seq(seq),
        time: Timestamp(time),
        prev,
    };
    Some((header, r.pos))
}

struct HeaderReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl HeaderReader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// A shortest-form argument of the given major type.
    fn uint_arg(&mut self, major: u8) -> Option<u64> {
        let ib = self.byte()?;
        if ib >> 5 != major {
            return None;
        }
        let ai = ib & 0x1f;
        let (n, min) = match ai {
            0..=23 => return Some(u64::from(ai)),
            24 => (1, 24u64),
            25 => (2, 0x100),
            26 => (4, 0x1_0000),
            27 => (8, 0x1_0000_0000),
            _ => return None,
        };
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 8) | u64::from(self.byte()?);
        }
        (v >= min).then_some(v)
    }

    fn int(&mut self) -> Option<i64> {
        let major = self.bytes.get(self.pos)? >> 5;
        let n = self.uint_arg(major)?;
        match major {
            0 => i64::try_from(n).ok(),
            1 => i64::try_from(n).ok().map(|n| -1 - n),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Principal;

    fn sample(seq: u64, time: i64) -> Record {
        Record {
            seq: Seq(seq),
            time: Timestamp(time),
            prev: hash::leaf_hash(b"p"),
            event: Event::UserEnabled {
                user: Principal("a@example.com".into()),
                by: Principal("system".into()),
            },
        }
    }

    #[test]
    fn header_fast_path_agrees_with_full_decode() {
        for (seq, time) in [
            (0, 0),
            (23, -1),
            (24, 1 << 40),
            (u64::MAX, i64::MIN),
            (70000, i64::MAX),
        ] {
            let stored = sample(seq, time).seal();
            assert_eq!(header(&stored.bytes), Some(stored.record.header()));
            assert_eq!(decode(&stored.bytes).unwrap(), stored);
        }
    }

    #[test]
    fn header_refuses_non_record_prefixes() {
        let stored = sample(5, 5).seal();
        for cut in 0..40 {
            assert_eq!(
                header(stored.bytes.get(..cut).unwrap()),
                None,
                "cut at {cut}"
            );
        }
        assert_eq!(header(&[0xa3, 0x00]), None);
    }

    mod prop {
        use proptest::prelude::*;

        use super::super::*;
        use crate::event::{
            AuthMethod, CommandCompleted, CommandRequested, Decision, Permission, Principal,
            RequestId, Role, TokenId,
        };

        fn hash() -> impl Strategy<Value = Hash> {
            any::<[u8; 32]>().prop_map(Hash)
        }
        fn text() -> impl Strategy<Value = String> {
            ".{0,12}"
        }
        fn who() -> impl Strategy<Value = Principal> {
            text().prop_map(Principal)
        }
        fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
            proptest::collection::vec((text(), text()), 0..4)
        }
        fn role() -> impl Strategy<Value = Role> {
            proptest::sample::select(Role::ALL.to_vec())
        }

        /// Every variant of the catalogue, with arbitrary field values.
        fn event() -> impl Strategy<Value = Event> {
            prop_oneof![
                (text(), text()).prop_map(|(origin, checkpoint_key)| Event::LogCreated {
                    origin,
                    checkpoint_key
                }),
                (text(), who()).prop_map(|(checkpoint_key, by)| Event::CheckpointKeyAdded {
                    checkpoint_key,
                    by
                }),
                (any::<u64>(), hash(), hash()).prop_map(|(c, covers_hash, digest)| {
                    Event::SnapshotRecorded {
                        covers: Seq(c),
                        covers_hash,
                        digest,
                    }
                }),
                (hash(), pairs())
                    .prop_map(|(digest, values)| Event::ConfigApplied { digest, values }),
                (who(), role(), who()).prop_map(|(user, role, by)| Event::RoleGranted {
                    user,
                    role,
                    by
                }),
                (who(), role(), who()).prop_map(|(user, role, by)| Event::RoleRevoked {
                    user,
                    role,
                    by
                }),
                (who(), who(), text()).prop_map(|(user, by, reason)| Event::UserDisabled {
                    user,
                    by,
                    reason
                }),
                (who(), who()).prop_map(|(user, by)| Event::UserEnabled { user, by }),
                (
                    any::<[u8; 16]>(),
                    text(),
                    who(),
                    proptest::collection::vec(text(), 0..3),
                    hash(),
                    proptest::option::of(any::<i64>()),
                    any::<bool>(),
                    who(),
                    proptest::option::of(any::<[u8; 16]>()),
                )
                    .prop_map(
                        |(
                            t,
                            name,
                            owner,
                            scopes,
                            secret_sha256,
                            expires,
                            dev_only,
                            by,
                            by_token,
                        )| {
                            Event::TokenCreated {
                                token: TokenId(t),
                                name,
                                owner,
                                scopes: scopes.into_iter().map(Permission).collect(),
                                secret_sha256,
                                expires: expires.map(Timestamp),
                                dev_only,
                                by,
                                by_token: by_token.map(TokenId),
                            }
                        }
                    ),
                (any::<[u8; 16]>(), who(), text()).prop_map(|(t, by, reason)| {
                    Event::TokenRevoked {
                        token: TokenId(t),
                        by,
                        reason,
                    }
                }),
                (
                    (text(), who(), any::<u8>(), proptest::option::of(text())),
                    (text(), text(), text(), text()),
                    (proptest::option::of(text()), any::<bool>(), text(), pairs())
                )
                    .prop_map(
                        |(
                            (r, actor, a, credential),
                            (ip, ua, method, path),
                            (perm, allow, reason, params),
                        )| {
                            Event::CommandRequested(Box::new(CommandRequested {
                                request: RequestId(r),
                                actor,
                                auth: [AuthMethod::None, AuthMethod::Token, AuthMethod::Session]
                                    [usize::from(a % 3)],
                                credential,
                                client_ip: ip,
                                user_agent: ua,
                                method,
                                path,
                                permission: perm.map(Permission),
                                decision: if allow {
                                    Decision::Allow
                                } else {
                                    Decision::Deny
                                },
                                reason,
                                params,
                            }))
                        }
                    ),
                (
                    text(),
                    any::<u16>(),
                    any::<u64>(),
                    any::<u64>(),
                    any::<u64>(),
                    proptest::option::of(hash()),
                    proptest::option::of(hash()),
                    proptest::option::of(text())
                )
                    .prop_map(|(r, status, d, i, o, si, so, failure)| {
                        Event::CommandCompleted(Box::new(CommandCompleted {
                            request: RequestId(r),
                            status,
                            duration_ns: d,
                            bytes_in: i,
                            bytes_out: o,
                            sha256_in: si,
                            sha256_out: so,
                            failure,
                        }))
                    }),
                text().prop_map(|r| Event::StreamOpened {
                    request: RequestId(r)
                }),
                (
                    text(),
                    any::<u64>(),
                    any::<u64>(),
                    any::<u64>(),
                    proptest::option::of(any::<i64>()),
                    proptest::option::of(hash()),
                    proptest::option::of(hash()),
                    proptest::option::of(text())
                )
                    .prop_map(
                        |(r, d, i, o, exit_code, sha256_in, sha256_out, ended)| {
                            Event::StreamClosed {
                                request: RequestId(r),
                                duration_ns: d,
                                bytes_in: i,
                                bytes_out: o,
                                exit_code,
                                sha256_in,
                                sha256_out,
                                ended,
                            }
                        }
                    ),
                (text(), text(), any::<u64>(), any::<i64>(), any::<i64>()).prop_map(
                    |(ip, reason, count, f, l)| Event::DenialsCounted {
                        ip,
                        reason,
                        count,
                        first: Timestamp(f),
                        last: Timestamp(l),
                    }
                ),
            ]
        }

        fn record() -> impl Strategy<Value = Record> {
            (any::<u64>(), any::<i64>(), hash(), event()).prop_map(|(seq, time, prev, event)| {
                Record {
                    seq: Seq(seq),
                    time: Timestamp(time),
                    prev,
                    event,
                }
            })
        }

        proptest! {
            #[test]
            fn the_streamed_encoding_is_the_value_encoding(r in record()) {
                prop_assert_eq!(r.encode(), cbor::to_vec(&r.to_value()));
            }

            #[test]
            fn decode_of_encode_is_identity(r in record()) {
                let bytes = r.encode();
                let back = decode(&bytes).unwrap();
                prop_assert_eq!(&back.record, &r);
                prop_assert_eq!(back.hash, hash::leaf_hash(&bytes));
                prop_assert_eq!(header(&bytes), Some(r.header()));
                let at = header_and_event_at(&bytes).map(|(_, at)| at);
                prop_assert_eq!(at.and_then(|at| code_at(&bytes, at)), Some(r.event.code()));
            }

            #[test]
            fn encode_of_decode_is_identity_for_every_accepted_mutation(
                r in record(),
                at in any::<proptest::sample::Index>(),
                bit in 0u8..8,
            ) {
                let mut bytes = r.encode();
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
                if let Ok(back) = decode(&bytes) {
                    prop_assert_eq!(back.record.encode(), bytes);
                }
            }

            #[test]
            fn arbitrary_bytes_never_panic_and_round_trip_when_accepted(
                bytes in proptest::collection::vec(any::<u8>(), 0..200)
            ) {
                if let Ok(back) = decode(&bytes) {
                    prop_assert_eq!(back.record.encode(), bytes);
                }
            }
        }

        #[test]
        fn the_strategy_covers_every_code() {
            use proptest::strategy::ValueTree;
            use proptest::test_runner::TestRunner;
            let mut runner = TestRunner::deterministic();
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..2000 {
                seen.insert(event().new_tree(&mut runner).unwrap().current().code());
            }
            let all: std::collections::BTreeSet<_> = crate::event::CODES.iter().copied().collect();
            assert_eq!(seen, all);
        }
    }
}
