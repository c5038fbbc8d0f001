//! The object store and builds: a build from an uploaded `object://` URL completes at once with a
//! new release (spec §6 "Build-logic details"); an external build hands out the repository URL.
//!
//! Invariant: objects are stored exactly as uploaded; a build's answer is its first state
//! (`running` or `created`), while the stored build has already moved on.
use bytes::Bytes;

use super::{MANIFEST, State, StoredObject, set};
use crate::clock::Time;
use crate::error::RackError;
use crate::shapes::Build;

/// What `POST /apps/{app}/builds` asked for.
#[derive(Debug, Default)]
pub(crate) struct BuildRequest {
    pub url: String,
    pub description: Option<String>,
    pub external: bool,
    pub git_sha: Option<String>,
}

/// What `PUT /apps/{app}/builds/{id}` asked to change.
#[derive(Debug, Default)]
pub(crate) struct BuildChange {
    pub ended: Option<Time>,
    pub entrypoint: Option<String>,
    pub logs: Option<String>,
    pub manifest: Option<String>,
    pub release: Option<String>,
    pub started: Option<Time>,
    pub status: Option<String>,
}

// === impl State ===

impl State {
    // --- objects ---

    /// Stores an object; an empty key gets a server-chosen `tmp/…` key (spec §3.3).
    pub(crate) fn object_store(&mut self, app: &str, key: &str, object: StoredObject) -> String {
        let key = if key.is_empty() {
            format!("tmp/{}", object.sha256.get(..30).unwrap_or(&object.sha256))
        } else {
            key.to_owned()
        };
        let url = format!("object://{app}/{key}");
        self.objects.insert((app.to_owned(), key), object);
        url
    }

    pub(crate) fn object_fetch(&self, app: &str, key: &str) -> Result<StoredObject, RackError> {
        self.objects
            .get(&(app.to_owned(), key.to_owned()))
            .cloned()
            .ok_or_else(|| RackError::NotFound(format!("object not found: {key}")))
    }

    pub(crate) fn object_exists(&self, app: &str, key: &str) -> bool {
        self.objects.contains_key(&(app.to_owned(), key.to_owned()))
    }

    pub(crate) fn object_delete(&mut self, app: &str, key: &str) {
        self.objects.remove(&(app.to_owned(), key.to_owned()));
    }

    // --- builds ---

    /// Starts a build. The answer is the build as the rack first reports it (`running`, or
    /// `created` for external builds, spec §3.3); the stored build has already finished, with a
    /// new release, so the CLI's polling sees `complete` at once (spec §6 "Build-logic details").
    pub(crate) fn build_create(
        &mut self,
        app: &str,
        req: BuildRequest,
    ) -> Result<Build, RackError> {
        self.app(app)?;
        let id = self.clock.build_id();
        let process = format!("build-{}", self.clock.pod_suffix());
        let started = self.clock.now();
        let mut build = Build {
            id: id.clone(),
            app: app.to_owned(),
            description: req.description.unwrap_or_default(),
            entrypoint: String::new(),
            git_sha: req.git_sha.unwrap_or_default(),
            logs: String::new(),
            manifest: String::new(),
            process,
            release: String::new(),
            reason: String::new(),
            repository: String::new(),
            status: "running".to_owned(),
            started,
            ended: Time::Zero,
        };
        if req.external {
            // The real rack hands out its own password in this URL (spec §3.3, §3.13).
            build.status = "created".to_owned();
            build.repository = format!(
                "https://convox:{}@{}/{app}",
                self.password, self.system.rack_domain
            );
            self.app_mut(app)?.builds.push(build.clone());
            return Ok(build);
        }
        let answer = build.clone();
        let source = parse_object_url(&req.url);
        let found = source.is_some_and(|(a, k)| self.object_exists(a, k));
        if found {
            let release = self.release_fork(app, None, Some(&id), Some(MANIFEST))?;
            build.release = release.id.clone();
            build.manifest = MANIFEST.to_owned();
            build.status = "complete".to_owned();
            let logs = build_log(&id, &release.id);
            let entry = self.app_mut(app)?;
            entry.releases.push(release);
            entry.build_logs.insert(id.clone(), logs);
        } else {
            let key = source.map_or(req.url.as_str(), |(_, k)| k);
            build.status = "failed".to_owned();
            build.reason = format!("object not found: {key}");
            self.app_mut(app)?.build_logs.insert(
                id.clone(),
                vec![Bytes::from(format!("ERROR: object not found: {key}\n"))],
            );
        }
        // Where a real rack's build process stores the log it wrote (`pkg/build`).
        build.logs = format!("object://{app}/build/{id}/logs");
        build.ended = self.clock.now();
        self.app_mut(app)?.builds.push(build);
        Ok(answer)
    }

    pub(crate) fn build_list(&self, app: &str, limit: usize) -> Result<Vec<Build>, RackError> {
        Ok(self
            .app(app)?
            .builds
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    pub(crate) fn build_get(&self, app: &str, id: &str) -> Result<Build, RackError> {
        self.app(app)?
            .builds
            .iter()
            .find(|b| b.id == id)
            .cloned()
            .ok_or_else(|| RackError::NotFound(format!("build not found: {id}")))
    }

    pub(crate) fn build_update(
        &mut self,
        app: &str,
        id: &str,
        change: BuildChange,
    ) -> Result<Build, RackError> {
        let build = self
            .app_mut(app)?
            .builds
            .iter_mut()
            .find(|b| b.id == id)
            .ok_or_else(|| RackError::NotFound(format!("build not found: {id}")))?;
        let BuildChange {
            ended,
            entrypoint,
            logs,
            manifest,
            release,
            started,
            status,
        } = change;
        set(&mut build.ended, ended);
        set(&mut build.entrypoint, entrypoint);
        set(&mut build.logs, logs);
        set(&mut build.manifest, manifest);
        set(&mut build.release, release);
        set(&mut build.started, started);
        set(&mut build.status, status);
        Ok(build.clone())
    }

    /// A build's log as the rack streams it. A build that is not running is read, as a real
    /// rack reads it, from the object its `logs` names: for a build of this rack that is its
    /// own log (kept here line by line), but a record changed by `PUT` or imported can name any
    /// app's object, and then that object's bytes are what streams.
    pub(crate) fn build_log_lines(&self, app: &str, id: &str) -> Result<Vec<Bytes>, RackError> {
        let entry = self.app(app)?;
        let build = entry.builds.iter().find(|b| b.id == id);
        let own = format!("object://{app}/build/{id}/logs");
        if let Some(build) = build.filter(|b| b.status != "running" && b.logs != own)
            && let Some((from, key)) = parse_object_url(&build.logs)
        {
            return Ok(vec![self.object_fetch(from, key)?.data]);
        }
        entry
            .build_logs
            .get(id)
            .cloned()
            .ok_or_else(|| RackError::NotFound(format!("build not found: {id}")))
    }
}

/// `object://<app>/<key>` → (app, key).
fn parse_object_url(url: &str) -> Option<(&str, &str)> {
    url.strip_prefix("object://")?.split_once('/')
}

/// A build's log: one text frame per line, one of them not UTF-8.
pub(super) fn build_log(build: &str, release: &str) -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"Building: .\n"),
        Bytes::from_static(b"Step 1/2 : FROM busybox\n"),
        Bytes::from_static(b"compiler output \xff\xfe not UTF-8\n"),
        Bytes::from(format!("Build:   {build}\n")),
        Bytes::from(format!("Release: {release}\n")),
    ]
}
