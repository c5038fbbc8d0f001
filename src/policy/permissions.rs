//! The permission catalogue: every `convox:<resource>:<action>` string the gateway knows (what
//! the rack proxy forwards) and the gateway's own `gateway:<resource>:<action>` (what the
//! gateway API does), as a closed enum with one sentence saying what each lets its holder do.
//!
//! **Invariant:** the catalogue is closed. A route, a role or a rule names a [`Perm`] variant,
//! never a free string; a token scope that names no variant (and matches none through a `*`
//! segment) grants nothing. `Perm::ALL` lists every variant once, in table order, and each
//! string is unique (the unit tests check both).

use std::sync::LazyLock;

use events::event::Permission;

/// One permission of the catalogue. `as_str` is its stable `convox:<resource>:<action>` form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Perm {
    AuthCheck,
    AppRead,
    AppCreate,
    AppUpdate,
    AppDelete,
    LogRead,
    BudgetOperate,
    BudgetSet,
    BudgetCap,
    ConfigRead,
    ConfigSet,
    EnvRead,
    EnvSet,
    SecretRead,
    ObjectRead,
    ObjectCreate,
    ObjectDelete,
    ObjectPublic,
    BuildRead,
    BuildCreate,
    BuildExport,
    BuildUpdate,
    BuildExternal,
    BuildExec,
    ReleaseRead,
    ReleaseCreate,
    ReleasePromote,
    ProcessRead,
    ProcessRun,
    ProcessStop,
    ProcessPrivileged,
    ExecRun,
    FileRead,
    FileWrite,
    ServiceScale,
    ServiceRestart,
    SslUpdate,
    ResourceRead,
    ResourceManage,
    ResourceData,
    ResourceConsole,
    CertRead,
    CertManage,
    InstanceRead,
    InstanceTerminate,
    InstanceKeyroll,
    InstanceShell,
    RegistryRead,
    RegistryManage,
    ImagePull,
    ImagePush,
    ProxyTcp,
    ProxyHttp,
    RackRead,
    RackUpdate,
    JwtCreate,
    JwtAdmin,
    JwtRotate,
    EventCreate,
    /// The gateway's own: create, list and revoke API tokens through the gateway API. It is
    /// not a rack permission, so no rack route names it and no `convox:` scope covers it.
    GatewayTokenManage,
}

// === impl Perm ===

impl Perm {
    /// Every permission, in the order of the published table.
    pub const ALL: [Perm; 60] = [
        Perm::AuthCheck,
        Perm::AppRead,
        Perm::AppCreate,
        Perm::AppUpdate,
        Perm::AppDelete,
        Perm::LogRead,
        Perm::BudgetOperate,
        Perm::BudgetSet,
        Perm::BudgetCap,
        Perm::ConfigRead,
        Perm::ConfigSet,
        Perm::EnvRead,
        Perm::EnvSet,
        Perm::SecretRead,
        Perm::ObjectRead,
        Perm::ObjectCreate,
        Perm::ObjectDelete,
        Perm::ObjectPublic,
        Perm::BuildRead,
        Perm::BuildCreate,
        Perm::BuildExport,
        Perm::BuildUpdate,
        Perm::BuildExternal,
        Perm::BuildExec,
        Perm::ReleaseRead,
        Perm::ReleaseCreate,
        Perm::ReleasePromote,
        Perm::ProcessRead,
        Perm::ProcessRun,
        Perm::ProcessStop,
        Perm::ProcessPrivileged,
        Perm::ExecRun,
        Perm::FileRead,
        Perm::FileWrite,
        Perm::ServiceScale,
        Perm::ServiceRestart,
        Perm::SslUpdate,
        Perm::ResourceRead,
        Perm::ResourceManage,
        Perm::ResourceData,
        Perm::ResourceConsole,
        Perm::CertRead,
        Perm::CertManage,
        Perm::InstanceRead,
        Perm::InstanceTerminate,
        Perm::InstanceKeyroll,
        Perm::InstanceShell,
        Perm::RegistryRead,
        Perm::RegistryManage,
        Perm::ImagePull,
        Perm::ImagePush,
        Perm::ProxyTcp,
        Perm::ProxyHttp,
        Perm::RackRead,
        Perm::RackUpdate,
        Perm::JwtCreate,
        Perm::JwtAdmin,
        Perm::JwtRotate,
        Perm::EventCreate,
        Perm::GatewayTokenManage,
    ];

    /// The stable string form, `<scheme>:<resource>:<action>`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Perm::AuthCheck => "convox:auth:check",
            Perm::AppRead => "convox:app:read",
            Perm::AppCreate => "convox:app:create",
            Perm::AppUpdate => "convox:app:update",
            Perm::AppDelete => "convox:app:delete",
            Perm::LogRead => "convox:log:read",
            Perm::BudgetOperate => "convox:budget:operate",
            Perm::BudgetSet => "convox:budget:set",
            Perm::BudgetCap => "convox:budget:cap",
            Perm::ConfigRead => "convox:config:read",
            Perm::ConfigSet => "convox:config:set",
            Perm::EnvRead => "convox:env:read",
            Perm::EnvSet => "convox:env:set",
            Perm::SecretRead => "convox:secret:read",
            Perm::ObjectRead => "convox:object:read",
            Perm::ObjectCreate => "convox:object:create",
            Perm::ObjectDelete => "convox:object:delete",
            Perm::ObjectPublic => "convox:object:public",
            Perm::BuildRead => "convox:build:read",
            Perm::BuildCreate => "convox:build:create",
            Perm::BuildExport => "convox:build:export",
            Perm::BuildUpdate => "convox:build:update",
            Perm::BuildExternal => "convox:build:external",
            Perm::BuildExec => "convox:build:exec",
            Perm::ReleaseRead => "convox:release:read",
            Perm::ReleaseCreate => "convox:release:create",
            Perm::ReleasePromote => "convox:release:promote",
            Perm::ProcessRead => "convox:process:read",
            Perm::ProcessRun => "convox:process:run",
            Perm::ProcessStop => "convox:process:stop",
            Perm::ProcessPrivileged => "convox:process:privileged",
            Perm::ExecRun => "convox:exec:run",
            Perm::FileRead => "convox:file:read",
            Perm::FileWrite => "convox:file:write",
            Perm::ServiceScale => "convox:service:scale",
            Perm::ServiceRestart => "convox:service:restart",
            Perm::SslUpdate => "convox:ssl:update",
            Perm::ResourceRead => "convox:resource:read",
            Perm::ResourceManage => "convox:resource:manage",
            Perm::ResourceData => "convox:resource:data",
            Perm::ResourceConsole => "convox:resource:console",
            Perm::CertRead => "convox:cert:read",
            Perm::CertManage => "convox:cert:manage",
            Perm::InstanceRead => "convox:instance:read",
            Perm::InstanceTerminate => "convox:instance:terminate",
            Perm::InstanceKeyroll => "convox:instance:keyroll",
            Perm::InstanceShell => "convox:instance:shell",
            Perm::RegistryRead => "convox:registry:read",
            Perm::RegistryManage => "convox:registry:manage",
            Perm::ImagePull => "convox:image:pull",
            Perm::ImagePush => "convox:image:push",
            Perm::ProxyTcp => "convox:proxy:tcp",
            Perm::ProxyHttp => "convox:proxy:http",
            Perm::RackRead => "convox:rack:read",
            Perm::RackUpdate => "convox:rack:update",
            Perm::JwtCreate => "convox:jwt:create",
            Perm::JwtAdmin => "convox:jwt:admin",
            Perm::JwtRotate => "convox:jwt:rotate",
            Perm::EventCreate => "convox:event:create",
            Perm::GatewayTokenManage => "gateway:token:manage",
        }
    }

    /// What holding the permission lets a caller do, in one sentence (published in the README).
    pub const fn describe(self) -> &'static str {
        match self {
            Perm::AuthCheck => "Check that a credential works (`/auth`, `/check`).",
            Perm::AppRead => {
                "List and read apps, services, balancers, metrics, budget state and cost."
            }
            Perm::AppCreate => "Create an app.",
            Perm::AppUpdate => "Lock, unlock and set parameters of an app; cancel its deploy.",
            Perm::AppDelete => "Delete an app.",
            Perm::LogRead => "Stream app, service, process and rack logs; run app diagnostics.",
            Perm::BudgetOperate => {
                "Reset a tripped budget breaker (without forcing the cooldown), simulate and dismiss."
            }
            Perm::BudgetSet => "Set a budget's alert threshold.",
            Perm::BudgetCap => {
                "Set the monthly cap, at-cap action and pricing adjustment; clear a budget; force a reset."
            }
            Perm::ConfigRead => "Read app config files (secret values, in clear).",
            Perm::ConfigSet => "Write app config files.",
            Perm::EnvRead => {
                "See env values in release answers (secret-classified values stay masked)."
            }
            Perm::EnvSet => "Create a release that carries an `env` (set, unset, edit, rollback).",
            Perm::SecretRead => {
                "See secret-classified env values in release answers; read manifest services, \
                 into which the rack interpolates env values."
            }
            Perm::ObjectRead => "List, fetch and probe stored objects (uploaded source).",
            Perm::ObjectCreate => "Upload an object (the source tarball of a deploy).",
            Perm::ObjectDelete => "Delete a stored object.",
            Perm::ObjectPublic => "Upload an object marked `Public: true`.",
            Perm::BuildRead => "List and read builds and stream their logs.",
            Perm::BuildCreate => {
                "Start a build from an object, import a build or a prebuilt image."
            }
            Perm::BuildExport => "Download a whole build (its images) as a tarball.",
            Perm::BuildUpdate => {
                "Rewrite a build's record (status, release, manifest, logs) or images; write or delete objects outside `tmp/`."
            }
            Perm::BuildExternal => {
                "Start an `external=true` build, whose answer carries the rack password."
            }
            Perm::BuildExec => {
                "Exec into a build's process, or read or write its files: its environment holds \
                 the rack password; fetch stored objects outside `tmp/` (build logs unscrubbed)."
            }
            Perm::ReleaseRead => "List and read releases (env values masked per env/secret read).",
            Perm::ReleaseCreate => "Create a release from a build.",
            Perm::ReleasePromote => "Promote (deploy) a release.",
            Perm::ProcessRead => "List and read processes.",
            Perm::ProcessRun => "Start a one-off process (`convox run`).",
            Perm::ProcessStop => "Stop a process.",
            Perm::ProcessPrivileged => {
                "Run a process privileged, system-critical or with extra volumes."
            }
            Perm::ExecRun => "Execute a command inside a running process (`convox exec`, `run`).",
            Perm::FileRead => "Copy files out of a process (`convox cp pid:/path .`).",
            Perm::FileWrite => "Copy files into a process or delete them.",
            Perm::ServiceScale => {
                "Scale or resize a service; toggle scale overrides and autoscale triggers."
            }
            Perm::ServiceRestart => "Restart a service.",
            Perm::SslUpdate => "Attach a certificate to a service port.",
            Perm::ResourceRead => "List and read resources (their URLs carry credentials).",
            Perm::ResourceManage => {
                "Create, update, delete, link and unlink rack resources; list types."
            }
            Perm::ResourceData => "Export or import a resource's data.",
            Perm::ResourceConsole => "Open a resource console (e.g. a database shell).",
            Perm::CertRead => "List certificates and read the Let's Encrypt configuration.",
            Perm::CertManage => {
                "Import, generate, renew and delete certificates; set Let's Encrypt config."
            }
            Perm::InstanceRead => "List instances (nodes).",
            Perm::InstanceTerminate => "Terminate an instance.",
            Perm::InstanceKeyroll => {
                "Roll the instances' SSH key (the answer carries the private key)."
            }
            Perm::InstanceShell => "Open a shell on an instance.",
            Perm::RegistryRead => "List private registries (the answer carries their passwords).",
            Perm::RegistryManage => "Add and remove private registries.",
            Perm::ImagePull => "Pull images through the rack's registry proxy (`/v2/`).",
            Perm::ImagePush => "Push images through the rack's registry proxy (`/v2/`).",
            Perm::ProxyTcp => "Open a raw TCP tunnel into the cluster (`convox proxy`).",
            Perm::ProxyHttp => "Send HTTP to an in-cluster service (`/custom/http/proxy`).",
            Perm::RackRead => "Read rack info, capacity, metrics, processes and releases.",
            Perm::RackUpdate => "Update the rack, its parameters and nodes (Karpenter cleanup).",
            Perm::JwtCreate => {
                "Mint a read or write rack JWT (a credential that bypasses the gateway)."
            }
            Perm::JwtAdmin => "Mint an admin rack JWT.",
            Perm::JwtRotate => "Rotate the rack's JWT signing key.",
            Perm::EventCreate => "Emit a rack event (it drives the rack's webhooks).",
            Perm::GatewayTokenManage => {
                "Create, list and revoke API tokens through the gateway API (never beyond the caller's or the owner's permissions)."
            }
        }
    }

    /// The permission named by `s`, exactly (no wildcards).
    pub fn parse(s: &str) -> Option<Perm> {
        let i = BY_NAME.binary_search_by(|(name, _)| (*name).cmp(s)).ok()?;
        BY_NAME.get(i).map(|(_, p)| *p)
    }

    /// The three segments of [`Perm::as_str`], split once for the whole catalogue.
    pub fn segments(self) -> [&'static str; 3] {
        SEGMENTS.get(self as usize).copied().unwrap_or(["", "", ""])
    }

    /// The domain form recorded in events and token scopes.
    pub fn to_permission(self) -> Permission {
        Permission(self.as_str().to_owned())
    }

    /// Whether the scope string `scope` covers this permission: equal, or equal after reading a
    /// `*` segment as "any" (`convox:app:*`, `convox:*:read`, `convox:*:*`). The scheme segment
    /// (`convox` or `gateway`) must match literally, so no scope of one family ever covers a
    /// permission of the other.
    pub fn in_scope(self, scope: &str) -> bool {
        Scope::parse(scope).is_some_and(|s| s.covers(self))
    }
}

/// A token scope read once: exactly three segments, where `*` as the resource or the action
/// reads "any" and the scheme must match literally. The one reader of scope strings:
/// [`Perm::in_scope`] and `PermSet::of_scopes` both go through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope<'a>([&'a str; 3]);

impl<'a> Scope<'a> {
    /// `None` unless `scope` has exactly three `:`-separated segments.
    pub fn parse(scope: &'a str) -> Option<Scope<'a>> {
        let mut it = scope.split(':');
        let segments = [it.next()?, it.next()?, it.next()?];
        it.next().is_none().then_some(Scope(segments))
    }

    /// Whether this scope covers `perm`.
    pub fn covers(&self, perm: Perm) -> bool {
        let want = perm.segments();
        let [scheme, resource, action] = self.0;
        scheme == want[0]
            && (resource == "*" || resource == want[1])
            && (action == "*" || action == want[2])
    }
}

/// Every permission's segments, indexed by its discriminant.
static SEGMENTS: LazyLock<Vec<[&'static str; 3]>> = LazyLock::new(|| {
    let mut table = vec![["", "", ""]; Perm::ALL.len()];
    for p in Perm::ALL {
        let mut it = p.as_str().splitn(3, ':');
        if let Some(slot) = table.get_mut(p as usize) {
            *slot = [
                it.next().unwrap_or(""),
                it.next().unwrap_or(""),
                it.next().unwrap_or(""),
            ];
        }
    }
    table
});

/// Every permission string with its variant, sorted by string, for exact lookups.
static BY_NAME: LazyLock<Vec<(&'static str, Perm)>> = LazyLock::new(|| {
    let mut v: Vec<(&'static str, Perm)> = Perm::ALL.iter().map(|p| (p.as_str(), *p)).collect();
    v.sort_unstable();
    v
});

impl std::fmt::Display for Perm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_variant_is_listed_once_with_a_unique_well_formed_string() {
        let strings: BTreeSet<&str> = Perm::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(strings.len(), Perm::ALL.len());
        let variants: BTreeSet<Perm> = Perm::ALL.into_iter().collect();
        assert_eq!(variants.len(), Perm::ALL.len());
        for p in Perm::ALL {
            let parts: Vec<&str> = p.as_str().split(':').collect();
            assert_eq!(parts.len(), 3, "{p}");
            assert!(["convox", "gateway"].contains(&parts[0]), "{p}");
            assert!(
                parts[1..]
                    .iter()
                    .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')),
                "{p}"
            );
            assert_eq!(Perm::parse(p.as_str()), Some(p));
            assert!(p.describe().ends_with('.'), "{p}");
        }
    }

    fn check(perm: Perm, scope: &str, expected: bool) {
        assert_eq!(perm.in_scope(scope), expected, "{perm} in {scope}");
    }

    #[test]
    fn scopes_match_exactly_or_through_star_segments() {
        check(Perm::AppRead, "convox:app:read", true);
        check(Perm::AppRead, "convox:app:*", true);
        check(Perm::AppRead, "convox:*:read", true);
        check(Perm::AppRead, "convox:*:*", true);
        check(Perm::AppRead, "*:*:*", false);
        check(Perm::AppRead, "gateway:*:*", false);
        check(Perm::AppRead, "convox:app", false);
        check(Perm::AppRead, "convox:app:read:x", false);
        check(Perm::AppRead, "convox:app:rea", false);
        check(Perm::AppRead, "convox:apps:*", false);
        check(Perm::GatewayTokenManage, "gateway:token:manage", true);
        check(Perm::GatewayTokenManage, "gateway:*:*", true);
        check(Perm::GatewayTokenManage, "convox:*:*", false);
        check(Perm::GatewayTokenManage, "*:token:manage", false);
    }
}
