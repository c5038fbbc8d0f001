//! Tests of the folds: rebuild equals live state, snapshots round-trip and are refused when
//! forged or foreign, and the role and token rules.

use events::checkpoint::NoteSigner;
use events::event::{Event, Permission, Principal, Role, TokenId};
use events::fold::Fold;
use events::hash::{self, Hash};
use events::record::Record;
use events::seq::Seq;
use events::store::redb::{Options, RedbStore};
use events::store::{CheckpointPolicy, EventStore};
use events::time::Timestamp;

use crate::Projections;
use crate::snapshot::{self, SnapshotKey};

fn p(s: &str) -> Principal {
    Principal(s.to_owned())
}

fn token(n: u8, owner: &str, expires: Option<i64>) -> Event {
    Event::TokenCreated {
        token: TokenId([n; 16]),
        name: format!("t{n}"),
        owner: p(owner),
        scopes: vec![Permission("convox:app:read".into())],
        secret_sha256: hash::object_digest(&[n]),
        expires: expires.map(Timestamp),
        dev_only: false,
        by: p("admin@example.com"),
        // Every other token made with an earlier one, so snapshots carry both forms.
        by_token: (n % 2 == 1).then_some(TokenId([n.wrapping_sub(1); 16])),
    }
}

fn workload() -> Vec<Event> {
    let mut out = Vec::new();
    for i in 0..40u8 {
        let user = format!("u{}@example.com", i % 7);
        out.push(Event::RoleGranted {
            user: p(&user),
            role: Role::ALL[usize::from(i) % 5],
            by: p("admin@example.com"),
        });
        if i % 3 == 0 {
            out.push(token(i, &user, if i % 2 == 0 { Some(1) } else { None }));
        }
        if i % 5 == 0 {
            out.push(Event::RoleRevoked {
                user: p(&user),
                role: Role::ALL[usize::from(i) % 5],
                by: p("admin@example.com"),
            });
        }
        if i % 9 == 0 {
            out.push(Event::TokenRevoked {
                token: TokenId([i; 16]),
                by: p("admin@example.com"),
                reason: "test".into(),
            });
            out.push(Event::UserDisabled {
                user: p(&user),
                by: p("admin@example.com"),
                reason: "left".into(),
            });
        }
        if i % 13 == 0 {
            out.push(Event::UserEnabled {
                user: p(&user),
                by: p("admin@example.com"),
            });
        }
    }
    out
}

fn open(dir: &std::path::Path, state: Projections) -> RedbStore<Projections> {
    let options = Options {
        origin: "test.example/log".into(),
        signer: NoteSigner::from_seed("test.example/log", [7; 32]).unwrap(),
        policy: CheckpointPolicy::default(),
    };
    RedbStore::open(&dir.join("log.redb"), options, state).unwrap()
}

fn rebuild(records: &[events::record::StoredRecord]) -> Projections {
    let mut s = Projections::default();
    for r in records {
        s.apply(r).unwrap();
    }
    s
}

#[tokio::test]
async fn rebuild_from_seq_0_equals_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Projections::default());
    for e in workload() {
        store.append(vec![e]).await.unwrap();
    }
    let live = store.with_state(|s| s.clone());
    let records = store.read(0..u64::MAX).await.unwrap();
    assert_eq!(rebuild(&records), live);
    assert_eq!(live.len(), store.head().size);
    assert_eq!(live.last_hash(), store.head().hash);
    // The workload leaves a mix of states behind, so the comparison is not vacuous.
    assert!(live.identities.users().count() > 2);
    assert!(live.tokens.iter().any(|t| t.revoked.is_some()));
    assert!(live.identities.is_disabled(&p("u2@example.com")));
    assert!(!live.identities.is_disabled(&p("u0@example.com")));
}

#[tokio::test]
async fn snapshot_then_replay_equals_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let key = SnapshotKey([9; 32]);
    let (bytes, digest) = {
        let store = open(dir.path(), Projections::default());
        let events = workload();
        let (first, rest) = events.split_at(events.len() / 2);
        for e in first {
            store.append(vec![e.clone()]).await.unwrap();
        }
        let snap = store.with_state(|s| snapshot::write(s, &key)).unwrap();
        for e in rest {
            store.append(vec![e.clone()]).await.unwrap();
        }
        snap
    };
    let loaded = snapshot::read(&bytes, &key).unwrap();
    assert_eq!(loaded.digest, digest);
    let covers = loaded.covers;
    let store = open(dir.path(), loaded.state);
    let records = store.read(0..u64::MAX).await.unwrap();
    assert!(covers.0 < records.len() as u64, "the replay is not empty");
    assert_eq!(store.with_state(|s| s.clone()), rebuild(&records));
}

#[test]
fn snapshot_with_a_flipped_byte_or_another_key_is_refused() {
    let mut state = Projections::default();
    let rec = Record {
        seq: Seq(0),
        time: Timestamp(5),
        prev: hash::ZERO,
        event: token(1, "a@example.com", None),
    };
    state.apply(&rec.seal()).unwrap();
    let key = SnapshotKey([1; 32]);
    let (bytes, _) = snapshot::write(&state, &key).unwrap();
    assert_eq!(snapshot::read(&bytes, &key).unwrap().state, state);
    assert!(matches!(
        snapshot::read(&bytes, &SnapshotKey([2; 32])),
        Err(snapshot::SnapshotError::Mac)
    ));
    for i in [0, 20, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[i] ^= 1;
        assert!(snapshot::read(&bad, &key).is_err(), "flip at {i} accepted");
    }
}

#[test]
fn a_state_from_another_log_refuses_the_next_record() {
    let mut state = Projections::default();
    let r0 = Record {
        seq: Seq(0),
        time: Timestamp(1),
        prev: hash::ZERO,
        event: token(1, "a@example.com", None),
    };
    state.apply(&r0.seal()).unwrap();
    let foreign_next = Record {
        seq: Seq(1),
        time: Timestamp(2),
        prev: Hash([3; 32]),
        event: token(2, "a@example.com", None),
    };
    assert!(state.apply(&foreign_next.clone().seal()).is_err());
    let out_of_order = Record {
        seq: Seq(5),
        prev: state.last_hash(),
        ..foreign_next
    };
    assert!(state.apply(&out_of_order.seal()).is_err());
    assert_eq!(state.len(), 1, "refused records change nothing");
}

#[test]
fn tokens_expire_and_revoke_by_time_from_records() {
    let mut state = Projections::default();
    let mut prev = hash::ZERO;
    for (i, e) in [
        token(1, "a@example.com", Some(100)),
        token(2, "a@example.com", None),
        Event::TokenRevoked {
            token: TokenId([2; 16]),
            by: p("a@example.com"),
            reason: "x".into(),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let r = Record {
            seq: Seq(i as u64),
            time: Timestamp(10),
            prev,
            event: e,
        };
        let r = r.seal();
        prev = r.hash;
        state.apply(&r).unwrap();
    }
    let s1 = hash::object_digest(&[1]);
    let s2 = hash::object_digest(&[2]);
    assert!(state.tokens.usable_by_secret(&s1, Timestamp(99)).is_some());
    assert!(state.tokens.usable_by_secret(&s1, Timestamp(100)).is_none());
    assert!(state.tokens.usable_by_secret(&s2, Timestamp(11)).is_none());
    assert_eq!(
        state.tokens.get(&TokenId([2; 16])).unwrap().revoked,
        Some(Timestamp(10))
    );
}

#[test]
fn disabled_users_hold_no_roles_and_the_admin_count_sees_it() {
    let mut id = crate::Identities::default();
    id.apply(&Event::RoleGranted {
        user: p("a@x"),
        role: Role::Admin,
        by: p("s"),
    });
    id.apply(&Event::RoleGranted {
        user: p("b@x"),
        role: Role::Admin,
        by: p("s"),
    });
    assert_eq!(id.count_with(Role::Admin), 2);
    id.apply(&Event::UserDisabled {
        user: p("a@x"),
        by: p("s"),
        reason: String::new(),
    });
    assert!(id.roles(&p("a@x")).is_empty());
    assert_eq!(id.count_with(Role::Admin), 1);
    id.apply(&Event::RoleRevoked {
        user: p("b@x"),
        role: Role::Admin,
        by: p("s"),
    });
    assert_eq!(id.count_with(Role::Admin), 0);
}

/// Folds `events` from seq 0, each at its own time.
fn folded(events: Vec<(i64, Event)>) -> Projections {
    let mut state = Projections::default();
    let mut prev = hash::ZERO;
    for (i, (time, event)) in events.into_iter().enumerate() {
        let r = Record {
            seq: Seq(i as u64),
            time: Timestamp(time),
            prev,
            event,
        }
        .seal();
        prev = r.hash;
        state.apply(&r).unwrap();
    }
    state
}

/// A call made with token `n`, allowed or denied.
fn call(n: u8, decision: events::event::Decision) -> Event {
    Event::CommandRequested(Box::new(events::event::CommandRequested {
        request: events::event::RequestId(format!("r{n}")),
        actor: p("a@example.com"),
        auth: events::event::AuthMethod::Token,
        credential: Some(TokenId([n; 16]).to_hex()),
        client_ip: "127.0.0.1".into(),
        user_agent: "t".into(),
        method: "GET".into(),
        path: "/apps".into(),
        permission: None,
        decision,
        reason: String::new(),
        params: Vec::new(),
    }))
}

/// A second creation of an id or a secret (which the append guard refuses) changes nothing, so
/// a revoked token is never revived and rebuild and restore agree.
#[test]
fn the_first_creation_of_a_token_stands() {
    let revoke = |n: u8| Event::TokenRevoked {
        token: TokenId([n; 16]),
        by: p("a@example.com"),
        reason: "x".into(),
    };
    let mut again = token(1, "b@example.com", None);
    if let Event::TokenCreated { secret_sha256, .. } = &mut again {
        *secret_sha256 = hash::object_digest(b"another");
    }
    let mut same_secret = token(2, "b@example.com", None);
    if let Event::TokenCreated { secret_sha256, .. } = &mut same_secret {
        *secret_sha256 = hash::object_digest(&[1]);
    }
    let state = folded(vec![
        (10, token(1, "a@example.com", None)),
        (11, revoke(1)),
        (12, again),
        (13, same_secret),
    ]);
    let t = state.tokens.get(&TokenId([1; 16])).unwrap();
    assert_eq!(
        (t.owner.0.as_str(), t.revoked),
        ("a@example.com", Some(Timestamp(11)))
    );
    assert!(state.tokens.get(&TokenId([2; 16])).is_none());
    let another = hash::object_digest(b"another");
    assert!(
        state
            .tokens
            .usable_by_secret(&another, Timestamp(20))
            .is_none()
    );
    let (bytes, _) = snapshot::write(&state, &SnapshotKey([7; 32])).unwrap();
    let restored = snapshot::read(&bytes, &SnapshotKey([7; 32])).unwrap().state;
    assert_eq!(restored, state);
}

/// `last_used` moves with allowed calls and with calls refused while the token was usable: a
/// call refused just after its revocation or expiry is not use after the end.
#[test]
fn a_token_is_last_used_when_allowed_or_while_usable() {
    use events::event::Decision::{Allow, Deny};
    let state = folded(vec![
        (10, token(1, "a@example.com", Some(100))),
        (11, token(2, "a@example.com", None)),
        (20, call(1, Allow)),
        (30, call(2, Deny)),
        (
            40,
            Event::TokenRevoked {
                token: TokenId([2; 16]),
                by: p("a@example.com"),
                reason: "x".into(),
            },
        ),
        (50, call(2, Deny)),
        (100, call(1, Deny)),
        (101, token(3, "a@example.com", None)),
        (
            102,
            Event::TokenRevoked {
                token: TokenId([3; 16]),
                by: p("a@example.com"),
                reason: "x".into(),
            },
        ),
        (103, call(3, Allow)),
    ]);
    let used = |n: u8| state.tokens.get(&TokenId([n; 16])).unwrap().last_used;
    assert_eq!(used(1), Some(Timestamp(20)), "not moved at its expiry");
    assert_eq!(
        used(2),
        Some(Timestamp(30)),
        "a denied call while usable is use"
    );
    // Checked just before the revocation was sequenced, recorded just after, forwarded: use.
    assert_eq!(used(3), Some(Timestamp(103)), "an allowed call is use");
}

/// What a token made, and what that made, to any depth, breadth first, revoked ones included
/// (a revoked token's own tokens still descend from the root); tokens made with another root,
/// or offline, are not among them.
#[test]
fn the_tokens_made_with_a_token_are_found_to_any_depth() {
    let made = |n: u8, with: Option<u8>| {
        let mut e = token(n, "a@example.com", None);
        if let Event::TokenCreated { by_token, .. } = &mut e {
            *by_token = with.map(|w| TokenId([w; 16]));
        }
        e
    };
    let state = folded(vec![
        (1, made(10, None)),
        (2, made(20, Some(10))),
        (3, made(21, Some(10))),
        (4, made(30, Some(20))),
        (
            5,
            Event::TokenRevoked {
                token: TokenId([20; 16]),
                by: p("admin@example.com"),
                reason: "r".into(),
            },
        ),
        (6, made(40, Some(30))),
        (7, made(50, None)),
        (8, made(51, Some(50))),
    ]);
    let ids = |ns: &[u8]| ns.iter().map(|&n| TokenId([n; 16])).collect::<Vec<_>>();
    assert_eq!(
        state.tokens.made_with(TokenId([10; 16])),
        ids(&[20, 21, 30, 40])
    );
    assert_eq!(state.tokens.made_with(TokenId([30; 16])), ids(&[40]));
    assert_eq!(state.tokens.made_with(TokenId([40; 16])), ids(&[]));
    assert_eq!(state.tokens.made_with(TokenId([99; 16])), ids(&[]));
}

/// Who may have held a secret that minted a token: the owners up its `created_with` chain, not
/// its own, each once, nearest first; none for a token made offline; a chain that names a
/// token the table lacks, or itself, ends there.
#[test]
fn a_tokens_makers_are_the_owners_up_the_chain_that_made_it() {
    let made = |n: u8, owner: &str, with: Option<u8>| {
        let mut e = token(n, owner, None);
        if let Event::TokenCreated { by_token, .. } = &mut e {
            *by_token = with.map(|w| TokenId([w; 16]));
        }
        e
    };
    let state = folded(vec![
        (1, made(10, "m@example.com", None)),
        (2, made(20, "a@example.com", Some(10))),
        (3, made(30, "a@example.com", Some(20))),
        (4, made(40, "c@example.com", Some(30))),
        (5, made(50, "m@example.com", Some(40))),
        (6, made(60, "d@example.com", Some(99))),
        (7, made(70, "e@example.com", Some(70))),
    ]);
    let makers = |n: u8| -> Vec<String> {
        let t = state.tokens.get(&TokenId([n; 16])).unwrap();
        state
            .tokens
            .makers(t)
            .into_iter()
            .map(|p| p.0.clone())
            .collect()
    };
    assert!(makers(10).is_empty(), "made offline");
    assert_eq!(makers(20), ["m@example.com"]);
    assert_eq!(
        makers(30),
        ["m@example.com"],
        "made with its owner's own token"
    );
    assert_eq!(makers(40), ["a@example.com", "m@example.com"]);
    assert_eq!(
        makers(50),
        ["c@example.com", "a@example.com"],
        "its own owner is not its maker"
    );
    assert!(makers(60).is_empty(), "a parent the table lacks");
    assert!(makers(70).is_empty(), "made with itself");
}

/// A token created through the API before `TokenCreated` named the token it was made with: the
/// create call's own record, just before it in the same entry, names it, and the fold takes it
/// from there. A record between them, another call, or a refused one names nothing.
#[test]
fn a_token_created_before_by_token_existed_is_traced_by_its_call() {
    use events::event::Decision;
    let create_call = |n: u8, decision: Decision| {
        let mut e = call(n, decision);
        if let Event::CommandRequested(c) = &mut e {
            c.method = "POST".into();
            c.path = "/api/v1/tokens".into();
        }
        e
    };
    let made = |n: u8| token(n * 2, "a@example.com", None);
    let made_with = |n: u8, with: u8| {
        let mut e = made(n);
        if let Event::TokenCreated { by_token, .. } = &mut e {
            *by_token = Some(TokenId([with; 16]));
        }
        e
    };
    let state = folded(vec![
        (1, made(1)),
        (2, create_call(2, Decision::Allow)),
        (3, made(2)),
        // A token made offline right after an API create's entry is not the API's.
        (4, made(6)),
        (5, call(6, Decision::Allow)),
        (6, made(3)),
        (7, create_call(8, Decision::Deny)),
        (8, made(4)),
        (9, create_call(10, Decision::Allow)),
        (10, call(11, Decision::Allow)),
        (11, made(5)),
        // The record's own `by_token` stands over the call before it.
        (12, create_call(14, Decision::Allow)),
        (13, made_with(7, 15)),
    ]);
    let with = |n: u8| {
        state
            .tokens
            .get(&TokenId([n * 2; 16]))
            .and_then(|t| t.created_with)
    };
    assert_eq!(with(2), Some(TokenId([2; 16])), "the call just before");
    assert_eq!(with(7), Some(TokenId([15; 16])));
    for n in [1, 3, 4, 5, 6] {
        assert_eq!(with(n), None, "token {}", n * 2);
    }
}
