//! A disk that can be told to fail: the store's file backends (database and journal) wrapped so that writes and syncs return
//! an I/O error while a switch is on (the pattern of `events/tests/redb_store.rs`), and a dev
//! gateway started on a store opened over it.
//!
//! **Invariant:** reads always work and nothing is lost while the switch is off; the store's
//! reopen after a failed commit goes through the same opener, so it sees the same switch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use events::store::CheckpointPolicy;
use events::store::redb::{Options, RedbStore, journal_path, open_files_with, open_rw};
use projections::Projections;
use rack_gateway::keys::Keys;
use rack_gateway::server::dev::DEV_ORIGIN;
use redb::StorageBackend;
use redb::backends::FileBackend;

use crate::support::{TestGateway, log_path};

/// The switch of a failing disk.
#[derive(Debug, Clone)]
pub struct Disk {
    fail: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Failing {
    inner: FileBackend,
    fail: Arc<AtomicBool>,
}

// === impl Disk ===

impl Disk {
    /// From now on, every write and sync fails (`true`) or works (`false`).
    pub fn fail(&self, on: bool) {
        self.fail.store(on, Ordering::SeqCst);
    }
}

// === impl Failing ===

impl StorageBackend for Failing {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected: no space left on device"));
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected sync failure"));
        }
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected write failure"));
        }
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }
}

/// A dev gateway whose store sits on a disk the test can make fail.
pub async fn gateway_on_failing_disk() -> (TestGateway, Disk) {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::init(dir.path(), DEV_ORIGIN).unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let path = log_path(dir.path());
    let switch = fail.clone();
    let store = RedbStore::open_with(
        Box::new(move || {
            let failing = |file| -> Result<Failing, redb::DatabaseError> {
                Ok(Failing {
                    inner: FileBackend::new(file)?,
                    fail: switch.clone(),
                })
            };
            open_files_with(
                failing(open_rw(&path)?)?,
                failing(open_rw(&journal_path(&path))?)?,
            )
        }),
        Options {
            origin: keys.checkpoint.name().to_owned(),
            signer: keys.checkpoint.clone(),
            policy: CheckpointPolicy::default(),
        },
        Projections::default(),
    )
    .unwrap();
    let gateway = TestGateway::start_on(dir, store, keys).await;
    (gateway, Disk { fail })
}
