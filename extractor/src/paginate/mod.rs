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

use std::hash::{DefaultHasher, Hasher};

use crate::jsonpath::Selector;
use common::json::view::{JsonView, View};
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

/// Values a paginator sets at dotted paths of the endpoint's JSON body (dlt's
/// `offset_body_path`, `limit_body_path`, `page_body_path`): each path's keys and the value.
pub type BodyFields = Vec<(Vec<String>, Value)>;

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
    /// The endpoint's request with these query parameters set and these values set in its
    /// JSON body (an empty object when it has none), as dlt's `*_body_path` do.
    Fields {
        params: PageParams,
        body: BodyFields,
    },
}

/// Where a range paginator (`offset`, `page_number`) puts a value: a query parameter, or a
/// dotted path of the JSON body (dlt's `*_body_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Param(String),
    Body(Vec<String>),
}

impl Place {
    pub fn from_config(place: common::config::PagePlace<'_>) -> Self {
        match place {
            common::config::PagePlace::Param(name) => Place::Param(name.to_owned()),
            common::config::PagePlace::Body(path) => {
                Place::Body(path.split('.').map(str::to_owned).collect())
            }
        }
    }

    /// The parameter's name or the dotted path, for messages (`offset`, `paging.offset`).
    pub fn name(&self) -> String {
        match self {
            Place::Param(name) => name.clone(),
            Place::Body(path) => path.join("."),
        }
    }

    /// The place as an error message names it: `` `offset` `` or
    /// `` `paging.offset` in the JSON body ``.
    pub fn describe(&self) -> String {
        match self {
            Place::Param(name) => format!("`{name}`"),
            Place::Body(path) => format!("`{}` in the JSON body", path.join(".")),
        }
    }
}

/// The request that sets each number at its place: query parameters (as text), or numbers
/// at dotted paths of the JSON body (as dlt sets them).
pub(crate) fn placed(values: &[(&Place, u64)]) -> NextRequest {
    let mut params = PageParams::new();
    let mut body = BodyFields::new();
    for (place, value) in values {
        match place {
            Place::Param(name) => params.push((name.clone(), value.to_string())),
            Place::Body(path) => body.push((path.clone(), Value::from(*value))),
        }
    }
    if body.is_empty() {
        NextRequest::Params(params)
    } else {
        NextRequest::Fields { params, body }
    }
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
    #[error(
        "the {paginator} paginator made no progress: {at} has the same {records} records as the \
         page before; the API seems to ignore {ignored}; stopping instead of paging forever"
    )]
    SamePage {
        paginator: &'static str,
        at: String,
        records: usize,
        ignored: String,
    },
    #[error(
        "the {paginator} paginator has not ended after {max} pages (client.max_pages); stopping. \
         Raise client.max_pages if the API really has more, or bound the paging with \
         maximum_offset / maximum_page"
    )]
    TooManyPages { paginator: &'static str, max: u64 },
    #[error(
        "the next link `{link}` leads to host `{host}`: the credentials are sent only to \
         base_url's host, the endpoint's and client.trusted_hosts; add `{host}` to \
         client.trusted_hosts if the API really pages there"
    )]
    ForeignLink { link: String, host: String },
    #[error("{what} `{value}` is not a usable URL: {message}")]
    BadLink {
        what: &'static str,
        value: String,
        message: String,
    },
    #[error("{what} found {found}, which is not a string or a number")]
    BadCursor { what: String, found: String },
    #[error("has_more_path `{path}` finds nothing in the response")]
    NoHasMore { path: String },
    #[error(
        "has_more_path `{path}` found {found}, which is not a boolean (nor `true`/`false`, \
         `yes`/`no`, `t`/`f`, `y`/`n`, `1`/`0`)"
    )]
    BadHasMore { path: String, found: String },
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
            PaginateError::ForeignLink { link, host } => PaginateError::ForeignLink {
                link: redact(&link),
                host,
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
            Paginator::Offset(p) => p.has_first_page().then(|| p.request()),
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
            Paginator::Offset(p) => p.next(response.body, response.records),
            Paginator::PageNumber(p) => p.next(response.body, response.records),
            Paginator::JsonLink(p) => p.next(response),
            Paginator::HeaderLink(p) => p.next(response),
            Paginator::Cursor(p) => p.next(response.body, response.records),
            Paginator::HeaderCursor(p) => p.next(response.headers),
            Paginator::SinglePage => Ok(None),
            Paginator::Auto(p) => p.next(response),
        }
    }

    /// After the first response was accepted by [`Paginator::next`]: the remaining pages,
    /// when the response says how many there are (`offset` or `page_number` with a total),
    /// so they can be fetched concurrently; `None` when only sequential paging can know.
    /// The pages are made one at a time as they are requested, so whatever total the API
    /// claims, only the requests in flight are in memory.
    pub fn remaining(&self, body: &Value) -> Option<RemainingPages> {
        match self {
            Paginator::Offset(p) => Some(RemainingPages {
                next: p.offset,
                end: p.remaining_end(body)?,
                step: p.limit.max(1),
                template: Planned::Offset(p.clone()),
            }),
            Paginator::PageNumber(p) => Some(RemainingPages {
                next: p.page,
                end: p.remaining_end(body)?,
                step: 1,
                template: Planned::PageNumber(p.clone()),
            }),
            // `auto` once it detected one of those.
            Paginator::Auto(p) => p.detected.as_deref()?.remaining(body),
            _ => None,
        }
    }

    /// The error for a page whose records repeat the page before, made before
    /// [`Paginator::next`] moved on from the request that fetched it: it names the position
    /// and the parameter the API seems to ignore.
    pub fn same_page(&self, records: usize) -> PaginateError {
        let (at, ignored) = match self {
            Paginator::Offset(p) => (
                format!("the page at {} {}", p.offset_at.name(), p.offset),
                p.offset_at.describe(),
            ),
            Paginator::PageNumber(p) => (
                format!("the page at {} {}", p.page_at.name(), p.page),
                p.page_at.describe(),
            ),
            Paginator::Auto(p) => match p.detected.as_deref() {
                Some(detected) => return detected.same_page(records),
                None => ("this page".to_owned(), "the paging".to_owned()),
            },
            Paginator::JsonLink(_) | Paginator::HeaderLink(_) => {
                ("this page".to_owned(), "the next link".to_owned())
            }
            Paginator::Cursor(_) | Paginator::HeaderCursor(_) => {
                ("this page".to_owned(), "the cursor".to_owned())
            }
            Paginator::SinglePage => ("this page".to_owned(), "the paging".to_owned()),
        };
        PaginateError::SamePage {
            paginator: self.kind(),
            at,
            records,
            ignored,
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
            Paginator::Offset(p) => p.resume(checkpoint),
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

/// The pages after the first of an `offset` or `page_number` paginator whose first response
/// gave the total: positions `next`, `next + step`, ... up to (not including) `end`, each made
/// when the iterator reaches it.
#[derive(Debug, Clone)]
pub struct RemainingPages {
    next: u64,
    end: u64,
    step: u64,
    template: Planned,
}

#[derive(Debug, Clone)]
enum Planned {
    Offset(OffsetPaginator),
    PageNumber(PageNumberPaginator),
}

impl Planned {
    fn at(&self, position: u64) -> Paginator {
        match self {
            Planned::Offset(p) => Paginator::Offset(p.at(position)),
            Planned::PageNumber(p) => Paginator::PageNumber(p.at(position)),
        }
    }
}

/// One planned page.
#[derive(Debug, Clone)]
pub struct PlannedPage {
    pub request: NextRequest,
    /// The checkpoint once this page (and every one before it) is acknowledged: the next
    /// page's position; `None` for the last planned page.
    pub resume: Option<Value>,
    /// The paginator positioned at this page (for its error messages).
    pub paginator: Paginator,
}

impl RemainingPages {
    /// How many pages are planned (what `total` claims; the paging may end sooner).
    pub fn pages_left(&self) -> u64 {
        self.end.saturating_sub(self.next).div_ceil(self.step)
    }
}

impl Iterator for RemainingPages {
    type Item = PlannedPage;

    fn next(&mut self) -> Option<PlannedPage> {
        if self.next >= self.end {
            return None;
        }
        let paginator = self.template.at(self.next);
        self.next = self.next.saturating_add(self.step);
        let resume = (self.next < self.end)
            .then(|| self.template.at(self.next).checkpoint())
            .flatten();
        let request = paginator.first()?;
        Some(PlannedPage {
            request,
            resume,
            paginator,
        })
    }
}

/// Catches an API that answers every request with the same page (it ignores the paging
/// parameters): a fingerprint of the last non-empty page's records. Empty pages are not
/// compared (an API may send several in a row where `stop_after_empty_page` is off).
#[derive(Debug, Clone, Default)]
pub struct RepeatGuard {
    last: Option<u64>,
}

impl RepeatGuard {
    /// Whether `records` repeat the last non-empty page's: the same primary key values in
    /// the same order (when every record has them), else the same records.
    pub fn repeats(&mut self, records: &[Value], primary_key: &[String]) -> bool {
        self.repeats_of(&records.iter().collect::<Vec<_>>(), primary_key)
    }

    /// [`Self::repeats`] for records read through a [`JsonView`].
    pub fn repeats_of<'a, V: JsonView<'a>>(
        &mut self,
        records: &[V],
        primary_key: &[String],
    ) -> bool {
        if records.is_empty() {
            return false;
        }
        let print = fingerprint(records, primary_key);
        let same = self.last == Some(print);
        self.last = Some(print);
        same
    }
}

/// A 64-bit hash of the records' primary key values (or of the whole record where one has
/// no value for a key), in order.
fn fingerprint<'a, V: JsonView<'a>>(records: &[V], primary_key: &[String]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write_usize(records.len());
    // Where each key part was in the last record: records of one page share their shape.
    let mut at = vec![0; primary_key.len()];
    let mut values = Vec::with_capacity(primary_key.len());
    for &record in records {
        values.clear();
        if record.is_object() {
            for (key, at) in primary_key.iter().zip(&mut at) {
                match field(record, key, at) {
                    Some(value) => values.push(value),
                    None => break,
                }
            }
        }
        if !primary_key.is_empty() && values.len() == primary_key.len() {
            hasher.write_u8(0xfe);
            for &value in &values {
                hash_value(&mut hasher, value);
            }
        } else {
            hash_value(&mut hasher, record);
        }
        hasher.write_u8(0xff);
    }
    hasher.finish()
}

/// An object's value of `key`, looked for first at position `at`, which a small record's
/// search updates to where it was (a hash lookup of a key costs more than a few steps).
fn field<'a, V: JsonView<'a>>(object: V, key: &str, at: &mut usize) -> Option<V> {
    const SMALL: usize = 32;
    let entries = || match object.view() {
        View::Object(entries) => Some(entries),
        _ => None,
    };
    let len = entries()?.len();
    if *at < SMALL
        && let Some((k, value)) = entries()?.nth(*at)
        && k == key
    {
        return Some(value);
    }
    if len > SMALL {
        return object.get(key);
    }
    let (position, (_, value)) = entries()?.enumerate().find(|(_, (k, _))| *k == key)?;
    *at = position;
    Some(value)
}

/// Feeds `value` to `hasher`, each part with its kind and length, so that different
/// values write different sequences (numbers by their text, objects in their key order).
fn hash_value<'a, V: JsonView<'a>>(hasher: &mut impl Hasher, value: V) {
    fn text(hasher: &mut impl Hasher, kind: u8, text: &str) {
        hasher.write_u8(kind);
        hasher.write_usize(text.len());
        hasher.write(text.as_bytes());
    }
    match value.view() {
        View::Null => hasher.write_u8(0),
        View::Bool(b) => hasher.write_u8(if b { 2 } else { 1 }),
        View::Number(n) => text(hasher, 3, n),
        View::String(s) => text(hasher, 4, s),
        View::Array(items) => {
            hasher.write_u8(5);
            hasher.write_usize(items.len());
            for item in items {
                hash_value(hasher, item);
            }
        }
        View::Object(map) => {
            hasher.write_u8(6);
            hasher.write_usize(map.len());
            for (key, item) in map {
                text(hasher, 7, key);
                hash_value(hasher, item);
            }
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
/// dlt's `has_more_path`: the flag at `path` in `response`, a boolean or a string dlt's
/// `str2bool` reads; missing or anything else is an error, as in dlt.
pub(crate) fn has_more(
    response: &Value,
    (text, selector): &(String, Selector),
) -> Result<bool, PaginateError> {
    match selector.find(response) {
        None | Some(Value::Null) => Err(PaginateError::NoHasMore { path: text.clone() }),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "yes" | "true" | "t" | "y" | "1" => Ok(true),
            "no" | "false" | "f" | "n" | "0" => Ok(false),
            _ => Err(PaginateError::BadHasMore {
                path: text.clone(),
                found: excerpt(&Value::String(s.clone())),
            }),
        },
        Some(other) => Err(PaginateError::BadHasMore {
            path: text.clone(),
            found: excerpt(other),
        }),
    }
}

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
                .map(|all| all.map(|page| page.request).collect())
        };
        let page = |n: &str| NextRequest::Params(vec![("page".into(), n.into())]);

        let mut auto = Paginator::Auto(AutoPaginator::default());
        assert!(pages(&auto).is_none(), "nothing detected yet");
        assert!(!auto.stops_on_empty_page());
        assert_eq!(auto.next(&first.page()).unwrap(), Some(page("2")));
        assert_eq!(pages(&auto), Some(vec![page("2"), page("3"), page("4")]));
        assert!(auto.stops_on_empty_page(), "as the detected page_number");
        let e = auto.same_page(10).to_string();
        assert!(
            e.contains("page_number paginator") && e.contains("page 2"),
            "{e}"
        );

        let mut linked = Paginator::Auto(AutoPaginator::default());
        let r = Fake::new("http://h/x", json!({"data": [1], "next": "/x?p=2"}), 1);
        assert!(linked.next(&r.page()).unwrap().is_some());
        assert!(
            linked.remaining(&r.body).is_none(),
            "links page sequentially"
        );
    }

    fn offset(limit: u64, maximum_offset: Option<u64>) -> Paginator {
        Paginator::Offset(OffsetPaginator {
            limit,
            offset: 0,
            offset_at: Place::Param("offset".into()),
            limit_at: Place::Param("limit".into()),
            total_path: Some((
                "total".into(),
                crate::jsonpath::Selector::parse("total_path", "total").unwrap(),
            )),
            maximum_offset,
            stop_after_empty_page: true,
            has_more_path: None,
        })
    }

    /// The offsets and resume checkpoints of the pages after the first.
    fn planned(mut p: Paginator, total: Value) -> (u64, Vec<(String, Option<Value>)>) {
        let first = test_support::Fake::new("http://h/x", json!({ "total": total }), 100);
        assert!(p.next(&first.page()).unwrap().is_some());
        let rest = p.remaining(&first.body).unwrap();
        let count = rest.pages_left();
        let pages = rest
            .map(|page| match page.request {
                NextRequest::Params(params) => (params[0].1.clone(), page.resume),
                other => panic!("{other:?}"),
            })
            .collect();
        (count, pages)
    }

    #[test]
    fn remaining_offsets_with_their_checkpoints() {
        let (count, pages) = planned(offset(100, None), json!(350));
        assert_eq!(count, 3);
        assert_eq!(
            pages,
            [
                ("100".into(), Some(json!({"offset": 200}))),
                ("200".into(), Some(json!({"offset": 300}))),
                ("300".into(), None),
            ]
        );
        let (count, pages) = planned(offset(100, Some(250)), json!(350));
        assert_eq!((count, pages.len()), (2, 2));
        assert_eq!(planned(offset(100, None), json!(101)).0, 1);
    }

    #[test]
    fn a_huge_total_plans_nothing_up_front() {
        // 10^12 records in pages of 100: 10^10 pages, none made until asked for.
        let mut p = offset(100, None);
        let first =
            test_support::Fake::new("http://h/x", json!({"total": 1_000_000_000_000u64}), 100);
        assert!(p.next(&first.page()).unwrap().is_some());
        let mut rest = p.remaining(&first.body).unwrap();
        assert_eq!(rest.pages_left(), 9_999_999_999);
        assert_eq!(
            std::mem::size_of_val(&rest),
            std::mem::size_of::<RemainingPages>()
        );
        let third = rest.nth(2).unwrap();
        assert_eq!(
            third.request,
            NextRequest::Params(vec![
                ("offset".into(), "300".into()),
                ("limit".into(), "100".into())
            ])
        );
        assert_eq!(rest.pages_left(), 9_999_999_996);
        // u64::MAX (a float total saturates there) does not overflow.
        assert_eq!(planned(offset(u64::MAX / 2, None), json!(u64::MAX)).0, 2);
    }

    #[test]
    fn a_repeated_page_is_caught_by_keys_or_by_content() {
        let key = vec!["id".to_owned()];
        let mut g = RepeatGuard::default();
        assert!(!g.repeats(&[json!({"id": 1}), json!({"id": 2})], &key));
        assert!(!g.repeats(&[json!({"id": 3}), json!({"id": 4})], &key));
        // Same keys, changed values: still no progress.
        assert!(g.repeats(&[json!({"id": 3, "x": 9}), json!({"id": 4})], &key));
        // Empty pages are not compared and do not reset.
        assert!(!g.repeats(&[], &key));
        assert!(!g.repeats(&[], &key));
        assert!(g.repeats(&[json!({"id": 3}), json!({"id": 4})], &key));
        // Without keys the records are compared whole.
        let mut g = RepeatGuard::default();
        assert!(!g.repeats(&[json!({"a": 1})], &[]));
        assert!(!g.repeats(&[json!({"a": 2})], &[]));
        assert!(g.repeats(&[json!({"a": 2})], &[]));
        // A record without the key is compared whole.
        let mut g = RepeatGuard::default();
        assert!(!g.repeats(&[json!({"b": 1})], &key));
        assert!(!g.repeats(&[json!({"b": 2})], &key));
        // A key's number and the same digits as a string differ, as do nested values.
        let mut g = RepeatGuard::default();
        assert!(!g.repeats(&[json!({"id": 1})], &key));
        assert!(!g.repeats(&[json!({"id": "1"})], &key));
        assert!(!g.repeats(&[json!({"b": [1, {"c": "x"}]})], &key));
        assert!(!g.repeats(&[json!({"b": [1, {"c": "y"}]})], &key));
        assert!(g.repeats(&[json!({"b": [1, {"c": "y"}]})], &key));
        // A key found wherever it is in the record (records of one page may differ).
        let mut g = RepeatGuard::default();
        assert!(!g.repeats(
            &[json!({"id": 1, "x": 1}), json!({"x": 1, "y": 2, "id": 2})],
            &key
        ));
        assert!(g.repeats(&[json!({"y": 1, "id": 1}), json!({"id": 2})], &key));
        // Order matters: a reversed page is progress of a kind.
        let mut g = RepeatGuard::default();
        assert!(!g.repeats(&[json!({"id": 1}), json!({"id": 2})], &key));
        assert!(!g.repeats(&[json!({"id": 2}), json!({"id": 1})], &key));
    }

    #[test]
    fn the_repeat_error_names_the_position_and_the_parameter() {
        let p = offset(100, None);
        let Paginator::Offset(inner) = &p else {
            unreachable!()
        };
        let at_300 = Paginator::Offset(inner.at(300));
        let e = at_300.same_page(100).to_string();
        assert!(
            e.contains("offset paginator made no progress")
                && e.contains("the page at offset 300 has the same 100 records")
                && e.contains("ignore `offset`"),
            "{e}"
        );
        let e = PaginateError::TooManyPages {
            paginator: "offset",
            max: 5,
        }
        .to_string();
        assert!(e.contains("after 5 pages (client.max_pages)"), "{e}");
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
