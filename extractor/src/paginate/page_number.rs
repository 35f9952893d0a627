//! dlt's `page_number` paginator: `?page=<n>` starting at `page` (default `base_page`),
//! then `n += 1`.
//!
//! Stop rules, checked after each response in this order (as dlt's `PageNumberPaginator`):
//! 1. the page had no records and `stop_after_empty_page` is on (the default);
//! 2. the next page number reaches `total + base_page` when `total_path` (default `total`,
//!    the number of pages) finds a number;
//! 3. the next page number reaches `maximum_page` when it is set.
//!
//! A response without the total is an error when neither of the other rules can end the
//! paging.

use serde_json::{Value, json};

use super::{NextRequest, PaginateError, Place, as_count, excerpt, has_more, placed};
use crate::jsonpath::Selector;

#[derive(Debug, Clone)]
pub struct PageNumberPaginator {
    pub base_page: u64,
    /// The page the next request asks for.
    pub page: u64,
    /// `page_param`, or dlt's `page_body_path`.
    pub page_at: Place,
    pub total_path: Option<(String, Selector)>,
    pub maximum_page: Option<u64>,
    pub stop_after_empty_page: bool,
    /// dlt's `has_more_path`: `false` there ends the paging.
    pub has_more_path: Option<(String, Selector)>,
}

impl PageNumberPaginator {
    pub fn params(&self) -> NextRequest {
        placed(&[(&self.page_at, self.page)])
    }

    pub fn first(&self) -> Option<NextRequest> {
        self.maximum_page
            .is_none_or(|max| self.page < max)
            .then(|| self.params())
    }

    /// The checkpoint: the page the next request asks for.
    pub fn checkpoint(&self) -> Value {
        json!({ "page": self.page })
    }

    /// Continues at a checkpoint's page: `Some(None)` when that is at `maximum_page`, `None`
    /// when the checkpoint has no page.
    pub fn resume(&mut self, checkpoint: &Value) -> Option<Option<NextRequest>> {
        self.page = checkpoint.get("page")?.as_u64()?;
        Some(self.first())
    }

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
                None if !self.stop_after_empty_page && self.maximum_page.is_none() => {
                    return Err(PaginateError::NoStopRule { path: text.clone() });
                }
                None => None,
            },
            None => None,
        };
        self.page = self.page.saturating_add(1);
        let ended = total.is_some_and(|t| self.page >= t.saturating_add(self.base_page))
            || self.maximum_page.is_some_and(|m| self.page >= m);
        // As dlt: the flag is read (and must be there) whatever the other rules said.
        let more = match &self.has_more_path {
            Some(path) => has_more(response, path)?,
            None => true,
        };
        if ended || !more {
            return Ok(None);
        }
        Ok(Some(self.params()))
    }

    /// After [`PageNumberPaginator::next`] accepted the first response: the page number the
    /// remaining pages end before, when the response gave the total number of pages (the
    /// last page is `base_page + total - 1`; capped at `maximum_page`), so they can be
    /// fetched concurrently. `None` without a total. The pages are planned lazily from it
    /// ([`super::RemainingPages`]); an empty page still ends the paging when
    /// `stop_after_empty_page` is on: the caller stops at it.
    pub fn remaining_end(&self, response: &Value) -> Option<u64> {
        if self.has_more_path.is_some() {
            // Each page says whether another follows: sequential.
            return None;
        }
        let (_, selector) = self.total_path.as_ref()?;
        let total = as_count(selector.find(response)?)?;
        let end = total.saturating_add(self.base_page);
        Some(self.maximum_page.map_or(end, |m| m.min(end)))
    }

    /// The paginator at `page`.
    pub fn at(&self, page: u64) -> PageNumberPaginator {
        let mut p = self.clone();
        p.page = page;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::super::Paginator;
    use super::*;
    use serde_json::json;

    fn paginator(
        base_page: u64,
        total_path: Option<&str>,
        maximum_page: Option<u64>,
        stop_after_empty_page: bool,
    ) -> PageNumberPaginator {
        PageNumberPaginator {
            base_page,
            page: base_page,
            page_at: Place::Param("page".into()),
            total_path: total_path
                .map(|p| (p.to_owned(), Selector::parse("total_path", p).unwrap())),
            maximum_page,
            stop_after_empty_page,
            has_more_path: None,
        }
    }

    fn page_of(req: &NextRequest) -> u64 {
        match req {
            NextRequest::Params(p) => p[0].1.parse().unwrap(),
            NextRequest::Fields { body, .. } => body[0].1.as_u64().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    /// Pages a fake API of `pages` full pages (numbered from `base`), then empty ones;
    /// `with_total` says whether responses carry `total_pages`. Returns the pages requested.
    fn walk(
        mut p: PageNumberPaginator,
        pages: u64,
        with_total: bool,
    ) -> Result<Vec<u64>, PaginateError> {
        let base = p.base_page;
        let mut requested = vec![];
        let Some(mut req) = p.first() else {
            return Ok(requested);
        };
        loop {
            let page = page_of(&req);
            requested.push(page);
            assert!(requested.len() < 1000, "paginator does not stop");
            let records = if page - base < pages { 10 } else { 0 };
            let body = if with_total {
                json!({"total_pages": pages})
            } else {
                json!({})
            };
            match p.next(&body, records)? {
                Some(next) => req = next,
                None => return Ok(requested),
            }
        }
    }

    #[test]
    fn stops_at_total_pages_from_base_0_and_1() {
        assert_eq!(
            walk(paginator(0, Some("total_pages"), None, true), 3, true).unwrap(),
            vec![0, 1, 2]
        );
        assert_eq!(
            walk(paginator(1, Some("total_pages"), None, true), 3, true).unwrap(),
            vec![1, 2, 3]
        );
        // total 0: the first page only.
        assert_eq!(
            walk(paginator(1, Some("total_pages"), None, false), 0, true).unwrap(),
            vec![1]
        );
    }

    #[test]
    fn stops_on_empty_page_without_total() {
        assert_eq!(
            walk(paginator(1, Some("total_pages"), None, true), 2, false).unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(
            walk(paginator(0, None, None, true), 2, false).unwrap(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn stops_at_maximum_page() {
        assert_eq!(
            walk(paginator(1, None, Some(4), false), 100, false).unwrap(),
            vec![1, 2, 3]
        );
        assert!(paginator(5, None, Some(5), true).first().is_none());
    }

    #[test]
    fn starts_at_page() {
        let mut p = paginator(1, Some("total_pages"), None, true);
        p.page = 3;
        assert_eq!(walk(p, 4, true).unwrap(), vec![3, 4]);
    }

    /// The first page, then the rest as `remaining` lists them.
    fn parallel(mut p: PageNumberPaginator, first: Value) -> Option<Vec<u64>> {
        let mut pages = vec![page_of(&p.first()?)];
        if p.next(&first, 10).unwrap().is_some() {
            let planned = Paginator::PageNumber(p).remaining(&first)?;
            pages.extend(planned.map(|page| page_of(&page.request)));
        }
        Some(pages)
    }

    #[test]
    fn remaining_pages_equal_the_sequential_walk() {
        // (base_page, start page, maximum_page, total pages)
        let cases: [(u64, u64, Option<u64>, u64); 8] = [
            (1, 1, None, 3),
            (0, 0, None, 3),
            (1, 1, None, 1),
            (0, 0, None, 1),
            (1, 3, None, 6),
            (1, 1, Some(4), 10),
            (0, 0, Some(7), 5),
            (1, 1, None, 25),
        ];
        for (base, start, max, total) in cases {
            let mut p = paginator(base, Some("total_pages"), max, true);
            p.page = start;
            let sequential = walk(p.clone(), total, true).unwrap();
            let first = json!({"total_pages": total});
            assert_eq!(
                parallel(p, first),
                Some(sequential),
                "base {base}, start {start}, max {max:?}, total {total}"
            );
        }
    }

    #[test]
    fn remaining_needs_the_total() {
        let mut p = paginator(1, Some("total_pages"), None, true);
        let body = json!({"page": 1});
        assert!(p.next(&body, 10).unwrap().is_some());
        assert!(p.remaining_end(&body).is_none());
        let mut p = paginator(1, None, Some(5), true);
        assert!(p.next(&json!({"total_pages": 9}), 10).unwrap().is_some());
        assert!(
            p.remaining_end(&json!({"total_pages": 9})).is_none(),
            "no total_path"
        );
        let mut p = paginator(1, Some("meta.pages"), None, true);
        let body = json!({"meta": {"pages": "4"}});
        assert!(p.next(&body, 10).unwrap().is_some());
        let pages: Vec<u64> = Paginator::PageNumber(p)
            .remaining(&body)
            .unwrap()
            .map(|page| page_of(&page.request))
            .collect();
        assert_eq!(pages, [2, 3, 4], "a quoted total counts too");
    }

    #[test]
    fn checkpoint_and_resume() {
        let mut p = paginator(1, Some("total_pages"), Some(9), true);
        let _ = p.next(&json!({"total_pages": 20}), 10).unwrap();
        let checkpoint = p.checkpoint();
        assert_eq!(checkpoint, json!({"page": 2}));
        let mut resumed = paginator(1, Some("total_pages"), Some(9), true);
        assert_eq!(page_of(&resumed.resume(&checkpoint).unwrap().unwrap()), 2);
        assert_eq!(walk(resumed, 20, true).unwrap(), vec![2, 3, 4, 5, 6, 7, 8]);
        let mut done = paginator(1, None, Some(9), true);
        assert_eq!(done.resume(&json!({"page": 9})), Some(None));
        assert_eq!(done.resume(&json!({"offset": 9})), None);
    }

    /// dlt's `page_body_path`: the page number at a dotted path of the JSON body.
    #[test]
    fn page_number_in_the_body() {
        let mut p = paginator(1, Some("total_pages"), None, true);
        p.page_at = Place::Body(vec!["page".into(), "number".into()]);
        assert_eq!(
            p.first(),
            Some(NextRequest::Fields {
                params: vec![],
                body: vec![(vec!["page".into(), "number".into()], json!(1))],
            })
        );
        assert_eq!(walk(p.clone(), 3, true).unwrap(), vec![1, 2, 3]);
        assert_eq!(parallel(p, json!({"total_pages": 3})), Some(vec![1, 2, 3]));
    }

    #[test]
    fn missing_total_without_other_rule_is_an_error() {
        let e = walk(paginator(0, Some("total"), None, false), 5, false).unwrap_err();
        assert!(e.to_string().contains("`total`"), "{e}");
        let mut p = paginator(0, Some("total"), None, true);
        let e = p.next(&json!({"total": "lots"}), 3).unwrap_err();
        assert!(e.to_string().contains("\"lots\""), "{e}");
    }
}
