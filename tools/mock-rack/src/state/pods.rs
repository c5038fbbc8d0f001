//! Pods and services: list, get and stop pods, one-off runs, exec targets, scaling and restarts.
//!
//! Invariant: a service's replica pods follow its `count`; a missing pod is the Kubernetes error
//! `pods "<pid>" not found` (500), as the rack passes it through (spec §1.5).
use super::{Pod, State, pod_not_found, replica_id, service_pod, set};
use crate::error::RackError;
use crate::shapes::{Process, Service};

/// What `PUT /apps/{app}/services/{name}` asked to change.
#[derive(Debug, Default)]
pub(crate) struct ServiceChange {
    pub count: Option<i64>,
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
    pub gpu: Option<i64>,
    pub gpu_vendor: Option<String>,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

/// What `POST /apps/{app}/services/{service}/processes` asked for.
#[derive(Debug, Default)]
pub(crate) struct RunRequest {
    pub command: Option<String>,
    pub image: Option<String>,
    pub release: Option<String>,
}

// === impl State ===

impl State {
    // --- processes and services ---

    pub(crate) fn process_list(
        &self,
        app: &str,
        service: Option<&str>,
        release: Option<&str>,
    ) -> Result<Vec<Process>, RackError> {
        let mut out: Vec<Process> = self
            .app(app)?
            .pods
            .iter()
            .map(|p| &p.process)
            .filter(|p| service.is_none_or(|s| p.name == s))
            .filter(|p| release.is_none_or(|r| p.release == r))
            .cloned()
            .collect();
        // `structs.Processes.Less`: by app, service, id.
        out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(out)
    }

    /// A missing pod is a Kubernetes error, so the rack answers 500 with its text (spec §1.5).
    pub(crate) fn process_get(&self, app: &str, pid: &str) -> Result<Process, RackError> {
        self.apps
            .get(app)
            .and_then(|a| a.pods.iter().find(|p| p.process.id == pid))
            .map(|p| p.process.clone())
            .ok_or_else(|| pod_not_found(pid))
    }

    /// Deletes a pod; a service's replica is replaced by a new pod, as its deployment would.
    pub(crate) fn process_stop(&mut self, app: &str, pid: &str) -> Result<(), RackError> {
        let suffix = self.clock.pod_suffix();
        let now = self.clock.now();
        let entry = self.apps.get_mut(app).ok_or_else(|| pod_not_found(pid))?;
        let at = entry
            .pods
            .iter()
            .position(|p| p.process.id == pid)
            .ok_or_else(|| pod_not_found(pid))?;
        let pod = entry.pods.remove(at);
        if !pod.one_off {
            let mut process = pod.process;
            process.id = replica_id(&process.name, &suffix);
            process.started = now;
            entry.pods.push(Pod {
                process,
                one_off: false,
            });
        }
        Ok(())
    }

    /// Resolves an exec target: a pod id, or a service name standing for one of its pods.
    pub(crate) fn exec_target(&self, app: &str, pid: &str) -> Result<String, RackError> {
        let pods = &self.apps.get(app).ok_or_else(|| pod_not_found(pid))?.pods;
        pods.iter()
            .find(|p| p.process.name == pid && !p.one_off)
            .or_else(|| pods.iter().find(|p| p.process.id == pid))
            .map(|p| p.process.id.clone())
            .ok_or_else(|| pod_not_found(pid))
    }

    /// Starts a one-off pod (`convox run`, spec §4.4); it is `running` at once.
    pub(crate) fn process_run(
        &mut self,
        app: &str,
        service: &str,
        req: RunRequest,
    ) -> Result<Process, RackError> {
        let current = self.app(app)?.app.release.clone();
        let release_id = req.release.unwrap_or(current);
        let build = self
            .app(app)?
            .releases
            .iter()
            .find(|r| r.id == release_id)
            .map(|r| r.build.clone())
            .unwrap_or_default();
        let id = format!("{service}-{}", self.clock.pod_suffix());
        let mut process = service_pod(id, app, service, &release_id, &build, self.clock.now());
        process.command = req.command.unwrap_or_default();
        process.ports.clear();
        if let Some(image) = req.image {
            process.image = image;
        }
        self.app_mut(app)?.pods.push(Pod {
            process: process.clone(),
            one_off: true,
        });
        Ok(process)
    }

    pub(crate) fn service_list(&self, app: &str) -> Result<Vec<Service>, RackError> {
        Ok(self.app(app)?.services.clone())
    }

    /// Scales or resizes a service; the replica pods follow `count`.
    pub(crate) fn service_update(
        &mut self,
        app: &str,
        name: &str,
        change: ServiceChange,
    ) -> Result<(), RackError> {
        let release = self.app(app)?.app.release.clone();
        let build = self
            .release_get(app, &release)
            .map(|r| r.build)
            .unwrap_or_default();
        let service = self
            .app_mut(app)?
            .services
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| RackError::NotFound(format!("service not found: {name}")))?;
        let ServiceChange {
            count,
            cpu,
            memory,
            gpu,
            gpu_vendor,
            min,
            max,
        } = change;
        set(&mut service.count, count);
        set(&mut service.cpu, cpu);
        set(&mut service.memory, memory);
        set(&mut service.gpu, gpu);
        set(&mut service.gpu_vendor, gpu_vendor);
        if min.is_some() {
            service.min = min;
        }
        if max.is_some() {
            service.max = max;
        }
        // The count is kept as asked; the pods made for it are bounded, so a huge count (the
        // rack only records it) cannot hold the state lock while memory runs out.
        let want = usize::try_from(service.count)
            .unwrap_or(0)
            .min(MAX_SERVICE_PODS);
        let have = self
            .app(app)?
            .pods
            .iter()
            .filter(|p| !p.one_off && p.process.name == name)
            .count();
        for _ in have..want {
            let id = replica_id(name, &self.clock.pod_suffix());
            let pod = service_pod(id, app, name, &release, &build, self.clock.now());
            self.app_mut(app)?.pods.push(Pod {
                process: pod,
                one_off: false,
            });
        }
        if have > want {
            let mut extra = have - want;
            self.app_mut(app)?.pods.retain(|p| {
                let drop = extra > 0 && !p.one_off && p.process.name == name;
                if drop {
                    extra -= 1;
                }
                !drop
            });
        }
        Ok(())
    }

    /// Restarts a service: every replica is replaced by a new pod.
    pub(crate) fn service_restart(&mut self, app: &str, name: &str) -> Result<(), RackError> {
        if !self.app(app)?.services.iter().any(|s| s.name == name) {
            return Err(RackError::NotFound(format!("service not found: {name}")));
        }
        let replicas: Vec<usize> = self
            .app(app)?
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.one_off && p.process.name == name)
            .map(|(i, _)| i)
            .collect();
        for i in replicas {
            let id = replica_id(name, &self.clock.pod_suffix());
            let now = self.clock.now();
            if let Some(pod) = self.app_mut(app)?.pods.get_mut(i) {
                pod.process.id = id;
                pod.process.started = now;
            }
        }
        Ok(())
    }
}

/// The most pods the mock runs for one service, whatever count was asked.
const MAX_SERVICE_PODS: usize = 100;
