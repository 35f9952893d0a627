//! dlt's placeholders filled for a request plan, as dlt fills them (`expand_placeholders`
//! in dlt's `rest_api/config_setup.py`): in the path, every param and header, and the JSON
//! body (its keys too, at any depth), `{incremental.start_value}` and its kin from the run's
//! incremental, `{resources.<parent>.<field>}` from the parent record, `{{`/`}}` as single
//! braces. In the JSON body a string that is exactly one placeholder becomes the value
//! itself, keeping its type (`{"since": "{incremental.start_value}"}` sends
//! `{"since": 5}` for a numeric cursor, `null` without a value); anywhere else a value
//! becomes text, percent-escaped in the path. A param or header whose incremental
//! placeholder has no value is not sent. Every plan is filled once before its first request (a child's once
//! per parent record), also without placeholders, for the escaped braces.

use common::config::Incremental;
use common::cursor::cursor_text;
use common::template::{
    IncrementalValue, TemplatePart, parse_template, path_escape, single_placeholder,
};
use serde_json::{Map, Value};

use crate::client::DataBody;
use crate::from_config::{EndpointPlan, param_text};

/// The values of a resource's incremental for one run: what its placeholders and its
/// `start_param`/`end_param` send.
#[derive(Debug, Clone, PartialEq)]
pub struct IncrementalValues {
    start: Option<Value>,
    end: Option<Value>,
    initial: Option<Value>,
    start_param: Option<String>,
    end_param: Option<String>,
}

impl IncrementalValues {
    /// `inc`'s values for a run that starts at `start`.
    pub fn new(inc: &Incremental, start: Option<&Value>) -> Self {
        Self {
            start: start.cloned(),
            end: inc.end_value.clone(),
            initial: inc.initial_value.clone(),
            start_param: inc.start_param.clone(),
            end_param: inc.end_param.clone(),
        }
    }

    fn get(&self, value: IncrementalValue) -> Option<&Value> {
        match value {
            // dlt's `last_value` is the start value too before the run's first record; on a
            // dependent resource dlt's moves as records come (docs/config.md).
            IncrementalValue::StartValue | IncrementalValue::LastValue => self.start.as_ref(),
            IncrementalValue::EndValue => self.end.as_ref(),
            IncrementalValue::InitialValue => self.initial.as_ref(),
        }
    }
}

/// Why a plan could not be filled. The config's checks leave only the parent record's
/// problems (`Missing`, `BadValue`) to run time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FillError {
    #[error("{0}")]
    Template(String),
    /// The parent record has nothing at `field`.
    #[error("has no `{field}`, which the {place} needs")]
    Missing { field: String, place: String },
    /// The parent record's value at `field` cannot go where the placeholder is.
    #[error("has {found} in `{field}`, which cannot fill the {place}")]
    BadValue {
        field: String,
        place: String,
        found: String,
    },
    /// A `{resources.…}` placeholder in a resource paged without a parent record.
    #[error("the {place} has a `{{resources.…}}` placeholder but there is no parent record")]
    NoParent { place: String },
    /// An incremental placeholder where text must be sent, without a value.
    #[error("the {place} needs `{placeholder}`, which has no value in this run")]
    NoValue {
        placeholder: &'static str,
        place: String,
    },
}

/// What fills the placeholders of one request plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct Values<'a> {
    /// The run's incremental values, if the resource has an incremental.
    pub incremental: Option<&'a IncrementalValues>,
    /// The parent record, for a dependent resource.
    pub parent: Option<&'a Value>,
}

impl Values<'_> {
    /// Fills `plan`'s path, params and JSON body, then sets the incremental's
    /// `start_param`/`end_param` (replacing a param of the same name).
    pub fn fill_plan(&self, plan: &mut EndpointPlan) -> Result<(), FillError> {
        plan.path = self.fill_path(&plan.path)?;
        let mut params = Vec::with_capacity(plan.params.len());
        for (name, value) in std::mem::take(&mut plan.params) {
            if let Some(value) = self.fill_param(&name, &value)? {
                params.push((name, value));
            }
        }
        if let Some(inc) = self.incremental {
            for (param, value) in [(&inc.start_param, &inc.start), (&inc.end_param, &inc.end)] {
                if let (Some(param), Some(value)) = (param, value) {
                    params.retain(|(k, _)| k != param);
                    params.push((param.clone(), cursor_text(value)));
                }
            }
        }
        plan.params = params;
        let mut headers = Vec::with_capacity(plan.headers.len());
        for (name, value) in std::mem::take(&mut plan.headers) {
            let place = format!("header `{name}`");
            if let Some(value) = self.fill_text(&place, &value)? {
                headers.push((name, value));
            }
        }
        plan.headers = headers;
        plan.data = match plan.data.take() {
            Some(DataBody::Form(fields)) => {
                let mut filled = Vec::with_capacity(fields.len());
                for (name, value) in fields {
                    let place = format!("form field `{name}`");
                    let name = self
                        .json_text(&parse_template(&name).map_err(FillError::Template)?, &place)?;
                    if let Some(value) = self.fill_text(&place, &value)? {
                        filled.push((name, value));
                    }
                }
                Some(DataBody::Form(filled))
            }
            Some(DataBody::Raw(text)) => {
                let parts = parse_template(&text).map_err(FillError::Template)?;
                Some(DataBody::Raw(self.json_text(&parts, "body (data)")?))
            }
            None => None,
        };
        if let Some(json) = plan.json.take() {
            let filled = self.fill_json(&json, "JSON body")?;
            plan.set_json(Some(filled));
        }
        Ok(())
    }

    fn fill_path(&self, path: &str) -> Result<String, FillError> {
        let parts = parse_template(path).map_err(FillError::Template)?;
        let mut out = String::with_capacity(path.len());
        for part in &parts {
            match part {
                TemplatePart::Text(text) => out.push_str(text),
                TemplatePart::Parent { field, .. } => {
                    let text = self.parent_text(field, "path")?;
                    if text.is_empty() || text == "." || text == ".." {
                        return Err(FillError::BadValue {
                            field: field.join("."),
                            place: "path".into(),
                            found: format!("`{text}` (it would change the path)"),
                        });
                    }
                    out.push_str(&path_escape(&text));
                }
                TemplatePart::Incremental(value) => {
                    let text = self.incremental_text(*value, "path")?;
                    out.push_str(&path_escape(&text));
                }
            }
        }
        Ok(out)
    }

    /// The param's value, or `None` when an incremental placeholder in it has no value.
    fn fill_param(&self, name: &str, value: &str) -> Result<Option<String>, FillError> {
        self.fill_text(&format!("param `{name}`"), value)
    }

    /// A param's or header's value (`place` names it), or `None` when an incremental
    /// placeholder in it has no value.
    fn fill_text(&self, place: &str, value: &str) -> Result<Option<String>, FillError> {
        let parts = parse_template(value).map_err(FillError::Template)?;
        let mut out = String::with_capacity(value.len());
        for part in &parts {
            match part {
                TemplatePart::Text(text) => out.push_str(text),
                TemplatePart::Parent { field, .. } => {
                    out.push_str(&self.parent_text(field, place)?);
                }
                TemplatePart::Incremental(value) => {
                    match self.incremental.and_then(|inc| inc.get(*value)) {
                        Some(v) => out.push_str(&cursor_text(v)),
                        None => return Ok(None),
                    }
                }
            }
        }
        Ok(Some(out))
    }

    fn fill_json(&self, json: &Value, place: &str) -> Result<Value, FillError> {
        Ok(match json {
            Value::String(text) => {
                let parts = parse_template(text).map_err(FillError::Template)?;
                match single_placeholder(&parts) {
                    Some(TemplatePart::Incremental(value)) => self
                        .incremental
                        .and_then(|inc| inc.get(*value))
                        .cloned()
                        .unwrap_or(Value::Null),
                    Some(TemplatePart::Parent { field, .. }) => {
                        self.parent_value(field, place)?.clone()
                    }
                    _ => Value::String(self.json_text(&parts, place)?),
                }
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.fill_json(item, place))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut filled = Map::with_capacity(map.len());
                for (key, value) in map {
                    let key_parts = parse_template(key).map_err(FillError::Template)?;
                    let _ = filled.insert(
                        self.json_text(&key_parts, place)?,
                        self.fill_json(value, place)?,
                    );
                }
                Value::Object(filled)
            }
            other => other.clone(),
        })
    }

    /// A JSON string (or key) with its placeholders' values as text.
    fn json_text(&self, parts: &[TemplatePart], place: &str) -> Result<String, FillError> {
        let mut out = String::new();
        for part in parts {
            match part {
                TemplatePart::Text(text) => out.push_str(text),
                TemplatePart::Parent { field, .. } => {
                    out.push_str(&self.parent_text(field, place)?);
                }
                TemplatePart::Incremental(value) => {
                    out.push_str(&self.incremental_text(*value, place)?);
                }
            }
        }
        Ok(out)
    }

    fn incremental_text(&self, value: IncrementalValue, place: &str) -> Result<String, FillError> {
        self.incremental
            .and_then(|inc| inc.get(value))
            .map(cursor_text)
            .ok_or_else(|| FillError::NoValue {
                placeholder: value.placeholder(),
                place: place.to_owned(),
            })
    }

    fn parent_value(&self, field: &[String], place: &str) -> Result<&Value, FillError> {
        let Some(record) = self.parent else {
            return Err(FillError::NoParent {
                place: place.to_owned(),
            });
        };
        field
            .iter()
            .try_fold(record, |v, key| v.get(key))
            .ok_or_else(|| FillError::Missing {
                field: field.join("."),
                place: place.to_owned(),
            })
    }

    /// The parent's value as text: a string, number or boolean (`True`/`False`, as dlt's
    /// `str.format` writes it).
    fn parent_text(&self, field: &[String], place: &str) -> Result<String, FillError> {
        match self.parent_value(field, place)? {
            v @ (Value::String(_) | Value::Number(_) | Value::Bool(_)) => Ok(param_text(v)),
            other => Err(FillError::BadValue {
                field: field.join("."),
                place: place.to_owned(),
                found: match other {
                    Value::Null => "null",
                    Value::Object(_) => "an object",
                    _ => "a list",
                }
                .to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Method;
    use crate::jsonpath::Selector;
    use crate::paginate::cursor::CursorTarget;
    use crate::paginate::{CursorPaginator, NextRequest, Paginator};
    use serde_json::json;

    fn plan(path: &str, params: &[(&str, &str)], json: Option<Value>) -> EndpointPlan {
        EndpointPlan {
            method: Method::Post,
            path: path.into(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            json,
            headers: Vec::new(),
            data: None,
            selector: None,
            paginator: Paginator::SinglePage,
            response_actions: Vec::new(),
        }
    }

    fn inc(start_param: Option<&str>, end: Option<Value>) -> Incremental {
        Incremental {
            start_param: start_param.map(str::to_owned),
            end_param: None,
            cursor_path: "updated".into(),
            initial_value: Some(json!(4)),
            end_value: end,
            options: common::config::IncrementalOptions::default(),
        }
    }

    #[test]
    fn the_json_body_is_filled_as_dlt_fills_it() {
        // What dlt 1.31.0 sent for this body with initial_value 4 (then 8 on the second
        // run): {"since": 4, "q": "updated>4", "init": 4, "end": null, "lit": "{x}",
        //  "nested": {"a": [4, 3]}, "4": "key"}.
        let body = json!({
            "since": "{incremental.start_value}",
            "q": "updated>{incremental.start_value}",
            "init": "{incremental.initial_value}",
            "end": "{incremental.end_value}",
            "lit": "{{x}}",
            "nested": {"a": ["{incremental.last_value}", 3]},
            "{incremental.start_value}": "key",
        });
        for (start, expected) in [
            (
                json!(4),
                json!({"since": 4, "q": "updated>4", "init": 4, "end": null, "lit": "{x}",
                       "nested": {"a": [4, 3]}, "4": "key"}),
            ),
            (
                json!(8),
                json!({"since": 8, "q": "updated>8", "init": 4, "end": null, "lit": "{x}",
                       "nested": {"a": [8, 3]}, "8": "key"}),
            ),
        ] {
            let values = IncrementalValues::new(&inc(None, None), Some(&start));
            let mut p = plan("/search", &[], Some(body.clone()));
            Values {
                incremental: Some(&values),
                parent: None,
            }
            .fill_plan(&mut p)
            .unwrap();
            assert_eq!(p.json, Some(expected));
        }
        // A string cursor stays a string.
        let values = IncrementalValues::new(&inc(None, None), Some(&json!("2024-05-01")));
        let mut p = plan(
            "/s",
            &[],
            Some(json!({"since": "{incremental.start_value}"})),
        );
        Values {
            incremental: Some(&values),
            parent: None,
        }
        .fill_plan(&mut p)
        .unwrap();
        assert_eq!(p.json, Some(json!({"since": "2024-05-01"})));
    }

    #[test]
    fn parent_values_fill_path_params_and_body() {
        let record = json!({"id": 7, "meta": {"key": "a b/c", "tags": ["x"]}, "name": "n"});
        let values = IncrementalValues::new(&inc(Some("since"), Some(json!(9))), Some(&json!(5)));
        let mut p = plan(
            "/p/{resources.parents.meta.key}/c/{incremental.start_value}",
            &[
                ("q", "{resources.parents.name}>{incremental.start_value}"),
                ("to", "{incremental.end_value}"),
                ("lit", "{{}}"),
            ],
            Some(json!({
                "id": "{resources.parents.id}",
                "tags": "{resources.parents.meta.tags}",
                "label": "#{resources.parents.id}",
            })),
        );
        p.headers = vec![
            ("X-Parent".into(), "{resources.parents.id}".into()),
            ("X-Since".into(), "since {incremental.start_value}".into()),
            ("X-Initial".into(), "{incremental.initial_value}".into()),
        ];
        Values {
            incremental: Some(&values),
            parent: Some(&record),
        }
        .fill_plan(&mut p)
        .unwrap();
        assert_eq!(p.path, "/p/a%20b%2Fc/c/5");
        assert_eq!(
            p.headers,
            [
                ("X-Parent".to_owned(), "7".to_owned()),
                ("X-Since".to_owned(), "since 5".to_owned()),
                ("X-Initial".to_owned(), "4".to_owned()),
            ]
        );
        assert_eq!(
            p.params,
            [
                ("q".to_owned(), "n>5".to_owned()),
                ("to".to_owned(), "9".to_owned()),
                ("lit".to_owned(), "{}".to_owned()),
                ("since".to_owned(), "5".to_owned()),
            ]
        );
        assert_eq!(p.json, Some(json!({"id": 7, "tags": ["x"], "label": "#7"})));
        // Problems of the parent record.
        let fill = |path: &str| {
            let mut p = plan(path, &[], None);
            Values {
                incremental: None,
                parent: Some(&record),
            }
            .fill_plan(&mut p)
        };
        assert_eq!(
            fill("/x/{resources.parents.nope}"),
            Err(FillError::Missing {
                field: "nope".into(),
                place: "path".into()
            })
        );
        assert!(matches!(
            fill("/x/{resources.parents.meta}"),
            Err(FillError::BadValue { .. })
        ));
    }

    #[test]
    fn a_param_without_its_value_is_not_sent() {
        let values = IncrementalValues::new(&inc(Some("since"), None), None);
        let mut p = plan(
            "/x",
            &[
                ("q", "updated>{incremental.start_value}"),
                ("to", "{incremental.end_value}"),
                ("since", "overridden only when there is a start"),
                ("limit", "5"),
            ],
            Some(json!({"since": "{incremental.start_value}"})),
        );
        Values {
            incremental: Some(&values),
            parent: None,
        }
        .fill_plan(&mut p)
        .unwrap();
        assert_eq!(
            p.params,
            [
                (
                    "since".to_owned(),
                    "overridden only when there is a start".to_owned()
                ),
                ("limit".to_owned(), "5".to_owned())
            ]
        );
        assert_eq!(p.json, Some(json!({"since": null})));
        // In the path a value is needed.
        let mut p = plan("/x/{incremental.start_value}", &[], None);
        assert!(matches!(
            Values {
                incremental: Some(&values),
                parent: None
            }
            .fill_plan(&mut p),
            Err(FillError::NoValue { .. })
        ));
    }

    #[test]
    fn a_cursor_paginator_pages_the_filled_body() {
        let values = IncrementalValues::new(&inc(None, None), Some(&json!(6)));
        let mut p = plan(
            "/search",
            &[],
            Some(json!({"since": "{incremental.start_value}"})),
        );
        p.paginator = Paginator::Cursor(CursorPaginator::new(
            (
                "next".into(),
                Selector::parse("cursor_path", "next").unwrap(),
            ),
            CursorTarget::Body {
                path: vec!["page".into()],
                body: p.json.clone(),
            },
        ));
        Values {
            incremental: Some(&values),
            parent: None,
        }
        .fill_plan(&mut p)
        .unwrap();
        let Paginator::Cursor(c) = &mut p.paginator else {
            unreachable!()
        };
        assert_eq!(
            c.next(&json!({"next": "c2"}), 1).unwrap(),
            Some(NextRequest::Json(json!({"since": 6, "page": "c2"})))
        );
    }
}
