//! `rack-bench proxy`: requests/s and p50/p99 latency of the CLI's request mix sent straight to
//! `mock-rack`, through nginx as a plain reverse proxy, and through the gateway (authenticated,
//! authorized, intent durable before forwarding), in one run with one load generator.
//!
//! **Invariant:** the three targets are measured in this process with the same load generator
//! ([`load`]), the same mix and connection count, in interleaved rounds: all three run for the
//! whole benchmark, and each round measures each target for `seconds / rounds` (order rotating
//! from round to round), so a stretch of machine noise (this is a shared VM) falls on all three
//! alike instead of on whichever target had the window. A target's figures merge its rounds'
//! samples. The gateway is the real `rack-gateway dev` pipeline on `DIR/gateway` (its store on
//! the disk the `filesystem` figure names), nginx runs the committed `nginx.conf.template`; a
//! run whose measured windows saw any failed request prints no throughput or latency figure and
//! exits 1.
//!
//! Each connection has its own loopback client address (`127.0.0.10`, `.11`, ...), as separate
//! CLI users would. The gateway runs `dev`'s pipeline with its per-address limit raised (the
//! limiter still runs on every request, it never refuses at this load); a 429 would still be
//! reported as an error.
//!
//! Where the CPU goes is part of every throughput figure: each part runs on its own named
//! runtime (`rb-load`, `rb-rack`, `rb-gw`, see [`cpu`]), nginx is counted from its processes,
//! and the whole machine from `/proc/stat`, so a window disturbed by other processes is flagged
//! on stderr and visible as `cpu_cores.other_processes`. The rack's cost per request, measured
//! in the direct run, tells how busy it was at the gateway's rate (`rack_busy_gateway_run`).

mod cpu;
mod load;
mod nginx;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use events::store::EventStore;
use rack_gateway::server::dev::{self, DevOptions};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use self::load::{Kind, MIX, Measured, Outcome, Plan};
use crate::fs_check;
use crate::report::Figure;

const BENCH: &str = "proxy";
/// Gateway throughput must be at least this fraction of nginx's.
const GOAL_THROUGHPUT_RATIO: f64 = 0.5;
/// Gateway p99 must be at most the direct p99 plus this.
const GOAL_P99_MARGIN_MS: f64 = 2.0;
/// The goals are stated for this many connections.
const GOAL_CONNECTIONS: usize = 32;
/// The gateway's per-address limit in this bench: far above what 32 connections send, so a
/// long run measures the pipeline, not refusals (`dev` itself allows 6000 a minute).
const BENCH_PER_IP_PER_MINUTE: u32 = 100_000_000;
/// Above this many cores used by other processes during a window, the run is flagged.
const BUSY_MACHINE_CORES: f64 = 0.15;
/// Warm-up of every round after a target's first (its connections are new each round).
const ROUND_WARMUP: Duration = Duration::from_millis(500);

/// Arguments of `rack-bench proxy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory: the gateway's store and keys go to `<DATA>/gateway`, nginx's config,
    /// pid file and logs to `<DATA>/nginx`.
    #[arg(long)]
    pub data: PathBuf,
    /// Measured seconds per target, over all rounds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Rounds the measured seconds are split into; each round measures every target once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub rounds: u64,
    /// Concurrent keep-alive connections (closed loop: one request in flight on each).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub connections: u64,
    /// Warm-up before a target's first measured window, not measured.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup_seconds: u64,
    /// The nginx binary (Debian's by default).
    #[arg(long, default_value = nginx::DEFAULT_BIN)]
    pub nginx: PathBuf,
}

/// Which part of the CPU a target's run is charged to.
enum Proxy<'a> {
    None,
    Nginx(&'a nginx::Nginx),
    Gateway,
}

/// One measured window of one target.
struct Round {
    outcome: Outcome,
    window_s: f64,
    cpu: Option<Cpu>,
}

/// One target, measured: its rounds merged.
struct Run {
    rps: f64,
    latency: Measured,
    requests: u64,
    errors: u64,
    warmup_errors: u64,
    error_examples: Vec<String>,
    reconnects: u64,
    body_bytes_per_request: f64,
    window_s: f64,
    /// CPU seconds over the window: load generator, mock rack (`None` in the gateway run,
    /// where it shares the gateway's runtime), proxy.
    cpu: Option<Cpu>,
}

#[derive(Clone)]
struct Cpu {
    /// Which proxy `proxy` counts: `nginx` or `gateway`.
    proxy_name: &'static str,
    load: f64,
    rack: Option<f64>,
    proxy: Option<f64>,
    /// CPU seconds the whole machine was busy (every process and the kernel).
    machine: Option<f64>,
    /// The other processes that used the most CPU in the window, in cores.
    others: Vec<(String, f64)>,
    /// The proxy's CPU seconds split into user and kernel time, by part: the gateway's
    /// workers and its other threads (the store's), or nginx's processes. The same parts in
    /// every round of one target.
    split: Vec<(&'static str, cpu::UserSystem)>,
}

// === impl Cpu ===

impl Cpu {
    /// The CPU of two windows of the same target, added up.
    fn plus(self, other: &Cpu) -> Cpu {
        let sum = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a + b);
        Cpu {
            proxy_name: self.proxy_name,
            load: self.load + other.load,
            rack: sum(self.rack, other.rack),
            proxy: sum(self.proxy, other.proxy),
            machine: sum(self.machine, other.machine),
            others: self.others,
            split: self
                .split
                .iter()
                .zip(&other.split)
                .map(|((part, a), (_, b))| (*part, a.plus(*b)))
                .collect(),
        }
    }

    /// CPU seconds of this benchmark's own parts.
    fn total(&self) -> f64 {
        self.load + self.rack.unwrap_or(0.0) + self.proxy.unwrap_or(0.0)
    }
}

pub fn run(args: &Args) -> Result<()> {
    fs_check::prepare(BENCH, &args.data)?;
    let nginx_version = nginx::check_installed(&args.nginx)?;
    let connections = usize::try_from(args.connections)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("cannot start the {name} runtime"))
    };
    let load_rt = runtime(cpu::LOAD)?;
    let rack_rt = runtime(cpu::RACK)?;
    let gw_rt = runtime(cpu::GATEWAY)?;
    let rounds = u32::try_from(args.rounds)?;
    let window = Duration::from_secs(args.seconds) / rounds;
    let plan = |target: SocketAddr, secret: &str, round: u32| Plan {
        target,
        authorization: basic(secret),
        connections,
        warmup: if round == 0 {
            Duration::from_secs(args.warmup_seconds)
        } else {
            ROUND_WARMUP
        },
        seconds: window,
    };

    // The three targets, all up for the whole run: the mock rack, nginx in front of it, and the
    // gateway (`rack-gateway dev`), whose linked mock rack runs on the rack's runtime too.
    let password = random_hex()?;
    let rack = rack_rt
        .block_on(mock_rack::MockRack::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &password,
        ))
        .context("starting the mock rack")?;
    rack.set_recording(false);
    eprintln!("rack-bench: direct to mock-rack at {}", rack.addr());
    let nginx = nginx::Nginx::start(&args.nginx, &args.data, rack.addr(), nginx_version)?;
    eprintln!(
        "rack-bench: through {} at {} ({})",
        nginx.version,
        nginx.listen,
        nginx.config.display()
    );
    let running = gw_rt
        .block_on(dev::start(&DevOptions {
            data: args.data.join("gateway"),
            proxy: SocketAddr::from(([127, 0, 0, 1], 0)),
            console: SocketAddr::from(([127, 0, 0, 1], 0)),
            // The limiter still runs on every request; it just never refuses this load.
            per_ip_per_minute: BENCH_PER_IP_PER_MINUTE,
            rack_runtime: Some(rack_rt.handle().clone()),
        }))
        .context("starting the gateway (rack-gateway dev)")?;
    running.rack.set_recording(false);
    let store = running.store.clone();
    let head_before = store.head().size;
    eprintln!(
        "rack-bench: through the gateway at {} (store {}, {} records before)",
        running.proxy,
        args.data.join("gateway").display(),
        head_before
    );
    eprintln!(
        "rack-bench: {rounds} rounds of {:.1} s per target",
        window.as_secs_f64()
    );

    let mut measured: [Vec<Round>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut sent = [0u64; 3];
    let mut failed = None;
    'rounds: for round in 0..rounds {
        for step in 0..3 {
            // The order rotates, so no target always follows the same one.
            let target = (step + round as usize) % 3;
            let (plan, proxy) = match target {
                0 => (plan(rack.addr(), &password, round), Proxy::None),
                1 => (plan(nginx.listen, &password, round), Proxy::Nginx(&nginx)),
                _ => (plan(running.proxy, &running.token, round), Proxy::Gateway),
            };
            match measure(&load_rt, plan, proxy, cores) {
                Ok((r, n)) => {
                    measured[target].push(r);
                    sent[target] += n;
                }
                Err(e) => {
                    failed = Some(e);
                    break 'rounds;
                }
            }
        }
    }
    let nginx_version = nginx.version.clone();
    let nginx_config = nginx.config.display().to_string();
    gw_rt.block_on(running.stop());
    nginx.stop()?;
    rack_rt.block_on(rack.shutdown());
    let appended = store.head().size - head_before;
    drop(store);
    if let Some(e) = failed {
        return Err(e);
    }
    let [direct, behind_nginx, gateway] = measured.map(Run::from_rounds);
    let sent = sent[2];

    for (name, r) in [
        ("direct", &direct),
        ("nginx", &behind_nginx),
        ("gateway", &gateway),
    ] {
        let Some(c) = &r.cpu else { continue };
        let other = c.machine.map(|m| (m - c.total()) / r.window_s);
        if let Some(other) = other.filter(|o| *o > BUSY_MACHINE_CORES) {
            let busiest: Vec<String> = c
                .others
                .iter()
                .map(|(comm, cores)| format!("{comm} {cores:.2}"))
                .collect();
            eprintln!(
                "rack-bench: warning: other processes kept {other:.2} cores busy during the {name} \
                 window (busiest: {}); its figures are not comparable (see \
                 cpu_cores.other_processes)",
                busiest.join(", ")
            );
        }
    }

    let errors = direct.errors + behind_nginx.errors + gateway.errors;
    Figure::new(BENCH, "errors", errors as f64, "requests")
        .baseline("required: every measured request answered 200", 0.0)
        .with("direct", direct.errors)
        .with("nginx", behind_nginx.errors)
        .with("gateway", gateway.errors)
        .with(
            "warmup_errors",
            json!({
                "direct": direct.warmup_errors,
                "nginx": behind_nginx.warmup_errors,
                "gateway": gateway.warmup_errors,
            }),
        )
        .print();
    for (name, r) in [
        ("direct", &direct),
        ("nginx", &behind_nginx),
        ("gateway", &gateway),
    ] {
        for e in &r.error_examples {
            eprintln!("rack-bench: {name}: {e}");
        }
    }
    if errors > 0 {
        if gateway.error_examples.iter().any(|e| e.contains("429")) {
            eprintln!(
                "rack-bench: the gateway answered 429: more than {BENCH_PER_IP_PER_MINUTE} \
                 requests per minute from one client address (each connection has its own)"
            );
        }
        bail!(
            "{errors} measured requests failed (direct {}, nginx {}, gateway {}); no throughput \
             or latency figure is valid",
            direct.errors,
            behind_nginx.errors,
            gateway.errors
        );
    }

    let common = |f: Figure, r: &Run| -> Figure {
        f.with("connections", connections)
            .with("seconds", r.window_s)
            .with("warmup_seconds", args.warmup_seconds)
            .with("requests", r.requests)
            .with("errors", r.errors)
            .with("p50_ms", r.latency.all.p50_us / 1e3)
            .with("p99_ms", r.latency.all.p99_us / 1e3)
            .with("max_ms", r.latency.all.max_us / 1e3)
            .with("mean_ms", r.latency.all.mean_us / 1e3)
            .with("by_request", by_request(&r.latency))
            .with("response_bytes_per_request", r.body_bytes_per_request)
            .with("reconnects", r.reconnects)
            .with("cpu_cores", cpu_json(r, false))
            .with("cpu_us_per_request", cpu_json(r, true))
            .with("proxy_user_system_us_per_request", split_json(r))
            .with("machine_cores", cores)
    };
    let goal_applies = connections == GOAL_CONNECTIONS;
    let nginx_what = format!("nginx reverse proxy ({nginx_version}), same run and load");
    let direct_what = "direct to mock-rack, same run and load";

    common(
        Figure::new(BENCH, "direct_throughput", direct.rps, "requests/s")
            .baseline(nginx_what.clone(), behind_nginx.rps),
        &direct,
    )
    .print();
    common(
        Figure::new(BENCH, "nginx_throughput", behind_nginx.rps, "requests/s")
            .baseline(direct_what, direct.rps),
        &behind_nginx,
    )
    .with("nginx", nginx_version.clone())
    .with("nginx_config", nginx_config)
    .print();
    let throughput_ratio = gateway.rps / behind_nginx.rps.max(f64::MIN_POSITIVE);
    common(
        Figure::new(BENCH, "gateway_throughput", gateway.rps, "requests/s")
            .baseline(nginx_what.clone(), behind_nginx.rps),
        &gateway,
    )
    .with("goal", format!("ratio >= {GOAL_THROUGHPUT_RATIO}"))
    .with(
        "goal_met",
        goal_applies.then_some(throughput_ratio >= GOAL_THROUGHPUT_RATIO),
    )
    .with("store_records_appended", appended)
    .with(
        "records_per_request",
        appended as f64 / (sent as f64).max(1.0),
    )
    .with("requests_sent_incl_warmup", sent)
    .print();

    type Pick = fn(&Measured) -> f64;
    let latencies: [(&str, [&'static str; 3], Pick); 2] = [
        ("p50", ["direct_p50", "nginx_p50", "gateway_p50"], |m| {
            m.all.p50_us
        }),
        ("p99", ["direct_p99", "nginx_p99", "gateway_p99"], |m| {
            m.all.p99_us
        }),
    ];
    for (label, [direct_name, nginx_name, gateway_name], pick) in latencies {
        let (d, n, g) = (
            pick(&direct.latency) / 1e3,
            pick(&behind_nginx.latency) / 1e3,
            pick(&gateway.latency) / 1e3,
        );
        Figure::new(BENCH, direct_name, d, "ms")
            .baseline(format!("{label} of the {nginx_what}"), n)
            .with("connections", connections)
            .print();
        Figure::new(BENCH, nginx_name, n, "ms")
            .baseline(format!("{label} {direct_what}"), d)
            .with("over_direct_ms", n - d)
            .with("connections", connections)
            .print();
        let mut f = Figure::new(BENCH, gateway_name, g, "ms")
            .baseline(format!("{label} {direct_what}"), d)
            .with("over_direct_ms", g - d)
            .with("over_nginx_ms", g - n)
            .with("connections", connections);
        if label == "p99" {
            f = f
                .with("goal", format!("<= direct p99 + {GOAL_P99_MARGIN_MS} ms"))
                .with(
                    "goal_met",
                    goal_applies.then_some(g <= d + GOAL_P99_MARGIN_MS),
                );
        }
        f.print();
    }

    rack_figure(&direct, &behind_nginx, &gateway, cores);
    Ok(())
}

/// How busy the mock rack was: its CPU per request measured directly, and what that costs at
/// the gateway's rate, against the machine's cores.
fn rack_figure(direct: &Run, behind_nginx: &Run, gateway: &Run, cores: usize) {
    let per_request_s = direct
        .cpu
        .as_ref()
        .and_then(|c| c.rack)
        .map(|s| s / (direct.requests as f64).max(1.0));
    let busy_direct = direct
        .cpu
        .as_ref()
        .and_then(|c| c.rack)
        .map(|s| s / direct.window_s);
    let busy_nginx = behind_nginx
        .cpu
        .as_ref()
        .and_then(|c| c.rack)
        .map(|s| s / behind_nginx.window_s);
    let busy_gateway = gateway
        .cpu
        .as_ref()
        .and_then(|c| c.rack)
        .map_or(f64::NAN, |s| s / gateway.window_s);
    Figure::new(BENCH, "rack_busy_gateway_run", busy_gateway, "cores")
        .baseline("cores of this machine", cores as f64)
        .with(
            "how",
            "the mock rack's threads during the gateway's window (the rack has its own runtime \
             in every run)",
        )
        .with("rack_cpu_us_per_request", per_request_s.map(|s| s * 1e6))
        .with("rack_cores_busy_direct_run", busy_direct)
        .with("rack_cores_busy_nginx_run", busy_nginx)
        .with("direct_requests_per_s", direct.rps)
        .with("gateway_requests_per_s", gateway.rps)
        .with(
            "direct_over_gateway",
            direct.rps / gateway.rps.max(f64::MIN_POSITIVE),
        )
        .print();
}

/// Runs the load against one target for one round and takes the CPU split over its measured
/// window; also returns every request that got an answer, warm-up included.
fn measure(load_rt: &Runtime, plan: Plan, proxy: Proxy<'_>, cores: usize) -> Result<(Round, u64)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let task = load_rt.spawn(async move {
        load::run(&plan, move |w| {
            let _ = tx.send(w);
        })
        .await
    });
    let window = match rx.recv() {
        Ok(w) => w,
        // The generator failed before its clock started (a connection was refused).
        Err(_) => {
            load_rt
                .block_on(task)
                .context("the load generator panicked")??;
            bail!("the load generator ended without starting its window");
        }
    };
    // This process and nginx's, so the machine's other load can be told apart.
    let mut ours = vec![std::process::id()];
    if let Proxy::Nginx(n) = &proxy {
        ours.extend(n.pid());
        ours.extend(n.pid().map(cpu::children).unwrap_or_default());
    }
    sleep_until(window.start);
    let before = snapshot(&proxy);
    sleep_until(window.end);
    let after = snapshot(&proxy);
    let outcome: Outcome = load_rt
        .block_on(task)
        .context("the load generator panicked")??;
    let window_s = (window.end - window.start).as_secs_f64();
    let cpu = match (before, after) {
        ((Some(t0), p0, m0), (Some(t1), p1, m1)) => Some(Cpu {
            machine: m0
                .as_ref()
                .zip(m1.as_ref())
                .and_then(|(a, b)| b.busy_cores_since(a, cores))
                .map(|c| c * window_s),
            others: m0
                .as_ref()
                .zip(m1.as_ref())
                .map(|(a, b)| b.busiest_since(a, &ours, cores, 3))
                .unwrap_or_default(),
            proxy_name: match proxy {
                Proxy::None => "none",
                Proxy::Nginx(_) => "nginx",
                Proxy::Gateway => "gateway",
            },
            load: t1.since(&t0, Some(cpu::LOAD)),
            rack: Some(t1.since(&t0, Some(cpu::RACK))),
            proxy: match proxy {
                Proxy::None => None,
                Proxy::Nginx(_) => p0
                    .zip(p1)
                    .map(|(a, b)| b.0.saturating_sub(a.0) as f64 / 1e9),
                // The gateway's runtime and its store's own threads.
                Proxy::Gateway => Some(t1.since(&t0, Some(cpu::GATEWAY)) + t1.since(&t0, None)),
            },
            split: match proxy {
                Proxy::None => Vec::new(),
                Proxy::Nginx(_) => p0
                    .zip(p1)
                    .map(|(a, b)| vec![("nginx", b.1.since(a.1))])
                    .unwrap_or_default(),
                Proxy::Gateway => vec![
                    (
                        "gateway_workers",
                        t1.user_system_since(&t0, Some(cpu::GATEWAY)),
                    ),
                    ("gateway_other_threads", t1.user_system_since(&t0, None)),
                ],
            },
        }),
        _ => None,
    };
    let sent = outcome.answered;
    Ok((
        Round {
            outcome,
            window_s,
            cpu,
        },
        sent,
    ))
}

// === impl Run ===

impl Run {
    /// One target's rounds as one run: samples, counts and CPU seconds added up; the other
    /// processes' CPU averaged over the windows.
    fn from_rounds(rounds: Vec<Round>) -> Run {
        let mut rounds = rounds.into_iter();
        let Some(first) = rounds.next() else {
            return Run {
                rps: 0.0,
                latency: Outcome::default().measured(),
                requests: 0,
                errors: 0,
                warmup_errors: 0,
                error_examples: Vec::new(),
                reconnects: 0,
                body_bytes_per_request: 0.0,
                window_s: 0.0,
                cpu: None,
            };
        };
        let mut outcome = first.outcome;
        let mut window_s = first.window_s;
        let mut others: Vec<(String, f64)> = Vec::new();
        let mut add_others = |cpu: &Option<Cpu>, window: f64| {
            for (comm, cores) in cpu.iter().flat_map(|c| &c.others) {
                match others.iter_mut().find(|(c, _)| c == comm) {
                    Some((_, s)) => *s += cores * window,
                    None => others.push((comm.clone(), cores * window)),
                }
            }
        };
        add_others(&first.cpu, first.window_s);
        let mut cpu = first.cpu;
        for r in rounds {
            outcome.merge(r.outcome);
            add_others(&r.cpu, r.window_s);
            window_s += r.window_s;
            cpu = match (cpu, r.cpu) {
                (Some(a), Some(b)) => Some(a.plus(&b)),
                _ => None,
            };
        }
        if let Some(c) = cpu.as_mut() {
            others.sort_by(|a, b| b.1.total_cmp(&a.1));
            others.truncate(3);
            c.others = others
                .into_iter()
                .map(|(comm, s)| (comm, s / window_s))
                .collect();
        }
        let errors = outcome.errors;
        let warmup_errors = outcome.warmup_errors;
        let error_examples = outcome.error_examples.clone();
        let reconnects = outcome.reconnects;
        let body_bytes = outcome.body_bytes;
        let latency = outcome.measured();
        let requests = latency.all.count as u64;
        Run {
            rps: requests as f64 / window_s,
            latency,
            requests,
            errors,
            warmup_errors,
            error_examples,
            reconnects,
            body_bytes_per_request: body_bytes as f64 / (requests as f64).max(1.0),
            window_s,
            cpu,
        }
    }
}

/// This process's threads; nginx's CPU nanoseconds and ticks; the machine.
type Snapshot = (
    Option<cpu::Threads>,
    Option<(u64, cpu::ProcessTicks)>,
    Option<cpu::Machine>,
);

fn snapshot(proxy: &Proxy<'_>) -> Snapshot {
    let nginx = match proxy {
        Proxy::Nginx(n) => n
            .pid()
            .and_then(|pid| cpu::process_tree_ns(pid).zip(cpu::process_tree_ticks(pid))),
        _ => None,
    };
    (cpu::Threads::now(), nginx, cpu::Machine::now())
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// CPU of each part, in cores (seconds per second of window) or microseconds per request.
fn cpu_json(r: &Run, per_request: bool) -> Value {
    let Some(c) = &r.cpu else {
        return Value::Null;
    };
    let scale = |s: f64| {
        let v = if per_request {
            s * 1e6 / (r.requests as f64).max(1.0)
        } else {
            s / r.window_s
        };
        crate::report::round(v)
    };
    let mut m = serde_json::Map::new();
    m.insert("load_generator".into(), json!(scale(c.load)));
    if let Some(rack) = c.rack {
        m.insert("mock_rack".into(), json!(scale(rack)));
    }
    if let Some(p) = c.proxy {
        m.insert(c.proxy_name.into(), json!(scale(p)));
    }
    let total = c.total();
    m.insert("total".into(), json!(scale(total)));
    if let Some(machine) = c.machine {
        // Everything else on the machine (other processes, interrupts) during the window: a
        // large value means the figures were taken on a busy machine.
        m.insert("machine".into(), json!(scale(machine)));
        m.insert(
            "other_processes".into(),
            json!(scale((machine - total).max(0.0))),
        );
    }
    Value::Object(m)
}

/// The proxy's CPU per request in user space and in the kernel, by part (null direct to the
/// rack, or when the kernel gave no figures). The kernel part holds the loopback TCP that nginx
/// pays as well; the rest is the proxy's own work.
fn split_json(r: &Run) -> Value {
    let Some(c) = r.cpu.as_ref().filter(|c| !c.split.is_empty()) else {
        return Value::Null;
    };
    let per_request = |s: f64| crate::report::round(s * 1e6 / (r.requests as f64).max(1.0));
    let parts = c.split.iter().map(|(part, us)| {
        (
            (*part).to_owned(),
            json!({"user": per_request(us.user), "system": per_request(us.system)}),
        )
    });
    Value::Object(parts.collect())
}

/// Latency per request of the mix.
fn by_request(m: &Measured) -> Value {
    let mut out = serde_json::Map::new();
    for (kind, s) in MIX.iter().zip(&m.by_kind) {
        out.insert(
            Kind::label(*kind).to_owned(),
            json!({
                "count": s.count,
                "p50_ms": crate::report::round(s.p50_us / 1e3),
                "p99_ms": crate::report::round(s.p99_us / 1e3),
            }),
        );
    }
    Value::Object(out)
}

/// `Authorization: Basic base64(convox:<secret>)`, as the CLI sends it (spec §2.1).
fn basic(secret: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("convox:{secret}"));
    format!("Basic {encoded}")
}

fn random_hex() -> Result<String> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("cannot generate a password: {e}"))?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_matches_the_captured_header() {
        // Spec Appendix A.1: RACK_URL=http://convox:TOKEN123@...
        assert_eq!(basic("TOKEN123"), "Basic Y29udm94OlRPS0VOMTIz");
    }
}
