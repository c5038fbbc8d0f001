//! The route table: every route of the Convox v3 rack (spec §3), each with its permission, its
//! parameter allow-list and what it carries, plus the two paths the CLI sends before every
//! WebSocket (answered locally) and the rack's five unreachable placeholders.
//!
//! Matching is first-match in table order, like the rack's router (so `…/builds/{id}.tgz` sits
//! before `…/builds/{id}`). A pattern segment is a literal, a `{var}` (one non-empty segment,
//! optionally followed by a literal suffix such as `.tgz`), or, last, a `{*var}` wildcard tail
//! whose grammar is a [`Tail`]. `method` is an upper-case HTTP method, `ANY`, or empty for the
//! placeholders; WebSocket routes are `GET` with `websocket: true` (the spec's `SOCKET`).
//!
//! **Invariant:** a route's requirement is its `permission` plus the permission of every
//! [`ParamRule`] whose condition holds; rules only add. A route whose request or answer carries a
//! credential ([`Secrecy::Credential`]) requires a permission only admin holds (tested in
//! `routes/tests.rs`). The table is data, not code: it is built in `const` and never mutated.

use super::canonical::Tail;
use super::permissions::Perm;
use Secrecy::{Credential as CRED, Incidental as INC, None as NO, Sensitive as SENS};

/// One rack route and everything the gateway needs to decide about it.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteRule {
    /// Stable id used in events, tables and tests, e.g. `release.create`.
    pub name: &'static str,
    /// `GET`, `POST`, …, `ANY`, or empty for an unreachable placeholder.
    pub method: &'static str,
    /// The path pattern (see the module doc).
    pub path: &'static str,
    /// The grammar of the `{*var}` tail, when the pattern ends in one.
    pub tail: Option<Tail>,
    /// The base permission; [`ParamRule`]s may add more.
    pub permission: Perm,
    /// Requirements that depend on parameters, path variables or the method.
    pub rules: &'static [ParamRule],
    /// A WebSocket route: GET with `Upgrade: websocket`, options in headers, no query.
    pub websocket: bool,
    /// What the request and the answer can carry (spec Secrets column and §3.13).
    pub secrets: Secrets,
    /// The answer is a rack JWT: a credential that bypasses the gateway.
    pub mints_jwt: bool,
    /// Forwarded, answered locally, or never reachable.
    pub disposition: Disposition,
    /// Whether bodies are streamed (never buffered whole).
    pub stream: Stream,
    /// The parameters the CLI sends for this route: anything else is refused.
    pub params: Params,
    /// The spec's Role column (the rack's own `r`/`w`/`a`), for the published table.
    pub rack_role: &'static str,
}

/// A requirement added when a condition on the request holds.
#[derive(Debug, PartialEq, Eq)]
pub struct ParamRule {
    pub when: When,
    pub require: Perm,
    /// Why, in a few words, for the published table.
    pub why: &'static str,
}

/// The condition of a [`ParamRule`]. Parameter names are the allow-list spellings (form and
/// query keys, canonical option-header names); values are the canonical decoded values.
#[derive(Debug, PartialEq, Eq)]
pub enum When {
    /// The parameter is present, whatever its value (even empty).
    Present(&'static str),
    /// The parameter is present with a value outside the list.
    PresentNotIn(&'static str, &'static [&'static str]),
    /// The parameter is absent, or present with a value outside the list.
    AbsentOrNotIn(&'static str, &'static [&'static str]),
    /// The path variable's value differs from the literal.
    VarNotEq(&'static str, &'static str),
    /// The path variable's value is not the prefix followed by one more segment
    /// (`tmp/<name>` for `VarNotUnder("key", "tmp")`).
    VarNotUnder(&'static str, &'static str),
    /// The request method is none of these (for `ANY` routes).
    MethodNotIn(&'static [&'static str]),
    /// Every call: the route needs a second permission beside its own.
    Always,
}

/// What a route's request and answer can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Secrets {
    pub request: Secrecy,
    pub response: Secrecy,
}

/// How secret a side of a route is, from least to most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Secrecy {
    None,
    /// May hold secrets by accident: logs, manifests, source, process output, app parameters.
    /// Bodies are hashed, not logged; the route keeps the role its operation deserves.
    Incidental,
    /// Holds secrets by design that the caller supplies or the gateway masks (env, config
    /// values written, run environment, image pull credentials): those values are HMAC'd in the
    /// log and masked in answers; the route keeps the role its operation deserves.
    Sensitive,
    /// Discloses or uses credentials beyond the app (registry passwords, resource URLs, config
    /// values read, private keys, JWTs, the rack's own credentials): admin-only by default.
    Credential,
}

/// Forwarded, answered by the gateway itself, or never reachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    Forward,
    /// Answered with an empty 404 without forwarding, recorded at info level, not as a denial:
    /// the CLI sends these before every WebSocket and ignores the answer (spec §2.6).
    AnswerLocally,
    /// Registered by the rack with an empty method and path: no request can reach it.
    Unreachable,
}

/// Which bodies stream through without being buffered whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    None,
    Up,
    Down,
    Both,
}

/// The allow-list of one route: what the CLI sends, and nothing else.
#[derive(Debug, PartialEq, Eq)]
pub struct Params {
    pub body: Body,
    /// Keys of an `application/x-www-form-urlencoded` body.
    pub form: &'static [Key],
    /// Keys of the query string.
    pub query: &'static [Key],
    /// Option headers the rack reads.
    pub headers: &'static [Key],
}

/// The body a route takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// No body: `Content-Type: application/octet-stream` (what the CLI sends) or none, empty.
    None,
    /// A form body with the listed keys, or an empty body as for [`Body::None`].
    Form,
    /// Raw bytes, `application/octet-stream`, streamed as received.
    Raw,
    /// Anything but a form or a multipart body, streamed as received, and a query string with
    /// any keys: the registry and HTTP proxies, whose far end is not the rack.
    Opaque,
}

/// One allowed parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub class: KeyClass,
    /// The grammar a value must fit, when a path elsewhere must be able to name it (a
    /// registry's server is added by a form value and removed by a path tail).
    pub grammar: Option<ValueGrammar>,
}

/// A value that a path must be able to name: as the tail of `under`'s path. Also a relative
/// file name the rack resolves under a directory of its own (a build's manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueGrammar {
    pub tail: Tail,
    /// The fixed path the value follows (`/registries` for a server), which counts towards the
    /// path's length.
    pub under: &'static str,
}

/// How the log treats a parameter's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyClass {
    /// Recorded as sent.
    Plain,
    /// Recorded as an HMAC (spec §3.13).
    Secret,
    /// A command line: recorded after value scrubbing (issue 3, point 7).
    Command,
}

// === impl RouteRule ===

impl RouteRule {
    /// The method as the spec writes it: `SOCKET` for WebSocket routes.
    pub fn method_label(&self) -> &'static str {
        if self.websocket {
            "SOCKET"
        } else {
            self.method
        }
    }

    /// The path as the spec writes it: `{*key}` becomes `{key:.*}`.
    pub fn spec_path(&self) -> String {
        match self.path.rsplit_once("/{*") {
            Some((head, var)) => format!("{head}/{{{}:.*}}", var.trim_end_matches('}')),
            None => self.path.to_owned(),
        }
    }

    /// Whether either side carries a credential.
    pub fn carries_credentials(&self) -> bool {
        self.secrets.request == Secrecy::Credential || self.secrets.response == Secrecy::Credential
    }

    /// Every parameter name of the allow-list, with where it is read from.
    pub fn keys(&self) -> impl Iterator<Item = (&'static str, Key)> + '_ {
        let f = self.params.form.iter().map(|k| ("form", *k));
        let q = self.params.query.iter().map(|k| ("query", *k));
        let h = self.params.headers.iter().map(|k| ("header", *k));
        f.chain(q).chain(h)
    }
}

// === impl Params ===

impl Params {
    /// The content types the route takes, as published: an empty body may also come with
    /// `application/octet-stream` (what the CLI sends) or no content type at all.
    pub fn content_types(&self) -> &'static [&'static str] {
        match self.body {
            Body::None => &["application/octet-stream (empty)"],
            Body::Form => &[
                "application/x-www-form-urlencoded",
                "application/octet-stream (empty)",
            ],
            Body::Raw => &["application/octet-stream"],
            Body::Opaque => &["any but application/x-www-form-urlencoded and multipart/*"],
        }
    }
}

// === impl Secrets ===

impl Secrets {
    pub const NONE: Secrets = Secrets {
        request: Secrecy::None,
        response: Secrecy::None,
    };

    /// Whether the spec counts the route as secret-bearing on either side.
    pub fn any(self) -> bool {
        self != Secrets::NONE
    }
}

// === impl Secrecy ===

impl Secrecy {
    pub fn as_str(self) -> &'static str {
        match self {
            Secrecy::None => "none",
            Secrecy::Incidental => "incidental",
            Secrecy::Sensitive => "sensitive",
            Secrecy::Credential => "credential",
        }
    }
}

// === The table ===

const fn p(name: &'static str) -> Key {
    Key {
        name,
        class: KeyClass::Plain,
        grammar: None,
    }
}

const fn s(name: &'static str) -> Key {
    Key {
        name,
        class: KeyClass::Secret,
        grammar: None,
    }
}

/// A plain key whose value must fit `tail`'s grammar as the tail of the path `under`, which
/// names it elsewhere.
const fn g(name: &'static str, tail: Tail, under: &'static str) -> Key {
    Key {
        name,
        class: KeyClass::Plain,
        grammar: Some(ValueGrammar { tail, under }),
    }
}

const fn c(name: &'static str) -> Key {
    Key {
        name,
        class: KeyClass::Command,
        grammar: None,
    }
}

const fn sec(request: Secrecy, response: Secrecy) -> Secrets {
    Secrets { request, response }
}

const NO_PARAMS: Params = Params {
    body: Body::None,
    form: &[],
    query: &[],
    headers: &[],
};

const fn form(keys: &'static [Key]) -> Params {
    Params {
        body: Body::Form,
        form: keys,
        query: &[],
        headers: &[],
    }
}

const fn query(keys: &'static [Key]) -> Params {
    Params {
        body: Body::None,
        form: &[],
        query: keys,
        headers: &[],
    }
}

const fn headers(keys: &'static [Key]) -> Params {
    Params {
        body: Body::None,
        form: &[],
        query: &[],
        headers: keys,
    }
}

const RAW: Params = Params {
    body: Body::Raw,
    form: &[],
    query: &[],
    headers: &[],
};

/// The fields most routes share. The base permission is admin-only, so a row that forgets its
/// permission fails closed (and the matrix test names it).
const BASE: RouteRule = RouteRule {
    name: "",
    method: "GET",
    path: "",
    tail: None,
    permission: Perm::RackUpdate,
    rules: &[],
    websocket: false,
    secrets: Secrets::NONE,
    mints_jwt: false,
    disposition: Disposition::Forward,
    stream: Stream::None,
    params: NO_PARAMS,
    rack_role: "r",
};

/// Log stream options (`LogsOptions`), sent as headers on every log WebSocket.
const LOG_HEADERS: &[Key] = &[
    p("Filter"),
    p("Follow"),
    p("Maxlogrequests"),
    p("Prefix"),
    p("Since"),
    p("Previous"),
    p("Tail"),
];

/// Metrics query options (sortable times, period in seconds, comma-joined names).
const METRICS_QUERY: &[Key] = &[p("start"), p("end"), p("period"), p("metrics")];

/// Go's `strconv.ParseBool` false spellings: any other value of a flag counts as set.
const GO_FALSE: &[&str] = &["false", "0", "f", "F", "FALSE", "False"];

/// Every route, in match order.
/// The WebSocket routes whose rack stream ends with the exit-code line (`convox exec`, `run`,
/// instance shells; spec §2.5): only there does a marker in the output mean an exit code, and
/// only there does a refusal inside the socket carry one. On log streams the same text is just
/// a log line.
pub const EXIT_CODE_STREAMS: &[&str] = &["process.exec", "instance.shell"];

/// The WebSocket routes whose output is another program's protocol, not text for a person: a
/// TCP tunnel (`convox proxy`), whose framing a replaced value would break, and whose frames
/// split its bytes anywhere. The rack password is not looked for in them.
pub const TUNNEL_STREAMS: &[&str] = &["proxy.tcp"];

/// The WebSocket routes whose rack only writes: it reads nothing the caller sends (spec §2.5),
/// so the caller's input waiting unread there is a flood, not a busy command
/// ([`crate::proxy::ws::RelayConfig::rack_reads_input`]).
pub const LOG_STREAMS: &[&str] = &[
    "app.logs",
    "build.logs",
    "process.logs",
    "service.logs",
    "rack.logs",
];

/// The routes into a process that the gateway closes to a build's own process (whose
/// environment holds the rack password) for a caller without `convox:build:exec`, judged from a
/// recorded lookup of the process (`src/proxy/build_process.rs`).
pub const INTO_PROCESS: &[&str] = &["process.exec", "file.get", "file.put", "file.delete"];

/// Writing or deleting an object outside `tmp/<name>` (the only keys the CLI uploads, for
/// deploys) may replace the rack's own objects: a finished build's logs are the object
/// `build/<id>/logs`, which `convox builds logs` and auditors read back.
const OBJECT_OUTSIDE_TMP: ParamRule = ParamRule {
    when: When::VarNotUnder("key", "tmp"),
    require: Perm::BuildUpdate,
    why: "keys outside tmp/ hold the rack's own objects, build logs among them",
};

pub const ROUTES: &[RouteRule] = &[
    // --- 3.1 Meta ---
    RouteRule {
        name: "check",
        path: "/check",
        permission: Perm::AuthCheck,
        rack_role: "none",
        ..BASE
    },
    RouteRule {
        name: "auth",
        path: "/auth",
        permission: Perm::AuthCheck,
        rack_role: "any valid",
        ..BASE
    },
    // --- 2.6 / 3.11: sent before every WebSocket, answered locally ---
    RouteRule {
        name: "local.machines",
        path: "/machines",
        permission: Perm::AuthCheck,
        disposition: Disposition::AnswerLocally,
        rack_role: "not served",
        ..BASE
    },
    RouteRule {
        name: "local.racks",
        path: "/racks",
        permission: Perm::AuthCheck,
        disposition: Disposition::AnswerLocally,
        rack_role: "not served",
        ..BASE
    },
    // --- 3.2 Apps ---
    RouteRule {
        name: "app.list",
        path: "/apps",
        permission: Perm::AppRead,
        secrets: sec(NO, INC),
        ..BASE
    },
    RouteRule {
        name: "app.create",
        method: "POST",
        path: "/apps",
        permission: Perm::AppCreate,
        params: form(&[p("name"), p("generation"), p("timeout")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "app.get",
        path: "/apps/{name}",
        permission: Perm::AppRead,
        secrets: sec(NO, INC),
        ..BASE
    },
    RouteRule {
        name: "app.update",
        method: "PUT",
        path: "/apps/{name}",
        permission: Perm::AppUpdate,
        secrets: sec(SENS, NO),
        params: form(&[p("lock"), s("parameters")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "app.delete",
        method: "DELETE",
        path: "/apps/{name}",
        permission: Perm::AppDelete,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "app.cancel",
        method: "POST",
        path: "/apps/{name}/cancel",
        permission: Perm::AppUpdate,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "app.diagnose",
        path: "/apps/{app}/diagnose",
        permission: Perm::LogRead,
        secrets: sec(NO, INC),
        params: query(&[
            p("checks"),
            p("services"),
            p("age"),
            p("all"),
            p("lines"),
            p("events"),
            p("previous"),
        ]),
        ..BASE
    },
    RouteRule {
        name: "app.logs",
        path: "/apps/{name}/logs",
        permission: Perm::LogRead,
        websocket: true,
        secrets: sec(NO, INC),
        stream: Stream::Down,
        params: headers(LOG_HEADERS),
        ..BASE
    },
    RouteRule {
        // The rack interpolates the release's env into the whole convox.yml before answering
        // (`manifest.Load`), so any `${VAR}` comes back as its value, secret ones included;
        // the answer cannot be masked key by key the way a release's `env` is.
        name: "app.manifest.service",
        path: "/apps/{app}/manifest/services/{service}",
        permission: Perm::SecretRead,
        // Every value, not only the secret ones: a token scoped to `convox:secret:read`
        // without `convox:env:read` is shown no value of a release's env.
        rules: &[ParamRule {
            when: When::Always,
            require: Perm::EnvRead,
            why: "the rack fills every env value into the manifest it answers",
        }],
        secrets: sec(NO, CRED),
        ..BASE
    },
    RouteRule {
        name: "app.metrics",
        path: "/apps/{name}/metrics",
        permission: Perm::AppRead,
        params: query(METRICS_QUERY),
        ..BASE
    },
    RouteRule {
        name: "app.metrics_by_service",
        path: "/apps/{app}/metrics-by-service",
        permission: Perm::AppRead,
        params: query(&[
            p("services"),
            p("start"),
            p("end"),
            p("period"),
            p("metrics"),
        ]),
        ..BASE
    },
    RouteRule {
        name: "config.list",
        path: "/apps/{app}/configs",
        permission: Perm::ConfigRead,
        secrets: sec(NO, CRED),
        ..BASE
    },
    RouteRule {
        name: "config.get",
        path: "/apps/{app}/configs/{name}",
        permission: Perm::AppRead,
        rules: &[ParamRule {
            when: When::VarNotEq("name", "cli-env-mask"),
            require: Perm::ConfigRead,
            why: "every config but `cli-env-mask` (a list of key names the CLI reads for `convox env`)",
        }],
        secrets: sec(NO, CRED),
        ..BASE
    },
    RouteRule {
        name: "config.set",
        method: "PUT",
        path: "/apps/{app}/configs/{name}",
        permission: Perm::ConfigSet,
        secrets: sec(SENS, NO),
        params: form(&[s("value")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "budget.get",
        path: "/apps/{app}/budget",
        permission: Perm::AppRead,
        ..BASE
    },
    RouteRule {
        name: "budget.set",
        method: "POST",
        path: "/apps/{app}/budget",
        permission: Perm::BudgetSet,
        rules: &[
            ParamRule {
                when: When::Present("monthly-cap-usd"),
                require: Perm::BudgetCap,
                why: "the rack demands admin for the cap",
            },
            ParamRule {
                when: When::Present("at-cap-action"),
                require: Perm::BudgetCap,
                why: "the rack demands admin for the at-cap action",
            },
            ParamRule {
                when: When::Present("pricing-adjustment"),
                require: Perm::BudgetCap,
                why: "the rack demands admin for the pricing adjustment",
            },
        ],
        params: form(&[
            p("monthly-cap-usd"),
            p("alert-threshold-percent"),
            p("at-cap-action"),
            p("pricing-adjustment"),
            p("ack_by"),
        ]),
        rack_role: "w; a for cap/action/pricing",
        ..BASE
    },
    RouteRule {
        name: "budget.clear",
        method: "DELETE",
        path: "/apps/{app}/budget",
        permission: Perm::BudgetCap,
        params: form(&[p("ack_by")]),
        rack_role: "a",
        ..BASE
    },
    RouteRule {
        name: "budget.reset",
        method: "POST",
        path: "/apps/{app}/budget/reset",
        permission: Perm::BudgetOperate,
        rules: &[ParamRule {
            when: When::PresentNotIn("force_clear_cooldown", GO_FALSE),
            require: Perm::BudgetCap,
            why: "forcing the cooldown clear needs admin at the rack",
        }],
        params: form(&[p("ack_by"), p("force_clear_cooldown"), p("reset_period")]),
        rack_role: "w; a with force",
        ..BASE
    },
    RouteRule {
        name: "budget.shutdown_state",
        path: "/apps/{app}/budget/shutdown-state",
        permission: Perm::AppRead,
        ..BASE
    },
    RouteRule {
        name: "budget.simulate_shutdown",
        method: "POST",
        path: "/apps/{app}/budget/simulate-shutdown",
        permission: Perm::BudgetOperate,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "budget.dismiss_recovery",
        method: "POST",
        path: "/apps/{app}/budget/dismiss-recovery",
        permission: Perm::BudgetOperate,
        params: form(&[p("ack_by")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "app.cost",
        path: "/apps/{app}/cost",
        permission: Perm::AppRead,
        ..BASE
    },
    RouteRule {
        name: "app.balancers",
        path: "/apps/{app}/balancers",
        permission: Perm::AppRead,
        ..BASE
    },
    // --- 3.3 Builds and objects ---
    RouteRule {
        name: "object.create",
        method: "POST",
        path: "/apps/{app}/objects/{*key}",
        tail: Some(Tail::ObjectKey),
        permission: Perm::ObjectCreate,
        rules: &[
            ParamRule {
                when: When::PresentNotIn("Public", GO_FALSE),
                require: Perm::ObjectPublic,
                why: "a public object is readable without credentials",
            },
            OBJECT_OUTSIDE_TMP,
        ],
        secrets: sec(INC, NO),
        stream: Stream::Up,
        params: Params {
            headers: &[p("Public")],
            ..RAW
        },
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "object.get",
        path: "/apps/{app}/objects/{*key}",
        tail: Some(Tail::ObjectKey),
        permission: Perm::ObjectRead,
        rules: &[ParamRule {
            when: When::VarNotUnder("key", "tmp"),
            require: Perm::BuildExec,
            why: "keys outside tmp/ hold the rack's own objects: a build's stored log may quote \
                  the rack password its process printed, which `convox builds logs` streams \
                  scrubbed",
        }],
        secrets: sec(NO, INC),
        stream: Stream::Down,
        ..BASE
    },
    RouteRule {
        name: "object.exists",
        method: "HEAD",
        path: "/apps/{app}/objects/{*key}",
        tail: Some(Tail::ObjectKey),
        permission: Perm::ObjectRead,
        rack_role: "w (non-GET)",
        ..BASE
    },
    RouteRule {
        name: "object.delete",
        method: "DELETE",
        path: "/apps/{app}/objects/{*key}",
        tail: Some(Tail::ObjectKey),
        permission: Perm::ObjectDelete,
        rules: &[OBJECT_OUTSIDE_TMP],
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "object.list",
        path: "/apps/{app}/objects",
        permission: Perm::ObjectRead,
        params: query(&[p("prefix")]),
        ..BASE
    },
    RouteRule {
        name: "build.create",
        method: "POST",
        path: "/apps/{app}/builds",
        permission: Perm::BuildCreate,
        rules: &[ParamRule {
            when: When::PresentNotIn("external", GO_FALSE),
            require: Perm::BuildExternal,
            why: "the answer of an external build carries the rack password",
        }],
        secrets: sec(SENS, INC),
        params: form(&[
            p("url"),
            s("build-args"),
            p("description"),
            p("development"),
            p("external"),
            // A file of the build's source: one outside it is refused (see the proxy's
            // `call_refusal`).
            p("manifest"),
            p("no-cache"),
            p("wildcard-domain"),
            p("git-sha"),
        ]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "build.list",
        path: "/apps/{app}/builds",
        permission: Perm::BuildRead,
        params: query(&[p("limit")]),
        ..BASE
    },
    RouteRule {
        name: "build.export",
        path: "/apps/{app}/builds/{id}.tgz",
        permission: Perm::BuildExport,
        // The tarball's `build.json` is the stored build, which the spec counts as
        // credential-bearing (§3.3, §3.13: an external build's `repository` holds the rack
        // password) and which cannot be masked inside a gzip stream. Current k8s providers
        // return `repository` only in the create answer and do not store it; admin-only stays
        // the safe choice for racks that do.
        secrets: sec(NO, CRED),
        stream: Stream::Down,
        ..BASE
    },
    RouteRule {
        name: "build.get",
        path: "/apps/{app}/builds/{id}",
        permission: Perm::BuildRead,
        secrets: sec(NO, INC),
        ..BASE
    },
    RouteRule {
        name: "build.import",
        method: "POST",
        path: "/apps/{app}/builds/import",
        permission: Perm::BuildCreate,
        secrets: sec(INC, NO),
        stream: Stream::Up,
        params: RAW,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "build.image",
        method: "POST",
        path: "/apps/{app}/builds/{id}/image",
        // It copies the image into an existing build (any build not running, the promoted
        // release's among them): a rewrite of that build, not a new one.
        permission: Perm::BuildUpdate,
        secrets: sec(SENS, NO),
        params: form(&[p("image"), p("src-creds-user"), s("src-creds-pass")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "build.update",
        method: "PUT",
        path: "/apps/{app}/builds/{id}",
        permission: Perm::BuildUpdate,
        params: form(&[
            p("manifest"),
            p("release"),
            p("status"),
            p("entrypoint"),
            p("logs"),
            p("started"),
            p("ended"),
        ]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "build.logs",
        path: "/apps/{app}/builds/{id}/logs",
        permission: Perm::BuildRead,
        websocket: true,
        secrets: sec(NO, INC),
        stream: Stream::Down,
        params: headers(LOG_HEADERS),
        ..BASE
    },
    // --- 3.4 Releases ---
    RouteRule {
        name: "release.list",
        path: "/apps/{app}/releases",
        permission: Perm::ReleaseRead,
        secrets: sec(NO, SENS),
        params: query(&[p("limit")]),
        ..BASE
    },
    RouteRule {
        name: "release.get",
        path: "/apps/{app}/releases/{id}",
        permission: Perm::ReleaseRead,
        secrets: sec(NO, SENS),
        ..BASE
    },
    RouteRule {
        name: "release.create",
        method: "POST",
        path: "/apps/{app}/releases",
        permission: Perm::ReleaseCreate,
        rules: &[
            ParamRule {
                when: When::Present("env"),
                require: Perm::EnvSet,
                why: "`env` replaces the whole environment",
            },
            ParamRule {
                when: When::Present("parent-release"),
                require: Perm::EnvSet,
                why: "`parent-release` copies that release's environment",
            },
        ],
        secrets: sec(SENS, SENS),
        params: form(&[s("env"), p("build"), p("description"), p("parent-release")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "release.promote",
        method: "POST",
        path: "/apps/{app}/releases/{id}/promote",
        permission: Perm::ReleasePromote,
        params: form(&[
            p("force"),
            p("development"),
            p("idle"),
            p("min"),
            p("max"),
            p("timeout"),
        ]),
        rack_role: "w",
        ..BASE
    },
    // --- 3.5 Processes, services, exec, files ---
    RouteRule {
        name: "process.list",
        path: "/apps/{app}/processes",
        permission: Perm::ProcessRead,
        params: query(&[p("service"), p("release")]),
        ..BASE
    },
    RouteRule {
        name: "process.get",
        path: "/apps/{app}/processes/{pid}",
        permission: Perm::ProcessRead,
        ..BASE
    },
    RouteRule {
        name: "process.stop",
        method: "DELETE",
        path: "/apps/{app}/processes/{pid}",
        permission: Perm::ProcessStop,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "process.run",
        method: "POST",
        path: "/apps/{app}/services/{service}/processes",
        permission: Perm::ProcessRun,
        rules: &[
            ParamRule {
                when: When::PresentNotIn("Privileged", GO_FALSE),
                require: Perm::ProcessPrivileged,
                why: "a privileged pod can take its node",
            },
            ParamRule {
                when: When::PresentNotIn("System-Critical", GO_FALSE),
                require: Perm::ProcessPrivileged,
                why: "system-critical pods preempt the cluster's own",
            },
            ParamRule {
                when: When::Present("Volumes"),
                require: Perm::ProcessPrivileged,
                why: "extra volumes reach beyond the app",
            },
        ],
        secrets: sec(SENS, NO),
        params: headers(&[
            c("Command"),
            p("Cpu"),
            p("Cpu-Limit"),
            p("Memory"),
            p("Memory-Limit"),
            p("Gpu"),
            p("Gpu-Vendor"),
            p("Image"),
            p("Release"),
            s("Environment"),
            p("Volumes"),
            p("Use-Service-Volume"),
            p("Privileged"),
            p("Node-Labels"),
            p("System-Critical"),
            p("Height"),
            p("Width"),
        ]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "process.exec",
        path: "/apps/{app}/processes/{pid}/exec",
        permission: Perm::ExecRun,
        websocket: true,
        secrets: sec(SENS, INC),
        stream: Stream::Both,
        params: headers(&[
            c("Command"),
            p("Entrypoint"),
            p("Tty"),
            p("Height"),
            p("Width"),
            p("Disable-Stdin"),
        ]),
        rack_role: "r+w",
        ..BASE
    },
    RouteRule {
        name: "process.logs",
        path: "/apps/{app}/processes/{pid}/logs",
        permission: Perm::LogRead,
        websocket: true,
        secrets: sec(NO, INC),
        stream: Stream::Down,
        params: headers(LOG_HEADERS),
        ..BASE
    },
    RouteRule {
        name: "service.logs",
        path: "/apps/{app}/services/{service}/logs",
        permission: Perm::LogRead,
        websocket: true,
        secrets: sec(NO, INC),
        stream: Stream::Down,
        params: headers(LOG_HEADERS),
        ..BASE
    },
    RouteRule {
        name: "file.get",
        path: "/apps/{app}/processes/{pid}/files",
        permission: Perm::FileRead,
        secrets: sec(NO, INC),
        stream: Stream::Down,
        params: query(&[p("file")]),
        ..BASE
    },
    RouteRule {
        name: "file.put",
        method: "POST",
        path: "/apps/{app}/processes/{pid}/files",
        permission: Perm::FileWrite,
        secrets: sec(INC, NO),
        stream: Stream::Up,
        params: Params {
            query: &[p("tar-extra")],
            ..RAW
        },
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "file.delete",
        method: "DELETE",
        path: "/apps/{app}/processes/{pid}/files",
        permission: Perm::FileWrite,
        params: query(&[p("files")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "service.list",
        path: "/apps/{app}/services",
        permission: Perm::AppRead,
        ..BASE
    },
    RouteRule {
        name: "service.update",
        method: "PUT",
        path: "/apps/{app}/services/{name}",
        permission: Perm::ServiceScale,
        params: form(&[
            p("count"),
            p("cpu"),
            p("memory"),
            p("gpu"),
            p("gpu-vendor"),
            p("min"),
            p("max"),
        ]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "service.restart",
        method: "POST",
        path: "/apps/{app}/services/{name}/restart",
        permission: Perm::ServiceRestart,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "service.metrics",
        path: "/apps/{app}/services/{service}/metrics",
        permission: Perm::AppRead,
        params: query(METRICS_QUERY),
        ..BASE
    },
    RouteRule {
        name: "service.scale_override",
        method: "POST",
        path: "/apps/{app}/services/{service}/scale-override",
        permission: Perm::ServiceScale,
        params: form(&[p("active"), p("ack_by")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "service.triggers.enable",
        method: "POST",
        path: "/apps/{app}/services/{service}/triggers/enable",
        permission: Perm::ServiceScale,
        params: form(&[p("opts"), p("ack_by")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "service.triggers.disable",
        method: "POST",
        path: "/apps/{app}/services/{service}/triggers/disable",
        permission: Perm::ServiceScale,
        params: form(&[p("ack_by")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "service.triggers.threshold",
        method: "POST",
        path: "/apps/{app}/services/{service}/triggers/threshold",
        permission: Perm::ServiceScale,
        params: form(&[p("type"), p("threshold"), p("ack_by")]),
        rack_role: "w",
        ..BASE
    },
    // --- 3.6 App resources ---
    RouteRule {
        name: "app_resource.list",
        path: "/apps/{app}/resources",
        permission: Perm::ResourceRead,
        secrets: sec(NO, CRED),
        ..BASE
    },
    RouteRule {
        name: "app_resource.get",
        path: "/apps/{app}/resources/{name}",
        permission: Perm::ResourceRead,
        secrets: sec(NO, CRED),
        ..BASE
    },
    RouteRule {
        name: "app_resource.export",
        path: "/apps/{app}/resources/{name}/data",
        permission: Perm::ResourceData,
        secrets: sec(NO, CRED),
        stream: Stream::Down,
        ..BASE
    },
    RouteRule {
        name: "app_resource.import",
        method: "PUT",
        path: "/apps/{app}/resources/{name}/data",
        permission: Perm::ResourceData,
        secrets: sec(CRED, NO),
        stream: Stream::Up,
        params: RAW,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "app_resource.console",
        path: "/apps/{app}/resources/{name}/console",
        permission: Perm::ResourceConsole,
        websocket: true,
        secrets: sec(CRED, CRED),
        stream: Stream::Both,
        params: headers(&[p("Height"), p("Width")]),
        rack_role: "r+w",
        ..BASE
    },
    // --- 3.7 Rack resources ---
    RouteRule {
        name: "resource.list",
        path: "/resources",
        permission: Perm::ResourceRead,
        secrets: sec(NO, CRED),
        ..BASE
    },
    RouteRule {
        name: "resource.types",
        method: "OPTIONS",
        path: "/resources",
        permission: Perm::ResourceRead,
        rack_role: "w (non-GET)",
        ..BASE
    },
    RouteRule {
        name: "resource.create",
        method: "POST",
        path: "/resources",
        permission: Perm::ResourceManage,
        secrets: sec(CRED, CRED),
        params: form(&[p("kind"), p("name"), s("parameters")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "resource.get",
        path: "/resources/{name}",
        permission: Perm::ResourceRead,
        secrets: sec(NO, CRED),
        ..BASE
    },
    RouteRule {
        name: "resource.update",
        method: "PUT",
        path: "/resources/{name}",
        permission: Perm::ResourceManage,
        secrets: sec(CRED, CRED),
        params: form(&[s("parameters")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "resource.delete",
        method: "DELETE",
        path: "/resources/{name}",
        permission: Perm::ResourceManage,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "resource.link",
        method: "POST",
        path: "/resources/{name}/links",
        permission: Perm::ResourceManage,
        secrets: sec(NO, CRED),
        params: form(&[p("app")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "resource.unlink",
        method: "DELETE",
        path: "/resources/{name}/links/{app}",
        permission: Perm::ResourceManage,
        secrets: sec(NO, CRED),
        rack_role: "w",
        ..BASE
    },
    // --- 3.8 Certificates, SSL, Let's Encrypt ---
    RouteRule {
        name: "cert.list",
        path: "/certificates",
        permission: Perm::CertRead,
        // `convox certs --generated` puts `generated=true` in a GET body; the rack ignores it.
        params: form(&[p("generated")]),
        ..BASE
    },
    RouteRule {
        name: "cert.import",
        method: "POST",
        path: "/certificates",
        permission: Perm::CertManage,
        secrets: sec(CRED, NO),
        params: form(&[p("pub"), s("key"), p("chain")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "cert.generate",
        method: "POST",
        path: "/certificates/generate",
        permission: Perm::CertManage,
        params: form(&[p("domains"), p("issuer"), p("duration")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "cert.renew",
        method: "POST",
        path: "/certificates/{id}/renew",
        permission: Perm::CertManage,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "cert.delete",
        method: "DELETE",
        path: "/certificates/{id}",
        permission: Perm::CertManage,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "ssl.update",
        method: "PUT",
        path: "/apps/{app}/ssl/{service}/{port}",
        permission: Perm::SslUpdate,
        params: form(&[p("id")]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "letsencrypt.get",
        path: "/letsencrypt/config",
        permission: Perm::CertRead,
        ..BASE
    },
    RouteRule {
        name: "letsencrypt.set",
        method: "PUT",
        path: "/letsencrypt/config",
        permission: Perm::CertManage,
        params: RAW,
        rack_role: "w",
        ..BASE
    },
    // --- 3.9 Instances, registries, proxies ---
    RouteRule {
        name: "instance.list",
        path: "/instances",
        permission: Perm::InstanceRead,
        ..BASE
    },
    RouteRule {
        name: "instance.terminate",
        method: "DELETE",
        path: "/instances/{id}",
        permission: Perm::InstanceTerminate,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "instance.keyroll",
        method: "POST",
        path: "/instances/keyroll",
        permission: Perm::InstanceKeyroll,
        secrets: sec(NO, CRED),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "instance.shell",
        path: "/instances/{id}/shell",
        permission: Perm::InstanceShell,
        websocket: true,
        secrets: sec(CRED, INC),
        stream: Stream::Both,
        params: headers(&[c("Command"), s("Private-Key"), p("Height"), p("Width")]),
        rack_role: "r+w",
        ..BASE
    },
    RouteRule {
        name: "registry.list",
        path: "/registries",
        permission: Perm::RegistryRead,
        secrets: sec(NO, CRED),
        ..BASE
    },
    RouteRule {
        name: "registry.add",
        method: "POST",
        path: "/registries",
        permission: Perm::RegistryManage,
        secrets: sec(CRED, CRED),
        // What `registry.remove` can name (its path tail), so nothing added is beyond removal.
        params: form(&[
            g("server", Tail::RegistryServer, "/registries"),
            p("username"),
            s("password"),
        ]),
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "registry.remove",
        method: "DELETE",
        path: "/registries/{*server}",
        tail: Some(Tail::RegistryServer),
        permission: Perm::RegistryManage,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "image.proxy",
        method: "ANY",
        path: "/v2/{*path}",
        tail: Some(Tail::RegistryApi),
        permission: Perm::ImagePull,
        rules: &[ParamRule {
            when: When::MethodNotIn(&["GET", "HEAD"]),
            require: Perm::ImagePush,
            why: "anything but GET and HEAD writes to the registry",
        }],
        secrets: sec(CRED, INC),
        stream: Stream::Both,
        params: Params {
            body: Body::Opaque,
            ..NO_PARAMS
        },
        rack_role: "GET r, else w",
        ..BASE
    },
    RouteRule {
        name: "proxy.tcp",
        path: "/proxy/{host}/{port}",
        permission: Perm::ProxyTcp,
        websocket: true,
        secrets: sec(CRED, CRED),
        stream: Stream::Both,
        // `convox proxy --tls`: the rack wraps its connection to the target in TLS.
        params: Params {
            headers: &[p("TLS")],
            ..NO_PARAMS
        },
        rack_role: "r+w",
        ..BASE
    },
    RouteRule {
        name: "proxy.http",
        method: "ANY",
        path: "/custom/http/proxy/{*path}",
        tail: Some(Tail::HttpPath),
        permission: Perm::ProxyHttp,
        secrets: sec(CRED, CRED),
        stream: Stream::Both,
        params: Params {
            body: Body::Opaque,
            headers: &[p("X-Host"), p("X-Port")],
            ..NO_PARAMS
        },
        rack_role: "w (handler)",
        ..BASE
    },
    // --- 3.10 System ---
    RouteRule {
        name: "rack.get",
        path: "/system",
        permission: Perm::RackRead,
        ..BASE
    },
    RouteRule {
        name: "rack.update",
        method: "PUT",
        path: "/system",
        permission: Perm::RackUpdate,
        secrets: sec(SENS, NO),
        params: Params {
            body: Body::Form,
            form: &[
                p("version"),
                p("force"),
                p("count"),
                p("type"),
                s("parameters"),
            ],
            // The CLI sends `Version: dev` on every request, and the rack's `c.Value("version")`
            // falls back to a header of that name: it is a parameter here, so it is recorded.
            headers: &[p("Version")],
            query: &[],
        },
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "rack.capacity",
        path: "/system/capacity",
        permission: Perm::RackRead,
        ..BASE
    },
    RouteRule {
        name: "rack.metrics",
        path: "/system/metrics",
        permission: Perm::RackRead,
        params: query(METRICS_QUERY),
        ..BASE
    },
    RouteRule {
        name: "rack.processes",
        path: "/system/processes",
        permission: Perm::RackRead,
        params: query(&[p("all")]),
        ..BASE
    },
    RouteRule {
        name: "rack.releases",
        path: "/system/releases",
        permission: Perm::RackRead,
        ..BASE
    },
    RouteRule {
        name: "rack.logs",
        path: "/system/logs",
        permission: Perm::LogRead,
        websocket: true,
        stream: Stream::Down,
        params: headers(LOG_HEADERS),
        ..BASE
    },
    RouteRule {
        name: "jwt.create",
        method: "POST",
        path: "/system/jwt/token",
        permission: Perm::JwtCreate,
        rules: &[ParamRule {
            when: When::AbsentOrNotIn("role", &["read", "write"]),
            require: Perm::JwtAdmin,
            why: "any role but read or write mints an admin credential",
        }],
        secrets: sec(NO, CRED),
        mints_jwt: true,
        params: form(&[p("role"), p("durationInHour")]),
        rack_role: "w (a for admin)",
        ..BASE
    },
    RouteRule {
        name: "jwt.rotate",
        method: "PUT",
        path: "/system/jwt/rotate",
        permission: Perm::JwtRotate,
        rack_role: "a",
        ..BASE
    },
    RouteRule {
        name: "rack.karpenter_cleanup",
        method: "POST",
        path: "/system/karpenter/cleanup",
        permission: Perm::RackUpdate,
        rack_role: "w",
        ..BASE
    },
    RouteRule {
        name: "event.create",
        method: "POST",
        path: "/events",
        permission: Perm::EventCreate,
        params: form(&[p("action"), p("data"), p("status"), p("error")]),
        rack_role: "w",
        ..BASE
    },
    // --- Registered by the rack with an empty method and path: unreachable ---
    RouteRule {
        name: "placeholder.initialize",
        method: "",
        disposition: Disposition::Unreachable,
        rack_role: "unreachable",
        ..BASE
    },
    RouteRule {
        name: "placeholder.start",
        method: "",
        disposition: Disposition::Unreachable,
        rack_role: "unreachable",
        ..BASE
    },
    RouteRule {
        name: "placeholder.system_install",
        method: "",
        disposition: Disposition::Unreachable,
        rack_role: "unreachable",
        ..BASE
    },
    RouteRule {
        name: "placeholder.system_uninstall",
        method: "",
        disposition: Disposition::Unreachable,
        rack_role: "unreachable",
        ..BASE
    },
    RouteRule {
        name: "placeholder.workers",
        method: "",
        disposition: Disposition::Unreachable,
        rack_role: "unreachable",
        ..BASE
    },
];

/// The route named `name`.
pub fn by_name(name: &str) -> Option<&'static RouteRule> {
    ROUTES.iter().find(|r| r.name == name)
}

#[cfg(test)]
mod tests;
