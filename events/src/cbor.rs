//! Canonical CBOR (RFC 8949) for the records of the audit log.
//!
//! Every record of the hash-chained audit log is stored, and hashed, as the bytes that this
//! module produces. A hash covers bytes, not meanings, so the encoding has to be one-to-one:
//! each [`Value`] has exactly one encoding, and the decoder accepts exactly those bytes and
//! nothing else. If the decoder accepted a second encoding of the same value, two different
//! byte strings would mean the same record: a record could be re-encoded so that its hash
//! changes while what it says does not, and the chain would no longer pin down one byte string
//! per record.
//!
//! The invariant, for every byte string `b`: if `decode(b)` returns `Ok(v)`, then
//! `to_vec(&v) == b`. And for every value `v` whose maps have strictly ascending keys and whose
//! arrays and maps nest at most [`MAX_DEPTH`] deep, `decode(&to_vec(&v)) == Ok(v)`.
//!
//! The encoding is the core deterministic encoding of RFC 8949 §4.2.1 restricted to a small
//! subset: unsigned and negative integers, byte and text strings, arrays, maps whose keys are
//! unsigned integers, `false`, `true` and `null`. Every integer argument and every length is in
//! its shortest form, every length is definite, and map keys are strictly ascending (for
//! shortest-form unsigned integers that is the same as the bytewise order of §4.2.1, and it
//! rules out duplicate keys). Floats, tags, other simple values, indefinite lengths and the
//! break byte are refused, because the log has no use for them and each would be one more way
//! to spell a record.
//!
//! The decoder never panics and never allocates on the word of the input alone: a declared
//! length or element count is checked against the bytes that are actually left before anything
//! is reserved for it.

use std::cell::Cell;

/// Deepest nesting of arrays and maps that [`decode`] accepts: a top-level array holding arrays
/// 64 levels deep in all (the outermost counted) is accepted, the 65th level is refused with
/// [`CborErrorKind::TooDeep`]. The limit bounds the decoder's recursion, so that hostile input
/// cannot exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// Most elements reserved up front for an array or map, whatever its header declares. A count
/// is already checked against the remaining input, but nested containers each reserve before
/// their elements are read, so the cap keeps the transient memory small; longer containers grow
/// as their elements actually arrive.
const PREALLOC_LIMIT: usize = 1024;

const MAJOR_UINT: u8 = 0;
const MAJOR_NINT: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;

const SIMPLE_FALSE: u8 = 20;
const SIMPLE_TRUE: u8 = 21;
const SIMPLE_NULL: u8 = 22;
const INFO_ONE_BYTE: u8 = 24;
const INFO_TWO_BYTES: u8 = 25;
const INFO_FOUR_BYTES: u8 = 26;
const INFO_EIGHT_BYTES: u8 = 27;
const INFO_INDEFINITE: u8 = 31;

/// The CBOR subset the log uses.
///
/// Invariant kept by whoever builds a value: the keys of a [`Value::Map`] are strictly
/// ascending. [`encode`] writes map entries in the order given, so a map that breaks the
/// invariant encodes to bytes that [`decode`] refuses; every value that [`decode`] returns keeps
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Major type 0: an unsigned integer.
    Uint(u64),
    /// Major type 1: the negative integer `-1 - n`, so `Nint(0)` is -1 and `Nint(u64::MAX)` is
    /// -2^64. Stored as `n` because that is exactly what the wire carries.
    Nint(u64),
    /// Major type 2, definite length.
    Bytes(Vec<u8>),
    /// Major type 3, definite length, valid UTF-8.
    Text(String),
    /// Major type 4, definite length.
    Array(Vec<Value>),
    /// Major type 5, definite length; keys are major-type-0 integers in strictly ascending
    /// order.
    Map(Vec<(u64, Value)>),
    /// Simple values 20 (`false`) and 21 (`true`).
    Bool(bool),
    /// Simple value 22.
    Null,
}

/// Why [`decode`] or [`decode_prefix`] refused its input, and where.
///
/// `offset` is the byte offset in the input of the data item at fault (its initial byte), except
/// where the kind says otherwise: the first byte after the item for `TrailingBytes`, the first
/// invalid byte for `InvalidUtf8`, and the first differing byte for `NotCanonical`.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
#[error("cbor: at byte {offset}: {kind}")]
pub struct CborError {
    pub offset: usize,
    pub kind: CborErrorKind,
}

/// What was wrong with the input. Each kind is one way of spelling a value that is not the
/// canonical encoding of this module's subset, or input that is not CBOR at all.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CborErrorKind {
    /// The input ends before the data item does: inside its head, before all the elements of an
    /// array or map, or before the bytes that a string's length declares. A declared length or
    /// count larger than the rest of the input is reported here too, before anything is
    /// allocated for it. (A torn tail and a corrupted length look the same from here.)
    #[error("input ends before the data item does")]
    Truncated,
    /// [`decode`] found bytes after the one data item; [`decode_prefix`] allows them.
    #[error("bytes follow the data item")]
    TrailingBytes,
    /// An integer (value or map key) was written with more argument bytes than it needs.
    #[error("integer is not in its shortest form")]
    NonShortestInteger,
    /// A string length or element count was written with more argument bytes than it needs.
    #[error("length is not in its shortest form")]
    NonShortestLength,
    /// A string, array or map with indefinite length (additional information 31).
    #[error("indefinite length is not allowed")]
    IndefiniteLength,
    /// A half-, single- or double-precision float (major type 7, additional information 25-27).
    #[error("floats are not allowed")]
    Float,
    /// A tag (major type 6).
    #[error("tags are not allowed")]
    Tag,
    /// A simple value other than `false`, `true` and `null`, including `undefined` (23) and any
    /// simple value in the two-byte form.
    #[error("simple value {0} is not allowed (only false, true and null are)")]
    UnsupportedSimple(u8),
    /// A break byte (0xff) where no indefinite-length item is open, which is everywhere here.
    #[error("unexpected break byte")]
    UnexpectedBreak,
    /// Additional information 28-30, which RFC 8949 reserves, or 31 on an integer.
    #[error("additional information {0} is reserved or not well-formed here")]
    ReservedAdditionalInfo(u8),
    /// A text string whose bytes are not valid UTF-8.
    #[error("text string is not valid UTF-8")]
    InvalidUtf8,
    /// A map key that is not an unsigned integer (major type 0).
    #[error("map key is not an unsigned integer")]
    MapKeyNotUint,
    /// A map key not greater than the key before it: out of order, or a duplicate.
    #[error("map key {key} does not follow key {previous} in strictly ascending order")]
    MapKeysNotAscending { previous: u64, key: u64 },
    /// Arrays and maps nested deeper than [`MAX_DEPTH`].
    #[error("arrays and maps nest deeper than {MAX_DEPTH}")]
    TooDeep,
    /// The decoded value does not re-encode to the bytes it came from. The other rules already
    /// make this impossible; it is checked anyway because the whole log rests on it.
    #[error("data item is not in canonical form")]
    NotCanonical,
}

/// Reads the fields of a decoded map by key, for the hand-written decoders of log events.
///
/// It remembers which keys were read, so that [`MapReader::finish`] can refuse a map with a key
/// that the decoder did not ask for: an unknown field would otherwise be carried in the hashed
/// bytes while every reader ignored it.
#[derive(Debug)]
pub struct MapReader<'a> {
    entries: &'a [(u64, Value)],
    used: Vec<Cell<bool>>,
}

/// Why a map did not have the fields an event decoder expected. Every variant names the key.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    /// A required key is absent.
    #[error("map key {key}: missing")]
    Missing { key: u64 },
    /// A key that the decoder did not read, found by [`MapReader::finish`].
    #[error("map key {key}: unknown")]
    Unknown { key: u64 },
    /// The key is present but its value is not of the expected shape.
    #[error("map key {key}: expected {expected}")]
    WrongType { key: u64, expected: &'static str },
}

/// Reads one data item from a byte slice, keeping its position.
struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

/// An array or map that [`Decoder::skip`] has entered: how many of its elements (entries, for a
/// map) are still to walk, and a map's last key.
#[derive(Clone, Copy, Default)]
struct Open {
    left: usize,
    map: bool,
    last_key: Option<u64>,
}

// === Encoding and decoding ===

/// Appends the canonical encoding of `v` to `out`.
///
/// Every argument and length is written in its shortest form and every length is definite, so
/// the output is the one encoding of `v`. Map entries are written in the order given: a map
/// whose keys are not strictly ascending yields bytes that [`decode`] refuses (so does nesting
/// deeper than [`MAX_DEPTH`]). Code that builds maps by hand can check a value with
/// `decode(&to_vec(&v))` before it is hashed.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Uint(n) => write_head(out, MAJOR_UINT, *n),
        Value::Nint(n) => write_head(out, MAJOR_NINT, *n),
        Value::Bytes(bytes) => {
            write_head(out, MAJOR_BYTES, length_argument(bytes.len()));
            out.extend_from_slice(bytes);
        }
        Value::Text(text) => {
            write_head(out, MAJOR_TEXT, length_argument(text.len()));
            out.extend_from_slice(text.as_bytes());
        }
        Value::Array(items) => {
            write_head(out, MAJOR_ARRAY, length_argument(items.len()));
            for item in items {
                encode(item, out);
            }
        }
        Value::Map(entries) => {
            write_head(out, MAJOR_MAP, length_argument(entries.len()));
            for (key, value) in entries {
                write_head(out, MAJOR_UINT, *key);
                encode(value, out);
            }
        }
        Value::Bool(false) => out.push(initial_byte(MAJOR_SIMPLE, SIMPLE_FALSE)),
        Value::Bool(true) => out.push(initial_byte(MAJOR_SIMPLE, SIMPLE_TRUE)),
        Value::Null => out.push(initial_byte(MAJOR_SIMPLE, SIMPLE_NULL)),
    }
}

/// Writes canonical CBOR items straight into a buffer, for the hot path that encodes every
/// record (no [`Value`] tree, no copies of its strings). The caller writes a map's or array's
/// length and then exactly that many entries, map keys ascending: the same rules as a [`Value`]
/// handed to [`encode`], which writes the same bytes for the same items.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Writer<'a> {
        Writer { out }
    }
    pub fn uint(&mut self, n: u64) {
        write_head(self.out, MAJOR_UINT, n);
    }
    /// The integer `n` in its one CBOR form, as [`Value::int`].
    pub fn int(&mut self, n: i64) {
        if n >= 0 {
            write_head(self.out, MAJOR_UINT, n.unsigned_abs());
        } else {
            write_head(self.out, MAJOR_NINT, n.unsigned_abs() - 1);
        }
    }
    pub fn bytes(&mut self, b: &[u8]) {
        write_head(self.out, MAJOR_BYTES, length_argument(b.len()));
        self.out.extend_from_slice(b);
    }
    pub fn text(&mut self, s: &str) {
        write_head(self.out, MAJOR_TEXT, length_argument(s.len()));
        self.out.extend_from_slice(s.as_bytes());
    }
    pub fn bool(&mut self, b: bool) {
        let simple = if b { SIMPLE_TRUE } else { SIMPLE_FALSE };
        self.out.push(initial_byte(MAJOR_SIMPLE, simple));
    }
    /// The head of an array of `len` items.
    pub fn array(&mut self, len: usize) {
        write_head(self.out, MAJOR_ARRAY, length_argument(len));
    }
    /// The head of a map of `len` entries; each entry is a [`Writer::uint`] key, then its value.
    pub fn map(&mut self, len: usize) {
        write_head(self.out, MAJOR_MAP, length_argument(len));
    }
}

/// Returns the canonical encoding of `v`; see [`encode`].
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(v, &mut out);
    out
}

/// Decodes exactly one data item that must fill all of `bytes`.
///
/// Succeeds only if `bytes` is the canonical encoding of the value returned, so that
/// `to_vec(&decode(b)?) == b` always holds; anything else is refused with the offset and kind
/// of the first problem found.
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let (value, used) = decode_prefix(bytes)?;
    if used != bytes.len() {
        return Err(CborError::at(used, CborErrorKind::TrailingBytes));
    }
    Ok(value)
}

/// Decodes one data item at the start of `bytes` and returns it with the number of bytes it
/// took, for reading a CBOR sequence (RFC 8742) one item at a time.
///
/// The item is held to the same rules as in [`decode`]; the bytes after it are not looked at.
/// Empty input is [`CborErrorKind::Truncated`] at offset 0.
pub fn decode_prefix(bytes: &[u8]) -> Result<(Value, usize), CborError> {
    let mut decoder = Decoder {
        input: bytes,
        pos: 0,
    };
    let value = decoder.item(0)?;
    check_canonical(&value, decoder.consumed())?;
    Ok((value, decoder.pos))
}

/// The length of the first data item of `bytes`, walked without building a value.
///
/// For splitting a CBOR sequence (RFC 8742) quickly when only the bytes of each item are needed,
/// as the verifier does. It accepts exactly what [`decode_prefix`] accepts, with the same error
/// for what it refuses: the walk reads every head, length, map key and text with the decoder's
/// own steps (shortest forms, definite lengths, the subset's types, map keys strictly
/// ascending, UTF-8 text, at most [`MAX_DEPTH`] levels), so an item that passes has one meaning
/// to every reader of the log, which a hash over its bytes then pins down. It only builds
/// nothing, and walks iteratively with a fixed stack.
///
/// # Errors
/// The error [`decode_prefix`] gives for the same bytes.
pub fn item_len(bytes: &[u8]) -> Result<usize, CborError> {
    item_len_in(bytes, &mut [Open::default(); MAX_DEPTH])
}

/// Where a CBOR sequence stops being items: the offset of the first byte that does not start
/// one, and why (the error's own offset counts from there).
pub type SequenceStop = (usize, CborError);

/// The byte ranges `(offset, len)` of the items of a CBOR sequence (RFC 8742), each checked
/// as [`item_len`] checks it, and where the walk stopped if the rest is not an item.
pub fn split_sequence(bytes: &[u8]) -> (Vec<(usize, usize)>, Option<SequenceStop>) {
    // One walking stack for the whole sequence, not one per item.
    let mut open = [Open::default(); MAX_DEPTH];
    let mut items = Vec::with_capacity(bytes.len() / 256);
    let mut offset = 0usize;
    while let Some(rest) = bytes.get(offset..).filter(|r| !r.is_empty()) {
        match item_len_in(rest, &mut open) {
            Ok(len) => {
                items.push((offset, len));
                offset += len;
            }
            Err(e) => return (items, Some((offset, e))),
        }
    }
    (items, None)
}

fn item_len_in(bytes: &[u8], open: &mut [Open; MAX_DEPTH]) -> Result<usize, CborError> {
    let mut decoder = Decoder {
        input: bytes,
        pos: 0,
    };
    decoder.skip(open)?;
    Ok(decoder.pos)
}

/// Refuses `value` unless it re-encodes to exactly `bytes`: the last line of defence of the
/// module's invariant, in case a rule of the decoder ever lets a second spelling through.
fn check_canonical(value: &Value, bytes: &[u8]) -> Result<(), CborError> {
    let again = to_vec(value);
    if again == bytes {
        return Ok(());
    }
    let offset = again
        .iter()
        .zip(bytes)
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| again.len().min(bytes.len()));
    Err(CborError::at(offset, CborErrorKind::NotCanonical))
}

/// Writes an item head with `argument` in its shortest form (RFC 8949 §4.2.1).
fn write_head(out: &mut Vec<u8>, major: u8, argument: u64) {
    if let Ok(small) = u8::try_from(argument) {
        if small < INFO_ONE_BYTE {
            out.push(initial_byte(major, small));
        } else {
            out.push(initial_byte(major, INFO_ONE_BYTE));
            out.push(small);
        }
    } else if let Ok(two) = u16::try_from(argument) {
        out.push(initial_byte(major, INFO_TWO_BYTES));
        out.extend_from_slice(&two.to_be_bytes());
    } else if let Ok(four) = u32::try_from(argument) {
        out.push(initial_byte(major, INFO_FOUR_BYTES));
        out.extend_from_slice(&four.to_be_bytes());
    } else {
        out.push(initial_byte(major, INFO_EIGHT_BYTES));
        out.extend_from_slice(&argument.to_be_bytes());
    }
}

fn initial_byte(major: u8, info: u8) -> u8 {
    (major << 5) | info
}

/// A length as a CBOR argument. `usize` is at most 64 bits on every target Rust supports, so
/// the fallback is never taken.
fn length_argument(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

// === impl Value ===

impl Value {
    /// The integer `n` in its one CBOR form: `Uint` when `n >= 0`, else `Nint(-1 - n)`.
    pub fn int(n: i64) -> Value {
        if n >= 0 {
            Value::Uint(n.unsigned_abs())
        } else {
            // -1 - n == |n| - 1, and |n| >= 1 here.
            Value::Nint(n.unsigned_abs() - 1)
        }
    }

    /// The value as an `i64`, if it is an integer in range. `Uint` above `i64::MAX` and `Nint`
    /// below `i64::MIN` give `None` rather than a wrapped number.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Uint(n) => i64::try_from(*n).ok(),
            // n <= i64::MAX, so -1 - n >= i64::MIN.
            Value::Nint(n) => i64::try_from(*n).ok().map(|n| -1 - n),
            _ => None,
        }
    }

    pub fn as_uint(&self) -> Option<u64> {
        match self {
            Value::Uint(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The entries of a map, keys strictly ascending when the value came from [`decode`]; read
    /// them with a [`MapReader`].
    pub fn as_map(&self) -> Option<&[(u64, Value)]> {
        match self {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

// === impl CborError ===

impl CborError {
    fn at(offset: usize, kind: CborErrorKind) -> CborError {
        CborError { offset, kind }
    }
}

// === impl MapReader ===

impl<'a> MapReader<'a> {
    /// Starts reading `entries`, with no key read yet.
    pub fn new(entries: &'a [(u64, Value)]) -> MapReader<'a> {
        MapReader {
            entries,
            used: entries.iter().map(|_| Cell::new(false)).collect(),
        }
    }

    /// The value under `key`, which must be present; marks the key as read.
    pub fn req(&self, key: u64) -> Result<&'a Value, FieldError> {
        self.opt(key).ok_or(FieldError::Missing { key })
    }

    /// The value under `key` if present; marks the key as read.
    pub fn opt(&self, key: u64) -> Option<&'a Value> {
        let index = self.entries.iter().position(|(k, _)| *k == key)?;
        if let Some(used) = self.used.get(index) {
            used.set(true);
        }
        self.entries.get(index).map(|(_, value)| value)
    }

    /// The value under `key`, which must be present, converted by `read` (such as
    /// [`Value::as_uint`]); `None` from `read` becomes [`FieldError::WrongType`] naming the key
    /// and `expected`.
    pub fn req_as<T>(
        &self,
        key: u64,
        expected: &'static str,
        read: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<T, FieldError> {
        read(self.req(key)?).ok_or(FieldError::WrongType { key, expected })
    }

    /// Like [`MapReader::req_as`], for a key that may be absent.
    pub fn opt_as<T>(
        &self,
        key: u64,
        expected: &'static str,
        read: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, FieldError> {
        match self.opt(key) {
            None => Ok(None),
            Some(value) => read(value)
                .map(Some)
                .ok_or(FieldError::WrongType { key, expected }),
        }
    }

    /// Ends the reading: fails with [`FieldError::Unknown`] naming the smallest key that was
    /// never read, because a field nobody understands must not ride along in a hashed record.
    pub fn finish(self) -> Result<(), FieldError> {
        match self
            .entries
            .iter()
            .zip(&self.used)
            .find(|(_, used)| !used.get())
        {
            Some(((key, _), _)) => Err(FieldError::Unknown { key: *key }),
            None => Ok(()),
        }
    }
}

// === impl Decoder ===

impl<'a> Decoder<'a> {
    /// The bytes read so far.
    fn consumed(&self) -> &'a [u8] {
        self.input.get(..self.pos).unwrap_or_default()
    }

    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    /// Takes the next `n` bytes, or fails with `Truncated` blamed on the item at `item`.
    fn take(&mut self, n: usize, item: usize) -> Result<&'a [u8], CborError> {
        let truncated = CborError::at(item, CborErrorKind::Truncated);
        let end = self.pos.checked_add(n).ok_or(truncated)?;
        let bytes = self.input.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self, item: usize) -> Result<u8, CborError> {
        let byte = self
            .input
            .get(self.pos)
            .copied()
            .ok_or(CborError::at(item, CborErrorKind::Truncated))?;
        self.pos += 1;
        Ok(byte)
    }

    /// Reads an initial byte; returns where the item starts, its major type and its additional
    /// information.
    fn initial(&mut self) -> Result<(usize, u8, u8), CborError> {
        let start = self.pos;
        let byte = self.byte(start)?;
        Ok((start, byte >> 5, byte & 0x1f))
    }

    /// Reads one data item whose enclosing arrays and maps number `depth`.
    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        let (start, major, info) = self.initial()?;
        match major {
            MAJOR_UINT => Ok(Value::Uint(self.argument(start, major, info)?)),
            MAJOR_NINT => Ok(Value::Nint(self.argument(start, major, info)?)),
            MAJOR_BYTES => {
                let len = self.argument(start, major, info)?;
                Ok(Value::Bytes(self.payload(start, len)?.to_vec()))
            }
            MAJOR_TEXT => {
                let len = self.argument(start, major, info)?;
                let payload_start = self.pos;
                let payload = self.payload(start, len)?;
                match std::str::from_utf8(payload) {
                    Ok(text) => Ok(Value::Text(text.to_owned())),
                    Err(e) => Err(CborError::at(
                        payload_start + e.valid_up_to(),
                        CborErrorKind::InvalidUtf8,
                    )),
                }
            }
            MAJOR_ARRAY => self.array(start, info, depth),
            MAJOR_MAP => self.map(start, info, depth),
            MAJOR_TAG => Err(CborError::at(start, CborErrorKind::Tag)),
            // The major type is three bits, so this is major type 7.
            _ => self.simple(start, info),
        }
    }

    fn array(&mut self, start: usize, info: u8, depth: usize) -> Result<Value, CborError> {
        if depth >= MAX_DEPTH {
            return Err(CborError::at(start, CborErrorKind::TooDeep));
        }
        let declared = self.argument(start, MAJOR_ARRAY, info)?;
        // Every element takes at least one byte.
        let count = self.checked_count(start, declared, 1)?;
        let mut items = Vec::with_capacity(count.min(PREALLOC_LIMIT));
        for _ in 0..count {
            items.push(self.item(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, start: usize, info: u8, depth: usize) -> Result<Value, CborError> {
        if depth >= MAX_DEPTH {
            return Err(CborError::at(start, CborErrorKind::TooDeep));
        }
        let declared = self.argument(start, MAJOR_MAP, info)?;
        // Every entry takes at least two bytes, a key and a value.
        let count = self.checked_count(start, declared, 2)?;
        let mut entries: Vec<(u64, Value)> = Vec::with_capacity(count.min(PREALLOC_LIMIT));
        for _ in 0..count {
            let (key_start, major, key_info) = self.initial()?;
            if major != MAJOR_UINT {
                return Err(CborError::at(key_start, CborErrorKind::MapKeyNotUint));
            }
            let key = self.argument(key_start, major, key_info)?;
            if let Some(&(previous, _)) = entries.last()
                && key <= previous
            {
                return Err(CborError::at(
                    key_start,
                    CborErrorKind::MapKeysNotAscending { previous, key },
                ));
            }
            let value = self.item(depth + 1)?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }

    /// Walks one data item as [`Decoder::item`] reads it at depth 0, building nothing; `open`
    /// is scratch space for the arrays and maps it is inside.
    fn skip(&mut self, open: &mut [Open; MAX_DEPTH]) -> Result<(), CborError> {
        // Arrays and maps entered and not yet finished; the item read next is in the last.
        let mut depth = 0usize;
        loop {
            if let Some(top) = depth.checked_sub(1).and_then(|d| open.get_mut(d)) {
                if top.left == 0 {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                    continue;
                }
                top.left -= 1;
                if top.map {
                    let (key_start, major, key_info) = self.initial()?;
                    if major != MAJOR_UINT {
                        return Err(CborError::at(key_start, CborErrorKind::MapKeyNotUint));
                    }
                    let key = self.argument(key_start, major, key_info)?;
                    if let Some(previous) = top.last_key
                        && key <= previous
                    {
                        return Err(CborError::at(
                            key_start,
                            CborErrorKind::MapKeysNotAscending { previous, key },
                        ));
                    }
                    top.last_key = Some(key);
                }
            }
            let (start, major, info) = self.initial()?;
            match major {
                MAJOR_UINT | MAJOR_NINT => {
                    self.argument(start, major, info)?;
                }
                MAJOR_BYTES => {
                    let len = self.argument(start, major, info)?;
                    self.payload(start, len)?;
                }
                MAJOR_TEXT => {
                    let len = self.argument(start, major, info)?;
                    let payload_start = self.pos;
                    let payload = self.payload(start, len)?;
                    if let Err(e) = std::str::from_utf8(payload) {
                        return Err(CborError::at(
                            payload_start + e.valid_up_to(),
                            CborErrorKind::InvalidUtf8,
                        ));
                    }
                }
                MAJOR_ARRAY | MAJOR_MAP => {
                    let Some(slot) = open.get_mut(depth) else {
                        return Err(CborError::at(start, CborErrorKind::TooDeep));
                    };
                    let map = major == MAJOR_MAP;
                    let declared = self.argument(start, major, info)?;
                    // Every element takes at least one byte; every entry two, a key and a value.
                    let left = self.checked_count(start, declared, if map { 2 } else { 1 })?;
                    *slot = Open {
                        left,
                        map,
                        last_key: None,
                    };
                    depth += 1;
                    continue;
                }
                MAJOR_TAG => return Err(CborError::at(start, CborErrorKind::Tag)),
                _ => {
                    self.simple(start, info)?;
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    /// Major type 7: only `false`, `true` and `null` are accepted.
    fn simple(&mut self, start: usize, info: u8) -> Result<Value, CborError> {
        let kind = match info {
            SIMPLE_FALSE => return Ok(Value::Bool(false)),
            SIMPLE_TRUE => return Ok(Value::Bool(true)),
            SIMPLE_NULL => return Ok(Value::Null),
            INFO_ONE_BYTE => CborErrorKind::UnsupportedSimple(self.byte(start)?),
            INFO_TWO_BYTES..=INFO_EIGHT_BYTES => CborErrorKind::Float,
            INFO_INDEFINITE => CborErrorKind::UnexpectedBreak,
            0..INFO_ONE_BYTE => CborErrorKind::UnsupportedSimple(info),
            _ => CborErrorKind::ReservedAdditionalInfo(info),
        };
        Err(CborError::at(start, kind))
    }

    /// Reads the argument of the item at `start` and insists on its shortest form.
    fn argument(&mut self, start: usize, major: u8, info: u8) -> Result<u64, CborError> {
        let (width, smallest) = match info {
            0..INFO_ONE_BYTE => return Ok(u64::from(info)),
            INFO_ONE_BYTE => (1, u64::from(INFO_ONE_BYTE)),
            INFO_TWO_BYTES => (2, 1 << 8),
            INFO_FOUR_BYTES => (4, 1 << 16),
            INFO_EIGHT_BYTES => (8, 1 << 32),
            INFO_INDEFINITE if (MAJOR_BYTES..=MAJOR_MAP).contains(&major) => {
                return Err(CborError::at(start, CborErrorKind::IndefiniteLength));
            }
            _ => {
                return Err(CborError::at(
                    start,
                    CborErrorKind::ReservedAdditionalInfo(info),
                ));
            }
        };
        let argument = self
            .take(width, start)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if argument < smallest {
            let kind = if major <= MAJOR_NINT {
                CborErrorKind::NonShortestInteger
            } else {
                CborErrorKind::NonShortestLength
            };
            return Err(CborError::at(start, kind));
        }
        Ok(argument)
    }

    /// Takes the `len` payload bytes of a string, checking first that the input has them.
    fn payload(&mut self, start: usize, len: u64) -> Result<&'a [u8], CborError> {
        let len = self.checked_count(start, len, 1)?;
        self.take(len, start)
    }

    /// Checks that `declared` units of at least `min_bytes` bytes each can fit in the rest of
    /// the input, before anything is allocated for them.
    fn checked_count(
        &self,
        start: usize,
        declared: u64,
        min_bytes: u64,
    ) -> Result<usize, CborError> {
        let truncated = CborError::at(start, CborErrorKind::Truncated);
        let remaining = length_argument(self.remaining());
        if declared.saturating_mul(min_bytes) > remaining {
            return Err(truncated);
        }
        usize::try_from(declared).map_err(|_| truncated)
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
mod tests {
    use super::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use proptest::sample::Index;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| {
                let pair: String = pair.iter().collect();
                u8::from_str_radix(&pair, 16).unwrap()
            })
            .collect()
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn err(offset: usize, kind: CborErrorKind) -> Result<Value, CborError> {
        Err(CborError { offset, kind })
    }

    /// Every valid vector of RFC 8949 Appendix A for the types the log supports.
    fn rfc_vectors() -> Vec<(&'static str, Value)> {
        use Value::*;
        vec![
            ("00", Uint(0)),
            ("01", Uint(1)),
            ("0a", Uint(10)),
            ("17", Uint(23)),
            ("1818", Uint(24)),
            ("1819", Uint(25)),
            ("1864", Uint(100)),
            ("1903e8", Uint(1000)),
            ("1a000f4240", Uint(1_000_000)),
            ("1b000000e8d4a51000", Uint(1_000_000_000_000)),
            ("1bffffffffffffffff", Uint(u64::MAX)),
            ("3bffffffffffffffff", Nint(u64::MAX)), // -18446744073709551616
            ("20", Nint(0)),                        // -1
            ("29", Nint(9)),                        // -10
            ("3863", Nint(99)),                     // -100
            ("3903e7", Nint(999)),                  // -1000
            ("f4", Bool(false)),
            ("f5", Bool(true)),
            ("f6", Null),
            ("40", Bytes(vec![])),
            ("4401020304", Bytes(vec![1, 2, 3, 4])),
            ("60", text("")),
            ("6161", text("a")),
            ("6449455446", text("IETF")),
            ("62225c", text("\"\\")),
            ("62c3bc", text("\u{00fc}")),
            ("63e6b0b4", text("\u{6c34}")),
            ("64f0908591", text("\u{10151}")),
            ("80", Array(vec![])),
            ("83010203", Array(vec![Uint(1), Uint(2), Uint(3)])),
            (
                "8301820203820405",
                Array(vec![
                    Uint(1),
                    Array(vec![Uint(2), Uint(3)]),
                    Array(vec![Uint(4), Uint(5)]),
                ]),
            ),
            (
                "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
                Array((1..=25).map(Uint).collect()),
            ),
            ("a0", Map(vec![])),
            ("a201020304", Map(vec![(1, Uint(2)), (3, Uint(4))])),
        ]
    }

    #[test]
    fn rfc_8949_appendix_a_vectors_encode_and_decode() {
        for (h, value) in rfc_vectors() {
            let bytes = hex(h);
            assert_eq!(to_vec(&value), bytes, "encoding {value:?}");
            assert_eq!(decode(&bytes), Ok(value.clone()), "decoding {h}");
            assert_eq!(decode_prefix(&bytes), Ok((value, bytes.len())));
        }
    }

    #[test]
    fn encode_appends() {
        let mut out = vec![0xaa];
        encode(&Value::Uint(1), &mut out);
        encode(&text("a"), &mut out);
        assert_eq!(out, hex("aa 01 6161"));
    }

    #[test]
    fn argument_boundaries_are_shortest() {
        for (n, h) in [
            (23, "17"),
            (24, "1818"),
            (255, "18ff"),
            (256, "190100"),
            (65_535, "19ffff"),
            (65_536, "1a00010000"),
            (0xffff_ffff, "1affffffff"),
            (0x1_0000_0000, "1b0000000100000000"),
        ] {
            assert_eq!(to_vec(&Value::Uint(n)), hex(h));
            assert_eq!(decode(&hex(h)), Ok(Value::Uint(n)));
        }
    }

    #[test]
    fn non_shortest_integers_are_refused() {
        for h in [
            "1805",
            "1817",
            "190005",
            "1900ff",
            "1a00000005",
            "1a0000ffff",
            "1b0000000000000005",
            "1b00000000ffffffff",
            "3805",
            "3900ff",
        ] {
            assert_eq!(
                decode(&hex(h)),
                err(0, CborErrorKind::NonShortestInteger),
                "{h}"
            );
        }
        // A map key is an integer too.
        assert_eq!(
            decode(&hex("a1 1801 00")),
            err(1, CborErrorKind::NonShortestInteger)
        );
    }

    #[test]
    fn non_shortest_lengths_are_refused() {
        for h in ["5801aa", "780161", "9800", "b800", "59000100", "9a00000000"] {
            assert_eq!(
                decode(&hex(h)),
                err(0, CborErrorKind::NonShortestLength),
                "{h}"
            );
        }
        // Inside a container the offset points at the offending item.
        assert_eq!(
            decode(&hex("82 00 5800")),
            err(2, CborErrorKind::NonShortestLength)
        );
    }

    #[test]
    fn indefinite_lengths_are_refused() {
        for h in ["5f4100ff", "7f6161ff", "9f01ff", "bf0101ff", "5fff", "9fff"] {
            assert_eq!(
                decode(&hex(h)),
                err(0, CborErrorKind::IndefiniteLength),
                "{h}"
            );
        }
    }

    #[test]
    fn reserved_additional_information_is_refused() {
        for h in [
            "1c", "1d", "1e", "3c", "5c", "7d", "9e", "bc", "fc", "fd", "fe",
        ] {
            let info = hex(h)[0] & 0x1f;
            assert_eq!(
                decode(&hex(h)),
                err(0, CborErrorKind::ReservedAdditionalInfo(info)),
                "{h}"
            );
        }
        // Additional information 31 on an integer is not well-formed.
        assert_eq!(
            decode(&hex("1f")),
            err(0, CborErrorKind::ReservedAdditionalInfo(31))
        );
        assert_eq!(
            decode(&hex("3f")),
            err(0, CborErrorKind::ReservedAdditionalInfo(31))
        );
    }

    #[test]
    fn floats_are_refused() {
        for h in [
            "f90000",
            "f93c00",
            "fa47c35000",
            "fb3ff199999999999a",
            "f97e00",
        ] {
            assert_eq!(decode(&hex(h)), err(0, CborErrorKind::Float), "{h}");
        }
    }

    #[test]
    fn tags_are_refused() {
        for h in [
            "c074323031332d30332d32315432303a30343a30305a",
            "c11a514b67b0",
            "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
            "c249010000000000000000",
        ] {
            assert_eq!(decode(&hex(h)), err(0, CborErrorKind::Tag), "{h}");
        }
        assert_eq!(decode(&hex("81 c0 00")), err(1, CborErrorKind::Tag));
    }

    #[test]
    fn other_simple_values_are_refused() {
        assert_eq!(
            decode(&hex("f7")),
            err(0, CborErrorKind::UnsupportedSimple(23))
        ); // undefined
        assert_eq!(
            decode(&hex("f0")),
            err(0, CborErrorKind::UnsupportedSimple(16))
        );
        assert_eq!(
            decode(&hex("e0")),
            err(0, CborErrorKind::UnsupportedSimple(0))
        );
        assert_eq!(
            decode(&hex("f8ff")),
            err(0, CborErrorKind::UnsupportedSimple(255))
        );
        // `false` spelt in the two-byte form is a second encoding of `false`.
        assert_eq!(
            decode(&hex("f814")),
            err(0, CborErrorKind::UnsupportedSimple(20))
        );
        assert_eq!(decode(&hex("f8")), err(0, CborErrorKind::Truncated));
    }

    #[test]
    fn break_outside_context_is_refused() {
        assert_eq!(decode(&hex("ff")), err(0, CborErrorKind::UnexpectedBreak));
        assert_eq!(decode(&hex("8101ff")), err(2, CborErrorKind::TrailingBytes));
        assert_eq!(
            decode(&hex("82 ff 00")),
            err(1, CborErrorKind::UnexpectedBreak)
        );
        assert_eq!(
            decode(&hex("a101ff")),
            err(2, CborErrorKind::UnexpectedBreak)
        );
    }

    #[test]
    fn unsorted_and_duplicate_map_keys_are_refused() {
        assert_eq!(
            decode(&hex("a2 02 00 01 00")),
            err(
                3,
                CborErrorKind::MapKeysNotAscending {
                    previous: 2,
                    key: 1
                }
            )
        );
        assert_eq!(
            decode(&hex("a2 01 00 01 00")),
            err(
                3,
                CborErrorKind::MapKeysNotAscending {
                    previous: 1,
                    key: 1
                }
            )
        );
        // Ordered by value, not by what a bytewise sort of non-shortest keys would give.
        assert_eq!(
            decode(&hex("a2 1818 00 17 00")),
            err(
                4,
                CborErrorKind::MapKeysNotAscending {
                    previous: 24,
                    key: 23
                }
            )
        );
        // And a map value built out of order encodes to bytes that are refused.
        let unsorted = Value::Map(vec![(2, Value::Null), (1, Value::Null)]);
        assert_eq!(
            decode(&to_vec(&unsorted)),
            err(
                3,
                CborErrorKind::MapKeysNotAscending {
                    previous: 2,
                    key: 1
                }
            )
        );
    }

    #[test]
    fn map_keys_other_than_uints_are_refused() {
        assert_eq!(
            decode(&hex("a1 6161 00")),
            err(1, CborErrorKind::MapKeyNotUint)
        );
        assert_eq!(
            decode(&hex("a1 20 00")),
            err(1, CborErrorKind::MapKeyNotUint)
        );
        assert_eq!(
            decode(&hex("a1 f6 00")),
            err(1, CborErrorKind::MapKeyNotUint)
        );
        assert_eq!(
            decode(&hex("a1 80 00")),
            err(1, CborErrorKind::MapKeyNotUint)
        );
        assert_eq!(
            decode(&hex("a2 01 00 4101 00")),
            err(3, CborErrorKind::MapKeyNotUint)
        );
    }

    #[test]
    fn trailing_bytes_are_refused_by_decode_only() {
        assert_eq!(decode(&hex("00 00")), err(1, CborErrorKind::TrailingBytes));
        assert_eq!(
            decode(&hex("6161 ff")),
            err(2, CborErrorKind::TrailingBytes)
        );
        assert_eq!(decode_prefix(&hex("00 00")), Ok((Value::Uint(0), 1)));
        assert_eq!(decode_prefix(&hex("6161 ff")), Ok((text("a"), 2)));
    }

    #[test]
    fn decode_prefix_reads_a_sequence() {
        let items = [
            Value::Uint(1),
            text("IETF"),
            Value::Map(vec![(0, Value::Null)]),
            Value::int(-5),
        ];
        let mut stream = Vec::new();
        for item in &items {
            encode(item, &mut stream);
        }
        let mut rest = stream.as_slice();
        let mut read = Vec::new();
        while !rest.is_empty() {
            let (value, used) = decode_prefix(rest).unwrap();
            read.push(value);
            rest = &rest[used..];
        }
        assert_eq!(read, items);
    }

    #[test]
    fn every_strict_prefix_is_truncated() {
        let mut encodings: Vec<Vec<u8>> = rfc_vectors().iter().map(|(h, _)| hex(h)).collect();
        encodings.push(to_vec(&Value::Map(vec![
            (
                1,
                Value::Array(vec![Value::Uint(70_000), Value::Bytes(vec![7; 30])]),
            ),
            (24, text("héllo wörld, 水")),
            (
                300,
                Value::Map(vec![(0, Value::Nint(1 << 40)), (5, Value::Bool(true))]),
            ),
        ])));
        for bytes in encodings {
            for cut in 0..bytes.len() {
                let prefix = &bytes[..cut];
                let result = decode(prefix);
                assert!(
                    matches!(result, Err(CborError { kind: CborErrorKind::Truncated, offset }) if offset <= cut),
                    "prefix {prefix:02x?} of {bytes:02x?}: {result:?}"
                );
                assert_eq!(
                    decode_prefix(prefix).map_err(|e| e.kind),
                    Err(CborErrorKind::Truncated)
                );
            }
        }
        assert_eq!(decode(&[]), err(0, CborErrorKind::Truncated));
    }

    #[test]
    fn huge_declared_lengths_are_refused_before_allocating() {
        assert_eq!(
            decode(&hex("5bffffffffffffffff")),
            err(0, CborErrorKind::Truncated)
        );
        assert_eq!(
            decode(&hex("7bffffffffffffffff 6161")),
            err(0, CborErrorKind::Truncated)
        );
        assert_eq!(
            decode(&hex("9bffffffffffffffff 00")),
            err(0, CborErrorKind::Truncated)
        );
        assert_eq!(
            decode(&hex("bbffffffffffffffff 0000")),
            err(0, CborErrorKind::Truncated)
        );
        // A map of two entries needs at least four bytes after its head.
        assert_eq!(decode(&hex("a2 0000 00")), err(0, CborErrorKind::Truncated));
        // Nested containers with large counts each fail at their own head.
        assert_eq!(
            decode(&hex("9a00010000 9a00010000 00")),
            err(0, CborErrorKind::Truncated)
        );
    }

    #[test]
    fn invalid_utf8_is_refused_at_the_bad_byte() {
        assert_eq!(decode(&hex("62 c328")), err(1, CborErrorKind::InvalidUtf8));
        assert_eq!(
            decode(&hex("63 61 ff 61")),
            err(2, CborErrorKind::InvalidUtf8)
        );
        assert_eq!(decode(&hex("61 c3")), err(1, CborErrorKind::InvalidUtf8));
        assert_eq!(
            decode(&hex("63 eda080")),
            err(1, CborErrorKind::InvalidUtf8)
        ); // surrogate
        assert_eq!(decode(&hex("62 c0af")), err(1, CborErrorKind::InvalidUtf8)); // overlong
        assert_eq!(
            decode(&hex("82 00 62 61ff")),
            err(4, CborErrorKind::InvalidUtf8)
        );
    }

    #[test]
    fn nesting_is_limited() {
        let nested = |levels: usize, head: &[u8]| {
            let mut bytes = head.repeat(levels);
            bytes.push(0);
            bytes
        };
        assert!(decode(&nested(MAX_DEPTH, &[0x81])).is_ok());
        assert_eq!(
            decode(&nested(MAX_DEPTH + 1, &[0x81])),
            err(MAX_DEPTH, CborErrorKind::TooDeep)
        );
        assert!(decode(&nested(MAX_DEPTH, &[0xa1, 0x00])).is_ok());
        assert_eq!(
            decode(&nested(MAX_DEPTH + 1, &[0xa1, 0x00])),
            err(2 * MAX_DEPTH, CborErrorKind::TooDeep)
        );
        // Far too deep is refused as well, without exhausting the stack.
        assert_eq!(
            decode(&nested(100_000, &[0x81])),
            err(MAX_DEPTH, CborErrorKind::TooDeep)
        );
    }

    #[test]
    fn canonical_check_reports_the_first_difference() {
        let bytes = hex("83 01 02 03");
        assert_eq!(
            check_canonical(
                &Value::Array(vec![Value::Uint(1), Value::Uint(2), Value::Uint(3)]),
                &bytes
            ),
            Ok(())
        );
        assert_eq!(
            check_canonical(
                &Value::Array(vec![Value::Uint(1), Value::Uint(9), Value::Uint(3)]),
                &bytes
            ),
            Err(CborError {
                offset: 2,
                kind: CborErrorKind::NotCanonical
            })
        );
        assert_eq!(
            check_canonical(
                &Value::Array(vec![Value::Uint(1), Value::Uint(2)]),
                &hex("82 01")
            ),
            Err(CborError {
                offset: 2,
                kind: CborErrorKind::NotCanonical
            })
        );
    }

    #[test]
    fn errors_display_offset_and_kind() {
        let e = decode(&hex("82 00 1805")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cbor: at byte 2: integer is not in its shortest form"
        );
        let e = decode(&hex("a2 02 00 01 00")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cbor: at byte 3: map key 1 does not follow key 2 in strictly ascending order"
        );
        assert_eq!(
            CborErrorKind::TooDeep.to_string(),
            "arrays and maps nest deeper than 64"
        );
    }

    #[test]
    fn int_maps_i64_onto_uint_and_nint() {
        assert_eq!(Value::int(0), Value::Uint(0));
        assert_eq!(Value::int(-1), Value::Nint(0));
        assert_eq!(Value::int(-1000), Value::Nint(999));
        assert_eq!(Value::int(i64::MAX), Value::Uint(i64::MAX as u64));
        assert_eq!(Value::int(i64::MIN), Value::Nint(i64::MAX as u64));
        for n in [i64::MIN, i64::MIN + 1, -1000, -1, 0, 1, 23, 24, i64::MAX] {
            assert_eq!(Value::int(n).as_int(), Some(n));
        }
        assert_eq!(Value::Uint(i64::MAX as u64 + 1).as_int(), None);
        assert_eq!(Value::Nint(i64::MAX as u64 + 1).as_int(), None);
        assert_eq!(Value::Nint(u64::MAX).as_int(), None);
        assert_eq!(Value::Null.as_int(), None);
    }

    #[test]
    fn accessors_match_only_their_variant() {
        let bytes = Value::Bytes(vec![1]);
        assert_eq!(bytes.as_bytes(), Some(&[1u8][..]));
        assert_eq!(bytes.as_text(), None);
        assert_eq!(text("x").as_text(), Some("x"));
        assert_eq!(Value::Uint(7).as_uint(), Some(7));
        assert_eq!(Value::Nint(7).as_uint(), None);
        assert_eq!(Value::Bool(true).as_bool(), Some(true));
        assert_eq!(
            Value::Array(vec![Value::Null]).as_array(),
            Some(&[Value::Null][..])
        );
        assert_eq!(Value::Map(vec![]).as_map(), Some(&[][..]));
        assert!(Value::Null.is_null());
        assert!(!Value::Bool(false).is_null());
    }

    #[test]
    fn map_reader_reads_by_key_and_refuses_unknown_keys() {
        let value = decode(&hex("a3 01 6161 02 f5 05 1864")).unwrap();
        let map = value.as_map().unwrap();

        let reader = MapReader::new(map);
        assert_eq!(reader.req(1), Ok(&text("a")));
        assert_eq!(reader.req_as(2, "a bool", Value::as_bool), Ok(true));
        assert_eq!(reader.opt(3), None);
        assert_eq!(reader.req(4), Err(FieldError::Missing { key: 4 }));
        assert_eq!(reader.opt_as(4, "text", Value::as_text), Ok(None));
        assert_eq!(
            reader.opt_as(5, "text", Value::as_text),
            Err(FieldError::WrongType {
                key: 5,
                expected: "text"
            })
        );
        assert_eq!(reader.finish(), Ok(()));

        let reader = MapReader::new(map);
        let _ = reader.req(2);
        assert_eq!(reader.finish(), Err(FieldError::Unknown { key: 1 }));

        let reader = MapReader::new(map);
        assert_eq!(
            reader.req_as(1, "an unsigned integer", Value::as_uint),
            Err(FieldError::WrongType {
                key: 1,
                expected: "an unsigned integer"
            })
        );
        assert_eq!(
            FieldError::WrongType {
                key: 1,
                expected: "an unsigned integer"
            }
            .to_string(),
            "map key 1: expected an unsigned integer"
        );
        let _ = reader.opt(1);
        let _ = reader.opt(2);
        assert_eq!(reader.finish(), Err(FieldError::Unknown { key: 5 }));
    }

    // --- property tests ---

    /// Integers clustered around the boundaries between argument widths, and some anywhere.
    fn arb_argument() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..=30,
            250u64..=260,
            65_530u64..=65_540,
            0xffff_fff0u64..=0x1_0000_0010,
            u64::MAX - 10..=u64::MAX,
            any::<u64>(),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            arb_argument().prop_map(Value::Uint),
            arb_argument().prop_map(Value::Nint),
            vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
            any::<String>().prop_map(Value::Text),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ];
        leaf.prop_recursive(5, 64, 8, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..8).prop_map(Value::Array),
                // A BTreeMap gives sorted, unique keys.
                btree_map(arb_argument(), inner, 0..8)
                    .prop_map(|entries| Value::Map(entries.into_iter().collect())),
            ]
        })
    }

    /// Byte strings that are mostly near-misses of valid encodings, where the decoder's rules
    /// matter, plus plain random bytes.
    fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            vec(any::<u8>(), 0..64),
            (arb_value(), vec((any::<Index>(), any::<u8>()), 1..4)).prop_map(|(v, changes)| {
                let mut bytes = to_vec(&v);
                for (at, byte) in changes {
                    if !bytes.is_empty() {
                        let i = at.index(bytes.len());
                        bytes[i] = byte;
                    }
                }
                bytes
            }),
            (arb_value(), any::<Index>(), any::<u8>()).prop_map(|(v, at, byte)| {
                let mut bytes = to_vec(&v);
                let i = at.index(bytes.len() + 1);
                bytes.insert(i, byte);
                bytes
            }),
            (arb_value(), any::<Index>()).prop_map(|(v, at)| {
                let mut bytes = to_vec(&v);
                bytes.truncate(at.index(bytes.len() + 1));
                bytes
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn encoded_values_decode_to_themselves(v in arb_value()) {
            let bytes = to_vec(&v);
            prop_assert_eq!(decode(&bytes), Ok(v.clone()));
            prop_assert_eq!(decode_prefix(&bytes), Ok((v, bytes.len())));
        }

        #[test]
        fn accepted_bytes_are_the_canonical_encoding(bytes in arb_bytes()) {
            if let Ok(v) = decode(&bytes) {
                prop_assert_eq!(to_vec(&v), bytes.clone());
            }
            if let Ok((v, used)) = decode_prefix(&bytes) {
                prop_assert_eq!(to_vec(&v), bytes[..used].to_vec());
            }
        }

        #[test]
        fn decode_prefix_splits_a_sequence(a in arb_value(), b in arb_value()) {
            let first = to_vec(&a);
            let mut stream = first.clone();
            encode(&b, &mut stream);
            prop_assert_eq!(decode_prefix(&stream), Ok((a, first.len())));
            prop_assert_eq!(decode(&stream[first.len()..]), Ok(b));
        }

        #[test]
        fn item_len_agrees_with_decode_prefix_on_values_and_junk(
            v in arb_value(),
            junk in arb_bytes(),
        ) {
            let mut bytes = to_vec(&v);
            let n = bytes.len();
            bytes.extend_from_slice(&junk);
            prop_assert_eq!(item_len(&bytes), Ok(n));
            // Accepts exactly what the decoder accepts, and refuses the rest the same way.
            prop_assert_eq!(item_len(&junk), decode_prefix(&junk).map(|(_, used)| used));
        }

        #[test]
        fn int_round_trips(n in any::<i64>()) {
            prop_assert_eq!(Value::int(n).as_int(), Some(n));
            prop_assert_eq!(decode(&to_vec(&Value::int(n))).map(|v| v.as_int()), Ok(Some(n)));
        }
    }

    #[test]
    fn item_len_agrees_with_decode_prefix() {
        for (hex_bytes, _) in rfc_vectors() {
            let mut b = hex(hex_bytes);
            let n = b.len();
            b.extend_from_slice(&[0x01, 0x02]);
            assert_eq!(item_len(&b), Ok(n), "{hex_bytes}");
            assert_eq!(decode_prefix(&b).unwrap().1, n);
        }
        assert_eq!(
            item_len(&[0xc1, 0x00]).unwrap_err().kind,
            CborErrorKind::Tag
        );
        assert_eq!(
            item_len(&[0x82, 0x01]).unwrap_err().kind,
            CborErrorKind::Truncated
        );
        assert_eq!(
            item_len(&[0x9f]).unwrap_err().kind,
            CborErrorKind::IndefiniteLength
        );
        // What a walk of heads and lengths alone would pass: each would give the item a second
        // reading (the last or the first of two keys), or none.
        let cases: [(&[u8], CborErrorKind, usize); 5] = [
            (
                &[0xa2, 0x01, 0x00, 0x01, 0x01],
                CborErrorKind::MapKeysNotAscending {
                    previous: 1,
                    key: 1,
                },
                3,
            ),
            (
                &[0xa2, 0x02, 0x00, 0x01, 0x01],
                CborErrorKind::MapKeysNotAscending {
                    previous: 2,
                    key: 1,
                },
                3,
            ),
            (&[0xa1, 0x61, 0x61, 0x00], CborErrorKind::MapKeyNotUint, 1),
            (
                &[0x82, 0x62, 0xc3, 0x28, 0x00],
                CborErrorKind::InvalidUtf8,
                2,
            ),
            (&[0x81; MAX_DEPTH + 1], CborErrorKind::TooDeep, MAX_DEPTH),
        ];
        for (bytes, kind, offset) in cases {
            assert_eq!(item_len(bytes), Err(CborError::at(offset, kind)));
            assert_eq!(decode_prefix(bytes).map(|(_, n)| n), item_len(bytes));
        }
        assert_eq!(
            item_len(
                &[0x81; MAX_DEPTH]
                    .iter()
                    .copied()
                    .chain([0x00])
                    .collect::<Vec<_>>()
            ),
            Ok(MAX_DEPTH + 1)
        );
    }
}
