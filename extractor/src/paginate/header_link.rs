//! dlt's `header_link` paginator: the next page's URL is the `Link` response header's link
//! whose `rel` is `links_next_key` (default `next`), RFC 8288:
//! `Link: <https://api/items?page=2>; rel="next", <https://api/items?page=9>; rel="last"`.
//! It stops when there is no such link.

use reqwest::header::{HeaderMap, LINK};
use serde_json::{Value, json};
use url::Url;

use super::{NextRequest, PageResponse, PaginateError, Progress, checkpoint_text, resolve_link};

#[derive(Debug, Clone)]
pub struct HeaderLinkPaginator {
    pub links_next_key: String,
    pub progress: Progress,
}

impl HeaderLinkPaginator {
    pub fn new(links_next_key: String) -> Self {
        Self {
            links_next_key,
            progress: Progress::default(),
        }
    }

    pub fn next(
        &mut self,
        response: &PageResponse<'_>,
    ) -> Result<Option<NextRequest>, PaginateError> {
        let Some(link) = find_link(response.headers, &self.links_next_key) else {
            return Ok(None);
        };
        let url = resolve_link(response.url, &link, "Link header's next link")?;
        self.progress
            .advance("header_link", "next link", url.as_str())?;
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

/// The target of the first link whose `rel` (one of its space-separated values, compared
/// case-insensitively) is `rel`, across all `Link` headers.
pub fn find_link(headers: &HeaderMap, rel: &str) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_links)
        .find(|(_, rels)| rels.split_whitespace().any(|r| r.eq_ignore_ascii_case(rel)))
        .map(|(target, _)| target)
}

/// `(target, rel)` of each link in one `Link` header value.
fn parse_links(value: &str) -> Vec<(String, String)> {
    let mut links = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let target = rest[start + 1..start + len].trim().to_owned();
        rest = &rest[start + len + 1..];
        // The parameters run to the next link: a `,` outside quotes.
        let mut end = rest.len();
        let mut quoted = false;
        for (i, c) in rest.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let params = &rest[..end];
        rest = &rest[end..];
        let rel = params
            .split(';')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("rel"))
            .map(|(_, v)| v.trim().trim_matches('"').to_owned())
            .unwrap_or_default();
        links.push((target, rel));
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paginate::test_support::Fake;
    use serde_json::json;

    #[test]
    fn parses_rfc_8288_links() {
        let links = parse_links(
            "<https://a/x?page=2>; rel=\"next\", <https://a/x?page=1,0>; rel=\"prev first\"; \
             title=\"a, b\", </x?page=9>;rel=last",
        );
        assert_eq!(
            links,
            vec![
                ("https://a/x?page=2".into(), "next".into()),
                ("https://a/x?page=1,0".into(), "prev first".into()),
                ("/x?page=9".into(), "last".into()),
            ]
        );
    }

    #[test]
    fn follows_next_and_stops_without_it() {
        let mut p = HeaderLinkPaginator::new("next".into());
        let r = Fake::new("http://h/v1/x", json!([]), 3)
            .header("link", "</v1/x?page=1>; rel=\"prev\"")
            .header("link", "</v1/x?page=3>; rel=\"NEXT\"");
        assert_eq!(
            p.next(&r.page()).unwrap(),
            Some(NextRequest::Url("http://h/v1/x?page=3".parse().unwrap()))
        );
        let r =
            Fake::new("http://h/v1/x", json!([]), 3).header("link", "</v1/x?page=1>; rel=\"prev\"");
        assert_eq!(p.next(&r.page()).unwrap(), None);
        let r = Fake::new("http://h/v1/x", json!([]), 3);
        assert_eq!(p.next(&r.page()).unwrap(), None);
    }

    #[test]
    fn checkpoint_and_resume() {
        let mut p = HeaderLinkPaginator::new("next".into());
        assert_eq!(p.checkpoint(), None);
        let r = Fake::new("http://h/v1/x", json!([]), 3).header("link", "</v1/x?page=3>; rel=next");
        let next = p.next(&r.page()).unwrap();
        let checkpoint = p.checkpoint().unwrap();
        assert_eq!(checkpoint, json!({"url": "http://h/v1/x?page=3"}));
        let mut resumed = HeaderLinkPaginator::new("next".into());
        assert_eq!(resumed.resume(&checkpoint), next);
        assert_eq!(resumed.resume(&json!({"page": 3})), None);
    }

    #[test]
    fn custom_rel_and_no_progress() {
        let mut p = HeaderLinkPaginator::new("forward".into());
        let r =
            Fake::new("http://h/x", json!([]), 3).header("link", "<http://h/x?c=2>; rel=forward");
        assert!(p.next(&r.page()).unwrap().is_some());
        let e = p.next(&r.page()).unwrap_err();
        assert!(
            e.to_string().contains("same next link `http://h/x?c=2`"),
            "{e}"
        );
    }
}
