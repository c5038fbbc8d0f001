//! What a PATH argument names: an export directory (it has `manifests/`) or a gateway data
//! directory (it has `log.redb`), and reading records and checkpoints from either.
//!
//! **Invariant:** both kinds are read only through `events` (the export layout and `LogReader`),
//! so the verifier sees exactly the bytes that were stored.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use events::export;
use events::store::redb::LogReader;
use events::verify::{DirSource, Limit, MAX_SEGMENT_BYTES, NOTE_LIMIT, Source};

/// A segment read by its name alone (`dump`, `prove`, `consistency`), where no manifest is
/// read to give its size: the verifier's own ceiling.
const LISTED_SEGMENT_LIMIT: Limit<'static> = Limit {
    max: MAX_SEGMENT_BYTES,
    set_by: "the largest segment the verifier reads",
    proves_alteration: false,
};

/// A verifiable input.
pub enum Input {
    Export(DirSource),
    Store(LogReader),
}

// === impl Input ===

impl Input {
    pub fn open(path: &Path) -> anyhow::Result<Input> {
        if path.join("manifests").is_dir() {
            return Ok(Input::Export(DirSource::new(path)));
        }
        let log: PathBuf = if path.is_file() {
            path.to_owned()
        } else {
            path.join("log.redb")
        };
        if log.is_file() {
            let reader = LogReader::open(&log)
                .with_context(|| format!("{}: cannot open the store", log.display()))?;
            return Ok(Input::Store(reader));
        }
        bail!(
            "{}: neither an export directory (manifests/) nor a data directory (log.redb)",
            path.display()
        )
    }

    /// Every checkpoint note, numbered in the order cut.
    pub fn checkpoints(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        match self {
            Input::Export(src) => src
                .list("checkpoints/")?
                .into_iter()
                .map(|k| {
                    let bytes = src
                        .get(&k, NOTE_LIMIT)?
                        .with_context(|| format!("{k}: missing"))?;
                    Ok((k, bytes))
                })
                .collect(),
            // Unparsed: a damaged note is the verifier's to name, as in an export.
            Input::Store(r) => Ok(r
                .checkpoint_notes()?
                .into_iter()
                .map(|(n, note)| (export::checkpoint_key(n), note.into_bytes()))
                .collect()),
        }
    }

    /// Calls `f` with each record's stored bytes in `[from, to)`, in order.
    pub fn for_each(
        &self,
        from: u64,
        to: u64,
        f: &mut dyn FnMut(u64, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        match self {
            Input::Store(r) => {
                let mut err = None;
                r.for_each_raw(from..to, |seq, bytes| match f(seq, bytes) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        err = Some(e);
                        Err(events::store::StoreError::Io("stopped".into()))
                    }
                })
                .map_err(|e| err.take().unwrap_or_else(|| e.into()))
            }
            Input::Export(src) => {
                for key in src.list("segments/")? {
                    let Some((first, end)) = export::parse_segment_key(&key) else {
                        bail!("{key}: not a segment name");
                    };
                    if end <= from || first >= to {
                        continue;
                    }
                    let bytes = src
                        .get(&key, LISTED_SEGMENT_LIMIT)?
                        .with_context(|| format!("{key}: missing"))?;
                    let (items, stop) = events::cbor::split_sequence(&bytes);
                    for ((at, len), seq) in items.into_iter().zip(first..) {
                        if (from..to).contains(&seq) {
                            f(seq, bytes.get(at..at + len).unwrap_or_default())?;
                        }
                    }
                    if let Some((offset, e)) = stop {
                        return Err(e).with_context(|| format!("{key}: record at byte {offset}"));
                    }
                }
                Ok(())
            }
        }
    }
}
