//! `paginator = "auto"`: the paginator is detected from the first response, as dlt does when
//! an endpoint has none. Detection order (dlt's `PaginatorFactory`):
//! 1. a `Link` header with a `rel="next"` link: `header_link`;
//! 2. a key named like `next` (`next`, `next_url`, `links.next`, `next.href`) holding a URL
//!    in the body: `json_link` at that path;
//! 3. a page count (`total_pages`, `totalPages`, `pages`, `page_count`, `num_pages`) in the
//!    body: `page_number` with `page_param = "page"`, counting from the `page` in the
//!    response, else from 1 (the first, unparameterised request taken as page 1). dlt's
//!    detector builds its page-number paginator with `base_page` 0 instead, so on a 1-based
//!    API it asks for page 1 twice and never for the last page (docs/config.md, Differences
//!    from dlt);
//! 4. a cursor key (`next_cursor`, `cursor`, `next_page_token`, `cursors.next`, ...) with a
//!    value: `cursor` with `cursor_param = "cursor"` (not in dlt's detector);
//! 5. otherwise `single_page`.
//!
//! The detected paginator then handles the first response as if it had made it.

use serde_json::{Map, Value};

use super::header_link::find_link;
use super::{
    CursorPaginator, HeaderLinkPaginator, JsonLinkPaginator, NextRequest, PageNumberPaginator,
    PageResponse, PaginateError, Paginator, Place, as_count,
};
use crate::jsonpath::Selector;
use crate::paginate::cursor::CursorTarget;

const TOTAL_PAGES_KEYS: [&str; 6] = [
    "total_pages",
    "totalpages",
    "pages",
    "page_count",
    "pagecount",
    "num_pages",
];
const CURRENT_PAGE_KEYS: [&str; 3] = ["page", "current_page", "currentpage"];
const CURSOR_KEYS: [&str; 7] = [
    "next_cursor",
    "nextcursor",
    "cursor",
    "next_page_token",
    "nextpagetoken",
    "next_token",
    "nexttoken",
];
/// How deep into nested objects detection looks (`meta.pagination.next` is depth 3).
const MAX_DEPTH: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct AutoPaginator {
    pub detected: Option<Box<Paginator>>,
}

impl AutoPaginator {
    pub fn next(
        &mut self,
        response: &PageResponse<'_>,
    ) -> Result<Option<NextRequest>, PaginateError> {
        let paginator = match &mut self.detected {
            Some(p) => p,
            None => {
                let p = detect(response);
                tracing::info!(paginator = p.kind(), "paginator detected");
                self.detected.insert(Box::new(p))
            }
        };
        paginator.next(response)
    }
}

/// The paginator the first response suggests.
pub fn detect(response: &PageResponse<'_>) -> Paginator {
    if find_link(response.headers, "next").is_some() {
        return Paginator::HeaderLink(HeaderLinkPaginator::new("next".into()));
    }
    let Value::Object(body) = response.body else {
        return Paginator::SinglePage;
    };
    if let Some(path) = find_path(body, &is_next_link, &[], MAX_DEPTH) {
        return Paginator::JsonLink(JsonLinkPaginator::new(selector(path)));
    }
    let is_total_pages = |key: &str, value: &Value, _: &[String]| {
        TOTAL_PAGES_KEYS.contains(&key.to_ascii_lowercase().as_str()) && as_count(value).is_some()
    };
    if let Some(path) = find_path(body, &is_total_pages, &[], MAX_DEPTH) {
        let current = current_page(body, &path[..path.len() - 1]);
        let base_page = if current == Some(0) { 0 } else { 1 };
        return Paginator::PageNumber(PageNumberPaginator {
            base_page,
            page: current.unwrap_or(base_page),
            page_at: Place::Param("page".into()),
            total_path: Some(selector(path)),
            maximum_page: None,
            stop_after_empty_page: true,
            has_more_path: None,
        });
    }
    if let Some(path) = find_path(body, &is_cursor, &[], MAX_DEPTH) {
        return Paginator::Cursor(CursorPaginator::new(
            selector(path),
            CursorTarget::Param("cursor".into()),
        ));
    }
    Paginator::SinglePage
}

fn selector(path: Vec<String>) -> (String, Selector) {
    (path.join("."), Selector::Keys(path))
}

/// A value that looks like a link to a page: an absolute http(s) URL, or a path or query
/// relative to the request.
fn is_link(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        s.starts_with("http://")
            || s.starts_with("https://")
            || s.starts_with('/')
            || s.starts_with('?')
    })
}

fn is_next_link(key: &str, value: &Value, parents: &[String]) -> bool {
    let named_next = |k: &str| k.to_ascii_lowercase().contains("next");
    let link_key = |k: &str| matches!(k.to_ascii_lowercase().as_str(), "href" | "url");
    is_link(value)
        && (named_next(key) || (link_key(key) && parents.last().is_some_and(|p| named_next(p))))
}

fn is_cursor(key: &str, value: &Value, parents: &[String]) -> bool {
    let has_value = match value {
        Value::String(s) => !s.is_empty(),
        Value::Number(_) => true,
        _ => false,
    };
    let key = key.to_ascii_lowercase();
    let under_cursors = parents
        .last()
        .is_some_and(|p| p.to_ascii_lowercase().contains("cursor"));
    has_value && (CURSOR_KEYS.contains(&key.as_str()) || (under_cursors && key == "next"))
}

/// The path of the first entry `matches` accepts, breadth first (a top-level key wins over
/// a nested one), not looking into lists (the records).
fn find_path(
    map: &Map<String, Value>,
    matches: &dyn Fn(&str, &Value, &[String]) -> bool,
    parents: &[String],
    depth: usize,
) -> Option<Vec<String>> {
    for (key, value) in map {
        if matches(key, value, parents) {
            let mut path = parents.to_vec();
            path.push(key.clone());
            return Some(path);
        }
    }
    if depth <= 1 {
        return None;
    }
    map.iter().find_map(|(key, value)| {
        let Value::Object(inner) = value else {
            return None;
        };
        let mut path = parents.to_vec();
        path.push(key.clone());
        find_path(inner, matches, &path, depth - 1)
    })
}

/// The current page number next to the page count (`{"page": 2, "total_pages": 9}`).
fn current_page(body: &Map<String, Value>, parent: &[String]) -> Option<u64> {
    let mut map = body;
    for key in parent {
        map = map.get(key)?.as_object()?;
    }
    map.iter()
        .find(|(k, _)| CURRENT_PAGE_KEYS.contains(&k.to_ascii_lowercase().as_str()))
        .and_then(|(_, v)| as_count(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paginate::test_support::Fake;
    use serde_json::json;

    fn detected(r: &Fake) -> Paginator {
        detect(&r.page())
    }

    #[test]
    fn detection_order() {
        // A Link header wins over everything in the body.
        let r = Fake::new(
            "http://h/x",
            json!({"next": "http://h/x?p=2", "total_pages": 3}),
            1,
        )
        .header("link", "<http://h/x?p=2>; rel=\"next\"");
        assert_eq!(detected(&r).kind(), "header_link");
        // A next URL wins over a page count.
        let r = Fake::new(
            "http://h/x",
            json!({"total_pages": 3, "links": {"next": "/x?p=2"}}),
            1,
        );
        let Paginator::JsonLink(p) = detected(&r) else {
            panic!()
        };
        assert_eq!(p.next_url_path.0, "links.next");
        let r = Fake::new(
            "http://h/x",
            json!({"data": [], "next": {"href": "?p=2"}}),
            1,
        );
        let Paginator::JsonLink(p) = detected(&r) else {
            panic!()
        };
        assert_eq!(p.next_url_path.0, "next.href");
        // A page count wins over a cursor.
        let r = Fake::new(
            "http://h/x",
            json!({"meta": {"page": 1, "totalPages": 3}, "cursor": "c"}),
            1,
        );
        let Paginator::PageNumber(p) = detected(&r) else {
            panic!()
        };
        assert_eq!(
            (p.base_page, p.page, p.total_path.unwrap().0),
            (1, 1, "meta.totalPages".into())
        );
        let r = Fake::new("http://h/x", json!({"data": [], "next_cursor": "abc"}), 1);
        let Paginator::Cursor(p) = detected(&r) else {
            panic!()
        };
        assert_eq!(p.cursor_path.0, "next_cursor");
        let r = Fake::new("http://h/x", json!({"cursors": {"next": "abc"}}), 1);
        assert_eq!(detected(&r).kind(), "cursor");
        // Nothing to go on.
        for body in [
            json!([{"id": 1}]),
            json!({"data": [], "next": null}),
            json!({"id": 1}),
        ] {
            assert_eq!(
                detected(&Fake::new("http://h/x", body.clone(), 1)).kind(),
                "single_page",
                "{body}"
            );
        }
        // A `next` that is not a link is not a json_link.
        let r = Fake::new("http://h/x", json!({"next": "abc"}), 1);
        assert_eq!(detected(&r).kind(), "single_page");
    }

    #[test]
    fn the_detected_paginator_takes_over() {
        let mut p = AutoPaginator::default();
        let r = Fake::new(
            "http://h/x",
            json!({"data": [1], "page": 1, "total_pages": 2}),
            1,
        );
        assert_eq!(
            p.next(&r.page()).unwrap(),
            Some(NextRequest::Params(vec![("page".into(), "2".into())]))
        );
        let r = Fake::new(
            "http://h/x?page=2",
            json!({"data": [1], "page": 2, "total_pages": 2}),
            1,
        );
        assert_eq!(p.next(&r.page()).unwrap(), None);

        let mut p = AutoPaginator::default();
        let r = Fake::new("http://h/x", json!([1]), 1);
        assert_eq!(p.next(&r.page()).unwrap(), None);
    }
}
