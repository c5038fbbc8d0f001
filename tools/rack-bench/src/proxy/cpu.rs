//! CPU time over the measured window, per part of the benchmark: this process's threads by
//! name (the load generator, the rack, the gateway each run on their own named runtime) and
//! nginx's processes.
//!
//! **Invariant:** times come from `/proc/.../schedstat` (nanoseconds on a CPU, per thread); a
//! thread that ends inside the window loses its time, so figures are lower bounds, and when the
//! kernel does not expose `schedstat` every figure is `None` rather than a guess. The split into
//! user and kernel time comes from `/proc/.../stat` (`utime`, `stime`), which the kernel keeps in
//! ticks: coarser, but the only source that tells the two apart, so where the proxy's CPU goes
//! (its own code or the kernel's TCP, which nginx pays too) is read from the same run.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// Thread-name prefix of the load generator's runtime.
pub const LOAD: &str = "rb-load";
/// Thread-name prefix of the runtime that runs the mock rack measured directly and behind nginx.
pub const RACK: &str = "rb-rack";
/// Thread-name prefix of the runtime that runs the gateway (and the mock rack it links).
pub const GATEWAY: &str = "rb-gw";

/// `USER_HZ`: the unit of `utime` and `stime` in `/proc/.../stat`, fixed at 100 by the kernel's
/// user-space ABI whatever its internal tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds in user space and in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UserSystem {
    pub user: f64,
    pub system: f64,
}

// === impl UserSystem ===

impl UserSystem {
    fn from_ticks(t: Ticks) -> UserSystem {
        UserSystem {
            user: t.user as f64 / TICKS_PER_SECOND,
            system: t.system as f64 / TICKS_PER_SECOND,
        }
    }

    pub fn plus(self, other: UserSystem) -> UserSystem {
        UserSystem {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

/// `utime` and `stime` of a thread or process, in `USER_HZ` ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Ticks {
    user: u64,
    system: u64,
}

// === impl Ticks ===

impl Ticks {
    fn total(self) -> u64 {
        self.user + self.system
    }

    fn since(self, earlier: Ticks) -> Ticks {
        Ticks {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    fn plus(self, other: Ticks) -> Ticks {
        Ticks {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

/// One thread's name, CPU nanoseconds and user/kernel ticks.
struct Thread {
    name: String,
    ns: u64,
    ticks: Ticks,
}

/// The threads of this process by id.
pub struct Threads(HashMap<u32, Thread>);

// === impl Threads ===

impl Threads {
    pub fn now() -> Option<Threads> {
        let mut map = HashMap::new();
        for entry in fs::read_dir("/proc/self/task").ok()? {
            let dir = entry.ok()?.path();
            let Some(tid) = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // A thread may end between listing and reading: skip it.
            let (Ok(comm), Some(ns), Some((_, ticks))) = (
                fs::read_to_string(dir.join("comm")),
                schedstat(&dir),
                stat(&dir),
            ) else {
                continue;
            };
            let name = comm.trim().to_owned();
            map.insert(tid, Thread { name, ns, ticks });
        }
        (!map.is_empty()).then_some(Threads(map))
    }

    /// CPU seconds spent since `earlier` by the threads whose name starts with `prefix`
    /// (`None`: every thread not named by one of [`LOAD`], [`RACK`], [`GATEWAY`]).
    pub fn since(&self, earlier: &Threads, prefix: Option<&str>) -> f64 {
        let ns: u64 = self
            .named(prefix)
            .map(|(tid, t)| t.ns.saturating_sub(earlier.0.get(tid).map_or(0, |e| e.ns)))
            .sum();
        ns as f64 / 1e9
    }

    /// [`Threads::since`] split into user and kernel time.
    pub fn user_system_since(&self, earlier: &Threads, prefix: Option<&str>) -> UserSystem {
        let ticks = self
            .named(prefix)
            .map(|(tid, t)| {
                t.ticks
                    .since(earlier.0.get(tid).map_or(Ticks::default(), |e| e.ticks))
            })
            .fold(Ticks::default(), Ticks::plus);
        UserSystem::from_ticks(ticks)
    }

    fn named<'a>(&'a self, prefix: Option<&'a str>) -> impl Iterator<Item = (&'a u32, &'a Thread)> {
        self.0.iter().filter(move |(_, t)| match prefix {
            Some(p) => t.name.starts_with(p),
            None => ![LOAD, RACK, GATEWAY].iter().any(|p| t.name.starts_with(p)),
        })
    }
}

/// The whole machine's CPU time from `/proc/stat`, in clock ticks: busy and total, and each
/// process's own ticks (to name what else kept the machine busy).
#[derive(Clone, Debug)]
pub struct Machine {
    busy: u64,
    total: u64,
    processes: HashMap<u32, (String, Ticks)>,
}

// === impl Machine ===

impl Machine {
    pub fn now() -> Option<Machine> {
        let mut m = parse_stat(&fs::read_to_string("/proc/stat").ok()?)?;
        for entry in fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(p) = stat(&entry.path()) {
                m.processes.insert(pid, p);
            }
        }
        Some(m)
    }

    /// The processes other than `ours` that used the most CPU since `earlier`, in cores,
    /// busiest first, at most `n`.
    pub fn busiest_since(
        &self,
        earlier: &Machine,
        ours: &[u32],
        cores: usize,
        n: usize,
    ) -> Vec<(String, f64)> {
        let Some(total) = self.total.checked_sub(earlier.total).filter(|t| *t > 0) else {
            return Vec::new();
        };
        let mut used: Vec<(String, f64)> = self
            .processes
            .iter()
            .filter(|(pid, _)| !ours.contains(pid))
            .map(|(pid, (comm, now))| {
                let before = earlier.processes.get(pid).map_or(0, |(_, t)| t.total());
                let ticks = now.total().saturating_sub(before);
                (comm.clone(), ticks as f64 / total as f64 * cores as f64)
            })
            .filter(|(_, c)| *c > 0.0)
            .collect();
        used.sort_by(|a, b| b.1.total_cmp(&a.1));
        used.truncate(n);
        used
    }

    /// Cores busy on average since `earlier` (any process, the kernel included).
    pub fn busy_cores_since(&self, earlier: &Machine, cores: usize) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total).filter(|t| *t > 0)?;
        let busy = self.busy.saturating_sub(earlier.busy);
        Some(busy as f64 / total as f64 * cores as f64)
    }
}

/// The aggregate `cpu` line: user nice system idle iowait irq softirq steal (guest time is
/// already inside user and nice).
fn parse_stat(stat: &str) -> Option<Machine> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = f.try_into().ok()?;
    let busy = user + nice + system + irq + softirq + steal;
    Some(Machine {
        busy,
        total: busy + idle + iowait,
        processes: HashMap::new(),
    })
}

/// A process's (or thread's) name and user and system ticks (fields 14 and 15 of
/// `/proc/<pid>/stat`).
fn parse_process(stat: &str) -> Option<(String, Ticks)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let user: u64 = f.get(11)?.parse().ok()?;
    let system: u64 = f.get(12)?.parse().ok()?;
    Some((comm, Ticks { user, system }))
}

/// CPU nanoseconds of a process and its direct children (nginx's master and workers).
pub fn process_tree_ns(pid: u32) -> Option<u64> {
    let mut total = process_ns(pid)?;
    for child in children(pid) {
        total += process_ns(child).unwrap_or(0);
    }
    Some(total)
}

/// The user/system ticks of a process and its direct children, as [`process_tree_ns`].
pub fn process_tree_ticks(pid: u32) -> Option<ProcessTicks> {
    let ticks = |pid: u32| stat(&Path::new("/proc").join(pid.to_string())).map(|(_, t)| t);
    let mut total = ticks(pid)?;
    for child in children(pid) {
        total = total.plus(ticks(child).unwrap_or_default());
    }
    Some(ProcessTicks(total))
}

/// A process tree's user and system ticks at one moment.
#[derive(Clone, Copy, Debug)]
pub struct ProcessTicks(Ticks);

// === impl ProcessTicks ===

impl ProcessTicks {
    pub fn since(self, earlier: ProcessTicks) -> UserSystem {
        UserSystem::from_ticks(self.0.since(earlier.0))
    }
}

fn process_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        total += schedstat(&entry.ok()?.path()).unwrap_or(0);
    }
    Some(total)
}

/// The parent pid from `/proc/<pid>/stat` (the fields after the parenthesized name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_ppid(&stat)
}

/// The direct children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|child| parent_of(*child) == Some(pid))
        .collect()
}

fn parse_ppid(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The name and user/system ticks in `<dir>/stat` (a process's or a thread's directory).
fn stat(dir: &Path) -> Option<(String, Ticks)> {
    parse_process(&fs::read_to_string(dir.join("stat")).ok()?)
}

/// The first field of `<dir>/schedstat`: nanoseconds spent on a CPU.
fn schedstat(dir: &Path) -> Option<u64> {
    fs::read_to_string(dir.join("schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppid_after_a_name_with_spaces_and_parens() {
        assert_eq!(
            parse_ppid("1234 (nginx: worker (x)) S 1200 1200 1 0 -1"),
            Some(1200)
        );
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn machine_busy_from_proc_stat() {
        let a = parse_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n").unwrap();
        let b = parse_stat("cpu  200 0 100 1400 100 0 0 0 0 0\n").unwrap();
        // 150 busy ticks of 800: 0.1875 of the machine, 0.375 of two cores.
        assert_eq!(b.busy_cores_since(&a, 2), Some(0.375));
        assert!(parse_stat("cpu0 1 2").is_none());
        let p = "42 (cargo (x)) R 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0";
        let ticks = Ticks { user: 7, system: 3 };
        assert_eq!(parse_process(p), Some(("cargo (x)".to_owned(), ticks)));
        assert_eq!(
            UserSystem::from_ticks(ticks),
            UserSystem {
                user: 0.07,
                system: 0.03
            }
        );
    }

    #[test]
    fn this_thread_is_counted() {
        let Some(before) = Threads::now() else {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true"),
                "CI=true, yet this kernel gives no per-thread CPU times"
            );
            eprintln!("this_thread_is_counted: skipped, no per-thread CPU times");
            return;
        };
        // Busy for 50 ms: longer than a scheduler tick, when the kernel updates the counter.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let after = Threads::now().map(|a| a.since(&before, None));
        assert!(after.is_some_and(|s| s > 0.0));
    }

    #[test]
    fn busy_loop_counts_as_user_time() {
        let before = Threads::now().expect("this process's threads from /proc/self/task");
        // 200 ms in user space: the kernel's tick lands on this thread at least once.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
        let split = Threads::now().map(|a| a.user_system_since(&before, None));
        assert!(split.is_some_and(|s| s.user > 0.0), "{split:?}");
    }
}
