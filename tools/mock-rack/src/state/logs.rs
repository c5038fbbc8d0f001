//! Log lines for app, service, pod and rack streams, in the k8s provider's format
//! (`<time> service/<service>/<pid> <text>` with `Prefix: true`, spec §4.5).
//!
//! Invariant: lines are deterministic, one frame each, and some carry bytes that are not UTF-8,
//! because real container output does (spec §4.2).
use bytes::Bytes;

use super::State;
use crate::error::RackError;

/// Which pods a log stream covers.
#[derive(Debug)]
pub(crate) enum LogScope<'a> {
    App,
    Service(&'a str),
    Process(&'a str),
}

// === impl State ===

impl State {
    // --- log streams ---

    /// Log lines of an app, a service or one pod, formatted like the k8s provider
    /// (`<time> service/<service>/<pid> <text>` with `Prefix: true`, spec §4.5). One line of
    /// each pod carries bytes that are not UTF-8, because real output does (spec §4.2).
    pub(crate) fn log_lines(
        &self,
        app: &str,
        scope: LogScope<'_>,
        prefix: bool,
        filter: Option<&str>,
    ) -> Result<Vec<Bytes>, RackError> {
        let pods = &self.app(app)?.pods;
        let mut out = Vec::new();
        for pod in pods.iter().map(|p| &p.process).filter(|p| match scope {
            LogScope::App => true,
            LogScope::Service(s) => p.name == s,
            LogScope::Process(pid) => p.id == pid,
        }) {
            let head = format!("{} service/{}/{} ", pod.started.rfc3339(), pod.name, pod.id);
            let starting = format!("Starting {} on port 3000", pod.name);
            let texts: [&[u8]; 3] = [
                starting.as_bytes(),
                b"binary output \xff\xfe\xfd from the container",
                b"GET /health 200 1ms",
            ];
            for text in texts {
                push_line(&mut out, prefix.then_some(head.as_str()), text, filter);
            }
        }
        Ok(out)
    }

    /// Rack log lines (`convox rack logs`), in the same format as app logs.
    pub(crate) fn system_log_lines(&self, prefix: bool, filter: Option<&str>) -> Vec<Bytes> {
        let mut out = Vec::new();
        for pod in &self.rack_pods {
            let head = format!("{} system/{}/{} ", pod.started.rfc3339(), pod.name, pod.id);
            push_line(
                &mut out,
                prefix.then_some(head.as_str()),
                b"ns=api at=start",
                filter,
            );
            push_line(
                &mut out,
                prefix.then_some(head.as_str()),
                b"raw bytes \xc3\x28 in a rack log",
                filter,
            );
        }
        out
    }
}

fn push_line(out: &mut Vec<Bytes>, head: Option<&str>, text: &[u8], filter: Option<&str>) {
    if let Some(f) = filter.filter(|f| !f.is_empty())
        && !text.windows(f.len()).any(|w| w == f.as_bytes())
    {
        return;
    }
    let mut line = Vec::with_capacity(head.map_or(0, str::len) + text.len() + 1);
    if let Some(h) = head {
        line.extend_from_slice(h.as_bytes());
    }
    line.extend_from_slice(text);
    line.push(b'\n');
    out.push(Bytes::from(line));
}
