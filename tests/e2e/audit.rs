//! After the run: the data directory of a whole CLI session (with refused and unauthenticated
//! calls mixed in) is exported with `export::export_local` and verified with
//! `verify::verify_export` pinned to the directory's own key (in `TestGateway::finish`, as for
//! every test); here, also, the auditor's `rack-audit verify` exits 0 on that export, another
//! key must refuse it, the log holds one `CommandRequested` per request that passed
//! authentication and no other, and neither
//! the env secret nor the caller's token may appear anywhere in the log or the export.
//!
//! **Invariant:** the session is the `cli` module's flows, not a copy of them.

use events::verify::{self, DirSource, Quiet};
use rack_gateway::keys::Keys;
use rack_gateway::server::dev::DEV_ORIGIN;

use events::event::{CommandRequested, Event, Role};

use crate::cli::{Session, assert_absent, everything};
use crate::support::{Body, TestGateway, is_lookup, requested};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_of_a_cli_session_verifies_under_its_own_key_only() {
    let s = Session::start().await;
    everything(&s).await;
    let token = s.gw.token().to_owned();
    let noise = [
        (b"GET /apps? HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(), 401),
        (s.gw.cli().get("/no/such/route?"), 404),
        (s.gw.cli_as("TOKEN123").get("/apps?"), 401),
    ];
    for (raw, status) in noise {
        assert_eq!(s.gw.send_raw(raw).await.status, status);
    }
    // The replayed CLI requests, and the unknown route with the dev token.
    let authenticated = s.sent() + 1;
    let finished = s.finish().await;

    let (lookups, own): (Vec<&CommandRequested>, Vec<&CommandRequested>) = finished
        .events
        .iter()
        .filter_map(requested)
        .partition(|c| is_lookup(c));
    assert_eq!(
        own.len(),
        authenticated,
        "one CommandRequested per request that passed authentication"
    );
    // The dev admin may read every value and the app protects none: no call of the session
    // needed a lookup of the gateway's own, so the count is exact.
    assert!(lookups.is_empty(), "{lookups:?}");

    let keys = Keys::load(finished.data.path()).unwrap();
    let audit = std::process::Command::new(crate::workspace_bin::build("rack-audit"))
        .arg("verify")
        .arg(finished.export.path())
        .args(["--key", &keys.vkey().to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&audit.stdout);
    assert_eq!(
        audit.status.code(),
        Some(0),
        "rack-audit verify: {stdout}{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    assert!(
        stdout.starts_with(&format!("OK: {} records,", finished.events.len()))
            && stdout.contains("key pinned"),
        "{stdout}"
    );

    let stranger = tempfile::tempdir().unwrap();
    let other = Keys::init(stranger.path(), DEV_ORIGIN).unwrap();
    let refused = verify::verify_export(
        &DirSource::new(finished.export.path()),
        Some(&other.vkey()),
        &mut Quiet,
    );
    assert!(refused.is_err(), "another key accepted the export");

    assert_absent(&finished, "s3cr3t");
    assert_absent(&finished, &token);
}

/// `rack-gateway dev` again on the same directory: the log goes on and still verifies, the
/// previous dev token is revoked (as an event) and refused, the new one works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_continues_the_log_and_replaces_the_dev_token() {
    let gw = TestGateway::start().await;
    let old = gw.token().to_owned();
    let old_id = gw.token_id(&old);
    assert_eq!(gw.send_raw(gw.cli().get("/apps?")).await.status, 200);
    let gw = gw.restart().await;
    assert_ne!(gw.token(), old);
    let refused = gw.send_raw(gw.cli_as(&old).get("/apps?")).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(gw.send_raw(gw.cli().get("/apps?")).await.status, 200);
    assert_eq!(
        gw.rack().received().len(),
        1,
        "the old token reached nothing"
    );
    let finished = gw.finish().await;
    assert!(
        finished.events.iter().any(|r| matches!(
            &r.event,
            Event::TokenRevoked { token, .. } if token.to_hex() == old_id
        )),
        "the previous dev token's revocation is recorded"
    );
    assert_eq!(finished.events.iter().filter_map(requested).count(), 2);
}

/// The `CommandCompleted` of the first call recorded from `since` on, once it is in the log.
async fn first_call_end(gw: &TestGateway, since: u64) -> events::event::CommandCompleted {
    crate::support::eventually("a completion", || async {
        let events = gw.events_since(since).await;
        let id = events.iter().find_map(requested)?.request.clone();
        events.iter().find_map(|r| match &r.event {
            Event::CommandCompleted(c) if c.request == id => Some((**c).clone()),
            _ => None,
        })
    })
    .await
}

/// A caller that goes away while the rack's answer is awaited: the call was forwarded, so its
/// end is recorded all the same (499, `abandoned`), never left without a completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_its_caller_abandons_still_gets_its_completion() {
    use tokio::io::AsyncWriteExt;
    let gw = TestGateway::start().await;
    gw.rack()
        .set_answer_delay(std::time::Duration::from_secs(3));
    let since = gw.head();
    let mut tcp = tokio::net::TcpStream::connect(gw.proxy()).await.unwrap();
    tcp.write_all(&gw.cli().get("/apps?")).await.unwrap();
    crate::support::eventually("the rack got the call", || async {
        gw.rack()
            .received()
            .iter()
            .any(|r| r.target == "/apps?")
            .then_some(())
    })
    .await;
    drop(tcp);
    let completed = first_call_end(&gw, since).await;
    assert_eq!(
        (completed.status, completed.failure.as_deref()),
        (499, Some("abandoned"))
    );
    gw.rack().set_answer_delay(std::time::Duration::ZERO);
    gw.finish().await;
}

/// A caller that goes away while its intent is being written (the disk is slow): the intent is
/// written all the same, nothing is forwarded, and its end is recorded (499,
/// `abandoned_before_forward`), so the log shows no allowed call without an end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_abandoned_while_its_intent_is_written_gets_its_completion() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gw, disk) = crate::faults::gateway_on_failing_disk().await;
    let since = gw.head();
    disk.hold_writes(true);
    let mut tcp = tokio::net::TcpStream::connect(gw.proxy()).await.unwrap();
    tcp.write_all(&gw.cli().get("/apps?")).await.unwrap();
    crate::support::eventually("a held write", || async {
        (disk.writes_held() > 0).then_some(())
    })
    .await;
    // The caller goes away; the gateway drops its call and closes the connection.
    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut rest),
    )
    .await
    .expect("the gateway closed the connection")
    .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    disk.hold_writes(false);
    let completed = first_call_end(&gw, since).await;
    assert_eq!(
        (completed.status, completed.failure.as_deref()),
        (499, Some("abandoned_before_forward"))
    );
    assert!(gw.rack().received().is_empty(), "nothing was forwarded");
    gw.finish().await;
}

/// A caller that goes away while the gateway reads an answer whole to mask it: the rack had
/// answered, so the completion keeps the rack's status (the call ran) with
/// `abandoned_after_answer`, not a 499 that reads as if nothing had come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_abandoned_after_the_racks_answer_keeps_its_status() {
    use tokio::io::AsyncWriteExt;
    let gw = TestGateway::start().await;
    let viewer = gw
        .token_for(
            "viewer@example.com",
            events::event::Role::Viewer,
            &["convox:*:*"],
        )
        .await;
    gw.rack().set_body_stall(std::time::Duration::from_secs(3));
    let since = gw.head();
    let mut tcp = tokio::net::TcpStream::connect(gw.proxy()).await.unwrap();
    // A release list is masked for a viewer: read whole before anything is sent on.
    tcp.write_all(&gw.cli_as(&viewer.secret).get("/apps/x/releases?"))
        .await
        .unwrap();
    crate::support::eventually("the rack got the call", || async {
        gw.rack()
            .received()
            .iter()
            .any(|r| r.target == "/apps/x/releases?")
            .then_some(())
    })
    .await;
    // The head follows the record at once; give it time to reach the gateway.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    drop(tcp);
    let completed = crate::support::eventually("a completion", || async {
        gw.events_since(since)
            .await
            .iter()
            .find_map(|r| match &r.event {
                Event::CommandCompleted(c) => Some((**c).clone()),
                _ => None,
            })
    })
    .await;
    assert_eq!(
        (completed.status, completed.failure.as_deref()),
        (200, Some("abandoned_after_answer"))
    );
    gw.rack().set_body_stall(std::time::Duration::ZERO);
    gw.finish().await;
}

/// A caller that stops reading a large answer and goes away: the rack's status was relayed,
/// but the completion says the answer was cut short, counts only what passed, and gives no
/// hash (a hash is recorded only for a body that passed whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_the_caller_stops_reading_is_recorded_as_cut_short() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SIZE: usize = 16 << 20;
    let gw = TestGateway::start().await;
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    let target = "/apps/x/objects/tmp/large.bin?";
    let stored = gw
        .send_raw(gw.cli().request("POST", target, &[], Body::Raw(&data)))
        .await;
    assert_eq!(stored.status, 200, "{}", stored.text());
    let since = gw.head();
    // A small receive window, so the answer cannot all sit in socket buffers when the caller
    // goes away.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(gw.proxy()).await.unwrap();
    tcp.write_all(&gw.cli().get(target)).await.unwrap();
    let mut head = vec![0u8; 1024];
    let n = tcp.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);
    drop(tcp);
    let completed = crate::support::eventually("a completion", || async {
        let events = gw.events_since(since).await;
        let id = events
            .iter()
            .filter_map(requested)
            .find(|c| c.method == "GET")?
            .request
            .clone();
        events
            .iter()
            .filter_map(crate::support::completed)
            .find(|c| c.request == id)
            .cloned()
    })
    .await;
    assert_eq!(completed.status, 200);
    assert_eq!(
        completed.failure.as_deref(),
        Some("answer_cut_short"),
        "{completed:?}"
    );
    assert!(
        completed.bytes_out < SIZE as u64,
        "{} bytes out",
        completed.bytes_out
    );
    assert_eq!(completed.sha256_out, None);
    gw.finish().await;
}

/// A token's secret pasted into a path (a routed one, one that matches no route, one refused
/// as a path) is recorded as `[redacted]`, and another credential in an unrouted path too; the
/// rest of each path is kept, and neither secret is anywhere in the log or the export. A
/// routed path keeps a segment that only looks random: it is what the rack was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_pasted_into_a_path_never_enters_the_log() {
    let gw = TestGateway::start().await;
    let pasted = crate::support::unknown_token();
    let github = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
    let random = "Zq8vN3xR5tW2yL7kP4mB9cJ6";
    let since = gw.head();
    let cases = [
        (format!("/apps/{pasted}?"), "/apps/[redacted]", 404),
        (format!("/no/such/{pasted}?"), "/no/such/[redacted]", 404),
        (
            format!("/apps/x/../{pasted}?"),
            "/apps/x/../[redacted]",
            400,
        ),
        (format!("/nope/{github}/x?"), "/nope/[redacted]/x", 404),
        (
            format!("/apps/{random}?"),
            "/apps/Zq8vN3xR5tW2yL7kP4mB9cJ6",
            404,
        ),
    ];
    for (target, _, status) in &cases {
        let reply = gw.send_raw(gw.cli().get(target)).await;
        assert_eq!(reply.status, *status, "{target}");
    }
    // The HTTP proxy's tail is a path of what serves behind the rack: the rack is sent it
    // whole, the log keeps it without the secret.
    // So is a query key of its own that reads as a secret.
    let hook = format!("/custom/http/proxy/hooks/{github}/run");
    let raw = gw.cli().request(
        "POST",
        &format!("{hook}?{github}=1&page=2"),
        &[("X-Host", "web.local"), ("X-Port", "80")],
        Body::Empty,
    );
    let reply = gw.send_raw(raw).await;
    let forwarded = gw.rack().received().last().map(|r| r.target.clone());
    assert!(
        forwarded
            .as_deref()
            .is_some_and(|t| t.starts_with(&format!("{hook}?{github}"))),
        "{forwarded:?} {reply:?}"
    );
    let paths: Vec<String> = gw
        .events_since(since)
        .await
        .iter()
        .filter_map(requested)
        .map(|c| c.path.clone())
        .collect();
    let mut want: Vec<&str> = cases.iter().map(|(_, recorded, _)| *recorded).collect();
    want.push("/custom/http/proxy/hooks/[redacted]/run");
    assert_eq!(paths, want);
    let finished = gw.finish().await;
    assert_absent(&finished, &pasted);
    assert_absent(&finished, github);
}

/// A caller that goes away partway through an upload: the completion says its body was cut
/// short (the caller's doing), not that the rack was unavailable, and counts what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_its_caller_cuts_short_is_recorded_as_such() {
    use tokio::io::AsyncWriteExt;
    let gw = TestGateway::start().await;
    let since = gw.head();
    let data = vec![7u8; 200_000];
    let raw = gw.cli().request(
        "POST",
        "/apps/x/objects/tmp/cut.tgz?",
        &[],
        Body::Raw(&data),
    );
    let sent = raw.len() - data.len() + 50_000;
    let mut tcp = tokio::net::TcpStream::connect(gw.proxy()).await.unwrap();
    tcp.write_all(&raw[..sent]).await.unwrap();
    crate::support::eventually("the intent", || async {
        gw.events_since(since)
            .await
            .iter()
            .find_map(requested)
            .map(|_| ())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(tcp);
    let completed = crate::support::eventually("a completion", || async {
        gw.events_since(since)
            .await
            .iter()
            .find_map(crate::support::completed)
            .cloned()
    })
    .await;
    assert_eq!(
        (completed.status, completed.failure.as_deref()),
        (400, Some("body_cut_short")),
        "{completed:?}"
    );
    assert!(
        completed.bytes_in > 0 && completed.bytes_in <= 50_000,
        "{completed:?}"
    );
    assert_eq!(completed.sha256_in, None);
    gw.finish().await;
}

/// Importing an image into a build (an admin's rewrite) with registry credentials: the rack
/// answers 202 with no body, which reaches the caller as it is, and the password is in the log
/// only as its HMAC; a deployer is refused and nothing is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_import_keeps_its_registry_password_out_of_the_log() {
    let gw = TestGateway::start().await;
    let since = gw.head();
    let target = "/apps/x/builds/BAAAAAAAAA/image?";
    let form = "image=org%2Fimg%3Atag&src-creds-pass=hunter2pass&src-creds-user=robot";
    let reply = gw
        .send_raw(
            gw.cli()
                .request("POST", target, &[], crate::support::Body::Form(form)),
        )
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(reply.body.is_empty());
    let received = gw.rack().received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0]
            .param("src-creds-pass")
            .map(|p| p.value.as_str()),
        Some("hunter2pass"),
        "the rack gets the password"
    );
    let events = gw.events_since(since).await;
    let intent = events.iter().find_map(requested).unwrap();
    let logged = |key: &str| {
        intent
            .params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    assert!(
        logged("src-creds-pass").is_some_and(|v| v.starts_with("hmac-sha256:")),
        "{:?}",
        intent.params
    );
    assert_eq!(logged("image").as_deref(), Some("org/img:tag"));

    let deployer = gw
        .token_for("deployer@example.com", Role::Deployer, &["convox:*:*"])
        .await;
    let reply = gw
        .send_raw(gw.cli_as(&deployer.secret).request(
            "POST",
            target,
            &[],
            crate::support::Body::Form(form),
        ))
        .await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert_eq!(gw.rack().received().len(), 1, "nothing more was forwarded");
    let finished = gw.finish().await;
    crate::cli::assert_absent(&finished, "hunter2pass");
}
