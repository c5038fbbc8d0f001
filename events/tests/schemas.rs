//! The formats as documents agree with the code: every event code in `events::event::CODES` has
//! one CDDL rule in `schemas/events.cddl`, one shape in `schemas/record.schema.json` and a golden
//! fixture in `schemas/fixtures/`, and nothing in `schemas/` names a code the catalogue lacks.
//!
//! Every fixture must decode strictly, carry the code its file is named after, re-encode to the
//! identical bytes, validate against the CDDL (with the `cddl` crate, a validator independent of
//! our decoder) and, in its JSON form, against the JSON Schema (with the `boon` crate).
//! Mutated fixtures prove each check can fail, and that the decoder, the CDDL and the JSON Schema
//! agree on which fields are required and what type each one has.
//!
//! **Invariant:** committed fixtures are append-only. [`FIXTURE_SHA256`] pins the bytes of each
//! one, so a rewritten, regenerated or deleted fixture fails here; a new fixture adds a pin.

// clippy.toml allows these inside `#[test]` functions only; the helpers here are test code too,
// and a fixture that cannot be read should fail the test loudly, naming the file.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use events::cbor::{self, Value};
use events::event::CODES;
use events::json::record_to_json;
use events::record::{self, StoredRecord};
use serde_json::Value as Json;

/// The SHA-256 of every committed fixture, in `sha256sum` format (so `sha256sum -c` reads it too).
/// Append a line for a new fixture; never edit or remove one.
const FIXTURE_SHA256: &str = "\
435dfbbb80a34967ad358036310bb8521800803e5b5aac172cb54d07e8593ce8  G1000I.cbor
329a3a28fac6d4933b87a4d9dca46db564971305c109f60cbe4d97f1eef42f47  G1001I.cbor
bced0d6e811d921d82ce89e127a92636355afdf8c3f0dcca53053938cb318fa8  G1002I.cbor
774bf96188454f803d7ff2519ba7c692be66511a173ccf2e4590f764742aa38c  G1003I.cbor
4e86eac7d9b41ede7f3fed97308198141730e36e4df9990a29cda79d7a951a27  G2000I.cbor
f4a9df2908f213b1f965d2d47ea36c4fb4904e43b9b35e982a71984876677ca7  G2001I.cbor
6a732315ac44ecd5dbc2783fe3574c03d0eb3a873e47eaeca07800c5b9f5ab5b  G2002I.cbor
df6888e6c30cf89024cc00240fd91ce57fa59257e33cad2a56ef0582560b4afa  G2003I.cbor
a1b4806f8fab726abdbc379a5fd9e8bd3412b227ae3addb2412fdaf855898ec4  G3000I.cbor
024937a8d86a52fae9c365b7b9f55e409a777d8b9646c74def9d647caf405be5  G3001I.cbor
2431ca7f4b2bb0babe0d449da770ca503aa215f72dd3c06a9e1f07d2af419847  G4000I.cbor
5adde0e164f2d222a9874c1fee47107818e0c74e906f254126ee4d5581d90c45  G4001I.cbor
f919968a4b5b27bf83ca7bd7b19898073180b535750caad410c7d93dd283f737  G4002I.cbor
c83fdb829d1c593e64e5c5ad3dec722c4c874fb23eabd34d1d3b884490017b73  G4003I.cbor
c35d07b2c22b091879d205fc55778e5cc1df4ba52098db295d259c9b6b099971  G4004W.cbor
c021c55fe2d334d7f8442f3402063dd89ed5b1e12b7e04ec4a917b4357fac23d  G4001I-2.cbor
7154badabc3e8fadcda9d9d8ce76f2f099e91f789c2366cdb9c8d0bfee5c78b3  G4003I-2.cbor
0fa326efe47e540dd72c0b83ce5e45a3ff83c8e3cc94362f6fb404bb25497b8d  G4003I-3.cbor
d9a807d1b67c7fa7eaab44560df8a546950d0e13c010b1b09cdd324b7ea0dea4  G3000I-2.cbor
";

/// The optional body fields, as `(code, key, name)`. Every other field is required. The tests
/// below check this table against the decoder, the CDDL and the JSON Schema, so it cannot drift.
const OPTIONAL: &[(&str, u64, &str)] = &[
    ("G3000I", 5, "expires"),
    ("G3000I", 8, "by_token"),
    ("G4000I", 3, "credential"),
    ("G4000I", 8, "permission"),
    ("G4001I", 5, "sha256_in"),
    ("G4001I", 6, "sha256_out"),
    ("G4001I", 7, "failure"),
    ("G4003I", 4, "exit_code"),
    ("G4003I", 5, "sha256_in"),
    ("G4003I", 6, "sha256_out"),
    ("G4003I", 7, "ended"),
];

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn cddl_text() -> String {
    std::fs::read_to_string(schemas_dir().join("events.cddl")).unwrap()
}

fn json_schema() -> Json {
    let text = std::fs::read_to_string(schemas_dir().join("record.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// One fixture file: its name without `.cbor`, the code that name gives, and its bytes.
struct Fixture {
    name: String,
    code: String,
    bytes: Vec<u8>,
}

/// Every `*.cbor` file in `schemas/fixtures/`, by name. Files are named `<CODE>.cbor`, and a
/// later shape of the same code `<CODE>-<n>.cbor` (n >= 2); any other file but the README fails.
fn fixtures() -> Vec<Fixture> {
    let passed_over =
        |e: &std::fs::DirEntry| e.file_type().unwrap().is_dir() || e.file_name() == "README.md";
    events::fixtures::read_dir(&schemas_dir().join("fixtures"), "cbor", &passed_over)
        .into_iter()
        .map(|f| Fixture {
            name: f.name,
            code: f.kind,
            bytes: f.bytes,
        })
        .collect()
}

/// The latest shape of `code`: `<CODE>-<n>` with the largest n, else `<CODE>`. Older shapes lack
/// the optional fields added since, and must keep decoding; the latest one sets them all.
fn newest<'a>(fixtures: &'a [Fixture], code: &str) -> &'a Fixture {
    let shape = |f: &Fixture| {
        f.name
            .strip_prefix(code)
            .and_then(|n| n.strip_prefix('-'))
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(1)
    };
    fixtures
        .iter()
        .filter(|f| f.code == code)
        .max_by_key(|f| shape(f))
        .unwrap_or_else(|| panic!("no fixture for {code}"))
}

fn decoded(f: &Fixture) -> StoredRecord {
    record::decode(&f.bytes).unwrap_or_else(|e| panic!("{}: {e}", f.name))
}

// === CDDL ===

/// The event rules of the CDDL: code -> rule names, from lines `name = { 0: "CODE", 1: body }`,
/// each with the first line of the comment block above it.
fn cddl_event_rules(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rules: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((name, rest)) = line.split_once(" = { 0: \"") else {
            continue;
        };
        let (code, rest) = rest.split_once("\", 1: ").unwrap();
        assert!(
            rest.ends_with(" }"),
            "rule {name}: body is not one rule name"
        );
        let mut top = i;
        while top > 0 && lines[top - 1].starts_with(';') {
            top -= 1;
        }
        let comment = if top < i { lines[top] } else { "" };
        rules
            .entry(code.to_owned())
            .or_default()
            .push((name.to_owned(), comment.to_owned()));
    }
    rules
}

/// Every quoted code-like literal (`"G` + four digits + one letter) outside comments.
fn quoted_codes(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code_part = line.split(';').next().unwrap_or("");
        for (i, _) in code_part.match_indices("\"G") {
            let lit = &code_part[i + 1..];
            if let Some(end) = lit.find('"') {
                out.insert(lit[..end].to_owned());
            }
        }
    }
    out
}

/// Validates CBOR bytes against a CDDL document with the `cddl` crate; its first rule is the root.
fn cddl_validate(cddl: &str, bytes: &[u8]) -> Result<(), String> {
    cddl::validate_cbor_from_slice(cddl, bytes, None).map_err(|e| e.to_string())
}

/// The CDDL with a root that admits only the given event rule, to pin a fixture to its rule.
fn cddl_rooted_at(text: &str, rule: &str) -> String {
    format!("fixture-root = {{ 0: uint, 1: i64, 2: hash, 3: {rule} }}\n{text}")
}

/// The single rule name of `code` in the CDDL.
fn rule_of(text: &str, code: &str) -> String {
    cddl_event_rules(text)
        .remove(code)
        .and_then(|mut v| v.pop())
        .map(|(name, _)| name)
        .unwrap_or_else(|| panic!("no rule for {code}"))
}

// === JSON Schema ===

/// `record.schema.json` compiled with the `boon` validator, which first checks the schema itself
/// against the draft 2020-12 meta-schema.
struct JsonValidator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl JsonValidator {
    fn new() -> Result<JsonValidator, String> {
        let url = "https://rack-gateway.invalid/schemas/record.schema.json";
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler
            .add_resource(url, json_schema())
            .map_err(|e| format!("{e:#}"))?;
        let index = compiler
            .compile(url, &mut schemas)
            .map_err(|e| format!("{e:#}"))?;
        Ok(JsonValidator { schemas, index })
    }

    fn validate(&self, instance: &Json) -> Result<(), String> {
        self.schemas
            .validate(instance, self.index)
            .map_err(|e| format!("{e:#}"))
    }

    fn is_valid(&self, instance: &Json) -> bool {
        self.validate(instance).is_ok()
    }
}

fn json_validator() -> JsonValidator {
    JsonValidator::new().unwrap_or_else(|e| panic!("record.schema.json does not compile: {e}"))
}

// === Mutations ===

/// The body map of a record value, for mutating a fixture.
fn body_mut(record: &mut Value) -> &mut Vec<(u64, Value)> {
    let Value::Map(entries) = record else {
        panic!("record is not a map")
    };
    let Some((3, Value::Map(event))) = entries.get_mut(3) else {
        panic!("record has no event")
    };
    let Some((1, Value::Map(body))) = event.get_mut(1) else {
        panic!("event has no body")
    };
    body
}

/// A value of another CBOR type than `v`, of a type no field of that kind accepts.
fn wrong_type(v: &Value) -> Value {
    match v {
        Value::Text(_) => Value::Uint(7),
        Value::Uint(_) | Value::Nint(_) => Value::Text("7".into()),
        Value::Bytes(b) => Value::Text(hex::encode(b)),
        Value::Array(_) => Value::Text("[]".into()),
        Value::Bool(_) => Value::Uint(1),
        Value::Map(_) | Value::Null => Value::Uint(0),
    }
}

fn is_optional(code: &str, key: u64) -> bool {
    OPTIONAL.iter().any(|(c, k, _)| *c == code && *k == key)
}

// === Tests ===

#[test]
fn every_code_has_one_cddl_rule_with_its_comment_and_no_rule_has_an_unknown_code() {
    let text = cddl_text();
    let rules = cddl_event_rules(&text);
    for code in CODES {
        let found = rules.get(*code).map(Vec::as_slice).unwrap_or_default();
        let [(name, comment)] = found else {
            panic!(
                "{code}: expected one rule `name = {{ 0: \"{code}\", 1: body }}`, found {found:?}"
            );
        };
        assert!(
            comment.starts_with(&format!("; {code} ")),
            "{code}: the comment above rule {name} must start with the code, found {comment:?}"
        );
    }
    let known: BTreeSet<String> = CODES.iter().map(|c| (*c).to_owned()).collect();
    let unknown: Vec<&String> = rules.keys().filter(|c| !known.contains(*c)).collect();
    assert!(
        unknown.is_empty(),
        "CDDL rules for unknown codes: {unknown:?}"
    );
    let stray: Vec<String> = quoted_codes(&text).difference(&known).cloned().collect();
    assert!(stray.is_empty(), "CDDL names unknown codes: {stray:?}");
}

#[test]
fn every_code_has_a_fixture_and_no_fixture_has_an_unknown_code() {
    let fixtures = fixtures();
    for code in CODES {
        assert!(
            fixtures.iter().any(|f| f.name == *code),
            "{code}: no schemas/fixtures/{code}.cbor (run `cargo run -p events --example write_fixtures`)"
        );
    }
    for f in &fixtures {
        assert!(
            CODES.contains(&f.code.as_str()),
            "fixture {} has unknown code {}",
            f.name,
            f.code
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
    events::fixtures::check_pinned(FIXTURE_SHA256, "cbor", &named);
}

#[test]
fn every_fixture_decodes_strictly_and_re_encodes_to_the_identical_bytes() {
    for f in fixtures() {
        let stored = decoded(&f);
        assert_eq!(
            stored.record.event.code(),
            f.code,
            "{}: code does not match file name",
            f.name
        );
        assert_eq!(
            stored.record.encode(),
            f.bytes,
            "{}: re-encoding differs",
            f.name
        );
        assert_eq!(
            cbor::to_vec(&cbor::decode(&f.bytes).unwrap()),
            f.bytes,
            "{}",
            f.name
        );
        assert_eq!(stored.hash, events::hash::leaf_hash(&f.bytes), "{}", f.name);
    }
}

#[test]
fn fixtures_set_every_optional_field() {
    let fixtures = fixtures();
    for f in fixtures
        .iter()
        .filter(|f| newest(&fixtures, &f.code).name == f.name)
    {
        let keys: Vec<u64> = decoded(f)
            .record
            .event
            .fields()
            .iter()
            .map(|x| x.key)
            .collect();
        for (code, key, name) in OPTIONAL.iter().filter(|(c, ..)| *c == f.code) {
            assert!(
                keys.contains(key),
                "{code}: fixture leaves optional {name} unset"
            );
        }
    }
}

#[test]
fn every_fixture_validates_against_the_cddl_and_its_own_rule() {
    let text = cddl_text();
    for f in fixtures() {
        if let Err(e) = cddl_validate(&text, &f.bytes) {
            panic!("{}: not a CDDL `record`: {e}", f.name);
        }
        let rooted = cddl_rooted_at(&text, &rule_of(&text, &f.code));
        if let Err(e) = cddl_validate(&rooted, &f.bytes) {
            panic!(
                "{}: does not match rule {}: {e}",
                f.name,
                rule_of(&text, &f.code)
            );
        }
    }
}

#[test]
fn a_fixture_does_not_match_the_rule_of_another_code() {
    let text = cddl_text();
    let fixtures = fixtures();
    for f in &fixtures {
        for other in CODES.iter().filter(|c| **c != f.code) {
            let rooted = cddl_rooted_at(&text, &rule_of(&text, other));
            assert!(
                cddl_validate(&rooted, &f.bytes).is_err(),
                "{} validates as rule {}",
                f.name,
                rule_of(&text, other)
            );
        }
    }
}

#[test]
fn a_field_of_the_wrong_type_fails_the_decoder_and_the_cddl() {
    let text = cddl_text();
    for f in fixtures() {
        let original = cbor::decode(&f.bytes).unwrap();
        let keys: Vec<u64> = body_mut(&mut original.clone())
            .iter()
            .map(|(k, _)| *k)
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let mut v = original.clone();
            let slot = &mut body_mut(&mut v)[i].1;
            *slot = wrong_type(slot);
            let bytes = cbor::to_vec(&v);
            assert!(
                record::decode(&bytes).is_err(),
                "{}: decoder takes a wrong type at key {key}",
                f.name
            );
            assert!(
                cddl_validate(&text, &bytes).is_err(),
                "{}: CDDL takes a wrong type at key {key}",
                f.name
            );
        }
    }
}

#[test]
fn wrong_sizes_unknown_keys_and_a_bad_envelope_fail_the_decoder_and_the_cddl() {
    let text = cddl_text();
    for f in fixtures() {
        let original = cbor::decode(&f.bytes).unwrap();
        let mut mutants: Vec<(String, Value)> = Vec::new();

        // Every byte string of the catalogue has a fixed size: one byte short is refused.
        for (i, (key, value)) in body_mut(&mut original.clone()).iter().enumerate() {
            if let Value::Bytes(b) = value {
                let mut v = original.clone();
                body_mut(&mut v)[i].1 = Value::Bytes(b[1..].to_vec());
                mutants.push((format!("short bytes at key {key}"), v));
            }
        }
        // A key the event does not define (maps are closed).
        let mut v = original.clone();
        body_mut(&mut v).push((99, Value::Text("extra".into())));
        mutants.push(("unknown key 99".into(), v));
        // The envelope: a negative seq, and a prev of 31 bytes.
        let Value::Map(entries) = &original else {
            panic!()
        };
        let mut e = entries.clone();
        e[0].1 = Value::Nint(0);
        mutants.push(("negative seq".into(), Value::Map(e)));
        let mut e = entries.clone();
        e[2].1 = Value::Bytes(vec![0; 31]);
        mutants.push(("31-byte prev".into(), Value::Map(e)));

        for (what, v) in mutants {
            let bytes = cbor::to_vec(&v);
            assert!(
                record::decode(&bytes).is_err(),
                "{}: decoder takes {what}",
                f.name
            );
            assert!(
                cddl_validate(&text, &bytes).is_err(),
                "{}: CDDL takes {what}",
                f.name
            );
        }
    }
}

#[test]
fn the_decoder_and_the_cddl_agree_on_which_fields_are_optional() {
    let text = cddl_text();
    for f in fixtures() {
        let original = cbor::decode(&f.bytes).unwrap();
        let keys: Vec<u64> = body_mut(&mut original.clone())
            .iter()
            .map(|(k, _)| *k)
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let mut v = original.clone();
            body_mut(&mut v).remove(i);
            let bytes = cbor::to_vec(&v);
            let (decodes, validates) =
                (record::decode(&bytes).is_ok(), cddl_validate(&text, &bytes));
            if is_optional(&f.code, *key) {
                assert!(decodes, "{}: decoder requires optional key {key}", f.name);
                if let Err(e) = validates {
                    panic!("{}: CDDL requires optional key {key}: {e}", f.name);
                }
            } else {
                assert!(
                    !decodes,
                    "{}: decoder takes a record without key {key}",
                    f.name
                );
                assert!(
                    validates.is_err(),
                    "{}: CDDL takes a record without key {key}",
                    f.name
                );
            }
        }
    }
}

#[test]
fn the_json_schema_is_valid_2020_12_and_covers_exactly_the_catalogue() {
    // Compiling checks the schema against the draft 2020-12 meta-schema.
    if let Err(e) = JsonValidator::new() {
        panic!("record.schema.json is not a valid draft 2020-12 schema: {e}");
    }
    let schema = json_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let enum_codes: Vec<&str> = schema["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(enum_codes, CODES, "the code enum must list exactly CODES");
    let branches: Vec<&str> = schema["allOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["if"]["properties"]["code"]["const"].as_str().unwrap())
        .collect();
    assert_eq!(branches, CODES, "one if/then branch per code");
    for code in CODES {
        let shape = &schema["$defs"][*code];
        assert_eq!(shape["type"], "object", "{code}: no event shape in $defs");
        assert_eq!(
            shape["additionalProperties"], false,
            "{code}: shape must be closed"
        );
    }
}

#[test]
fn every_fixture_json_form_validates_against_the_json_schema() {
    let validator = json_validator();
    for f in fixtures() {
        let json = record_to_json(&decoded(&f));
        if let Err(e) = validator.validate(&json) {
            panic!("{}: {e}\n{json:#}", f.name);
        }
    }
}

#[test]
fn a_json_form_with_a_required_field_removed_or_a_wrong_type_fails() {
    let validator = json_validator();
    for f in fixtures() {
        let stored = decoded(&f);
        let json = record_to_json(&stored);
        let Json::Object(envelope) = &json else {
            panic!()
        };
        for key in envelope.keys() {
            let mut j = json.clone();
            j.as_object_mut().unwrap().remove(key);
            assert!(!validator.is_valid(&j), "{}: valid without {key}", f.name);
        }
        for field in stored.record.event.fields() {
            let mut j = json.clone();
            j["event"].as_object_mut().unwrap().remove(field.name);
            let valid = validator.is_valid(&j);
            if is_optional(&f.code, field.key) {
                assert!(
                    valid,
                    "{}: JSON Schema requires optional {}",
                    f.name, field.name
                );
            } else {
                assert!(!valid, "{}: valid without required {}", f.name, field.name);
            }
            let mut j = json.clone();
            j["event"][field.name] = serde_json::json!({});
            assert!(
                !validator.is_valid(&j),
                "{}: {} takes an object",
                f.name,
                field.name
            );
        }
        let mut j = json.clone();
        j["event"]["unknown"] = Json::from(1);
        assert!(
            !validator.is_valid(&j),
            "{}: valid with an unknown event field",
            f.name
        );
        let mut j = json.clone();
        j["prev"] = Json::from("00");
        assert!(
            !validator.is_valid(&j),
            "{}: valid with a 1-byte prev",
            f.name
        );
    }
}

#[test]
fn the_optional_table_names_real_fields() {
    let fixtures = fixtures();
    for (code, key, name) in OPTIONAL {
        let f = newest(&fixtures, code);
        let fields = decoded(f).record.event.fields();
        assert!(
            fields.iter().any(|x| x.key == *key && x.name == *name),
            "OPTIONAL lists {code} {key} {name}, which the event does not have"
        );
    }
}
