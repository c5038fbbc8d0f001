//! Canonicalization tests: every refused path form, every tail grammar, every refused parameter
//! form, and the CLI's captured requests (spec Appendix A), which must pass byte for byte.

use super::*;
use crate::policy::routes::by_name;

// --- Paths ---

fn check_path(raw: &str, expected: Result<&str, PathError>) {
    let got = canonicalize_path(raw);
    match expected {
        Ok(text) => assert_eq!(got.as_ref().map(CanonicalPath::as_str), Ok(text), "{raw:?}"),
        Err(e) => assert_eq!(got, Err(e), "{raw:?}"),
    }
}

#[test]
fn paths_are_decoded_once_and_forwarded_as_decoded() {
    check_path("/apps", Ok("/apps"));
    check_path(
        "/apps/x/releases/RAAAAAAAAA",
        Ok("/apps/x/releases/RAAAAAAAAA"),
    );
    check_path("/apps/%78/releases", Ok("/apps/x/releases"));
    check_path("/apps/x/objects/tmp/a.tgz", Ok("/apps/x/objects/tmp/a.tgz"));
    check_path(
        "/registries/quay.io:443/org",
        Ok("/registries/quay.io:443/org"),
    );
    check_path(
        "/apps/a-b_c.d~e!$&'()*+,;=:@",
        Ok("/apps/a-b_c.d~e!$&'()*+,;=:@"),
    );
    check_path("/apps/%2a", Ok("/apps/*"));
    check_path("/v2/", Ok("/v2/"));
    check_path("/v2/x/blobs/uploads/", Ok("/v2/x/blobs/uploads/"));
    check_path("/custom/http/proxy/", Ok("/custom/http/proxy/"));
    check_path("/custom/http/proxy/a/", Ok("/custom/http/proxy/a/"));
    check_path("/...", Ok("/..."));
}

#[test]
fn every_refused_path_form_names_what_and_where() {
    use PathError::*;
    check_path("apps", Err(NotAbsolute));
    check_path("", Err(NotAbsolute));
    check_path("/", Err(EmptySegment { index: 0 }));
    check_path("//apps", Err(EmptySegment { index: 0 }));
    check_path("/apps//x", Err(EmptySegment { index: 1 }));
    check_path("/apps/", Err(EmptySegment { index: 1 }));
    check_path("/apps/x/", Err(EmptySegment { index: 2 }));
    check_path("/v2//x", Err(EmptySegment { index: 1 }));
    check_path("/custom/http/", Err(EmptySegment { index: 2 }));
    check_path("/apps/./x", Err(DotSegment { index: 1 }));
    check_path("/apps/..", Err(DotSegment { index: 1 }));
    check_path("/apps/%2e%2E/system", Err(DotSegment { index: 1 }));
    check_path("/apps/%2E", Err(DotSegment { index: 1 }));
    check_path("/apps/x%2Fy", Err(EncodedSlash { index: 1 }));
    check_path("/apps/x%2fy", Err(EncodedSlash { index: 1 }));
    check_path(
        "/apps/x%5Cy",
        Err(Backslash {
            index: 1,
            encoded: true,
        }),
    );
    check_path(
        "/apps/x\\y",
        Err(Backslash {
            index: 1,
            encoded: false,
        }),
    );
    check_path("/apps/x%00", Err(ControlChar { index: 1, byte: 0 }));
    check_path("/apps/x\0", Err(ControlChar { index: 1, byte: 0 }));
    check_path(
        "/apps/x%0A",
        Err(ControlChar {
            index: 1,
            byte: 0x0a,
        }),
    );
    check_path(
        "/apps/x%7f",
        Err(ControlChar {
            index: 1,
            byte: 0x7f,
        }),
    );
    check_path("/apps/x\t", Err(ControlChar { index: 1, byte: 9 }));
    check_path("/apps/x%", Err(BadEscape { index: 1 }));
    check_path("/apps/x%4", Err(BadEscape { index: 1 }));
    check_path("/apps/x%G1", Err(BadEscape { index: 1 }));
    check_path("/apps/x%252F", Err(DoubleEncoded { index: 1 }));
    check_path("/apps/x%25", Err(DoubleEncoded { index: 1 }));
    check_path(
        "/apps/a b",
        Err(ForbiddenChar {
            index: 1,
            byte: b' ',
        }),
    );
    check_path(
        "/apps/a%20b",
        Err(ForbiddenChar {
            index: 1,
            byte: b' ',
        }),
    );
    check_path(
        "/apps/a#b",
        Err(ForbiddenChar {
            index: 1,
            byte: b'#',
        }),
    );
    check_path(
        "/apps/a%3Fb",
        Err(ForbiddenChar {
            index: 1,
            byte: b'?',
        }),
    );
    check_path(
        "/apps/é",
        Err(ForbiddenChar {
            index: 1,
            byte: 0xc3,
        }),
    );
    check_path(
        "/apps/%C3%A9",
        Err(ForbiddenChar {
            index: 1,
            byte: 0xc3,
        }),
    );
    check_path(
        "/apps/{x}",
        Err(ForbiddenChar {
            index: 1,
            byte: b'{',
        }),
    );
    let long = format!("/apps/{}", "a".repeat(256));
    check_path(
        &long,
        Err(SegmentTooLong {
            index: 1,
            len: 256,
            limit: 255,
        }),
    );
    let ok = format!("/apps/{}", "a".repeat(255));
    check_path(&ok, Ok(&ok));
    let many = "/abcdefghi".repeat(103);
    check_path(
        &many,
        Err(TooLong {
            len: 1030,
            limit: 1024,
        }),
    );
    let huge = "/".to_owned() + &"%41".repeat(1100);
    check_path(
        &huge,
        Err(TooLong {
            len: 3301,
            limit: 1024,
        }),
    );
}

#[test]
fn targets_split_at_the_query_marker() {
    assert_eq!(split_target("/apps?"), ("/apps", Some("")));
    assert_eq!(split_target("/apps"), ("/apps", None));
    assert_eq!(
        split_target("/apps/x/releases?limit=1"),
        ("/apps/x/releases", Some("limit=1"))
    );
    assert_eq!(split_target("/a?b?c"), ("/a", Some("b?c")));
}

// --- Tails ---

fn check_tail(tail: Tail, path: &str, ok: bool) {
    let segs: Vec<&str> = path.split('/').collect();
    assert_eq!(
        tail.check(&segs).is_ok(),
        ok,
        "{} {path:?}: {:?}",
        tail.as_str(),
        tail.check(&segs)
    );
}

#[test]
fn tail_grammars() {
    use Tail::*;
    for (tail, path, ok) in [
        (ObjectKey, "tmp/01362c476d019add69c8b81a11fa93.tgz", true),
        (ObjectKey, "a", true),
        (ObjectKey, "a/b/c_d-e.f", true),
        (ObjectKey, "a:b", false),
        (ObjectKey, "a~b", false),
        (ObjectKey, "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q", false),
        (RegistryServer, "quay.io", true),
        (RegistryServer, "localhost:5000", true),
        (RegistryServer, "123.dkr.ecr.us-east-1.amazonaws.com", true),
        (RegistryServer, "quay.io/org/team", true),
        (RegistryServer, "https:", false),
        (RegistryServer, "host:123456", false),
        (RegistryServer, "host:", false),
        (RegistryServer, "a..b", false),
        (RegistryServer, "quay.io/a:b", false),
        (RegistryApi, "", true),
        (RegistryApi, "_catalog", true),
        (RegistryApi, "x/tags/list", true),
        (RegistryApi, "org/app-x/manifests/latest", true),
        (
            RegistryApi,
            "x/manifests/sha256:0123456789abcdef0123456789abcdef",
            true,
        ),
        (
            RegistryApi,
            "x/blobs/sha256:0123456789abcdef0123456789abcdef",
            true,
        ),
        (RegistryApi, "x/blobs/uploads/", true),
        (RegistryApi, "x/blobs/uploads/3f2a-b_c=", true),
        (RegistryApi, "x/blobs/latest", false),
        (RegistryApi, "X/tags/list", false),
        (RegistryApi, "x--/tags/list", false),
        (RegistryApi, "tags/list", false),
        (RegistryApi, "a/b/c/d/e/tags/list", false),
        (RegistryApi, "x/manifests/-bad", false),
        (RegistryApi, "x/other", false),
        (RegistryApi, "x/manifests/", false),
        (HttpPath, "", true),
        (HttpPath, "health", true),
        (HttpPath, "api/v1/", true),
    ] {
        check_tail(tail, path, ok);
    }
    let deep = vec!["a"; 33];
    assert!(HttpPath.check(&deep).is_err());
}

// --- Parameters ---

struct P<'a> {
    route: &'a str,
    method: &'a str,
    content_type: Option<&'a str>,
    query: Option<&'a str>,
    body: RequestBody<'a>,
    headers: &'a [(&'a str, &'a [u8])],
}

fn p<'a>(route: &'a str, method: &'a str) -> P<'a> {
    P {
        route,
        method,
        content_type: Some("application/octet-stream"),
        query: Some(""),
        body: RequestBody::Empty,
        headers: &[],
    }
}

fn run(x: &P<'_>) -> Result<CanonicalParams, ParamError> {
    let rule = by_name(x.route).unwrap();
    canonicalize_params(
        rule,
        &RequestParams {
            method: x.method,
            content_type: x.content_type,
            query: x.query,
            body: x.body,
            headers: x.headers,
        },
    )
}

fn check(x: P<'_>, expected: Result<(), ParamError>) {
    let got = run(&x).map(|_| ());
    assert_eq!(
        got, expected,
        "{} {} {:?} {:?}",
        x.method, x.route, x.query, x.body
    );
}

fn form_body(body: &[u8]) -> RequestBody<'_> {
    RequestBody::Buffered(body)
}

const FORM_CT: Option<&str> = Some("application/x-www-form-urlencoded");

#[test]
fn every_refused_parameter_form() {
    use ParamError::*;
    let key = |part, k: &str| UnknownKey {
        part,
        key: k.to_owned(),
    };
    let dup = |part, k: &str| DuplicateKey {
        part,
        key: k.to_owned(),
    };
    let releases = |body| P {
        content_type: FORM_CT,
        body: form_body(body),
        ..p("release.create", "POST")
    };
    // Query-string `env` on a POST: the rack would read it as the form value.
    check(
        P {
            query: Some("env=A%3DB"),
            ..p("release.create", "POST")
        },
        Err(QueryOnNonGet {
            method: "POST".into(),
            key: "env".into(),
        }),
    );
    check(
        P {
            query: Some("env=A%3DB"),
            ..releases(b"build=B1")
        },
        Err(QueryOnNonGet {
            method: "POST".into(),
            key: "env".into(),
        }),
    );
    check(
        P {
            query: Some("x=1"),
            ..p("service.restart", "POST")
        },
        Err(QueryOnNonGet {
            method: "POST".into(),
            key: "x".into(),
        }),
    );
    // Duplicate `env`.
    check(
        releases(b"env=A%3D1&env=A%3D2"),
        Err(dup(Part::Form, "env")),
    );
    check(
        P {
            query: Some("limit=1&limit=2"),
            ..p("release.list", "GET")
        },
        Err(dup(Part::Query, "limit")),
    );
    check(
        P {
            headers: &[("Command", b"ls"), ("command", b"rm")],
            ..p("process.exec", "GET")
        },
        Err(dup(Part::Header, "Command")),
    );
    // Multipart, in any spelling, on any route.
    for ct in [
        "multipart/form-data; boundary=1194a998",
        "Multipart/Form-Data",
        "multipart/mixed",
    ] {
        check(
            P {
                content_type: Some(ct),
                body: RequestBody::Streaming,
                ..p("build.create", "POST")
            },
            Err(Multipart),
        );
        check(
            P {
                content_type: Some(ct),
                ..p("image.proxy", "PUT")
            },
            Err(Multipart),
        );
    }
    // Unknown keys.
    check(
        releases(b"env=A&promote=true"),
        Err(key(Part::Form, "promote")),
    );
    check(releases(b"Env=A"), Err(key(Part::Form, "Env")));
    check(
        P {
            query: Some("limit=1&secrets=true"),
            ..p("release.list", "GET")
        },
        Err(key(Part::Query, "secrets")),
    );
    check(
        P {
            query: Some("limit=1"),
            ..p("release.get", "GET")
        },
        Err(key(Part::Query, "limit")),
    );
    check(
        P {
            query: Some("prefix=x"),
            ..p("object.exists", "HEAD")
        },
        Err(key(Part::Query, "prefix")),
    );
    // A header named like a form or query key of the route.
    check(
        P {
            headers: &[("Env", b"A=B")],
            ..releases(b"build=B1")
        },
        Err(HeaderShadowsParam {
            header: "Env".into(),
        }),
    );
    check(
        P {
            headers: &[("limit", b"100")],
            ..p("release.list", "GET")
        },
        Err(HeaderShadowsParam {
            header: "limit".into(),
        }),
    );
    check(
        P {
            headers: &[("Force_Clear_Cooldown", b"true")],
            ..p("budget.reset", "POST")
        },
        Err(HeaderShadowsParam {
            header: "Force_Clear_Cooldown".into(),
        }),
    );
    // Wrong content types.
    let wrong = |ct: &'static str| ContentType {
        content_type: ct.to_owned(),
    };
    check(
        P {
            content_type: Some("application/json"),
            body: form_body(b"{}"),
            ..p("release.create", "POST")
        },
        Err(wrong("application/json")),
    );
    check(
        P {
            content_type: Some("text/plain"),
            ..p("app.list", "GET")
        },
        Err(wrong("text/plain")),
    );
    check(
        P {
            content_type: FORM_CT,
            body: form_body(b"a=b"),
            ..p("object.create", "POST")
        },
        Err(wrong("application/x-www-form-urlencoded")),
    );
    check(
        P {
            content_type: FORM_CT,
            body: form_body(b"path=/"),
            ..p("proxy.http", "POST")
        },
        Err(wrong("application/x-www-form-urlencoded")),
    );
    check(
        P {
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            body: form_body(b"build=B"),
            ..p("release.create", "POST")
        },
        Err(wrong("application/x-www-form-urlencoded; charset=utf-8")),
    );
    check(
        P {
            content_type: Some("application/octet-stream; x=1"),
            ..p("app.list", "GET")
        },
        Err(wrong("application/octet-stream; x=1")),
    );
    // Bodies where none is taken.
    check(
        P {
            body: RequestBody::Streaming,
            ..p("app.list", "GET")
        },
        Err(UnexpectedBody),
    );
    check(
        P {
            body: form_body(b"env=A"),
            ..p("release.create", "POST")
        },
        Err(UnexpectedBody),
    );
    check(
        P {
            content_type: None,
            body: RequestBody::Streaming,
            ..p("object.create", "POST")
        },
        Err(UnexpectedBody),
    );
    // Malformed encodings.
    let bad = |part, at, what| Malformed { part, at, what };
    check(
        releases(b"env=A;build=B"),
        Err(bad(Part::Form, 5, "a byte outside the query grammar")),
    );
    check(
        releases(b"env=A&&build=B"),
        Err(bad(Part::Form, 6, "empty pair")),
    );
    check(releases(b"env=A&"), Err(bad(Part::Form, 6, "empty pair")));
    check(
        releases(b"env"),
        Err(bad(Part::Form, 0, "a key without '='")),
    );
    check(releases(b"=A"), Err(bad(Part::Form, 0, "an empty key")));
    check(
        releases(b"env=%G0"),
        Err(bad(Part::Form, 4, "a malformed percent-escape")),
    );
    check(
        releases(b"env=a b"),
        Err(bad(Part::Form, 5, "a byte outside the query grammar")),
    );
    check(
        releases(b"env=%FF"),
        Err(NotUtf8 {
            part: Part::Form,
            key: "env".into(),
        }),
    );
    check(
        P {
            query: Some("limit=1;x=2"),
            ..p("release.list", "GET")
        },
        Err(bad(Part::Query, 7, "a byte outside the query grammar")),
    );
    check(
        P {
            headers: &[("Command", b"ls\x01")],
            ..p("process.exec", "GET")
        },
        Err(BadHeaderValue {
            header: "Command".into(),
        }),
    );
    check(
        P {
            headers: &[("Command", b"\xff")],
            ..p("process.exec", "GET")
        },
        Err(NotUtf8 {
            part: Part::Header,
            key: "Command".into(),
        }),
    );
    // Limits.
    let big = vec![b'a'; MAX_FORM_BYTES + 1];
    check(
        P {
            content_type: FORM_CT,
            body: form_body(&big),
            ..p("release.create", "POST")
        },
        Err(FormTooLarge {
            limit: MAX_FORM_BYTES,
        }),
    );
    check(
        P {
            content_type: FORM_CT,
            body: RequestBody::Streaming,
            ..p("release.create", "POST")
        },
        Err(FormNotBuffered),
    );
    let long = "limit=".to_owned() + &"1".repeat(MAX_QUERY_BYTES);
    check(
        P {
            query: Some(&long),
            ..p("release.list", "GET")
        },
        Err(QueryTooLong {
            limit: MAX_QUERY_BYTES,
        }),
    );
    // The opaque proxies: no query key may shadow an option header.
    check(
        P {
            content_type: None,
            query: Some("x-host=evil"),
            ..p("proxy.http", "GET")
        },
        Err(HeaderShadowsParam {
            header: "x-host".into(),
        }),
    );
    check(
        P {
            content_type: None,
            query: Some("n=1&n=2"),
            ..p("image.proxy", "GET")
        },
        Err(dup(Part::Query, "n")),
    );
}

#[test]
fn accepted_forms_are_canonical() {
    // Keys are sorted and re-encoded as Go does; `+` and `%20` both mean a space.
    let c = run(&P {
        content_type: FORM_CT,
        body: form_body(b"url=object%3A%2F%2Fx%2Fk.tgz&description=hi%20there&no-cache=true"),
        ..p("build.create", "POST")
    })
    .unwrap();
    assert_eq!(
        c.body(),
        &ForwardBody::Form(
            b"description=hi+there&no-cache=true&url=object%3A%2F%2Fx%2Fk.tgz".to_vec()
        )
    );
    assert_eq!(c.get("description").as_deref(), Some("hi there"));
    assert_eq!(c.content_type(), Some("application/x-www-form-urlencoded"));
    // Raw routes stream; option headers are parameters; other headers are not.
    let c = run(&P {
        body: RequestBody::Streaming,
        headers: &[
            ("Public", b"false"),
            ("User-Agent", b"convox.go/dev"),
            ("X-Anything", b"1"),
        ],
        ..p("object.create", "POST")
    })
    .unwrap();
    assert_eq!(c.body(), &ForwardBody::Stream);
    assert_eq!(c.params().len(), 1);
    assert_eq!(c.get("Public").as_deref(), Some("false"));
    // Header parameters are recorded in allow-list order whatever their arrival order.
    let c = run(&P {
        headers: &[("tty", b"false"), ("COMMAND", b"ls -la")],
        content_type: None,
        query: None,
        ..p("process.exec", "GET")
    })
    .unwrap();
    let keys: Vec<&str> = c.params().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["Command", "Tty"]);
    assert_eq!(c.params().first().map(|p| p.class), Some(KeyClass::Command));
    // PUT /system: the CLI's constant `Version` header is a parameter there.
    let c = run(&P {
        content_type: FORM_CT,
        body: form_body(b"parameters=k%3Dv"),
        headers: &[("Version", b"dev")],
        ..p("rack.update", "PUT")
    })
    .unwrap();
    assert_eq!(c.get("Version").as_deref(), Some("dev"));
    // Opaque proxy queries are re-encoded and every value is secret.
    let c = run(&P {
        content_type: None,
        query: Some("last=b&n=100"),
        ..p("image.proxy", "GET")
    })
    .unwrap();
    assert_eq!(c.query(), Some("last=b&n=100"));
    let keys: Vec<&str> = c.params().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["last", "n"]);
    assert!(c.params().iter().all(|p| p.class == KeyClass::Secret));
    // `certs --generated` sends a form body on a GET; the rack ignores it, we keep it.
    assert!(
        run(&P {
            content_type: FORM_CT,
            body: form_body(b"generated=true"),
            ..p("cert.list", "GET")
        })
        .is_ok()
    );
    // `budget clear` sends a form body on a DELETE.
    assert!(
        run(&P {
            content_type: FORM_CT,
            body: form_body(b"ack_by=alice"),
            ..p("budget.clear", "DELETE")
        })
        .is_ok()
    );
    // A query key the route lists is fine on a non-GET request with a raw body.
    assert!(
        run(&P {
            query: Some("tar-extra=x"),
            body: RequestBody::Streaming,
            ..p("file.put", "POST")
        })
        .is_ok()
    );
}

// --- The CLI's exact requests (spec Appendix A and §6) ---

/// One captured request: method, target, content type, body and option-bearing headers.
struct Captured {
    method: &'static str,
    target: &'static str,
    content_type: Option<&'static str>,
    body: &'static [u8],
    headers: &'static [(&'static str, &'static [u8])],
}

/// Headers every plain CLI request carries (Appendix A), minus `Host`.
const COMMON: &[(&str, &[u8])] = &[
    ("User-Agent", b"convox.go/dev"),
    ("Accept", b"*/*"),
    ("Authorization", b"Basic Y29udm94OlRPS0VOMTIz"),
    ("Content-Type", b"application/octet-stream"),
    ("Version", b"dev"),
    ("Accept-Encoding", b"gzip"),
];

const OCTET_CT: Option<&str> = Some("application/octet-stream");

const fn get(target: &'static str) -> Captured {
    Captured {
        method: "GET",
        target,
        content_type: OCTET_CT,
        body: b"",
        headers: COMMON,
    }
}

const fn ws(target: &'static str, headers: &'static [(&'static str, &'static [u8])]) -> Captured {
    Captured {
        method: "GET",
        target,
        content_type: None,
        body: b"",
        headers,
    }
}

const CAPTURED: &[Captured] = &[
    // A.1 apps, A.2 ps, A.3 env, A.6 releases, A.7 rack
    get("/apps?"),
    get("/apps/x/processes?"),
    get("/apps/x/budget?"),
    get("/apps/x/releases?limit=1"),
    get("/apps/x/releases/RAAAAAAAAA?"),
    get("/apps/x?"),
    get("/apps/x/releases?"),
    get("/system?"),
    get("/apps/x/configs/cli-env-mask?"),
    // A.4 env set
    Captured {
        method: "POST",
        target: "/apps/x/releases?",
        content_type: Some("application/x-www-form-urlencoded"),
        body: b"env=A%3DB%0AFOO%3Dbar%0ASECRET_TOKEN%3Ds3cr3t",
        headers: COMMON,
    },
    // A.5 logs
    get("/machines?"),
    ws(
        "/apps/x/logs",
        &[
            ("User-Agent", b"convox.go/dev"),
            ("Authorization", b"Basic Y29udm94OlRPS0VOMTIz"),
            ("Connection", b"Upgrade"),
            ("Origin", b"http://127.0.0.1:18080"),
            ("Prefix", b"true"),
            ("Sec-WebSocket-Key", b"1y4rF1VcW2vLEIYpWG8sjg=="),
            ("Sec-WebSocket-Version", b"13"),
            ("Upgrade", b"websocket"),
            ("Version", b"dev"),
        ],
    ),
    // A.8 exec
    ws(
        "/apps/x/processes/web-5d8f7c9b4-abcde/exec",
        &[
            ("User-Agent", b"convox.go/dev"),
            ("Authorization", b"Basic Y29udm94OlRPS0VOMTIz"),
            ("Command", b"ls -la"),
            ("Connection", b"Upgrade"),
            ("Origin", b"http://127.0.0.1:18080"),
            ("Sec-WebSocket-Key", b"yi1fAdGcQ9/LCIPojeHF3A=="),
            ("Sec-WebSocket-Version", b"13"),
            ("Tty", b"false"),
            ("Upgrade", b"websocket"),
            ("Version", b"dev"),
        ],
    ),
    // A.9 run
    Captured {
        method: "POST",
        target: "/apps/x/services/web/processes?",
        content_type: OCTET_CT,
        body: b"",
        headers: &[
            ("User-Agent", b"convox.go/dev"),
            ("Content-Length", b"0"),
            ("Accept", b"*/*"),
            ("Authorization", b"Basic Y29udm94OlRPS0VOMTIz"),
            ("Command", b"sleep 3600"),
            ("Content-Type", b"application/octet-stream"),
            ("Version", b"dev"),
            ("Accept-Encoding", b"gzip"),
        ],
    },
    get("/apps/x/processes/run-web-xyz12?"),
    ws(
        "/apps/x/processes/run-web-xyz12/exec",
        &[
            ("Command", b"bin/migrate"),
            ("Entrypoint", b"true"),
            ("Origin", b"http://127.0.0.1:18080"),
            ("Tty", b"false"),
            ("Version", b"dev"),
        ],
    ),
    Captured {
        method: "DELETE",
        target: "/apps/x/processes/run-web-xyz12?",
        ..get("")
    },
    // Deploy
    Captured {
        method: "POST",
        target: "/apps/x/objects/tmp/01362c476d019add69c8b81a11fa93.tgz?",
        content_type: OCTET_CT,
        body: b"\x1f\x8b\x08\x00",
        headers: COMMON,
    },
    Captured {
        method: "POST",
        target: "/apps/x/builds?",
        content_type: Some("application/x-www-form-urlencoded"),
        body: b"url=object%3A%2F%2Fx%2Ftmp%2F01362c476d019add69c8b81a11fa93.tgz",
        headers: COMMON,
    },
    Captured {
        method: "POST",
        target: "/apps/x/builds?",
        content_type: Some("application/x-www-form-urlencoded"),
        body: b"build-args=A%3D1%2CB%3D2&description=hi+there&manifest=convox.yml&no-cache=true&url=object%3A%2F%2Fx%2Ftmp%2F2c5b01d505ebc34a29a74186c82ae1.tgz&wildcard-domain=true",
        headers: COMMON,
    },
    ws("/apps/x/builds/B000000001/logs", &[("Prefix", b"true")]),
    get("/apps/x/builds/B000000001?"),
    Captured {
        method: "POST",
        target: "/apps/x/releases/R000000001/promote?",
        content_type: Some("application/x-www-form-urlencoded"),
        body: b"force=false",
        headers: COMMON,
    },
    ws("/apps/x/logs", &[("Prefix", b"true"), ("Since", b"5s")]),
    // §3.12 and the other verified snippets
    Captured {
        method: "GET",
        target: "/certificates?",
        content_type: Some("application/x-www-form-urlencoded"),
        body: b"generated=true",
        headers: COMMON,
    },
    Captured {
        method: "POST",
        target: "/apps/x/builds/import?",
        content_type: OCTET_CT,
        body: b"\x1f\x8b",
        headers: COMMON,
    },
    Captured {
        method: "PUT",
        target: "/apps/x/services/web?",
        content_type: Some("application/x-www-form-urlencoded"),
        body: b"count=2&cpu=512&memory=1024",
        headers: COMMON,
    },
    Captured {
        method: "POST",
        target: "/apps/x/services/web/restart?",
        ..get("")
    },
    Captured {
        method: "PUT",
        target: "/apps/x?",
        content_type: Some("application/x-www-form-urlencoded"),
        body: b"lock=true",
        headers: COMMON,
    },
    Captured {
        method: "PUT",
        target: "/apps/x/configs/cli-env-mask?",
        content_type: Some("application/x-www-form-urlencoded"),
        body: b"value=Rk9P",
        headers: COMMON,
    },
    Captured {
        method: "POST",
        target: "/registries?",
        content_type: Some("application/x-www-form-urlencoded"),
        body: b"password=p&server=s&username=u",
        headers: COMMON,
    },
    Captured {
        method: "PUT",
        target: "/system?",
        content_type: Some("application/x-www-form-urlencoded"),
        body: b"parameters=k%3Dv",
        headers: COMMON,
    },
    Captured {
        method: "POST",
        target: "/system/jwt/token?",
        content_type: Some("application/x-www-form-urlencoded"),
        body: b"durationInHour=1&role=read",
        headers: COMMON,
    },
    get("/racks?"),
    ws("/system/logs", &[("Prefix", b"true")]),
];

#[test]
fn the_clis_captured_requests_pass_unchanged() {
    use crate::policy::decide::route;
    for c in CAPTURED {
        let (raw_path, query) = split_target(c.target);
        let path = canonicalize_path(raw_path).unwrap_or_else(|e| panic!("{}: {e}", c.target));
        let m = route(c.method, &path).unwrap_or_else(|e| panic!("{} {}: {e}", c.method, c.target));
        let body = if c.body.is_empty() {
            RequestBody::Empty
        } else if reads_body(c.content_type) {
            RequestBody::Buffered(c.body)
        } else {
            RequestBody::Streaming
        };
        let canonical = canonicalize_params(
            m.rule(),
            &RequestParams {
                method: c.method,
                content_type: c.content_type,
                query,
                body,
                headers: c.headers,
            },
        )
        .unwrap_or_else(|e| panic!("{} {}: {e}", c.method, c.target));
        assert_eq!(canonical.target(&path), c.target, "target");
        assert_eq!(canonical.content_type(), c.content_type, "{}", c.target);
        match canonical.body() {
            ForwardBody::Form(bytes) => assert_eq!(bytes.as_slice(), c.body, "{}", c.target),
            ForwardBody::Empty => assert!(c.body.is_empty(), "{}", c.target),
            ForwardBody::Stream => assert!(!reads_body(c.content_type), "{}", c.target),
        }
    }
}

/// A registry's server is added by a form value and removed by a path tail: a server the
/// removal could not name is refused when added, with the segment and why.
#[test]
fn a_registry_server_is_added_only_as_its_removal_can_name_it() {
    let add = |server: &str| {
        let body = format!("password=p&server={server}&username=u");
        run(&P {
            content_type: FORM_CT,
            body: form_body(body.as_bytes()),
            ..p("registry.add", "POST")
        })
        .map(|_| ())
    };
    // Four segments of 255 bytes each fit the grammar, not a path's 1024 bytes.
    let long = format!("quay.io{}", format!("%2F{}", "a".repeat(255)).repeat(4));
    for ok in [
        "quay.io",
        "localhost:5000",
        "quay.io/org/team",
        "index.docker.io",
    ] {
        assert_eq!(add(ok), Ok(()), "{ok}");
        let path = canonicalize_path(&format!("/registries/{ok}")).unwrap();
        let tail: Vec<&str> = path.segments().skip(1).collect();
        assert_eq!(
            Tail::RegistryServer.check(&tail),
            Ok(()),
            "{ok} is removable"
        );
    }
    for (refused, index) in [
        ("https%3A%2F%2Findex.docker.io%2Fv1%2F", 0),
        ("quay.io%2F..%2Fother", 1),
        ("quay.io%2Forg%2F", 2),
        ("quay.io%2F.", 1),
        ("", 0),
    ]
    .into_iter()
    .chain([(long.as_str(), 4)])
    {
        match add(refused) {
            Err(ParamError::BadValue { part, key, tail }) => {
                assert_eq!((part, key.as_str()), (Part::Form, "server"), "{refused}");
                assert_eq!(
                    (tail.tail, tail.index),
                    (Tail::RegistryServer, index),
                    "{refused}: {}",
                    tail.what
                );
            }
            other => panic!("{refused}: {other:?}"),
        }
    }
    // A URL, as Docker's own config spells servers, is told how to name the server instead.
    match add("https%3A%2F%2Findex.docker.io%2Fv1%2F") {
        Err(ParamError::BadValue { tail, .. }) => {
            assert!(tail.what.contains("with no scheme"), "{}", tail.what);
        }
        other => panic!("{other:?}"),
    }
}
