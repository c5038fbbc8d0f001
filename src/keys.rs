//! The gateway's key files under `<data>/keys/`: created once by `keys init`, required after.
//!
//! - `checkpoint.key`: the Ed25519 checkpoint signing key, in the signed-note private key form
//!   `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`; its name is the log's origin.
//! - `audit.key`: the HMAC-SHA256 key for secret values in events (hex).
//! - `snapshot.key`: the MAC key of projection snapshots (hex).
//!
//! **Invariant:** key files are created with mode 0600 in a 0700 directory, never overwritten,
//! and never printed; only the public checkpoint key (the vkey) leaves this module as text.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use events::checkpoint::{NoteSigner, VerifierKey};
use projections::snapshot::SnapshotKey;

/// The origin a new log gets unless `keys init --origin` names another.
pub const DEFAULT_ORIGIN: &str = "rack-gateway.local/log";

/// The loaded keys. `Debug` shows only the public key.
pub struct Keys {
    pub checkpoint: NoteSigner,
    pub audit: AuditKey,
    pub snapshot: SnapshotKey,
}

/// The per-deployment key that HMACs secret values before they enter an event.
#[derive(Clone)]
pub struct AuditKey(pub [u8; 32]);

/// Why keys could not be created or loaded. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error("{path}: missing; run `rack-gateway keys init --data {data}` first")]
    Missing { path: PathBuf, data: String },
    #[error("{path}: {what}")]
    Malformed { path: PathBuf, what: String },
    #[error("{path}: mode {mode:o} lets others read a key; it must be 0600")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("cannot generate a key: {0}")]
    Random(String),
}

// === impl Keys ===

impl Keys {
    /// Creates every key under `<data>/keys/`. Refuses if any key file already exists.
    pub fn init(data: &Path, origin: &str) -> Result<Keys, KeyError> {
        let dir = data.join("keys");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| KeyError::Io {
                path: dir.clone(),
                source,
            })?;
        for name in ["checkpoint.key", "audit.key", "snapshot.key"] {
            let path = dir.join(name);
            if path.exists() {
                return Err(KeyError::Exists { path });
            }
        }
        let checkpoint =
            NoteSigner::generate(origin).map_err(|e| KeyError::Random(e.to_string()))?;
        let keys = Keys {
            audit: AuditKey(random()?),
            snapshot: SnapshotKey(random()?),
            checkpoint,
        };
        write_secret(
            &dir.join("checkpoint.key"),
            &private_key_text(&keys.checkpoint),
        )?;
        write_secret(&dir.join("audit.key"), &hex::encode(keys.audit.0))?;
        write_secret(&dir.join("snapshot.key"), &hex::encode(keys.snapshot.0))?;
        Ok(keys)
    }

    /// Loads every key. Refuses missing, malformed or group/world-readable key files.
    pub fn load(data: &Path) -> Result<Keys, KeyError> {
        let dir = data.join("keys");
        let checkpoint = parse_private_key(&dir.join("checkpoint.key"), data)?;
        let audit = AuditKey(read_hex32(&dir.join("audit.key"), data)?);
        let snapshot = SnapshotKey(read_hex32(&dir.join("snapshot.key"), data)?);
        Ok(Keys {
            checkpoint,
            audit,
            snapshot,
        })
    }

    /// The public checkpoint key in C2SP vkey form.
    pub fn vkey(&self) -> VerifierKey {
        self.checkpoint.verifier()
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Keys {{ checkpoint: {}, .. }}",
            self.checkpoint.verifier()
        )
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

fn random() -> Result<[u8; 32], KeyError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(b)
}

/// The signed-note private key text: `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
fn private_key_text(s: &NoteSigner) -> String {
    let mut raw = vec![1u8];
    raw.extend_from_slice(s.seed());
    format!(
        "PRIVATE+KEY+{}+{}+{}\n",
        s.name(),
        hex::encode(s.key_id()),
        STANDARD.encode(raw)
    )
}

fn parse_private_key(path: &Path, data: &Path) -> Result<NoteSigner, KeyError> {
    let text = read_secret(path, data)?;
    let bad = |what: &str| KeyError::Malformed {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    let rest = text
        .trim_end_matches('\n')
        .strip_prefix("PRIVATE+KEY+")
        .ok_or_else(|| bad("not a signed-note private key (PRIVATE+KEY+...)"))?;
    // Key names never contain '+', base64 may: split from the left.
    let mut parts = rest.splitn(3, '+');
    let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected PRIVATE+KEY+<name>+<id>+<key>"));
    };
    let raw = STANDARD.decode(b64).map_err(|_| bad("key is not base64"))?;
    let seed: [u8; 32] = match raw.split_first() {
        Some((1, seed)) => seed.try_into().map_err(|_| bad("key is not 32 bytes"))?,
        _ => return Err(bad("key type is not Ed25519 (0x01)")),
    };
    let signer = NoteSigner::from_seed(name, seed).map_err(|e| bad(&e.to_string()))?;
    if hex::encode(signer.key_id()) != id {
        return Err(bad("key id does not match the key"));
    }
    Ok(signer)
}

fn read_hex32(path: &Path, data: &Path) -> Result<[u8; 32], KeyError> {
    let text = read_secret(path, data)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).map_err(|_| KeyError::Malformed {
        path: path.to_owned(),
        what: "expected 64 hex digits".into(),
    })?;
    Ok(out)
}

fn read_secret(path: &Path, data: &Path) -> Result<String, KeyError> {
    let bytes = read_private(path).map_err(|e| match e {
        PrivateFileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            KeyError::Missing {
                path: path.to_owned(),
                data: data.display().to_string(),
            }
        }
        PrivateFileError::Io { source, .. } => KeyError::Io {
            path: path.to_owned(),
            source,
        },
        PrivateFileError::NotAFile { .. } => KeyError::Malformed {
            path: path.to_owned(),
            what: "not a regular file".into(),
        },
        PrivateFileError::Shared { mode, .. } => KeyError::Permissions {
            path: path.to_owned(),
            mode,
        },
    })?;
    String::from_utf8(bytes).map_err(|_| KeyError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
    })
}

/// Why a file holding a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path}: mode {mode:03o} lets others read or change a secret; chmod 600 it")]
    Shared { path: PathBuf, mode: u32 },
}

/// Reads a file that holds a secret (a key file, the rack password, the TLS key), refusing one
/// that its group or others may read or write: a secret on disk is only as private as its
/// mode. The mode is that of the file opened, so a file swapped in after the check is not the
/// one read.
pub fn read_private(path: &Path) -> Result<Vec<u8>, PrivateFileError> {
    use std::io::Read;
    let io = |source| PrivateFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(PrivateFileError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::Shared {
            path: path.to_owned(),
            mode,
        });
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    Ok(bytes)
}

fn write_secret(path: &Path, text: &str) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_load_gives_the_same_keys_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let made = Keys::init(dir.path(), "test.example/log").unwrap();
        let loaded = Keys::load(dir.path()).unwrap();
        assert_eq!(made.vkey(), loaded.vkey());
        assert_eq!(made.audit.0, loaded.audit.0);
        assert_eq!(made.snapshot.0, loaded.snapshot.0);
        assert!(matches!(
            Keys::init(dir.path(), "test.example/log"),
            Err(KeyError::Exists { .. })
        ));
        let mode = fs::metadata(dir.path().join("keys/checkpoint.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn readable_or_missing_keys_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = Keys::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("checkpoint.key"), "{e}");
        Keys::init(dir.path(), "t.example/log").unwrap();
        let p = dir.path().join("keys/audit.key");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Keys::load(dir.path()),
            Err(KeyError::Permissions { .. })
        ));
    }

    #[test]
    fn debug_never_shows_secret_material() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::init(dir.path(), "t.example/log").unwrap();
        let shown = format!("{keys:?} {:?} {:?}", keys.audit, keys.snapshot);
        assert!(!shown.contains(&hex::encode(keys.audit.0)));
        assert!(!shown.contains(&hex::encode(keys.snapshot.0)));
        assert!(!shown.contains(&STANDARD.encode(keys.checkpoint.seed())));
    }

    #[test]
    fn a_private_key_whose_base64_holds_a_plus_parses() {
        // Regression: the key text was split from the right, so a '+' in the base64 broke it.
        let dir = tempfile::tempdir().unwrap();
        let signer = NoteSigner::from_seed("t.example/log", [0xfb; 32]).unwrap();
        let text = private_key_text(&signer);
        assert!(
            text.rsplit('+').next().unwrap().len() < 40,
            "the fixture must hold a '+'"
        );
        let path = dir.path().join("checkpoint.key");
        write_secret(&path, &text).unwrap();
        let parsed = parse_private_key(&path, dir.path()).unwrap();
        assert_eq!(parsed.verifier(), signer.verifier());
    }
}
