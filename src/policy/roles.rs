//! Which permissions each role holds, and why.
//!
//! The ladder is `viewer < ops < deployer < admin`: each role holds everything the one before it
//! holds, plus the permissions listed for it here. `cicd` stands apart: it is the scope set for
//! automation tokens, never a person's role (identity refuses to grant it to a user, and
//! [`crate::policy::Grant::for_user`] ignores it).
//!
//! The rack itself has three roles (`r`, `w`, `a`, spec §2.4): any GET needs `r`, anything else
//! `w`, and a few rack-wide or money-related changes `a`. The gateway splits the rack's `w` by
//! what a write changes: running things (ops), the code and config of apps (deployer), or the
//! rack, its credentials and its shared infrastructure (admin). Routes whose answer carries a
//! credential the gateway cannot mask (registry passwords, resource URLs, config values, JWTs,
//! node keys) are admin-only, following the spec's Secrets column.
//!
//! **Invariant:** admin holds every permission of the catalogue, listed, not by wildcard (the
//! Go gateway's `convox:*:*` matched every scope, §6.1 of the inventory); every other role's set
//! is a strict subset of admin's, and each rung of the ladder is a superset of the one below.

use std::collections::BTreeSet;

use events::event::{Permission, Role};

use super::permissions::Perm;

/// `viewer`: reads what a rack `r` credential reads, except answers that carry credentials.
///
/// Viewers see apps, services, processes, builds, releases (env values masked, because they lack
/// `convox:env:read`), logs, instances, certificates (public parts only) and rack status. Logs
/// and diagnostics can contain secrets by accident; the spec lists them as secret-bearing but
/// not as credentials, and the Go gateway gave viewers `log:read`, so viewers keep them. A
/// manifest service, into which the rack interpolates env values, is not theirs
/// (`convox:secret:read`).
pub const VIEWER: &[Perm] = &[
    Perm::AuthCheck,
    Perm::AppRead,
    Perm::LogRead,
    Perm::BuildRead,
    Perm::ReleaseRead,
    Perm::ProcessRead,
    Perm::InstanceRead,
    Perm::CertRead,
    Perm::RackRead,
];

/// `ops` adds running and repairing what is deployed, without changing code or config.
///
/// Restart and scale services, stop and start processes (`convox run`), exec into them, copy
/// files in and out, reset a tripped budget breaker, and see non-secret env values. Exec, run and
/// file copy give a shell inside the app, so an ops user can read whatever the app can, secrets
/// included: masking secret-classified env values only keeps them out of casual answers.
pub const OPS: &[Perm] = &[
    Perm::EnvRead,
    Perm::ProcessRun,
    Perm::ProcessStop,
    Perm::ExecRun,
    Perm::FileRead,
    Perm::FileWrite,
    Perm::ServiceScale,
    Perm::ServiceRestart,
    Perm::BudgetOperate,
];

/// `deployer` adds changing an app's code and configuration.
///
/// Upload source, build, import builds and images, create and promote releases, set env
/// (including secret-classified keys: the caller supplies those values, nothing is disclosed),
/// write app config files, lock and set app parameters, attach certificates, set a budget's alert
/// threshold, and download objects. A deployer can ship code that reads every secret of the app,
/// so downloading the app's own source adds no power. Exporting a build is admin's: the tarball
/// carries the stored build record, and an external build's record holds the rack password.
pub const DEPLOYER: &[Perm] = &[
    Perm::AppUpdate,
    Perm::ObjectRead,
    Perm::ObjectCreate,
    Perm::ObjectDelete,
    Perm::BuildCreate,
    Perm::ReleaseCreate,
    Perm::ReleasePromote,
    Perm::EnvSet,
    Perm::ConfigSet,
    Perm::SslUpdate,
    Perm::BudgetSet,
];

/// `cicd`: the scopes of a deploy token (issue 3, point 5).
///
/// App, process and instance reads, rack read, object upload, build create and read (build logs
/// come with build read), release create, read and promote. No exec, no run, no logs of running
/// apps, no env read (release answers come masked) and no env set (a release carrying `env` needs
/// `convox:env:set`).
pub const CICD: &[Perm] = &[
    Perm::AuthCheck,
    Perm::AppRead,
    Perm::ProcessRead,
    Perm::InstanceRead,
    Perm::RackRead,
    Perm::ObjectCreate,
    Perm::BuildCreate,
    Perm::BuildRead,
    Perm::ReleaseCreate,
    Perm::ReleaseRead,
    Perm::ReleasePromote,
];

/// The roles a person can hold, in ladder order.
pub const USER_ROLES: [Role; 4] = [Role::Viewer, Role::Ops, Role::Deployer, Role::Admin];

/// Every permission `role` holds, inherited ones included.
///
/// `admin` holds the whole catalogue: app create and delete, rack update, credentials (configs,
/// registries, resources, certificates' private keys, JWTs, node keys and shells), the registry
/// and TCP/HTTP proxies, budget caps, privileged processes, external builds and `secret:read`.
pub fn role_permissions(role: Role) -> BTreeSet<Perm> {
    let rungs: &[&[Perm]] = match role {
        Role::Viewer => &[VIEWER],
        Role::Ops => &[VIEWER, OPS],
        Role::Deployer => &[VIEWER, OPS, DEPLOYER],
        Role::Admin => &[&Perm::ALL],
        Role::Cicd => &[CICD],
    };
    rungs.iter().flat_map(|r| r.iter().copied()).collect()
}

/// Whether `role` holds `perm`.
pub fn holds(role: Role, perm: Perm) -> bool {
    role_permissions(role).contains(&perm)
}

/// The scopes of a `cicd` token, as recorded in `TokenCreated`.
pub fn cicd_scopes() -> Vec<Permission> {
    CICD.iter().map(|p| p.to_permission()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_inherits_and_admin_holds_everything() {
        let v = role_permissions(Role::Viewer);
        let o = role_permissions(Role::Ops);
        let d = role_permissions(Role::Deployer);
        let a = role_permissions(Role::Admin);
        assert!(v.is_subset(&o) && v != o);
        assert!(o.is_subset(&d) && o != d);
        assert!(d.is_subset(&a) && d != a);
        assert_eq!(a, Perm::ALL.into_iter().collect());
        let c = role_permissions(Role::Cicd);
        assert!(
            c.is_subset(&d),
            "a deployer can own a cicd token without losing scopes"
        );
    }

    #[test]
    fn no_rung_lists_a_permission_twice_or_repeats_an_inherited_one() {
        let mut seen = BTreeSet::new();
        for p in VIEWER.iter().chain(OPS).chain(DEPLOYER) {
            assert!(seen.insert(*p), "{p} listed twice on the ladder");
        }
        let cicd: BTreeSet<Perm> = CICD.iter().copied().collect();
        assert_eq!(cicd.len(), CICD.len());
    }

    fn check(role: Role, perm: Perm, expected: bool) {
        assert_eq!(holds(role, perm), expected, "{role} {perm}");
    }

    #[test]
    fn cicd_matches_the_issue() {
        for p in [
            Perm::AppRead,
            Perm::ProcessRead,
            Perm::InstanceRead,
            Perm::RackRead,
            Perm::ObjectCreate,
            Perm::BuildCreate,
            Perm::BuildRead,
            Perm::ReleaseCreate,
            Perm::ReleaseRead,
            Perm::ReleasePromote,
        ] {
            check(Role::Cicd, p, true);
        }
        for p in [
            Perm::ExecRun,
            Perm::ProcessRun,
            Perm::EnvRead,
            Perm::EnvSet,
            Perm::LogRead,
            Perm::SecretRead,
        ] {
            check(Role::Cicd, p, false);
        }
        assert_eq!(cicd_scopes().len(), CICD.len());
    }

    #[test]
    fn secrets_and_rack_wide_changes_are_admin_only() {
        for p in [
            Perm::SecretRead,
            Perm::ConfigRead,
            Perm::RegistryRead,
            Perm::ResourceRead,
            Perm::JwtCreate,
            Perm::JwtAdmin,
            Perm::InstanceKeyroll,
            Perm::InstanceShell,
            Perm::BuildExternal,
            Perm::BuildExec,
            Perm::BudgetCap,
            Perm::RackUpdate,
        ] {
            check(Role::Deployer, p, false);
            check(Role::Admin, p, true);
        }
    }
}
