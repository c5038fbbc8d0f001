//! The system record and apps: create, read, lock and parameters, delete, cancel, and each app's
//! config files (the `cli-env-mask` the CLI asks for, spec §6).
//!
//! Invariant: an app name is unique; reading a missing app is `404 app not found: <name>`.
use std::collections::BTreeMap;

use super::{AppState, State};
use crate::error::RackError;
use crate::shapes::{App, AppConfig, Process, Release, System};

// === impl State ===

impl State {
    // --- system ---

    pub(crate) fn system(&self) -> System {
        self.system.clone()
    }

    pub(crate) fn system_processes(&self) -> Vec<Process> {
        self.rack_pods.clone()
    }

    pub(crate) fn system_releases(&self) -> Vec<Release> {
        self.rack_releases.clone()
    }

    // --- apps ---

    pub(crate) fn app_list(&self) -> Vec<App> {
        self.apps.values().map(|a| a.app.clone()).collect()
    }

    pub(crate) fn app_get(&self, name: &str) -> Result<App, RackError> {
        Ok(self.app(name)?.app.clone())
    }

    pub(crate) fn app_create(&mut self, name: &str, generation: &str) -> Result<App, RackError> {
        // The k8s provider creates a namespace named after the app; Kubernetes refuses empty
        // and duplicate names with errors of its own (500), which these messages stand in for.
        if name.is_empty() {
            return Err(RackError::Internal(
                "Namespace \"\" is invalid: metadata.name: Required value: name or generateName is required"
                    .to_owned(),
            ));
        }
        if self.apps.contains_key(name) {
            return Err(RackError::Internal(format!(
                "namespaces \"{}-{name}\" already exists",
                self.system.name
            )));
        }
        let app = AppState::new(name, generation);
        let out = app.app.clone();
        self.apps.insert(name.to_owned(), app);
        Ok(out)
    }

    pub(crate) fn app_update(
        &mut self,
        name: &str,
        lock: Option<bool>,
        parameters: Option<BTreeMap<String, String>>,
    ) -> Result<(), RackError> {
        let app = self.app_mut(name)?;
        if let Some(lock) = lock {
            app.app.locked = lock;
        }
        if let Some(params) = parameters {
            app.app.parameters.extend(params);
        }
        Ok(())
    }

    pub(crate) fn app_delete(&mut self, name: &str) -> Result<(), RackError> {
        self.app(name)?;
        self.apps.remove(name);
        Ok(())
    }

    pub(crate) fn app_status_set(&mut self, name: &str, status: &str) -> Result<(), RackError> {
        status.clone_into(&mut self.app_mut(name)?.app.status);
        Ok(())
    }

    pub(crate) fn app_cancel(&mut self, name: &str) -> Result<(), RackError> {
        let app = self.app_mut(name)?;
        if app.app.status != "updating" {
            return Err(RackError::Forbidden("app is not updating".to_owned()));
        }
        app.app.status = "running".to_owned();
        Ok(())
    }

    pub(crate) fn budget_check(&self, app: &str) -> Result<(), RackError> {
        self.app(app).map(|_| ())
    }

    // --- app configs ---

    pub(crate) fn config_list(&self, app: &str) -> Result<Vec<AppConfig>, RackError> {
        Ok(self
            .app(app)?
            .configs
            .iter()
            .map(|(name, value)| AppConfig {
                name: name.clone(),
                value: value.clone(),
            })
            .collect())
    }

    pub(crate) fn config_get(&self, app: &str, name: &str) -> Result<AppConfig, RackError> {
        let value = self
            .app(app)?
            .configs
            .get(name)
            .ok_or_else(|| RackError::NotFound(format!("app config not found: {name}")))?;
        Ok(AppConfig {
            name: name.to_owned(),
            value: value.clone(),
        })
    }

    pub(crate) fn config_set(
        &mut self,
        app: &str,
        name: &str,
        value: String,
    ) -> Result<(), RackError> {
        self.app_mut(app)?.configs.insert(name.to_owned(), value);
        Ok(())
    }
}
