//! The column index of one workspace's profiles: for every attribute path
//! and every custom event, which profiles hold which values, as roaring
//! bitmaps of profile ids. Segment filters read their attribute and event
//! leaves from here instead of scanning profiles (`segment::eval`).
//!
//! The profile table stays the record of what each profile holds; this is
//! derived from it and kept in step by `ProfileStore` (the one place
//! profiles change). Snapshots store it (format 7, `image`); loading an
//! older one rebuilds it from the table ([`ColumnsBuilder`]).
//!
//! # What is indexed
//!
//! A column is one path as `paths::flatten` lists it. Each value there
//! files the profile under some *keys* (`keys_of`):
//!
//! - every value: `exists`;
//! - a string: its text, in a dictionary (`equals`, `matches_regex`: a
//!   regex runs once per distinct text);
//! - a number: an order-preserving key in an ordered index (`equals`,
//!   `greater_than`, `less_than`; `-0` is `0`, so `3` equals `3.0`);
//! - a time: its instant in a second ordered index, and the profile in
//!   the column's `dated` set. Times' texts are not in the dictionary
//!   (nearly every one is distinct, and a filter rarely asks them): a
//!   string `equals` finds them by the instant the string names, and a
//!   regex checks the `dated` profiles' texts one by one;
//! - a boolean: one of two bitmaps;
//! - a string array: each item, in a dictionary (`includes_value`);
//! - a location: a bitmap of holders (`within_km` then checks only those).
//!
//! The index is a *set* of `(path, key, profile)` triples. A profile can
//! reach one key by several values (two elements of an array of objects,
//! or `a.b` both top-level and nested), so a change removes a triple only
//! once no value left at that path still gives the key (`attribute_changed`).
//!
//! Every set here holds live profiles only: deleting or merging a profile
//! away removes all its triples. A negated filter is then the workspace's
//! live set minus the positive one.
//!
//! Events: per name, the profiles that did it, and two ordered indexes
//! (count, last time). Never doing an event is count 0, which no index
//! holds: `less_than n` is the live set minus `count ≥ n`.
//!
//! # Sharing with readers
//!
//! Readers take a [`Columns`] clone (`ProfileStore::view`): O(1), one `Arc`.
//! Everything below is shared copy-on-write at two levels, a column and
//! then a part of it (a dictionary shard, an ordered bucket, a bitmap), so
//! a write made while a reader holds a view copies only the parts it
//! touches, and the reader keeps answering as of its view.
//!
//! # Ordered indexes
//!
//! Numbers, times, event counts and last times go to an [`Ordered`]: the
//! key space is cut into buckets of consecutive keys, each with the bitmap
//! of its profiles. A bucket either holds one key (any number of profiles:
//! low-cardinality values cost a bitmap each) or a sorted list of at most
//! [`BUCKET_CAP`] `(key, profile)` pairs (high-cardinality values, like
//! times, cost ~16 B per pair). Over the buckets, a coarser cut into
//! *spans* of ~`SPAN_CAP` pairs keeps each span's profiles and pair count.
//! A range unions the bitmaps of the spans it covers whole (or sums their
//! counts), and the buckets answer the two ends it cuts: a wide range at
//! 10M profiles reads a few hundred spans, not thousands of buckets.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::ops::{Bound, RangeInclusive};
use std::sync::Arc;

use compact_str::CompactString;
use foldhash::fast::{FixedState, RandomState};
use roaring::{MultiOps, RoaringBitmap};

use super::paths;
use super::{AttrObject, AttrValue, Attrs, EventStats, Events};
use crate::model::{Millis, Uid};

mod image;

pub use image::{ColumnImage, EventImage, Holders, Runs};

type Map<K, V> = hashbrown::HashMap<K, V, RandomState>;

/// Most `(key, profile)` pairs an ordered bucket of several keys holds
/// before it splits.
pub const BUCKET_CAP: usize = 512;

/// About how many `(key, profile)` pairs an ordered span covers before it
/// splits (see [`Ordered`]). A span's bitmap is copied when a write
/// touches it while a reader holds it, so this trades that copy (~2 B a
/// pair) against how many spans a wide range unions. Unit tests use a
/// smaller cap so that their few thousand pairs split spans too.
const SPAN_CAP: u64 = if cfg!(test) { 1024 } else { 8192 };

/// How many dictionary values a regex tries between two looks at whether
/// to stop (a read's deadline).
pub const STOP_EVERY: usize = 64;

/// Dictionary shards: a write copies one shard (1/64 of the distinct
/// values) when a reader still holds it.
const SHARDS: usize = 64;

/// The order-preserving key of a number (`-0` is `0`).
pub fn num_key(n: f64) -> u64 {
    let n = if n == 0.0 { 0.0 } else { n };
    let b = n.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// The order-preserving key of an instant.
pub fn time_key(at: Millis) -> u64 {
    (at as u64) ^ (1 << 63)
}

/// Keys strictly above `k`.
pub fn above(k: u64) -> Option<RangeInclusive<u64>> {
    k.checked_add(1).map(|lo| lo..=u64::MAX)
}

/// Keys strictly below `k`.
pub fn below(k: u64) -> Option<RangeInclusive<u64>> {
    k.checked_sub(1).map(|hi| 0..=hi)
}

/// One key a value files its profile under, within its column.
#[derive(Clone, Debug, PartialEq)]
enum Key<'a> {
    Exists,
    Text(&'a str),
    Num(u64),
    Time(u64),
    Bool(bool),
    Item(&'a str),
    Location,
    Dated,
}

/// Calls `out` with every key `v` gives (see the module docs), `Exists`
/// first.
fn keys_of<'a>(v: &'a AttrValue, out: &mut dyn FnMut(Key<'a>)) {
    out(Key::Exists);
    match v {
        AttrValue::Str(s) => out(Key::Text(s)),
        AttrValue::Num(n) => out(Key::Num(num_key(*n))),
        AttrValue::Bool(b) => out(Key::Bool(*b)),
        AttrValue::Time { at, .. } => {
            out(Key::Dated);
            out(Key::Time(time_key(*at)));
        }
        AttrValue::Array(items) => items.iter().for_each(|i| out(Key::Item(i))),
        AttrValue::Location { .. } => out(Key::Location),
        AttrValue::Object(_) | AttrValue::Objects(_) => {}
    }
}

/// Whether `v` gives `key`.
fn gives(v: &AttrValue, key: &Key<'_>) -> bool {
    match (key, v) {
        (Key::Exists, _) => true,
        (Key::Text(t), AttrValue::Str(s)) => s == t,
        (Key::Dated, AttrValue::Time { .. }) => true,
        (Key::Num(k), AttrValue::Num(n)) => num_key(*n) == *k,
        (Key::Time(k), AttrValue::Time { at, .. }) => time_key(*at) == *k,
        (Key::Bool(b), AttrValue::Bool(x)) => b == x,
        (Key::Item(i), AttrValue::Array(items)) => items.iter().any(|x| x == i),
        (Key::Location, AttrValue::Location { .. }) => true,
        _ => false,
    }
}

/// The attribute and event columns of one workspace.
#[derive(Clone, Debug, Default)]
pub struct Columns {
    attrs: Arc<Map<CompactString, Arc<Column>>>,
    events: Arc<Map<CompactString, Arc<EventColumn>>>,
}

/// One attribute path's index.
#[derive(Clone, Debug, Default)]
pub struct Column {
    exists: Arc<RoaringBitmap>,
    /// Whether some profile ever had more than one value here (sticky
    /// until the index is rebuilt). While not, each profile has at most
    /// one number or time and one text here, so counts can add up bucket
    /// and dictionary sizes instead of building sets.
    multi: bool,
    text: Dict,
    items: Dict,
    nums: Ordered,
    times: Ordered,
    bools: [Arc<RoaringBitmap>; 2],
    locations: Arc<RoaringBitmap>,
    /// Profiles with a time here (whose texts the dictionary leaves out).
    dated: Arc<RoaringBitmap>,
}

/// One custom event's index.
#[derive(Clone, Debug, Default)]
pub struct EventColumn {
    did: Arc<RoaringBitmap>,
    counts: Ordered,
    last: Ordered,
}

impl Columns {
    /// The columns of builders that each took their own part.
    pub fn merge(parts: Vec<Columns>) -> Columns {
        let mut attrs = Map::default();
        let mut events = Map::default();
        for c in parts {
            attrs.extend(Arc::unwrap_or_clone(c.attrs));
            events.extend(Arc::unwrap_or_clone(c.events));
        }
        Columns {
            attrs: Arc::new(attrs),
            events: Arc::new(events),
        }
    }

    /// Files every value and event of a profile (new, or just loaded).
    pub fn add_profile(&mut self, uid: Uid, attrs: &Attrs, events: &Events) {
        for (name, v) in attrs.iter() {
            paths::flatten_value(name, &v, &mut |path, v| self.add_value(uid, path, v));
        }
        for (name, stats) in events.iter() {
            self.event_changed(uid, name, None, Some(&stats));
        }
    }

    /// Removes every triple of a profile that ends (deleted, merged away)
    /// or is about to be rewritten whole (merged into).
    pub fn remove_profile(&mut self, uid: Uid, attrs: &Attrs, events: &Events) {
        for (name, v) in attrs.iter() {
            paths::flatten_value(name, &v, &mut |path, v| {
                keys_of(v, &mut |k| self.remove_key(path, &k, uid));
            });
        }
        for (name, stats) in events.iter() {
            self.event_changed(uid, name, Some(&stats), None);
        }
    }

    /// The top-level attribute `name` of profile `uid` was `old` and the
    /// profile's attributes are now `now`.
    pub fn attribute_changed(
        &mut self,
        uid: Uid,
        name: &str,
        old: Option<&AttrValue>,
        now: &AttrObject,
    ) {
        let new = now.get(name);
        if old == new {
            return;
        }
        if let Some(old) = old {
            paths::flatten_value(name, old, &mut |path, v| {
                keys_of(v, &mut |k| {
                    if !paths::any_at(now, path, &mut |x| gives(x, &k)) {
                        self.remove_key(path, &k, uid);
                    }
                });
            });
        }
        if let Some(new) = new {
            paths::flatten_value(name, new, &mut |path, v| self.add_value(uid, path, v));
        }
    }

    /// Event `name` of profile `uid` went from `old` to `new` (`None`:
    /// never done).
    pub fn event_changed(
        &mut self,
        uid: Uid,
        name: &str,
        old: Option<&EventStats>,
        new: Option<&EventStats>,
    ) {
        if old == new {
            return;
        }
        if new.is_none() && !self.events.contains_key(name) {
            return;
        }
        let events = Arc::make_mut(&mut self.events);
        let col = Arc::make_mut(events.entry_ref(name).or_default());
        if let Some(old) = old {
            col.counts.remove(old.count, uid);
            col.last.remove(time_key(old.last), uid);
        }
        match new {
            Some(new) => {
                Arc::make_mut(&mut col.did).insert(uid);
                col.counts.insert(new.count, uid);
                col.last.insert(time_key(new.last), uid);
            }
            None => {
                Arc::make_mut(&mut col.did).remove(uid);
                if col.did.is_empty() {
                    events.remove(name);
                }
            }
        }
    }

    fn add_value(&mut self, uid: Uid, path: &str, v: &AttrValue) {
        let col = Arc::make_mut(&mut self.attrs).entry_ref(path).or_default();
        let col = Arc::make_mut(col);
        keys_of(v, &mut |k| col.insert(&k, uid));
    }

    /// Removes one triple; a column nobody holds a value in any more goes.
    fn remove_key(&mut self, path: &str, key: &Key<'_>, uid: Uid) {
        if !self.attrs.contains_key(path) {
            return;
        }
        let attrs = Arc::make_mut(&mut self.attrs);
        let col = Arc::make_mut(attrs.get_mut(path).expect("checked"));
        col.remove(key, uid);
        if col.exists.is_empty() {
            attrs.remove(path);
        }
    }

    /// The column of an attribute path, if any profile holds a value there.
    pub fn attribute(&self, path: &str) -> Option<&Column> {
        self.attrs.get(path).map(|c| &**c)
    }

    /// The index of a custom event, if any live profile did it.
    pub fn event(&self, name: &str) -> Option<&EventColumn> {
        self.events.get(name).map(|c| &**c)
    }
}

/// Builds [`Columns`] from every profile at once, ids ascending (a store
/// being loaded): each set is gathered as a sorted list and built in one
/// go, and each ordered index cut into buckets from its sorted pairs,
/// instead of one insert at a time.
///
/// A builder may take only part of the columns ([`ColumnsBuilder::part`]),
/// so that several threads each build some from the same profiles, and
/// [`Columns::merge`] puts them together.
pub struct ColumnsBuilder {
    attrs: Map<CompactString, ColumnParts>,
    events: Map<CompactString, EventParts>,
    /// `(i, n)`: takes the paths and events whose name hashes to `i`
    /// modulo `n`.
    part: (usize, usize),
}

impl Default for ColumnsBuilder {
    fn default() -> Self {
        ColumnsBuilder::part(0, 1)
    }
}

#[derive(Default)]
struct ColumnParts {
    exists: Vec<Uid>,
    multi: bool,
    text: Map<CompactString, Vec<Uid>>,
    items: Map<CompactString, Vec<Uid>>,
    nums: Vec<(u64, Uid)>,
    times: Vec<(u64, Uid)>,
    bools: [Vec<Uid>; 2],
    locations: Vec<Uid>,
    dated: Vec<Uid>,
}

#[derive(Default)]
struct EventParts {
    did: Vec<Uid>,
    counts: Vec<(u64, Uid)>,
    last: Vec<(u64, Uid)>,
}

/// Appends `uid` unless it is already last (ids come ascending; a profile
/// can give one key twice).
fn push_id(list: &mut Vec<Uid>, uid: Uid) {
    if list.last() != Some(&uid) {
        list.push(uid);
    }
}

impl ColumnsBuilder {
    /// A builder of part `i` of `n` of the columns.
    pub fn part(i: usize, n: usize) -> ColumnsBuilder {
        ColumnsBuilder {
            attrs: Map::default(),
            events: Map::default(),
            part: (i, n.max(1)),
        }
    }

    fn takes(&self, name: &str) -> bool {
        let (i, n) = self.part;
        n == 1 || shard_of(name) % n == i
    }

    /// Adds a profile; ids must ascend from one call to the next.
    pub fn add(&mut self, uid: Uid, attrs: &Attrs, events: &Events) {
        for (name, v) in attrs.iter() {
            paths::flatten_value(name, &v, &mut |path, v| self.add_built(uid, path, v));
        }
        for (name, stats) in events.iter() {
            if !self.takes(name) {
                continue;
            }
            let e = self.events.entry_ref(name).or_default();
            e.did.push(uid);
            e.counts.push((stats.count, uid));
            e.last.push((time_key(stats.last), uid));
        }
    }

    fn add_built(&mut self, uid: Uid, path: &str, v: &AttrValue) {
        if !self.takes(path) {
            return;
        }
        let col = self.attrs.entry_ref(path).or_default();
        keys_of(v, &mut |k| match k {
            Key::Exists => {
                col.multi |= col.exists.last() == Some(&uid);
                push_id(&mut col.exists, uid);
            }
            Key::Text(t) => push_id(col.text.entry_ref(t).or_default(), uid),
            Key::Item(i) => push_id(col.items.entry_ref(i).or_default(), uid),
            Key::Num(k) => col.nums.push((k, uid)),
            Key::Time(k) => col.times.push((k, uid)),
            Key::Bool(b) => push_id(&mut col.bools[b as usize], uid),
            Key::Location => push_id(&mut col.locations, uid),
            Key::Dated => push_id(&mut col.dated, uid),
        });
    }

    pub fn finish(self) -> Columns {
        let set =
            |ids: Vec<Uid>| Arc::new(RoaringBitmap::from_sorted_iter(ids).expect("ascending"));
        let attrs = self
            .attrs
            .into_iter()
            .map(|(path, c)| {
                let [f, t] = c.bools;
                let col = Column {
                    exists: set(c.exists),
                    multi: c.multi,
                    text: Dict::from_lists(c.text),
                    items: Dict::from_lists(c.items),
                    nums: Ordered::from_pairs(c.nums),
                    times: Ordered::from_pairs(c.times),
                    bools: [set(f), set(t)],
                    locations: set(c.locations),
                    dated: set(c.dated),
                };
                (path, Arc::new(col))
            })
            .collect();
        let events = self
            .events
            .into_iter()
            .map(|(name, e)| {
                let col = EventColumn {
                    did: set(e.did),
                    counts: Ordered::from_pairs(e.counts),
                    last: Ordered::from_pairs(e.last),
                };
                (name, Arc::new(col))
            })
            .collect();
        Columns {
            attrs: Arc::new(attrs),
            events: Arc::new(events),
        }
    }
}

impl Columns {
    /// Every `(column, key, profile)` triple, spelled out (tests compare
    /// an index kept up to date with one rebuilt from scratch).
    #[cfg(test)]
    pub(crate) fn triples(&self) -> std::collections::BTreeSet<(String, String, Uid)> {
        let mut out = std::collections::BTreeSet::new();
        let mut put = |col: &str, key: String, set: &RoaringBitmap| {
            for uid in set {
                out.insert((col.to_string(), key.clone(), uid));
            }
        };
        for (path, c) in self.attrs.iter() {
            put(path, "exists".into(), &c.exists);
            put(path, "location".into(), &c.locations);
            put(path, "dated".into(), &c.dated);
            for b in [false, true] {
                put(path, format!("bool {b}"), &c.bools[b as usize]);
            }
            for (kind, dict) in [("text", &c.text), ("item", &c.items)] {
                for (s, p) in dict.shards.iter().flat_map(|sh| sh.iter()) {
                    let set = match p {
                        Posting::One(u) => std::iter::once(*u).collect(),
                        Posting::Many(m) => m.clone(),
                    };
                    put(path, format!("{kind} {s}"), &set);
                }
            }
            for (kind, o) in [("num", &c.nums), ("time", &c.times)] {
                for (k, uid) in o.pairs() {
                    put(path, format!("{kind} {k}"), &std::iter::once(uid).collect());
                }
            }
        }
        for (name, e) in self.events.iter() {
            let col = format!("event {name}");
            put(&col, "did".into(), &e.did);
            for (kind, o) in [("count", &e.counts), ("last", &e.last)] {
                for (k, uid) in o.pairs() {
                    put(&col, format!("{kind} {k}"), &std::iter::once(uid).collect());
                }
            }
        }
        out
    }
}

impl Column {
    /// The plain bitmap `key` files into, if it is one of those.
    fn bitmap_mut(&mut self, key: &Key<'_>) -> Option<&mut RoaringBitmap> {
        let set = match key {
            Key::Exists => &mut self.exists,
            Key::Bool(b) => &mut self.bools[*b as usize],
            Key::Dated => &mut self.dated,
            Key::Location => &mut self.locations,
            Key::Text(_) | Key::Item(_) | Key::Num(_) | Key::Time(_) => return None,
        };
        Some(Arc::make_mut(set))
    }

    fn insert(&mut self, key: &Key<'_>, uid: Uid) {
        match key {
            Key::Text(t) => self.text.insert(t, uid),
            Key::Item(i) => self.items.insert(i, uid),
            Key::Num(k) => self.nums.insert(*k, uid),
            Key::Time(k) => self.times.insert(*k, uid),
            _ => {
                let fresh = self.bitmap_mut(key).is_some_and(|set| set.insert(uid));
                if !fresh && matches!(key, Key::Exists) {
                    self.multi = true;
                }
            }
        }
    }

    fn remove(&mut self, key: &Key<'_>, uid: Uid) {
        match key {
            Key::Text(t) => self.text.remove(t, uid),
            Key::Item(i) => self.items.remove(i, uid),
            Key::Num(k) => self.nums.remove(*k, uid),
            Key::Time(k) => self.times.remove(*k, uid),
            _ => {
                if let Some(set) = self.bitmap_mut(key) {
                    set.remove(uid);
                }
            }
        }
    }

    /// Profiles with some value at the path.
    pub fn exists(&self) -> &RoaringBitmap {
        &self.exists
    }

    /// Profiles with a string value of exactly `text` (times: `dated`).
    pub fn text(&self, text: &str) -> Cow<'_, RoaringBitmap> {
        self.text.get(text)
    }

    /// Profiles with a string value for which `pred` holds (run
    /// once per distinct text). `None` if `stop` said so, which it is asked
    /// every [`STOP_EVERY`] texts.
    pub fn text_matching(
        &self,
        pred: impl Fn(&str) -> bool,
        stop: &dyn Fn() -> bool,
    ) -> Option<RoaringBitmap> {
        self.text.matching(pred, stop)
    }

    /// How many distinct texts the column holds: what a regex over the
    /// index costs, in regex runs.
    pub fn distinct_texts(&self) -> usize {
        self.text.shards.iter().map(|s| s.len()).sum()
    }

    /// How many profiles [`text_matching`](Self::text_matching) would
    /// return, from the holders' counts, if each profile has one value
    /// here (`None` if not, or if `stop` said so).
    pub fn text_matching_len(
        &self,
        pred: impl Fn(&str) -> bool,
        stop: &dyn Fn() -> bool,
    ) -> Option<u64> {
        if self.multi || !self.dated.is_empty() {
            return None;
        }
        self.text.matching_len(pred, stop)
    }

    /// How many profiles [`nums`](Self::nums) would return, if each
    /// profile has one value here.
    pub fn nums_len(&self, keys: RangeInclusive<u64>) -> Option<u64> {
        (!self.multi).then(|| self.nums.range_len(keys))
    }

    /// How many profiles [`times`](Self::times) would return, if each
    /// profile has one value here.
    pub fn times_len(&self, keys: RangeInclusive<u64>) -> Option<u64> {
        (!self.multi).then(|| self.times.range_len(keys))
    }

    /// Profiles with a string array holding `item`.
    pub fn item(&self, item: &str) -> Cow<'_, RoaringBitmap> {
        self.items.get(item)
    }

    /// Profiles with a number whose key is in `keys` (see [`num_key`]).
    pub fn nums(&self, keys: RangeInclusive<u64>) -> Cow<'_, RoaringBitmap> {
        self.nums.range(keys)
    }

    /// Profiles with a time whose key is in `keys` (see [`time_key`]).
    pub fn times(&self, keys: RangeInclusive<u64>) -> Cow<'_, RoaringBitmap> {
        self.times.range(keys)
    }

    /// [`nums`](Self::nums) among `among` only, without building the
    /// whole range (see [`Ordered::range_among`]).
    pub fn nums_among(&self, keys: RangeInclusive<u64>, among: &RoaringBitmap) -> RoaringBitmap {
        self.nums.range_among(keys, among)
    }

    /// [`times`](Self::times) among `among` only.
    pub fn times_among(&self, keys: RangeInclusive<u64>, among: &RoaringBitmap) -> RoaringBitmap {
        self.times.range_among(keys, among)
    }

    pub fn bools(&self, b: bool) -> &RoaringBitmap {
        &self.bools[b as usize]
    }

    /// Profiles with a location at the path.
    /// Profiles with a time at the path: a string filter's `equals` and
    /// regexes also read times' texts, which only their profiles hold.
    pub fn dated(&self) -> &RoaringBitmap {
        &self.dated
    }

    pub fn locations(&self) -> &RoaringBitmap {
        &self.locations
    }
}

impl EventColumn {
    /// Profiles that did the event at least once.
    pub fn did(&self) -> &RoaringBitmap {
        &self.did
    }

    /// Profiles that did it a number of times in `counts` (never: 0, which
    /// is not held here).
    pub fn counts(&self, counts: RangeInclusive<u64>) -> Cow<'_, RoaringBitmap> {
        self.counts.range(counts)
    }

    /// Profiles whose last time's key is in `keys` (see [`time_key`]).
    pub fn last(&self, keys: RangeInclusive<u64>) -> Cow<'_, RoaringBitmap> {
        self.last.range(keys)
    }

    /// [`counts`](Self::counts) among `among` only.
    pub fn counts_among(
        &self,
        counts: RangeInclusive<u64>,
        among: &RoaringBitmap,
    ) -> RoaringBitmap {
        self.counts.range_among(counts, among)
    }

    /// [`last`](Self::last) among `among` only.
    pub fn last_among(&self, keys: RangeInclusive<u64>, among: &RoaringBitmap) -> RoaringBitmap {
        self.last.range_among(keys, among)
    }

    /// How many profiles [`counts`](Self::counts) holds, without building
    /// the set (a profile has one count per event).
    pub fn counts_len(&self, counts: RangeInclusive<u64>) -> u64 {
        self.counts.range_len(counts)
    }

    /// How many profiles [`last`](Self::last) holds, without building the
    /// set (a profile has one last time per event).
    pub fn last_len(&self, keys: RangeInclusive<u64>) -> u64 {
        self.last.range_len(keys)
    }
}

/// Who holds one dictionary value: one profile (most values of a
/// high-cardinality column) or a bitmap.
#[derive(Clone, Debug)]
enum Posting {
    One(Uid),
    Many(RoaringBitmap),
}

/// Distinct strings → their holders, in shards shared copy-on-write.
#[derive(Clone, Debug, Default)]
struct Dict {
    /// Empty until the first value; then `SHARDS` shards.
    shards: Vec<Arc<Map<CompactString, Posting>>>,
}

/// Shards by a fixed hash, so a value's shard never depends on the process.
fn shard_of(s: &str) -> usize {
    (FixedState::with_seed(0x636f_686f_7274).hash_one(s) as usize) % SHARDS
}

impl Dict {
    /// From each value's holders, ascending.
    fn from_lists(lists: Map<CompactString, Vec<Uid>>) -> Dict {
        if lists.is_empty() {
            return Dict::default();
        }
        let mut shards: Vec<Map<CompactString, Posting>> =
            (0..SHARDS).map(|_| Map::default()).collect();
        for (s, ids) in lists {
            let p = match ids[..] {
                [one] => Posting::One(one),
                _ => Posting::Many(RoaringBitmap::from_sorted_iter(ids).expect("ascending")),
            };
            shards[shard_of(&s)].insert(s, p);
        }
        Dict {
            shards: shards.into_iter().map(Arc::new).collect(),
        }
    }

    fn insert(&mut self, s: &str, uid: Uid) {
        if self.shards.is_empty() {
            self.shards = (0..SHARDS).map(|_| Arc::default()).collect();
        }
        let shard = Arc::make_mut(&mut self.shards[shard_of(s)]);
        match shard.get_mut(s) {
            None => {
                shard.insert(s.into(), Posting::One(uid));
            }
            Some(Posting::One(u)) if *u == uid => {}
            Some(p @ Posting::One(_)) => {
                let Posting::One(u) = *p else { unreachable!() };
                *p = Posting::Many([u, uid].into_iter().collect());
            }
            Some(Posting::Many(m)) => {
                m.insert(uid);
            }
        }
    }

    fn remove(&mut self, s: &str, uid: Uid) {
        let Some(slot) = self.shards.get_mut(shard_of(s)) else {
            return;
        };
        let held = match slot.get(s) {
            None => false,
            Some(Posting::One(u)) => *u == uid,
            Some(Posting::Many(m)) => m.contains(uid),
        };
        if !held {
            return;
        }
        let shard = Arc::make_mut(slot);
        match shard.get_mut(s) {
            Some(p @ Posting::Many(_)) => {
                let Posting::Many(m) = p else { unreachable!() };
                m.remove(uid);
                if m.len() == 1 {
                    *p = Posting::One(m.min().expect("one left"));
                }
            }
            _ => {
                shard.remove(s);
            }
        }
    }

    /// Calls `visit` with the holders of each value `pred` accepts; `None`
    /// if `stop` said so (asked every `STOP_EVERY` values).
    fn each_matching<'a>(
        &'a self,
        pred: impl Fn(&str) -> bool,
        stop: &dyn Fn() -> bool,
        mut visit: impl FnMut(&'a Posting),
    ) -> Option<()> {
        let mut seen = 0usize;
        for shard in &self.shards {
            for (s, p) in shard.iter() {
                seen += 1;
                if seen.is_multiple_of(STOP_EVERY) && stop() {
                    return None;
                }
                if pred(s) {
                    visit(p);
                }
            }
        }
        Some(())
    }

    /// The number of (value, holder) pairs among values `pred` accepts.
    fn matching_len(&self, pred: impl Fn(&str) -> bool, stop: &dyn Fn() -> bool) -> Option<u64> {
        let mut n = 0;
        self.each_matching(pred, stop, |p| {
            n += match p {
                Posting::One(_) => 1,
                Posting::Many(m) => m.len(),
            }
        })?;
        Some(n)
    }

    fn get(&self, s: &str) -> Cow<'_, RoaringBitmap> {
        match self.shards.get(shard_of(s)).and_then(|sh| sh.get(s)) {
            None => Cow::Owned(RoaringBitmap::new()),
            Some(Posting::One(u)) => Cow::Owned(std::iter::once(*u).collect()),
            Some(Posting::Many(m)) => Cow::Borrowed(m),
        }
    }

    fn matching(
        &self,
        pred: impl Fn(&str) -> bool,
        stop: &dyn Fn() -> bool,
    ) -> Option<RoaringBitmap> {
        let mut ones = Vec::new();
        let mut many = Vec::new();
        self.each_matching(pred, stop, |p| match p {
            Posting::One(u) => ones.push(*u),
            Posting::Many(m) => many.push(m),
        })?;
        Some(union_with_ids(many, ones))
    }
}

/// The union of `sets` and the ids `ids` (any order).
fn union_with_ids(sets: Vec<&RoaringBitmap>, mut ids: Vec<Uid>) -> RoaringBitmap {
    let mut out = sets.union();
    if !ids.is_empty() {
        ids.sort_unstable();
        ids.dedup();
        out |= RoaringBitmap::from_sorted_iter(ids).expect("sorted");
    }
    out
}

/// The parts of a map keyed by each part's lowest key (a part reaches up
/// to the next one's) that overlap `keys`, as `(lo, end, part)`; the last
/// one's `end` is `u64::MAX` (callers clamp to `keys`).
fn overlapping<'a, V>(
    parts: &'a BTreeMap<u64, V>,
    keys: &RangeInclusive<u64>,
) -> impl Iterator<Item = (u64, u64, &'a V)> {
    let (from, to) = (*keys.start(), *keys.end());
    let start = parts.range(..=from).next_back().map_or(from, |(lo, _)| *lo);
    let mut it = parts.range(start..=to).peekable();
    std::iter::from_fn(move || {
        let (&lo, part) = it.next()?;
        let end = it.peek().map_or(u64::MAX, |(next, _)| **next - 1);
        Some((lo, end, part))
    })
}

/// How many of the sorted, non-empty `pairs` have the first one's key, in
/// O(log run): a bulk build walks every key's run, so a binary search over
/// all the pairs left (O(log n) cache misses per distinct key) cost most of
/// building an index of 10M distinct times.
fn key_run(pairs: &[(u64, Uid)]) -> usize {
    let key = pairs[0].0;
    let mut hi = 1;
    while hi < pairs.len() && pairs[hi].0 == key {
        hi = (hi * 2).min(pairs.len());
    }
    // pairs[..=hi / 2] hold `key` (or hi == 1); the run ends before `hi`.
    let lo = hi / 2;
    lo + pairs[lo..hi].partition_point(|p| p.0 == key)
}

/// Where sorted pairs split on a key boundary near their middle: before
/// the middle pair's key, or after it when that key comes first
/// (`pairs.len()` when every pair has one key).
fn cut_near_middle(pairs: &[(u64, Uid)]) -> usize {
    let mid = pairs[pairs.len() / 2].0;
    match pairs.partition_point(|p| p.0 < mid) {
        0 => pairs.partition_point(|p| p.0 <= mid),
        first_mid => first_mid,
    }
}

/// An ordered index of `(key, profile)` pairs (see the module docs).
#[derive(Clone, Debug, Default)]
struct Ordered {
    /// By the lowest key a bucket may hold; a bucket holds keys up to the
    /// next bucket's.
    buckets: BTreeMap<u64, Arc<Bucket>>,
    /// A coarser cut of the same pairs, by the lowest key a span may hold
    /// (up to the next span's): each span knows its profiles and how many
    /// pairs it has, so a wide range reads a span per ~`SPAN_CAP` pairs
    /// instead of a bucket per `BUCKET_CAP`. Every pair's key is at or
    /// above the first span's; spans and buckets cut independently.
    spans: BTreeMap<u64, Arc<Span>>,
}

/// The profiles and the number of pairs with a key in a span's range.
#[derive(Clone, Debug)]
struct Span {
    pairs: u64,
    members: RoaringBitmap,
    /// Split when `pairs` passes this: `SPAN_CAP`, or twice the pairs of
    /// a span that could not split (one key), so retries stay amortized.
    split_at: u64,
}

#[derive(Clone, Debug)]
enum Bucket {
    /// Every profile here has this one key.
    Single { key: u64, members: RoaringBitmap },
    /// Sorted, distinct `(key, profile)` pairs, at most `BUCKET_CAP` (more
    /// only transiently), and the profiles among them.
    Mixed {
        pairs: Vec<(u64, Uid)>,
        members: RoaringBitmap,
    },
}

/// The profiles among `pairs` (any order).
fn holders(pairs: &[(u64, Uid)]) -> RoaringBitmap {
    let mut ids: Vec<Uid> = pairs.iter().map(|p| p.1).collect();
    ids.sort_unstable();
    ids.dedup();
    RoaringBitmap::from_sorted_iter(ids).expect("sorted")
}

/// One key's holders, as a bulk build ([`Ordered::from_runs`]) takes them.
trait Run {
    fn key(&self) -> u64;
    /// How many profiles hold the key.
    fn len(&self) -> u64;
    /// Appends `(key, profile)` for each holder, ascending.
    fn push_pairs(&self, out: &mut Vec<(u64, Uid)>);
    fn into_set(self) -> RoaringBitmap;
}

/// A key's run of sorted pairs.
impl Run for &[(u64, Uid)] {
    fn key(&self) -> u64 {
        self[0].0
    }
    fn len(&self) -> u64 {
        <[_]>::len(self) as u64
    }
    fn push_pairs(&self, out: &mut Vec<(u64, Uid)>) {
        out.extend_from_slice(self);
    }
    fn into_set(self) -> RoaringBitmap {
        RoaringBitmap::from_sorted_iter(self.iter().map(|p| p.1)).expect("ascending within a key")
    }
}

/// A span being gathered by a bulk build.
#[derive(Default)]
struct SpanBuild {
    lo: u64,
    /// Whether every pair so far has the key `lo`.
    one_key: bool,
    pairs: u64,
    /// Holders of the small runs (pushed ascending within a run).
    ids: Vec<Uid>,
    /// Holders of the runs that became single-key buckets.
    sets: RoaringBitmap,
}

impl SpanBuild {
    fn add(&mut self, key: u64, n: u64) {
        if self.pairs == 0 {
            (self.lo, self.one_key) = (key, true);
        } else if key != self.lo {
            self.one_key = false;
        }
        self.pairs += n;
    }

    /// As [`Span::of`] the same pairs.
    fn finish(mut self) -> Span {
        self.ids.sort_unstable();
        self.ids.dedup();
        let mut members = RoaringBitmap::from_sorted_iter(self.ids).expect("sorted");
        members |= self.sets;
        Span {
            pairs: self.pairs,
            members,
            split_at: split_at(self.one_key, self.pairs),
        }
    }
}

impl Span {
    /// The span of these pairs (sorted).
    fn of(pairs: &[(u64, Uid)]) -> Span {
        Span {
            pairs: pairs.len() as u64,
            members: holders(pairs),
            split_at: split_at(
                pairs.first().map(|p| p.0) == pairs.last().map(|p| p.0),
                pairs.len() as u64,
            ),
        }
    }
}

/// When a span of `pairs` pairs splits: at `SPAN_CAP`, or at twice its
/// pairs if it has one key (it cannot split until another key comes).
fn split_at(one_key: bool, pairs: u64) -> u64 {
    if one_key {
        SPAN_CAP.max(pairs * 2)
    } else {
        SPAN_CAP
    }
}

impl Bucket {
    fn mixed(pairs: Vec<(u64, Uid)>) -> Bucket {
        Bucket::Mixed {
            members: holders(&pairs),
            pairs,
        }
    }
}

impl Ordered {
    /// From every pair, in any order, cut into buckets: a key with at least
    /// `BUCKET_CAP` profiles gets a single-key bucket, the others go
    /// together up to `BUCKET_CAP` pairs a bucket. Spans are cut the same
    /// way at `SPAN_CAP`.
    fn from_pairs(mut pairs: Vec<(u64, Uid)>) -> Ordered {
        pairs.sort_unstable();
        pairs.dedup();
        let mut rest = &pairs[..];
        Ordered::from_runs(std::iter::from_fn(|| {
            if rest.is_empty() {
                return None;
            }
            let run;
            (run, rest) = rest.split_at(key_run(rest));
            Some(run)
        }))
    }

    /// From each key's holders, keys ascending (see [`from_pairs`]): the
    /// one place a bulk build cuts buckets and spans, whether the runs
    /// come from sorted pairs (a rebuild) or from a snapshot.
    ///
    /// [`from_pairs`]: Self::from_pairs
    fn from_runs<R: Run>(runs: impl Iterator<Item = R>) -> Ordered {
        let mut o = Ordered::default();
        let mut mixed: Vec<(u64, Uid)> = Vec::new();
        let mut span = SpanBuild::default();
        for run in runs {
            let (key, n) = (run.key(), run.len());
            if span.pairs > 0 && span.pairs + n > SPAN_CAP {
                o.spans
                    .insert(span.lo, Arc::new(std::mem::take(&mut span).finish()));
            }
            span.add(key, n);
            if n >= BUCKET_CAP as u64 {
                o.flush_mixed(&mut mixed);
                let members = run.into_set();
                span.sets |= &members;
                o.buckets
                    .insert(key, Arc::new(Bucket::Single { key, members }));
            } else {
                if mixed.len() as u64 + n > BUCKET_CAP as u64 {
                    o.flush_mixed(&mut mixed);
                }
                let at = mixed.len();
                run.push_pairs(&mut mixed);
                span.ids.extend(mixed[at..].iter().map(|p| p.1));
            }
        }
        o.flush_mixed(&mut mixed);
        if span.pairs > 0 {
            o.spans.insert(span.lo, Arc::new(span.finish()));
        }
        o
    }

    /// Puts the pairs gathered for a mixed bucket into one.
    fn flush_mixed(&mut self, mixed: &mut Vec<(u64, Uid)>) {
        if let Some(&(lo, _)) = mixed.first() {
            let bucket = Bucket::mixed(std::mem::take(mixed));
            self.buckets.insert(lo, Arc::new(bucket));
        }
    }

    fn insert(&mut self, key: u64, uid: Uid) {
        if !self.insert_pair(key, uid) {
            return;
        }
        let lo = match self.spans.range(..=key).next_back() {
            Some((lo, _)) => *lo,
            None => {
                // Below every span: the first span (if any) reaches down
                // to `key`; the keys it gains hold no pairs yet.
                let first = self.spans.pop_first().map(|(_, s)| s);
                let span = first.unwrap_or_else(|| Arc::new(Span::of(&[])));
                self.spans.insert(key, span);
                key
            }
        };
        let span = Arc::make_mut(self.spans.get_mut(&lo).expect("found"));
        span.members.insert(uid);
        span.pairs += 1;
        if span.pairs > span.split_at {
            self.split_span(lo);
        }
    }

    fn remove(&mut self, key: u64, uid: Uid) {
        if !self.remove_pair(key, uid) {
            return;
        }
        let (&lo, span) = (self.spans.range(..=key).next_back()).expect("a held pair is in a span");
        let end = self.span_end(lo);
        // When every profile in the span had one pair, this was `uid`'s
        // only one; otherwise look for another in the span's buckets.
        let distinct = span.members.len() == span.pairs;
        let still = !distinct && self.holds_in(lo..=end, uid);
        let span = Arc::make_mut(self.spans.get_mut(&lo).expect("found"));
        span.pairs -= 1;
        if !still {
            span.members.remove(uid);
        }
        if span.pairs == 0 {
            // Its keys fall to the span before it (or below every span).
            self.spans.remove(&lo);
        }
    }

    /// The highest key the span at `lo` covers.
    fn span_end(&self, lo: u64) -> u64 {
        self.spans
            .range((Bound::Excluded(lo), Bound::Unbounded))
            .next()
            .map_or(u64::MAX, |(next, _)| next - 1)
    }

    /// Whether a pair with a key in `keys` has profile `uid`.
    fn holds_in(&self, keys: RangeInclusive<u64>, uid: Uid) -> bool {
        let (from, to) = (*keys.start(), *keys.end());
        overlapping(&self.buckets, &keys).any(|(_, _, b)| match &**b {
            Bucket::Single { key, members } => keys.contains(key) && members.contains(uid),
            Bucket::Mixed { pairs, members } => {
                members.contains(uid)
                    && pairs.iter().any(|p| p.1 == uid && from <= p.0 && p.0 <= to)
            }
        })
    }

    /// Splits the span at `lo` on a key boundary near its middle pair; a
    /// span of one key stays whole and waits for twice its pairs.
    fn split_span(&mut self, lo: u64) {
        let end = self.span_end(lo);
        let mut pairs: Vec<(u64, Uid)> = Vec::new();
        for (_, _, b) in overlapping(&self.buckets, &(lo..=end)) {
            match &**b {
                Bucket::Single { key, members } if lo <= *key && *key <= end => {
                    pairs.extend(members.iter().map(|u| (*key, u)));
                }
                Bucket::Single { .. } => {}
                Bucket::Mixed { pairs: ps, .. } => {
                    pairs.extend(ps.iter().filter(|p| lo <= p.0 && p.0 <= end));
                }
            }
        }
        let cut = cut_near_middle(&pairs);
        if cut == pairs.len() {
            let span = Arc::make_mut(self.spans.get_mut(&lo).expect("found"));
            span.split_at = span.pairs.saturating_mul(2);
            return;
        }
        let (left, right) = pairs.split_at(cut);
        self.spans.insert(lo, Arc::new(Span::of(left)));
        self.spans.insert(right[0].0, Arc::new(Span::of(right)));
    }

    /// Adds a pair to its bucket; false if it was held already.
    fn insert_pair(&mut self, key: u64, uid: Uid) -> bool {
        let found = self.buckets.range(..=key).next_back().map(|(lo, _)| *lo);
        let Some(lo) = found else {
            // Below every bucket (or none yet): a bucket of its own, which
            // covers the keys up to the first bucket's.
            self.buckets
                .insert(key, Arc::new(Bucket::mixed(vec![(key, uid)])));
            return true;
        };
        let slot = self.buckets.get_mut(&lo).expect("found");
        match &**slot {
            Bucket::Single { key: k, members } if *k == key => {
                if members.contains(uid) {
                    return false;
                }
            }
            Bucket::Single { key: k, .. } => {
                let k = *k;
                let fresh = Arc::new(Bucket::mixed(vec![(key, uid)]));
                if key > k {
                    self.buckets.insert(key, fresh);
                } else {
                    // lo <= key < k: the new key takes the bucket's place
                    // and the single key moves up to a bucket at itself.
                    let single = std::mem::replace(slot, fresh);
                    self.buckets.insert(k, single);
                }
                return true;
            }
            Bucket::Mixed { pairs, .. } => {
                if pairs.binary_search(&(key, uid)).is_ok() {
                    return false;
                }
            }
        }
        let over = match Arc::make_mut(slot) {
            Bucket::Single { members, .. } => {
                members.insert(uid);
                false
            }
            Bucket::Mixed { pairs, members } => {
                let at = pairs.binary_search(&(key, uid)).expect_err("not held");
                pairs.insert(at, (key, uid));
                members.insert(uid);
                pairs.len() > BUCKET_CAP
            }
        };
        if over {
            self.split(lo);
        }
        true
    }

    /// Splits the over-full mixed bucket at `lo` on a key boundary; a part
    /// holding one key becomes a single-key bucket.
    fn split(&mut self, lo: u64) {
        let Some(bucket) = self.buckets.remove(&lo) else {
            return;
        };
        let Bucket::Mixed { pairs, .. } = Arc::unwrap_or_clone(bucket) else {
            unreachable!("only mixed buckets split")
        };
        let cut = cut_near_middle(&pairs);
        let mut parts = Vec::new();
        if cut == pairs.len() {
            parts.push((lo, pairs));
        } else {
            let mut left = pairs;
            let right = left.split_off(cut);
            let right_lo = right[0].0;
            parts.push((lo, left));
            parts.push((right_lo, right));
        }
        // Each part keeps its lowest possible key: a single-key part's key
        // is within its range, so it may stay where it is.
        for (lo, pairs) in parts {
            let first = pairs[0].0;
            let bucket = if pairs.iter().all(|p| p.0 == first) {
                Bucket::Single {
                    key: first,
                    members: pairs.iter().map(|p| p.1).collect(),
                }
            } else {
                Bucket::mixed(pairs)
            };
            self.buckets.insert(lo, Arc::new(bucket));
        }
    }

    /// Takes a pair from its bucket; false if it was not held.
    fn remove_pair(&mut self, key: u64, uid: Uid) -> bool {
        let Some((&lo, _)) = self.buckets.range(..=key).next_back() else {
            return false;
        };
        let slot = self.buckets.get_mut(&lo).expect("found");
        let held = match &**slot {
            Bucket::Single { key: k, members } => *k == key && members.contains(uid),
            Bucket::Mixed { pairs, .. } => pairs.binary_search(&(key, uid)).is_ok(),
        };
        if !held {
            return false;
        }
        let bucket = Arc::make_mut(slot);
        let empty = match bucket {
            Bucket::Single { members, .. } => {
                members.remove(uid);
                members.is_empty()
            }
            Bucket::Mixed { pairs, members } => {
                let at = pairs.binary_search(&(key, uid)).expect("held");
                pairs.remove(at);
                if !pairs.iter().any(|p| p.1 == uid) {
                    members.remove(uid);
                }
                pairs.is_empty()
            }
        };
        if empty {
            self.buckets.remove(&lo);
        }
        true
    }

    /// The spans `keys` covers whole, and the parts of `keys` left at its
    /// two ends, which the buckets answer.
    fn cover(&self, keys: &RangeInclusive<u64>) -> (Vec<&Span>, Vec<RangeInclusive<u64>>) {
        let (from, to) = (*keys.start(), *keys.end());
        let mut whole = Vec::new();
        let mut edges = Vec::new();
        for (lo, end, span) in overlapping(&self.spans, keys) {
            if from <= lo && end <= to {
                whole.push(&**span);
            } else {
                edges.push(from.max(lo)..=to.min(end));
            }
        }
        (whole, edges)
    }

    /// How many pairs have a key in `keys`: the number of profiles
    /// [`range`](Self::range) returns when each profile has at most one
    /// key here (the event indexes). O(spans in the range).
    fn range_len(&self, keys: RangeInclusive<u64>) -> u64 {
        if keys.is_empty() {
            return 0;
        }
        let (whole, edges) = self.cover(&keys);
        let inner: u64 = whole.iter().map(|s| s.pairs).sum();
        inner + edges.into_iter().map(|e| self.buckets_len(e)).sum::<u64>()
    }

    /// Profiles with a key in `keys`.
    fn range(&self, keys: RangeInclusive<u64>) -> Cow<'_, RoaringBitmap> {
        if keys.is_empty() {
            return Cow::Owned(RoaringBitmap::new());
        }
        let (whole, edges) = self.cover(&keys);
        let mut sets: Vec<&RoaringBitmap> = whole.iter().map(|s| &s.members).collect();
        let mut ids: Vec<Uid> = Vec::new();
        for e in edges {
            self.buckets_range(e, &mut sets, &mut ids);
        }
        if sets.len() == 1 && ids.is_empty() {
            return Cow::Borrowed(sets[0]);
        }
        Cow::Owned(union_with_ids(sets, ids))
    }

    /// [`range`](Self::range) ∩ `among`, each span's and bucket's set
    /// intersected with `among` before the union: for a few candidates (a
    /// saved segment's update after a write) this costs a probe of each
    /// set per candidate container, where the whole range would be a union
    /// of sets as large as the workspace, and looking at each candidate's
    /// profile a hundred nanoseconds a candidate.
    fn range_among(&self, keys: RangeInclusive<u64>, among: &RoaringBitmap) -> RoaringBitmap {
        if keys.is_empty() || among.is_empty() {
            return RoaringBitmap::new();
        }
        let (whole, edges) = self.cover(&keys);
        let mut sets: Vec<&RoaringBitmap> = whole.iter().map(|s| &s.members).collect();
        let mut ids: Vec<Uid> = Vec::new();
        for e in edges {
            self.buckets_range(e, &mut sets, &mut ids);
        }
        let mut out = RoaringBitmap::new();
        for set in sets {
            out |= among & set;
        }
        ids.retain(|&u| among.contains(u));
        if !ids.is_empty() {
            ids.sort_unstable();
            ids.dedup();
            out |= RoaringBitmap::from_sorted_iter(ids).expect("sorted");
        }
        out
    }

    /// Pairs with a key in `keys`, counted bucket by bucket.
    fn buckets_len(&self, keys: RangeInclusive<u64>) -> u64 {
        let (from, to) = (*keys.start(), *keys.end());
        let mut n = 0;
        for (lo, end, bucket) in overlapping(&self.buckets, &keys) {
            n += match &**bucket {
                Bucket::Single { key, members } if keys.contains(key) => members.len(),
                Bucket::Single { .. } => 0,
                Bucket::Mixed { pairs, .. } if from <= lo && end <= to => pairs.len() as u64,
                Bucket::Mixed { pairs, .. } => {
                    let a = pairs.partition_point(|p| p.0 < from);
                    let b = pairs.partition_point(|p| p.0 <= to);
                    (b - a) as u64
                }
            };
        }
        n
    }

    /// Adds the profiles with a key in `keys`, bucket by bucket: whole
    /// buckets' sets to `sets`, the profiles of pairs in cut buckets to
    /// `ids`.
    fn buckets_range<'a>(
        &'a self,
        keys: RangeInclusive<u64>,
        sets: &mut Vec<&'a RoaringBitmap>,
        ids: &mut Vec<Uid>,
    ) {
        let (from, to) = (*keys.start(), *keys.end());
        for (lo, end, bucket) in overlapping(&self.buckets, &keys) {
            match &**bucket {
                Bucket::Single { key, members } => {
                    if keys.contains(key) {
                        sets.push(members);
                    }
                }
                Bucket::Mixed { pairs, members } => {
                    if from <= lo && end <= to {
                        sets.push(members);
                    } else {
                        let a = pairs.partition_point(|p| p.0 < from);
                        let b = pairs.partition_point(|p| p.0 <= to);
                        ids.extend(pairs[a..b].iter().map(|p| p.1));
                    }
                }
            }
        }
    }

    #[cfg(test)]
    fn pairs(&self) -> Vec<(u64, Uid)> {
        self.buckets
            .values()
            .flat_map(|b| match &**b {
                Bucket::Single { key, members } => members.iter().map(|u| (*key, u)).collect(),
                Bucket::Mixed { pairs, .. } => pairs.clone(),
            })
            .collect()
    }

    #[cfg(test)]
    fn check(&self) {
        let pairs = self.pairs();
        let los: Vec<u64> = self.spans.keys().copied().collect();
        assert_eq!(los.is_empty(), pairs.is_empty());
        if let Some(first) = los.first() {
            assert!(
                pairs.iter().all(|p| p.0 >= *first),
                "a pair below every span"
            );
        }
        for (i, (lo, span)) in self.spans.iter().enumerate() {
            let end = los.get(i + 1).map_or(u64::MAX, |n| n - 1);
            let inside: Vec<&(u64, Uid)> =
                pairs.iter().filter(|p| *lo <= p.0 && p.0 <= end).collect();
            assert!(!inside.is_empty(), "empty span at {lo}");
            assert_eq!(span.pairs, inside.len() as u64, "span {lo} pairs");
            let ids: RoaringBitmap = inside.iter().map(|p| p.1).collect();
            assert_eq!(ids, span.members, "span {lo} members");
        }
        let los: Vec<u64> = self.buckets.keys().copied().collect();
        for (i, (lo, b)) in self.buckets.iter().enumerate() {
            let end = los.get(i + 1).map_or(u64::MAX, |n| n - 1);
            match &**b {
                Bucket::Single { key, members } => {
                    assert!(
                        *lo <= *key && *key <= end,
                        "single {key} outside [{lo}, {end}]"
                    );
                    assert!(!members.is_empty());
                }
                Bucket::Mixed { pairs, members } => {
                    assert!(!pairs.is_empty());
                    assert!(pairs.windows(2).all(|w| w[0] < w[1]));
                    assert!(pairs.iter().all(|p| *lo <= p.0 && p.0 <= end));
                    let ids: RoaringBitmap = pairs.iter().map(|p| p.1).collect();
                    assert_eq!(&ids, members);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn number_keys_keep_order_and_zero_is_one_key() {
        let ns = [-1e300, -3.5, -1.0, -0.0, 0.0, 1e-9, 1.0, 3.0, 3.5, 1e300];
        for w in ns.windows(2) {
            assert!(num_key(w[0]) <= num_key(w[1]), "{} {}", w[0], w[1]);
        }
        assert_eq!(num_key(-0.0), num_key(0.0));
        assert!(time_key(-5) < time_key(0) && time_key(0) < time_key(7));
    }

    #[test]
    fn the_dictionary_keeps_one_holder_small_and_many_in_a_bitmap() {
        let mut d = Dict::default();
        d.insert("gold", 3);
        assert_eq!(d.get("gold").iter().collect::<Vec<_>>(), [3]);
        d.insert("gold", 9);
        d.insert("gold", 9);
        assert_eq!(d.get("gold").iter().collect::<Vec<_>>(), [3, 9]);
        d.remove("gold", 42);
        d.remove("gold", 3);
        assert_eq!(d.get("gold").iter().collect::<Vec<_>>(), [9]);
        d.remove("gold", 9);
        assert!(d.get("gold").is_empty());
        d.remove("gold", 9);
        assert!(d.get("silver").is_empty());
    }

    /// A model of an ordered index: the set of pairs.
    fn model_range(pairs: &BTreeSet<(u64, Uid)>, from: u64, to: u64) -> Vec<Uid> {
        let ids: BTreeSet<Uid> = pairs
            .iter()
            .filter(|p| from <= p.0 && p.0 <= to)
            .map(|p| p.1)
            .collect();
        ids.into_iter().collect()
    }

    /// Applies `ops` (insert or remove a pair, keys modulo `keyspace`) to
    /// the index and the model, checks the buckets' shape, then asks both
    /// every range in `probes`.
    fn exercise(
        o: &mut Ordered,
        model: &mut BTreeSet<(u64, Uid)>,
        keyspace: u64,
        ops: Vec<(bool, u64, Uid)>,
        probes: Vec<(u64, u64)>,
    ) -> Result<(), TestCaseError> {
        for (add, k, uid) in ops {
            let k = k % keyspace;
            if add {
                o.insert(k, uid);
                model.insert((k, uid));
            } else {
                o.remove(k, uid);
                model.remove(&(k, uid));
            }
        }
        o.check();
        let whole = (0, u64::MAX);
        for (a, b) in probes.into_iter().chain([whole]) {
            let (a, b) = if (a, b) == whole {
                whole
            } else {
                (a % (keyspace + 2), b % (keyspace + 2))
            };
            let got: Vec<Uid> = o.range(a..=b).iter().collect();
            prop_assert_eq!(got, model_range(model, a, b), "range {}..={}", a, b);
            let pairs = model.iter().filter(|p| a <= p.0 && p.0 <= b).count() as u64;
            prop_assert_eq!(o.range_len(a..=b), pairs, "range_len {}..={}", a, b);
            // Among a few profiles (every seventh, and one dense run).
            let among: RoaringBitmap = (0..3000u32)
                .filter(|u| u % 7 == a as u32 % 7)
                .chain(1000..1100)
                .collect();
            let got: Vec<Uid> = o.range_among(a..=b, &among).iter().collect();
            let want: Vec<Uid> = model_range(model, a, b)
                .into_iter()
                .filter(|u| among.contains(*u))
                .collect();
            prop_assert_eq!(got, want, "range_among {}..={}", a, b);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Inserts and removals of pairs, few keys or many, agree with a
        /// set of pairs for any range, and the buckets keep their shape.
        #[test]
        fn ordered_ranges_agree_with_a_set_of_pairs(
            keyspace in prop_oneof![Just(3u64), Just(40u64), Just(100_000u64)],
            ops in proptest::collection::vec((any::<bool>(), any::<u64>(), 0u32..3000), 1..6000),
            probes in proptest::collection::vec((any::<u64>(), any::<u64>()), 8),
        ) {
            exercise(&mut Ordered::default(), &mut BTreeSet::new(), keyspace, ops, probes)?;
        }

        /// A key's run is measured exactly, whatever its length.
        #[test]
        fn key_runs_are_their_keys_pairs(
            runs in proptest::collection::vec((any::<u64>(), 1usize..200), 1..20),
        ) {
            let mut pairs: Vec<(u64, Uid)> = runs
                .iter()
                .flat_map(|&(k, n)| (0..n as Uid).map(move |u| (k, u)))
                .collect();
            pairs.sort_unstable();
            pairs.dedup();
            let mut at = 0;
            while at < pairs.len() {
                let linear = pairs[at..].iter().take_while(|p| p.0 == pairs[at].0).count();
                prop_assert_eq!(key_run(&pairs[at..]), linear);
                at += linear;
            }
        }

        /// An index built from sorted pairs answers as one built by inserts,
        /// and takes later inserts and removals.
        #[test]
        fn ordered_from_pairs_is_ordered_by_inserts(
            keyspace in prop_oneof![Just(2u64), Just(50u64), Just(1_000_000u64)],
            pairs in proptest::collection::vec((any::<u64>(), 0u32..5000), 0..4000),
            later in proptest::collection::vec((any::<bool>(), any::<u64>(), 0u32..5000), 0..500),
            probes in proptest::collection::vec((any::<u64>(), any::<u64>()), 8),
        ) {
            let pairs: Vec<(u64, Uid)> = pairs.into_iter().map(|(k, u)| (k % keyspace, u)).collect();
            let mut o = Ordered::from_pairs(pairs.clone());
            o.check();
            let mut model: BTreeSet<(u64, Uid)> = pairs.into_iter().collect();
            exercise(&mut o, &mut model, keyspace, later, probes)?;
        }
    }

    #[test]
    fn a_view_keeps_answering_while_the_columns_change() {
        let mut c = Columns::default();
        let mut attrs = AttrObject::new();
        attrs.insert("plan".into(), AttrValue::Str("gold".into()));
        c.add_profile(1, &Attrs::from_map(&attrs), &Events::default());
        let view = c.clone();
        let old = attrs.insert("plan".into(), AttrValue::Str("silver".into()));
        c.attribute_changed(1, "plan", old.as_ref(), &attrs);
        assert_eq!(view.attribute("plan").unwrap().text("gold").len(), 1);
        assert!(c.attribute("plan").unwrap().text("gold").is_empty());
        assert_eq!(c.attribute("plan").unwrap().text("silver").len(), 1);
    }

    #[test]
    fn a_key_given_twice_goes_only_when_neither_value_gives_it() {
        let obj = |name: &str| {
            let mut o = AttrObject::new();
            o.insert("name".into(), AttrValue::Str(name.into()));
            o
        };
        let mut attrs = AttrObject::new();
        attrs.insert("kids".into(), AttrValue::Objects(vec![obj("x"), obj("x")]));
        attrs.insert("kids.name".into(), AttrValue::Str("y".into()));
        let mut c = Columns::default();
        c.add_profile(7, &Attrs::from_map(&attrs), &Events::default());
        let holders =
            |c: &Columns, s: &str| c.attribute("kids.name").map_or(0, |col| col.text(s).len());
        assert_eq!((holders(&c, "x"), holders(&c, "y")), (1, 1));
        // One element goes: "x" is still given by the other.
        let old = attrs.insert("kids".into(), AttrValue::Objects(vec![obj("x")]));
        c.attribute_changed(7, "kids", old.as_ref(), &attrs);
        assert_eq!(holders(&c, "x"), 1);
        // The array goes: the top-level `kids.name` still holds the path.
        let old = attrs.remove("kids");
        c.attribute_changed(7, "kids", old.as_ref(), &attrs);
        assert_eq!((holders(&c, "x"), holders(&c, "y")), (0, 1));
        assert_eq!(c.attribute("kids.name").unwrap().exists().len(), 1);
        assert!(c.attribute("kids").is_none());
    }
}
