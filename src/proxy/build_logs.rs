//! Where a finished build's log is read from, judged before its socket is opened.
//!
//! A rack streams a build that is not running from the object its record's `logs` names
//! (`object://<app>/<key>`, any app's). A build's own log is `object://<app>/build/<id>/logs`,
//! but a record can name any object: `build.import` copies `logs` from the uploaded
//! `build.json`, so a caller allowed to import builds and read their logs (`cicd`) could read
//! any stored object, such as another app's source upload, without `convox:object:read`.
//!
//! A caller with `convox:object:read` may read any app's objects, but only as the object routes
//! name them: the rack opens `logs` as `ObjectFetch(host, path)`, and on a rack that stores
//! objects on its own disk a `..` in that path reads any file of the API's pod (its service
//! account's token). So such a caller's build log must still be an object a path could name
//! ([`is_object_url`]).
//!
//! **Invariant:** a build-log socket is opened only when the rack's record of the build has no
//! log or names a build log, whatever its status, or when the rack has no such build; or, for a
//! caller with `convox:object:read`, when it names an object a path could name.

/// What the check concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// The record names no log (a build still running) or a build log.
    BuildLog,
    /// The rack would stream this other object.
    Elsewhere(String),
    /// The rack has no such build (404): it has no log to stream.
    Missing,
}

/// Why the build's record could not be judged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the rack's record of the build is not the JSON object a build is: {0}")]
pub struct Unreadable(String);

/// Judges the rack's answer to `GET /apps/{app}/builds/{id}`.
pub fn judge(record: &[u8]) -> Result<Source, Unreadable> {
    let value: serde_json::Value =
        serde_json::from_slice(record).map_err(|e| Unreadable(e.to_string()))?;
    if !value.is_object() {
        return Err(Unreadable("not an object".into()));
    }
    let field = |name: &str| match value.get(name) {
        None | Some(serde_json::Value::Null) => Ok(""),
        Some(serde_json::Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(Unreadable(format!("`{name}` is not a string"))),
    };
    // The status is not trusted to mean the process is streamed: `build.image` sets an existing
    // build running again without touching its `logs`, and the rack reads those once it ends.
    // A build that really runs has no `logs` yet.
    let logs = field("logs")?;
    field("status")?;
    if logs.is_empty() || is_build_log(logs) {
        Ok(Source::BuildLog)
    } else {
        Ok(Source::Elsewhere(logs.to_owned()))
    }
}

/// `object://<app>/build/<id>/logs`, exactly: where a rack's build process stores a build's log
/// (an app name is lowercase letters, digits and `-`; a build id letters and digits). Nothing
/// looser, so the rack's URL parsing cannot read it as another object.
fn is_build_log(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("object://") else {
        return false;
    };
    let mut parts = rest.split('/');
    let (Some(app), Some("build"), Some(id), Some("logs"), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    !app.is_empty()
        && app
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `object://<app>/<key>` as the object routes could name it: an app name (lowercase letters,
/// digits and `-`) that is not one the rack keeps for itself, and a key of the object-key
/// grammar (no `.` or `..` segment, no escapes, nothing a URL parser reads as more).
pub fn is_object_url(url: &str) -> bool {
    let Some((app, key)) = url
        .strip_prefix("object://")
        .and_then(|rest| rest.split_once('/'))
    else {
        return false;
    };
    !app.is_empty()
        && app
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !crate::policy::decide::RESERVED_APPS.contains(&app)
        && crate::policy::canonical::is_object_key(&format!("/apps/{app}/objects"), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: &str, logs: &str) -> Vec<u8> {
        serde_json::json!({"id": "BABC", "status": status, "logs": logs})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_build_log_of_any_app_is_a_build_log() {
        for logs in [
            "object://web/build/BABCDEFGHIJ/logs",
            "object://other-app/build/B123/logs",
            "",
        ] {
            assert_eq!(
                judge(&record("complete", logs)),
                Ok(Source::BuildLog),
                "{logs}"
            );
        }
        // A running build has no log yet; one set running again by `build.image` keeps its old
        // `logs`, which the rack reads once it ends.
        assert_eq!(judge(&record("running", "")), Ok(Source::BuildLog));
        assert_eq!(
            judge(&record("running", "object://web/tmp/x.tgz")),
            Ok(Source::Elsewhere("object://web/tmp/x.tgz".to_owned()))
        );
    }

    #[test]
    fn any_other_object_is_elsewhere() {
        for logs in [
            "object://web/tmp/7b1f.tgz",
            "object://web/build/B1/logs/more",
            "object://web/build/B1/logsx",
            "object://web/build//logs",
            "object://Web/build/B1/logs",
            "object://web:80/build/B1/logs",
            "object://web/build/B%31/logs",
            "object://user@web/build/B1/logs",
            "object://web/build/B1/logs?x",
            "object:///build/B1/logs",
            "s3://web/build/B1/logs",
        ] {
            assert_eq!(
                judge(&record("complete", logs)),
                Ok(Source::Elsewhere(logs.to_owned())),
                "{logs}"
            );
        }
    }

    #[test]
    fn an_object_url_is_one_the_object_routes_could_name() {
        for url in [
            "object://web/tmp/7b1f.tgz",
            "object://other-app/build/B1/logs",
            "object://web/a/b_c-d.e",
        ] {
            assert!(is_object_url(url), "{url}");
        }
        for url in [
            "object://web/../../../../var/run/secrets/kubernetes.io/serviceaccount/token",
            "object://web/a/../../b",
            "object://web/./a",
            "object://web/%2e%2e/a",
            "object://web//a",
            "object://web/",
            "object://web",
            "object://rack/tmp/x.tgz",
            "object://system/x",
            "object://Web/x",
            "object://web:80/x",
            "object://user@web/x",
            "object://web/x?y",
            "object://web/x#y",
            "object:///x",
            "s3://web/x",
            "/etc/passwd",
        ] {
            assert!(!is_object_url(url), "{url}");
        }
    }

    #[test]
    fn a_record_that_is_not_a_build_is_unreadable() {
        assert!(judge(b"not json").is_err());
        assert!(judge(b"[1]").is_err());
        assert!(judge(br#"{"status": "complete", "logs": 7}"#).is_err());
    }
}
