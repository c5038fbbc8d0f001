//! Processes (pods), one-off runs and services: `convox ps`, `ps stop`, `run`, `scale`,
//! `restart` (spec §3.5, §4.4).
//!
//! Invariant: `ProcessRun` reads its options from headers only and `ServiceUpdate` from form
//! options only, exactly as their option structs are tagged; integer options that Go's `Atoi`
//! refuses, and map options (`Environment`, `Volumes`) that Go's `url.ParseQuery` refuses,
//! answer 500 with Go's error text and run nothing.

use super::{Call, boolean, int, string_map};
use crate::error::RackError;
use crate::respond::Reply;
use crate::state::{RunRequest, ServiceChange};

/// `ProcessListOptions`: `release` and `service` query options.
pub(super) fn list(call: &mut Call<'_>) -> Reply {
    let release = call.params.query("release");
    let service = call.params.query("service");
    let processes = call.shared.state().process_list(
        call.vars.get("app"),
        service.as_deref(),
        release.as_deref(),
    );
    Reply::from_result(processes)
}

pub(super) fn get(call: &mut Call<'_>) -> Reply {
    let process = call
        .shared
        .state()
        .process_get(call.vars.get("app"), call.vars.get("pid"));
    Reply::from_result(process)
}

pub(super) fn stop(call: &mut Call<'_>) -> Reply {
    let result = call
        .shared
        .state()
        .process_stop(call.vars.get("app"), call.vars.get("pid"));
    Reply::ok_or(result)
}

/// `ProcessRunOptions`: every option is a header (spec §3.5); `convox run` sends
/// `Command: sleep 3600` here and the real command later in the exec socket (spec §4.4).
pub(super) fn run(call: &mut Call<'_>) -> Reply {
    let request = match read_run(call) {
        Ok(r) => r,
        Err(e) => return Reply::Error(e),
    };
    if let Some(release) = request.release.as_deref()
        && call.shared.quotes_release_env()
    {
        // The test-only switch: the release's manifest, its env filled in, fails to load.
        return super::releases::manifest_error(call, release);
    }
    let process =
        call.shared
            .state()
            .process_run(call.vars.get("app"), call.vars.get("service"), request);
    Reply::from_result(process)
}

fn read_run(call: &mut Call<'_>) -> Result<RunRequest, RackError> {
    let p = &mut call.params;
    let command = p.header("Command");
    for name in [
        "Cpu",
        "Cpu-Limit",
        "Gpu",
        "Height",
        "Memory",
        "Memory-Limit",
        "Width",
    ] {
        int(p.header(name))?;
    }
    let _environment = string_map(p.header("Environment"))?;
    let _volumes = string_map(p.header("Volumes"))?;
    for name in ["Privileged", "Use-Service-Volume", "System-Critical"] {
        let _flag = boolean(p.header(name));
    }
    let _gpu_vendor = p.header("Gpu-Vendor");
    let _node_labels = p.header("Node-Labels");
    let image = p.header("Image");
    let release = p.header("Release");
    Ok(RunRequest {
        command,
        image,
        release,
    })
}

pub(super) fn service_list(call: &mut Call<'_>) -> Reply {
    let services = call.shared.state().service_list(call.vars.get("app"));
    Reply::from_result(services)
}

/// `ServiceUpdateOptions`: `count`, `cpu`, `gpu`, `gpu-vendor`, `memory`, `min`, `max`.
pub(super) fn service_update(call: &mut Call<'_>) -> Reply {
    let change = match read_change(call) {
        Ok(c) => c,
        Err(e) => return Reply::Error(e),
    };
    let result =
        call.shared
            .state()
            .service_update(call.vars.get("app"), call.vars.get("name"), change);
    Reply::ok_or(result)
}

fn read_change(call: &mut Call<'_>) -> Result<ServiceChange, RackError> {
    let p = &mut call.params;
    Ok(ServiceChange {
        count: int(p.form("count"))?,
        cpu: int(p.form("cpu"))?,
        gpu: int(p.form("gpu"))?,
        gpu_vendor: p.form("gpu-vendor"),
        memory: int(p.form("memory"))?,
        min: int(p.form("min"))?,
        max: int(p.form("max"))?,
    })
}

pub(super) fn service_restart(call: &mut Call<'_>) -> Reply {
    let result = call
        .shared
        .state()
        .service_restart(call.vars.get("app"), call.vars.get("name"));
    Reply::ok_or(result)
}
