//! The transactional side of the [`Publisher`]: a producer per resource with its own
//! `transactional.id`, and the calls that begin, commit and abort its transactions (run
//! off the async runtime: librdkafka's are blocking), with fencing told apart from other
//! failures (see [`crate::transaction`] for when they are called).

use super::*;

/// The config's librdkafka `settings` for the transactional producer `transactional_id`.
pub(super) fn transactional_settings(
    settings: &BTreeMap<String, String>,
    transactional_id: &str,
) -> BTreeMap<String, String> {
    let mut settings = settings.clone();
    let _ = settings.insert("transactional.id".to_owned(), transactional_id.to_owned());
    // A commit waits until the broker has every record of its transaction, and a record
    // waits `linger.ms` before it is sent: the shared producer's 20 ms came on top of every
    // commit. 5 ms (measured side by side on Apache Kafka, docs/benchmark-history.md) keeps
    // batches large enough and the commit short; the config's `kafka` table can still set it.
    let _ = settings
        .entry("linger.ms".to_owned())
        .or_insert_with(|| TRANSACTIONAL_LINGER_MS.to_owned());
    // librdkafka refuses a delivery timeout longer than the transaction timeout (60 s by
    // default): a config that raises the one raises the other.
    let delivery = settings
        .get("message.timeout.ms")
        .or_else(|| settings.get("delivery.timeout.ms"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 60_000);
    if let Some(ms) = delivery
        && !settings.contains_key("transaction.timeout.ms")
    {
        let _ = settings.insert("transaction.timeout.ms".to_owned(), ms.to_string());
    }
    settings
}

/// The transactional producer's `linger.ms` unless the config sets one.
const TRANSACTIONAL_LINGER_MS: &str = "5";

/// How long a transactional call (init, commit, abort) may wait for the broker.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

impl Publisher {
    /// A transactional producer with `transactional_id` (replacing any the config's `kafka`
    /// table sets: one extractor writes several resources, each needs its own id), for one
    /// resource's records and state. Call [`Publisher::init_transactions`] before anything
    /// else; its writer schemas still go through the shared, non-transactional publisher.
    pub fn transactional(
        settings: &BTreeMap<String, String>,
        schema_topic: &str,
        transactional_id: &str,
    ) -> Result<Self, PublishError> {
        Self::new(
            &transactional_settings(settings, transactional_id),
            schema_topic,
            None,
        )
    }

    /// The `transactional.id`, for a transactional producer.
    pub fn transactional_id(&self) -> Option<&str> {
        self.transactional_id.as_deref()
    }

    /// Registers the `transactional.id` with the broker's transaction coordinator. Kafka
    /// then fences every older producer with the same id (its open transaction is aborted,
    /// and its next request fails), so this must come before the state is read.
    ///
    /// A metadata request first connects the client and replaces its bootstrap connection
    /// by the brokers it names: librdkafka (2.12) sends the coordinator query of an
    /// `init_transactions` made at once on the bootstrap connection, which it then drops,
    /// and queries again only on its 500 ms timer (seen in one start in five on one-node
    /// Kafka: 0.5 s more).
    pub async fn init_transactions(&self) -> Result<(), PublishError> {
        self.transaction_call("initialising transactions", |p| {
            // Its answer does not matter (the topics may not exist yet): only the connection.
            let _ = p.client().fetch_metadata(None, TRANSACTION_TIMEOUT);
            p.init_transactions(TRANSACTION_TIMEOUT)
        })
        .await
    }

    /// Starts a transaction: every message sent until the commit or abort belongs to it.
    pub async fn begin_transaction(&self) -> Result<(), PublishError> {
        self.transaction_call("beginning a transaction", |p| p.begin_transaction())
            .await
    }

    /// Flushes and commits the open transaction. A retriable failure is retried; one that
    /// needs an abort is returned (the caller aborts).
    pub async fn commit_transaction(&self) -> Result<(), PublishError> {
        // rust-rdkafka's flush (the commit's first step) waits in steps of 100 ms while a
        // delivery report is outstanding; every report in, it returns at once. Waiting for
        // the reports here made each commit about 0.1 s shorter.
        let _ = self.all_reported(true).await;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let producer = self.producer.clone();
            let result = tokio::task::spawn_blocking(move || {
                producer.commit_transaction(TRANSACTION_TIMEOUT)
            })
            .await;
            match result {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(KafkaError::Transaction(e))) if e.is_retriable() && attempts < 5 => {
                    tracing::debug!(error = %e, "committing the transaction; retrying");
                }
                Ok(Err(e)) => {
                    // A refused record says more (which topic, why, what to raise) than
                    // the failed commit it caused.
                    return Err(match (self.fenced(), self.check()) {
                        (None, Err(refused)) => refused,
                        _ => self.transaction_error("committing the transaction", &e),
                    });
                }
                Err(e) => {
                    return Err(self.transaction_failed(
                        "committing the transaction",
                        format!("task failed: {e}"),
                    ));
                }
            }
        }
    }

    /// Aborts the open transaction: its messages are never seen by `read_committed` readers.
    pub async fn abort_transaction(&self) -> Result<(), PublishError> {
        self.transaction_call("aborting the transaction", |p| {
            p.abort_transaction(TRANSACTION_TIMEOUT)
        })
        .await
    }

    /// Whether the broker completes a transaction: one that writes a tombstone under `key`
    /// to `topic` and is aborted. A broker may grant a transactional producer id and
    /// still not support ending a transaction (Tansu 0.6 answers EndTxn as unsupported);
    /// finding that out at the first commit would leave the run's first records in a
    /// transaction that never ends. On a broker that supports them, nobody ever reads
    /// the probe (`read_committed`).
    pub async fn probe_transactions(&self, topic: &str, key: &str) -> Result<(), PublishError> {
        self.begin_transaction().await?;
        let record: BaseRecord<'_, [u8], [u8], Arc<Acks>> =
            BaseRecord::with_opaque_to(topic, Arc::clone(&self.untracked)).key(key.as_bytes());
        self.enqueue(record, &self.untracked).await?;
        // Acknowledged before the abort, which would otherwise fail its delivery.
        if !self.all_reported(true).await {
            self.flush().await?;
        }
        self.check()?;
        self.abort_transaction().await
    }

    /// Runs one blocking transactional call on a blocking thread.
    async fn transaction_call(
        &self,
        step: &'static str,
        call: impl FnOnce(&ThreadedProducer<DeliveryCounter>) -> rdkafka::error::KafkaResult<()>
        + Send
        + 'static,
    ) -> Result<(), PublishError> {
        let producer = self.producer.clone();
        match tokio::task::spawn_blocking(move || call(&producer)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.transaction_error(step, &e)),
            Err(e) => Err(self.transaction_failed(step, format!("task failed: {e}"))),
        }
    }

    /// The error for a failed transactional `step`: [`PublishError::Fenced`] when a newer
    /// producer took over.
    fn transaction_error(&self, step: &'static str, e: &KafkaError) -> PublishError {
        let fenced = e.rdkafka_error_code().is_some_and(is_fenced_code);
        match self.fenced() {
            Some(fenced) => fenced,
            None if fenced => PublishError::Fenced {
                transactional_id: self.transactional_id.clone().unwrap_or_default(),
                message: e.to_string(),
            },
            None => self.transaction_failed(step, e.to_string()),
        }
    }

    fn transaction_failed(&self, step: &'static str, message: String) -> PublishError {
        PublishError::Transaction {
            transactional_id: self.transactional_id.clone().unwrap_or_default(),
            step,
            message,
        }
    }

    /// [`PublishError::Fenced`] when this transactional producer was fenced (librdkafka
    /// raises that as its fatal error); `None` otherwise.
    pub fn fenced(&self) -> Option<PublishError> {
        let transactional_id = self.transactional_id.clone()?;
        match self.producer.client().fatal_error() {
            Some((code, message)) if is_fenced_code(code) => Some(PublishError::Fenced {
                transactional_id,
                message,
            }),
            _ => None,
        }
    }
}
