//! [`JsonView`]: read access to one JSON value, whether it is a [`serde_json::Value`] or a
//! node of a page parsed flat ([`super::tape::Tape`]). The schema builder and the repeat
//! check read records through it, so a page's records need not become `Value` trees.

use serde_json::Value;

/// What a JSON value is, with its text borrowed. A number is its text as the document
/// wrote it (the workspace builds serde_json with `arbitrary_precision`).
pub enum View<'a, V: JsonView<'a>> {
    Null,
    Bool(bool),
    Number(&'a str),
    String(&'a str),
    Array(V::Items),
    Object(V::Entries),
}

/// A borrowed JSON value. Objects hold each key once, in document order.
pub trait JsonView<'a>: Copy {
    /// A list's items, in order.
    type Items: Iterator<Item = Self> + ExactSizeIterator;
    /// An object's entries, in document order.
    type Entries: Iterator<Item = (&'a str, Self)> + ExactSizeIterator;

    fn view(self) -> View<'a, Self>;

    fn is_null(self) -> bool {
        matches!(self.view(), View::Null)
    }

    fn is_object(self) -> bool {
        matches!(self.view(), View::Object(_))
    }

    /// The value of `key`, if this is an object that has it.
    fn get(self, key: &str) -> Option<Self> {
        match self.view() {
            View::Object(mut entries) => entries.find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Equality as `serde_json::Value`'s: numbers by their text, objects whatever their
    /// key order.
    fn json_eq(self, other: Self) -> bool {
        match (self.view(), other.view()) {
            (View::Null, View::Null) => true,
            (View::Bool(a), View::Bool(b)) => a == b,
            (View::Number(a), View::Number(b)) | (View::String(a), View::String(b)) => a == b,
            (View::Array(a), View::Array(b)) => {
                a.len() == b.len() && a.zip(b).all(|(x, y)| x.json_eq(y))
            }
            (View::Object(a), View::Object(_)) => {
                let len = a.len();
                match other.view() {
                    View::Object(b) if b.len() == len => a
                        .into_iter()
                        .all(|(k, x)| other.get(k).is_some_and(|y| x.json_eq(y))),
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// Appends the value as compact JSON text, byte for byte as `serde_json::to_string`
    /// writes the same `Value`.
    fn write_json(self, out: &mut String) {
        match self.view() {
            View::Null => out.push_str("null"),
            View::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            View::Number(n) => out.push_str(n),
            View::String(s) => write_json_str(s, out),
            View::Array(items) => {
                out.push('[');
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            View::Object(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_str(key, out);
                    out.push(':');
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// The value as compact JSON text (see [`Self::write_json`]).
    fn to_json_string(self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    /// The value as a `serde_json::Value`.
    fn to_value(self) -> Value {
        match self.view() {
            View::Null => Value::Null,
            View::Bool(b) => Value::Bool(b),
            View::Number(n) => n
                .parse::<serde_json::Number>()
                .map_or_else(|_| Value::String(n.to_owned()), Value::Number),
            View::String(s) => Value::String(s.to_owned()),
            View::Array(items) => Value::Array(items.map(JsonView::to_value).collect()),
            View::Object(entries) => {
                let mut map = serde_json::Map::with_capacity(entries.len());
                for (k, v) in entries {
                    let _ = map.insert(k.to_owned(), v.to_value());
                }
                Value::Object(map)
            }
        }
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it: `"` and `\`, and the control
/// characters below U+0020 (`\b`, `\t`, `\n`, `\f`, `\r`, else `\u00XX`); all else as is.
pub fn write_json_str(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

impl<'a> JsonView<'a> for &'a Value {
    type Items = std::slice::Iter<'a, Value>;
    type Entries = ValueEntries<'a>;

    fn view(self) -> View<'a, Self> {
        match self {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Number(n) => View::Number(n.as_str()),
            Value::String(s) => View::String(s),
            Value::Array(items) => View::Array(items.iter()),
            Value::Object(map) => View::Object(ValueEntries(map.iter())),
        }
    }

    fn get(self, key: &str) -> Option<Self> {
        Value::get(self, key)
    }

    fn json_eq(self, other: Self) -> bool {
        self == other
    }

    fn to_value(self) -> Value {
        self.clone()
    }
}

/// An object's entries with its keys as `&str`.
pub struct ValueEntries<'a>(serde_json::map::Iter<'a>);

impl<'a> Iterator for ValueEntries<'a> {
    type Item = (&'a str, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k.as_str(), v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for ValueEntries<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn written_as_serde_json_writes_it() {
        let values = [
            json!({"a": [1, -2.5, "x\"y\\z\n\t\u{1}\u{7f}é🚀", null, true, false], "b": {}}),
            json!([]),
            json!("\u{8}\u{c}\r\u{1f} "),
            crate::json::from_str(r#"{"n": 18446744073709551616, "f": 1.50, "e": 1E+5}"#).unwrap(),
        ];
        for v in &values {
            assert_eq!(v.to_json_string(), serde_json::to_string(v).unwrap());
            assert_eq!(v.to_value(), *v);
        }
    }

    #[test]
    fn equality_is_serde_json_s() {
        let a = json!({"x": 1, "y": [1, {"z": "a"}]});
        let b = json!({"y": [1, {"z": "a"}], "x": 1});
        assert!(a.json_eq(&b));
        assert!(!a.json_eq(&json!({"x": 1})));
        assert!(!json!([1, 2]).json_eq(&json!([2, 1])));
    }
}
