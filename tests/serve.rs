//! `rack-gateway serve` as an operator runs it: a configuration file, keys made beforehand,
//! TLS on the listeners, a real (mock) rack behind it.
//!
//! It checks that the gateway serves HTTPS with the configured certificate and forwards an
//! authorized call, refuses dev-only tokens, records `ConfigApplied` only when the effective
//! configuration changed, and refuses to start without keys.
// Test code: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use events::event::{Event, Permission, Principal, Role};
use events::store::CheckpointPolicy;
use rack_gateway::identity::admin::{self, TokenRequest};
use rack_gateway::keys::Keys;
use rack_gateway::store;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "common/test_certs.rs"]
mod test_certs;
use test_certs::certificate;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Serve {
    child: Child,
    proxy: SocketAddr,
}

impl Drop for Serve {
    /// Stops the gateway as an operator would (SIGTERM), so it closes its store cleanly.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Starts `rack-gateway serve` and waits for it to print its listeners.
fn serve(config: &Path, password: &str) -> Result<Serve, String> {
    serve_with(config, password, &[])
}

/// [`serve`] with more environment variables.
fn serve_with(config: &Path, password: &str, vars: &[(&str, &str)]) -> Result<Serve, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rack-gateway"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RACK_GATEWAY_RACK_PASSWORD", password)
        .envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(Ok(line)) = stdout.next() {
        if let Some(addr) = line.strip_prefix("rack proxy: https://") {
            // Keep draining stdout so the gateway's later lines have somewhere to go.
            std::thread::spawn(move || stdout.for_each(drop));
            return Ok(Serve {
                proxy: addr.parse().unwrap(),
                child,
            });
        }
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let _ = child.wait();
    Err(err)
}

/// One HTTPS GET with the test certificate as the only root; returns the status and body.
async fn https_get(addr: SocketAddr, cert: &Path, target: &str, token: &str) -> (u16, String) {
    https_call(addr, cert, "GET", target, token, None).await
}

/// A TLS connection to the gateway at `addr`, with the test certificate `cert` as the only root.
async fn tls_connect(
    addr: SocketAddr,
    cert: &Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

/// One HTTPS request as the CLI sends it (a form body when `form` is given), with the test
/// certificate as the only root; returns the status and body.
async fn https_call(
    addr: SocketAddr,
    cert: &Path,
    method: &str,
    target: &str,
    token: &str,
    form: Option<&str>,
) -> (u16, String) {
    https_call_with(addr, cert, method, target, token, form, "").await
}

/// As [`https_call`], with `headers` (each line ending in `\r\n`) added to the request.
async fn https_call_with(
    addr: SocketAddr,
    cert: &Path,
    method: &str,
    target: &str,
    token: &str,
    form: Option<&str>,
    headers: &str,
) -> (u16, String) {
    let mut tls = tls_connect(addr, cert).await;
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("convox:{token}"));
    let body = match form {
        Some(form) => format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{form}",
            form.len()
        ),
        None => "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n".to_owned(),
    };
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n{headers}{body}"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `serve` (with TLS) against the rack at `rack`, on a fresh data directory whose log is
/// `origin`: the test's directory, the data directory, the gateway and an admin's token.
async fn serving_against(
    rack: SocketAddr,
    origin: &str,
) -> (tempfile::TempDir, PathBuf, Serve, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    certificate(dir.path());
    Keys::init(&data, origin).unwrap();
    let (token, _) = tokens(&data).await;
    let config = dir.path().join("gateway.toml");
    gateway_config(
        &config,
        dir.path(),
        &data,
        &format!("http://{rack}"),
        "",
        "",
    );
    let gateway = serve(&config, "rack-pw").unwrap();
    (dir, data, gateway, token)
}

async fn tokens(data: &Path) -> (String, String) {
    let (store, _) = store::open(data, CheckpointPolicy::default()).unwrap();
    let owner = Principal("ops@example.com".into());
    admin::grant_role(
        &store,
        owner.clone(),
        Role::Admin,
        Principal("system".into()),
    )
    .await
    .unwrap();
    let request = |dev_only| TokenRequest {
        name: "t".into(),
        owner: owner.clone(),
        scopes: vec![Permission("convox:*:*".into())],
        expires: None,
        dev_only,
        by: Principal("system".into()),
    };
    let real = admin::create_token(&store, request(false)).await.unwrap();
    let dev = admin::create_token(&store, request(true)).await.unwrap();
    store.shutdown();
    (
        real.secret.expose().to_owned(),
        dev.secret.expose().to_owned(),
    )
}

fn config_digests(data: &Path) -> usize {
    logged(data)
        .iter()
        .filter(|e| matches!(e, Event::ConfigApplied { .. }))
        .count()
}

/// Every event in the log of the stopped gateway at `data`, in log order.
fn logged(data: &Path) -> Vec<Event> {
    let reader = events::store::redb::LogReader::open(&store::log_path(data)).unwrap();
    let mut out = Vec::new();
    reader
        .for_each_raw(0..u64::MAX, |_, b| {
            out.push(events::record::decode(b).unwrap().record.event);
            Ok(())
        })
        .unwrap();
    out
}

/// The status and failure kind of every call's end in the log of the stopped gateway at
/// `data`, in log order.
fn completions(data: &Path) -> Vec<(u16, Option<String>)> {
    logged(data)
        .into_iter()
        .filter_map(|e| match e {
            Event::CommandCompleted(c) => Some((c.status, c.failure)),
            _ => None,
        })
        .collect()
}

/// A test's directory (with the test certificate), its data directory, a mock rack with the
/// password `rack-pw`, and where its configuration goes.
async fn setup() -> (tempfile::TempDir, PathBuf, mock_rack::MockRack, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    certificate(dir.path());
    let rack = mock_rack::MockRack::start("127.0.0.1:0".parse().unwrap(), "rack-pw")
        .await
        .unwrap();
    let config = dir.path().join("gateway.toml");
    (dir, data, rack, config)
}

/// A gateway started by `serve` with `top` and `tail` added to its configuration (see
/// [`gateway_config`]), holding an admin token; dropping it stops the gateway.
struct Started {
    data: PathBuf,
    rack: mock_rack::MockRack,
    token: String,
    /// The test certificate's CA, the only root the test's client trusts.
    ca: PathBuf,
    gateway: Serve,
    _dir: tempfile::TempDir,
}

async fn started(top: &str, tail: &str) -> Started {
    let (dir, data, rack, config) = setup().await;
    gateway_config(&config, dir.path(), &data, &rack.url(), top, tail);
    Keys::init(&data, "serve.test/log").unwrap();
    let (token, _) = tokens(&data).await;
    let gateway = serve(&config, "rack-pw").unwrap();
    let ca = dir.path().join("ca.pem");
    Started {
        data,
        rack,
        token,
        ca,
        gateway,
        _dir: dir,
    }
}

/// Creates a release of app `x` with `env` on the rack directly (as its own operator would,
/// with the rack password), and returns its id.
async fn rack_release(rack: &mock_rack::MockRack, env: &str) -> String {
    use base64::Engine;
    let form = format!(
        "env={}",
        percent_encoding::utf8_percent_encode(env, percent_encoding::NON_ALPHANUMERIC)
    );
    let auth = base64::engine::general_purpose::STANDARD.encode("convox:rack-pw");
    let req = format!(
        "POST /apps/x/releases HTTP/1.1\r\nHost: rack\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
    );
    let mut tcp = tokio::net::TcpStream::connect(rack.addr()).await.unwrap();
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{text}");
    let release: serde_json::Value = serde_json::from_str(body).unwrap();
    release["id"].as_str().unwrap().to_owned()
}

/// How many POSTs the rack has received.
fn posts(rack: &mock_rack::MockRack) -> usize {
    rack.received()
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

/// The denied calls in the log of the stopped gateway at `data`: reason and path, in order.
fn denied(data: &Path) -> Vec<(String, String)> {
    logged(data)
        .iter()
        .filter_map(|e| match e {
            Event::CommandRequested(c) if c.decision == events::event::Decision::Deny => {
                Some((c.reason.clone(), c.path.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Writes a configuration for `serve` to `path`: the store in `data`, both listeners on fresh
/// loopback ports with the test certificate in `dir`, the rack at `rack`; `top` adds top-level
/// keys and `tail` tables after `[rack]`.
fn gateway_config(path: &Path, dir: &Path, data: &Path, rack: &str, top: &str, tail: &str) {
    std::fs::write(
        path,
        format!(
            "data = {:?}\ntrusted_proxies = []\n{top}[proxy]\nlisten = \"127.0.0.1:{}\"\n\
             [console]\nlisten = \"127.0.0.1:{}\"\n[tls]\ncert = {:?}\nkey = {:?}\n\
             [rack]\nurl = {:?}\n{tail}",
            data,
            free_port(),
            free_port(),
            dir.join("cert.pem"),
            dir.join("key.pem"),
            rack
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_tls_forwards_refuses_dev_tokens_and_records_its_configuration() {
    let (dir, data, rack, config) = setup().await;
    let write_config = |every: u64| {
        gateway_config(
            &config,
            dir.path(),
            &data,
            &rack.url(),
            "",
            &format!("[checkpoints]\nevery = {every}\n"),
        );
    };
    write_config(64);
    // No keys yet: serve refuses and says what to do.
    let err = serve(&config, "rack-pw")
        .err()
        .expect("serve must refuse without keys");
    assert!(err.contains("keys init"), "{err}");
    Keys::init(&data, "serve.test/log").unwrap();
    let (token, dev_token) = tokens(&data).await;

    let gateway = serve(&config, "rack-pw").unwrap();
    let cert = dir.path().join("ca.pem");
    let (status, body) = https_get(gateway.proxy, &cert, "/apps?", &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"name\""), "{body}");
    let received = rack.received();
    let last = received.last().expect("the rack received the call");
    assert_eq!(last.target, "/apps?");
    assert_eq!(last.actor.as_deref(), Some("ops@example.com"));
    let (status, _) = https_get(gateway.proxy, &cert, "/apps?", &dev_token).await;
    assert_eq!(status, 401, "serve refuses dev-only tokens");
    // Over TLS the gateway's origin is `https://<host>`: the same host in clear is another site
    // (a page a network that rewrites plain HTTP could serve), refused and recorded.
    let origin = |scheme: &str| format!("Origin: {scheme}://{}\r\n", gateway.proxy);
    let call = |headers: String| {
        let cert = cert.clone();
        let token = token.clone();
        let addr = gateway.proxy;
        async move { https_call_with(addr, &cert, "GET", "/apps?", &token, None, &headers).await }
    };
    let (status, body) = call(origin("http")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cross_origin"), "{body}");
    assert_eq!(
        rack.received().len(),
        received.len(),
        "nothing more was forwarded"
    );
    let (status, body) = call(origin("https")).await;
    assert_eq!(status, 200, "the gateway's own origin: {body}");
    // Plain HTTP to the TLS port gets TLS's alert, and is counted; a connection that closes
    // before it sends a byte is not.
    let mut plain = tokio::net::TcpStream::connect(gateway.proxy).await.unwrap();
    plain
        .write_all(b"GET /apps HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    drop(tokio::net::TcpStream::connect(gateway.proxy).await.unwrap());
    // Nor is a client that does not trust the certificate and says so with its alert.
    let distrustful = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(gateway.proxy).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(distrustful))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await;
    assert!(refused.is_err(), "the client refuses the certificate");
    drop(gateway);
    let refused: u64 = logged(&data)
        .into_iter()
        .filter_map(|e| match e {
            Event::DenialsCounted { reason, count, .. } if reason == "tls_handshake_refused" => {
                Some(count)
            }
            _ => None,
        })
        .sum();
    assert_eq!(
        refused, 1,
        "one refused handshake, the silent close not counted"
    );
    assert!(
        denied(&data).contains(&("cross_origin".to_owned(), "/apps".to_owned())),
        "{:?}",
        denied(&data)
    );

    // The same configuration again: no second ConfigApplied. A changed one: recorded.
    let first = config_digests(&data);
    assert_eq!(first, 1);
    let again = serve(&config, "rack-pw").unwrap();
    drop(again);
    assert_eq!(config_digests(&data), 1);
    write_config(128);
    let changed = serve(&config, "rack-pw").unwrap();
    drop(changed);
    assert_eq!(config_digests(&data), 2);
    // The same paths with a new certificate (for the same key): a new configuration.
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-key",
            "key.pem",
            "-subj",
            "/CN=127.0.0.1",
            "-days",
            "1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-out", "cert.pem"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let renewed = serve(&config, "rack-pw").unwrap();
    drop(renewed);
    assert_eq!(
        config_digests(&data),
        3,
        "a replaced certificate is recorded"
    );
}

/// A protected variable (`protected_env`) is masked for everyone, even an admin, and cannot be
/// changed through the gateway: not by posting a new value, not by forking another release's
/// environment with `parent-release`. Posting back the env as read (mask included) still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_variables_are_masked_for_everyone_and_cannot_be_changed() {
    let Started {
        data,
        rack,
        token,
        ca,
        gateway,
        _dir,
    } = started("protected_env = [\"x:SECRET_TOKEN\"]\n", "").await;
    let posts = || posts(&rack);

    // The seeded release of app `x` holds FOO=bar and SECRET_TOKEN=s3cr3t.
    let (status, body) = https_get(gateway.proxy, &ca, "/apps/x/releases?", &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("s3cr3t"),
        "an admin reads a protected value: {body}"
    );
    let at = body
        .find("SECRET_TOKEN=rgw-masked:")
        .expect("the value is masked")
        + 13;
    let mask = body[at..at + 19].to_owned();
    assert!(
        body.contains("FOO=bar"),
        "other values stay readable: {body}"
    );

    let post = |form: String| {
        let proxy = gateway.proxy;
        let ca = ca.clone();
        let token = token.clone();
        async move { https_call(proxy, &ca, "POST", "/apps/x/releases?", &token, Some(&form)).await }
    };
    let before = posts();
    let (status, body) = post("env=FOO%3Dbar%0ASECRET_TOKEN%3Dchanged".into()).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("SECRET_TOKEN"),
        "the refusal names the key: {body}"
    );
    let (status, body) = post("parent-release=RSEED".into()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("parent-release"), "{body}");
    // Posted in clear, even unchanged: a refusal, or each post would test a guess.
    let (status, body) = post("env=FOO%3Dbar%0ASECRET_TOKEN%3Ds3cr3t".into()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(posts(), before, "no refused release reached the rack");
    // Nor may a one-off process run with another value of it.
    let (status, body) = https_call_with(
        gateway.proxy,
        &ca,
        "POST",
        "/apps/x/services/web/processes?",
        &token,
        None,
        "Command: sh\r\nEnvironment: SECRET_TOKEN=guess\r\n",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SECRET_TOKEN"), "{body}");
    assert!(
        !rack
            .received()
            .iter()
            .any(|r| r.target.contains("/processes")),
        "the run reached the rack"
    );

    // The env as read, with one plain value changed: the mask is restored to the real value.
    let (status, body) = post(format!(
        "env=FOO%3Dbaz%0ASECRET_TOKEN%3D{}",
        mask.replace(':', "%3A")
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let received = rack.received();
    let created = received
        .iter()
        .rfind(|r| r.method == "POST")
        .expect("forwarded");
    assert_eq!(
        created.param("env").map(|p| p.value.as_str()),
        Some("FOO=baz\nSECRET_TOKEN=s3cr3t")
    );

    // The rack fills the env into the manifest it answers with, protected values included.
    let (status, body) = https_call_with(
        gateway.proxy,
        &ca,
        "GET",
        "/apps/x/manifest/services/web?",
        &token,
        None,
        "",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        !rack
            .received()
            .iter()
            .any(|r| r.target.contains("/manifest")),
        "the manifest call reached the rack"
    );

    // Promoting an older release puts its env back: one whose protected value differs from
    // the newest release's is refused; one that keeps it goes on. Both releases are made on
    // the rack directly, as an operator changes a protected value.
    let older = rack_release(&rack, "FOO=bar\nSECRET_TOKEN=old").await;
    let kept = rack_release(&rack, "FOO=bar\nSECRET_TOKEN=s3cr3t").await;
    let promote = |id: &str| {
        let (proxy, ca, token) = (gateway.proxy, ca.clone(), token.clone());
        let target = format!("/apps/x/releases/{id}/promote?");
        async move { https_call(proxy, &ca, "POST", &target, &token, Some("")).await }
    };
    let before = posts();
    let (status, body) = promote(&older).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("SECRET_TOKEN"),
        "the refusal names the key: {body}"
    );
    assert_eq!(posts(), before, "the refused promote reached the rack");
    // A release the gateway cannot read (the rack answers compressed): refused, not forwarded.
    rack.set_gzip_answers(true);
    let (status, body) = promote(&kept).await;
    rack.set_gzip_answers(false);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("release_lookup_failed"), "{body}");
    assert_eq!(posts(), before, "the unjudged promote reached the rack");
    let (status, body) = promote(&kept).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(posts(), before + 1);
    drop(gateway);

    let reasons: Vec<String> = denied(&data).into_iter().map(|(r, _)| r).collect();
    assert_eq!(
        reasons,
        [
            "protected_env_change",
            "protected_env_fork",
            "protected_env_change",
            "protected_env_change",
            "protected_env_manifest",
            "protected_env_change",
            "release_lookup_failed"
        ]
    );
    assert!(!format!("{:?}", logged(&data)).contains("s3cr3t"));
}

/// `serve` records its configuration only once it can serve it: a proxy port already taken
/// stops the start with nothing appended. A misspelled override stops it too, instead of
/// leaving the file's value in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_taken_port_and_a_misspelled_override_before_recording() {
    let (dir, data, rack, config) = setup().await;
    gateway_config(&config, dir.path(), &data, &rack.url(), "", "");
    Keys::init(&data, "serve.test/log").unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let proxy_listen = text
        .split("[proxy]\nlisten = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let taken = TcpListener::bind(&proxy_listen).unwrap();
    let err = serve(&config, "rack-pw")
        .err()
        .expect("serve must refuse a taken port");
    assert!(err.contains("binding proxy.listen"), "{err}");
    assert_eq!(
        config_digests(&data),
        0,
        "nothing recorded for a start that failed"
    );
    drop(taken);

    let err = serve_with(
        &config,
        "rack-pw",
        &[("RACK_GATEWAY_PROTECTED_ENVS", "*:STRIPE_KEY")],
    )
    .err()
    .expect("serve must refuse an unknown override");
    assert!(
        err.contains("RACK_GATEWAY_PROTECTED_ENVS: not a configuration variable"),
        "{err}"
    );
    assert_eq!(config_digests(&data), 0);

    // The CLI's own variable is not an override, and the same configuration starts.
    let gateway = serve_with(&config, "rack-pw", &[("RACK_GATEWAY_TOKEN", "rgw_x")]).unwrap();
    drop(gateway);
    assert_eq!(config_digests(&data), 1);
}

/// A second SIGTERM while the graceful stop waits (here on an upload in flight, which it gives
/// up to 10 s) ends the process at once, with the signal's status: a stop held up never needs
/// SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stop_signal_ends_a_stop_that_waits() {
    let mut s = started("", "").await;
    let mut tls = tls_connect(s.gateway.proxy, &s.ca).await;
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("convox:{}", s.token))
    };
    let head = format!(
        "POST /apps/x/objects/tmp/slow.tgz HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic \
         {auth}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n",
        s.gateway.proxy
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&[b'x'; 1000]).await.unwrap();
    tls.flush().await.unwrap();
    // A moment for the call to be recorded and forwarded: it is in flight.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let pid = s.gateway.child.id().to_string();
    let term = || {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(&pid)
            .status()
            .unwrap();
        assert!(sent.success());
    };
    term();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        s.gateway.child.try_wait().unwrap().is_none(),
        "the graceful stop waits for the upload in flight"
    );
    term();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let exit = loop {
        if let Some(exit) = s.gateway.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second SIGTERM did not end the process"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(exit.code(), Some(143), "{exit:?}");
    drop(tls);
}

/// `serve` refuses a data directory `dev` made: its log's dev user holds admin, which `dev`
/// granted without anyone asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_dev_data_directory() {
    let (dir, data, rack, config) = setup().await;
    gateway_config(&config, dir.path(), &data, &rack.url(), "", "");
    Keys::init(&data, rack_gateway::server::dev::DEV_ORIGIN).unwrap();
    let err = serve(&config, "rack-pw")
        .err()
        .expect("serve must refuse a dev log");
    assert!(err.contains("holds a dev log"), "{err}");
    assert!(
        !data.join("log.redb").exists(),
        "refused before the log was opened (which would have created it)"
    );
}

/// `serve` refuses a TLS key file that others may read, and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_tls_key_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, data, rack, config) = setup().await;
    gateway_config(&config, dir.path(), &data, &rack.url(), "", "");
    Keys::init(&data, "serve.test/log").unwrap();
    let key = dir.path().join("key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = serve(&config, "rack-pw")
        .err()
        .expect("serve must refuse a readable TLS key");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(
        !store::log_path(&data).exists(),
        "refused before the log was opened"
    );
}

/// A TLS key written on one line (`echo $KEY > key.pem`), or pasted where its path goes, stops
/// `serve` with the setting named and the key not printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_malformed_tls_key_without_printing_it() {
    let (dir, data, rack, config) = setup().await;
    gateway_config(&config, dir.path(), &data, &rack.url(), "", "");
    Keys::init(&data, "serve.test/log").unwrap();
    let key = dir.path().join("key.pem");
    let pem = std::fs::read_to_string(&key).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let secret_part = &body[body.len() / 2..body.len() / 2 + 24];
    std::fs::write(&key, pem.replace('\n', " ")).unwrap();
    let err = serve(&config, "rack-pw")
        .err()
        .expect("serve must refuse a key on one line");
    assert!(
        err.contains("tls.key") && err.contains("no END line"),
        "{err}"
    );
    // The parser's own message would print the line as bytes, so the decimal form is checked
    // too.
    let decimal = format!("{:?}", &secret_part.as_bytes()[..8]);
    let decimal = &decimal[1..decimal.len() - 1];
    assert!(
        !err.contains(secret_part) && !err.contains(decimal),
        "{err}"
    );

    let err = serve_with(&config, "rack-pw", &[("RACK_GATEWAY_TLS_KEY", &pem)])
        .err()
        .expect("serve must refuse a key given as its path");
    assert!(err.contains("tls.key"), "{err}");
    assert!(!err.contains(secret_part), "{err}");
    assert!(
        !store::log_path(&data).exists(),
        "refused before the log was opened"
    );
}

/// A form body that trickles in is cut off at `limits.form_timeout_secs` (here 2 s, not the
/// default 30): a 400 that says why, a recorded denial, nothing forwarded. A prompt form on the
/// same gateway goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_body_slower_than_its_deadline_is_refused_and_recorded() {
    let Started {
        data,
        rack,
        token,
        ca,
        gateway,
        _dir,
    } = started("", "[limits]\nform_timeout_secs = 2\n").await;
    let posts = || posts(&rack);
    let form = "env=FOO%3Dslow";
    let (status, body) = https_call(
        gateway.proxy,
        &ca,
        "POST",
        "/apps/x/releases?",
        &token,
        Some(form),
    )
    .await;
    assert_eq!(status, 200, "a prompt form is forwarded: {body}");
    let before = posts();

    // The headers and half the body, then silence.
    let mut tls = tls_connect(gateway.proxy, &ca).await;
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("convox:{token}"));
    let head = format!(
        "POST /apps/x/releases? HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{}",
        gateway.proxy,
        form.len(),
        &form[..7]
    );
    let started = std::time::Instant::now();
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    // The answer comes while the caller still holds its connection open.
    while !answer.windows(19).any(|w| w == b"param_form_too_slow") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(20), tls.read(&mut chunk))
            .await
            .expect("an answer within 20 s")
            .unwrap();
        assert!(
            n > 0,
            "closed without the refusal: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
    }
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(
        text.contains("within 2 s"),
        "the answer says the deadline: {text}"
    );
    assert!(
        waited >= std::time::Duration::from_millis(1900),
        "refused after {waited:?}, before the deadline"
    );
    assert_eq!(posts(), before, "nothing of the slow call reached the rack");
    drop(tls);
    drop(gateway);

    assert_eq!(
        denied(&data),
        [(
            "param_form_too_slow".to_owned(),
            "/apps/x/releases".to_owned()
        )]
    );
}

/// A TLS terminator in front of the mock rack, serving `cert.pem` (signed by the test CA).
async fn tls_front(dir: &Path, rack: SocketAddr) -> SocketAddr {
    let config = rack_gateway::server::tls::server_config(
        &rack_gateway::config::Tls::at(dir.join("cert.pem"), dir.join("key.pem")).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(rack).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rack_is_reached_over_tls_only_when_its_certificate_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    certificate(dir.path());
    let rack = mock_rack::MockRack::start("127.0.0.1:0".parse().unwrap(), "rack-pw")
        .await
        .unwrap();
    let front = tls_front(dir.path(), rack.addr()).await;
    Keys::init(&data, "rack-tls.test/log").unwrap();
    let (token, _) = tokens(&data).await;
    let cert = CertificateDer::pem_file_iter(dir.path().join("cert.pem"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let pin = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(cert.as_ref()));
    let config = dir.path().join("gateway.toml");
    let ca = dir.path().join("ca.pem");
    let run = |trust: String| {
        gateway_config(
            &config,
            dir.path(),
            &data,
            &format!("https://127.0.0.1:{}", front.port()),
            "",
            &format!("{trust}\n"),
        );
        serve(&config, "rack-pw")
    };
    // No trust chosen for an https rack: refused at start, saying what to set.
    let err = run(String::new())
        .err()
        .expect("an https rack needs a trust choice");
    assert!(err.contains("rack.pin_sha256"), "{err}");
    for trust in [
        format!("ca_file = {ca:?}"),
        format!("pin_sha256 = \"{pin}\""),
    ] {
        let gateway = run(trust.clone()).unwrap();
        let before = rack.received().len();
        let (status, body) = https_get(gateway.proxy, &ca, "/apps?", &token).await;
        assert_eq!(status, 200, "{trust}: {body}");
        assert_eq!(rack.received().len(), before + 1, "{trust}");
    }
    // A WebSocket to an https rack carries the Origin of the rack's own https site.
    let gateway = run(format!("ca_file = {ca:?}")).unwrap();
    let mut tls = tls_connect(gateway.proxy, &ca).await;
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("convox:{token}"))
    };
    let upgrade = format!(
        "GET /apps/x/logs HTTP/1.1\r\nHost: {0}\r\nAuthorization: Basic {auth}\r\n\
         Origin: https://{0}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        gateway.proxy
    );
    tls.write_all(upgrade.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tls.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    let socket = rack.received().into_iter().rfind(|r| r.websocket).unwrap();
    assert_eq!(
        socket.header("origin"),
        Some(format!("https://127.0.0.1:{}", front.port()).as_str())
    );
    drop(tls);
    drop(gateway);
    let wrong = format!("pin_sha256 = \"{}\"", "0".repeat(64));
    let gateway = run(wrong).unwrap();
    let before = rack.received().len();
    let (status, _) = https_get(gateway.proxy, &ca, "/apps?", &token).await;
    assert_eq!(
        status, 502,
        "a certificate that is not the pinned one is not the rack"
    );
    assert_eq!(rack.received().len(), before, "nothing reached the rack");
    drop(gateway);
    // The log says the gateway answered that 502 itself, the rack being unreachable.
    assert_eq!(
        completions(&data).last(),
        Some(&(502, Some("upstream_unavailable".to_owned()))),
    );
}

/// A rack that reads each request's head and hangs up without answering, counting the heads.
async fn rack_that_hangs_up() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    rack_answering(b"").await
}

/// A rack that reads each request's head, writes `answer` (nothing when empty) and hangs up,
/// counting the heads.
async fn rack_answering(
    answer: &'static [u8],
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = tcp.write_all(answer).await;
            });
        }
    });
    (addr, heads)
}

/// A call the rack received and never answered may have been carried out: the caller and the
/// log say so (`upstream_no_answer`), where a rack that could not be reached at all is
/// `upstream_unavailable`, the call not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_rack_took_without_answering_is_not_recorded_as_unsent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    certificate(dir.path());
    let (rack, heads) = rack_that_hangs_up().await;
    Keys::init(&data, "no-answer.test/log").unwrap();
    let (token, _) = tokens(&data).await;
    let config = dir.path().join("gateway.toml");
    let ca = dir.path().join("ca.pem");
    let gone = free_port();
    let mut failures = Vec::new();
    for url in [format!("http://{rack}"), format!("http://127.0.0.1:{gone}")] {
        gateway_config(&config, dir.path(), &data, &url, "", "");
        let gateway = serve(&config, "rack-pw").unwrap();
        let (status, body) = https_call(
            gateway.proxy,
            &ca,
            "POST",
            "/apps/x/releases/RABCDEFGHIJ/promote",
            &token,
            Some(""),
        )
        .await;
        assert_eq!(status, 502, "{url}: {body}");
        failures.push(body);
        drop(gateway);
    }
    assert_eq!(
        heads.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the first rack received the call"
    );
    assert!(
        failures[0].contains("may have carried it out")
            && failures[0].contains("upstream_no_answer"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].contains("not sent") && failures[1].contains("upstream_unavailable"),
        "{}",
        failures[1]
    );
    assert_eq!(
        completions(&data),
        [
            (502, Some("upstream_no_answer".to_owned())),
            (502, Some("upstream_unavailable".to_owned())),
        ]
    );
}

/// The rack's 401 refuses the gateway's own password, not the caller's token: the caller is
/// told it is the operator's to fix, and the log records the gateway's failure, not a rack
/// answer passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_that_refuses_the_gateways_password_is_the_operators_failure() {
    let (dir, data, rack, config) = setup().await;
    gateway_config(&config, dir.path(), &data, &rack.url(), "", "");
    Keys::init(&data, "wrong-password.test/log").unwrap();
    let (token, _) = tokens(&data).await;
    let gateway = serve(&config, "not-the-rack-pw").unwrap();
    let ca = dir.path().join("ca.pem");
    let (status, body) = https_get(gateway.proxy, &ca, "/apps?", &token).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("operator") && body.contains("rack_refused_gateway"),
        "{body}"
    );
    assert_eq!(
        rack.received().last().map(|r| r.status),
        Some(401),
        "the rack refused the call"
    );
    drop(gateway);
    assert_eq!(
        completions(&data).last(),
        Some(&(502, Some("rack_refused_gateway".to_owned()))),
    );
}

/// A rack that refuses the gateway's password answers an upload before reading its body, as
/// its auth middleware does, then closes as Go's server does with a body left unread (it
/// discards a little, closes its side for writing and waits, so the answer is not lost to a
/// reset): the caller is told the operator's failure, as for any call, not a call with no
/// answer. Both a rack written out here byte by byte and `mock-rack` (under another password).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_rack_refuses_before_reading_it_gets_the_racks_refusal() {
    const ANSWER: &[u8] =
        b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\n\
        Connection: close\r\nContent-Length: 23\r\n\r\ninvalid authentication\n";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rack = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 16 * 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                // Go's server: the answer, then at most 256 KiB of the body discarded; with
                // more left, its side closed for writing, half a second, and the close.
                let _ = tcp.write_all(ANSWER).await;
                let mut discarded = head.len();
                while discarded < 256 << 10 {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => discarded += n,
                    }
                }
                let _ = tcp.shutdown().await;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            });
        }
    });
    upload_refused_by(rack, "early-refusal.test/log").await;

    let mock = mock_rack::MockRack::start("127.0.0.1:0".parse().unwrap(), "not-rack-pw")
        .await
        .unwrap();
    upload_refused_by(mock.addr(), "early-refusal-mock.test/log").await;
    let received = mock.received();
    assert_eq!(received.len(), 1, "one call reached the rack");
    assert_eq!(received[0].status, 401);
    assert!(
        received[0].body.len() < 64 << 20,
        "the rack answered before reading the upload ({} bytes read)",
        received[0].body.len()
    );
    mock.shutdown().await;
}

/// Sends a 64 MiB upload through a gateway in front of `rack` (which refuses the gateway's
/// password before reading it) and checks the caller gets, and the log records,
/// `rack_refused_gateway`.
async fn upload_refused_by(rack: SocketAddr, origin: &str) {
    let (dir, data, gateway, token) = serving_against(rack, origin).await;
    // More than the sockets between the gateway and the rack hold: the gateway is still
    // sending when the rack closes.
    let upload = vec![b'x'; 64 << 20];
    let mut tls = tls_connect(gateway.proxy, &dir.path().join("ca.pem")).await;
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("convox:{token}"))
    };
    let head = format!(
        "POST /apps/x/objects/tmp/upload.tgz HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic \
         {auth}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        gateway.proxy,
        upload.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    // Sent while the answer is read: the gateway may stop reading once the rack has answered.
    let (mut reader, mut writer) = tokio::io::split(tls);
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&upload).await;
        writer
    });
    let mut answer = Vec::new();
    let _ = reader.read_to_end(&mut answer).await;
    drop(sending.await);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 502"), "{origin}: {answer}");
    assert!(
        answer.contains("rack_refused_gateway"),
        "{origin}: {answer}"
    );
    drop(gateway);
    assert_eq!(
        completions(&data).last(),
        Some(&(502, Some("rack_refused_gateway".to_owned()))),
        "{origin}"
    );
}

/// An error answer is read (to scrub the rack's password) and one in a coding the gateway
/// does not decode (any but gzip) is withheld, even when the rack's `Connection` names
/// `Content-Encoding`, which the gateway drops as the rack's hop's: the caller never gets the
/// encoded bytes unlabelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_error_answer_is_withheld_whatever_connection_names() {
    const ANSWER: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nContent-Encoding: br\r\n\
        Connection: content-encoding\r\nContent-Length: 40\r\n\r\n\
        https://convox:rack-pw@rack.example/apps";
    let (rack, heads) = rack_answering(ANSWER).await;
    let (dir, data, gateway, token) = serving_against(rack, "encoded-error.test/log").await;
    let (status, body) =
        https_get(gateway.proxy, &dir.path().join("ca.pem"), "/apps?", &token).await;
    assert_eq!(heads.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("error_answer_encoded") && !body.contains("rack-pw"),
        "{body}"
    );
    drop(gateway);
    // Told apart from a 2xx the gateway could not read (`answer_encoded`): the rack refused.
    assert_eq!(
        completions(&data).last(),
        Some(&(502, Some("error_answer_encoded".to_owned())))
    );
}

/// A lookup the gateway makes for itself (the current env, to restore a masked value posted
/// back) whose error answer cannot be read is recorded as such: never as an answer read whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookups_unreadable_error_answer_is_recorded_as_such() {
    let answer = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {len}\r\n\r\n{text}",
        len = 70 * 1024,
        text = "e".repeat(70 * 1024)
    );
    let (rack, heads) = rack_answering(answer.into_bytes().leak()).await;
    let (dir, data, gateway, token) = serving_against(rack, "lookup-error.test/log").await;
    let (status, body) = https_call_with(
        gateway.proxy,
        &dir.path().join("ca.pem"),
        "POST",
        "/apps/x/releases",
        &token,
        Some("env=A%3Drgw-masked%3A0123abcd"),
        "",
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        heads.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the lookup reached the rack"
    );
    drop(gateway);
    assert!(
        completions(&data).contains(&(500, Some("error_answer_too_large".to_owned()))),
        "{:?}",
        completions(&data)
    );
}

/// A graceful stop writes a snapshot and records it last, so the next start replays only what
/// came after; the restarted gateway serves as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_leaves_a_recorded_snapshot_for_the_next_start() {
    let s = started("", "").await;
    let ca = s.ca.clone();
    let (status, _) = https_get(s.gateway.proxy, &ca, "/apps?", &s.token).await;
    assert_eq!(status, 200);
    let Started {
        data,
        gateway,
        token,
        _dir,
        rack: _rack,
        ..
    } = s;
    let config = _dir.path().join("gateway.toml");
    drop(gateway);
    let snapshot = std::fs::read(store::snapshot_path(&data)).expect("a snapshot was written");
    let events = logged(&data);
    match events.last() {
        Some(Event::SnapshotRecorded { covers, digest, .. }) => {
            // Completions still queued when the state was read come after what it covers.
            let own = events.len() as u64 - 1;
            assert!(
                covers.0 > 0 && covers.0 <= own,
                "covers {covers:?} of {own}"
            );
            assert_eq!(*digest, events::hash::object_digest(&snapshot));
        }
        other => panic!("the last record is {other:?}"),
    }
    let mut gateway = serve(&config, "rack-pw").unwrap();
    let (status, body) = https_get(gateway.proxy, &ca, "/apps?", &token).await;
    assert_eq!(status, 200, "{body}");
    // A hang-up (the terminal that ran it closed) stops it as gracefully as SIGTERM.
    let hup = Command::new("kill")
        .arg("-HUP")
        .arg(gateway.child.id().to_string())
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = gateway.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway did not stop within 30 s of SIGHUP"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    drop(gateway);
    let recorded = logged(&data)
        .iter()
        .filter(|e| matches!(e, Event::SnapshotRecorded { .. }))
        .count();
    assert_eq!(
        recorded, 2,
        "one snapshot per graceful stop, the hang-up's included"
    );
}

/// What the server's side of an upgraded connection saw: whether its TCP socket was found under
/// the stream, and the first bytes read from it.
type Seen = (bool, Vec<u8>);

/// A listener served as the gateway serves its own (in clear, or behind TLS) whose one route
/// upgrades; the server's side takes the connection back as the relay does, reports what it
/// saw, then whether the caller's going was seen on the socket it found.
async fn upgrading_listener(
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Seen>,
    tokio::sync::mpsc::UnboundedReceiver<bool>,
    tokio::sync::watch::Sender<bool>,
) {
    use rack_gateway::proxy::ws::Hangup;
    use rack_gateway::server::upgraded::UpgradedCaller;
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let (gone_tx, gone) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let upgrade = move |mut req: axum::extract::Request| {
        let (seen_tx, gone_tx) = (seen_tx.clone(), gone_tx.clone());
        async move {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut caller = UpgradedCaller::new(on_upgrade.await.unwrap());
                let hangup = caller.socket().map(|s| Hangup::of(s).unwrap());
                let mut first = vec![0u8; 5];
                tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    caller.read_exact(&mut first),
                )
                .await
                .expect("the bytes behind the upgrade request")
                .unwrap();
                seen_tx.send((hangup.is_some(), first)).unwrap();
                if let Some(hangup) = hangup {
                    let seen =
                        tokio::time::timeout(std::time::Duration::from_secs(10), hangup.wait())
                            .await
                            .is_ok();
                    gone_tx.send(seen).unwrap();
                }
            });
            http::Response::builder()
                .status(101)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(axum::body::Body::empty())
                .unwrap()
        }
    };
    let router = axum::Router::new().route("/ws", axum::routing::get(upgrade));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    rack_gateway::server::spawn_with_tls(
        listener,
        router,
        rack_gateway::server::Limits {
            header_timeout: std::time::Duration::from_secs(10),
            on_refused: None,
            admit: None,
        },
        tls,
        Arc::from(Vec::new()),
        stopped,
    );
    (addr, seen, gone, stop)
}

/// `f`, or a failed test after 20 s.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(20), f)
        .await
        .expect("no result within 20 s")
}

/// Sends the upgrade request with the caller's first bytes right behind it, in one write (so
/// the server may read them with the head), and reads the answer's head.
async fn upgrade_with_bytes_behind<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
) -> String {
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n\
              Upgrade: websocket\r\n\r\nhello",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A WebSocket caller's connection, taken back from hyper after the upgrade (as the relay takes
/// it), gives the bytes the caller sent right behind its request first, and the TCP socket
/// under it (under TLS too), on which the caller's going is then seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_caller_keeps_its_bytes_and_its_socket_in_clear_and_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    certificate(dir.path());
    let tls = rack_gateway::server::tls::server_config(
        &rack_gateway::config::Tls::at(dir.path().join("cert.pem"), dir.path().join("key.pem"))
            .unwrap(),
    )
    .unwrap();

    let (addr, mut seen, mut gone, _stop) = upgrading_listener(None).await;
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = within(upgrade_with_bytes_behind(&mut plain)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(within(seen.recv()).await, Some((true, b"hello".to_vec())));
    drop(plain);
    assert_eq!(
        gone.recv().await,
        Some(true),
        "the caller's going, in clear"
    );

    let (addr, mut seen, mut gone, _stop) = upgrading_listener(Some(tls)).await;
    let mut secure = tls_connect(addr, &dir.path().join("ca.pem")).await;
    let head = within(upgrade_with_bytes_behind(&mut secure)).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(within(seen.recv()).await, Some((true, b"hello".to_vec())));
    drop(secure);
    assert_eq!(
        gone.recv().await,
        Some(true),
        "the caller's going, over TLS"
    );
}
