//! A disk that can be told to fail: the store's file backends (database and journal) wrapped so that writes and syncs return
//! an I/O error while a switch is on (the pattern of `events/tests/redb_store.rs`), and a dev
//! gateway started on a store opened over it.
//!
//! **Invariant:** reads always work and nothing is lost while the switch is off; the store's
//! reopen after a failed commit goes through the same opener, so it sees the same switch.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use events::store::CheckpointPolicy;
use events::store::redb::{Options, RedbStore, journal_path, open_files_with, open_rw};
use projections::Projections;
use rack_gateway::keys::Keys;
use rack_gateway::server::dev::DEV_ORIGIN;
use redb::StorageBackend;
use redb::backends::FileBackend;

use crate::support::{TestGateway, log_path};

/// The switch of a failing disk: the OS error every write and sync answers, 0 while it works.
#[derive(Debug, Clone)]
pub struct Disk {
    fail: Arc<AtomicI32>,
}

/// How the disk fails: as Linux answers a write on a full filesystem, or on one remounted
/// read-only (as ext4 does after an I/O error with `errors=remount-ro`).
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    Full,
    ReadOnly,
}

#[derive(Debug)]
struct Failing {
    inner: FileBackend,
    fail: Arc<AtomicI32>,
}

// === impl Disk ===

impl Disk {
    /// From now on, every write and sync fails this way (`Some`) or works (`None`).
    pub fn fail(&self, how: Option<Failure>) {
        let errno = match how {
            None => 0,
            Some(Failure::Full) => 28,     // ENOSPC
            Some(Failure::ReadOnly) => 30, // EROFS
        };
        self.fail.store(errno, Ordering::SeqCst);
    }
}

// === impl Failing ===

impl Failing {
    /// The error of the failing disk, if it fails now.
    fn failure(&self) -> Option<std::io::Error> {
        match self.fail.load(Ordering::SeqCst) {
            0 => None,
            errno => Some(std::io::Error::from_raw_os_error(errno)),
        }
    }
}

impl StorageBackend for Failing {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        if let Some(e) = self.failure() {
            return Err(e);
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
    let fail = Arc::new(AtomicI32::new(0));
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
