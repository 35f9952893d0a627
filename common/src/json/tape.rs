//! [`Tape`]: a page's JSON parsed flat, one `Vec` of nodes for the whole page, instead of
//! a `serde_json::Value` tree with an allocation for every key, string, number and
//! container. A string is a range of the page's text unless serde_json had to unescape it;
//! a number is its text. Nodes are read through [`JsonView`] ([`TapeRef`]).
//!
//! The parse is serde_json's (its grammar, recursion limit and error messages) with a
//! visitor of our own, and accepts and refuses exactly what [`super::from_slice`] does: an
//! object that repeats a key with another value is an error naming the key and its
//! position; the same value twice is kept once.
//!
//! ## Layout
//!
//! Nodes are in document order (pre-order), 12 bytes each: a kind and two `u32`s.
//! - a string or number: its offset and length, in the page's text or in the side buffer
//!   (strings serde_json unescaped, and numbers' texts);
//! - a list or object: the id one past its last node (so a walk skips a subtree in one
//!   step) and how many items or entries it has;
//! - an object's entry: a key node (a string node of its own kind) followed by the value's
//!   nodes.
//!
//! ## The repeated-key check
//!
//! A page's records are objects of one shape at one depth, so each object is first
//! compared with the last object completed at its depth, key by key: while its keys are
//! that object's keys in that order, each is new (that object's keys are distinct). From
//! the first key that differs on, a key is looked for among the object's earlier keys: one
//! by one while the object is small, then in a hash index of its keys.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::NUMBER_TOKEN;
use super::view::{JsonView, View};

/// How many keys an object may have before a key that breaks the shape of the last object
/// at its depth is looked for in a hash index rather than one by one.
const LINEAR_KEYS: u32 = 16;

/// No node (an empty slot of [`Builder::last`]).
const NO_NODE: u32 = u32::MAX;

/// A page's JSON, parsed flat (see the module's documentation).
#[derive(Clone)]
pub struct Tape {
    /// The page's text: strings and keys without escapes are ranges of it.
    text: String,
    /// The strings serde_json unescaped, and the numbers' texts.
    side: String,
    /// The values, in document order; the root is node 0.
    nodes: Vec<Node>,
}

/// What a node is, and where its two numbers point.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Kind {
    Null,
    False,
    True,
    /// Offset and length of its text in the side buffer.
    Number,
    /// A string: offset and length in the page's text.
    Text,
    /// A string: offset and length in the side buffer.
    SideText,
    /// An object's key: offset and length in the page's text; its value follows.
    Key,
    /// An object's key: offset and length in the side buffer; its value follows.
    SideKey,
    /// The id one past its last node, and how many items.
    Array,
    /// The id one past its last node, and how many entries.
    Object,
}

/// One node of a [`Tape`] (12 bytes).
#[derive(Clone, Copy, Debug)]
struct Node {
    kind: Kind,
    a: u32,
    b: u32,
}

impl Node {
    const NULL: Node = Node::new(Kind::Null, 0, 0);

    const fn new(kind: Kind, a: u32, b: u32) -> Self {
        Self { kind, a, b }
    }
}

/// A tape's parts, borrowed: read while it is built as well as after.
#[derive(Clone, Copy)]
struct Parts<'a> {
    text: &'a str,
    side: &'a str,
    nodes: &'a [Node],
}

impl<'a> Parts<'a> {
    fn node(self, id: u32) -> Node {
        self.nodes.get(id as usize).copied().unwrap_or(Node::NULL)
    }

    /// The text of a string, key or number node ("" for other nodes).
    fn str_of(self, node: Node) -> &'a str {
        let source = match node.kind {
            Kind::Text | Kind::Key => self.text,
            Kind::SideText | Kind::SideKey | Kind::Number => self.side,
            _ => return "",
        };
        let start = node.a as usize;
        source
            .get(start..start.saturating_add(node.b as usize))
            .unwrap_or_default()
    }

    fn str_at(self, id: u32) -> &'a str {
        self.str_of(self.node(id))
    }

    /// The id one past the last node of the value at `id`.
    fn end(self, id: u32) -> u32 {
        let node = self.node(id);
        match node.kind {
            Kind::Array | Kind::Object => node.a,
            _ => id.saturating_add(1),
        }
    }

    /// The key node among the entries that start at `from` (a key node) and end before
    /// `stop` whose text is `key`.
    fn find_key(self, mut from: u32, stop: u32, key: &str) -> Option<u32> {
        while from < stop {
            if self.str_at(from) == key {
                return Some(from);
            }
            from = self.end(from.saturating_add(1));
        }
        None
    }
}

/// Whether the value `x` of `p` equals the value `y` of `q` as `serde_json::Value`s
/// compare: numbers by their text, objects whatever their key order.
fn equal(p: Parts<'_>, x: u32, q: Parts<'_>, y: u32) -> bool {
    let (a, b) = (p.node(x), q.node(y));
    match (a.kind, b.kind) {
        (Kind::Null, Kind::Null) | (Kind::False, Kind::False) | (Kind::True, Kind::True) => true,
        (Kind::Number, Kind::Number) => p.str_of(a) == q.str_of(b),
        (
            Kind::Text | Kind::SideText | Kind::Key | Kind::SideKey,
            Kind::Text | Kind::SideText | Kind::Key | Kind::SideKey,
        ) => p.str_of(a) == q.str_of(b),
        (Kind::Array, Kind::Array) => {
            if a.b != b.b {
                return false;
            }
            let (mut i, mut j) = (x.saturating_add(1), y.saturating_add(1));
            for _ in 0..a.b {
                if !equal(p, i, q, j) {
                    return false;
                }
                i = p.end(i);
                j = q.end(j);
            }
            true
        }
        (Kind::Object, Kind::Object) => a.b == b.b && entries_equal(p, x, q, y, a.b),
        _ => false,
    }
}

/// Whether the objects `x` of `p` and `y` of `q`, of `count` entries each, have the same
/// keys with equal values: position by position while their keys agree, then by looking
/// each remaining key of `x` up among the remaining entries of `y`.
fn entries_equal(p: Parts<'_>, x: u32, q: Parts<'_>, y: u32, count: u32) -> bool {
    let (mut i, mut j) = (x.saturating_add(1), y.saturating_add(1));
    let mut left = count;
    while left > 0 && p.str_at(i) == q.str_at(j) {
        if !equal(p, i.saturating_add(1), q, j.saturating_add(1)) {
            return false;
        }
        i = p.end(i.saturating_add(1));
        j = q.end(j.saturating_add(1));
        left -= 1;
    }
    if left == 0 {
        return true;
    }
    // Keys are distinct within an object, so the keys of `x` left are among those of `y`
    // left, if anywhere.
    let y_end = q.end(y);
    let matches = |key_x: u32, key_y: Option<u32>| {
        key_y.is_some_and(|key_y| equal(p, key_x.saturating_add(1), q, key_y.saturating_add(1)))
    };
    if left <= LINEAR_KEYS {
        for _ in 0..left {
            if !matches(i, q.find_key(j, y_end, p.str_at(i))) {
                return false;
            }
            i = p.end(i.saturating_add(1));
        }
        return true;
    }
    let mut keys: HashMap<&str, u32, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(left as usize, foldhash::fast::RandomState::default());
    let mut k = j;
    while k < y_end {
        let _ = keys.insert(q.str_at(k), k);
        k = q.end(k.saturating_add(1));
    }
    for _ in 0..left {
        if !matches(i, keys.get(p.str_at(i)).copied()) {
            return false;
        }
        i = p.end(i.saturating_add(1));
    }
    true
}

impl Tape {
    /// Parses `body` (owned, so the tape can own it and be sent between tasks; no lifetime).
    ///
    /// Accepts and refuses exactly what [`super::from_slice`] accepts and refuses, with the
    /// same error text for a repeated key (with its line and column). Bytes that are not
    /// UTF-8 fail with `from_slice`'s error, which gives their position. A body of 4 GiB or
    /// more is an error (ids and offsets are `u32`s).
    pub fn parse(body: Vec<u8>) -> Result<Tape, serde_json::Error> {
        Self::parse_within(body, u32::MAX)
    }

    /// [`Self::parse`], refusing a body longer than `limit` bytes or with more than `limit`
    /// nodes (the limit is `u32::MAX` but for tests).
    fn parse_within(body: Vec<u8>, limit: u32) -> Result<Tape, serde_json::Error> {
        let text = match String::from_utf8(body) {
            Ok(text) => text,
            Err(not_utf8) => {
                return Err(match super::from_slice(not_utf8.as_bytes()) {
                    Err(err) => err,
                    // serde_json checks every string it reads, and all else is ASCII.
                    Ok(_) => de::Error::custom("the page is not UTF-8"),
                });
            }
        };
        if text.len() > limit as usize {
            return Err(too_large(limit));
        }
        let mut builder = Builder::new(&text, limit);
        let mut de = serde_json::Deserializer::from_str(&text);
        ValueSeed {
            b: &mut builder,
            depth: 0,
        }
        .deserialize(&mut de)?;
        de.end()?;
        let Builder {
            mut side,
            mut nodes,
            ..
        } = builder;
        // The nodes were reserved by a guess from the text's length: give back the rest.
        nodes.shrink_to_fit();
        side.shrink_to_fit();
        Ok(Tape { text, side, nodes })
    }

    fn parts(&self) -> Parts<'_> {
        Parts {
            text: &self.text,
            side: &self.side,
            nodes: &self.nodes,
        }
    }

    /// The whole value.
    pub fn root(&self) -> TapeRef<'_> {
        self.at(0)
    }

    /// The node with this id (from [`TapeRef::id`]). An id not of this tape reads as null.
    pub fn at(&self, id: u32) -> TapeRef<'_> {
        TapeRef { tape: self, id }
    }

    /// The whole value as a `serde_json::Value`, with the node `skip` (if any) replaced by
    /// `Value::Null` (as `Value::take` leaves it).
    pub fn to_value_without(&self, skip: Option<u32>) -> Value {
        value_of(self.parts(), 0, skip)
    }

    /// Heap bytes held (text, side buffer and nodes, as allocated), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.side.capacity()
            + self.nodes.capacity() * std::mem::size_of::<Node>()
    }
}

impl fmt::Debug for Tape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tape").field(&self.root()).finish()
    }
}

/// The value at `id` as a `serde_json::Value`, with the node `skip` as null.
fn value_of(parts: Parts<'_>, id: u32, skip: Option<u32>) -> Value {
    if skip == Some(id) {
        return Value::Null;
    }
    let node = parts.node(id);
    match node.kind {
        Kind::Null => Value::Null,
        Kind::False => Value::Bool(false),
        Kind::True => Value::Bool(true),
        Kind::Number => {
            let text = parts.str_of(node);
            Number::from_str(text).map_or_else(|_| Value::String(text.to_owned()), Value::Number)
        }
        Kind::Text | Kind::SideText | Kind::Key | Kind::SideKey => {
            Value::String(parts.str_of(node).to_owned())
        }
        Kind::Array => {
            let mut items = Vec::with_capacity(node.b as usize);
            let mut item = id.saturating_add(1);
            for _ in 0..node.b {
                items.push(value_of(parts, item, skip));
                item = parts.end(item);
            }
            Value::Array(items)
        }
        Kind::Object => {
            let mut map = Map::with_capacity(node.b as usize);
            let mut key = id.saturating_add(1);
            for _ in 0..node.b {
                let value = key.saturating_add(1);
                let _ = map.insert(parts.str_at(key).to_owned(), value_of(parts, value, skip));
                key = parts.end(value);
            }
            Value::Object(map)
        }
    }
}

/// The error for a page whose ids or offsets would not fit a `u32`.
fn too_large<E: de::Error>(limit: u32) -> E {
    E::custom(format_args!(
        "the page is too large to parse (a page may have at most {limit} bytes and values)"
    ))
}

/// The error for an object with the same key twice with different values, worded as
/// [`super::from_slice`] words it.
fn repeated_key<E: de::Error>(key: &str) -> E {
    E::custom(format_args!(
        "object key {key:?} appears twice with different values \
         (the pipeline refuses to pick one)"
    ))
}

/// A value of a [`Tape`]: the tape and the node's id.
#[derive(Clone, Copy)]
pub struct TapeRef<'a> {
    tape: &'a Tape,
    id: u32,
}

impl TapeRef<'_> {
    /// The node's id, for [`Tape::at`] and [`Tape::to_value_without`].
    pub fn id(self) -> u32 {
        self.id
    }
}

impl fmt::Debug for TapeRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write_json(&mut out);
        f.write_str(&out)
    }
}

impl<'a> JsonView<'a> for TapeRef<'a> {
    type Items = TapeItems<'a>;
    type Entries = TapeEntries<'a>;

    fn view(self) -> View<'a, Self> {
        let parts = self.tape.parts();
        let node = parts.node(self.id);
        match node.kind {
            Kind::Null => View::Null,
            Kind::False => View::Bool(false),
            Kind::True => View::Bool(true),
            Kind::Number => View::Number(parts.str_of(node)),
            Kind::Text | Kind::SideText | Kind::Key | Kind::SideKey => {
                View::String(parts.str_of(node))
            }
            Kind::Array => View::Array(TapeItems {
                tape: self.tape,
                next: self.id.saturating_add(1),
                left: node.b,
            }),
            Kind::Object => View::Object(TapeEntries {
                tape: self.tape,
                next: self.id.saturating_add(1),
                left: node.b,
            }),
        }
    }

    fn json_eq(self, other: Self) -> bool {
        equal(self.tape.parts(), self.id, other.tape.parts(), other.id)
    }

    fn to_value(self) -> Value {
        value_of(self.tape.parts(), self.id, None)
    }
}

/// A list's items on a [`Tape`].
#[derive(Clone)]
pub struct TapeItems<'a> {
    tape: &'a Tape,
    next: u32,
    left: u32,
}

impl<'a> Iterator for TapeItems<'a> {
    type Item = TapeRef<'a>;

    fn next(&mut self) -> Option<TapeRef<'a>> {
        self.left = self.left.checked_sub(1)?;
        let id = self.next;
        self.next = self.tape.parts().end(id);
        Some(TapeRef {
            tape: self.tape,
            id,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for TapeItems<'_> {}

impl std::iter::FusedIterator for TapeItems<'_> {}

/// An object's entries on a [`Tape`], in document order.
#[derive(Clone)]
pub struct TapeEntries<'a> {
    tape: &'a Tape,
    next: u32,
    left: u32,
}

impl<'a> Iterator for TapeEntries<'a> {
    type Item = (&'a str, TapeRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        let parts = self.tape.parts();
        let key = self.next;
        let value = key.saturating_add(1);
        self.next = parts.end(value);
        Some((
            parts.str_at(key),
            TapeRef {
                tape: self.tape,
                id: value,
            },
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for TapeEntries<'_> {}

impl std::iter::FusedIterator for TapeEntries<'_> {}

/// An object's keys, hashed, to the id of their key node.
type KeyIndex = HashMap<u64, u32, foldhash::fast::RandomState>;

/// A tape being built over the page's text `'t`.
struct Builder<'t> {
    text: &'t str,
    side: String,
    nodes: Vec<Node>,
    /// The most nodes, and the longest side buffer, allowed.
    limit: u32,
    /// For each depth, the last object completed there with at least one entry (or
    /// [`NO_NODE`]): the next object at that depth is compared with it key by key.
    last: Vec<u32>,
    /// For each depth, a key index to reuse (an object's, while it is built).
    indexes: Vec<KeyIndex>,
    hasher: foldhash::fast::RandomState,
}

impl<'t> Builder<'t> {
    fn new(text: &'t str, limit: u32) -> Self {
        Self {
            text,
            side: String::with_capacity(text.len() / 32),
            nodes: Vec::with_capacity(text.len() / 8 + 1),
            limit,
            last: Vec::new(),
            indexes: Vec::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn parts(&self) -> Parts<'_> {
        Parts {
            text: self.text,
            side: &self.side,
            nodes: &self.nodes,
        }
    }

    /// The id the next node will have.
    fn next_id(&self) -> u32 {
        // No more than `limit` nodes are pushed.
        self.nodes.len() as u32
    }

    fn push<E: de::Error>(&mut self, node: Node) -> Result<u32, E> {
        let id = self.nodes.len();
        if id >= self.limit as usize {
            return Err(too_large(self.limit));
        }
        self.nodes.push(node);
        Ok(id as u32)
    }

    fn set(&mut self, id: u32, node: Node) {
        if let Some(slot) = self.nodes.get_mut(id as usize) {
            *slot = node;
        }
    }

    /// Appends `s` to the side buffer: its offset and length.
    fn push_side<E: de::Error>(&mut self, s: &str) -> Result<(u32, u32), E> {
        let offset = self.side.len();
        if offset.saturating_add(s.len()) > self.limit as usize {
            return Err(too_large(self.limit));
        }
        self.side.push_str(s);
        Ok((offset as u32, s.len() as u32))
    }

    /// Where `s` lies in the page's text, if it is a slice of it.
    fn in_text(&self, s: &str) -> Option<u32> {
        let offset = s.as_ptr().addr().wrapping_sub(self.text.as_ptr().addr());
        let end = offset.checked_add(s.len())?;
        // `get` checks the range is inside the text, on character boundaries.
        self.text.get(offset..end).map(|_| offset as u32)
    }

    /// Pushes a string or key node: a range of the text if `borrowed` is a slice of it,
    /// else a copy in the side buffer.
    fn push_str<E: de::Error>(&mut self, s: &str, borrowed: bool, key: bool) -> Result<(), E> {
        if borrowed && let Some(offset) = self.in_text(s) {
            let kind = if key { Kind::Key } else { Kind::Text };
            // Inside the text, so its length fits as its offset does.
            return self.push(Node::new(kind, offset, s.len() as u32)).map(drop);
        }
        let (offset, len) = self.push_side(s)?;
        let kind = if key { Kind::SideKey } else { Kind::SideText };
        self.push(Node::new(kind, offset, len)).map(drop)
    }

    /// Pushes a number node for the text `s`.
    fn push_number<E: de::Error>(&mut self, s: &str) -> Result<(), E> {
        let (offset, len) = self.push_side(s)?;
        self.push(Node::new(Kind::Number, offset, len)).map(drop)
    }

    /// Pushes a number node for an integer serde_json parsed (its text is the document's:
    /// JSON has no leading zeros or plus sign, and serde_json hands "-0" as text).
    fn push_integer<E: de::Error>(&mut self, negative: bool, mut magnitude: u64) -> Result<(), E> {
        let mut digits = [0u8; 21];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (magnitude % 10) as u8;
            magnitude /= 10;
            if magnitude == 0 {
                break;
            }
        }
        if negative {
            start -= 1;
            digits[start] = b'-';
        }
        let text = std::str::from_utf8(&digits[start..]).unwrap_or_default();
        self.push_number(text)
    }

    /// The key node, among the entries of the object `object` before the key `key_id`,
    /// with `key_id`'s text. `index` is the object's key index, made once it has more than
    /// [`LINEAR_KEYS`] entries (`count`) and then kept up to date.
    fn earlier_key(
        &mut self,
        object: u32,
        key_id: u32,
        count: u32,
        index: &mut Option<KeyIndex>,
        depth: usize,
    ) -> Option<u32> {
        let parts = Parts {
            text: self.text,
            side: &self.side,
            nodes: &self.nodes,
        };
        let first = object.saturating_add(1);
        let key = parts.str_at(key_id);
        let index = match index {
            Some(index) => index,
            None if count <= LINEAR_KEYS => return parts.find_key(first, key_id, key),
            None => {
                let mut new = self
                    .indexes
                    .get_mut(depth)
                    .map(std::mem::take)
                    .unwrap_or_default();
                new.clear();
                new.reserve(count as usize * 2);
                let mut k = first;
                while k < key_id {
                    let _ = new
                        .entry(self.hasher.hash_one(parts.str_at(k)))
                        .or_insert(k);
                    k = parts.end(k.saturating_add(1));
                }
                index.insert(new)
            }
        };
        match index.entry(self.hasher.hash_one(key)) {
            Entry::Vacant(slot) => {
                let _ = slot.insert(key_id);
                None
            }
            Entry::Occupied(slot) if parts.str_at(*slot.get()) == key => Some(*slot.get()),
            // Two keys with one hash: look the slow way.
            Entry::Occupied(_) => parts.find_key(first, key_id, key),
        }
    }

    /// Records `object`, completed at `depth`, as the one the next object there is compared
    /// with, and keeps its key index (if any) for reuse.
    fn completed(&mut self, depth: usize, object: u32, index: Option<KeyIndex>) {
        if self.last.len() <= depth {
            self.last.resize(depth + 1, NO_NODE);
        }
        if let Some(slot) = self.last.get_mut(depth) {
            *slot = object;
        }
        if let Some(index) = index {
            if self.indexes.len() <= depth {
                self.indexes.resize_with(depth + 1, KeyIndex::default);
            }
            if let Some(slot) = self.indexes.get_mut(depth) {
                *slot = index;
            }
        }
    }

    /// Forgets the objects recorded below `depth` (some may have been dropped).
    fn forget_below(&mut self, depth: usize) {
        for slot in self.last.iter_mut().skip(depth + 1) {
            *slot = NO_NODE;
        }
    }
}

/// Parses one value onto the tape.
struct ValueSeed<'b, 't> {
    b: &'b mut Builder<'t>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        let kind = if v { Kind::True } else { Kind::False };
        self.b.push(Node::new(kind, 0, 0)).map(drop)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.b.push_integer(v < 0, v.unsigned_abs())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.b.push_integer(false, v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // Not called under `arbitrary_precision`; as `super::from_slice` does.
        match Number::from_f64(v) {
            Some(n) => self.b.push_number(n.as_str()),
            None => self.visit_unit(),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.b.push_str(v, true, false)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.b.push_str(v, false, false)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.visit_str(&v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.b.push(Node::NULL).map(drop)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Self { b, depth } = self;
        let list = b.push(Node::new(Kind::Array, 0, 0))?;
        let mut count: u32 = 0;
        while seq
            .next_element_seed(ValueSeed {
                b: &mut *b,
                depth: depth + 1,
            })?
            .is_some()
        {
            // Each item is a node at least, and nodes are counted in a `u32`.
            count += 1;
        }
        let end = b.next_id();
        b.set(list, Node::new(Kind::Array, end, count));
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<(), A::Error> {
        let Self { b, depth } = self;
        let object = b.push(Node::new(Kind::Object, 0, 0))?;
        let first_key = match access.next_key_seed(KeySeed {
            b: &mut *b,
            first: true,
        })? {
            None => {
                b.set(object, Node::new(Kind::Object, object + 1, 0));
                return Ok(());
            }
            Some(FirstKey::Number) => {
                return access.next_value_seed(NumberSeed {
                    b,
                    at: object,
                    checked: false,
                });
            }
            Some(FirstKey::Token) => {
                return access.next_value_seed(NumberSeed {
                    b,
                    at: object,
                    checked: true,
                });
            }
            Some(FirstKey::Name) => object + 1,
        };
        access.next_value_seed(ValueSeed {
            b: &mut *b,
            depth: depth + 1,
        })?;
        let mut count: u32 = 1;

        // The last object at this depth, while this one's keys are its keys in its order:
        // `shape` is its key node matching this object's last key.
        let mut shape = NO_NODE;
        let mut shape_end = 0;
        if let Some(&last) = b.last.get(depth) {
            let parts = b.parts();
            let node = parts.node(last);
            if node.kind == Kind::Object
                && node.b > 0
                && parts.str_at(last + 1) == parts.str_at(first_key)
            {
                shape = last + 1;
                shape_end = node.a;
            }
        }
        let mut index = None;

        loop {
            let key_id = b.next_id();
            let side_len = b.side.len();
            let more = access.next_key_seed(KeySeed {
                b: &mut *b,
                first: false,
            })?;
            if more.is_none() {
                break;
            }
            access.next_value_seed(ValueSeed {
                b: &mut *b,
                depth: depth + 1,
            })?;
            if shape != NO_NODE {
                let parts = b.parts();
                let next = parts.end(shape + 1);
                if next < shape_end && parts.str_at(next) == parts.str_at(key_id) {
                    shape = next;
                    count += 1;
                    continue;
                }
                shape = NO_NODE;
            }
            match b.earlier_key(object, key_id, count, &mut index, depth) {
                None => count += 1,
                Some(earlier) => {
                    let parts = b.parts();
                    if !equal(parts, earlier + 1, parts, key_id + 1) {
                        return Err(repeated_key(parts.str_at(key_id)));
                    }
                    // The same value twice: keep the first.
                    b.nodes.truncate(key_id as usize);
                    b.side.truncate(side_len);
                    b.forget_below(depth);
                }
            }
        }
        let end = b.next_id();
        b.set(object, Node::new(Kind::Object, end, count));
        b.completed(depth, object, index);
        Ok(())
    }
}

/// What an object's first key turned out to be.
enum FirstKey {
    /// A name, pushed as a key node.
    Name,
    /// serde_json's number token: the "object" is a number, whose text follows.
    Number,
    /// The number token written in the document: what follows is a string that must be a
    /// number's text (as `super::from_slice` and serde_json's `Value` read it).
    Token,
}

/// Reads an object's key onto the tape (the first key may be serde_json's number token).
struct KeySeed<'b, 't> {
    b: &'b mut Builder<'t>,
    first: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = FirstKey;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<FirstKey, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = FirstKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<FirstKey, E> {
        if self.first && v == NUMBER_TOKEN {
            // serde_json's own token is not in the page's text.
            return Ok(match self.b.in_text(v) {
                Some(_) => FirstKey::Token,
                None => FirstKey::Number,
            });
        }
        self.b.push_str(v, true, true)?;
        Ok(FirstKey::Name)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FirstKey, E> {
        if self.first && v == NUMBER_TOKEN {
            return Ok(FirstKey::Token);
        }
        self.b.push_str(v, false, true)?;
        Ok(FirstKey::Name)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<FirstKey, E> {
        self.visit_str(&v)
    }
}

/// Reads a number's text (what follows serde_json's number token) into the node `at`.
/// `checked`: the token was the document's, so the text is checked as a number as
/// `super::from_slice` checks it.
struct NumberSeed<'b, 't> {
    b: &'b mut Builder<'t>,
    at: u32,
    checked: bool,
}

impl<'de> DeserializeSeed<'de> for NumberSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for NumberSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number's text")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let (offset, len) = if self.checked {
            let number = Number::from_str(v).map_err(E::custom)?;
            self.b.push_side(number.as_str())?
        } else {
            self.b.push_side(v)?
        };
        self.b.set(self.at, Node::new(Kind::Number, offset, len));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::from_slice;
    use serde_json::json;

    fn tape(text: &str) -> Tape {
        Tape::parse(text.as_bytes().to_vec()).unwrap()
    }

    /// A parse's outcome: the value and its text, or the error's text.
    type Outcome = Result<(Value, String), String>;

    /// Both parsers' outcomes for `bytes`: the tape's, then from_slice's.
    fn outcomes(bytes: &[u8]) -> (Outcome, Outcome) {
        let strict = from_slice(bytes)
            .map(|v| {
                let text = serde_json::to_string(&v).unwrap();
                (v, text)
            })
            .map_err(|e| e.to_string());
        let tape = Tape::parse(bytes.to_vec())
            .map(|t| (t.root().to_value(), t.root().to_json_string()))
            .map_err(|e| e.to_string());
        (tape, strict)
    }

    fn assert_same(bytes: &[u8]) {
        let (tape, strict) = outcomes(bytes);
        assert_eq!(tape, strict, "{:?}", String::from_utf8_lossy(bytes));
    }

    /// A walk of a value: its keys, items and scalars in order.
    fn walk<'a, V: JsonView<'a>>(v: V, out: &mut Vec<String>) {
        match v.view() {
            View::Null => out.push("null".into()),
            View::Bool(b) => out.push(b.to_string()),
            View::Number(n) => out.push(format!("#{n}")),
            View::String(s) => out.push(format!("s{s}")),
            View::Array(items) => {
                out.push(format!("[{}", items.len()));
                for item in items {
                    walk(item, out);
                }
                out.push("]".into());
            }
            View::Object(entries) => {
                out.push(format!("{{{}", entries.len()));
                let mut entries = entries;
                while let Some((k, v)) = entries.next() {
                    out.push(format!("k{k} ({} left)", entries.len()));
                    walk(v, out);
                }
                out.push("}".into());
            }
        }
    }

    const DOCUMENTS: &[&str] = &[
        r#"{"b": [1, -2, 2.5, true, null, "x"], "a": {"c": {}}, "e": []}"#,
        r#"{}"#,
        r#"[]"#,
        r#"[[], {}, [[]], [{}], {"a": {}}, {"a": []}]"#,
        r#"{"a": "h\u00e9llo w\u00f6rld", "b": "你好 🚀", "c": "\ud83d\ude80", "d\"k": "\n\t\\\/\b\f\r"}"#,
        r#"{"\u00e9": 1, "é2": "\u0000\u001f"}"#,
        r#"[-0, 0, 1.50, 1E+5, 1e-7, 2.5E10, 18446744073709551616, 18446744073709551615,
            -9223372036854775809, -9223372036854775808, 1e400, -1.0e-400, 123456789012345678901234567890.5]"#,
        "7",
        "-7",
        "-0",
        "1.50",
        "\"top\"",
        "\"esc\\\"aped\"",
        "true",
        "false",
        "null",
        " \n\t [1 , 2 ] \n ",
        r#"{"data": [{"id": 1, "x": {"k": [1, {"z": null}]}}, {"id": 2, "x": {"k": []}}], "next": "p2"}"#,
        r#"[{"a": 1, "b": 2, "c": 3}, {"a": 1}, {},
            {"x": {"y": [{"k": 1, "l": 2}, {"k": 2}, {"k": 3, "l": 4, "m": {"n": 5}}]}},
            {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "a2": [1, {"z": null}]}]"#,
        r#"{"$serde_json::private::Number": "12"}"#,
        r#"{"$serde_json::private::Numbe\u0072": "-1.5e3"}"#,
        r#"[{"a": 1, "$serde_json::private::Number": "12"}]"#,
    ];

    #[test]
    fn documents_read_as_from_slice_reads_them() {
        for text in DOCUMENTS {
            let expected = from_slice(text.as_bytes()).unwrap();
            let t = tape(text);
            assert_eq!(t.root().to_value(), expected, "{text}");
            assert_eq!(t.to_value_without(None), expected, "{text}");
            assert_eq!(
                t.root().to_json_string(),
                serde_json::to_string(&expected).unwrap(),
                "{text}"
            );
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            walk(t.root(), &mut ours);
            walk(&expected, &mut theirs);
            assert_eq!(ours, theirs, "{text}");
            assert!(t.root().json_eq(t.root()));
            assert_eq!(
                format!("{:?}", t.root()),
                serde_json::to_string(&expected).unwrap()
            );
        }
    }

    #[test]
    fn nodes_are_compact() {
        assert_eq!(std::mem::size_of::<Node>(), 12);
        // Strings without escapes are ranges of the text: nothing in the side buffer.
        let t = tape(r#"{"a": ["x", "yz"], "b": {"c": "d"}}"#);
        assert!(t.side.is_empty());
        assert_eq!(t.nodes.len(), 9);
        assert!(t.heap_bytes() >= t.text.len() + 9 * 12);
    }

    fn page(records: usize) -> String {
        let mut text = String::from("{\"data\": [");
        for i in 0..records {
            if i > 0 {
                text.push_str(",\n");
            }
            let record = match i % 7 {
                3 => format!(
                    r#"{{"name":"n\"{i}","id":{i},"sender":{{"y":null,"x":1.5}},"tags":["a","b"]}}"#
                ),
                5 => format!(r#"{{"id":{i},"name":"n{i}","extra":[{{"q":{i}}}],"tags":[]}}"#),
                _ => format!(
                    r#"{{"id":{i},"name":"n\"{i}","tags":["a","b"],"sender":{{"x":1.5,"y":null}},"score":-{i}.25e3}}"#
                ),
            };
            text.push_str(&record);
        }
        text.push_str("], \"next\": {\"cursor\": \"c\\u00e9\"}}");
        text
    }

    #[test]
    fn a_generated_page_reads_as_from_slice_reads_it() {
        let text = page(1000);
        assert_same(text.as_bytes());
        let t = tape(&text);
        let data = t.root().get("data").unwrap();
        match data.view() {
            View::Array(items) => assert_eq!(items.len(), 1000),
            _ => panic!("data is a list"),
        }
    }

    #[test]
    fn a_repeated_key_is_an_error_with_from_slice_s_text() {
        let cases = [
            "{\"id\": 1,\n \"a\": 1, \"a\": 2}",
            r#"{"data": [{"id": 1}, {"id": 2, "x": {"k": 1, "k": "1"}}]}"#,
            r#"[{"a":1,"b":2},{"b":1,"a":2,"b":3}]"#,
            r#"[{"a":1,"b":2},{"a":1,"b":2,"a":3}]"#,
            r#"[{"a":1,"b":2},{"a":1,"b":2,"c":{"d":1},"c":{"d":2}}]"#,
            r#"{"k": {"x": 1, "y": 2}, "k": {"y": 2, "x": 1.0}}"#,
            r#"{"k": [1, 2], "k": [1, 2, 3]}"#,
            r#"{"k": "\u00e9", "\u006b": "é2"}"#,
            r#"{"k": 1, "k": 1, "k": 2}"#,
            r#"{"a": {"k": 1, "k": 2}, "a": 3}"#,
        ];
        for text in cases {
            let err = Tape::parse(text.as_bytes().to_vec())
                .unwrap_err()
                .to_string();
            assert_eq!(err, from_slice(text.as_bytes()).unwrap_err().to_string());
            assert!(err.contains("appears twice"), "{err}");
            assert!(err.contains("line "), "{err}");
        }
        let err = Tape::parse(cases[0].as_bytes().to_vec())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#"key "a" appears twice"#) && err.contains("line 2"),
            "{err}"
        );
    }

    #[test]
    fn a_key_repeated_with_the_same_value_is_kept_once() {
        let cases = [
            r#"{"k": {"x": 1}, "j": 0, "k": {"x": 1}}"#,
            r#"{"k": {"x": 1, "y": [1, "é"]}, "k": {"y": [1, "\u00e9"], "x": 1}, "z": 2}"#,
            r#"{"a": 1, "a": 1, "a": 1, "b": "\n", "b": "\n"}"#,
            // A dropped value held objects at a deeper depth; the next ones there must
            // still be checked.
            r#"{"a": [{"p": 1, "q": 2}], "a": [{"p": 1, "q": 2}], "b": [{"q": 1, "p": 2}, {"p": 2, "q": 1}]}"#,
            r#"[{"a": 1, "b": 2}, {"a": 1, "b": 2, "a": 1}, {"a": 1, "b": 2}]"#,
            r#"{"a": [{"p": 1, "q": 2}], "a": [{"p": 1, "q": 2}], "b": [{"p": 2, "q": 1, "p": 3}]}"#,
        ];
        for text in cases {
            assert_same(text.as_bytes());
        }
        assert_eq!(
            tape(cases[0]).root().to_value(),
            json!({"k": {"x": 1}, "j": 0})
        );
        // The same key in different objects is fine.
        assert_same(br#"[{"a": 1}, {"a": 2, "b": {"a": 3}}]"#);
        assert!(Tape::parse(br#"[{"a": 1}, {"a": 2, "b": {"a": 3}}]"#.to_vec()).is_ok());
    }

    #[test]
    fn large_objects_are_checked_by_index() {
        let keys = |order: &mut dyn Iterator<Item = usize>| {
            order
                .map(|i| format!("\"k{i}\": {i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let forward = keys(&mut (0..10_000));
        let backward = keys(&mut (0..10_000).rev());
        // Same keys, other order: no error, equal to from_slice.
        let text = format!("[{{{forward}}}, {{{backward}}}, {{{forward}}}]");
        assert_same(text.as_bytes());
        // A repeat at the end of a large object, with another and with the same value.
        for tail in [r#""k17": 18"#, r#""k17": 17"#, r#""k9999": 1"#] {
            for body in [&forward, &backward] {
                let text = format!("[{{{forward}}}, {{{body}, {tail}}}]");
                assert_same(text.as_bytes());
                let text = format!("{{{body}, {tail}}}");
                assert_same(text.as_bytes());
            }
        }
        // Equal large objects in other orders.
        let a = tape(&format!("{{{forward}}}"));
        let b = tape(&format!("{{{backward}}}"));
        assert!(a.root().json_eq(b.root()) && b.root().json_eq(a.root()));
        let c = tape(&format!("{{{backward}, \"x\": 1}}"));
        assert!(!a.root().json_eq(c.root()));
    }

    #[test]
    fn not_utf8_trailing_characters_and_empty_input_are_errors() {
        let bad = b"{\"id\": 1,\n \"a\": \"\xff\"}";
        let err = Tape::parse(bad.to_vec()).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert_eq!(err, from_slice(bad).unwrap_err().to_string());
        for text in [
            "",
            "   ",
            "{} x",
            "[1, 2",
            "[1,]",
            "{\"a\" 1}",
            "{\"a\": 1,}",
            "01",
            "nul",
            "\"\\x\"",
            "{1: 2}",
            "\u{feff}{}",
            r#"{"$serde_json::private::Number": "x"}"#,
            r#"{"$serde_json::private::Number": 5}"#,
            r#"{"$serde_json::private::Number": "5", "b": 1}"#,
            r#"{"$serde_json::private::Number": "5 "}"#,
        ] {
            let (ours, theirs) = outcomes(text.as_bytes());
            assert!(theirs.is_err(), "{text}");
            assert_eq!(ours, theirs, "{text}");
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_same(deep.as_bytes());
        let deep = format!("{}1{}", "{\"k\":[".repeat(63), "]}".repeat(63));
        assert_same(deep.as_bytes());
        let deep = format!("{}1{}", "{\"k\":[".repeat(64), "]}".repeat(64));
        assert_same(deep.as_bytes());
    }

    #[test]
    fn a_page_too_large_is_an_error() {
        let err = Tape::parse_within(b"[1, 2]".to_vec(), 5).unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
        assert!(Tape::parse_within(b"[1, 2]".to_vec(), 6).is_ok());
        // Nodes and the side buffer never outgrow the text (each node is a byte of it at
        // least, unescaped text is no longer than its source), so only the text's length
        // can be over the limit.
    }

    #[test]
    fn a_page_without_its_records() {
        let text = r#"{"data": [{"id": 1}, {"id": 2}], "next": {"cursor": "c2"}, "n": 1.50}"#;
        let t = tape(text);
        let data = t.root().get("data").unwrap();
        let mut expected = from_slice(text.as_bytes()).unwrap();
        let records = expected["data"].take();
        assert_eq!(t.to_value_without(Some(data.id())), expected);
        assert_eq!(t.at(data.id()).to_value(), records);
        assert_eq!(t.to_value_without(Some(t.root().id())), Value::Null);
        // An id of no value (a key's) changes nothing.
        assert_eq!(
            t.to_value_without(Some(data.id() - 1)),
            from_slice(text.as_bytes()).unwrap()
        );

        let root = t.root();
        assert_eq!(
            root.get("n").map(|n| n.to_value()),
            Some(from_slice(b"1.50").unwrap())
        );
        assert!(root.get("missing").is_none());
        assert!(root.get("data").unwrap().get("id").is_none());
        let cursor = root.get("next").and_then(|n| n.get("cursor")).unwrap();
        assert!(matches!(cursor.view(), View::String("c2")));
        assert_eq!(format!("{cursor:?}"), "\"c2\"");

        let other =
            tape(r#"{"n": 1.50, "next": {"cursor": "c2"}, "data": [{"id": 1}, {"id": 2}]}"#);
        assert!(root.json_eq(other.root()) && other.root().json_eq(root));
        let changed =
            tape(r#"{"n": 1.5, "next": {"cursor": "c2"}, "data": [{"id": 1}, {"id": 2}]}"#);
        assert!(!root.json_eq(changed.root()), "numbers compare by text");
        let records = root.get("data").unwrap();
        match records.view() {
            View::Array(mut items) => {
                let (first, second) = (items.next().unwrap(), items.next().unwrap());
                assert!(!first.json_eq(second));
                assert!(first.json_eq(other.root().get("data").unwrap().view_first()));
            }
            _ => panic!("data is a list"),
        }
    }

    trait First<'a>: JsonView<'a> {
        fn view_first(self) -> Self {
            match self.view() {
                View::Array(mut items) => items.next().unwrap(),
                _ => panic!("not a list"),
            }
        }
    }

    impl<'a> First<'a> for TapeRef<'a> {}

    /// A small pseudo-random generator (xorshift), for documents.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    fn random_value(rng: &mut Rng, depth: usize, out: &mut String) {
        const SCALARS: &[&str] = &[
            "1",
            "1.0",
            "-0",
            "2",
            "null",
            "true",
            "false",
            "\"x\"",
            "\"\\u0078\"",
            "\"y\\n\"",
            "1e2",
            "1E2",
            "18446744073709551616",
            "\"é\"",
        ];
        const KEYS: &[&str] = &["a", "b", "c", "d", "\\u0061", "e\\\"", "f", "g"];
        let space = |rng: &mut Rng, out: &mut String| {
            if rng.below(4) == 0 {
                out.push_str([" ", "\n", "\t", "  \n "][rng.below(4)]);
            }
        };
        space(rng, out);
        match if depth > 4 { 0 } else { rng.below(5) } {
            0 | 1 => out.push_str(SCALARS[rng.below(SCALARS.len() as u64)]),
            2 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    random_value(rng, depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..rng.below(6) {
                    if i > 0 {
                        out.push(',');
                    }
                    space(rng, out);
                    out.push('"');
                    out.push_str(KEYS[rng.below(KEYS.len() as u64)]);
                    out.push_str("\":");
                    random_value(rng, depth + 1, out);
                }
                out.push('}');
            }
        }
        space(rng, out);
    }

    /// Random documents (many repeating keys, with equal and other values; some cut
    /// short): the same outcome as from_slice, value or error text.
    #[test]
    fn random_documents_read_as_from_slice_reads_them() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut ok, mut failed, mut twice) = (0, 0, 0);
        for _ in 0..20_000 {
            let mut text = String::new();
            // Lists of objects, as pages have, with a random document now and then.
            if rng.below(2) == 0 {
                text.push('[');
                for i in 0..rng.below(6) {
                    if i > 0 {
                        text.push(',');
                    }
                    random_value(&mut rng, 1, &mut text);
                }
                text.push(']');
            } else {
                random_value(&mut rng, 0, &mut text);
            }
            if rng.below(10) == 0 {
                let cut = rng.below(text.len() as u64 + 1);
                text.truncate(text.floor_char_boundary(cut));
            }
            let (ours, theirs) = outcomes(text.as_bytes());
            match &theirs {
                Ok(_) => ok += 1,
                Err(e) if e.contains("appears twice") => twice += 1,
                Err(_) => failed += 1,
            }
            assert_eq!(ours, theirs, "{text}");
        }
        assert!(
            ok > 1000 && failed > 1000 && twice > 1000,
            "{ok} parsed, {twice} with a repeated key, {failed} refused otherwise"
        );
        println!("{ok} parsed, {twice} with a repeated key, {failed} refused otherwise");
    }

    /// Not a test: the time to parse a 10 MB page both ways (run in release with
    /// `cargo test -p common --release --lib -- --ignored tape_speed --nocapture`).
    #[test]
    #[ignore]
    fn tape_speed() {
        use std::time::Instant;
        let text = page(130_000);
        let bytes = text.into_bytes();
        println!("page: {:.1} MB", bytes.len() as f64 / 1e6);
        let best = |f: &mut dyn FnMut()| {
            (0..7)
                .map(|_| {
                    let start = Instant::now();
                    f();
                    start.elapsed()
                })
                .min()
                .unwrap()
        };
        let serde = best(&mut || {
            let _ = std::hint::black_box(serde_json::from_slice::<Value>(&bytes).unwrap());
        });
        let strict = best(&mut || {
            let _ = std::hint::black_box(from_slice(&bytes).unwrap());
        });
        let mut copies: Vec<Vec<u8>> = (0..7).map(|_| bytes.clone()).collect();
        let tape = best(&mut || {
            let _ = std::hint::black_box(Tape::parse(copies.pop().unwrap()).unwrap());
        });
        let t = Tape::parse(bytes.clone()).unwrap();
        let walk_time = best(&mut || {
            let _ = std::hint::black_box(t.root().to_json_string());
        });
        println!("serde_json::from_slice::<Value>: {serde:?}");
        println!("json::from_slice (strict):       {strict:?}");
        println!("Tape::parse:                     {tape:?}");
        println!("tape write_json (for scale):     {walk_time:?}");
        println!(
            "tape heap: {:.1} MB ({} nodes)",
            t.heap_bytes() as f64 / 1e6,
            t.nodes.len()
        );
    }
}
