//! Which filesystem holds the data directory, and the refusal to measure durability in memory.
//!
//! **Invariant:** no bench writes a byte under `--data` before [`prepare`] has named the
//! filesystem of the directory (printed as a `filesystem` figure) and found it disk-backed.
//! `tmpfs` and `ramfs` are refused with a [`Refusal`] (exit code 2): `fsync` there returns at
//! once, so a "durable" figure measured on them would be meaningless. The type is read from
//! `/proc/self/mountinfo` (the mount whose mount point is the longest prefix of the directory's
//! canonical path; a later mount on the same point shadows an earlier one), so no `statfs`
//! binding or new dependency is needed.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::report::Figure;

/// Filesystems whose `fsync` is a no-op: a bench refuses to run on them.
const MEMORY_FILESYSTEMS: &[&str] = &["tmpfs", "ramfs"];

/// The mount a path lives on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub fstype: String,
    pub mount_point: PathBuf,
    pub source: String,
}

/// The bench must not run here; `main` exits 2 with this message.
#[derive(Debug)]
pub struct Refusal(pub String);

/// Checks the filesystem of `dir` (or, if it does not exist yet, of its nearest existing
/// ancestor), prints it, refuses memory filesystems, and only then creates `dir`.
pub fn prepare(bench: &'static str, dir: &Path) -> Result<Mount> {
    let existing = nearest_existing(dir)?;
    let canonical = fs::canonicalize(&existing)
        .with_context(|| format!("cannot resolve {}", existing.display()))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo to find the data directory's filesystem")?;
    let mount = mount_of(&canonical, &mountinfo).with_context(|| {
        format!(
            "no mount in /proc/self/mountinfo holds {}",
            canonical.display()
        )
    })?;
    let journal = ext4_journal(&mount);
    Figure::text(bench, "filesystem", &mount.fstype, "fstype")
        .with("data_dir", dir.display().to_string())
        .with("mount_point", mount.mount_point.display().to_string())
        .with("source", mount.source.clone())
        .with("ext4_journal", journal)
        .print();
    if journal == Some(false) {
        eprintln!(
            "rack-bench: note: {} is ext4 without a journal; fdatasync still flushes the device \
             cache, but file metadata is not crash-consistent as on a journalled ext4",
            mount.source
        );
    }
    if MEMORY_FILESYSTEMS.contains(&mount.fstype.as_str()) {
        return Err(Refusal(format!(
            "refusing to run: {} is on {} (mounted at {}), where fsync is a no-op and durability \
             figures are meaningless; point --data at a disk-backed directory such as /var/tmp/...",
            dir.display(),
            mount.fstype,
            mount.mount_point.display()
        ))
        .into());
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(mount)
}

// === impl Refusal ===

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// For ext4, whether the filesystem has a journal: `/sys/fs/ext4/<dev>/journal_task` names
/// the jbd2 thread, or `<none>`. `None` when not ext4 or not readable.
fn ext4_journal(mount: &Mount) -> Option<bool> {
    if mount.fstype != "ext4" {
        return None;
    }
    let dev = Path::new(&mount.source).file_name()?;
    let task = fs::read_to_string(Path::new("/sys/fs/ext4").join(dev).join("journal_task")).ok()?;
    Some(task.trim() != "<none>")
}

fn nearest_existing(dir: &Path) -> Result<PathBuf> {
    let absolute = if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(dir)
    };
    let mut p = absolute.as_path();
    loop {
        if p.exists() {
            if !p.is_dir() {
                bail!("{} exists and is not a directory", p.display());
            }
            return Ok(p.to_owned());
        }
        p = p
            .parent()
            .with_context(|| format!("no existing ancestor of {}", absolute.display()))?;
    }
}

/// The mount of the canonical path `path`, from the text of `/proc/self/mountinfo`.
pub fn mount_of(path: &Path, mountinfo: &str) -> Option<Mount> {
    let mut best: Option<(usize, Mount)> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let (Some(point), mut right) = (left.split(' ').nth(4), right.split(' ')) else {
            continue;
        };
        let (Some(fstype), Some(source)) = (right.next(), right.next()) else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        if !path.starts_with(&point) {
            continue;
        }
        let depth = point.components().count();
        if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            best = Some((
                depth,
                Mount {
                    fstype: fstype.to_owned(),
                    mount_point: point,
                    source: unescape(source),
                },
            ));
        }
    }
    best.map(|(_, m)| m)
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\134` for a backslash, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684092k
30 25 0:27 / /dev/shm rw,relatime - tmpfs shm2 rw
40 27 0:40 / /var/tmp/with\\040space rw - xfs /dev/vdb rw
41 27 0:41 / /var/tmpfoo rw - tmpfs tmpfs rw
";

    #[test]
    fn longest_mount_point_wins_and_later_mounts_shadow() {
        let m = mount_of(Path::new("/var/tmp/rb-append"), INFO).unwrap();
        assert_eq!(
            (m.fstype.as_str(), m.mount_point.as_path()),
            ("ext4", Path::new("/"))
        );
        let m = mount_of(Path::new("/dev/shm/x"), INFO).unwrap();
        assert_eq!((m.fstype.as_str(), m.source.as_str()), ("tmpfs", "shm2"));
        let m = mount_of(Path::new("/var/tmp/with space/d"), INFO).unwrap();
        assert_eq!(m.fstype, "xfs");
        // Prefixes are compared by component: /var/tmpfoo does not hold /var/tmp.
        assert_eq!(
            mount_of(Path::new("/var/tmp"), INFO).unwrap().fstype,
            "ext4"
        );
    }

    #[test]
    fn unescape_octal() {
        assert_eq!(unescape("a\\040b\\134c\\"), "a b\\c\\");
    }

    #[test]
    fn refuses_tmpfs() {
        let shm = Path::new("/dev/shm");
        if !shm.exists() {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true"),
                "CI=true, yet there is no /dev/shm tmpfs to refuse"
            );
            eprintln!("refuses_tmpfs: skipped, no /dev/shm");
            return;
        }
        let err = prepare("test", &shm.join("rack-bench-never-created")).unwrap_err();
        assert!(err.downcast_ref::<Refusal>().is_some(), "{err:#}");
        assert!(!shm.join("rack-bench-never-created").exists());
    }
}
