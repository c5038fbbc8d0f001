//! A disk for tests: the store's files on redb's file backend, wrapped so that a test can count
//! the syncs and make every write and sync fail the way Linux answers on a full filesystem or
//! one remounted read-only, on both files or on the database file alone (the journal working),
//! or make syncs alone fail after their writes went through, as Linux reports a writeback error,
//! or hold every write until released, as a disk slow to answer.
//! Used by the store's own tests and the gateway's fail-closed tests.
//!
//! The disk also keeps what of each file is durable: the file as of its last successful sync.
//! A sync that answers EIO drops what was written since from that (Linux marks those pages
//! clean in the page cache though they never reached the disk, and a later sync does not write
//! them), and [`Disk::lose_unsynced`] turns each file into what is durable, as the page cache
//! dropping those pages, or a reboot, does.
//!
//! **Invariant:** reads always work, and nothing is changed while the disk works; the store's
//! reopen after a failed write goes through the same opener, so it sees the same disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::backends::FileBackend;
use redb::{DatabaseError, StorageBackend};

use super::redb::{
    Files, Opener, Rewrites, StoreFiles, files_with, journal_path, open_index, open_rw,
};

/// How the disk fails: as Linux answers a write on a full filesystem (ENOSPC), or on one
/// remounted read-only (EROFS, as ext4 does after an I/O error with `errors=remount-ro`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Full,
    ReadOnly,
}

/// The switch and the sync counter of a test disk; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    /// The OS error every write and sync answers; 0 while the disk works.
    errno: Arc<AtomicI32>,
    /// The same, for the database file only.
    index_errno: Arc<AtomicI32>,
    /// How many of the next syncs answer EIO although the writes before them went through.
    failing_syncs: Arc<AtomicU64>,
    /// The same, for the syncs of the database file that make a commit durable.
    failing_commit_syncs: Arc<AtomicU64>,
    /// The same, for the syncs of the database file after a rewrite before recovery.
    failing_rewrite_syncs: Arc<AtomicU64>,
    /// What of each file is durable, by path.
    images: Arc<Mutex<HashMap<PathBuf, Arc<Mutex<Image>>>>>,
    /// Whether a failing sync kills the disk: every write after it fails too.
    dies: Arc<AtomicBool>,
    /// Killed so: writes and length changes answer EIO.
    dead: Arc<AtomicBool>,
    syncs: Arc<AtomicU64>,
    /// Syncs answered EIO by [`Disk::fail_syncs`] or [`Disk::fail_commit_syncs`].
    failed_syncs: Arc<AtomicU64>,
    /// While set, the database file cannot grow: a write past its end, or a longer length,
    /// answers ENOSPC, and what is within it is written (a full disk, whose allocated blocks
    /// can still be written).
    index_full: Arc<AtomicBool>,
    /// While set, every write waits (a disk slow to answer), until it is cleared.
    hold: Arc<AtomicBool>,
    /// Writes waiting on `hold` now.
    held: Arc<AtomicU64>,
}

/// One file on the test disk.
#[derive(Debug)]
struct Backend {
    inner: FileBackend,
    disk: Disk,
    /// The database file (not the journal).
    index: bool,
    image: Arc<Mutex<Image>>,
}

/// What of one file is durable, and what was written to it since.
#[derive(Debug, Default)]
struct Image {
    durable: Vec<u8>,
    unsynced: Vec<Change>,
}

#[derive(Debug)]
enum Change {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

/// The store's files at `path` on a test disk.
struct OnTestDisk {
    path: PathBuf,
    disk: Disk,
    rewrites: Rewrites,
}

// === impl Disk ===

impl Disk {
    /// From now on, every write and sync fails this way (`Some`) or works (`None`).
    pub fn fail(&self, how: Option<Failure>) {
        self.errno.store(errno_of(how), Ordering::SeqCst);
    }

    /// From now on, writes and syncs of the database file alone fail this way (`Some`) or work
    /// (`None`); the journal is not affected.
    pub fn fail_index(&self, how: Option<Failure>) {
        self.index_errno.store(errno_of(how), Ordering::SeqCst);
    }

    /// The next `n` syncs, of either file, answer EIO; the writes before them went through (to
    /// the page cache, and so to the file as readers see it), as when Linux reports a writeback
    /// error at `fdatasync`.
    pub fn fail_syncs(&self, n: u64) {
        self.failing_syncs.store(n, Ordering::SeqCst);
    }

    /// Whether the next failing sync also kills the disk (`true`), so that every write after
    /// it fails as well, as a disk that has died does; `false` revives a dead one.
    pub fn dies_at_failed_sync(&self, dies: bool) {
        self.dies.store(dies, Ordering::SeqCst);
        if !dies {
            self.dead.store(false, Ordering::SeqCst);
        }
    }

    /// The next `n` syncs of the database file that would make a commit durable (redb wrote
    /// its header, at the file's start, since the last sync) answer EIO, as [`Disk::fail_syncs`]
    /// does; its other syncs (as the file grows) and the journal's work.
    pub fn fail_commit_syncs(&self, n: u64) {
        self.failing_commit_syncs.store(n, Ordering::SeqCst);
    }

    /// Turns every file opened on this disk into what of it is durable: what the last
    /// successful sync covered, without the writes a failed sync dropped. As the page cache
    /// dropping the pages a failed sync left clean, or a reboot, does. Only while no store has
    /// the files open.
    ///
    /// # Panics
    /// A file cannot be written.
    #[allow(clippy::panic)]
    pub fn lose_unsynced(&self) {
        for (path, image) in lock(&self.images).iter() {
            let mut image = lock(image);
            image.unsynced.clear();
            if let Err(e) = std::fs::write(path, &image.durable) {
                panic!("cannot write {}: {e}", path.display());
            }
        }
    }

    /// The next `n` syncs of the database file that follow a write of a whole MiB (as the
    /// rewrite before recovery writes it; redb writes pages) answer EIO, as [`Disk::fail_syncs`]
    /// does.
    pub fn fail_rewrite_syncs(&self, n: u64) {
        self.failing_rewrite_syncs.store(n, Ordering::SeqCst);
    }

    /// From now on (`true`), the database file cannot grow, as on a full disk: writes within
    /// its length work, writes past it and longer lengths answer ENOSPC; the journal is not
    /// affected.
    pub fn index_cannot_grow(&self, full: bool) {
        self.index_full.store(full, Ordering::SeqCst);
    }

    /// From now on, every write waits until this is called with `false`, as on a disk that is
    /// slow to answer: what the store does meanwhile can be seen and done.
    pub fn hold_writes(&self, hold: bool) {
        self.hold.store(hold, Ordering::SeqCst);
    }

    /// How many writes are waiting on [`Disk::hold_writes`] now.
    pub fn writes_held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }

    /// Syncs answered EIO so far by [`Disk::fail_syncs`] or [`Disk::fail_commit_syncs`].
    pub fn failed_syncs(&self) -> u64 {
        self.failed_syncs.load(Ordering::SeqCst)
    }

    /// Successful `sync_data` calls so far, over both files.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// Opens the store kept at `path` (and its journal) on this disk.
    pub fn opener(&self, path: &Path) -> Opener {
        Box::new(OnTestDisk {
            path: path.to_owned(),
            disk: self.clone(),
            rewrites: Rewrites::default(),
        })
    }

    /// The file at `path` on this disk; the first open takes what it holds as durable.
    fn backend(&self, path: &Path, index: bool) -> Result<Backend, DatabaseError> {
        let file = open_rw(path)?;
        let image = lock(&self.images)
            .entry(path.to_owned())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Image {
                    durable: std::fs::read(path).unwrap_or_default(),
                    unsynced: Vec::new(),
                }))
            })
            .clone();
        Ok(Backend {
            inner: FileBackend::new(file)?,
            disk: self.clone(),
            index,
            image,
        })
    }

    fn failure(&self, index: bool) -> Option<std::io::Error> {
        if self.dead.load(Ordering::SeqCst) {
            return Some(std::io::Error::from_raw_os_error(5)); // EIO
        }
        let index_errno = if index {
            self.index_errno.load(Ordering::SeqCst)
        } else {
            0
        };
        match self.errno.load(Ordering::SeqCst) {
            0 if index_errno == 0 => None,
            0 => Some(std::io::Error::from_raw_os_error(index_errno)),
            errno => Some(std::io::Error::from_raw_os_error(errno)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl OnTestDisk ===

impl StoreFiles for OnTestDisk {
    fn open(&self) -> Result<Files, DatabaseError> {
        let (path, disk) = (&self.path, &self.disk);
        let (db, rewritten) = open_index(|| disk.backend(path, true), &self.rewrites, path)?;
        let journal = disk.backend(&journal_path(path), false)?;
        Ok(files_with(db, rewritten, journal))
    }
}

// === impl Image ===

impl Image {
    /// A sync answered: what was written since is durable (`true`), or dropped (`false`).
    fn synced(&mut self, ok: bool) {
        for change in std::mem::take(&mut self.unsynced) {
            if !ok {
                continue;
            }
            match change {
                Change::Write(at, data) => {
                    let (at, end) = (at as usize, at as usize + data.len());
                    if self.durable.len() < end {
                        self.durable.resize(end, 0);
                    }
                    self.durable[at..end].copy_from_slice(&data);
                }
                Change::SetLen(len) => self.durable.resize(len as usize, 0),
            }
        }
    }
}

fn errno_of(how: Option<Failure>) -> i32 {
    match how {
        None => 0,
        Some(Failure::Full) => 28,     // ENOSPC
        Some(Failure::ReadOnly) => 30, // EROFS
    }
}

// === impl Backend ===

impl Backend {
    /// ENOSPC if the file would have to grow to `end` while it cannot
    /// ([`Disk::index_cannot_grow`]).
    fn grows_within(&self, end: u64) -> Result<(), std::io::Error> {
        if self.index && self.disk.index_full.load(Ordering::SeqCst) && end > self.inner.len()? {
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }
}

impl StorageBackend for Backend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if let Some(e) = self.disk.failure(self.index) {
            return Err(e);
        }
        self.grows_within(len)?;
        self.inner.set_len(len)?;
        lock(&self.image).unsynced.push(Change::SetLen(len));
        Ok(())
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        if let Some(e) = self.disk.failure(self.index) {
            return Err(e);
        }
        let take = |failing: &AtomicU64| {
            failing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        };
        let (commit, rewrite) = {
            let image = lock(&self.image);
            let written = |f: &dyn Fn(u64, usize) -> bool| {
                self.index
                    && image
                        .unsynced
                        .iter()
                        .any(|c| matches!(c, Change::Write(at, data) if f(*at, data.len())))
            };
            (written(&|at, _| at == 0), written(&|_, len| len >= 1 << 20))
        };
        if take(&self.disk.failing_syncs)
            || (rewrite && take(&self.disk.failing_rewrite_syncs))
            || (commit && take(&self.disk.failing_commit_syncs))
        {
            if self.disk.dies.load(Ordering::SeqCst) {
                self.disk.dead.store(true, Ordering::SeqCst);
            }
            lock(&self.image).synced(false);
            self.disk.failed_syncs.fetch_add(1, Ordering::SeqCst);
            return Err(std::io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync_data()?;
        lock(&self.image).synced(true);
        self.disk.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        if self.disk.hold.load(Ordering::SeqCst) {
            self.disk.held.fetch_add(1, Ordering::SeqCst);
            while self.disk.hold.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            self.disk.held.fetch_sub(1, Ordering::SeqCst);
        }
        if let Some(e) = self.disk.failure(self.index) {
            return Err(e);
        }
        self.grows_within(offset.saturating_add(data.len() as u64))?;
        self.inner.write(offset, data)?;
        lock(&self.image)
            .unsynced
            .push(Change::Write(offset, data.to_vec()));
        Ok(())
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
