//! Releases: fork the newest, replace its env or build, promote (spec §3.4, §5 "Environment").
//!
//! Invariant: releases are append-only; a new release copies the newest one (not the app's
//! current release), as the rack's `releaseFork` does.
use super::{State, image};
use crate::error::RackError;
use crate::shapes::Release;

/// What `POST /apps/{app}/releases` asked for.
#[derive(Debug, Default)]
pub(crate) struct ReleaseRequest {
    pub build: Option<String>,
    pub description: Option<String>,
    pub env: Option<String>,
    /// The release to fork instead of the newest (`parent-release`).
    pub parent: Option<String>,
}

// === impl State ===

impl State {
    // --- releases ---

    /// Newest first, at most `limit` (spec §3.4); every item carries its full `env`.
    pub(crate) fn release_list(&self, app: &str, limit: usize) -> Result<Vec<Release>, RackError> {
        Ok(self
            .app(app)?
            .releases
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    pub(crate) fn release_get(&self, app: &str, id: &str) -> Result<Release, RackError> {
        self.app(app)?
            .releases
            .iter()
            .find(|r| r.id == id)
            .cloned()
            .ok_or_else(|| RackError::NotFound(format!("release not found: {id}")))
    }

    /// Forks the parent release (`parent-release`, 404 when it is not there) or else the
    /// newest, and applies the request: `env` replaces the whole env, `build` switches build
    /// and manifest (spec §3.4, §5 "Environment"; the rack's `releaseFork`).
    pub(crate) fn release_create(
        &mut self,
        app: &str,
        req: ReleaseRequest,
    ) -> Result<Release, RackError> {
        let manifest = match &req.build {
            Some(build) => Some(self.build_get(app, build)?.manifest),
            None => None,
        };
        let parent = match &req.parent {
            Some(id) => Some(self.release_get(app, id)?),
            None => None,
        };
        let mut release =
            self.release_fork(app, parent, req.build.as_deref(), manifest.as_deref())?;
        if let Some(env) = req.env {
            release.env = env;
        }
        if let Some(description) = req.description {
            release.description = description;
        }
        self.app_mut(app)?.releases.push(release.clone());
        Ok(release)
    }

    /// A new release copying `parent`, or else the newest one, with a fresh id and time.
    pub(super) fn release_fork(
        &mut self,
        app: &str,
        parent: Option<Release>,
        build: Option<&str>,
        manifest: Option<&str>,
    ) -> Result<Release, RackError> {
        let newest = match parent {
            Some(parent) => Some(parent),
            None => self.app(app)?.releases.last().cloned(),
        };
        let id = self.clock.release_id();
        let created = self.clock.now();
        let mut release = newest.unwrap_or_else(|| Release {
            id: String::new(),
            app: app.to_owned(),
            build: String::new(),
            env: String::new(),
            manifest: String::new(),
            description: String::new(),
            created,
        });
        release.id = id;
        release.created = created;
        release.description = String::new();
        if let Some(build) = build {
            release.build = build.to_owned();
        }
        if let Some(manifest) = manifest {
            release.manifest = manifest.to_owned();
        }
        Ok(release)
    }

    /// Makes `id` the app's release; the service pods move to it, the app stays `running`.
    /// Checked in the rack's order (`ReleasePromoteValidate`): the app, its status (403 while
    /// updating, unless forced), the release, then 400 for an empty manifest or a release
    /// older than the current one (a rollback makes a new release instead).
    pub(crate) fn release_promote(
        &mut self,
        app: &str,
        id: &str,
        force: bool,
    ) -> Result<(), RackError> {
        let current = {
            let entry = self.app(app)?;
            if entry.app.status != "running" && !force {
                return Err(RackError::Forbidden("app is currently updating".to_owned()));
            }
            entry.app.release.clone()
        };
        let release = self.release_get(app, id)?;
        if release.manifest.is_empty() {
            return Err(RackError::BadRequest(
                "can not promote a release with an empty manifest".to_owned(),
            ));
        }
        if let Ok(current) = self.release_get(app, &current)
            && release.created < current.created
        {
            return Err(RackError::BadRequest(
                "can not promote an older release, try rollback".to_owned(),
            ));
        }
        let entry = self.app_mut(app)?;
        entry.app.release = release.id.clone();
        for pod in entry.pods.iter_mut().filter(|p| !p.one_off) {
            pod.process.release = release.id.clone();
            pod.process.image = image(app, &pod.process.name, &release.build);
        }
        Ok(())
    }
}
