//! dlt's `cursor` paginator (`JSONResponseCursorPaginator`, also `json_response_cursor`):
//! the cursor is in the body at `cursor_path` (default `cursors.next`) and goes back as the
//! query parameter `cursor_param` (default `cursor`) or, with `cursor_body_path`, into the
//! JSON body at that dotted path. It stops when the cursor is missing, `null` or empty.

use serde_json::{Map, Value, json};

use super::{NextRequest, PaginateError, Progress, checkpoint_text, has_more, reference};
use crate::jsonpath::Selector;

#[derive(Debug, Clone)]
pub enum CursorTarget {
    Param(String),
    /// The dotted path's keys, and the endpoint's own JSON body to put the cursor into.
    Body {
        path: Vec<String>,
        body: Option<Value>,
    },
}

#[derive(Debug, Clone)]
pub struct CursorPaginator {
    pub cursor_path: (String, Selector),
    pub target: CursorTarget,
    pub progress: Progress,
    /// dlt's `stop_after_empty_page` (off by default for a cursor).
    pub stop_after_empty_page: bool,
    /// dlt's `has_more_path`: `false` there ends the paging.
    pub has_more_path: Option<(String, Selector)>,
}

impl CursorPaginator {
    pub fn new(cursor_path: (String, Selector), target: CursorTarget) -> Self {
        Self {
            cursor_path,
            target,
            progress: Progress::default(),
            stop_after_empty_page: false,
            has_more_path: None,
        }
    }

    /// The next request after a response whose page held `records` records: dlt's order,
    /// the cursor read, then an empty page ends it (with `stop_after_empty_page`), then
    /// `has_more_path`, then a missing cursor.
    pub fn next(
        &mut self,
        response: &Value,
        records: usize,
    ) -> Result<Option<NextRequest>, PaginateError> {
        let (text, selector) = &self.cursor_path;
        let what = format!("cursor_path `{text}`");
        let cursor = reference(selector.find(response), &what)?;
        if self.stop_after_empty_page && records == 0 {
            return Ok(None);
        }
        if let Some(path) = &self.has_more_path
            && !has_more(response, path)?
        {
            return Ok(None);
        }
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        self.progress.advance("cursor", "cursor", &cursor)?;
        Ok(Some(self.request(cursor)))
    }

    /// The checkpoint: the cursor of the next request (`None` before the first response).
    pub fn checkpoint(&self) -> Option<Value> {
        self.progress.last().map(|c| json!({ "cursor": c }))
    }

    /// The request for a checkpoint's cursor; `None` when it has none.
    pub fn resume(&mut self, checkpoint: &Value) -> Option<NextRequest> {
        let cursor = checkpoint_text(checkpoint, "cursor")?;
        self.progress.restore(cursor);
        Some(self.request(cursor.to_owned()))
    }

    fn request(&self, cursor: String) -> NextRequest {
        match &self.target {
            CursorTarget::Param(name) => NextRequest::Params(vec![(name.clone(), cursor)]),
            CursorTarget::Body { path, body } => {
                let mut body = body.clone().unwrap_or_else(|| Value::Object(Map::new()));
                set_path(&mut body, path, Value::String(cursor));
                NextRequest::Json(body)
            }
        }
    }
}

/// Sets `value` at the dotted `path` in `body`, making objects on the way (a non-object in
/// the way is replaced).
pub fn set_path(body: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = body;
    for key in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(map) = cur else { return };
        cur = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    if let Value::Object(map) = cur {
        let _ = map.insert(last.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn selector(path: &str) -> (String, Selector) {
        (
            path.to_owned(),
            Selector::parse("cursor_path", path).unwrap(),
        )
    }

    #[test]
    fn cursor_as_query_param() {
        let mut p = CursorPaginator::new(
            selector("cursors.next"),
            CursorTarget::Param("cursor".into()),
        );
        assert_eq!(
            p.next(&json!({"cursors": {"next": "abc"}}), 1).unwrap(),
            Some(NextRequest::Params(vec![("cursor".into(), "abc".into())]))
        );
        assert_eq!(
            p.next(&json!({"cursors": {"next": 17}}), 1).unwrap(),
            Some(NextRequest::Params(vec![("cursor".into(), "17".into())]))
        );
    }

    #[test]
    fn stops_when_the_cursor_is_missing_null_or_empty() {
        for body in [
            json!({}),
            json!({"next_cursor": null}),
            json!({"next_cursor": ""}),
        ] {
            let mut p =
                CursorPaginator::new(selector("next_cursor"), CursorTarget::Param("c".into()));
            assert_eq!(p.next(&body, 1).unwrap(), None, "{body}");
        }
    }

    #[test]
    fn cursor_into_the_body_keeps_the_rest() {
        let mut p = CursorPaginator::new(
            selector("next_cursor"),
            CursorTarget::Body {
                path: vec!["page".into(), "cursor".into()],
                body: Some(json!({"limit": 50, "page": {"size": 2}})),
            },
        );
        assert_eq!(
            p.next(&json!({"next_cursor": "c1"}), 1).unwrap(),
            Some(NextRequest::Json(
                json!({"limit": 50, "page": {"size": 2, "cursor": "c1"}})
            ))
        );
        let mut p = CursorPaginator::new(
            selector("next_cursor"),
            CursorTarget::Body {
                path: vec!["cursor".into()],
                body: None,
            },
        );
        assert_eq!(
            p.next(&json!({"next_cursor": "c2"}), 1).unwrap(),
            Some(NextRequest::Json(json!({"cursor": "c2"})))
        );
    }

    #[test]
    fn the_same_cursor_twice_is_an_error() {
        let mut p = CursorPaginator::new(selector("next_cursor"), CursorTarget::Param("c".into()));
        let _ = p.next(&json!({"next_cursor": "c1"}), 1).unwrap();
        let _ = p.next(&json!({"next_cursor": "c2"}), 1).unwrap();
        let e = p.next(&json!({"next_cursor": "c2"}), 1).unwrap_err();
        assert!(e.to_string().contains("same cursor `c2` twice"), "{e}");
    }

    #[test]
    fn checkpoint_and_resume() {
        let target = CursorTarget::Body {
            path: vec!["cursor".into()],
            body: Some(json!({"q": 1})),
        };
        let mut p = CursorPaginator::new(selector("next_cursor"), target.clone());
        assert_eq!(p.checkpoint(), None);
        let next = p.next(&json!({"next_cursor": "c7"}), 1).unwrap();
        assert_eq!(p.checkpoint(), Some(json!({"cursor": "c7"})));
        let mut resumed = CursorPaginator::new(selector("next_cursor"), target);
        assert_eq!(resumed.resume(&json!({"cursor": "c7"})), next);
        // The restored cursor still catches an API that repeats it.
        assert!(resumed.next(&json!({"next_cursor": "c7"}), 1).is_err());
        assert_eq!(resumed.resume(&json!({"offset": 1})), None);
    }

    #[test]
    fn set_path_replaces_non_objects() {
        let mut body = json!({"a": 1});
        set_path(&mut body, &["a".into(), "b".into()], json!("x"));
        assert_eq!(body, json!({"a": {"b": "x"}}));
    }

    #[test]
    fn an_empty_page_or_has_more_false_ends_it_as_in_dlt() {
        let body = json!({"next": "c2", "more": "no"});
        let mut plain = CursorPaginator::new(selector("next"), CursorTarget::Param("c".into()));
        // dlt's default: an empty page with a cursor goes on.
        assert!(plain.next(&body, 0).unwrap().is_some());
        let mut empty = CursorPaginator::new(selector("next"), CursorTarget::Param("c".into()));
        empty.stop_after_empty_page = true;
        assert_eq!(empty.next(&body, 0).unwrap(), None);
        assert!(empty.next(&json!({"next": "c3"}), 2).unwrap().is_some());
        let mut more = CursorPaginator::new(selector("next"), CursorTarget::Param("c".into()));
        more.has_more_path = Some(selector("more"));
        assert_eq!(more.next(&body, 2).unwrap(), None);
        assert!(
            more.next(&json!({"next": "c4", "more": true}), 2)
                .unwrap()
                .is_some()
        );
        let e = more.next(&json!({"next": "c5"}), 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "has_more_path `more` finds nothing in the response"
        );
        let e = more.next(&json!({"next": "c5", "more": 2}), 2).unwrap_err();
        assert!(
            e.to_string().contains("found 2, which is not a boolean"),
            "{e}"
        );
    }
}
