//! The extractor: pages each configured resource, turns every record into Avro and
//! publishes it to the resource's topic keyed by its primary key.
//!
//! [`run`] (below) prepares the broker, the topics and the state, then runs the resources.
//! Per resource (`resource_run`), two stages joined by a bounded channel: the fetcher pages
//! the API (`fetch`: `client` + `paginate`) while the publisher stage infers the schema,
//! encodes and enqueues the previous page through the Kafka producer (`publish`). A run
//! succeeds only when the broker acknowledged every record; records already acknowledged
//! when a run fails stay valid (the loader merges). Where the broker supports them, each
//! resource publishes its records and its checkpoint in Kafka transactions (`transaction`).

// One resource's run.
pub mod acked_checkpoint; // which checkpoint the broker's acknowledgements allow saving
pub mod dependent; // child resources, paged once per parent record
mod early; // a resource's first pages, fetched while the run sets up
mod fetch; // the fetcher stage: an endpoint's pages, sequential or concurrent
pub mod incremental; // the incremental cursor: record filter, next start
pub mod last_schema; // each resource's last writer schema, the start of its run's schema
pub mod placeholders; // dlt's placeholders filled into path, params and JSON body
pub mod publish; // the Kafka producer, the topics, the writer schemas (and its transactions)
mod records; // a page's records: read flat from its body, or as values
mod resource_run; // state at start and end, fetcher and publisher stages joined, the report
mod send_pages; // pages to rows, Avro and Kafka; commits in flight while the next encode
pub mod state_topic; // the state kept in Kafka: read at the start, written as runs go
pub mod transaction; // records and checkpoint committed together, per commit interval

// Talking to the API.
pub mod adaptive_limit; // requests in flight per resource, halved on 429
pub mod auth; // OAuth2 client credentials
pub mod client; // HTTP with retries, rate limit, response actions, secret redaction
pub mod jsonpath; // data_selector and the paginators' *_path keys
pub mod paginate; // one file per paginator type

// From the config document to the running parts.
pub mod check; // `extractor --check`: every problem before a run, `--fetch` samples
pub mod from_config; // the HTTP client, request plans and paginators, secrets resolved

// For people and monitoring.
pub mod metrics; // every Prometheus metric, one function per event
pub mod progress_bars; // per-resource bars on a terminal
pub mod summary; // the end-of-run table

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::broker::{BrokerContext, BrokerWait};
use common::config::PipelineConfig;
use common::secret::SecretResolver;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::BaseConsumer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::client::FetchError;
use crate::early::EarlyPages;
use crate::fetch::{Fetcher, Paging};
use crate::incremental::CursorError;
use crate::paginate::PaginateError;
use crate::progress_bars::Progress;
use crate::publish::{PublishError, Publisher};
use crate::resource_run::{ResourceRun, StateSink};
use crate::state_topic::{ResourceState, StateError};

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
    /// 429 answer halves the resource's limit, which then grows back slowly (`adaptive_limit`).
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
    /// Publish each resource's records and checkpoint in Kafka transactions, where the
    /// broker supports them (`--no-transactions` turns them off).
    pub transactions: bool,
    /// When a resource's open transaction is committed.
    pub commit: transaction::CommitInterval,
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
            transactions: true,
            commit: transaction::CommitInterval::default(),
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
    Build(#[from] from_config::BuildError),
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
        source: jsonpath::SelectError,
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
    LastSchema(#[from] last_schema::LastSchemaError),
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

/// One transactional producer per resource, its `transactional.id` derived from the
/// pipeline and the resource, each registered with the broker (which fences any older
/// producer of that id), and the first failure to register, if any. Needs no topic, so it
/// runs while the topics are made.
async fn init_producers(
    cfg: &PipelineConfig,
    resources: &[&str],
) -> Result<(HashMap<String, Publisher>, Option<PublishError>), ExtractError> {
    if cfg.kafka.contains_key("transactional.id") {
        tracing::warn!(
            "kafka.transactional.id is ignored: each resource's transactional.id is derived from the pipeline and the resource"
        );
    }
    let mut producers = HashMap::new();
    for name in resources {
        let id = state_topic::transactional_id(&cfg.pipeline_name, name);
        let producer = Publisher::transactional(&cfg.kafka, &cfg.schema_topic, &id)?;
        let _ = producers.insert((*name).to_owned(), producer);
    }
    let inits = futures::future::join_all(producers.values().map(Publisher::init_transactions));
    let failure = inits.await.into_iter().find_map(Result::err);
    Ok((producers, failure))
}

/// The producers [`init_producers`] registered, once the broker has completed a probe
/// transaction on the state topic ([`Publisher::probe_transactions`]). `None`, with one log line, when the broker does not support transactions: the
/// run then publishes as an idempotent producer.
async fn transactional_producers(
    cfg: &PipelineConfig,
    producers: HashMap<String, Publisher>,
    mut failure: Option<PublishError>,
) -> Option<HashMap<String, Publisher>> {
    if failure.is_none()
        && let Some(producer) = producers.values().next()
    {
        let probe = format!("{}/_transactions_probe", cfg.pipeline_name);
        let state_topic = state_topic::topic(&cfg.pipeline_name);
        failure = producer
            .probe_transactions(&state_topic, &probe)
            .await
            .err();
    }
    match failure {
        None => Some(producers),
        Some(e) => {
            tracing::warn!(
                error = %e,
                "the Kafka broker does not support transactions: publishing as an idempotent producer, at least once (--no-transactions skips this check)"
            );
            for (_, producer) in producers {
                publish::release(producer);
            }
            None
        }
    }
}

/// The state topic's states and, when `schema_topic` is given, what the last schemas on it
/// read to, with one consumer that is then released on a thread of its own.
fn read_own_topics(
    settings: &BTreeMap<String, String>,
    state_topic: &str,
    schema_topic: Option<&str>,
) -> Result<OwnTopics, StateError> {
    let consumer: BaseConsumer<BrokerContext> = state_topic::reader_config(settings, state_topic)
        .create_with_context(BrokerContext)
        .map_err(|e| StateError::Read {
            topic: state_topic.to_owned(),
            message: e.to_string(),
        })?;
    let read = state_topic::read(&consumer, state_topic, STATE_READ_TIMEOUT).map(|states| {
        let schemas =
            schema_topic.map(|topic| last_schema::from_topic(&consumer, topic, STATE_READ_TIMEOUT));
        (states, schemas)
    });
    publish::release(consumer);
    read
}

/// What [`read_own_topics`] read: each key's state, and the last schemas on the schema topic
/// (if it was read) or why they could not be read.
type OwnTopics = (
    HashMap<String, ResourceState>,
    Option<Result<last_schema::TopicSchemas, last_schema::LastSchemaError>>,
);

/// An early fetcher ([`early`]) per resource that can have one: a root resource without
/// `incremental`, whose first requests the state cannot change (unless it holds a checkpoint,
/// when the resource's run drops the fetcher), and among the first families to run at once
/// (`resource_concurrency`). `None` for the others, and for a resource whose endpoint's
/// placeholders do not fill: its run reports that as before.
fn early_fetchers<'a>(
    cfg: &PipelineConfig,
    opts: &RunOptions,
    resources: &[(
        &'a common::config::ResourceConfig,
        from_config::EndpointPlan,
        bool,
    )],
    clients: &'a from_config::HttpClients,
    pagings: &'a [Paging],
    cancel: &'a CancellationToken,
) -> Vec<Option<EarlyPages<'a>>> {
    let mut roots: Vec<&str> = Vec::new();
    resources
        .iter()
        .zip(pagings)
        .map(|((r, plan, _), paging)| {
            let root = dependent::root_of(cfg, r);
            if !roots.contains(&root) {
                roots.push(root);
            }
            let first_families = roots.len() <= opts.resource_concurrency.max(1);
            if r.parent.is_some() || r.endpoint.incremental.is_some() || !first_families {
                return None;
            }
            let mut plan = plan.clone();
            placeholders::Values {
                incremental: None,
                parent: None,
            }
            .fill_plan(&mut plan)
            .ok()?;
            let fetcher = Fetcher {
                client: clients.for_resource(&r.name),
                resource: r,
                cancel,
                paging,
            };
            let span =
                tracing::info_span!("resource", resource = %r.name, topic = %r.topic, early = true);
            Some(EarlyPages::start(fetcher, plan, span))
        })
        .collect()
}

impl ExtractError {
    /// Whether another extractor took over a resource of the run (its transactions were
    /// fenced).
    pub fn is_fenced(&self) -> bool {
        match self {
            Self::Publish { source, .. } | Self::Kafka(source) => source.is_fenced(),
            Self::Several(errors) => errors.iter().any(Self::is_fenced),
            Self::Child { source, .. } => source.is_fenced(),
            _ => false,
        }
    }
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
    let clients = from_config::http_clients(cfg, secrets)?;
    let registry = from_config::schema_registry(cfg, secrets)?;
    let servers = cfg
        .kafka
        .get("bootstrap.servers")
        .map_or("", String::as_str);
    let wait = BrokerWait::start(servers, Some(opts.broker_timeout), BROKER_TIMEOUT_SETTING);
    let publisher = Publisher::new(&cfg.kafka, &cfg.schema_topic, registry.clone())?;
    let topics: Vec<String> = resources
        .iter()
        .filter(|(_, _, publish)| *publish)
        .map(|(r, _, _)| r.topic.clone())
        .collect();
    let state_topic = state_topic::topic(&cfg.pipeline_name);
    let setup = Instant::now();
    let pagings: Vec<Paging> = resources
        .iter()
        .map(|(r, _, _)| Paging::new(opts.page_concurrency, opts.progress.resource(&r.name)))
        .collect();
    // The set-up below waits on the broker; meanwhile the resources whose first requests
    // do not depend on the state start paging (`early`).
    let mut early = early_fetchers(cfg, opts, &resources, &clients, &pagings, &cancel);
    // Until the first page, a stop signal ends the run at once.
    let interrupted = |step: &str| ExtractError::InterruptedSetup(step.to_owned());
    let set_up = async {
        tokio::select! {
            reached = publisher.wait_for_broker(wait) => reached?,
            () = cancel.cancelled() => {
                return Err(interrupted(&format!("waiting for the Kafka broker at {servers}")));
            }
        }
        // Registering each resource's transactional.id needs no topic: it runs while the topics
        // are made. It comes before the state is read: it fences an older extractor of that
        // resource, so the state read next is its last committed one.
        let names: Vec<&str> = resources.iter().map(|(r, _, _)| r.name.as_str()).collect();
        let init = async {
            if opts.transactions {
                Some(init_producers(cfg, &names).await)
            } else {
                None
            }
        };
        let topics_made = publisher.ensure_topics(
            &topics,
            &state_topic,
            opts.partitions,
            opts.replication_factor,
        );
        let (created, inits) = tokio::select! {
            both = async { tokio::join!(topics_made, init) } => both,
            () = cancel.cancelled() => return Err(interrupted("creating the topics")),
        };
        created?;
        tracing::debug!(elapsed_ms = setup.elapsed().as_millis(), "topics ready");
        let (producers, failure) = match inits {
            Some(inits) => {
                let (producers, failure) = inits?;
                (Some(producers), failure)
            }
            None => (None, None),
        };
        // The probe transaction (on the state topic) runs while the state is read. One reader,
        // released on a thread of its own, reads the state topic and then, without a registry,
        // the schema topic: a consumer's drop (its close) takes up to 0.1 s, and two consumers'
        // threads at once (8 MiB of stack each) took a run over the 256 MiB data limit the
        // hostile paging tests run it under ("Unable to create broker thread").
        let probe = async {
            match producers {
                Some(producers) => transactional_producers(cfg, producers, failure).await,
                None => None,
            }
        };
        let read = {
            let (settings, topic) = (cfg.kafka.clone(), state_topic.clone());
            let schema_topic = registry.is_none().then(|| cfg.schema_topic.clone());
            tokio::task::spawn_blocking(move || {
                read_own_topics(&settings, &topic, schema_topic.as_deref())
            })
        };
        let (producers, read) = tokio::select! {
            both = async { tokio::join!(probe, read) } => both,
            () = cancel.cancelled() => return Err(interrupted("reading the state topic")),
        };
        let (states, on_topic) = read.map_err(|e| StateError::Read {
            topic: state_topic.clone(),
            message: format!("reader task failed: {e}"),
        })??;
        let on_topic = on_topic.transpose()?;
        tracing::debug!(
            elapsed_ms = setup.elapsed().as_millis(),
            transactions = producers.is_some(),
            states = states.len(),
            "producers ready, state and schema topics read"
        );
        // Each run's schema starts from the resource's last writer schema, as dlt's from its
        // stored schema: a column keeps its type across runs.
        let previous = {
            let published: Vec<&common::config::ResourceConfig> = resources
                .iter()
                .filter(|(_, _, publish)| *publish)
                .map(|(r, _, _)| *r)
                .collect();
            let read = last_schema::read(registry.as_ref(), on_topic, &published);
            tokio::select! {
                read = read => read?,
                () = cancel.cancelled() => return Err(interrupted("reading the last writer schemas")),
            }
        };
        tracing::debug!(
            elapsed_ms = setup.elapsed().as_millis(),
            schemas = previous.len(),
            "last writer schemas read"
        );
        Ok::<_, ExtractError>((producers, states, previous))
    };
    let (producers, states, mut previous) = early::alongside(&mut early, set_up).await?;
    let new_run_id = common::run_markers::new_run_id();

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
        let key = state_topic::key(&cfg.pipeline_name, &r.name);
        let start = state_topic::plan_run(
            &key,
            states.get(&key),
            r.endpoint.incremental.as_ref(),
            opts.fresh,
            new_run_id,
        )?;
        let own = producers.as_ref().and_then(|p| p.get(r.name.as_str()));
        let sink = StateSink {
            publisher: own.unwrap_or(&publisher),
            schemas: &publisher,
            topic: state_topic.clone(),
            key,
        };
        let span = tracing::info_span!("resource", resource = %r.name, topic = %r.topic, run_id = start.run_id);
        let children = feeds.remove(r.name.as_str()).unwrap_or_default();
        let run = ResourceRun {
            client: clients.for_resource(&r.name),
            resource: r,
            source,
            children,
            publish,
            cancel: cancel.clone(),
            child_concurrency: opts.child_concurrency,
            start,
            sink,
            paging: &pagings[i],
            early: early[i].take(),
            transaction: own.map(|_| opts.commit),
            previous: previous.remove(&r.name),
        }
        .run()
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
    // Each one's last transaction was committed or aborted.
    for (_, producer) in producers.into_iter().flatten() {
        publish::release(producer);
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
