//! Signed tree heads: C2SP checkpoints (<https://c2sp.org/tlog-checkpoint>), written as C2SP
//! signed notes (<https://c2sp.org/signed-note>) with Ed25519 signatures (signature type 0x01).
//!
//! A checkpoint, exactly as written and served:
//!
//! ```text
//! rack.example/audit
//! 1024
//! xXFKqN6su7pfaASw9GmeshGDX+a0oPIwejTUZUhYFsM=
//! timestamp 1767225600000000000
//!
//! — rack.example/audit ff0WLVQhxM4slncp4HfBj6CmPSBYTjuMoPxiohbL2Hyazp4vsyQUkYBgdiMxmHuE9Oirx1GUlnulLey2dcEs0+biiAU=
//! ```
//!
//! It opens with the vkey `rack.example/audit+7dfd162d+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs`
//! (the test `doc_example_opens` checks both).
//!
//! Its parts, line by line:
//!
//! 1. **origin**: the log's identity; our signer's key name is the same string.
//! 2. **tree size**: the number of leaves, ASCII decimal, no sign, no leading zeros (`0` if empty).
//! 3. **root hash**: standard base64 (with padding) of the 32-byte RFC 6962 Merkle root at that size.
//! 4. **`timestamp <n>`**: the one extension line we write and accept: the unix time in nanoseconds
//!    (signed decimal, canonical) at which the checkpoint was cut, so a heartbeat checkpoint over an
//!    unchanged tree still proves freshness.
//! 5. a **blank line**: the signed *body* is everything before it, including the body's final
//!    newline.
//! 6. **signature lines**: `—` (U+2014 EM DASH), a space, the key name, a space, and
//!    `base64(key id[4] || Ed25519 signature[64])`, where
//!    `key id = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[..4]`.
//!    The matching verifier key ("vkey") text is `<name>+<8 hex key id>+<base64(0x01 || public key)>`.
//!
//! Invariants:
//!
//! - A checkpoint is accepted only through [`open_checkpoint`] with a [`VerifierKey`] the caller
//!   trusts: it checks the origin and an Ed25519 signature by exactly that key (name and key id).
//!   [`parse_unverified`] exists only to choose which key to verify with; its result is not trusted.
//! - Parsing untrusted notes never panics: no indexing, no unwrap; a proptest feeds arbitrary and
//!   mutated notes. A note over [`MAX_NOTE_BYTES`] or with more than [`MAX_SIGNATURES`] signature
//!   lines is refused before any signature is checked.
//! - Accepted bodies are canonical: for every checkpoint `cp` that opens, `cp.body()` is byte for
//!   byte the body that was signed, so a checkpoint has exactly one signed text.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::hash::Hash;
use crate::time::Timestamp;

/// The largest note [`open_checkpoint`], [`parse_unverified`] and [`verify_note`] look at: 1 MiB.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

/// The most signature lines a note may carry (the limit of golang.org/x/mod/sumdb/note).
pub const MAX_SIGNATURES: usize = 100;

/// The signed-note signature type of Ed25519.
const SIG_TYPE_ED25519: u8 = 0x01;

/// What every signature line starts with: U+2014 EM DASH and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// The one extension line a checkpoint carries starts with this.
const TIMESTAMP_PREFIX: &str = "timestamp ";

/// A tree head: the log `origin` had `size` leaves with Merkle root `root` at `time`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity; must be non-empty and hold no newline or other control character, or
    /// the signed note will not open.
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// When the checkpoint was cut (the `timestamp` extension line).
    pub time: Timestamp,
}

/// A signing key: an Ed25519 seed plus the key name (our origin). Debug and Display show only the
/// name and key id, never the seed; the key is zeroized when dropped. Cloning is allowed so the
/// sequencer can own a copy while the gateway keeps its own.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: [u8; 4],
    key: SigningKey,
}

/// A verifier key: a key name, its 4-byte key id and an Ed25519 public key. Display (and Debug)
/// give the vkey text `<name>+<8 hex key id>+<base64(0x01 || public key)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

/// A checkpoint plus its exact note bytes (body, blank line, one signature line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
}

/// Why a note, a key or a key name was refused. Lines are numbered from 1 in the note.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("note is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("note is not UTF-8: invalid byte at offset {offset} (line {line})")]
    NotUtf8 { line: usize, offset: usize },
    #[error("malformed note, line {line}: {what}")]
    Malformed { line: usize, what: &'static str },
    #[error("checkpoint is for origin {found:?}, expected {expected:?}")]
    OriginMismatch { expected: String, found: String },
    #[error("note has no signature line by key {key_name}+{key_id} (other signatures are ignored)")]
    NoMatchingSignature { key_name: String, key_id: String },
    #[error("signature on line {line} by key {key_name}+{key_id} does not verify")]
    BadSignature {
        key_name: String,
        key_id: String,
        line: usize,
    },
    #[error("invalid key name {name:?}: {what}")]
    BadKeyName { name: String, what: &'static str },
    #[error("bad verifier key: {0}")]
    BadKey(&'static str),
    #[error("cannot read the system random source: {0}")]
    Random(getrandom::Error),
}

/// A note split into its body and parsed signature lines; nothing verified yet.
struct Note<'a> {
    /// Everything before the separating blank line, including the body's final newline.
    body: &'a str,
    sigs: Vec<SigLine<'a>>,
}

/// One signature line: `— <name> <base64(key id || signature)>`.
struct SigLine<'a> {
    /// Line number in the note, from 1.
    line: usize,
    name: &'a str,
    key_id: [u8; 4],
    /// The signature bytes after the key id (any length ≥ 1; 64 for Ed25519).
    sig: Vec<u8>,
}

/// Parses and verifies a checkpoint note: the caller-side entry point.
///
/// Refuses a note that is malformed (strictly: see [`Checkpoint::body`] for the only accepted body
/// form), whose origin is not `origin`, that has no signature line whose key name and key id are
/// `key`'s, or where such a line does not verify. Signature lines by other keys are ignored
/// (C2SP signed-note), but still have to be well-formed.
pub fn open_checkpoint(
    note: &[u8],
    origin: &str,
    key: &VerifierKey,
) -> Result<Checkpoint, CheckpointError> {
    let parsed = Note::parse(note)?;
    let checkpoint = Checkpoint::parse_body(parsed.body)?;
    if checkpoint.origin != origin {
        return Err(CheckpointError::OriginMismatch {
            expected: origin.to_owned(),
            found: checkpoint.origin,
        });
    }
    parsed.verify(key)?;
    Ok(checkpoint)
}

/// Parses a checkpoint note without verifying any signature, returning the checkpoint and the
/// (key name, key id) of each signature line in order.
///
/// For the auditor's unpinned mode only: it picks the key from the export's key history by these
/// names and ids, then must still call [`open_checkpoint`]. Nothing returned here is trusted.
#[allow(
    clippy::type_complexity,
    reason = "the plain tuple is the interface the auditor uses"
)]
pub fn parse_unverified(
    note: &[u8],
) -> Result<(Checkpoint, Vec<(String, [u8; 4])>), CheckpointError> {
    let parsed = Note::parse(note)?;
    let checkpoint = Checkpoint::parse_body(parsed.body)?;
    let sigs = parsed
        .sigs
        .iter()
        .map(|s| (s.name.to_owned(), s.key_id))
        .collect();
    Ok((checkpoint, sigs))
}

/// Verifies any signed note (not only a checkpoint) against `key` and returns its body text,
/// including the body's final newline. [`open_checkpoint`] runs the same two steps (parse the note,
/// then verify) with the checkpoint and origin checks in between.
pub fn verify_note(note: &[u8], key: &VerifierKey) -> Result<String, CheckpointError> {
    let parsed = Note::parse(note)?;
    parsed.verify(key)?;
    Ok(parsed.body.to_owned())
}

// === impl Checkpoint ===

impl Checkpoint {
    /// The note body text (what is signed):
    /// `<origin>\n<size>\n<base64 root>\ntimestamp <unix ns>\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n{TIMESTAMP_PREFIX}{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root.0),
            self.time.as_nanos()
        )
    }

    /// Parses a body strictly: exactly the four lines [`Checkpoint::body`] writes, in canonical
    /// form.
    fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
        let malformed = |line, what| CheckpointError::Malformed { line, what };
        // Note::parse cuts the body after a newline; a body without one is not a note body.
        let Some(text) = body.strip_suffix('\n') else {
            return Err(malformed(1, "note body does not end in a newline"));
        };
        let mut lines = text.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(malformed(1, "origin line is empty"));
        }
        let size_line = lines
            .next()
            .ok_or_else(|| malformed(2, "missing tree size line"))?;
        let size = parse_tree_size(size_line).map_err(|what| malformed(2, what))?;
        let root_line = lines
            .next()
            .ok_or_else(|| malformed(3, "missing root hash line"))?;
        let root = parse_root(root_line).map_err(|what| malformed(3, what))?;
        let time_line = lines
            .next()
            .ok_or_else(|| malformed(4, "missing `timestamp <unix ns>` extension line"))?;
        let time = parse_timestamp_line(time_line).map_err(|what| malformed(4, what))?;
        if lines.next().is_some() {
            return Err(malformed(
                5,
                "more than one extension line (only `timestamp <unix ns>` is allowed)",
            ));
        }
        let checkpoint = Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            time,
        };
        // Each field above is parsed canonically, so this holds; checked so that it stays so.
        if checkpoint.body() != body {
            return Err(malformed(1, "checkpoint body is not in canonical form"));
        }
        Ok(checkpoint)
    }
}

// === impl NoteSigner ===

impl NoteSigner {
    /// A new key from the system random source, named `name` (our origin).
    pub fn generate(name: &str) -> Result<NoteSigner, CheckpointError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(CheckpointError::Random)?;
        NoteSigner::from_seed(name, seed)
    }

    /// The key with this Ed25519 seed (RFC 8032 private key), named `name`. The name must be a
    /// valid signed-note key name: non-empty, no Unicode space, no `+`, no control character.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<NoteSigner, CheckpointError> {
        check_key_name(name).map_err(|what| CheckpointError::BadKeyName {
            name: name.to_owned(),
            what,
        })?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, &key.verifying_key());
        Ok(NoteSigner {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// The key name (our origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The 32-byte seed, for writing the key file (mode 0600) only.
    pub fn seed(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// The public half, to publish as a vkey.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs the checkpoint's body and returns the note: body, blank line, one signature line.
    /// The checkpoint's origin should be this key's name (C2SP says SHOULD), and must be non-empty
    /// with no control character, or the note will not open.
    pub fn sign(&self, cp: &Checkpoint) -> SignedCheckpoint {
        let body = cp.body();
        let sig_line = self.signature_line(&body);
        SignedCheckpoint {
            checkpoint: cp.clone(),
            note: format!("{body}\n{sig_line}"),
        }
    }

    /// The signature line over `body` (ending in a newline): `— <name> base64(key id || sig)\n`.
    fn signature_line(&self, body: &str) -> String {
        let sig = self.key.sign(body.as_bytes());
        let mut raw = Vec::with_capacity(4 + 64);
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(&sig.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.name, BASE64.encode(raw))
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

impl fmt::Display for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.name, hex::encode(self.key_id))
    }
}

// === impl VerifierKey ===

impl VerifierKey {
    /// Parses vkey text `<name>+<8 hex key id>+<base64(0x01 || 32-byte Ed25519 public key)>`.
    ///
    /// Refuses an invalid name, a key id that is not 8 hex digits or does not match the name and
    /// key, bad base64, a type byte other than 0x01, a key that is not 32 bytes, and a public key
    /// that is not a curve point or has small order.
    pub fn parse(vkey: &str) -> Result<VerifierKey, CheckpointError> {
        const SHAPE: &str = "vkey is not <name>+<8 hex key id>+<base64 key>";
        let (name, rest) = vkey.split_once('+').ok_or(CheckpointError::BadKey(SHAPE))?;
        let (id_hex, key_b64) = rest.split_once('+').ok_or(CheckpointError::BadKey(SHAPE))?;
        check_key_name(name).map_err(|what| CheckpointError::BadKeyName {
            name: name.to_owned(),
            what,
        })?;
        let mut id = [0u8; 4];
        if id_hex.len() != 8 || hex::decode_to_slice(id_hex, &mut id).is_err() {
            return Err(CheckpointError::BadKey("key id is not 8 hex digits"));
        }
        let raw = BASE64
            .decode(key_b64)
            .map_err(|_| CheckpointError::BadKey("key is not standard base64"))?;
        // As golang.org/x/mod/sumdb/note: the id covers the type byte and key, checked first.
        if key_id_of_raw(name, &raw) != id {
            return Err(CheckpointError::BadKey(
                "key id does not match the key name and key",
            ));
        }
        let Some((&sig_type, public)) = raw.split_first() else {
            return Err(CheckpointError::BadKey("key is empty"));
        };
        if sig_type != SIG_TYPE_ED25519 {
            return Err(CheckpointError::BadKey(
                "key type byte is not 0x01 (Ed25519)",
            ));
        }
        let public = <[u8; 32]>::try_from(public)
            .map_err(|_| CheckpointError::BadKey("Ed25519 public key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| {
            CheckpointError::BadKey("not an Ed25519 public key (not a curve point)")
        })?;
        VerifierKey::new(name, key)
    }

    /// The verifier key for an Ed25519 public key under `name`. Refuses an invalid name and a
    /// small-order ("weak") public key.
    pub fn new(name: &str, key: VerifyingKey) -> Result<VerifierKey, CheckpointError> {
        check_key_name(name).map_err(|what| CheckpointError::BadKeyName {
            name: name.to_owned(),
            what,
        })?;
        if key.is_weak() {
            return Err(CheckpointError::BadKey(
                "Ed25519 public key has small order",
            ));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id: key_id(name, &key),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(1 + 32);
        raw.push(SIG_TYPE_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            BASE64.encode(raw)
        )
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

// === impl Note ===

impl<'a> Note<'a> {
    /// Splits a signed note at its last blank line and parses every signature line, as
    /// golang.org/x/mod/sumdb/note's `Open` does, without verifying anything.
    fn parse(note: &'a [u8]) -> Result<Note<'a>, CheckpointError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(CheckpointError::TooLarge {
                size: note.len(),
                max: MAX_NOTE_BYTES,
            });
        }
        let text = std::str::from_utf8(note).map_err(|e| {
            let offset = e.valid_up_to();
            let before = note.get(..offset).unwrap_or_default();
            CheckpointError::NotUtf8 {
                line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
                offset,
            }
        })?;
        if let Some(at) = text.find(|c: char| c < ' ' && c != '\n') {
            return Err(CheckpointError::Malformed {
                line: line_at(text, at),
                what: "control character other than newline (CR, tab, ...)",
            });
        }
        let Some(split) = text.rfind("\n\n") else {
            return Err(CheckpointError::Malformed {
                line: text.lines().count().max(1),
                what: "no blank line between the body and the signatures",
            });
        };
        let (Some(body), Some(sigs)) = (text.get(..=split), text.get(split + 2..)) else {
            return Err(CheckpointError::Malformed {
                line: line_at(text, split),
                what: "no blank line between the body and the signatures",
            });
        };
        let first_sig_line = 2 + body.matches('\n').count();
        if sigs.is_empty() {
            return Err(CheckpointError::Malformed {
                line: first_sig_line,
                what: "no signature lines after the blank line",
            });
        }
        if !sigs.ends_with('\n') {
            return Err(CheckpointError::Malformed {
                line: first_sig_line + sigs.matches('\n').count(),
                what: "last signature line does not end in a newline",
            });
        }
        let mut parsed = Vec::new();
        for (i, line) in sigs.split_terminator('\n').enumerate() {
            let line_no = first_sig_line + i;
            if i >= MAX_SIGNATURES {
                return Err(CheckpointError::Malformed {
                    line: line_no,
                    what: "more than 100 signature lines",
                });
            }
            parsed.push(SigLine::parse(line, line_no)?);
        }
        Ok(Note { body, sigs: parsed })
    }

    /// Verifies every signature line whose name and key id are `key`'s; at least one must exist
    /// and all of them must verify. Lines by other keys are ignored.
    fn verify(&self, key: &VerifierKey) -> Result<(), CheckpointError> {
        let mut verified = false;
        for s in &self.sigs {
            if s.name != key.name || s.key_id != key.key_id {
                continue;
            }
            let ok = <[u8; 64]>::try_from(s.sig.as_slice()).is_ok_and(|bytes| {
                key.key
                    .verify_strict(self.body.as_bytes(), &Signature::from_bytes(&bytes))
                    .is_ok()
            });
            if !ok {
                return Err(CheckpointError::BadSignature {
                    key_name: key.name.clone(),
                    key_id: hex::encode(key.key_id),
                    line: s.line,
                });
            }
            verified = true;
        }
        if verified {
            Ok(())
        } else {
            Err(CheckpointError::NoMatchingSignature {
                key_name: key.name.clone(),
                key_id: hex::encode(key.key_id),
            })
        }
    }
}

// === impl SigLine ===

impl<'a> SigLine<'a> {
    fn parse(text: &'a str, line: usize) -> Result<SigLine<'a>, CheckpointError> {
        let malformed = |what| CheckpointError::Malformed { line, what };
        let rest = text.strip_prefix(SIG_PREFIX).ok_or_else(|| {
            malformed("signature line does not start with an em dash (U+2014) and a space")
        })?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| malformed("signature line has no space after the key name"))?;
        check_key_name(name).map_err(malformed)?;
        let raw = BASE64
            .decode(b64)
            .map_err(|_| malformed("signature is not standard base64"))?;
        let Some((key_id, sig)) = raw.split_first_chunk::<4>() else {
            return Err(malformed("signature is shorter than its 4-byte key id"));
        };
        if sig.is_empty() {
            return Err(malformed("signature has no bytes after its key id"));
        }
        Ok(SigLine {
            line,
            name,
            key_id: *key_id,
            sig: sig.to_vec(),
        })
    }
}

// === helpers ===

/// Key id: `SHA-256(name || 0x0A || 0x01 || public key)[..4]` (C2SP signed-note, Ed25519).
fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut raw = Vec::with_capacity(1 + 32);
    raw.push(SIG_TYPE_ED25519);
    raw.extend_from_slice(key.as_bytes());
    key_id_of_raw(name, &raw)
}

/// Key id over the encoded key (type byte then key bytes): `SHA-256(name || 0x0A || raw)[..4]`.
fn key_id_of_raw(name: &str, raw: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(raw);
    let digest: [u8; 32] = h.finalize().into();
    let [a, b, c, d, ..] = digest;
    [a, b, c, d]
}

/// A signed-note key name is non-empty with no Unicode space and no `+`; we also refuse control
/// characters (a note may not contain them anyway).
fn check_key_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("key name is empty")
    } else if name.contains(char::is_whitespace) {
        Err("key name contains a space")
    } else if name.contains('+') {
        Err("key name contains '+'")
    } else if name.contains(char::is_control) {
        Err("key name contains a control character")
    } else {
        Ok(())
    }
}

/// The line number (from 1) of byte offset `at` in `text`.
fn line_at(text: &str, at: usize) -> usize {
    1 + text
        .get(..at)
        .map_or(0, |before| before.matches('\n').count())
}

/// Canonical unsigned decimal: digits only, no leading zero unless exactly `0`, fits in a u64.
fn parse_tree_size(s: &str) -> Result<u64, &'static str> {
    if s.is_empty() {
        Err("tree size is empty")
    } else if !s.bytes().all(|b| b.is_ascii_digit()) {
        Err("tree size is not plain decimal digits (no sign, space or other text)")
    } else if s.len() > 1 && s.starts_with('0') {
        Err("tree size has a leading zero")
    } else {
        s.parse::<u64>()
            .map_err(|_| "tree size does not fit in 64 bits")
    }
}

/// Standard base64 (padded, canonical) of exactly 32 bytes.
fn parse_root(s: &str) -> Result<Hash, &'static str> {
    let raw = BASE64
        .decode(s)
        .map_err(|_| "root hash is not standard base64")?;
    Hash::from_slice(&raw).ok_or("root hash is not 32 bytes")
}

/// `timestamp <n>`, `n` in canonical signed decimal as `i64` displays it: an optional `-` (not
/// before `0`), then digits with no leading zero; fits in an i64.
fn parse_timestamp_line(s: &str) -> Result<Timestamp, &'static str> {
    let n = s
        .strip_prefix(TIMESTAMP_PREFIX)
        .ok_or("extension line is not `timestamp <unix ns>`")?;
    let digits = n.strip_prefix('-').unwrap_or(n);
    if digits.is_empty() {
        Err("timestamp is empty")
    } else if !digits.bytes().all(|b| b.is_ascii_digit()) {
        Err("timestamp is not decimal digits with an optional leading '-'")
    } else if digits.len() > 1 && digits.starts_with('0') {
        Err("timestamp has a leading zero")
    } else if digits.len() != n.len() && digits == "0" {
        Err("timestamp is negative zero")
    } else {
        n.parse::<i64>()
            .map(Timestamp)
            .map_err(|_| "timestamp does not fit in 64 bits")
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // --- Vectors from golang.org/x/mod/sumdb/note, note_test.go (TestNewVerifier, TestNewSigner,
    // --- TestSign, TestVerifierList, TestOpen; github.com/golang/mod at 02c991387e35) and the
    // --- package doc in note.go.

    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    /// The Go signer key `PRIVATE+KEY+PeterNeumann+c74f20a3+<base64(0x01 || seed)>`.
    const PETER_SKEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    fn go_note(sigs: &str) -> String {
        format!("{GO_TEXT}\n{sigs}")
    }

    fn peter() -> VerifierKey {
        VerifierKey::parse(PETER_VKEY).unwrap()
    }

    fn peter_seed() -> [u8; 32] {
        let raw = BASE64.decode(PETER_SKEY_B64).unwrap();
        assert_eq!(raw[0], SIG_TYPE_ED25519);
        raw[1..].try_into().unwrap()
    }

    #[test]
    fn go_vkey_parses_and_key_id_matches() {
        let k = peter();
        assert_eq!(k.name(), "PeterNeumann");
        assert_eq!(k.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
        // Recomputed from the key, not copied from the text.
        assert_eq!(
            key_id(k.name(), k.verifying_key()),
            [0xc7, 0x4f, 0x20, 0xa3]
        );
        assert_eq!(k.to_string(), PETER_VKEY);
        let e = VerifierKey::parse(ENOCH_VKEY).unwrap();
        assert_eq!(e.key_id(), [0xaf, 0x0c, 0xfe, 0x78]);
        assert_eq!(e.to_string(), ENOCH_VKEY);
    }

    #[test]
    fn go_signer_seed_gives_go_vkey_and_go_signature() {
        let s = NoteSigner::from_seed("PeterNeumann", peter_seed()).unwrap();
        assert_eq!(s.verifier().to_string(), PETER_VKEY);
        assert_eq!(s.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
        // Ed25519 is deterministic: our signature line is the Go one, byte for byte.
        assert_eq!(s.signature_line(GO_TEXT), PETER_SIG);
    }

    #[test]
    fn go_signed_note_verifies() {
        assert_eq!(
            verify_note(go_note(PETER_SIG).as_bytes(), &peter()).unwrap(),
            GO_TEXT
        );
        // Doubly signed: each key finds its own line and ignores the other.
        let both = go_note(&format!("{PETER_SIG}{ENOCH_SIG}"));
        assert_eq!(verify_note(both.as_bytes(), &peter()).unwrap(), GO_TEXT);
        let enoch = VerifierKey::parse(ENOCH_VKEY).unwrap();
        assert_eq!(verify_note(both.as_bytes(), &enoch).unwrap(), GO_TEXT);
        // Only Enoch signed: no signature by Peter.
        assert!(matches!(
            verify_note(go_note(ENOCH_SIG).as_bytes(), &peter()),
            Err(CheckpointError::NoMatchingSignature { .. })
        ));
    }

    #[test]
    fn go_bad_notes_are_refused() {
        // TestOpen's badMsgs: all "malformed note" in Go.
        let bad = [
            GO_TEXT.to_owned(),
            format!("{GO_TEXT}\n"),
            go_note(PETER_SIG.strip_suffix('\n').unwrap()),
            format!("\x01{}", go_note(PETER_SIG)),
            go_note(
                "\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
            ),
            go_note(&format!("{PETER_SIG}Unexpected line.\n")),
            go_note(&PETER_SIG.repeat(101)),
        ];
        for msg in &bad {
            assert!(
                matches!(
                    verify_note(msg.as_bytes(), &peter()),
                    Err(CheckpointError::Malformed { .. })
                ),
                "{msg:?}"
            );
        }
        let mut high = b"\xff".to_vec();
        high.extend_from_slice(go_note(PETER_SIG).as_bytes());
        assert!(matches!(
            verify_note(&high, &peter()),
            Err(CheckpointError::NotUtf8 { line: 1, offset: 0 })
        ));
        // 100 copies are allowed (Go's limit is "more than 100").
        assert!(verify_note(go_note(&PETER_SIG.repeat(100)).as_bytes(), &peter()).is_ok());
        // Invalid signature: 3 bytes inserted into Peter's signature.
        let forged = format!("{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        assert!(matches!(
            verify_note(go_note(&forged).as_bytes(), &peter()),
            Err(CheckpointError::BadSignature { line: 4, .. })
        ));
        // Other name or other key id: not our key, so ignored; then nothing is left.
        for sig in [
            PETER_SIG.replace("PeterNeumann", "CarmenSandiego"),
            PETER_SIG.replace("x08g", "xxxx"),
        ] {
            assert!(matches!(
                verify_note(go_note(&sig).as_bytes(), &peter()),
                Err(CheckpointError::NoMatchingSignature { .. })
            ));
        }
    }

    #[test]
    fn go_mangled_vkeys_are_refused() {
        // TestNewVerifier: every proper substring and every single-byte increment fails.
        let b = PETER_VKEY.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if i != 0 || j != b.len() {
                    let k = std::str::from_utf8(&b[i..j]).unwrap();
                    assert!(VerifierKey::parse(k).is_err(), "{k}");
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] += 1;
            let k = String::from_utf8(m).unwrap();
            assert!(VerifierKey::parse(&k).is_err(), "{k}");
        }
        // The two with key ids adjusted to match. Go refuses the first for its length; we refuse
        // it earlier, as its base64 has non-zero trailing bits ("EY==") that Go's decoder ignores.
        assert!(matches!(
            VerifierKey::parse(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            ),
            Err(CheckpointError::BadKey("key is not standard base64"))
        ));
        assert!(matches!(
            VerifierKey::parse(
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(CheckpointError::BadKey(
                "key type byte is not 0x01 (Ed25519)"
            ))
        ));
    }

    // --- Our checkpoints.

    const ORIGIN: &str = "rack.example/audit";

    fn signer() -> NoteSigner {
        NoteSigner::from_seed(ORIGIN, [7; 32]).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: ORIGIN.to_owned(),
            size: 1024,
            root: crate::hash::leaf_hash(b"rack gateway"),
            time: Timestamp(1_767_225_600_000_000_000),
        }
    }

    fn open(note: &str) -> Result<Checkpoint, CheckpointError> {
        open_checkpoint(note.as_bytes(), ORIGIN, &signer().verifier())
    }

    /// A note with `body` signed properly, so only the body's form is under test.
    fn signed_body(body: &str) -> String {
        let s = signer();
        format!("{body}\n{}", s.signature_line(body))
    }

    fn malformed_line(r: Result<Checkpoint, CheckpointError>) -> usize {
        match r {
            Err(CheckpointError::Malformed { line, .. }) => line,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    /// The example in the module doc, byte for byte.
    const DOC_NOTE: &str = "rack.example/audit\n\
        1024\n\
        xXFKqN6su7pfaASw9GmeshGDX+a0oPIwejTUZUhYFsM=\n\
        timestamp 1767225600000000000\n\
        \n\
        \u{2014} rack.example/audit ff0WLVQhxM4slncp4HfBj6CmPSBYTjuMoPxiohbL2Hyazp4vsyQUkYBgdiMxmHuE9Oirx1GUlnulLey2dcEs0+biiAU=\n";
    const DOC_VKEY: &str =
        "rack.example/audit+7dfd162d+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs";

    #[test]
    fn doc_example_opens() {
        let vk = VerifierKey::parse(DOC_VKEY).unwrap();
        assert_eq!(
            open_checkpoint(DOC_NOTE.as_bytes(), ORIGIN, &vk).unwrap(),
            checkpoint()
        );
        assert_eq!(signer().sign(&checkpoint()).note, DOC_NOTE);
        assert_eq!(signer().verifier().to_string(), DOC_VKEY);
    }

    #[test]
    fn round_trip() {
        let s = signer();
        let cp = checkpoint();
        let signed = s.sign(&cp);
        assert_eq!(signed.checkpoint, cp);
        assert!(signed.note.starts_with(&cp.body()));
        assert_eq!(open(&signed.note).unwrap(), cp);
        let (parsed, sigs) = parse_unverified(signed.note.as_bytes()).unwrap();
        assert_eq!(parsed, cp);
        assert_eq!(sigs, vec![(ORIGIN.to_owned(), s.verifier().key_id())]);
        // The key id in the note, in the vkey and in the signer agree.
        let vkey = VerifierKey::parse(&s.verifier().to_string()).unwrap();
        assert_eq!(vkey, s.verifier());
        assert_eq!(vkey.key_id(), s.key_id());
        assert_eq!(
            verify_note(signed.note.as_bytes(), &vkey).unwrap(),
            cp.body()
        );
    }

    #[test]
    fn extreme_values_round_trip() {
        let s = signer();
        for (size, time) in [(0, 0), (u64::MAX, i64::MAX), (1, i64::MIN), (10, -1)] {
            let cp = Checkpoint {
                size,
                time: Timestamp(time),
                ..checkpoint()
            };
            assert_eq!(open(&s.sign(&cp).note).unwrap(), cp);
        }
    }

    #[test]
    fn generated_keys_differ_and_work() {
        let a = NoteSigner::generate(ORIGIN).unwrap();
        let b = NoteSigner::generate(ORIGIN).unwrap();
        assert_ne!(a.seed(), b.seed());
        let cp = checkpoint();
        let note = a.sign(&cp).note;
        assert_eq!(
            open_checkpoint(note.as_bytes(), ORIGIN, &a.verifier()).unwrap(),
            cp
        );
        let again = NoteSigner::from_seed(ORIGIN, *a.seed()).unwrap();
        assert_eq!(again.verifier(), a.verifier());
    }

    #[test]
    fn secrets_never_print() {
        let s = signer();
        let seed_hex = hex::encode(s.seed());
        let seed_b64 = BASE64.encode(s.seed());
        for shown in [format!("{s:?}"), format!("{s:#?}"), s.to_string()] {
            assert!(
                !shown.contains(&seed_hex) && !shown.contains(&seed_b64),
                "{shown}"
            );
            assert!(shown.contains(ORIGIN) && shown.contains(&hex::encode(s.key_id())));
        }
    }

    #[test]
    fn refuses_wrong_origin() {
        let note = signer().sign(&checkpoint()).note;
        let r = open_checkpoint(note.as_bytes(), "other.example/log", &signer().verifier());
        match r {
            Err(CheckpointError::OriginMismatch { expected, found }) => {
                assert_eq!(expected, "other.example/log");
                assert_eq!(found, ORIGIN);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_wrong_key() {
        let note = signer().sign(&checkpoint()).note;
        // Another key under the same name: its key id differs, so the line is not its.
        let other = NoteSigner::from_seed(ORIGIN, [8; 32]).unwrap().verifier();
        assert!(matches!(
            open_checkpoint(note.as_bytes(), ORIGIN, &other),
            Err(CheckpointError::NoMatchingSignature { .. })
        ));
        // Another key whose name and id collide with ours: the signature is checked and fails.
        let collided = VerifierKey {
            key_id: signer().key_id(),
            ..other
        };
        assert!(matches!(
            open_checkpoint(note.as_bytes(), ORIGIN, &collided),
            Err(CheckpointError::BadSignature { line: 6, .. })
        ));
        // Same key under another name.
        let renamed =
            VerifierKey::new("rack.example/other", *signer().verifier().verifying_key()).unwrap();
        assert!(matches!(
            open_checkpoint(note.as_bytes(), ORIGIN, &renamed),
            Err(CheckpointError::NoMatchingSignature { .. })
        ));
    }

    #[test]
    fn refuses_flipped_bits() {
        let note = signer().sign(&checkpoint()).note;
        let vk = signer().verifier();
        // In the body, keeping it well-formed so that the signature check is what refuses.
        let mut b = note.clone().into_bytes();
        let at = ORIGIN.len() + 1 + 3; // the last digit of "1024"
        b[at] ^= 0x01; // '4' -> '5'
        assert!(matches!(
            open_checkpoint(&b, ORIGIN, &vk),
            Err(CheckpointError::BadSignature { line: 6, .. })
        ));
        // In the signature bytes (past the key id), re-encoded canonically.
        let (head, b64) = note.trim_end().rsplit_once(' ').unwrap();
        let mut raw = BASE64.decode(b64).unwrap();
        raw[4 + 10] ^= 0x20;
        let forged = format!("{head} {}\n", BASE64.encode(raw));
        assert!(matches!(
            open(&forged),
            Err(CheckpointError::BadSignature { line: 6, .. })
        ));
        // Every single-bit flip anywhere is refused.
        for i in 0..note.len() {
            for bit in 0..8 {
                let mut b = note.clone().into_bytes();
                b[i] ^= 1 << bit;
                assert!(
                    open_checkpoint(&b, ORIGIN, &vk).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn refuses_noncanonical_sizes() {
        let root = BASE64.encode(checkpoint().root.0);
        let body = |size: &str| format!("{ORIGIN}\n{size}\n{root}\ntimestamp 5\n");
        for size in [
            "01",
            "00",
            "+1",
            "-1",
            " 1",
            "1 ",
            "",
            "18446744073709551616",
            "0x10",
            "1_000",
        ] {
            assert_eq!(
                malformed_line(open(&signed_body(&body(size)))),
                2,
                "{size:?}"
            );
        }
        assert_eq!(
            open(&signed_body(&body("18446744073709551615")))
                .unwrap()
                .size,
            u64::MAX
        );
        assert_eq!(open(&signed_body(&body("0"))).unwrap().size, 0);
    }

    #[test]
    fn refuses_noncanonical_timestamps() {
        let root = BASE64.encode(checkpoint().root.0);
        let body = |ext: &str| format!("{ORIGIN}\n1\n{root}\n{ext}\n");
        for ext in [
            "timestamp 01",
            "timestamp -0",
            "timestamp +5",
            "timestamp  5",
            "timestamp 5 ",
            "timestamp",
            "timestamp ",
            "Timestamp 5",
            "timestamp 9223372036854775808",
            "time 5",
        ] {
            assert_eq!(malformed_line(open(&signed_body(&body(ext)))), 4, "{ext:?}");
        }
    }

    #[test]
    fn refuses_bad_roots() {
        let body = |root: &str| format!("{ORIGIN}\n1\n{root}\ntimestamp 5\n");
        let short = BASE64.encode([9u8; 31]);
        let long = BASE64.encode([9u8; 33]);
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode([9u8; 32]);
        let url = base64::engine::general_purpose::URL_SAFE.encode([0xfbu8; 32]);
        let hex = hex::encode([9u8; 32]);
        for root in [short, long, unpadded, url, hex, String::new()] {
            assert_eq!(
                malformed_line(open(&signed_body(&body(&root)))),
                3,
                "{root:?}"
            );
        }
        // Non-zero trailing bits: another spelling of the same bytes, refused.
        let good = BASE64.encode([9u8; 32]);
        let mut odd = good.clone().into_bytes();
        odd[42] = b'R'; // "...CQ=" -> "...CR=": same 32 bytes, non-canonical
        let odd = String::from_utf8(odd).unwrap();
        assert_ne!(odd, good);
        assert_eq!(malformed_line(open(&signed_body(&body(&odd)))), 3);
    }

    #[test]
    fn refuses_bad_extension_lines() {
        let root = BASE64.encode(checkpoint().root.0);
        let base = format!("{ORIGIN}\n1\n{root}\n");
        // Missing timestamp line.
        assert_eq!(malformed_line(open(&signed_body(&base))), 4);
        // Two timestamp lines.
        let two = format!("{base}timestamp 5\ntimestamp 6\n");
        assert_eq!(malformed_line(open(&signed_body(&two))), 5);
        // Another extension after the timestamp.
        let other = format!("{base}timestamp 5\nfoo\n");
        assert_eq!(malformed_line(open(&signed_body(&other))), 5);
        // Empty origin; missing lines.
        assert_eq!(
            malformed_line(open(&signed_body(&format!("\n1\n{root}\ntimestamp 5\n")))),
            1
        );
        assert_eq!(
            malformed_line(open(&signed_body(&format!("{ORIGIN}\n")))),
            2
        );
        assert_eq!(
            malformed_line(open(&signed_body(&format!("{ORIGIN}\n1\n")))),
            3
        );
    }

    #[test]
    fn refuses_bad_note_framing() {
        let note = signer().sign(&checkpoint()).note;
        let body = checkpoint().body();
        let sig_line = signer().signature_line(&body);
        // Missing blank line.
        assert_eq!(malformed_line(open(&format!("{body}{sig_line}"))), 5);
        // CRLF line endings.
        assert_eq!(malformed_line(open(&note.replace('\n', "\r\n"))), 1);
        // Extra text after the signatures, with or without a newline.
        assert_eq!(malformed_line(open(&format!("{note}garbage\n"))), 7);
        assert_eq!(malformed_line(open(&format!("{note}garbage"))), 7);
        // A trailing blank line: the last blank line is the separator, and nothing follows it.
        assert_eq!(malformed_line(open(&format!("{note}\n"))), 8);
        // No final newline after the signature.
        assert_eq!(malformed_line(open(note.strip_suffix('\n').unwrap())), 6);
        // Hyphen instead of em dash.
        assert_eq!(malformed_line(open(&note.replace('\u{2014}', "-"))), 6);
        // Non-UTF-8.
        let mut b = note.clone().into_bytes();
        b[2] = 0xff;
        assert!(matches!(
            open_checkpoint(&b, ORIGIN, &signer().verifier()),
            Err(CheckpointError::NotUtf8 { line: 1, offset: 2 })
        ));
        // Too large, before anything else is looked at.
        let big = vec![b'a'; MAX_NOTE_BYTES + 1];
        assert!(matches!(
            open_checkpoint(&big, ORIGIN, &signer().verifier()),
            Err(CheckpointError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_signatures_are_ignored_but_must_be_well_formed() {
        let note = signer().sign(&checkpoint()).note;
        let other = NoteSigner::from_seed("witness.example/w1", [9; 32]).unwrap();
        let cosigned = format!("{note}{}", other.signature_line(&checkpoint().body()));
        assert_eq!(open(&cosigned).unwrap(), checkpoint());
        let (_, sigs) = parse_unverified(cosigned.as_bytes()).unwrap();
        assert_eq!(sigs.len(), 2);
        assert_eq!(sigs[1], ("witness.example/w1".to_owned(), other.key_id()));
        // A long (post-quantum sized) unknown signature is fine.
        let pq = format!("{note}\u{2014} pq.example {}\n", BASE64.encode([1u8; 2420]));
        assert_eq!(open(&pq).unwrap(), checkpoint());
        // An unknown line that is malformed spoils the note.
        assert_eq!(malformed_line(open(&format!("{note}\u{2014} w1 !!!\n"))), 7);
        assert_eq!(
            malformed_line(open(&format!("{note}\u{2014} w1 AAAA\n"))),
            7
        );
        // A second, bad signature line by our key spoils the note too.
        let bad = format!(
            "{note}\u{2014} {ORIGIN} {}\n",
            BASE64.encode([signer().key_id().as_slice(), &[0u8; 64]].concat())
        );
        assert!(matches!(
            open(&bad),
            Err(CheckpointError::BadSignature { line: 7, .. })
        ));
    }

    #[test]
    fn refuses_bad_vkeys() {
        let good = signer().verifier().to_string();
        let (name_id, key_b64) = good.rsplit_once('+').unwrap();
        let mut raw = BASE64.decode(key_b64).unwrap();
        // Wrong type byte, with the id left as is and with the id recomputed.
        raw[0] = 0x02;
        let wrong_type = format!("{name_id}+{}", BASE64.encode(&raw));
        assert!(matches!(
            VerifierKey::parse(&wrong_type),
            Err(CheckpointError::BadKey(_))
        ));
        let id = hex::encode(key_id_of_raw(ORIGIN, &raw));
        assert!(matches!(
            VerifierKey::parse(&format!("{ORIGIN}+{id}+{}", BASE64.encode(&raw))),
            Err(CheckpointError::BadKey(
                "key type byte is not 0x01 (Ed25519)"
            ))
        ));
        // Wrong id.
        let wrong_id = format!("{ORIGIN}+00000000+{key_b64}");
        assert!(matches!(
            VerifierKey::parse(&wrong_id),
            Err(CheckpointError::BadKey(
                "key id does not match the key name and key"
            ))
        ));
        // Bad base64, bad hex, short id, bad names, wrong shape.
        let id = hex::encode(signer().key_id());
        for bad in [
            format!("{ORIGIN}+{id}+{}", &key_b64[1..]),
            format!("{ORIGIN}+{id}+{key_b64}="),
            format!("{ORIGIN}+{id}+-{}", &key_b64[1..]),
            format!("{ORIGIN}+{}+{key_b64}", &id[1..]),
            format!("{ORIGIN}+{id}0+{key_b64}"),
            format!("{ORIGIN}+zzzzzzzz+{key_b64}"),
            format!("+{id}+{key_b64}"),
            format!("rack example+{id}+{key_b64}"),
            format!("{ORIGIN}+{id}"),
            ORIGIN.to_owned(),
            String::new(),
        ] {
            assert!(VerifierKey::parse(&bad).is_err(), "{bad}");
        }
        // A small-order public key (the identity point), with a matching id.
        let mut weak = vec![SIG_TYPE_ED25519, 1];
        weak.extend_from_slice(&[0u8; 31]);
        let id = hex::encode(key_id_of_raw(ORIGIN, &weak));
        assert!(matches!(
            VerifierKey::parse(&format!("{ORIGIN}+{id}+{}", BASE64.encode(&weak))),
            Err(CheckpointError::BadKey(
                "Ed25519 public key has small order"
            ))
        ));
        // Upper-case hex ids are accepted, as in Go.
        let upper = format!(
            "{ORIGIN}+{}+{key_b64}",
            hex::encode_upper(signer().key_id())
        );
        assert_eq!(VerifierKey::parse(&upper).unwrap(), signer().verifier());
    }

    #[test]
    fn refuses_bad_signer_names() {
        for name in ["", "a b", "a+b", "a\nb", "a\u{a0}b", "a\u{1}b"] {
            assert!(matches!(
                NoteSigner::from_seed(name, [1; 32]),
                Err(CheckpointError::BadKeyName { .. })
            ));
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        let note = signer().sign(&checkpoint()).note.replace("1024", "01024");
        let msg = open(&note).unwrap_err().to_string();
        assert_eq!(msg, "malformed note, line 2: tree size has a leading zero");
        let other = NoteSigner::from_seed(ORIGIN, [8; 32]).unwrap().verifier();
        let msg = open_checkpoint(signer().sign(&checkpoint()).note.as_bytes(), ORIGIN, &other)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(ORIGIN) && msg.contains(&hex::encode(other.key_id())),
            "{msg}"
        );
    }

    // --- Properties.

    fn valid_note() -> (String, VerifierKey) {
        let s = signer();
        (s.sign(&checkpoint()).note, s.verifier())
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(usize, u8),
        Set(usize, u8),
        Insert(usize, u8),
        Delete(usize),
        Truncate(usize),
        Duplicate(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 0usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        ]
    }

    fn apply(b: &mut Vec<u8>, m: &Mutation) {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match *m {
            Mutation::Flip(i, bit) if !b.is_empty() => {
                let i = at(i, b.len());
                b[i] ^= 1 << bit;
            }
            Mutation::Set(i, v) if !b.is_empty() => {
                let i = at(i, b.len());
                b[i] = v;
            }
            Mutation::Insert(i, v) => {
                let i = at(i, b.len() + 1);
                b.insert(i, v);
            }
            Mutation::Delete(i) if !b.is_empty() => {
                let i = at(i, b.len());
                b.remove(i);
            }
            Mutation::Truncate(i) => {
                let i = at(i, b.len() + 1);
                b.truncate(i);
            }
            Mutation::Duplicate(i, n) => {
                let i = at(i, b.len() + 1);
                let end = (i + n).min(b.len());
                let piece = b[i..end].to_vec();
                b.splice(i..i, piece);
            }
            _ => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let (_, vk) = valid_note();
            let _ = open_checkpoint(&bytes, ORIGIN, &vk);
            let _ = parse_unverified(&bytes);
            let _ = verify_note(&bytes, &vk);
        }

        #[test]
        fn note_shaped_text_never_panics(text in "[a-z0-9./+=\n \u{2014}-]{0,200}") {
            let (_, vk) = valid_note();
            let _ = open_checkpoint(text.as_bytes(), ORIGIN, &vk);
            let _ = parse_unverified(text.as_bytes());
            let _ = VerifierKey::parse(&text);
        }

        #[test]
        fn mutated_notes_fail_or_open_identically(muts in proptest::collection::vec(mutation(), 1..4)) {
            let (note, vk) = valid_note();
            let mut b = note.into_bytes();
            for m in &muts {
                apply(&mut b, m);
            }
            let _ = parse_unverified(&b);
            // A mutated note either fails or, if it still opens, says exactly what was signed.
            if let Ok(cp) = open_checkpoint(&b, ORIGIN, &vk) {
                prop_assert_eq!(cp, checkpoint());
            }
        }

        #[test]
        fn any_checkpoint_round_trips(
            name in "[a-z0-9./_-]{1,30}",
            origin in "[^\\x00-\\x1f]{1,30}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            time in any::<i64>(),
            seed in any::<[u8; 32]>(),
        ) {
            let s = NoteSigner::from_seed(&name, seed).unwrap();
            let cp = Checkpoint { origin, size, root: Hash(root), time: Timestamp(time) };
            let signed = s.sign(&cp);
            prop_assert_eq!(open_checkpoint(signed.note.as_bytes(), &cp.origin, &s.verifier()).unwrap(), cp.clone());
            let (parsed, sigs) = parse_unverified(signed.note.as_bytes()).unwrap();
            prop_assert_eq!(parsed, cp);
            prop_assert_eq!(sigs, vec![(name, s.key_id())]);
        }

        #[test]
        fn vkey_text_round_trips(name in "[a-z0-9./_-]{1,30}", seed in any::<[u8; 32]>()) {
            let vk = NoteSigner::from_seed(&name, seed).unwrap().verifier();
            prop_assert_eq!(VerifierKey::parse(&vk.to_string()).unwrap(), vk);
        }
    }
}
