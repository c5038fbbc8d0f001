//! Secrets in answers: env values masked by what the caller may read, a masked value posted
//! back restored only for its own key, and the rack never sending compressed env.

use events::event::Role;

use crate::support::{Body, TestGateway, completed, eventually, requested};

/// The seeded release's env on the mock rack: `FOO=bar`, `SECRET_TOKEN=s3cr3t`.
fn env_of(reply_json: &serde_json::Value) -> String {
    let first = match reply_json {
        serde_json::Value::Array(items) => items.first().cloned().unwrap_or_default(),
        other => other.clone(),
    };
    first["env"].as_str().unwrap_or_default().to_owned()
}

fn line<'a>(env: &'a str, key: &str) -> &'a str {
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_values_are_masked_by_what_the_caller_may_read() {
    let gw = TestGateway::start().await;
    let viewer = gw
        .token_for("viewer@example.com", Role::Viewer, &["convox:*:*"])
        .await;
    let deployer = gw
        .token_for("deployer@example.com", Role::Deployer, &["convox:*:*"])
        .await;
    // A mask is `rgw-masked:` and 8 hex digits, nothing of the value.
    let a_mask = |v: &str| {
        v.strip_prefix("rgw-masked:")
            .is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let as_viewer = releases(&gw, &viewer.secret).await;
    assert_eq!(as_viewer.status, 200, "{}", as_viewer.text());
    let env = env_of(&as_viewer.json());
    assert!(a_mask(line(&env, "FOO")), "{env}");
    assert!(a_mask(line(&env, "SECRET_TOKEN")), "{env}");
    assert!(
        !as_viewer.text().contains("s3cr3t") && !as_viewer.text().contains("=bar"),
        "no value anywhere in the viewer's answer: {}",
        as_viewer.text()
    );
    let as_deployer = releases(&gw, &deployer.secret).await;
    let env = env_of(&as_deployer.json());
    assert_eq!(line(&env, "FOO"), "bar", "env:read shows plain values");
    assert!(a_mask(line(&env, "SECRET_TOKEN")), "{env}");
    assert!(
        !as_deployer.text().contains("s3cr3t"),
        "no secret anywhere in the deployer's answer: {}",
        as_deployer.text()
    );
    let as_admin = releases(&gw, gw.token()).await;
    assert_eq!(line(&env_of(&as_admin.json()), "SECRET_TOKEN"), "s3cr3t");
    // The rack was asked for uncompressed answers whenever the answer had to be masked; the
    // admin's answer needs no rewriting and streams as the rack sends it.
    let received = gw.rack().received();
    for r in &received {
        let masked_for = matches!(
            r.actor.as_deref(),
            Some("viewer@example.com" | "deployer@example.com")
        );
        assert!(
            !masked_for || r.header("accept-encoding").is_none(),
            "Accept-Encoding reached the rack for {:?} on a masking route",
            r.actor
        );
    }
    assert!(
        received
            .iter()
            .any(|r| r.actor.as_deref() == Some("viewer@example.com"))
    );
    gw.finish().await;
}

/// `convox env set KEY="$(cat key.pem)"`: the rack reads the PEM's padded last line as a key
/// made of the value's bytes and names it in the new release's description
/// (`env add:KEY add:<bytes>`). A viewer gets that description masked whole, as the line
/// itself; the admin, who may read every value, gets it as the rack wrote it. Neither read
/// records the answer's digest, which a guess of a weak value could be tested against.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_description_naming_a_multi_line_values_bytes_is_masked() {
    let gw = TestGateway::start().await;
    let viewer = gw
        .token_for("viewer@example.com", Role::Viewer, &["convox:*:*"])
        .await;
    let env = "FOO=bar\nSECRET_TOKEN=s3cr3t\nTLS_KEY=-----BEGIN KEY-----\nMIIEowIBAAKCAQEAu1SU1L\n9z+40RQzuVaE8AkAFmx==\n-----END KEY-----";
    let set = gw
        .send_raw(gw.cli().request(
            "POST",
            "/apps/x/releases?",
            &[],
            Body::Form(&format!("env={}", form_encode(env))),
        ))
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let description = "env add:9z+40RQzuVaE8AkAFmx add:TLS_KEY";
    let newest = |reply: &crate::support::Reply| reply.json()[0]["description"].clone();
    let since = gw.head();
    let as_admin = releases(&gw, gw.token()).await;
    assert_eq!(newest(&as_admin), description, "the rack's own description");
    let as_viewer = releases(&gw, &viewer.secret).await;
    assert_eq!(as_viewer.status, 200, "{}", as_viewer.text());
    let shown = newest(&as_viewer);
    let shown = shown.as_str().unwrap_or_default();
    assert!(shown.starts_with("rgw-masked:"), "{shown}");
    assert!(
        !as_viewer.text().contains("9z+40RQzuVaE8AkAFmx"),
        "{}",
        as_viewer.text()
    );
    for reply in [&as_admin, &as_viewer] {
        let (_, done) = gw.call_records(since, &reply.request_id()).await;
        let done = completed(&done).unwrap();
        assert_eq!(done.status, 200);
        assert_eq!(done.bytes_out, reply.body.len() as u64);
        assert_eq!(
            done.sha256_out, None,
            "no digest of an answer holding env values"
        );
    }
    gw.finish().await;
}

/// A rack answer sent chunked in small pieces without a length (as Go sends one larger than
/// its buffer) is read whole and masked all the same; the admin's, whose values need no
/// masking, is read whole too (its manifest may quote the rack password) and comes back
/// unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_answer_is_masked_whole() {
    let gw = TestGateway::start().await;
    let viewer = gw
        .token_for("viewer@example.com", Role::Viewer, &["convox:*:*"])
        .await;
    // Releases enough to span several of the rack's chunks.
    let long = "v".repeat(600);
    for i in 0..4 {
        let form = format!("env=FOO%3Dbar%0ASECRET_TOKEN%3Ds3cr3t{i}%0ALONG%3D{long}");
        let raw = gw
            .cli()
            .request("POST", "/apps/x/releases?", &[], Body::Form(&form));
        assert_eq!(gw.send_raw(raw).await.status, 200);
    }
    gw.rack().set_chunked_answers(true);
    let as_viewer = releases(&gw, &viewer.secret).await;
    assert_eq!(as_viewer.status, 200, "{}", as_viewer.text());
    let listed = as_viewer.json();
    let all = listed.as_array().unwrap();
    assert_eq!(all.len(), 5, "{}", as_viewer.text());
    for release in all {
        let env = release["env"].as_str().unwrap();
        for key in ["FOO", "SECRET_TOKEN"] {
            assert!(line(env, key).starts_with("rgw-masked:"), "{env}");
        }
    }
    assert!(!as_viewer.text().contains("s3cr3t"), "{}", as_viewer.text());
    let as_admin = releases(&gw, gw.token()).await;
    assert_eq!(as_admin.header("transfer-encoding"), None);
    assert_eq!(
        as_admin.header("content-length"),
        Some(as_admin.body.len().to_string().as_str())
    );
    assert_eq!(as_admin.json().as_array().map(Vec::len), Some(5));
    assert!(
        as_admin.text().contains("s3cr3t3"),
        "the admin reads every value"
    );
    gw.rack().set_chunked_answers(false);
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_masked_value_posted_back_is_restored_only_for_its_own_key() {
    let gw = TestGateway::start().await;
    let (cli, mask) = deployer_reading_a_mask(&gw).await;
    // `convox env set A=B` posts the whole env back, masked value included.
    let posted = format!("A=B\nFOO=bar\nSECRET_TOKEN={mask}");
    let form = format!("env={}", form_encode(&posted));
    let before = gw.rack().received().len();
    let reply = gw
        .send_raw(cli.request("POST", "/apps/x/releases", &[], Body::Form(&form)))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = gw.rack().received();
    let post = sent[before..]
        .iter()
        .find(|r| r.method == "POST")
        .expect("the release was created");
    assert_eq!(
        post.param("env").map(|p| p.value.as_str()),
        Some("A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t"),
        "the rack got the real value back"
    );
    // The gateway read the env, values in clear, to restore it: its completion says how much
    // it read, and holds no digest of it that a guess could be tested against.
    let lookup = format!("{}.env", reply.request_id());
    let read = eventually("the lookup's completion", || async {
        gw.events()
            .await
            .iter()
            .filter_map(completed)
            .find(|c| c.request.0 == lookup)
            .cloned()
    })
    .await;
    assert_eq!((read.status, read.sha256_out), (200, None));
    assert!(read.bytes_out > 0);
    // The same mask under another key is refused, and nothing reaches the rack.
    let misused = format!("env={}", form_encode(&format!("STOLEN={mask}")));
    let reply = release_refused(&gw, &cli, &misused, 403, "masked_value_misused").await;
    assert!(
        reply.text().ends_with("(masked_value_misused)\n"),
        "{}",
        reply.text()
    );
    let finished = gw.finish().await;
    let log = format!("{:?}", finished.events);
    assert!(!log.contains("s3cr3t"), "the secret never enters the log");
}

/// A rack that refuses the release may quote the env it was sent, in any escaping: the caller
/// must not get back the values the gateway restored for its masks. The error answer is
/// withheld, in the rack's own form (text, or `{"error":…}` when the caller asked for JSON),
/// with the rack's status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_error_to_a_call_with_restored_values_is_withheld() {
    let gw = TestGateway::start().await;
    let (cli, mask) = deployer_reading_a_mask(&gw).await;
    gw.rack().set_quoting_release_errors(true);
    let form = format!(
        "env={}",
        form_encode(&format!("A=B\nFOO=bar\nSECRET_TOKEN={mask}"))
    );
    for json in [false, true] {
        let raw =
            String::from_utf8(cli.request("POST", "/apps/x/releases", &[], Body::Form(&form)))
                .unwrap();
        let raw = if json {
            raw.replace("Accept: */*\r\n", "Accept: application/json\r\n")
        } else {
            raw
        };
        let before = gw.rack().received().len();
        let head = gw.head();
        let reply = gw.send_raw(raw).await;
        // The rack got the real value and quoted it back.
        let post = gw.rack().received()[before..]
            .iter()
            .find(|r| r.method == "POST")
            .cloned()
            .expect("the call reached the rack");
        assert_eq!(
            post.param("env").map(|p| p.value.as_str()),
            Some("A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t")
        );
        assert_eq!(post.status, 500);
        assert_eq!(reply.status, 500, "{}", reply.text());
        let text = if json {
            reply.json()["error"].as_str().unwrap().to_owned()
        } else {
            reply.text().strip_suffix('\n').unwrap().to_owned()
        };
        assert!(
            text.starts_with("the rack refused this call (500)"),
            "{text}"
        );
        assert!(text.contains(&reply.request_id()), "{text}");
        assert!(!reply.text().contains("s3cr3t"), "{}", reply.text());
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str())
        );
        // Recorded with the rack's status, and as withheld: the body is the gateway's.
        let (_, done) = gw.call_records(head, &reply.request_id()).await;
        let done = crate::support::completed(&done).unwrap();
        assert_eq!(
            (done.status, done.failure.as_deref()),
            (500, Some("answer_withheld"))
        );
        assert_eq!(done.bytes_out, reply.body.len() as u64);
    }
    // A release created without an `env` holds an earlier release's values (the newest, or
    // `parent-release`'s), which this caller may not read all of: the rack's error quoting
    // them is withheld too; not for the admin, who may read them all.
    let admin = gw.cli();
    for form in [
        format!("parent-release={}", mock_rack::SEED_RELEASE),
        format!("build={}", mock_rack::SEED_BUILD),
    ] {
        for (caller, withheld) in [(&cli, true), (&admin, false)] {
            let head = gw.head();
            let reply = gw
                .send_raw(caller.request("POST", "/apps/x/releases", &[], Body::Form(&form)))
                .await;
            assert_eq!(reply.status, 500);
            let text = reply.text();
            assert_eq!(
                text.starts_with("the rack refused this call (500), and its answer may quote env values this release copies"),
                withheld,
                "{form}: {text}"
            );
            assert_eq!(text.contains("SECRET_TOKEN=s3cr3t"), !withheld, "{form}");
            let (_, done) = gw.call_records(head, &reply.request_id()).await;
            let done = crate::support::completed(&done).unwrap();
            assert_eq!(
                done.failure.as_deref(),
                withheld.then_some("answer_withheld"),
                "{form}"
            );
        }
    }
    // A call without masks gets the rack's error as it is: the caller sent every value itself.
    let own = format!("env={}", form_encode("A=B\nSECRET_TOKEN=mine"));
    let reply = gw
        .send_raw(cli.request("POST", "/apps/x/releases", &[], Body::Form(&own)))
        .await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.text(),
        "Secret \"x-env\" is invalid: data: Invalid value: \"A=B\\nSECRET_TOKEN=mine\"\n"
    );
    let finished = gw.finish().await;
    assert!(!format!("{:?}", finished.events).contains("s3cr3t"));
}

/// Promoting loads the release's manifest with its env filled in, and a value that breaks it
/// is quoted in the rack's error (YAML quotes a scalar it cannot decode): a caller who may not
/// read every value gets that error withheld, with the rack's status; the admin gets it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_promote_is_withheld_from_a_caller_who_may_not_read_every_value() {
    let gw = TestGateway::start().await;
    let (deployer, _) = deployer_reading_a_mask(&gw).await;
    gw.rack().set_quoting_release_errors(true);
    let target = format!("/apps/x/releases/{}/promote", mock_rack::SEED_RELEASE);
    filled_error_withheld_from(&gw, &deployer, |caller| {
        caller.request("POST", &target, &[], Body::Form("force=false"))
    })
    .await;
    gw.rack().set_quoting_release_errors(false);
    // The rack's own refusal of a promote that races another quotes nothing, and goes on.
    assert!(gw.rack().set_app_status("x", "updating"));
    let raced = gw
        .send_raw(deployer.request("POST", &target, &[], Body::Form("force=false")))
        .await;
    assert_eq!(
        (raced.status, raced.text().as_str()),
        (403, "app is currently updating\n")
    );
    gw.finish().await;
}

/// A masked value longer than its mask lengthens its line when restored: a line just under the
/// rack's limit as posted and over it as restored is refused (the rack would stop reading the
/// env there, and the keys after it would be gone), and nothing is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_the_restore_takes_over_the_racks_limit_is_refused() {
    let gw = TestGateway::start().await;
    let long = "k".repeat(40);
    let set = format!(
        "env={}",
        form_encode(&format!("FOO=bar\nSECRET_TOKEN={long}"))
    );
    let admin = gw
        .send_raw(
            gw.cli()
                .request("POST", "/apps/x/releases", &[], Body::Form(&set)),
        )
        .await;
    assert_eq!(admin.status, 200, "{}", admin.text());
    let (cli, mask) = deployer_reading_a_mask(&gw).await;
    let padding = " ".repeat(65_500);
    let posted = format!("{padding}SECRET_TOKEN={mask}");
    assert!(posted.len() <= 65_535 && posted.len() - mask.len() + long.len() > 65_535);
    let form = format!("env={}", form_encode(&format!("FOO=bar\n{posted}")));
    let reply = release_refused(&gw, &cli, &form, 400, "env_line_too_long").await;
    assert!(
        reply.text().contains("env line 2 is longer than"),
        "{}",
        reply.text()
    );
    gw.finish().await;
}

/// Posts `form` as `cli` to create a release, which the gateway refuses with `status` and
/// records as a denial for `reason`; no release reaches the rack (the gateway's lookup of the
/// current env may). The reply, for what it says.
async fn release_refused(
    gw: &TestGateway,
    cli: &crate::support::Cli,
    form: &str,
    status: u16,
    reason: &str,
) -> crate::support::Reply {
    let before = gw.rack().received().len();
    let reply = gw
        .send_raw(cli.request("POST", "/apps/x/releases", &[], Body::Form(form)))
        .await;
    assert_eq!(reply.status, status, "{}", reply.text());
    assert!(
        gw.rack().received()[before..]
            .iter()
            .all(|r| r.method != "POST"),
        "a refused release reached the rack"
    );
    let denied = gw
        .events()
        .await
        .into_iter()
        .filter_map(|r| requested(&r).cloned())
        .find(|c| c.request.0 == reply.request_id())
        .expect("the refusal is recorded");
    assert_eq!(
        (denied.decision, denied.reason.as_str()),
        (events::event::Decision::Deny, reason)
    );
    reply
}

/// Running a process of a named release (`Release`) loads that release's manifest with its env
/// filled in, as a promote does, and a value that breaks it is quoted the same way: withheld
/// from a caller who may not read every value, whole for the admin. A run of the current release
/// is passed on as the rack wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_of_a_named_release_is_withheld_from_a_caller_who_may_not_read_every_value() {
    let gw = TestGateway::start().await;
    let (deployer, _) = deployer_reading_a_mask(&gw).await;
    gw.rack().set_quoting_release_errors(true);
    let target = "/apps/x/services/web/processes?";
    let headers = [
        ("Command", "sleep 3600"),
        ("Release", mock_rack::SEED_RELEASE),
    ];
    filled_error_withheld_from(&gw, &deployer, |caller| {
        caller.request("POST", target, &headers, Body::Empty)
    })
    .await;
    // Without `Release` the current release runs, and the deployer gets the rack's answer.
    let current = gw
        .send_raw(deployer.request("POST", target, &[("Command", "sleep 3600")], Body::Empty))
        .await;
    assert_eq!(current.status, 200, "{}", current.text());
    assert!(current.json()["id"].is_string(), "{}", current.text());
    gw.finish().await;
}

/// `request`, sent by `deployer` and by the admin to a rack that fails it quoting a value of
/// the release's env (filled into its manifest): withheld from the deployer, who may not read
/// every value, with the rack's status; whole for the admin; recorded so either way.
async fn filled_error_withheld_from(
    gw: &TestGateway,
    deployer: &crate::support::Cli,
    request: impl Fn(&crate::support::Cli) -> Vec<u8>,
) {
    let admin = gw.cli();
    for (caller, withheld) in [(deployer, true), (&admin, false)] {
        let head = gw.head();
        let reply = gw.send_raw(request(caller)).await;
        assert_eq!(reply.status, 500, "{}", reply.text());
        let text = reply.text();
        assert_eq!(
            text.starts_with(
                "the rack refused this call (500), and its answer may quote env values of this \
                 release"
            ),
            withheld,
            "{text}"
        );
        assert_eq!(text.contains("`s3cr3t`"), !withheld, "{text}");
        let (_, done) = gw.call_records(head, &reply.request_id()).await;
        let done = crate::support::completed(&done).unwrap();
        assert_eq!(
            (done.status, done.failure.as_deref()),
            (500, withheld.then_some("answer_withheld"))
        );
    }
}

/// A deployer's CLI, and the mask it reads for the seeded `SECRET_TOKEN` (it may read env
/// values but not secrets).
/// The env defaults a manifest declares reach a build's and a release's readers masked as the
/// env's values are: a viewer sees none, a deployer the ones not classified secret, the admin
/// all; the rest of the manifest as the rack wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_defaults_are_masked_by_what_the_caller_may_read() {
    let gw = TestGateway::start().await;
    let viewer = gw
        .token_for("viewer@example.com", Role::Viewer, &["convox:*:*"])
        .await;
    let deployer = gw
        .token_for("deployer@example.com", Role::Deployer, &["convox:*:*"])
        .await;
    let manifest = "environment:\n  - API_TOKEN=t0k3n-value\n  - PORT=3000\nservices:\n  web:\n    port: 3000\n";
    let admin = gw.cli_as(gw.token());
    let form = format!("manifest={}", form_encode(manifest));
    let updated = gw
        .send_raw(admin.request("PUT", "/apps/x/builds/BAAAAAAAAA", &[], Body::Form(&form)))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let released = gw
        .send_raw(admin.request(
            "POST",
            "/apps/x/releases",
            &[],
            Body::Form("build=BAAAAAAAAA"),
        ))
        .await;
    assert_eq!(released.status, 200, "{}", released.text());
    let release = released.json()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for path in [
        "/apps/x/builds/BAAAAAAAAA".to_owned(),
        format!("/apps/x/releases/{release}"),
    ] {
        let read = |token: String| {
            let path = path.clone();
            let gw = &gw;
            async move {
                let reply = gw
                    .send_raw(gw.cli_as(&token).request("GET", &path, &[], Body::Empty))
                    .await;
                assert_eq!(reply.status, 200, "{path}: {}", reply.text());
                reply.json()["manifest"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        let as_viewer = read(viewer.secret.clone()).await;
        assert!(
            !as_viewer.contains("t0k3n") && !as_viewer.contains("PORT=3000"),
            "{path}: {as_viewer}"
        );
        assert!(
            as_viewer.contains("\"API_TOKEN=rgw-masked:")
                && as_viewer.contains("\"PORT=rgw-masked:"),
            "{path}: {as_viewer}"
        );
        assert!(as_viewer.ends_with("services:\n  web:\n    port: 3000\n"));
        let as_deployer = read(deployer.secret.clone()).await;
        assert!(
            !as_deployer.contains("t0k3n") && as_deployer.contains("  - PORT=3000\n"),
            "{path}: {as_deployer}"
        );
        assert_eq!(read(gw.token().to_owned()).await, manifest, "{path}");
    }
    gw.finish().await;
}

async fn deployer_reading_a_mask(gw: &TestGateway) -> (crate::support::Cli, String) {
    let deployer = gw
        .token_for("deployer@example.com", Role::Deployer, &["convox:*:*"])
        .await;
    let cli = gw.cli_as(&deployer.secret);
    let read = gw
        .send_raw(cli.request("GET", "/apps/x/releases?", &[], Body::Empty))
        .await;
    let mask = line(&env_of(&read.json()), "SECRET_TOKEN").to_owned();
    assert!(mask.starts_with("rgw-masked:"), "{}", read.text());
    (cli, mask)
}

async fn releases(gw: &TestGateway, token: &str) -> crate::support::Reply {
    let raw = gw
        .cli_as(token)
        .request("GET", "/apps/x/releases?", &[], Body::Empty);
    gw.send_raw(raw).await
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The rack password, quoted by the rack in an error or in a build's failure reason, never
/// reaches a caller, the admin included: whoever holds it can bypass the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rack_password_quoted_by_the_rack_is_redacted() {
    use base64::Engine;
    let gw = TestGateway::start().await;
    let cli = gw.cli();
    let apps = gw
        .send_raw(cli.request("GET", "/apps?", &[], Body::Empty))
        .await;
    assert_eq!(apps.status, 200);
    // The password the gateway presents, as the rack received it.
    let sent = gw.rack().received();
    let basic = sent[0].header("authorization").unwrap();
    let userinfo = base64::engine::general_purpose::STANDARD
        .decode(basic.strip_prefix("Basic ").unwrap())
        .unwrap();
    let password = String::from_utf8(userinfo)
        .unwrap()
        .strip_prefix("convox:")
        .unwrap()
        .to_owned();
    assert!(password.len() >= 16, "dev's rack password is random");
    let cases = [
        // An error on a route whose answers are not rewritten.
        (
            format!("/apps/{password}?"),
            404,
            "app not found: rgw-redacted\n",
        ),
        // An error on a build route.
        (
            format!("/apps/x/builds/{password}?"),
            404,
            "build not found: rgw-redacted\n",
        ),
    ];
    for (target, status, want) in &cases {
        let reply = gw
            .send_raw(cli.request("GET", target, &[], Body::Empty))
            .await;
        assert_eq!(reply.status, *status, "{target}: {}", reply.text());
        assert_eq!(reply.text(), *want, "{target}");
        assert_eq!(
            reply.header("content-length"),
            Some(want.len().to_string().as_str())
        );
    }
    // The same as `{"error":…}`, for a caller that asks for JSON.
    let raw =
        String::from_utf8(cli.request("GET", &format!("/apps/{password}?"), &[], Body::Empty))
            .unwrap()
            .replace("Accept: */*\r\n", "Accept: application/json\r\n");
    let reply = gw.send_raw(raw).await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.text(),
        "{\"error\":\"app not found: rgw-redacted\"}\n"
    );
    // A gzip-encoded error answer (the CLI asks for gzip; a proxy in front of the rack may
    // honour it) is decoded, scrubbed the same, and passed on decoded.
    gw.rack().set_gzip_answers(true);
    let head = gw.head();
    let reply = gw
        .send_raw(cli.request("GET", &format!("/apps/{password}?"), &[], Body::Empty))
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.text(), "app not found: rgw-redacted\n");
    let (_, done) = gw.call_records(head, &reply.request_id()).await;
    let done = crate::support::completed(&done).unwrap();
    assert_eq!((done.status, done.failure.as_deref()), (404, None));
    gw.rack().set_gzip_answers(false);
    // A build whose source is missing fails with a reason that quotes the object key.
    let form = format!("url=object%3A%2F%2Fx%2F{password}");
    let created = gw
        .send_raw(cli.request("POST", "/apps/x/builds", &[], Body::Form(&form)))
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let build = gw
        .send_raw(cli.request("GET", &format!("/apps/x/builds/{id}?"), &[], Body::Empty))
        .await;
    assert_eq!(build.status, 200);
    assert_eq!(
        build.json()["reason"].as_str(),
        Some("object not found: rgw-redacted")
    );
    for reply in [&created, &build] {
        assert!(!reply.text().contains(&password));
    }
    // A release copies its build's manifest, which a build read before the gateway guarded
    // its manifest's path (`../../proc/self/environ`) may hold the password in.
    let manifest = format!("manifest=RACK_URL%3Dhttps%3A%2F%2Fconvox%3A{password}%40api");
    let updated = gw
        .send_raw(cli.request(
            "PUT",
            &format!("/apps/x/builds/{id}"),
            &[],
            Body::Form(&manifest),
        ))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let release = gw
        .send_raw(cli.request(
            "POST",
            "/apps/x/releases",
            &[],
            Body::Form(&format!("build={id}")),
        ))
        .await;
    assert_eq!(release.status, 200, "{}", release.text());
    let rid = release.json()["id"].as_str().unwrap().to_owned();
    let got = gw
        .send_raw(cli.request("GET", &format!("/apps/x/releases/{rid}?"), &[], Body::Empty))
        .await;
    let listed = gw
        .send_raw(cli.request("GET", "/apps/x/releases?", &[], Body::Empty))
        .await;
    for reply in [&release, &got, &listed] {
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(!reply.text().contains(&password), "{}", reply.text());
        assert!(
            reply.text().contains("convox:rgw-redacted@api"),
            "{}",
            reply.text()
        );
    }
    // A diagnose report quotes pods' logs, which hold `RACK_URL` where a process printed its
    // environment.
    let report = gw
        .send_raw(cli.request("GET", "/apps/x/diagnose?lines=50", &[], Body::Empty))
        .await;
    assert_eq!(report.status, 200, "{}", report.text());
    // Scrubbed as it streams, not read whole first: its length is not known ahead.
    assert_eq!(report.header("content-length"), None);
    assert_eq!(report.header("transfer-encoding"), Some("chunked"));
    let logs = report.json()["pods"][0]["previousLogs"]
        .as_str()
        .map(str::to_owned);
    assert_eq!(
        logs.as_deref(),
        Some(
            "RACK=rack\nRACK_URL=https://convox:rgw-redacted@api.rack-system.svc.cluster.local:5443\npanic: exit\n"
        ),
        "{}",
        report.text()
    );
    assert!(!report.text().contains(&password));
    // The rack did get the password-bearing requests: only the answers changed.
    assert!(
        gw.rack()
            .received()
            .iter()
            .any(|r| r.target == format!("/apps/x/builds/{password}?"))
    );
    gw.finish().await;
}

/// A token revoked while the gateway looks up the current env for its masked values stops
/// there: its call's intent is checked again when it is sequenced, so the release is neither
/// recorded as allowed nor forwarded, and the refusal is recorded after the lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_during_the_env_lookup_forwards_nothing() {
    let gw = TestGateway::start().await;
    let deployer = gw
        .token_for("deployer@example.com", Role::Deployer, &["convox:*:*"])
        .await;
    let cli = gw.cli_as(&deployer.secret);
    let read = releases(&gw, &deployer.secret).await;
    let mask = line(&env_of(&read.json()), "SECRET_TOKEN").to_owned();
    assert!(mask.starts_with("rgw-masked:"), "{}", read.text());
    let form = format!(
        "env={}",
        form_encode(&format!("FOO=bar\nSECRET_TOKEN={mask}"))
    );
    // The rack takes the lookup at once and answers it late: the revocation lands in between.
    let request = cli.request("POST", "/apps/x/releases", &[], Body::Form(&form));
    let run = gw.revoke_during_lookup(deployer.id, request).await;
    assert_eq!(run.reply.status, 401, "{}", run.reply.text());
    assert_eq!(
        run.sent,
        ["GET /apps/x/releases?limit=1"],
        "only the lookup reached the rack"
    );
    assert_eq!(
        run.decided,
        [
            ("env_restore_lookup".to_owned(), "Allow".to_owned()),
            ("token_no_longer_usable".to_owned(), "Deny".to_owned()),
        ]
    );
    gw.finish().await;
}

/// The rack lists a `convox run` process with the command it was started with; a caller who
/// may not read secrets sees it scrubbed, as the log records it. No answer that holds it is
/// recorded with its digest: a reader of the log who gets the same answer scrubbed could test
/// guesses of the scrubbed value against the digest of the admin's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_command_is_scrubbed_for_callers_who_may_not_read_secrets() {
    let gw = TestGateway::start().await;
    let viewer = gw
        .token_for("viewer@example.com", Role::Viewer, &["convox:*:*"])
        .await;
    let since = gw.head();
    let command = "PGPASSWORD=hunter2 psql -h db";
    let run = gw
        .send_raw(gw.cli_as(gw.token()).request(
            "POST",
            "/apps/x/services/web/processes?",
            &[("Command", command)],
            Body::Empty,
        ))
        .await;
    assert_eq!(run.status, 200, "{}", run.text());
    assert!(
        run.text().contains("hunter2"),
        "the admin reads it: {}",
        run.text()
    );
    let pid = run.json()["id"].as_str().unwrap_or_default().to_owned();
    for target in [
        "/apps/x/processes?".to_owned(),
        format!("/apps/x/processes/{pid}?"),
    ] {
        let target = target.as_str();
        let as_viewer = gw
            .send_raw(
                gw.cli_as(&viewer.secret)
                    .request("GET", target, &[], Body::Empty),
            )
            .await;
        assert_eq!(as_viewer.status, 200, "{target}: {}", as_viewer.text());
        assert!(
            as_viewer.text().contains("psql"),
            "{target}: {}",
            as_viewer.text()
        );
        assert!(
            !as_viewer.text().contains("hunter2"),
            "{target}: {}",
            as_viewer.text()
        );
        let as_admin = gw
            .send_raw(
                gw.cli_as(gw.token())
                    .request("GET", target, &[], Body::Empty),
            )
            .await;
        assert!(
            as_admin.text().contains("hunter2"),
            "{target}: {}",
            as_admin.text()
        );
        for reply in [&as_viewer, &as_admin] {
            let (_, done) = gw.call_records(since, &reply.request_id()).await;
            let done = completed(&done).unwrap();
            assert_eq!((done.status, done.sha256_out), (200, None), "{target}");
        }
    }
    let (_, done) = gw.call_records(since, &run.request_id()).await;
    let done = completed(&done).unwrap();
    assert_eq!(
        (done.status, done.sha256_out),
        (200, None),
        "the run's answer"
    );
    gw.finish().await;
}

/// A command line is text the caller means as it stands: one that mentions a mask is run, not
/// refused as a misused mask (the process's `Environment` still may not carry one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_mentions_a_mask_is_run() {
    let gw = TestGateway::start().await;
    let run = |extra: &'static [(&'static str, &'static str)]| {
        gw.send_raw(gw.cli().request(
            "POST",
            "/apps/x/services/web/processes?",
            extra,
            Body::Empty,
        ))
    };
    let ran = run(&[("Command", "grep rgw-masked:0123abcd audit.log")]).await;
    assert_eq!(ran.status, 200, "{}", ran.text());
    let got = gw.rack().received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("command"),
        Some("grep rgw-masked:0123abcd audit.log"),
        "the command reaches the rack as it stands"
    );
    let refused = run(&[
        ("Command", "sh"),
        ("Environment", "TOKEN=rgw-masked:0123abcd"),
    ])
    .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains("(masked_value_misused)"),
        "refused for the mask in its environment: {}",
        refused.text()
    );
    assert_eq!(
        gw.rack().received().len(),
        1,
        "the refused run reached the rack"
    );
    gw.finish().await;
}
