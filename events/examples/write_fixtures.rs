//! Writes the golden fixtures `schemas/fixtures/<CODE>.cbor`: for each event code, the canonical
//! bytes of one full record (seq, time, prev, event) holding a representative event of that code,
//! with every optional field set.
//!
//! Run it with `cargo run -p events --example write_fixtures` after adding a code to the
//! catalogue (and a sample for it below). **Invariant:** committed fixtures are append-only. This
//! generator only creates fixtures that do not exist yet (the file is opened with `create_new`),
//! and never rewrites or deletes one: a fixture pins the bytes every later version must still
//! decode, so regenerating it would hide exactly the break it exists to catch. A new shape of an
//! existing event is a new fixture file, and a changed event is a new code
//! (`schemas/fixtures/README.md`). `events/tests/schemas.rs` pins the SHA-256 of each committed
//! fixture.

use std::error::Error;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::Path;

use events::checkpoint::NoteSigner;
use events::event::{
    AuthMethod, CODES, CommandCompleted, CommandRequested, Decision, Event, Permission, Principal,
    RequestId, Role, TokenId,
};
use events::hash::{self, Hash};
use events::record::{self, Record};
use events::seq::Seq;
use events::time::Timestamp;

/// 2026-01-01T00:00:00Z in unix nanoseconds: the base of every fixture's time.
const T0: i64 = 1_767_225_600_000_000_000;

fn main() -> Result<(), Box<dyn Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("events/ has no parent directory")?;
    let dir = root.join("schemas/fixtures");
    std::fs::create_dir_all(&dir)?;
    let samples = samples()?;
    if let Some(code) = CODES.iter().find(|c| !samples.iter().any(|(n, _)| n == *c)) {
        return Err(format!("no sample for {code}: add one to samples() in {}", file!()).into());
    }
    for (name, rec) in samples {
        let code = rec.event.code();
        let later_shape = name
            .strip_prefix(code)
            .and_then(|n| n.strip_prefix('-'))
            .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n >= 2));
        if name != code && !later_shape {
            return Err(format!("sample {name}: name it {code} or {code}-<n> (n >= 2)").into());
        }
        let bytes = rec.encode();
        // The fixture must be what the strict decoder accepts, byte for byte.
        let back = record::decode(&bytes)?;
        if back.record != rec || back.bytes != bytes {
            return Err(format!("{name}: sample does not round-trip").into());
        }
        let path = dir.join(format!("{name}.cbor"));
        let shown = path.strip_prefix(root).unwrap_or(&path).display();
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(&bytes)?;
                f.sync_all()?;
                println!("wrote {shown}: pin it in FIXTURE_SHA256 in events/tests/schemas.rs");
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                println!("kept  {shown} (committed fixtures are never rewritten)");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The fixtures by file name: one record per code (named after the code), in catalogue order,
/// each with all its optional fields set. A later shape of a code (a new optional field) is
/// appended as `("<CODE>-2", record)`, and so on; an existing sample is never edited, since its
/// fixture is never rewritten anyway.
fn samples() -> Result<Vec<(String, Record)>, Box<dyn Error>> {
    let origin = "rack.example/audit";
    let first_key = NoteSigner::from_seed(origin, [1; 32])?
        .verifier()
        .to_string();
    let second_key = NoteSigner::from_seed(origin, [2; 32])?
        .verifier()
        .to_string();
    let admin = Principal("admin@example.com".into());
    let alice = Principal("alice@example.com".into());
    let token = TokenId([
        0x7f, 0x3a, 0x91, 0x0c, 0x5e, 0x22, 0xb4, 0x68, 0x0d, 0x1f, 0xa7, 0x39, 0xc2, 0x84, 0x56,
        0xe0,
    ]);
    let request = RequestId("req-01JGX3Q9ZK4M7T2V8B6N5C1D0F".into());
    let completed_2 = CommandCompleted {
        request: request.clone(),
        status: 502,
        duration_ns: 3_250_000,
        bytes_in: 512,
        bytes_out: 0,
        sha256_in: Some(digest("request body")),
        sha256_out: Some(digest("")),
        failure: Some("answer_encoded".into()),
    };
    let stream_closed_2 = Event::StreamClosed {
        request: request.clone(),
        duration_ns: 93_000_000_000,
        bytes_in: 1_024,
        bytes_out: 65_536,
        exit_code: Some(0),
        sha256_in: Some(digest("stdin")),
        sha256_out: Some(digest("output")),
        ended: None,
    };
    let stream_closed_3 = Event::StreamClosed {
        request: request.clone(),
        duration_ns: 12_500_000_000,
        bytes_in: 8,
        bytes_out: 4_096,
        exit_code: Some(3),
        sha256_in: Some(digest("stdin")),
        sha256_out: Some(digest("output")),
        ended: Some("idle".into()),
    };
    let events = vec![
        Event::LogCreated {
            origin: origin.into(),
            checkpoint_key: first_key,
        },
        Event::CheckpointKeyAdded {
            checkpoint_key: second_key,
            by: admin.clone(),
        },
        Event::SnapshotRecorded {
            covers: Seq(4095),
            covers_hash: digest("covers"),
            digest: digest("snapshot"),
        },
        Event::ConfigApplied {
            digest: digest("config"),
            values: vec![
                ("listen.public".into(), "0.0.0.0:8443".into()),
                ("session.max_age".into(), "12h".into()),
                ("mfa.required".into(), "true".into()),
            ],
        },
        Event::RoleGranted {
            user: alice.clone(),
            role: Role::Deployer,
            by: admin.clone(),
        },
        Event::RoleRevoked {
            user: alice.clone(),
            role: Role::Admin,
            by: admin.clone(),
        },
        Event::UserDisabled {
            user: alice.clone(),
            by: admin.clone(),
            reason: "left the company".into(),
        },
        Event::UserEnabled {
            user: alice.clone(),
            by: admin.clone(),
        },
        Event::TokenCreated {
            token,
            name: "ci-deploy".into(),
            owner: alice.clone(),
            scopes: vec![
                Permission("convox:app:read".into()),
                Permission("convox:build:create".into()),
                Permission("convox:release:promote".into()),
            ],
            secret_sha256: digest("token secret"),
            expires: Some(Timestamp(T0 + 90 * 86_400 * 1_000_000_000)),
            dev_only: false,
            by: admin.clone(),
            by_token: None,
        },
        Event::TokenRevoked {
            token,
            by: admin.clone(),
            reason: "rotated".into(),
        },
        Event::CommandRequested(Box::new(CommandRequested {
            request: request.clone(),
            actor: Principal(format!("token:{}", token.to_hex())),
            auth: AuthMethod::Token,
            credential: Some(token.to_hex()),
            client_ip: "203.0.113.7".into(),
            user_agent: "convox/3.19.4".into(),
            method: "POST".into(),
            path: "/apps/web/environment".into(),
            permission: Some(Permission("convox:env:set".into())),
            decision: Decision::Deny,
            reason: "token scope lacks convox:env:set".into(),
            params: vec![
                ("app".into(), "web".into()),
                (
                    "DATABASE_URL".into(),
                    format!("hmac-sha256:{}", digest("DATABASE_URL value").to_hex()),
                ),
            ],
        })),
        Event::CommandCompleted(Box::new(CommandCompleted {
            request: request.clone(),
            status: 200,
            duration_ns: 184_250_000,
            bytes_in: 512,
            bytes_out: 20_480,
            sha256_in: Some(digest("request body")),
            sha256_out: Some(digest("response body")),
            failure: None,
        })),
        Event::StreamOpened {
            request: request.clone(),
        },
        Event::StreamClosed {
            request,
            duration_ns: 93_000_000_000,
            bytes_in: 1_024,
            bytes_out: 65_536,
            exit_code: Some(-1),
            sha256_in: None,
            sha256_out: None,
            ended: None,
        },
        Event::DenialsCounted {
            ip: "198.51.100.23".into(),
            reason: "missing credentials".into(),
            count: 57,
            first: Timestamp(T0 - 60_000_000_000),
            last: Timestamp(T0 - 1_000_000),
        },
    ];
    // The log's first record has seq 0 and the zero prev; the others sit further into a log.
    let mut records: Vec<(String, Record)> = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let i = i as u64;
            let (seq, prev) = if i == 0 {
                (0, hash::ZERO)
            } else {
                (1000 * i + 7, digest(&format!("record {}", 1000 * i + 6)))
            };
            let record = Record {
                seq: Seq(seq),
                time: Timestamp(T0 + (i as i64) * 1_000_000_123),
                prev,
                event,
            };
            (record.event.code().to_owned(), record)
        })
        .collect();
    // Later shapes, in the order they were added.
    records.push((
        "G4001I-2".to_owned(),
        Record {
            seq: Seq(100_007),
            time: Timestamp(T0 + 100 * 1_000_000_123),
            prev: digest("record 100006"),
            event: Event::CommandCompleted(Box::new(completed_2)),
        },
    ));
    records.push((
        "G4003I-2".to_owned(),
        Record {
            seq: Seq(101_007),
            time: Timestamp(T0 + 101 * 1_000_000_123),
            prev: digest("record 101006"),
            event: stream_closed_2,
        },
    ));
    records.push((
        "G4003I-3".to_owned(),
        Record {
            seq: Seq(102_007),
            time: Timestamp(T0 + 102 * 1_000_000_123),
            prev: digest("record 102006"),
            event: stream_closed_3,
        },
    ));
    records.push((
        "G3000I-2".to_owned(),
        Record {
            seq: Seq(103_007),
            time: Timestamp(T0 + 103 * 1_000_000_123),
            prev: digest("record 103006"),
            event: Event::TokenCreated {
                token: TokenId([0x7e; 16]),
                name: "ci-deploy-2".into(),
                owner: Principal("alice@example.com".into()),
                scopes: vec![Permission("convox:app:read".into())],
                secret_sha256: digest("token secret 2"),
                expires: Some(Timestamp(T0 + 30 * 86_400 * 1_000_000_000)),
                dev_only: false,
                by: Principal("admin@example.com".into()),
                by_token: Some(TokenId([0xa5; 16])),
            },
        },
    ));
    Ok(records)
}

/// A stand-in digest: the leaf hash of a label, so each sample hash is distinct and reproducible.
fn digest(label: &str) -> Hash {
    hash::leaf_hash(label.as_bytes())
}
