//! dlt's `offset` paginator: `offset_param=offset, limit_param=limit` in the query,
//! advancing by `limit` after each page.
//!
//! Stop rules, checked after each response in this order (as dlt's `OffsetPaginator`):
//! 1. the page had no records and `stop_after_empty_page` is on (the default);
//! 2. the next offset reaches `total` when `total_path` (default `total`) finds a number;
//! 3. the next offset reaches `maximum_offset` when it is set.
//!
//! A response without `total` is an error when neither of the other rules can end the
//! paging, since the run could not know when to stop.

use serde_json::{Value, json};

use super::{NextRequest, PaginateError, Place, as_count, excerpt, has_more, placed};
use crate::jsonpath::Selector;

#[derive(Debug, Clone)]
pub struct OffsetPaginator {
    pub limit: u64,
    pub offset: u64,
    /// `offset_param`, or dlt's `offset_body_path`.
    pub offset_at: Place,
    /// `limit_param`, or dlt's `limit_body_path`.
    pub limit_at: Place,
    pub total_path: Option<(String, Selector)>,
    pub maximum_offset: Option<u64>,
    pub stop_after_empty_page: bool,
    /// dlt's `has_more_path`: `false` there ends the paging.
    pub has_more_path: Option<(String, Selector)>,
}

impl OffsetPaginator {
    /// The request for the current offset: the offset and the limit at their places.
    pub fn request(&self) -> NextRequest {
        placed(&[(&self.offset_at, self.offset), (&self.limit_at, self.limit)])
    }

    /// The first request's offset is below `maximum_offset` unless it is 0.
    pub fn has_first_page(&self) -> bool {
        self.maximum_offset.is_none_or(|max| self.offset < max)
    }

    /// Updates the state from a response; `Some(request)` for the next page, `None` to stop.
    pub fn next(
        &mut self,
        response: &Value,
        records: usize,
    ) -> Result<Option<NextRequest>, PaginateError> {
        if records == 0 && self.stop_after_empty_page {
            return Ok(None);
        }
        let total = match &self.total_path {
            Some((text, selector)) => match selector.find(response) {
                Some(v) => Some(as_count(v).ok_or_else(|| PaginateError::BadTotal {
                    path: text.clone(),
                    found: excerpt(v),
                })?),
                None if !self.stop_after_empty_page && self.maximum_offset.is_none() => {
                    return Err(PaginateError::NoStopRule { path: text.clone() });
                }
                None => None,
            },
            None => None,
        };
        self.offset = self.offset.saturating_add(self.limit);
        let ended = total.is_some_and(|t| self.offset >= t)
            || self.maximum_offset.is_some_and(|m| self.offset >= m);
        // As dlt: the flag is read (and must be there) whatever the other rules said.
        let more = match &self.has_more_path {
            Some(path) => has_more(response, path)?,
            None => true,
        };
        if ended || !more {
            return Ok(None);
        }
        Ok(Some(self.request()))
    }
}

impl OffsetPaginator {
    /// The checkpoint: the offset of the next request.
    pub fn checkpoint(&self) -> Value {
        json!({ "offset": self.offset })
    }

    /// Continues at a checkpoint's offset: `Some(None)` when that is past
    /// `maximum_offset`, `None` when the checkpoint has no offset.
    pub fn resume(&mut self, checkpoint: &Value) -> Option<Option<NextRequest>> {
        self.offset = checkpoint.get("offset")?.as_u64()?;
        Some(self.has_first_page().then(|| self.request()))
    }

    /// After [`OffsetPaginator::next`] accepted the first response: the offset the remaining
    /// pages end before, when the response gave `total` (capped at `maximum_offset`), so
    /// they can be fetched concurrently. `None` without a total. The pages are planned
    /// lazily from it ([`super::RemainingPages`]): a `total` of 10^12 costs nothing until
    /// its pages are requested, and an empty page still ends them.
    pub fn remaining_end(&self, response: &Value) -> Option<u64> {
        if self.has_more_path.is_some() {
            // Each page says whether another follows: sequential.
            return None;
        }
        let (_, selector) = self.total_path.as_ref()?;
        let total = as_count(selector.find(response)?)?;
        Some(self.maximum_offset.map_or(total, |m| m.min(total)))
    }

    /// The paginator at `offset`.
    pub fn at(&self, offset: u64) -> OffsetPaginator {
        let mut p = self.clone();
        p.offset = offset;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paginator(
        total_path: Option<&str>,
        maximum_offset: Option<u64>,
        stop_after_empty_page: bool,
    ) -> OffsetPaginator {
        OffsetPaginator {
            limit: 100,
            offset: 0,
            offset_at: Place::Param("offset".into()),
            limit_at: Place::Param("limit".into()),
            total_path: total_path
                .map(|p| (p.to_owned(), Selector::parse("total_path", p).unwrap())),
            maximum_offset,
            stop_after_empty_page,
            has_more_path: None,
        }
    }

    /// The offset a request asks for (a query parameter, or in the body).
    fn offset_of(request: &NextRequest) -> u64 {
        match request {
            NextRequest::Params(params) => params[0].1.parse().unwrap(),
            NextRequest::Fields { body, .. } => body[0].1.as_u64().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    /// Pages a fake API of `n` records (`with_total`: whether responses carry `total`)
    /// and returns the offsets requested.
    fn walk(mut p: OffsetPaginator, n: u64, with_total: bool) -> Result<Vec<u64>, PaginateError> {
        let mut offsets = vec![];
        if !p.has_first_page() {
            return Ok(offsets);
        }
        let mut request = p.request();
        loop {
            let offset = offset_of(&request);
            offsets.push(offset);
            assert!(offsets.len() < 1000, "paginator does not stop");
            let records = n.saturating_sub(offset).min(100) as usize;
            let body = if with_total {
                json!({"data": [], "total": n})
            } else {
                json!({"data": []})
            };
            match p.next(&body, records)? {
                Some(next) => request = next,
                None => return Ok(offsets),
            }
        }
    }

    #[test]
    fn remaining_pages_come_from_the_first_total() {
        let mut p = paginator(Some("total"), None, true);
        let first = json!({"total": 350});
        assert!(p.next(&first, 100).unwrap().is_some());
        assert_eq!(p.remaining_end(&first), Some(350));
        let mut capped = paginator(Some("total"), Some(250), true);
        assert!(capped.next(&first, 100).unwrap().is_some());
        assert_eq!(capped.remaining_end(&first), Some(250));
        assert!(p.remaining_end(&json!({"count": 3})).is_none());
        assert_eq!(offset_of(&p.at(300).request()), 300);
    }

    #[test]
    fn stops_at_total() {
        assert_eq!(
            walk(paginator(Some("total"), None, true), 250, true).unwrap(),
            vec![0, 100, 200]
        );
        assert_eq!(
            walk(paginator(Some("total"), None, true), 200, true).unwrap(),
            vec![0, 100]
        );
        assert_eq!(
            walk(paginator(Some("total"), None, true), 0, true).unwrap(),
            vec![0]
        );
    }

    #[test]
    fn stops_on_empty_page_without_total() {
        assert_eq!(
            walk(paginator(Some("total"), None, true), 200, false).unwrap(),
            vec![0, 100, 200]
        );
        assert_eq!(
            walk(paginator(None, None, true), 150, false).unwrap(),
            vec![0, 100, 200]
        );
    }

    #[test]
    fn stops_at_maximum_offset() {
        assert_eq!(
            walk(paginator(None, Some(300), false), 10_000, false).unwrap(),
            vec![0, 100, 200]
        );
        assert_eq!(
            walk(paginator(Some("total"), Some(150), true), 10_000, true).unwrap(),
            vec![0, 100]
        );
        let mut p = paginator(None, Some(0), true);
        p.offset = 0;
        assert!(!p.has_first_page());
    }

    #[test]
    fn total_wins_over_maximum_when_smaller() {
        assert_eq!(
            walk(paginator(Some("total"), Some(10_000), true), 120, true).unwrap(),
            vec![0, 100]
        );
    }

    #[test]
    fn no_stop_rule_is_an_error() {
        let err = walk(paginator(Some("total"), None, false), 500, false).unwrap_err();
        assert!(err.to_string().contains("`total`"), "{err}");
    }

    #[test]
    fn non_numeric_total_is_an_error() {
        let mut p = paginator(Some("total"), None, true);
        let err = p.next(&json!({"total": "many"}), 100).unwrap_err();
        assert!(err.to_string().contains("\"many\""), "{err}");
        let mut p = paginator(Some("total"), None, true);
        assert_eq!(
            offset_of(&p.next(&json!({"total": "150"}), 100).unwrap().unwrap()),
            100
        );
    }

    #[test]
    fn checkpoint_and_resume() {
        let mut p = paginator(Some("total"), Some(1000), true);
        assert!(p.next(&json!({"total": 5000}), 100).unwrap().is_some());
        assert!(p.next(&json!({"total": 5000}), 100).unwrap().is_some());
        let checkpoint = p.checkpoint();
        assert_eq!(checkpoint, json!({"offset": 200}));
        let mut resumed = paginator(Some("total"), Some(1000), true);
        assert_eq!(
            offset_of(&resumed.resume(&checkpoint).unwrap().unwrap()),
            200
        );
        // It goes on as the original would.
        assert_eq!(
            resumed.next(&json!({"total": 5000}), 100).unwrap(),
            p.next(&json!({"total": 5000}), 100).unwrap()
        );
        assert_eq!(resumed.resume(&json!({"offset": 1000})), Some(None));
        assert_eq!(resumed.resume(&json!({"page": 3})), None);
        assert_eq!(p.remaining_end(&json!({"total": 500})), Some(500));
        assert_eq!(p.at(300).checkpoint(), json!({"offset": 300}));
    }

    #[test]
    fn custom_param_names_and_start() {
        let mut p = paginator(Some("total"), None, true);
        p.offset_at = Place::Param("skip".into());
        p.limit_at = Place::Param("take".into());
        p.offset = 40;
        assert_eq!(
            p.request(),
            NextRequest::Params(vec![
                ("skip".into(), "40".into()),
                ("take".into(), "100".into())
            ])
        );
    }

    /// dlt's `offset_body_path` / `limit_body_path`: numbers at dotted paths of the body;
    /// with only one of them, the other stays a query parameter (dlt's defaults).
    #[test]
    fn offset_and_limit_in_the_body() {
        let body_path = |p: &str| Place::Body(p.split('.').map(str::to_owned).collect());
        let mut p = paginator(Some("total"), None, true);
        p.offset_at = body_path("paging.offset");
        p.limit_at = body_path("paging.limit");
        assert_eq!(
            p.request(),
            NextRequest::Fields {
                params: vec![],
                body: vec![
                    (vec!["paging".into(), "offset".into()], json!(0)),
                    (vec!["paging".into(), "limit".into()], json!(100)),
                ],
            }
        );
        assert_eq!(walk(p.clone(), 250, true).unwrap(), vec![0, 100, 200]);
        p.limit_at = Place::Param("limit".into());
        assert_eq!(
            p.at(300).request(),
            NextRequest::Fields {
                params: vec![("limit".into(), "100".into())],
                body: vec![(vec!["paging".into(), "offset".into()], json!(300))],
            }
        );
    }
}
