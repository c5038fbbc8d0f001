//! The plain-HTTP handlers, one submodule per resource, each reading its options the way the
//! rack's generated controller does (`pkg/api/controllers.go`: `c.Var`, `c.Value`,
//! `stdapi.UnmarshalOptions`) and calling one state operation.
//!
//! Invariant: handlers are synchronous; each takes the state lock for one operation and returns a
//! `Reply` holding owned data, so serialization and writing happen with no lock held.

mod apps;
mod builds;
mod processes;
mod releases;
mod system;

use bytes::Bytes;

use crate::clock::Time;
use crate::error::RackError;
use crate::params::{Params, atoi};
use crate::respond::Reply;
use crate::routes::{RouteId, Vars};
use crate::shared::Shared;

/// Everything a handler may read.
pub(crate) struct Call<'a> {
    pub shared: &'a Shared,
    pub vars: &'a Vars,
    pub params: Params<'a>,
    pub body: Bytes,
    /// Lower-case hex SHA-256 of `body`, computed while it streamed in (object uploads only).
    pub sha256: Option<String>,
}

/// Runs the handler of a plain-HTTP route. Socket routes are served by `sessions`.
pub(crate) fn dispatch(route: RouteId, call: &mut Call<'_>) -> Reply {
    use RouteId as R;
    match route {
        R::Check | R::Auth => Reply::Ok,
        R::AppList => apps::list(call),
        R::AppCreate => apps::create(call),
        R::AppGet => apps::get(call),
        R::AppUpdate => apps::update(call),
        R::AppDelete => apps::delete(call),
        R::AppCancel => apps::cancel(call),
        R::AppBudgetGet => apps::budget(call),
        R::AppDiagnose => apps::diagnose(call),
        R::AppConfigList => apps::config_list(call),
        R::AppConfigGet => apps::config_get(call),
        R::AppConfigSet => apps::config_set(call),
        R::ObjectList => builds::object_list(call),
        R::ObjectStore => builds::object_store(call),
        R::ObjectFetch => builds::object_fetch(call),
        R::ObjectExists => builds::object_exists(call),
        R::ObjectDelete => builds::object_delete(call),
        R::BuildCreate => builds::create(call),
        R::BuildList => builds::list(call),
        R::BuildGet => builds::get(call),
        R::BuildUpdate => builds::update(call),
        R::BuildImportImage => builds::import_image(call),
        R::ReleaseList => releases::list(call),
        R::ReleaseCreate => releases::create(call),
        R::ReleaseGet => releases::get(call),
        R::ReleasePromote => releases::promote(call),
        R::ProcessList => processes::list(call),
        R::ProcessGet => processes::get(call),
        R::ProcessStop => processes::stop(call),
        R::ProcessRun => processes::run(call),
        R::ServiceList => processes::service_list(call),
        R::ServiceUpdate => processes::service_update(call),
        R::ServiceRestart => processes::service_restart(call),
        R::SystemGet => system::get(call),
        R::SystemUpdate => system::update(call),
        R::SystemProcesses => system::processes(call),
        R::SystemReleases => system::releases(call),
        R::AppLogs
        | R::BuildLogs
        | R::ProcessExec
        | R::ProcessLogs
        | R::ServiceLogs
        | R::SystemLogs => Reply::Error(RackError::Internal(
            "websocket route reached the http dispatcher".to_owned(),
        )),
    }
}

/// An `*int` option: Go's `strconv.Atoi`, whose failure is a 500 with its text.
fn int(value: Option<String>) -> Result<Option<i64>, RackError> {
    value
        .map(|v| atoi(&v))
        .transpose()
        .map_err(RackError::Internal)
}

/// A `*bool` option: `true` is the only true value.
fn boolean(value: Option<String>) -> Option<bool> {
    value.map(|v| v == "true")
}

/// A `*time.Time` option in the "sortable" layout, with Go's parse error on failure.
fn sortable_time(value: Option<String>) -> Result<Option<Time>, RackError> {
    value
        .map(|v| {
            Time::parse_sortable(&v).ok_or_else(|| {
                RackError::Internal(format!(
                    "parsing time \"{v}\" as \"20060102.150405.000000000\": cannot parse \"{v}\" as \"2006\""
                ))
            })
        })
        .transpose()
}

/// A `map[string]string` option (`parameters`, `Environment`, `Volumes`): a urlencoded
/// string, first value per key (spec §1.3).
///
/// A value `url.ParseQuery` reports an error for fails the whole request with that error, a
/// 500 with its text, although Go keeps the good pairs beside it: stdapi's `unmarshalValue`
/// returns the error for this type, and the controller returns whatever `UnmarshalOptions`
/// returns before calling the provider, so nothing is changed (spec §1.5: an untyped error is
/// a 500 with the raw text). The spec does not name this case; the outer form's own
/// `ParseForm` error, by contrast, is ignored (see `params`), as stdapi ignores it.
fn string_map(
    value: Option<String>,
) -> Result<Option<std::collections::BTreeMap<String, String>>, RackError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let (pairs, err) = crate::params::parse_query_checked(&value);
    if let Some(e) = err {
        return Err(RackError::Internal(e));
    }
    let mut map = std::collections::BTreeMap::new();
    for (k, val) in pairs {
        map.entry(k).or_insert(val);
    }
    Ok(Some(map))
}
