//! Fail-closed: while the store cannot append (every write and sync of its files fails, as on a
//! full disk or a filesystem remounted read-only; `full_disk` fills a real one), every
//! authenticated proxied request answers 503 with `Retry-After` and the rack
//! receives nothing, whatever the request (allowed, denied by policy, answered locally); when
//! the disk works again the next request succeeds without a restart, and the log still
//! verifies.
//!
//! **Invariant:** the flow runs a batch with the disk failing, then one with it working.

use crate::faults::{Failure, gateway_on_failing_disk};
use crate::support::{Body, TestGateway, completed, eventually, requested};

/// What a client sends while the disk fails: the CLI's commonest calls, a secret-bearing one,
/// an upload, a log socket (refused before the upgrade), one answered locally, an unknown route
/// and a path refused as it stands.
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
        cli.websocket(
            "/apps/x/logs",
            "dGhlIHNhbXBsZSBub25jZQ==",
            &[("Prefix", "true")],
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
    // Both calls' intents and the first one's completion; the second's may still be on its
    // way (a completion is written in the background).
    let read = gw.events().await.len() as u64;
    assert!(
        (head + 3..=head + 4).contains(&read),
        "the log reads again: {read} records after {head}"
    );

    let finished = gw.finish().await;
    let decided: Vec<_> = finished.events.iter().filter_map(requested).collect();
    assert_eq!(decided.len(), 2, "only the calls after the outage");
}

/// A log that fails between a stream's intent and its opening (the rack already asked to open
/// it): nothing is relayed, and the caller is told why inside the socket, with exit code 1, not
/// a bare close that `convox exec` and `convox run` would read as success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_log_cannot_open_tells_its_caller_and_exits_1() {
    use crate::streams::{EXEC, open};
    use crate::support::{eventually, texts, until_eof};
    let (gw, disk) = gateway_on_failing_disk().await;
    gw.rack()
        .set_handshake_delay(std::time::Duration::from_millis(800));
    // The intent is durable once the rack has the handshake; the disk fails before the rack
    // answers it, so the stream's opening cannot be recorded.
    let failing = async {
        eventually("the handshake at the rack", || async {
            gw.rack()
                .received()
                .iter()
                .any(|r| r.target.starts_with(EXEC))
                .then_some(())
        })
        .await;
        disk.fail(Some(Failure::Full));
    };
    let ((status, mut reader, _writer), ()) = tokio::join!(open(&gw, gw.token(), EXEC), failing);
    assert!(status.contains("101"), "{status}");
    let text = texts(&until_eof(&mut reader).await);
    assert!(
        text.first()
            .is_some_and(|t| t.starts_with("ERROR: the gateway cannot record this stream")),
        "{text:?}"
    );
    assert_eq!(
        text.last().map(String::as_str),
        Some(format!("{}1\n", mock_rack::EXIT_MARKER).as_str())
    );
    disk.fail(None);
    gw.rack().set_handshake_delay(std::time::Duration::ZERO);
    let events = gw.finish().await.events;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.event, events::event::Event::StreamOpened { .. })),
        "no stream was opened"
    );
}

/// A call forwarded while the store works, whose answer comes back during an outage: its
/// completion, which no write can take then, is written once the disk works again, without a
/// restart, so the log never shows a forwarded call without its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_due_during_an_outage_is_written_after_it() {
    let (gw, disk) = gateway_on_failing_disk().await;
    let since = gw.head();
    gw.rack()
        .set_answer_delay(std::time::Duration::from_secs(1));
    let (reply, ()) = tokio::join!(gw.send_raw(gw.cli().get("/apps?")), async {
        // The intent is durable and the call forwarded: the disk fails before the answer.
        eventually("the intent", || async {
            gw.events_since(since)
                .await
                .iter()
                .any(|r| requested(r).is_some())
                .then_some(())
        })
        .await;
        disk.fail(Some(Failure::Full));
    });
    assert_eq!(reply.status, 200, "{}", reply.text());
    let id = reply.request_id();
    gw.rack().set_answer_delay(std::time::Duration::ZERO);
    // Queued before this call's intent, the completion shares its failed write, or failed
    // before it.
    assert_eq!(gw.send_raw(gw.cli().get("/apps?")).await.status, 503);
    // Only the intent is in the log: had the completion been written before the outage,
    // this test would show nothing. (The head needs no read, which the outage may refuse.)
    assert_eq!(
        gw.head(),
        since + 1,
        "the completion was written before the outage"
    );
    disk.fail(None);
    assert_eq!(gw.send_raw(gw.cli().get("/apps?")).await.status, 200);
    let finished = gw.finish().await;
    let ends: Vec<_> = finished
        .events
        .iter()
        .filter_map(completed)
        .filter(|c| c.request.0 == id)
        .map(|c| (c.status, c.failure.clone()))
        .collect();
    assert_eq!(
        ends,
        [(200, None)],
        "the forwarded call's end is in the log once"
    );
}
