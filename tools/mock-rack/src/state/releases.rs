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
        let build = match &req.build {
            Some(build) => Some(self.build_get(app, build)?),
            None => None,
        };
        let manifest = build.as_ref().map(|b| b.manifest.clone());
        let parent = match &req.parent {
            Some(id) => Some(self.release_get(app, id)?),
            None => None,
        };
        let mut release =
            self.release_fork(app, parent, req.build.as_deref(), manifest.as_deref())?;
        // The rack's order (`ReleaseCreate`): the build's description, then the env change
        // named key by key, then the caller's own.
        if let Some(build) = build {
            release.description = build.description;
        }
        if let Some(env) = req.env {
            let diff = env_diff(&release.env, &env);
            if !diff.is_empty() {
                release.description = format!("env {diff}");
            }
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

/// The keys an env change adds, changes and removes, as the rack's `common.EnvDiff` writes
/// them into a release's description (`add:K change:K remove:K`, each group sorted). Keys are
/// read as the rack reads an env: each line split at its first `=`, the key trimmed, lines
/// without `=` skipped, the last of a repeated key kept; so a multi-line value's later lines
/// that hold an `=` show up here as keys made of its bytes.
fn env_diff(old: &str, new: &str) -> String {
    use std::collections::BTreeMap;
    let load = |env: &str| -> BTreeMap<String, String> {
        env.trim()
            .split('\n')
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
            .collect()
    };
    let (a, b) = (load(old), load(new));
    let adds = b
        .keys()
        .filter(|k| !a.contains_key(*k))
        .map(|k| format!("add:{k}"));
    let changes = b
        .iter()
        .filter(|(k, v)| a.get(*k).is_some_and(|old| old != *v))
        .map(|(k, _)| format!("change:{k}"));
    let removes = a
        .keys()
        .filter(|k| !b.contains_key(*k))
        .map(|k| format!("remove:{k}"));
    adds.chain(changes)
        .chain(removes)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::env_diff;

    #[test]
    fn the_diff_names_keys_as_the_rack_reads_them() {
        assert_eq!(env_diff("A=1\nB=2", "A=1\nB=2"), "");
        assert_eq!(
            env_diff("A=1\nB=2\nC=3", "C=4\nD=5\n B =2"),
            "add:D change:C remove:A"
        );
        // A multi-line value: its later line with an `=` is read as a key.
        assert_eq!(env_diff("", "K=line one\nab+c/d=="), "add:K add:ab+c/d");
    }
}
