//! The CLI command sequences of spec §6 and Appendix A (apps, ps, env, env set, env unset,
//! releases, scale, restart, rack, run, deploy), each replayed request by request with the
//! statuses and bodies the CLI needs.
//!
//! Invariant: each test replays one command's captured requests in their captured order against a
//! fresh rack and checks every answer, not just the last.

use mock_rack::ws::Message;
use mock_rack::{
    AFTER_EOF_OUTPUT, EXIT_MARKER, ParamSource, SEED_APP, SEED_ENV, SEED_PROCESS, SEED_RELEASE,
};
use sha2::{Digest, Sha256};

use crate::support::{self, AUTH, call, call_form, cli_with, send, ws_connect, ws_request};

const SYSTEM: &str = r#"{
  "count": 1,
  "domain": "router.mock",
  "name": "mock",
  "provider": "aws",
  "rack-domain": "api.mock",
  "router-internal": "",
  "region": "us-east-1",
  "status": "running",
  "type": "",
  "version": "3.21.0"
}
"#;

const APPS: &str = r#"[
  {
    "generation": "3",
    "locked": false,
    "name": "x",
    "release": "RAAAAAAAAA",
    "router": "router.mock",
    "status": "running",
    "parameters": {}
  }
]
"#;

const PROCESSES: &str = r#"[
  {
    "id": "web-5d8f7c9b4-abcde",
    "app": "x",
    "command": "",
    "cpu": 0,
    "gpu": 0,
    "host": "10.0.1.10",
    "image": "registry.mock/x:web.BAAAAAAAAA",
    "instance": "node-1",
    "memory": 0,
    "name": "web",
    "ports": [
      "3000"
    ],
    "release": "RAAAAAAAAA",
    "started": "2026-01-01T00:00:07Z",
    "status": "running"
  }
]
"#;

const SEED_RELEASE_JSON: &str = r#"{
  "id": "RAAAAAAAAA",
  "app": "x",
  "build": "BAAAAAAAAA",
  "env": "FOO=bar\nSECRET_TOKEN=s3cr3t",
  "manifest": "services:\n  web:\n    build: .\n    port: 3000\n",
  "description": "",
  "created": "2026-01-01T00:00:06Z"
}
"#;

#[tokio::test]
async fn convox_apps() {
    let rack = support::rack().await;
    let reply = call(&rack, "GET", "/apps?").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.text(), APPS);
    // Spec §1.4: matched, authenticated routes carry these.
    let id = reply.header("request-id").unwrap();
    assert!(
        id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    let received = rack.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].target, "/apps?");
    assert_eq!(received[0].header("authorization"), Some(AUTH));
    assert_eq!(
        received[0].header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(received[0].status, 200);
}

#[tokio::test]
async fn convox_ps() {
    let rack = support::rack().await;
    let reply = call(&rack, "GET", "/apps/x/processes?").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), PROCESSES);
    let reply = call(&rack, "GET", "/apps/x/budget?").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        "{\n  \"config\": null,\n  \"state\": null\n}\n"
    );
}

#[tokio::test]
async fn convox_env() {
    let rack = support::rack().await;
    let reply = call(&rack, "GET", "/apps/x/releases?limit=1").await;
    assert_eq!(reply.status, 200);
    let list = reply.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], SEED_RELEASE);
    // Spec §3.4: every list item carries the full env.
    assert_eq!(list[0]["env"], SEED_ENV);
    let reply = call(&rack, "GET", &format!("/apps/x/releases/{SEED_RELEASE}?")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), SEED_RELEASE_JSON);
    // Only a TTY asks for the mask config; "not found" means "no masking" (spec §6).
    let reply = call(&rack, "GET", "/apps/x/configs/cli-env-mask?").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.text(), "app config not found: cli-env-mask\n");
    let limit = rack.received()[0].param("limit").cloned().unwrap();
    assert_eq!(
        (limit.value.as_str(), limit.source),
        ("1", ParamSource::Query)
    );
}

/// `convox env set A=B -a x` (spec Appendix A.4), then `--promote`.
#[tokio::test]
async fn convox_env_set_then_promote() {
    let rack = support::rack().await;
    assert_eq!(
        call(&rack, "GET", "/apps/x/releases?limit=1").await.status,
        200
    );
    assert_eq!(
        call(&rack, "GET", &format!("/apps/x/releases/{SEED_RELEASE}?"))
            .await
            .status,
        200
    );
    assert_eq!(call(&rack, "GET", "/system?").await.text(), SYSTEM);
    let body = "env=A%3DB%0AFOO%3Dbar%0ASECRET_TOKEN%3Ds3cr3t";
    assert_eq!(body.len(), 45, "the captured Content-Length");
    let reply = call_form(&rack, "POST", "/apps/x/releases?", body).await;
    assert_eq!(reply.status, 200);
    let release = reply.json();
    assert_eq!(release["id"], "RAAAAAAAAB");
    assert_eq!(release["env"], "A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t");
    assert_eq!(release["build"], "BAAAAAAAAA");
    let post = rack.received().pop().unwrap();
    assert_eq!(post.body, body.as_bytes());
    let env = post.param("env").unwrap();
    assert_eq!(
        (env.value.as_str(), env.source),
        ("A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t", ParamSource::Form)
    );

    // The env now reads from the new release, which is not yet the app's release.
    let newest = call(&rack, "GET", "/apps/x/releases?limit=1").await.json();
    assert_eq!(newest[0]["id"], "RAAAAAAAAB");
    assert_eq!(
        call(&rack, "GET", "/apps/x?").await.json()["release"],
        SEED_RELEASE
    );

    let reply = call_form(
        &rack,
        "POST",
        "/apps/x/releases/RAAAAAAAAB/promote?",
        "force=false",
    )
    .await;
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let app = call(&rack, "GET", "/apps/x?").await.json();
    assert_eq!(
        (app["release"].as_str(), app["status"].as_str()),
        (Some("RAAAAAAAAB"), Some("running"))
    );
    let pods = call(&rack, "GET", "/apps/x/processes?").await.json();
    assert_eq!(pods[0]["release"], "RAAAAAAAAB");
}

/// The rack refuses promoting a release older than the app's (a rollback makes a new one) and
/// one without a manifest (an app's first release, before any build), as
/// `ReleasePromoteValidate` does (spec §3.4).
#[tokio::test]
async fn promoting_an_older_release_or_one_without_a_manifest_is_refused() {
    let rack = support::rack().await;
    let reply = call_form(&rack, "POST", "/apps/x/releases?", "env=A%3DB").await;
    let newer = reply.json()["id"].as_str().unwrap().to_owned();
    let promote = |id: String| format!("/apps/x/releases/{id}/promote?");
    let reply = call_form(&rack, "POST", &promote(newer.clone()), "force=false").await;
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
    let reply = call_form(
        &rack,
        "POST",
        &promote(SEED_RELEASE.to_owned()),
        "force=false",
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply.text().contains("can not promote an older release"),
        "{}",
        reply.text()
    );
    assert_eq!(
        call(&rack, "GET", "/apps/x?").await.json()["release"],
        newer.as_str()
    );

    assert_eq!(
        call_form(&rack, "POST", "/apps?", "name=fresh")
            .await
            .status,
        200
    );
    let first = call_form(&rack, "POST", "/apps/fresh/releases?", "env=A%3DB").await;
    let first = first.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/apps/fresh/releases/{first}/promote?");
    let reply = call_form(&rack, "POST", &path, "force=false").await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("empty manifest"), "{}", reply.text());
}

/// `parent-release` forks that release, not the newest (the rack's `releaseFork`); a parent
/// that is not there is a 404.
#[tokio::test]
async fn a_release_forks_its_parent_release() {
    let rack = support::rack().await;
    let reply = call_form(&rack, "POST", "/apps/x/releases?", "env=ONLY%3Dnewer").await;
    assert_eq!(reply.json()["env"], "ONLY=newer");
    let form = format!("parent-release={SEED_RELEASE}&description=back");
    let reply = call_form(&rack, "POST", "/apps/x/releases?", &form).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["env"],
        SEED_ENV,
        "the parent's env, not the newest's"
    );
    let reply = call_form(&rack, "POST", "/apps/x/releases?", "parent-release=RNOPE").await;
    assert_eq!(reply.status, 404, "{}", reply.text());
}

/// `POST /apps/{app}/builds/{id}/image` (spec §3.3): 422 without `image`, 404 for a build that
/// is not there, else 202 with no body; its options are read and recorded.
#[tokio::test]
async fn importing_an_image_into_a_build_answers_202_empty() {
    let rack = support::rack().await;
    let path = "/apps/x/builds/BAAAAAAAAA/image?";
    let reply = call_form(&rack, "POST", path, "src-creds-user=robot").await;
    assert_eq!(
        (reply.status, reply.text()),
        (422, "image param required\n")
    );
    let reply = call_form(&rack, "POST", "/apps/x/builds/BNOPE/image?", "image=a%2Fb").await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    let reply = call_form(&rack, "POST", path, "image=a%2Fb&src-creds-pass=pw").await;
    assert_eq!((reply.status, reply.text()), (202, ""));
    let post = rack.received().pop().unwrap();
    assert_eq!(
        post.param("src-creds-pass").map(|p| p.value.as_str()),
        Some("pw")
    );
}

/// `convox env unset FOO`: the same requests, posting the env without the key (spec §3.12).
#[tokio::test]
async fn convox_env_unset() {
    let rack = support::rack().await;
    let current = call(&rack, "GET", "/apps/x/releases?limit=1").await.json();
    let id = current[0]["id"].as_str().unwrap().to_owned();
    call(&rack, "GET", &format!("/apps/x/releases/{id}?")).await;
    call(&rack, "GET", "/system?").await;
    let reply = call_form(
        &rack,
        "POST",
        "/apps/x/releases?",
        "env=SECRET_TOKEN%3Ds3cr3t",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["env"], "SECRET_TOKEN=s3cr3t");
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let reply = call(&rack, "GET", &format!("/apps/x/releases/{id}?")).await;
    assert_eq!(reply.json()["env"], "SECRET_TOKEN=s3cr3t");
}

#[tokio::test]
async fn convox_releases() {
    let rack = support::rack().await;
    call_form(&rack, "POST", "/apps/x/releases?", "env=A%3D1").await;
    let app = call(&rack, "GET", "/apps/x?").await;
    assert_eq!(app.status, 200);
    assert_eq!(app.json()["release"], SEED_RELEASE);
    let list = call(&rack, "GET", "/apps/x/releases?").await.json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["RAAAAAAAAB", "RAAAAAAAAA"], "newest first");
    assert_eq!(list[1]["env"], SEED_ENV);
}

#[tokio::test]
async fn convox_rack() {
    let rack = support::rack().await;
    let reply = call(&rack, "GET", "/system?").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.text(), SYSTEM);
}

/// `convox scale web --count 2 --cpu 512 --memory 1024` (spec §3.12), then `convox scale`.
#[tokio::test]
async fn convox_scale() {
    let rack = support::rack().await;
    let reply = call_form(
        &rack,
        "PUT",
        "/apps/x/services/web?",
        "count=2&cpu=512&memory=1024",
    )
    .await;
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
    let used: Vec<(String, ParamSource)> = rack.received()[0]
        .params
        .iter()
        .map(|p| (format!("{}={}", p.name, p.value), p.source))
        .collect();
    assert_eq!(
        used,
        [
            ("count=2".to_owned(), ParamSource::Form),
            ("cpu=512".to_owned(), ParamSource::Form),
            ("memory=1024".to_owned(), ParamSource::Form)
        ]
    );
    let services = call(&rack, "GET", "/apps/x/services?").await.json();
    assert_eq!(
        (
            services[0]["count"].as_i64(),
            services[0]["cpu"].as_i64(),
            services[0]["memory"].as_i64()
        ),
        (Some(2), Some(512), Some(1024))
    );
    let pods = call(&rack, "GET", "/apps/x/processes?").await.json();
    assert_eq!(pods.as_array().unwrap().len(), 2);
    assert_eq!(call(&rack, "GET", "/apps/x/budget?").await.status, 200);

    let reply = call_form(&rack, "PUT", "/apps/x/services/web?", "count=many").await;
    assert_eq!(
        (reply.status, reply.text()),
        (500, "strconv.Atoi: parsing \"many\": invalid syntax\n")
    );
    let reply = call_form(&rack, "PUT", "/apps/x/services/nope?", "count=1").await;
    assert_eq!(
        (reply.status, reply.text()),
        (404, "service not found: nope\n")
    );
    // A huge count is kept as asked; the pods made for it are bounded.
    let reply = call_form(&rack, "PUT", "/apps/x/services/web?", "count=1000000000").await;
    assert_eq!(reply.status, 200);
    let services = call(&rack, "GET", "/apps/x/services?").await.json();
    assert_eq!(services[0]["count"].as_i64(), Some(1_000_000_000));
    let pods = call(&rack, "GET", "/apps/x/processes?").await.json();
    assert_eq!(pods.as_array().unwrap().len(), 100);
}

/// `convox restart`: list services, then restart each (spec §3.12).
#[tokio::test]
async fn convox_restart() {
    let rack = support::rack().await;
    let services = call(&rack, "GET", "/apps/x/services?").await;
    assert_eq!(services.status, 200);
    let services = services.json();
    assert_eq!(services.as_array().unwrap().len(), 1);
    let name = services[0]["name"].as_str().unwrap();
    // A body-less POST: `Content-Length: 0`, `Content-Type: application/octet-stream`.
    let reply = call(&rack, "POST", &format!("/apps/x/services/{name}/restart?")).await;
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
    let pods = call(&rack, "GET", "/apps/x/processes?").await.json();
    assert_ne!(pods[0]["id"], SEED_PROCESS, "restarted pods are new pods");
}

/// `convox run web bin/migrate -a x` (spec §4.4, Appendix A.9).
#[tokio::test]
async fn convox_run() {
    let rack = support::rack().await;
    let raw = cli_with(
        &rack,
        "POST",
        "/apps/x/services/web/processes?",
        &[("Command", "sleep 3600")],
        None,
    );
    let reply = send(&rack, raw).await;
    assert_eq!(reply.status, 200);
    let process = reply.json();
    let pid = process["id"].as_str().unwrap().to_owned();
    assert_eq!(process["command"], "sleep 3600");
    assert_eq!(process["release"], SEED_RELEASE);
    let command = rack.received()[0].param("Command").cloned().unwrap();
    assert_eq!(
        (command.value.as_str(), command.source),
        ("sleep 3600", ParamSource::Header)
    );
    for _ in 0..2 {
        let reply = call(&rack, "GET", &format!("/apps/x/processes/{pid}?")).await;
        assert_eq!(reply.json()["status"], "running");
    }
    assert_eq!(call(&rack, "GET", "/machines?").await.status, 404);
    let raw = ws_request(
        &rack,
        &format!("/apps/x/processes/{pid}/exec"),
        AUTH,
        &[
            ("Command", "bin/migrate"),
            ("Entrypoint", "true"),
            ("Tty", "false"),
        ],
    );
    let (reply, ws) = ws_connect(&rack, &raw).await;
    assert_eq!(reply.status, 101);
    let mut ws = ws.unwrap();
    ws.writer.text(b"echo hi\n").await.unwrap();
    assert_eq!(ws.next().await, Some(Message::Text("echo hi\n".into())));
    ws.writer.binary(b"").await.unwrap();
    assert_eq!(
        ws.until_eof().await,
        [
            bytes::Bytes::from_static(AFTER_EOF_OUTPUT),
            bytes::Bytes::from(format!("{EXIT_MARKER}0\n"))
        ]
    );
    let exec = rack.received().into_iter().find(|r| r.websocket).unwrap();
    let command = exec.param("command").unwrap();
    assert_eq!(
        (command.value.as_str(), command.source),
        ("bin/migrate", ParamSource::Header)
    );
    let reply = call(&rack, "DELETE", &format!("/apps/x/processes/{pid}?")).await;
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
    let reply = call(&rack, "GET", &format!("/apps/x/processes/{pid}?")).await;
    assert_eq!(
        (reply.status, reply.text()),
        (500, format!("pods \"{pid}\" not found\n").as_str())
    );
}

/// `convox deploy -a x` (spec §6 timeline): upload, build, build logs, promote, app logs.
#[tokio::test]
async fn convox_deploy() {
    let rack = support::rack().await;
    assert_eq!(call(&rack, "GET", "/system?").await.status, 200);

    let tarball: Vec<u8> = [&[0x1f, 0x8b, 0x08, 0x00][..], &[0xAB; 205]].concat();
    let key = "tmp/01362c476d019add69c8b81a11fa93.tgz";
    let mut raw = format!(
        "POST /apps/x/objects/{key}? HTTP/1.1\r\nHost: {}\r\nUser-Agent: convox.go/dev\r\nContent-Length: {}\r\nAccept: */*\r\nAuthorization: {AUTH}\r\nContent-Type: application/octet-stream\r\nVersion: dev\r\nAccept-Encoding: gzip\r\n\r\n",
        support::host(&rack),
        tarball.len()
    )
    .into_bytes();
    raw.extend_from_slice(&tarball);
    let reply = send(&rack, raw).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        format!("{{\n  \"Url\": \"object://x/{key}\"\n}}\n")
    );
    let stored = rack.object(SEED_APP, key).unwrap();
    assert_eq!(stored.data, tarball);
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&tarball)));
    let fetched = call(&rack, "GET", &format!("/apps/x/objects/{key}?")).await;
    assert_eq!(
        (fetched.status, fetched.header("content-type")),
        (200, Some("application/x-gzip"))
    );
    assert_eq!(fetched.body, tarball);

    let reply = call_form(
        &rack,
        "POST",
        "/apps/x/builds?",
        "url=object%3A%2F%2Fx%2Ftmp%2F01362c476d019add69c8b81a11fa93.tgz",
    )
    .await;
    assert_eq!(reply.status, 200);
    let build = reply.json();
    assert_eq!(build["status"], "running");
    let id = build["id"].as_str().unwrap().to_owned();
    assert_eq!(id, "BAAAAAAAAB");

    assert_eq!(call(&rack, "GET", "/machines?").await.status, 404);
    let (reply, ws) = ws_connect(
        &rack,
        &ws_request(&rack, &format!("/apps/x/builds/{id}/logs"), AUTH, &[]),
    )
    .await;
    assert_eq!(reply.status, 101);
    let lines = ws.unwrap().until_eof().await;
    assert!(
        lines.iter().any(|l| std::str::from_utf8(l).is_err()),
        "one line is not UTF-8"
    );
    assert_eq!(lines.last().unwrap(), "Release: RAAAAAAAAB\n");

    let build = call(&rack, "GET", &format!("/apps/x/builds/{id}?"))
        .await
        .json();
    assert_eq!(build["status"], "complete");
    let release = build["release"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&rack, "GET", &format!("/apps/x/releases/{release}?"))
            .await
            .json()["build"],
        id.as_str()
    );
    assert_eq!(
        call(&rack, "GET", "/apps/x?").await.json()["status"],
        "running"
    );
    let reply = call_form(
        &rack,
        "POST",
        &format!("/apps/x/releases/{release}/promote?"),
        "force=false",
    )
    .await;
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));

    let (reply, ws) = ws_connect(
        &rack,
        &ws_request(
            &rack,
            "/apps/x/logs",
            AUTH,
            &[("Prefix", "true"), ("Since", "5s")],
        ),
    )
    .await;
    assert_eq!(reply.status, 101);
    assert!(!ws.unwrap().until_eof().await.is_empty());
    assert_eq!(call(&rack, "GET", "/apps/x/processes?").await.status, 200);
    let app = call(&rack, "GET", "/apps/x?").await.json();
    assert_eq!(app["release"], release.as_str(), "deploy's final check");
    let builds = call(&rack, "GET", "/apps/x/builds?").await.json();
    assert_eq!(builds[0]["id"], id.as_str(), "newest first");
}

/// A build from an object that was never uploaded fails, as the build pod would.
#[tokio::test]
async fn a_build_from_a_missing_object_fails() {
    let rack = support::rack().await;
    let reply = call_form(
        &rack,
        "POST",
        "/apps/x/builds?",
        "url=object%3A%2F%2Fx%2Ftmp%2Fnope.tgz",
    )
    .await;
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let build = call(&rack, "GET", &format!("/apps/x/builds/{id}?"))
        .await
        .json();
    assert_eq!(build["status"], "failed");
    assert_eq!(build["release"], "");
}

/// `convox apps create`, `apps info`, `apps lock`, `apps delete` (spec §3.12).
#[tokio::test]
async fn app_lifecycle() {
    let rack = support::rack().await;
    let reply = call_form(&rack, "POST", "/apps?", "name=n").await;
    assert_eq!(reply.status, 200);
    let app = reply.json();
    assert_eq!(
        (
            app["name"].as_str(),
            app["generation"].as_str(),
            app["status"].as_str()
        ),
        (Some("n"), Some("2"), Some("running"))
    );
    let reply = call_form(&rack, "PUT", "/apps/n?", "lock=true").await;
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
    assert_eq!(call(&rack, "GET", "/apps/n?").await.json()["locked"], true);
    let reply = call(&rack, "DELETE", "/apps/n?").await;
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
    let reply = call(&rack, "GET", "/apps/n?").await;
    assert_eq!((reply.status, reply.text()), (404, "app not found: n\n"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}
