//! A resource's first pages, fetched while the run sets up.
//!
//! Before its first request, a run waits for the broker, makes the topics, registers its
//! transactional producers and reads the state topic: 50-250 ms on a local broker, all of
//! it spent waiting. A root resource without `incremental` sends the same first requests
//! whatever the state says, unless the state holds an unfinished run's checkpoint (a resumed
//! run starts there). So [`crate::run`] starts such a resource's fetcher at once, into a
//! channel of [`EARLY_PAGES_QUEUED`] pages; the resource's run takes the channel over when
//! the state has no checkpoint for it, and otherwise drops it, which cancels the requests in
//! flight (a resumed run then sent up to that many pages' requests it does not use).

use std::future::Future;
use std::task::Poll;

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::ExtractError;
use crate::fetch::{FetchStats, Fetcher, Page};
use crate::from_config::EndpointPlan;

/// Pages an early fetcher may have fetched before the resource's run reads them (besides
/// the requests it has in flight). Case 3's extractor (20 ms a request, 8 in flight) on a
/// fresh pipeline, side by side: 16 took 0.82-0.94 s against 0.95-1.16 s without the early
/// fetch; 32 was no faster and held 4-6 MB more (docs/benchmark-history.md). Memory is
/// bounded by pages, as while the run goes.
pub(crate) const EARLY_PAGES_QUEUED: usize = 16;

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
    pub(crate) fn start(fetcher: Fetcher<'a>, plan: EndpointPlan, span: tracing::Span) -> Self {
        let (tx, rx) = mpsc::channel(EARLY_PAGES_QUEUED);
        let fetch = async move { fetcher.pages(plan, tx, None, None).await }
            .instrument(span)
            .boxed_local();
        Self {
            fetch: EarlyFetch::Running(fetch),
            rx,
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
