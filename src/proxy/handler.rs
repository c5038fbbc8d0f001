//! One proxied call, top to bottom: limit, authenticate, canonicalize, route, authorize, record,
//! forward, record the completion.
//!
//! **Invariant:** the steps run in this order and each refusal leaves before the next step;
//! unauthenticated refusals are counted (never one event each), authenticated ones are
//! recorded one by one, and the rack is reached only through `forward`, which takes a
//! [`Recorded`] call.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use events::event::{CommandCompleted, Decision, Event, Principal, RequestId, TokenId};
use events::store::redb::FollowUp;
use events::store::{AppendError, EventStore, Guard, Rejected};
use events::time::{Clock, Timestamp};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use projections::tokens::Token;

use super::answers;
use super::intent::{self, Recorded};
use super::mask::{self, ResponseMask, StreamScrub, Visibility};
use super::metered::{Meter, Metered};
use super::rack_pool::SendError;
use super::respond::{Answer, ProxyError};
use super::revocable::{Credential, Revocable};
use super::scrubbed_body::ScrubbedBody;
use super::state::ProxyState;
use super::streams::Registration;
use super::upstream::Upstream;
use super::{build_logs, build_process, build_request};
use super::{headers, redact, ws};
use crate::identity::credentials::Schemes;
use crate::identity::{TokenCall, authenticate};
use crate::keys::AuditKey;
use crate::policy::canonical::{self, CanonicalParams, ForwardBody, RequestBody, RequestParams};
use crate::policy::routes::Secrecy;
use crate::policy::{self, Grant, Perm, PermSet};

/// Characters a path segment cannot carry literally when forwarded.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']');

/// Who is calling, once authenticated: what every recorded event of this call carries.
struct Caller {
    token: Token,
    ip: IpAddr,
    user_agent: String,
    request_id: String,
}

/// A permitted call, ready to forward once recorded.
pub struct RackCall {
    method: Method,
    target: String,
    headers: http::HeaderMap,
    body: CallBody,
    /// Who calls (`X-Convox-Actor` upstream), and what they must go on holding while the
    /// call's bodies stream.
    standing: StillStanding,
    request_id: String,
    started: Instant,
    trusted_peer: bool,
    /// Values the call makes the rack hold that the caller may not read: an error answer to
    /// it, which may quote them, is withheld.
    hides: Option<Hidden>,
    /// The rack itself answers (not a service or registry behind it): its 401 can only be a
    /// refusal of the gateway's own credentials.
    rack_answers: bool,
    /// The answer holds secrets by design (a release's env, a registry's password): its digest
    /// is not recorded (see [`Pending::hash_answer`]).
    answer_holds_secrets: bool,
    /// The caller's body holds secrets by design: its digest is not recorded either.
    body_holds_secrets: bool,
}

/// Values a call makes the rack hold that its caller may not read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hidden {
    /// Restored for the masks the caller posted.
    Restored,
    /// Copied by the rack from an earlier release: a release created without an `env` forks
    /// the newest (or `parent-release`'s) environment.
    Copied,
    /// Filled in by the rack: promoting a release loads its manifest with the release's env
    /// interpolated and renders the env into Kubernetes specs, and a failure of either quotes
    /// what it could not read (YAML quotes a scalar, or its first 7 bytes when longer than 10).
    /// Running a process of a named release (`Release`) loads that manifest the same way; one
    /// of the current release was loaded so when it was promoted, and fails nothing new.
    Filled,
}

impl Hidden {
    /// Whether the rack's error `text` is, byte for byte, one of its own fixed promote
    /// refusals (`ReleasePromoteValidate`, before any manifest is read), which quote nothing of
    /// the env: a caller must see why a promote that raced another, or of the wrong release,
    /// failed. Only whole texts match, as `http.Error` writes them or as JSON, so what passes
    /// is exactly a fixed text.
    fn passes(self, text: &[u8]) -> bool {
        const FIXED: &[&str] = &[
            "app is currently updating",
            "can not promote a release with an empty manifest",
            "can not promote an older release, try rollback",
        ];
        self == Hidden::Filled
            && FIXED.iter().any(|fixed| {
                text == format!("{fixed}\n").as_bytes()
                    || text == format!("{{\"error\":\"{fixed}\"}}\n").as_bytes()
            })
    }
}

enum CallBody {
    Empty,
    Form(Vec<u8>),
    Stream(Body),
}

/// How the answer of a masking route is rewritten for this caller before it leaves (see
/// [`mask`]): the whole answer is read, rewritten, and only then sent.
enum Rewrite {
    /// A release answer: values this caller may not read masked, and the rack password taken
    /// out of the manifest.
    Release {
        app: String,
        who: Visibility,
        protected: Vec<String>,
    },
    /// A release answer for a caller who may read every value of an app with no protected
    /// keys: only the rack password taken out of the manifest.
    ReleaseManifest,
    /// A build answer: the rack password taken out; with `defaults`, the env defaults in its
    /// manifest masked for a caller who may not read every value (as a release's env is).
    Build {
        defaults: Option<(String, Visibility, Vec<String>)>,
    },
    /// A process answer for a caller who may not read secrets: commands scrubbed.
    Process,
}

/// What the gateway does to a 2xx answer of a masking route before the caller gets it; either
/// way it asks the rack for the answer uncompressed.
enum Answering {
    /// Read whole, then rewritten.
    Rewrite(Rewrite),
    /// Streamed, the rack password taken out anywhere in it as it passes ([`ScrubbedBody`]):
    /// an answer that quotes pods' logs, which can be large.
    Scrubbed,
}

/// The proxy's single entry point: every request of every path comes here.
pub async fn handle(state: Arc<ProxyState>, peer: SocketAddr, req: Request) -> Response {
    let request_id = state.next_request_id();
    match pipeline(&state, peer, req, &request_id).await {
        Ok(response) => response,
        Err(error) => Answer { error, request_id }.into_response(),
    }
}

async fn pipeline(
    state: &Arc<ProxyState>,
    peer: SocketAddr,
    req: Request,
    request_id: &str,
) -> Result<Response, ProxyError> {
    let now = Clock.now();
    let ip = state.client_ip(peer, req.headers());
    if !state.allow(ip, now) {
        return Err(ProxyError::RateLimited);
    }
    let head: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + uri_len(req.uri());
    if head > crate::server::MAX_HEAD_BYTES {
        state.count_denial(ip, "oversized_header_block", now);
        return Err(ProxyError::HeadersTooLarge(crate::server::MAX_HEAD_BYTES));
    }
    let caller = authenticate(state, &req, ip, request_id)?;
    let (mut parts, body) = req.into_parts();
    headers::drop_connection_named(&mut parts.headers);
    let raw_target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    // A request with no query still ends in `?` on the wire when the CLI sent one.
    let (raw_path, query) = canonical::split_target(&raw_target);
    let method = parts.method.as_str().to_owned();
    let path = match canonical::canonicalize_path(raw_path) {
        Ok(p) => p,
        Err(e) => {
            let recorded = redact::unrouted_path(raw_path);
            record_denial(state, &caller, &method, &recorded, e.kind(), None, &[]).await?;
            return Err(ProxyError::BadRequest {
                kind: e.kind(),
                what: e.to_string(),
            });
        }
    };
    let matched = match policy::route(&method, &path) {
        Ok(m) => m,
        Err(e) => {
            let recorded = redact::unrouted_path(path.as_str());
            record_denial(state, &caller, &method, &recorded, e.kind(), None, &[]).await?;
            return Err(match e {
                policy::Unknown::BadTail { .. } => ProxyError::BadRequest {
                    kind: e.kind(),
                    what: e.to_string(),
                },
                policy::Unknown::NoRoute | policy::Unknown::ReservedApp(_) => {
                    ProxyError::UnknownRoute
                }
            });
        }
    };
    let recorded = redact::routed_path(matched.rule(), path.as_str());
    let upgrade = ws::asks_for_websocket(&parts.headers);
    if matched.expects_upgrade() != upgrade {
        record_denial(
            state,
            &caller,
            &method,
            &recorded,
            "unknown_route",
            None,
            &[],
        )
        .await?;
        return Err(ProxyError::UnknownRoute);
    }
    if !same_origin(
        &parts.headers,
        state.public_scheme(peer.ip(), &parts.headers),
    ) {
        // A browser holding credentials (a cached Basic login) must not be made to call the
        // rack, or open a socket to it, from another site. The CLI sends no Origin.
        record_denial(
            state,
            &caller,
            &method,
            &recorded,
            "cross_origin",
            None,
            &[],
        )
        .await?;
        return Err(ProxyError::Forbidden {
            kind: "cross_origin",
            what: "the Origin of this request is not the gateway's host".into(),
        });
    }
    let ws_key = if upgrade {
        // hyper upgrades HTTP/1.1 connections only: an HTTP/1.0 upgrade is refused here, before
        // anything is recorded as allowed or sent to the rack.
        let upgradable = parts
            .extensions
            .get::<hyper::upgrade::OnUpgrade>()
            .is_some();
        let checked = ws::check_upgrade(&parts.method, &parts.headers)
            .map_err(|e| e.to_string())
            .and_then(|key| {
                upgradable.then_some(key).ok_or_else(|| {
                    "this connection cannot be upgraded (a WebSocket needs HTTP/1.1)".to_owned()
                })
            });
        match checked {
            Ok(key) => Some(key),
            Err(what) => {
                record_denial(
                    state,
                    &caller,
                    &method,
                    &recorded,
                    "invalid_upgrade",
                    None,
                    &[],
                )
                .await?;
                return Err(ProxyError::BadRequest {
                    kind: "invalid_upgrade",
                    what,
                });
            }
        }
    } else {
        None
    };
    if let Err((kind, what)) = check_framing(&parts.headers) {
        record_denial(state, &caller, &method, &recorded, kind, None, &[]).await?;
        return Err(ProxyError::BadRequest { kind, what });
    }
    let content_type = headers::single(&parts.headers, header::CONTENT_TYPE);
    let (form, body) = match read_form(&content_type, body, state.limits.form_timeout).await {
        Ok(read) => read,
        Err(e) => {
            record_denial(state, &caller, &method, &recorded, e.kind(), None, &[]).await?;
            return Err(e);
        }
    };
    let req_body = match (&form, body_is_empty(&parts.headers)) {
        (Some(f), _) => RequestBody::Buffered(f),
        (None, true) => RequestBody::Empty,
        (None, false) => RequestBody::Streaming,
    };
    let params = match canonical::canonicalize_params(
        matched.rule(),
        &RequestParams {
            method: &method,
            content_type: content_type.as_deref(),
            query,
            body: req_body,
            headers: &header_pairs(&parts.headers),
        },
    ) {
        Ok(p) => p,
        Err(e) => {
            let (kind, what) = (e.kind(), e.to_string());
            record_denial(state, &caller, &method, &recorded, kind, None, &[]).await?;
            return Err(ProxyError::BadRequest { kind, what });
        }
    };
    // The rack takes a budget or scaling action's actor from `ack_by`, and the CLI sends its
    // `$CONVOX_ACTOR`, else `$USER`: the caller's own name stands there instead, as the rack
    // is told in `X-Convox-Actor`. Canonicalized again: what is recorded is what is forwarded.
    // Only a form value: the proxy routes pass any query on, `ack_by` too, with their body.
    let params = match params.form_value("ack_by") {
        Some(ack_by) if ack_by != caller.token.owner.0 => {
            let form = canonical::form_with(params.params(), "ack_by", &caller.token.owner.0);
            match with_form(
                matched.rule(),
                &method,
                content_type.as_deref(),
                query,
                &parts.headers,
                &form,
            ) {
                Ok(p) => p,
                Err(e) => {
                    let (kind, what) = (e.kind(), e.to_string());
                    record_denial(state, &caller, &method, &recorded, kind, None, &[]).await?;
                    return Err(ProxyError::BadRequest { kind, what });
                }
            }
        }
        _ => params,
    };
    headers::keep_listed(&mut parts.headers, &matched.rule().params);
    let recorded_params = redact::params(params.params(), &state.keys.audit);
    // The token and its owner as they are now, after the body was read: a token revoked or
    // expired while a slow body came in stops here.
    let (usable, grant) = standing_now(state, &caller);
    if !usable {
        record_denial(
            state,
            &caller,
            &method,
            &recorded,
            "token_no_longer_usable",
            None,
            &recorded_params,
        )
        .await?;
        return Err(ProxyError::Unauthenticated("token_no_longer_usable"));
    }
    // The CLI sends these before every socket, whatever the token's scopes, and the answer
    // reveals and reaches nothing: the owner's standing is what counts. A token whose owner
    // was disabled or holds no role is refused below like any call, not recorded as allowed.
    if matched.answered_locally()
        && !matches!(
            grant.check(matched.rule().permission),
            Err(reason) if !matches!(reason, policy::DenyReason::TokenScope(_))
        )
    {
        record_local(state, &caller, &method, &recorded).await?;
        return Err(ProxyError::UnknownRoute);
    }
    let stream = StreamKind::of(matched.rule().name);
    let permitted = match policy::authorize(&matched, &|k| params.get(k), &grant) {
        Ok(p) => p,
        Err(denied) => {
            let perm = policy::decide::requirements(&matched, &|k| params.get(k))
                .last()
                .map(|p| p.as_str().to_owned());
            record_denial(
                state,
                &caller,
                &method,
                &recorded,
                denied.kind(),
                perm,
                &recorded_params,
            )
            .await?;
            if ws_key.is_some() {
                // The CLI shows a WebSocket refusal only from inside the socket: upgrade, then
                // say why.
                // A maker's refusal says what to do itself: a new token, not a role.
                let reason = match denied.reason() {
                    policy::DenyReason::MakerDisabled | policy::DenyReason::MakerLacks(_) => {
                        denied.to_string()
                    }
                    _ => format!(
                        "{denied}; ask a gateway admin for a role or token scope that grants it"
                    ),
                };
                return Ok(refuse_in_socket(parts, ws_key, reason, stream.exit_code));
            }
            return Err(ProxyError::Forbidden {
                kind: denied.kind(),
                what: denied.to_string(),
            });
        }
    };
    let app = matched.var("app").unwrap_or_default().to_owned();
    let protected = protected_env(state, &app);
    // Refused by its parameters alone, or by what the rack holds under its path: the latter
    // judged from a lookup of the call's own, recorded first (the call is then guarded as it
    // is sequenced).
    let mut refusal = call_refusal(
        &matched,
        &params,
        &app,
        &protected,
        Visibility::of(&grant),
        permitted.permission(),
    )
    .map(|(kind, perm, what)| {
        let error = ProxyError::Forbidden {
            kind,
            what: what.clone(),
        };
        (kind, perm, what, error)
    });
    if refusal.is_none()
        && !grant.holds(Perm::BuildExec)
        && let Some(what) = names_the_build_service(&matched)
    {
        let error = ProxyError::Forbidden {
            kind: "build_process",
            what: what.clone(),
        };
        refusal = Some(("build_process", Perm::BuildExec, what, error));
    }
    let mut looked_up = false;
    // The permission a refusal found by a lookup is recorded under: the one that would have
    // allowed the call, or the call's own where none would.
    let check = match matched.rule().name {
        "build.logs" if !grant.holds(Perm::ObjectRead) => Some(Perm::ObjectRead),
        "build.logs" => Some(permitted.permission()),
        name if policy::routes::INTO_PROCESS.contains(&name) && !grant.holds(Perm::BuildExec) => {
            Some(Perm::BuildExec)
        }
        "release.promote" if !protected.is_empty() => Some(permitted.permission()),
        _ => None,
    };
    if refusal.is_none()
        && let Some(needed) = check
    {
        looked_up = true;
        let id = matched.var("id").unwrap_or_default();
        let judged = match matched.rule().name {
            "build.logs" => {
                let reads_objects = grant.holds(Perm::ObjectRead);
                foreign_build_log(
                    state,
                    &caller,
                    &app,
                    id,
                    reads_objects,
                    permitted.required(),
                )
                .await
            }
            "release.promote" => {
                promote_refusal(state, &caller, &app, id, &protected, permitted.required()).await
            }
            _ => {
                let pid = matched.var("pid").unwrap_or_default();
                build_process_refusal(state, &caller, &app, pid, permitted.required()).await
            }
        };
        refusal = match judged {
            // What the lookup found: recorded under the permission that would have allowed it.
            Ok(refused) => refused.map(|(kind, reason)| {
                let error = ProxyError::Forbidden {
                    kind,
                    what: reason.clone(),
                };
                (kind, needed, reason, error)
            }),
            // The token or its owner changed while the lookup was sequenced: the call itself is
            // refused, under its own permission.
            Err(e @ (ProxyError::Unauthenticated(_) | ProxyError::Forbidden { .. })) => Some((
                e.kind(),
                permitted.permission(),
                CHANGED_WHILE_OPENING.to_owned(),
                e,
            )),
            Err(e) => return Err(e),
        };
    }
    if let Some((kind, perm, reason, error)) = refusal {
        record_denial(
            state,
            &caller,
            &method,
            &recorded,
            kind,
            Some(perm.as_str().to_owned()),
            &recorded_params,
        )
        .await?;
        if ws_key.is_some() {
            return Ok(refuse_in_socket(parts, ws_key, reason, stream.exit_code));
        }
        return Err(error);
    }
    if let Some(key) = ws_key {
        let still_permitted = || {
            let (usable, grant) = standing_now(state, &caller);
            if !usable {
                Err(NO_LONGER_USABLE)
            } else if policy::authorize(&matched, &|k| params.get(k), &grant).is_err() {
                Err(NO_LONGER_PERMITTED)
            } else {
                Ok(())
            }
        };
        return open_stream(
            state,
            &caller,
            parts,
            key,
            &method,
            &path,
            &params,
            permitted.permission().as_str(),
            permitted.required(),
            stream,
            recorded_params,
            request_id,
            peer,
            &still_permitted,
        )
        .await;
    }
    // Secrets (issue 3, point 8): masked values in a posted env are restored, protected keys
    // kept; the answer of a masking route is rewritten for this caller.
    let mut params = params;
    let mut recorded_params = recorded_params;
    let mut restored_any = false;
    if let Some(env) = params
        .get("env")
        .filter(|_| matched.rule().name == "release.create")
        && mask::needs_current_env(&env, &protected)
    {
        looked_up = true;
        let current = match current_env(
            state,
            &caller,
            &app,
            "env_restore_lookup",
            permitted.required(),
        )
        .await
        {
            Ok(current) => current,
            Err(e) => {
                // The call itself is recorded too: refused, because it could not be checked,
                // or because its token or owner changed meanwhile.
                let kind = match &e {
                    ProxyError::Unauthenticated(_) | ProxyError::Forbidden { .. } => e.kind(),
                    _ => "env_lookup_failed",
                };
                record_denial(
                    state,
                    &caller,
                    &method,
                    &recorded,
                    kind,
                    Some(Perm::EnvSet.as_str().to_owned()),
                    &recorded_params,
                )
                .await?;
                return Err(e);
            }
        };
        let refused =
            match mask::restore_env_param(&env, &app, &current, &state.keys.audit, &protected) {
                Ok(restored) if restored == env => None,
                // A value longer than its mask lengthens its line: judged again as restored.
                Ok(restored) if let Some(line) = mask::overlong_line(&restored) => {
                    let kind = "env_line_too_long";
                    let what = format!(
                        "env line {line} is longer than the {} bytes the rack reads in a line \
                         once the gateway restored the masked value in it; the rack would stop \
                         reading the env there",
                        mask::ENV_LINE_MAX
                    );
                    Some((kind, ProxyError::BadRequest { kind, what }))
                }
                Ok(restored) => {
                    restored_any = true;
                    let form = canonical::form_with(params.params(), "env", &restored);
                    match with_form(
                        matched.rule(),
                        &method,
                        content_type.as_deref(),
                        query,
                        &parts.headers,
                        &form,
                    ) {
                        Ok(restored) => {
                            params = restored;
                            recorded_params = redact::params(params.params(), &state.keys.audit);
                            None
                        }
                        // The restored form is refused (too large, say), like the caller's own.
                        Err(e) => Some((
                            e.kind(),
                            ProxyError::BadRequest {
                                kind: e.kind(),
                                what: e.to_string(),
                            },
                        )),
                    }
                }
                Err(e) => Some((
                    e.kind(),
                    ProxyError::Forbidden {
                        kind: e.kind(),
                        what: e.to_string(),
                    },
                )),
            };
        if let Some((kind, error)) = refused {
            record_denial(
                state,
                &caller,
                &method,
                &recorded,
                kind,
                Some(Perm::EnvSet.as_str().to_owned()),
                &recorded_params,
            )
            .await?;
            return Err(error);
        }
    }
    let reads_all = matches!(Visibility::of(&grant), Visibility::All) && protected.is_empty();
    let route = matched.rule().name;
    let hides = if restored_any {
        Some(Hidden::Restored)
    } else if route == "release.create" && params.get("env").is_none() && !reads_all {
        Some(Hidden::Copied)
    } else if (route == "release.promote"
        || (route == "process.run" && params.get("Release").is_some()))
        && !reads_all
    {
        Some(Hidden::Filled)
    } else {
        None
    };
    let response_mask = mask::response_mask(matched.rule());
    let answering = match response_mask {
        // A caller who may read every value of an app with no protected keys gets the answer
        // as the rack wrote it but for the rack password, which its manifest may quote.
        Some(ResponseMask::ReleaseEnv) if reads_all => {
            Some(Answering::Rewrite(Rewrite::ReleaseManifest))
        }
        Some(ResponseMask::ReleaseEnv) => Some(Answering::Rewrite(Rewrite::Release {
            app,
            who: Visibility::of(&grant),
            protected,
        })),
        Some(ResponseMask::BuildRepository) => Some(Answering::Rewrite(Rewrite::Build {
            defaults: (!reads_all)
                .then(|| (app.clone(), Visibility::of(&grant), protected.clone())),
        })),
        Some(ResponseMask::ProcessCommand) if grant.holds(Perm::SecretRead) => None,
        Some(ResponseMask::ProcessCommand) => Some(Answering::Rewrite(Rewrite::Process)),
        Some(ResponseMask::RackPassword) => Some(Answering::Scrubbed),
        None => None,
    };
    let relied = relied_on(&grant, &matched, permitted.required(), response_mask);
    let call = RackCall {
        method: parts.method.clone(),
        target: forward_target(&path, &params),
        headers: parts.headers,
        body: match (params.body(), form) {
            (ForwardBody::Form(bytes), _) => CallBody::Form(bytes.clone()),
            (ForwardBody::Stream, _) => CallBody::Stream(body),
            (ForwardBody::Empty, _) => CallBody::Empty,
        },
        standing: StillStanding::of(&caller, relied),
        request_id: request_id.to_owned(),
        started: Instant::now(),
        trusted_peer: state.is_trusted(peer.ip()),
        hides,
        rack_answers: matched.rule().params.body != policy::routes::Body::Opaque,
        // A process's command line is scrubbed for a caller without `convox:secret:read`, as
        // the log records it: the rack's answer holds what the log may not.
        answer_holds_secrets: matched.rule().secrets.response >= Secrecy::Sensitive
            || response_mask == Some(ResponseMask::ProcessCommand),
        body_holds_secrets: matched.rule().secrets.request >= Secrecy::Sensitive,
    };
    let permission = || Some(permitted.permission().as_str().to_owned());
    // Checked again as the intent is sequenced when a rack lookup came after the check; only
    // then can it be refused here, and only then are its parameters kept for the denial.
    let guard = looked_up.then(|| still_allowed(&caller, relied));
    let kept_params = guard.is_some().then(|| recorded_params.clone());
    let intent = command_requested(
        &caller,
        &method,
        &recorded,
        permission(),
        Decision::Allow,
        "",
        recorded_params,
    );
    let if_abandoned = abandoned_before_forward(request_id);
    let recorded = match intent::record(&state.store, intent, guard, call, if_abandoned).await {
        Ok(recorded) => recorded,
        Err(AppendError::Rejected(why)) => {
            return Err(refuse_no_longer_allowed(
                state,
                &caller,
                &method,
                &recorded,
                &why,
                permission(),
                kept_params.as_deref().unwrap_or_default(),
            )
            .await);
        }
        Err(_) => return Err(ProxyError::AuditUnavailable),
    };
    forward(state, recorded, content_type_of(&params), answering).await
}

/// Authenticates the caller; refusals are counted per address, not recorded one by one.
fn authenticate(
    state: &ProxyState,
    req: &Request,
    ip: IpAddr,
    request_id: &str,
) -> Result<Caller, ProxyError> {
    let now = Clock.now();
    let values: Vec<&[u8]> = req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let refuse = |reason: &'static str| {
        state.count_denial(ip, reason, now);
        ProxyError::Unauthenticated(reason)
    };
    let token = authenticate::token(
        &*state.store,
        &values,
        Schemes::BasicOrBearer,
        now,
        state.accepts_dev_tokens,
    )
    .map_err(|e| refuse(e.reason()))?;
    // Recorded on every event of the call, so scrubbed like a command line.
    let user_agent = redact::user_agent(req.headers());
    Ok(Caller {
        token,
        ip,
        user_agent,
        request_id: request_id.to_owned(),
    })
}

fn command_requested(
    caller: &Caller,
    method: &str,
    path: &str,
    permission: Option<String>,
    decision: Decision,
    reason: &str,
    params: Vec<(String, String)>,
) -> Event {
    TokenCall {
        request_id: &caller.request_id,
        token: &caller.token,
        ip: caller.ip,
        user_agent: &caller.user_agent,
    }
    .requested(
        method,
        path,
        permission.map(events::event::Permission),
        decision,
        reason,
        params,
    )
}

/// Appends one event the answer depends on; if the log cannot take it, the caller gets 503.
async fn append(state: &ProxyState, event: Event) -> Result<(), ProxyError> {
    state
        .store
        .append(vec![event])
        .await
        .map(|_| ())
        .map_err(|_| ProxyError::AuditUnavailable)
}

/// Records an authenticated denial; if the log cannot take it, the caller gets 503 instead.
async fn record_denial(
    state: &ProxyState,
    caller: &Caller,
    method: &str,
    path: &str,
    kind: &'static str,
    permission: Option<String>,
    params: &[(String, String)],
) -> Result<(), ProxyError> {
    let event = command_requested(
        caller,
        method,
        path,
        permission,
        Decision::Deny,
        kind,
        params.to_vec(),
    );
    append(state, event).await
}

/// `GET /machines` and `GET /racks` precede every CLI WebSocket: answered here, recorded as
/// allowed calls the gateway itself answered.
async fn record_local(
    state: &ProxyState,
    caller: &Caller,
    method: &str,
    path: &str,
) -> Result<(), ProxyError> {
    let event = command_requested(
        caller,
        method,
        path,
        None,
        Decision::Allow,
        "answered_locally",
        Vec::new(),
    );
    append(state, event).await
}

/// How a rack answer's body is encoded, as far as the gateway must read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    /// No `Content-Encoding`, or only `identity`.
    Identity,
    /// `gzip` (or `x-gzip`) once, on one line: what Go's client asks for. Decoded in error
    /// answers only; a 2xx answer the gateway rewrites is asked for in clear.
    Gzip,
    /// Anything else, stacked codings included: never read.
    Other,
}

impl Coding {
    fn of(headers: &http::HeaderMap) -> Coding {
        let mut codings = headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.eq_ignore_ascii_case(b"identity"));
        match (codings.next(), codings.next()) {
            (None, _) => Coding::Identity,
            (Some(c), None)
                if c.eq_ignore_ascii_case(b"gzip") || c.eq_ignore_ascii_case(b"x-gzip") =>
            {
                Coding::Gzip
            }
            _ => Coding::Other,
        }
    }
}

/// The error kind of a compressed 2xx rack answer the gateway must read and cannot (it rewrites
/// or scrubs it in any coding; it asks for none on those routes). With those of
/// [`crate::proxy::answers::ReadError`] (too large, unreadable, no room) and of the masking, the
/// caller is told it and `CommandCompleted.failure` records it.
const ANSWER_ENCODED: &str = "answer_encoded";
/// The same of an error answer (in any coding but gzip). Error answers have kinds of their own
/// (`error_answer_…`): the caller's status is the gateway's 502 either way, and the kind is
/// what tells an auditor whether the rack had carried the call out (a 2xx) or refused it.
const ERROR_ANSWER_ENCODED: &str = "error_answer_encoded";
/// Recorded for an error answer the gateway withheld ([`withheld_error`]): the status is the
/// rack's, the body the gateway's.
const ANSWER_WITHHELD: &str = "answer_withheld";

/// Recorded for an upload whose caller's body ended before its end (see
/// [`SendError::caller_body_failed`]).
const BODY_CUT_SHORT: &str = "body_cut_short";

/// Sends a recorded call to the rack and streams the answer back; the completion is recorded
/// when the answer's body ends, without holding the answer for its durability.
async fn forward(
    state: &Arc<ProxyState>,
    recorded: Recorded<RackCall>,
    content_type: Option<String>,
    answering: Option<Answering>,
) -> Result<Response, ProxyError> {
    let call = recorded.into_call();
    // From here the recorded intent gets its completion, whatever happens.
    let mut pending = Pending::new(state, &call.request_id, call.started);
    pending.hash_answer = !call.answer_holds_secrets;
    pending.hash_request = !call.body_holds_secrets;
    // Found standing when the call was permitted; the bodies are cut once it no longer does.
    let credential = {
        let store = state.store.clone();
        let standing = call.standing.clone();
        Credential::new(move || store.with_state(|s| standing.check(s)))
    };
    pending.credential = Some(credential.clone());
    // The answer to a HEAD has no body to read, whatever its `Content-Length` says.
    let head = call.method == http::Method::HEAD;
    let unsendable = || {
        pending.complete(502, None, Some(ProxyError::Upstream.kind()));
        ProxyError::Upstream
    };
    let uri = state.upstream.uri(&call.target).map_err(|_| unsendable())?;
    let actor = HeaderValue::from_str(&call.standing.owner.0).map_err(|_| unsendable())?;
    let mut headers = headers::upstream(
        &call.headers,
        state.upstream.authorization(),
        &actor,
        call.trusted_peer,
    );
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_TYPE);
    // Checked for the caller's site already; the rack reads it only on a WebSocket handshake.
    headers.remove(header::ORIGIN);
    if answering.is_some() {
        // A masked answer must be readable: ask for it uncompressed.
        headers.remove(header::ACCEPT_ENCODING);
    }
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    let body = match call.body {
        CallBody::Empty => Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync(),
        CallBody::Form(bytes) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            Full::new(Bytes::from(bytes))
                .map_err(|never| match never {})
                .boxed_unsync()
        }
        CallBody::Stream(body) => {
            match call.headers.get(header::CONTENT_LENGTH) {
                Some(len) => {
                    headers.insert(header::CONTENT_LENGTH, len.clone());
                }
                // Said outright: hyper sends a GET's or HEAD's body of unknown length as no
                // body at all, and what was authorized and recorded is what goes on.
                None => {
                    headers.insert(
                        header::TRANSFER_ENCODING,
                        HeaderValue::from_static("chunked"),
                    );
                }
            }
            let sink = pending.bytes_in.clone();
            let body = Revocable::new(body, credential.clone(), call.started);
            Metered::new(
                crate::stall::Bounded::new(body.map_err(std::io::Error::other)),
                Box::new(move |m| {
                    if let Ok(mut slot) = sink.lock() {
                        *slot = Some(m);
                    }
                }),
            )
            .counting_into(pending.sent_in.clone())
            .digest_if(pending.hash_request)
            .boxed_unsync()
        }
    };
    let mut upstream_req = http::Request::new(body);
    *upstream_req.method_mut() = call.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = headers;
    if call.rack_answers {
        upstream_req
            .extensions_mut()
            .insert(super::rack_pool::RackReads);
    }
    // A 502 the gateway gives itself is recorded with the error kind the caller is told.
    let answered_itself = |kind: &'static str| pending.complete(502, None, Some(kind));
    let sent = state.upstream.send(upstream_req).await;
    let response = match sent {
        Ok(r) => r,
        Err(e)
            if e.caller_body_failed()
                && let Some(why) = credential.cut() =>
        {
            // Cut on its way: the caller's credential stopped standing as it streamed.
            let refusal = no_longer_allowed(why);
            pending.complete(refusal.status().as_u16(), None, Some(why.0));
            return Err(refusal);
        }
        Err(e) if e.caller_body_failed() => {
            // The caller's upload ended early (it went away, or sent nothing for 60 s): the
            // caller's doing, not the rack's, and recorded so.
            pending.complete(400, None, Some(BODY_CUT_SHORT));
            return Err(ProxyError::BadRequest {
                kind: BODY_CUT_SHORT,
                what: "the request body stopped before its end (the connection failed, or \
                       nothing more came for 60 s); the rack may have received part of it"
                    .into(),
            });
        }
        Err(e) => {
            let error = unanswered(&e);
            answered_itself(error.kind());
            return Err(error);
        }
    };
    let (mut parts, incoming) = response.into_parts();
    pending.answered(parts.status.as_u16());
    if call.rack_answers && parts.status == StatusCode::UNAUTHORIZED {
        // Passed on, it would read as the caller's token refused (`invalid authentication`),
        // and the log would hold a stream of callers' failures for one setting of the gateway.
        answered_itself(ProxyError::RackRefusedGateway.kind());
        return Err(ProxyError::RackRefusedGateway);
    }
    // Read before the hop's headers go: a `Connection` naming `Content-Encoding` must not pass
    // a compressed answer off as readable.
    let coding = Coding::of(&parts.headers);
    let encoded = coding != Coding::Identity;
    headers::harden_response(&mut parts.headers);
    if let Ok(id) = HeaderValue::from_str(&call.request_id) {
        parts.headers.insert("x-request-id", id);
    }
    let status = parts.status.as_u16();
    let bodiless = head
        || parts.status.is_informational()
        || matches!(
            parts.status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        );
    if parts.status.is_success()
        && !bodiless
        && let Some(Answering::Scrubbed) = answering
    {
        // Never passed on unread: a compressed answer cannot be scrubbed.
        if encoded {
            answered_itself(ANSWER_ENCODED);
            return Err(ProxyError::UnreadableAnswer(ANSWER_ENCODED));
        }
        // Its length changes where the password is replaced: sent chunked.
        parts.headers.remove(header::CONTENT_LENGTH);
        let scrub = StreamScrub::new(state.upstream.scrubber().clone(), mask::REDACTED);
        let incoming = Revocable::new(incoming, credential, call.started);
        let body = pending.meter(ScrubbedBody::new(incoming, scrub), status, None);
        return Ok(Response::from_parts(parts, Body::new(body)));
    }
    if parts.status.is_success()
        && !bodiless
        && let Some(Answering::Rewrite(rewrite)) = answering
    {
        let read = if encoded {
            Err(ANSWER_ENCODED)
        } else {
            state
                .answers
                .read_to_rewrite(incoming)
                .await
                .map_err(|e| e.kind())
        };
        // Never an unmasked pass-through: a compressed, oversized or unparseable answer (or one
        // the gateway has no room to hold) is a recorded 502 that says so.
        let masked = read.and_then(|(body, mut held)| {
            let masked = rewrite
                .apply(&body, &state.upstream, &state.keys.audit)
                .map_err(|e| e.kind())?;
            drop(body);
            state
                .answers
                .fit(&mut held, masked.len())
                .map_err(|e| e.kind())?;
            Ok((masked, held))
        });
        let (masked, held) = match masked {
            Ok(m) => m,
            Err(kind) => {
                answered_itself(kind);
                return Err(ProxyError::UnreadableAnswer(kind));
            }
        };
        if let Some(refusal) = refused_since(&credential, &pending, status) {
            return Err(refusal);
        }
        parts.headers.remove(header::CONTENT_ENCODING);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(masked.len()));
        // Handed to the connection in pieces, holding its room in the budget until the last.
        let body = pending.meter(
            answers::Rewritten::new(Bytes::from(masked), held),
            status,
            None,
        );
        return Ok(Response::from_parts(parts, Body::new(body)));
    }
    // An error answer (short `http.Error` text) may quote a URL the rack built with its
    // password, or a value restored into the call: it is read whole (outside the budget) and
    // never passed on unread, a compressed one included.
    if !parts.status.is_success() && !bodiless {
        let read = match coding {
            Coding::Identity => answers::read_error(incoming).await.map_err(|e| e.kind()),
            Coding::Gzip => answers::read_error(incoming)
                .await
                .and_then(|encoded| answers::gunzip_error(&encoded))
                .map_err(|e| e.kind()),
            Coding::Other => Err(ERROR_ANSWER_ENCODED),
        };
        let text = match read {
            Ok(text) => text,
            Err(kind) => {
                answered_itself(kind);
                return Err(ProxyError::UnreadableAnswer(kind));
            }
        };
        if let Some(refusal) = refused_since(&credential, &pending, status) {
            return Err(refusal);
        }
        // An empty answer stays empty: the CLI reads an empty 404 as `response status 404`.
        let withheld = call
            .hides
            .filter(|hidden| !text.is_empty() && !hidden.passes(&text));
        let shown = match withheld {
            Some(hidden) => withheld_error(&parts.headers, status, &call.request_id, hidden),
            None => state.upstream.scrub_password(&text),
        };
        // Sent as it was read: decoded.
        parts.headers.remove(header::CONTENT_ENCODING);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(shown.len()));
        let failure = withheld.map(|_| ANSWER_WITHHELD);
        let body = pending.meter(Full::new(Bytes::from(shown)), status, failure);
        return Ok(Response::from_parts(parts, Body::new(body)));
    }
    let incoming = Revocable::new(incoming, credential, call.started);
    let body = pending.meter(incoming, status, None);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// What replaces the rack's error answer to a call carrying restored values: it may quote them
/// in any escaping (or several: a quoted value inside `{"error":…}`), and even where a value
/// sits in a scrubbed text would tell a caller which of many guesses (in another parameter of
/// the same call) it matched. In the rack's own form: `{"error":…}` when it answered JSON.
fn withheld_error(
    headers: &http::HeaderMap,
    status: u16,
    request_id: &str,
    hidden: Hidden,
) -> Vec<u8> {
    let (what, instead) = match hidden {
        Hidden::Restored => (
            "values the gateway restored for masks you posted",
            "post those variables in clear to see the rack's reason",
        ),
        Hidden::Copied => (
            "env values this release copies from an earlier one, which you may not read",
            "someone who may read every value of this app can see the rack's reason",
        ),
        Hidden::Filled => (
            "env values of this release, which the rack fills into its manifest and you may \
             not read",
            "someone who may read every value of this app can see the rack's reason",
        ),
    };
    let text = format!(
        "the rack refused this call ({status}), and its answer may quote {what}, so it is \
         withheld (request {request_id}); {instead}"
    );
    let json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json {
        let mut out = serde_json::to_vec(&serde_json::json!({ "error": text })).unwrap_or_default();
        out.push(b'\n');
        out
    } else {
        format!("{text}\n").into_bytes()
    }
}

// === impl Rewrite ===

impl Rewrite {
    /// A 2xx answer as the caller gets it: masked, or a build without the rack password.
    fn apply(
        &self,
        body: &[u8],
        upstream: &Upstream,
        audit: &AuditKey,
    ) -> Result<Vec<u8>, mask::MaskError> {
        match self {
            Rewrite::Release {
                app,
                who,
                protected,
            } => {
                let masked = mask::mask_release_json(body, app, *who, audit, protected)?;
                scrub_manifests(masked, upstream)
            }
            Rewrite::ReleaseManifest => scrub_manifests(body.to_vec(), upstream),
            // The password anywhere else in it too: a failed build's reason may quote the URL.
            Rewrite::Build { defaults } => {
                let scrubbed = mask::scrub_external_build(body)?;
                let masked = match defaults {
                    Some((app, who, protected)) => {
                        mask::mask_manifest_defaults(&scrubbed, app, *who, audit, protected)?
                    }
                    None => scrubbed,
                };
                Ok(upstream.scrub_password(&masked))
            }
            Rewrite::Process => mask::scrub_process_commands(body),
        }
    }
}

/// A release answer with the rack password taken out of its manifests; read as JSON only when
/// some form of the password is in it at all, which it almost never is.
fn scrub_manifests(body: Vec<u8>, upstream: &Upstream) -> Result<Vec<u8>, mask::MaskError> {
    if upstream.scrubber().holds(&body) {
        mask::scrub_release_manifests(&body, &|text| upstream.scrub_password(text))
    } else {
        Ok(body)
    }
}

/// Why a permitted call is refused all the same, from its parameters alone: the kind, the
/// permission the refusal is recorded under, and what the caller is told.
fn call_refusal(
    matched: &policy::Matched,
    params: &CanonicalParams,
    app: &str,
    protected: &[String],
    who: Visibility,
    permission: Perm,
) -> Option<(&'static str, Perm, String)> {
    let route = matched.rule().name;
    // A mask stands for a value only where `convox env set` posts it back; anywhere else it
    // would reach the rack as a literal, so it is refused. Command lines and the opaque query
    // of the proxy routes are text the caller may mean as it stands (`grep rgw-masked: …`),
    // not values the gateway ever showed masked. The rack's own names are no app.
    let opaque = matches!(route, "proxy.http" | "image.proxy");
    for p in params.params() {
        let is_env = route == "release.create" && p.key == "env";
        let text = opaque || p.class == policy::routes::KeyClass::Command;
        if p.value.contains(mask::MASK_PREFIX) && !is_env && !text {
            let what = format!(
                "{}: a masked value (rgw-masked:…) stands only for the current value of the \
                 same variable in `convox env set`; send the value itself",
                p.key
            );
            return Some(("masked_value_misused", permission, what));
        }
        if route == "app.create"
            && p.key == "name"
            && policy::decide::RESERVED_APPS.contains(&p.value.as_str())
        {
            let what = format!(
                "{} is reserved for the rack itself; choose another app name",
                p.value
            );
            return Some(("reserved_app", permission, what));
        }
    }
    // The rack runs `tar` and `rm` in the process with these values as arguments: an older rack
    // without its own checks would take a value that starts with `-` as an option (`tar -I<cmd>`
    // runs a program), so reading or writing files would run commands. The rack's allow-list
    // of extra `tar` flags is held here for every rack.
    if let Some(what) = file_argument_refusal(route, params) {
        return Some(("file_argument_option", permission, what));
    }
    if route == "build.create"
        && let Some((kind, what)) = build_request::refusal(params, app)
    {
        return Some((kind, permission, what));
    }
    if route == "release.create"
        && let Some(env) = params.get("env")
        && let Some(line) = mask::overlong_line(&env)
    {
        let what = format!(
            "env line {line} is longer than the {} bytes the rack reads in a line; the rack \
             would stop reading the env there",
            mask::ENV_LINE_MAX
        );
        return Some(("env_line_too_long", permission, what));
    }
    if route == "release.create"
        && let Some(env) = params.get("env")
        && let Some(key) = mask::set_twice(&env)
    {
        // The rack keeps the last line, and the answer shows every line masked on its own: a
        // key set many times would test as many guesses of its value against the mask of the
        // one kept. `convox env set` never posts a key twice.
        let what = format!(
            "env sets {key} more than once; send each variable once (the rack would keep only \
             the last)"
        );
        return Some(("env_key_repeated", permission, what));
    }
    if route == "release.create"
        && who != Visibility::All
        && let Some(env) = params.get("env")
        && let Some(line) = mask::stray_in_clear(&env)
    {
        // Stray lines are shown to this caller masked whole; one posted in clear would be
        // shown masked the same way, as a guess of a hidden line. (A caller who may read every
        // value sees them masked only once a protected value is hidden: judged with the
        // current env, in `restore_env_param`.)
        let error = mask::MaskError::LineInClear { line };
        return Some((error.kind(), permission, error.to_string()));
    }
    if protected.is_empty() {
        return None;
    }
    if route == "app.manifest.service" {
        // The rack answers with the convox.yml after filling the release's env into it, so a
        // `${KEY}` there comes back as the value, and no key of it can be masked.
        let what = format!(
            "{app} has protected variables, which the rack fills into the manifest it answers \
             with; read the service from the app's convox.yml instead"
        );
        return Some(("protected_env_manifest", permission, what));
    }
    if route == "release.create"
        && params.get("parent-release").is_some()
        && params.get("env").is_none()
    {
        // The rack copies the parent's whole environment, protected keys included, and the
        // gateway cannot see which values that brings back.
        let what = format!(
            "{app} has protected variables and `parent-release` would copy that release's \
             whole environment over them; create the release with `env` instead"
        );
        return Some(("protected_env_fork", Perm::EnvSet, what));
    }
    if route != "process.run" {
        return None;
    }
    if params.get("Release").is_some() {
        // Another release's env holds its own protected values, which the gateway cannot see
        // without a lookup of that release.
        let what = format!(
            "{app} has protected variables, and another release's would come with it: run the \
             current release (leave out --release)"
        );
        return Some(("protected_env_release", permission, what));
    }
    let env = params.get("Environment")?;
    let key = mask::protected_in_run_env(&env, protected)?;
    let what = format!(
        "{key} is a protected variable of {app}: a process cannot be run with another value of \
         it through the gateway"
    );
    Some(("protected_env_change", permission, what))
}

/// The protected env vars of `app`: masked for everyone, never changed through the gateway.
fn protected_env(state: &ProxyState, app: &str) -> Vec<String> {
    state.protected_env(app)
}

/// Why promoting release `id` of `app`, which has protected variables, is refused: the kind
/// and what the caller is told; `None` when the release holds each protected variable as the
/// newest release does (a deploy's new release, forked from the newest). Promoting an older
/// release puts its env back, protected values included (`convox releases promote`, a
/// rollback by another name), so both are read (recorded lookups) and compared.
async fn promote_refusal(
    state: &Arc<ProxyState>,
    caller: &Caller,
    app: &str,
    id: &str,
    protected: &[String],
    required: &[Perm],
) -> Result<Option<(&'static str, String)>, ProxyError> {
    let record = lookup(
        state,
        caller,
        Lookup::of_record(
            "release",
            "protected_env_lookup",
            app,
            "releases",
            id,
            required,
        ),
    )
    .await?;
    let promoted = match record {
        LookupAnswer::Found(body) => match mask::Env::from_releases_json(&body) {
            Ok(env) => env,
            Err(e) => return Ok(Some(("release_lookup_failed", e.to_string()))),
        },
        // No such release: the rack says so itself, and promotes nothing.
        LookupAnswer::Refused(StatusCode::NOT_FOUND, _) => return Ok(None),
        LookupAnswer::Refused(status, _) => {
            let why = format!(
                "the rack answered {status} for release {id}, so whether it keeps {app}'s \
                 protected variables is unknown"
            );
            return Ok(Some(("release_lookup_failed", why)));
        }
        LookupAnswer::Unanswered => {
            let why = format!("the rack did not answer for release {id}");
            return Ok(Some(("release_lookup_failed", why)));
        }
    };
    let newest = match current_env(state, caller, app, "protected_env_lookup", required).await {
        Ok(env) => env,
        // The rack did not give the newest release: refused as any lookup the rack fails.
        Err(ProxyError::Upstream) => {
            let why = format!(
                "the rack did not give {app}'s newest release, so whether release {id} keeps its \
                 protected variables is unknown"
            );
            return Ok(Some(("release_lookup_failed", why)));
        }
        Err(e) => return Err(e),
    };
    let changed = protected
        .iter()
        .find(|key| promoted.get(key) != newest.get(key));
    Ok(changed.map(|key| {
        (
            "protected_env_change",
            format!(
                "{key} is a protected variable of {app}, and release {id} holds another value of \
                 it than the newest release: promote a release made from the newest (deploy, or \
                 change env through the gateway)"
            ),
        )
    }))
}

/// The env of `app`'s newest release, the one `convox env` reads (spec §5 "Environment":
/// `GET /apps/{app}/releases?limit=1`, whose items carry their env), fetched to restore masked
/// values or compare protected ones; the lookup is recorded with `reason`.
async fn current_env(
    state: &Arc<ProxyState>,
    caller: &Caller,
    app: &str,
    reason: &'static str,
    required: &[Perm],
) -> Result<mask::Env, ProxyError> {
    let body = lookup(
        state,
        caller,
        Lookup {
            suffix: "env",
            path: format!("/apps/{app}/releases"),
            params: vec![("limit".to_owned(), "1".to_owned())],
            reason,
            target: format!(
                "/apps/{}/releases?limit=1",
                utf8_percent_encode(app, SEGMENT)
            ),
            required: required.to_vec(),
        },
    )
    .await?;
    let LookupAnswer::Found(body) = body else {
        return Err(ProxyError::Upstream);
    };
    mask::Env::from_releases_json(&body).map_err(|_| ProxyError::Upstream)
}

/// Where the rack would read build `id`'s log from (see [`build_logs`]), from its record
/// (`GET /apps/{app}/builds/{id}`). `Err` as [`lookup`]'s.
async fn build_log_source(
    state: &Arc<ProxyState>,
    caller: &Caller,
    app: &str,
    id: &str,
    required: &[Perm],
) -> Result<Result<build_logs::Source, String>, ProxyError> {
    let record = lookup(
        state,
        caller,
        Lookup::of_record("build", "build_log_lookup", app, "builds", id, required),
    )
    .await?;
    Ok(match record {
        LookupAnswer::Found(record) => build_logs::judge(&record).map_err(|e| e.to_string()),
        // No such build: no log to read, and the rack says so in the socket itself. Its id
        // will be the rack's random one, so no build can appear under it in the meantime.
        LookupAnswer::Refused(StatusCode::NOT_FOUND, _) => Ok(build_logs::Source::Missing),
        LookupAnswer::Refused(status, _) => Err(format!(
            "the rack answered {status} for build {id}, so where its log is kept is unknown"
        )),
        LookupAnswer::Unanswered => Err(format!("the rack did not answer for build {id}")),
    })
}

/// The most of a build record's log URL a refusal quotes, in bytes.
const MAX_QUOTED_LOG_URL: usize = 256;

/// Why build `id`'s log socket is refused: to a caller without `convox:object:read`, a log
/// that is not a build log; to one with it, a log no object route could name (see
/// [`build_logs`]). The kind and what the caller is told; `None` when the rack may stream it.
async fn foreign_build_log(
    state: &Arc<ProxyState>,
    caller: &Caller,
    app: &str,
    id: &str,
    reads_objects: bool,
    required: &[Perm],
) -> Result<Option<(&'static str, String)>, ProxyError> {
    // The record is the rack's text (or an importer's): quoted with the rack password taken
    // out, likely secrets scrubbed, and cut, as it goes to the caller and into the log.
    let quoted = |url: &str| {
        let url = state.upstream.scrub_password(url.as_bytes());
        redact::cut(
            &redact::scrub(&String::from_utf8_lossy(&url)),
            MAX_QUOTED_LOG_URL,
        )
        .into_owned()
    };
    Ok(
        match build_log_source(state, caller, app, id, required).await? {
            Ok(build_logs::Source::BuildLog | build_logs::Source::Missing) => None,
            Ok(build_logs::Source::Elsewhere(url)) if reads_objects => {
                (!build_logs::is_object_url(&url)).then(|| {
                    (
                        "build_log_outside",
                        format!(
                            "build {id}'s record names {} as its log, which is no object a path \
                             could name (a `..` or `.` segment, an escape, the rack's own \
                             objects); the gateway does not stream it",
                            quoted(&url)
                        ),
                    )
                })
            }
            Ok(build_logs::Source::Elsewhere(url)) => Some((
                "build_log_elsewhere",
                format!(
                    "build {id}'s record names {} as its log, which is not a build log; reading \
                     it needs {}",
                    quoted(&url),
                    Perm::ObjectRead.as_str()
                ),
            )),
            Err(why) => Some(("build_lookup_failed", why)),
        },
    )
}

/// Why a file route's argument is refused: a file name that starts with `-` (`file`, or an item
/// of `files`), or an extra `tar` flag (`tar-extra`, comma-separated) outside the rack's own
/// allow-list (`--no-same-owner`, `--no-same-permissions`, `--strip-components=<digits>`).
fn file_argument_refusal(route: &str, params: &CanonicalParams) -> Option<String> {
    let option_like = |name: &str| name.starts_with('-');
    match route {
        "file.get" => params
            .get("file")
            .filter(|f| option_like(f))
            .map(|_| "file must be a path, not an option (it starts with `-`)".to_owned()),
        "file.delete" => params
            .get("files")
            .filter(|files| files.split(',').any(option_like))
            .map(|_| "files must be paths, not options (one starts with `-`)".to_owned()),
        "file.put" => {
            let extra = params.get("tar-extra")?;
            let allowed = |flag: &str| {
                matches!(flag, "--no-same-owner" | "--no-same-permissions")
                    || flag
                        .strip_prefix("--strip-components=")
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            };
            let refused = extra.split(',').find(|f| !allowed(f))?;
            Some(format!(
                "tar-extra may hold only --no-same-owner, --no-same-permissions and \
                 --strip-components=<n>, not {refused}"
            ))
        }
        _ => None,
    }
}

/// Why a call that names the build service where a process goes is refused to a caller without
/// `convox:build:exec` (what the caller is told); `None` for any other call. The rack takes a
/// process id for a service's name first (`ProcessExec` lists the processes of the label
/// selector `service=<pid>` and picks one), so exec into, or the files of, process `build` reach
/// a running build, which no lookup of a process `build` finds; so would a pid the selector
/// reads as `build` (`=build`, `build,app=x`), which is why a pid must be a pod's name. A
/// process run as the `build` service gets a build's seccomp profile (unconfined), and with
/// `Privileged` a privileged container.
fn names_the_build_service(matched: &policy::Matched) -> Option<String> {
    let route = matched.rule().name;
    let (what, named) = if policy::routes::INTO_PROCESS.contains(&route) {
        ("process", matched.var("pid")?)
    } else if route == "process.run" {
        ("service", matched.var("service")?)
    } else {
        return None;
    };
    let needs = Perm::BuildExec.as_str();
    if named == build_process::BUILD_SERVICE {
        return Some(format!(
            "`{named}` names the service the rack runs builds as, whose processes hold the rack \
             password and run unconfined; that needs {needs}"
        ));
    }
    // A pod's or a service's name (DNS-1123): what a label selector cannot read as more.
    let plain = !named.is_empty()
        && named
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'));
    (!plain).then(|| {
        format!(
            "a {what} is named by lower-case letters, digits, `-` and `.`; the rack would read \
             `{named}` as a selector, which may pick a build's process; that needs {needs}"
        )
    })
}

/// Why exec into process `pid`, or reading or writing its files, is refused to a caller without
/// `convox:build:exec` (see [`build_process`]): the kind and what the caller is told; `None`
/// when the rack's record names another service, or the rack has no such process.
async fn build_process_refusal(
    state: &Arc<ProxyState>,
    caller: &Caller,
    app: &str,
    pid: &str,
    required: &[Perm],
) -> Result<Option<(&'static str, String)>, ProxyError> {
    let record = lookup(
        state,
        caller,
        Lookup::of_record(
            "process",
            "build_process_lookup",
            app,
            "processes",
            pid,
            required,
        ),
    )
    .await?;
    let failed = |why: String| Ok(Some(("process_lookup_failed", why)));
    match record {
        LookupAnswer::Found(record) => match build_process::is_build(&record) {
            Ok(false) => Ok(None),
            Ok(true) => Ok(Some((
                "build_process",
                format!(
                    "process {pid} runs a build, whose environment holds the rack password; \
                     exec into it and its files need {}",
                    Perm::BuildExec.as_str()
                ),
            ))),
            Err(e) => failed(e.to_string()),
        },
        // No such process: the rack answers so itself (a missing pod is Kubernetes' error,
        // which the rack passes on as a 500).
        LookupAnswer::Refused(status, text)
            if status == StatusCode::NOT_FOUND || build_process::is_missing(&text, pid) =>
        {
            Ok(None)
        }
        LookupAnswer::Refused(status, _) => failed(format!(
            "the rack answered {status} for process {pid}, so whether it runs a build is unknown"
        )),
        LookupAnswer::Unanswered => failed(format!("the rack did not answer for process {pid}")),
    }
}

/// A rack call the gateway makes to check a caller's call: a GET with the gateway's
/// credentials, on behalf of the caller.
struct Lookup {
    /// Appended to the caller's request id: `<caller's>.<suffix>`.
    suffix: &'static str,
    /// The canonical path recorded.
    path: String,
    params: Vec<(String, String)>,
    reason: &'static str,
    /// What is sent: `path`, encoded, and its query.
    target: String,
    /// The permissions of the caller's call, held still when the lookup is recorded.
    required: Vec<Perm>,
}

impl Lookup {
    /// `GET /apps/{app}/{collection}/{id}`: one record of an app.
    fn of_record(
        suffix: &'static str,
        reason: &'static str,
        app: &str,
        collection: &str,
        id: &str,
        required: &[Perm],
    ) -> Lookup {
        Lookup {
            suffix,
            path: format!("/apps/{app}/{collection}/{id}"),
            params: Vec::new(),
            reason,
            target: format!(
                "/apps/{}/{collection}/{}",
                utf8_percent_encode(app, SEGMENT),
                utf8_percent_encode(id, SEGMENT)
            ),
            required: required.to_vec(),
        }
    }
}

/// What the rack gave a [`lookup`].
enum LookupAnswer {
    /// A 2xx answer's body (not encoded, within the answers budget).
    Found(Vec<u8>),
    /// An answer that is not 2xx: its status and text (empty when it could not be read), for a
    /// caller that tells the rack's "no such thing" apart.
    Refused(StatusCode, Vec<u8>),
    /// No usable answer: the rack was not reached, or its answer was encoded or over budget.
    Unanswered,
}

/// Sends `call` and reads its answer. The lookup is a rack call like any other: its own
/// `CommandRequested` is durable before it is sent, and its completion is recorded. `Err` only
/// when the caller's call must be refused as it is: the lookup could not be recorded, or the
/// caller's token or owner no longer allows the call.
async fn lookup(
    state: &Arc<ProxyState>,
    caller: &Caller,
    call: Lookup,
) -> Result<LookupAnswer, ProxyError> {
    let lookup = Caller {
        token: caller.token.clone(),
        ip: caller.ip,
        user_agent: caller.user_agent.clone(),
        request_id: format!("{}.{}", caller.request_id, call.suffix),
    };
    let intent = command_requested(
        &lookup,
        "GET",
        &call.path,
        None,
        Decision::Allow,
        call.reason,
        call.params,
    );
    let guard = still_allowed(caller, PermSet::of(call.required.iter().copied()));
    let if_abandoned = abandoned_before_forward(&lookup.request_id);
    let recorded =
        match intent::record(&state.store, intent, Some(guard), call.target, if_abandoned).await {
            Ok(recorded) => recorded,
            // The caller's own call is refused, and recorded, by whoever asked for the lookup.
            Err(AppendError::Rejected(why)) => return Err(no_longer_allowed(&why)),
            Err(_) => return Err(ProxyError::AuditUnavailable),
        };
    let pending = Pending::new(state, &lookup.request_id, Instant::now());
    // `failure` as in `Pending::complete`: set when the status is the gateway's, or the rack's
    // answer was unusable.
    let fail = |status: u16, failure: Option<&'static str>| {
        pending.complete(status, None, failure);
        Ok(LookupAnswer::Unanswered)
    };
    let unreachable = Some(ProxyError::Upstream.kind());
    let Ok(uri) = state.upstream.uri(recorded.call()) else {
        return fail(502, unreachable);
    };
    let Ok(actor) = HeaderValue::from_str(&caller.token.owner.0) else {
        return fail(502, unreachable);
    };
    let mut req = http::Request::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *req.uri_mut() = uri;
    // The rack's own answer: asked again should a kept connection close under it.
    req.extensions_mut().insert(super::rack_pool::RackReads);
    let h = req.headers_mut();
    h.insert(
        header::AUTHORIZATION,
        state.upstream.authorization().clone(),
    );
    h.insert(headers::ACTOR, actor);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let response = match state.upstream.send(req).await {
        Ok(r) => r,
        Err(e) => return fail(502, Some(unanswered(&e).kind())),
    };
    let status = response.status();
    pending.answered(status.as_u16());
    if response.headers().contains_key(header::CONTENT_ENCODING) {
        let kind = if status.is_success() {
            ANSWER_ENCODED
        } else {
            ERROR_ANSWER_ENCODED
        };
        return fail(status.as_u16(), Some(kind));
    }
    if !status.is_success() {
        // Its text, for a caller that tells the rack's "no such thing" apart; an error answer
        // that cannot be read is an answer without text.
        let text = match answers::read_error(response.into_body()).await {
            Ok(text) => {
                pending.complete_read(status.as_u16(), text.len() as u64);
                text.to_vec()
            }
            Err(e) => {
                pending.complete(status.as_u16(), None, Some(e.kind()));
                Vec::new()
            }
        };
        return Ok(LookupAnswer::Refused(status, text));
    }
    let (body, _held) = match state.answers.read(response.into_body()).await {
        Ok(read) => read,
        Err(e) => return fail(502, Some(e.kind())),
    };
    pending.complete_read(status.as_u16(), body.len() as u64);
    Ok(LookupAnswer::Found(body.to_vec()))
}

/// What records the end of a call whose caller went away while its intent was being appended
/// (see [`intent::record`]): the intent is durable, nothing was forwarded, and the completion
/// says so (499, `abandoned_before_forward`), so an auditor can tell it from a call forwarded
/// whose end was lost.
fn abandoned_before_forward(request_id: &str) -> FollowUp {
    let request = RequestId(request_id.to_owned());
    let started = Instant::now();
    Box::new(move || {
        vec![Event::CommandCompleted(Box::new(CommandCompleted {
            request,
            status: 499,
            duration_ns: u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            bytes_in: 0,
            bytes_out: 0,
            sha256_in: None,
            sha256_out: None,
            failure: Some("abandoned_before_forward".to_owned()),
        }))]
    })
}

/// A recorded call whose `CommandCompleted` is still to come: the request it completes, when
/// it was sent, and the meter of the body the caller sent (set when that body ends; a
/// completion recorded before then, as when the rack answers before reading a whole upload,
/// counts the bytes sent so far, without a hash).
///
/// **Invariant:** every `Pending` records one completion. One dropped before [`Pending::complete`]
/// ran (the caller went away, or a stop cut the call short, while the rack's answer was awaited
/// or read) records status 499 and the failure `abandoned`, or, once the rack's answer had
/// come, the rack's status and `abandoned_after_answer` (the call ran: a release was created,
/// say), so a forwarded call never lacks its end in the log.
struct Pending {
    state: Arc<ProxyState>,
    request: RequestId,
    started: Instant,
    bytes_in: Arc<Mutex<Option<Meter>>>,
    /// Bytes of the caller's body sent on so far.
    sent_in: Arc<std::sync::atomic::AtomicU64>,
    /// The status of the rack's answer once its head came; 0 before.
    rack_status: std::sync::atomic::AtomicU16,
    completed: std::sync::atomic::AtomicBool,
    /// Whether the answer's SHA-256 is recorded. Not for an answer that holds secrets by
    /// design, passed or masked: whoever reads the log, and can get the same answer masked
    /// (identical but for the values), could test guesses of a weak value against it.
    hash_answer: bool,
    /// Whether the caller's body's SHA-256 is recorded: not for a body that holds secrets by
    /// design (a resource's data, a config's value), for the same reason.
    hash_request: bool,
    /// The credential the call's bodies stream under: a body cut because it stopped standing
    /// is recorded with why ([`Revocable`]).
    credential: Option<Arc<Credential>>,
}

impl Pending {
    fn new(state: &Arc<ProxyState>, request_id: &str, started: Instant) -> Pending {
        Pending {
            state: state.clone(),
            request: RequestId(request_id.to_owned()),
            started,
            bytes_in: Arc::default(),
            sent_in: Arc::default(),
            rack_status: std::sync::atomic::AtomicU16::new(0),
            completed: std::sync::atomic::AtomicBool::new(false),
            hash_answer: true,
            hash_request: true,
            credential: None,
        }
    }

    /// Appends `CommandCompleted` in the background; `out` meters the answer's body, and
    /// `failure` is the error kind of an answer the gateway gave itself instead of the rack's,
    /// or why the call did not run its course. A body's hash is recorded only if it passed
    /// whole; an answer cut short is recorded as `answer_cut_short`, or as why the caller's
    /// credential no longer stood when that cut it.
    fn complete(&self, status: u16, out: Option<Meter>, failure: Option<&'static str>) {
        let revoked = self.credential.as_ref().and_then(|c| c.cut()).map(|r| r.0);
        let failure = failure
            .or(revoked)
            .or(out.filter(|m| !m.complete).map(|_| "answer_cut_short"));
        let digest = out.filter(|_| self.hash_answer).and_then(|m| m.digest());
        self.record(status, out.map_or(0, |m| m.bytes), digest, failure);
    }

    /// As [`Pending::complete`], for an answer the gateway read for itself (a lookup): its size
    /// is recorded, not its digest. It went to no one, and it holds in clear what the caller
    /// may not see (the env of an app with protected keys, a build's repository URL, a
    /// process's command line): a plain SHA-256 of it would let whoever reads the log test
    /// guesses of those values against it.
    fn complete_read(&self, status: u16, bytes: u64) {
        self.record(status, bytes, None, None);
    }

    fn record(
        &self,
        status: u16,
        bytes_out: u64,
        sha256_out: Option<events::hash::Hash>,
        failure: Option<&'static str>,
    ) {
        if self
            .completed
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let input = self.bytes_in.lock().ok().and_then(|m| *m);
        let bytes_in = input.map_or_else(
            || self.sent_in.load(std::sync::atomic::Ordering::Relaxed),
            |m| m.bytes,
        );
        let event = Event::CommandCompleted(Box::new(CommandCompleted {
            request: self.request.clone(),
            status,
            duration_ns: u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            bytes_in,
            bytes_out,
            sha256_in: input.filter(|_| self.hash_request).and_then(|m| m.digest()),
            sha256_out,
            failure: failure.map(str::to_owned),
        }));
        // Enqueued now, so a shutdown right after the answer still records it. Nobody waits
        // for it (the answer has gone): if the write that takes it fails, the store keeps it
        // for a later one.
        drop(self.state.store.enqueue(vec![event]));
    }

    /// The caller's answer `body`, counted (and hashed where the digest is recorded) as it
    /// passes; its completion, with `status` and `failure`, recorded when it ends.
    fn meter<B: http_body::Body>(
        self,
        body: B,
        status: u16,
        failure: Option<&'static str>,
    ) -> Metered<B> {
        let digest = self.hash_answer;
        Metered::new(
            body,
            Box::new(move |out| self.complete(status, Some(out), failure)),
        )
        .digest_if(digest)
    }

    /// The rack's answer came with `status`: what a completion recorded at drop says.
    fn answered(&self, status: u16) {
        self.rack_status
            .store(status, std::sync::atomic::Ordering::Relaxed);
    }

    /// The call became a stream (`StreamOpened` is in the log): its end is `StreamClosed`,
    /// recorded by the relay, not a completion.
    fn streamed(self) -> RequestId {
        self.completed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.request.clone()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // No answer reached the caller: 499, as for a client that closed its request, unless
        // the rack had answered, whose status says whether the call ran.
        match self.rack_status.load(std::sync::atomic::Ordering::Relaxed) {
            0 => self.complete(499, None, Some("abandoned")),
            status => self.complete(status, None, Some("abandoned_after_answer")),
        }
    }
}

fn forward_target(path: &canonical::CanonicalPath, params: &CanonicalParams) -> String {
    let query = params.query();
    let mut target = String::with_capacity(path.as_str().len() + query.map_or(0, |q| q.len() + 1));
    for (i, seg) in path.as_str().split('/').enumerate() {
        if i > 0 {
            target.push('/');
        }
        target.extend(utf8_percent_encode(seg, SEGMENT));
    }
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    target
}

/// The length of `uri` as its `Display` writes it, without writing it.
fn uri_len(uri: &http::Uri) -> usize {
    uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path().len()
        + uri.query().map_or(0, |q| q.len() + 1)
}

fn content_type_of(params: &CanonicalParams) -> Option<String> {
    params.content_type().map(str::to_owned)
}

/// Refuses the header fields that would make what is forwarded differ from what was checked:
/// a `Transfer-Encoding` other than plain `chunked` (a body not read as a body) and more than
/// one `Content-Type`.
fn check_framing(headers: &http::HeaderMap) -> Result<(), (&'static str, String)> {
    let mut encodings = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = encodings.next()
        && (encodings.next().is_some() || !first.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        return Err((
            "bad_transfer_encoding",
            "the only Transfer-Encoding accepted is `chunked`".to_owned(),
        ));
    }
    if headers
        .get_all(header::CONTENT_TYPE)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err((
            "duplicate_content_type",
            "the request has more than one Content-Type".to_owned(),
        ));
    }
    Ok(())
}

fn body_is_empty(headers: &http::HeaderMap) -> bool {
    let chunked = headers
        .get(header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    !chunked && length == 0
}

/// Reads a form body (bounded in size, and in time by `limits.form_timeout`); any other body is
/// left to stream.
async fn read_form(
    content_type: &Option<String>,
    body: Body,
    timeout: std::time::Duration,
) -> Result<(Option<Vec<u8>>, Body), ProxyError> {
    if !canonical::reads_body(content_type.as_deref()) {
        return Ok((None, body));
    }
    let collected = tokio::time::timeout(
        timeout,
        Limited::new(body, canonical::MAX_FORM_BYTES).collect(),
    )
    .await
    .map_err(|_| ProxyError::BadRequest {
        kind: "param_form_too_slow",
        what: format!(
            "the form body did not arrive within {} s",
            timeout.as_secs()
        ),
    })?
    .map_err(|e| {
        if crate::limited::over_limit(&*e) {
            ProxyError::BadRequest {
                kind: "param_form_too_large",
                what: format!("the form body is over {} bytes", canonical::MAX_FORM_BYTES),
            }
        } else {
            // Its framing was broken, or the connection failed while it came.
            ProxyError::BadRequest {
                kind: "param_form_unreadable",
                what: format!("the form body could not be read: {e}"),
            }
        }
    })?;
    Ok((Some(collected.to_bytes().to_vec()), Body::empty()))
}

/// The call's parameters with its form replaced by `form`, one the gateway rewrote (`ack_by`,
/// restored env values): canonicalized as the caller's own were, so what is recorded is what
/// is forwarded.
fn with_form(
    rule: &policy::routes::RouteRule,
    method: &str,
    content_type: Option<&str>,
    query: Option<&str>,
    headers: &http::HeaderMap,
    form: &[u8],
) -> Result<CanonicalParams, canonical::ParamError> {
    canonical::canonicalize_params(
        rule,
        &RequestParams {
            method,
            content_type,
            query,
            body: RequestBody::Buffered(form),
            headers: &header_pairs(headers),
        },
    )
}

/// A request's headers as [`canonical::canonicalize_params`] reads them.
fn header_pairs(headers: &http::HeaderMap) -> Vec<(&str, &[u8])> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect()
}

/// Answers the caller's upgrade and, inside the socket, says why the route is refused.
/// `marker`: the exit marker with code 1 follows the reason, on the routes whose rack stream
/// ends with one (exec and shells, where the CLI exits with its code); elsewhere the CLI prints
/// a log stream as it comes and copies a tunnel's frames into the local connection, where a
/// marker is only noise.
fn refuse_in_socket(
    mut parts: http::request::Parts,
    key: Option<ws::ClientKey>,
    reason: String,
    marker: bool,
) -> Response {
    let on_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    if let Some(on_upgrade) = on_upgrade {
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let _ = ws::refuse(
                    hyper_util::rt::TokioIo::new(upgraded),
                    &reason,
                    std::time::Duration::from_secs(2),
                    marker,
                )
                .await;
            }
        });
    }
    switching_protocols(key.as_ref())
}

fn switching_protocols(key: Option<&ws::ClientKey>) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Some(accept) = key.and_then(|k| HeaderValue::from_str(&ws::accept_key(k.as_str())).ok())
    {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    r
}

/// Whether the caller's token is usable now, and what it grants now (its scopes within its
/// owner's current roles, and its maker's: [`Grant::of_token`]).
fn standing_now(state: &ProxyState, caller: &Caller) -> (bool, Grant) {
    state.store.with_state(|s| {
        let usable = s.tokens.usable(&caller.token.id, Clock.now());
        let grant = Grant::of_token(&caller.token, &s.tokens, &s.identities);
        (usable, grant)
    })
}

/// What a caller is told in the socket when its token or owner changed as its stream opened.
const CHANGED_WHILE_OPENING: &str = "this token, or the roles of its owner or of whoever made it, changed while the stream was \
     opening; check with a gateway admin";

/// Why a call's intent was not sequenced: its token stopped being usable, or its owner lost a
/// permission the call needs, after the call was checked.
const NO_LONGER_USABLE: &str = "token_no_longer_usable";
const NO_LONGER_PERMITTED: &str = "permission_no_longer_held";

/// What a permitted call's caller must go on holding: its token usable (not revoked, not
/// expired), and granting every permission the call needs ([`Grant::of_token`]: its owner, and
/// whoever made it for them, not disabled and still holding them). The token's scopes are fixed
/// when it is made and held them when the call was permitted, so only the owner's and the
/// maker's roles can narrow the grant since. Checked as a guarded intent is sequenced
/// ([`still_allowed`]) and as the call's bodies stream ([`Revocable`]).
#[derive(Clone)]
struct StillStanding {
    token: TokenId,
    owner: Principal,
    required: PermSet,
}

impl StillStanding {
    fn of(caller: &Caller, required: PermSet) -> StillStanding {
        StillStanding {
            token: caller.token.id,
            owner: caller.token.owner.clone(),
            required,
        }
    }

    fn check(&self, s: &projections::Projections) -> Result<(), Rejected> {
        let Some(token) = s
            .tokens
            .get(&self.token)
            .filter(|t| t.is_usable(Clock.now()))
        else {
            return Err(Rejected(NO_LONGER_USABLE));
        };
        if Grant::of_token(token, &s.tokens, &s.identities)
            .set()
            .contains_all(self.required)
        {
            Ok(())
        } else {
            Err(Rejected(NO_LONGER_PERMITTED))
        }
    }
}

/// The guard of a call's intent: the caller still standing ([`StillStanding`]) when the intent
/// is sequenced. The call was checked earlier ([`standing_now`]); used where a rack lookup for
/// it came in between (see [`intent::record`] for why not on every call).
fn still_allowed(caller: &Caller, required: PermSet) -> Guard<projections::Projections> {
    let standing = StillStanding::of(caller, required);
    Box::new(move |s: &projections::Projections| standing.check(s))
}

/// The refusal of a call whose intent [`still_allowed`] rejected, recorded as a denial.
async fn refuse_no_longer_allowed(
    state: &ProxyState,
    caller: &Caller,
    method: &str,
    path: &str,
    why: &Rejected,
    permission: Option<String>,
    recorded_params: &[(String, String)],
) -> ProxyError {
    let refusal = no_longer_allowed(why);
    match record_denial(
        state,
        caller,
        method,
        path,
        refusal.kind(),
        permission,
        recorded_params,
    )
    .await
    {
        Ok(()) => refusal,
        Err(e) => e,
    }
}

/// What a permitted call relies on for as long as it runs: the route's permissions, and those
/// the gateway checked beyond them and would have answered otherwise without (a build's
/// process reached through `convox:build:exec`, a build log stored elsewhere through
/// `convox:object:read`, and, on a route whose answer is masked, the env and secret reads that
/// decide what the mask shows). Losing one mid-call cuts the call as losing the route's does.
fn relied_on(
    grant: &Grant,
    matched: &policy::Matched,
    required: &[Perm],
    mask: Option<ResponseMask>,
) -> PermSet {
    let name = matched.rule().name;
    let mut relied = PermSet::of(required.iter().copied());
    let mut also = |perm: Perm| {
        if grant.holds(perm) {
            relied = relied.union(PermSet::of([perm]));
        }
    };
    if policy::routes::INTO_PROCESS.contains(&name) || names_the_build_service(matched).is_some() {
        also(Perm::BuildExec);
    }
    if name == "build.logs" {
        also(Perm::ObjectRead);
    }
    match mask {
        Some(ResponseMask::ReleaseEnv | ResponseMask::BuildRepository) => {
            also(Perm::EnvRead);
            also(Perm::SecretRead);
        }
        Some(ResponseMask::ProcessCommand) => also(Perm::SecretRead),
        Some(ResponseMask::RackPassword) | None => {}
    }
    relied
}

/// The refusal of a call whose answer the gateway read whole (to rewrite it, or an error
/// answer) and whose credential stopped standing meanwhile: the caller gets none of it, and the
/// completion records the rack's status with the reason. `None` while it stands.
fn refused_since(credential: &Credential, pending: &Pending, status: u16) -> Option<ProxyError> {
    if credential.stands().is_ok() {
        return None;
    }
    let why = credential.cut()?;
    pending.complete(status, None, Some(why.0));
    Some(no_longer_allowed(why))
}

/// What the caller gets for a call whose intent [`still_allowed`] rejected.
fn no_longer_allowed(why: &Rejected) -> ProxyError {
    if why.0 == NO_LONGER_USABLE {
        ProxyError::Unauthenticated(NO_LONGER_USABLE)
    } else {
        ProxyError::Forbidden {
            kind: NO_LONGER_PERMITTED,
            what: "the token's owner, or whoever made it for them, no longer holds a permission \
                   this call needs"
                .into(),
        }
    }
}

/// What the relay and the refusals inside a socket must know of a stream's route.
#[derive(Clone, Copy)]
struct StreamKind {
    /// The rack ends the stream with an exit-code line ([`policy::routes::EXIT_CODE_STREAMS`]).
    exit_code: bool,
    /// The rack reads what the caller sends: all but [`policy::routes::LOG_STREAMS`].
    rack_reads_input: bool,
    /// The rack password is taken out of the output: all but
    /// [`policy::routes::TUNNEL_STREAMS`].
    scrub_output: bool,
    /// What each direction's SHA-256 is recorded for: not a side that holds secrets by design
    /// (a database console, a tunnel), as for a plain call's answer ([`Pending::hash_answer`]).
    hash_input: bool,
    hash_output: bool,
}

impl StreamKind {
    fn of(route: &str) -> StreamKind {
        StreamKind {
            exit_code: policy::routes::EXIT_CODE_STREAMS.contains(&route),
            rack_reads_input: !policy::routes::LOG_STREAMS.contains(&route),
            scrub_output: !policy::routes::TUNNEL_STREAMS.contains(&route),
            hash_input: !secret_by_design(route, |s| s.request),
            hash_output: !secret_by_design(route, |s| s.response),
        }
    }
}

/// Whether a side of `route` (picked by `side`) holds secrets by design: `sensitive` or
/// `credential` in the route table (an unknown route counts as one).
fn secret_by_design(route: &str, side: fn(policy::routes::Secrets) -> Secrecy) -> bool {
    policy::routes::by_name(route).is_none_or(|r| side(r.secrets) >= Secrecy::Sensitive)
}

/// A permitted WebSocket call: recorded, connected to the rack, answered with 101 only after
/// the rack's 101, then relayed frame by frame until it ends; `StreamOpened` and
/// `StreamClosed` bracket it in the log.
#[allow(clippy::too_many_arguments)]
async fn open_stream(
    state: &Arc<ProxyState>,
    caller: &Caller,
    mut parts: http::request::Parts,
    key: ws::ClientKey,
    method: &str,
    path: &canonical::CanonicalPath,
    params: &CanonicalParams,
    permission: &str,
    required: &[Perm],
    stream: StreamKind,
    recorded_params: Vec<(String, String)>,
    request_id: &str,
    peer: SocketAddr,
    still_permitted: &(dyn Fn() -> Result<(), &'static str> + Sync),
) -> Result<Response, ProxyError> {
    let Some(registration) = state.streams.register(
        caller.token.id,
        &caller.token.owner,
        state.store.with_state(|s| {
            s.tokens
                .makers(&caller.token)
                .into_iter()
                .cloned()
                .collect()
        }),
        state.limits.streams_per_principal,
    ) else {
        record_denial(
            state,
            caller,
            method,
            path.as_str(),
            "stream_limit",
            Some(permission.to_owned()),
            &recorded_params,
        )
        .await?;
        // Inside the socket, as every WebSocket refusal, so the CLI shows why.
        return Ok(refuse_in_socket(
            parts,
            Some(key),
            "too many open streams for this user; close one first (each `convox logs` or \
             `deploy` holds its sockets until it exits)"
                .to_owned(),
            stream.exit_code,
        ));
    };
    // A revocation, disablement or demotion applied since the caller was checked closed the
    // streams registered then, not this one: checked again now that it is registered (the
    // watcher sees whatever is applied after this look).
    if let Err(kind) = still_permitted() {
        drop(registration);
        record_denial(
            state,
            caller,
            method,
            path.as_str(),
            kind,
            Some(permission.to_owned()),
            &recorded_params,
        )
        .await?;
        return Ok(refuse_in_socket(
            parts,
            Some(key),
            CHANGED_WHILE_OPENING.to_owned(),
            stream.exit_code,
        ));
    }
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        // Refused (and recorded) before `open_stream`; kept so nothing is sent to the rack if not.
        return Err(ProxyError::BadRequest {
            kind: "invalid_upgrade",
            what: "the connection cannot be upgraded".into(),
        });
    };
    let intent = command_requested(
        caller,
        method,
        path.as_str(),
        Some(permission.to_owned()),
        Decision::Allow,
        "",
        recorded_params.clone(),
    );
    let target = forward_target(path, params);
    // Streams are few, and a build log's lookup may come before this: always guarded.
    let guard = still_allowed(caller, PermSet::of(required.iter().copied()));
    let if_abandoned = abandoned_before_forward(&caller.request_id);
    let recorded =
        match intent::record(&state.store, intent, Some(guard), target, if_abandoned).await {
            Ok(recorded) => recorded,
            Err(AppendError::Rejected(why)) => {
                drop(registration);
                // Back where the refusal's own upgrade takes it from.
                parts.extensions.insert(on_upgrade);
                let refusal = refuse_no_longer_allowed(
                    state,
                    caller,
                    method,
                    path.as_str(),
                    &why,
                    Some(permission.to_owned()),
                    &recorded_params,
                )
                .await;
                return match refusal {
                    ProxyError::AuditUnavailable => Err(refusal),
                    _ => Ok(refuse_in_socket(
                        parts,
                        Some(key),
                        CHANGED_WHILE_OPENING.to_owned(),
                        stream.exit_code,
                    )),
                };
            }
            Err(_) => return Err(ProxyError::AuditUnavailable),
        };
    // From here the rack may see the upgrade: however the call ends, even dropped while the
    // rack's answer is awaited, its end is recorded.
    let pending = Pending::new(state, request_id, Instant::now());
    let rack = match connect_rack(state, &recorded, &parts.headers, &caller.token.owner, peer).await
    {
        Ok(io) => io,
        Err(no) => {
            // A refused upgrade is the rack's answer, passed on; an unreachable rack is not.
            let error = no.error();
            let failure = (!matches!(no, NoSocket::Answered(_))).then(|| error.kind());
            pending.complete(error.status().as_u16(), None, failure);
            return Err(error);
        }
    };
    let state2 = state.clone();
    let expires = caller.token.expires;
    let upgrading = parts.extensions.get::<crate::server::Upgrading>().cloned();
    let caller_upgraded = async move {
        let upgraded = on_upgrade.await;
        // The relay keeps the stream's time from here (idle, caller silence, close timeouts).
        if let (Ok(_), Some(upgrading)) = (&upgraded, upgrading) {
            upgrading.relayed();
        }
        upgraded
    };
    tokio::spawn(async move {
        relay_stream(
            state2,
            caller_upgraded,
            rack,
            registration,
            pending,
            stream,
            expires,
        )
        .await;
    });
    Ok(switching_protocols(Some(&key)))
}

/// Connects to the rack and performs its handshake; on failure, the status to record.
async fn connect_rack(
    state: &ProxyState,
    recorded: &Recorded<String>,
    incoming: &http::HeaderMap,
    actor: &Principal,
    peer: SocketAddr,
) -> Result<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>, NoSocket> {
    // Bounded by the connector (`rack_tls::CONNECT_TIMEOUT`).
    let tcp = state
        .upstream
        .connect()
        .await
        .map_err(|_| NoSocket::Unreachable)?;
    let actor = HeaderValue::from_str(&actor.0).map_err(|_| NoSocket::Unreachable)?;
    let mut headers = headers::upstream(
        incoming,
        state.upstream.authorization(),
        &actor,
        state.is_trusted(peer.ip()),
    );
    for h in [
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_EXTENSIONS,
        header::SEC_WEBSOCKET_PROTOCOL,
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
    ] {
        headers.remove(h);
    }
    // The rack's upgrader checks that Origin names its own host (convox-api.md §4.6): both
    // carry the `Host` every forwarded request carries, with the rack's own scheme (the check
    // compares hosts only, but an Origin is what the rack's own site would send).
    let host = state.upstream.host();
    if headers.contains_key(header::ORIGIN) {
        let scheme = state.upstream.scheme();
        let origin = host
            .to_str()
            .ok()
            .and_then(|h| HeaderValue::from_str(&format!("{scheme}://{h}")).ok())
            .ok_or(NoSocket::Unreachable)?;
        headers.insert(header::ORIGIN, origin);
    }
    headers.insert(header::HOST, host.clone());
    let uri = state
        .upstream
        .uri(recorded.call())
        .map_err(|_| NoSocket::Unreachable)?;
    let path_only: http::Uri = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned())
        .parse()
        .map_err(|_| NoSocket::Unreachable)?;
    let mut req = http::Request::new(());
    *req.uri_mut() = path_only;
    *req.headers_mut() = headers;
    match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        ws::connect_upstream(tcp, req),
    )
    .await
    {
        Ok(Ok(io)) => Ok(io),
        Ok(Err(ws::ConnectError::Refused { status, .. })) => Err(NoSocket::Answered(status)),
        // The handshake was on its way: the rack may have started the command.
        Ok(Err(_)) | Err(_) => Err(NoSocket::Unanswered),
    }
}

/// Why the rack's WebSocket did not open: the rack answered the upgrade with another status
/// (passed on to the caller, as the rack sent it), it could not be reached or connecting timed
/// out (nothing was sent), or it was sent the handshake and gave no usable answer in time,
/// which it may have acted on. The last two are answered, and recorded, as 502, as an HTTP
/// call's are.
#[derive(Clone, Copy)]
enum NoSocket {
    Answered(http::StatusCode),
    Unreachable,
    Unanswered,
}

impl NoSocket {
    /// What the caller is answered, and its status is the one recorded.
    fn error(self) -> ProxyError {
        match self {
            NoSocket::Answered(status) => ProxyError::RackRefusedUpgrade(status),
            NoSocket::Unreachable => ProxyError::Upstream,
            NoSocket::Unanswered => ProxyError::NoAnswer,
        }
    }
}

/// What a failed call to the rack means: only a failure to connect proves the rack never got
/// it; any later failure may come after the rack read (and acted on) the call.
fn unanswered(e: &SendError) -> ProxyError {
    if e.never_sent() {
        ProxyError::Upstream
    } else {
        ProxyError::NoAnswer
    }
}

/// Waits for the caller's upgrade, relays, and brackets the stream with its events.
async fn relay_stream(
    state: Arc<ProxyState>,
    on_upgrade: impl std::future::Future<Output = hyper::Result<hyper::upgrade::Upgraded>>,
    rack: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
    registration: Registration,
    pending: Pending,
    stream: StreamKind,
    expires: Option<Timestamp>,
) {
    let Ok(caller) = on_upgrade.await else {
        // The rack's socket is open (an exec may have started): the intent still gets its end.
        pending.complete(101, None, Some("caller_upgrade_failed"));
        return;
    };
    let opened = state
        .store
        .append(vec![Event::StreamOpened {
            request: pending.request.clone(),
        }])
        .await;
    if opened.is_err() {
        // Fail closed: nothing is relayed that the log does not show opening. Dropping the
        // rack's socket ends the stream there; the caller is told why inside its socket, with
        // exit code 1 where the CLI reads one (a bare close would read as success). The
        // intent's end is recorded if the log takes it.
        drop(rack);
        pending.complete(101, None, Some("audit_unavailable"));
        // The stream never opened: its slot is free while the refusal lingers.
        drop(registration);
        let reason = if stream.exit_code {
            "the gateway cannot record this stream (its audit log is unavailable), so it was \
             closed before anything was relayed; the rack had been asked to open it, so a \
             command may have started: check before running it again"
        } else {
            "the gateway cannot record this stream (its audit log is unavailable), so it was \
             closed before anything was relayed; try again later"
        };
        let _ = ws::refuse(
            hyper_util::rt::TokioIo::new(caller),
            reason,
            std::time::Duration::from_secs(2),
            stream.exit_code,
        )
        .await;
        return;
    }
    let request = pending.streamed();
    let config = ws::RelayConfig {
        idle_after_eof: state.limits.stream_idle,
        exit_code: stream.exit_code,
        rack_reads_input: stream.rack_reads_input,
        scrub: stream
            .scrub_output
            .then(|| state.upstream.scrubber().clone()),
        ..ws::RelayConfig::default()
    };
    let caller = crate::server::upgraded::UpgradedCaller::new(caller);
    // Out of descriptors, the stream goes on without it (its caller's end seen as it reads).
    let hangup = caller
        .socket()
        .and_then(|socket| ws::Hangup::of(socket).ok());
    let relay = ws::relay(caller, rack, config, registration.cancel.clone(), hangup);
    tokio::pin!(relay);
    // A stream lasts no longer than the token that opened it: at its expiry it ends as a
    // revoked one does (expiry is a moment, not an event a revocation watcher could see).
    let (stats, expired) = tokio::select! {
        stats = &mut relay => (stats, false),
        () = until(expires) => {
            // Already cancelled (revoked, a stop): the stream ends for that, not its expiry.
            let expired = !*registration.cancel.borrow();
            registration.cancel();
            (relay.await, expired)
        }
    };
    let ended = match stats.closed_by {
        ws::ClosedBy::Cancelled if expired => "token_expired",
        how => how.kind(),
    };
    // Enqueued before the registration goes, so a shutdown that waits for the registry to empty
    // knows every closed stream is recorded. Nobody waits for it: if the write that takes it
    // fails, the store keeps it for a later one.
    let closed = state.store.enqueue(vec![Event::StreamClosed {
        request,
        duration_ns: u64::try_from(stats.duration.as_nanos()).unwrap_or(u64::MAX),
        bytes_in: stats.bytes_in,
        bytes_out: stats.bytes_out,
        exit_code: stats.exit_code,
        sha256_in: stream.hash_input.then_some(stats.sha256_in),
        sha256_out: stream.hash_output.then_some(stats.sha256_out),
        ended: Some(ended.to_owned()),
    }]);
    drop(registration);
    drop(closed);
}

/// Sleeps until `at` (never, for `None`).
async fn until(at: Option<Timestamp>) {
    match at {
        Some(at) => tokio::time::sleep(at.since(Clock.now())).await,
        None => std::future::pending().await,
    }
}

/// Whether a request's `Origin` (if any) names the host the caller addressed, as the rack's
/// own upgrader requires (convox-api.md §4.6; the CLI sends `<RACK_URL scheme>://<host>`), and,
/// where the gateway knows how it is reached, by that `scheme`: `http://gw` is another site
/// than `https://gw`, and one a network that rewrites plain HTTP can serve.
fn same_origin(headers: &http::HeaderMap, scheme: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let Some((origin_scheme, rest)) = origin.to_str().ok().and_then(|o| o.split_once("://")) else {
        return false;
    };
    let origin_host = rest.trim_end_matches('/');
    let scheme_matches = scheme.is_none_or(|s| s.eq_ignore_ascii_case(origin_scheme));
    scheme_matches && host.is_some_and(|h| origin_host.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::{Coding, StreamKind, same_origin, uri_len};

    /// Only a single gzip is decoded; no header or `identity` is clear text; every other coding,
    /// stacked ones and one hidden on a second line included, is not read.
    #[test]
    fn an_answer_coding_is_gzip_only_when_nothing_else_is_stacked() {
        let cases: [(&[&str], Coding); 10] = [
            (&[], Coding::Identity),
            (&["identity"], Coding::Identity),
            (&["gzip"], Coding::Gzip),
            (&[" GZip "], Coding::Gzip),
            (&["x-gzip"], Coding::Gzip),
            (&["identity, gzip"], Coding::Gzip),
            (&["gzip, gzip"], Coding::Other),
            (&["gzip", "br"], Coding::Other),
            (&["deflate"], Coding::Other),
            (&[""], Coding::Other),
        ];
        for (lines, expected) in cases {
            let mut headers = http::HeaderMap::new();
            for line in lines {
                headers.append(http::header::CONTENT_ENCODING, line.parse().unwrap());
            }
            assert_eq!(Coding::of(&headers), expected, "{lines:?}");
        }
    }

    /// The host must be the one addressed, and the scheme the gateway's where it knows it.
    #[test]
    fn an_origin_is_the_gateways_by_host_and_known_scheme() {
        let cases = [
            (None, None, true),
            (Some("http://gw.example"), None, true),
            (Some("https://gw.example"), None, true),
            (Some("https://GW.example/"), Some("https"), true),
            (Some("http://gw.example"), Some("https"), false),
            (Some("https://gw.example"), Some("http"), false),
            (Some("https://evil.example"), None, false),
            (Some("https://gw.example.evil"), Some("https"), false),
            (Some("gw.example"), None, false),
            (Some("null"), None, false),
        ];
        for (origin, scheme, expected) in cases {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::HOST, "gw.example".parse().unwrap());
            if let Some(o) = origin {
                headers.insert(http::header::ORIGIN, o.parse().unwrap());
            }
            assert_eq!(
                same_origin(&headers, scheme),
                expected,
                "{origin:?} {scheme:?}"
            );
        }
    }

    /// A tunnel's bytes are another program's protocol, passed whole; every other stream's
    /// output is searched for the rack password.
    #[test]
    fn only_a_tunnels_output_is_not_searched_for_the_rack_password() {
        assert!(!StreamKind::of("proxy.tcp").scrub_output);
        for route in [
            "process.exec",
            "instance.shell",
            "app.logs",
            "build.logs",
            "process.logs",
            "rack.logs",
        ] {
            assert!(StreamKind::of(route).scrub_output, "{route}");
        }
    }

    #[test]
    fn uri_len_is_the_written_length() {
        for uri in [
            "/apps",
            "/apps?",
            "/apps/x/releases?limit=5",
            "*",
            "http://rack.example:8080/apps?a=b",
            "https://rack.example/apps",
            "rack.example:443",
        ] {
            let parsed: http::Uri = uri.parse().unwrap();
            assert_eq!(uri_len(&parsed), parsed.to_string().len(), "{uri}");
        }
    }
}
