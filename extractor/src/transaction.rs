//! One resource's Kafka transactions: its records and its state record (the checkpoint
//! after them) commit together, one transaction per commit interval (about 100 ms or 100
//! pages, whichever comes first). A crash anywhere leaves the records of committed
//! transactions only, and the checkpoint in the state topic always matches them: a
//! `read_committed` reader (the loader, the next run's state read) never sees the rest.
//!
//! The producer's `transactional.id` is derived from the pipeline and the resource
//! ([`crate::state_topic::transactional_id`]), the same on every run, so the broker fences
//! an older extractor of the same resource when a newer one starts.

use std::time::{Duration, Instant};

use crate::publish::{PublishError, Publisher};
use crate::resource_run::StateSink;
use crate::state_topic::ResourceState;

/// When a resource's open transaction is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInterval {
    /// At most this long after the transaction's first page.
    pub every: Duration,
    /// At most this many pages.
    pub pages: usize,
}

/// How long a transaction stays open by default (`--commit-interval`).
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Pages per transaction by default (`--commit-pages`). Every commit holds back sending
/// until the broker has the transaction's records (10-25 ms on a local Apache Kafka; the
/// next pages are encoded meanwhile, `send_pages`): a 100k-record first load from a fast
/// API took 3.5-3.7 s at 10 pages and 1.33 s at 100 (idempotent: 1.13-1.36 s;
/// docs/benchmark-history.md); a slower API reaches the 100 ms first.
pub const DEFAULT_COMMIT_PAGES: usize = 100;

impl Default for CommitInterval {
    fn default() -> Self {
        Self {
            every: DEFAULT_COMMIT_INTERVAL,
            pages: DEFAULT_COMMIT_PAGES,
        }
    }
}

/// The transactions of one resource's run, on its own transactional producer.
pub(crate) struct Transactions<'a> {
    producer: &'a Publisher,
    interval: CommitInterval,
    /// When the open transaction began, and its pages so far.
    open: Option<(Instant, usize)>,
    committed: u64,
}

impl<'a> Transactions<'a> {
    pub(crate) fn new(producer: &'a Publisher, interval: CommitInterval) -> Self {
        Self {
            producer,
            interval,
            open: None,
            committed: 0,
        }
    }

    /// Begins a transaction unless one is open.
    pub(crate) async fn ensure_open(&mut self) -> Result<(), PublishError> {
        if self.open.is_none() {
            self.producer.begin_transaction().await?;
            self.open = Some((Instant::now(), 0));
        }
        Ok(())
    }

    /// A page's records were sent in the open transaction.
    pub(crate) fn page_sent(&mut self) {
        if let Some((_, pages)) = &mut self.open {
            *pages += 1;
        }
    }

    /// Whether the open transaction has as many pages as an interval takes.
    pub(crate) fn full(&self) -> bool {
        self.open
            .is_some_and(|(_, pages)| pages >= self.interval.pages.max(1))
    }

    /// When the open transaction is due, if one is open.
    pub(crate) fn deadline(&self) -> Option<tokio::time::Instant> {
        self.open
            .map(|(began, _)| tokio::time::Instant::from_std(began + self.interval.every))
    }

    /// Writes `state` (the checkpoint after every page sent) in the open transaction (one
    /// is begun if none is) and commits it.
    pub(crate) async fn commit(
        &mut self,
        sink: &StateSink<'_>,
        state: &ResourceState,
    ) -> Result<(), PublishError> {
        self.ensure_open().await?;
        sink.write(state).await?;
        let pages = self.open.map_or(0, |(_, pages)| pages);
        self.producer.commit_transaction().await?;
        self.open = None;
        self.committed += 1;
        tracing::debug!(pages, committed = self.committed, checkpoint = ?state.checkpoint, complete = state.complete, "transaction committed");
        Ok(())
    }

    /// Aborts the open transaction, if any: after a failure, its pages may be partly sent.
    /// A producer that was fenced cannot abort (nor write anything): nothing to do then.
    pub(crate) async fn abort(&mut self) {
        if self.open.take().is_none() || self.producer.fenced().is_some() {
            return;
        }
        match self.producer.abort_transaction().await {
            Ok(()) => tracing::info!(
                "transaction aborted: the next run resumes from the last committed checkpoint"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "aborting the transaction failed (the broker aborts it when the next run starts, or after transaction.timeout.ms)")
            }
        }
    }

    /// [`PublishError::Fenced`] when a newer extractor took over.
    pub(crate) fn fenced(&self) -> Option<PublishError> {
        self.producer.fenced()
    }

    /// Transactions committed so far.
    pub(crate) fn committed(&self) -> u64 {
        self.committed
    }
}
