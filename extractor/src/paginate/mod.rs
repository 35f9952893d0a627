//! Paginators with dlt's names and stop rules. Each one turns a response into the next
//! request (query parameters, a whole URL, or a JSON body), or says the resource is done.
//! A new paginator is one new file plus one arm here.

pub mod auto;
pub mod cursor;
pub mod header_cursor;
pub mod header_link;
pub mod json_link;
pub mod offset;
pub mod page_number;

use reqwest::header::HeaderMap;
use serde_json::Value;
use url::Url;

pub use auto::AutoPaginator;
pub use cursor::CursorPaginator;
pub use header_cursor::HeaderCursorPaginator;
pub use header_link::HeaderLinkPaginator;
pub use json_link::JsonLinkPaginator;
pub use offset::OffsetPaginator;
pub use page_number::PageNumberPaginator;

/// Query parameters a paginator sets on a request (they replace the endpoint's `params` of
/// the same name).
pub type PageParams = Vec<(String, String)>;

/// What the next request changes, relative to the endpoint's own request.
#[derive(Debug, Clone, PartialEq)]
pub enum NextRequest {
    /// The endpoint's URL with these query parameters set.
    Params(PageParams),
    /// This URL (query included) instead of the endpoint's URL and `params`, as dlt's link
    /// paginators do.
    Url(Url),
    /// The endpoint's URL and `params` with this JSON body.
    Json(Value),
}

impl NextRequest {
    /// The endpoint's request unchanged.
    pub fn unchanged() -> Self {
        NextRequest::Params(Vec::new())
    }
}

/// What a paginator may look at in a response.
#[derive(Debug, Clone, Copy)]
pub struct PageResponse<'a> {
    /// The request's URL (without the auth query parameter): relative links resolve
    /// against it.
    pub url: &'a Url,
    pub headers: &'a HeaderMap,
    /// The body, with the records taken out.
    pub body: &'a Value,
    /// How many records the page held.
    pub records: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum PaginateError {
    #[error(
        "the response has no `{path}` (total_path), and neither stop_after_empty_page nor maximum_offset \
         can end the paging; set one of them or fix total_path"
    )]
    NoStopRule { path: String },
    #[error("total_path `{path}` found {found}, which is not a non-negative whole number")]
    BadTotal { path: String, found: String },
    #[error(
        "the {paginator} paginator made no progress: the API returned the same {what} `{value}` \
         twice in a row; stopping instead of requesting it again"
    )]
    NoProgress {
        paginator: &'static str,
        what: &'static str,
        value: String,
    },
    #[error("{what} `{value}` is not a usable URL: {message}")]
    BadLink {
        what: &'static str,
        value: String,
        message: String,
    },
    #[error("{what} found {found}, which is not a string or a number")]
    BadCursor { what: String, found: String },
    #[error(
        "the saved checkpoint {found} does not fit the {paginator} paginator (did the config \
         change?); run with --fresh to start the resource over"
    )]
    BadCheckpoint {
        paginator: &'static str,
        found: String,
    },
}

impl PaginateError {
    /// The error with `redact` applied to every value that came from the API (a next link
    /// may echo a secret query parameter).
    pub fn redacted(self, redact: impl Fn(&str) -> String) -> Self {
        match self {
            PaginateError::NoProgress {
                paginator,
                what,
                value,
            } => PaginateError::NoProgress {
                paginator,
                what,
                value: redact(&value),
            },
            PaginateError::BadLink {
                what,
                value,
                message,
            } => PaginateError::BadLink {
                what,
                value: redact(&value),
                message,
            },
            PaginateError::BadCursor { what, found } => PaginateError::BadCursor {
                what,
                found: redact(&found),
            },
            other => other,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Paginator {
    Offset(OffsetPaginator),
    PageNumber(PageNumberPaginator),
    JsonLink(JsonLinkPaginator),
    HeaderLink(HeaderLinkPaginator),
    Cursor(CursorPaginator),
    HeaderCursor(HeaderCursorPaginator),
    /// dlt's `single_page`: one request, no paging.
    SinglePage,
    Auto(AutoPaginator),
}

impl Paginator {
    /// The first request, or `None` when there is nothing to fetch.
    pub fn first(&self) -> Option<NextRequest> {
        match self {
            Paginator::Offset(p) => p.has_first_page().then(|| NextRequest::Params(p.params())),
            Paginator::PageNumber(p) => p.first(),
            Paginator::JsonLink(_)
            | Paginator::HeaderLink(_)
            | Paginator::Cursor(_)
            | Paginator::HeaderCursor(_)
            | Paginator::SinglePage
            | Paginator::Auto(_) => Some(NextRequest::unchanged()),
        }
    }

    /// The next request after `response`, or `None` when the resource is done.
    pub fn next(
        &mut self,
        response: &PageResponse<'_>,
    ) -> Result<Option<NextRequest>, PaginateError> {
        match self {
            Paginator::Offset(p) => Ok(p
                .next(response.body, response.records)?
                .map(NextRequest::Params)),
            Paginator::PageNumber(p) => p.next(response.body, response.records),
            Paginator::JsonLink(p) => p.next(response),
            Paginator::HeaderLink(p) => p.next(response),
            Paginator::Cursor(p) => p.next(response.body),
            Paginator::HeaderCursor(p) => p.next(response.headers),
            Paginator::SinglePage => Ok(None),
            Paginator::Auto(p) => p.next(response),
        }
    }

    /// After the first response was accepted by [`Paginator::next`]: every remaining request
    /// with its checkpoint, when the response says how many there are (`offset` or
    /// `page_number` with a total), so they can be fetched concurrently; `None` when only
    /// sequential paging can know.
    pub fn remaining(&self, body: &Value) -> Option<Vec<(NextRequest, Value)>> {
        match self {
            Paginator::Offset(p) => Some(
                p.remaining(body)?
                    .into_iter()
                    .map(|page| (NextRequest::Params(page.params()), page.checkpoint()))
                    .collect(),
            ),
            Paginator::PageNumber(p) => p.remaining(body),
            // `auto` once it detected one of those.
            Paginator::Auto(p) => p.detected.as_deref()?.remaining(body),
            _ => None,
        }
    }

    /// Where paging stands after [`Paginator::next`] returned a request: what
    /// [`Paginator::resume`] needs to make that request again in another process. `None`
    /// before the first response of the link and cursor paginators (start from the
    /// beginning), and always for `single_page` and `auto`, which cannot resume.
    pub fn checkpoint(&self) -> Option<Value> {
        match self {
            Paginator::Offset(p) => Some(p.checkpoint()),
            Paginator::PageNumber(p) => Some(p.checkpoint()),
            Paginator::JsonLink(p) => p.checkpoint(),
            Paginator::HeaderLink(p) => p.checkpoint(),
            Paginator::Cursor(p) => p.checkpoint(),
            Paginator::HeaderCursor(p) => p.checkpoint(),
            Paginator::SinglePage | Paginator::Auto(_) => None,
        }
    }

    /// Continues from a [`Paginator::checkpoint`]: the request it stands for (`None` when
    /// nothing is left), with the paginator's state as it was when the checkpoint was taken.
    pub fn resume(&mut self, checkpoint: &Value) -> Result<Option<NextRequest>, PaginateError> {
        let kind = self.kind();
        let resumed = match self {
            Paginator::Offset(p) => p.resume(checkpoint).map(|r| r.map(NextRequest::Params)),
            Paginator::PageNumber(p) => p.resume(checkpoint),
            Paginator::JsonLink(p) => p.resume(checkpoint).map(Some),
            Paginator::HeaderLink(p) => p.resume(checkpoint).map(Some),
            Paginator::Cursor(p) => p.resume(checkpoint).map(Some),
            Paginator::HeaderCursor(p) => p.resume(checkpoint).map(Some),
            Paginator::SinglePage | Paginator::Auto(_) => None,
        };
        resumed.ok_or_else(|| PaginateError::BadCheckpoint {
            paginator: kind,
            found: excerpt(checkpoint),
        })
    }

    /// Whether an empty page ends the paging.
    pub fn stops_on_empty_page(&self) -> bool {
        match self {
            Paginator::Offset(p) => p.stop_after_empty_page,
            Paginator::PageNumber(p) => p.stop_after_empty_page,
            Paginator::Auto(p) => p
                .detected
                .as_deref()
                .is_some_and(Paginator::stops_on_empty_page),
            _ => false,
        }
    }

    /// The `type` of the paginator as dlt names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Paginator::Offset(_) => "offset",
            Paginator::PageNumber(_) => "page_number",
            Paginator::JsonLink(_) => "json_link",
            Paginator::HeaderLink(_) => "header_link",
            Paginator::Cursor(_) => "cursor",
            Paginator::HeaderCursor(_) => "header_cursor",
            Paginator::SinglePage => "single_page",
            Paginator::Auto(_) => "auto",
        }
    }
}

/// The previous reference (link or cursor) a paginator sent, to catch an API that keeps
/// returning the same one.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    last: Option<String>,
}

impl Progress {
    /// Records `value` as the next reference; an error when it is the one sent last.
    pub fn advance(
        &mut self,
        paginator: &'static str,
        what: &'static str,
        value: &str,
    ) -> Result<(), PaginateError> {
        if self.last.as_deref() == Some(value) {
            return Err(PaginateError::NoProgress {
                paginator,
                what,
                value: value.to_owned(),
            });
        }
        self.last = Some(value.to_owned());
        Ok(())
    }

    /// The reference sent last, if any.
    pub fn last(&self) -> Option<&str> {
        self.last.as_deref()
    }

    /// Restores the reference sent last (resuming from a checkpoint).
    pub fn restore(&mut self, value: &str) {
        self.last = Some(value.to_owned());
    }
}

/// The string at `key` of a checkpoint.
pub(crate) fn checkpoint_text<'a>(checkpoint: &'a Value, key: &str) -> Option<&'a str> {
    checkpoint.get(key)?.as_str()
}

/// A count given as a number, or as a numeric string (some APIs quote it).
pub(crate) fn as_count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn excerpt(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// A reference (link or cursor) found in a response: `None` when missing, `null` or empty,
/// as dlt treats them all as "no next page".
pub(crate) fn reference(
    found: Option<&Value>,
    what: &str,
) -> Result<Option<String>, PaginateError> {
    match found {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(PaginateError::BadCursor {
            what: what.to_owned(),
            found: excerpt(other),
        }),
    }
}

/// A next link resolved against the request's URL (dlt: `urljoin(request.url, next)`).
pub(crate) fn resolve_link(
    base: &Url,
    link: &str,
    what: &'static str,
) -> Result<Url, PaginateError> {
    let url = base.join(link).map_err(|e| PaginateError::BadLink {
        what,
        value: link.to_owned(),
        message: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(PaginateError::BadLink {
            what,
            value: link.to_owned(),
            message: "not an http:// or https:// URL".to_owned(),
        });
    }
    Ok(url)
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A response at `url` with these headers and body.
    pub struct Fake {
        pub url: Url,
        pub headers: HeaderMap,
        pub body: Value,
        pub records: usize,
    }

    impl Fake {
        pub fn new(url: &str, body: Value, records: usize) -> Self {
            Self {
                url: Url::parse(url).unwrap(),
                headers: HeaderMap::new(),
                body,
                records,
            }
        }

        pub fn header(mut self, name: &'static str, value: &str) -> Self {
            let _ = self.headers.append(name, value.parse().unwrap());
            self
        }

        pub fn page(&self) -> PageResponse<'_> {
            PageResponse {
                url: &self.url,
                headers: &self.headers,
                body: &self.body,
                records: self.records,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn progress_catches_a_repeat() {
        let mut p = Progress::default();
        p.advance("cursor", "cursor", "a").unwrap();
        p.advance("cursor", "cursor", "b").unwrap();
        let e = p.advance("cursor", "cursor", "b").unwrap_err();
        assert!(e.to_string().contains("same cursor `b` twice"), "{e}");
    }

    #[test]
    fn references_and_links() {
        assert_eq!(reference(None, "c").unwrap(), None);
        assert_eq!(reference(Some(&json!(null)), "c").unwrap(), None);
        assert_eq!(reference(Some(&json!("")), "c").unwrap(), None);
        assert_eq!(
            reference(Some(&json!(42)), "c").unwrap().as_deref(),
            Some("42")
        );
        assert!(reference(Some(&json!({"a": 1})), "c").is_err());
        let base = Url::parse("http://h/v1/items?page=1").unwrap();
        for (link, expected) in [
            ("http://o/x?p=2", "http://o/x?p=2"),
            ("/v1/items?page=2", "http://h/v1/items?page=2"),
            ("?page=2", "http://h/v1/items?page=2"),
            ("more?page=2", "http://h/v1/more?page=2"),
        ] {
            assert_eq!(
                resolve_link(&base, link, "next link").unwrap().as_str(),
                expected
            );
        }
        assert!(resolve_link(&base, "ftp://x/y", "next link").is_err());
    }

    #[test]
    fn remaining_pages_of_page_number_and_auto() {
        use test_support::Fake;
        let body = json!({"data": [1], "page": 1, "total_pages": 4});
        let first = Fake::new("http://h/x", body.clone(), 1);
        let pages = |p: &Paginator| -> Option<Vec<NextRequest>> {
            p.remaining(&body)
                .map(|all| all.into_iter().map(|(req, _)| req).collect())
        };
        let page = |n: &str| NextRequest::Params(vec![("page".into(), n.into())]);

        let mut auto = Paginator::Auto(AutoPaginator::default());
        assert!(pages(&auto).is_none(), "nothing detected yet");
        assert!(!auto.stops_on_empty_page());
        assert_eq!(auto.next(&first.page()).unwrap(), Some(page("2")));
        assert_eq!(pages(&auto), Some(vec![page("2"), page("3"), page("4")]));
        assert!(auto.stops_on_empty_page(), "as the detected page_number");

        let mut linked = Paginator::Auto(AutoPaginator::default());
        let r = Fake::new("http://h/x", json!({"data": [1], "next": "/x?p=2"}), 1);
        assert!(linked.next(&r.page()).unwrap().is_some());
        assert!(
            linked.remaining(&r.body).is_none(),
            "links page sequentially"
        );
    }

    #[test]
    fn redaction_covers_api_values() {
        let e = PaginateError::NoProgress {
            paginator: "json_link",
            what: "next link",
            value: "http://h/?key=s3cret".into(),
        }
        .redacted(|s| s.replace("s3cret", "***"));
        assert!(e.to_string().contains("key=***") && !e.to_string().contains("s3cret"));
    }
}
