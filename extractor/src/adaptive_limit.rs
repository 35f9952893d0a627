//! Adaptive concurrency for one resource's page requests (AIMD): a semaphore whose capacity
//! halves when the API answers 429 Too Many Requests and grows back by one after a run of
//! successful requests, never above the configured `--page-concurrency` nor below 1.
//!
//! Each attempt of a request (retries included) holds a [`Permit`] while it is in flight and
//! tells it how the attempt went. Only the first 429 among the requests that started under
//! the same limit lowers it: the others were sent before the API could see the lower limit,
//! so halving again for each of them would collapse the limit to 1 after a single burst.
//!
//! Shrinking forgets idle permits at once; permits in use are forgotten when they come back,
//! so the number of requests in flight never exceeds the current limit for long: only the
//! requests already sent finish.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Consecutive successful attempts after which the limit grows by one.
pub const DEFAULT_RECOVER_AFTER: u32 = 10;

/// A permit source whose capacity shrinks on 429 and grows back slowly; cheap to clone.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    semaphore: Arc<Semaphore>,
    max: usize,
    recover_after: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The current limit: permits in circulation once `debt` is paid.
    limit: usize,
    /// Permits to forget when they come back (the limit shrank while they were in use).
    debt: usize,
    /// Successful attempts since the last change of the limit.
    successes: u32,
    /// Bumped at every decrease; a permit remembers the epoch it was taken in.
    epoch: u64,
    /// 429 answers reported, and the decreases they caused.
    throttled: u64,
    decreases: u64,
    lowest: usize,
}

/// What a change of the limit was, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub from: usize,
    pub to: usize,
}

/// Counters for the run summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitStats {
    /// The limit now.
    pub limit: usize,
    /// The lowest the limit went.
    pub lowest: usize,
    /// 429 answers reported.
    pub throttled: u64,
    /// Times the limit was halved.
    pub decreases: u64,
}

impl AdaptiveLimit {
    /// A limit starting (and capped) at `max` (at least 1) that grows by one after
    /// `recover_after` consecutive successes (at least 1).
    pub fn new(max: usize, recover_after: u32) -> Self {
        let max = max.max(1);
        Self {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(max)),
                max,
                recover_after: recover_after.max(1),
                state: Mutex::new(State {
                    limit: max,
                    debt: 0,
                    successes: 0,
                    epoch: 0,
                    throttled: 0,
                    decreases: 0,
                    lowest: max,
                }),
            }),
        }
    }

    /// Waits for a free slot under the current limit. The semaphore is fair, so requests
    /// get their slots in the order they asked (pages stay roughly in page order).
    pub async fn acquire(&self) -> Permit {
        // The semaphore is never closed, so acquiring cannot fail; if it ever did, the
        // request goes ahead without a slot rather than failing the run.
        let permit = Arc::clone(&self.inner.semaphore).acquire_owned().await.ok();
        let epoch = self.state().epoch;
        Permit {
            limit: self.clone(),
            permit,
            epoch,
        }
    }

    pub fn stats(&self) -> LimitStats {
        let s = self.state();
        LimitStats {
            limit: s.limit,
            lowest: s.lowest,
            throttled: s.throttled,
            decreases: s.decreases,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent: poison can be ignored.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A 429 for an attempt that started in `epoch`: halves the limit unless an attempt of
    /// the same epoch already did.
    fn throttled(&self, epoch: u64) -> Option<Change> {
        let mut s = self.state();
        s.throttled += 1;
        s.successes = 0;
        if epoch != s.epoch || s.limit == 1 {
            return None;
        }
        let from = s.limit;
        let to = (from / 2).max(1);
        s.limit = to;
        s.epoch += 1;
        s.decreases += 1;
        s.lowest = s.lowest.min(to);
        let forgotten = self.inner.semaphore.forget_permits(from - to);
        s.debt += from - to - forgotten;
        Some(Change { from, to })
    }

    fn succeeded(&self) -> Option<Change> {
        let mut s = self.state();
        s.successes += 1;
        if s.successes < self.inner.recover_after || s.limit >= self.inner.max {
            return None;
        }
        s.successes = 0;
        let from = s.limit;
        s.limit += 1;
        if s.debt > 0 {
            s.debt -= 1;
        } else {
            self.inner.semaphore.add_permits(1);
        }
        Some(Change { from, to: s.limit })
    }

    /// A permit came back: forgotten when the limit shrank meanwhile.
    fn release(&self, permit: OwnedSemaphorePermit) {
        let mut s = self.state();
        if s.debt > 0 {
            s.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

/// One attempt's slot; give it back with [`Permit::success`], [`Permit::throttled`] or by
/// dropping it (an attempt that failed otherwise neither lowers nor raises the limit).
#[derive(Debug)]
pub struct Permit {
    limit: AdaptiveLimit,
    permit: Option<OwnedSemaphorePermit>,
    epoch: u64,
}

impl Permit {
    /// The attempt got an answer that was not 429: one step towards a higher limit.
    pub fn success(self) -> Option<Change> {
        self.limit.succeeded()
    }

    /// The attempt got 429: the limit halves unless this burst already lowered it.
    pub fn throttled(self) -> Option<Change> {
        self.limit.throttled(self.epoch)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.limit.release(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Permits that can be taken right now without waiting.
    async fn take_all(limit: &AdaptiveLimit) -> Vec<Permit> {
        let mut held = Vec::new();
        while let Ok(p) = tokio::time::timeout(Duration::from_millis(20), limit.acquire()).await {
            held.push(p);
            assert!(held.len() <= 64, "the limit never runs out");
        }
        held
    }

    #[tokio::test]
    async fn starts_at_max_and_never_hands_out_more() {
        let limit = AdaptiveLimit::new(4, 10);
        assert_eq!(take_all(&limit).await.len(), 4);
        let zero = AdaptiveLimit::new(0, 0);
        assert_eq!(take_all(&zero).await.len(), 1, "at least one");
    }

    #[tokio::test]
    async fn a_429_halves_once_per_burst() {
        let limit = AdaptiveLimit::new(8, 10);
        let mut held = take_all(&limit).await;
        assert_eq!(held.len(), 8);
        // Five of the eight requests of the burst come back 429: one decrease only.
        let changes: Vec<_> = held.drain(..5).map(Permit::throttled).collect();
        assert_eq!(changes[0], Some(Change { from: 8, to: 4 }));
        assert!(changes[1..].iter().all(Option::is_none), "{changes:?}");
        // Three still in flight, limit 4: one more slot, not five.
        assert_eq!(take_all(&limit).await.len(), 1);
        drop(held);
        assert_eq!(take_all(&limit).await.len(), 4);
        let stats = limit.stats();
        assert_eq!(
            stats,
            LimitStats {
                limit: 4,
                lowest: 4,
                throttled: 5,
                decreases: 1
            }
        );
    }

    #[tokio::test]
    async fn a_429_under_the_new_limit_halves_again_down_to_one() {
        let limit = AdaptiveLimit::new(8, 10);
        let first = limit.acquire().await;
        assert_eq!(first.throttled(), Some(Change { from: 8, to: 4 }));
        let second = limit.acquire().await;
        assert_eq!(second.throttled(), Some(Change { from: 4, to: 2 }));
        let third = limit.acquire().await;
        assert_eq!(third.throttled(), Some(Change { from: 2, to: 1 }));
        let fourth = limit.acquire().await;
        assert_eq!(fourth.throttled(), None, "never below 1");
        assert_eq!(take_all(&limit).await.len(), 1);
        assert_eq!(limit.stats().lowest, 1);
        assert_eq!(limit.stats().decreases, 3);
    }

    #[tokio::test]
    async fn permits_in_use_are_forgotten_when_they_return() {
        let limit = AdaptiveLimit::new(6, 10);
        let mut held = take_all(&limit).await;
        assert_eq!(held.len(), 6);
        let p = held.pop().unwrap();
        assert_eq!(p.throttled(), Some(Change { from: 6, to: 3 }));
        // Five in use, limit 3: nothing free until three of them came back.
        assert!(take_all(&limit).await.is_empty());
        drop(held.drain(..2));
        assert!(take_all(&limit).await.is_empty());
        drop(held.pop());
        let again = take_all(&limit).await;
        assert_eq!(again.len(), 1, "2 still in use + 1 = the limit of 3");
    }

    #[tokio::test]
    async fn grows_by_one_after_enough_successes_up_to_max() {
        let limit = AdaptiveLimit::new(4, 3);
        assert!(limit.acquire().await.throttled().is_some());
        assert_eq!(limit.stats().limit, 2);
        let mut changes = Vec::new();
        for _ in 0..9 {
            changes.extend(limit.acquire().await.success());
        }
        assert_eq!(
            changes,
            vec![Change { from: 2, to: 3 }, Change { from: 3, to: 4 }],
            "one step per 3 successes, none past the max"
        );
        assert_eq!(take_all(&limit).await.len(), 4);
    }

    #[tokio::test]
    async fn growth_pays_the_debt_first() {
        let limit = AdaptiveLimit::new(4, 1);
        let mut held = take_all(&limit).await;
        assert_eq!(
            held.pop().unwrap().throttled(),
            Some(Change { from: 4, to: 2 })
        );
        // Three in use, limit 2, one to forget. A success (of a permit taken before the
        // decrease) raises the limit to 3: that cancels the debt instead of adding a permit,
        // and the permit it gives back is free again.
        assert_eq!(
            held.pop().unwrap().success(),
            Some(Change { from: 2, to: 3 })
        );
        let extra = take_all(&limit).await;
        assert_eq!(extra.len(), 1, "2 in use + 1 free = the limit of 3");
        drop(held);
        drop(extra);
        assert_eq!(take_all(&limit).await.len(), 3);
    }

    #[tokio::test]
    async fn a_429_resets_the_success_run() {
        let limit = AdaptiveLimit::new(8, 3);
        assert!(limit.acquire().await.throttled().is_some());
        assert!(limit.acquire().await.success().is_none());
        assert!(limit.acquire().await.success().is_none());
        // Started after the decrease: lowers again, and the run of successes starts over.
        assert_eq!(
            limit.acquire().await.throttled(),
            Some(Change { from: 4, to: 2 })
        );
        assert!(limit.acquire().await.success().is_none());
        assert!(limit.acquire().await.success().is_none());
        assert_eq!(
            limit.acquire().await.success(),
            Some(Change { from: 2, to: 3 })
        );
    }
}
