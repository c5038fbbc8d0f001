//! The JSON shapes of spec §5 (`pkg/structs`), field for field and in the Go struct order.
//!
//! Invariant: these types are the wire format; a field here is serialized exactly as the rack's
//! `encoding/json` would (names, order, `omitempty`, integral floats without `.0`), and the state
//! stores these very values, so a GET returns what a POST stored.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::clock::Time;

/// `structs.System`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct System {
    pub count: i64,
    pub domain: String,
    pub name: String,
    pub provider: String,
    #[serde(rename = "rack-domain")]
    pub rack_domain: String,
    #[serde(rename = "router-internal")]
    pub router_internal: String,
    pub region: String,
    pub status: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
}

/// `structs.App` (`budget` is always absent: the mock keeps no budget).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct App {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub generation: String,
    pub locked: bool,
    pub name: String,
    pub release: String,
    pub router: String,
    pub status: String,
    pub parameters: BTreeMap<String, String>,
}

/// `structs.Release`; `env` is `KEY=VALUE` lines joined by `\n`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Release {
    pub id: String,
    pub app: String,
    pub build: String,
    pub env: String,
    pub manifest: String,
    pub description: String,
    pub created: Time,
}

/// `structs.Build`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Build {
    pub id: String,
    pub app: String,
    pub description: String,
    pub entrypoint: String,
    #[serde(rename = "git-sha")]
    pub git_sha: String,
    pub logs: String,
    pub manifest: String,
    pub process: String,
    pub release: String,
    pub reason: String,
    pub repository: String,
    pub status: String,
    pub started: Time,
    pub ended: Time,
}

/// `structs.Process`; `cpu` and `memory` are Go `float64`s.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Process {
    pub id: String,
    pub app: String,
    pub command: String,
    pub cpu: GoFloat,
    pub gpu: i64,
    pub host: String,
    pub image: String,
    pub instance: String,
    pub memory: GoFloat,
    pub name: String,
    pub ports: Vec<String>,
    pub release: String,
    pub started: Time,
    pub status: String,
}

/// `structs.Service`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Service {
    pub count: i64,
    pub cpu: i64,
    pub domain: String,
    pub gpu: i64,
    #[serde(rename = "gpu-vendor")]
    pub gpu_vendor: String,
    pub memory: i64,
    pub name: String,
    pub nlb: Vec<ServicePort>,
    pub ports: Vec<ServicePort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// `structs.ServicePort`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ServicePort {
    pub balancer: i64,
    pub certificate: String,
    pub container: i64,
}

/// `structs.Object`: the field has no json tag, so Go writes it capitalised.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Object {
    #[serde(rename = "Url")]
    pub url: String,
}

/// `structs.AppConfig`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct AppConfig {
    pub name: String,
    pub value: String,
}

/// The body of `GET /apps/{app}/budget`: a Go map, so the keys come out sorted.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Budget {
    pub config: Option<()>,
    pub state: Option<()>,
}

/// A Go `float64`: `encoding/json` writes integral values without a fraction (`512`, not `512.0`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GoFloat(pub f64);

// === impl GoFloat ===

impl Serialize for GoFloat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.fract() == 0.0 && v.abs() < 1e15 {
            // Integral and well inside i64, so the cast is exact.
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64(v)
        }
    }
}
