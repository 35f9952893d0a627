//! Which checkpoint may be saved: pages are published in order but acknowledged in any
//! order (partitions, parallel paging), so the checkpoint is the one after the longest
//! prefix of pages whose every record the broker acknowledged. In a Kafka transaction the
//! acknowledgements do not matter: the pages sent commit (or abort) together with the
//! checkpoint after the last of them ([`Checkpoints::take_all`]).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::incremental::fold_max;
use crate::publish::Acks;

struct Pending {
    acks: Arc<Acks>,
    /// The checkpoint once this page is acknowledged; `None` leaves it where it was (the
    /// last page, or a paginator that cannot resume).
    resume: Option<Value>,
    /// The largest cursor value among the page's records.
    max: Option<Value>,
    /// The de-duplication digests of the page's records at `max`.
    max_hashes: Vec<String>,
}

/// The pages sent and not yet part of the acknowledged prefix.
#[derive(Default)]
pub struct Checkpoints {
    pending: VecDeque<Pending>,
    /// The checkpoint of the acknowledged prefix.
    pub checkpoint: Option<Value>,
    /// The largest cursor value over the acknowledged prefix.
    pub last_value: Option<Value>,
    /// The de-duplication digests of the prefix's records at `last_value`.
    pub last_hashes: BTreeSet<String>,
}

impl Checkpoints {
    /// Starts from a resumed run's checkpoint, largest cursor value and its digests.
    pub fn new(
        checkpoint: Option<Value>,
        last_value: Option<Value>,
        last_hashes: &[String],
    ) -> Self {
        Self {
            pending: VecDeque::new(),
            checkpoint,
            last_value,
            last_hashes: last_hashes.iter().cloned().collect(),
        }
    }

    /// A page whose records were all sent with `acks`; `max` is their largest cursor value
    /// and `max_hashes` the digests of those at it.
    pub fn push(
        &mut self,
        acks: Arc<Acks>,
        resume: Option<Value>,
        max: Option<Value>,
        max_hashes: Vec<String>,
    ) {
        self.pending.push_back(Pending {
            acks,
            resume,
            max,
            max_hashes,
        });
    }

    /// Takes the acknowledged pages off the front; true when that moved the checkpoint or
    /// the largest cursor value. A page with a refused record stops the prefix for good.
    pub fn advance(&mut self) -> bool {
        let mut moved = false;
        while let Some(front) = self.pending.front() {
            if !front.acks.settled() || front.acks.failed() {
                break;
            }
            let Some(page) = self.pending.pop_front() else {
                break;
            };
            if page.resume.is_some() && page.resume != self.checkpoint {
                self.checkpoint = page.resume;
                moved = true;
            }
            moved |= fold_max(
                &mut self.last_value,
                &mut self.last_hashes,
                page.max,
                page.max_hashes,
            );
        }
        moved
    }

    /// Takes every page sent off, acknowledged or not: the checkpoint and largest cursor
    /// value after the last of them, for a state record that commits in one transaction
    /// with their records.
    pub fn take_all(&mut self) {
        while let Some(page) = self.pending.pop_front() {
            if page.resume.is_some() {
                self.checkpoint = page.resume;
            }
            let _ = fold_max(
                &mut self.last_value,
                &mut self.last_hashes,
                page.max,
                page.max_hashes,
            );
        }
    }

    /// Every page sent is acknowledged.
    pub fn is_settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// The broker refused a record of the first page still pending.
    pub fn is_stuck(&self) -> bool {
        self.pending.front().is_some_and(|p| p.acks.failed())
    }

    /// Waits (polling) until every page sent is acknowledged, or one has a refused record;
    /// true in the first case. Each message gets a delivery report within librdkafka's
    /// `message.timeout.ms`, so this ends.
    pub async fn settle(&mut self) -> bool {
        loop {
            let _ = self.advance();
            if self.is_settled() {
                return true;
            }
            if self.is_stuck() {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Acks with `n` messages sent.
    fn acks(n: usize) -> Arc<Acks> {
        let a = Arc::new(Acks::default());
        for _ in 0..n {
            a.sending();
        }
        a
    }

    #[test]
    fn the_checkpoint_follows_the_acknowledged_prefix() {
        let mut c = Checkpoints::new(None, None, &[]);
        let pages: Vec<Arc<Acks>> = (0..4).map(|_| acks(2)).collect();
        for (i, a) in pages.iter().enumerate() {
            let resume = (i < 3).then(|| json!({"offset": (i + 1) * 100}));
            c.push(a.clone(), resume, Some(json!(i * 10)), vec![]);
        }
        // Pages 2 and 3 acknowledged first (parallel paging): nothing moves.
        for a in &pages[1..3] {
            a.reported(true);
            a.reported(true);
        }
        assert!(!c.advance());
        assert_eq!(c.checkpoint, None);
        // Page 1 half acknowledged: still nothing.
        pages[0].reported(true);
        assert!(!c.advance());
        pages[0].reported(true);
        assert!(c.advance());
        assert_eq!(c.checkpoint, Some(json!({"offset": 300})));
        assert_eq!(c.last_value, Some(json!(20)));
        assert!(!c.is_settled());
        // The last page leaves the checkpoint where it was but counts its cursor.
        pages[3].reported(true);
        pages[3].reported(true);
        assert!(c.advance());
        assert_eq!(c.checkpoint, Some(json!({"offset": 300})));
        assert_eq!(c.last_value, Some(json!(30)));
        assert!(c.is_settled());
    }

    #[test]
    fn a_refused_record_stops_the_prefix() {
        let mut c = Checkpoints::new(Some(json!({"offset": 500})), Some(json!("m")), &[]);
        let first = acks(1);
        let second = acks(0);
        c.push(
            first.clone(),
            Some(json!({"offset": 600})),
            Some(json!("z")),
            vec![],
        );
        c.push(second, Some(json!({"offset": 700})), None, vec![]);
        first.reported(false);
        assert!(!c.advance());
        assert!(c.is_stuck());
        assert_eq!(c.checkpoint, Some(json!({"offset": 500})));
        assert_eq!(c.last_value, Some(json!("m")));
    }

    #[test]
    fn in_a_transaction_every_page_sent_counts() {
        let mut c = Checkpoints::new(Some(json!({"offset": 100})), Some(json!(5)), &[]);
        c.push(
            acks(3),
            Some(json!({"offset": 200})),
            Some(json!(7)),
            vec!["x".into()],
        );
        c.push(
            acks(1),
            Some(json!({"offset": 300})),
            Some(json!(6)),
            vec!["y".into()],
        );
        // The last page leaves the checkpoint where it was.
        c.push(acks(2), None, None, vec![]);
        c.take_all();
        assert!(c.is_settled());
        assert_eq!(c.checkpoint, Some(json!({"offset": 300})));
        assert_eq!(c.last_value, Some(json!(7)));
        assert_eq!(c.last_hashes, BTreeSet::from(["x".to_owned()]));
    }

    #[tokio::test]
    async fn settle_waits_for_the_reports() {
        let mut c = Checkpoints::new(None, None, &[]);
        let a = acks(1);
        c.push(a.clone(), Some(json!({"page": 2})), None, vec![]);
        let reporter = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            a.reported(true);
        });
        assert!(c.settle().await);
        assert_eq!(c.checkpoint, Some(json!({"page": 2})));
        reporter.await.unwrap();
    }
}
