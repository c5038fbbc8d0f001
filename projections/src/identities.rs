//! Who has which role, and who is disabled: a fold over role and user events.
//!
//! **Invariant:** a role is held exactly when the last `RoleGranted`/`RoleRevoked` for that user
//! and role was a grant; a user is disabled exactly when the last of `UserDisabled`/`UserEnabled`
//! for them was a disable.

use std::collections::{BTreeMap, BTreeSet};

use events::event::{Event, Principal, Role};

/// The role table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identities {
    pub(crate) roles: BTreeMap<Principal, BTreeSet<Role>>,
    pub(crate) disabled: BTreeSet<Principal>,
}

// === impl Identities ===

impl Identities {
    pub(crate) fn apply(&mut self, e: &Event) {
        match e {
            Event::RoleGranted { user, role, .. } => {
                self.roles.entry(user.clone()).or_default().insert(*role);
            }
            Event::RoleRevoked { user, role, .. } => {
                if let Some(set) = self.roles.get_mut(user) {
                    set.remove(role);
                    if set.is_empty() {
                        self.roles.remove(user);
                    }
                }
            }
            Event::UserDisabled { user, .. } => {
                self.disabled.insert(user.clone());
            }
            Event::UserEnabled { user, .. } => {
                self.disabled.remove(user);
            }
            _ => {}
        }
    }

    /// The roles `user` holds now (empty when disabled: a disabled user holds nothing).
    pub fn roles(&self, user: &Principal) -> BTreeSet<Role> {
        if self.disabled.contains(user) {
            return BTreeSet::new();
        }
        self.roles.get(user).cloned().unwrap_or_default()
    }

    /// The roles assigned to `user`, disabled or not: what a grant or a revocation changes (a
    /// disabled user's roles come back when the user is enabled).
    pub fn assigned(&self, user: &Principal) -> BTreeSet<Role> {
        self.roles.get(user).cloned().unwrap_or_default()
    }

    pub fn is_disabled(&self, user: &Principal) -> bool {
        self.disabled.contains(user)
    }

    /// Every user with at least one role, in order.
    pub fn users(&self) -> impl Iterator<Item = (&Principal, &BTreeSet<Role>)> {
        self.roles.iter()
    }

    /// How many enabled users hold `role`: the guard that keeps the last admin.
    pub fn count_with(&self, role: Role) -> usize {
        self.roles
            .iter()
            .filter(|(u, r)| r.contains(&role) && !self.disabled.contains(*u))
            .count()
    }
}
