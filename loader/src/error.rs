//! The loader's errors: [`LoadError`] ends a run, [`RebalanceError`] is what went wrong
//! inside librdkafka's rebalance callback (kept there, reported by the poll loop).

use rdkafka::error::KafkaError;

use crate::destination::DestinationError;
use crate::dlq;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The Kafka error is part of the message, not a `source()`: printed once either way.
    #[error("Kafka consumer: {0}")]
    Kafka(KafkaError),
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error("topic `{topic}` partition {partition} offset {offset}: {message}")]
    Record {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
    #[error("no configured resource matches {0:?}")]
    NoResources(Vec<String>),
    #[error("schema registry: {0}")]
    Registry(String),
    /// The first failure of a rebalance callback; part of the message, not a `source()`.
    #[error("during a rebalance: {0}")]
    Rebalance(Box<RebalanceError>),
    #[error("child tables: {0}")]
    Nest(String),
    #[error(transparent)]
    DeadLetter(#[from] dlq::DlqError),
    #[error(transparent)]
    Unreachable(#[from] common::broker::Unreachable),
}

impl From<KafkaError> for LoadError {
    fn from(error: KafkaError) -> Self {
        LoadError::Kafka(error)
    }
}

/// What failed while partitions were assigned or revoked. Each is logged when it happens;
/// the first ends the run (see [`LoadError::Rebalance`]).
#[derive(Debug, thiserror::Error)]
pub enum RebalanceError {
    #[error("reading stored offsets: {0}")]
    StoredOffsets(DestinationError),
    /// Learning what is already dead-lettered for the assigned partitions.
    #[error("{0}")]
    DeadLetters(dlq::DlqError),
    #[error("the consumer is gone during its own rebalance")]
    ConsumerGone,
    #[error("assigning partitions: {0}")]
    Assign(KafkaError),
    /// Writing the pending batch before the partitions are released.
    #[error("{0}")]
    Flush(Box<LoadError>),
    #[error("releasing partitions: {0}")]
    Release(KafkaError),
    #[error("reading the assignment for its partition queues: {0}")]
    Assignment(KafkaError),
    /// Split off the consumer queue at assignment, its records would wait there for ever.
    #[error("{topic}/{partition}: no queue of its own to read the partition from")]
    NoQueue { topic: String, partition: i32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `main` prints (`{:#}` walks `source()`s; `error_chain` also drops repeats):
    /// every cause once. `#[error("… {0}")]` on a `#[from]` field printed it twice:
    /// `committing the batch transaction: database or disk is full: committing the …`.
    #[test]
    fn a_nested_error_chain_prints_each_cause_once() {
        // As rusqlite reports a failed commit: the code and SQLite's message.
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".to_owned()),
        );
        let nested: anyhow::Error = LoadError::from(DestinationError::Transaction {
            action: "committing",
            error: Box::new(full),
        })
        .into();
        let nested = nested.context("loading");
        let expected = "loading: committing the batch transaction: database or disk is full";
        assert_eq!(format!("{nested:#}"), expected);
        assert_eq!(common::cli::error_chain(nested.as_ref()), expected);

        let kafka: anyhow::Error = LoadError::from(KafkaError::MessageConsumption(
            rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
        ))
        .into();
        let line = format!("{kafka:#}");
        assert!(line.starts_with("Kafka consumer: "), "{line}");
        assert_eq!(
            line.matches("Broker transport failure").count(),
            1,
            "{line}"
        );
    }

    /// The messages the rebalance failures had as strings (end-to-end tests read them).
    #[test]
    fn a_rebalance_failure_reads_as_it_did() {
        let kafka = || {
            KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure)
        };
        let cases = [
            (RebalanceError::Assign(kafka()), "assigning partitions: "),
            (RebalanceError::Release(kafka()), "releasing partitions: "),
            (
                RebalanceError::Assignment(kafka()),
                "reading the assignment for its partition queues: ",
            ),
        ];
        for (error, prefix) in cases {
            let line = LoadError::Rebalance(Box::new(error)).to_string();
            assert_eq!(
                line,
                format!("during a rebalance: {prefix}{}", kafka()),
                "{line}"
            );
        }
        let gone = LoadError::Rebalance(Box::new(RebalanceError::ConsumerGone)).to_string();
        assert_eq!(
            gone,
            "during a rebalance: the consumer is gone during its own rebalance"
        );
        let no_queue = RebalanceError::NoQueue {
            topic: "p.t".into(),
            partition: 3,
        };
        assert_eq!(
            no_queue.to_string(),
            "p.t/3: no queue of its own to read the partition from"
        );
    }
}
