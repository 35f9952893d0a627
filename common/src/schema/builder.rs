//! [`SchemaBuilder`]: infers a resource's [`TableSchema`] page by page (fields in
//! first-seen order, nested objects flattened, types detected, widened or given a variant
//! field, `columns` hints applied), and rolls a failed page back. Turning the records into
//! rows is in [`rows`].

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::json::view::{JsonView, View};

use super::names::{normalize_key, normalize_path, variant_name};
use super::values::{ConvertError, Num, classify, convert, detected_type, json_kind};
use super::*;

mod rows;
mod seed; // `with_previous`: a run starts from the resource's last writer schema
#[cfg(test)]
mod tests;

/// What an unhinted field does with one more value.
enum Observed {
    Fits,
    Widen(DataType),
}

/// The index of the root node (the record itself) in [`SchemaBuilder::nodes`].
const ROOT: usize = 0;

/// An object level of the records: raw JSON key → slot.
#[derive(Debug, Default, Clone)]
struct Node {
    /// The flattened name of the slot whose children these are (`None` for the root).
    prefix: Option<String>,
    /// That slot's [`Slot::raw`] (`None` for the root).
    raw_prefix: Option<String>,
    children: FastMap<String, usize>,
    /// The slots of the last object seen here, in its key order: an API sends its records'
    /// keys in one order, so the key at position `i` is checked against `order[i]` (one
    /// string comparison) before `children` is searched (a hash and a lookup).
    order: Vec<usize>,
    /// dlt's nesting level of the values here: the records' own keys are at the builder's
    /// level (0 for a resource, the depth of a child table for its rows), each object
    /// flattened into them one more.
    level: usize,
}

/// One raw JSON key under one node, with its normalised full name cached.
#[derive(Debug, Clone)]
struct Slot {
    /// The raw JSON key, as the API sent it.
    key: String,
    /// Normalised, flattened name (`sender__address__city`).
    name: String,
    /// The field, once it exists.
    field: Option<usize>,
    /// The node of its children, once an object was flattened here.
    child: Option<usize>,
    /// A `data_type: json` hint, or a key at nesting level `max_table_nesting` or deeper
    /// (as dlt's normaliser, which keeps such objects and lists whole): objects here stay
    /// JSON text, and the field is [`Field::keep_whole`].
    json_hint: bool,
    /// The raw key path as the API sent it, for messages: `"sender"."Name"`.
    raw: String,
    /// Another slot has the same name (`Name` and `name`): its values are checked per record.
    shared: bool,
    /// The nesting level of its node.
    level: usize,
}

/// A field that must have a value in every record.
#[derive(Debug, Clone)]
struct Required {
    name: String,
    primary_key: bool,
    field: Option<usize>,
}

/// Where a record is, for error messages.
#[derive(Clone, Copy)]
struct RecordRef<V> {
    record: V,
    index: usize,
}

/// The current record's values in shared slots: (slot, value).
type Claims<V> = Vec<(usize, V)>;

/// Infers a [`TableSchema`] page by page and turns records into [`Row`]s.
#[derive(Debug, Clone)]
pub struct SchemaBuilder {
    table: TableSchema,
    /// Per field: its type was fixed by a hint (no detection, no widening).
    hinted: Vec<bool>,
    by_name: FastMap<String, usize>,
    hints: HashMap<String, ColumnHint>,
    /// A bad hint, reported by every `add_page`.
    setup_error: Option<SchemaError>,
    required: Vec<Required>,
    nodes: Vec<Node>,
    slots: Vec<Slot>,
    /// Per field: the record stamp of the last non-null value.
    seen: Vec<u64>,
    stamp: u64,
    /// Flattened name → the first slot with that name (to find names shared by two keys).
    slot_names: FastMap<String, usize>,
    /// The current record made a slot shared.
    fresh_share: bool,
    /// `Some(max_table_nesting)` when the loader makes child tables of this resource's
    /// lists ([`SchemaBuilder::with_child_tables`]).
    child_tables: Option<Option<usize>>,
    /// `max_table_nesting`, which also bounds how deep objects are flattened.
    max_nesting: Option<usize>,
}

impl SchemaBuilder {
    /// A builder for resource `name`. Hint and primary key names are normalised like field
    /// names; a bad hint (e.g. `scale` above `precision`) is reported by [`Self::add_page`].
    pub fn new(name: &str, primary_key: Vec<String>, hints: BTreeMap<String, ColumnHint>) -> Self {
        let mut setup_error = None;
        let mut normalised_pk = Vec::with_capacity(primary_key.len());
        for column in primary_key {
            match normalize_path(&column) {
                Some(n) => {
                    if !normalised_pk.contains(&n) {
                        normalised_pk.push(n);
                    }
                }
                None => {
                    let _ = setup_error.get_or_insert(SchemaError::InvalidPrimaryKey { column });
                }
            }
        }
        let mut normalised_hints = HashMap::with_capacity(hints.len());
        for (column, hint) in hints {
            let Some(n) = normalize_path(&column) else {
                let _ = setup_error.get_or_insert(SchemaError::InvalidHint {
                    column,
                    reason: "the name normalises to an empty field name".to_owned(),
                });
                continue;
            };
            if let Err(reason) = check_hint(&hint) {
                let _ = setup_error.get_or_insert(SchemaError::InvalidHint { column, reason });
                continue;
            }
            let _ = normalised_hints.insert(n, hint);
        }
        let mut required: Vec<Required> = normalised_pk
            .iter()
            .map(|n| Required {
                name: n.clone(),
                primary_key: true,
                field: None,
            })
            .collect();
        let mut not_nullable: Vec<&String> = normalised_hints
            .iter()
            .filter(|(n, h)| h.nullable == Some(false) && !normalised_pk.contains(n))
            .map(|(n, _)| n)
            .collect();
        not_nullable.sort();
        required.extend(not_nullable.into_iter().map(|n| Required {
            name: n.clone(),
            primary_key: false,
            field: None,
        }));
        SchemaBuilder {
            table: TableSchema {
                name: name.to_owned(),
                primary_key: normalised_pk,
                fields: Vec::new(),
            },
            hinted: Vec::new(),
            by_name: FastMap::default(),
            hints: normalised_hints,
            setup_error,
            required,
            nodes: vec![Node::default()],
            slots: Vec::new(),
            seen: Vec::new(),
            stamp: 0,
            slot_names: FastMap::default(),
            fresh_share: false,
            child_tables: None,
            max_nesting: None,
        }
    }

    /// Also checks the values the loader will turn into child-table rows (what goes into a
    /// `json` field that is not hinted `json`, when the resource has a primary key and
    /// `max_table_nesting` is not 0), down to `max_table_nesting`: two keys of one element
    /// normalising to one column with different values, and numbers beyond range, are
    /// errors naming the root record here, before anything is published, rather than a
    /// loader that stops at the record.
    ///
    /// `max_table_nesting` also bounds the flattening, as dlt's normaliser does: an object
    /// or a list at nesting level `max_table_nesting` or deeper (a record's own keys are at
    /// level 0, an object's keys one deeper than the object) stays one JSON field marked
    /// [`Field::keep_whole`], which the loader never makes a child table: at 0 `sender` is
    /// one JSON field, at 1 `sender__name` is flattened and `sender__address` kept whole.
    pub fn with_child_tables(mut self, max_table_nesting: Option<usize>) -> Self {
        self.max_nesting = max_table_nesting;
        if max_table_nesting != Some(0) && !self.table.primary_key.is_empty() {
            self.child_tables = Some(max_table_nesting);
        }
        self
    }

    /// The nesting level of the records themselves (default 0: a resource's records; a
    /// child table's rows are at its depth, 1 for `<table>__<list>`), against which
    /// `max_table_nesting` ([`Self::with_child_tables`]) keeps deeper objects whole.
    pub fn at_level(mut self, level: usize) -> Self {
        self.nodes[ROOT].level = level;
        self
    }

    /// The schema as it stands after the pages added so far.
    pub fn schema(&self) -> &TableSchema {
        &self.table
    }

    /// Infers over the whole page first (new fields appended in first-seen order, widening
    /// applied), then converts every record to a [`Row`] aligned with the schema as it
    /// stands after this page. On error the schema is left as it was before the page.
    pub fn add_page(&mut self, records: &[Value]) -> Result<PageRows, SchemaError> {
        // Every unit test that adds a page adds it flat to a copy of the builder too: both
        // must give the same rows or error and leave the same schema.
        #[cfg(test)]
        let mut flat = self.clone();
        let refs: Vec<&Value> = records.iter().collect();
        let result = self.add_records(&refs);
        #[cfg(test)]
        {
            let text = serde_json::to_string(records).expect("a Value is written as JSON");
            let tape = crate::json::tape::Tape::parse(text.into_bytes()).expect("JSON parses");
            let views: Vec<_> = match tape.root().view() {
                View::Array(items) => items.collect(),
                _ => unreachable!("a list was written"),
            };
            assert_eq!(flat.add_records(&views), result, "the page read flat");
            assert_eq!(
                flat.table, self.table,
                "the schema after the page read flat"
            );
        }
        result
    }

    /// [`Self::add_page`] for records read through a [`JsonView`] (a page parsed flat).
    pub fn add_records<'a, V: JsonView<'a>>(
        &mut self,
        records: &[V],
    ) -> Result<PageRows, SchemaError> {
        if let Some(e) = &self.setup_error {
            return Err(e.clone());
        }
        let old_types: Vec<DataType> = self.table.fields.iter().map(|f| f.data_type).collect();
        let (old_nodes, old_slots) = (self.nodes.len(), self.slots.len());
        let result = self
            .infer_page(records)
            .and_then(|()| self.convert_page(records));
        match result {
            Ok((rows, keys)) => {
                let schema_changed = self.table.fields.len() != old_types.len()
                    || self
                        .table
                        .fields
                        .iter()
                        .zip(&old_types)
                        .any(|(f, t)| f.data_type != *t);
                Ok(PageRows {
                    rows,
                    keys,
                    schema_changed,
                })
            }
            Err(e) => {
                self.rollback(&old_types, old_nodes, old_slots);
                Err(e)
            }
        }
    }

    fn infer_page<'a, V: JsonView<'a>>(&mut self, records: &[V]) -> Result<(), SchemaError> {
        let mut claims = Claims::new();
        for (index, &record) in records.iter().enumerate() {
            let View::Object(map) = record.view() else {
                return Err(SchemaError::NotAnObject {
                    index,
                    found: json_kind(record),
                });
            };
            self.stamp += 1;
            claims.clear();
            self.fresh_share = false;
            let at = RecordRef { record, index };
            let inferred = self.infer_object(ROOT, map, at, &mut claims);
            if self.fresh_share {
                // A key of this record met another of its name for the first time: the first
                // one's value was not claimed, so walk the record once more (a collision
                // also explains a type error the second key may have caused).
                claims.clear();
                if let View::Object(map) = record.view() {
                    self.claim_shared(ROOT, map, at, &mut claims)?;
                }
            }
            inferred?;
            self.check_required(at)?;
        }
        Ok(())
    }

    fn infer_object<'a, V: JsonView<'a>>(
        &mut self,
        node: usize,
        map: V::Entries,
        at: RecordRef<V>,
        claims: &mut Claims<V>,
    ) -> Result<(), SchemaError> {
        for (i, (key, value)) in map.enumerate() {
            let slot = self.slot_at(node, i, key);
            self.infer_value(slot, value, at, claims)?;
        }
        Ok(())
    }

    fn infer_value<'a, V: JsonView<'a>>(
        &mut self,
        slot: usize,
        value: V,
        at: RecordRef<V>,
        claims: &mut Claims<V>,
    ) -> Result<(), SchemaError> {
        let view = value.view();
        if matches!(view, View::Null) {
            return Ok(());
        }
        if matches!(view, View::Object(_) | View::Array(_))
            && self.table.primary_key.contains(&self.slots[slot].name)
        {
            return Err(SchemaError::PrimaryKeyNotScalar {
                index: at.index,
                field: self.slots[slot].name.clone(),
                found: if matches!(view, View::Object(_)) {
                    "an object"
                } else {
                    "a list"
                },
            });
        }
        let field = self.resolve(slot);
        let is_json_field = field.is_some_and(|i| self.table.fields[i].data_type == DataType::Json);
        let flattened = matches!(view, View::Object(_))
            && !self.slots[slot].json_hint
            && !is_json_field
            && field.is_none();
        if self.slots[slot].shared && !flattened {
            self.claim(slot, value, at, claims)?;
        }
        if let View::Object(map) = view
            && !self.slots[slot].json_hint
            && !is_json_field
        {
            if let Some(i) = field {
                if self.hinted[i] {
                    return Err(self.mismatch(at, i, "object"));
                }
                let variant = self.variant_field(i, value, at)?;
                self.seen[variant] = self.stamp;
                return Ok(());
            }
            let child = match self.slots[slot].child {
                Some(child) => child,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node {
                        prefix: Some(self.slots[slot].name.clone()),
                        raw_prefix: Some(self.slots[slot].raw.clone()),
                        children: FastMap::default(),
                        order: Vec::new(),
                        level: self.slots[slot].level + 1,
                    });
                    self.slots[slot].child = Some(child);
                    child
                }
            };
            return self.infer_object(child, map, at, claims);
        }
        if self.slots[slot].child.is_some() && !is_json_field {
            return Err(SchemaError::TypeMismatch {
                record: self.record_id(at),
                field: self.slots[slot].name.clone(),
                expected: "object".to_owned(),
                found: json_kind(value).to_owned(),
            });
        }
        let index = match field {
            Some(i) => {
                if !self.hinted[i] {
                    self.observe(i, value, at)?;
                }
                i
            }
            None => self.create_field(slot, value, at)?,
        };
        self.seen[index] = self.stamp;
        Ok(())
    }

    /// Records that `slot` (one of several keys with its name) holds `value` in the current
    /// record; another key of the record with the same name and a different value is a
    /// [`SchemaError::NameCollision`].
    fn claim<'a, V: JsonView<'a>>(
        &mut self,
        slot: usize,
        value: V,
        at: RecordRef<V>,
        claims: &mut Claims<V>,
    ) -> Result<(), SchemaError> {
        let name = &self.slots[slot].name;
        let earlier = claims
            .iter()
            .find(|(s, v)| *s != slot && self.slots[*s].name == *name && !v.json_eq(value));
        if let Some((other, _)) = earlier {
            return Err(SchemaError::NameCollision {
                record: self.record_id(at),
                field: name.clone(),
                keys: format!("{} and {}", self.slots[*other].raw, self.slots[slot].raw),
            });
        }
        claims.push((slot, value));
        Ok(())
    }

    /// Claims every value of `map` (a record, or an object flattened into it) held in a
    /// shared slot.
    fn claim_shared<'a, V: JsonView<'a>>(
        &mut self,
        node: usize,
        map: V::Entries,
        at: RecordRef<V>,
        claims: &mut Claims<V>,
    ) -> Result<(), SchemaError> {
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            let Some(&slot) = self.nodes[node].children.get(key) else {
                continue;
            };
            let field = self.resolve(slot);
            if let (View::Object(inner), Some(child), None) =
                (value.view(), self.slots[slot].child, field)
            {
                self.claim_shared(child, inner, at, claims)?;
            } else if self.slots[slot].shared {
                self.claim(slot, value, at, claims)?;
            }
        }
        Ok(())
    }

    /// Checks one more value against an unhinted field, widening it where allowed.
    fn observe<'a, V: JsonView<'a>>(
        &mut self,
        index: usize,
        value: V,
        at: RecordRef<V>,
    ) -> Result<(), SchemaError> {
        let observed = match (self.table.fields[index].data_type, value.view()) {
            (DataType::Json, _) => Observed::Fits,
            (DataType::Bigint | DataType::Double, View::Number(n)) => {
                match (self.table.fields[index].data_type, classify(n)) {
                    (DataType::Bigint, Num::Float(_)) => Observed::Widen(DataType::Double),
                    (_, Num::Int(_) | Num::Float(_)) => Observed::Fits,
                    (_, Num::BigInt | Num::HugeFloat) => {
                        return Err(self.number_error(at, &self.table.fields[index].name, n));
                    }
                }
            }
            (DataType::Text, View::String(_)) | (DataType::Bool, View::Bool(_)) => Observed::Fits,
            (DataType::Timestamp, View::String(s)) => {
                if parse_timestamp(s).is_some() {
                    Observed::Fits
                } else {
                    Observed::Widen(DataType::Text)
                }
            }
            _ => {
                let variant = self.variant_field(index, value, at)?;
                self.seen[variant] = self.stamp;
                return Ok(());
            }
        };
        if let Observed::Widen(to) = observed {
            self.table.fields[index].data_type = to;
        }
        Ok(())
    }

    /// The variant field that takes `value`, which does not fit field `index`'s type, as
    /// dlt does: `<field>__v_<type>` for the type the value would have had in a new field
    /// (created after the other fields when first needed). A primary key or `nullable:
    /// false` field has no variants: the mismatch is an error naming the record and field.
    fn variant_field<'a, V: JsonView<'a>>(
        &mut self,
        index: usize,
        value: V,
        at: RecordRef<V>,
    ) -> Result<usize, SchemaError> {
        let required = self.required.iter().any(|r| r.field == Some(index));
        let Some(data_type) = detected_type(value).filter(|_| !required) else {
            if let View::Number(n) = value.view()
                && matches!(classify(n), Num::BigInt | Num::HugeFloat)
            {
                return Err(self.number_error(at, &self.table.fields[index].name, n));
            }
            return Err(self.mismatch(at, index, json_kind(value)));
        };
        let name = variant_name(&self.table.fields[index].name, data_type);
        if let Some(&existing) = self.by_name.get(&name) {
            return Ok(existing);
        }
        let variant = self.table.fields.len();
        self.table.fields.push(Field {
            name: name.clone(),
            data_type,
            nullable: true,
            precision: 0,
            scale: 0,
            keep_whole: false,
        });
        self.hinted.push(true);
        self.seen.push(0);
        let _ = self.by_name.insert(name, variant);
        Ok(variant)
    }

    /// Adds the field for `slot`, first seen with the non-null `value`.
    fn create_field<'a, V: JsonView<'a>>(
        &mut self,
        slot: usize,
        value: V,
        at: RecordRef<V>,
    ) -> Result<usize, SchemaError> {
        let name = self.slots[slot].name.clone();
        let hint = self.hints.get(&name);
        let hinted_type = hint.and_then(|h| h.data_type);
        let data_type = match hinted_type {
            Some(t) => t,
            None => match value.view() {
                View::Bool(_) => DataType::Bool,
                View::Number(n) => match classify(n) {
                    Num::Int(_) => DataType::Bigint,
                    Num::Float(_) => DataType::Double,
                    Num::BigInt | Num::HugeFloat => {
                        return Err(self.number_error(at, &name, n));
                    }
                },
                View::String(s) if parse_timestamp(s).is_some() => DataType::Timestamp,
                View::String(_) => DataType::Text,
                View::Array(_) | View::Object(_) => DataType::Json,
                View::Null => return Err(self.mismatch_named(at, &name, "a value", "null")),
            },
        };
        let (precision, scale) = match (data_type, hint) {
            (DataType::Decimal, Some(h)) => decimal_precision_scale(h),
            (DataType::Decimal, None) => (DEFAULT_DECIMAL_PRECISION, DEFAULT_DECIMAL_SCALE),
            _ => (0, 0),
        };
        let is_pk = self.table.primary_key.contains(&name);
        let nullable = !is_pk && hint.and_then(|h| h.nullable) != Some(false);
        let keep_whole = data_type == DataType::Json && self.slots[slot].json_hint;
        let index = self.table.fields.len();
        self.table.fields.push(Field {
            name: name.clone(),
            data_type,
            nullable,
            precision,
            scale,
            keep_whole,
        });
        self.hinted.push(hinted_type.is_some());
        self.seen.push(0);
        for r in &mut self.required {
            if r.name == name {
                r.field = Some(index);
            }
        }
        let _ = self.by_name.insert(name, index);
        self.slots[slot].field = Some(index);
        Ok(index)
    }

    fn check_required<'a, V: JsonView<'a>>(&self, at: RecordRef<V>) -> Result<(), SchemaError> {
        for r in &self.required {
            if r.field.is_some_and(|i| self.seen[i] == self.stamp) {
                continue;
            }
            return Err(if r.primary_key {
                SchemaError::MissingPrimaryKey {
                    index: at.index,
                    field: r.name.clone(),
                }
            } else {
                SchemaError::NullNotAllowed {
                    record: self.record_id(at),
                    field: r.name.clone(),
                }
            });
        }
        Ok(())
    }

    /// [`Self::slot_id`] for the key at position `i` of an object under `node`, through the
    /// node's [`Node::order`].
    fn slot_at(&mut self, node: usize, i: usize, key: &str) -> usize {
        if let Some(&slot) = self.nodes[node].order.get(i)
            && self.slots[slot].key == key
        {
            return slot;
        }
        let slot = self.slot_id(node, key);
        let order = &mut self.nodes[node].order;
        if i < order.len() {
            order[i] = slot;
        } else if i == order.len() {
            order.push(slot);
        }
        slot
    }

    /// The slot of raw key `key` under `node`, created (and its name normalised) on first sight.
    fn slot_id(&mut self, node: usize, key: &str) -> usize {
        if let Some(&slot) = self.nodes[node].children.get(key) {
            return slot;
        }
        let own = normalize_key(key);
        let name = match &self.nodes[node].prefix {
            Some(parent) => format!("{parent}{PATH_SEPARATOR}{own}"),
            None => own,
        };
        let raw = match &self.nodes[node].raw_prefix {
            Some(parent) => format!("{parent}.{key:?}"),
            None => format!("{key:?}"),
        };
        // dlt keeps an object or a list at nesting level `max_table_nesting` or deeper whole
        // (one JSON column, never a child table): `max_table_nesting = 1` keeps
        // `sender__address` whole and makes a child table of a record's own `tags`.
        let level = self.nodes[node].level;
        let json_hint = self.hints.get(&name).and_then(|h| h.data_type) == Some(DataType::Json)
            || self.max_nesting.is_some_and(|max| level >= max);
        let slot = self.slots.len();
        let shared = match self.slot_names.get(&name) {
            Some(&first) => {
                self.slots[first].shared = true;
                self.fresh_share = true;
                true
            }
            None => {
                let _ = self.slot_names.insert(name.clone(), slot);
                false
            }
        };
        self.slots.push(Slot {
            key: key.to_owned(),
            name,
            field: None,
            child: None,
            json_hint,
            raw,
            shared,
            level,
        });
        let _ = self.nodes[node].children.insert(key.to_owned(), slot);
        slot
    }

    /// The field of `slot`, if it exists (possibly created through another raw key).
    fn resolve(&mut self, slot: usize) -> Option<usize> {
        if let Some(i) = self.slots[slot].field {
            return Some(i);
        }
        let found = self.by_name.get(&self.slots[slot].name).copied();
        self.slots[slot].field = found;
        found
    }

    fn rollback(&mut self, old_types: &[DataType], old_nodes: usize, old_slots: usize) {
        let old_len = old_types.len();
        for f in &self.table.fields[old_len..] {
            let _ = self.by_name.remove(&f.name);
        }
        self.table.fields.truncate(old_len);
        self.hinted.truncate(old_len);
        self.seen.truncate(old_len);
        for (f, t) in self.table.fields.iter_mut().zip(old_types) {
            f.data_type = *t;
        }
        self.nodes.truncate(old_nodes);
        for node in &mut self.nodes {
            node.children.retain(|_, s| *s < old_slots);
            node.order.clear();
        }
        self.slots.truncate(old_slots);
        self.slot_names.retain(|_, s| *s < old_slots);
        for slot in &mut self.slots {
            slot.field = slot.field.filter(|&i| i < old_len);
            slot.child = slot.child.filter(|&n| n < old_nodes);
        }
        for r in &mut self.required {
            r.field = r.field.filter(|&i| i < old_len);
        }
    }

    /// `id=<primary key> (#<index> in page)`, or just the index without a primary key.
    fn record_id<'a, V: JsonView<'a>>(&self, at: RecordRef<V>) -> String {
        let mut parts = Vec::with_capacity(self.table.primary_key.len());
        for name in &self.table.primary_key {
            let Some(value) = find_flattened(at.record, name, None) else {
                return format!("#{} in page", at.index);
            };
            match value.view() {
                View::String(s) => parts.push(s.to_owned()),
                View::Null => return format!("#{} in page", at.index),
                _ => parts.push(value.to_json_string()),
            }
        }
        if parts.is_empty() {
            format!("#{} in page", at.index)
        } else {
            format!("id={} (#{} in page)", parts.join("|"), at.index)
        }
    }

    fn mismatch<'a, V: JsonView<'a>>(
        &self,
        at: RecordRef<V>,
        index: usize,
        found: &str,
    ) -> SchemaError {
        let field = &self.table.fields[index];
        self.mismatch_named(at, &field.name, field.data_type.as_str(), found)
    }

    fn mismatch_named<'a, V: JsonView<'a>>(
        &self,
        at: RecordRef<V>,
        field: &str,
        expected: &str,
        found: &str,
    ) -> SchemaError {
        SchemaError::TypeMismatch {
            record: self.record_id(at),
            field: field.to_owned(),
            expected: expected.to_owned(),
            found: found.to_owned(),
        }
    }

    /// The error for a number no inferred type holds exactly.
    fn number_error<'a, V: JsonView<'a>>(
        &self,
        at: RecordRef<V>,
        field: &str,
        n: &str,
    ) -> SchemaError {
        let (record, field, value) = (self.record_id(at), field.to_owned(), n.to_owned());
        match classify(n) {
            Num::HugeFloat => SchemaError::FloatOutOfRange {
                record,
                field,
                value,
            },
            _ => SchemaError::IntegerOutOfRange {
                record,
                field,
                value,
            },
        }
    }

    fn convert_error<'a, V: JsonView<'a>>(
        &self,
        at: RecordRef<V>,
        index: usize,
        value: V,
        e: ConvertError,
    ) -> SchemaError {
        let field = &self.table.fields[index];
        match e {
            ConvertError::Mismatch(found) => self.mismatch(at, index, found),
            ConvertError::IntegerOutOfRange(value) => SchemaError::IntegerOutOfRange {
                record: self.record_id(at),
                field: field.name.clone(),
                value,
            },
            ConvertError::InexactDouble(value) => SchemaError::InexactDouble {
                record: self.record_id(at),
                field: field.name.clone(),
                value,
            },
            ConvertError::FloatOutOfRange(value) => SchemaError::FloatOutOfRange {
                record: self.record_id(at),
                field: field.name.clone(),
                value,
            },
            ConvertError::DecimalOutOfRange(value) => SchemaError::DecimalOutOfRange {
                record: self.record_id(at),
                field: field.name.clone(),
                value,
                precision: field.precision,
                scale: field.scale,
            },
            ConvertError::Invalid => SchemaError::InvalidValue {
                record: self.record_id(at),
                field: field.name.clone(),
                expected: field.data_type,
                value: value.to_json_string(),
            },
        }
    }
}

/// The value at flattened name `target` in `value` (slow path, for error messages).
fn find_flattened<'a, V: JsonView<'a>>(value: V, target: &str, prefix: Option<&str>) -> Option<V> {
    let View::Object(map) = value.view() else {
        return None;
    };
    for (key, child) in map {
        let own = normalize_key(key);
        let name = match prefix {
            Some(p) => format!("{p}{PATH_SEPARATOR}{own}"),
            None => own,
        };
        if name == target {
            return Some(child);
        }
        if child.is_object()
            && target.len() > name.len() + PATH_SEPARATOR.len()
            && target.starts_with(&name)
            && target[name.len()..].starts_with(PATH_SEPARATOR)
            && let Some(found) = find_flattened(child, target, Some(&name))
        {
            return Some(found);
        }
    }
    None
}

/// A hint's decimal precision and scale, with the defaults filled in.
fn decimal_precision_scale(hint: &ColumnHint) -> (u32, u32) {
    match (hint.precision, hint.scale) {
        (None, None) => (DEFAULT_DECIMAL_PRECISION, DEFAULT_DECIMAL_SCALE),
        (Some(p), None) => (p, 0),
        (None, Some(s)) => (DEFAULT_DECIMAL_PRECISION, s),
        (Some(p), Some(s)) => (p, s),
    }
}

fn check_hint(hint: &ColumnHint) -> Result<(), String> {
    if hint.data_type == Some(DataType::Decimal) {
        let (precision, scale) = decimal_precision_scale(hint);
        if precision == 0 {
            return Err("decimal precision must be at least 1".to_owned());
        }
        if scale > precision {
            return Err(format!(
                "decimal scale {scale} is larger than precision {precision}"
            ));
        }
    }
    Ok(())
}
