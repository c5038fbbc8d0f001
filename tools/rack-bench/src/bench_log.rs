//! Opening the log under `--data` for writing: the bench's own log, never a gateway's.
//!
//! **Invariant:** the benches append only to a log whose origin is [`ORIGIN`]. A fresh
//! directory gets the gateway's keys (`rack_gateway::keys::Keys::init`, origin [`ORIGIN`]), so
//! `rack-gateway keys show` and `audit export` work on it and a verifier can pin its key; an
//! existing directory must hold those keys. A store whose first record names another origin is
//! refused, so a bench can never pollute a real audit log.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use events::store::redb::{Options, RedbStore};
use events::store::{CheckpointPolicy, StoreError};
use projections::Projections;
use rack_gateway::keys::Keys;

use crate::fs_check::Refusal;

/// The origin of every log the benches create.
pub const ORIGIN: &str = "rack-bench.local/log";

/// `<data>/log.redb`.
pub fn log_path(data: &Path) -> PathBuf {
    rack_gateway::store::log_path(data)
}

/// Opens or creates the store at `<data>/log.redb` with `Projections::default()` as the state
/// (an existing log is folded into it before this returns).
pub fn open(data: &Path) -> Result<RedbStore<Projections>> {
    let path = log_path(data);
    let keys = if data.join("keys").exists() {
        Keys::load(data)?
    } else {
        match Keys::init(data, ORIGIN) {
            Ok(keys) => keys,
            // Another run on this directory made them meanwhile.
            Err(rack_gateway::keys::KeyError::Exists { .. }) => Keys::load(data)?,
            Err(e) => return Err(e.into()),
        }
    };
    if keys.checkpoint.name() != ORIGIN {
        return Err(Refusal(format!(
            "refusing to append to {}: its keys belong to the log {:?}, not a rack-bench log",
            data.display(),
            keys.checkpoint.name()
        ))
        .into());
    }
    let options = Options {
        origin: ORIGIN.to_owned(),
        signer: keys.checkpoint.clone(),
        policy: CheckpointPolicy::default(),
    };
    match RedbStore::open(&path, options, Projections::default()) {
        Ok(store) => Ok(store),
        Err(StoreError::Incompatible(why)) => Err(Refusal(format!(
            "refusing to append to {}: it is not a rack-bench log ({why}); use an empty directory",
            path.display()
        ))
        .into()),
        Err(e) => Err(e).with_context(|| format!("cannot open {}", path.display())),
    }
}
