//! What a build's parameters may ask of the rack, judged before `POST /apps/{app}/builds` is
//! forwarded.
//!
//! The rack starts each build as a process of the app's service `build` with the rack password
//! (`RACK_URL`) and the registries' logins in its environment, and builds that process's command
//! line as text: `build -method tgz -cache <bool>`, then ` -build-args <item>` for each item of
//! `build-args`, unquoted, and splits that line into the process's arguments (current k8s racks
//! with shell-style quoting, no shell). An item with a space, a quote or a backslash would add
//! its own options to the command (`-url dir:///proc/self`, with a `manifest` of `environ`,
//! copies the build process's environment into the build's record, which readers of builds
//! get); the characters a shell would expand (`$(…)`, `;`, a backquote) are refused as well,
//! for a rack that runs the line through one. The source and manifest name what the process
//! reads in the same way.
//!
//! **Invariant:** a build reaches the rack only when its `url` is empty or names an object of
//! the same app, its `manifest` has no `..` segment, and every item of its `build-args` is
//! `KEY=VALUE` made only of characters a shell takes literally, none of them a space.

use crate::policy::canonical::{self, CanonicalParams};

/// Characters a `build-args` value may hold besides ASCII letters and digits: none is special
/// to a POSIX shell inside a word that starts with a name and `=`, and none splits a word.
/// (`,` separates items; `~`, `*`, `?`, `[`, `{`, `$`, quotes, `\`, `;`, `&`, `|`, `<`, `>`,
/// `(`, `#`, `!` and every kind of space are out.)
const VALUE_PUNCTUATION: &[u8] = b"_./:@%+=-";

/// Why a build request is refused (the kind it is recorded under, what the caller is told), or
/// `None` when the rack may start it.
pub fn refusal(params: &CanonicalParams, app: &str) -> Option<(&'static str, String)> {
    // A build's source is an object the CLI has just uploaded to the same app. The rack would
    // fetch another app's object (which reading needs `convox:object:read` of the caller), or
    // a directory of its own build process (`dir://`), as readily. An external build sends none.
    if let Some(url) = params.get("url")
        && !url.is_empty()
        && !is_own_object(&url, app)
    {
        let what = format!(
            "url must name an object of app {app} (object://{app}/<key>), as `convox build` \
             and `convox deploy` send it after uploading the source"
        );
        return Some(("build_source_elsewhere", what));
    }
    // The rack reads the manifest into the build's record, which readers of builds get, from
    // `filepath.Join(<source>, manifest)`: `..` would reach the build process's own files (its
    // environment holds the rack password and registry logins). `./x` and `/x` stay inside.
    if let Some(manifest) = params.get("manifest")
        && manifest.split('/').any(|segment| segment == "..")
    {
        let what = "manifest must name a file inside the build's source: `..` leaves it".to_owned();
        return Some(("build_manifest_outside", what));
    }
    if let Some(args) = params.get("build-args")
        && let Some(position) = args.split(',').position(|item| !is_plain_build_arg(item))
    {
        // The value is a secret parameter (build arguments often carry tokens): the caller is
        // told which item, never what it holds.
        let what = format!(
            "build-args item {} is not KEY=VALUE with a KEY of letters, digits, `_`, `.` and \
             `-` that starts with a letter or `_`, and a VALUE of letters, digits and `{}` \
             only; the rack puts each item into its build's command line unquoted",
            position + 1,
            String::from_utf8_lossy(VALUE_PUNCTUATION),
        );
        return Some(("build_args_unsafe", what));
    }
    None
}

/// Whether a build's source `url` is `object://{app}/<key>` with a key a path could name.
fn is_own_object(url: &str, app: &str) -> bool {
    url.strip_prefix("object://")
        .and_then(|rest| rest.strip_prefix(app))
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|key| canonical::is_object_key(&format!("/apps/{app}/objects"), key))
}

/// Whether one `build-args` item is `KEY=VALUE` that a shell reads as one literal word: a KEY
/// of a letter or `_`, then letters, digits, `_`, `.` and `-` (so the word never starts with
/// `-`), and a VALUE (possibly empty) of letters, digits and [`VALUE_PUNCTUATION`].
fn is_plain_build_arg(item: &str) -> bool {
    let Some((key, value)) = item.split_once('=') else {
        return false;
    };
    let mut key_bytes = key.bytes();
    let key_ok = key_bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key_bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    key_ok
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || VALUE_PUNCTUATION.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::is_plain_build_arg;

    #[test]
    fn build_args_the_cli_sends_are_plain() {
        for item in [
            "A=1",
            "_X=",
            "my-arg.v2=x",
            "NODE_OPTIONS=--max-old-space-size=4096",
            "URL=https://example.com:8443/a/b.tgz",
            "V=1.2.3+build.4",
            "E=user@example.com",
            "P=50%",
        ] {
            assert!(is_plain_build_arg(item), "{item}");
        }
    }

    #[test]
    fn build_args_a_shell_would_split_or_expand_are_not() {
        for item in [
            "",
            "A",
            "=1",
            "-url=x",
            "1A=x",
            ".A=x",
            "A B=x",
            "A=1 -url dir:///proc/self",
            "A=1\t-x",
            "A=1\n-x",
            "A=$(id)",
            "A=`id`",
            "A=${RACK_URL}",
            "A=1;id",
            "A=1&id",
            "A=1|id",
            "A=1>x",
            "A=1<x",
            "A='x'",
            "A=\"x\"",
            "A=a\\b",
            "A=*",
            "A=?",
            "A=[a]",
            "A={a,b}",
            "A=~",
            "A=#x",
            "A=é",
        ] {
            assert!(!is_plain_build_arg(item), "{item:?}");
        }
    }
}
