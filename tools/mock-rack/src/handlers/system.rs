//! The rack itself: `GET /system` (which drives the CLI's version logic, spec §9), its pods and
//! version history, and `PUT /system`, which a v3 direct rack refuses (spec §3.10).
//!
//! Invariant: the version is a v3 string ("3.21.0") that sorts after every v2 timestamp, so the
//! CLI never falls back to the v2-classic endpoints.

use super::{Call, boolean, int, string_map};
use crate::error::RackError;
use crate::respond::Reply;

pub(super) fn get(call: &mut Call<'_>) -> Reply {
    let system = call.shared.state().system();
    Reply::json(&system)
}

/// `SystemUpdateOptions` are read, then the k8s provider answers 501; an option that fails to
/// parse (`count`, `parameters`) answers its 500 first, as `UnmarshalOptions` runs first.
pub(super) fn update(call: &mut Call<'_>) -> Reply {
    if let Err(e) = int(call.params.form("count")) {
        return Reply::Error(e);
    }
    let _force = boolean(call.params.form("force"));
    if let Err(e) = string_map(call.params.form("parameters")) {
        return Reply::Error(e);
    }
    let _type = call.params.form("type");
    let _version = call.params.form("version");
    Reply::Error(RackError::NotImplemented(
        "direct rack doesn't support update, make sure you are not using RACK_URL environment variable"
            .to_owned(),
    ))
}

/// `SystemProcessesOptions`: the `all` query option.
pub(super) fn processes(call: &mut Call<'_>) -> Reply {
    let _all = boolean(call.params.query("all"));
    let processes = call.shared.state().system_processes();
    Reply::json(&processes)
}

pub(super) fn releases(call: &mut Call<'_>) -> Reply {
    let releases = call.shared.state().system_releases();
    Reply::json(&releases)
}
