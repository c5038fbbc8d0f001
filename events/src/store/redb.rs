//! The embedded store: one redb file with its journal, one sequencer thread, group commit.
//!
//! Appends go over a channel to the sequencer thread, which gathers every request waiting at that
//! moment into one batch. Background appends ([`RedbStore::enqueue`]: no one waits on them) go
//! into a queue of their own that does not wake the sequencer (only the first one after it fell
//! asleep holding none does); they join the next awaited append's batch, or are written on
//! their own after at most [`BACKGROUND_DELAY`].
//! The batch's records, and any checkpoint cut at this boundary, are
//! written to the journal and synced (the durability point, see [`super::journal`]), applied to
//! the projections, and only then are the appends resolved. redb indexes them, with the Merkle
//! nodes they complete, afterwards and in batches of its own: when appends pause for
//! `INDEX_IDLE` (2 ms), when [`INDEX_AT`] rows are pending, or when a reader asks for them (a
//! reader of records, proofs or checkpoints first waits until redb holds everything acknowledged
//! up to what it reads). Those commits are not synced, because the journal already holds what
//! they index; a synced redb commit (`Durability::Immediate`) indexes everything pending when the
//! journal is due to start over and on shutdown. So readers never see a record or a checkpoint
//! that is not durable, and an append waits for neither redb commit. A guarded entry that follows
//! other staged entries in the same batch first commits and applies them, so its guard sees every
//! earlier record.
//!
//! **Invariant:** the sequencer is the only writer. If a journal write fails, the sequencer's
//! view (size, last hash, frontier) is rolled back, the blocks the write covered are zeroed
//! through the open journal, and the files are reopened: redb returns to
//! its last synced commit, the journal's acknowledged records after it are indexed again, and
//! whatever of the failed write reached the file is dropped and the journal cleared (a failed
//! sync does not undo its write). Only then are its entries answered `Unavailable`; if the
//! reopen itself fails, they are answered all the same and the reopen is retried before the
//! next batch, still leaving the failed write out. The projections were never touched. A batch
//! whose journal write succeeded is answered and applied even if an index commit then fails:
//! the files are reopened (at once, or before the next batch) the same way, and the journal
//! holds the batch.
//!
//! **Invariant:** redb recovers its file only once what it reads is durable. A synced redb
//! commit whose sync fails may leave its pages in the page cache only, marked clean though never
//! written, and redb's recovery on the next open would commit over them (its repair writes a
//! synced header naming that commit), after which the journal, their only durable copy, starts
//! over. So a file that was not closed cleanly (a crash, or a write or sync that failed) is first
//! rewritten in place, every byte as it reads, and synced (see [`open_index`]). A commit whose
//! pages the cache had already dropped then fails redb's checksums, and redb falls back to the
//! commit before it (the store's synced commits are one-phase, with checksums), which the
//! journal continues.
//!
//! Layout of the file: `records` (seq of its first record → a group of consecutive rows, each a
//! record with the Merkle nodes its append completed; see [`super::rows`]), `checkpoints`
//! (number → signed note), `meta` (format version).

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use redb::backends::FileBackend;
use redb::{
    Database, DatabaseError, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, StorageBackend, TableDefinition,
};
use tokio::sync::{broadcast, oneshot};

use super::direct::DirectFile;
use super::journal::{CheckpointEntry, FailedWrite, Journal};
use super::rows::{self, Entry, GroupWriter};
use super::{
    AppendError, Appended, CheckpointPolicy, EventStore, Fold, Guard, Head, Rejected, StoreError,
    Subscription, io,
};
use crate::checkpoint::{self, Checkpoint, CheckpointError, NoteSigner, SignedCheckpoint};
use crate::event::Event;
use crate::hash::{self, Hash};
use crate::merkle::{self, Frontier, MerkleError, NodeReader};
use crate::record::{self, Record, StoredRecord};
use crate::seq::Seq;
use crate::time::{Clock, Timestamp};

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const CHECKPOINTS: TableDefinition<u64, &str> = TableDefinition::new("checkpoints");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Format 4 groups rows into entries; format 3 (one row per entry) is read the same way, and a
/// writer that opens it marks it 4, since what it appends is grouped.
const FORMAT_VERSION: u64 = 4;
const FORMAT_READ: [u64; 2] = [3, FORMAT_VERSION];
/// redb's page cache for the gateway's store: enough for the hot tail and the Merkle nodes
/// without growing with the log (redb's default is 1 GiB).
const WRITER_CACHE_BYTES: usize = 128 << 20;
/// The page cache of a sequential reader (export, verification): pages are read once.
const READER_CACHE_BYTES: usize = 32 << 20;
/// The most requests one transaction gathers; bounds a batch's latency and memory.
const MAX_BATCH: usize = 4096;
/// Acknowledged rows waiting for redb that make the sequencer index them even while appends
/// keep coming: bounds the pause one index commit adds to the batch behind it.
pub const INDEX_AT: usize = 128;
/// A pause in appends this long makes the sequencer index what is pending. Under a steady
/// stream of appends the queue is empty for a moment after nearly every batch; indexing there
/// cost one redb transaction (and its allocations) per batch, where waiting for a real pause or
/// for [`INDEX_AT`] rows costs one per 128 rows.
const INDEX_IDLE: Duration = Duration::from_millis(2);
/// The longest a background append (see [`RedbStore::enqueue`]) waits for an awaited one to
/// share its journal write. Under load one comes within microseconds; a quiet gateway writes
/// them on their own after this.
pub const BACKGROUND_DELAY: Duration = Duration::from_millis(2);
/// The most events kept to be written again after failed writes (see [`Sequencer::retry`]):
/// the completions of a few minutes of load. Past it an outage's newest are dropped, and said.
pub const MAX_RETRIED_EVENTS: usize = 65_536;
/// How long after a failed rewrite of the database file (see [`open_index`]) the next is tried,
/// at least: a rewrite that took longer holds the next back longer ([`rewrite_hold`]).
pub const REWRITE_RETRY: Duration = Duration::from_secs(1);
/// The longest a failed rewrite holds the next back, however long it took: how long appends
/// may still be refused after the disk has room again.
pub const MAX_REWRITE_HOLD: Duration = Duration::from_secs(60);

/// How long a rewrite of the database file that failed after `took` holds the next back: four
/// times as long, within [`REWRITE_RETRY`] and [`MAX_REWRITE_HOLD`]. A rewrite reads and writes
/// the whole file; on a full disk of a store of many gigabytes each takes seconds of the disk's
/// time, so retrying after a fixed second would keep the disk busy rewriting for as long as it
/// stays full. Held four times its length, rewriting takes at most a fifth of it, and a small
/// store is still tried again after a second.
pub fn rewrite_hold(took: Duration) -> Duration {
    took.saturating_mul(4)
        .clamp(REWRITE_RETRY, MAX_REWRITE_HOLD)
}
/// How long a reader waits for redb to index what it asked for.
const INDEX_WAIT: Duration = Duration::from_secs(30);

/// The embedded event store. Cheap to clone; every clone talks to the same sequencer.
pub struct RedbStore<S: Fold> {
    shared: Arc<Shared<S>>,
    tx: Mutex<Option<mpsc::Sender<Msg<S>>>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    recovered: Recovery,
}

/// What opening the store found in the journal besides the records it took back: what was
/// dropped, and why. Each is also said on stderr when found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Intact frames of a last batch a crash cut short (never acknowledged), dropped.
    pub dropped: usize,
    /// Intact frames of a write that had reported failure (its appends answered as failed),
    /// dropped.
    pub refused: usize,
    /// The byte where the journal breaks in its last batch: a frame that is not whole there (a
    /// crash during the last write, or damage to the last acknowledged batch), or intact frames
    /// of that batch after it ([`Recovery::dropped`]).
    pub cut_short_at: Option<u64>,
    /// Whether the database file had not been closed cleanly and was rewritten to make what it
    /// held durable before redb recovered it (see [`open_index`]).
    pub rewrote_index: bool,
}

/// What opening a store needs besides the state.
pub struct Options {
    /// The log's name: the checkpoint origin line and the first record's `origin`.
    pub origin: String,
    pub signer: NoteSigner,
    pub policy: CheckpointPolicy,
}

/// The two files of a store: the redb database and its journal.
pub struct Files {
    pub db: Database,
    pub journal: Box<dyn StorageBackend>,
    /// The journal again, for direct synchronous writes where the file system offers them
    /// (the store's own files; a test backend writes buffered, through `journal`).
    direct: Option<DirectFile>,
    /// Whether the database file was rewritten to make it durable before redb recovered it.
    pub rewritten: bool,
}

/// Where the store's files are, opened again after an I/O failure.
pub trait StoreFiles: Send + Sync {
    /// Opens (creating) the database, through [`open_index`], and its journal.
    fn open(&self) -> Result<Files, DatabaseError>;
}

/// The store's files, as the sequencer holds them.
pub type Opener = Box<dyn StoreFiles>;

/// The store's own files: the database at `path`, its journal beside it.
struct OnDisk {
    path: PathBuf,
    /// `<path>.lock`, locked while the sequencer runs: no other opener (another process, or
    /// another handle in this one) may open the store, and none may rewrite its file (see
    /// [`open_index`]) while this one recovers it. redb's own locks cover the database until
    /// it closes, after the sequencer.
    _lock: std::fs::File,
    rewrites: Rewrites,
}

/// When rewriting a database file that was not closed cleanly last failed, and why. The next try
/// waits [`rewrite_hold`] (a second at least): a store whose disk keeps failing would otherwise
/// read and write its whole file before every batch it refuses.
#[derive(Default)]
pub struct Rewrites(Mutex<Option<Held>>);

/// A failed attempt that holds the next back: until `at + hold`, the next fails with `why`.
struct Held {
    at: Instant,
    hold: Duration,
    why: String,
}

impl Held {
    /// A failure now of an attempt begun at `began`, held back by [`rewrite_hold`]; `why` is
    /// told when the next is tried.
    fn since(began: Instant, why: String) -> Held {
        let hold = rewrite_hold(began.elapsed());
        Held {
            at: Instant::now(),
            hold,
            why: format!("{why}; the store tries again after {} s", hold.as_secs()),
        }
    }

    /// Why the next attempt must fail now, while it is held back.
    fn holding(&self) -> Option<&str> {
        (self.at.elapsed() < self.hold).then_some(self.why.as_str())
    }
}

/// Reads a store's file without a sequencer: for export and the auditor's verifier. Opening
/// fails while a gateway holds the store open.
pub struct LogReader {
    db: ReadOnlyDatabase,
}

struct Shared<S> {
    state: RwLock<S>,
    head: RwLock<Head>,
    /// How far redb holds the log; readers wait on it.
    index: (Mutex<Indexed>, Condvar),
    db: RwLock<Option<Arc<Database>>>,
    records: broadcast::Sender<Arc<Vec<StoredRecord>>>,
    poisoned: RwLock<Option<String>>,
    background: Mutex<Background<S>>,
}

/// Background appends the sequencer has not taken yet. They do not go over its queue: each send
/// there wakes a sleeping sequencer (a `futex` call and two context switches), and under load
/// completions were most of the proxy workers' wake-ups, though none needs the sequencer before
/// the next awaited append or its [`BACKGROUND_DELAY`].
struct Background<S> {
    queue: Vec<Request<S>>,
    /// The sequencer sleeps holding no background append, without a deadline: the next one
    /// wakes it, once, so that append's delay can start.
    asleep: bool,
}

struct Request<S> {
    events: Vec<Event>,
    guard: Option<Guard<S>>,
    reply: Reply,
    /// What to append after these if they are written with nobody left to hear it (see
    /// [`RedbStore::append_heard`]).
    if_unheard: Option<FollowUp>,
}

impl<S> Request<S> {
    /// An unguarded append nobody waits for (its answer goes nowhere): what the sequencer
    /// writes again after a failed write, or a follow-up handed back by an unread answer.
    fn unheard(events: Vec<Event>) -> Request<S> {
        let (reply, _) = oneshot::channel();
        Request {
            events,
            guard: None,
            reply,
            if_unheard: None,
        }
    }
}

/// An append's answer. A written append's follow-up travels with it, so that exactly one side
/// holds it: the sequencer, when the answer finds its caller gone (the send hands it back), or
/// the caller's wait ([`Answer`]), which drops it once read, or, dropped holding an answer it
/// never read, hands it back to the sequencer.
type Answered = Result<(Appended, Option<FollowUp>), AppendError>;

/// Where an append's answer goes.
type Reply = oneshot::Sender<Answered>;

/// Events to append after an append whose caller went away before its answer: how the
/// caller's call ended, which nobody is left to record. Made when it is needed, so it can say
/// when that was.
pub type FollowUp = Box<dyn FnOnce() -> Vec<Event> + Send>;

/// What the sequencer's queue carries.
enum Msg<S> {
    /// An awaited append; background ones wait in [`Background`].
    Append(Request<S>),
    /// A reader waits for records redb does not hold yet: index what is pending now.
    Index,
    /// A background append came while the sequencer slept holding none (see [`Background`]).
    Wake,
}

/// Where redb's index stands, for readers.
#[derive(Default)]
struct Indexed {
    /// Every acknowledged record below this is in redb (and every checkpoint they end).
    size: u64,
    /// Why indexing stopped, until the files are reopened.
    error: Option<String>,
}

/// One acknowledged batch's records (shared with the subscribers) and their interior Merkle
/// nodes (see [`Staged::nodes`]).
type AckedBatch = (Arc<Vec<StoredRecord>>, Vec<Hash>);

/// Acknowledged batches that redb does not hold yet, oldest first. They are durable in the
/// journal; indexing them makes them readable.
#[derive(Default)]
struct Unindexed {
    batches: Vec<AckedBatch>,
    /// Checkpoints cut with those batches: number and signed note.
    checkpoints: Vec<(u64, String)>,
    rows: usize,
}

/// The sequencer's own view of the log; rolled back when a commit fails.
#[derive(Clone)]
struct View {
    size: u64,
    last_hash: Hash,
    last_time: Timestamp,
    frontier: Frontier,
    checkpoints: u64,
    cp_size: u64,
    cp_time: Timestamp,
}

struct Sequencer<S: Fold> {
    shared: Arc<Shared<S>>,
    opener: Opener,
    /// `None` only while the files are being reopened.
    journal: Option<Journal>,
    options: Options,
    view: View,
    clock: Clock,
    reopen: bool,
    /// The journal write that reported failure, until a reopen has erased what of it reached
    /// the disk: its appends were answered `Err`, so it must never be recovered into the log.
    failed: Option<FailedWrite>,
    /// Set on shutdown: cut a checkpoint for any records not yet covered.
    seal: bool,
    /// When the last reopen failed after rewriting the index, and why: the next is not tried
    /// for [`rewrite_hold`] of the time it took. A reopen after a failed commit finds the index
    /// not closed cleanly and rewrites all of it, which works on a full disk (its blocks exist);
    /// the replay's commit behind it then fails again. Tried for every batch, that would read, write and
    /// sync the whole file on this thread, each append's refusal waiting on it, as long as the
    /// disk stays full. (A reopen that fails before, in the opener, costs little and is tried
    /// again at once; a rewrite that fails is held back by the opener.)
    reopen_failed: Option<Held>,
    unindexed: Unindexed,
    /// Appends nobody waits for (a background append whose future was dropped: a completion,
    /// a stream's end) that a failed write could not take, oldest first: each goes at the head
    /// of the next batch, until a write takes it. Their senders answered no one, so "on `Err`
    /// nothing is in the log" told no one otherwise; dropping them would lose the end of a
    /// call that the log shows started, for an outage that passed.
    retry: Vec<Vec<Event>>,
    /// Events in `retry`, bounded by [`MAX_RETRIED_EVENTS`].
    retry_events: usize,
    /// Whether events were dropped for the bound since `retry` was last taken (said once).
    retry_full: bool,
}

/// Entries of one transaction being built.
#[derive(Default)]
struct Staged {
    records: Vec<StoredRecord>,
    /// The interior nodes each staged record's append completed (level 1 up), record after
    /// record: [`merkle::completed_nodes`]`(seq)` of them each. One vector per batch, not one
    /// per record.
    nodes: Vec<Hash>,
    replies: Vec<(Reply, Appended, Option<FollowUp>)>,
    /// The records of each unguarded append nobody waits for (its follow-up with it), as `seq`
    /// ranges: what a failed write of this batch keeps to retry, an append at a time (see
    /// [`Sequencer::retry`]).
    unanswered: Vec<Range<u64>>,
}

struct ReadNodes<T> {
    table: T,
}

/// Why a stored Merkle node could not be read; [`tree_error`] makes it the store's error.
#[derive(Debug, thiserror::Error)]
enum NodeReadError {
    /// The row of the node's last leaf is there but does not hold the node.
    #[error("Merkle node (level {level}, index {index}) is not stored in row {row}")]
    Missing { level: u8, index: u64, row: u64 },
    /// No tree of 2^64 leaves has this node.
    #[error("Merkle node (level {level}, index {index}) is past any tree")]
    OutOfRange { level: u8, index: u64 },
    /// The row itself could not be read (I/O, a malformed entry, no such row).
    #[error(transparent)]
    Row(StoreError),
}

// === impl View ===

impl View {
    fn head(&self) -> Head {
        Head {
            size: self.size,
            hash: self.last_hash,
            root: self.frontier.root(),
        }
    }
}

// === impl Shared ===

impl<S> Shared<S> {
    /// The open database; an error while the files are being reopened.
    fn db(&self) -> Result<Arc<Database>, String> {
        self.db
            .read()
            .map_err(|_| "store lock poisoned".to_owned())?
            .clone()
            .ok_or_else(|| "the database is closed (the store is reopening its files)".to_owned())
    }

    /// The background queue. A panic cannot leave it half-changed (a push, a flag, a move of
    /// the whole vector), so a poisoned lock is used as it is rather than losing the appends.
    fn background(&self) -> std::sync::MutexGuard<'_, Background<S>> {
        self.background
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// === impl RedbStore ===

impl<S: Fold> RedbStore<S> {
    /// Opens or creates the store file at `path`, catches `state` up to the head, and starts
    /// the sequencer. A new log gets `LogCreated` as record 0 and a first checkpoint.
    pub fn open(path: &Path, options: Options, state: S) -> Result<RedbStore<S>, StoreError> {
        let opener = Box::new(OnDisk::lock(path)?);
        RedbStore::open_with(opener, options, state)
    }

    /// As [`RedbStore::open`], with a custom way to open the database (a test backend).
    pub fn open_with(
        opener: Opener,
        options: Options,
        state: S,
    ) -> Result<RedbStore<S>, StoreError> {
        let files = opener.open().map_err(io)?;
        let rewrote_index = files.rewritten;
        init_tables(&files.db)?;
        let view = load_view(&files.db)?;
        let journal = Journal::open(files.journal, files.direct)?;
        let (records, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            head: RwLock::new(view.head()),
            index: (Mutex::new(Indexed::default()), Condvar::new()),
            db: RwLock::new(Some(Arc::new(files.db))),
            records,
            poisoned: RwLock::new(None),
            background: Mutex::new(Background {
                queue: Vec::new(),
                asleep: false,
            }),
        });
        let mut sequencer = Sequencer {
            shared: shared.clone(),
            opener,
            journal: Some(journal),
            options,
            view,
            clock: Clock,
            reopen: false,
            failed: None,
            seal: false,
            reopen_failed: None,
            unindexed: Unindexed::default(),
            retry: Vec::new(),
            retry_events: 0,
            retry_full: false,
        };
        sequencer.check_stored()?;
        let recovered = Recovery {
            rewrote_index,
            ..sequencer.replay_journal(None)?
        };
        catch_up(&shared, sequencer.view.size)?;
        sequencer.publish_head();
        sequencer.set_indexed(sequencer.view.size);
        if sequencer.view.size == 0 {
            sequencer.create_log()?;
        } else {
            sequencer.check_origin()?;
        }
        let (tx, rx) = mpsc::channel();
        let handle = thread::Builder::new()
            .name("rack-sequencer".into())
            .spawn(move || sequencer.run(rx))
            .map_err(|e| StoreError::Io(format!("cannot start the sequencer thread: {e}")))?;
        Ok(RedbStore {
            shared,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(handle)),
            recovered,
        })
    }

    /// What opening the store found in the journal and dropped.
    pub fn recovered(&self) -> Recovery {
        self.recovered
    }

    /// Stops accepting appends, lets the sequencer finish every request already sent, and
    /// waits for it. Appends after this answer `Unavailable`.
    pub fn shutdown(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// The raw stored bytes of `range`, for export and verification (no decoding).
    pub fn read_raw(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let db = self.wait_indexed(range.end)?;
        read_raw(&*db, range)
    }

    /// An inclusion proof for `seq` in the tree of `size` leaves, from the stored nodes.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let db = self.wait_indexed(size)?;
        let txn = db.begin_read().map_err(io)?;
        let table = txn.open_table(RECORDS).map_err(io)?;
        merkle::inclusion_proof(seq, size, &proof_nodes(table, size)?).map_err(tree_error)
    }

    /// A consistency proof between two sizes, from the stored nodes.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        let db = self.wait_indexed(new)?;
        let txn = db.begin_read().map_err(io)?;
        let table = txn.open_table(RECORDS).map_err(io)?;
        merkle::consistency_proof(old, new, &proof_nodes(table, new)?).map_err(tree_error)
    }

    /// Waits until redb holds every acknowledged record below `end` (at most the head), asking
    /// the sequencer to index now if it does not, and returns that database. It is taken under
    /// the index's lock, which a reopen holds while it lowers the size and swaps the database
    /// in: the database returned holds what the size said, never the shorter one a reopen
    /// brought back before its journal was replayed.
    fn wait_indexed(&self, end: u64) -> Result<Arc<Database>, StoreError> {
        let need = end.min(self.head().size);
        let (lock, cv) = &self.shared.index;
        let poisoned = || StoreError::Io("store lock poisoned".into());
        {
            let st = lock.lock().map_err(|_| poisoned())?;
            if st.size >= need {
                return self.db();
            }
        }
        if let Ok(tx) = self.tx.lock()
            && let Some(tx) = tx.as_ref()
        {
            // A stopped sequencer has indexed everything on its way out.
            let _ = tx.send(Msg::Index);
        }
        let st = lock.lock().map_err(|_| poisoned())?;
        let (st, _) = cv
            .wait_timeout_while(st, INDEX_WAIT, |st| st.size < need && st.error.is_none())
            .map_err(|_| poisoned())?;
        if st.size >= need {
            return self.db();
        }
        Err(StoreError::Io(format!(
            "the index holds {} of the {need} records asked for: {}",
            st.size,
            st.error.as_deref().unwrap_or("it did not catch up in time")
        )))
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.shared.db().map_err(StoreError::Io)
    }

    async fn send(
        &self,
        events: Vec<Event>,
        guard: Option<Guard<S>>,
        if_unheard: Option<FollowUp>,
    ) -> Result<Appended, AppendError> {
        let rx = self.submit(events, guard, false, if_unheard)?;
        Answer {
            rx: Some(rx),
            store: self,
        }
        .await
        .map_err(|_| AppendError::Unavailable("the sequencer dropped the append".into()))?
    }

    /// As [`EventStore::append_if`] (or [`EventStore::append`] without a guard), for an append
    /// whose caller may go away while it waits (a request handler whose client hangs up, or
    /// that a stop cuts short). Once handed over, the append is written whether or not anyone
    /// waits, so when it is written with nobody left to hear it, the sequencer appends what
    /// `if_unheard` makes right after it, in its next batch: the end of a call the log shows
    /// started. Not when the append fails or its guard refuses it: then nothing started.
    pub async fn append_heard(
        &self,
        events: Vec<Event>,
        guard: Option<Guard<S>>,
        if_unheard: FollowUp,
    ) -> Result<Appended, AppendError> {
        self.send(events, guard, Some(if_unheard)).await
    }

    /// Hands `events` to the sequencer now and returns the wait for their durability. Unlike
    /// `append`, whose request leaves only when first polled, what is enqueued here is sequenced
    /// even if a shutdown follows at once (the sequencer drains its queue before it stops), so
    /// a record written after an answer has gone (a completion) is not lost to a stop.
    ///
    /// It is a background append: it does not start a journal write of its own but joins the
    /// next awaited append's (behind those enqueued before it), or is written after
    /// [`BACKGROUND_DELAY`] if none comes. A batch of completions alone would cost a disk write
    /// that the next request's intent then queues behind; under load about a quarter of the
    /// batches were such. Nor does it wake the sequencer, except the first after the sequencer
    /// fell asleep holding none (see `Background`).
    ///
    /// Dropping the returned future says nobody waits: then a write that fails to take it does
    /// not lose it, and a later batch (the next append's, the idle tick's, or the shutdown's) writes
    /// it, up to [`MAX_RETRIED_EVENTS`] kept over an outage.
    pub fn enqueue(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Appended, AppendError>> + Send + 'static {
        let rx = self.submit(events, None, true, None);
        async move {
            let (appended, _) = rx?.await.map_err(|_| {
                AppendError::Unavailable("the sequencer dropped the append".into())
            })??;
            Ok(appended)
        }
    }

    fn submit(
        &self,
        events: Vec<Event>,
        guard: Option<Guard<S>>,
        background: bool,
        if_unheard: Option<FollowUp>,
    ) -> Result<oneshot::Receiver<Answered>, AppendError> {
        if events.is_empty() {
            return Err(AppendError::Empty);
        }
        let (reply, rx) = oneshot::channel();
        let tx = self
            .tx
            .lock()
            .map_err(|_| AppendError::Unavailable("store lock poisoned".into()))?;
        let Some(tx) = tx.as_ref() else {
            return Err(AppendError::Unavailable("the store is shut down".into()));
        };
        let stopped = |_| AppendError::Unavailable("the sequencer has stopped".into());
        let request = Request {
            events,
            guard,
            reply,
            if_unheard,
        };
        if !background {
            tx.send(Msg::Append(request)).map_err(stopped)?;
            return Ok(rx);
        }
        self.push_background(tx, request).map_err(stopped)?;
        Ok(rx)
    }

    /// Queues a background append, waking the sequencer if it sleeps holding none. Called
    /// while `tx` is held: a shutdown, which takes `tx` first, finds it queued.
    fn push_background(
        &self,
        tx: &mpsc::Sender<Msg<S>>,
        request: Request<S>,
    ) -> Result<(), mpsc::SendError<Msg<S>>> {
        let wake = {
            let mut bg = self.shared.background();
            bg.queue.push(request);
            std::mem::take(&mut bg.asleep)
        };
        if wake {
            tx.send(Msg::Wake)?;
        }
        Ok(())
    }
}

/// The wait for an append's answer. Dropped holding an answer it never read that carries a
/// follow-up (its caller was dropped between the answer and its next look), it hands the
/// follow-up to the sequencer as a background append.
struct Answer<'a, S: Fold> {
    /// `None` once read.
    rx: Option<oneshot::Receiver<Answered>>,
    store: &'a RedbStore<S>,
}

impl<S: Fold> Future for Answer<'_, S> {
    type Output = Result<Result<Appended, AppendError>, oneshot::error::RecvError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let Some(rx) = self.rx.as_mut() else {
            // Read already; never polled again by an `.await`.
            return std::task::Poll::Pending;
        };
        let answer = std::task::ready!(std::pin::Pin::new(rx).poll(cx));
        // Read: whoever waited has heard it, and its follow-up is not needed.
        self.rx = None;
        std::task::Poll::Ready(answer.map(|a| a.map(|(appended, _)| appended)))
    }
}

impl<S: Fold> Drop for Answer<'_, S> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        // After this no answer can come: it is here, or the sequencer finds nobody.
        rx.close();
        let Ok(Ok((_, Some(make)))) = rx.try_recv() else {
            return;
        };
        let request = Request::unheard(make());
        let queued = match self.store.tx.lock() {
            Ok(tx) => tx
                .as_ref()
                .is_some_and(|tx| self.store.push_background(tx, request).is_ok()),
            Err(_) => false,
        };
        if !queued {
            eprintln!(
                "rack-gateway: the event store had stopped when a call's end came to be \
                 recorded; the log shows that call started, without its end"
            );
        }
    }
}

impl<S: Fold> Drop for RedbStore<S> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<S: Fold> EventStore<S> for RedbStore<S> {
    async fn append(&self, events: Vec<Event>) -> Result<Appended, AppendError> {
        self.send(events, None, None).await
    }

    async fn append_if(
        &self,
        events: Vec<Event>,
        guard: Guard<S>,
    ) -> Result<Appended, AppendError> {
        self.send(events, Some(guard), None).await
    }

    async fn read(&self, range: Range<u64>) -> Result<Vec<StoredRecord>, StoreError> {
        self.read_raw(range)?
            .into_iter()
            .map(|(seq, bytes)| decode_stored(seq, &bytes))
            .collect()
    }

    fn head(&self) -> Head {
        self.shared.head.read().map(|h| *h).unwrap_or(Head {
            size: 0,
            hash: hash::ZERO,
            root: hash::ZERO,
        })
    }

    async fn checkpoints(&self, range: Range<u64>) -> Result<Vec<SignedCheckpoint>, StoreError> {
        // A checkpoint is indexed with the batch it ends.
        let db = self.wait_indexed(u64::MAX)?;
        read_checkpoints(&*db, range)
    }

    fn with_state<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        match self.shared.state.read() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn subscribe(&self) -> Subscription {
        let rx = self.shared.records.subscribe();
        Subscription {
            next: self.head().size,
            rx,
            buffered: VecDeque::new(),
        }
    }
}

// === impl LogReader ===

impl LogReader {
    /// Opens `path` read-only. Fails if the file is not a store or a writer holds it.
    pub fn open(path: &Path) -> Result<LogReader, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(READER_CACHE_BYTES)
            .open_read_only(path)
            .map_err(|e| match e {
                DatabaseError::RepairAborted => StoreError::Io(format!(
                    "{}: the store was not closed cleanly and a reader does not repair it; \
                     start the gateway on it once (its recovery is a normal open), then read it",
                    path.display()
                )),
                DatabaseError::DatabaseAlreadyOpen => StoreError::Io(format!(
                    "{}: a running gateway holds this store; stop it first or read an export",
                    path.display()
                )),
                e => io(e),
            })?;
        let reader = LogReader { db };
        reader.check_format()?;
        reader.check_journal(path)?;
        Ok(reader)
    }

    /// Refuses a store whose rows this build would misread.
    fn check_format(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let meta = txn.open_table(META).map_err(io)?;
        match meta.get("format").map_err(io)? {
            Some(v) => check_format(v.value()),
            None => Err(StoreError::Incompatible(
                "the store names no format version".into(),
            )),
        }
    }

    /// Refuses a store whose journal holds records redb has not indexed durably (a gateway
    /// that stopped without its final commit): reading only redb would silently omit them.
    fn check_journal(&self, path: &Path) -> Result<(), StoreError> {
        let jpath = journal_path(path);
        let file = match std::fs::File::open(&jpath) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::Io(format!("{}: {e}", jpath.display()))),
        };
        let journal = Journal::open(Box::new(FileBackend::new(file).map_err(io)?), None)?;
        let size = self.len()?;
        let last = match self.read_raw(size.saturating_sub(1)..size)?.first() {
            Some((_, bytes)) => hash::leaf_hash(bytes),
            None => hash::ZERO,
        };
        let checkpoints = self.checkpoint_count()?;
        let pending = journal.recover(size, last, checkpoints, None)?;
        if pending.is_empty() {
            return Ok(());
        }
        Err(StoreError::Io(format!(
            "{}: {} records (from seq {size}) and {} checkpoints (from number {checkpoints}) are \
             in the journal but not yet indexed; start the gateway on it once (its recovery is a \
             normal open), then read it",
            path.display(),
            pending.records.len(),
            pending.checkpoints.len()
        )))
    }

    /// Number of checkpoints.
    fn checkpoint_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(CHECKPOINTS).map_err(io)?;
        table.len().map_err(io)
    }

    /// Number of records.
    pub fn len(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(RECORDS).map_err(io)?;
        rows::size(&table)
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Calls `f` with each stored record in `range`, in order, without copying them all.
    pub fn for_each_raw(
        &self,
        range: Range<u64>,
        f: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(RECORDS).map_err(io)?;
        rows::for_each_record(&table, range, f)
    }

    pub fn read_raw(&self, range: Range<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        read_raw(&self.db, range)
    }

    /// Every checkpoint in the order it was cut.
    pub fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, StoreError> {
        read_checkpoints(&self.db, 0..u64::MAX)
    }

    /// Every checkpoint's note as stored, with its number, in the order cut, none of them
    /// parsed: the verifier judges each (a damaged note, or a number missing between two, is
    /// an integrity failure it names, not an unreadable store).
    pub fn checkpoint_notes(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(CHECKPOINTS).map_err(io)?;
        let mut out = Vec::new();
        for item in table.range(0..u64::MAX).map_err(io)? {
            let (number, note) = item.map_err(io)?;
            out.push((number.value(), note.value().to_owned()));
        }
        Ok(out)
    }

    /// An inclusion proof for `seq` in the tree of `size` leaves, from the stored nodes.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(RECORDS).map_err(io)?;
        merkle::inclusion_proof(seq, size, &proof_nodes(table, size)?).map_err(tree_error)
    }

    /// A consistency proof between two sizes, from the stored nodes.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let table = txn.open_table(RECORDS).map_err(io)?;
        merkle::consistency_proof(old, new, &proof_nodes(table, new)?).map_err(tree_error)
    }
}

// === impl Sequencer ===

impl<S: Fold> Sequencer<S> {
    /// Moves the background appends submitted so far behind `waiting`, starting their delay
    /// (`until`) if `waiting` held none.
    fn take_background(&self, waiting: &mut Vec<Request<S>>, until: &mut Instant) {
        let mut bg = self.shared.background();
        if bg.queue.is_empty() {
            return;
        }
        if waiting.is_empty() {
            *until = Instant::now() + BACKGROUND_DELAY;
        }
        waiting.append(&mut bg.queue);
    }

    /// Marks the sequencer asleep, so the next background append wakes it; false if one came
    /// since it last looked (it must be taken, not slept on).
    fn fall_asleep(&self) -> bool {
        let mut bg = self.shared.background();
        bg.asleep = bg.queue.is_empty();
        bg.asleep
    }

    fn wake_up(&self) {
        self.shared.background().asleep = false;
    }

    fn run(mut self, rx: mpsc::Receiver<Msg<S>>) {
        let tick = self
            .options
            .policy
            .after
            .min(self.options.policy.heartbeat)
            .div_f64(4.0)
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        // Background appends waiting for an awaited one, in queue order, and until when.
        let mut waiting: Vec<Request<S>> = Vec::new();
        let mut waiting_until = Instant::now();
        loop {
            self.take_background(&mut waiting, &mut waiting_until);
            let first = if !waiting.is_empty() {
                match rx.recv_timeout(waiting_until.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    // No awaited append came: the background ones are written on their own.
                    Err(RecvTimeoutError::Timeout) => {
                        self.take_background(&mut waiting, &mut waiting_until);
                        self.process(std::mem::take(&mut waiting));
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else if !self.fall_asleep() {
                // A background append came since the look above: take it first.
                continue;
            } else {
                let idle = if self.unindexed.is_empty() {
                    tick
                } else {
                    INDEX_IDLE
                };
                let received = rx.recv_timeout(idle);
                self.wake_up();
                match received {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) if self.unindexed.is_empty() => None,
                    // Appends have paused: a good moment to index.
                    Err(RecvTimeoutError::Timeout) => {
                        self.index();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            let mut batch = std::mem::take(&mut waiting);
            // A background append enqueued before `first` was sent goes before it.
            self.take_background(&mut batch, &mut waiting_until);
            let mut awaited = first.is_none();
            let mut index_now = false;
            let mut next = first;
            while let Some(m) = next.take() {
                match m {
                    Msg::Append(r) => {
                        awaited = true;
                        batch.push(r);
                    }
                    Msg::Index => index_now = true,
                    // It only woke the sequencer: the append is in the background queue.
                    Msg::Wake => {}
                }
                if batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if awaited || batch.len() >= MAX_BATCH {
                // What came in the background meanwhile shares this write.
                self.take_background(&mut batch, &mut waiting_until);
                self.process(batch);
            } else {
                waiting = batch;
            }
            if index_now || self.unindexed.rows >= INDEX_AT {
                self.index();
            }
        }
        // Shutting down: what is queued, and what failed writes left, is written first; then
        // the follow-ups of appends whose callers went away while that was written.
        self.take_background(&mut waiting, &mut waiting_until);
        for _ in 0..2 {
            if waiting.is_empty() && self.retry.is_empty() {
                break;
            }
            self.process(std::mem::take(&mut waiting));
        }
        if !self.retry.is_empty() {
            eprintln!(
                "rack-gateway: the event store stopped with {} events it could not write \
                 (completions and stream ends of calls the log shows started)",
                self.retry_events
            );
        }
        // Seal what is not yet covered by a checkpoint, and leave redb holding everything
        // durably, so a reader needs no journal.
        let ready = self.ready();
        if let Err(e) = &ready {
            eprintln!(
                "rack-gateway: the event store stopped without its closing checkpoint and sync \
                 ({e}); the journal keeps the records and the next open indexes them"
            );
        }
        if ready.is_ok() {
            self.seal = true;
            if self.view.size > self.view.cp_size {
                self.commit(Staged::default(), true);
            }
            if let Err(e) = self.flush() {
                eprintln!(
                    "rack-gateway: the event store's index was not synced on shutdown ({e}); \
                     the journal keeps the records and the next open indexes them"
                );
                // A reader still waiting would otherwise wait out its timeout.
                self.set_index_error(format!("the store stopped without indexing: {e}"));
            }
        }
    }

    /// Sequences one batch: guards in order, one commit for everything unguarded. What failed
    /// writes left to retry goes first.
    fn process(&mut self, mut batch: Vec<Request<S>>) {
        if !self.retry.is_empty() {
            self.retry_events = 0;
            self.retry_full = false;
            let retried = std::mem::take(&mut self.retry)
                .into_iter()
                .map(Request::unheard);
            batch.splice(0..0, retried);
        }
        if let Err(e) = self.ready() {
            for r in batch {
                let unavailable = AppendError::Unavailable(e.clone());
                self.refuse(r, unavailable);
            }
            return;
        }
        let events = batch.iter().map(|r| r.events.len()).sum();
        let mut staged = Staged {
            records: Vec::with_capacity(events),
            nodes: Vec::with_capacity(events),
            replies: Vec::with_capacity(batch.len()),
            unanswered: Vec::new(),
        };
        let failed = || AppendError::Unavailable("the event store failed to commit".into());
        for req in batch {
            if self.reopen {
                // A commit of this batch failed: the view is stale until the store is reopened.
                self.refuse(req, failed());
                continue;
            }
            let Request {
                events,
                guard,
                reply,
                if_unheard,
            } = req;
            let guarded = guard.is_some();
            if let Some(guard) = guard {
                // A guard sees every earlier record: commit what is staged before evaluating it.
                if !staged.records.is_empty() {
                    self.commit(std::mem::take(&mut staged), false);
                    if self.reopen {
                        // Guarded: answered, never kept for a retry.
                        let _ = reply.send(Err(failed()));
                        continue;
                    }
                }
                let verdict = match self.shared.state.read() {
                    Ok(state) => guard(&state),
                    Err(_) => Err(Rejected("state lock poisoned")),
                };
                if let Err(rejected) = verdict {
                    let _ = reply.send(Err(AppendError::Rejected(rejected)));
                    continue;
                }
            }
            self.stage(&mut staged, events, reply, guarded, if_unheard);
        }
        if !self.reopen {
            self.commit(staged, true);
        }
    }

    /// Answers an append that cannot be written now: its caller gets `why`, or, when nobody
    /// waits for it and no guard decides it, it is kept, with its follow-up, to be written with
    /// a later batch (a guard holds at one moment of the log; retried later, it would not have
    /// been asked).
    fn refuse(&mut self, req: Request<S>, why: AppendError) {
        if req.reply.is_closed() && req.guard.is_none() {
            let mut events = req.events;
            if let Some(make) = req.if_unheard {
                events.extend(make());
            }
            self.keep_for_retry(events);
        } else {
            let _ = req.reply.send(Err(why));
        }
    }

    /// Keeps `events` of an append nobody waits for, to be written with a later batch, unless
    /// [`MAX_RETRIED_EVENTS`] are kept already.
    fn keep_for_retry(&mut self, events: Vec<Event>) {
        if self.retry_events + events.len() > MAX_RETRIED_EVENTS {
            if !self.retry_full {
                eprintln!(
                    "rack-gateway: the event store has kept {} events since its writes began to \
                     fail; later ones nobody waits for (completions, stream ends) are dropped",
                    self.retry_events
                );
                self.retry_full = true;
            }
            return;
        }
        self.retry_events += events.len();
        self.retry.push(events);
    }

    fn stage(
        &mut self,
        staged: &mut Staged,
        events: Vec<Event>,
        reply: Reply,
        guarded: bool,
        if_unheard: Option<FollowUp>,
    ) {
        let now = self.clock.now().max(self.view.last_time);
        let first = Seq(self.view.size);
        // No answer is built for an append no one waits for (a dropped background append).
        let answer = !reply.is_closed();
        let mut hashes = Vec::with_capacity(if answer { events.len() } else { 0 });
        // Nobody is left to hear this one: its follow-up goes right after it, and shares its
        // fate (kept for a retry, or not, as the append itself is).
        let (follow_up, if_unheard) = match if_unheard {
            Some(make) if !answer => (make(), None),
            kept => (Vec::new(), kept),
        };
        for event in events.into_iter().chain(follow_up) {
            let record = Record {
                seq: Seq(self.view.size),
                time: now,
                prev: self.view.last_hash,
                event,
            };
            let stored = record.seal();
            if answer {
                hashes.push(stored.hash);
            }
            self.push(staged, stored);
        }
        if !answer && !guarded {
            staged.unanswered.push(first.0..self.view.size);
        }
        if answer {
            staged
                .replies
                .push((reply, Appended { first, hashes }, if_unheard));
        }
    }

    /// Adds a sealed record to the view and to `staged`, with the Merkle nodes it completes.
    fn push(&mut self, staged: &mut Staged, stored: StoredRecord) {
        let nodes = &mut staged.nodes;
        self.view.frontier.push_each(stored.hash, |level, _, h| {
            if level > 0 {
                nodes.push(h);
            }
        });
        self.view.size += 1;
        self.view.last_hash = stored.hash;
        self.view.last_time = self.view.last_time.max(stored.record.time);
        staged.records.push(stored);
    }

    /// Indexes the journal's records and checkpoints after redb's synced state in one synced
    /// commit, then lets the journal start over. Runs on open and on every reopen, before the
    /// state catches up. A journaled checkpoint must be signed by this store's key and sign the
    /// root the recovered records give at its size.
    fn replay_journal(&mut self, acknowledged: Option<u64>) -> Result<Recovery, StoreError> {
        let journal = self
            .journal
            .as_mut()
            .ok_or_else(|| StoreError::Io("the journal is closed".into()))?;
        let pending = journal.recover(
            self.view.size,
            self.view.last_hash,
            self.view.checkpoints,
            self.failed,
        )?;
        // A reopen in a running store knows what it acknowledged. Recovery drops the tail of
        // a batch a crash cut short, which after a crash was never acknowledged; here, a frame
        // that reads as damaged would take acknowledged records with it, and the journal, their
        // only durable copy, would then be cleared. Refused instead, the journal untouched.
        let reaches = self.view.size + pending.records.len() as u64;
        if let Some(acked) = acknowledged
            && reaches < acked
        {
            return Err(StoreError::Corrupt {
                seq: Seq(reaches),
                what: format!(
                    "the journal no longer gives acknowledged records {reaches}..{acked} (it was \
                     damaged since they were written); it is left as it is"
                ),
            });
        }
        // Whatever was waiting for the index is among the journal's frames.
        self.unindexed = Unindexed::default();
        if !pending.is_empty() {
            let mut staged = Staged::default();
            let mut records = pending.records.into_iter();
            for cp in &pending.checkpoints {
                while self.view.size < cp.checkpoint.size {
                    let Some(stored) = records.next() else { break };
                    self.push(&mut staged, stored);
                }
                self.check_journaled(cp)?;
            }
            for stored in records {
                self.push(&mut staged, stored);
            }
            let entries: Vec<CheckpointEntry<'_>> = pending
                .checkpoints
                .iter()
                .map(|cp| CheckpointEntry {
                    number: cp.number,
                    note: &cp.note,
                })
                .collect();
            let db = self.db().map_err(StoreError::Io)?;
            write_index(&db, &Unindexed::default(), &staged, &entries, true)
                .map_err(StoreError::Io)?;
            if let Some(cp) = pending.checkpoints.last() {
                self.view.checkpoints = cp.number + 1;
                self.view.cp_size = cp.checkpoint.size;
                self.view.cp_time = cp.checkpoint.time;
            }
        }
        if let Some(j) = self.journal.as_mut() {
            if pending.found.refused > 0 {
                eprintln!(
                    "rack-gateway: the event store's journal holds {} entries of a write that \
                     reported failure; its appends were answered as failed, so they are dropped",
                    pending.found.refused
                );
                j.clear()
                    .map_err(|e| StoreError::Io(format!("cannot clear the journal: {e}")))?;
            } else if pending.found.dropped > 0 {
                // Those frames must not outlive this pass: a later recovery would take them
                // for its own.
                eprintln!(
                    "rack-gateway: the event store's journal ended in a batch a crash cut short, \
                     broken at byte {}; {} of its entries after the break reached the disk and \
                     are dropped (it was never acknowledged); the log goes on from seq {}",
                    pending.found.cut_short_at.unwrap_or_default(),
                    pending.found.dropped,
                    self.view.size
                );
                j.clear()
                    .map_err(|e| StoreError::Io(format!("cannot clear the journal: {e}")))?;
            } else {
                if let Some(at) = pending.found.cut_short_at {
                    eprintln!(
                        "rack-gateway: the event store's journal ends at byte {at} in a frame that \
                         is not whole, dropped: the last write was cut short by a crash during \
                         it (its appends were never acknowledged), or, if the host did not \
                         crash, the disk damaged it; the log goes on from seq {}",
                        self.view.size
                    );
                }
                j.restart()
                    .map_err(|e| StoreError::Io(format!("cannot restart the journal: {e}")))?;
            }
        }
        Ok(pending.found)
    }

    /// Refuses a journaled checkpoint this store did not sign, or one that does not sign the
    /// tree the records before it give (the view is at its size).
    fn check_journaled(&self, cp: &super::journal::JournaledCheckpoint) -> Result<(), StoreError> {
        let at = Seq(cp.checkpoint.size);
        let verified = checkpoint::open_checkpoint(
            cp.note.as_bytes(),
            &self.options.origin,
            &self.options.signer.verifier(),
        )
        .map_err(|e| match e {
            // The log's first checkpoint, signed by another key altogether: no checkpoint has
            // verified under this key, so it is the keys that are not this log's (made anew,
            // another log's), as `check_signer` says of an indexed checkpoint.
            CheckpointError::NoMatchingSignature { .. } if cp.number == 0 => {
                StoreError::Incompatible(format!(
                    "the log's first checkpoint, in its journal, is not signed by this key ({}): \
                     the keys are not this log's; restore the log's own keys",
                    self.options.signer.verifier()
                ))
            }
            CheckpointError::OriginMismatch { expected, found } => StoreError::Incompatible(
                format!("the log's origin is {found:?}, the configuration says {expected:?}"),
            ),
            e => StoreError::Corrupt {
                seq: at,
                what: format!("journaled checkpoint {} does not verify: {e}", cp.number),
            },
        })?;
        if self.view.size != verified.size || self.view.frontier.root() != verified.root {
            return Err(StoreError::Corrupt {
                seq: at,
                what: format!(
                    "journaled checkpoint {} signs a tree of {} records that the journaled \
                     records do not give",
                    cp.number, verified.size
                ),
            });
        }
        Ok(())
    }

    /// Writes staged records and `checkpoint` to the journal and syncs them: after this they
    /// are durable.
    fn journal_append(
        &mut self,
        staged: &Staged,
        checkpoint: Option<CheckpointEntry<'_>>,
    ) -> Result<(), String> {
        self.journal
            .as_mut()
            .ok_or_else(|| "the journal is closed".to_owned())?
            .append(&staged.records, checkpoint)
            .map_err(|e| format!("the journal: {e}"))
    }

    /// A synced redb commit if the journal holds anything redb has not synced, then lets the
    /// journal start over.
    fn flush(&mut self) -> Result<(), String> {
        if !self.journal.as_ref().is_some_and(Journal::holds_frames) {
            return Ok(());
        }
        write_index(&*self.db()?, &self.unindexed, &Staged::default(), &[], true)?;
        self.unindexed = Unindexed::default();
        self.set_indexed(self.view.size);
        self.restart_journal();
        Ok(())
    }

    /// Lets the journal start over once a synced redb commit holds everything in it. If its
    /// first block cannot be zeroed (it may be half zeroed), the store reopens, as after a
    /// failed commit: the reopen, or the next open after a stop, reads the journal again, finds
    /// it all indexed, and starts it over.
    fn restart_journal(&mut self) {
        if let Some(Err(e)) = self.journal.as_mut().map(Journal::restart) {
            eprintln!(
                "rack-gateway: the event store's journal could not start over ({e}); everything \
                 in it is indexed, and the store reopens it"
            );
            self.reopen = true;
        }
    }

    /// Indexes the pending acknowledged batches in one unsynced redb commit. On failure the
    /// files are reopened now, which indexes them from the journal.
    fn index(&mut self) {
        if self.unindexed.is_empty() {
            return;
        }
        let written = if self.reopen {
            Err("a commit failed and the files are to be reopened".to_owned())
        } else {
            self.db()
                .and_then(|db| write_index(&db, &self.unindexed, &Staged::default(), &[], false))
        };
        // Indexed now, or by the reopen below (or the next one) from the journal.
        self.unindexed = Unindexed::default();
        match written {
            Ok(()) => self.set_indexed(self.view.size),
            Err(e) => {
                self.reopen = true;
                if let Err(why) = self.ready() {
                    self.set_index_error(format!("indexing failed ({e}) and {why}"));
                }
            }
        }
    }

    /// Tells readers that redb holds the log up to `size`.
    fn set_indexed(&self, size: u64) {
        let (lock, cv) = &self.shared.index;
        if let Ok(mut st) = lock.lock() {
            st.size = size;
            st.error = None;
            cv.notify_all();
        }
    }

    fn set_index_error(&self, why: String) {
        let (lock, cv) = &self.shared.index;
        if let Ok(mut st) = lock.lock() {
            st.error.get_or_insert(why);
            cv.notify_all();
        }
    }

    fn db(&self) -> Result<Arc<Database>, String> {
        self.shared.db()
    }

    /// Commits staged entries (and a checkpoint if one is due), then applies and answers them.
    fn commit(&mut self, mut staged: Staged, may_checkpoint: bool) {
        let now = self.clock.now().max(self.view.last_time);
        let checkpoint = if may_checkpoint || !staged.records.is_empty() {
            self.due_checkpoint(now)
        } else {
            None
        };
        if staged.records.is_empty() && checkpoint.is_none() {
            return;
        }
        let before = self.rollback_point(&staged);
        let durable = self.seal || self.journal.as_ref().is_none_or(Journal::needs_flush);
        let entry = checkpoint.as_ref().map(|cp| CheckpointEntry {
            number: self.view.checkpoints,
            note: &cp.note,
        });
        if let Err(e) = self.journal_append(&staged, entry) {
            self.failed.get_or_insert(FailedWrite {
                seq: before.size,
                checkpoint: before.checkpoints,
            });
            self.view = before;
            self.reopen = true;
            // Erase what of the write reached the disk before it is answered as failed: through
            // the open journal first, so that a later open that knows nothing of the failure
            // (the process stopped before a reopen could work) does not take it for the log;
            // then by the reopen, or, if the files cannot be reopened now, the next batch's.
            if let Some(Err(e)) = self.journal.as_mut().map(Journal::erase_failed) {
                eprintln!(
                    "rack-gateway: the event store could not erase a failed journal write ({e}); \
                     it is erased when the store reopens"
                );
            }
            let _ = self.ready();
            let msg = format!("the event store failed to commit: {e}");
            // The unguarded appends nobody waits for are kept, in order, to be written again,
            // each with its follow-up.
            let mut records = staged.records.into_iter().peekable();
            for range in staged.unanswered {
                while records.next_if(|r| r.record.seq.0 < range.start).is_some() {}
                let mut events = Vec::new();
                while let Some(r) = records.next_if(|r| range.contains(&r.record.seq.0)) {
                    events.push(r.record.event);
                }
                if !events.is_empty() {
                    self.keep_for_retry(events);
                }
            }
            for (reply, _, _) in staged.replies {
                let _ = reply.send(Err(AppendError::Unavailable(msg.clone())));
            }
            return;
        }
        // Durable from here on: the batch is answered whatever happens to the index. A synced
        // index commit that fails leaves the journal as it is; the reopen indexes it all.
        let indexed = durable
            && match self
                .db()
                .and_then(|db| write_index(&db, &self.unindexed, &staged, entry.as_slice(), true))
            {
                Ok(()) => true,
                Err(e) => {
                    eprintln!(
                        "rack-gateway: the event store's synced index commit failed ({e}); the \
                         journal holds the records, reopening"
                    );
                    self.reopen = true;
                    false
                }
            };
        if indexed {
            self.unindexed = Unindexed::default();
            self.restart_journal();
        }
        let cp = checkpoint.map(|cp| {
            let number = self.view.checkpoints;
            self.view.checkpoints += 1;
            self.view.cp_size = cp.checkpoint.size;
            self.view.cp_time = cp.checkpoint.time;
            (number, cp.note)
        });
        let nodes = std::mem::take(&mut staged.nodes);
        let records = self.publish(staged);
        if indexed {
            self.set_indexed(self.view.size);
        } else {
            self.unindexed.push(records, nodes, cp);
        }
    }

    /// The view as it was before `staged` was staged.
    fn rollback_point(&self, staged: &Staged) -> View {
        let Some(first) = staged.records.first() else {
            return self.view.clone();
        };
        let mut v = self.view.clone();
        v.size = first.record.seq.0;
        v.last_hash = first.record.prev;
        // The frontier cannot be un-pushed; rebuild it from the durable nodes on reopen instead.
        v.frontier = Frontier::new();
        v
    }

    fn due_checkpoint(&self, now: Timestamp) -> Option<SignedCheckpoint> {
        let p = self.options.policy;
        let v = &self.view;
        // Never before the checkpoint before it, which verifiers refuse: a clock stepped back
        // (an NTP step, a restored VM) after a heartbeat would otherwise sign one earlier, and
        // the log would fail verification for good. Records' times are held so already.
        let now = now.max(v.cp_time);
        let new = v.size.saturating_sub(v.cp_size);
        let since = now.since(v.cp_time);
        let due = new >= p.every.max(1)
            || (new > 0 && (since >= p.after || self.seal))
            || since >= p.heartbeat
            || v.checkpoints == 0;
        due.then(|| {
            self.options.signer.sign(&Checkpoint {
                origin: self.options.origin.clone(),
                size: v.size,
                root: v.frontier.root(),
                time: now,
            })
        })
    }

    /// Applies committed records to the state, updates the head, answers and broadcasts; returns
    /// the records, shared with the subscribers.
    fn publish(&mut self, staged: Staged) -> Arc<Vec<StoredRecord>> {
        if !staged.records.is_empty() {
            match self.shared.state.write() {
                Ok(mut state) => {
                    for r in &staged.records {
                        if let Err(e) = state.apply(r) {
                            // The log is durable but the state refused it: stop appending
                            // rather than answer from a state that disagrees with the log.
                            self.poison(format!("projection refused a committed record: {e}"));
                            break;
                        }
                    }
                }
                Err(_) => self.poison("state lock poisoned".into()),
            }
        }
        self.publish_head();
        for (reply, appended, if_unheard) in staged.replies {
            // Its caller went away while it was written: the follow-up goes in the next batch.
            if let Err(Ok((_, Some(make)))) = reply.send(Ok((appended, if_unheard))) {
                self.keep_for_retry(make());
            }
        }
        let records = Arc::new(staged.records);
        if !records.is_empty() {
            let _ = self.shared.records.send(records.clone());
        }
        records
    }

    /// Makes the view's head what readers see.
    fn publish_head(&self) {
        if let Ok(mut head) = self.shared.head.write() {
            *head = self.view.head();
        }
    }

    fn poison(&self, why: String) {
        if let Ok(mut p) = self.shared.poisoned.write() {
            p.get_or_insert(why);
        }
    }

    /// Fails while poisoned; reopens the database after a failed commit, or, while a reopen
    /// that failed holds the next back ([`Sequencer::reopen_failed`]), fails as it did.
    fn ready(&mut self) -> Result<(), String> {
        if let Ok(p) = self.shared.poisoned.read()
            && let Some(why) = p.as_ref()
        {
            return Err(why.clone());
        }
        if !self.reopen {
            return Ok(());
        }
        if let Some(why) = self.reopen_failed.as_ref().and_then(Held::holding) {
            return Err(why.to_owned());
        }
        self.reopen_failed = None;
        self.reopen_files()
    }

    /// Reopens the database and the journal and recovers what the journal holds; a recovery
    /// that fails after the index was rewritten holds the next reopen back
    /// ([`Sequencer::reopen_failed`]).
    fn reopen_files(&mut self) -> Result<(), String> {
        let began = Instant::now();
        {
            let mut slot = self
                .shared
                .db
                .write()
                .map_err(|_| "store lock poisoned".to_owned())?;
            slot.take();
        }
        self.journal = None;
        // Every record the state holds was acknowledged: the journal must still give them all.
        let acknowledged = self.shared.state.read().ok().map(|s| s.position().0);
        let files = self
            .opener
            .open()
            .map_err(|e| format!("cannot reopen the event store: {e}"))?;
        let files_rewritten = files.rewritten;
        let view = load_view(&files.db).map_err(|e| e.to_string())?;
        {
            // redb is back at its last synced commit: readers must not take it for more. The
            // size is lowered and the database swapped in under the index's lock, which readers
            // hold while they take the database (see `wait_indexed`).
            let (lock, cv) = &self.shared.index;
            let mut st = lock.lock().map_err(|_| "store lock poisoned".to_owned())?;
            st.size = view.size;
            let mut slot = self
                .shared
                .db
                .write()
                .map_err(|_| "store lock poisoned".to_owned())?;
            *slot = Some(Arc::new(files.db));
            cv.notify_all();
        }
        self.view = view;
        let recovered = self
            .check_stored()
            .and_then(|()| Journal::open(files.journal, files.direct))
            .map(|j| self.journal = Some(j))
            .and_then(|()| self.replay_journal(acknowledged))
            .and_then(|_| catch_up(&self.shared, self.view.size));
        if let Err(e) = recovered {
            let mut why = format!("cannot recover the event store's journal: {e}");
            if files_rewritten {
                let held = Held::since(began, why);
                why = held.why.clone();
                self.reopen_failed = Some(held);
            }
            self.set_index_error(why.clone());
            return Err(why);
        }
        self.failed = None;
        self.publish_head();
        self.set_indexed(self.view.size);
        self.reopen = false;
        Ok(())
    }

    fn create_log(&mut self) -> Result<(), StoreError> {
        let (reply, _rx) = oneshot::channel();
        let mut staged = Staged::default();
        self.stage(
            &mut staged,
            vec![Event::LogCreated {
                origin: self.options.origin.clone(),
                checkpoint_key: self.options.signer.verifier().to_string(),
            }],
            reply,
            false,
            None,
        );
        self.commit(staged, true);
        // A failed write may have been followed by a reopen that worked: the size tells.
        if self.reopen || self.view.size == 0 {
            return Err(StoreError::Io("cannot write the first record".into()));
        }
        Ok(())
    }

    fn check_origin(&self) -> Result<(), StoreError> {
        let db = self.db().map_err(StoreError::Io)?;
        let first = read_raw(&*db, 0..1)?;
        let Some((seq, bytes)) = first.first() else {
            return Err(StoreError::Corrupt {
                seq: Seq(0),
                what: "missing".into(),
            });
        };
        match decode_stored(*seq, bytes)?.record.event {
            Event::LogCreated { origin, .. } if origin == self.options.origin => {}
            Event::LogCreated { origin, .. } => {
                return Err(StoreError::Incompatible(format!(
                    "the log's origin is {origin:?}, the configuration says {:?}",
                    self.options.origin
                )));
            }
            _ => {
                return Err(StoreError::Corrupt {
                    seq: Seq(0),
                    what: "record 0 is not LogCreated".into(),
                });
            }
        }
        Ok(())
    }

    /// Refuses a signer that did not sign the newest checkpoint the database holds: a key set
    /// made anew (or another log's, under the same origin) would sign the next checkpoints with
    /// a key the log's history never named. Checked before the journal is replayed and before
    /// the sequencer runs, so such a key signs nothing, and foreign keys after a crash are
    /// named as such rather than taken for a journaled checkpoint that does not verify. A note
    /// that carries this key's signature line but does not verify, or does not parse, is
    /// damage, not foreign keys. (The store has one signer for its life; a key rotation, when
    /// one is built, must check against the log's key history instead, as the verifier does.)
    fn check_signer(&self, db: &impl ReadableDatabase) -> Result<(), StoreError> {
        let n = self.view.checkpoints;
        let Some(newest) = read_checkpoints(db, n.saturating_sub(1)..n)?.pop() else {
            return Ok(());
        };
        let key = self.options.signer.verifier();
        let size = newest.checkpoint.size;
        checkpoint::verify_note(newest.note.as_bytes(), &key).map_err(|e| match e {
            CheckpointError::NoMatchingSignature { .. } => StoreError::Incompatible(format!(
                "the log's newest checkpoint (size {size}) is not signed by this key ({key}): the \
                 keys are not this log's; restore the log's own keys"
            )),
            // Signed by this key's name and id, or not a note at all: the stored note changed.
            e => StoreError::Corrupt {
                seq: Seq(size.saturating_sub(1)),
                what: format!("stored checkpoint {} does not verify: {e}", n - 1),
            },
        })?;
        Ok(())
    }

    /// The checks of what the database holds, run before the journal is replayed on it (at
    /// open, and when a running store reopens its files): the key ([`Sequencer::check_signer`]),
    /// the stored tree under the newest checkpoint ([`Sequencer::check_newest_checkpoint`]) and
    /// past it ([`Sequencer::check_past_checkpoint`]). Replay builds on the right edge loaded
    /// from the database, so damage there is found and named here, at its row, rather than
    /// reported as a journaled checkpoint that the records do not give (the journal may hold
    /// the only copy of acknowledged records: it must not be blamed for the database's damage).
    fn check_stored(&self) -> Result<(), StoreError> {
        let db = self.db().map_err(StoreError::Io)?;
        self.check_signer(&*db)?;
        self.check_newest_checkpoint(&*db)?;
        self.check_past_checkpoint(&*db)
    }

    /// Refuses a stored tree that does not give the root the newest checkpoint signs (its
    /// signature is checked by [`Sequencer::check_signer`], or, journaled, when replayed): the
    /// sequencer builds every later node from the stored right edge, so one node changed on
    /// disk (a flipped bit, a hand-edited row) would otherwise go into every checkpoint signed
    /// after it, and into the proofs served, unnoticed until an export failed to verify.
    fn check_newest_checkpoint(&self, db: &impl ReadableDatabase) -> Result<(), StoreError> {
        let n = self.view.checkpoints;
        let Some(newest) = read_checkpoints(db, n.saturating_sub(1)..n)?.pop() else {
            return Ok(());
        };
        let size = newest.checkpoint.size;
        let last = Seq(size.saturating_sub(1));
        let txn = db.begin_read().map_err(io)?;
        let table = txn.open_table(RECORDS).map_err(io)?;
        let stored = merkle::root(size, &ReadNodes { table }).map_err(tree_error)?;
        if stored != newest.checkpoint.root {
            return Err(StoreError::Corrupt {
                seq: last,
                what: format!(
                    "the stored tree at size {size} does not give the root checkpoint {} signs",
                    n - 1
                ),
            });
        }
        Ok(())
    }

    /// Refuses rows past the newest checkpoint whose stored nodes are not what their records
    /// give. No signature covers them yet, and the next checkpoint is cut from the right edge
    /// loaded from them, so a node changed on disk there would be signed as the log's root.
    /// Each row's nodes are rebuilt from the checkpoint's (checked against its root above) and
    /// the records' leaf hashes, and must match byte for byte, as must the loaded right edge.
    /// At most the records of one checkpoint interval are read.
    fn check_past_checkpoint(&self, db: &impl ReadableDatabase) -> Result<(), StoreError> {
        let (from, to) = (self.view.cp_size, self.view.size);
        if from >= to {
            return Ok(());
        }
        let txn = db.begin_read().map_err(io)?;
        let nodes = txn.open_table(RECORDS).map_err(io)?;
        let mut rebuilt = Frontier::load(from, &ReadNodes { table: nodes }).map_err(tree_error)?;
        let table = txn.open_table(RECORDS).map_err(io)?;
        // Each record must name the one before it: a changed record is found at the next.
        let mut prev = match from.checked_sub(1) {
            Some(last) => rows::with_row(&table, last, |_, record| hash::leaf_hash(record))?
                .ok_or_else(|| StoreError::Corrupt {
                    seq: Seq(last),
                    what: "missing (the newest checkpoint covers it)".into(),
                })?,
            None => hash::ZERO,
        };
        let mut expected = Vec::new();
        rows::for_each_row(&table, from..to, |seq, stored, record| {
            let leaf = hash::leaf_hash(record);
            if record::header(record).map(|h| h.prev) != Some(prev) {
                return Err(StoreError::Corrupt {
                    seq: Seq(seq),
                    what: "its prev is not the leaf hash of the record before it (past the \
                           newest checkpoint): that record or this one changed"
                        .into(),
                });
            }
            prev = leaf;
            expected.clear();
            rebuilt.push_each(leaf, |level, _, h| {
                if level > 0 {
                    expected.extend_from_slice(&h.0);
                }
            });
            if stored != expected.as_slice() {
                return Err(StoreError::Corrupt {
                    seq: Seq(seq),
                    what: format!(
                        "its row's stored Merkle nodes are not the ones the records from the \
                         newest checkpoint (size {from}) to it give"
                    ),
                });
            }
            Ok(())
        })?;
        if rebuilt != self.view.frontier {
            return Err(StoreError::Corrupt {
                seq: Seq(to - 1),
                what: format!(
                    "the stored tree's right edge at size {to} is not the one its records give"
                ),
            });
        }
        Ok(())
    }
}

// === impl NodeReader for stored nodes ===

impl<T: ReadableTable<u64, &'static [u8]>> NodeReader for ReadNodes<T> {
    type Error = NodeReadError;

    /// Node `(level, index)` is stored in the row of the last leaf it covers.
    fn node(&self, level: u8, index: u64) -> Result<Hash, NodeReadError> {
        let last_leaf = index
            .checked_add(1)
            .and_then(|end| end.checked_shl(u32::from(level)))
            .and_then(|end| end.checked_sub(1))
            .ok_or(NodeReadError::OutOfRange { level, index })?;
        let read = rows::with_row(&self.table, last_leaf, |nodes, record| {
            if level == 0 {
                return Some(hash::leaf_hash(record));
            }
            let at = (usize::from(level) - 1) * 32;
            nodes.get(at..at + 32).and_then(Hash::from_slice)
        })
        .map_err(NodeReadError::Row)?;
        match read {
            Some(Some(node)) => Ok(node),
            Some(None) => Err(NodeReadError::Missing {
                level,
                index,
                row: last_leaf,
            }),
            None => Err(NodeReadError::Row(StoreError::Corrupt {
                seq: Seq(last_leaf),
                what: format!(
                    "the record is missing (its row holds Merkle node (level {level}, index \
                     {index}))"
                ),
            })),
        }
    }
}

/// The stored nodes of a tree of `size` leaves, for a proof: a size past the records the table
/// holds is the asker's mistake, said as such, not read as a missing record.
fn proof_nodes<T: ReadableTable<u64, &'static [u8]>>(
    table: T,
    size: u64,
) -> Result<ReadNodes<T>, StoreError> {
    let held = rows::size(&table)?;
    if size > held {
        return Err(StoreError::Io(format!(
            "no proof within a tree of {size} records: the log holds {held}"
        )));
    }
    Ok(ReadNodes { table })
}

/// A failed read of the stored tree as the store's error, saying where: a node missing from
/// its row is corruption at that row, and a row that could not be read keeps its own error
/// (a malformed entry names its seq). Asks outside the tree are the caller's, reported as they
/// are.
fn tree_error(e: MerkleError<NodeReadError>) -> StoreError {
    match e {
        MerkleError::Read(NodeReadError::Missing { level, index, row }) => StoreError::Corrupt {
            seq: Seq(row),
            what: format!("Merkle node (level {level}, index {index}) is not stored in its row"),
        },
        MerkleError::Read(NodeReadError::Row(e)) => e,
        other => io(other),
    }
}

// === impl Unindexed ===

impl Unindexed {
    fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.checkpoints.is_empty()
    }

    fn push(
        &mut self,
        records: Arc<Vec<StoredRecord>>,
        nodes: Vec<Hash>,
        checkpoint: Option<(u64, String)>,
    ) {
        self.rows += records.len();
        if !records.is_empty() {
            self.batches.push((records, nodes));
        }
        self.checkpoints.extend(checkpoint);
    }
}

/// One redb transaction: the pending batches, then `staged` and `checkpoints`; synced only
/// when `durable` (otherwise the journal already holds them, and redb keeps the commit until
/// the next synced one).
fn write_index(
    db: &Database,
    pending: &Unindexed,
    staged: &Staged,
    checkpoints: &[CheckpointEntry<'_>],
    durable: bool,
) -> Result<(), String> {
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    if !durable {
        txn.set_durability(Durability::None)
            .map_err(|e| e.to_string())?;
    }
    {
        let mut records = txn.open_table(RECORDS).map_err(|e| e.to_string())?;
        let mut insert = |first: u64, entry: &[u8]| {
            records
                .insert(first, entry)
                .map(drop)
                .map_err(|e| e.to_string())
        };
        let mut groups = GroupWriter::new();
        let batches = pending
            .batches
            .iter()
            .map(|(records, nodes)| (records.as_slice(), nodes.as_slice()))
            .chain([(staged.records.as_slice(), staged.nodes.as_slice())]);
        for (batch, nodes) in batches {
            let mut at = 0;
            for r in batch {
                let seq = r.record.seq.0;
                let end = at + merkle::completed_nodes(seq);
                let Some(mine) = nodes.get(at..end) else {
                    return Err(format!("the Merkle nodes of seq {seq} are missing"));
                };
                at = end;
                groups.push(seq, mine, &r.bytes, &mut insert)?;
            }
        }
        groups.finish(&mut insert)?;
        let mut cps = pending
            .checkpoints
            .iter()
            .map(|(n, note)| (*n, note.as_str()))
            .chain(checkpoints.iter().map(|c| (c.number, c.note)))
            .peekable();
        if cps.peek().is_some() {
            let mut table = txn.open_table(CHECKPOINTS).map_err(|e| e.to_string())?;
            for (number, note) in cps {
                // Written again after a crash (the journal replayed) it is the same note; any
                // other would replace a signed checkpoint.
                let before = table.insert(number, note).map_err(|e| e.to_string())?;
                if before.is_some_and(|b| b.value() != note) {
                    return Err(format!(
                        "checkpoint {number} is already stored with another note"
                    ));
                }
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

fn decode_stored(seq: u64, bytes: &[u8]) -> Result<StoredRecord, StoreError> {
    let stored = record::decode(bytes).map_err(|e| StoreError::Corrupt {
        seq: Seq(seq),
        what: e.to_string(),
    })?;
    if stored.record.seq.0 != seq {
        return Err(StoreError::Corrupt {
            seq: Seq(seq),
            what: format!("stored under seq {seq} but says seq {}", stored.record.seq),
        });
    }
    Ok(stored)
}

fn init_tables(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(io)?;
    {
        txn.open_table(RECORDS).map_err(io)?;
        txn.open_table(CHECKPOINTS).map_err(io)?;
        let mut meta = txn.open_table(META).map_err(io)?;
        let version = meta.get("format").map_err(io)?.map(|v| v.value());
        match version {
            Some(FORMAT_VERSION) => {}
            None => {
                meta.insert("format", FORMAT_VERSION).map_err(io)?;
            }
            Some(v) => {
                check_format(v)?;
                meta.insert("format", FORMAT_VERSION).map_err(io)?;
            }
        }
    }
    txn.commit().map_err(io)
}

/// Refuses a store format this build cannot read.
fn check_format(v: u64) -> Result<(), StoreError> {
    if FORMAT_READ.contains(&v) {
        return Ok(());
    }
    Err(StoreError::Incompatible(format!(
        "store format {v}, this build reads formats {FORMAT_READ:?}"
    )))
}

/// Reads the sequencer's view from the durable tables: head, frontier, last checkpoint.
fn load_view(db: &Database) -> Result<View, StoreError> {
    let txn = db.begin_read().map_err(io)?;
    let records = txn.open_table(RECORDS).map_err(io)?;
    let (size, last_hash, last_time) = match records.last().map_err(io)? {
        None => (0, hash::ZERO, Timestamp(0)),
        Some((k, v)) => {
            let (seq, _, bytes) = Entry::parse(k.value(), v.value())?.last();
            let h = record::header(bytes).ok_or_else(|| StoreError::Corrupt {
                seq: Seq(seq),
                what: "not a canonical record".into(),
            })?;
            (seq + 1, hash::leaf_hash(bytes), h.time)
        }
    };
    let nodes = txn.open_table(RECORDS).map_err(io)?;
    let frontier = Frontier::load(size, &ReadNodes { table: nodes }).map_err(tree_error)?;
    let cps = txn.open_table(CHECKPOINTS).map_err(io)?;
    let checkpoints = cps.len().map_err(io)?;
    let (cp_size, cp_time) = match cps.last().map_err(io)? {
        None => (0, Timestamp(0)),
        // Numbered from 0 without a gap, or the next would be written over a signed one.
        Some((last, _)) if last.value() + 1 != checkpoints => {
            return Err(read_checkpoints(db, 0..u64::MAX).err().unwrap_or_else(|| {
                StoreError::Corrupt {
                    seq: Seq(size),
                    what: format!(
                        "{checkpoints} checkpoints, the last numbered {}",
                        last.value()
                    ),
                }
            }));
        }
        Some((number, note)) => {
            let cp = parse_stored_checkpoint(number.value(), note.value(), size)?;
            (cp.size, cp.time)
        }
    };
    Ok(View {
        size,
        last_hash,
        last_time,
        frontier,
        checkpoints,
        cp_size,
        cp_time,
    })
}

/// Stored checkpoint `number`'s note, parsed but not verified; one that does not parse is
/// corruption named by its number (`at`: a size of the log it was cut at or after).
fn parse_stored_checkpoint(number: u64, note: &str, at: u64) -> Result<Checkpoint, StoreError> {
    checkpoint::parse_unverified(note.as_bytes())
        .map(|(cp, _)| cp)
        .map_err(|e| StoreError::Corrupt {
            seq: Seq(at),
            what: format!("stored checkpoint {number} does not parse: {e}"),
        })
}

/// Applies durable records the state has not seen yet, up to `size`.
fn catch_up<S: Fold>(shared: &Shared<S>, size: u64) -> Result<(), StoreError> {
    let db = shared.db().map_err(StoreError::Io)?;
    let mut state = shared
        .state
        .write()
        .map_err(|_| StoreError::Io("state lock poisoned".into()))?;
    let from = state.position().0;
    if from > size {
        return Err(StoreError::Incompatible(format!(
            "the state covers {from} records but the log holds {size}"
        )));
    }
    let txn = db.begin_read().map_err(io)?;
    let table = txn.open_table(RECORDS).map_err(io)?;
    rows::for_each_record(&table, from..size, |seq, bytes| {
        let stored = decode_stored(seq, bytes)?;
        state.apply(&stored).map_err(|e| StoreError::Corrupt {
            seq: Seq(seq),
            what: e.to_string(),
        })
    })
}

fn read_raw(
    db: &impl ReadableDatabase,
    range: Range<u64>,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let txn = db.begin_read().map_err(io)?;
    let table = txn.open_table(RECORDS).map_err(io)?;
    let mut out = Vec::new();
    rows::for_each_record(&table, range, |seq, bytes| {
        out.push((seq, bytes.to_vec()));
        Ok(())
    })?;
    Ok(out)
}

fn read_checkpoints(
    db: &impl ReadableDatabase,
    range: Range<u64>,
) -> Result<Vec<SignedCheckpoint>, StoreError> {
    let txn = db.begin_read().map_err(io)?;
    let table = txn.open_table(CHECKPOINTS).map_err(io)?;
    let mut out = Vec::new();
    for (expected, item) in (range.start..).zip(table.range(range.clone()).map_err(io)?) {
        let (number, note) = item.map_err(io)?;
        // The size the previous checkpoint was cut at: where a missing or damaged one lies.
        let after = out
            .last()
            .map_or(0, |c: &SignedCheckpoint| c.checkpoint.size);
        if number.value() != expected {
            return Err(StoreError::Corrupt {
                seq: Seq(after),
                what: format!("checkpoint {expected} is missing from the store"),
            });
        }
        let checkpoint = parse_stored_checkpoint(expected, note.value(), after)?;
        out.push(SignedCheckpoint {
            checkpoint,
            note: note.value().to_owned(),
        });
    }
    Ok(out)
}

// === impl OnDisk ===

impl OnDisk {
    /// The store's files at `path`, locked for this store.
    fn lock(path: &Path) -> Result<OnDisk, StoreError> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = PathBuf::from(name);
        let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", lock_path.display()));
        let lock = open_rw(&lock_path)
            .map_err(|e| StoreError::Io(format!("{}: {e}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Io(format!(
                    "{}: the event store is open in another process (it holds {})",
                    path.display(),
                    lock_path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        Ok(OnDisk {
            path: path.to_owned(),
            _lock: lock,
            rewrites: Rewrites::default(),
        })
    }
}

impl StoreFiles for OnDisk {
    fn open(&self) -> Result<Files, DatabaseError> {
        let path = &self.path;
        let (db, rewritten) =
            open_index(|| FileBackend::new(open_rw(path)?), &self.rewrites, path)?;
        let journal = FileBackend::new(open_rw(&journal_path(path))?)?;
        // The journal holds acknowledged records: its directory entry must be durable too.
        sync_dir(path)?;
        Ok(Files {
            db,
            journal: Box::new(journal),
            direct: DirectFile::open(&journal_path(path)),
            rewritten,
        })
    }
}

/// The database of a store's writer on the backend `file` gives (the file at `path`). A file
/// that was not closed cleanly is first rewritten in place, every byte as it reads now, and
/// synced ([`rewrite_durably`]): the pages of a commit whose sync failed may be in the page
/// cache only, marked clean, and redb's recovery would commit over them. Rewritten, they are
/// durable; dropped from the cache before, they fail redb's checksums and redb falls back to the
/// commit before. A rewrite cut short by a crash leaves the file as a partly written commit
/// does, which redb's recovery handles the same way. The second value says whether it was
/// rewritten. Only one process may do this at a time (the store's lock).
///
/// # Errors
/// The file cannot be opened, rewritten (then not tried again for [`rewrite_hold`] of the time
/// the rewrite took) or recovered.
pub fn open_index<B: StorageBackend>(
    file: impl Fn() -> Result<B, DatabaseError>,
    rewrites: &Rewrites,
    path: &Path,
) -> Result<(Database, bool), DatabaseError> {
    let mut last = rewrites
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(why) = last.as_ref().and_then(Held::holding) {
        return Err(storage_io(std::io::Error::other(why.to_owned())));
    }
    // Before it asks whether to repair, redb writes and syncs only the header as it finalizes
    // it (the primary slot may switch to a newer commit it finds), both commit slots kept and
    // recovery still required: the next open asks again, and a primary whose pages are not
    // on the disk fails its checksums there.
    let first = redb::Builder::new()
        .set_cache_size(WRITER_CACHE_BYTES)
        .set_repair_callback(|session| session.abort())
        .create_with_backend(file()?);
    if !matches!(first, Err(DatabaseError::RepairAborted)) {
        return first.map(|db| (db, false));
    }
    let began = Instant::now();
    let failed = |e: &dyn std::fmt::Display| {
        format!(
            "{}: the event store's index was not closed cleanly, and {e}",
            path.display(),
        )
    };
    let recovered = rewrite_durably(&file()?, path)
        .map_err(|e| {
            failed(&format!(
                "rewriting it to make it durable before recovery failed ({e})"
            ))
        })
        .and_then(|done| {
            let db = file()
                .and_then(new_writer)
                .map_err(|e| failed(&format!("recovering it after the rewrite failed ({e})")))?;
            Ok((db, done))
        });
    match recovered {
        Ok((db, done)) => {
            *last = None;
            eprintln!(
                "rack-gateway: {} was not closed cleanly (a crash, or a write or sync that \
                 failed); its {} bytes of data were rewritten as they read and synced before \
                 recovering it, so that nothing the page cache alone held is lost",
                path.display(),
                done.written
            );
            if done.unreadable > 0 {
                eprintln!(
                    "rack-gateway: {}: {} blocks of 4 KiB could not be read and were left as \
                     they are (redb recovered the file all the same); the disk reports errors",
                    path.display(),
                    done.unreadable
                );
            }
            Ok((db, true))
        }
        Err(why) => {
            let held = Held::since(began, why);
            let why = held.why.clone();
            *last = Some(held);
            Err(storage_io(std::io::Error::other(why)))
        }
    }
}

/// Writes every byte of `file` (the file at `path`) back where it is, as it reads now, and syncs
/// it; returns the bytes rewritten. What is read comes from the page cache where it is there, so
/// pages a failed sync left clean there are written again (a write dirties a page whatever it
/// holds). Blocks of its holes that read as zeros are left out: the disk holds the same; so are
/// blocks that cannot be read (counted).
///
/// # Errors
/// A write or the sync failed; says which, and at what byte.
pub fn rewrite_durably(
    file: &impl StorageBackend,
    path: &Path,
) -> Result<Rewritten, std::io::Error> {
    const BLOCK: usize = 4096;
    let len = file.len()?;
    // Where the file has no blocks (redb grows it sparse), reads and the disk both give zeros:
    // a block that reads all zeros over a hole is left as it is, so the rewrite takes no space.
    let holes = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    let mut done = Rewritten::default();
    while at < len {
        let n = usize::try_from(len - at).map_or(buf.len(), |left| left.min(buf.len()));
        let chunk = &mut buf[..n];
        // A block that cannot be read is in no cache either: there is nothing of it to keep,
        // and redb's recovery judges it (a free page, or a commit to fall back from). Where the
        // chunk cannot be read whole, it is read block by block and those are left out.
        let mut unreadable = Vec::new();
        if file.read(at, chunk).is_err() {
            for start in (0..n).step_by(BLOCK) {
                let block = chunk
                    .get_mut(start..n.min(start + BLOCK))
                    .unwrap_or_default();
                if file.read(at + start as u64, block).is_err() {
                    unreadable.push(start);
                }
            }
            done.unreadable += unreadable.len() as u64;
        }
        // Runs of blocks to write back, between the blocks left out.
        let mut run: Option<usize> = None;
        for start in (0..n).step_by(BLOCK).chain([n]) {
            let block = chunk.get(start..n.min(start + BLOCK)).unwrap_or_default();
            let left_out = unreadable.contains(&start)
                || (block.iter().all(|b| *b == 0)
                    && is_hole(&holes, at + start as u64, block.len() as u64));
            let keep = !block.is_empty() && !left_out;
            match (keep, run) {
                (true, None) => run = Some(start),
                (false, Some(from)) => {
                    let bytes = chunk.get(from..start).unwrap_or_default();
                    let offset = at + from as u64;
                    file.write(offset, bytes).map_err(|e| {
                        std::io::Error::other(format!("writing at byte {offset}: {e}"))
                    })?;
                    done.written += bytes.len() as u64;
                    run = None;
                }
                _ => {}
            }
        }
        at += n as u64;
    }
    file.sync_data()
        .map_err(|e| std::io::Error::other(format!("syncing: {e}")))?;
    Ok(done)
}

/// What [`rewrite_durably`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// Bytes written back.
    pub written: u64,
    /// 4 KiB blocks that could not be read, left as they are.
    pub unreadable: u64,
}

/// Whether `len` bytes of `file` from `at` hold no data blocks (`SEEK_DATA` finds none before
/// their end). `false` where the file system cannot say.
fn is_hole(file: &std::fs::File, at: u64, len: u64) -> bool {
    match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(at)) {
        Ok(data) => data >= at.saturating_add(len),
        // No data from `at` to the end of the file.
        Err(rustix::io::Errno::NXIO) => true,
        Err(_) => false,
    }
}

/// The database of a store's writer on `backend`.
fn new_writer(backend: impl StorageBackend) -> Result<Database, DatabaseError> {
    redb::Builder::new()
        .set_cache_size(WRITER_CACHE_BYTES)
        .create_with_backend(backend)
}

fn storage_io(e: std::io::Error) -> DatabaseError {
    DatabaseError::Storage(redb::StorageError::Io(e))
}

/// Lets tests wrap the file backends (to count syncs, or fail writes): the database (opened by
/// [`open_index`]) and the journal's.
pub fn files_with(db: Database, rewritten: bool, journal: impl StorageBackend) -> Files {
    Files {
        db,
        journal: Box::new(journal),
        direct: None,
        rewritten,
    }
}

/// The journal of the store file at `path`: the same name with `.journal` added.
pub fn journal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// Syncs the directory that holds `path`, so a file just created there survives a crash.
fn sync_dir(path: &Path) -> Result<(), DatabaseError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(storage_io)
}

/// Opens (creating) a file for reading and writing, as a store file. A new one is readable by
/// its owner only, as the keys and the snapshot are: the log names every person and address,
/// and holds the HMACs of secrets, which the audit key would let a reader test guesses against.
pub fn open_rw(path: &Path) -> Result<std::fs::File, DatabaseError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(storage_io)
}

#[cfg(test)]
mod tests {
    /// A failed rewrite holds the next back four times as long as it took, a second at least and
    /// a minute at most.
    #[test]
    fn a_longer_rewrite_holds_the_next_back_longer() {
        use super::{MAX_REWRITE_HOLD, REWRITE_RETRY, rewrite_hold};
        let ms = Duration::from_millis;
        assert_eq!(rewrite_hold(Duration::ZERO), REWRITE_RETRY);
        assert_eq!(rewrite_hold(ms(200)), REWRITE_RETRY);
        assert_eq!(rewrite_hold(ms(300)), ms(1200));
        assert_eq!(
            rewrite_hold(Duration::from_secs(5)),
            Duration::from_secs(20)
        );
        assert_eq!(rewrite_hold(Duration::from_secs(3600)), MAX_REWRITE_HOLD);
        assert_eq!(rewrite_hold(Duration::MAX), MAX_REWRITE_HOLD);
    }

    use std::path::Path;
    use std::time::{Duration, Instant};

    use redb::{
        Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction,
    };

    use super::{CHECKPOINTS, LogReader, META, Options, RECORDS, RedbStore, read_checkpoints};
    use crate::checkpoint::{NoteSigner, SignedCheckpoint};
    use crate::hash::{self, Hash};
    use crate::merkle;
    use crate::store::conformance::{TestFold, filler};
    use crate::store::rows::{self, Entry, pack_row};
    use crate::store::{CheckpointPolicy, EventStore, StoreError};

    fn options() -> Options {
        Options {
            origin: "store.example/log".into(),
            signer: NoteSigner::from_seed("store.example/log", [8; 32]).unwrap(),
            policy: CheckpointPolicy::default(),
        }
    }

    fn open(path: &Path) -> RedbStore<TestFold> {
        RedbStore::open(path, options(), TestFold::default()).unwrap()
    }

    /// Changes the stopped store's file with redb directly, in one committed transaction.
    fn edit(path: &Path, change: impl FnOnce(&WriteTransaction)) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        change(&txn);
        txn.commit().unwrap();
    }

    /// Appends `n` fillers from `from`, in calls of 15, and stops the store.
    async fn fill_and_stop(store: RedbStore<TestFold>, from: u64, n: u64) {
        for chunk in (from..from + n).collect::<Vec<_>>().chunks(15) {
            store
                .append(chunk.iter().map(|&i| filler(i)).collect())
                .await
                .unwrap();
        }
        store.shutdown();
    }

    /// Every `(key, entry)` of the records table, with redb opened directly.
    fn entries(path: &Path) -> Vec<(u64, Vec<u8>)> {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(RECORDS).unwrap();
        table
            .iter()
            .unwrap()
            .map(|item| {
                let (k, v) = item.unwrap();
                (k.value(), v.value().to_vec())
            })
            .collect()
    }

    /// Rewrites the records table as format 3 wrote it: one row per entry, under its seq.
    fn rewrite_as_format_3(path: &Path) {
        let grouped = entries(path);
        edit(path, |txn| {
            let mut table = txn.open_table(RECORDS).unwrap();
            for (first, bytes) in &grouped {
                let entry = Entry::parse(*first, bytes).unwrap();
                table.remove(*first).unwrap();
                for seq in entry.first..entry.end() {
                    let (nodes, record) = entry.row(seq).unwrap();
                    let hashes: Vec<Hash> = nodes
                        .chunks(32)
                        .map(|h| Hash::from_slice(h).unwrap())
                        .collect();
                    let mut row = Vec::new();
                    pack_row(&mut row, &hashes, record);
                    table.insert(seq, row.as_slice()).unwrap();
                }
            }
            txn.open_table(META).unwrap().insert("format", 3).unwrap();
        });
    }

    fn format(path: &Path) -> u64 {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        meta.get("format").unwrap().unwrap().value()
    }

    /// No reader asks here, and 3 rows are far below `INDEX_AT`: only the pause that follows
    /// the appends can make the sequencer index them.
    /// The rewrite before recovery writes back what holds data and leaves the file's holes
    /// alone (redb grows its file sparse; filling the holes would take space a store that
    /// stopped on a full disk does not have).
    #[test]
    fn a_rewrite_leaves_the_files_holes_as_they_are() {
        use redb::StorageBackend;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = redb::backends::FileBackend::new(super::open_rw(&path).unwrap()).unwrap();
        let end = 64u64 << 20;
        file.write(0, &[7u8; 8192]).unwrap();
        file.set_len(end).unwrap();
        file.write(end - 4096, &[9u8; 4096]).unwrap();
        file.sync_data().unwrap();
        let blocks = std::fs::metadata(&path).unwrap().blocks();
        assert!(blocks < 1024, "the file is sparse here: {blocks} blocks");

        let done = super::rewrite_durably(&file, &path).unwrap();
        assert_eq!(
            done,
            super::Rewritten {
                written: 8192 + 4096,
                unreadable: 0
            },
            "only what holds data is written back"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().blocks(), blocks);
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes[..8192].iter().all(|b| *b == 7));
        assert!(bytes[8192..(end - 4096) as usize].iter().all(|b| *b == 0));
        assert!(bytes[(end - 4096) as usize..].iter().all(|b| *b == 9));
    }

    /// A file whose reads fail where `bad` is, as a disk with a bad sector answers.
    #[derive(Debug)]
    struct BadSector {
        inner: redb::backends::FileBackend,
        bad: std::ops::Range<u64>,
    }

    impl redb::StorageBackend for BadSector {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            if offset < self.bad.end && self.bad.start < offset + out.len() as u64 {
                return Err(std::io::Error::from_raw_os_error(5)); // EIO
            }
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.inner.write(offset, data)
        }
        fn close(&self) -> Result<(), std::io::Error> {
            self.inner.close()
        }
    }

    /// A block that cannot be read (a bad sector, in no cache either) is left as it is and
    /// counted; the rest of the file is rewritten, so one bad block in a free page does not
    /// keep the store from ever opening again.
    #[test]
    fn a_rewrite_leaves_out_a_block_it_cannot_read() {
        use redb::StorageBackend;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let inner = redb::backends::FileBackend::new(super::open_rw(&path).unwrap()).unwrap();
        inner.write(0, &vec![5u8; 2 << 20]).unwrap();
        inner.sync_data().unwrap();
        let bad = (1 << 20) + 8192;
        let file = BadSector {
            inner,
            bad: bad..bad + 512,
        };
        let done = super::rewrite_durably(&file, &path).unwrap();
        assert_eq!(
            done,
            super::Rewritten {
                written: (2 << 20) - 4096,
                unreadable: 1
            }
        );
        assert!(std::fs::read(&path).unwrap().iter().all(|b| *b == 5));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pause_in_appends_indexes_what_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("log.redb"));
        for i in 0..3 {
            store.append(vec![filler(i)]).await.unwrap();
        }
        let size = store.head().size;
        let indexed = || store.shared.index.0.lock().unwrap().size;
        let deadline = Instant::now() + Duration::from_secs(10);
        while indexed() < size && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(indexed(), size, "the pause did not index the pending rows");
    }

    /// A store written one row per entry (format 3) opens, reads the same, grows in groups, and
    /// its proofs span both layouts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_format_3_store_reads_the_same_and_grows_in_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        fill_and_stop(open(&path), 0, 150).await;
        let before = LogReader::open(&path)
            .unwrap()
            .read_raw(0..u64::MAX)
            .unwrap();
        assert!(entries(&path).len() < before.len(), "rows were not grouped");
        rewrite_as_format_3(&path);
        assert_eq!(entries(&path).len(), before.len(), "not one row per entry");
        assert_eq!(format(&path), 3);
        let reader = LogReader::open(&path).unwrap();
        assert_eq!(reader.len().unwrap(), before.len() as u64);
        assert_eq!(reader.read_raw(0..u64::MAX).unwrap(), before);
        drop(reader);

        let store = open(&path);
        assert_eq!(store.head().size, before.len() as u64);
        let old = before.len() as u64;
        fill_and_stop(store, 150, 200).await;
        assert_eq!(format(&path), 4);
        let reader = LogReader::open(&path).unwrap();
        let after = reader.read_raw(0..u64::MAX).unwrap();
        assert_eq!(&after[..before.len()], &before[..]);
        let size = after.len() as u64;
        assert_eq!(reader.len().unwrap(), size);
        assert!(size > old + 150);
        let cp = reader.checkpoints().unwrap().pop().unwrap().checkpoint;
        assert_eq!(cp.size, size);
        for seq in [0, 1, old - 1, old, old + 1, size - 1] {
            let proof = reader.inclusion_proof(seq, size).unwrap();
            let leaf = hash::leaf_hash(&after[seq as usize].1);
            merkle::verify_inclusion(&leaf, seq, size, &proof, &cp.root).unwrap();
        }
        let early = reader.checkpoints().unwrap()[0].checkpoint.clone();
        let proof = reader.consistency_proof(early.size, size).unwrap();
        merkle::verify_consistency(early.size, size, &early.root, &cp.root, &proof).unwrap();
    }

    /// An entry missing from the table (in the middle, or the first) is corruption at its first
    /// seq, not a shorter log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_entry_is_reported_at_its_first_seq() {
        for middle in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("log.redb");
            fill_and_stop(open(&path), 0, 300).await;
            let all = entries(&path);
            assert!(all.len() >= 3);
            let (gone, _) = all[if middle { all.len() / 2 } else { 0 }];
            edit(&path, |txn| {
                txn.open_table(RECORDS).unwrap().remove(gone).unwrap();
            });
            let reader = LogReader::open(&path).unwrap();
            match reader.read_raw(0..u64::MAX) {
                Err(StoreError::Corrupt { seq, what }) => {
                    assert_eq!(seq.0, gone, "{what}");
                    assert!(what.contains(&format!("break at seq {gone}")), "{what}");
                }
                Err(e) => panic!("a gap at {gone} was refused with {e}"),
                Ok(read) => panic!("a gap at {gone} was read as {} records", read.len()),
            }
        }
    }

    /// The stored tree must give the root the newest checkpoint signs: a node changed on disk
    /// is refused at open, naming the checkpoint's last record, rather than built on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stored_node_the_newest_checkpoint_disagrees_with_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        fill_and_stop(open(&path), 0, 9).await;
        let size = damage_node_under_newest_checkpoint(&path);
        refused_as_tree_damage(RedbStore::open(&path, options(), TestFold::default()), size);
    }

    /// The same damage in a store that crashed with acknowledged records in its journal alone:
    /// the database's damage is found before the journal is replayed on it, and named at its
    /// row; the journal, which holds the only copy of those records, is left as it was.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_node_is_refused_before_the_journal_is_replayed_and_the_journal_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        fill_and_stop(open(&path), 0, 9).await;
        let store = open(&path);
        for i in 9..14 {
            store.append(vec![filler(i)]).await.unwrap();
        }
        // What a killed process leaves: redb at its last synced commit (the clean stop), the
        // journal with every batch acknowledged since.
        let crashed = tempfile::tempdir().unwrap();
        let copy = crashed.path().join("log.redb");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::copy(super::journal_path(&path), super::journal_path(&copy)).unwrap();
        store.shutdown();
        // Undamaged, the copy takes the journal's records back.
        {
            let intact = tempfile::tempdir().unwrap();
            let again = intact.path().join("log.redb");
            std::fs::copy(&copy, &again).unwrap();
            std::fs::copy(super::journal_path(&copy), super::journal_path(&again)).unwrap();
            let reopened = RedbStore::open(&again, options(), TestFold::default()).unwrap();
            assert!(reopened.head().size >= 14, "size {}", reopened.head().size);
            reopened.shutdown();
        }
        let size = damage_node_under_newest_checkpoint(&copy);
        assert!(size < 14, "the newest durable checkpoint is at {size}");
        let journal = std::fs::read(super::journal_path(&copy)).unwrap();
        refused_as_tree_damage(RedbStore::open(&copy, options(), TestFold::default()), size);
        assert!(
            std::fs::read(super::journal_path(&copy)).unwrap() == journal,
            "the journal changed when the store refused to open"
        );
    }

    #[allow(clippy::panic, reason = "a test helper fails the test by panicking")]
    fn refused_as_tree_damage(opened: Result<RedbStore<TestFold>, StoreError>, size: u64) {
        match opened {
            Err(StoreError::Corrupt { seq, what }) => {
                assert_eq!(seq.0, size - 1, "{what}");
                assert!(what.contains("does not give the root"), "{what}");
            }
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("a store whose tree disagrees with its checkpoint was opened"),
        }
    }

    /// A clock stepped back after a checkpoint (an NTP step, a restored VM), here an hour
    /// behind the newest one: the next checkpoint is not signed earlier than it, which every
    /// verifier refuses ("its time is before the previous checkpoint's").
    #[tokio::test]
    async fn a_clock_stepped_back_never_signs_a_checkpoint_before_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        fill_and_stop(open(&path), 0, 20).await;
        // The newest checkpoint, signed an hour ahead of the clock.
        let ahead = {
            let (number, newest) = newest_checkpoint(&path);
            let mut cp = newest.checkpoint;
            cp.time = cp.time.plus(std::time::Duration::from_secs(3600));
            (number, options().signer.sign(&cp))
        };
        edit(&path, |txn| {
            let mut table = txn.open_table(CHECKPOINTS).unwrap();
            table.insert(ahead.0, ahead.1.note.as_str()).unwrap();
        });
        std::fs::remove_file(super::journal_path(&path)).unwrap();
        let store = open(&path);
        store.append(vec![filler(20)]).await.unwrap();
        store.shutdown();
        drop(store);
        let cps = read_checkpoints(&Database::open(&path).unwrap(), 0..u64::MAX).unwrap();
        let last = cps.last().unwrap();
        assert!(
            last.checkpoint.size > ahead.1.checkpoint.size,
            "no new checkpoint"
        );
        assert!(
            last.checkpoint.time >= ahead.1.checkpoint.time,
            "a checkpoint at {:?} follows one at {:?}",
            last.checkpoint.time,
            ahead.1.checkpoint.time
        );
    }

    /// The stopped store's newest checkpoint, and its number.
    fn newest_checkpoint(path: &Path) -> (u64, SignedCheckpoint) {
        let db = Database::open(path).unwrap();
        let n = db
            .begin_read()
            .unwrap()
            .open_table(CHECKPOINTS)
            .unwrap()
            .len()
            .unwrap();
        let newest = read_checkpoints(&db, n - 1..n).unwrap().remove(0);
        (n - 1, newest)
    }

    /// Flips a bit of the largest complete subtree's node under the stopped store's newest
    /// checkpoint (stored in the row of its last leaf; the root is built from it). Returns
    /// that checkpoint's size.
    fn damage_node_under_newest_checkpoint(path: &Path) -> u64 {
        let size = newest_checkpoint(path).1.checkpoint.size;
        let (entry, node) = {
            let db = Database::open(path).unwrap();
            let level = 63 - size.leading_zeros();
            assert!(level >= 1, "size {size}");
            let leaf = (1u64 << level) - 1;
            let txn = db.begin_read().unwrap();
            let table = txn.open_table(RECORDS).unwrap();
            let node = rows::with_row(&table, leaf, |nodes, _| {
                let at = (level as usize - 1) * 32;
                nodes[at..at + 32].to_vec()
            })
            .unwrap()
            .unwrap();
            let entry = table
                .range(..=leaf)
                .unwrap()
                .next_back()
                .unwrap()
                .unwrap()
                .0
                .value();
            (entry, node)
        };
        edit(path, |txn| {
            let mut table = txn.open_table(RECORDS).unwrap();
            let mut bytes = table.get(entry).unwrap().unwrap().value().to_vec();
            let at = bytes
                .windows(32)
                .position(|w| w == node.as_slice())
                .expect("the node is in its row");
            bytes[at] ^= 1;
            table.insert(entry, bytes.as_slice()).unwrap();
        });
        size
    }

    /// A stopped store of `n` fillers whose closing checkpoint is taken away, as a crash before
    /// it would leave: its newest checkpoint is then well before its last record. One row per
    /// entry (format 3), so a test can rewrite one row. Returns that checkpoint's size.
    async fn uncheckpointed(path: &Path, n: u64) -> u64 {
        fill_and_stop(open(path), 0, n).await;
        let last = newest_checkpoint(path).0;
        edit(path, |txn| {
            txn.open_table(CHECKPOINTS).unwrap().remove(last).unwrap();
        });
        rewrite_as_format_3(path);
        // The clean stop left redb holding everything; its journal would name the checkpoint.
        std::fs::remove_file(super::journal_path(path)).unwrap();
        newest_checkpoint(path).1.checkpoint.size
    }

    /// Replaces row `seq` (one row per entry) by `change` of its nodes and record.
    fn rewrite_row(path: &Path, seq: u64, change: impl FnOnce(&mut Vec<Hash>, &mut Vec<u8>)) {
        edit(path, |txn| {
            let mut table = txn.open_table(RECORDS).unwrap();
            let bytes = table.get(seq).unwrap().unwrap().value().to_vec();
            let entry = Entry::parse(seq, &bytes).unwrap();
            let (nodes, record) = entry.row(seq).unwrap();
            let mut hashes: Vec<Hash> = nodes
                .chunks(32)
                .map(|h| Hash::from_slice(h).unwrap())
                .collect();
            let mut record = record.to_vec();
            change(&mut hashes, &mut record);
            let mut row = Vec::new();
            pack_row(&mut row, &hashes, &record);
            table.insert(seq, row.as_slice()).unwrap();
        });
    }

    /// Rows past the newest checkpoint are covered by no signature yet, and the next checkpoint
    /// is cut from them: a node there that its record does not give is refused at open, naming
    /// its row, whether it sits inside the tree or on its right edge.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_past_the_newest_checkpoint_its_records_do_not_give_is_refused() {
        // The store as the crash left it opens: what the other cases change is all that differs.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let cp = uncheckpointed(&path, 40).await;
        assert!(cp < 24, "the newest checkpoint is at size {cp}");
        open(&path).shutdown();

        // Row 31 holds nodes of levels 1 to 5: level 1 (leaves 30 and 31) is inside the tree,
        // level 5 (leaves 0 to 31) is on the right edge of the tree of 40.
        for level in [1usize, 5] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("log.redb");
            uncheckpointed(&path, 40).await;
            rewrite_row(&path, 31, |nodes, _| nodes[level - 1].0[0] ^= 1);
            match RedbStore::open(&path, options(), TestFold::default()) {
                Err(StoreError::Corrupt { seq, what }) => {
                    assert_eq!(seq.0, 31, "level {level}: {what}");
                    assert!(
                        what.contains("stored Merkle nodes are not the ones"),
                        "{what}"
                    );
                }
                Err(e) => panic!("level {level}: refused for another reason: {e}"),
                Ok(_) => panic!("level {level}: a changed node past the checkpoint was opened"),
            }
        }
    }

    /// A record past the newest checkpoint changed on disk (its bytes still a record) is found
    /// at the next, whose `prev` no longer names it, before any state is rebuilt from it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_past_the_newest_checkpoint_changed_on_disk_is_refused_at_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        uncheckpointed(&path, 40).await;
        rewrite_row(&path, 30, |_, record| {
            let at = record
                .windows(8)
                .position(|w| w == b"user-29@")
                .expect("record 30 holds filler 29");
            record[at + 6] = b'8';
        });
        match RedbStore::open(&path, options(), TestFold::default()) {
            Err(StoreError::Corrupt { seq, what }) => {
                assert_eq!(seq.0, 31, "{what}");
                assert!(what.contains("its prev is not the leaf hash"), "{what}");
            }
            Err(e) => panic!("refused for another reason: {e}"),
            Ok(_) => panic!("a changed record was opened"),
        }
    }

    /// The newest stored checkpoint's note with this key's signature line that does not verify
    /// is damage, named by the checkpoint's number; only a note with no line of this key says
    /// the keys are not the log's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_signature_on_the_newest_checkpoint_is_corruption_not_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        fill_and_stop(open(&path), 0, 9).await;
        let last = {
            let db = Database::open(&path).unwrap();
            let txn = db.begin_read().unwrap();
            txn.open_table(CHECKPOINTS).unwrap().len().unwrap() - 1
        };
        edit(&path, |txn| {
            let mut table = txn.open_table(CHECKPOINTS).unwrap();
            let mut note = table.get(last).unwrap().unwrap().value().to_owned();
            // A character well inside the signature, past its key id.
            let at = note.trim_end().len() - 10;
            let flipped = if note.as_bytes()[at] == b'A' {
                "B"
            } else {
                "A"
            };
            note.replace_range(at..=at, flipped);
            table.insert(last, note.as_str()).unwrap();
        });
        match RedbStore::open(&path, options(), TestFold::default()) {
            Err(StoreError::Corrupt { what, .. }) => {
                assert!(
                    what.contains(&format!("stored checkpoint {last} does not verify")),
                    "{what}"
                );
            }
            Err(e) => panic!("refused as {e}"),
            Ok(_) => panic!("a checkpoint whose signature does not verify was opened"),
        }
    }

    /// A proof asked within a tree larger than the log is the asker's mistake, said as such,
    /// from the writer and from a reader; not a record reported missing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_proof_past_the_log_says_how_many_records_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let store = open(&path);
        store.append((0..9).map(filler).collect()).await.unwrap();
        let size = store.head().size;
        for err in [
            store.inclusion_proof(3, size + 5).unwrap_err(),
            store.consistency_proof(2, size + 5).unwrap_err(),
        ] {
            assert!(
                matches!(&err, StoreError::Io(what)
                    if what.contains(&format!("no proof within a tree of {}", size + 5))
                    && what.contains(&format!("the log holds {size}"))),
                "{err}"
            );
        }
        store.shutdown();
        drop(store);
        let reader = LogReader::open(&path).unwrap();
        let err = reader.inclusion_proof(3, size + 5).unwrap_err();
        assert!(err.to_string().contains("no proof within a tree"), "{err}");
    }

    /// A row that lost a node the tree's right edge needs is corruption at that row, with the
    /// node named, for the writer and for a reader's proof; not an I/O error that says nowhere.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_missing_from_its_row_is_named_with_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        fill_and_stop(open(&path), 0, 40).await;
        rewrite_as_format_3(&path);
        rewrite_row(&path, 31, |nodes, _| nodes.clear());
        let writer = RedbStore::open(&path, options(), TestFold::default())
            .err()
            .expect("a store missing a node of its right edge was opened");
        let reader = LogReader::open(&path).unwrap();
        for err in [
            writer,
            reader
                .inclusion_proof(3, 40)
                .expect_err("a proof through a missing node was served"),
        ] {
            match err {
                StoreError::Corrupt { seq, what } => {
                    assert_eq!(seq.0, 31, "{what}");
                    assert!(what.contains("Merkle node (level "), "{what}");
                    assert!(what.contains(") is not stored in its row"), "{what}");
                }
                e => panic!("refused as {e}, not as corruption at row 31"),
            }
        }
    }

    /// A journal longer than any this store writes (a damaged length, another file) is refused
    /// by the writer and by a reader with its size, not read whole into memory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_journal_longer_than_any_the_store_writes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        fill_and_stop(open(&path), 0, 5).await;
        let journal = super::journal_path(&path);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&journal)
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        for err in [
            LogReader::open(&path).err().map(|e| e.to_string()),
            RedbStore::open(&path, options(), TestFold::default())
                .err()
                .map(|e| e.to_string()),
        ] {
            let err = err.expect("a 1 TiB journal was opened");
            assert!(err.contains("the journal is 1099511627776 bytes"), "{err}");
        }
    }

    /// A format this build does not know is refused by the writer and by a reader.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_store_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        fill_and_stop(open(&path), 0, 5).await;
        edit(&path, |txn| {
            txn.open_table(META).unwrap().insert("format", 9).unwrap();
        });
        for err in [
            LogReader::open(&path).err().map(|e| e.to_string()),
            RedbStore::open(&path, options(), TestFold::default())
                .err()
                .map(|e| e.to_string()),
        ] {
            let err = err.expect("format 9 was opened");
            assert!(err.contains("store format 9"), "{err}");
        }
    }
}
