//! The extractor: pages each configured resource, turns every record into Avro and
//! publishes it to the resource's topic keyed by its primary key.
//!
//! Per resource, two stages joined by a bounded channel: the fetcher pages the API
//! (`client` + `paginate`) while the publisher infers the schema, encodes and enqueues the
//! previous page (`publish`). A run succeeds only when the broker acknowledged every
//! record; records already acknowledged when a run fails stay valid (the loader merges).

pub mod auth;
pub mod build;
pub mod client;
pub mod limit;
pub mod paginate;
pub mod progress;
pub mod publish;
pub mod select;
pub mod summary;

use std::time::Instant;

use common::avro::Encoder;
use common::config::{PipelineConfig, ResourceConfig};
use common::schema::SchemaBuilder;
use common::secret::SecretResolver;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::{FetchError, HttpClient, Request};
use crate::limit::AdaptiveLimit;
use crate::paginate::{NextRequest, PageResponse, PaginateError};
use crate::progress::{Progress, ResourceProgress};
use crate::publish::{Framing, PublishError, Publisher};

/// Choices that are not part of the config document.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Resource names to run; empty runs all.
    pub resources: Vec<String>,
    /// Partitions and replication factor for topics the extractor creates.
    pub partitions: i32,
    pub replication_factor: i32,
    /// Requests in flight per resource once the first page has told how many pages there
    /// are (offset or page_number paging with a total); 1 pages sequentially. The most: a
    /// 429 answer halves the resource's limit, which then grows back slowly (`limit`).
    pub page_concurrency: usize,
    /// Resources extracted at the same time (at least 1).
    pub resource_concurrency: usize,
    /// Progress bars (drawn only on a terminal).
    pub progress: Progress,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            resources: Vec::new(),
            partitions: 6,
            replication_factor: 1,
            page_concurrency: DEFAULT_PAGE_CONCURRENCY,
            resource_concurrency: DEFAULT_RESOURCE_CONCURRENCY,
            progress: Progress::hidden(),
        }
    }
}

/// Resources extracted at the same time.
pub const DEFAULT_RESOURCE_CONCURRENCY: usize = 4;

/// Requests in flight per resource when the pages are known in advance.
pub const DEFAULT_PAGE_CONCURRENCY: usize = 8;

/// What one resource's run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceReport {
    pub resource: String,
    pub topic: String,
    pub pages: u64,
    pub records: u64,
    pub retries: u64,
    /// 429 Too Many Requests answers (each one is also a retry, or the error that ended the run).
    pub throttled: u64,
    /// Response bytes read from the API.
    pub bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Build(#[from] build::BuildError),
    #[error("resource `{resource}`")]
    Fetch {
        resource: String,
        #[source]
        source: FetchError,
    },
    #[error("resource `{resource}`, page {page} ({url})")]
    Paginate {
        resource: String,
        page: u64,
        url: String,
        #[source]
        source: PaginateError,
    },
    #[error("resource `{resource}`, page {page}")]
    Schema {
        resource: String,
        page: u64,
        #[source]
        source: common::schema::SchemaError,
    },
    #[error("resource `{resource}`: encoding to Avro")]
    Avro {
        resource: String,
        #[source]
        source: common::avro::AvroError,
    },
    #[error("resource `{resource}`")]
    Publish {
        resource: String,
        #[source]
        source: PublishError,
    },
    #[error(transparent)]
    Kafka(#[from] PublishError),
    #[error(
        "interrupted: the run stopped before all pages were fetched (everything sent was acknowledged)"
    )]
    Interrupted,
    #[error("{} resources failed: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<ExtractError>),
}

/// Runs the selected resources concurrently (at most `opts.resource_concurrency` at a time)
/// and waits for the broker to acknowledge everything sent. Returns the per-resource
/// reports in config order, or the first failure(s).
pub async fn run(
    cfg: &PipelineConfig,
    secrets: &SecretResolver,
    opts: &RunOptions,
    cancel: CancellationToken,
) -> Result<Vec<ResourceReport>, ExtractError> {
    let resources = build::select_resources(cfg, &opts.resources)?;
    let client = build::http_client(&cfg.client, secrets)?;
    let registry = build::schema_registry(cfg, secrets)?;
    let publisher = Publisher::new(&cfg.kafka, &cfg.schema_topic, registry)?;
    let topics: Vec<String> = resources.iter().map(|(r, _)| r.topic.clone()).collect();
    publisher
        .ensure_topics(&topics, opts.partitions, opts.replication_factor)
        .await?;

    let runs = resources.into_iter().enumerate().map(|(i, (r, plan))| {
        let span = tracing::info_span!("resource", resource = %r.name, topic = %r.topic);
        let progress = opts.progress.resource(&r.name);
        extract_resource(
            &client,
            &publisher,
            r,
            plan,
            cancel.clone(),
            Paging::new(opts.page_concurrency, progress),
        )
        .instrument(span)
        .map(move |result| (i, result))
    });
    let mut results: Vec<_> = futures::stream::iter(runs)
        .buffer_unordered(opts.resource_concurrency.max(1))
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    // Whatever happened, wait for what was sent: acknowledged records stay valid.
    let finished = publisher.finish().await;

    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for (_, result) in results {
        match result {
            Ok(report) => reports.push(report),
            Err(e) => errors.push(e),
        }
    }
    if let Err(e) = finished {
        errors.push(ExtractError::Kafka(e));
    }
    match errors.len() {
        0 if cancel.is_cancelled() => Err(ExtractError::Interrupted),
        0 => Ok(reports),
        1 => Err(errors.remove(0)),
        _ => Err(ExtractError::Several(errors)),
    }
}

/// How one resource's pages are fetched: at most `concurrency` at a time once the pages are
/// known, fewer while the API answers 429 (`limit`), shown on `progress`.
struct Paging {
    concurrency: usize,
    limit: AdaptiveLimit,
    progress: ResourceProgress,
}

impl Paging {
    fn new(concurrency: usize, progress: ResourceProgress) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            concurrency,
            limit: AdaptiveLimit::new(concurrency, limit::DEFAULT_RECOVER_AFTER),
            progress,
        }
    }
}

/// One fetched page, handed from the fetcher to the publisher.
struct Page {
    number: u64,
    records: Vec<serde_json::Value>,
}

#[derive(Default)]
struct FetchStats {
    pages: u64,
    retries: u64,
    bytes: u64,
}

impl FetchStats {
    fn add(&mut self, response: &crate::client::Response) {
        self.pages += 1;
        self.retries += u64::from(response.retries);
        self.bytes += response.bytes as u64;
    }
}

async fn extract_resource(
    client: &HttpClient,
    publisher: &Publisher,
    resource: &ResourceConfig,
    plan: build::EndpointPlan,
    cancel: CancellationToken,
    paging: Paging,
) -> Result<ResourceReport, ExtractError> {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<Page>(4);
    let fetch = fetch_pages(client, resource, plan, tx, cancel, &paging);
    let publish = publish_pages(publisher, resource, rx);
    let (fetched, published) = tokio::join!(fetch, publish);
    paging.progress.finish();
    let limits = paging.limit.stats();
    // A publishing failure ends the fetcher (its channel closes), so report that first.
    let records = published?;
    let stats = fetched?;
    let report = ResourceReport {
        resource: resource.name.clone(),
        topic: resource.topic.clone(),
        pages: stats.pages,
        records,
        retries: stats.retries,
        throttled: limits.throttled,
        bytes: stats.bytes,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(
        pages = report.pages,
        records = report.records,
        retries = report.retries,
        throttled = report.throttled,
        lowest_page_concurrency = limits.lowest,
        "resource done"
    );
    Ok(report)
}

async fn fetch_pages(
    client: &HttpClient,
    resource: &ResourceConfig,
    plan: build::EndpointPlan,
    tx: mpsc::Sender<Page>,
    cancel: CancellationToken,
    paging: &Paging,
) -> Result<FetchStats, ExtractError> {
    let concurrency = paging.concurrency;
    let build::EndpointPlan {
        method,
        path,
        params,
        json,
        selector,
        mut paginator,
    } = plan;
    let request_for = |step: NextRequest| match step {
        NextRequest::Params(page_params) => {
            // The paginator's params replace the endpoint's of the same name.
            let mut all_params: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| !page_params.iter().any(|(p, _)| p == k))
                .cloned()
                .collect();
            all_params.extend(page_params);
            Request {
                method,
                path: path.clone(),
                params: all_params,
                json: json.clone(),
            }
        }
        NextRequest::Url(url) => Request {
            method,
            path: url.to_string(),
            params: Vec::new(),
            json: json.clone(),
        },
        NextRequest::Json(body) => Request {
            method,
            path: path.clone(),
            params: params.clone(),
            json: Some(body),
        },
    };
    let fetch_err = |source| ExtractError::Fetch {
        resource: resource.name.clone(),
        source,
    };
    let take_records = |body: &mut serde_json::Value| match &selector {
        Some(s) => s.take_records(body),
        None => select::take_records_auto(body),
    };
    let mut stats = FetchStats::default();
    let mut next = paginator.first();
    while let Some(step) = next {
        if cancel.is_cancelled() {
            break;
        }
        let req = request_for(step);
        let response = tokio::select! {
            r = client.fetch_limited(&req, Some(&paging.limit)) => r,
            () = cancel.cancelled() => break,
        };
        let response = response.map_err(fetch_err)?;
        stats.add(&response);
        let mut body = response.body;
        let records = take_records(&mut body);
        paging.progress.page(records.len());
        tracing::debug!(page = stats.pages, records = records.len(), "page fetched");
        let page_response = PageResponse {
            url: &response.url,
            headers: &response.headers,
            body: &body,
            records: records.len(),
        };
        next = paginator
            .next(&page_response)
            .map_err(|source| ExtractError::Paginate {
                resource: resource.name.clone(),
                page: stats.pages,
                url: client.display_url(&req),
                source: source.redacted(|text| client.redact_text(text)),
            })?;
        // The first page may tell how many follow: then fetch them concurrently.
        let rest = match &next {
            Some(_) if stats.pages == 1 && concurrency > 1 => paginator.remaining(&body),
            _ => None,
        };
        let page = Page {
            number: stats.pages,
            records,
        };
        if tx.send(page).await.is_err() {
            // The publisher stopped; its error is the one to report.
            break;
        }
        if let Some(rest) = rest {
            tracing::debug!(
                pages = rest.len(),
                concurrency,
                "fetching the remaining pages concurrently"
            );
            paging.progress.total_pages(1 + rest.len() as u64);
            let stops_on_empty = paginator.stops_on_empty_page();
            // `buffered` keeps at most `concurrency` requests in flight and yields the
            // responses in page order, so each id's versions are published in order; the
            // adaptive limit lowers the number actually sent while the API answers 429.
            let mut pages = futures::stream::iter(rest.into_iter().map(|step| {
                let req = request_for(step);
                let limit = &paging.limit;
                async move { client.fetch_limited(&req, Some(limit)).await }
            }))
            .buffered(concurrency);
            loop {
                let response = tokio::select! {
                    r = pages.next() => r,
                    () = cancel.cancelled() => None,
                };
                let Some(response) = response else {
                    break;
                };
                let response = response.map_err(fetch_err)?;
                stats.add(&response);
                let mut body = response.body;
                let records = take_records(&mut body);
                paging.progress.page(records.len());
                if records.is_empty() && stops_on_empty {
                    // As sequential paging would: the data ended before `total` said.
                    break;
                }
                let page = Page {
                    number: stats.pages,
                    records,
                };
                if tx.send(page).await.is_err() {
                    break;
                }
            }
            break;
        }
    }
    Ok(stats)
}

async fn publish_pages(
    publisher: &Publisher,
    resource: &ResourceConfig,
    mut rx: mpsc::Receiver<Page>,
) -> Result<u64, ExtractError> {
    let mut builder = SchemaBuilder::new(
        &resource.name,
        resource.primary_key.clone(),
        resource.columns.clone(),
    );
    let mut encoder: Option<(Encoder, Framing)> = None;
    let mut buf = Vec::with_capacity(4096);
    let mut records = 0u64;
    let avro_err = |source| ExtractError::Avro {
        resource: resource.name.clone(),
        source,
    };
    let publish_err = |source| ExtractError::Publish {
        resource: resource.name.clone(),
        source,
    };
    while let Some(page) = rx.recv().await {
        let rows = builder
            .add_page(&page.records)
            .map_err(|source| ExtractError::Schema {
                resource: resource.name.clone(),
                page: page.number,
                source,
            })?;
        if rows.rows.is_empty() {
            continue;
        }
        if rows.schema_changed || encoder.is_none() {
            let enc = Encoder::new(builder.schema()).map_err(avro_err)?;
            let framing = publisher
                .framing(&resource.topic, &enc)
                .await
                .map_err(publish_err)?;
            encoder = Some((enc, framing));
        }
        let Some((enc, framing)) = &encoder else {
            continue;
        };
        for (row, key) in rows.rows.iter().zip(&rows.keys) {
            buf.clear();
            match framing {
                Framing::SingleObject => enc.encode_single_object(row, &mut buf),
                Framing::Confluent { schema_id } => enc.encode_confluent(*schema_id, row, &mut buf),
            }
            .map_err(avro_err)?;
            publisher
                .send(&resource.topic, key.as_bytes(), &buf)
                .await
                .map_err(publish_err)?;
        }
        records += rows.rows.len() as u64;
    }
    Ok(records)
}
