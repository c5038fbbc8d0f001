//! A set of catalogue permissions as one machine word, so that working out a caller's effective
//! permissions on every proxied request is a few bit operations, not a tree built and dropped.
//!
//! **Invariant:** bit `i` stands for the [`Perm`] whose discriminant is `i`; the catalogue has at
//! most 64 variants (checked at compile time), so every permission has its bit and a set never
//! holds a bit that names no permission.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use events::event::{Permission, Role};

use super::permissions::{Perm, Scope};
use super::roles::role_permissions;

const _: () = assert!(
    Perm::ALL.len() <= 64,
    "a PermSet holds at most 64 permissions"
);

/// A set of [`Perm`]s.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PermSet(u64);

/// Each role's permissions, computed once from [`role_permissions`] (the one definition).
static ROLE_SETS: LazyLock<[PermSet; 5]> = LazyLock::new(|| {
    [
        Role::Viewer,
        Role::Ops,
        Role::Deployer,
        Role::Admin,
        Role::Cicd,
    ]
    .map(|r| PermSet::of(role_permissions(r)))
});

// === impl PermSet ===

impl PermSet {
    pub const EMPTY: PermSet = PermSet(0);

    const fn bit(p: Perm) -> u64 {
        1u64 << (p as u32)
    }

    /// The set of `perms`.
    pub fn of(perms: impl IntoIterator<Item = Perm>) -> PermSet {
        perms
            .into_iter()
            .fold(PermSet::EMPTY, |s, p| PermSet(s.0 | PermSet::bit(p)))
    }

    /// What `role` holds, inherited permissions included.
    pub fn of_role(role: Role) -> PermSet {
        let i = match role {
            Role::Viewer => 0,
            Role::Ops => 1,
            Role::Deployer => 2,
            Role::Admin => 3,
            Role::Cicd => 4,
        };
        ROLE_SETS[i]
    }

    /// What token scopes name: an exact permission string (found by [`Perm::parse`]), or one
    /// with `*` segments read by [`Scope`], as [`Perm::in_scope`] reads it. A scope that names
    /// nothing in the catalogue adds nothing.
    pub fn of_scopes(scopes: &[Permission]) -> PermSet {
        let mut set = PermSet::EMPTY;
        for scope in scopes {
            let s = scope.0.as_str();
            if let Some(p) = Perm::parse(s) {
                set.0 |= PermSet::bit(p);
            } else if let Some(pattern) = Scope::parse(s) {
                for p in Perm::ALL {
                    if pattern.covers(p) {
                        set.0 |= PermSet::bit(p);
                    }
                }
            }
        }
        set
    }

    pub const fn contains(self, p: Perm) -> bool {
        self.0 & PermSet::bit(p) != 0
    }

    pub const fn union(self, other: PermSet) -> PermSet {
        PermSet(self.0 | other.0)
    }

    pub const fn intersection(self, other: PermSet) -> PermSet {
        PermSet(self.0 & other.0)
    }

    /// Whether every member of `other` is a member of this set.
    pub const fn contains_all(self, other: PermSet) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, in catalogue (`Perm::ALL`) order.
    pub fn iter(self) -> impl Iterator<Item = Perm> {
        Perm::ALL.into_iter().filter(move |p| self.contains(*p))
    }

    /// The members as an ordered set, for tables and comparisons.
    pub fn to_btree(self) -> BTreeSet<Perm> {
        self.iter().collect()
    }
}

impl std::fmt::Debug for PermSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(s: &[&str]) -> Vec<Permission> {
        s.iter().map(|s| Permission((*s).into())).collect()
    }

    #[test]
    fn every_permission_has_its_own_bit() {
        let mut seen = PermSet::EMPTY;
        for p in Perm::ALL {
            let one = PermSet::of([p]);
            assert!(one.contains(p));
            assert!(seen.intersection(one).is_empty(), "{p} shares a bit");
            seen = seen.union(one);
        }
        assert_eq!(seen.iter().count(), Perm::ALL.len());
    }

    #[test]
    fn role_sets_equal_the_role_table() {
        for role in [
            Role::Viewer,
            Role::Ops,
            Role::Deployer,
            Role::Admin,
            Role::Cicd,
        ] {
            assert_eq!(PermSet::of_role(role).to_btree(), role_permissions(role));
        }
    }

    #[test]
    fn scopes_read_exactly_as_in_scope_does() {
        let cases: &[&[&str]] = &[
            &["convox:*:*"],
            &["convox:app:*", "convox:*:read"],
            &["convox:env:read", "convox:nothing:here", "gateway:*:*"],
            &["convox:*"],
            &["*:*:*"],
            &["convox:*:*:*", "convox::*", "convox:app:re*"],
            &["gateway:token:*"],
            &[],
        ];
        for case in cases {
            let expected: BTreeSet<Perm> = Perm::ALL
                .into_iter()
                .filter(|p| case.iter().any(|s| p.in_scope(s)))
                .collect();
            assert_eq!(
                PermSet::of_scopes(&scopes(case)).to_btree(),
                expected,
                "{case:?}"
            );
        }
        assert!(PermSet::of_scopes(&scopes(&["convox:env:read"])).contains(Perm::EnvRead));
        assert!(PermSet::of_scopes(&scopes(&["convox:*:*"])).contains(Perm::EnvRead));
        assert!(PermSet::of_scopes(&scopes(&["convox:nothing:here"])).is_empty());
    }
}
