//! The order the loader takes records in: each assigned partition from a queue of its own,
//! a turn of [`TURN`] records each, so that a batch holds every partition's records of one
//! stretch of keys rather than one partition's records over the whole key range.
//!
//! Why: keys are spread over the partitions by hash. Taken as librdkafka's consumer queue
//! gives them (each partition's share of a fetch response in one run, up to
//! `max.partition.fetch.bytes`), a batch of 5,000 held two partitions on Apache Kafka, so
//! every SQLite leaf page was written about three times per replay; in turns, each once.
//! Replaying 200,000 records into SQLite on Kafka: 71,008 page writes against 219,569,
//! 1.47 CPU seconds against 1.90, twice the rows per second (BENCHMARKS.md).
//!
//! Ordering: a partition's records must reach the loader in offset order. The rebalance
//! callback splits each newly assigned partition off the consumer queue *before* it calls
//! `assign` ([`split_before_assign`]), so no record of it is ever fetched into the shared
//! queue: librdkafka (2.x) keeps a forwarding the application set (`RD_KAFKA_Q_F_FWD_APP`)
//! when the assignment starts the fetcher. The loader also refuses a record older than one
//! it already took of the same partition (`LoadError::Record`), whatever the cause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;

use crate::LoaderContext;
use crate::error::RebalanceError;

/// Records taken from one partition before the next partition's turn.
pub(crate) const TURN: usize = 100;

/// How long the loop waits on the consumer queue at a time while every partition queue is
/// empty: a record arriving on a partition queue does not wake a wait on the consumer queue.
const WAKE: Duration = Duration::from_millis(10);

/// Routes each partition of `tpl` to a queue of its own before the partitions are assigned.
/// The handles are dropped at once: the routing stays, and [`Turns`] takes new handles.
pub(crate) fn split_before_assign(
    consumer: &Arc<BaseConsumer<LoaderContext>>,
    tpl: &TopicPartitionList,
) {
    for elem in tpl.elements() {
        if consumer
            .split_partition_queue(elem.topic(), elem.partition())
            .is_none()
        {
            // Its records then come through the consumer queue, in order all the same.
            tracing::debug!(
                topic = elem.topic(),
                partition = elem.partition(),
                "no partition queue"
            );
        }
    }
}

/// The partition queues of the current assignment and whose turn it is.
#[derive(Default)]
pub(crate) struct Turns {
    /// The assignment the queues were taken for (`LoaderContext::assignments`).
    generation: u64,
    queues: Vec<PartitionQueue<LoaderContext>>,
    turn: usize,
    taken: usize,
}

impl Turns {
    /// Waits up to `timeout` for the next record and hands it to `handle`; `None` when
    /// nothing came. The consumer queue is polled at the start of every turn (it serves the
    /// rebalance callbacks and carries the records of any partition without a queue).
    pub(crate) fn poll<R>(
        &mut self,
        consumer: &Arc<BaseConsumer<LoaderContext>>,
        timeout: Duration,
        handle: impl FnOnce(KafkaResult<BorrowedMessage<'_>>) -> R,
    ) -> Option<R> {
        // Read the clock only once no record is at hand (not once per record).
        let mut deadline = None;
        loop {
            self.follow_assignment(consumer);
            if self.queues.is_empty() {
                return consumer.poll(timeout).map(handle);
            }
            if self.taken == 0
                && let Some(polled) = consumer.poll(Duration::ZERO)
            {
                return Some(handle(polled));
            }
            if consumer.context().failed() {
                // A rebalance callback failed: the loop reports it before anything else.
                return None;
            }
            if self.generation != consumer.context().assignments() {
                // A rebalance happened in that poll: take the new assignment's queues.
                continue;
            }
            for _ in 0..self.queues.len() {
                if self.taken >= TURN {
                    self.next_turn();
                }
                if let Some(polled) = self.queues[self.turn].poll(Duration::ZERO) {
                    self.taken += 1;
                    return Some(handle(polled));
                }
                self.next_turn();
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(polled) = consumer.poll(left.min(WAKE)) {
                return Some(handle(polled));
            }
            if left <= WAKE || consumer.context().failed() {
                return None;
            }
        }
    }

    fn next_turn(&mut self) {
        self.turn = (self.turn + 1) % self.queues.len().max(1);
        self.taken = 0;
    }

    /// After a rebalance, the queues of the partitions now assigned.
    fn follow_assignment(&mut self, consumer: &Arc<BaseConsumer<LoaderContext>>) {
        let generation = consumer.context().assignments();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.queues.clear();
        self.turn = 0;
        self.taken = 0;
        let assignment = match consumer.assignment() {
            Ok(assignment) => assignment,
            Err(e) => {
                consumer.context().fail(RebalanceError::Assignment(e));
                return;
            }
        };
        for e in assignment.elements() {
            match consumer.split_partition_queue(e.topic(), e.partition()) {
                Some(queue) => self.queues.push(queue),
                // Split off the consumer queue at assignment, its records would wait here
                // for ever: stop rather than stall.
                None => consumer.context().fail(RebalanceError::NoQueue {
                    topic: e.topic().to_owned(),
                    partition: e.partition(),
                }),
            }
        }
        tracing::debug!(queues = self.queues.len(), "partition queues");
    }
}
