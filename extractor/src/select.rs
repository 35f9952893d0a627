//! JSONPath selection as dlt uses it: `data_selector` (where the records are) and the
//! paginators' `*_path` keys (`total_path`). dlt accepts `data`, `$.data` and `a.b[*]`;
//! a path without the leading `$` is taken relative to the response's root.

use serde_json::Value;
use serde_json_path::JsonPath;

/// A compiled selector. Plain dotted paths (`data`, `$.a.b`) take the value out of the
/// response without copying it; anything else goes through a full JSONPath query.
#[derive(Debug, Clone)]
pub enum Selector {
    Keys(Vec<String>),
    Path(Box<JsonPath>),
}

#[derive(Debug, thiserror::Error)]
#[error("{key}: `{path}` is not a valid JSONPath: {message}")]
pub struct SelectorError {
    pub key: String,
    pub path: String,
    pub message: String,
}

impl Selector {
    /// Compiles `path`; `key` names the config key it came from, for the error message.
    pub fn parse(key: &str, path: &str) -> Result<Self, SelectorError> {
        let trimmed = path.trim();
        let relative = trimmed.strip_prefix("$.").unwrap_or(trimmed);
        let is_plain = !relative.is_empty()
            && relative.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            });
        if is_plain && relative != "$" {
            return Ok(Selector::Keys(
                relative.split('.').map(str::to_owned).collect(),
            ));
        }
        let full = if trimmed.starts_with('$') {
            trimmed.to_owned()
        } else {
            format!("$.{trimmed}")
        };
        JsonPath::parse(&full)
            .map(|p| Selector::Path(Box::new(p)))
            .map_err(|e| SelectorError {
                key: key.to_owned(),
                path: path.to_owned(),
                message: e.to_string(),
            })
    }

    /// The first value the selector finds, borrowed.
    pub fn find<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        match self {
            Selector::Keys(keys) => keys.iter().try_fold(value, |v, k| v.get(k)),
            Selector::Path(path) => path.query(value).first(),
        }
    }

    /// The records the selector finds, taken out of `value` (the rest of the response stays
    /// for the paginator). A single list found is the records; several values found (a
    /// wildcard) are each one record.
    pub fn take_records(&self, value: &mut Value) -> Vec<Value> {
        match self {
            Selector::Keys(keys) => {
                let mut cur = value;
                for k in keys {
                    match cur.get_mut(k) {
                        Some(next) => cur = next,
                        None => return Vec::new(),
                    }
                }
                into_records(cur.take())
            }
            Selector::Path(path) => {
                let found = path.query(value).all();
                match found.as_slice() {
                    [] => Vec::new(),
                    [one] => into_records((*one).clone()),
                    many => many.iter().map(|v| (*v).clone()).collect(),
                }
            }
        }
    }
}

fn into_records(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// dlt's behaviour without a `data_selector`: the response itself when it is a list,
/// else the first top-level list in it (dlt looks for the likely one, such as `data`,
/// `items` or `results`), else the response as one record.
pub fn take_records_auto(value: &mut Value) -> Vec<Value> {
    const LIKELY: [&str; 8] = [
        "data", "items", "results", "records", "entries", "objects", "rows", "values",
    ];
    match value {
        Value::Array(_) => into_records(value.take()),
        Value::Object(map) => {
            let likely = LIKELY
                .iter()
                .find(|k| matches!(map.get(**k), Some(Value::Array(_))));
            let key = match likely {
                Some(k) => Some((*k).to_owned()),
                None => map
                    .iter()
                    .find(|(_, v)| v.is_array())
                    .map(|(k, _)| k.clone()),
            };
            match key.and_then(|k| map.get_mut(&k)) {
                Some(list) => into_records(list.take()),
                None => vec![value.clone()],
            }
        }
        Value::Null => Vec::new(),
        other => vec![other.take()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_and_dollar_paths_take_the_list() {
        for path in ["data", "$.data"] {
            let s = Selector::parse("data_selector", path).unwrap();
            assert!(matches!(s, Selector::Keys(_)), "{path}");
            let mut body = json!({"data": [{"id": 1}, {"id": 2}], "total": 2});
            let records = s.take_records(&mut body);
            assert_eq!(records, vec![json!({"id": 1}), json!({"id": 2})]);
            assert_eq!(body["total"], json!(2), "the rest of the response stays");
        }
    }

    #[test]
    fn nested_and_wildcard_paths() {
        let body = json!({"a": {"b": [{"id": 1}, {"id": 2}]}});
        let nested = Selector::parse("k", "a.b").unwrap();
        assert_eq!(nested.take_records(&mut body.clone()).len(), 2);
        let wildcard = Selector::parse("k", "a.b[*]").unwrap();
        assert!(matches!(wildcard, Selector::Path(_)));
        assert_eq!(
            wildcard.take_records(&mut body.clone()),
            vec![json!({"id": 1}), json!({"id": 2})]
        );
    }

    #[test]
    fn missing_path_is_no_records_and_total_is_found() {
        let s = Selector::parse("k", "data").unwrap();
        assert!(s.take_records(&mut json!({"other": []})).is_empty());
        let total = Selector::parse("total_path", "meta.total").unwrap();
        assert_eq!(total.find(&json!({"meta": {"total": 7}})), Some(&json!(7)));
    }

    #[test]
    fn invalid_path_names_the_key() {
        let err = Selector::parse("resources[0].endpoint.data_selector", "$[?(").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("resources[0].endpoint.data_selector: `$[?(`"),
            "{err}"
        );
    }

    #[test]
    fn auto_detection() {
        assert_eq!(take_records_auto(&mut json!([{"id": 1}])).len(), 1);
        assert_eq!(
            take_records_auto(&mut json!({"total": 1, "items": [{"id": 1}]})).len(),
            1
        );
        assert_eq!(
            take_records_auto(&mut json!({"id": 1})),
            vec![json!({"id": 1})]
        );
    }
}
