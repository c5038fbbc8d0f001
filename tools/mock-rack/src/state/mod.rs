//! The rack's memory: the system record, apps with their releases, builds, services and pods,
//! app configs, and the object store, seeded with the app `x` the spec's captures were made against.
//! The operations live in one submodule per resource.
//!
//! Invariant: every operation is a synchronous method on `State`, called with the one state mutex
//! held and returning owned copies, so no lock is ever held across an await or while a response is
//! written; ids and times come from `Clock`, so identical request sequences yield identical bytes.

mod apps;
mod builds;
mod logs;
mod pods;
mod releases;

use std::collections::BTreeMap;

use bytes::Bytes;

use builds::build_log;
pub(crate) use builds::{BuildChange, BuildRequest};
pub(crate) use logs::LogScope;
pub(crate) use pods::{RunRequest, ServiceChange};
pub(crate) use releases::ReleaseRequest;

use crate::clock::{Clock, Time};
use crate::error::RackError;
use crate::shapes::{App, Build, GoFloat, Process, Release, Service, ServicePort, System};

/// The app every fresh mock rack has (the spec's captures use `-a x`).
pub const SEED_APP: &str = "x";
/// The seeded app's one service.
pub const SEED_SERVICE: &str = "web";
/// The seeded app's one running pod (the pid used in spec Appendix A.8).
pub const SEED_PROCESS: &str = "web-5d8f7c9b4-abcde";
/// The seeded app's current release (the id in spec Appendix A.3).
pub const SEED_RELEASE: &str = "RAAAAAAAAA";
/// The build behind `SEED_RELEASE`.
pub const SEED_BUILD: &str = "BAAAAAAAAA";
/// The env of `SEED_RELEASE`: `convox env set A=B` then posts `A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t`
/// (spec Appendix A.4).
pub const SEED_ENV: &str = "FOO=bar\nSECRET_TOKEN=s3cr3t";
/// The rack version `GET /system` reports; it must sort after the v2 timestamps (spec §9).
pub const RACK_VERSION: &str = "3.21.0";

/// The `convox.yml` every mock build and release carries.
const MANIFEST: &str = "services:\n  web:\n    build: .\n    port: 3000\n";
/// The domain part of every generated host name.
const DOMAIN: &str = "mock";

/// An uploaded object: the bytes exactly as received and their SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The body of the `POST /apps/{app}/objects/{key}` request, byte for byte.
    pub data: Bytes,
    /// Lower-case hex SHA-256 of `data`, computed while the body streamed in.
    pub sha256: String,
}

/// The whole rack.
pub(crate) struct State {
    clock: Clock,
    password: String,
    system: System,
    rack_pods: Vec<Process>,
    rack_releases: Vec<Release>,
    apps: BTreeMap<String, AppState>,
    objects: BTreeMap<(String, String), StoredObject>,
}

struct AppState {
    app: App,
    /// In creation order; the newest is last.
    releases: Vec<Release>,
    /// In creation order; the newest is last.
    builds: Vec<Build>,
    build_logs: BTreeMap<String, Vec<Bytes>>,
    services: Vec<Service>,
    pods: Vec<Pod>,
    configs: BTreeMap<String, String>,
}

struct Pod {
    process: Process,
    /// A `convox run` pod rather than one of a service's replicas.
    one_off: bool,
}

// === impl StoredObject ===

impl std::fmt::Debug for StoredObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Uploaded source may embed secrets (spec §3.13): show its size and hash only.
        f.debug_struct("StoredObject")
            .field("len", &self.data.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

// === impl State ===

impl State {
    /// A rack with the seeded app `x` (release `RAAAAAAAAA`, service `web`, one running pod).
    pub(crate) fn seeded(password: &str) -> State {
        let mut clock = Clock::default();
        let system = System {
            count: 1,
            domain: format!("router.{DOMAIN}"),
            name: "mock".to_owned(),
            provider: "aws".to_owned(),
            rack_domain: format!("api.{DOMAIN}"),
            router_internal: String::new(),
            region: "us-east-1".to_owned(),
            status: "running".to_owned(),
            kind: String::new(),
            version: RACK_VERSION.to_owned(),
        };
        let rack_pods = ["api", "router"]
            .into_iter()
            .map(|name| Process {
                id: format!("{name}-6c9f7d8b5-{}", clock.pod_suffix()),
                app: "system".to_owned(),
                command: String::new(),
                cpu: GoFloat(0.0),
                gpu: 0,
                host: "10.0.0.2".to_owned(),
                image: format!("convox/convox:{RACK_VERSION}"),
                instance: "node-1".to_owned(),
                memory: GoFloat(0.0),
                name: name.to_owned(),
                ports: Vec::new(),
                release: RACK_VERSION.to_owned(),
                started: clock.now(),
                status: "running".to_owned(),
            })
            .collect();
        let rack_releases = vec![Release {
            id: RACK_VERSION.to_owned(),
            app: String::new(),
            build: String::new(),
            env: String::new(),
            manifest: String::new(),
            description: String::new(),
            created: clock.now(),
        }];
        let mut state = State {
            clock,
            password: password.to_owned(),
            system,
            rack_pods,
            rack_releases,
            apps: BTreeMap::new(),
            objects: BTreeMap::new(),
        };
        state.seed_app();
        state
    }

    fn seed_app(&mut self) {
        let build_id = self.clock.build_id();
        let release_id = self.clock.release_id();
        let started = self.clock.now();
        let build = Build {
            id: build_id.clone(),
            app: SEED_APP.to_owned(),
            description: String::new(),
            entrypoint: String::new(),
            git_sha: String::new(),
            logs: format!("object://{SEED_APP}/build/{build_id}/logs"),
            manifest: MANIFEST.to_owned(),
            process: format!("build-{}", self.clock.pod_suffix()),
            release: release_id.clone(),
            reason: String::new(),
            repository: String::new(),
            status: "complete".to_owned(),
            started,
            ended: self.clock.now(),
        };
        let release = Release {
            id: release_id.clone(),
            app: SEED_APP.to_owned(),
            build: build_id.clone(),
            env: SEED_ENV.to_owned(),
            manifest: MANIFEST.to_owned(),
            description: String::new(),
            created: self.clock.now(),
        };
        let mut app = AppState::new(SEED_APP, "3");
        app.app.release = release_id.clone();
        app.build_logs
            .insert(build_id.clone(), build_log(&build_id, &release_id));
        app.builds.push(build);
        app.releases.push(release);
        app.services.push(Service {
            count: 1,
            cpu: 256,
            domain: format!("{SEED_SERVICE}.{SEED_APP}.router.{DOMAIN}"),
            gpu: 0,
            gpu_vendor: String::new(),
            memory: 512,
            name: SEED_SERVICE.to_owned(),
            nlb: Vec::new(),
            ports: vec![ServicePort {
                balancer: 443,
                certificate: String::new(),
                container: 3000,
            }],
            min: None,
            max: None,
        });
        let pod = service_pod(
            SEED_PROCESS.to_owned(),
            SEED_APP,
            SEED_SERVICE,
            &release_id,
            &build_id,
            self.clock.now(),
        );
        app.pods.push(Pod {
            process: pod,
            one_off: false,
        });
        self.apps.insert(SEED_APP.to_owned(), app);
    }

    fn app(&self, name: &str) -> Result<&AppState, RackError> {
        self.apps
            .get(name)
            .ok_or_else(|| RackError::NotFound(format!("app not found: {name}")))
    }

    fn app_mut(&mut self, name: &str) -> Result<&mut AppState, RackError> {
        self.apps
            .get_mut(name)
            .ok_or_else(|| RackError::NotFound(format!("app not found: {name}")))
    }
}

// === impl AppState ===

impl AppState {
    fn new(name: &str, generation: &str) -> AppState {
        AppState {
            app: App {
                generation: generation.to_owned(),
                locked: false,
                name: name.to_owned(),
                release: String::new(),
                router: format!("router.{DOMAIN}"),
                status: "running".to_owned(),
                parameters: BTreeMap::new(),
            },
            releases: Vec::new(),
            builds: Vec::new(),
            build_logs: BTreeMap::new(),
            services: Vec::new(),
            pods: Vec::new(),
            configs: BTreeMap::new(),
        }
    }
}

pub(super) fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

pub(super) fn pod_not_found(pid: &str) -> RackError {
    RackError::Internal(format!("pods \"{pid}\" not found"))
}

pub(super) fn replica_id(service: &str, suffix: &str) -> String {
    format!("{service}-5d8f7c9b4-{suffix}")
}

pub(super) fn image(app: &str, service: &str, build: &str) -> String {
    format!("registry.{DOMAIN}/{app}:{service}.{build}")
}

pub(super) fn service_pod(
    id: String,
    app: &str,
    service: &str,
    release: &str,
    build: &str,
    started: Time,
) -> Process {
    Process {
        id,
        app: app.to_owned(),
        command: String::new(),
        cpu: GoFloat(0.0),
        gpu: 0,
        host: "10.0.1.10".to_owned(),
        image: image(app, service, build),
        instance: "node-1".to_owned(),
        memory: GoFloat(0.0),
        name: service.to_owned(),
        ports: vec!["3000".to_owned()],
        release: release.to_owned(),
        started,
        status: "running".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_matches_the_spec_captures() {
        let state = State::seeded("pw");
        let app = state.app_get(SEED_APP).unwrap();
        assert_eq!(app.release, SEED_RELEASE);
        let release = state.release_get(SEED_APP, SEED_RELEASE).unwrap();
        assert_eq!(release.env, SEED_ENV);
        assert_eq!(release.build, SEED_BUILD);
        let pods = state.process_list(SEED_APP, None, None).unwrap();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].id, SEED_PROCESS);
    }

    #[test]
    fn scaling_adds_and_removes_replicas() {
        let mut state = State::seeded("pw");
        let change = ServiceChange {
            count: Some(3),
            ..ServiceChange::default()
        };
        state
            .service_update(SEED_APP, SEED_SERVICE, change)
            .unwrap();
        assert_eq!(state.process_list(SEED_APP, None, None).unwrap().len(), 3);
        let change = ServiceChange {
            count: Some(1),
            ..ServiceChange::default()
        };
        state
            .service_update(SEED_APP, SEED_SERVICE, change)
            .unwrap();
        assert_eq!(state.process_list(SEED_APP, None, None).unwrap().len(), 1);
    }

    #[test]
    fn log_filters_keep_matching_lines_only() {
        let state = State::seeded("pw");
        let lines = state
            .log_lines(SEED_APP, LogScope::App, false, Some("health"))
            .unwrap();
        assert_eq!(lines, vec![Bytes::from_static(b"GET /health 200 1ms\n")]);
    }
}
