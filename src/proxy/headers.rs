//! Header hygiene in both directions: what the rack may receive, and what a proxied response
//! must carry.
//!
//! **Invariant:** upstream never sees the caller's credentials, cookies, hop-by-hop headers,
//! claimed actor (`Convox-Actor`, `X-Convox-Actor`) or trace id (`Convox-TID`,
//! `X-Convox-TID`), nor `X-Forwarded-*` from an untrusted peer, nor any header a route does
//! not list ([`keep_listed`]); it sees the rack password and
//! `X-Convox-Actor: <authenticated principal>`. Every proxied response carries `nosniff` and a
//! `sandbox` CSP and sets no cookie, so rack content can never run script on our origins.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::policy::routes::{Body, Params};

/// RFC 9110 §7.6.1 connection-specific headers, removed at every hop.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers a caller must not be able to pass to the rack.
const CALLER_ONLY: &[&str] = &[
    "authorization",
    "cookie",
    "convox-actor",
    "x-convox-actor",
    "convox-tid",
    "x-convox-tid",
    "host",
];

/// Headers that name the client's address to whoever reads them, as `X-Forwarded-*` do: they
/// pass only from a trusted proxy, so a caller cannot pose as another address to an app behind
/// the rack's HTTP proxy route.
const CLIENT_ADDRESS: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "x-forwarded",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "client-ip",
    "x-true-client-ip",
    "x-envoy-external-address",
];

/// The header the rack reads the acting user from.
pub const ACTOR: &str = "x-convox-actor";

/// Headers the CLI sends on every request that are no parameter of any route: they reach the
/// rack as sent (spec §1.2).
const PASSED: &[&str] = &["accept", "accept-encoding", "user-agent", "version"];

/// Framing, credential and handshake headers, which the proxy itself checks, rewrites or
/// replaces before anything is forwarded ([`upstream`] and the forwarding code decide what of
/// them goes on).
const HANDLED: &[&str] = &[
    "host",
    "authorization",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "origin",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "forwarded",
];

/// Headers some servers read as the request's real method: never forwarded, so a method a
/// route's permission depends on is the one the request line carries.
const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Keeps only the headers a request on `route` may carry to the rack: its option headers (as
/// checked and recorded with its parameters), the CLI's own [`PASSED`] ones, and the ones the
/// proxy handles itself. Anything else is dropped before forwarding, so an option a rack reads
/// that the route table does not list (a newer rack's, say) never reaches it unauthorized and
/// unrecorded. Routes with an opaque body (the registry and HTTP proxies) carry a client's own
/// headers to what is behind the rack, so there only the method overrides go.
pub fn keep_listed(headers: &mut HeaderMap, route: &Params) {
    let opaque = route.body == Body::Opaque;
    let unlisted: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            if METHOD_OVERRIDES.contains(&n) {
                return true;
            }
            !opaque
                && !PASSED.contains(&n)
                && !HANDLED.contains(&n)
                && !n.starts_with("x-forwarded-")
                && !route.headers.iter().any(|o| o.name.eq_ignore_ascii_case(n))
        })
        .cloned()
        .collect();
    for name in unlisted {
        headers.remove(name);
    }
}

/// The headers to send upstream for a request that came in with `incoming`.
///
/// `rack_authorization` is the `Basic` value built from the rack password; `actor` is the
/// authenticated principal; `trusted_peer` says whether the caller's `X-Forwarded-*` may pass.
pub fn upstream(
    incoming: &HeaderMap,
    rack_authorization: &HeaderValue,
    actor: &HeaderValue,
    trusted_peer: bool,
) -> HeaderMap {
    let named: Vec<&str> = connection_named(incoming).collect();
    let mut out = HeaderMap::with_capacity(incoming.len() + 2);
    for (name, value) in incoming {
        let n = name.as_str();
        if listed(n, HOP_BY_HOP)
            || listed(n, CALLER_ONLY)
            || named.iter().any(|c| c.eq_ignore_ascii_case(n))
            || (!trusted_peer && (forwarded_for(n) || listed(n, CLIENT_ADDRESS)))
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(header::AUTHORIZATION, rack_authorization.clone());
    out.insert(HeaderName::from_static(ACTOR), actor.clone());
    out
}

/// Whether header `name` (lower case, as hyper gives it) is one of `list`, `_` read as `-`:
/// what the rack's HTTP proxy route reaches may be a CGI-style server (Rack, WSGI, PHP), which
/// reads `X_Convox_Actor` and `X-Convox-Actor` as one `HTTP_X_CONVOX_ACTOR`.
fn listed(name: &str, list: &[&str]) -> bool {
    list.iter().any(|l| same_name(name, l))
}

/// `X-Forwarded-*`, any spelling [`listed`] reads as it.
fn forwarded_for(name: &str) -> bool {
    const PREFIX: &str = "x-forwarded-";
    name.len() > PREFIX.len()
        && name
            .get(..PREFIX.len())
            .is_some_and(|p| same_name(p, PREFIX))
}

fn same_name(name: &str, listed: &str) -> bool {
    let dashed = |b: &u8| if *b == b'_' { b'-' } else { *b };
    name.len() == listed.len() && name.as_bytes().iter().map(dashed).eq(listed.bytes())
}

/// The field names the caller's `Connection` lists: fields meant for this hop only. Read as
/// bytes, so a value with a byte outside ASCII still names the fields beside it.
fn connection_named(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter_map(|t| std::str::from_utf8(t).ok())
        .filter(|t| !t.is_empty())
}

/// Removes the fields the caller's `Connection` names (other than the hop-by-hop ones
/// themselves): they are meant for this hop only and never reach the rack, so the proxy does
/// not read them as parameters, authorize or record them either. What is checked is what is
/// forwarded.
pub fn drop_connection_named(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_named(headers)
        .filter(|t| {
            !["keep-alive", "close", "upgrade"]
                .iter()
                .any(|h| t.eq_ignore_ascii_case(h))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
}

/// Whether `ip` is one of the `trusted` proxies. Addresses compare in canonical form: on a
/// dual-stack listener an IPv4 proxy connects as its IPv4-mapped IPv6 address.
pub fn is_trusted(ip: IpAddr, trusted: &[IpAddr]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|t| t.to_canonical() == ip)
}

/// The scheme the gateway is reached by, as a browser's `Origin` names it: behind a trusted
/// proxy, what its `X-Forwarded-Proto` says (its first value), since its callers reach it, not
/// the gateway; else `https` on a listener that terminates TLS; `None`, either, where the
/// gateway cannot know (plain HTTP with no word from a trusted proxy: a TLS terminator on
/// loopback not named as trusted, say).
pub fn public_scheme(
    serves_tls: bool,
    trusted_peer: bool,
    headers: &HeaderMap,
) -> Option<&'static str> {
    let forwarded = || {
        let said = headers.get("x-forwarded-proto")?.to_str().ok()?;
        let first = said.split(',').next().unwrap_or_default().trim();
        ["https", "http"]
            .into_iter()
            .find(|s| s.eq_ignore_ascii_case(first))
    };
    match trusted_peer.then(forwarded).flatten() {
        Some(scheme) => Some(scheme),
        None => serves_tls.then_some("https"),
    }
}

/// The caller's address. A peer that is not a trusted proxy is the caller. Behind trusted
/// proxies `X-Forwarded-For` is read from the right, as each proxy appends the address it saw:
/// the first entry that is not itself a trusted proxy is the caller. An entry that is not an
/// address (nor `address:port`) ends the walk at the hop before it, since everything to its
/// left may be the caller's own writing. Both listeners use it, so a caller is the same address
/// to the flood limits and in the log whichever listener it calls.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let mut caller = peer.ip().to_canonical();
    if !is_trusted(caller, trusted) {
        return caller;
    }
    // Split as bytes: a line holding a byte that is not visible ASCII is still read entry by
    // entry, so the entries a proxy appended to the caller's own line are never dropped with it.
    let entries: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    for entry in entries.iter().rev() {
        let entry = std::str::from_utf8(entry).unwrap_or_default();
        let bracketed = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']'));
        let Some(ip) = entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
            .or_else(|| {
                bracketed
                    .and_then(|e| e.parse::<std::net::Ipv6Addr>().ok())
                    .map(IpAddr::V6)
            })
        else {
            return caller;
        };
        caller = ip.to_canonical();
        if !is_trusted(caller, trusted) {
            return caller;
        }
    }
    caller
}

/// Removes hop-by-hop headers (those the answer's `Connection` names too) and cookies from a
/// rack response and adds the hardening headers. A `Content-Length` sent beside
/// `Transfer-Encoding` goes as well: the body was read by its chunks, and hyper would frame the
/// caller's answer by that length, cutting or breaking it.
pub fn harden_response(headers: &mut HeaderMap) {
    drop_connection_named(headers);
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
    headers.remove(header::SET_COOKIE);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
}

/// The one value of header `name`: `None` when it is absent, sent more than once, or not
/// visible ASCII. What is read once is what is recorded and forwarded, never a first of many.
pub fn single(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    /// A trusted proxy's word decides, and only `http` or `https`; else TLS does.
    #[test]
    fn the_public_scheme_is_known_from_tls_or_a_trusted_proxy() {
        let said = map(&[("x-forwarded-proto", "HTTPS, http")]);
        let plain = map(&[("x-forwarded-proto", "http")]);
        let odd = map(&[("x-forwarded-proto", "ws")]);
        let none = map(&[]);
        assert_eq!(public_scheme(true, false, &plain), Some("https"));
        // A proxy that serves its callers in clear and re-encrypts to the gateway.
        assert_eq!(public_scheme(true, true, &plain), Some("http"));
        assert_eq!(public_scheme(true, true, &none), Some("https"));
        assert_eq!(public_scheme(false, true, &said), Some("https"));
        assert_eq!(public_scheme(false, true, &plain), Some("http"));
        assert_eq!(public_scheme(false, true, &odd), None);
        assert_eq!(public_scheme(false, true, &none), None);
        assert_eq!(
            public_scheme(false, false, &said),
            None,
            "an untrusted peer's word"
        );
    }

    #[test]
    fn callers_cannot_pass_credentials_actor_or_hop_headers_upstream() {
        let incoming = map(&[
            ("authorization", "Basic Y29udm94OnJnd18="),
            ("cookie", "session=1"),
            ("convox-actor", "mallory"),
            ("x-convox-actor", "mallory"),
            ("x-convox-tid", "t"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("true-client-ip", "10.0.0.1"),
            ("x-forwarded", "for=10.0.0.1"),
            ("x-originating-ip", "10.0.0.1"),
            ("client-ip", "10.0.0.1"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("command", "ls -la"),
        ]);
        let rack = HeaderValue::from_static("Basic cmFjaw==");
        let actor = HeaderValue::from_static("alice@example.com");
        let out = upstream(&incoming, &rack, &actor, false);
        assert_eq!(out.get("authorization"), Some(&rack));
        assert_eq!(out.get_all("x-convox-actor").iter().count(), 1);
        assert_eq!(out.get("x-convox-actor"), Some(&actor));
        for gone in [
            "cookie",
            "convox-actor",
            "x-convox-tid",
            "connection",
            "x-secret",
            "te",
            "x-forwarded-for",
            "forwarded",
            "x-real-ip",
            "true-client-ip",
            "x-forwarded",
            "x-originating-ip",
            "client-ip",
        ] {
            assert!(out.get(gone).is_none(), "{gone} was forwarded");
        }
        assert!(out.get("command").is_some() && out.get("content-type").is_some());
        let trusted = upstream(&incoming, &rack, &actor, true);
        for kept in [
            "x-forwarded-for",
            "forwarded",
            "x-real-ip",
            "true-client-ip",
        ] {
            assert!(trusted.get(kept).is_some(), "{kept} from a trusted proxy");
        }
    }

    /// A CGI-style server behind the rack's HTTP proxy route reads `_` as `-`: the underscore
    /// spellings of the actor, TID and client-address headers are the caller's all the same.
    #[test]
    fn underscore_spellings_of_caller_only_headers_do_not_pass() {
        let incoming = map(&[
            ("convox_actor", "mallory"),
            ("x_convox_actor", "mallory"),
            ("x-convox_tid", "t"),
            ("x_forwarded_for", "10.0.0.1"),
            ("x_real_ip", "10.0.0.1"),
            ("proxy_authorization", "Basic eA=="),
            ("x_custom", "kept"),
        ]);
        let rack = HeaderValue::from_static("Basic cmFjaw==");
        let actor = HeaderValue::from_static("alice@example.com");
        let out = upstream(&incoming, &rack, &actor, false);
        for gone in [
            "convox_actor",
            "x_convox_actor",
            "x-convox_tid",
            "x_forwarded_for",
            "x_real_ip",
            "proxy_authorization",
        ] {
            assert!(out.get(gone).is_none(), "{gone} was forwarded");
        }
        assert_eq!(
            out.get("x_custom").map(HeaderValue::as_bytes),
            Some(&b"kept"[..])
        );
        let trusted = upstream(&incoming, &rack, &actor, true);
        assert!(trusted.get("x_forwarded_for").is_some());
        assert!(trusted.get("x_convox_actor").is_none());
    }

    /// A `Connection` value holding a byte outside ASCII still names the fields beside it.
    #[test]
    fn connection_names_beside_a_non_ascii_byte_are_hop_by_hop() {
        let mut incoming = map(&[("x-hop", "hop-only"), ("x-kept", "1")]);
        incoming.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-hop, \xff").unwrap(),
        );
        let rack = HeaderValue::from_static("Basic cmFjaw==");
        let actor = HeaderValue::from_static("alice@example.com");
        let out = upstream(&incoming, &rack, &actor, false);
        assert!(out.get("x-hop").is_none(), "x-hop was forwarded");
        assert!(out.get("x-kept").is_some());
        drop_connection_named(&mut incoming);
        assert!(incoming.get("x-hop").is_none() && incoming.get("x-kept").is_some());
    }

    #[test]
    fn the_caller_is_the_first_untrusted_address_from_the_right() {
        let trusted: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "10.0.0.6".parse().unwrap()];
        let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 40000);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let xff = |v: &str| map(&[("x-forwarded-for", v)]);
        // An untrusted peer's header counts for nothing.
        assert_eq!(
            client_ip(at("203.0.113.9"), &xff("1.2.3.4"), &trusted),
            ip("203.0.113.9")
        );
        // The caller wrote the leftmost entry; the proxy appended the real address.
        assert_eq!(
            client_ip(at("10.0.0.5"), &xff("1.2.3.4, 198.51.100.7"), &trusted),
            ip("198.51.100.7")
        );
        // Two trusted proxies in a row: past both.
        assert_eq!(
            client_ip(
                at("10.0.0.5"),
                &xff("1.2.3.4, 198.51.100.7, 10.0.0.6"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // A proxy that appends `address:port`.
        assert_eq!(
            client_ip(
                at("10.0.0.5"),
                &xff("1.2.3.4, 198.51.100.7:51234"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // An IPv6 address in brackets, with a port or without.
        assert_eq!(
            client_ip(at("10.0.0.5"), &xff("1.2.3.4, [2001:db8::7]"), &trusted),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_ip(at("10.0.0.5"), &xff("1.2.3.4, [2001:db8::7]:443"), &trusted),
            ip("2001:db8::7")
        );
        // An entry that is not an address stops the walk at the hop that wrote it.
        assert_eq!(
            client_ip(at("10.0.0.5"), &xff("1.2.3.4, unknown"), &trusted),
            ip("10.0.0.5")
        );
        // A dual-stack listener sees an IPv4 proxy as IPv4-mapped; it is still trusted.
        assert_eq!(
            client_ip(at("::ffff:10.0.0.5"), &xff("198.51.100.7"), &trusted),
            ip("198.51.100.7")
        );
        // A byte that is not visible ASCII in the caller's part of the line (a proxy appends to
        // it) does not drop the address the proxy appended.
        let mut raw = HeaderMap::new();
        raw.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\x80, 198.51.100.7").unwrap(),
        );
        assert_eq!(
            client_ip(at("10.0.0.5"), &raw, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn responses_are_hardened_and_set_no_cookie() {
        let mut h = map(&[
            ("set-cookie", "a=b"),
            ("connection", "close"),
            ("content-type", "text/html"),
        ]);
        harden_response(&mut h);
        assert!(h.get("set-cookie").is_none() && h.get("connection").is_none());
        assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(h.get("content-security-policy").unwrap(), "sandbox");
    }

    /// What the rack's `Connection` names is its hop's alone, and a length beside chunks is not
    /// the length of the body hyper read.
    #[test]
    fn a_response_loses_what_its_connection_names_and_a_length_beside_chunks() {
        let mut h = map(&[
            ("connection", "x-hop, keep-alive"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("content-length", "10"),
            ("content-type", "text/plain"),
        ]);
        harden_response(&mut h);
        assert!(h.get("x-hop").is_none(), "{h:?}");
        assert!(h.get("content-length").is_none(), "{h:?}");
        assert_eq!(h.get("content-type").unwrap(), "text/plain");
        let mut sized = map(&[("content-length", "10")]);
        harden_response(&mut sized);
        assert_eq!(sized.get("content-length").unwrap(), "10");
    }
}
