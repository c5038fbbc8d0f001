//! The one conformance suite every store passes (embedded redb now, PostgreSQL later).
//!
//! Each check opens a fresh store through the caller's `open` function and asserts one clause of
//! the `EventStore` contract. The suite folds into its own [`TestFold`], which tracks position and
//! spent one-time values, so it needs nothing from the projections crate.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::{AppendError, Delivery, EventStore, Fold, FoldError};
use crate::checkpoint::{self, VerifierKey};
use crate::event::{Event, Principal, TokenId};
use crate::hash::{self, Hash};
use crate::merkle;
use crate::record::StoredRecord;
use crate::seq::Seq;

/// A fold for the suite: counts records, checks order, remembers revoked tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestFold {
    pub next: u64,
    pub last_hash: Hash,
    pub revoked: HashSet<TokenId>,
    pub times: Vec<i64>,
}

impl Fold for TestFold {
    fn apply(&mut self, stored: &StoredRecord) -> Result<(), FoldError> {
        let record = &stored.record;
        if record.seq.0 != self.next {
            return Err(FoldError::OutOfOrder {
                expected: Seq(self.next),
                found: record.seq,
            });
        }
        if let Event::TokenRevoked { token, .. } = &record.event {
            self.revoked.insert(*token);
        }
        self.next += 1;
        self.last_hash = stored.hash;
        self.times.push(record.time.0);
        Ok(())
    }

    fn position(&self) -> Seq {
        Seq(self.next)
    }
}

/// An event that spends the one-time value `n`.
pub fn spend(n: u8) -> Event {
    Event::TokenRevoked {
        token: TokenId([n; 16]),
        by: Principal("conformance".into()),
        reason: "spent".into(),
    }
}

/// A plain event of about 100 bytes.
pub fn filler(i: u64) -> Event {
    Event::UserEnabled {
        user: Principal(format!("user-{i}@example.com")),
        by: Principal("conformance".into()),
    }
}

/// Runs every check. `open(dir)` must open (or reopen) the store kept in `dir`, whose checkpoints
/// are signed for `origin` by the key `key`.
pub async fn run_all<St, F>(open: F, origin: &str, key: &VerifierKey)
where
    St: EventStore<TestFold> + Send + Sync + 'static,
    F: Fn(&Path) -> St,
{
    let dirs: Vec<tempfile::TempDir> = (0..8).map(|_| tempdir()).collect();
    let mut d = dirs.iter().map(|d| d.path());
    let mut next = || d.next().unwrap_or(Path::new("/nonexistent"));
    new_log_starts_with_log_created(&open(next()), origin).await;
    append_assigns_seq_time_and_prev(&open(next())).await;
    read_your_writes(&open(next())).await;
    concurrent_spend_exactly_once(Arc::new(open(next()))).await;
    guard_sees_earlier_entries_of_its_batch(Arc::new(open(next()))).await;
    subscription_delivers_in_order(&open(next())).await;
    checkpoints_are_signed_and_match_the_tree(&open(next()), origin, key).await;
    reopen_keeps_everything(&open, next()).await;
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(unreachable_dir)
}

#[allow(clippy::panic)]
fn unreachable_dir(e: std::io::Error) -> tempfile::TempDir {
    panic!("cannot create a temporary directory: {e}")
}

/// Record 0 of every log is `LogCreated` naming the origin.
#[allow(clippy::panic, clippy::unwrap_used)]
pub async fn new_log_starts_with_log_created<St: EventStore<TestFold>>(store: &St, origin: &str) {
    let first = store.read(0..1).await.unwrap();
    match &first[0].record.event {
        Event::LogCreated { origin: o, .. } => assert_eq!(o, origin),
        other => panic!("record 0 is {other:?}"),
    }
    assert_eq!(first[0].record.prev, hash::ZERO);
}

/// Consecutive seq, non-decreasing time, prev = leaf hash of the previous record.
#[allow(clippy::unwrap_used)]
pub async fn append_assigns_seq_time_and_prev<St: EventStore<TestFold>>(store: &St) {
    let before = store.head();
    let a = store.append(vec![filler(1), filler(2)]).await.unwrap();
    let b = store.append(vec![filler(3)]).await.unwrap();
    assert_eq!(a.first, Seq(before.size));
    assert_eq!(b.first, Seq(before.size + 2));
    let all = store.read(0..u64::MAX).await.unwrap();
    assert_eq!(all.len() as u64, before.size + 3);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.record.seq, Seq(i as u64));
        if i > 0 {
            assert_eq!(r.record.prev, all[i - 1].hash, "prev of seq {i}");
            assert!(r.record.time >= all[i - 1].record.time, "time of seq {i}");
        }
        assert_eq!(r.hash, hash::leaf_hash(&r.bytes));
    }
    assert_eq!(
        a.hashes,
        vec![all[all.len() - 3].hash, all[all.len() - 2].hash]
    );
    let head = store.head();
    assert_eq!(head.size, all.len() as u64);
    assert_eq!(head.hash, all[all.len() - 1].hash);
    assert!(matches!(
        store.append(vec![]).await,
        Err(AppendError::Empty)
    ));
}

/// Every resolved append is already in the state.
#[allow(clippy::unwrap_used)]
pub async fn read_your_writes<St: EventStore<TestFold>>(store: &St) {
    for i in 0..20u8 {
        let a = store.append(vec![spend(i)]).await.unwrap();
        assert!(store.with_state(|s| s.revoked.contains(&TokenId([i; 16]))));
        assert_eq!(store.with_state(|s| s.next), a.first.0 + 1);
    }
}

/// 64 concurrent attempts to spend one value: exactly one is sequenced.
#[allow(clippy::unwrap_used)]
pub async fn concurrent_spend_exactly_once<St: EventStore<TestFold> + 'static>(store: Arc<St>) {
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_if(
                    vec![spend(7)],
                    Box::new(|s: &TestFold| {
                        if s.revoked.contains(&TokenId([7; 16])) {
                            Err(super::Rejected("already spent"))
                        } else {
                            Ok(())
                        }
                    }),
                )
                .await
        }));
    }
    let mut ok = 0;
    let mut rejected = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(AppendError::Rejected(_)) => rejected += 1,
            Err(e) => unreachable_append(e),
        }
    }
    assert_eq!((ok, rejected), (1, 63));
    let spends = store
        .read(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|r| matches!(r.record.event, Event::TokenRevoked { .. }))
        .count();
    assert_eq!(spends, 1, "the log holds exactly one spend");
}

#[allow(clippy::panic)]
fn unreachable_append(e: AppendError) {
    panic!("unexpected append error: {e}")
}

/// Unguarded entries queued before a guarded one in the same batch are visible to its guard.
#[allow(clippy::unwrap_used)]
pub async fn guard_sees_earlier_entries_of_its_batch<St: EventStore<TestFold> + 'static>(
    store: Arc<St>,
) {
    for round in 0..20u8 {
        let value = 100 + round;
        let a = {
            let store = store.clone();
            tokio::spawn(async move { store.append(vec![spend(value)]).await })
        };
        let b = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append_if(
                        vec![filler(u64::from(value))],
                        Box::new(move |s: &TestFold| {
                            if s.revoked.contains(&TokenId([value; 16])) {
                                Ok(())
                            } else {
                                Err(super::Rejected("not yet spent"))
                            }
                        }),
                    )
                    .await
            })
        };
        let a = a.await.unwrap().unwrap();
        match b.await.unwrap() {
            // If the guard ran, the spend must already have been sequenced before it.
            Ok(b) => assert!(b.first > a.first),
            Err(AppendError::Rejected(_)) => {}
            Err(e) => unreachable_append(e),
        }
    }
}

/// A subscriber sees every record after it subscribed, in order.
#[allow(clippy::unwrap_used, clippy::panic)]
pub async fn subscription_delivers_in_order<St: EventStore<TestFold>>(store: &St) {
    let mut sub = store.subscribe();
    let start = store.head().size;
    for i in 0..50 {
        store.append(vec![filler(i)]).await.unwrap();
    }
    let mut seen = start;
    while seen < start + 50 {
        match sub.next().await {
            Delivery::Record(r) => {
                assert_eq!(r.record.seq, Seq(seen));
                seen += 1;
            }
            Delivery::Gap { from, to } => {
                let missed = store.read(from..to).await.unwrap();
                assert_eq!(missed.len() as u64, to - from);
                seen = to;
                sub.resume_at(to);
            }
            Delivery::Closed => panic!("subscription closed early"),
        }
    }
}

/// Checkpoints verify under the key, and their roots are the roots of the records.
#[allow(clippy::unwrap_used)]
pub async fn checkpoints_are_signed_and_match_the_tree<St: EventStore<TestFold>>(
    store: &St,
    origin: &str,
    key: &VerifierKey,
) {
    for i in 0..300 {
        store.append(vec![filler(i)]).await.unwrap();
    }
    let cps = store.checkpoints(0..u64::MAX).await.unwrap();
    assert!(!cps.is_empty());
    let records = store.read(0..u64::MAX).await.unwrap();
    let mut frontier = merkle::Frontier::new();
    let mut roots = vec![frontier.root()];
    for r in &records {
        frontier.push(r.hash);
        roots.push(frontier.root());
    }
    let mut last_size = 0;
    for cp in &cps {
        let opened = checkpoint::open_checkpoint(cp.note.as_bytes(), origin, key).unwrap();
        assert_eq!(opened, cp.checkpoint);
        assert!(opened.size >= last_size, "checkpoint sizes never shrink");
        last_size = opened.size;
        assert_eq!(opened.root, roots[opened.size as usize]);
    }
    assert_eq!(store.head().root, frontier.root());
}

/// After reopening, the log, the head and the state are as they were, and appends continue.
#[allow(clippy::unwrap_used)]
pub async fn reopen_keeps_everything<St, F>(open: &F, dir: &Path)
where
    St: EventStore<TestFold>,
    F: Fn(&Path) -> St,
{
    let (head, records) = {
        let store = open(dir);
        for i in 0..10u8 {
            store.append(vec![spend(i)]).await.unwrap();
        }
        (store.head(), store.read(0..u64::MAX).await.unwrap())
    };
    let store = open(dir);
    assert_eq!(store.head(), head);
    assert_eq!(store.read(0..u64::MAX).await.unwrap(), records);
    assert_eq!(store.with_state(|s| s.revoked.len()), 10);
    let a = store.append(vec![filler(0)]).await.unwrap();
    assert_eq!(a.first, Seq(head.size));
    let r = store.read(head.size..head.size + 1).await.unwrap();
    assert_eq!(r[0].record.prev, head.hash);
}
