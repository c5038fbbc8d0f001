//! Fail-closed: while the store cannot append (every write and sync of its files fails, as on a
//! full disk or a filesystem remounted read-only; `full_disk` fills a real one), every
//! authenticated proxied request answers 503 with `Retry-After` and the rack
//! receives nothing, whatever the request (allowed, denied by policy, answered locally); when
//! the disk works again the next request succeeds without a restart, and the log still
//! verifies.
//!
//! **Invariant:** the flow runs a batch with the disk failing, then one with it working.

use crate::faults::{Failure, gateway_on_failing_disk};
use crate::support::{Body, TestGateway, requested};

/// What a client sends while the disk fails: the CLI's commonest calls, a secret-bearing one,
/// one refused by policy, one answered locally and an unknown route.
fn batch(gw: &TestGateway) -> Vec<Vec<u8>> {
    let cli = gw.cli();
    vec![
        cli.get("/apps?"),
        cli.get("/apps/x/releases?limit=1"),
        cli.request(
            "POST",
            "/apps/x/releases?",
            &[],
            Body::Form("env=A%3DB%0AFOO%3Dbar%0ASECRET_TOKEN%3Ds3cr3t"),
        ),
        cli.request(
            "POST",
            "/apps/x/objects/tmp/a.tgz?",
            &[],
            Body::Raw(&[0x1f, 0x8b, 0x08, 0x00, 1, 2, 3]),
        ),
        cli.get("/machines?"),
        cli.get("/no/such/route?"),
        cli.get("/apps/../system?"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_append_answers_503_and_forwards_nothing_then_recovers() {
    check_fail_closed(Failure::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_data_directory_answers_503_and_forwards_nothing_then_recovers() {
    check_fail_closed(Failure::ReadOnly).await;
}

async fn check_fail_closed(how: Failure) {
    let (gw, disk) = gateway_on_failing_disk().await;
    let head = gw.head();
    disk.fail(Some(how));
    for (i, raw) in batch(&gw).into_iter().enumerate() {
        let reply = gw.send_raw(&raw).await;
        assert_eq!(reply.status, 503, "request {i}: {}", reply.text());
        assert!(reply.header("retry-after").is_some(), "request {i}");
        assert!(reply.text().contains("audit_unavailable"), "request {i}");
    }
    assert!(
        gw.rack().received().is_empty(),
        "the rack was reached while the log could not record: {:?}",
        gw.rack().received()
    );
    assert_eq!(gw.head(), head, "nothing was appended");

    disk.fail(None);
    let reply = gw.send_raw(gw.cli().get("/apps?")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(gw.rack().received().len(), 1);
    let id = reply.request_id();
    let (decided, _) = gw.call_records(head, &id).await;
    assert_eq!(decided.seq.0, head, "the first record after the outage");
    let reply = gw.send_raw(gw.cli().get("/system?")).await;
    assert_eq!(reply.status, 200);
    assert!(gw.events().await.len() as u64 > head, "the log reads again");

    let finished = gw.finish().await;
    let decided: Vec<_> = finished.events.iter().filter_map(requested).collect();
    assert_eq!(decided.len(), 2, "only the calls after the outage");
}
