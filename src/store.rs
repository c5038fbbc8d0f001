//! Opening the gateway's event store in a data directory: keys, the embedded store, and the
//! projections restored from the newest valid snapshot.
//!
//! **Invariant:** a snapshot is used only if its MAC verifies, it covers no more than the log
//! holds, and the log's record at the position it covers hashes to what it names; otherwise the
//! state is rebuilt from seq 0. The store refuses to open without the keys.

use std::path::{Path, PathBuf};

use events::event::Event;
use events::seq::Seq;
use events::store::redb::{LogReader, Options, RedbStore};
use events::store::{AppendError, CheckpointPolicy, EventStore, StoreError};
use projections::Projections;
use projections::snapshot;

use crate::keys::{KeyError, Keys};

/// The gateway's store type.
pub type Store = RedbStore<Projections>;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The data directory holds a log but not its keys: `keys init` makes keys for a new log
    /// only, so the message must not send the operator there.
    #[error(
        "{}: missing, while {} holds a log: restore the keys that log was made with (keys made \
         anew cannot continue it)",
        keys.display(),
        log.display()
    )]
    KeysMissing { keys: PathBuf, log: PathBuf },
    #[error("event store {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
}

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotWriteError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("cannot record the snapshot: {0}")]
    Append(#[from] AppendError),
}

/// The store file of a data directory.
pub fn log_path(data: &Path) -> PathBuf {
    data.join("log.redb")
}

/// The snapshot file of a data directory.
pub fn snapshot_path(data: &Path) -> PathBuf {
    data.join("snapshot.bin")
}

/// Opens the store of `data` with its keys, restoring the projections from the snapshot when it
/// is valid for this log.
pub fn open(data: &Path, policy: CheckpointPolicy) -> Result<(Store, Keys), OpenError> {
    open_keyed(data, keys(data)?, policy)
}

/// The keys of `data`, read before anything else of it is opened: a caller may refuse the log
/// they name (`serve` a dev log's) before opening writes to it. A log left without its keys is
/// named as such.
pub fn keys(data: &Path) -> Result<Keys, OpenError> {
    let path = log_path(data);
    match Keys::load(data) {
        Err(KeyError::Missing { .. }) if path.exists() => Err(OpenError::KeysMissing {
            keys: data.join("keys"),
            log: path,
        }),
        loaded => Ok(loaded?),
    }
}

/// As [`open`], with the keys [`keys`] read from `data`.
pub fn open_keyed(
    data: &Path,
    keys: Keys,
    policy: CheckpointPolicy,
) -> Result<(Store, Keys), OpenError> {
    let path = log_path(data);
    let restored = restore(data, &keys);
    // What the log must have recorded for the restored snapshot to be used.
    let recorded = restored.as_ref().map(|l| (l.covers, l.digest));
    let state = restored.map(|l| l.state);
    let options = |keys: &Keys| Options {
        origin: keys.checkpoint.name().to_owned(),
        signer: keys.checkpoint.clone(),
        policy,
    };
    let restored = state.is_some();
    let rebuilt = |keys: Keys, path: PathBuf| {
        RedbStore::open(&path, options(&keys), Projections::default())
            .map(|s| (s, keys))
            .map_err(|source| OpenError::Store { path, source })
    };
    match RedbStore::open(&path, options(&keys), state.unwrap_or_default()) {
        Ok(store)
            if recorded.is_none_or(|(covers, digest)| {
                store.with_state(|s| s.log.has_snapshot(covers, &digest))
            }) =>
        {
            Ok((store, keys))
        }
        // The snapshot authenticates but the log never recorded it: rebuild from seq 0.
        Ok(store) => {
            drop(store);
            snapshot_not_used(data, &"the log never recorded it");
            rebuilt(keys, path)
        }
        // A snapshot that does not fit this log is refused: rebuild from seq 0.
        Err(e @ (StoreError::Corrupt { .. } | StoreError::Incompatible(_))) if restored => {
            snapshot_not_used(data, &e);
            rebuilt(keys, path)
        }
        Err(source) => Err(OpenError::Store { path, source }),
    }
}

/// The snapshot if it authenticates and matches the log on disk. One that is there but is
/// refused is said on stderr, with why: the state is rebuilt from the log all the same, but a
/// snapshot that fails its MAC may have been forged, and its operator must hear of it.
fn restore(data: &Path, keys: &Keys) -> Option<snapshot::Loaded> {
    match judge_snapshot(data, keys) {
        Ok(loaded) => loaded,
        Err(why) => {
            snapshot_not_used(data, &why);
            None
        }
    }
}

/// Says on stderr that `data`'s snapshot was refused, and `why`.
fn snapshot_not_used(data: &Path, why: &dyn std::fmt::Display) {
    eprintln!(
        "rack-gateway: {} not used ({why}); the state is rebuilt from the log",
        snapshot_path(data).display()
    );
}

/// `Ok(None)` when there is no snapshot (or one of an empty log); `Err` says why one is
/// refused.
fn judge_snapshot(data: &Path, keys: &Keys) -> Result<Option<snapshot::Loaded>, String> {
    let path = snapshot_path(data);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
        Ok(m) if !m.is_file() => return Err("not a regular file".into()),
        Ok(_) => {}
    }
    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
    let loaded = snapshot::read(&bytes, &keys.snapshot).map_err(|e| e.to_string())?;
    let covers = loaded.covers.0;
    if covers == 0 {
        return Ok(None);
    }
    let reader = LogReader::open(&log_path(data)).map_err(|e| e.to_string())?;
    let at = reader
        .read_raw(covers - 1..covers)
        .map_err(|e| e.to_string())?;
    match at.first() {
        Some((_, bytes)) if events::hash::leaf_hash(bytes) == loaded.covers_hash => {
            Ok(Some(loaded))
        }
        Some(_) => Err(format!(
            "record {} of the log is not the one it names",
            covers - 1
        )),
        None => Err(format!(
            "it covers {covers} records, more than the log holds"
        )),
    }
}

/// Writes a snapshot of the current projections to `<data>/snapshot.bin` (atomically) and
/// records its digest as `SnapshotRecorded`, so a later start can tell it belongs to this log.
pub async fn write_snapshot(
    store: &Store,
    keys: &Keys,
    data: &Path,
) -> Result<Seq, SnapshotWriteError> {
    let (bytes, digest, covers, covers_hash) = store.with_state(|s| {
        snapshot::write(s, &keys.snapshot).map(|(b, d)| (b, d, Seq(s.len()), s.last_hash()))
    })?;
    let path = snapshot_path(data);
    let tmp = path.with_extension("partial");
    let io = |source| SnapshotWriteError::Io {
        path: tmp.clone(),
        source,
    };
    let written = write_private(&tmp, &bytes).map_err(io);
    let recorded = match written {
        Ok(()) => store
            .append(vec![Event::SnapshotRecorded {
                covers,
                covers_hash,
                digest,
            }])
            .await
            .map_err(SnapshotWriteError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        // Nothing half-made stays behind: the next start reads no file the log never recorded.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        SnapshotWriteError::Io {
            path: path.clone(),
            source,
        }
    })?;
    Ok(covers)
}

/// Writes `bytes` to a new file at `path` that only its owner may read (a snapshot holds the
/// roles and every token's hash, as the keys are kept), and syncs it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // A file left by an earlier attempt would keep its own mode: made anew.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// At a graceful stop, once nothing more is appended but the snapshot's own record: writes a
/// snapshot so the next start replays only what comes after it. A failure is said and leaves
/// the next start to an earlier snapshot, or to the whole log.
pub async fn snapshot_at_stop(store: &Store, keys: &Keys, data: &Path) {
    if let Err(e) = write_snapshot(store, keys, data).await {
        eprintln!(
            "rack-gateway: no snapshot was written at the stop ({e}); the next start replays the \
             log from an earlier snapshot, if one is valid, or from its start"
        );
    }
}

#[cfg(test)]
mod tests {
    use events::event::{Principal, Role};

    use super::*;

    async fn grant(store: &Store, n: usize) {
        for i in 0..n {
            store
                .append(vec![Event::RoleGranted {
                    user: Principal(format!("u{i}@example.com")),
                    role: Role::Ops,
                    by: Principal("system".into()),
                }])
                .await
                .unwrap();
        }
    }

    /// A log continues only with the keys it was made with: missing keys are not to be made
    /// anew beside it, and a key set made elsewhere (under the same origin) is refused before
    /// it signs anything; the log's own keys open it again.
    #[tokio::test]
    async fn a_log_opens_only_with_its_own_keys() {
        let data = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        Keys::init(data.path(), "keys.test/log").unwrap();
        let (store, _) = open(data.path(), CheckpointPolicy::default()).unwrap();
        grant(&store, 3).await;
        store.shutdown();
        drop(store);
        let stored = || {
            let reader = LogReader::open(&log_path(data.path())).unwrap();
            (reader.len().unwrap(), reader.checkpoint_notes().unwrap())
        };
        let before = stored();
        // Readable by the gateway's user alone, as the keys are.
        use std::os::unix::fs::PermissionsExt;
        let log = log_path(data.path());
        let journal = log.with_extension("redb.journal");
        for file in [&log, &journal] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }

        let own = data.path().join("keys");
        let kept = data.path().join("keys.kept");
        std::fs::rename(&own, &kept).unwrap();
        let missing = open(data.path(), CheckpointPolicy::default())
            .err()
            .unwrap();
        assert!(
            matches!(missing, OpenError::KeysMissing { .. })
                && missing.to_string().contains("restore the keys"),
            "{missing}"
        );
        let init = Keys::init(data.path(), "keys.test/log").err().unwrap();
        assert!(matches!(init, KeyError::LogExists { .. }), "{init}");
        assert!(!own.exists(), "no keys made beside the log");

        Keys::init(other.path(), "keys.test/log").unwrap();
        std::fs::rename(other.path().join("keys"), &own).unwrap();
        let foreign = open(data.path(), CheckpointPolicy::default())
            .err()
            .unwrap();
        assert!(
            foreign.to_string().contains("not signed by this key"),
            "{foreign}"
        );
        assert_eq!(stored(), before, "the foreign keys signed nothing");

        std::fs::remove_dir_all(&own).unwrap();
        std::fs::rename(&kept, &own).unwrap();
        let (store, _) = open(data.path(), CheckpointPolicy::default()).unwrap();
        assert_eq!(store.with_state(|s| s.identities.count_with(Role::Ops)), 3);
    }

    #[tokio::test]
    async fn a_recorded_snapshot_is_used_and_equals_a_rebuild() {
        let data = tempfile::tempdir().unwrap();
        Keys::init(data.path(), "snap.test/log").unwrap();
        let (store, keys) = open(data.path(), CheckpointPolicy::default()).unwrap();
        grant(&store, 20).await;
        let covers = write_snapshot(&store, &keys, data.path()).await.unwrap();
        // Roles and token hashes: for the gateway's user alone, as the keys are.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(snapshot_path(data.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        grant(&store, 5).await;
        let live = store.with_state(|s| s.clone());
        drop(store);
        assert!(restore(data.path(), &keys).is_some_and(|l| l.state.len() == covers.0));
        let (store, _) = open(data.path(), CheckpointPolicy::default()).unwrap();
        assert_eq!(store.with_state(|s| s.clone()), live);
    }

    #[tokio::test]
    async fn a_snapshot_of_another_log_or_unrecorded_is_refused_and_rebuilt() {
        let data = tempfile::tempdir().unwrap();
        Keys::init(data.path(), "snap.test/log").unwrap();
        let (store, keys) = open(data.path(), CheckpointPolicy::default()).unwrap();
        grant(&store, 10).await;
        let live = store.with_state(|s| s.clone());
        // A snapshot with a valid MAC whose state was never recorded in this log.
        let mut forged = live.clone();
        forged.identities = Default::default();
        let (bytes, _) = snapshot::write(&forged, &keys.snapshot).unwrap();
        std::fs::write(snapshot_path(data.path()), bytes).unwrap();
        drop(store);
        let (store, _) = open(data.path(), CheckpointPolicy::default()).unwrap();
        assert_eq!(
            store.with_state(|s| s.clone()),
            live,
            "the forged state was not used"
        );
        drop(store);
        std::fs::write(snapshot_path(data.path()), b"rgw-snapshot-v1\ngarbage").unwrap();
        let (store, _) = open(data.path(), CheckpointPolicy::default()).unwrap();
        assert_eq!(store.with_state(|s| s.clone()), live);
        drop(store);
        // Each refusal has its reason, which the open prints beside the rebuild; no snapshot
        // is no refusal.
        let judged = || judge_snapshot(data.path(), &keys);
        assert!(judged().is_err_and(|why| !why.is_empty()));
        std::fs::remove_file(snapshot_path(data.path())).unwrap();
        std::fs::create_dir(snapshot_path(data.path())).unwrap();
        assert_eq!(judged().err().as_deref(), Some("not a regular file"));
        std::fs::remove_dir(snapshot_path(data.path())).unwrap();
        assert!(matches!(judged(), Ok(None)));
    }
}
