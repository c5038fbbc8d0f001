//! Builds `schemas/fixtures/log-v1/`: the golden log every later version must decode, verify and
//! fold. Run once with `cargo run --example build_golden_log`; it refuses to touch an existing
//! golden log, because committed fixtures are append-only (a new shape is a new `log-vN`).
//!
//! The log holds every event code of version 1, a few hundred records and a checkpoint every 64
//! records, exported with the local exporter; the public key is written beside it as `vkey`.
//! The private key lives only in a temporary directory and is never written to the fixture.

use std::path::Path;

use anyhow::{Context, bail};
use events::event::{
    AuthMethod, CommandCompleted, CommandRequested, Decision, Event, Permission, Principal,
    RequestId, Role, TokenId,
};
use events::hash;
use events::store::{CheckpointPolicy, EventStore};
use events::time::Timestamp;
use rack_gateway::{export, keys::Keys, store};

fn p(s: &str) -> Principal {
    Principal(s.to_owned())
}

/// Record `i`'s events: a repeating day of gateway life that uses every code.
fn events(i: u64) -> Vec<Event> {
    let user = format!("user{}@example.com", i % 5);
    let request = RequestId(format!("req-{i:05}"));
    match i % 12 {
        0 => vec![Event::RoleGranted {
            user: p(&user),
            role: Role::ALL[(i / 12 % 5) as usize],
            by: p("admin@example.com"),
        }],
        1 => vec![Event::TokenCreated {
            token: TokenId([(i % 251) as u8; 16]),
            name: format!("ci-{i}"),
            owner: p(&user),
            scopes: vec![Permission("convox:app:read".into())],
            secret_sha256: hash::object_digest(&i.to_be_bytes()),
            expires: i
                .is_multiple_of(2)
                .then_some(Timestamp(4_102_444_800_000_000_000)),
            dev_only: false,
            by: p("admin@example.com"),
            by_token: None,
        }],
        2..=5 => vec![
            Event::CommandRequested(Box::new(CommandRequested {
                request: request.clone(),
                actor: p(&user),
                auth: AuthMethod::Token,
                credential: Some(TokenId([((i - 1) % 251) as u8; 16]).to_hex()),
                client_ip: "192.0.2.10".into(),
                user_agent: "convox/3.21.0".into(),
                method: "POST".into(),
                path: format!("/apps/app{}/releases", i % 3),
                permission: Some(Permission("convox:release:create".into())),
                decision: if i.is_multiple_of(4) {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
                reason: String::new(),
                params: vec![(
                    "env".into(),
                    format!("hmac-sha256:{}", hash::object_digest(&i.to_le_bytes())),
                )],
            })),
            Event::CommandCompleted(Box::new(CommandCompleted {
                request,
                status: 200,
                duration_ns: 1_500_000 + i,
                bytes_in: 120,
                bytes_out: 512,
                sha256_in: None,
                sha256_out: Some(hash::object_digest(b"body")),
                failure: None,
            })),
        ],
        6 => vec![
            Event::StreamOpened {
                request: request.clone(),
            },
            Event::StreamClosed {
                request,
                duration_ns: 9_000_000_000,
                bytes_in: 8,
                bytes_out: 4096,
                exit_code: Some(0),
                sha256_in: None,
                sha256_out: None,
                ended: None,
            },
        ],
        7 => vec![Event::DenialsCounted {
            ip: "198.51.100.7".into(),
            reason: "missing_credentials".into(),
            count: 3 + i,
            first: Timestamp(1_700_000_000_000_000_000),
            last: Timestamp(1_700_000_060_000_000_000),
        }],
        8 => vec![Event::TokenRevoked {
            token: TokenId([((i - 7) % 251) as u8; 16]),
            by: p("admin@example.com"),
            reason: "rotated".into(),
        }],
        9 => vec![Event::UserDisabled {
            user: p(&user),
            by: p("admin@example.com"),
            reason: "left the team".into(),
        }],
        10 => vec![Event::UserEnabled {
            user: p(&user),
            by: p("admin@example.com"),
        }],
        _ => vec![Event::RoleRevoked {
            user: p(&user),
            role: Role::Viewer,
            by: p("admin@example.com"),
        }],
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/fixtures/log-v1");
    if out.exists() {
        bail!(
            "{}: the golden log exists and is never regenerated",
            out.display()
        );
    }
    let data = tempfile::tempdir()?;
    Keys::init(data.path(), "golden.rack-gateway.test/log-v1")?;
    let (store, keys) = store::open(
        data.path(),
        CheckpointPolicy {
            every: 64,
            ..CheckpointPolicy::default()
        },
    )?;
    store
        .append(vec![Event::ConfigApplied {
            digest: hash::object_digest(b"config v1"),
            values: vec![("listen".into(), "127.0.0.1:8443".into())],
        }])
        .await?;
    store
        .append(vec![Event::CheckpointKeyAdded {
            checkpoint_key: keys.vkey().to_string(),
            by: p("system"),
        }])
        .await?;
    for i in 0..240 {
        store.append(events(i)).await?;
    }
    let covers = store::write_snapshot(&store, &keys, data.path()).await?;
    store
        .append(events(2))
        .await
        .context("after the snapshot")?;
    println!("snapshot covers {covers:?}; head {:?}", store.head());
    drop(store);
    let summary = export::export_local(&store::log_path(data.path()), &out)?;
    std::fs::write(out.join("vkey"), format!("{}\n", keys.vkey()))?;
    println!("wrote {} ({summary:?})", out.display());
    Ok(())
}
