//! Lists become child tables, as dlt does.
//!
//! The extractor carries a list field as JSON text (data type `json`); just before a batch
//! is written, [`Nester::explode`] turns each such field of a merge or append resource with
//! a primary key into rows of a child table `<table>__<field>` and drops the field from the
//! parent's rows:
//! - every child row has `_dlt_root_id` (the root record's primary key as text; a
//!   composite key's values joined with `|`, a `|` or `\` inside a value escaped with `\`),
//!   `_dlt_parent_id` (the parent row's id: the root's key text for a child of the root,
//!   the parent child row's `_dlt_id` deeper down), `_dlt_list_idx` (the position in the
//!   list, from 0) and `_dlt_id` (32 hex digits of SHA-256 over the parent id, the child
//!   table's name and the position: the same record always gets the same ids);
//! - a list of scalars gives one `value` column; a list of objects gives the objects'
//!   fields, flattened and typed by the same rules as a record's (a scalar element of
//!   such a list goes to `value`); a list inside an element becomes a grandchild table
//!   `<table>__<field>__<inner>`, recursively;
//! - a value that is not a list (a field once seen as a list later holding a scalar) is a
//!   list of one; a JSON `null` or an absent value gives no child rows;
//! - `max_table_nesting` (per resource) bounds the depth: `0` keeps every list as a JSON
//!   column, `1` makes child tables but keeps lists inside their elements as JSON, …;
//!   a `columns` hint `data_type = "json"` keeps that field a JSON column, and so does a
//!   field the writer schema marks kept whole ([`Field::keep_whole`]: an object or a list
//!   the extractor kept whole at nesting level `max_table_nesting` or deeper, as dlt does).
//!   A child table's elements are flattened by the same rule, counted from its depth.
//!
//! merge: the child tables' primary key is `(_dlt_root_id, _dlt_id)`. A batch first deletes
//! every row of every child table of the root table whose `_dlt_root_id` is a key loaded in
//! the batch (or deleted by a tombstone or `hard_delete`), then writes the newest version's
//! children: a record's children are always exactly those of its last version. The child
//! tables of a root table are the ones this loader has written plus those it finds in the
//! destination (tables named `<table>__…` with a `_dlt_root_id` column that belong to no
//! longer configured table; asked again at every partition assignment). append: the children are appended (no primary key).
//!
//! replace: a run's rows go to its staging table `<table>__r<run>` (merged by key), whose
//! children go to `<table>__r<run>__<field>`; when the run is swapped in, the table's
//! child tables are dropped and the run's are renamed into their place
//! ([`crate::destination::child_swap`]), so no child row outlives its run.
//!
//! Not exploded (the list stays a JSON column): resources without a primary key.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use common::schema::{DataType, Field, Row, Scalar, SchemaBuilder, SchemaError, TableSchema};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::destination::{
    Batch, Destination, DestinationError, NestedDelete, TableBatch, staging_child, staging_run,
};

/// The root record's key, in every child table at any depth.
pub const ROOT_ID: &str = "_dlt_root_id";
/// The parent row's id: the root's key text, or the parent child row's [`ROW_ID`].
pub const PARENT_ID: &str = "_dlt_parent_id";
/// The element's position in its list, from 0.
pub const LIST_IDX: &str = "_dlt_list_idx";
/// The child row's own id.
pub const ROW_ID: &str = "_dlt_id";
/// The column of a list of scalars.
pub const VALUE: &str = "value";

/// How one root table's lists are exploded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestRoute {
    /// The root table's primary key columns (normalised names).
    pub primary_key: Vec<String>,
    /// merge (children replaced per key) or append (children appended).
    pub merge: bool,
    /// dlt's `max_table_nesting`: `None` unlimited, `Some(0)` no child tables.
    pub max_table_nesting: Option<usize>,
    /// Fields hinted `data_type = "json"`: kept as JSON columns (normalised names).
    pub json_columns: HashSet<String>,
    /// A `replace` resource: its rows go to staging tables `<table>__r<run>`, each a root
    /// of its own (merged by key) whose child tables the swap renames into place.
    pub replace: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NestError {
    #[error("table {table:?}: field {field:?} of record {key} is not valid JSON: {error}")]
    Json {
        table: String,
        field: String,
        key: String,
        error: serde_json::Error,
    },
    #[error("child table {table:?}: {error}")]
    Schema { table: String, error: SchemaError },
    #[error(transparent)]
    Destination(#[from] DestinationError),
}

/// One child table's inferred schema, across batches.
struct Child {
    builder: SchemaBuilder,
    /// The child table's schema with the id columns, without its exploded list fields.
    schema: Arc<TableSchema>,
    /// Positions (in the builder's schema) of the fields that become grandchild tables.
    lists: Vec<usize>,
    /// Per builder field: its position in `schema`, if kept.
    keep: Vec<Option<usize>>,
}

/// A parent writer schema split into what stays and what is exploded.
struct Split {
    schema: Arc<TableSchema>,
    lists: Vec<usize>,
    keep: Vec<Option<usize>>,
    key_fields: Vec<usize>,
}

/// A merge root's keys in a batch (hashed with foldhash, not SipHash: every row's key is
/// looked up).
#[derive(Default)]
struct Keys {
    seen: HashSet<Arc<str>, foldhash::fast::RandomState>,
    /// The keys whose children are deleted, in first-seen order.
    order: Vec<Arc<str>>,
    /// Where each key's last row is: (table batch, row).
    last: HashMap<Arc<str>, (usize, usize), foldhash::fast::RandomState>,
}

impl Keys {
    fn clear(&mut self, id: Arc<str>) {
        if self.seen.insert(Arc::clone(&id)) {
            self.order.push(id);
        }
    }
}

/// Elements waiting to become a child table's rows: (root id, parent id, index, element).
type Elements = Vec<(Arc<str>, Arc<str>, usize, Value)>;

/// Explodes list fields into child tables (see the module documentation).
#[derive(Default)]
pub struct Nester {
    routes: HashMap<String, NestRoute>,
    /// Per writer schema of a root table (kept alive here, so the address is stable).
    splits: HashMap<usize, (Arc<TableSchema>, Arc<Split>)>,
    children: HashMap<String, Child>,
    /// Per root table: its child tables at any depth (known or found in the destination).
    descendants: HashMap<String, BTreeSet<String>>,
}

impl Nester {
    /// Root tables by name.
    pub fn new(routes: HashMap<String, NestRoute>) -> Self {
        Nester {
            routes,
            ..Nester::default()
        }
    }

    /// Forgets the child tables found so far: the next batch asks the destination again.
    /// Called when partitions are assigned, so that keys another loader of the group wrote
    /// before a rebalance find the child tables it created.
    pub fn forget_tables(&mut self) {
        self.descendants.clear();
    }

    /// `writer` as the root table `table` sees it: without the fields that become child
    /// tables (what the schema contract compares with the table).
    pub fn parent_view(&self, table: &str, writer: &TableSchema) -> TableSchema {
        let mut view = writer.clone();
        if let Some(route) = self.routes.get(table)
            && !route.primary_key.is_empty()
        {
            view.fields.retain(|field| !is_list(route, field));
        }
        view
    }

    fn split(&mut self, route: &NestRoute, writer: &Arc<TableSchema>) -> Arc<Split> {
        let address = Arc::as_ptr(writer) as usize;
        if let Some((_, split)) = self.splits.get(&address) {
            return Arc::clone(split);
        }
        let mut fields = Vec::new();
        let mut lists = Vec::new();
        let mut keep = Vec::new();
        for (index, field) in writer.fields.iter().enumerate() {
            if is_list(route, field) {
                lists.push(index);
                keep.push(None);
            } else {
                keep.push(Some(fields.len()));
                fields.push(field.clone());
            }
        }
        let key_fields = route
            .primary_key
            .iter()
            .filter_map(|k| writer.field_index(k))
            .collect::<Vec<_>>();
        let schema = if lists.is_empty() {
            Arc::clone(writer)
        } else {
            Arc::new(TableSchema {
                name: writer.name.clone(),
                primary_key: writer.primary_key.clone(),
                fields,
            })
        };
        let split = Arc::new(Split {
            schema,
            lists,
            keep,
            key_fields,
        });
        if self.splits.len() > 1024 {
            self.splits.clear();
        }
        let _ = self
            .splits
            .insert(address, (Arc::clone(writer), Arc::clone(&split)));
        split
    }

    /// The child tables of `root` this loader knows of, asking the destination once.
    fn descendants(
        &mut self,
        root: &str,
        destination: &mut dyn Destination,
    ) -> Result<&mut BTreeSet<String>, NestError> {
        if self.descendants.contains_key(root) {
            return Ok(self.descendants.entry(root.to_owned()).or_default());
        }
        {
            let found = destination.nested_tables(root)?;
            // A table under a longer root table belongs to that one.
            let longer: Vec<String> = self
                .routes
                .keys()
                .filter(|other| other.len() > root.len() && other.starts_with(root))
                .map(|other| format!("{other}__"))
                .collect();
            let mine = found
                .into_iter()
                .filter(|t| !longer.iter().any(|prefix| t.starts_with(prefix.as_str())))
                .filter(|t| staging_child(root, t).is_none())
                .collect();
            Ok(self.descendants.entry(root.to_owned()).or_insert(mine))
        }
    }

    /// Rewrites `batch`: list fields of the configured root tables leave their rows and
    /// become child-table rows (appended after the batch's tables), and for merge roots the
    /// children of every key the batch loads or deletes are deleted first.
    pub fn explode(
        &mut self,
        batch: &mut Batch,
        destination: &mut dyn Destination,
    ) -> Result<(), NestError> {
        if self.routes.is_empty() {
            return Ok(());
        }
        // A replace run's staging table is a root like its table.
        for table_batch in &batch.tables {
            if self.routes.contains_key(&table_batch.table) {
                continue;
            }
            let staged = self
                .routes
                .iter()
                .find(|(root, route)| {
                    route.replace && staging_run(root, &table_batch.table).is_some()
                })
                .map(|(_, route)| NestRoute {
                    replace: false,
                    ..route.clone()
                });
            if let Some(route) = staged {
                let _ = self.routes.insert(table_batch.table.clone(), route);
            }
        }
        // Per merge root: the keys whose children are deleted (in first-seen order) and
        // where each key's last row is (rows of one key in a batch are in Kafka order).
        let mut keys: HashMap<String, Keys> = HashMap::new();
        for delete in &batch.deletes {
            if let Some(route) = self.routes.get(&delete.table)
                && route.merge
                && !route.primary_key.is_empty()
                && delete.key.len() == route.primary_key.len()
            {
                let id: Arc<str> = key_text(delete.key.iter().map(String::as_str)).into();
                keys.entry(delete.table.clone()).or_default().clear(id);
            }
        }
        let mut elements: BTreeMap<(usize, String), Elements> = BTreeMap::new();
        // Per table batch: each row's parent id (empty: the table is left alone).
        let mut ids: Vec<Vec<Arc<str>>> = Vec::with_capacity(batch.tables.len());
        let mut text = String::new();
        for (t, table_batch) in batch.tables.iter().enumerate() {
            let Some(route) = self.routes.get(&table_batch.table).cloned() else {
                ids.push(Vec::new());
                continue;
            };
            if route.primary_key.is_empty() {
                ids.push(Vec::new());
                continue;
            }
            let split = self.split(&route, &table_batch.schema);
            // Hot path: a table without list fields and without child tables is left alone.
            if split.key_fields.len() != route.primary_key.len()
                || (split.lists.is_empty()
                    && self
                        .descendants(&table_batch.table, destination)?
                        .is_empty())
            {
                ids.push(Vec::new());
                continue;
            }
            let mut table_keys = route
                .merge
                .then(|| keys.entry(table_batch.table.clone()).or_default());
            let mut row_ids = Vec::with_capacity(table_batch.rows.len());
            for (r, row) in table_batch.rows.iter().enumerate() {
                let id: Arc<str> = key_id(row, &split.key_fields, &mut text).into();
                if let Some(table_keys) = table_keys.as_mut() {
                    table_keys.clear(Arc::clone(&id));
                    let _ = table_keys.last.insert(Arc::clone(&id), (t, r));
                }
                row_ids.push(id);
            }
            ids.push(row_ids);
        }
        for (t, table_batch) in batch.tables.iter_mut().enumerate() {
            if ids[t].is_empty() {
                continue;
            }
            let Some(route) = self.routes.get(&table_batch.table).cloned() else {
                continue;
            };
            let split = self.split(&route, &table_batch.schema);
            if split.lists.is_empty() {
                continue;
            }
            let last = keys.get(&table_batch.table).map(|k| &k.last);
            // Per list field: its child table's name and the elements of the batch's rows.
            let mut lists: Vec<(String, Elements)> = split
                .lists
                .iter()
                .map(|&index| {
                    let field = &table_batch.schema.fields[index].name;
                    (format!("{}__{field}", table_batch.table), Vec::new())
                })
                .collect();
            let mut taken: Vec<Option<Scalar>> = Vec::with_capacity(split.lists.len());
            for (r, row) in table_batch.rows.iter_mut().enumerate() {
                let id = &ids[t][r];
                let newest = match last {
                    Some(last) => last.get(id) == Some(&(t, r)),
                    None => true,
                };
                // The list fields leave the row in place (no new row per record).
                taken.clear();
                let mut index = 0;
                row.retain_mut(|value| {
                    let keep = split.keep.get(index).copied().flatten().is_some();
                    index += 1;
                    if !keep {
                        taken.push(value.take());
                    }
                    keep
                });
                if !newest {
                    continue;
                }
                for (((child, slot), &index), value) in
                    lists.iter_mut().zip(&split.lists).zip(taken.drain(..))
                {
                    let field = &table_batch.schema.fields[index].name;
                    let items = list_items(value, child, field, id)?;
                    for (i, item) in items.into_iter().enumerate() {
                        slot.push((Arc::clone(id), Arc::clone(id), i, item));
                    }
                }
            }
            for (child, items) in lists {
                if !items.is_empty() {
                    elements.entry((1, child)).or_default().extend(items);
                }
            }
            table_batch.schema = Arc::clone(&split.schema);
        }
        // Child tables, depth by depth: each level's lists feed the next.
        let mut child_batches: Vec<TableBatch> = Vec::new();
        while let Some(((depth, table), items)) = elements.pop_first() {
            let root = self.root_of(&table).to_owned();
            let route = self
                .routes
                .get(&root)
                .cloned()
                .unwrap_or_else(|| NestRoute {
                    primary_key: Vec::new(),
                    merge: false,
                    max_table_nesting: Some(0),
                    json_columns: HashSet::new(),
                    replace: false,
                });
            let _ = self.descendants(&root, destination)?.insert(table.clone());
            let nest_deeper = route.max_table_nesting.is_none_or(|max| depth < max);
            let child = self.children.entry(table.clone()).or_insert_with(|| Child {
                // Objects in the elements are flattened, and kept whole from
                // `max_table_nesting` on, as dlt counts the levels (the rows are at `depth`).
                builder: SchemaBuilder::new(&table, Vec::new(), BTreeMap::new())
                    .with_child_tables(route.max_table_nesting)
                    .at_level(depth),
                schema: Arc::new(TableSchema {
                    name: table.clone(),
                    primary_key: Vec::new(),
                    fields: Vec::new(),
                }),
                lists: Vec::new(),
                keep: Vec::new(),
            });
            let mut items = items;
            let records: Vec<Value> = items
                .iter_mut()
                .map(|(_, _, _, item)| match item.take() {
                    object @ Value::Object(_) => object,
                    other => {
                        let mut object = serde_json::Map::new();
                        let _ = object.insert(VALUE.to_owned(), other);
                        Value::Object(object)
                    }
                })
                .collect();
            let page = child
                .builder
                .add_page(&records)
                .map_err(|error| NestError::Schema {
                    table: table.clone(),
                    error,
                })?;
            let inferred = child.builder.schema().clone();
            if page.schema_changed || child.keep.len() != inferred.fields.len() {
                let mut fields = vec![
                    id_field(ROOT_ID, DataType::Text),
                    id_field(PARENT_ID, DataType::Text),
                    id_field(LIST_IDX, DataType::Bigint),
                    id_field(ROW_ID, DataType::Text),
                ];
                child.lists.clear();
                child.keep.clear();
                for (index, field) in inferred.fields.iter().enumerate() {
                    if nest_deeper && field.data_type == DataType::Json && !field.keep_whole {
                        child.lists.push(index);
                        child.keep.push(None);
                    } else {
                        child.keep.push(Some(fields.len()));
                        fields.push(field.clone());
                    }
                }
                child.schema = Arc::new(TableSchema {
                    name: table.clone(),
                    primary_key: if route.merge {
                        vec![ROOT_ID.to_owned(), ROW_ID.to_owned()]
                    } else {
                        Vec::new()
                    },
                    fields,
                });
            }
            let mut rows = Vec::with_capacity(items.len());
            for ((root_id, parent_id, index, _), row) in items.into_iter().zip(page.rows) {
                let row_id = row_id(&parent_id, &table, index);
                let mut out: Row = Vec::with_capacity(child.schema.fields.len());
                out.push(Some(Scalar::Text(root_id.to_string())));
                out.push(Some(Scalar::Text(parent_id.to_string())));
                out.push(Some(Scalar::Bigint(
                    i64::try_from(index).unwrap_or(i64::MAX),
                )));
                // Shared with the grandchildren's elements only when there are some.
                let mut shared_id: Option<Arc<str>> = None;
                for (f, value) in row.into_iter().enumerate() {
                    match child.keep.get(f).copied().flatten() {
                        Some(_) => out.push(value),
                        None => {
                            let field = &inferred.fields[f].name;
                            let grandchild = format!("{table}__{field}");
                            let inner = list_items(value, &grandchild, field, &row_id)?;
                            if inner.is_empty() {
                                continue;
                            }
                            let id = shared_id.get_or_insert_with(|| Arc::from(row_id.as_str()));
                            let slot = elements.entry((depth + 1, grandchild)).or_default();
                            for (i, item) in inner.into_iter().enumerate() {
                                slot.push((Arc::clone(&root_id), Arc::clone(id), i, item));
                            }
                        }
                    }
                }
                out.insert(3, Some(Scalar::Text(row_id)));
                rows.push(out);
            }
            child_batches.push(TableBatch {
                table,
                schema: Arc::clone(&child.schema),
                rows,
                merge_key: Vec::new(),
            });
        }
        // Children of the loaded and deleted keys go first (deletes precede rows).
        let mut roots: Vec<(String, Keys)> = keys.into_iter().collect();
        roots.sort_by(|a, b| a.0.cmp(&b.0));
        for (root, keys) in roots {
            let tables: Vec<String> = self
                .descendants(&root, destination)?
                .iter()
                .cloned()
                .collect();
            if tables.is_empty() {
                continue;
            }
            let root_ids: Vec<String> = keys.order.iter().map(|id| id.to_string()).collect();
            for table in tables {
                batch.nested_deletes.push(NestedDelete {
                    table,
                    root_ids: root_ids.clone(),
                });
            }
        }
        batch.tables.extend(child_batches);
        Ok(())
    }

    /// The configured root table a child table belongs to (the longest matching name).
    fn root_of<'a>(&'a self, table: &'a str) -> &'a str {
        self.routes
            .keys()
            .filter(|root| {
                table.len() > root.len() + 2
                    && table.starts_with(root.as_str())
                    && table[root.len()..].starts_with("__")
            })
            .max_by_key(|root| root.len())
            .map_or(table, String::as_str)
    }
}

/// Whether a root table's field becomes a child table.
fn is_list(route: &NestRoute, field: &Field) -> bool {
    route.max_table_nesting.is_none_or(|depth| depth >= 1)
        && field.data_type == DataType::Json
        && !field.keep_whole
        && !route.json_columns.contains(&field.name)
}

fn id_field(name: &str, data_type: DataType) -> Field {
    Field {
        name: name.to_owned(),
        data_type,
        nullable: false,
        precision: 0,
        scale: 0,
        keep_whole: false,
    }
}

/// A key's values as one text: `|` between values, `\` before a `|` or `\` inside one.
/// A one-column key is its value as it is (unless it holds `|` or `\`).
pub fn key_text<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (index, part) in parts.enumerate() {
        if index > 0 {
            out.push('|');
        }
        push_key_part(&mut out, part);
    }
    out
}

/// One value of a key, `|` and `\\` escaped with `\\`.
/// A root row's id, what its children's `_dlt_root_id` holds: the values of its key fields
/// (indexes into the row) as text, joined with `|` (see [`push_key_part`]). `text` is a
/// scratch buffer.
pub fn key_id(row: &Row, key_fields: &[usize], text: &mut String) -> String {
    let mut id = String::new();
    for (n, &k) in key_fields.iter().enumerate() {
        text.clear();
        if let Some(Some(value)) = row.get(k) {
            value.render(text);
        }
        if n > 0 {
            id.push('|');
        }
        push_key_part(&mut id, text);
    }
    id
}

fn push_key_part(out: &mut String, part: &str) {
    if !part.contains(['|', '\\']) {
        out.push_str(part);
        return;
    }
    for c in part.chars() {
        if matches!(c, '|' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// A child row's `_dlt_id`: 32 hex digits of SHA-256 over parent id, table and position.
pub fn row_id(parent_id: &str, table: &str, index: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(parent_id.as_bytes());
    hasher.update([0]);
    hasher.update(table.as_bytes());
    hasher.update([0]);
    // The position's decimal digits, formatted on the stack.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = index;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    hasher.update(&digits[at..]);
    let digest = hasher.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for byte in &digest[..16] {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

/// The elements of a list field's value (a non-list value is a list of one).
fn list_items(
    value: Option<Scalar>,
    table: &str,
    field: &str,
    key: &str,
) -> Result<Vec<Value>, NestError> {
    let text = match value {
        None => return Ok(Vec::new()),
        Some(Scalar::Json(text)) => text,
        Some(other) => {
            let mut text = String::new();
            other.render(&mut text);
            return Ok(vec![Value::String(text)]);
        }
    };
    let parsed: Value = serde_json::from_str(&text).map_err(|error| NestError::Json {
        table: table.to_owned(),
        field: field.to_owned(),
        key: key.to_owned(),
        error,
    })?;
    Ok(match parsed {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        other => vec![other],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_joins_and_escapes() {
        let cases: [(&[&str], &str); 5] = [
            (&["42"], "42"),
            (&["a", "1"], "a|1"),
            (&["a|b", "c"], "a\\|b|c"),
            (&["a", "b|c"], "a|b\\|c"),
            (&["x\\", "y"], "x\\\\|y"),
        ];
        for (parts, expected) in cases {
            assert_eq!(key_text(parts.iter().copied()), expected, "{parts:?}");
        }
    }

    #[test]
    fn row_ids_are_deterministic_and_distinct() {
        let id = row_id("1", "orders__tags", 0);
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, row_id("1", "orders__tags", 0));
        assert_ne!(id, row_id("1", "orders__tags", 1));
        assert_ne!(id, row_id("2", "orders__tags", 0));
        assert_ne!(id, row_id("1", "orders__items", 0));
        // The separator keeps "1" + "0" apart from "10".
        assert_ne!(row_id("1", "t", 10), row_id("11", "t", 0));
    }

    #[test]
    fn list_values_parse_and_scalars_are_lists_of_one() {
        let items = |text: &str| list_items(Some(Scalar::Json(text.into())), "t", "f", "1");
        assert_eq!(items("[1,\"a\"]").unwrap().len(), 2);
        assert_eq!(items("[]").unwrap().len(), 0);
        assert_eq!(items("null").unwrap().len(), 0);
        assert_eq!(items("\"x\"").unwrap(), vec![Value::String("x".into())]);
        assert!(list_items(None, "t", "f", "1").unwrap().is_empty());
        let err = items("[1,").unwrap_err().to_string();
        assert!(
            err.contains("\"t\"") && err.contains("\"f\"") && err.contains("1"),
            "{err}"
        );
    }
}
