//! The env defaults a manifest (`convox.yml`) declares, masked where they stand in its text.
//!
//! A build copies the manifest it was built from, and a release copies its build's, so every
//! build and release answer quotes the app's `environment` lists: `KEY` (a variable the app
//! needs) or `KEY=default` (its value unless the env sets one). A default is an env value like
//! any other, often the one the app runs with, so a caller who may not read a value is not
//! shown its default either.
//!
//! **Invariant:** a manifest is shown with its defaults masked only where each one was found
//! by a YAML parser: every item of every `environment` list, at any depth (top level,
//! services, and any anchored mapping a service merges). Anything the walk does not read for
//! certain fails with [`Unread`], and the caller masks the manifest whole: an `environment`
//! that is not a list of plain or quoted strings, an alias or tag in it, and whatever the rack,
//! which reads YAML 1.1 (`gopkg.in/yaml.v2`), could read otherwise than this YAML 1.2 parser
//! (an alias or a tag as a mapping key, which the rack resolves, `!!binary` decoded; NEL, LS or
//! PS, which end a line, and so a comment, only in YAML 1.1), and text that does not parse.
//! The rewritten text is parsed again and must declare the same keys, in order, with the masks
//! as their values; only the masked items' own text changes (not a comment after one).

use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// The key whose list holds env declarations, wherever it stands.
const ENVIRONMENT: &str = "environment";

/// Why a manifest's defaults could not be found for certain: the manifest is masked whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the manifest's env defaults cannot be read for certain: {0}")]
pub struct Unread(pub String);

/// One `KEY=default` item of an `environment` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub key: String,
    pub value: String,
    /// Where the item's scalar stands in the manifest, in bytes, quotes included.
    span: Range<usize>,
}

/// What the walk is inside of.
enum Frame {
    /// A mapping, between nodes: `key` is `Some` while its value is awaited (the key's text,
    /// or `None` for a key that is not a plain string).
    Map { key: Option<Option<String>> },
    /// A sequence; `env` when it is the value of an `environment` key.
    Seq { env: bool },
}

/// The defaults `manifest` declares, in the order they stand.
///
/// # Errors
/// [`Unread`] when the text does not parse as YAML, or an `environment` holds anything but
/// plain or quoted strings (see the module doc).
pub fn defaults(manifest: &str) -> Result<Vec<Declared>, Unread> {
    // The rack reads its manifests as YAML 1.1, where these end a line (a comment, say) as
    // `\n` does; YAML 1.2, as the parser here reads, keeps them inside it.
    if manifest.contains(['\u{85}', '\u{2028}', '\u{2029}']) {
        return Err(Unread(
            "a line break YAML 1.1 reads and YAML 1.2 does not".into(),
        ));
    }
    let bytes_at = char_offsets(manifest);
    let mut stack: Vec<Frame> = Vec::new();
    let mut found = Vec::new();
    for event in Parser::new_from_str(manifest) {
        let (event, span) = event.map_err(|e| Unread(format!("not YAML: {e}")))?;
        // The frame this node is a value of an `environment` key in, or an item of its list.
        let in_env_list = matches!(stack.last(), Some(Frame::Seq { env: true }));
        let env_value = matches!(
            stack.last(),
            Some(Frame::Map { key: Some(Some(k)) }) if k == ENVIRONMENT
        );
        let a_key = matches!(stack.last(), Some(Frame::Map { key: None }));
        match event {
            // The rack resolves both to the key they stand for (`!!binary` decoded): taken as
            // not read, rather than taken for a key other than `environment`.
            Event::Scalar(_, _, _, Some(_)) if a_key => {
                return Err(Unread("a tagged mapping key".into()));
            }
            Event::Alias(_) if a_key => return Err(Unread("an alias as a mapping key".into())),
            Event::Scalar(text, style, anchor, tag) => {
                if in_env_list {
                    if tag.is_some() || anchor != 0 {
                        return Err(Unread("a tag or anchor in an environment list".into()));
                    }
                    if !matches!(
                        style,
                        ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
                    ) {
                        return Err(Unread("a block scalar in an environment list".into()));
                    }
                    if let Some((key, value)) = text.split_once('=') {
                        let start = bytes_at(span.start.index())?;
                        let end = bytes_at(span.end.index())?;
                        let span = start..scalar_end(manifest, start..end, style)?;
                        found.push(Declared {
                            key: key.to_owned(),
                            value: value.to_owned(),
                            span,
                        });
                    }
                } else if env_value && !text.is_empty() && text != "~" && text != "null" {
                    return Err(Unread("an environment that is not a list".into()));
                }
                completed(&mut stack, Some(text.into_owned()));
            }
            Event::Alias(_) if in_env_list || env_value => {
                return Err(Unread("an alias in an environment".into()));
            }
            Event::Alias(_) => completed(&mut stack, None),
            Event::SequenceStart(..) if in_env_list => {
                return Err(Unread("a list inside an environment list".into()));
            }
            Event::SequenceStart(..) => stack.push(Frame::Seq { env: env_value }),
            Event::MappingStart(..) if in_env_list || env_value => {
                return Err(Unread("a mapping in an environment".into()));
            }
            Event::MappingStart(..) => stack.push(Frame::Map { key: None }),
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                completed(&mut stack, None);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => {}
        }
    }
    Ok(found)
}

/// Where the scalar the parser spans over `span` ends: a plain one where its span does, a
/// quoted one after its closing quote (its span runs on over the blanks and a comment after
/// it).
fn scalar_end(text: &str, span: Range<usize>, style: ScalarStyle) -> Result<usize, Unread> {
    let bytes = text.get(..span.end).unwrap_or_default().as_bytes();
    let start = span.start;
    let unclosed = || {
        Unread(format!(
            "a quoted item at byte {start} without its closing quote"
        ))
    };
    let mut at = start + 1;
    match style {
        ScalarStyle::SingleQuoted => loop {
            // `''` is a quote inside the scalar; a lone `'` ends it.
            match bytes
                .get(at..)
                .and_then(|rest| rest.iter().position(|b| *b == b'\''))
            {
                Some(i) if bytes.get(at + i + 1) == Some(&b'\'') => at += i + 2,
                Some(i) => return Ok(at + i + 1),
                None => return Err(unclosed()),
            }
        },
        ScalarStyle::DoubleQuoted => loop {
            match bytes.get(at) {
                Some(b'\\') => at += 2,
                Some(b'"') => return Ok(at + 1),
                Some(_) => at += 1,
                None => return Err(unclosed()),
            }
        },
        _ => Ok(span.end),
    }
}

/// A node ended inside the frame on top: in a mapping, a key (its `text` if a plain string)
/// or a value.
fn completed(stack: &mut [Frame], text: Option<String>) {
    if let Some(Frame::Map { key }) = stack.last_mut() {
        *key = match key.take() {
            None => Some(text),
            Some(_) => None,
        };
    }
}

/// The byte offset of each character index of `text` (the parser counts characters), the end
/// included.
fn char_offsets(text: &str) -> impl Fn(usize) -> Result<usize, Unread> + '_ {
    let offsets: Vec<usize> = text
        .char_indices()
        .map(|(at, _)| at)
        .chain(std::iter::once(text.len()))
        .collect();
    move |index| {
        offsets
            .get(index)
            .copied()
            .ok_or_else(|| Unread(format!("a position past the end ({index})")))
    }
}

/// `manifest` with the value of each default `mask` gives a mask for replaced by that mask
/// (the item rewritten as a double-quoted string, valid wherever a string was); the others as
/// they stand.
///
/// # Errors
/// [`Unread`] as [`defaults`], or when the rewritten text does not declare the same keys with
/// the masks as their values.
pub fn mask_defaults(
    manifest: &str,
    mask: &mut dyn FnMut(&str, &str) -> Option<String>,
) -> Result<String, Unread> {
    let found = defaults(manifest)?;
    let mut out = String::with_capacity(manifest.len());
    let mut expected = Vec::with_capacity(found.len());
    let mut at = 0;
    for d in found {
        let Some(masked) = mask(&d.key, &d.value) else {
            expected.push((d.key, d.value));
            continue;
        };
        out.push_str(manifest.get(at..d.span.start).unwrap_or_default());
        out.push_str(&double_quoted(&format!("{}={masked}", d.key)));
        at = d.span.end;
        expected.push((d.key, masked));
    }
    if at == 0 {
        return Ok(manifest.to_owned());
    }
    out.push_str(manifest.get(at..).unwrap_or_default());
    let declared: Vec<(String, String)> = defaults(&out)?
        .into_iter()
        .map(|d| (d.key, d.value))
        .collect();
    if declared != expected {
        return Err(Unread("the masked manifest reads differently".into()));
    }
    Ok(out)
}

/// `text` as a YAML double-quoted scalar (the escapes YAML and JSON share).
fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(manifest: &str) -> Vec<(String, String)> {
        defaults(manifest)
            .unwrap()
            .into_iter()
            .map(|d| (d.key, d.value))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn masked_all(manifest: &str) -> Result<String, Unread> {
        mask_defaults(manifest, &mut |key, _| {
            Some(format!("m-{}", key.to_lowercase()))
        })
    }

    const CONVOX_YML: &str = "\
environment:
  - PORT=3000
  - SECRET
  - 'QUOTED=it''s here'
services:
  web:
    build: .
    environment:
      - \"API_KEY=abc:def # not a comment\"
      - EMPTY=
    port: 3000
  worker:
    environment: [A=1, B]
";

    #[test]
    fn defaults_are_found_in_every_environment_list() {
        assert_eq!(
            declared(CONVOX_YML),
            pairs(&[
                ("PORT", "3000"),
                ("QUOTED", "it's here"),
                ("API_KEY", "abc:def # not a comment"),
                ("EMPTY", ""),
                ("A", "1"),
            ])
        );
    }

    #[test]
    fn masked_defaults_keep_the_rest_of_the_manifest() {
        let masked = masked_all(CONVOX_YML).unwrap();
        assert_eq!(
            masked,
            "\
environment:
  - \"PORT=m-port\"
  - SECRET
  - \"QUOTED=m-quoted\"
services:
  web:
    build: .
    environment:
      - \"API_KEY=m-api_key\"
      - \"EMPTY=m-empty\"
    port: 3000
  worker:
    environment: [\"A=m-a\", B]
"
        );
    }

    #[test]
    fn defaults_left_unmasked_stay_byte_for_byte() {
        let same = mask_defaults(CONVOX_YML, &mut |_, _| None).unwrap();
        assert_eq!(same, CONVOX_YML);
        let one = mask_defaults(CONVOX_YML, &mut |key, _| {
            (key == "A").then(|| "x".to_owned())
        })
        .unwrap();
        assert_eq!(one, CONVOX_YML.replace("[A=1, B]", "[\"A=x\", B]"));
    }

    /// Multi-byte characters before a default: the parser counts characters, the rewrite bytes.
    #[test]
    fn positions_hold_after_multi_byte_text() {
        let manifest = "# café ☕\nenvironment:\n  - GREETING=héllo wörld\n  - N=1\n";
        assert_eq!(
            masked_all(manifest).unwrap(),
            "# café ☕\nenvironment:\n  - \"GREETING=m-greeting\"\n  - \"N=m-n\"\n"
        );
    }

    /// An anchored mapping a service merges holds its own `environment`: found where it stands.
    #[test]
    fn anchored_environment_lists_are_found() {
        let manifest = "\
x-common: &common
  environment:
    - TOKEN=t0ps3cret
services:
  web:
    <<: *common
";
        assert_eq!(declared(manifest), pairs(&[("TOKEN", "t0ps3cret")]));
    }

    /// What the walk cannot read for certain is refused, for the caller to mask whole.
    #[test]
    fn environments_not_read_for_certain_are_refused() {
        for manifest in [
            // Its values stand elsewhere.
            "x: &e [A=1]\nenvironment: *e\n",
            "x: &v A=1\nenvironment:\n  - *v\n",
            "environment:\n  - &v A=1\n",
            "environment:\n  - !!str A=1\n",
            "environment:\n  - |\n    A=1\n",
            "environment:\n  - >\n    A=1\n",
            "environment:\n  A: 1\n",
            "environment:\n  - [A=1]\n",
            "environment: A=1\n",
            "environment:\n  - {A: 1}\n",
            // Not YAML at all.
            "environment: [A=1\n",
            "environment:\n  - \"A=1\n",
        ] {
            assert!(defaults(manifest).is_err(), "read: {manifest:?}");
            assert!(masked_all(manifest).is_err(), "masked: {manifest:?}");
        }
    }

    #[test]
    fn empty_or_missing_environments_declare_nothing() {
        for manifest in [
            "",
            "services:\n  web:\n    port: 3000\n",
            "environment:\n",
            "environment: ~\n",
            "environment: []\n",
            "services:\n  web:\n    environment:\n",
        ] {
            assert_eq!(declared(manifest), Vec::new(), "{manifest:?}");
        }
    }

    /// A key named `environment` elsewhere (a value, a list item) declares nothing.
    #[test]
    fn only_an_environment_key_holds_declarations() {
        let manifest = "labels:\n  - environment\n  - [X=1]\nname: environment\nlist: [A=1]\n";
        assert_eq!(declared(manifest), Vec::new());
    }

    /// Only the item changes: a comment or the blanks after a quoted one stay.
    #[test]
    fn comments_and_blanks_after_an_item_stay() {
        let manifest = "environment:\n  - 'B=z''s'  # it's\n  - \"C=\\\"x\"\t# \"c\"\n  - D=1  # d\nx: [ 'A=1'  , \"E=2\"  ]\nenvironment2: 1\n";
        let masked = masked_all(manifest).unwrap();
        assert_eq!(
            masked,
            "environment:\n  - \"B=m-b\"  # it's\n  - \"C=m-c\"\t# \"c\"\n  - \"D=m-d\"  # d\nx: [ 'A=1'  , \"E=2\"  ]\nenvironment2: 1\n"
        );
        let flow = "environment: [ 'A=1'  , \"E=2\"  ]\n";
        assert_eq!(
            masked_all(flow).unwrap(),
            "environment: [ \"A=m-a\"  , \"E=m-e\"  ]\n"
        );
    }

    /// What the rack reads as YAML 1.1 and this parser as YAML 1.2 may differ: a key the rack
    /// resolves to `environment` (an alias, a `!!binary` key), or a line break only YAML 1.1
    /// has (NEL, LS, PS) ending a comment before an `environment`. Each is not read.
    #[test]
    fn keys_and_breaks_the_rack_reads_otherwise_are_not_read() {
        for manifest in [
            "x: &k environment\n*k : [DB_PASSWORD=hunter2]\n",
            "x: &k environment\nservices:\n  web:\n    *k :\n      - A=secret\n",
            "!!binary ZW52aXJvbm1lbnQ=: [DB_PASSWORD=hunter2]\n",
            "!!str environment: [DB_PASSWORD=hunter2]\n",
            "x: 1 # note\u{2028}environment: [DB_PASSWORD=hunter2]\n",
            "x: 1 # note\u{85}environment: [DB_PASSWORD=hunter2]\n",
            "x: 1 # note\u{2029}environment: [DB_PASSWORD=hunter2]\n",
        ] {
            assert!(defaults(manifest).is_err(), "read: {manifest:?}");
        }
    }

    #[test]
    fn masks_with_odd_characters_are_quoted() {
        let manifest = "environment:\n  - \"K\\\"=v\"\n";
        let masked = mask_defaults(manifest, &mut |_, _| Some("a\\b\n".to_owned())).unwrap();
        assert_eq!(masked, "environment:\n  - \"K\\\"=a\\\\b\\u000a\"\n");
        assert_eq!(declared(&masked), pairs(&[("K\"", "a\\b\n")]));
    }
}
