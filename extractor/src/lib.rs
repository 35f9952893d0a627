//! The extractor: pages each configured resource, turns every record into Avro and
//! publishes it to the resource's topic keyed by its primary key.
//!
//! Per resource, two stages joined by a bounded channel: the fetcher pages the API
//! (`client` + `paginate`) while the publisher infers the schema, encodes and enqueues the
//! previous page (`publish`). A run succeeds only when the broker acknowledged every
//! record; records already acknowledged when a run fails stay valid (the loader merges).

pub mod auth;
pub mod build;
pub mod check;
pub mod checkpoint;
pub mod client;
pub mod dependent;
pub mod incremental;
pub mod limit;
pub mod metrics;
pub mod paginate;
pub mod progress;
pub mod publish;
pub mod select;
pub mod state;
pub mod summary;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::avro::Encoder;
use common::broker::BrokerWait;
use common::config::{PipelineConfig, ResourceConfig, WriteDisposition};
use common::schema::SchemaBuilder;
use common::secret::SecretResolver;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::checkpoint::Checkpoints;
use crate::client::{FetchError, HttpClient, Method, Request};
use crate::incremental::{CursorError, CursorFilter};
use crate::limit::AdaptiveLimit;
use crate::paginate::{NextRequest, PageResponse, PaginateError, RepeatGuard};
use crate::progress::{Progress, ResourceProgress};
use crate::publish::{Acks, Framing, PublishError, Publisher};
use crate::state::{ResourceState, RunStart, StateError};

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
    /// Parent records whose child requests run at once, per dependent resource.
    pub child_concurrency: usize,
    /// Start a new run even where the state holds an unfinished one (its checkpoint is
    /// ignored; the incremental cursor of the last complete run still applies).
    pub fresh: bool,
    /// Resources extracted at the same time (at least 1).
    pub resource_concurrency: usize,
    /// Progress bars (drawn only on a terminal).
    pub progress: Progress,
    /// How long a run waits for an unreachable broker before it fails.
    pub broker_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            resources: Vec::new(),
            partitions: 6,
            replication_factor: 1,
            page_concurrency: DEFAULT_PAGE_CONCURRENCY,
            child_concurrency: dependent::DEFAULT_CHILD_CONCURRENCY,
            fresh: false,
            resource_concurrency: DEFAULT_RESOURCE_CONCURRENCY,
            progress: Progress::hidden(),
            broker_timeout: DEFAULT_BROKER_TIMEOUT,
        }
    }
}

/// Resources extracted at the same time.
pub const DEFAULT_RESOURCE_CONCURRENCY: usize = 4;

/// Requests in flight per resource when the pages are known in advance.
pub const DEFAULT_PAGE_CONCURRENCY: usize = 8;

/// How long a run waits for an unreachable broker by default (`--broker-timeout`).
pub const DEFAULT_BROKER_TIMEOUT: Duration = Duration::from_secs(60);
/// What sets [`RunOptions::broker_timeout`], for the error when it runs out.
pub const BROKER_TIMEOUT_SETTING: &str = "--broker-timeout / EXTRACTOR_BROKER_TIMEOUT";

/// How long reading the state topic at the start may take.
const STATE_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a resource's checkpoint is saved while pages are acknowledged.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// What one resource's run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceReport {
    pub resource: String,
    pub topic: String,
    /// The run's id: ms since the epoch when it started, or the resumed run's.
    pub run_id: u64,
    /// Whether the run continued an unfinished one from its checkpoint.
    pub resumed: bool,
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
    #[error("resource `{resource}`, page {page} ({url})")]
    Select {
        resource: String,
        page: u64,
        url: String,
        #[source]
        source: select::SelectError,
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
    #[error("resource `{resource}`, page {page}: incremental")]
    Cursor {
        resource: String,
        page: u64,
        #[source]
        source: CursorError,
    },
    #[error("resource `{resource}`: resuming from the saved checkpoint")]
    Resume {
        resource: String,
        #[source]
        source: PaginateError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Kafka(#[from] PublishError),
    #[error(transparent)]
    Dependent(#[from] dependent::DependentError),
    #[error("for the `{parent}` record {parent_id}")]
    Child {
        parent: String,
        parent_id: String,
        #[source]
        source: Box<ExtractError>,
    },
    #[error(
        "interrupted: the run stopped before all pages were fetched (everything sent was acknowledged)"
    )]
    Interrupted,
    #[error("interrupted while {0}, before any page was fetched")]
    InterruptedSetup(String),
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
    // The selected resources, and the parents they need (paged, published only if selected).
    let resources = dependent::with_parents(cfg, &opts.resources)?;
    let client = build::http_client(&cfg.client, secrets)?;
    let registry = build::schema_registry(cfg, secrets)?;
    let servers = cfg
        .kafka
        .get("bootstrap.servers")
        .map_or("", String::as_str);
    let wait = BrokerWait::start(servers, Some(opts.broker_timeout), BROKER_TIMEOUT_SETTING);
    let publisher = Publisher::new(&cfg.kafka, &cfg.schema_topic, registry)?;
    let topics: Vec<String> = resources
        .iter()
        .filter(|(_, _, publish)| *publish)
        .map(|(r, _, _)| r.topic.clone())
        .collect();
    let state_topic = state::topic(&cfg.pipeline_name);
    let setup = Instant::now();
    // Until the first page, a stop signal ends the run at once.
    let interrupted = |step: &str| ExtractError::InterruptedSetup(step.to_owned());
    tokio::select! {
        reached = publisher.wait_for_broker(wait) => reached?,
        () = cancel.cancelled() => {
            return Err(interrupted(&format!("waiting for the Kafka broker at {servers}")));
        }
    }
    tokio::select! {
        created = publisher.ensure_topics(
            &topics,
            &state_topic,
            opts.partitions,
            opts.replication_factor,
        ) => created?,
        () = cancel.cancelled() => return Err(interrupted("creating the topics")),
    }
    tracing::debug!(elapsed_ms = setup.elapsed().as_millis(), "topics ready");
    let states = {
        let (settings, topic) = (cfg.kafka.clone(), state_topic.clone());
        let read =
            tokio::task::spawn_blocking(move || state::read(&settings, &topic, STATE_READ_TIMEOUT));
        tokio::select! {
            read = read => read.map_err(|e| StateError::Read {
                topic: state_topic.clone(),
                message: format!("reader task failed: {e}"),
            })??,
            () = cancel.cancelled() => return Err(interrupted("reading the state topic")),
        }
    };
    tracing::debug!(
        elapsed_ms = setup.elapsed().as_millis(),
        states = states.len(),
        "state read"
    );
    let new_run_id = common::runs::new_run_id();

    // A channel from each parent to each of its children.
    let mut feeds: HashMap<&str, Vec<mpsc::Sender<dependent::ParentPage>>> = HashMap::new();
    let mut sources = Vec::new();
    for (i, (r, plan, publish)) in resources.into_iter().enumerate() {
        let source = match r.parent.as_deref().and_then(|p| cfg.resource(p)) {
            Some(parent) => {
                let (tx, rx) = mpsc::channel(dependent::PARENT_PAGES_QUEUED);
                feeds.entry(parent.name.as_str()).or_default().push(tx);
                let index = cfg.resources.iter().position(|c| c.name == r.name);
                let child = dependent::ChildPlan::new(index.unwrap_or(i), r, parent, plan)?;
                dependent::Source::Parents(child, rx)
            }
            None => dependent::Source::Endpoint(plan),
        };
        sources.push((r, source, publish));
    }
    // A parent and its children feed each other through bounded channels, so a family
    // runs together and counts once against `resource_concurrency`.
    let mut families: Vec<(&str, Vec<_>)> = Vec::new();
    for (i, (r, source, publish)) in sources.into_iter().enumerate() {
        let key = state::key(&cfg.pipeline_name, &r.name);
        let start = state::plan_run(
            states.get(&key),
            r.endpoint.incremental.as_ref(),
            opts.fresh,
            new_run_id,
        );
        let sink = StateSink {
            publisher: &publisher,
            topic: state_topic.clone(),
            key,
        };
        let span = tracing::info_span!("resource", resource = %r.name, topic = %r.topic, run_id = start.run_id);
        let children = feeds.remove(r.name.as_str()).unwrap_or_default();
        let progress = opts.progress.resource(&r.name);
        let run = extract_resource(
            &client,
            &publisher,
            r,
            source,
            children,
            publish,
            cancel.clone(),
            opts,
            start.run_id,
            start,
            sink,
            Paging::new(opts.page_concurrency, progress),
        )
        .map(move |result| (i, publish, result))
        .instrument(span);
        let root = dependent::root_of(cfg, r);
        match families.iter_mut().find(|(name, _)| *name == root) {
            Some((_, runs)) => runs.push(run),
            None => families.push((root, vec![run])),
        }
    }
    let mut results: Vec<_> = futures::stream::iter(
        families
            .into_iter()
            .map(|(_, runs)| futures::future::join_all(runs)),
    )
    .buffer_unordered(opts.resource_concurrency.max(1))
    .flat_map(futures::stream::iter)
    .collect()
    .await;
    results.sort_by_key(|(i, _, _)| *i);
    // Whatever happened, wait for what was sent: acknowledged records stay valid.
    tracing::debug!("waiting for every acknowledgement");
    let finished = publisher.finish().await;
    tracing::debug!(
        ok = finished.is_ok(),
        "every message acknowledged or failed"
    );
    if finished.is_ok() {
        // Everything was acknowledged: the process need not wait for the producer's end.
        publish::release(publisher);
    }

    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for (_, publish, result) in results {
        match result {
            Ok(report) if publish => reports.push(report),
            Ok(_) => {}
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
    /// The checkpoint once this page and all before it are acknowledged (`None`: unchanged).
    resume: Option<serde_json::Value>,
    /// The largest incremental cursor value among `records`.
    max: Option<serde_json::Value>,
}

/// Where one resource's state records go.
struct StateSink<'a> {
    publisher: &'a Publisher,
    topic: String,
    key: String,
}

impl StateSink<'_> {
    async fn write(&self, state: &ResourceState) -> Result<(), PublishError> {
        let value = serde_json::to_vec(state).map_err(|e| PublishError::Produce {
            topic: self.topic.clone(),
            message: e.to_string(),
        })?;
        tracing::debug!(checkpoint = ?state.checkpoint, complete = state.complete, "saving state");
        self.publisher
            .send(&self.topic, self.key.as_bytes(), &value)
            .await
    }
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

/// Pages one resource (its endpoint, or once per parent record), feeds the pages to its
/// children, publishes them if `publish`, and keeps its state (checkpoint, cursor) in the
/// state topic.
#[allow(clippy::too_many_arguments)]
async fn extract_resource(
    client: &HttpClient,
    publisher: &Publisher,
    resource: &ResourceConfig,
    mut source: dependent::Source,
    children: Vec<mpsc::Sender<dependent::ParentPage>>,
    publish: bool,
    cancel: CancellationToken,
    opts: &RunOptions,
    run_id: u64,
    start: RunStart,
    sink: StateSink<'_>,
    paging: Paging,
) -> Result<ResourceReport, ExtractError> {
    let started = Instant::now();
    let publish_err = |source| ExtractError::Publish {
        resource: resource.name.clone(),
        source,
    };
    // A `replace` run's records carry its id, and its end is marked on every partition
    // (an unpublished parent has no run).
    let run =
        (publish && resource.write_disposition == WriteDisposition::Replace).then_some(run_id);
    let incremental = resource.endpoint.incremental.as_ref();
    let filter = match (incremental, &mut source) {
        (Some(inc), dependent::Source::Endpoint(plan)) => {
            let key = format!("resource `{}`: incremental.cursor_path", resource.name);
            plan.params = incremental::request_params(
                inc,
                std::mem::take(&mut plan.params),
                start.start_value.as_ref(),
            );
            Some(CursorFilter::new(inc, start.start_value.clone(), &key))
        }
        _ => None,
    }
    .transpose()
    .map_err(build::BuildError::from)?;
    if start.resumed {
        tracing::info!(checkpoint = ?start.checkpoint, start_value = ?start.start_value, "resuming the unfinished run");
    } else {
        tracing::info!(start_value = ?start.start_value, "starting a new run");
    }
    let state = |checkpoints: &Checkpoints, cursor: Option<serde_json::Value>, complete: bool| {
        ResourceState {
            cursor,
            run: run_id,
            checkpoint: (!complete)
                .then(|| checkpoints.checkpoint.clone())
                .flatten(),
            complete,
            last_value: (!complete)
                .then(|| checkpoints.last_value.clone())
                .flatten(),
        }
    };
    let mut checkpoints = Checkpoints::new(start.checkpoint.clone(), start.last_value.clone());
    sink.write(&state(&checkpoints, start.state_cursor.clone(), false))
        .await
        .map_err(publish_err)?;

    let (tx, rx) = mpsc::channel::<Page>(4);
    let fetch = async {
        match source {
            dependent::Source::Endpoint(plan) => {
                fetch_pages(
                    client,
                    resource,
                    plan,
                    tx,
                    cancel.clone(),
                    &paging,
                    filter.as_ref(),
                    start.checkpoint.clone(),
                )
                .await
            }
            dependent::Source::Parents(child, parents) => {
                dependent::fetch_children(
                    client,
                    resource,
                    &child,
                    parents,
                    tx,
                    cancel.clone(),
                    &paging,
                    opts.child_concurrency.max(1),
                )
                .await
            }
        }
    };
    let (publish_tx, publish_rx) = mpsc::channel::<Page>(4);
    let feed = dependent::feed_children(rx, children, publish.then_some(publish_tx));
    let publishing = publish_pages(
        publisher,
        resource,
        publish_rx,
        &mut checkpoints,
        &sink,
        &start,
        run_id,
    );
    let (fetched, (), published) = tokio::join!(fetch, feed, publishing);
    paging.progress.finish();
    let limits = paging.limit.stats();
    // A publishing failure ends the fetcher (its channel closes), so report that first.
    let records = published?;
    // Whatever the fetcher did, save how far the acknowledged pages go.
    let settled = checkpoints.settle().await;
    let complete = settled && fetched.is_ok() && !cancel.is_cancelled();
    let cursor = if complete {
        start.final_cursor(incremental, checkpoints.last_value.clone())
    } else {
        start.state_cursor.clone()
    };
    sink.write(&state(&checkpoints, cursor, complete))
        .await
        .map_err(publish_err)?;
    let stats = fetched?;
    if let Some(run) = run
        && !cancel.is_cancelled()
    {
        let partitions = publisher
            .end_run(&resource.topic, run, records)
            .await
            .map_err(|source| ExtractError::Publish {
                resource: resource.name.clone(),
                source,
            })?;
        tracing::info!(
            run,
            partitions,
            records,
            "replace run ended on every partition"
        );
    }
    metrics::resource_done(&resource.name, stats.pages, records);
    let report = ResourceReport {
        resource: resource.name.clone(),
        topic: resource.topic.clone(),
        run_id,
        resumed: start.resumed,
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
        published = publish,
        complete,
        throttled = report.throttled,
        lowest_page_concurrency = limits.lowest,
        "resource done"
    );
    Ok(report)
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
        response_actions: Vec::new(),
    };
    match client.public_url(&req) {
        Ok(public) => serde_json::json!({ "url": public.as_str() }),
        Err(_) => checkpoint,
    }
}

#[allow(clippy::too_many_arguments)]
async fn fetch_pages(
    client: &HttpClient,
    resource: &ResourceConfig,
    plan: build::EndpointPlan,
    tx: mpsc::Sender<Page>,
    cancel: CancellationToken,
    paging: &Paging,
    filter: Option<&CursorFilter>,
    resume_at: Option<serde_json::Value>,
) -> Result<FetchStats, ExtractError> {
    let concurrency = paging.concurrency;
    let build::EndpointPlan {
        method,
        path,
        params,
        json,
        selector,
        mut paginator,
        response_actions,
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
                response_actions: response_actions.clone(),
            }
        }
        NextRequest::Url(url) => Request {
            method,
            path: url.to_string(),
            params: Vec::new(),
            json: json.clone(),
            response_actions: response_actions.clone(),
        },
        NextRequest::Json(body) => Request {
            method,
            path: path.clone(),
            params: params.clone(),
            json: Some(body),
            response_actions: response_actions.clone(),
        },
    };
    let fetch_err = |source| ExtractError::Fetch {
        resource: resource.name.clone(),
        source,
    };
    let take_records = |body: &mut serde_json::Value| match &selector {
        Some(s) => s.take_page(body),
        None => Ok(select::take_records_auto(body)),
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
    let keep = |records: Vec<serde_json::Value>| match filter {
        Some(f) => f.filter(records),
        None => Ok((records, None)),
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
            r = client.fetch_limited(&req, Some(&paging.limit)) => r,
            () = cancel.cancelled() => break,
        };
        let response = response.map_err(fetch_err)?;
        if response.ignored.is_some() {
            // response_actions: an empty page that ends the paging (logged by the client).
            stats.retries += u64::from(response.retries);
            break;
        }
        stats.add(&response);
        let mut body = response.body;
        let records = take_records(&mut body).map_err(|e| select_err(stats.pages, &req, e))?;
        paging.progress.page(records.len());
        tracing::debug!(page = stats.pages, records = records.len(), "page fetched");
        // A repeated page is told before the paginator moves on (its error names this
        // page's position), but a repeated link or cursor, the more precise reason, wins.
        let same_page = repeats
            .repeats(&records, &resource.primary_key)
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
        let (records, max) = keep(records).map_err(|e| cursor_err(stats.pages, e))?;
        let page = Page {
            number: stats.pages,
            records,
            resume,
            max,
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
                pages = planned,
                concurrency,
                "fetching the remaining pages concurrently"
            );
            paging.progress.total_pages(planned.saturating_add(1));
            let stops_on_empty = paginator.stops_on_empty_page();
            // Pages beyond `max_pages` are not requested; reaching them is an error below.
            let allowed = max_pages.saturating_sub(stats.pages);
            // `buffered` keeps at most `concurrency` requests in flight and yields the
            // responses in page order, so each id's versions are published in order; the
            // adaptive limit lowers the number actually sent while the API answers 429. The
            // pages are made as the stream pulls them: memory holds only those in flight,
            // whatever total the API claimed.
            let mut pages = futures::stream::iter(
                rest.take(usize::try_from(allowed).unwrap_or(usize::MAX))
                    .map(|planned| {
                        let req = request_for(planned.request.clone());
                        let limit = &paging.limit;
                        async move {
                            let response = client.fetch_limited(&req, Some(limit)).await;
                            (response, planned, req)
                        }
                    }),
            )
            .buffered(concurrency);
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
                let mut body = response.body;
                let records =
                    take_records(&mut body).map_err(|e| select_err(stats.pages, req, e))?;
                paging.progress.page(records.len());
                tracing::debug!(page = stats.pages, records = records.len(), "page fetched");
                if records.is_empty() && stops_on_empty {
                    // As sequential paging would: the data ended before `total` said.
                    if planned_page.resume.is_some() {
                        tracing::warn!(
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
                if repeats.repeats(&records, &resource.primary_key) {
                    let source = planned_page.paginator.same_page(records.len());
                    return Err(page_err(stats.pages, req, source));
                }
                let (records, max) = keep(records).map_err(|e| cursor_err(stats.pages, e))?;
                let page = Page {
                    number: stats.pages,
                    records,
                    resume: planned_page.resume,
                    max,
                };
                if tx.send(page).await.is_err() {
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

/// Encodes and sends each page, and saves the checkpoint (state `complete: false`) whenever
/// the acknowledged prefix of pages grows.
async fn publish_pages(
    publisher: &Publisher,
    resource: &ResourceConfig,
    mut rx: mpsc::Receiver<Page>,
    checkpoints: &mut Checkpoints,
    sink: &StateSink<'_>,
    start: &RunStart,
    run_id: u64,
) -> Result<u64, ExtractError> {
    // A `replace` run's records carry its id.
    let run_text =
        (resource.write_disposition == WriteDisposition::Replace).then(|| run_id.to_string());
    let keyed = !resource.primary_key.is_empty();
    let mut builder = SchemaBuilder::new(
        &resource.name,
        resource.primary_key.clone(),
        resource.columns.clone(),
    )
    .with_child_tables(resource.max_table_nesting);
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
    let save = async |checkpoints: &mut Checkpoints| {
        if !checkpoints.advance() {
            return Ok(());
        }
        sink.write(&ResourceState {
            cursor: start.state_cursor.clone(),
            run: run_id,
            checkpoint: checkpoints.checkpoint.clone(),
            complete: false,
            last_value: checkpoints.last_value.clone(),
        })
        .await
        .map_err(publish_err)
    };
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let page = tokio::select! {
            page = rx.recv() => page,
            _ = tick.tick() => {
                save(checkpoints).await?;
                continue;
            }
        };
        let Some(page) = page else {
            break;
        };
        let acks = Arc::new(Acks::default());
        let rows = builder
            .add_page(&page.records)
            .map_err(|source| ExtractError::Schema {
                resource: resource.name.clone(),
                page: page.number,
                source,
            })?;
        if rows.rows.is_empty() {
            checkpoints.push(acks, page.resume, page.max);
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
                .send_tracked(
                    &resource.topic,
                    keyed.then_some(key.as_bytes()),
                    &buf,
                    run_text.as_deref(),
                    &acks,
                )
                .await
                .map_err(publish_err)?;
        }
        records += rows.rows.len() as u64;
        metrics::records_sent(&resource.name, rows.rows.len() as u64);
        checkpoints.push(acks, page.resume, page.max);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
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
