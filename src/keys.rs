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
///
/// **Invariant:** what it HMACs directly into the log is a caller's text, always UTF-8
/// ([`crate::config::hmac_value`] takes a `str`); a key derived from it ([`AuditKey::derive`])
/// is `HMAC(audit key, 0xFF ‖ purpose)`, and no UTF-8 text holds the byte 0xFF. So no value a
/// caller sends is ever recorded as a derived key: sending the purpose's text records
/// `HMAC(audit key, purpose)`, another value.
#[derive(Clone)]
pub struct AuditKey(pub [u8; 32]);

/// What begins every input a key is derived from: a byte no UTF-8 text holds.
const DERIVED: u8 = 0xFF;

impl AuditKey {
    /// A key of its own for `purpose` (masks, configured secrets), from which the log's
    /// records of what callers send (under this key itself) tell nothing. `None` only if HMAC
    /// refused the key, which it never does for 32 bytes.
    pub fn derive(&self, purpose: &str) -> Option<[u8; 32]> {
        use hmac::{KeyInit, Mac};
        let mut derive = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.0).ok()?;
        derive.update(&[DERIVED]);
        derive.update(purpose.as_bytes());
        Some(derive.finalize().into_bytes().into())
    }
}

/// Why keys could not be created or loaded. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    // The cause is in the message only (see `PrivateFileError::Io`).
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error(
        "{path}: holds a log already; keys are made for a new log only: restore the keys it \
         was made with"
    )]
    LogExists { path: PathBuf },
    #[error("{path}: missing; run `rack-gateway keys init --data {data}` first")]
    Missing { path: PathBuf, data: String },
    #[error("{path}: {what}")]
    Malformed { path: PathBuf, what: String },
    #[error("{path}: mode {mode:03o} lets others read or change a key; chmod go-rwx it")]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "{path}: owned by uid {owner}, who could replace a key; chown it to the user the gateway runs as"
    )]
    Owner { path: PathBuf, owner: u32 },
    #[error("cannot generate a key: {0}")]
    Random(String),
}

// === impl Keys ===

impl Keys {
    /// Creates every key under `<data>/keys/`. Refuses if that directory already holds
    /// anything, or if `data` holds a log: new keys cannot continue a log (the store refuses a
    /// key that did not sign its newest checkpoint), and one made beside it would only stand
    /// in the way of restoring its own.
    ///
    /// The set appears whole or not at all: the keys are written and synced in
    /// `<data>/keys.partial/`, which is then renamed to `keys/`. An init cut short leaves no
    /// `keys/`, so the next one starts over (dropping the leftover, whose keys nothing used)
    /// instead of refusing a half-written set for ever.
    pub fn init(data: &Path, origin: &str) -> Result<Keys, KeyError> {
        let checkpoint =
            NoteSigner::generate(origin).map_err(|e| KeyError::Random(e.to_string()))?;
        let keys = Keys {
            audit: AuditKey(random()?),
            snapshot: SnapshotKey(random()?),
            checkpoint,
        };
        let log = crate::store::log_path(data);
        if log.exists() {
            return Err(KeyError::LogExists { path: log });
        }
        // One init at a time on a data directory: they share the staging directory.
        let _lock = lock_init(data)?;
        let staged = stage(data, &keys)?;
        publish(data, &staged)?;
        Ok(keys)
    }

    /// Loads every key. Refuses missing, malformed or group/world-readable key files.
    pub fn load(data: &Path) -> Result<Keys, KeyError> {
        let dir = data.join("keys");
        check_key_dir(&dir, data)?;
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

/// Where `init` writes a key set before it is published as `keys/`.
const STAGING: &str = "keys.partial";

/// Creates `data` if need be and takes `<data>/keys.lock`, waiting for an init that holds it;
/// released when the file is dropped.
fn lock_init(data: &Path) -> Result<fs::File, KeyError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .map_err(|source| KeyError::Io {
            path: data.to_owned(),
            error: source,
        })?;
    let path = data.join("keys.lock");
    let io = |source| KeyError::Io {
        path: path.clone(),
        error: source,
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    file.lock().map_err(io)?;
    Ok(file)
}

/// Writes every key file, synced, into a fresh `<data>/keys.partial/` and returns its path.
/// Refuses when `<data>/keys/` already holds anything, before writing. `data` exists (made by
/// [`lock_init`]).
fn stage(data: &Path, keys: &Keys) -> Result<PathBuf, KeyError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| KeyError::Io {
            path,
            error: source,
        }
    };
    let dir = data.join("keys");
    match fs::read_dir(&dir) {
        Ok(mut entries) => {
            if let Some(entry) = entries.next() {
                let path = entry.map(|e| e.path()).unwrap_or_else(|_| dir.clone());
                return Err(KeyError::Exists { path });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&dir)(e)),
    }
    let staged = data.join(STAGING);
    match fs::remove_dir_all(&staged) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&staged)(e)),
        _ => {}
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staged)
        .map_err(io(&staged))?;
    write_secret(
        &staged.join("checkpoint.key"),
        &private_key_text(&keys.checkpoint),
    )?;
    write_secret(&staged.join("audit.key"), &hex::encode(keys.audit.0))?;
    write_secret(&staged.join("snapshot.key"), &hex::encode(keys.snapshot.0))?;
    sync_dir(&staged)?;
    Ok(staged)
}

/// Renames a staged set to `<data>/keys/` and makes the rename durable. The rename replaces
/// only a missing or empty `keys/`, so a set published meanwhile is never replaced.
fn publish(data: &Path, staged: &Path) -> Result<(), KeyError> {
    let dir = data.join("keys");
    if let Err(source) = fs::rename(staged, &dir) {
        let _ = fs::remove_dir_all(staged);
        return Err(match source.kind() {
            std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists => {
                KeyError::Exists { path: dir }
            }
            _ => KeyError::Io {
                path: dir,
                error: source,
            },
        });
    }
    sync_dir(data)
}

fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| KeyError::Io {
            path: dir.to_owned(),
            error: source,
        })
}

/// Refuses a `keys/` directory that another user owns, or that its group or others may write
/// unless it is sticky: whoever may write it may swap a key file for one of their own, whatever
/// the files' modes.
fn check_key_dir(dir: &Path, data: &Path) -> Result<(), KeyError> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(KeyError::Missing {
                path: dir.to_owned(),
                data: data.display().to_string(),
            });
        }
        Err(source) => {
            return Err(KeyError::Io {
                path: dir.to_owned(),
                error: source,
            });
        }
    };
    if !meta.is_dir() {
        return Err(KeyError::Malformed {
            path: dir.to_owned(),
            what: "not a directory".into(),
        });
    }
    let owner = std::os::unix::fs::MetadataExt::uid(&meta);
    if !owned_by_us(owner, rustix::process::geteuid().as_raw()) {
        return Err(KeyError::Owner {
            path: dir.to_owned(),
            owner,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if others_may_replace(mode) {
        return Err(KeyError::Permissions {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Whether a directory's `owner` is the user the gateway runs as (`euid`) or root: any other
/// owner may replace the files in it, whatever their modes.
fn owned_by_us(owner: u32, euid: u32) -> bool {
    owner == 0 || owner == euid
}

/// Whether others may replace a file in a directory of `mode` that we own: its group or others
/// may write it, and it is not sticky (a tmpfs or secret volume mounted 1777, where others may
/// add files but not replace ours).
fn others_may_replace(mode: u32) -> bool {
    mode & 0o022 != 0 && mode & 0o1000 == 0
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
        PrivateFileError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            KeyError::Missing {
                path: path.to_owned(),
                data: data.display().to_string(),
            }
        }
        PrivateFileError::Io { error, .. } => KeyError::Io {
            path: path.to_owned(),
            error,
        },
        PrivateFileError::NotAFile { .. } => KeyError::Malformed {
            path: path.to_owned(),
            what: "not a regular file".into(),
        },
        PrivateFileError::Shared { mode, .. } | PrivateFileError::Writable { mode, .. } => {
            KeyError::Permissions {
                path: path.to_owned(),
                mode,
            }
        }
        e @ PrivateFileError::TooLarge { .. } => KeyError::Malformed {
            path: path.to_owned(),
            what: e.reason(),
        },
        PrivateFileError::Owner { owner, .. } => KeyError::Owner {
            path: path.to_owned(),
            owner,
        },
    })?;
    String::from_utf8(bytes).map_err(|_| KeyError::Io {
        path: path.to_owned(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
    })
}

/// Why a file holding a secret could not be read. Shown as the path, then [`Self::reason`].
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    // The cause is in the message, not a `source` too: printed with its chain (`{e:#}`), it
    // would be said twice.
    #[error("{path}: {}", self.reason())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {}", self.reason())]
    NotAFile { path: PathBuf },
    #[error("{path}: {}", self.reason())]
    Shared { path: PathBuf, mode: u32 },
    #[error("{path}: {}", self.reason())]
    Owner { path: PathBuf, owner: u32 },
    #[error("{path}: {}", self.reason())]
    Writable { path: PathBuf, mode: u32 },
    #[error("{path}: {}", self.reason())]
    TooLarge { path: PathBuf, size: u64 },
}

impl PrivateFileError {
    /// The reason without the path, for a file an operator's setting names: the setting is
    /// named instead, since a secret pasted where its path goes would be printed as the path.
    pub fn reason(&self) -> String {
        match self {
            PrivateFileError::Io { error, .. } => format!("cannot be read: {error}"),
            PrivateFileError::NotAFile { .. } => "is not a regular file".into(),
            PrivateFileError::Owner { owner, .. } => format!(
                "is owned by uid {owner}, who could change it; chown it to the user the gateway \
                 runs as"
            ),
            PrivateFileError::Shared { mode, .. } => {
                format!(
                    "has mode {mode:03o}, which lets others read or change a secret; chmod 600 it"
                )
            }
            PrivateFileError::Writable { mode, .. } => format!(
                "has mode {mode:03o}, which lets others change what the gateway trusts; chmod \
                 go-w it"
            ),
            PrivateFileError::TooLarge { size, .. } => format!(
                "is {size} bytes, more than any file of this kind ({MAX_GUARDED_FILE} at most); \
                 check the path"
            ),
        }
    }
}

/// The largest file [`read_private`] or [`read_trusted`] reads: far above any key, PEM bundle
/// or configuration, so a wrong path (a log, an image) is refused with its size, not read
/// whole.
pub const MAX_GUARDED_FILE: u64 = 16 << 20;

/// Reads a file that holds a secret (a key file, the rack password, the TLS key), refusing one
/// that its group or others may read or write, or that another user than the gateway's (or
/// root) owns: a secret on disk is only as private as its mode, and its owner may change it
/// whatever the mode (a `keys` link into a sticky `/tmp` would pass the directory's checks,
/// with another user's files in it). The mode and owner are those of the file opened, so a
/// file swapped in after the check is not the one read.
pub fn read_private(path: &Path) -> Result<Vec<u8>, PrivateFileError> {
    read_guarded(path, 0o077)
}

/// Reads a file that decides where the gateway sends secrets or whom it trusts (the
/// configuration, the rack's CA bundle). Anyone may read it, but one that its group or others
/// may write, or that another user than the gateway's (or root) owns, is refused: whoever may
/// change it may point the gateway, and the rack password with it, at another host. Checked
/// on the file opened, as [`read_private`] does.
pub fn read_trusted(path: &Path) -> Result<Vec<u8>, PrivateFileError> {
    read_guarded(path, 0o022)
}

/// Reads `path`, refused unless it is a regular file of at most [`MAX_GUARDED_FILE`] bytes,
/// owned by the gateway's user or root, with none of the `forbidden` mode bits. Opened without
/// blocking, so a FIFO named by mistake is refused rather than waited on.
fn read_guarded(path: &Path, forbidden: u32) -> Result<Vec<u8>, PrivateFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |error| PrivateFileError::Io {
        path: path.to_owned(),
        error,
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(PrivateFileError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & forbidden != 0 {
        return Err(if forbidden & 0o044 != 0 {
            PrivateFileError::Shared {
                path: path.to_owned(),
                mode,
            }
        } else {
            PrivateFileError::Writable {
                path: path.to_owned(),
                mode,
            }
        });
    }
    let owner = std::os::unix::fs::MetadataExt::uid(&meta);
    if !owned_by_us(owner, rustix::process::geteuid().as_raw()) {
        return Err(PrivateFileError::Owner {
            path: path.to_owned(),
            owner,
        });
    }
    if meta.len() > MAX_GUARDED_FILE {
        return Err(PrivateFileError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_GUARDED_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_GUARDED_FILE {
        return Err(PrivateFileError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

fn write_secret(path: &Path, text: &str) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        error: source,
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
        let keys = dir.path().join("keys");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: missing", keys.display())),
            "{e}"
        );
        fs::create_dir(&keys).unwrap();
        let e = Keys::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("checkpoint.key: missing"), "{e}");
        fs::remove_dir(&keys).unwrap();
        Keys::init(dir.path(), "t.example/log").unwrap();
        let p = dir.path().join("keys/audit.key");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Keys::load(dir.path()),
            Err(KeyError::Permissions { .. })
        ));
    }

    #[test]
    fn an_init_cut_short_leaves_no_key_set_and_the_next_one_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let abandoned = Keys {
            checkpoint: NoteSigner::from_seed("t.example/log", [7; 32]).unwrap(),
            audit: AuditKey([1; 32]),
            snapshot: SnapshotKey([2; 32]),
        };
        // A crash between writing the files and publishing them.
        let staged = stage(dir.path(), &abandoned).unwrap();
        fs::remove_file(staged.join("snapshot.key")).unwrap();
        assert!(matches!(
            Keys::load(dir.path()),
            Err(KeyError::Missing { .. })
        ));
        let made = Keys::init(dir.path(), "t.example/log").unwrap();
        let loaded = Keys::load(dir.path()).unwrap();
        assert_eq!(made.audit.0, loaded.audit.0);
        assert_ne!(loaded.audit.0, abandoned.audit.0);
        assert!(!dir.path().join(STAGING).exists());
    }

    #[test]
    fn a_key_directory_others_may_write_is_refused_and_a_filled_one_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        Keys::init(dir.path(), "t.example/log").unwrap();
        let keys = dir.path().join("keys");
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o777)).unwrap();
        let e = Keys::load(dir.path()).unwrap_err();
        assert!(
            matches!(e, KeyError::Permissions { mode: 0o777, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("keys"), "{e}");
        // Sticky: others may add files there, but not replace ours.
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o1777)).unwrap();
        Keys::load(dir.path()).unwrap();
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o700)).unwrap();
        Keys::load(dir.path()).unwrap();

        // A set published between the check and the rename is not replaced.
        let other = tempfile::tempdir().unwrap();
        let signer = NoteSigner::from_seed("t.example/log", [9; 32]).unwrap();
        let staged = stage(
            other.path(),
            &Keys {
                checkpoint: signer,
                audit: AuditKey([3; 32]),
                snapshot: SnapshotKey([4; 32]),
            },
        )
        .unwrap();
        fs::create_dir(other.path().join("keys")).unwrap();
        fs::write(other.path().join("keys/audit.key"), "x").unwrap();
        assert!(matches!(
            publish(other.path(), &staged),
            Err(KeyError::Exists { .. })
        ));
        assert_eq!(fs::read(other.path().join("keys/audit.key")).unwrap(), b"x");
    }

    /// A secret file another user owns is refused, whatever its mode. (Making one takes root;
    /// the gateway's tests run as root.)
    #[test]
    fn a_secret_file_another_user_owns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        fs::write(&path, "s").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private(&path).unwrap(), b"s");
        let nobody = 65534;
        std::os::unix::fs::chown(&path, Some(nobody), None)
            .expect("this test changes a file's owner, which needs root");
        let refused = read_private(&path).unwrap_err();
        assert!(
            matches!(refused, PrivateFileError::Owner { owner, .. } if owner == nobody),
            "{refused}"
        );
    }

    #[test]
    fn a_key_directory_others_may_replace_files_in_is_found() {
        let (me, other) = (1000, 1001);
        assert!(owned_by_us(me, me) && owned_by_us(0, me));
        assert!(
            !owned_by_us(other, me),
            "its owner may replace any file in it"
        );
        assert!(!others_may_replace(0o700));
        assert!(!others_may_replace(0o755));
        assert!(others_may_replace(0o770), "group-writable");
        assert!(others_may_replace(0o777), "world-writable");
        assert!(!others_may_replace(0o1777), "sticky");
    }

    #[test]
    fn an_init_waits_for_one_in_progress_on_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_owned();
        let held = lock_init(&data).unwrap();
        let waiting = std::thread::spawn(move || Keys::init(&data, "t.example/log"));
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!waiting.is_finished(), "it did not wait for the lock");
        assert!(!dir.path().join(STAGING).exists());
        drop(held);
        let made = waiting.join().unwrap().unwrap();
        assert_eq!(Keys::load(dir.path()).unwrap().vkey(), made.vkey());
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
