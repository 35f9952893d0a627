//! A consumed record's way into the pending batch: its route (table, key, disposition,
//! contract), decoding with its writer schema, the schema contract, tombstones and
//! `hard_delete` deletes, run-end markers, and records rejected (dead-lettered, or the end
//! of the run with `--on-error stop`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use common::config::{MergeStrategy, PipelineConfig, SchemaContract, WriteDisposition};
use common::run_markers::{self, RunEndMarker};
use common::schema::TableSchema;
use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::contract::{Projection, Verdict};
use crate::destination::{self, Delete, RunEnd};
use crate::dlq::{Letter, OnError};
use crate::error::LoadError;
use crate::schemas::{SchemaLookupError, SchemaStore};
use crate::writer::{BatchWriter, StoreOffsets};
use crate::{metrics, nested};

/// The maps looked up for every record: foldhash instead of SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Log lines keep the target they had when this code was in the crate root.
const LOG_TARGET: &str = crate::LOG_TARGET;

/// Where a topic's records go.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    table: String,
    primary_key: Vec<String>,
    /// The column with the `hard_delete` hint, if any.
    hard_delete: Option<String>,
    /// merge: upsert by key; append: insert every record (the table has no key);
    /// replace: merge into the run's staging table, swapped in when the run ends.
    disposition: WriteDisposition,
    /// What a new table, column or type may do (dlt's `schema_contract`).
    contract: SchemaContract,
    /// dlt's `merge_key` (normalised field names), empty without one: each record then
    /// carries its run (the `pipeline.run` header) into the `_dlt_load_id` column.
    merge_key: Vec<String>,
    /// dlt's `scd2` merge (its options): like `replace`, a run's records go to its staging
    /// table, and its end merges them in as versions (see `destination::scd2`).
    scd2: Option<Arc<common::config::Scd2Config>>,
}

impl Route {
    /// Whether the resource's records come in runs that end (`replace`, `scd2`).
    fn runs(&self) -> bool {
        self.disposition == WriteDisposition::Replace || self.scd2.is_some()
    }
}

/// Per destination table of a merge or append resource with a primary key: how its list
/// fields become child tables (see [`nested`]).
pub(crate) fn nest_routes(
    cfg: &PipelineConfig,
    selected: &[String],
) -> HashMap<String, nested::NestRoute> {
    cfg.resources
        .iter()
        .filter(|r| selected.is_empty() || selected.contains(&r.name))
        .filter(|r| !r.primary_key.is_empty())
        // A merge key replaces rows by other columns than the key their children hang on:
        // such a resource keeps its lists as JSON columns (docs/config.md).
        .filter(|r| r.merge_key.is_empty())
        // An scd2 table's rows are versions, not one row per key: lists stay JSON columns.
        .filter(|r| r.merge_strategy != Some(MergeStrategy::Scd2))
        .map(|r| {
            let json_columns = r
                .columns
                .iter()
                .filter(|(_, hint)| hint.data_type == Some(common::schema::DataType::Json))
                .filter_map(|(name, _)| common::schema::normalize_path(name))
                .collect();
            let route = nested::NestRoute {
                primary_key: r
                    .primary_key
                    .iter()
                    .map(|k| common::schema::normalize_path(k).unwrap_or_else(|| k.clone()))
                    .collect(),
                merge: r.write_disposition != WriteDisposition::Append,
                max_table_nesting: r.max_table_nesting,
                json_columns,
                replace: r.write_disposition == WriteDisposition::Replace,
            };
            (r.table_name.clone(), route)
        })
        .collect()
}

pub(crate) fn routes(
    cfg: &PipelineConfig,
    selected: &[String],
) -> Result<BTreeMap<String, Route>, LoadError> {
    let routes: BTreeMap<String, Route> = cfg
        .resources
        .iter()
        .filter(|r| selected.is_empty() || selected.contains(&r.name))
        .map(|r| {
            (
                r.topic.clone(),
                Route {
                    table: r.table_name.clone(),
                    primary_key: r.primary_key.clone(),
                    // dlt 1.31's scd2 ignores `hard_delete`: such a record is a version like
                    // any other (parity config `merge_scd2_hard_delete`).
                    hard_delete: r
                        .columns
                        .iter()
                        .filter(|_| r.merge_strategy != Some(MergeStrategy::Scd2))
                        .find(|(_, hint)| hint.hard_delete == Some(true))
                        .map(|(name, _)| name.clone()),
                    disposition: r.write_disposition,
                    contract: r.schema_contract,
                    // scd2 applies its merge key at the run's end (`Scd2Config::merge_key`).
                    merge_key: if r.merge_strategy == Some(MergeStrategy::Scd2) {
                        Vec::new()
                    } else {
                        r.merge_key.clone()
                    }
                    .iter()
                    .map(|k| common::schema::normalize_path(k).unwrap_or_else(|| k.clone()))
                    .collect(),
                    scd2: (r.merge_strategy == Some(MergeStrategy::Scd2))
                        .then(|| Arc::new(r.scd2.clone())),
                },
            )
        })
        .collect();
    if routes.is_empty() {
        return Err(LoadError::NoResources(selected.to_vec()));
    }
    Ok(routes)
}

/// The consumed records' way into the pending batch: per topic its route, the writer
/// schemas, and per (table, writer schema) how its records go into the table.
pub(crate) struct Intake {
    routes: BTreeMap<String, Route>,
    schemas: SchemaStore,
    /// Per table, per decoder (its address): how its records go into the table.
    projections: FastMap<String, FastMap<usize, Arc<Projection>>>,
    /// Per projected schema of a merge-key table: that schema with the run column.
    with_run: HashMap<usize, Arc<TableSchema>>,
}

impl Intake {
    pub(crate) fn new(routes: BTreeMap<String, Route>, schemas: SchemaStore) -> Self {
        Intake {
            routes,
            schemas,
            projections: FastMap::default(),
            with_run: HashMap::new(),
        }
    }

    /// Takes one consumed record into `w`'s pending batch (writing the batch first when
    /// the record needs it), or rejects it.
    pub(crate) fn add(
        &mut self,
        w: &mut BatchWriter,
        msg: &BorrowedMessage<'_>,
        consumer: &dyn StoreOffsets,
    ) -> Result<(), LoadError> {
        add_message(
            w,
            msg,
            &self.routes,
            &mut self.schemas,
            &mut self.projections,
            &mut self.with_run,
            consumer,
        )
    }
}

fn add_message(
    w: &mut BatchWriter,
    msg: &BorrowedMessage<'_>,
    routes: &BTreeMap<String, Route>,
    schemas: &mut SchemaStore,
    tables: &mut FastMap<String, FastMap<usize, Arc<Projection>>>,
    with_run: &mut HashMap<usize, Arc<TableSchema>>,
    consumer: &dyn StoreOffsets,
) -> Result<(), LoadError> {
    in_order(w, msg)?;
    let Some(route) = routes.get(msg.topic()) else {
        return Err(LoadError::Record {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            message: "no configured resource uses this topic".into(),
        });
    };
    if let Some(marker) = header(msg, run_markers::MARKER_HEADER) {
        return run_marker(w, msg, route, marker, consumer);
    }
    let Some(payload) = msg.payload() else {
        return tombstone(w, msg, route, consumer);
    };
    // A replace (or scd2) run's records go to the run's staging table.
    let table: Cow<'_, str> = if route.runs() {
        match header(msg, run_markers::RUN_HEADER).and_then(run_markers::parse_run) {
            Some(run) => Cow::Owned(destination::staging_table(&route.table, run)),
            None => {
                let message = format!(
                    "a record of a `{}` resource without a valid `{}` header (was it \
                     published by this pipeline's extractor?)",
                    if route.scd2.is_some() {
                        "scd2"
                    } else {
                        "replace"
                    },
                    run_markers::RUN_HEADER
                );
                return reject(w, msg, message, consumer);
            }
        }
    } else {
        Cow::Borrowed(&route.table)
    };
    // A merge-key record's run: dlt's load, whose rows replace the merge key's older ones.
    let run = if route.merge_key.is_empty() {
        None
    } else {
        // The run is stored as a bigint (`_dlt_load_id`): one beyond it is refused, not
        // clamped (the extractor's run ids are milliseconds since 1970).
        match header(msg, run_markers::RUN_HEADER)
            .and_then(run_markers::parse_run)
            .map(i64::try_from)
        {
            Some(Ok(run)) => Some(run),
            Some(Err(_)) => {
                let message = format!(
                    "a record whose `{}` header is beyond a bigint (the `_dlt_load_id` column)",
                    run_markers::RUN_HEADER
                );
                return reject(w, msg, message, consumer);
            }
            None => {
                let message = format!(
                    "a record of a resource with a `merge_key` without a valid `{}` header \
                     (was it published by this pipeline's extractor, since merge keys?)",
                    run_markers::RUN_HEADER
                );
                return reject(w, msg, message, consumer);
            }
        }
    };
    let decoded = match schemas.decoder(payload, &route.primary_key) {
        // The schema topic itself cannot be read (missing: another `pipeline.name` than
        // the extractor's; or the broker failing): no record could be decoded, so fail
        // instead of dead-lettering every one. Nothing is written; the records stay.
        Err(e @ SchemaLookupError::SchemaTopic { .. }) => {
            return Err(LoadError::Record {
                topic: msg.topic().to_owned(),
                partition: msg.partition(),
                offset: msg.offset(),
                message: format!(
                    "{e} (`pipeline.schema_topic`, by default `_<pipeline.name>_schemas`, \
                     must be the extractor's)"
                ),
            });
        }
        other => other,
    };
    let decoded = decoded
        .map_err(|e: SchemaLookupError| e.to_string())
        .and_then(|(decoder, datum)| {
            let mut row = w.spare_row();
            decoder
                .decode_into(datum, &mut row)
                .map_err(|e| e.to_string())?;
            Ok((decoder, row))
        });
    let (decoder, row) = match decoded {
        Ok(ok) => ok,
        Err(message) => return reject(w, msg, message, consumer),
    };
    if let Some(column) = &route.hard_delete
        && let Some(key) = hard_delete_key(decoder.table(), &row, column, &route.primary_key)
    {
        let delete = Delete {
            table: table.into_owned(),
            key_columns: route.primary_key.clone(),
            key,
        };
        return push_delete(w, msg, delete, consumer);
    }
    let decoder_key = Arc::as_ptr(&decoder) as usize;
    let known = tables
        .get(route.table.as_str())
        .and_then(|by_decoder| by_decoder.get(&decoder_key));
    let projection = match known {
        Some(p) => Arc::clone(p),
        None => {
            let p = Arc::new(projection(w, route, decoder.table(), consumer)?);
            let _ = tables
                .entry(route.table.clone())
                .or_default()
                .insert(decoder_key, Arc::clone(&p));
            p
        }
    };
    let row = match projection.apply(row) {
        Verdict::Write(row) => row,
        Verdict::Reject(message) => return reject(w, msg, message, consumer),
        Verdict::Discard(message) => {
            tracing::debug!(target: LOG_TARGET, topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), reason = %message, "record discarded");
            w.discard();
            metrics::discarded();
            note_offset(w, msg);
            return Ok(());
        }
    };
    let mut row = row;
    let schema = match run {
        None => Arc::clone(&projection.schema),
        Some(run) => {
            row.push(Some(common::schema::Scalar::Bigint(run)));
            let key = Arc::as_ptr(&projection.schema) as usize;
            Arc::clone(with_run.entry(key).or_insert_with(|| {
                let mut schema = (*projection.schema).clone();
                schema.fields.push(common::schema::Field {
                    name: destination::merge_key::LOAD_ID_COLUMN.to_owned(),
                    data_type: common::schema::DataType::Bigint,
                    nullable: true,
                    precision: 0,
                    scale: 0,
                    keep_whole: false,
                });
                Arc::new(schema)
            }))
        }
    };
    w.pending().push_row(
        (msg.topic(), msg.partition(), msg.offset()),
        &table,
        schema,
        row,
        &route.merge_key,
    );
    Ok(())
}

/// How a writer schema's records go into the route's table: as they are unless the
/// resource's schema contract restricts something, in which case the pending batch is
/// written first and the table's current shape is read from the destination.
fn projection(
    w: &mut BatchWriter,
    route: &Route,
    writer: &TableSchema,
    consumer: &dyn StoreOffsets,
) -> Result<Projection, LoadError> {
    let mut writer = writer.clone();
    if route.disposition == WriteDisposition::Append {
        // Every record is a new row: a table without a key is appended to.
        writer.primary_key.clear();
    }
    let writer = Arc::new(writer);
    if route.contract == SchemaContract::default() {
        return Ok(Projection::identity(writer));
    }
    w.flush(consumer)?;
    // List fields become child tables, not columns of this table.
    let changes = w.schema_changes(&route.table, &writer)?;
    let projection = Projection::new(&writer, &changes, route.contract);
    if !projection.is_identity() {
        tracing::info!(target: LOG_TARGET, table = %route.table, new_columns = ?changes.new_columns, retyped = ?changes.retyped_columns, table_exists = changes.table_exists, "schema contract applies to a new writer schema");
    }
    Ok(projection)
}

/// The value of the message's header `name`, if it has one.
fn header<'a>(msg: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a [u8]> {
    msg.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// A control message of the extractor. A run-end marker on a `replace` topic goes into
/// the batch (the destination swaps the table once every partition has ended the run);
/// on another topic it is only consumed. An unknown or malformed marker is rejected like
/// an undecodable record.
fn run_marker(
    w: &mut BatchWriter,
    msg: &BorrowedMessage<'_>,
    route: &Route,
    marker: &[u8],
    consumer: &dyn StoreOffsets,
) -> Result<(), LoadError> {
    if marker != run_markers::RUN_END.as_bytes() {
        let message = format!(
            "unknown control message `{}`",
            String::from_utf8_lossy(marker)
        );
        return reject(w, msg, message, consumer);
    }
    let end = match RunEndMarker::from_headers(|name| header(msg, name)) {
        Ok(end) => end,
        Err(message) => return reject(w, msg, message, consumer),
    };
    if !route.runs() {
        tracing::debug!(target: LOG_TARGET,
            topic = msg.topic(),
            partition = msg.partition(),
            run = end.run,
            "run-end marker on a topic that is not replaced; skipped"
        );
        note_offset(w, msg);
        return Ok(());
    }
    tracing::debug!(target: LOG_TARGET,
        topic = msg.topic(),
        partition = msg.partition(),
        run = end.run,
        "run ended"
    );
    w.pending().push_run_end(RunEnd {
        topic: msg.topic().to_owned(),
        table: route.table.clone(),
        run: end.run,
        partition: msg.partition(),
        partitions: end.partitions,
        scd2: route.scd2.clone(),
    });
    note_offset(w, msg);
    Ok(())
}

/// The primary key values (as text) of a record that the `hard_delete` column marks as
/// deleted: `true` in a bool column, any non-null value in another; `None` otherwise.
fn hard_delete_key(
    schema: &TableSchema,
    row: &common::schema::Row,
    column: &str,
    primary_key: &[String],
) -> Option<Vec<String>> {
    let index = schema
        .fields
        .iter()
        .position(|f| f.name.eq_ignore_ascii_case(column))?;
    match row.get(index)? {
        None | Some(common::schema::Scalar::Bool(false)) => return None,
        Some(_) => {}
    }
    primary_key
        .iter()
        .map(|key| {
            let value = row.get(schema.field_index(key)?)?.as_ref()?;
            let mut text = String::new();
            value.render(&mut text);
            Some(text)
        })
        .collect()
}

/// A record with a key and no value deletes the row with that primary key. The batch so
/// far is written first, so the delete lands after every earlier version of the row and
/// before every later one. A key that does not fit the primary key is rejected like an
/// undecodable record.
fn tombstone(
    w: &mut BatchWriter,
    msg: &BorrowedMessage<'_>,
    route: &Route,
    consumer: &dyn StoreOffsets,
) -> Result<(), LoadError> {
    let key_columns = &route.primary_key;
    let key = msg.key().map(String::from_utf8_lossy);
    let values: Option<Vec<String>> = match (&key, key_columns.len()) {
        (None, _) | (_, 0) => None,
        (Some(key), 1) => Some(vec![key.clone().into_owned()]),
        // Composite keys are joined with `|` by the extractor.
        (Some(key), n) => Some(key.split('|').map(str::to_owned).collect::<Vec<_>>())
            .filter(|parts| parts.len() == n),
    };
    let Some(values) = values else {
        let message = format!(
            "a tombstone whose key {key:?} does not give the primary key ({})",
            key_columns.join(", ")
        );
        return reject(w, msg, message, consumer);
    };
    let delete = Delete {
        table: route.table.clone(),
        key_columns: key_columns.clone(),
        key: values,
    };
    push_delete(w, msg, delete, consumer)
}

/// Adds a delete to the pending batch. A batch applies its deletes before its rows, so
/// when rows are pending they are written first: the delete then lands after every earlier
/// version of its row and before every later one. Consecutive deletes share a batch.
fn push_delete(
    w: &mut BatchWriter,
    msg: &BorrowedMessage<'_>,
    delete: Delete,
    consumer: &dyn StoreOffsets,
) -> Result<(), LoadError> {
    if w.pending_ref().has_rows() {
        w.flush(consumer)?;
    }
    w.pending().push_delete(delete);
    note_offset(w, msg);
    Ok(())
}

/// A record that cannot be decoded: dead-lettered (and marked consumed with the next
/// batch), or, with `--on-error stop`, the end of the run after writing what came before it
/// — nothing after it is marked consumed, so a fixed loader resumes exactly here.
fn reject(
    w: &mut BatchWriter,
    msg: &BorrowedMessage<'_>,
    message: String,
    consumer: &dyn StoreOffsets,
) -> Result<(), LoadError> {
    match w.on_error() {
        OnError::Stop => {
            w.flush(consumer)?;
            Err(LoadError::Record {
                topic: msg.topic().to_owned(),
                partition: msg.partition(),
                offset: msg.offset(),
                message,
            })
        }
        OnError::DeadLetter => {
            let letter = Letter {
                topic: msg.topic().to_owned(),
                partition: msg.partition(),
                offset: msg.offset(),
                key: msg.key().map(<[u8]>::to_vec),
                payload: msg.payload().map(<[u8]>::to_vec),
                error: message,
            };
            if w.dead_letter(&letter)? {
                metrics::dead_lettered();
            }
            note_offset(w, msg);
            Ok(())
        }
    }
}

/// A partition's records must come in offset order (see [`fetch`]): a record older than one
/// already taken (in the pending batch or loaded) is refused before it is applied, so an
/// older version of a row can never overwrite a newer one.
fn in_order(w: &mut BatchWriter, msg: &BorrowedMessage<'_>) -> Result<(), LoadError> {
    match w.taken_to(msg.topic(), msg.partition()) {
        Some(next) if msg.offset() < next => Err(LoadError::Record {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            message: format!(
                "out of order: the partition's records up to offset {} were already taken, \
                 and an older record is never applied over them (was the topic deleted and \
                 created again? then rebuild the destination)",
                next - 1
            ),
        }),
        _ => Ok(()),
    }
}

/// Marks the record consumed with the next batch.
fn note_offset(w: &mut BatchWriter, msg: &BorrowedMessage<'_>) {
    w.pending()
        .note_offset(msg.topic(), msg.partition(), msg.offset());
}
