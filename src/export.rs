//! The local compliance export: sealed segments, their manifests and the checkpoints, written
//! under the deterministic keys of `events::export` (the S3 export writes the same layout).
//!
//! Segment boundaries are the sizes at which the store cut checkpoints, so each segment is
//! sealed by the checkpoint covering its end, and the same store always exports the same bytes.
//!
//! **Invariant:** objects are immutable. Re-running the export adopts an existing object only
//! if its bytes are identical, writes the missing ones, and refuses (naming the object) if any
//! existing object differs; it never overwrites.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use events::checkpoint::SignedCheckpoint;
use events::event::Event;
use events::export::{self, KeyRef, Manifest, ObjectRef};
use events::hash;
use events::record;
use events::store::StoreError;
use events::store::redb::LogReader;

/// What an export wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub records: u64,
    pub segments: u64,
    pub checkpoints: u64,
    pub written: u64,
    pub adopted: u64,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read the store: {0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: already exported with different content; refusing to overwrite")]
    Conflict { key: String },
    #[error("seq {seq}: {what}")]
    Record { seq: u64, what: String },
    #[error("the store holds no checkpoint yet; nothing is sealed")]
    NothingSealed,
}

struct Writer<'a> {
    out: &'a Path,
    summary: ExportSummary,
}

// === impl Writer ===

impl Writer<'_> {
    /// Writes `bytes` at `key` unless an identical object is there; refuses a different one.
    ///
    /// Never follows a link and never replaces a file: the object is written to a temporary
    /// name that must not exist yet, then published with a hard link, which fails if anything
    /// took the object's name meanwhile (that is then compared like an earlier export's).
    fn put(&mut self, key: &str, bytes: &[u8]) -> Result<ObjectRef, ExportError> {
        let path = self.out.join(key);
        let io = |source| ExportError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
            if fs::symlink_metadata(dir)
                .map_err(io)?
                .file_type()
                .is_symlink()
            {
                return Err(io(std::io::Error::other(format!(
                    "{} is a symbolic link; an export writes only into its own directories",
                    dir.display()
                ))));
            }
        }
        let tmp = path.with_extension("partial");
        // A leftover of a run cut short, after its link or before (a link is removed, not
        // followed): an export holds no file its manifests do not name.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let published = match fs::symlink_metadata(&path) {
            Ok(_) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .map_err(io)?;
                f.write_all(bytes).map_err(io)?;
                f.sync_all().map_err(io)?;
                let linked = fs::hard_link(&tmp, &path);
                fs::remove_file(&tmp).map_err(io)?;
                match linked {
                    Ok(()) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                    Err(e) => return Err(io(e)),
                }
            }
            Err(e) => return Err(io(e)),
        };
        if published {
            self.summary.written += 1;
        } else {
            // A link is never adopted, whatever it points at.
            let link = fs::symlink_metadata(&path)
                .map_err(io)?
                .file_type()
                .is_symlink();
            if link || fs::read(&path).map_err(io)? != bytes {
                return Err(ExportError::Conflict {
                    key: key.to_owned(),
                });
            }
            self.summary.adopted += 1;
        }
        Ok(ObjectRef {
            key: key.to_owned(),
            sha256: hash::object_digest(bytes).to_hex(),
            size: bytes.len() as u64,
        })
    }
}

/// Exports the store at `log` (a `log.redb` file) into the directory `out`.
pub fn export_local(log: &Path, out: &Path) -> Result<ExportSummary, ExportError> {
    let reader = LogReader::open(log)?;
    let checkpoints = reader.checkpoints()?;
    if checkpoints.is_empty() {
        return Err(ExportError::NothingSealed);
    }
    let mut w = Writer {
        out,
        summary: ExportSummary::default(),
    };
    let mut keys: Vec<KeyRef> = Vec::new();
    let mut origin = String::new();
    let mut prev_manifest = "0".repeat(64);
    let mut pending: Vec<ObjectRef> = Vec::new();
    let mut start = 0u64;
    let mut index = 0u64;
    for (n, cp) in checkpoints.iter().enumerate() {
        let SignedCheckpoint { checkpoint, note } = cp;
        pending.push(w.put(&export::checkpoint_key(n as u64), note.as_bytes())?);
        let end = checkpoint.size;
        if end <= start {
            continue; // A heartbeat: listed by the next manifest.
        }
        let segment = collect_segment(&reader, start, end, &mut keys, &mut origin)?;
        let seg_ref = w.put(&export::segment_key(start, end), &segment)?;
        let manifest = Manifest {
            version: export::MANIFEST_VERSION,
            origin: origin.clone(),
            index,
            first: start,
            end,
            segment: seg_ref,
            checkpoints: std::mem::take(&mut pending),
            prev_manifest_sha256: prev_manifest.clone(),
            keys: keys.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| ExportError::Record {
            seq: start,
            what: format!("cannot encode the manifest: {e}"),
        })?;
        bytes.push(b'\n');
        let r = w.put(&export::manifest_key(index), &bytes)?;
        prev_manifest = r.sha256;
        w.summary.segments += 1;
        index += 1;
        start = end;
    }
    w.summary.records = start;
    w.summary.checkpoints = checkpoints.len() as u64;
    Ok(w.summary)
}

/// The records `[start, end)` as one CBOR sequence; notes the origin and key history.
fn collect_segment(
    reader: &LogReader,
    start: u64,
    end: u64,
    keys: &mut Vec<KeyRef>,
    origin: &mut String,
) -> Result<Vec<u8>, ExportError> {
    let mut segment = Vec::new();
    let mut expected = start;
    reader.for_each_raw(start..end, |seq, bytes| {
        if seq != expected {
            return Err(StoreError::Corrupt {
                seq: events::seq::Seq(expected),
                what: format!("missing; found seq {seq}"),
            });
        }
        expected += 1;
        // Only the log's own key events need decoding; the rest are copied as stored.
        if seq == 0 || is_key_event(bytes) {
            let stored = record::decode(bytes).map_err(|e| StoreError::Corrupt {
                seq: events::seq::Seq(seq),
                what: e.to_string(),
            })?;
            match stored.record.event {
                Event::LogCreated {
                    origin: o,
                    checkpoint_key,
                } => {
                    *origin = o;
                    keys.push(KeyRef {
                        vkey: checkpoint_key,
                        from_size: seq,
                    });
                }
                Event::CheckpointKeyAdded { checkpoint_key, .. } => keys.push(KeyRef {
                    vkey: checkpoint_key,
                    from_size: seq,
                }),
                _ => {}
            }
        }
        segment.extend_from_slice(bytes);
        Ok(())
    })?;
    if expected != end {
        return Err(ExportError::Record {
            seq: expected,
            what: format!("the store ends before the checkpoint size {end}"),
        });
    }
    Ok(segment)
}

/// Whether stored bytes hold a key event, by looking for its code; a false positive only costs
/// a decode.
fn is_key_event(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w == b"G1000I" || w == b"G1001I")
}

#[cfg(test)]
mod tests {
    use events::event::{Event, Principal};
    use events::store::{CheckpointPolicy, EventStore};
    use events::verify::{self, DirSource, KeyTrust};

    use super::*;
    use crate::keys::Keys;
    use crate::store;

    async fn fill(data: &Path, n: u64) -> Keys {
        Keys::init(data, "export.test/log").unwrap();
        let policy = CheckpointPolicy {
            every: 500,
            ..CheckpointPolicy::default()
        };
        let (store, keys) = store::open(data, policy).unwrap();
        for chunk in 0..n / 100 {
            let events = (0..100)
                .map(|i| Event::UserEnabled {
                    user: Principal(format!("u{}@example.com", chunk * 100 + i)),
                    by: Principal("system".into()),
                })
                .collect();
            store.append(events).await.unwrap();
        }
        keys
    }

    #[tokio::test]
    async fn export_verifies_pinned_and_a_second_run_adopts_everything() {
        let data = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let keys = fill(data.path(), 3000).await;
        let first = export_local(&store::log_path(data.path()), out.path()).unwrap();
        assert!(first.segments >= 6, "{first:?}");
        assert_eq!(first.adopted, 0);
        let s = verify::verify_export(
            &DirSource::new(out.path()),
            Some(&keys.vkey()),
            &mut verify::Quiet,
        )
        .unwrap();
        assert_eq!(s.trust, KeyTrust::Pinned);
        assert_eq!(s.records, first.records);
        let again = export_local(&store::log_path(data.path()), out.path()).unwrap();
        assert_eq!(again.written, 0);
        assert_eq!(again.adopted, first.written);

        // A run cut short after publishing a checkpoint, before removing its staging file:
        // the next run adopts the checkpoint and leaves no file the manifests do not name.
        let note = out.path().join("checkpoints/0000000001.note");
        fs::copy(&note, note.with_extension("partial")).unwrap();
        export_local(&store::log_path(data.path()), out.path()).unwrap();
        verify::verify_export(
            &DirSource::new(out.path()),
            Some(&keys.vkey()),
            &mut verify::Quiet,
        )
        .unwrap();
    }

    /// An export cut short after it wrote a checkpoint, before the segment and manifest that
    /// checkpoint seals: the verifier fails it as records missing from the end and says that a
    /// run cut short looks the same; running the export again completes it.
    #[tokio::test]
    async fn an_export_cut_short_is_told_as_such_and_completed_by_the_next_run() {
        let data = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let keys = fill(data.path(), 1000).await;
        let log = store::log_path(data.path());
        let full = export_local(&log, out.path()).unwrap();
        let last = full.segments - 1;
        let manifest = out.path().join(export::manifest_key(last));
        let m: Manifest = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
        fs::remove_file(out.path().join(&m.segment.key)).unwrap();
        fs::remove_file(&manifest).unwrap();
        let verify = || {
            verify::verify_export(
                &DirSource::new(out.path()),
                Some(&keys.vkey()),
                &mut verify::Quiet,
            )
        };
        let e = verify().unwrap_err();
        assert!(
            matches!(e, verify::VerifyError::Truncated { seq, .. } if seq == m.first),
            "{e}"
        );
        assert!(e.to_string().contains("run the export again"), "{e}");
        let again = export_local(&log, out.path()).unwrap();
        assert_eq!(again.written, 2, "the segment and its manifest");
        assert_eq!(verify().unwrap().records, full.records);
    }

    #[tokio::test]
    async fn an_object_that_differs_is_never_overwritten() {
        let data = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        fill(data.path(), 1000).await;
        export_local(&store::log_path(data.path()), out.path()).unwrap();
        let seg = fs::read_dir(out.path().join("segments"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = fs::read(&seg).unwrap();
        bytes[10] ^= 1;
        fs::write(&seg, &bytes).unwrap();
        let e = export_local(&store::log_path(data.path()), out.path()).unwrap_err();
        assert!(matches!(e, ExportError::Conflict { .. }), "{e}");
        assert_eq!(
            fs::read(&seg).unwrap(),
            bytes,
            "the tampered object is left as evidence"
        );
        let v = verify::verify_export(&DirSource::new(out.path()), None, &mut verify::Quiet)
            .unwrap_err();
        assert_eq!(v.seq(), Some(0), "{v}");
    }

    /// Links planted in the export directory are never followed: a temporary name pointing at
    /// someone's file, an object's name pointing at one, or a directory that is a link.
    #[tokio::test]
    async fn an_export_never_writes_through_a_link() {
        let data = tempfile::tempdir().unwrap();
        fill(data.path(), 1000).await;
        let log = store::log_path(data.path());
        let first = tempfile::tempdir().unwrap();
        export_local(&log, first.path()).unwrap();
        let names: Vec<String> = fs::read_dir(first.path().join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let object = names.iter().find(|n| !n.ends_with(".partial")).unwrap();
        let victim_dir = tempfile::tempdir().unwrap();
        let victim = victim_dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();

        // A planted temporary name: removed, not followed.
        let out = tempfile::tempdir().unwrap();
        fs::create_dir(out.path().join("checkpoints")).unwrap();
        let tmp = out
            .path()
            .join("checkpoints")
            .join(object)
            .with_extension("partial");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        export_local(&log, out.path()).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");

        // An object's name taken by a link: refused, the target untouched.
        let out = tempfile::tempdir().unwrap();
        fs::create_dir(out.path().join("checkpoints")).unwrap();
        std::os::unix::fs::symlink(&victim, out.path().join("checkpoints").join(object)).unwrap();
        let e = export_local(&log, out.path()).unwrap_err();
        assert!(matches!(e, ExportError::Conflict { .. }), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");

        // A directory that is a link: refused, nothing written into its target.
        let out = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(victim_dir.path(), out.path().join("checkpoints")).unwrap();
        assert!(export_local(&log, out.path()).is_err());
        assert_eq!(fs::read_dir(victim_dir.path()).unwrap().count(), 1);
    }
}
