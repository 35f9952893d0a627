//! dlt's `json_link` paginator: the next page's URL is in the body at `next_url_path`
//! (default `next`), absolute or relative to the request's URL. It stops when the link is
//! missing, `null` or empty; the endpoint's `params` are not added to the next URL (it
//! carries its own query), as in dlt.

use serde_json::{Value, json};
use url::Url;

use super::{
    NextRequest, PageResponse, PaginateError, Progress, checkpoint_text, reference, resolve_link,
};
use crate::jsonpath::Selector;

#[derive(Debug, Clone)]
pub struct JsonLinkPaginator {
    pub next_url_path: (String, Selector),
    pub progress: Progress,
}

impl JsonLinkPaginator {
    pub fn new(next_url_path: (String, Selector)) -> Self {
        Self {
            next_url_path,
            progress: Progress::default(),
        }
    }

    pub fn next(
        &mut self,
        response: &PageResponse<'_>,
    ) -> Result<Option<NextRequest>, PaginateError> {
        let (text, selector) = &self.next_url_path;
        let what = format!("next_url_path `{text}`");
        let Some(link) = reference(selector.find(response.body), &what)? else {
            return Ok(None);
        };
        let url = resolve_link(response.url, &link, "next link")?;
        self.progress
            .advance("json_link", "next link", url.as_str())?;
        Ok(Some(NextRequest::Url(url)))
    }

    /// The checkpoint: the next page's URL (`None` before the first response). It is the
    /// link as the API gave it: the fetcher drops a secret query parameter before saving it.
    pub fn checkpoint(&self) -> Option<Value> {
        self.progress.last().map(|url| json!({ "url": url }))
    }

    /// The request for a checkpoint's URL; `None` when it has none.
    pub fn resume(&mut self, checkpoint: &Value) -> Option<NextRequest> {
        let url = Url::parse(checkpoint_text(checkpoint, "url")?).ok()?;
        self.progress.restore(url.as_str());
        Some(NextRequest::Url(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paginate::test_support::Fake;
    use serde_json::json;

    fn paginator(path: &str) -> JsonLinkPaginator {
        JsonLinkPaginator::new((
            path.to_owned(),
            Selector::parse("next_url_path", path).unwrap(),
        ))
    }

    fn url(req: Option<NextRequest>) -> String {
        match req {
            Some(NextRequest::Url(u)) => u.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn follows_absolute_and_relative_links() {
        let mut p = paginator("next");
        let r = Fake::new(
            "http://h/v1/items",
            json!({"next": "http://h/v1/items?page=2"}),
            5,
        );
        assert_eq!(url(p.next(&r.page()).unwrap()), "http://h/v1/items?page=2");
        let r = Fake::new(
            "http://h/v1/items?page=2",
            json!({"next": "/v1/items?page=3"}),
            5,
        );
        assert_eq!(url(p.next(&r.page()).unwrap()), "http://h/v1/items?page=3");
        let mut nested = paginator("links.next.href");
        let r = Fake::new(
            "http://h/a",
            json!({"links": {"next": {"href": "?p=2"}}}),
            1,
        );
        assert_eq!(url(nested.next(&r.page()).unwrap()), "http://h/a?p=2");
    }

    #[test]
    fn stops_when_the_link_is_missing_null_or_empty() {
        for body in [json!({}), json!({"next": null}), json!({"next": ""})] {
            let r = Fake::new("http://h/", body.clone(), 5);
            assert!(
                paginator("next").next(&r.page()).unwrap().is_none(),
                "{body}"
            );
        }
    }

    #[test]
    fn checkpoint_and_resume() {
        let mut p = paginator("next");
        assert_eq!(p.checkpoint(), None);
        let r = Fake::new("http://h/x", json!({"next": "/x?page=4"}), 5);
        let next = p.next(&r.page()).unwrap();
        let checkpoint = p.checkpoint().unwrap();
        assert_eq!(checkpoint, json!({"url": "http://h/x?page=4"}));
        let mut resumed = paginator("next");
        assert_eq!(resumed.resume(&checkpoint), next);
        let r = Fake::new("http://h/x?page=4", json!({"next": "/x?page=4"}), 5);
        assert!(resumed.next(&r.page()).is_err());
        assert_eq!(resumed.resume(&json!({"url": "not a url"})), None);
        assert_eq!(resumed.resume(&json!({"cursor": "c"})), None);
    }

    #[test]
    fn the_same_link_twice_is_an_error() {
        let mut p = paginator("next");
        let r = Fake::new("http://h/x", json!({"next": "/x?c=1"}), 5);
        let _ = p.next(&r.page()).unwrap();
        let r = Fake::new("http://h/x?c=1", json!({"next": "/x?c=1"}), 5);
        let e = p.next(&r.page()).unwrap_err();
        assert!(
            e.to_string().contains("same next link `http://h/x?c=1`"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_link_is_an_error() {
        let r = Fake::new("http://h/x", json!({"next": {"a": 1}}), 5);
        assert!(paginator("next").next(&r.page()).is_err());
        let r = Fake::new("http://h/x", json!({"next": "mailto:x@y"}), 5);
        assert!(paginator("next").next(&r.page()).is_err());
    }
}
