//! Whether a process is a build's, judged before a caller without `convox:build:exec` execs
//! into it or reads or writes its files.
//!
//! A rack runs each build as a process of the app's own service `build`, and gives it the rack
//! API's URL *with the rack password* (`RACK_URL`) and the registries' credentials in its
//! environment. The build's record names that process (`GET /apps/{app}/builds/{id}` answers
//! `process`), and exec and file routes only look a process up in the app, so anyone allowed to
//! exec (ops and up) could read the password from `/proc/1/environ` and bypass the gateway.
//!
//! **Invariant:** for a caller without `convox:build:exec`, a call of
//! [`crate::policy::routes::INTO_PROCESS`] (exec, files) reaches the
//! rack only when the rack's record of the process names a service other than `build`, or when
//! the rack has no such process.

/// The service a rack runs builds as (`ProcessRun(app, "build", …)`).
pub const BUILD_SERVICE: &str = "build";

/// Why the process's record could not be judged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the rack's record of the process is not the JSON object a process is: {0}")]
pub struct Unreadable(String);

/// Whether the rack's answer to `GET /apps/{app}/processes/{pid}` is a build's process.
///
/// # Errors
/// The answer is not a JSON object, or its `name` is not a string.
pub fn is_build(record: &[u8]) -> Result<bool, Unreadable> {
    let value: serde_json::Value =
        serde_json::from_slice(record).map_err(|e| Unreadable(e.to_string()))?;
    let serde_json::Value::Object(process) = value else {
        return Err(Unreadable("not an object".into()));
    };
    // Go decodes members case-insensitively, last one winning: any spelling of `name` that
    // says `build` counts.
    let mut names = process
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("name"))
        .map(|(_, v)| match v {
            serde_json::Value::String(s) => Ok(s.as_str()),
            serde_json::Value::Null => Ok(""),
            _ => Err(Unreadable("`name` is not a string".into())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if names.is_empty() {
        return Err(Unreadable("no `name`".into()));
    }
    names.dedup();
    Ok(names.contains(&BUILD_SERVICE))
}

/// Whether the rack's error answer says it has no process `pid`: Kubernetes' `pods "<pid>" not
/// found`, which the rack answers with a 500, as text or inside a JSON string. Only for this
/// exact pid, so no other failure passes as a missing process.
pub fn is_missing(answer: &[u8], pid: &str) -> bool {
    let text = String::from_utf8_lossy(answer);
    [
        format!("pods \"{pid}\" not found"),
        format!("pods \\\"{pid}\\\" not found"),
    ]
    .iter()
    .any(|m| text.contains(m.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_of_the_build_service_is_a_build() {
        assert_eq!(
            is_build(br#"{"id":"build-7f9c","name":"build","app":"web"}"#),
            Ok(true)
        );
        assert_eq!(is_build(br#"{"id":"web-1","Name":"build"}"#), Ok(true));
        assert_eq!(
            is_build(br#"{"id":"web-1","name":"web","app":"build"}"#),
            Ok(false)
        );
        assert_eq!(is_build(br#"{"id":"web-1","name":"builder"}"#), Ok(false));
    }

    #[test]
    fn only_the_racks_not_found_for_this_pid_is_missing() {
        assert!(is_missing(b"pods \"web-1\" not found\n", "web-1"));
        assert!(is_missing(
            br#"{"error":"pods \"web-1\" not found"}"#,
            "web-1"
        ));
        assert!(!is_missing(b"pods \"web-2\" not found", "web-1"));
        assert!(!is_missing(b"pods \"web-12\" not found", "web-1"));
        assert!(!is_missing(b"internal error", "web-1"));
    }

    #[test]
    fn a_record_that_is_not_a_process_is_unreadable() {
        for record in [&b"not json"[..], b"[1]", br#"{"name":7}"#, br#"{"id":"x"}"#] {
            assert!(
                is_build(record).is_err(),
                "{}",
                String::from_utf8_lossy(record)
            );
        }
    }
}
