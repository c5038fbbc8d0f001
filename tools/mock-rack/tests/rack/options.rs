//! Options parsed as `stdapi.UnmarshalOptions` parses them (spec §1.3): nested urlencoded map
//! values (`parameters`, `Environment`, `Volumes`) through Go's `url.ParseQuery`, and the log
//! streams' `LogsOptions` headers through `time.ParseDuration`, `strconv.Atoi` and stdapi's
//! bool rule, with a malformed one answered as the handler's error (spec §1.5, §4.2).
//!
//! Invariant: every case goes over a real socket with the CLI's captured request shape, and
//! checks both the answer and that a refused request changed nothing.

use mock_rack::ws::Message;
use mock_rack::{ParamSource, SEED_PROCESS};

use crate::support::{self, AUTH, call, call_form, cli_with, send, ws_connect, ws_request};

/// The log streams that read `LogsOptions` (spec §3.2, §3.3, §3.5, §3.10).
fn log_paths() -> [String; 5] {
    [
        "/apps/x/logs".to_owned(),
        "/apps/x/services/web/logs".to_owned(),
        format!("/apps/x/processes/{SEED_PROCESS}/logs"),
        "/apps/x/builds/BAAAAAAAAA/logs".to_owned(),
        "/system/logs".to_owned(),
    ]
}

/// `apps params set` and `rack params set` (spec §3.12) with a `parameters` value that
/// `url.ParseQuery` refuses: 500 with Go's error text, and the app is left as it was.
#[tokio::test]
async fn a_malformed_parameters_map_is_a_500_and_changes_nothing() {
    let rack = support::rack().await;
    for (form, error) in [
        (
            "lock=true&parameters=Foo%3D%25zz",
            "invalid URL escape \"%zz\"\n",
        ),
        (
            "lock=true&parameters=Foo%3D1%3BBar%3D2",
            "invalid semicolon separator in query\n",
        ),
        // Go keeps the good pair beside the error, but the handler returns the error.
        (
            "lock=true&parameters=Good%3D1%26Bad%3D%25",
            "invalid URL escape \"%\"\n",
        ),
    ] {
        let reply = call_form(&rack, "PUT", "/apps/x?", form).await;
        assert_eq!((reply.status, reply.text()), (500, error), "{form}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
    let app = call(&rack, "GET", "/apps/x?").await.json();
    assert_eq!(
        (&app["locked"], &app["parameters"]),
        (&serde_json::json!(false), &serde_json::json!({}))
    );
    let refused = &rack.received()[0];
    let used = refused.param("parameters").unwrap();
    assert_eq!(
        (used.value.as_str(), used.source),
        ("Foo=%zz", ParamSource::Form)
    );

    // A well-formed value still applies.
    let reply = call_form(&rack, "PUT", "/apps/x?", "parameters=Foo%3Dbar").await;
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
    let app = call(&rack, "GET", "/apps/x?").await.json();
    assert_eq!(app["parameters"], serde_json::json!({"Foo": "bar"}));

    // `PUT /system` parses its options before the k8s provider's 501.
    let reply = call_form(&rack, "PUT", "/system?", "parameters=k%3D%25zz").await;
    assert_eq!(
        (reply.status, reply.text()),
        (500, "invalid URL escape \"%zz\"\n")
    );
    let reply = call_form(&rack, "PUT", "/system?", "parameters=k%3Dv").await;
    assert_eq!(reply.status, 501);
}

/// `convox run` with an `Environment` or `Volumes` header (urlencoded maps, spec §3.5) that
/// `url.ParseQuery` refuses: 500 with Go's error text, `{"error":…}` for a JSON client, and no
/// process is started.
#[tokio::test]
async fn a_malformed_environment_or_volumes_header_runs_nothing() {
    let rack = support::rack().await;
    let before = call(&rack, "GET", "/apps/x/processes?").await.json();
    for (header, value, error) in [
        ("Environment", "A=1&B=%zz", "invalid URL escape \"%zz\""),
        ("Environment", "%4=1", "invalid URL escape \"%4\""),
        (
            "Volumes",
            "/data=/mnt;/tmp=/x",
            "invalid semicolon separator in query",
        ),
    ] {
        let raw = cli_with(
            &rack,
            "POST",
            "/apps/x/services/web/processes?",
            &[("Command", "sleep 3600"), (header, value)],
            None,
        );
        let reply = send(&rack, raw).await;
        assert_eq!(
            (reply.status, reply.text()),
            (500, format!("{error}\n").as_str()),
            "{header}: {value}"
        );
    }
    let raw = cli_with(
        &rack,
        "POST",
        "/apps/x/services/web/processes?",
        &[
            ("Accept", "application/json"),
            ("Command", "sleep 3600"),
            ("Environment", "A=%zz"),
        ],
        None,
    )
    .replacen("Accept: */*\r\n", "", 1);
    let reply = send(&rack, raw).await;
    assert_eq!(
        (reply.status, reply.text()),
        (500, "{\"error\":\"invalid URL escape \\\"%zz\\\"\"}\n")
    );
    assert_eq!(
        call(&rack, "GET", "/apps/x/processes?").await.json(),
        before
    );

    // A well-formed map still runs.
    let raw = cli_with(
        &rack,
        "POST",
        "/apps/x/services/web/processes?",
        &[
            ("Command", "sleep 3600"),
            ("Environment", "A=1&B=two+words"),
        ],
        None,
    );
    assert_eq!(send(&rack, raw).await.status, 200);
}

/// A malformed `Since` (`time.ParseDuration`) or `Maxlogrequests`/`Tail` (`strconv.Atoi`) is
/// the handler's error on every log stream: `ERROR: <Go's text>` then EOF, no lines; the first
/// malformed option in struct order is the one reported.
#[tokio::test]
async fn a_malformed_log_option_is_an_error_frame_on_every_log_stream() {
    let rack = support::rack().await;
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("Since", "5 minutes")],
            "ERROR: time: unknown unit \" minutes\" in duration \"5 minutes\"\n",
        ),
        (
            &[("Since", "10")],
            "ERROR: time: missing unit in duration \"10\"\n",
        ),
        (
            &[("Maxlogrequests", "lots")],
            "ERROR: strconv.Atoi: parsing \"lots\": invalid syntax\n",
        ),
        // `Maxlogrequests` comes before `Since`, which comes before `Tail`.
        (
            &[("Maxlogrequests", "x"), ("Since", "y"), ("Tail", "z")],
            "ERROR: strconv.Atoi: parsing \"x\": invalid syntax\n",
        ),
        (
            &[("Since", "y"), ("Tail", "z")],
            "ERROR: time: invalid duration \"y\"\n",
        ),
    ];
    for path in log_paths() {
        for (headers, error) in cases {
            let (reply, ws) = ws_connect(&rack, &ws_request(&rack, &path, AUTH, headers)).await;
            assert_eq!(reply.status, 101, "{path}");
            assert_eq!(ws.unwrap().until_eof().await, [error], "{path} {headers:?}");
        }
    }
}

/// Well-formed log options are recorded as the handler got them, an empty `Since` as its `2m`
/// default, and `Follow: false` (`convox logs --no-follow`, spec §4.5) ends the stream with
/// EOF after the existing lines.
#[tokio::test]
async fn log_options_are_recorded_and_follow_false_ends_the_stream() {
    let rack = support::rack().await;
    for path in log_paths() {
        rack.clear_received();
        let headers = [
            ("Follow", "false"),
            ("Maxlogrequests", "5"),
            ("Prefix", "true"),
            ("Since", "1h30m"),
        ];
        let (_, ws) = ws_connect(&rack, &ws_request(&rack, &path, AUTH, &headers)).await;
        let lines = ws.unwrap().until_eof().await;
        assert!(!lines.is_empty(), "{path}");
        assert!(!lines[0].starts_with(b"ERROR"), "{path}: {lines:?}");
        let upgrade = rack.received().into_iter().find(|r| r.websocket).unwrap();
        for (name, value) in headers {
            let used = upgrade.param(name).unwrap();
            assert_eq!(
                (used.value.as_str(), used.source),
                (value, ParamSource::Header),
                "{path} {name}"
            );
        }
    }
    rack.clear_received();
    let (_, ws) = ws_connect(
        &rack,
        &ws_request(&rack, "/apps/x/logs", AUTH, &[("Since", "")]),
    )
    .await;
    assert_eq!(ws.unwrap().until_eof().await.len(), 3);
    let upgrade = rack.received().into_iter().find(|r| r.websocket).unwrap();
    assert_eq!(upgrade.param("Since").unwrap().value, "2m");
}

/// `Follow: true` keeps an app, service or process log stream open after the existing lines,
/// as the rack follows its pods (spec §4.5, §7 "keep open (follow)"): no EOF frame, and the
/// socket still answers the CLI's keepalive pings.
#[tokio::test]
async fn follow_true_keeps_a_log_stream_open_without_eof() {
    let rack = support::rack().await;
    for path in &log_paths()[..3] {
        let raw = ws_request(&rack, path, AUTH, &[("Follow", "true"), ("Prefix", "true")]);
        let (reply, ws) = ws_connect(&rack, &raw).await;
        assert_eq!(reply.status, 101, "{path}");
        let mut ws = ws.unwrap();
        for _ in 0..3 {
            assert!(
                matches!(ws.next().await, Some(Message::Text(_))),
                "{path}: a log line"
            );
        }
        // The next frame is the pong, not an EOF frame.
        ws.assert_open().await;
        let quiet = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            ws.reader.read_message(),
        )
        .await;
        assert!(quiet.is_err(), "{path}: nothing more, no EOF: {quiet:?}");
        ws.assert_open().await;
    }
}
