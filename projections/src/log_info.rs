//! What the log says about itself: its origin, the history of checkpoint keys, and the digests
//! of the snapshots that were recorded, so a snapshot can be matched to its event.

use events::event::Event;
use events::hash::Hash;
use events::record::Record;
use events::seq::Seq;

/// A checkpoint key and the tree size from which it signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    pub vkey: String,
    pub from_size: u64,
}

/// The log's own facts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogInfo {
    pub origin: String,
    pub keys: Vec<KeyEntry>,
    pub snapshots: Vec<(Seq, Hash)>,
    pub config_digest: Option<Hash>,
}

// === impl LogInfo ===

impl LogInfo {
    pub(crate) fn apply(&mut self, record: &Record) {
        match &record.event {
            Event::LogCreated {
                origin,
                checkpoint_key,
            } => {
                self.origin = origin.clone();
                self.keys.push(KeyEntry {
                    vkey: checkpoint_key.clone(),
                    from_size: record.seq.0,
                });
            }
            Event::CheckpointKeyAdded { checkpoint_key, .. } => self.keys.push(KeyEntry {
                vkey: checkpoint_key.clone(),
                from_size: record.seq.0,
            }),
            Event::SnapshotRecorded { covers, digest, .. } => {
                self.snapshots.push((*covers, *digest));
            }
            Event::ConfigApplied { digest, .. } => self.config_digest = Some(*digest),
            _ => {}
        }
    }

    /// Whether a snapshot with this digest, covering `covers` records, was recorded.
    pub fn has_snapshot(&self, covers: Seq, digest: &Hash) -> bool {
        self.snapshots
            .iter()
            .any(|(c, d)| *c == covers && d == digest)
    }
}
