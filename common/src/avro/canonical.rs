//! The Parsing Canonical Form of an Avro schema, as the specification defines it and Apache
//! Avro's Java `SchemaNormalization` computes it: full names, no namespaces, only the
//! attributes that matter for parsing (`name`, `type`, `fields`, `symbols`, `items`,
//! `values`, `size`, in that order), and a primitive type with attributes (a logical type
//! such as `{"type": "long", "logicalType": "timestamp-micros"}`) reduced to its name.
//!
//! apache-avro 0.22's `Schema::canonical_form` differs there: it keeps `{"type":"long"}` for a
//! logical type on a primitive, and a decimal's `precision` and `scale`, so its fingerprints
//! of such schemas are not the ones other Avro libraries compute (and look schemas up by).

use std::collections::HashSet;

use serde_json::Value as Json;

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of `schema` (its JSON form).
pub(super) fn canonical_form(schema: &Json) -> String {
    let mut out = String::new();
    write(schema, None, &mut HashSet::new(), &mut out);
    out
}

fn quoted(s: &str) -> String {
    Json::String(s.to_owned()).to_string()
}

/// `name` qualified by `namespace` unless it is already a full name.
fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() && !name.contains('.') => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

fn write(schema: &Json, namespace: Option<&str>, seen: &mut HashSet<String>, out: &mut String) {
    match schema {
        Json::String(name) if PRIMITIVES.contains(&name.as_str()) => out.push_str(&quoted(name)),
        // A reference to a named type defined before.
        Json::String(name) => out.push_str(&quoted(&full_name(name, namespace))),
        Json::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(branch, namespace, seen, out);
            }
            out.push(']');
        }
        Json::Object(map) => match map.get("type") {
            Some(Json::String(t)) => match t.as_str() {
                "record" | "error" | "enum" | "fixed" => {
                    let name = map.get("name").and_then(Json::as_str).unwrap_or_default();
                    let own = map.get("namespace").and_then(Json::as_str).or(namespace);
                    let full = full_name(name, own);
                    if !seen.insert(full.clone()) {
                        out.push_str(&quoted(&full));
                        return;
                    }
                    let inner = full.rsplit_once('.').map(|(ns, _)| ns);
                    out.push_str(&format!(
                        "{{\"name\":{},\"type\":{}",
                        quoted(&full),
                        quoted(t)
                    ));
                    match t.as_str() {
                        "enum" => {
                            let symbols: Vec<String> = map
                                .get("symbols")
                                .and_then(Json::as_array)
                                .into_iter()
                                .flatten()
                                .map(|s| quoted(s.as_str().unwrap_or_default()))
                                .collect();
                            out.push_str(&format!(",\"symbols\":[{}]", symbols.join(",")));
                        }
                        "fixed" => {
                            let size = map.get("size").and_then(Json::as_u64).unwrap_or_default();
                            out.push_str(&format!(",\"size\":{size}"));
                        }
                        _ => {
                            out.push_str(",\"fields\":[");
                            let fields = map.get("fields").and_then(Json::as_array);
                            for (i, field) in fields.into_iter().flatten().enumerate() {
                                if i > 0 {
                                    out.push(',');
                                }
                                let name = field.get("name").and_then(Json::as_str);
                                out.push_str(&format!(
                                    "{{\"name\":{},\"type\":",
                                    quoted(name.unwrap_or_default())
                                ));
                                write(&field["type"], inner, seen, out);
                                out.push('}');
                            }
                            out.push(']');
                        }
                    }
                    out.push('}');
                }
                "array" => {
                    out.push_str("{\"type\":\"array\",\"items\":");
                    write(&map["items"], namespace, seen, out);
                    out.push('}');
                }
                "map" => {
                    out.push_str("{\"type\":\"map\",\"values\":");
                    write(&map["values"], namespace, seen, out);
                    out.push('}');
                }
                // A primitive (its logical type and other attributes stripped) or a
                // reference to a named type.
                other => write(&Json::String(other.to_owned()), namespace, seen, out),
            },
            // `{"type": <schema>}`: the inner schema.
            Some(inner) => write(inner, namespace, seen, out),
            None => out.push_str(&schema.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schema with every kind of type, its canonical form and fingerprint as Apache Avro's
    /// Java library 1.12.2 computes them (`SchemaNormalization.toParsingForm`,
    /// `parsingFingerprint64`).
    #[test]
    fn matches_apache_avro_java() {
        let schema: Json = serde_json::from_str(
            r#"{"type":"record","name":"orders","namespace":"rest_pipeline","x-table-name":"orders","doc":"d","fields":[{"name":"id","type":"long"},{"name":"at","type":["null",{"type":"long","logicalType":"timestamp-micros"}],"default":null},{"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},{"name":"tags","type":{"type":"string"},"x-data-type":"json","aliases":["t"]},{"name":"day","type":{"type":"int","logicalType":"date"}},{"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},{"name":"items","type":{"type":"array","items":{"type":"record","name":"other.Item","fields":[{"name":"n","type":"int"},{"name":"next","type":["null","Item"]}]}}},{"name":"m","type":{"type":"map","values":{"type":"fixed","name":"md5","size":16}}},{"name":"again","type":"Kind"},{"name":"u","type":{"type":"string","logicalType":"uuid"}}]}"#,
        )
        .unwrap();
        let java = r#"{"name":"rest_pipeline.orders","type":"record","fields":[{"name":"id","type":"long"},{"name":"at","type":["null","long"]},{"name":"amount","type":"bytes"},{"name":"tags","type":"string"},{"name":"day","type":"int"},{"name":"kind","type":{"name":"rest_pipeline.Kind","type":"enum","symbols":["A","B"]}},{"name":"items","type":{"type":"array","items":{"name":"other.Item","type":"record","fields":[{"name":"n","type":"int"},{"name":"next","type":["null","other.Item"]}]}}},{"name":"m","type":{"type":"map","values":{"name":"rest_pipeline.md5","type":"fixed","size":16}}},{"name":"again","type":"rest_pipeline.Kind"},{"name":"u","type":"string"}]}"#;
        assert_eq!(canonical_form(&schema), java);
        assert_eq!(
            super::super::fingerprint::rabin(java.as_bytes()),
            0x28b5_6ceb_e8dd_44d1
        );
        // apache-avro's serialisation of the parsed schema gives the same form.
        let parsed = apache_avro::Schema::parse(&schema).unwrap();
        assert_eq!(
            canonical_form(&serde_json::to_value(&parsed).unwrap()),
            java
        );
    }
}
