//! A resource's first pages, fetched while the run sets up.
//!
//! Before its first request, a run waits for the broker, makes the topics, registers its
//! transactional producers and reads the state topic: 50-250 ms on a local broker, all of
//! it spent waiting. A root resource without `incremental` sends the same first requests
//! whatever the state says, unless the state holds an unfinished run's checkpoint (a resumed
//! run starts there). So [`crate::run`] starts such a resource's fetcher at once, into a
//! queue of [`EARLY_PAGES_QUEUED`] pages and [`EARLY_BYTES_QUEUED`] bytes of response
//! bodies; the resource's run takes the queue over when the state has no checkpoint for it,
//! and otherwise drops it, which cancels the requests in flight (a resumed run then sent
//! up to that many pages' requests, and those in flight, that it does not use).

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

use crate::ExtractError;
use crate::fetch::{FetchStats, Fetcher, Page};
use crate::from_config::EndpointPlan;

/// Pages an early fetcher may have fetched before the resource's run reads them (besides
/// the requests it has in flight), and the bytes of their response bodies
/// ([`EARLY_BYTES_QUEUED`]), whichever comes first. On Apache Kafka a fresh pipeline's
/// set-up took 0.18-0.24 s (0.14-0.21 s of it until its new topics had leaders): case 3's
/// API (20 ms a request, 8 in flight) answers about 60 pages meanwhile. At 16 the fetcher
/// stood still for 0.12 s of it; case 3's extractor, alternating, took 0.75-0.81 s at 64
/// against 0.79-0.95 s at 16, peaking at 28-33 MB against 24-25 (BENCHMARKS.md). An
/// earlier machine, whose set-up was shorter, found 32 no faster than 16
/// (docs/benchmark-history.md).
pub(crate) const EARLY_PAGES_QUEUED: usize = 64;

/// Bytes of response bodies the early pages may hold while they wait: memory stays bounded
/// however large the API's pages are (a page larger than this waits for an empty queue).
pub(crate) const EARLY_BYTES_QUEUED: usize = 16 << 20;

type FetchResult = Result<FetchStats, ExtractError>;

/// A fetcher started before the run's set-up ended ([`EarlyPages::fetch`]): the fetch while
/// it runs, then its result.
pub(crate) enum EarlyFetch<'a> {
    Running(LocalBoxFuture<'a, FetchResult>),
    Done(FetchResult),
}

impl EarlyFetch<'_> {
    /// Polls the fetch until it ends, keeping its result.
    async fn drive(&mut self) {
        std::future::poll_fn(|cx| {
            let Self::Running(running) = self else {
                return Poll::Ready(());
            };
            let result = std::task::ready!(running.as_mut().poll(cx));
            *self = Self::Done(result);
            Poll::Ready(())
        })
        .await;
    }

    /// The fetcher's end: the pages fetched, retries and bytes, or its failure.
    pub(crate) async fn finish(self) -> FetchResult {
        match self {
            Self::Running(running) => running.await,
            Self::Done(result) => result,
        }
    }
}

/// A resource's fetcher started early, and the channel of the pages it sends.
pub(crate) struct EarlyPages<'a> {
    pub(crate) fetch: EarlyFetch<'a>,
    pub(crate) rx: mpsc::Receiver<Page>,
}

impl<'a> EarlyPages<'a> {
    /// Starts paging `plan` from its first page (no checkpoint, no incremental filter); the
    /// requests go out once the fetch is polled ([`alongside`], then the resource's run).
    /// Each page holds its share of [`EARLY_BYTES_QUEUED`] until it is encoded.
    pub(crate) fn start(fetcher: Fetcher<'a>, plan: EndpointPlan, span: tracing::Span) -> Self {
        let (tx, rx) = mpsc::channel(EARLY_PAGES_QUEUED);
        let (fetched_tx, fetched) = mpsc::channel::<Page>(1);
        let queue = queue_within(fetched, tx, EARLY_BYTES_QUEUED);
        let fetch = async move {
            let (fetched, ()) = tokio::join!(fetcher.pages(plan, fetched_tx, None, None), queue);
            fetched
        }
        .instrument(span)
        .boxed_local();
        Self {
            fetch: EarlyFetch::Running(fetch),
            rx,
        }
    }
}

/// Moves the pages of `fetched` to `tx`, each one once it holds its share (its body's bytes)
/// of `budget` bytes, which it gives back when it is dropped. Ends when `fetched` has ended
/// and its pages are queued, or when `tx`'s receiver is gone (then the fetcher's next page
/// finds its channel closed).
async fn queue_within(mut fetched: mpsc::Receiver<Page>, tx: mpsc::Sender<Page>, budget: usize) {
    let budget = budget.max(1);
    let budget_left = Arc::new(Semaphore::new(budget));
    while let Some(mut page) = fetched.recv().await {
        let share = u32::try_from(page.bytes.clamp(1, budget)).unwrap_or(u32::MAX);
        let Ok(held) = Arc::clone(&budget_left).acquire_many_owned(share).await else {
            break;
        };
        page.held = Some(held);
        if tx.send(page).await.is_err() {
            break;
        }
    }
}

/// Runs `setup` to its end while polling the early fetchers beside it (each one waits once
/// its channel is full, or ends with its resource paged); the set-up's output.
pub(crate) async fn alongside<T>(
    early: &mut [Option<EarlyPages<'_>>],
    setup: impl Future<Output = T>,
) -> T {
    let fetching = futures::future::join_all(early.iter_mut().flatten().map(|e| e.fetch.drive()));
    let setup = std::pin::pin!(setup);
    match futures::future::select(setup, std::pin::pin!(fetching)).await {
        futures::future::Either::Left((done, _)) => done,
        futures::future::Either::Right((_, setup)) => setup.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Records;

    fn page(number: u64, bytes: usize) -> Page {
        Page {
            number,
            records: Records::default(),
            resume: None,
            max: None,
            max_hashes: Vec::new(),
            bytes,
            held: None,
        }
    }

    /// Lets the queue's task run until it waits.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn queued_pages_hold_at_most_the_byte_budget() {
        let (fetched_tx, fetched) = mpsc::channel(1);
        let (tx, mut rx) = mpsc::channel(EARLY_PAGES_QUEUED);
        let queue = tokio::spawn(queue_within(fetched, tx, 100));
        for (number, bytes) in [(1, 60), (2, 60), (3, 500)] {
            fetched_tx.send(page(number, bytes)).await.unwrap();
        }
        drop(fetched_tx);
        settle().await;
        let first = rx.try_recv().expect("the first page fits the budget");
        assert_eq!(first.number, 1);
        // 60 + 60 bytes exceed the budget: the second waits for the first to be dropped.
        assert!(rx.try_recv().is_err());
        drop(first);
        settle().await;
        let second = rx.try_recv().expect("the first page's share came back");
        assert_eq!(second.number, 2);
        // A page larger than the whole budget waits until nothing else is held, then goes.
        settle().await;
        assert!(rx.try_recv().is_err());
        drop(second);
        settle().await;
        let third = rx.try_recv().expect("an oversized page goes alone");
        assert_eq!(third.number, 3);
        assert!(third.held.is_some());
        drop(third);
        queue.await.unwrap();
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn the_queue_ends_when_the_run_drops_its_side() {
        let (fetched_tx, fetched) = mpsc::channel(1);
        let (tx, rx) = mpsc::channel(EARLY_PAGES_QUEUED);
        let queue = tokio::spawn(queue_within(fetched, tx, 100));
        drop(rx);
        fetched_tx.send(page(1, 10)).await.unwrap();
        queue.await.unwrap();
        // The fetcher's next page finds its channel closed: it stops paging.
        assert!(fetched_tx.send(page(2, 10)).await.is_err());
    }
}
