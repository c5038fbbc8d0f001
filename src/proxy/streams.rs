//! Open WebSocket streams: how many each principal holds, and the switch that closes them when
//! their token is revoked or their owner, or whoever made the token for the owner, is disabled
//! or loses a role.
//!
//! **Invariant:** every relayed stream is registered before its relay starts and removed when it
//! ends; a revocation appended to the log closes every open stream it concerns (the watcher
//! follows the store's committed records), so a revoked credential cannot keep a shell open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use events::event::{Event, Principal, TokenId};
use events::store::{Delivery, EventStore};
use tokio::sync::watch;

use crate::store::Store;

/// The open streams.
#[derive(Debug, Default)]
pub struct Streams {
    open: Mutex<HashMap<u64, Entry>>,
    next: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Entry {
    token: TokenId,
    owner: Principal,
    /// Who may have held a secret that minted the token, besides its owner
    /// ([`projections::tokens::Tokens::makers`]): the token's grant is bounded by theirs too
    /// ([`crate::policy::Grant::of_token`]).
    makers: Vec<Principal>,
    cancel: watch::Sender<bool>,
}

/// A registered stream; dropping it unregisters the stream.
pub struct Registration {
    streams: Arc<Streams>,
    id: u64,
    pub cancel: watch::Receiver<bool>,
}

// === impl Registration ===

impl Registration {
    /// Ends this stream as a revocation would: its credential is no longer good (it expired).
    pub fn cancel(&self) {
        self.streams.cancel(self.id);
    }
}

// === impl Streams ===

impl Streams {
    /// Registers a stream for `owner`'s `token` (made for them by `makers`), unless the owner
    /// already holds `limit`.
    pub fn register(
        self: &Arc<Self>,
        token: TokenId,
        owner: &Principal,
        makers: Vec<Principal>,
        limit: u32,
    ) -> Option<Registration> {
        let mut open = self.open.lock().ok()?;
        let held = open.values().filter(|e| &e.owner == owner).count();
        if held >= limit as usize {
            return None;
        }
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (cancel, rx) = watch::channel(false);
        open.insert(
            id,
            Entry {
                token,
                owner: owner.clone(),
                makers,
                cancel,
            },
        );
        Some(Registration {
            streams: self.clone(),
            id,
            cancel: rx,
        })
    }

    /// Closes the streams `event` revokes: a token's, or every stream of a token whose owner or
    /// maker is disabled or demoted (their remaining rights are checked again on the next call).
    pub fn apply(&self, event: &Event) {
        let Ok(open) = self.open.lock() else {
            return;
        };
        for e in open.values() {
            let hit = match event {
                Event::TokenRevoked { token, .. } => *token == e.token,
                Event::UserDisabled { user, .. } | Event::RoleRevoked { user, .. } => {
                    *user == e.owner || e.makers.contains(user)
                }
                _ => false,
            };
            if hit {
                let _ = e.cancel.send(true);
            }
        }
    }

    /// Closes one stream (its token expired).
    fn cancel(&self, id: u64) {
        if let Ok(open) = self.open.lock()
            && let Some(e) = open.get(&id)
        {
            let _ = e.cancel.send(true);
        }
    }

    /// Applies the records a lagging watcher read back (`count` were missed). When the store
    /// could not give all of them back, a revocation may be among the rest, so every stream is
    /// closed (its caller reconnects and is checked again) rather than one being left open.
    fn apply_missed(&self, read: Option<&[events::record::StoredRecord]>, count: u64) {
        match read {
            Some(records) if records.len() as u64 == count => {
                for r in records {
                    self.apply(&r.record.event);
                }
            }
            _ => self.close_all(),
        }
    }

    /// Closes every open stream (shutdown): each relay ends and records its `StreamClosed`.
    pub fn close_all(&self) {
        if let Ok(open) = self.open.lock() {
            for e in open.values() {
                let _ = e.cancel.send(true);
            }
        }
    }

    /// Waits until no stream is registered, or `within` passes; whether all closed. A relay
    /// enqueues its `StreamClosed` before it unregisters, so after `true` every one is queued.
    pub async fn closed(&self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !self.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }

    pub fn len(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut open) = self.streams.open.lock() {
            open.remove(&self.id);
        }
    }
}

/// Follows the store's committed records and closes the streams each revocation concerns.
///
/// It follows the log from the moment it is called, not from when its task first runs: started
/// before the listeners, it sees every revocation that could concern a stream they open.
pub fn spawn_watcher(store: Arc<Store>, streams: Arc<Streams>) -> tokio::task::JoinHandle<()> {
    let mut sub = store.subscribe();
    tokio::spawn(async move {
        loop {
            match sub.next().await {
                Delivery::Record(r) => streams.apply(&r.record.event),
                Delivery::Gap { from, to } => {
                    // A lagging watcher re-reads what it missed: a revocation is never skipped.
                    let missed = store.read(from..to).await;
                    streams.apply_missed(missed.as_deref().ok(), to.saturating_sub(from));
                    sub.resume_at(to);
                }
                Delivery::Closed => break,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_that_cannot_be_read_back_closes_every_stream() {
        let streams = Arc::new(Streams::default());
        let alice = Principal("alice@example.com".into());
        let a = streams
            .register(TokenId([1; 16]), &alice, Vec::new(), 4)
            .unwrap();
        // Read back whole, and nothing in it concerns the stream: it stays open.
        streams.apply_missed(Some(&[]), 0);
        assert!(!*a.cancel.borrow());
        // Short, or not at all: the stream is closed.
        streams.apply_missed(Some(&[]), 3);
        assert!(*a.cancel.borrow());
        let b = streams
            .register(TokenId([2; 16]), &alice, Vec::new(), 4)
            .unwrap();
        streams.apply_missed(None, 1);
        assert!(*b.cancel.borrow());
    }

    /// A revocation committed after the watcher was spawned, before its task first ran (the
    /// listeners already serving), still closes the streams it concerns.
    #[tokio::test(flavor = "current_thread")]
    async fn the_watcher_follows_the_log_from_its_spawn() {
        let dir = tempfile::tempdir().unwrap();
        crate::keys::Keys::init(dir.path(), "streams.test/log").unwrap();
        let (store, _) =
            crate::store::open(dir.path(), events::store::CheckpointPolicy::default()).unwrap();
        let store = Arc::new(store);
        let streams = Arc::new(Streams::default());
        let alice = Principal("alice@example.com".into());
        let before = store.head().size;
        let watcher = spawn_watcher(store.clone(), streams.clone());
        let a = streams
            .register(TokenId([1; 16]), &alice, Vec::new(), 4)
            .unwrap();
        let revoked = store.enqueue(vec![Event::TokenRevoked {
            token: TokenId([1; 16]),
            by: alice.clone(),
            reason: String::new(),
        }]);
        // Committed while this one-thread runtime is held, so the watcher's task has not run.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.head().size == before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(
            store.head().size,
            before + 1,
            "the revocation was not committed"
        );
        revoked.await.unwrap();
        let mut cancel = a.cancel.clone();
        tokio::time::timeout(std::time::Duration::from_secs(10), cancel.wait_for(|c| *c))
            .await
            .expect("the stream stayed open after its token was revoked")
            .unwrap();
        watcher.abort();
        store.shutdown();
    }

    #[test]
    fn streams_are_capped_per_owner_and_closed_by_revocations() {
        let streams = Arc::new(Streams::default());
        let alice = Principal("alice@example.com".into());
        let bob = Principal("bob@example.com".into());
        let a1 = streams
            .register(TokenId([1; 16]), &alice, Vec::new(), 2)
            .unwrap();
        let a2 = streams
            .register(TokenId([2; 16]), &alice, Vec::new(), 2)
            .unwrap();
        assert!(
            streams
                .register(TokenId([1; 16]), &alice, Vec::new(), 2)
                .is_none()
        );
        let b = streams
            .register(TokenId([3; 16]), &bob, Vec::new(), 2)
            .unwrap();
        streams.apply(&Event::TokenRevoked {
            token: TokenId([1; 16]),
            by: bob.clone(),
            reason: String::new(),
        });
        assert!(*a1.cancel.borrow());
        assert!(!*a2.cancel.borrow() && !*b.cancel.borrow());
        streams.apply(&Event::UserDisabled {
            user: alice.clone(),
            by: bob.clone(),
            reason: String::new(),
        });
        assert!(*a2.cancel.borrow() && !*b.cancel.borrow());
        drop(a1);
        drop(a2);
        assert_eq!(streams.len(), 1);
        assert!(
            streams
                .register(TokenId([1; 16]), &alice, Vec::new(), 2)
                .is_some()
        );
    }

    /// A stream of a token someone made for its owner closes when the maker is disabled or
    /// loses a role, as when the owner does; the maker's own streams are theirs.
    #[test]
    fn a_makers_change_closes_the_streams_of_tokens_they_made() {
        let streams = Arc::new(Streams::default());
        let admin = Principal("admin@example.com".into());
        let bot = Principal("ci-bot@example.com".into());
        let other = Principal("other@example.com".into());
        let made = streams
            .register(TokenId([1; 16]), &bot, vec![admin.clone()], 4)
            .unwrap();
        let own = streams
            .register(TokenId([2; 16]), &bot, Vec::new(), 4)
            .unwrap();
        streams.apply(&Event::RoleRevoked {
            user: other.clone(),
            role: events::event::Role::Admin,
            by: admin.clone(),
        });
        assert!(!*made.cancel.borrow(), "another person's change");
        streams.apply(&Event::RoleRevoked {
            user: admin.clone(),
            role: events::event::Role::Admin,
            by: other.clone(),
        });
        assert!(*made.cancel.borrow(), "the maker was demoted");
        assert!(!*own.cancel.borrow(), "the owner made this one");
        let again = streams
            .register(TokenId([1; 16]), &bot, vec![admin.clone()], 4)
            .unwrap();
        streams.apply(&Event::UserDisabled {
            user: admin.clone(),
            by: other.clone(),
            reason: String::new(),
        });
        assert!(*again.cancel.borrow(), "the maker was disabled");
        assert!(!*own.cancel.borrow());
    }
}
