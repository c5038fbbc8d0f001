//! Opening the log under `--data` for writing: the bench's own log, never a gateway's.
//!
//! **Invariant:** the benches append only to a log whose origin is [`ORIGIN`]. A fresh
//! directory gets a new store with a generated checkpoint key, whose seed is saved as
//! `<data>/keys/checkpoint.key` (32 raw bytes, mode 0600, the gateway's layout) so that a rerun
//! signs with the same key and a verifier can pin it. An existing store is opened with that key
//! when it is there, and with a throwaway key (said on stderr) when it is not; a store whose
//! first record names another origin is refused, so a bench can never pollute a real audit log.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use events::checkpoint::NoteSigner;
use events::store::redb::{Options, RedbStore};
use events::store::{CheckpointPolicy, StoreError};
use projections::Projections;

use crate::fs_check::Refusal;

/// The origin of every log the benches create.
pub const ORIGIN: &str = "rack-bench.local/log";

/// `<data>/log.redb`.
pub fn log_path(data: &Path) -> PathBuf {
    data.join("log.redb")
}

fn key_path(data: &Path) -> PathBuf {
    data.join("keys").join("checkpoint.key")
}

/// Opens or creates the store at `<data>/log.redb` with `Projections::default()` as the state
/// (an existing log is folded into it before this returns).
pub fn open(data: &Path) -> Result<RedbStore<Projections>> {
    let path = log_path(data);
    let fresh = !path.exists();
    let key_file = key_path(data);
    let (signer, save) = if key_file.exists() {
        (load_key(&key_file)?, false)
    } else {
        if !fresh {
            eprintln!(
                "rack-bench: {} has no checkpoint key; checkpoints cut by this run are signed \
                 with a throwaway key",
                key_file.display()
            );
        }
        let signer = NoteSigner::generate(ORIGIN).context("cannot generate a checkpoint key")?;
        (signer, fresh)
    };
    let seed = *signer.seed();
    let options = Options {
        origin: ORIGIN.to_owned(),
        signer,
        policy: CheckpointPolicy::default(),
    };
    let store = match RedbStore::open(&path, options, Projections::default()) {
        Ok(store) => store,
        Err(StoreError::Incompatible(why)) => {
            return Err(Refusal(format!(
                "refusing to append to {}: it is not a rack-bench log ({why}); use an empty \
                 directory",
                path.display()
            ))
            .into());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    if save {
        save_key(&key_file, &seed)?;
    }
    Ok(store)
}

fn load_key(path: &Path) -> Result<NoteSigner> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let Ok(seed) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!(
            "{} is {} bytes, not a 32-byte seed",
            path.display(),
            bytes.len()
        );
    };
    NoteSigner::from_seed(ORIGIN, seed).context("bad checkpoint key")
}

fn save_key(path: &Path, seed: &[u8; 32]) -> Result<()> {
    let dir = path.parent().context("key path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(seed)?;
    f.sync_all()?;
    Ok(())
}
