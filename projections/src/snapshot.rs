//! Snapshots: the projections at one position of the log, written so a restart replays only
//! what came after, and authenticated so a forged or stale file is refused.
//!
//! A snapshot file is `rgw-snapshot-v1\n<hex HMAC-SHA256 of the body>\n<body>`, the body being
//! the JSON of [`SnapshotBody`]. The MAC is under the snapshot key (`<data>/keys/snapshot.key`).
//! The SHA-256 of the whole file is its digest, which the gateway records as `SnapshotRecorded`.
//!
//! **Invariant:** a snapshot is used only if its MAC verifies and the log holds, at the position
//! it covers, the hash it names (checked by the caller against the store, and again by
//! `Projections::apply`, which refuses a replayed record whose `prev` is not that hash).
//! Anything else is refused and the state is rebuilt from seq 0.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use events::event::{Permission, Principal, Role, TokenId};
use events::hash::{self, Hash};
use events::seq::Seq;
use events::time::Timestamp;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use crate::Projections;
use crate::identities::Identities;
use crate::log_info::{KeyEntry, LogInfo};
use crate::tokens::{Token, Tokens};

const MAGIC: &[u8] = b"rgw-snapshot-v1\n";

/// The version of the body's layout **and of the folds that made it**: a snapshot of another
/// version is refused, and the state is rebuilt from the log. A snapshot written by folds that
/// have since changed would otherwise be restored as if today's folds had made it, and the
/// state would differ from a rebuild from seq 0. Bump it with any change to a fold's result or
/// to the layout; `tests/golden_log.rs` pins the golden log's snapshot to it, so a change the
/// golden log shows fails there until it is bumped.
///
/// 2: tokens keep who created them. 3: the version covers the folds too. 4: a token's first
/// creation stands, and `last_used` moves only while the token is usable. 5: and with every
/// allowed call. 6: tokens keep the token they were created with. 7: and tokens from before
/// that field get it from their create call's record.
pub const VERSION: u32 = 7;

/// The key snapshots are authenticated under. Never printed.
#[derive(Clone)]
pub struct SnapshotKey(pub [u8; 32]);

/// Why a snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot: not a snapshot file (bad header)")]
    Header,
    #[error("snapshot: the MAC does not verify under the snapshot key")]
    Mac,
    #[error("snapshot: body is not valid: {0}")]
    Body(String),
}

/// The serialized form of the projections. A boundary type: changing it needs a new version.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotBody {
    pub version: u32,
    pub covers: u64,
    pub covers_hash: String,
    pub origin: String,
    pub keys: Vec<(String, u64)>,
    pub snapshots: Vec<(u64, String)>,
    pub config_digest: Option<String>,
    pub roles: Vec<(String, Vec<String>)>,
    pub disabled: Vec<String>,
    pub tokens: Vec<TokenBody>,
}

/// One token in a snapshot.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub scopes: Vec<String>,
    pub secret_sha256: String,
    pub created: i64,
    pub expires: Option<i64>,
    pub dev_only: bool,
    pub revoked: Option<i64>,
    pub last_used: Option<i64>,
    pub created_by: String,
    pub created_with: Option<String>,
}

/// A snapshot that was read and authenticated: the state and what it covers.
#[derive(Debug)]
pub struct Loaded {
    pub state: Projections,
    pub covers: Seq,
    pub covers_hash: Hash,
    pub digest: Hash,
}

// === impl SnapshotKey ===

impl fmt::Debug for SnapshotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotKey(..)")
    }
}

impl SnapshotKey {
    fn mac(&self, body: &[u8]) -> Result<hmac::Hmac<sha2::Sha256>, SnapshotError> {
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.0)
            .map_err(|_| SnapshotError::Mac)?;
        m.update(body);
        Ok(m)
    }
}

/// Writes the state as snapshot bytes and returns them with their digest.
pub fn write(state: &Projections, key: &SnapshotKey) -> Result<(Vec<u8>, Hash), SnapshotError> {
    let body =
        serde_json::to_vec(&to_body(state)).map_err(|e| SnapshotError::Body(e.to_string()))?;
    let tag = key.mac(&body)?.finalize().into_bytes();
    let mut out = Vec::with_capacity(MAGIC.len() + 65 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(hex::encode(tag).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&body);
    let digest = hash::object_digest(&out);
    Ok((out, digest))
}

/// Reads and authenticates snapshot bytes.
pub fn read(bytes: &[u8], key: &SnapshotKey) -> Result<Loaded, SnapshotError> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(SnapshotError::Header)?;
    let tag_hex = rest.get(..64).ok_or(SnapshotError::Header)?;
    if rest.get(64) != Some(&b'\n') {
        return Err(SnapshotError::Header);
    }
    let body = rest.get(65..).ok_or(SnapshotError::Header)?;
    let mut tag = [0u8; 32];
    hex::decode_to_slice(tag_hex, &mut tag).map_err(|_| SnapshotError::Header)?;
    key.mac(body)?
        .verify_slice(&tag)
        .map_err(|_| SnapshotError::Mac)?;
    let body: SnapshotBody =
        serde_json::from_slice(body).map_err(|e| SnapshotError::Body(e.to_string()))?;
    let digest = hash::object_digest(bytes);
    from_body(body, digest)
}

fn to_body(s: &Projections) -> SnapshotBody {
    SnapshotBody {
        version: VERSION,
        covers: s.len(),
        covers_hash: s.last_hash().to_hex(),
        origin: s.log.origin.clone(),
        keys: s
            .log
            .keys
            .iter()
            .map(|k| (k.vkey.clone(), k.from_size))
            .collect(),
        snapshots: s
            .log
            .snapshots
            .iter()
            .map(|(c, d)| (c.0, d.to_hex()))
            .collect(),
        config_digest: s.log.config_digest.map(|d| d.to_hex()),
        roles: s
            .identities
            .roles
            .iter()
            .map(|(u, r)| {
                (
                    u.0.clone(),
                    r.iter().map(|r| r.as_str().to_owned()).collect(),
                )
            })
            .collect(),
        disabled: s.identities.disabled.iter().map(|u| u.0.clone()).collect(),
        tokens: s
            .tokens
            .by_id
            .values()
            .map(|t| TokenBody {
                id: t.id.to_hex(),
                name: t.name.clone(),
                owner: t.owner.0.clone(),
                scopes: t.scopes.iter().map(|p| p.0.clone()).collect(),
                secret_sha256: t.secret_sha256.to_hex(),
                created: t.created.0,
                expires: t.expires.map(|t| t.0),
                dev_only: t.dev_only,
                revoked: t.revoked.map(|t| t.0),
                last_used: t.last_used.map(|t| t.0),
                created_by: t.created_by.0.clone(),
                created_with: t.created_with.map(|id| id.to_hex()),
            })
            .collect(),
    }
}

fn from_body(b: SnapshotBody, digest: Hash) -> Result<Loaded, SnapshotError> {
    let bad = |what: &str| SnapshotError::Body(what.to_owned());
    if b.version != VERSION {
        return Err(bad("unknown snapshot version"));
    }
    let parse_hash = |s: &str| Hash::from_hex(s).ok_or_else(|| bad("bad hash"));
    let covers_hash = parse_hash(&b.covers_hash)?;
    let mut roles: BTreeMap<Principal, BTreeSet<Role>> = BTreeMap::new();
    for (user, rs) in b.roles {
        let set = rs
            .iter()
            .map(|r| Role::parse(r).ok_or_else(|| bad("unknown role")))
            .collect::<Result<BTreeSet<_>, _>>()?;
        roles.insert(Principal(user), set);
    }
    let mut by_id = BTreeMap::new();
    let mut by_secret = HashMap::new();
    for t in b.tokens {
        let id = TokenId::from_hex(&t.id).ok_or_else(|| bad("bad token id"))?;
        let secret_sha256 = parse_hash(&t.secret_sha256)?;
        by_secret.insert(secret_sha256, id);
        by_id.insert(
            id,
            Token {
                id,
                name: t.name,
                owner: Principal(t.owner),
                scopes: t.scopes.into_iter().map(Permission).collect(),
                secret_sha256,
                created: Timestamp(t.created),
                expires: t.expires.map(Timestamp),
                dev_only: t.dev_only,
                revoked: t.revoked.map(Timestamp),
                last_used: t.last_used.map(Timestamp),
                created_by: Principal(t.created_by),
                created_with: t
                    .created_with
                    .map(|h| TokenId::from_hex(&h).ok_or_else(|| bad("bad token id")))
                    .transpose()?,
            },
        );
    }
    let snapshots = b
        .snapshots
        .iter()
        .map(|(c, d)| Ok((Seq(*c), parse_hash(d)?)))
        .collect::<Result<Vec<_>, SnapshotError>>()?;
    let state = Projections {
        position: Seq(b.covers),
        last_hash: covers_hash,
        log: LogInfo {
            origin: b.origin,
            keys: b
                .keys
                .into_iter()
                .map(|(vkey, from_size)| KeyEntry { vkey, from_size })
                .collect(),
            snapshots,
            config_digest: b.config_digest.as_deref().map(parse_hash).transpose()?,
        },
        identities: Identities {
            roles,
            disabled: b.disabled.into_iter().map(Principal).collect(),
        },
        tokens: Tokens {
            by_id,
            by_secret,
            creating_call: None,
        },
    };
    Ok(Loaded {
        state,
        covers: Seq(b.covers),
        covers_hash,
        digest,
    })
}
