//! One resource's run: writes its state when it starts, joins the fetcher stage
//! (`fetch`, or `dependent` for a child paged once per parent record) to the publisher
//! stage (`send_pages`) through a bounded channel, feeds the pages to its children, saves the
//! checkpoint as pages are acknowledged, and writes the final state (complete, with the
//! new incremental cursor) and, for `replace`, the run's end markers. With transactions
//! (`transaction`), the checkpoint is instead committed with the records before it, one
//! transaction per commit interval.

use std::time::Instant;

use common::config::{MergeStrategy, ResourceConfig, WriteDisposition};
use common::schema::TableSchema;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::acked_checkpoint::Checkpoints;
use crate::client::HttpClient;
use crate::early::EarlyPages;
use crate::fetch::{Fetcher, Page, Paging};
use crate::incremental::CursorFilter;
use crate::publish::{PublishError, Publisher};
use crate::state_topic::{ResourceState, RunStart};
use crate::transaction::{CommitInterval, Transactions};
use crate::{
    ExtractError, ResourceReport, dependent, from_config, metrics, placeholders, send_pages,
};

/// Log lines keep the target they had when this code was in the crate root.
const LOG_TARGET: &str = "extractor";

/// Where one resource's records and state records go.
pub(crate) struct StateSink<'a> {
    /// The shared producer, or the resource's transactional one.
    pub(crate) publisher: &'a Publisher,
    /// The shared producer: the writer schemas go through it, never in a transaction.
    pub(crate) schemas: &'a Publisher,
    pub(crate) topic: String,
    pub(crate) key: String,
}

impl StateSink<'_> {
    pub(crate) async fn write(&self, state: &ResourceState) -> Result<(), PublishError> {
        let value = serde_json::to_vec(state).map_err(|e| PublishError::Produce {
            topic: self.topic.clone(),
            message: e.to_string(),
        })?;
        tracing::debug!(target: LOG_TARGET, checkpoint = ?state.checkpoint, complete = state.complete, "saving state");
        self.publisher
            .send(&self.topic, self.key.as_bytes(), &value)
            .await
    }
}

/// One resource's run and everything it needs, made by [`crate::run`] for each resource:
/// [`ResourceRun::run`] pages the resource (its endpoint, or once per parent record), feeds
/// the pages to its children, publishes them if `publish`, and keeps its state (checkpoint,
/// cursor) in the state topic.
pub(crate) struct ResourceRun<'a> {
    pub(crate) client: &'a HttpClient,
    pub(crate) resource: &'a ResourceConfig,
    /// Where its requests come from: its endpoint, or its parent's pages.
    pub(crate) source: dependent::Source,
    /// Each child's channel, fed every page.
    pub(crate) children: Vec<mpsc::Sender<dependent::ParentPage>>,
    /// Whether its records are published (not for a parent paged only to feed its children).
    pub(crate) publish: bool,
    pub(crate) cancel: CancellationToken,
    /// Parent records whose child requests run at once (`--child-concurrency`).
    pub(crate) child_concurrency: usize,
    /// The run's id, and where it starts: checkpoint, incremental start value.
    pub(crate) start: RunStart,
    pub(crate) sink: StateSink<'a>,
    pub(crate) paging: &'a Paging,
    /// Its fetcher, when [`crate::run`] started it during the set-up ([`crate::early`]):
    /// used unless the run resumes at a checkpoint.
    pub(crate) early: Option<EarlyPages<'a>>,
    /// Set when `sink.publisher` is the resource's transactional producer.
    pub(crate) transaction: Option<CommitInterval>,
    /// The resource's last writer schema (an earlier run's), where the run's schema starts.
    pub(crate) previous: Option<TableSchema>,
}

impl ResourceRun<'_> {
    /// Runs it to the end: the report, or the first failure.
    pub(crate) async fn run(self) -> Result<ResourceReport, ExtractError> {
        let Self {
            client,
            resource,
            mut source,
            children,
            publish,
            cancel,
            child_concurrency,
            start,
            sink,
            paging,
            early,
            transaction,
            previous,
        } = self;
        let mut txn = transaction.map(|interval| Transactions::new(sink.publisher, interval));
        let result: Result<ResourceReport, ExtractError> = async {
        let run_id = start.run_id;
        let started = Instant::now();
        let publish_err = |source| ExtractError::Publish {
            resource: resource.name.clone(),
            source,
        };
        // A `replace` run's records carry its id, and its end is marked on every partition
        // (an unpublished parent has no run).
        // So is an `scd2` run's: its end retires the rows its records no longer have.
        let run = (publish
            && (resource.write_disposition == WriteDisposition::Replace
                || resource.merge_strategy == Some(MergeStrategy::Scd2)))
            .then_some(run_id);
        let incremental = resource.endpoint.incremental.as_ref();
        // dlt's placeholders: filled once here, or per parent record for a child (whose
        // incremental is one cursor for all its records, as in dlt).
        let values = incremental
            .map(|inc| placeholders::IncrementalValues::new(inc, start.start_value.as_ref()));
        match &mut source {
            dependent::Source::Endpoint(plan) => placeholders::Values {
                incremental: values.as_ref(),
                parent: None,
            }
            .fill_plan(plan)
            .map_err(|e| from_config::BuildError::Invalid {
                key: format!("resource `{}`: endpoint", resource.name),
                message: e.to_string(),
            })?,
            dependent::Source::Parents(child, _) => child.set_incremental(values),
        }
        let filter = incremental
            .map(|inc| {
                let key = format!("resource `{}`: incremental.cursor_path", resource.name);
                CursorFilter::new(
                    inc,
                    start.start_value.clone(),
                    &resource.primary_key,
                    &start.state_hashes,
                    &key,
                )
                .map(|f| match &source {
                    dependent::Source::Parents(..) => f.without_row_order(),
                    dependent::Source::Endpoint(_) => f,
                })
            })
            .transpose()
            .map_err(from_config::BuildError::from)?;
        if start.resumed {
            tracing::info!(target: LOG_TARGET, checkpoint = ?start.checkpoint, start_value = ?start.start_value, "resuming the unfinished run");
        } else {
            tracing::info!(target: LOG_TARGET, start_value = ?start.start_value, "starting a new run");
        }
        let state = |checkpoints: &Checkpoints,
                     (cursor, unique_hashes): (Option<serde_json::Value>, Vec<String>),
                     complete: bool| {
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
                unique_hashes,
                last_hashes: if complete {
                    Vec::new()
                } else {
                    checkpoints.last_hashes.iter().cloned().collect()
                },
            }
        };
        let unfinished_cursor = || (start.state_cursor.clone(), start.state_hashes.clone());
        let mut checkpoints = Checkpoints::new(
            start.checkpoint.clone(),
            start.last_value.clone(),
            &start.last_hashes,
        );
        // In a transaction, the first commit says the run is unfinished.
        if txn.is_none() {
            sink.write(&state(&checkpoints, unfinished_cursor(), false))
                .await
                .map_err(publish_err)?;
        }

        // The early fetcher paged from the first page; a checkpoint drops it (and cancels
        // its requests in flight).
        let (early, rx) = match early.filter(|_| start.checkpoint.is_none()) {
            Some(EarlyPages { fetch, rx }) => (Ok(fetch), rx),
            None => {
                let (tx, rx) = mpsc::channel::<Page>(4);
                (Err(tx), rx)
            }
        };
        let fetcher = Fetcher {
            client,
            resource,
            cancel: &cancel,
            paging,
        };
        let fetch = async {
            // Its own fetcher's channel when it has no early one.
            let tx = match early {
                Ok(fetch) => return fetch.finish().await,
                Err(tx) => tx,
            };
            match source {
                dependent::Source::Endpoint(plan) => {
                    fetcher
                        .pages(plan, tx, filter.as_ref(), start.checkpoint.clone())
                        .await
                }
                dependent::Source::Parents(child, parents) => {
                    dependent::fetch_children(
                        &fetcher,
                        &child,
                        parents,
                        tx,
                        filter.as_ref(),
                        child_concurrency.max(1),
                    )
                    .await
                }
            }
        };
        let (publish_tx, publish_rx) = mpsc::channel::<Page>(4);
        let feed = dependent::feed_children(rx, children, publish.then_some(publish_tx));
        let publishing = send_pages::send_pages(
            resource,
            publish_rx,
            &mut checkpoints,
            &sink,
            &start,
            txn.as_mut(),
            previous.as_ref(),
        );
        let (fetched, (), published) = tokio::join!(fetch, feed, publishing);
        paging.progress.finish();
        let limits = paging.limit.stats();
        // A publishing failure ends the fetcher (its channel closes), so report that first.
        let records = published?;
        // Whatever the fetcher did, save how far the acknowledged (or, in a transaction,
        // sent) pages go.
        let settled = match &txn {
            Some(_) => {
                checkpoints.take_all();
                true
            }
            None => checkpoints.settle().await,
        };
        let complete = settled && fetched.is_ok() && !cancel.is_cancelled();
        let cursor = if complete {
            start.final_state(
                incremental,
                checkpoints.last_value.clone(),
                &checkpoints.last_hashes,
            )
        } else {
            unfinished_cursor()
        };
        let end = run.filter(|_| fetched.is_ok() && !cancel.is_cancelled());
        let stats = if let Some(txn) = txn.as_mut() {
            // The end markers and the final state commit with the last pages.
            txn.ensure_open().await.map_err(publish_err)?;
            if let Some(run) = end {
                end_run(sink.publisher, resource, run, records).await?;
            }
            txn.commit(&sink, &state(&checkpoints, cursor, complete))
                .await
                .map_err(publish_err)?;
            tracing::debug!(target: LOG_TARGET, transactions = txn.committed(), "transactions committed");
            fetched?
        } else {
            sink.write(&state(&checkpoints, cursor, complete))
                .await
                .map_err(publish_err)?;
            let stats = fetched?;
            if let Some(run) = end {
                end_run(sink.publisher, resource, run, records).await?;
            }
            stats
        };
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
            target: LOG_TARGET,
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
        .await;
        match result {
            Ok(report) => Ok(report),
            Err(e) => {
                let Some(txn) = txn.as_mut() else {
                    return Err(e);
                };
                // Whatever failed, a fenced producer says why: another extractor took over.
                if let Some(fenced) = txn.fenced() {
                    tracing::error!(target: LOG_TARGET, "{fenced}");
                    return Err(ExtractError::Publish {
                        resource: resource.name.clone(),
                        source: fenced,
                    });
                }
                txn.abort().await;
                Err(e)
            }
        }
    }
}

/// Ends a `replace` or `scd2` run: its end marker on every partition of the resource's topic
/// (the disposition header says `replace` or `scd2`).
async fn end_run(
    producer: &Publisher,
    resource: &ResourceConfig,
    run: u64,
    records: u64,
) -> Result<(), ExtractError> {
    let disposition = if resource.write_disposition == WriteDisposition::Replace {
        "replace"
    } else {
        "scd2"
    };
    let partitions = producer
        .end_run(&resource.topic, run, records, disposition)
        .await
        .map_err(|source| ExtractError::Publish {
            resource: resource.name.clone(),
            source,
        })?;
    tracing::info!(
        target: LOG_TARGET,
        run,
        partitions,
        records,
        disposition,
        "run ended on every partition"
    );
    Ok(())
}
