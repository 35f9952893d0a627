//! JSONPath selection as dlt uses it: `data_selector` (where the records are) and the
//! paginators' `*_path` keys (`total_path`). dlt accepts `data`, `$.data` and `a.b[*]`;
//! a path without the leading `$` is taken relative to the response's root.

use common::json::view::{JsonView, View};
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

/// An endpoint's `data_selector`, strict about what it finds: a selector that finds nothing
/// is an error naming it and what the response has (dlt takes it for an empty page, which
/// hides a wrong selector and a 200 answer that is an error); `null` is an empty page only
/// with `allow_null_data` (dlt's choice, with a warning).
#[derive(Debug, Clone)]
pub struct DataSelector {
    /// As written in the config.
    pub text: String,
    selector: Selector,
    /// For a path ending in `[*]` or `.*`: the container it iterates, which must exist.
    container: Option<Selector>,
    pub allow_null: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("data_selector `{selector}` finds nothing in the response: {found}")]
    Missing { selector: String, found: String },
    #[error(
        "data_selector `{selector}` finds null, not a list of records; set \
         endpoint.allow_null_data = true if the API sends null for no records"
    )]
    Null { selector: String },
}

/// How many of a response's keys an error lists.
const KEYS_SHOWN: usize = 20;

impl DataSelector {
    /// Compiles `text`; `key` names the config key it came from, for the error message.
    pub fn parse(key: &str, text: &str, allow_null: bool) -> Result<Self, SelectorError> {
        let selector = Selector::parse(key, text)?;
        let trimmed = text.trim();
        let container = match &selector {
            Selector::Path(_) => trimmed
                .strip_suffix("[*]")
                .or_else(|| trimmed.strip_suffix(".*"))
                .filter(|rest| !rest.is_empty() && *rest != "$")
                .and_then(|rest| Selector::parse(key, rest).ok()),
            Selector::Keys(_) => None,
        };
        Ok(Self {
            text: text.to_owned(),
            selector,
            container,
            allow_null,
        })
    }

    /// The page's records, taken out of `body` (the rest stays for the paginator).
    pub fn take_page(&self, body: &mut Value) -> Result<Vec<Value>, SelectError> {
        let missing = |found: String| SelectError::Missing {
            selector: self.text.clone(),
            found,
        };
        match &self.selector {
            Selector::Keys(keys) => {
                // A missing key or a null found is the same error as for a page read flat.
                if let Some(Err(e)) = self.find_page(&*body) {
                    return Err(e);
                }
                let mut cur = &mut *body;
                for k in keys {
                    match cur.get_mut(k) {
                        Some(next) => cur = next,
                        None => return Ok(Vec::new()),
                    }
                }
                Ok(into_records(cur.take()))
            }
            Selector::Path(path) => {
                let (found, null) = {
                    let nodes = path.query(body).all();
                    (!nodes.is_empty(), matches!(nodes.as_slice(), [Value::Null]))
                };
                if !found {
                    // `items[*]` finds nothing in `{"items": []}` too: empty, not missing.
                    return match &self.container {
                        Some(c) if c.find(body).is_some() => Ok(Vec::new()),
                        Some(_) => Err(missing(describe("the response", &*body))),
                        // A filter may rightly match nothing.
                        None => Ok(Vec::new()),
                    };
                }
                if null && !self.allow_null {
                    return Err(SelectError::Null {
                        selector: self.text.clone(),
                    });
                }
                Ok(self.selector.take_records(body))
            }
        }
    }
}

/// A page's records found in its body, and the value they are taken out of (`None`: the
/// body stays as it is).
pub type Found<V> = (Vec<V>, Option<V>);

impl DataSelector {
    /// [`Self::take_page`] for a body read through a view (a page parsed flat): the records,
    /// and the value they are taken out of (which the paginator then sees as null, as
    /// `take_page` leaves it). `None`: this selector is a full JSONPath query, which needs
    /// the body as a `Value`.
    pub fn find_page<'a, V: JsonView<'a>>(&self, body: V) -> Option<Result<Found<V>, SelectError>> {
        let Selector::Keys(keys) = &self.selector else {
            return None;
        };
        let mut at = body;
        for (i, k) in keys.iter().enumerate() {
            match at.get(k) {
                Some(next) => at = next,
                None => {
                    let place = match i {
                        0 => "the response".to_owned(),
                        _ => format!("`{}`", keys[..i].join(".")),
                    };
                    return Some(Err(SelectError::Missing {
                        selector: self.text.clone(),
                        found: describe(&place, at),
                    }));
                }
            }
        }
        if at.is_null() && !self.allow_null {
            return Some(Err(SelectError::Null {
                selector: self.text.clone(),
            }));
        }
        Some(Ok((records_of(at), Some(at))))
    }
}

/// [`take_records_auto`] for a body read through a view: the records, and the value they
/// are taken out of (`None`: the body stays as it is).
pub fn find_records_auto<'a, V: JsonView<'a>>(body: V) -> Found<V> {
    match body.view() {
        View::Array(_) => (records_of(body), Some(body)),
        View::Object(_) => {
            let mut lists = Vec::new();
            find_lists_in(body, 0, &mut lists);
            let chosen = lists
                .iter()
                .find(|(key, _)| RECORD_KEYS.contains(key))
                .or(lists.first());
            match chosen {
                Some(&(_, list)) => (records_of(list), Some(list)),
                None => (vec![body], None),
            }
        }
        View::Null => (Vec::new(), None),
        _ => (vec![body], Some(body)),
    }
}

/// The lists in an object, depth first in document order, down to three keys, each with
/// its key ([`find_lists`] through a view).
fn find_lists_in<'a, V: JsonView<'a>>(object: V, depth: usize, out: &mut Vec<(&'a str, V)>) {
    if depth > 2 {
        return;
    }
    let View::Object(entries) = object.view() else {
        return;
    };
    for (key, value) in entries {
        match value.view() {
            View::Array(_) => out.push((key, value)),
            View::Object(_) => find_lists_in(value, depth + 1, out),
            _ => {}
        }
    }
}

/// [`into_records`] through a view.
fn records_of<'a, V: JsonView<'a>>(value: V) -> Vec<V> {
    match value.view() {
        View::Array(items) => items.collect(),
        View::Null => Vec::new(),
        _ => vec![value],
    }
}

/// What `value` (found at `place`) holds, for an error: an object's keys, else its type.
fn describe<'a, V: JsonView<'a>>(place: &str, value: V) -> String {
    match value.view() {
        View::Object(map) if map.len() == 0 => format!("{place} is an empty object"),
        View::Object(map) => {
            let len = map.len();
            let mut keys: Vec<String> = map
                .take(KEYS_SHOWN)
                .map(|(k, _)| format!("`{k}`"))
                .collect();
            if len > KEYS_SHOWN {
                keys.push(format!("and {} more", len - KEYS_SHOWN));
            }
            format!("{place} has the keys {}", keys.join(", "))
        }
        View::Array(items) => {
            format!("{place} is a list of {} values, not an object", items.len())
        }
        View::String(_) => format!("{place} is a string, not an object"),
        View::Number(_) => format!("{place} is a number, not an object"),
        View::Bool(_) => format!("{place} is a boolean, not an object"),
        View::Null => format!("{place} is null"),
    }
}

fn into_records(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// The keys dlt takes for a list of records first (`find_response_page_data`).
const RECORD_KEYS: [&str; 11] = [
    "data", "items", "results", "entries", "records", "rows", "entities", "payload", "content",
    "objects", "values",
];

/// dlt's behaviour without a `data_selector` (`find_response_page_data` in dlt's
/// `rest_client/detector.py`): the response itself when it is a list; in an object, the
/// lists at most three keys deep, in document order (depth first), of which the first whose
/// key is one of dlt's record keys (`data`, `items`, `results`, ...) or else the first;
/// without a list, the response as one record.
pub fn take_records_auto(value: &mut Value) -> Vec<Value> {
    match value {
        Value::Array(_) => into_records(value.take()),
        Value::Object(map) => {
            let mut lists = Vec::new();
            find_lists(map, &mut Vec::new(), &mut lists);
            let chosen = lists
                .iter()
                .find(|path| {
                    path.last()
                        .is_some_and(|k| RECORD_KEYS.contains(&k.as_str()))
                })
                .or(lists.first());
            let list = chosen.and_then(|path| {
                path.iter()
                    .try_fold(&mut *value, |v, key| v.get_mut(key.as_str()))
            });
            match list {
                Some(list) => into_records(list.take()),
                None => vec![value.clone()],
            }
        }
        Value::Null => Vec::new(),
        other => vec![other.take()],
    }
}

/// The key paths of the lists in `map`, depth first in document order, down to three keys
/// (dlt's `find_all_lists`).
fn find_lists(
    map: &serde_json::Map<String, Value>,
    path: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    if path.len() > 2 {
        return;
    }
    for (key, value) in map {
        match value {
            Value::Array(_) => {
                let mut found = path.clone();
                found.push(key.clone());
                out.push(found);
            }
            Value::Object(inner) => {
                path.push(key.clone());
                find_lists(inner, path, out);
                let _ = path.pop();
            }
            _ => {}
        }
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
    fn a_data_selector_that_finds_nothing_names_what_the_response_has() {
        let s = DataSelector::parse("k", "data", false).unwrap();
        let e = s
            .take_page(&mut json!({"results": [{"id": 1}], "count": 1}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "data_selector `data` finds nothing in the response: the response has the keys \
             `results`, `count`"
        );
        let nested = DataSelector::parse("k", "a.b", false).unwrap();
        let e = nested
            .take_page(&mut json!({"a": {"c": 1}}))
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("`a` has the keys `c`"), "{e}");
        let e = s.take_page(&mut json!([1, 2])).unwrap_err().to_string();
        assert!(
            e.ends_with("the response is a list of 2 values, not an object"),
            "{e}"
        );
        // An empty list is an empty page.
        assert!(s.take_page(&mut json!({"data": []})).unwrap().is_empty());
        // Many keys are cut short.
        let many: serde_json::Map<String, Value> =
            (0..30).map(|i| (format!("k{i}"), json!(i))).collect();
        let e = s
            .take_page(&mut Value::Object(many))
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("`k19`, and 10 more"), "{e}");
    }

    #[test]
    fn null_is_an_empty_page_only_when_allowed() {
        let strict = DataSelector::parse("k", "data", false).unwrap();
        let e = strict.take_page(&mut json!({"data": null})).unwrap_err();
        assert!(e.to_string().contains("allow_null_data"), "{e}");
        let lenient = DataSelector::parse("k", "data", true).unwrap();
        assert!(
            lenient
                .take_page(&mut json!({"data": null}))
                .unwrap()
                .is_empty()
        );
        // A missing key stays an error either way.
        assert!(lenient.take_page(&mut json!({"other": 1})).is_err());
        let path = DataSelector::parse("k", "$.data", false).unwrap();
        assert!(path.take_page(&mut json!({"data": null})).is_err());
    }

    #[test]
    fn wildcard_paths_tell_an_empty_list_from_a_missing_one() {
        let s = DataSelector::parse("k", "$.items[*]", false).unwrap();
        assert!(s.take_page(&mut json!({"items": []})).unwrap().is_empty());
        assert_eq!(
            s.take_page(&mut json!({"items": [{"id": 1}]})).unwrap(),
            vec![json!({"id": 1})]
        );
        let e = s.take_page(&mut json!({"results": []})).unwrap_err();
        assert!(e.to_string().contains("`results`"), "{e}");
        // A filter may rightly match nothing.
        let filter = DataSelector::parse("k", "$.items[?@.ok == true]", false).unwrap();
        assert!(
            filter
                .take_page(&mut json!({"items": [{"ok": false}]}))
                .unwrap()
                .is_empty()
        );
        let list = DataSelector::parse("k", "$.data", false).unwrap();
        assert!(list.take_page(&mut json!({"data": []})).unwrap().is_empty());
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
        // As dlt 1.31.0's detector: nested lists count, a record key wins over the first
        // list, document order decides between record keys, three keys deep at most.
        let records = |body: Value| take_records_auto(&mut body.clone());
        assert_eq!(
            records(json!({"meta": {"total": 2}, "response": {"entries": [{"id": 1}, {"id": 2}]}})),
            vec![json!({"id": 1}), json!({"id": 2})]
        );
        assert_eq!(
            records(json!({"tags": ["a"], "payload": [{"id": 1}]})),
            vec![json!({"id": 1})]
        );
        assert_eq!(
            records(json!({"results": [{"id": 1}], "data": [{"id": 2}]})),
            vec![json!({"id": 1})]
        );
        assert_eq!(
            records(json!({"a": {"b": {"c": [{"id": 1}]}}})),
            vec![json!({"id": 1})]
        );
        let too_deep = json!({"a": {"b": {"c": {"d": [{"id": 1}]}}}});
        assert_eq!(records(too_deep.clone()), vec![too_deep]);
        assert_eq!(
            records(json!({"z_first": [1], "a_second": [2]})),
            vec![json!(1)],
            "document order, not the keys' order"
        );
    }

    /// The records and the rest of the body found in a page parsed flat are those
    /// `take_page` and `take_records_auto` take out of the same page as a `Value`.
    #[test]
    fn a_page_read_flat_gives_the_same_records_and_rest() {
        use common::json::tape::{Tape, TapeRef};
        let bodies = [
            r#"{"data": [{"id": 1}, {"id": 2}], "total": 2}"#,
            r#"{"data": [], "next": "x"}"#,
            r#"{"data": null}"#,
            r#"{"data": {"id": 1}}"#,
            r#"{"data": 5}"#,
            r#"{"other": [1]}"#,
            r#"{"a": {"b": [{"id": 1}], "c": 1}, "data": [{"id": 2}]}"#,
            r#"{"meta": {"page": {"items": [{"id": 3}]}}, "list": [1]}"#,
            r#"{"a": {"b": {"c": {"d": [1]}}}}"#,
            r#"{"id": 1, "name": "x"}"#,
            r#"[{"id": 1}, {"id": 2}]"#,
            r#"[]"#,
            "null",
            "7",
            r#""text""#,
            "{}",
        ];
        let selectors = ["data", "$.data", "a.b", "meta.page.items"];
        for body in bodies {
            let tape = Tape::parse(body.as_bytes().to_vec()).unwrap();
            let ids = |records: Vec<TapeRef<'_>>| -> Vec<Value> {
                records.into_iter().map(|r| r.to_value()).collect()
            };
            for text in selectors {
                for allow_null in [false, true] {
                    let selector = DataSelector::parse("k", text, allow_null).unwrap();
                    let mut value = common::json::from_str(body).unwrap();
                    let expected = selector.take_page(&mut value);
                    let found = selector.find_page(tape.root()).expect("a plain path");
                    match (expected, found) {
                        (Ok(records), Ok((flat, taken))) => {
                            assert_eq!(ids(flat), records, "{text} in {body}");
                            assert_eq!(
                                tape.to_value_without(taken.map(TapeRef::id)),
                                value,
                                "{text} in {body}: the rest"
                            );
                        }
                        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                        (a, b) => {
                            panic!("{text} in {body}: {:?} against {:?}", a.is_ok(), b.is_ok())
                        }
                    }
                }
            }
            let mut value = common::json::from_str(body).unwrap();
            let records = take_records_auto(&mut value);
            let (flat, taken) = find_records_auto(tape.root());
            assert_eq!(ids(flat), records, "auto in {body}");
            assert_eq!(
                tape.to_value_without(taken.map(TapeRef::id)),
                value,
                "auto in {body}"
            );
        }
        let full = DataSelector::parse("k", "$.items[*]", false).unwrap();
        let tape = Tape::parse(br#"{"items": [1]}"#.to_vec()).unwrap();
        assert!(
            full.find_page(tape.root()).is_none(),
            "a full query needs a Value"
        );
    }
}
