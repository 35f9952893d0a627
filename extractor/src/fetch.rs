//! The fetcher stage of one resource's run: pages its endpoint (sequentially, or the
//! remaining pages concurrently once the first page told how many there are), takes each
//! page's records out of the response and filters them to the incremental range, and hands
//! every [`Page`] with the checkpoint after it to the publisher stage through a channel.
//! Stops on the paginator's end, `max_pages`, a repeated page, a foreign next link, an
//! error or cancellation.

use common::config::ResourceConfig;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::adaptive_limit::{self, AdaptiveLimit};
use crate::client::{HttpClient, Method, Request, Response};
use crate::from_config::RequestTemplate;
use crate::incremental::{CursorFilter, Kept};
use crate::paginate::{NextRequest, PageResponse, PaginateError, RepeatGuard};
use crate::progress_bars::ResourceProgress;
use crate::records::Records;
use crate::{ExtractError, from_config, jsonpath};
use common::json::tape::TapeRef;

/// Log lines keep the target they had when this code was in the crate root.
const LOG_TARGET: &str = "extractor";

/// How one resource's pages are fetched: at most `concurrency` at a time once the pages are
/// known, fewer while the API answers 429 (`adaptive_limit`), shown on `progress_bars`.
pub(crate) struct Paging {
    pub(crate) concurrency: usize,
    pub(crate) limit: AdaptiveLimit,
    pub(crate) progress: ResourceProgress,
}

impl Paging {
    pub(crate) fn new(concurrency: usize, progress: ResourceProgress) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            concurrency,
            limit: AdaptiveLimit::new(concurrency, adaptive_limit::DEFAULT_RECOVER_AFTER),
            progress,
        }
    }
}

/// With pages fetched concurrently, the responses held (in flight or answered, waiting for
/// an earlier page) per request the limit lets in flight. Case 3's extractor (20 ms a
/// request, 8 in flight), alternating: 0.70-0.81 s at 2 against 0.73-0.95 s at 1, where a
/// slow answer held up the requests after it (BENCHMARKS.md).
const ANSWERED_AHEAD: usize = 2;

/// One fetched page, handed from the fetcher to the publisher.
pub(crate) struct Page {
    pub(crate) number: u64,
    pub(crate) records: Records,
    /// The checkpoint once this page and all before it are acknowledged (`None`: unchanged).
    pub(crate) resume: Option<serde_json::Value>,
    /// The largest incremental cursor value among `records`.
    pub(crate) max: Option<serde_json::Value>,
    /// The de-duplication digests of the records at `max`.
    pub(crate) max_hashes: Vec<String>,
    /// The size of the response body the records came from.
    pub(crate) bytes: usize,
    /// A share of a memory budget the page holds until it is dropped (encoded), when the
    /// queue it waited in is bounded in bytes ([`crate::early`]).
    pub(crate) held: Option<tokio::sync::OwnedSemaphorePermit>,
}

#[derive(Default)]
pub(crate) struct FetchStats {
    pub(crate) pages: u64,
    pub(crate) retries: u64,
    pub(crate) bytes: u64,
}

impl FetchStats {
    fn add(&mut self, response: &crate::client::Response) {
        self.pages += 1;
        self.retries += u64::from(response.retries);
        self.bytes += response.bytes as u64;
    }
}

/// A checkpoint as it may be saved: a next link without the API key's query parameter (the
/// client adds it again to the rebuilt request).
fn scrub_checkpoint(client: &HttpClient, checkpoint: serde_json::Value) -> serde_json::Value {
    let Some(url) = checkpoint.get("url").and_then(serde_json::Value::as_str) else {
        return checkpoint;
    };
    let req = Request {
        method: Method::Get,
        path: url.to_owned(),
        params: Vec::new(),
        json: None,
        headers: Vec::new(),
        data: None,
        response_actions: Vec::new(),
    };
    match client.public_url(&req) {
        Ok(public) => serde_json::json!({ "url": public.as_str() }),
        Err(_) => checkpoint,
    }
}

/// What every request of one resource's fetcher shares: the client, the resource, the stop
/// signal and the resource's paging limits. A dependent resource's fetcher pages the
/// child's endpoint once per parent record with it (`dependent::fetch_children`).
#[derive(Clone, Copy)]
pub(crate) struct Fetcher<'a> {
    pub(crate) client: &'a HttpClient,
    pub(crate) resource: &'a ResourceConfig,
    pub(crate) cancel: &'a CancellationToken,
    pub(crate) paging: &'a Paging,
}

impl Fetcher<'_> {
    /// Pages `plan` from its first page, or from `resume_at` (a saved checkpoint), sending each
    /// page's records (those `filter` keeps) to `tx`; the pages fetched, retries and bytes.
    pub(crate) async fn pages(
        &self,
        plan: from_config::EndpointPlan,
        tx: mpsc::Sender<Page>,
        filter: Option<&CursorFilter>,
        resume_at: Option<serde_json::Value>,
    ) -> Result<FetchStats, ExtractError> {
        let Self {
            client,
            resource,
            cancel,
            paging,
        } = *self;
        let concurrency = paging.concurrency;
        let from_config::EndpointPlan {
            method,
            path,
            params,
            json,
            headers,
            data,
            selector,
            mut paginator,
            response_actions,
        } = plan;
        let template = RequestTemplate {
            method,
            path: &path,
            params: &params,
            json: json.as_ref(),
            headers: &headers,
            data: data.as_ref(),
            response_actions: &response_actions,
        };
        let request_for = |step: NextRequest| template.request(step);
        let fetch_err = |source| ExtractError::Fetch {
            resource: resource.name.clone(),
            source,
        };
        let take_records = |body: &mut serde_json::Value| match &selector {
            Some(s) => s.take_page(body),
            None => Ok(jsonpath::take_records_auto(body)),
        };
        // The page's records, and its body as the paginator sees it (without them).
        let split = |response: &mut Response| -> Result<(Records, serde_json::Value), _> {
            let Some(tape) = response.tape.take() else {
                let mut body = std::mem::take(&mut response.body);
                let records = take_records(&mut body)?;
                return Ok((Records::Values(records), body));
            };
            let root = tape.root();
            let found = match &selector {
                Some(s) => s.find_page(root),
                None => Some(Ok(jsonpath::find_records_auto(root))),
            };
            let Some(found) = found else {
                // A full JSONPath query: on the body as a `Value`.
                let mut body = tape.to_value_without(None);
                let records = take_records(&mut body)?;
                return Ok((Records::Values(records), body));
            };
            let (records, taken) = found?;
            let ids = records.into_iter().map(TapeRef::id).collect();
            let body = tape.to_value_without(taken.map(TapeRef::id));
            Ok((Records::Flat { tape, ids }, body))
        };
        let page_err = |page: u64, req: &Request, source| ExtractError::Paginate {
            resource: resource.name.clone(),
            page,
            url: client.display_url(req),
            source: PaginateError::redacted(source, |text| client.redact_text(text)),
        };
        let select_err = |page: u64, req: &Request, source| ExtractError::Select {
            resource: resource.name.clone(),
            page,
            url: client.display_url(req),
            source,
        };
        // The page's records in the incremental's range, and their largest cursor value.
        let keep = |records: Records| match filter {
            Some(f) => f.filter(records.into_values()).map(|mut kept| {
                let values = std::mem::take(&mut kept.records);
                (Records::Values(values), kept)
            }),
            None => Ok((records, Kept::default())),
        };
        let cursor_err = |page: u64, source| ExtractError::Cursor {
            resource: resource.name.clone(),
            page,
            source,
        };
        let max_pages = client.max_pages();
        // Next links may lead to the endpoint's own host (besides base_url's and the trusted).
        let endpoint_url = client
            .public_url(&request_for(NextRequest::unchanged()))
            .ok();
        let mut repeats = RepeatGuard::default();
        let mut stats = FetchStats::default();
        let mut next = match &resume_at {
            Some(checkpoint) => {
                paginator
                    .resume(checkpoint)
                    .map_err(|source| ExtractError::Resume {
                        resource: resource.name.clone(),
                        source,
                    })?
            }
            None => paginator.first(),
        };
        while let Some(step) = next {
            if cancel.is_cancelled() {
                break;
            }
            if let NextRequest::Url(url) = &step
                && !client.may_follow(url, endpoint_url.as_ref())
            {
                let source = PaginateError::ForeignLink {
                    link: url.to_string(),
                    host: url.host_str().unwrap_or_default().to_owned(),
                };
                let req = request_for(step);
                return Err(page_err(stats.pages, &req, source));
            }
            let req = request_for(step);
            let response = tokio::select! {
                r = client.fetch_page(&req, Some(&paging.limit)) => r,
                () = cancel.cancelled() => break,
            };
            let response = response.map_err(fetch_err)?;
            if response.ignored.is_some() {
                // response_actions: an empty page that ends the paging (logged by the client).
                stats.retries += u64::from(response.retries);
                break;
            }
            stats.add(&response);
            let mut response = response;
            let (records, body) =
                split(&mut response).map_err(|e| select_err(stats.pages, &req, e))?;
            paging.progress.page(records.len());
            tracing::debug!(target: LOG_TARGET, page = stats.pages, records = records.len(), "page fetched");
            // A repeated page is told before the paginator moves on (its error names this
            // page's position), but a repeated link or cursor, the more precise reason, wins.
            let same_page = records
                .repeat(&mut repeats, &resource.primary_key)
                .then(|| paginator.same_page(records.len()));
            let page_response = PageResponse {
                url: &response.url,
                headers: &response.headers,
                body: &body,
                records: records.len(),
            };
            next = paginator
                .next(&page_response)
                .map_err(|source| page_err(stats.pages, &req, source))?;
            if let Some(source) = same_page {
                return Err(page_err(stats.pages, &req, source));
            }
            let (records, kept) = keep(records).map_err(|e| cursor_err(stats.pages, e))?;
            if kept.stop && next.is_some() {
                // dlt's `row_order`: the records left the range; later pages hold none.
                tracing::debug!(target: LOG_TARGET, page = stats.pages, "records left the incremental range: the paging stops (row_order)");
                next = None;
            }
            // This page is the last one `max_pages` allows: published, then the error.
            let too_many = next.is_some() && stats.pages >= max_pages;
            // The first page may tell how many follow: then fetch them concurrently.
            let rest = match &next {
                Some(_) if stats.pages == 1 && concurrency > 1 && !too_many => {
                    paginator.remaining(&body)
                }
                _ => None,
            };
            let resume = match &next {
                Some(_) => paginator
                    .checkpoint()
                    .map(|cp| scrub_checkpoint(client, cp)),
                None => None,
            };
            let page = Page {
                number: stats.pages,
                records,
                resume,
                max: kept.max,
                max_hashes: kept.max_hashes,
                bytes: response.bytes,
                held: None,
            };
            if tx.send(page).await.is_err() {
                // The publisher stopped; its error is the one to report.
                break;
            }
            if too_many {
                let source = PaginateError::TooManyPages {
                    paginator: paginator.kind(),
                    max: max_pages,
                };
                return Err(page_err(stats.pages, &req, source));
            }
            if let Some(rest) = rest {
                let planned = rest.pages_left();
                tracing::debug!(
                    target: LOG_TARGET,
                    pages = planned,
                    concurrency,
                    "fetching the remaining pages concurrently"
                );
                paging.progress.total_pages(planned.saturating_add(1));
                let stops_on_empty = paginator.stops_on_empty_page();
                // Pages beyond `max_pages` are not requested; reaching them is an error below.
                let allowed = max_pages.saturating_sub(stats.pages);
                // The adaptive limit keeps at most `concurrency` requests in flight (fewer
                // while the API answers 429); `buffered` yields the responses in page order,
                // so each id's versions are published in order, and holds up to
                // [`ANSWERED_AHEAD`] times that many: the pages answered while an earlier one
                // is still on its way do not stop the next requests. The pages are made as the
                // stream pulls them: memory holds only those, whatever total the API claimed.
                let mut pages = futures::stream::iter(
                    rest.take(usize::try_from(allowed).unwrap_or(usize::MAX))
                        .map(|planned| {
                            let req = request_for(planned.request.clone());
                            let limit = &paging.limit;
                            async move {
                                let response = client.fetch_page(&req, Some(limit)).await;
                                (response, planned, req)
                            }
                        }),
                )
                .buffered(concurrency.saturating_mul(ANSWERED_AHEAD));
                let mut ended = false;
                let mut last: Option<Request> = None;
                loop {
                    let response = tokio::select! {
                        r = pages.next() => r,
                        () = cancel.cancelled() => {
                            ended = true;
                            None
                        }
                    };
                    let Some((response, planned_page, req)) = response else {
                        break;
                    };
                    let req = last.insert(req);
                    let response = response.map_err(fetch_err)?;
                    if response.ignored.is_some() {
                        stats.retries += u64::from(response.retries);
                        ended = true;
                        break;
                    }
                    stats.add(&response);
                    let mut response = response;
                    let (records, _) =
                        split(&mut response).map_err(|e| select_err(stats.pages, req, e))?;
                    paging.progress.page(records.len());
                    tracing::debug!(target: LOG_TARGET, page = stats.pages, records = records.len(), "page fetched");
                    if records.is_empty() && stops_on_empty {
                        // As sequential paging would: the data ended before `total` said.
                        if planned_page.resume.is_some() {
                            tracing::warn!(
                                target: LOG_TARGET,
                                page = stats.pages,
                                planned = planned.saturating_add(1),
                                "page {} is empty though the first response's total promised {} \
                             pages: the paging ends here (as dlt's does)",
                                stats.pages,
                                planned.saturating_add(1)
                            );
                        }
                        ended = true;
                        break;
                    }
                    if records.repeat(&mut repeats, &resource.primary_key) {
                        let source = planned_page.paginator.same_page(records.len());
                        return Err(page_err(stats.pages, req, source));
                    }
                    let (records, kept) = keep(records).map_err(|e| cursor_err(stats.pages, e))?;
                    let stop = kept.stop;
                    let page = Page {
                        number: stats.pages,
                        records,
                        resume: planned_page.resume,
                        max: kept.max,
                        max_hashes: kept.max_hashes,
                        bytes: response.bytes,
                        held: None,
                    };
                    if tx.send(page).await.is_err() {
                        ended = true;
                        break;
                    }
                    if stop {
                        tracing::debug!(target: LOG_TARGET, page = stats.pages, "records left the incremental range: the paging stops (row_order)");
                        ended = true;
                        break;
                    }
                }
                if !ended && planned > allowed {
                    let source = PaginateError::TooManyPages {
                        paginator: paginator.kind(),
                        max: max_pages,
                    };
                    let last = last.unwrap_or_else(|| request_for(NextRequest::unchanged()));
                    return Err(page_err(stats.pages, &last, source));
                }
                break;
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client;
    use common::retry::RetryPolicy;
    use common::secret::Secret;
    use serde_json::json;

    #[test]
    fn a_link_checkpoint_is_saved_without_the_api_key() {
        let client = HttpClient::new(
            "http://h/v1",
            client::Auth::Query {
                name: "api_key".into(),
                value: Secret::new("s3cret"),
            },
            reqwest::header::HeaderMap::new(),
            Duration::from_secs(1),
            RetryPolicy::default(),
        )
        .unwrap();
        let saved = scrub_checkpoint(
            &client,
            json!({"url": "http://h/v1/items?page=3&api_key=s3cret&size=5"}),
        );
        assert_eq!(saved, json!({"url": "http://h/v1/items?page=3&size=5"}));
        // The rebuilt request gets the key again.
        let req = Request {
            method: Method::Get,
            path: "http://h/v1/items?page=3&size=5".into(),
            params: Vec::new(),
            json: None,
            headers: Vec::new(),
            data: None,
            response_actions: Vec::new(),
        };
        assert_eq!(
            client.display_url(&req),
            "http://h/v1/items?page=3&size=5&api_key=***"
        );
        for other in [json!({"offset": 30}), json!({"cursor": "c"})] {
            assert_eq!(scrub_checkpoint(&client, other.clone()), other);
        }
    }
}
