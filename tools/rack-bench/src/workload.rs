//! The events the benches append: realistic in shape and size, deterministic in content.
//!
//! **Invariant:** event `k` is a pure function of `k` (no clock, no randomness), so two runs
//! over the same `k` range append byte-identical events and their figures are comparable.
//! Request ids embed `k`, so ids stay unique as long as callers never reuse a `k` in one log
//! (they start from the log's current size). Secret-bearing values look exactly like the
//! gateway's redacted form, `hmac-sha256:<64 hex>`, so sizes match production records.

use events::cbor;
use events::event::{
    AuthMethod, CommandCompleted, CommandRequested, Decision, Event, Permission, Principal,
    RequestId, Role, TokenId,
};
use events::hash::Hash;
use events::time::Timestamp;

/// Distinct people the synthetic traffic comes from.
const USERS: u64 = 64;
/// Distinct apps the synthetic traffic targets.
const APPS: u64 = 100;
const ROLES: [Role; 4] = [Role::Viewer, Role::Ops, Role::Deployer, Role::Admin];

/// One proxied call of the audit-first path: `POST /apps/app-N/releases` by a person with a
/// session, with two secret-bearing parameters already redacted to HMACs. About 350 bytes
/// encoded: the two `hmac-sha256:<64 hex>` values alone are 152 of them.
pub fn command_requested(k: u64) -> Event {
    let token_auth = k % 8 == 3;
    let (auth, credential) = if token_auth {
        (AuthMethod::Token, Some(token_id(k / 1000).to_hex()))
    } else {
        (
            AuthMethod::Session,
            Some(format!("sess_{:020x}", mix(k ^ 0x5e55))),
        )
    };
    let denied = k % 50 == 17;
    Event::CommandRequested(Box::new(CommandRequested {
        request: request_id(k),
        actor: user(k),
        auth,
        credential,
        client_ip: format!("10.{}.{}.{}", (k >> 16) & 0xff, (k >> 8) & 0xff, k & 0xff),
        user_agent: "convox/3.19.4 linux/amd64".to_owned(),
        method: "POST".to_owned(),
        path: format!("/apps/app-{}/releases", k % APPS),
        permission: Some(Permission("convox:release:create".to_owned())),
        decision: if denied {
            Decision::Deny
        } else {
            Decision::Allow
        },
        reason: if denied {
            "role viewer lacks convox:release:create".to_owned()
        } else {
            String::new()
        },
        params: vec![
            ("env".to_owned(), hmac_value(k, 1)),
            ("build_args".to_owned(), hmac_value(k, 2)),
        ],
    }))
}

/// The completion of the call `command_requested(k)`.
pub fn command_completed(k: u64) -> Event {
    let sha = |salt| Some(Hash(bytes32(k, salt)));
    Event::CommandCompleted(Box::new(CommandCompleted {
        request: request_id(k),
        status: 200,
        duration_ns: 3_000_000 + mix(k) % 400_000_000,
        bytes_in: 512 + mix(k ^ 1) % 65_536,
        bytes_out: 256 + mix(k ^ 2) % 4_096,
        sha256_in: sha(3),
        sha256_out: sha(4),
        failure: None,
    }))
}

/// A mixed log, as a gateway's would look: mostly request/completion pairs, with role changes,
/// token lifecycle and user disable/enable sprinkled in so every projection has work to fold.
pub fn mixed(k: u64) -> Event {
    let admin = Principal("admin@acme.example".to_owned());
    let block = k / 1000;
    match (k % 1000, k % 10_000) {
        (_, 100) => Event::UserDisabled {
            user: user(block),
            by: admin,
            reason: "offboarding".to_owned(),
        },
        (_, 5100) => Event::UserEnabled {
            user: user(block.wrapping_sub(5)),
            by: admin,
        },
        (0, _) => Event::RoleGranted {
            user: user(block),
            role: role(block),
            by: admin,
        },
        (500, _) => Event::RoleRevoked {
            user: user(block + USERS / 2),
            role: role(block),
            by: admin,
        },
        (250, _) => Event::TokenCreated {
            token: token_id(block),
            name: format!("ci-deploy-{block}"),
            owner: user(block),
            scopes: vec![
                Permission("convox:release:create".to_owned()),
                Permission("convox:build:create".to_owned()),
            ],
            secret_sha256: Hash(bytes32(block, 9)),
            expires: Some(Timestamp(4_102_444_800_000_000_000)),
            dev_only: false,
            by: admin,
            by_token: None,
        },
        (750, _) if block >= 5 => Event::TokenRevoked {
            token: token_id(block - 5),
            by: admin,
            reason: "rotated".to_owned(),
        },
        _ if k.is_multiple_of(2) => command_requested(k),
        _ => command_completed(k - 1),
    }
}

/// The encoded size of an event alone (`{0: code, 1: body}`), without the record around it.
pub fn event_len(e: &Event) -> usize {
    cbor::to_vec(&e.to_value()).len()
}

/// 26 characters, the length of the ULIDs the gateway gives requests.
fn request_id(k: u64) -> RequestId {
    RequestId(format!("01J{k:023}"))
}

fn user(k: u64) -> Principal {
    Principal(format!("user{:02}@acme.example", k % USERS))
}

fn role(k: u64) -> Role {
    ROLES[usize::try_from(k % ROLES.len() as u64).unwrap_or(0)]
}

fn token_id(n: u64) -> TokenId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&mix(n ^ 0x70c3).to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    TokenId(id)
}

fn hmac_value(k: u64, salt: u64) -> String {
    format!("hmac-sha256:{}", Hash(bytes32(k, salt)).to_hex())
}

fn bytes32(k: u64, salt: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(k ^ (salt << 48) ^ ((i as u64) << 40)).to_be_bytes());
    }
    out
}

/// SplitMix64: a cheap bijective scrambler, enough to make hex values look random.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::record::{self, Record};
    use events::seq::Seq;

    #[test]
    fn events_are_deterministic_and_decode() {
        for k in [0, 1, 3, 17, 100, 250, 500, 750, 5750, 5100, 999_999] {
            let e = mixed(k);
            assert_eq!(e, mixed(k));
            let stored = Record {
                seq: Seq(k),
                time: Timestamp(1_700_000_000_000_000_000),
                prev: Hash([7; 32]),
                event: e,
            }
            .seal();
            assert_eq!(record::decode(&stored.bytes).unwrap(), stored);
        }
    }

    #[test]
    fn command_requested_is_realistically_sized() {
        // Two `hmac-sha256:<64 hex>` values are 152 bytes on their own.
        let n = event_len(&command_requested(123_456));
        assert!((300..=400).contains(&n), "{n}");
    }
}
