//! Releases, where the env lives (spec §3.4, §5 "Environment"): `convox env set` posts the whole
//! new env to `POST /apps/{app}/releases`, and `--promote` then promotes the new release.
//!
//! Invariant: a release is never edited after creation; `env` in a request replaces the whole env
//! of the forked release, and listing returns the full env in every item, as the rack does.

use super::{Call, boolean, int};
use crate::error::RackError;
use crate::respond::Reply;
use crate::state::ReleaseRequest;

/// Newest first, `limit` (a query option) defaulting to 10.
pub(super) fn list(call: &mut Call<'_>) -> Reply {
    let limit = match int(call.params.query("limit")) {
        Ok(l) => usize::try_from(l.unwrap_or(10)).unwrap_or(0),
        Err(e) => return Reply::Error(e),
    };
    let releases = call
        .shared
        .state()
        .release_list(call.vars.get("app"), limit);
    Reply::from_result(releases)
}

pub(super) fn get(call: &mut Call<'_>) -> Reply {
    let release = call
        .shared
        .state()
        .release_get(call.vars.get("app"), call.vars.get("id"));
    Reply::from_result(release)
}

/// `ReleaseCreateOptions`: `build`, `description`, `env`, `parent-release` (form options).
pub(super) fn create(call: &mut Call<'_>) -> Reply {
    let request = ReleaseRequest {
        build: call.params.form("build"),
        description: call.params.form("description"),
        env: call.params.form("env"),
        parent: call.params.form("parent-release"),
    };
    if call.shared.quotes_release_env() {
        // The test-only switch: refused the way an untyped provider error is (spec §1.5),
        // quoting the env the release would have had (posted, or copied from the parent or
        // the newest).
        let app = call.vars.get("app");
        let env = match (&request.env, &request.parent) {
            (Some(env), _) => env.clone(),
            (None, Some(parent)) => call
                .shared
                .state()
                .release_get(app, parent)
                .map(|r| r.env)
                .unwrap_or_default(),
            (None, None) => call
                .shared
                .state()
                .release_list(app, 1)
                .ok()
                .and_then(|list| list.into_iter().next())
                .map(|r| r.env)
                .unwrap_or_default(),
        };
        return Reply::Error(RackError::Internal(format!(
            "Secret \"{app}-env\" is invalid: data: Invalid value: {env:?}"
        )));
    }
    let release = call
        .shared
        .state()
        .release_create(call.vars.get("app"), request);
    Reply::from_result(release)
}

/// `ReleasePromoteOptions`, in struct order; only `force` changes what the mock does.
pub(super) fn promote(call: &mut Call<'_>) -> Reply {
    let _development = boolean(call.params.form("development"));
    let force = boolean(call.params.form("force")).unwrap_or(false);
    let _idle = boolean(call.params.form("idle"));
    for name in ["min", "max", "timeout"] {
        if let Err(e) = int(call.params.form(name)) {
            return Reply::Error(e);
        }
    }
    if call.shared.quotes_release_env() {
        // The test-only switch: refused as a manifest the release's env was filled into fails
        // to load (an untyped provider error, spec §1.5).
        return manifest_error(call, call.vars.get("id"));
    }
    let result =
        call.shared
            .state()
            .release_promote(call.vars.get("app"), call.vars.get("id"), force);
    Reply::ok_or(result)
}

/// What a rack answers when `release`'s manifest, with the release's env filled in, fails to
/// load: YAML quotes the scalar it cannot decode (here the release's last env value), its first
/// 7 bytes and `...` when longer than 10. Promoting a release and running a process of one
/// (`Release`) both load it so.
pub(super) fn manifest_error(call: &Call<'_>, release: &str) -> Reply {
    let env = call
        .shared
        .state()
        .release_get(call.vars.get("app"), release)
        .map(|r| r.env)
        .unwrap_or_default();
    let value = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(_, v)| v))
        .next_back()
        .unwrap_or_default();
    let shown = if value.chars().count() > 10 {
        format!("{}...", value.chars().take(7).collect::<String>())
    } else {
        value.to_owned()
    };
    Reply::Error(RackError::Internal(format!(
        "yaml: unmarshal errors:\n  line 4: cannot unmarshal !!str `{shown}` into int"
    )))
}
