//! Apps, their budget and their config files (spec §3.2).
//!
//! Invariant: option names and sources are those of `pkg/api/controllers.go` (`AppCreate` reads
//! `c.Value("name")`, `AppUpdate` the `lock`/`parameters` form options, `AppConfigSet`
//! `c.Value("value")`), so the recorded parameters are the ones the real rack would have used.

use base64::Engine as _;

use super::{Call, boolean, int, string_map};
use crate::error::RackError;
use crate::respond::Reply;
use crate::shapes::Budget;

pub(super) fn list(call: &mut Call<'_>) -> Reply {
    let apps = call.shared.state().app_list();
    Reply::json(&apps)
}

pub(super) fn create(call: &mut Call<'_>) -> Reply {
    let name = call.params.value("name");
    // `AppCreateOptions`: `generation` defaults to "2"; `timeout` is parsed and then unused here.
    let generation = call
        .params
        .form("generation")
        .unwrap_or_else(|| "2".to_owned());
    if let Err(e) = int(call.params.form("timeout")) {
        return Reply::Error(e);
    }
    let created = call.shared.state().app_create(&name, &generation);
    Reply::from_result(created)
}

pub(super) fn get(call: &mut Call<'_>) -> Reply {
    let app = call.shared.state().app_get(call.vars.get("name"));
    Reply::from_result(app)
}

pub(super) fn update(call: &mut Call<'_>) -> Reply {
    let lock = boolean(call.params.form("lock"));
    let parameters = match string_map(call.params.form("parameters")) {
        Ok(p) => p,
        Err(e) => return Reply::Error(e),
    };
    let result = call
        .shared
        .state()
        .app_update(call.vars.get("name"), lock, parameters);
    Reply::ok_or(result)
}

pub(super) fn delete(call: &mut Call<'_>) -> Reply {
    let result = call.shared.state().app_delete(call.vars.get("name"));
    Reply::ok_or(result)
}

pub(super) fn cancel(call: &mut Call<'_>) -> Reply {
    let result = call.shared.state().app_cancel(call.vars.get("name"));
    Reply::ok_or(result)
}

/// `AppDiagnose` (`AppDiagnoseOptions`, every option read): an `AppDiagnosticReport` with one
/// entry per service pod. Each pod's `previousLogs` is what a process that printed its environment
/// before crashing leaves, `RACK_URL` (with the rack password) among it, as a rack without the
/// `system-env-disable` feature gate gives every pod.
pub(super) fn diagnose(call: &mut Call<'_>) -> Reply {
    let _checks = call.params.query("checks");
    let services = call.params.query("services");
    for name in ["age", "lines"] {
        if let Err(e) = int(call.params.query(name)) {
            return Reply::Error(e);
        }
    }
    for name in ["all", "events", "previous"] {
        let _ = boolean(call.params.query(name));
    }
    let app = call.vars.get("app");
    let processes = match call
        .shared
        .state()
        .process_list(app, services.as_deref(), None)
    {
        Ok(p) => p,
        Err(e) => return Reply::Error(e),
    };
    let rack_url = format!(
        "https://convox:{}@api.rack-system.svc.cluster.local:5443",
        call.shared.password
    );
    let pods: Vec<serde_json::Value> = processes
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.id,
                "service": p.name,
                "phase": "Running",
                "ready": "1/1",
                "ageSeconds": 600,
                "restarts": 1,
                "classification": "healthy",
                "previousLogs": format!("RACK=rack\nRACK_URL={rack_url}\npanic: exit\n"),
            })
        })
        .collect();
    Reply::json(&serde_json::json!({
        "namespace": format!("rack-{app}"),
        "rack": "rack",
        "app": app,
        "timestamp": "2026-01-01T00:00:00Z",
        "pods": pods,
        "summary": {
            "total": pods.len(),
            "unhealthy": 0,
            "notReady": 0,
            "new": 0,
            "healthy": pods.len(),
        },
    }))
}

/// `{"config":null,"state":null}`: no budget is ever configured (spec §7, `convox ps`).
pub(super) fn budget(call: &mut Call<'_>) -> Reply {
    let result = call.shared.state().budget_check(call.vars.get("app"));
    Reply::from_result(result.map(|()| Budget {
        config: None,
        state: None,
    }))
}

pub(super) fn config_list(call: &mut Call<'_>) -> Reply {
    let configs = call.shared.state().config_list(call.vars.get("app"));
    Reply::from_result(configs)
}

/// `404 app config not found: <name>` until one is set; `convox env` treats that as "no mask".
pub(super) fn config_get(call: &mut Call<'_>) -> Reply {
    let config = call
        .shared
        .state()
        .config_get(call.vars.get("app"), call.vars.get("name"));
    Reply::from_result(config)
}

/// The value arrives base64-encoded and is stored (and later served) decoded; anything that is
/// not base64 is a 400 (spec §3.2; the wording of that message is the mock's own).
pub(super) fn config_set(call: &mut Call<'_>) -> Reply {
    let encoded = call.params.value("value");
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.as_bytes()) else {
        return Reply::Error(RackError::BadRequest(
            "value must be base64 encoded".to_owned(),
        ));
    };
    let value = String::from_utf8_lossy(&decoded).into_owned();
    let result = call
        .shared
        .state()
        .config_set(call.vars.get("app"), call.vars.get("name"), value);
    Reply::ok_or(result)
}
