//! The `rack-audit` commands: verify, prove, consistency and dump.
//!
//! **Invariant:** `verify` exits 1 only for integrity failures and always names what failed;
//! `prove` and `consistency` first verify the whole input as `verify` does (exit 1 when it
//! fails), so the checkpoints and records they use are the ones verified.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use events::checkpoint::{self, VerifierKey};
use events::hash::{self, Hash};
use events::merkle::{self, Frontier, MemNodes};
use events::record;
use events::store::StoreError;
use events::verify::{self, KeyTrust, Progress, Summary, VerifyError};
use serde_json::json;

use crate::input::Input;

struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn start(&mut self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&mut self, n: u64) {
        self.0.inc(n);
    }
}

fn parse_key(key: Option<&str>) -> anyhow::Result<Option<VerifierKey>> {
    key.map(|k| VerifierKey::parse(k.trim()).with_context(|| format!("--key {k:?}")))
        .transpose()
}

/// `rack-audit verify`.
pub fn verify(path: &Path, key: Option<&str>, as_json: bool) -> anyhow::Result<ExitCode> {
    let key = parse_key(key)?;
    let started = Instant::now();
    let input = match open(path)? {
        Ok(input) => input,
        Err(e) => {
            report_failure(&e, started.elapsed(), as_json);
            return Ok(ExitCode::from(1));
        }
    };
    let mut quiet = verify::Quiet;
    let mut bar;
    let progress: &mut dyn Progress = if std::io::stderr().is_terminal() && !as_json {
        bar = Bar(indicatif::ProgressBar::new(0));
        &mut bar
    } else {
        &mut quiet
    };
    let result = check(&input, key.as_ref(), progress)?;
    let elapsed = started.elapsed();
    match result {
        Ok(s) => {
            report_ok(&s, elapsed, as_json);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_integrity() => {
            report_failure(&e, elapsed, as_json);
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

/// Verifies `input` as `verify` does: `Ok(Err(_))` is what the verification found wrong,
/// `Err(_)` what kept it from running.
fn check(
    input: &Input,
    key: Option<&VerifierKey>,
    progress: &mut dyn Progress,
) -> anyhow::Result<Result<Summary, VerifyError>> {
    Ok(match input {
        Input::Export(src) => verify::verify_export(src, key, progress),
        Input::Store(reader) => {
            let notes = input.checkpoints()?;
            // Numbered from 0 without a gap: one missing between two was lost or taken out.
            if let Some(n) = (0u64..).zip(&notes).find_map(|(n, (name, _))| {
                (*name != events::export::checkpoint_key(n)).then_some(n)
            }) {
                return Ok(Err(VerifyError::Missing {
                    object: events::export::checkpoint_key(n),
                    named_by: format!("the numbering of {STORE_OBJECT}'s checkpoints"),
                }));
            }
            let total = match reader.len() {
                Ok(total) => total,
                // Its last entry is broken: what the store holds was damaged, not unreadable.
                Err(e @ StoreError::Corrupt { .. }) => return Ok(Err(store_failure(e))),
                Err(e) => return Err(e.into()),
            };
            let first = reader.read_raw(0..1).map_err(store_failure);
            match first.as_deref().map(<[_]>::first) {
                Err(e) => Err(e.clone()),
                // A gateway's store is created holding its record 0 (and checkpoint 0): one
                // that holds none lost them.
                Ok(None) if total == 0 => Err(VerifyError::Stored {
                    seq: 0,
                    object: STORE_OBJECT.into(),
                    what: format!(
                        "the store holds no records ({} checkpoints): a gateway's store is \
                         created holding its record 0",
                        notes.len()
                    ),
                }),
                Ok(None) => Err(VerifyError::Stored {
                    seq: 0,
                    object: STORE_OBJECT.into(),
                    what: format!("the store counts {total} records but has no record 0"),
                }),
                Ok(Some((_, first))) => {
                    verify::verify_records(first, total, &notes, key, progress, &mut |f| {
                        let mut failure = None;
                        let read = reader.for_each_raw(0..u64::MAX, |seq, bytes| {
                            f(seq, bytes).map_err(|e| {
                                failure = Some(e);
                                StoreError::Io("verification stopped".into())
                            })
                        });
                        match (failure, read) {
                            (Some(e), _) => Err(e),
                            (None, Err(e)) => Err(store_failure(e)),
                            (None, Ok(())) => Ok(()),
                        }
                    })
                }
            }
        }
    })
}

/// For `prove` and `consistency`, which trust the checkpoints and records of `path` only once
/// the whole input verifies: the input, opened and verified, or `Err(exit 1)` once the failure
/// is printed as their JSON (a store broken where opening reads it included).
fn open_verified(
    path: &Path,
    key: Option<&VerifierKey>,
) -> anyhow::Result<Result<Input, ExitCode>> {
    let failed = match open(path)? {
        Ok(input) => match check(&input, key, &mut verify::Quiet)? {
            Ok(_) => return Ok(Ok(input)),
            Err(e) => e,
        },
        Err(e) => e,
    };
    if !failed.is_integrity() {
        return Err(failed.into());
    }
    let v = json!({
        "verified": false,
        "error": format!("the input does not verify: {failed}"),
        "failure": failure_json(&failed),
    });
    writeln!(std::io::stdout(), "{v}")?;
    Ok(Err(ExitCode::from(1)))
}

/// How a data directory's failures name the store's file.
const STORE_OBJECT: &str = "log.redb";

/// Opens `path` to verify it: a store whose entries are broken where opening reads them (its
/// journal's frames, its last entry) is an integrity failure (`Ok(Err(_))`), not an I/O error.
fn open(path: &Path) -> anyhow::Result<Result<Input, VerifyError>> {
    match Input::open(path) {
        Ok(input) => Ok(Ok(input)),
        Err(e) => match e.downcast_ref::<StoreError>() {
            Some(StoreError::Corrupt { seq, what }) => {
                Ok(Err(store_failure(StoreError::Corrupt {
                    seq: *seq,
                    what: what.clone(),
                })))
            }
            _ => Err(e),
        },
    }
}

/// A store error while verifying a data directory: broken entries are an integrity failure
/// (exit 1), anything else an I/O error (exit 2).
fn store_failure(e: StoreError) -> VerifyError {
    match e {
        StoreError::Corrupt { seq, what } => VerifyError::Stored {
            seq: seq.0,
            object: STORE_OBJECT.into(),
            what,
        },
        other => VerifyError::Io {
            object: STORE_OBJECT.into(),
            what: other.to_string(),
        },
    }
}

fn trust_word(t: &KeyTrust) -> &'static str {
    match t {
        KeyTrust::Pinned => "pinned",
        KeyTrust::Unpinned => "UNPINNED",
    }
}

fn report_ok(s: &Summary, elapsed: std::time::Duration, as_json: bool) {
    if as_json {
        let v = json!({
            "result": "ok",
            "records": s.records,
            "checkpoints": s.checkpoints,
            "segments": s.segments,
            "head_hash": s.head_hash.to_hex(),
            "root": s.root.to_hex(),
            "signed_size": s.signed_size,
            "key": s.key,
            "key_trust": trust_word(&s.trust),
            "duration_ms": elapsed.as_millis() as u64,
        });
        println!("{v}");
        return;
    }
    println!(
        "OK: {} records, {} checkpoints, head {}, key {} ({}), {:.3}s",
        s.records,
        s.checkpoints,
        s.head_hash,
        trust_word(&s.trust),
        s.key,
        elapsed.as_secs_f64()
    );
    if s.trust == KeyTrust::Unpinned {
        println!(
            "UNPINNED: the key was taken from the export itself; a log rewritten and re-signed under another key would also pass. Pass --key with the key you hold."
        );
    }
    if s.signed_size < s.records {
        println!(
            "note: {} records after the newest checkpoint are chained but not yet signed",
            s.records - s.signed_size
        );
    }
}

/// A failure as the commands' JSON names it.
fn failure_json(e: &VerifyError) -> serde_json::Value {
    json!({
        "kind": e.kind(),
        "seq": e.seq(),
        "object": e.object(),
        "message": e.to_string(),
    })
}

fn report_failure(e: &VerifyError, elapsed: std::time::Duration, as_json: bool) {
    if as_json {
        let v = json!({
            "result": "fail",
            "failure": failure_json(e),
            "duration_ms": elapsed.as_millis() as u64,
        });
        println!("{v}");
    } else {
        println!("FAIL: {e}");
    }
}

/// Opens checkpoint `n` (default: the newest) under the pinned key or the log's own key.
fn open_checkpoint(
    input: &Input,
    n: Option<u64>,
    key: Option<&VerifierKey>,
) -> anyhow::Result<(String, checkpoint::Checkpoint, bool)> {
    let notes = input.checkpoints()?;
    let idx = match n {
        Some(n) => usize::try_from(n)?,
        None => notes.len().checked_sub(1).context("no checkpoints")?,
    };
    let (name, note) = notes
        .get(idx)
        .with_context(|| format!("no checkpoint number {idx}"))?;
    let (key, pinned) = match key {
        Some(k) => (k.clone(), true),
        None => (log_key(input)?, false),
    };
    // The note must name the log the key is for (a key's name is its log's origin).
    let cp = checkpoint::open_checkpoint(note, key.name(), &key)
        .with_context(|| format!("{name}: signature"))?;
    Ok((name.clone(), cp, pinned))
}

/// The key record 0 names.
fn log_key(input: &Input) -> anyhow::Result<VerifierKey> {
    let mut found = None;
    input.for_each(0, 1, &mut |_, bytes| {
        found = Some(record::decode(bytes)?);
        Ok(())
    })?;
    match found.map(|r| r.record.event) {
        Some(events::event::Event::LogCreated { checkpoint_key, .. }) => {
            Ok(VerifierKey::parse(&checkpoint_key)?)
        }
        _ => bail!("record 0 is not LogCreated"),
    }
}

/// Leaf hashes `[0, size)` into an in-memory tree.
fn tree(input: &Input, size: u64) -> anyhow::Result<MemNodes> {
    let mut nodes = MemNodes::new();
    let mut frontier = Frontier::new();
    let mut next = 0u64;
    input.for_each(0, size, &mut |seq, bytes| {
        if seq != next {
            bail!("seq {next} is missing");
        }
        nodes.append(&mut frontier, hash::leaf_hash(bytes));
        next += 1;
        Ok(())
    })?;
    if next != size {
        bail!("the input holds {next} records, the checkpoint covers {size}");
    }
    Ok(nodes)
}

fn hexes(v: &[Hash]) -> Vec<String> {
    v.iter().map(|h| h.to_hex()).collect()
}

/// `rack-audit prove`.
pub fn prove(path: &Path, seq: u64, n: Option<u64>, key: Option<&str>) -> anyhow::Result<ExitCode> {
    let key = parse_key(key)?;
    let input = match open_verified(path, key.as_ref())? {
        Ok(input) => input,
        Err(failed) => return Ok(failed),
    };
    let (name, cp, pinned) = open_checkpoint(&input, n, key.as_ref())?;
    if seq >= cp.size {
        bail!("seq {seq} is not covered by {name} (size {})", cp.size);
    }
    let nodes = tree(&input, cp.size)?;
    let leaf = merkle::NodeReader::node(&nodes, 0, seq)?;
    let proof = merkle::inclusion_proof(seq, cp.size, &nodes)?;
    let verdict = merkle::verify_inclusion(&leaf, seq, cp.size, &proof, &cp.root);
    let v = json!({
        "seq": seq,
        "leaf_hash": leaf.to_hex(),
        "checkpoint": name,
        "size": cp.size,
        "root": cp.root.to_hex(),
        "proof": hexes(&proof),
        "key_trust": if pinned { "pinned" } else { "UNPINNED" },
        "verified": verdict.is_ok(),
    });
    writeln!(std::io::stdout(), "{v}")?;
    Ok(if verdict.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The older checkpoint of a consistency check.
pub enum Old {
    /// Checkpoint number N of the same export.
    Number(u64),
    /// A note the auditor kept from an earlier export.
    Saved(PathBuf),
}

/// The most bytes of a saved checkpoint note read (notes are a few hundred bytes).
const MAX_SAVED_NOTE: u64 = 64 * 1024;

/// `rack-audit consistency`.
pub fn consistency(
    path: &Path,
    old: Old,
    new: Option<u64>,
    key: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let key = parse_key(key)?;
    let input = match open_verified(path, key.as_ref())? {
        Ok(input) => input,
        Err(failed) => return Ok(failed),
    };
    let saved = matches!(old, Old::Saved(_));
    let (old_name, a, pinned) = match old {
        Old::Number(n) => open_checkpoint(&input, Some(n), key.as_ref())?,
        Old::Saved(file) => {
            let key = key.as_ref().context(
                "--old-note needs --key: a saved checkpoint is trusted under the key you pin",
            )?;
            let name = file.display().to_string();
            let len = std::fs::metadata(&file)
                .with_context(|| name.clone())?
                .len();
            if len > MAX_SAVED_NOTE {
                bail!("{name}: {len} bytes is not a checkpoint note");
            }
            let note = std::fs::read(&file).with_context(|| name.clone())?;
            // The note must name the log the key is for, and be signed by it.
            let cp = checkpoint::open_checkpoint(&note, key.name(), key)
                .with_context(|| format!("{name}: signature"))?;
            (name, cp, true)
        }
    };
    let (new_name, b, _) = open_checkpoint(&input, new, key.as_ref())?;
    if a.size == 0 || (a.size > b.size && !saved) {
        bail!(
            "{old_name} (size {}) cannot precede {new_name} (size {})",
            a.size,
            b.size
        );
    }
    let proof = if a.size < b.size {
        merkle::consistency_proof(a.size, b.size, &tree(&input, b.size)?)?
    } else {
        Vec::new()
    };
    let verdict = if a.size > b.size {
        Err(format!(
            "the export's checkpoint {new_name} has {} records, fewer than the {} of the \
             checkpoint you saved: the log was truncated or rolled back since",
            b.size, a.size
        ))
    } else if a.size == b.size {
        (a.root == b.root).then_some(()).ok_or_else(|| {
            format!(
                "{old_name} and {new_name} sign different trees of {} records: the log forked",
                a.size
            )
        })
    } else {
        merkle::verify_consistency(a.size, b.size, &a.root, &b.root, &proof)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let v = json!({
        "old": {"checkpoint": old_name, "size": a.size, "root": a.root.to_hex()},
        "new": {"checkpoint": new_name, "size": b.size, "root": b.root.to_hex()},
        "proof": hexes(&proof),
        "key_trust": if pinned { "pinned" } else { "UNPINNED" },
        "verified": verdict.is_ok(),
        "error": verdict.as_ref().err().map(|e| e.to_string()),
    });
    writeln!(std::io::stdout(), "{v}")?;
    Ok(if verdict.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `rack-audit dump`.
pub fn dump(path: &Path, from: u64, to: Option<u64>) -> anyhow::Result<ExitCode> {
    let input = Input::open(path)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    input.for_each(from, to.unwrap_or(u64::MAX), &mut |seq, bytes| {
        let stored = record::decode(bytes).with_context(|| format!("seq {seq}"))?;
        writeln!(out, "{}", events::json::record_to_json(&stored))?;
        Ok(())
    })?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
