//! The count rule: after a batch of requests, the log holds one `CommandRequested` per
//! request that passed authentication (allowed, refused by policy, or answered locally) and
//! none for the others, which appear only as coalesced `DenialsCounted` once the gateway stops.
//!
//! **Invariant:** the batch is one table; the flow sends it and counts, the test only names it.

use std::collections::BTreeMap;

use crate::support::{Body, TestGateway, denials, requested, unknown_token};

/// One request of a batch: its bytes and whether it passes authentication.
struct Sent {
    raw: Vec<u8>,
    authenticated: bool,
    status: u16,
    /// For an unauthenticated request, the reason it is counted under.
    reason: &'static str,
}

/// Sends `batch`, then checks the counts live and after the stop.
async fn send_and_count(gw: TestGateway, batch: Vec<Sent>) {
    let since = gw.head();
    let rack_before = gw.rack().received().len();
    let mut forwarded = 0;
    for (i, s) in batch.iter().enumerate() {
        let reply = gw.send_raw(&s.raw).await;
        assert_eq!(reply.status, s.status, "request {i}");
        if s.status == 200 {
            forwarded += 1;
        }
    }
    assert_eq!(gw.rack().received().len(), rack_before + forwarded);
    let authenticated = batch.iter().filter(|s| s.authenticated).count();
    let live: Vec<_> = gw.events_since(since).await;
    let decided = live.iter().filter_map(requested).count();
    assert_eq!(decided, authenticated, "CommandRequested while running");
    assert!(
        denials(&live).is_empty(),
        "counted before their minute is over"
    );

    let finished = gw.finish().await;
    let after = finished.since(since);
    assert_eq!(
        after.iter().filter_map(requested).count(),
        authenticated,
        "CommandRequested in the stopped log"
    );
    let mut want: BTreeMap<&str, u64> = BTreeMap::new();
    for s in batch.iter().filter(|s| !s.authenticated) {
        *want.entry(s.reason).or_default() += 1;
    }
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for (ip, reason, count) in denials(&after) {
        assert_eq!(ip, "127.0.0.1");
        *got.entry(reason).or_default() += count;
    }
    let got: BTreeMap<&str, u64> = got.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(got, want, "DenialsCounted after the stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_requested_counts_every_authenticated_request_and_only_those() {
    let gw = TestGateway::start().await;
    let viewer = gw
        .token_for(
            "viewer@example.com",
            events::event::Role::Viewer,
            &["convox:*:*"],
        )
        .await;
    let cli = gw.cli();
    let as_viewer = gw.cli_as(&viewer.secret);
    let nobody = gw.cli_as(&unknown_token());
    let ok = |raw: Vec<u8>| Sent {
        raw,
        authenticated: true,
        status: 200,
        reason: "",
    };
    let refused = |raw: Vec<u8>, status: u16| Sent {
        raw,
        authenticated: true,
        status,
        reason: "",
    };
    let unauthenticated = |raw: Vec<u8>, reason: &'static str| Sent {
        raw,
        authenticated: false,
        status: 401,
        reason,
    };
    let no_auth = b"GET /apps? HTTP/1.1\r\nHost: gw\r\nUser-Agent: convox.go/dev\r\n\r\n".to_vec();
    let garbled = format!(
        "GET /apps? HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n\r\n",
        "Basic !!!!"
    )
    .into_bytes();
    let batch = vec![
        ok(cli.get("/apps?")),
        unauthenticated(no_auth.clone(), "missing_credentials"),
        ok(cli.get("/system?")),
        refused(cli.get("/machines?"), 404),
        unauthenticated(garbled, "malformed_basic"),
        ok(as_viewer.get("/apps/x/processes?")),
        refused(
            as_viewer.request("POST", "/apps/x/releases?", &[], Body::Form("env=A%3DB")),
            403,
        ),
        unauthenticated(nobody.get("/apps?"), "unknown_or_expired_token"),
        refused(cli.get("/no/such/route?"), 404),
        refused(cli.get("/apps/../system?"), 400),
        unauthenticated(no_auth, "missing_credentials"),
        unauthenticated(gw.cli_as("TOKEN123").get("/apps?"), "malformed_token"),
        ok(cli.get("/apps/x/releases?limit=1")),
    ];
    send_and_count(gw, batch).await;
}
