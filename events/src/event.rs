//! The event catalogue: every fact the gateway records, with its stable code and its encoding.
//!
//! An event is `{0: code, 1: body}` where the body is a map with integer keys. Each variant is
//! encoded and decoded by hand through [`Event::fields`] and [`Event::from_body`], never by a
//! serde derive, so the bytes are ours and cannot change when a library does.
//!
//! **Invariant:** a released code is immutable. Its body may only gain optional fields (new keys,
//! absent when unset); any other change is a new code, and the projections fold both. Unknown
//! keys are refused, so a reader never silently drops a field it does not understand.
//! `Event::code` is an exhaustive `match`: a new variant does not compile without a code, and the
//! catalogue test fails until it has a CDDL entry and a fixture in `schemas/`.

use std::fmt;

use crate::cbor::{FieldError, MapReader, Value, Writer};
use crate::hash::Hash;
use crate::seq::Seq;
use crate::time::Timestamp;

/// Every event code, in catalogue order. The schema and fixture tests iterate this list.
pub const CODES: &[&str] = &[
    "G1000I", "G1001I", "G1002I", "G1003I", "G2000I", "G2001I", "G2002I", "G2003I", "G3000I",
    "G3001I", "G4000I", "G4001I", "G4002I", "G4003I", "G4004W",
];

/// One recorded fact. Field order in each variant is the order of its body keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// G1000I: the first record of every log; names the log and the key that signs its checkpoints.
    LogCreated {
        origin: String,
        checkpoint_key: String,
    },
    /// G1001I: a checkpoint key joined the key history (rotation); `checkpoint_key` is its vkey.
    CheckpointKeyAdded {
        checkpoint_key: String,
        by: Principal,
    },
    /// G1002I: a projection snapshot was written; its digest lets a later start refuse a forged one.
    SnapshotRecorded {
        covers: Seq,
        covers_hash: Hash,
        digest: Hash,
    },
    /// G1003I: the effective configuration changed; `values` are the security-relevant settings.
    ConfigApplied {
        digest: Hash,
        values: Vec<(String, String)>,
    },
    /// G2000I: a role was granted to a user.
    RoleGranted {
        user: Principal,
        role: Role,
        by: Principal,
    },
    /// G2001I: a role was taken from a user.
    RoleRevoked {
        user: Principal,
        role: Role,
        by: Principal,
    },
    /// G2002I: a user was disabled; their sessions and tokens stop at once.
    UserDisabled {
        user: Principal,
        by: Principal,
        reason: String,
    },
    /// G2003I: a disabled user was enabled again.
    UserEnabled { user: Principal, by: Principal },
    /// G3000I: an API token was created. Only the SHA-256 of the secret is recorded.
    TokenCreated {
        token: TokenId,
        name: String,
        owner: Principal,
        scopes: Vec<Permission>,
        secret_sha256: Hash,
        expires: Option<Timestamp>,
        dev_only: bool,
        by: Principal,
        /// The token `by` created it with, through the gateway's API; absent for one made
        /// offline or by `dev`, and in records from before the field (whose create call's own
        /// record, just before, names the token). What a leaked token minted is found by this,
        /// and revoked with it.
        by_token: Option<TokenId>,
    },
    /// G3001I: an API token was revoked.
    TokenRevoked {
        token: TokenId,
        by: Principal,
        reason: String,
    },
    /// G4000I: a rack call was decided. Appended durably before anything is forwarded.
    CommandRequested(Box<CommandRequested>),
    /// G4001I: an allowed rack call finished.
    CommandCompleted(Box<CommandCompleted>),
    /// G4002I: a WebSocket stream was opened upstream.
    StreamOpened { request: RequestId },
    /// G4003I: a WebSocket stream closed.
    StreamClosed {
        request: RequestId,
        duration_ns: u64,
        bytes_in: u64,
        bytes_out: u64,
        exit_code: Option<i64>,
        /// SHA-256 of the caller's data payloads, concatenated in the order read; `None` only in
        /// records written before the field existed.
        sha256_in: Option<Hash>,
        /// The same for the rack's data payloads.
        sha256_out: Option<Hash>,
        /// How the stream ended, e.g. `idle` (the rack had finished and nothing more passed),
        /// `caller_closed`, `rack_gone`, `cancelled` (a revoked token, a disabled or demoted
        /// owner, a stop), `token_expired`; `None` only in records written before the field
        /// existed.
        ended: Option<String>,
    },
    /// G4004W: unauthenticated denials from one address, coalesced so noise cannot flood the log.
    DenialsCounted {
        ip: String,
        reason: String,
        count: u64,
        first: Timestamp,
        last: Timestamp,
    },
}

/// The body of G4000I.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRequested {
    pub request: RequestId,
    pub actor: Principal,
    pub auth: AuthMethod,
    /// The token or session id the caller authenticated with, when there is one.
    pub credential: Option<String>,
    pub client_ip: String,
    pub user_agent: String,
    pub method: String,
    pub path: String,
    pub permission: Option<Permission>,
    pub decision: Decision,
    /// Why a call was denied; empty when allowed.
    pub reason: String,
    /// Parameters in request order; secret-bearing values are already `hmac-sha256:<hex>`.
    pub params: Vec<(String, String)>,
}

/// The body of G4001I.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandCompleted {
    pub request: RequestId,
    pub status: u16,
    pub duration_ns: u64,
    /// Bytes of a streamed upload sent to the rack (so far, if the rack answered before the
    /// upload ended; 0 for a form, whose parameters the intent records) and of the answer
    /// sent to the caller.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// SHA-256 of a streamed body, only when it passed whole.
    pub sha256_in: Option<Hash>,
    pub sha256_out: Option<Hash>,
    /// Why the gateway answered `status` itself instead of relaying the rack's answer (a 502:
    /// the rack unreachable, or an answer it could not mask), as the error kind the caller was
    /// told, or why the call did not run its course (`abandoned`: the caller went away before
    /// the answer; `answer_cut_short`: the answer stopped partway; `body_cut_short`, a 400:
    /// the upload's body stopped partway on the caller's side); `None` when the rack's
    /// answer was relayed whole. An auditor tells the cases apart here; a kind that begins
    /// `error_answer_` is of an error answer the rack gave (it refused the call), the others
    /// of a 2xx it gave or of no answer at all.
    pub failure: Option<String>,
}

/// A person or machine identity: an email, `system`, or `token:<id>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Principal(pub String);

/// A permission string `convox:<resource>:<action>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission(pub String);

/// An API token's public id (16 random bytes); never the secret.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenId(pub [u8; 16]);

/// The id the gateway gave one request, shared by its requested and completed events.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub String);

/// The roles. `viewer < ops < deployer < admin` inherit; `cicd` is for tokens only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Ops,
    Deployer,
    Admin,
    Cicd,
}

/// How a caller authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    None,
    Token,
    Session,
}

/// The outcome of authorization, recorded on every `CommandRequested`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    Deny,
}

/// Why an event body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event is not a map of {{0: code, 1: body}}")]
    Shape,
    #[error("unknown event code {0:?}")]
    UnknownCode(String),
    #[error("event {code}: {source}")]
    Field {
        code: &'static str,
        #[source]
        source: FieldError,
    },
    #[error("event {code}: field {key} ({name}): {what}")]
    Invalid {
        code: &'static str,
        key: u64,
        name: &'static str,
        what: &'static str,
    },
}

/// One body field: its integer key, its name in the JSON form, and its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub key: u64,
    pub name: &'static str,
    pub value: Value,
}

// === impl Event ===

impl Event {
    /// The stable code of this event: `G` + four digits + severity (`I`, `W`, `E`).
    pub fn code(&self) -> &'static str {
        match self {
            Event::LogCreated { .. } => "G1000I",
            Event::CheckpointKeyAdded { .. } => "G1001I",
            Event::SnapshotRecorded { .. } => "G1002I",
            Event::ConfigApplied { .. } => "G1003I",
            Event::RoleGranted { .. } => "G2000I",
            Event::RoleRevoked { .. } => "G2001I",
            Event::UserDisabled { .. } => "G2002I",
            Event::UserEnabled { .. } => "G2003I",
            Event::TokenCreated { .. } => "G3000I",
            Event::TokenRevoked { .. } => "G3001I",
            Event::CommandRequested(_) => "G4000I",
            Event::CommandCompleted(_) => "G4001I",
            Event::StreamOpened { .. } => "G4002I",
            Event::StreamClosed { .. } => "G4003I",
            Event::DenialsCounted { .. } => "G4004W",
        }
    }

    /// The body fields in key order; optional fields that are unset are left out.
    pub fn fields(&self) -> Vec<Field> {
        let mut b = Body::default();
        self.visit(&mut b);
        b.fields
    }

    /// Appends the canonical encoding of [`Event::to_value`] to `out`, without building it:
    /// the store encodes every record through here.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut count = Count(0);
        self.visit(&mut count);
        let mut w = Writer::new(out);
        w.map(2);
        w.uint(0);
        w.text(self.code());
        w.uint(1);
        w.map(count.0);
        self.visit(&mut Encode(w));
    }

    /// Hands each body field, in key order, to `b`: the one list of every event's fields.
    fn visit(&self, b: &mut impl Sink) {
        match self {
            Event::LogCreated {
                origin,
                checkpoint_key,
            } => {
                b.text(0, "origin", origin);
                b.text(1, "checkpoint_key", checkpoint_key);
            }
            Event::CheckpointKeyAdded { checkpoint_key, by } => {
                b.text(0, "checkpoint_key", checkpoint_key);
                b.text(1, "by", &by.0);
            }
            Event::SnapshotRecorded {
                covers,
                covers_hash,
                digest,
            } => {
                b.uint(0, "covers", covers.0);
                b.hash(1, "covers_hash", covers_hash);
                b.hash(2, "digest", digest);
            }
            Event::ConfigApplied { digest, values } => {
                b.hash(0, "digest", digest);
                b.pairs(1, "values", values);
            }
            Event::RoleGranted { user, role, by } | Event::RoleRevoked { user, role, by } => {
                b.text(0, "user", &user.0);
                b.text(1, "role", role.as_str());
                b.text(2, "by", &by.0);
            }
            Event::UserDisabled { user, by, reason } => {
                b.text(0, "user", &user.0);
                b.text(1, "by", &by.0);
                b.text(2, "reason", reason);
            }
            Event::UserEnabled { user, by } => {
                b.text(0, "user", &user.0);
                b.text(1, "by", &by.0);
            }
            Event::TokenCreated {
                token,
                name,
                owner,
                scopes,
                secret_sha256,
                expires,
                dev_only,
                by,
                by_token,
            } => {
                b.bytes(0, "token", &token.0);
                b.text(1, "name", name);
                b.text(2, "owner", &owner.0);
                let scopes: Vec<&str> = scopes.iter().map(|p| p.0.as_str()).collect();
                b.texts(3, "scopes", &scopes);
                b.hash(4, "secret_sha256", secret_sha256);
                if let Some(t) = expires {
                    b.int(5, "expires", t.0);
                }
                b.bool(6, "dev_only", *dev_only);
                b.text(7, "by", &by.0);
                if let Some(t) = by_token {
                    b.bytes(8, "by_token", &t.0);
                }
            }
            Event::TokenRevoked { token, by, reason } => {
                b.bytes(0, "token", &token.0);
                b.text(1, "by", &by.0);
                b.text(2, "reason", reason);
            }
            Event::CommandRequested(c) => {
                b.text(0, "request", &c.request.0);
                b.text(1, "actor", &c.actor.0);
                b.text(2, "auth", c.auth.as_str());
                if let Some(id) = &c.credential {
                    b.text(3, "credential", id);
                }
                b.text(4, "client_ip", &c.client_ip);
                b.text(5, "user_agent", &c.user_agent);
                b.text(6, "method", &c.method);
                b.text(7, "path", &c.path);
                if let Some(p) = &c.permission {
                    b.text(8, "permission", &p.0);
                }
                b.text(9, "decision", c.decision.as_str());
                b.text(10, "reason", &c.reason);
                b.pairs(11, "params", &c.params);
            }
            Event::CommandCompleted(c) => {
                b.text(0, "request", &c.request.0);
                b.uint(1, "status", u64::from(c.status));
                b.uint(2, "duration_ns", c.duration_ns);
                b.uint(3, "bytes_in", c.bytes_in);
                b.uint(4, "bytes_out", c.bytes_out);
                if let Some(h) = &c.sha256_in {
                    b.hash(5, "sha256_in", h);
                }
                if let Some(h) = &c.sha256_out {
                    b.hash(6, "sha256_out", h);
                }
                if let Some(f) = &c.failure {
                    b.text(7, "failure", f);
                }
            }
            Event::StreamOpened { request } => {
                b.text(0, "request", &request.0);
            }
            Event::StreamClosed {
                request,
                duration_ns,
                bytes_in,
                bytes_out,
                exit_code,
                sha256_in,
                sha256_out,
                ended,
            } => {
                b.text(0, "request", &request.0);
                b.uint(1, "duration_ns", *duration_ns);
                b.uint(2, "bytes_in", *bytes_in);
                b.uint(3, "bytes_out", *bytes_out);
                if let Some(code) = exit_code {
                    b.int(4, "exit_code", *code);
                }
                if let Some(h) = sha256_in {
                    b.hash(5, "sha256_in", h);
                }
                if let Some(h) = sha256_out {
                    b.hash(6, "sha256_out", h);
                }
                if let Some(how) = ended {
                    b.text(7, "ended", how);
                }
            }
            Event::DenialsCounted {
                ip,
                reason,
                count,
                first,
                last,
            } => {
                b.text(0, "ip", ip);
                b.text(1, "reason", reason);
                b.uint(2, "count", *count);
                b.int(3, "first", first.0);
                b.int(4, "last", last.0);
            }
        }
    }

    /// The event as the CBOR value `{0: code, 1: body}`.
    pub fn to_value(&self) -> Value {
        let body = self
            .fields()
            .into_iter()
            .map(|f| (f.key, f.value))
            .collect();
        Value::Map(vec![
            (0, Value::Text(self.code().to_owned())),
            (1, Value::Map(body)),
        ])
    }

    /// Decodes `{0: code, 1: body}`, refusing unknown codes, unknown keys and wrong types.
    pub fn from_value(v: &Value) -> Result<Event, EventError> {
        let Value::Map(entries) = v else {
            return Err(EventError::Shape);
        };
        let (code, body) = match entries.as_slice() {
            [(0, Value::Text(code)), (1, Value::Map(body))] => (code.as_str(), body.as_slice()),
            _ => return Err(EventError::Shape),
        };
        Event::from_body(code, body)
    }

    /// Decodes the body of the event with `code`.
    pub fn from_body(code: &str, body: &[(u64, Value)]) -> Result<Event, EventError> {
        let Some(code) = CODES.iter().copied().find(|c| *c == code) else {
            return Err(EventError::UnknownCode(code.to_owned()));
        };
        let mut r = Reader {
            code,
            map: MapReader::new(body),
        };
        let event = match code {
            "G1000I" => Event::LogCreated {
                origin: r.text(0)?,
                checkpoint_key: r.text(1)?,
            },
            "G1001I" => Event::CheckpointKeyAdded {
                checkpoint_key: r.text(0)?,
                by: Principal(r.text(1)?),
            },
            "G1002I" => Event::SnapshotRecorded {
                covers: Seq(r.uint(0)?),
                covers_hash: r.hash(1, "covers_hash")?,
                digest: r.hash(2, "digest")?,
            },
            "G1003I" => Event::ConfigApplied {
                digest: r.hash(0, "digest")?,
                values: r.pairs(1, "values")?,
            },
            "G2000I" | "G2001I" => {
                let user = Principal(r.text(0)?);
                let role = r.role(1)?;
                let by = Principal(r.text(2)?);
                if code == "G2000I" {
                    Event::RoleGranted { user, role, by }
                } else {
                    Event::RoleRevoked { user, role, by }
                }
            }
            "G2002I" => Event::UserDisabled {
                user: Principal(r.text(0)?),
                by: Principal(r.text(1)?),
                reason: r.text(2)?,
            },
            "G2003I" => Event::UserEnabled {
                user: Principal(r.text(0)?),
                by: Principal(r.text(1)?),
            },
            "G3000I" => Event::TokenCreated {
                token: r.token(0)?,
                name: r.text(1)?,
                owner: Principal(r.text(2)?),
                scopes: r.texts(3, "scopes")?.into_iter().map(Permission).collect(),
                secret_sha256: r.hash(4, "secret_sha256")?,
                expires: r.opt_int(5, "expires")?.map(Timestamp),
                dev_only: r.bool(6, "dev_only")?,
                by: Principal(r.text(7)?),
                by_token: r.opt_token(8, "by_token")?,
            },
            "G3001I" => Event::TokenRevoked {
                token: r.token(0)?,
                by: Principal(r.text(1)?),
                reason: r.text(2)?,
            },
            "G4000I" => Event::CommandRequested(Box::new(CommandRequested {
                request: RequestId(r.text(0)?),
                actor: Principal(r.text(1)?),
                auth: r.auth(2)?,
                credential: r.opt_text(3)?,
                client_ip: r.text(4)?,
                user_agent: r.text(5)?,
                method: r.text(6)?,
                path: r.text(7)?,
                permission: r.opt_text(8)?.map(Permission),
                decision: r.decision(9)?,
                reason: r.text(10)?,
                params: r.pairs(11, "params")?,
            })),
            "G4001I" => Event::CommandCompleted(Box::new(CommandCompleted {
                request: RequestId(r.text(0)?),
                status: r.status(1)?,
                duration_ns: r.uint(2)?,
                bytes_in: r.uint(3)?,
                bytes_out: r.uint(4)?,
                sha256_in: r.opt_hash(5, "sha256_in")?,
                sha256_out: r.opt_hash(6, "sha256_out")?,
                failure: r.opt_text(7)?,
            })),
            "G4002I" => Event::StreamOpened {
                request: RequestId(r.text(0)?),
            },
            "G4003I" => Event::StreamClosed {
                request: RequestId(r.text(0)?),
                duration_ns: r.uint(1)?,
                bytes_in: r.uint(2)?,
                bytes_out: r.uint(3)?,
                exit_code: r.opt_int(4, "exit_code")?,
                sha256_in: r.opt_hash(5, "sha256_in")?,
                sha256_out: r.opt_hash(6, "sha256_out")?,
                ended: r.opt_text(7)?,
            },
            "G4004W" => Event::DenialsCounted {
                ip: r.text(0)?,
                reason: r.text(1)?,
                count: r.uint(2)?,
                first: Timestamp(r.int(3, "first")?),
                last: Timestamp(r.int(4, "last")?),
            },
            _ => return Err(EventError::UnknownCode(code.to_owned())),
        };
        r.map
            .finish()
            .map_err(|source| EventError::Field { code, source })?;
        Ok(event)
    }
}

// === impl Role ===

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Ops,
        Role::Deployer,
        Role::Admin,
        Role::Cicd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Ops => "ops",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
            Role::Cicd => "cicd",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl AuthMethod ===

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Token => "token",
            AuthMethod::Session => "session",
        }
    }
}

// === impl Decision ===

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

// === impl Principal, Permission, TokenId, RequestId ===

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({})", self.0)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permission({})", self.0)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TokenId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<TokenId> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(TokenId(out))
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.to_hex())
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.0)
    }
}

/// Receives an event's body fields in key order; keys come ascending (the catalogue lists them
/// so). [`Body`] collects them as values, [`Count`] counts them, [`Encode`] writes them.
trait Sink {
    fn text(&mut self, key: u64, name: &'static str, s: &str);
    fn uint(&mut self, key: u64, name: &'static str, n: u64);
    fn int(&mut self, key: u64, name: &'static str, n: i64);
    fn bytes(&mut self, key: u64, name: &'static str, b: &[u8]);
    fn bool(&mut self, key: u64, name: &'static str, b: bool);
    /// An array of texts.
    fn texts(&mut self, key: u64, name: &'static str, items: &[&str]);
    /// An array of `[key, value]` text pairs.
    fn pairs(&mut self, key: u64, name: &'static str, pairs: &[(String, String)]);
    fn hash(&mut self, key: u64, name: &'static str, h: &Hash) {
        self.bytes(key, name, &h.0);
    }
}

/// Collects a body as [`Field`]s.
#[derive(Default)]
struct Body {
    fields: Vec<Field>,
}

impl Body {
    fn put(&mut self, key: u64, name: &'static str, value: Value) {
        self.fields.push(Field { key, name, value });
    }
}

impl Sink for Body {
    fn text(&mut self, key: u64, name: &'static str, s: &str) {
        self.put(key, name, Value::Text(s.to_owned()));
    }
    fn uint(&mut self, key: u64, name: &'static str, n: u64) {
        self.put(key, name, Value::Uint(n));
    }
    fn int(&mut self, key: u64, name: &'static str, n: i64) {
        self.put(key, name, Value::int(n));
    }
    fn bytes(&mut self, key: u64, name: &'static str, b: &[u8]) {
        self.put(key, name, Value::Bytes(b.to_vec()));
    }
    fn bool(&mut self, key: u64, name: &'static str, b: bool) {
        self.put(key, name, Value::Bool(b));
    }
    fn texts(&mut self, key: u64, name: &'static str, items: &[&str]) {
        let items = items.iter().map(|t| Value::Text((*t).to_owned())).collect();
        self.put(key, name, Value::Array(items));
    }
    fn pairs(&mut self, key: u64, name: &'static str, pairs: &[(String, String)]) {
        let items = pairs
            .iter()
            .map(|(k, v)| Value::Array(vec![Value::Text(k.clone()), Value::Text(v.clone())]))
            .collect();
        self.put(key, name, Value::Array(items));
    }
}

/// Counts a body's fields: the length of its map, written before the fields.
struct Count(usize);

impl Sink for Count {
    fn text(&mut self, _: u64, _: &'static str, _: &str) {
        self.0 += 1;
    }
    fn uint(&mut self, _: u64, _: &'static str, _: u64) {
        self.0 += 1;
    }
    fn int(&mut self, _: u64, _: &'static str, _: i64) {
        self.0 += 1;
    }
    fn bytes(&mut self, _: u64, _: &'static str, _: &[u8]) {
        self.0 += 1;
    }
    fn bool(&mut self, _: u64, _: &'static str, _: bool) {
        self.0 += 1;
    }
    fn texts(&mut self, _: u64, _: &'static str, _: &[&str]) {
        self.0 += 1;
    }
    fn pairs(&mut self, _: u64, _: &'static str, _: &[(String, String)]) {
        self.0 += 1;
    }
}

/// Writes a body's fields as CBOR map entries.
struct Encode<'a>(Writer<'a>);

impl Sink for Encode<'_> {
    fn text(&mut self, key: u64, _: &'static str, s: &str) {
        self.0.uint(key);
        self.0.text(s);
    }
    fn uint(&mut self, key: u64, _: &'static str, n: u64) {
        self.0.uint(key);
        self.0.uint(n);
    }
    fn int(&mut self, key: u64, _: &'static str, n: i64) {
        self.0.uint(key);
        self.0.int(n);
    }
    fn bytes(&mut self, key: u64, _: &'static str, b: &[u8]) {
        self.0.uint(key);
        self.0.bytes(b);
    }
    fn bool(&mut self, key: u64, _: &'static str, b: bool) {
        self.0.uint(key);
        self.0.bool(b);
    }
    fn texts(&mut self, key: u64, _: &'static str, items: &[&str]) {
        self.0.uint(key);
        self.0.array(items.len());
        for t in items {
            self.0.text(t);
        }
    }
    fn pairs(&mut self, key: u64, _: &'static str, pairs: &[(String, String)]) {
        self.0.uint(key);
        self.0.array(pairs.len());
        for (k, v) in pairs {
            self.0.array(2);
            self.0.text(k);
            self.0.text(v);
        }
    }
}

/// Reads a body by key, naming the event code in every error.
struct Reader<'a> {
    code: &'static str,
    map: MapReader<'a>,
}

impl<'a> Reader<'a> {
    fn field(&self, source: FieldError) -> EventError {
        EventError::Field {
            code: self.code,
            source,
        }
    }
    fn invalid(&self, key: u64, name: &'static str, what: &'static str) -> EventError {
        EventError::Invalid {
            code: self.code,
            key,
            name,
            what,
        }
    }
    fn req(&mut self, key: u64) -> Result<&'a Value, EventError> {
        self.map.req(key).map_err(|e| self.field(e))
    }
    fn text(&mut self, key: u64) -> Result<String, EventError> {
        match self.req(key)? {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(self.invalid(key, "", "expected text")),
        }
    }
    fn opt_text(&mut self, key: u64) -> Result<Option<String>, EventError> {
        match self.map.opt(key) {
            None => Ok(None),
            Some(Value::Text(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.invalid(key, "", "expected text")),
        }
    }
    fn uint(&mut self, key: u64) -> Result<u64, EventError> {
        match self.req(key)? {
            Value::Uint(n) => Ok(*n),
            _ => Err(self.invalid(key, "", "expected unsigned integer")),
        }
    }
    fn int(&mut self, key: u64, name: &'static str) -> Result<i64, EventError> {
        self.req(key)?
            .as_int()
            .ok_or_else(|| self.invalid(key, name, "expected integer in i64 range"))
    }
    fn opt_int(&mut self, key: u64, name: &'static str) -> Result<Option<i64>, EventError> {
        match self.map.opt(key) {
            None => Ok(None),
            Some(v) => v
                .as_int()
                .map(Some)
                .ok_or_else(|| self.invalid(key, name, "expected integer in i64 range")),
        }
    }
    fn bool(&mut self, key: u64, name: &'static str) -> Result<bool, EventError> {
        match self.req(key)? {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.invalid(key, name, "expected bool")),
        }
    }
    fn hash(&mut self, key: u64, name: &'static str) -> Result<Hash, EventError> {
        match self.req(key)? {
            Value::Bytes(b) => {
                Hash::from_slice(b).ok_or_else(|| self.invalid(key, name, "expected 32 bytes"))
            }
            _ => Err(self.invalid(key, name, "expected 32 bytes")),
        }
    }
    fn opt_hash(&mut self, key: u64, name: &'static str) -> Result<Option<Hash>, EventError> {
        if self.map.opt(key).is_none() {
            return Ok(None);
        }
        self.hash(key, name).map(Some)
    }
    fn token(&mut self, key: u64) -> Result<TokenId, EventError> {
        self.token_named(key, "token")
    }
    fn token_named(&mut self, key: u64, name: &'static str) -> Result<TokenId, EventError> {
        match self.req(key)? {
            Value::Bytes(b) => <[u8; 16]>::try_from(b.as_slice())
                .map(TokenId)
                .map_err(|_| self.invalid(key, name, "expected 16 bytes")),
            _ => Err(self.invalid(key, name, "expected 16 bytes")),
        }
    }
    fn opt_token(&mut self, key: u64, name: &'static str) -> Result<Option<TokenId>, EventError> {
        if self.map.opt(key).is_none() {
            return Ok(None);
        }
        self.token_named(key, name).map(Some)
    }
    fn texts(&mut self, key: u64, name: &'static str) -> Result<Vec<String>, EventError> {
        let Value::Array(items) = self.req(key)? else {
            return Err(self.invalid(key, name, "expected array of text"));
        };
        items
            .iter()
            .map(|v| match v {
                Value::Text(s) => Ok(s.clone()),
                _ => Err(self.invalid(key, name, "expected array of text")),
            })
            .collect()
    }
    fn pairs(&mut self, key: u64, name: &'static str) -> Result<Vec<(String, String)>, EventError> {
        let Value::Array(items) = self.req(key)? else {
            return Err(self.invalid(key, name, "expected array of [text, text]"));
        };
        items
            .iter()
            .map(|v| match v {
                Value::Array(kv) => match kv.as_slice() {
                    [Value::Text(k), Value::Text(v)] => Ok((k.clone(), v.clone())),
                    _ => Err(self.invalid(key, name, "expected array of [text, text]")),
                },
                _ => Err(self.invalid(key, name, "expected array of [text, text]")),
            })
            .collect()
    }
    fn role(&mut self, key: u64) -> Result<Role, EventError> {
        let s = self.text(key)?;
        Role::parse(&s).ok_or_else(|| self.invalid(key, "role", "unknown role"))
    }
    fn auth(&mut self, key: u64) -> Result<AuthMethod, EventError> {
        match self.text(key)?.as_str() {
            "none" => Ok(AuthMethod::None),
            "token" => Ok(AuthMethod::Token),
            "session" => Ok(AuthMethod::Session),
            _ => Err(self.invalid(key, "auth", "unknown auth method")),
        }
    }
    fn decision(&mut self, key: u64) -> Result<Decision, EventError> {
        match self.text(key)?.as_str() {
            "allow" => Ok(Decision::Allow),
            "deny" => Ok(Decision::Deny),
            _ => Err(self.invalid(key, "decision", "expected allow or deny")),
        }
    }
    fn status(&mut self, key: u64) -> Result<u16, EventError> {
        let n = self.uint(key)?;
        u16::try_from(n).map_err(|_| self.invalid(key, "status", "status out of range"))
    }
}
