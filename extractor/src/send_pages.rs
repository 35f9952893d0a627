//! A resource's pages from the fetcher to Kafka: each page's records become rows
//! (`SchemaBuilder`), the rows Avro, and the Avro messages keyed by their primary key.
//!
//! Without transactions the checkpoint is saved whenever the acknowledged prefix of pages
//! grows. With them, each transaction takes the pages sent since the last commit, and the
//! checkpoint after them commits with them. A commit waits until the broker holds every
//! record of the transaction (20-45 ms on a local Apache Kafka), and no record can be sent
//! meanwhile. So the commit runs *in flight*: while it does, the next pages are read,
//! checked and encoded ahead (at most [`AHEAD`] pages, [`AHEAD_BYTES`] of Avro), and sent in the next transaction once the
//! commit is through. What a transaction holds, and the checkpoint it commits, are the same
//! as when every commit was awaited: pages go out in order and each is in exactly one
//! transaction.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::avro::Encoder;
use common::config::{MergeStrategy, ResourceConfig, WriteDisposition};
use common::schema::{SchemaBuilder, TableSchema};
use futures::future::OptionFuture;
use tokio::sync::mpsc;

use crate::acked_checkpoint::Checkpoints;
use crate::fetch::Page;
use crate::publish::{Acks, Framing, PublishError};
use crate::resource_run::StateSink;
use crate::state_topic::{ResourceState, RunStart};
use crate::transaction::Transactions;
use crate::{ExtractError, metrics};

/// How often, without transactions, the checkpoint is saved while pages are acknowledged.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Pages encoded ahead while a commit is in flight, at most: the pages a commit lasts at
/// the rate one task encodes them (0.4-0.9 ms a page of 100 records), with room to spare.
const AHEAD: usize = 64;

/// Bytes of Avro encoded ahead, at most (then the commit is awaited): memory stays bounded
/// by this and one page, however large the API's pages are.
const AHEAD_BYTES: usize = 16 << 20;

/// One page ready to send: its rows in Avro, with their keys, and what its checkpoint needs.
struct Encoded {
    /// The Kafka key of each record (its primary key as text).
    keys: Vec<String>,
    /// Every record's Avro message, one after the other.
    values: Vec<u8>,
    /// Where each record's message ends in `values`.
    ends: Vec<usize>,
    resume: Option<serde_json::Value>,
    max: Option<serde_json::Value>,
    max_hashes: Vec<String>,
}

impl Encoded {
    /// What it holds in memory, about: its messages and keys.
    fn bytes(&self) -> usize {
        self.values.len() + self.keys.iter().map(String::len).sum::<usize>()
    }
}

/// A commit in flight: it gives the transactions back when it is through.
type InFlight<'a, 'p> =
    Pin<Box<dyn Future<Output = (&'a mut Transactions<'p>, Result<(), PublishError>)> + 'a>>;

/// Turns pages into Avro messages: the schema builder, and the encoder of its latest schema
/// with the framing of the schema's registration.
struct PageEncoder<'a> {
    resource: &'a ResourceConfig,
    sink: &'a StateSink<'a>,
    builder: SchemaBuilder,
    encoder: Option<(Encoder, Framing)>,
}

impl PageEncoder<'_> {
    async fn encode(&mut self, page: Page) -> Result<Encoded, ExtractError> {
        let resource = self.resource;
        let rows =
            page.records
                .add_to(&mut self.builder)
                .map_err(|source| ExtractError::Schema {
                    resource: resource.name.clone(),
                    page: page.number,
                    source,
                })?;
        let mut encoded = Encoded {
            keys: Vec::new(),
            values: Vec::new(),
            ends: Vec::with_capacity(rows.rows.len()),
            resume: page.resume,
            max: page.max,
            max_hashes: page.max_hashes,
        };
        if rows.rows.is_empty() {
            return Ok(encoded);
        }
        let avro_err = |source| ExtractError::Avro {
            resource: resource.name.clone(),
            source,
        };
        if rows.schema_changed || self.encoder.is_none() {
            let enc = Encoder::new(self.builder.schema()).map_err(avro_err)?;
            let framing = self
                .sink
                .schemas
                .framing(&resource.topic, &enc)
                .await
                .map_err(|source| ExtractError::Publish {
                    resource: resource.name.clone(),
                    source,
                })?;
            self.encoder = Some((enc, framing));
        }
        let Some((enc, framing)) = &self.encoder else {
            return Ok(encoded);
        };
        for row in &rows.rows {
            match framing {
                Framing::SingleObject => enc.encode_single_object(row, &mut encoded.values),
                Framing::Confluent { schema_id } => {
                    enc.encode_confluent(*schema_id, row, &mut encoded.values)
                }
            }
            .map_err(avro_err)?;
            encoded.ends.push(encoded.values.len());
        }
        encoded.keys = rows.keys;
        Ok(encoded)
    }
}

/// What sends encoded pages and commits them: the producer, the checkpoints, the
/// transactions (when the run has them) and the commit in flight.
struct Sender<'a, 'p> {
    resource: &'a ResourceConfig,
    sink: &'a StateSink<'a>,
    start: &'a RunStart,
    checkpoints: &'a mut Checkpoints,
    /// The transactions, while no commit is in flight.
    txn: Option<&'a mut Transactions<'p>>,
    in_flight: Option<InFlight<'a, 'p>>,
    /// Pages encoded while a commit was in flight, in order; empty when none is.
    ahead: VecDeque<Encoded>,
    /// The bytes of their messages and keys.
    ahead_bytes: usize,
    /// The run id as text, in a header of each record, for the dispositions that need it.
    run_text: Option<String>,
    keyed: bool,
    records: u64,
}

impl<'a, 'p> Sender<'a, 'p> {
    fn publish_err(&self, source: PublishError) -> ExtractError {
        ExtractError::Publish {
            resource: self.resource.name.clone(),
            source,
        }
    }

    /// The state after the pages taken so far: the run unfinished, at their checkpoint.
    fn unfinished(&self) -> ResourceState {
        let checkpoints = &self.checkpoints;
        ResourceState {
            cursor: self.start.state_cursor.clone(),
            run: self.start.run_id,
            checkpoint: checkpoints.checkpoint.clone(),
            complete: false,
            last_value: checkpoints.last_value.clone(),
            unique_hashes: self.start.state_hashes.clone(),
            last_hashes: checkpoints.last_hashes.iter().cloned().collect(),
        }
    }

    /// Without transactions: saves the checkpoint if the acknowledged pages moved it.
    async fn save(&mut self) -> Result<(), ExtractError> {
        if !self.checkpoints.advance() {
            return Ok(());
        }
        let state = self.unfinished();
        self.sink
            .write(&state)
            .await
            .map_err(|e| self.publish_err(e))
    }

    /// Commits the open transaction in flight, with the checkpoint after its pages. Does
    /// nothing without transactions, or while a commit is already in flight.
    fn start_commit(&mut self) {
        let Some(txn) = self.txn.take() else {
            return;
        };
        self.checkpoints.take_all();
        let state = self.unfinished();
        let sink = self.sink;
        self.in_flight = Some(Box::pin(async move {
            let result = txn.commit(sink, &state).await;
            (txn, result)
        }));
    }

    /// The commit in flight is through: the transactions are back.
    fn committed(
        &mut self,
        (txn, result): (&'a mut Transactions<'p>, Result<(), PublishError>),
    ) -> Result<(), PublishError> {
        self.in_flight = None;
        self.txn = Some(txn);
        result
    }

    /// Waits for the commit in flight, if any.
    async fn settle_commit(&mut self) -> Result<(), ExtractError> {
        match self.in_flight.as_mut() {
            Some(commit) => {
                let done = commit.await;
                self.committed(done).map_err(|e| self.publish_err(e))
            }
            None => Ok(()),
        }
    }

    /// Whether another page may be encoded ahead (always, while no commit is in flight).
    fn has_room(&self) -> bool {
        self.ahead.len() < AHEAD && self.ahead_bytes < AHEAD_BYTES
    }

    /// Sends `page` now, or, while a commit is in flight, after it and the pages before.
    async fn page(&mut self, page: Encoded) -> Result<(), ExtractError> {
        if self.in_flight.is_some() {
            self.ahead_bytes += page.bytes();
            self.ahead.push_back(page);
            Ok(())
        } else {
            self.send(page).await
        }
    }

    /// Sends the pages encoded ahead, until one fills the transaction (its commit then
    /// goes in flight, and the rest wait for it).
    async fn send_ahead(&mut self) -> Result<(), ExtractError> {
        while self.in_flight.is_none() {
            let Some(page) = self.ahead.pop_front() else {
                break;
            };
            self.ahead_bytes -= page.bytes();
            self.send(page).await?;
        }
        Ok(())
    }

    /// Sends one page's records (in the open transaction, begun if none is), and commits
    /// the transaction in flight once it holds enough pages.
    async fn send(&mut self, page: Encoded) -> Result<(), ExtractError> {
        if let Some(txn) = self.txn.as_deref_mut()
            && let Err(e) = txn.ensure_open().await
        {
            return Err(self.publish_err(e));
        }
        let acks = Arc::new(Acks::default());
        let topic = &self.resource.topic;
        let mut start = 0;
        for (key, &end) in page.keys.iter().zip(&page.ends) {
            self.sink
                .publisher
                .send_tracked(
                    topic,
                    self.keyed.then_some(key.as_bytes()),
                    &page.values[start..end],
                    self.run_text.as_deref(),
                    &acks,
                )
                .await
                .map_err(|e| self.publish_err(e))?;
            start = end;
        }
        let sent = page.ends.len() as u64;
        if sent > 0 {
            self.records += sent;
            metrics::records_sent(&self.resource.name, sent);
        }
        self.checkpoints
            .push(acks, page.resume, page.max, page.max_hashes);
        if let Some(txn) = self.txn.as_deref_mut() {
            txn.page_sent();
            if txn.full() {
                self.start_commit();
            }
        }
        Ok(())
    }

    /// Every page sent and no commit in flight: what the run's end needs.
    async fn drain(&mut self) -> Result<(), ExtractError> {
        loop {
            self.settle_commit().await?;
            if self.ahead.is_empty() {
                return Ok(());
            }
            self.send_ahead().await?;
        }
    }
}

/// Encodes and sends each page (through `sink`'s producer; the writer schemas through its
/// shared one), and saves the checkpoint (state `complete: false`): whenever the
/// acknowledged prefix of pages grows, or, with transactions (`txn`), in each transaction
/// with the pages before it, committed when it holds enough pages or is old enough. Returns
/// the records sent, with every page sent; never with a commit in flight (also not on an
/// error, so the caller can abort the open transaction).
pub(crate) async fn send_pages(
    resource: &ResourceConfig,
    mut rx: mpsc::Receiver<Page>,
    checkpoints: &mut Checkpoints,
    sink: &StateSink<'_>,
    start: &RunStart,
    txn: Option<&mut Transactions<'_>>,
    previous: Option<&TableSchema>,
) -> Result<u64, ExtractError> {
    // A `replace` run's records carry its id, and so do those of a merge with a `merge_key`
    // (the loader keeps, per merge key, the rows of the newest run that had it).
    let run_text = (resource.write_disposition == WriteDisposition::Replace
        || resource.merge_strategy == Some(MergeStrategy::Scd2)
        || !resource.merge_key.is_empty())
    .then(|| start.run_id.to_string());
    let mut builder = SchemaBuilder::new(
        &resource.name,
        resource.primary_key.clone(),
        resource.columns.clone(),
    )
    .with_child_tables(resource.max_table_nesting);
    if let Some(previous) = previous {
        builder = builder.with_previous(previous);
    }
    let mut encoder = PageEncoder {
        resource,
        sink,
        builder,
        encoder: None,
    };
    let transactional = txn.is_some();
    let mut sender = Sender {
        resource,
        sink,
        start,
        checkpoints,
        txn,
        in_flight: None,
        ahead: VecDeque::new(),
        ahead_bytes: 0,
        run_text,
        keyed: !resource.primary_key.is_empty(),
        records: 0,
    };
    match pages(&mut rx, &mut encoder, &mut sender, transactional).await {
        Ok(()) => {
            sender.drain().await?;
            Ok(sender.records)
        }
        Err(e) => {
            // Nothing is left in flight when the caller aborts the open transaction; the
            // pages encoded ahead are not sent.
            let _ = sender.settle_commit().await;
            Err(e)
        }
    }
}

/// The loop of [`send_pages`], until the fetcher's channel closes or something fails.
async fn pages(
    rx: &mut mpsc::Receiver<Page>,
    encoder: &mut PageEncoder<'_>,
    sender: &mut Sender<'_, '_>,
    transactional: bool,
) -> Result<(), ExtractError> {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = sender.txn.as_deref().and_then(Transactions::deadline);
        let page = tokio::select! {
            // The commit first: the next transaction waits for it, and it only moves on
            // when polled (its state record, the delivery reports, then the commit).
            biased;
            Some(done) = OptionFuture::from(sender.in_flight.as_mut()),
                if sender.in_flight.is_some() =>
            {
                sender.committed(done).map_err(|e| sender.publish_err(e))?;
                sender.send_ahead().await?;
                continue;
            }
            page = rx.recv(), if sender.has_room() => page,
            _ = tick.tick(), if !transactional => {
                sender.save().await?;
                continue;
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                if deadline.is_some() =>
            {
                sender.start_commit();
                continue;
            }
        };
        let Some(page) = page else {
            return Ok(());
        };
        match encoder.encode(page).await {
            Ok(page) => sender.page(page).await?,
            Err(e) => {
                // Nothing of this page was sent: the pages before it commit with their
                // checkpoint, delivered as an idempotent run delivers them, and the run
                // fails (aborting would drop good records for a later page's fault).
                if matches!(e, ExtractError::Schema { .. }) && transactional {
                    sender.drain().await?;
                    sender.start_commit();
                    sender.drain().await?;
                }
                return Err(e);
            }
        }
    }
}
