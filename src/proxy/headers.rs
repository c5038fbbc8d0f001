//! Header hygiene in both directions: what the rack may receive, and what a proxied response
//! must carry.
//!
//! **Invariant:** upstream never sees the caller's credentials, cookies, hop-by-hop headers,
//! claimed actor (`Convox-Actor`, `X-Convox-Actor`) or trace id (`Convox-TID`,
//! `X-Convox-TID`), nor `X-Forwarded-*` from an untrusted peer; it sees the rack password and
//! `X-Convox-Actor: <authenticated principal>`. Every proxied response carries `nosniff` and a
//! `sandbox` CSP and sets no cookie, so rack content can never run script on our origins.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

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

/// The header the rack reads the acting user from.
pub const ACTOR: &str = "x-convox-actor";

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
    let named_by_connection: Vec<String> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(incoming.len() + 2);
    for (name, value) in incoming {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || CALLER_ONLY.contains(&n)
            || named_by_connection.iter().any(|c| c == n)
            || (!trusted_peer && n.starts_with("x-forwarded-"))
            || n == "forwarded" && !trusted_peer
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(header::AUTHORIZATION, rack_authorization.clone());
    out.insert(HeaderName::from_static(ACTOR), actor.clone());
    out
}

/// The caller's address: the peer, or, when the peer is one of the `trusted` proxies, the last
/// address that proxy appended to `X-Forwarded-For`. Both listeners use it, so a caller is the
/// same address to the flood limits and in the log whichever listener it calls.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer.ip()) {
        return peer.ip();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .next_back()
        .unwrap_or(peer.ip())
}

/// Removes hop-by-hop headers and cookies from a rack response and adds the hardening headers.
pub fn harden_response(headers: &mut HeaderMap) {
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
        ] {
            assert!(out.get(gone).is_none(), "{gone} was forwarded");
        }
        assert!(out.get("command").is_some() && out.get("content-type").is_some());
        let trusted = upstream(&incoming, &rack, &actor, true);
        assert!(trusted.get("x-forwarded-for").is_some());
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
}
