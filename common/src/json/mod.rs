//! Parsing an API's JSON without losing anything silently: [`from_slice`] is
//! `serde_json::from_slice::<Value>` except that an object with the same key twice with
//! different values (`{"a": 1, "a": 2}`) is an error naming the key and its line and column,
//! where serde_json (like Python's `json`, and so dlt) keeps the last value and drops the
//! other. RFC 8259 says names SHOULD be unique and leaves the outcome to the parser, so the
//! pipeline refuses to pick one (the same value twice loses nothing and is kept once).
//!
//! Numbers keep their text (the workspace builds serde_json with `arbitrary_precision`), so
//! an integer beyond 64 bits arrives digit for digit and the schema can refuse it or, under
//! a `decimal` or `text` hint, keep it exactly (see [`crate::schema`]).

pub mod tape;
pub mod view;

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// How serde_json hands a number to a visitor under `arbitrary_precision`: a one-entry map
/// whose key is this token and whose value is the number's text (serde_json's own `Value`
/// reads it the same way; `number_text_survives` below fails if that ever changes).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// How deep [`Strict`] remembers the size of the last object it built, to size the next one
/// at that depth: an API's records are objects of one shape at one depth.
const SIZE_HINT_DEPTH: usize = 8;

/// Parses `bytes` as one JSON value, refusing an object that repeats a key with another value.
///
/// The bytes are checked as UTF-8 once, as a whole, and then parsed as text, which spares
/// serde_json a check of each string on its own. Bytes that are not UTF-8 are parsed as
/// bytes, so that the error is serde_json's, with its line and column.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => from_str(text),
        Err(_) => parse(serde_json::Deserializer::from_slice(bytes)),
    }
}

/// Parses `text` as one JSON value, refusing an object that repeats a key with another value.
pub fn from_str(text: &str) -> Result<Value, serde_json::Error> {
    parse(serde_json::Deserializer::from_str(text))
}

fn parse<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
) -> Result<Value, serde_json::Error> {
    let sizes: [Cell<usize>; SIZE_HINT_DEPTH] = Default::default();
    let value = Strict {
        sizes: &sizes,
        depth: 0,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A seed (and visitor) that builds a [`Value`] as serde_json's own does, checking keys.
/// Each object is made with room for as many entries as the last object at its depth had
/// (`sizes`), which saves growing its table key by key; that is the only difference.
#[derive(Clone, Copy)]
struct Strict<'a> {
    sizes: &'a [Cell<usize>; SIZE_HINT_DEPTH],
    depth: usize,
}

impl Strict<'_> {
    fn below(self) -> Self {
        Self {
            depth: self.depth + 1,
            ..self
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self.below())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let first = match access.next_key_seed(KeySeed)? {
            None => return Ok(Value::Object(Map::new())),
            Some(Key::Number) => return access.next_value_seed(NumberText).map(Value::Number),
            Some(Key::Name(first)) => first,
        };
        let size = self.sizes.get(self.depth);
        let mut map = Map::with_capacity(size.map_or(0, Cell::get));
        let value = access.next_value_seed(self.below())?;
        let _ = map.insert(first, value);
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(self.below())?;
            match map.entry(key) {
                Entry::Occupied(earlier) if *earlier.get() != value => {
                    return Err(de::Error::custom(format_args!(
                        "object key {:?} appears twice with different values \
                         (the pipeline refuses to pick one)",
                        earlier.key()
                    )));
                }
                Entry::Occupied(_) => {}
                Entry::Vacant(entry) => {
                    let _ = entry.insert(value);
                }
            }
        }
        if let Some(size) = size {
            size.set(map.len());
        }
        Ok(Value::Object(map))
    }
}

/// An object's first key: serde_json's number token, or a name.
enum Key {
    Number,
    Name(String),
}

/// Reads an object's first key without allocating for the number token.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(match v {
            NUMBER_TOKEN => Key::Number,
            name => Key::Name(name.to_owned()),
        })
    }

    fn visit_string<E>(self, v: String) -> Result<Key, E> {
        Ok(match v.as_str() {
            NUMBER_TOKEN => Key::Number,
            _ => Key::Name(v),
        })
    }
}

/// A number's text (what follows serde_json's number token), parsed straight from the
/// borrowed text.
struct NumberText;

impl<'de> DeserializeSeed<'de> for NumberText {
    type Value = Number;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Number, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for NumberText {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number's text")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
        Number::from_str(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_like_serde_json() {
        let text = r#"{"b": [1, -2, 2.5, true, null, "x"], "a": {"c": {}}, "e": []}"#;
        let strict = from_str(text).unwrap();
        assert_eq!(strict, serde_json::from_str::<Value>(text).unwrap());
        // Key order is the document's (serde_json's `preserve_order`).
        let keys: Vec<&String> = strict.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["b", "a", "e"]);
        assert!(from_str("{} x").is_err(), "trailing characters");
        assert!(from_str("").is_err());
    }

    /// Objects at one depth of other sizes than the last (the size it makes room for).
    #[test]
    fn objects_of_changing_sizes_parse_like_serde_json() {
        let text = r#"[{"a": 1, "b": 2, "c": 3}, {"a": 1}, {},
            {"x": {"y": [{"k": 1, "l": 2}, {"k": 2}, {"k": 3, "l": 4, "m": {"n": 5}}]}},
            {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "a2": [1, {"z": null}]}]"#;
        assert_eq!(
            from_str(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        let deep = format!("{}1{}", "{\"k\": [".repeat(20), "]}".repeat(20));
        assert_eq!(
            from_str(&deep).unwrap(),
            serde_json::from_str::<Value>(&deep).unwrap()
        );
    }

    #[test]
    fn a_repeated_key_is_an_error_with_its_position() {
        let err = from_str("{\"id\": 1,\n \"a\": 1, \"a\": 2}").unwrap_err();
        let message = err.to_string();
        assert!(message.contains(r#"key "a" appears twice"#), "{message}");
        assert!(message.contains("line 2"), "{message}");
        let err = from_str(r#"{"data": [{"id": 1}, {"id": 2, "x": {"k": 1, "k": "1"}}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains(r#"key "k""#), "nested: {err}");
        // The same value twice loses nothing: one entry.
        let v = from_str(r#"{"k": {"x": 1}, "j": 0, "k": {"x": 1}}"#).unwrap();
        assert_eq!(v, json!({"k": {"x": 1}, "j": 0}));
        // The same key in different objects is fine.
        assert!(from_str(r#"[{"a": 1}, {"a": 2, "b": {"a": 3}}]"#).is_ok());
    }

    #[test]
    fn bytes_that_are_not_utf8_fail_with_their_position() {
        let err = from_slice(b"{\"id\": 1,\n \"a\": \"\xff\"}").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let text = r#"{"a": "h\u00e9llo w\u00f6rld", "b": "你好 🚀"}"#;
        assert_eq!(
            from_slice(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn number_text_survives() {
        let big = "18446744073709551616";
        let v = from_str(&format!(
            r#"{{"n": {big}, "m": -9223372036854775809, "f": 1.50}}"#
        ))
        .unwrap();
        assert_eq!(v["n"].to_string(), big);
        assert_eq!(v["m"].to_string(), "-9223372036854775809");
        assert!(v["n"].as_i64().is_none() && v["n"].as_u64().is_none());
        assert_eq!(v["f"].as_f64(), Some(1.5));
        assert_eq!(from_str("7").unwrap(), json!(7));
        assert_eq!(from_str("-7").unwrap().as_i64(), Some(-7));
    }
}
