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

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use common::json::tape::{Tape, TapeEntries, TapeItems, TapeRef};
use common::json::view::{JsonView, View, write_json_str};
use common::schema::{DataType, Field, Row, Scalar, SchemaBuilder, SchemaError, TableSchema};
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
    /// Positions of the fields that become child tables, ascending.
    lists: Vec<usize>,
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

/// The list values of one child table waiting to become its rows: each value's (root id,
/// parent id) and JSON text, parsed flat ([`Tape`]) as one array `[v1,v2,…]` when the
/// table's turn comes ([`Lists::parse`]) rather than into a `serde_json::Value` tree each.
struct Lists {
    /// The field the lists come from (for errors).
    field: String,
    ids: Vec<(Arc<str>, Arc<str>)>,
    texts: Vec<String>,
}

impl Lists {
    fn new(field: &str) -> Self {
        Lists {
            field: field.to_owned(),
            ids: Vec::new(),
            texts: Vec::new(),
        }
    }

    /// Adds a list field's value: JSON text, a value of another type (a list of one
    /// string), or `None` (no list). Text is checked to be exactly one JSON value, so that
    /// no value can run into its neighbours when the values are joined into one array.
    fn push(
        &mut self,
        table: &str,
        root_id: &Arc<str>,
        parent_id: &Arc<str>,
        value: Option<Scalar>,
    ) -> Result<(), NestError> {
        let text = match value {
            None => return Ok(()),
            Some(Scalar::Json(text)) => {
                if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
                    return Err(self.error(table, parent_id, error));
                }
                text
            }
            Some(other) => {
                let mut rendered = String::new();
                other.render(&mut rendered);
                let mut text = String::with_capacity(rendered.len() + 2);
                write_json_str(&rendered, &mut text);
                text
            }
        };
        self.ids.push((Arc::clone(root_id), Arc::clone(parent_id)));
        self.texts.push(text);
        Ok(())
    }

    fn error(&self, table: &str, parent_id: &str, error: serde_json::Error) -> NestError {
        NestError::Json {
            table: table.to_owned(),
            field: self.field.clone(),
            key: parent_id.to_owned(),
            error,
        }
    }

    /// The values parsed: all of them on one tape, or, when the array does not parse (a
    /// repeated key with another value, or a value nested as deep as a tape allows, one
    /// level too deep inside the array), each on a tape of its own, so that the error names
    /// the record it is in.
    fn parse(&mut self, table: &str) -> Result<Parsed, NestError> {
        let length = self.texts.iter().map(|t| t.len() + 1).sum::<usize>() + 1;
        let mut joined = String::with_capacity(length);
        joined.push('[');
        for (index, text) in self.texts.iter().enumerate() {
            if index > 0 {
                joined.push(',');
            }
            joined.push_str(text);
        }
        joined.push(']');
        if let Ok(tape) = Tape::parse(joined.into_bytes())
            && matches!(tape.root().view(), View::Array(items) if items.len() == self.texts.len())
        {
            return Ok(Parsed::Joined(tape));
        }
        let mut tapes = Vec::with_capacity(self.texts.len());
        for ((_, parent_id), text) in self.ids.iter().zip(std::mem::take(&mut self.texts)) {
            let tape =
                Tape::parse(text.into_bytes()).map_err(|e| self.error(table, parent_id, e))?;
            tapes.push(tape);
        }
        Ok(Parsed::Each(tapes))
    }
}

/// [`Lists::parse`]'s tapes: the joined array, or one tape per list.
enum Parsed {
    Joined(Tape),
    Each(Vec<Tape>),
}

impl Parsed {
    /// The list values, in the order they were pushed.
    fn values(&self) -> Vec<TapeRef<'_>> {
        match self {
            Parsed::Joined(tape) => match tape.root().view() {
                View::Array(items) => items.collect(),
                _ => Vec::new(),
            },
            Parsed::Each(tapes) => tapes.iter().map(Tape::root).collect(),
        }
    }
}

/// A child table's record read off a tape: an element that is an object as it is, any other
/// element as `{"value": element}` (the table's `value` column).
#[derive(Clone, Copy)]
enum Element<'a> {
    Node(TapeRef<'a>),
    Wrapped(TapeRef<'a>),
}

impl<'a> Element<'a> {
    fn of(item: TapeRef<'a>) -> Self {
        if item.is_object() {
            Element::Node(item)
        } else {
            Element::Wrapped(item)
        }
    }
}

/// A list's items inside an [`Element`].
struct ElementItems<'a>(TapeItems<'a>);

impl<'a> Iterator for ElementItems<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        self.0.next().map(Element::Node)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for ElementItems<'_> {}

/// An object's entries inside an [`Element`], or the one entry of a wrapped element.
enum ElementEntries<'a> {
    Object(TapeEntries<'a>),
    Wrapped(Option<TapeRef<'a>>),
}

impl<'a> Iterator for ElementEntries<'a> {
    type Item = (&'a str, Element<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ElementEntries::Object(entries) => entries.next().map(|(k, v)| (k, Element::Node(v))),
            ElementEntries::Wrapped(value) => value.take().map(|v| (VALUE, Element::Node(v))),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            ElementEntries::Object(entries) => entries.size_hint(),
            ElementEntries::Wrapped(value) => {
                let left = usize::from(value.is_some());
                (left, Some(left))
            }
        }
    }
}

impl ExactSizeIterator for ElementEntries<'_> {}

impl<'a> JsonView<'a> for Element<'a> {
    type Items = ElementItems<'a>;
    type Entries = ElementEntries<'a>;

    fn view(self) -> View<'a, Self> {
        let node = match self {
            Element::Wrapped(value) => {
                return View::Object(ElementEntries::Wrapped(Some(value)));
            }
            Element::Node(node) => node,
        };
        match node.view() {
            View::Null => View::Null,
            View::Bool(b) => View::Bool(b),
            View::Number(n) => View::Number(n),
            View::String(s) => View::String(s),
            View::Array(items) => View::Array(ElementItems(items)),
            View::Object(entries) => View::Object(ElementEntries::Object(entries)),
        }
    }
}

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
        for (index, field) in writer.fields.iter().enumerate() {
            if is_list(route, field) {
                lists.push(index);
            } else {
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
        let mut elements: BTreeMap<(usize, String), Lists> = BTreeMap::new();
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
            // Per list field: its child table's name and the lists of the batch's rows.
            let mut lists: Vec<(String, Lists)> = split
                .lists
                .iter()
                .map(|&index| {
                    let field = &table_batch.schema.fields[index].name;
                    (format!("{}__{field}", table_batch.table), Lists::new(field))
                })
                .collect();
            let mut taken: Vec<Option<Scalar>> = Vec::with_capacity(split.lists.len());
            for (r, row) in table_batch.rows.iter_mut().enumerate() {
                let id = &ids[t][r];
                let newest = match last {
                    Some(last) => last.get(id) == Some(&(t, r)),
                    None => true,
                };
                // The list fields leave the row in place (no new row per record), the last
                // first so that the earlier ones keep their positions.
                taken.clear();
                for &index in split.lists.iter().rev() {
                    taken.push((index < row.len()).then(|| row.remove(index)).flatten());
                }
                taken.reverse();
                if !newest {
                    continue;
                }
                for ((child, slot), value) in lists.iter_mut().zip(taken.drain(..)) {
                    slot.push(child, id, id, value)?;
                }
            }
            for (child, lists) in lists {
                if lists.ids.is_empty() {
                    continue;
                }
                match elements.entry((1, child)) {
                    Entry::Vacant(slot) => {
                        let _ = slot.insert(lists);
                    }
                    Entry::Occupied(mut slot) => {
                        slot.get_mut().ids.extend(lists.ids);
                        slot.get_mut().texts.extend(lists.texts);
                    }
                }
            }
            table_batch.schema = Arc::clone(&split.schema);
        }
        // Child tables, depth by depth: each level's lists feed the next.
        let mut child_batches: Vec<TableBatch> = Vec::new();
        while let Some(((depth, table), mut lists)) = elements.pop_first() {
            let parsed = lists.parse(&table)?;
            // Per element: its record, and its (root id, parent id, position).
            let mut records: Vec<Element<'_>> = Vec::with_capacity(lists.ids.len());
            let mut places: Vec<(&Arc<str>, &Arc<str>, usize)> =
                Vec::with_capacity(records.capacity());
            for ((root_id, parent_id), list) in lists.ids.iter().zip(parsed.values()) {
                match list.view() {
                    View::Null => {}
                    View::Array(items) => {
                        for (index, item) in items.enumerate() {
                            records.push(Element::of(item));
                            places.push((root_id, parent_id, index));
                        }
                    }
                    _ => {
                        records.push(Element::of(list));
                        places.push((root_id, parent_id, 0));
                    }
                }
            }
            if records.is_empty() {
                // Only null or empty lists: no rows, and no table for them.
                continue;
            }
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
            let page = child
                .builder
                .add_records(&records)
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
            let mut rows = Vec::with_capacity(places.len());
            for ((root_id, parent_id, index), row) in places.into_iter().zip(page.rows) {
                let row_id = row_id(parent_id, &table, index);
                let mut out: Row = Vec::with_capacity(child.schema.fields.len());
                out.push(Some(Scalar::Text(String::from(&**root_id))));
                out.push(Some(Scalar::Text(String::from(&**parent_id))));
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
                            if value.is_none() {
                                continue;
                            }
                            let id = shared_id.get_or_insert_with(|| Arc::from(row_id.as_str()));
                            elements
                                .entry((depth + 1, grandchild.clone()))
                                .or_insert_with(|| Lists::new(field))
                                .push(&grandchild, root_id, id, value)?;
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
            let root_ids: Vec<String> = keys.order.iter().map(|id| String::from(&**id)).collect();
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

    /// Each list value as the child table's records see it, as JSON text (`None`: no list).
    fn parsed(values: &[Option<Scalar>]) -> Result<Vec<String>, NestError> {
        let mut lists = Lists::new("f");
        let root: Arc<str> = Arc::from("1");
        for (n, value) in values.iter().enumerate() {
            let parent: Arc<str> = Arc::from(format!("p{n}").as_str());
            lists.push("t", &root, &parent, value.clone())?;
        }
        Ok(lists
            .parse("t")?
            .values()
            .into_iter()
            .map(|v| v.to_json_string())
            .collect())
    }

    fn json(text: &str) -> Option<Scalar> {
        Some(Scalar::Json(text.to_owned()))
    }

    #[test]
    fn list_values_parse_on_one_tape_and_other_values_are_strings() {
        let values = [
            json("[1,\"a\"]"),
            None,
            json("null"),
            Some(Scalar::Bigint(7)),
            json("{\"k\":[]}"),
        ];
        assert_eq!(
            parsed(&values).unwrap(),
            ["[1,\"a\"]", "null", "\"7\"", "{\"k\":[]}"]
        );
    }

    #[test]
    fn a_value_that_is_not_one_json_value_is_refused_by_its_record() {
        // Joined into one array, "[1" and "2]" would read as one list and "3,4" as two.
        for bad in ["[1", "2]", "3,4", "", "[1,"] {
            let err = parsed(&[json("[0]"), json(bad)]).unwrap_err().to_string();
            assert!(
                err.contains("\"t\"") && err.contains("\"f\"") && err.contains("p1"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn a_repeated_key_names_the_record_it_is_in() {
        let values = [json("[{\"a\":1}]"), json("[{\"a\":1,\"a\":2}]")];
        let err = parsed(&values).unwrap_err().to_string();
        assert!(err.contains("p1") && err.contains("twice"), "{err}");
    }

    #[test]
    fn a_list_as_deep_as_a_tape_allows_still_parses() {
        // One level deeper inside the joined array than alone: such a list is parsed alone.
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let deepest = (1..200)
            .take_while(|&d| Tape::parse(nested(d).into_bytes()).is_ok())
            .last()
            .unwrap();
        let deep = nested(deepest);
        assert!(Tape::parse(format!("[{deep}]").into_bytes()).is_err());
        assert_eq!(
            parsed(&[json("[1]"), json(&deep)]).unwrap(),
            ["[1]", deep.as_str()]
        );
        // Alone in its batch, it is the one list, not an array of lists.
        assert_eq!(parsed(&[json(&deep)]).unwrap(), [deep.as_str()]);
        let err = parsed(&[json(&nested(deepest + 1))])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("recursion limit") && err.contains("p0"),
            "{err}"
        );
    }

    #[test]
    fn elements_that_are_not_objects_read_as_a_value_column() {
        let tape = Tape::parse(br#"[{"a":1},"x",[2]]"#.to_vec()).unwrap();
        let View::Array(items) = tape.root().view() else {
            unreachable!()
        };
        let records: Vec<String> = items.map(|i| Element::of(i).to_json_string()).collect();
        assert_eq!(
            records,
            [r#"{"a":1}"#, r#"{"value":"x"}"#, r#"{"value":[2]}"#]
        );
    }
}
