//! Objects (the deploy's source tarball) and builds (spec §3.3, §6 deploy timeline).
//!
//! Invariant: an object is stored exactly as its body arrived, with the SHA-256 computed while it
//! streamed in; a build created from an `object://` URL that exists completes with a new release,
//! so `GET /apps/{app}/builds/{id}` reflects it.

use super::{Call, boolean, int, sortable_time};
use crate::error::RackError;
use crate::respond::Reply;
use crate::shapes::Object;
use crate::state::{BuildChange, BuildRequest, StoredObject};

/// The k8s provider cannot list objects: 501 `unimplemented` (spec §3.3).
pub(super) fn object_list(call: &mut Call<'_>) -> Reply {
    let prefix = call.params.value("prefix");
    if prefix.contains("..") {
        return Reply::Error(RackError::BadRequest("invalid prefix".to_owned()));
    }
    Reply::Error(RackError::NotImplemented("unimplemented".to_owned()))
}

/// Stores the raw body under the key and answers `{"Url":"object://<app>/<key>"}`.
pub(super) fn object_store(call: &mut Call<'_>) -> Reply {
    // `ObjectStoreOptions.Public` is a `header:"Public"` option; the mock only records it.
    let _public = boolean(call.params.header("Public"));
    let object = StoredObject {
        data: call.body.clone(),
        sha256: call.sha256.clone().unwrap_or_default(),
    };
    let app = call.vars.get("app");
    let url = call
        .shared
        .state()
        .object_store(app, call.vars.get("key"), object);
    Reply::json(&Object { url })
}

pub(super) fn object_fetch(call: &mut Call<'_>) -> Reply {
    let object = call
        .shared
        .state()
        .object_fetch(call.vars.get("app"), call.vars.get("key"));
    match object {
        Ok(o) => Reply::Stream(o.data),
        Err(e) => Reply::Error(e),
    }
}

/// Renders `true` or `false` with 200 either way (spec §3.3); HEAD drops the body.
pub(super) fn object_exists(call: &mut Call<'_>) -> Reply {
    let exists = call
        .shared
        .state()
        .object_exists(call.vars.get("app"), call.vars.get("key"));
    Reply::json(&exists)
}

pub(super) fn object_delete(call: &mut Call<'_>) -> Reply {
    call.shared
        .state()
        .object_delete(call.vars.get("app"), call.vars.get("key"));
    Reply::Ok
}

pub(super) fn create(call: &mut Call<'_>) -> Reply {
    let url = call.params.value("url");
    // `BuildCreateOptions`, in struct order; every option is read, as UnmarshalOptions does.
    let _build_args = call.params.form("build-args");
    let description = call.params.form("description");
    let _development = boolean(call.params.form("development"));
    let external = boolean(call.params.form("external")).unwrap_or(false);
    let _manifest = call.params.form("manifest");
    let _no_cache = boolean(call.params.form("no-cache"));
    let _wildcard = boolean(call.params.form("wildcard-domain"));
    let git_sha = call.params.form("git-sha");
    let request = BuildRequest {
        url,
        description,
        external,
        git_sha,
    };
    let build = call
        .shared
        .state()
        .build_create(call.vars.get("app"), request);
    Reply::from_result(build)
}

/// Newest first, `limit` defaulting to 10.
pub(super) fn list(call: &mut Call<'_>) -> Reply {
    let limit = match int(call.params.query("limit")) {
        Ok(l) => usize::try_from(l.unwrap_or(10)).unwrap_or(0),
        Err(e) => return Reply::Error(e),
    };
    let builds = call.shared.state().build_list(call.vars.get("app"), limit);
    Reply::from_result(builds)
}

pub(super) fn get(call: &mut Call<'_>) -> Reply {
    let build = call
        .shared
        .state()
        .build_get(call.vars.get("app"), call.vars.get("id"));
    Reply::from_result(build)
}

pub(super) fn update(call: &mut Call<'_>) -> Reply {
    let change = match read_change(call) {
        Ok(c) => c,
        Err(e) => return Reply::Error(e),
    };
    let build = call
        .shared
        .state()
        .build_update(call.vars.get("app"), call.vars.get("id"), change);
    Reply::from_result(build)
}

/// `BuildImportImage`: 422 without `image`, the build must exist; the mock copies no image
/// (its options, `src-creds-user` and `src-creds-pass`, are read and recorded) and answers
/// 202 with no body.
pub(super) fn import_image(call: &mut Call<'_>) -> Reply {
    if call.params.value("image").is_empty() {
        return Reply::Error(RackError::Unprocessable("image param required".to_owned()));
    }
    let _ = call.params.form("src-creds-user");
    let _ = call.params.form("src-creds-pass");
    match call
        .shared
        .state()
        .build_get(call.vars.get("app"), call.vars.get("id"))
    {
        Ok(_) => Reply::Accepted,
        Err(e) => Reply::Error(e),
    }
}

/// `BuildUpdateOptions`, in struct order.
fn read_change(call: &mut Call<'_>) -> Result<BuildChange, RackError> {
    Ok(BuildChange {
        ended: sortable_time(call.params.form("ended"))?,
        entrypoint: call.params.form("entrypoint"),
        logs: call.params.form("logs"),
        manifest: call.params.form("manifest"),
        release: call.params.form("release"),
        started: sortable_time(call.params.form("started"))?,
        status: call.params.form("status"),
    })
}
