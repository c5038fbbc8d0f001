//! The gateway API's JSON bodies (`rack_gateway::console::api`) agree with their schema: every
//! body type has one `$defs` entry, named after the type, in `schemas/api/v1/tokens.schema.json`
//! and a golden fixture in `schemas/fixtures/api/v1/`, and no fixture names an entry or a type
//! that does not exist.
//!
//! **Fixture rule:** a fixture `<Type>.json` (a later shape `<Type>-<n>.json`, n >= 2) holds
//! exactly the compact JSON that `serde_json::to_vec` writes for its value, which is what the API
//! sends on the wire (fields in declaration order, no spaces), followed by one newline. Every
//! fixture must deserialize into its type and re-serialize to those identical bytes, and
//! validate against its own `$defs` entry (with the `boon` crate, the JSON Schema validator the
//! `events` schema tests use) and against no other body's entry. Mutated fixtures (an unknown
//! field, a missing field, a field of the wrong type) prove each check can fail and that serde
//! and the schema agree on what a body holds, but for one thing: the schema closes every body,
//! while serde refuses an unknown field in a request and drops one in an answer.
//!
//! **Invariant:** committed fixtures are append-only. [`FIXTURE_SHA256`] pins the bytes of each
//! one, so a rewritten, regenerated or deleted fixture fails here; a new fixture adds a pin.

// clippy.toml allows these inside `#[test]` functions only; the helpers here are test code too,
// and a fixture that cannot be read should fail the test loudly, naming the file.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use events::event::TokenId;
use events::time::Timestamp;
use rack_gateway::console::api::{
    CreateTokenBody, ErrorBody, MAX_EXPIRY_DAYS, RevokeTokenBody, TokenCreatedBody, TokenListBody,
    TokenRevokedBody, TokenState, TokenView,
};
use rack_gateway::identity::token::TokenSecret;
use rack_gateway::policy::permissions::Perm;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

/// The SHA-256 of every committed fixture, in `sha256sum` format (run from
/// `schemas/fixtures/api/v1/`). Append a line for a new fixture; never edit or remove one.
const FIXTURE_SHA256: &str = "\
3325c95e652748b07a3f7e476bdfa7eddb9b419b3eae852b1441bf12fd8d47e9  CreateTokenBody.json
324b5088a504670104f25056b759ddd6824a14e8d161ae55b13d063fdf943b9a  ErrorBody.json
93a9bdea3670139c24a87f610a63b519623295ac72e6282b1cba01396962322d  RevokeTokenBody.json
0e9fad6a204ee940abe452f98cb8a8a390b4f1f15aa6dbb538d4da3929be9e31  TokenCreatedBody.json
561ce87ca89fceb9c5bfe025f1c9889cc6772fa6fcf9361826c5b93c1a4cbf61  TokenListBody.json
a20294aaa43a8326e6d53a9467044074da563a889b3a258c8b7f12078d9ac52a  TokenRevokedBody.json
db5bbd8260a937355b218c03626d8ac01de17f5caf643b265ad12a95cdad7694  TokenView.json
c1f3463669eb84e4556feab6f0c7d0331ed3e9bb745dfcf4954f0fddbe9e40a6  TokenView-2.json
49e9282a1898bd743a68a3848e9983335bbb662aee871b45b0d761a55fb6c706  TokenView-3.json
52014f2cd3ff117e06d92ef3cfef9784146fd1d1c8ae80fa6e77f42401cca86c  TokenView-4.json
72de23a9d250078f7dbe78905493e1f5a29b8b6939686e3c1a384738fb17aa24  RevokeTokenBody-2.json
ccb2017ed0dd70758512385c824d381a117928f552d8a7454e15d7533fbc4db1  TokenRevokedBody-2.json
";

const SCHEMA_URL: &str = "https://rack-gateway.invalid/schemas/api/v1/tokens.schema.json";

/// Reads JSON bytes into a body type and writes it back with `serde_json` (compact).
type Reencode = fn(&[u8]) -> Result<Vec<u8>, String>;

/// Every body type of the API, by its Rust name, which is also its `$defs` entry's name.
const BODIES: &[(&str, Reencode)] = &[
    ("CreateTokenBody", reencode::<CreateTokenBody>),
    ("TokenCreatedBody", reencode::<TokenCreatedBody>),
    ("TokenListBody", reencode::<TokenListBody>),
    ("TokenView", reencode::<TokenView>),
    ("RevokeTokenBody", reencode::<RevokeTokenBody>),
    ("TokenRevokedBody", reencode::<TokenRevokedBody>),
    ("ErrorBody", reencode::<ErrorBody>),
];

/// The serialized types of `api.rs` that are parts of a body, not bodies: type -> `$defs` entry.
const PARTS: &[(&str, &str)] = &[("TokenState", "token_state")];

/// Every [`TokenState`]; [`all_states_listed`] fails to compile when a variant is missing.
const STATES: [TokenState; 3] = [TokenState::Active, TokenState::Expired, TokenState::Revoked];

fn all_states_listed(s: TokenState) {
    match s {
        TokenState::Active | TokenState::Expired | TokenState::Revoked => {}
    }
}

fn reencode<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let value: T = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    serde_json::to_vec(&value).map_err(|e| e.to_string())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures_dir() -> PathBuf {
    root().join("schemas/fixtures/api/v1")
}

fn schema() -> Json {
    let text = std::fs::read_to_string(root().join("schemas/api/v1/tokens.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The `$defs` entries of the schema that are bodies: those named like a Rust type.
fn body_entries(schema: &Json) -> Vec<String> {
    schema["$defs"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(|c: char| c.is_ascii_uppercase()))
        .cloned()
        .collect()
}

fn reencoder(body: &str) -> Reencode {
    BODIES
        .iter()
        .find(|(name, _)| *name == body)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("{body}: not a body type of the API"))
}

/// One fixture file: its name without `.json`, the body type that name gives, and its bytes.
struct Fixture {
    name: String,
    body: String,
    bytes: Vec<u8>,
}

impl Fixture {
    /// The fixture's JSON, without the closing newline.
    fn wire(&self) -> &[u8] {
        self.bytes.strip_suffix(b"\n").unwrap_or(&self.bytes)
    }

    fn json(&self) -> Json {
        serde_json::from_slice(self.wire()).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

/// Every file in `schemas/fixtures/api/v1/`, by name; any file not named `<Type>.json` or
/// `<Type>-<n>.json` (n >= 2) fails.
fn fixtures() -> Vec<Fixture> {
    events::fixtures::read_dir(&fixtures_dir(), "json", &|_| false)
        .into_iter()
        .map(|f| Fixture {
            name: f.name,
            body: f.kind,
            bytes: f.bytes,
        })
        .collect()
}

// === JSON Schema ===

/// `tokens.schema.json` compiled with `boon`, which first checks the schema itself against the
/// draft 2020-12 meta-schema, and each `$defs` entry compiled at its JSON pointer.
struct Validator {
    schemas: boon::Schemas,
    defs: BTreeMap<String, boon::SchemaIndex>,
}

impl Validator {
    fn new() -> Result<Validator, String> {
        let schema = schema();
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler
            .add_resource(SCHEMA_URL, schema.clone())
            .map_err(|e| format!("{e:#}"))?;
        compiler
            .compile(SCHEMA_URL, &mut schemas)
            .map_err(|e| format!("{e:#}"))?;
        let mut defs = BTreeMap::new();
        for name in schema["$defs"].as_object().unwrap().keys() {
            let index = compiler
                .compile(&format!("{SCHEMA_URL}#/$defs/{name}"), &mut schemas)
                .map_err(|e| format!("{name}: {e:#}"))?;
            defs.insert(name.clone(), index);
        }
        Ok(Validator { schemas, defs })
    }

    /// Validates `instance` against the `$defs` entry `def`.
    fn validate(&self, def: &str, instance: &Json) -> Result<(), String> {
        let index = *self
            .defs
            .get(def)
            .unwrap_or_else(|| panic!("the schema has no $defs entry {def}"));
        self.schemas
            .validate(instance, index)
            .map_err(|e| format!("{e:#}"))
    }

    fn is_valid(&self, def: &str, instance: &Json) -> bool {
        self.validate(def, instance).is_ok()
    }
}

fn validator() -> Validator {
    Validator::new().unwrap_or_else(|e| panic!("tokens.schema.json does not compile: {e}"))
}

// === Mutations ===

/// Whether serde reads `instance` as the fixture's body type.
fn serde_reads(f: &Fixture, instance: &Json) -> bool {
    serde_round_trip(f, instance).is_some()
}

/// What serde writes back after reading `instance` as the fixture's body type, if it reads it.
fn serde_round_trip(f: &Fixture, instance: &Json) -> Option<Json> {
    let bytes = reencoder(&f.body)(&serde_json::to_vec(instance).unwrap()).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// A value of another JSON type than `v`, of a type no field of that kind accepts.
fn wrong_type(v: &Json) -> Json {
    match v {
        Json::String(_) => Json::from(7),
        Json::Number(_) => Json::from("7"),
        Json::Array(_) => Json::from("[]"),
        Json::Bool(_) => Json::from(1),
        Json::Object(_) | Json::Null => Json::Array(Vec::new()),
    }
}

/// The serialized types that `src/console/api.rs` declares: each `pub struct` or `pub enum`
/// whose attributes derive `Serialize`.
fn serialized_types_of_api_rs() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("src/console/api.rs")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line
            .strip_prefix("pub struct ")
            .or_else(|| line.strip_prefix("pub enum "))
        else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let attributes = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.starts_with("#[") || l.starts_with("///"));
        if attributes
            .filter(|l| l.starts_with("#[derive("))
            .any(|l| l.contains("Serialize"))
        {
            out.push(name);
        }
    }
    out
}

// === Tests ===

#[test]
fn the_schema_is_valid_2020_12_and_every_body_is_closed() {
    // Compiling checks the schema against the draft 2020-12 meta-schema.
    if let Err(e) = Validator::new() {
        panic!("tokens.schema.json is not a valid draft 2020-12 schema: {e}");
    }
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["$id"], SCHEMA_URL);
    for body in body_entries(&schema) {
        let entry = &schema["$defs"][&body];
        assert_eq!(
            entry["title"],
            body.as_str(),
            "{body}: title is not the type"
        );
        assert_eq!(entry["type"], "object", "{body}: not an object");
        assert_eq!(
            entry["additionalProperties"], false,
            "{body}: must be closed (it says exactly what this version sends)"
        );
        let properties = entry["properties"].as_object().unwrap();
        for required in entry["required"].as_array().unwrap() {
            let required = required.as_str().unwrap();
            assert!(
                properties.contains_key(required),
                "{body}: requires {required}, which it does not list"
            );
        }
    }
    let defs = &schema["$defs"];
    assert_eq!(
        defs["time_or_null"]["pattern"], defs["time"]["pattern"],
        "time_or_null is time or null"
    );
    assert_eq!(
        defs["CreateTokenBody"]["properties"]["expires_in_days"]["maximum"], MAX_EXPIRY_DAYS,
        "the schema's longest expiry is MAX_EXPIRY_DAYS"
    );
}

#[test]
fn every_body_type_has_one_entry_and_a_fixture_and_every_fixture_names_one() {
    let schema = schema();
    let entries: BTreeSet<String> = body_entries(&schema).into_iter().collect();
    let bodies: BTreeSet<String> = BODIES.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(
        entries, bodies,
        "the schema's body entries must be exactly the API's body types"
    );
    let serialized: BTreeSet<String> = serialized_types_of_api_rs().into_iter().collect();
    let known: BTreeSet<String> = bodies
        .iter()
        .cloned()
        .chain(PARTS.iter().map(|(t, _)| (*t).to_owned()))
        .collect();
    assert_eq!(
        serialized, known,
        "the types src/console/api.rs serializes must be exactly BODIES and PARTS here"
    );
    for (ty, def) in PARTS {
        assert!(
            schema["$defs"].get(*def).is_some(),
            "{ty}: no $defs entry {def}"
        );
    }
    let fixtures = fixtures();
    for (body, _) in BODIES {
        assert!(
            fixtures.iter().any(|f| f.name == *body),
            "{body}: no schemas/fixtures/api/v1/{body}.json"
        );
    }
    for f in &fixtures {
        assert!(
            bodies.contains(&f.body),
            "fixture {} names no body type ({})",
            f.name,
            f.body
        );
    }
}

#[test]
fn committed_fixtures_never_change() {
    let fixtures = fixtures();
    let named: Vec<(&str, &[u8])> = fixtures
        .iter()
        .map(|f| (f.name.as_str(), f.bytes.as_slice()))
        .collect();
    events::fixtures::check_pinned(FIXTURE_SHA256, "json", &named);
}

#[test]
fn every_fixture_deserializes_and_re_serializes_to_the_identical_bytes() {
    for f in fixtures() {
        assert!(
            f.bytes.ends_with(b"\n") && !f.wire().ends_with(b"\n"),
            "{}: a fixture ends with exactly one newline",
            f.name
        );
        let again = reencoder(&f.body)(f.wire()).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(f.wire()),
            "{}: re-serializing differs (a fixture is the compact JSON serde_json writes)",
            f.name
        );
    }
}

#[test]
fn every_fixture_validates_against_its_entry_and_no_other() {
    let validator = validator();
    for f in fixtures() {
        let json = f.json();
        if let Err(e) = validator.validate(&f.body, &json) {
            panic!("{}: {e}\n{json:#}", f.name);
        }
        for (other, _) in BODIES.iter().filter(|(b, _)| *b != f.body) {
            assert!(
                !validator.is_valid(other, &json),
                "{} also validates as {other}",
                f.name
            );
        }
    }
}

/// Every property of a body's entry is set in one of its fixtures: the first shape's, or, for a
/// field added later, a later shape's (committed fixtures never change).
#[test]
fn fixtures_set_every_property_of_their_entry() {
    let schema = schema();
    let fixtures = fixtures();
    for (body, _) in BODIES {
        let shapes: Vec<Json> = fixtures
            .iter()
            .filter(|f| f.body == *body)
            .map(Fixture::json)
            .collect();
        for (property, _) in schema["$defs"][*body]["properties"].as_object().unwrap() {
            assert!(
                shapes
                    .iter()
                    .any(|json| json.get(property).is_some_and(|v| !v.is_null())),
                "{body}: no fixture sets {property}"
            );
        }
    }
}

/// The bodies a client sends; every other body is an answer.
const REQUESTS: &[&str] = &["CreateTokenBody", "RevokeTokenBody"];

/// A request with a field the gateway does not know is refused (a misspelt `expires_in_days`
/// must not mint a token that never expires); an answer with one is read, the field dropped, so
/// a command line older than its gateway still reads what a newer one answers. The schema, which
/// says what this version sends, takes neither.
#[test]
fn an_unknown_field_is_refused_in_a_request_and_ignored_in_an_answer() {
    let validator = validator();
    let mut requests = 0;
    for f in fixtures() {
        let mut json = f.json();
        json["unknown"] = Json::from(1);
        assert!(
            !validator.is_valid(&f.body, &json),
            "{}: the schema takes `unknown`",
            f.name
        );
        if REQUESTS.contains(&f.body.as_str()) {
            requests += 1;
            assert!(!serde_reads(&f, &json), "{}: serde takes `unknown`", f.name);
        } else {
            assert_eq!(
                serde_round_trip(&f, &json),
                Some(f.json()),
                "{}: an answer with a field added is not read as the answer without it",
                f.name
            );
        }
    }
    assert_eq!(requests, 3, "the request fixtures");
    // A list's tokens are closed too: the schema refuses a token's hash in an answer.
    let list = fixtures()
        .into_iter()
        .find(|f| f.name == "TokenListBody")
        .unwrap();
    let mut json = list.json();
    json["tokens"][0]["secret_sha256"] = Json::from("00".repeat(32));
    assert!(
        !validator.is_valid("TokenListBody", &json),
        "the schema takes a token's hash"
    );
}

/// A field is required in the schema exactly when the gateway always writes it: serde refuses a
/// body without it, or reads its absence as an unset `Option` and writes it back as null (which
/// the schema then allows). An optional field is one serde reads without and does not write back,
/// so the schema refuses it null.
#[test]
fn serde_and_the_schema_agree_on_which_fields_are_required_and_always_written() {
    let validator = validator();
    let schema = schema();
    for f in fixtures() {
        let required: Vec<&str> = schema["$defs"][&f.body]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let json = f.json();
        for key in json.as_object().unwrap().keys() {
            let mut without = json.clone();
            without.as_object_mut().unwrap().remove(key);
            let valid = validator.is_valid(&f.body, &without);
            let written = serde_round_trip(&f, &without);
            if required.contains(&key.as_str()) {
                assert!(!valid, "{}: the schema takes it without {key}", f.name);
                let mut null = json.clone();
                null[key] = Json::Null;
                let nullable = validator.is_valid(&f.body, &null);
                match written {
                    None => assert!(!nullable, "{}: serde refuses a null {key}", f.name),
                    Some(w) => {
                        assert!(nullable, "{}: serde takes it without {key}", f.name);
                        assert_eq!(w[key], Json::Null, "{}: {key} is written as null", f.name);
                    }
                }
            } else {
                assert!(valid, "{}: the schema requires optional {key}", f.name);
                let Some(w) = written else {
                    panic!("{}: serde requires optional {key}", f.name)
                };
                assert!(
                    w.get(key).is_none(),
                    "{}: serde writes unset {key}, so the schema must require it",
                    f.name
                );
                let mut null = json.clone();
                null[key] = Json::Null;
                assert!(
                    !validator.is_valid(&f.body, &null),
                    "{}: serde skips unset {key}, never writes it null",
                    f.name
                );
            }
        }
    }
}

#[test]
fn a_field_of_the_wrong_type_is_refused_by_serde_and_the_schema() {
    let validator = validator();
    for f in fixtures() {
        let json = f.json();
        for (key, value) in json.as_object().unwrap() {
            let mut wrong = json.clone();
            wrong[key] = wrong_type(value);
            assert!(
                !serde_reads(&f, &wrong),
                "{}: serde takes a wrong type for {key}",
                f.name
            );
            assert!(
                !validator.is_valid(&f.body, &wrong),
                "{}: the schema takes a wrong type for {key}",
                f.name
            );
        }
    }
}

#[test]
fn the_forms_the_schema_pins_are_the_forms_the_code_writes() {
    let validator = validator();
    let s = |v: &str| Json::from(v);

    // Scopes: every permission of the catalogue is both; a `*` segment only a held scope.
    for p in Perm::ALL {
        assert!(validator.is_valid("permission", &s(p.as_str())), "{p:?}");
        assert!(validator.is_valid("scope", &s(p.as_str())), "{p:?}");
    }
    assert!(!validator.is_valid("permission", &s("convox:*:*")));
    assert!(validator.is_valid("scope", &s("convox:*:*")));
    for bad in [
        "convox:app",
        "rack:app:read",
        "convox:App:read",
        "convox:app:read:x",
    ] {
        assert!(!validator.is_valid("scope", &s(bad)), "{bad}");
    }

    // Ids: lowercase hex of 16 bytes, as `TokenId::to_hex` writes them.
    for id in [TokenId([0; 16]), TokenId([0xab; 16]), TokenId([0xff; 16])] {
        assert!(validator.is_valid("token_id", &s(&id.to_hex())), "{id:?}");
    }
    let upper = TokenId([0xab; 16]).to_hex().to_uppercase();
    assert!(!validator.is_valid("token_id", &s(&upper)));
    assert!(!validator.is_valid("token_id", &s(&"ab".repeat(15))));

    // Times: `Timestamp`'s decimal string, over the whole range of i64.
    for t in [i64::MIN, -1, 0, 1, 1_767_225_600_000_000_000, i64::MAX] {
        let text = Timestamp(t).to_string();
        assert!(validator.is_valid("time", &s(&text)), "{text}");
        assert!(validator.is_valid("time_or_null", &s(&text)), "{text}");
    }
    assert!(validator.is_valid("time_or_null", &Json::Null));
    for bad in ["", "01", "-0", "1.5", "1e18", "92233720368547758070"] {
        assert!(!validator.is_valid("time", &s(bad)), "{bad:?}");
    }
    assert!(!validator.is_valid("time", &Json::from(1)));

    // Secrets: what `TokenSecret::generate` makes; the fixture's fake one has that shape.
    for _ in 0..64 {
        let secret = TokenSecret::generate().unwrap();
        assert!(validator.is_valid("secret", &s(secret.expose())));
    }
    let created = fixtures()
        .into_iter()
        .find(|f| f.name == "TokenCreatedBody")
        .unwrap()
        .json();
    let fake = created["token"].as_str().unwrap();
    assert!(TokenSecret::parse(fake).is_ok(), "the fixture's secret");
    assert!(!validator.is_valid("secret", &s(&fake[..fake.len() - 1])));
    assert!(!validator.is_valid("secret", &s(&fake.replace("rgw_", "rgx_"))));

    // States: each variant writes a value of the enum, and the enum holds no other.
    let schema = schema();
    let listed = schema["$defs"]["token_state"]["enum"].as_array().unwrap();
    assert_eq!(
        listed.len(),
        STATES.len(),
        "token_state lists every state once"
    );
    for state in STATES {
        all_states_listed(state);
        let json = serde_json::to_value(state).unwrap();
        assert_eq!(json, Json::from(state.as_str()));
        assert!(validator.is_valid("token_state", &json), "{state}");
    }
    for value in listed {
        serde_json::from_value::<TokenState>(value.clone()).unwrap();
    }
}
