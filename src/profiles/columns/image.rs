//! The column index in the form a snapshot keeps it (format 7), so that a
//! restart loads the index instead of rebuilding it from every profile.
//!
//! The stored form is what the index *holds*, not how it is laid out: per
//! attribute column its `exists` set, each distinct text and array item
//! with its holders, each number and time key with its holders (keys
//! ascending), the boolean, location and `dated` sets; per event, `did`
//! and each count and last-time key with its holders. Dictionary shards,
//! ordered buckets and spans are not stored: loading cuts them afresh with
//! the same bulk build a rebuild uses ([`Ordered::from_runs`]), so their
//! layout can change without a format change.
//!
//! Writing walks the live index and borrows every set it can
//! ([`Holders::Many`] of a borrowed bitmap); only the keys of a mixed
//! ordered bucket held by several profiles get a set built for them.
//! Loading checks each column as it arrives ([`Columns::load_attribute`],
//! [`Columns::load_event`]): no empty column, no value twice, keys
//! ascending, every holder inside the column's `exists` (or the event's
//! `did`), and at most one value per profile where the column says so
//! (`multi`), since counts rely on it; then [`Columns::check_live`] that
//! every column holds live profiles only. `persist::schema` owns the bytes.

use std::borrow::Cow;
use std::sync::Arc;

use compact_str::CompactString;
use roaring::RoaringBitmap;

use super::{key_run, Bucket, Column, Columns, Dict, EventColumn, Map, Ordered, Posting, Run};
use crate::model::Uid;

/// Who holds one value or key: one profile, or a set of at least two.
#[derive(Clone, Debug, PartialEq)]
pub enum Holders<'a> {
    One(Uid),
    Many(Cow<'a, RoaringBitmap>),
}

impl<'a> Holders<'a> {
    /// `set` as holders (`One` when it has one profile).
    pub fn of(set: &'a RoaringBitmap) -> Holders<'a> {
        match set.len() {
            1 => Holders::One(set.min().expect("one")),
            _ => Holders::Many(Cow::Borrowed(set)),
        }
    }

    fn of_posting(p: &'a Posting) -> Holders<'a> {
        match p {
            Posting::One(u) => Holders::One(*u),
            Posting::Many(m) => Holders::of(m),
        }
    }

    /// How many profiles.
    pub fn len(&self) -> u64 {
        match self {
            Holders::One(_) => 1,
            Holders::Many(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every holder is in `set`.
    fn within(&self, set: &RoaringBitmap) -> bool {
        match self {
            Holders::One(u) => set.contains(*u),
            Holders::Many(m) => m.is_subset(set),
        }
    }

    fn into_posting(self) -> Posting {
        match self {
            Holders::One(u) => Posting::One(u),
            Holders::Many(m) if m.len() == 1 => Posting::One(m.min().expect("one")),
            Holders::Many(m) => Posting::Many(m.into_owned()),
        }
    }
}

/// A stored key's holders, as a bulk build takes them.
impl Run for (u64, Holders<'_>) {
    fn key(&self) -> u64 {
        self.0
    }
    fn len(&self) -> u64 {
        self.1.len()
    }
    fn push_pairs(&self, out: &mut Vec<(u64, Uid)>) {
        match &self.1 {
            Holders::One(u) => out.push((self.0, *u)),
            Holders::Many(m) => out.extend(m.iter().map(|u| (self.0, u))),
        }
    }
    fn into_set(self) -> RoaringBitmap {
        match self.1 {
            Holders::One(u) => std::iter::once(u).collect(),
            Holders::Many(m) => m.into_owned(),
        }
    }
}

/// An iterator whose length is known before it runs (a snapshot writes
/// a sequence's length first).
#[derive(Clone)]
struct Exact<I> {
    len: usize,
    it: I,
}

impl<I: Iterator> Iterator for Exact<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let next = self.it.next();
        if next.is_some() {
            self.len -= 1;
        }
        next
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

impl<I: Iterator> ExactSizeIterator for Exact<I> {}

/// Keys with their holders, keys strictly ascending.
pub type Runs = Vec<(u64, Holders<'static>)>;

/// One attribute column as a snapshot stores it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColumnImage {
    pub multi: bool,
    pub exists: RoaringBitmap,
    pub texts: Vec<(CompactString, Holders<'static>)>,
    pub items: Vec<(CompactString, Holders<'static>)>,
    pub numbers: Runs,
    pub times: Runs,
    /// `[false, true]`.
    pub bools: [RoaringBitmap; 2],
    pub locations: RoaringBitmap,
    pub dated: RoaringBitmap,
}

/// One event's index as a snapshot stores it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventImage {
    pub did: RoaringBitmap,
    pub counts: Runs,
    pub last: Runs,
}

impl Columns {
    /// The attribute columns, by path ascending (a snapshot's order).
    pub fn attribute_columns(&self) -> Vec<(&str, &Column)> {
        let mut cols: Vec<_> = self.attrs.iter().map(|(p, c)| (p.as_str(), &**c)).collect();
        cols.sort_unstable_by_key(|c| c.0);
        cols
    }

    /// The event columns, by name ascending.
    pub fn event_columns(&self) -> Vec<(&str, &EventColumn)> {
        let mut cols: Vec<_> = self
            .events
            .iter()
            .map(|(n, c)| (n.as_str(), &**c))
            .collect();
        cols.sort_unstable_by_key(|c| c.0);
        cols
    }

    /// Adds the column of `path` from its stored form, checked (see the
    /// module docs).
    pub fn load_attribute(&mut self, path: CompactString, c: ColumnImage) -> Result<(), String> {
        let fail = |what: String| format!("index column {path:?}: {what}");
        if self.attrs.contains_key(&path) {
            return Err(fail("stored twice".into()));
        }
        if c.exists.is_empty() {
            return Err(fail("no profile holds a value".into()));
        }
        for (name, set) in [
            ("false", &c.bools[0]),
            ("true", &c.bools[1]),
            ("locations", &c.locations),
            ("dated", &c.dated),
        ] {
            if !set.is_subset(&c.exists) {
                return Err(fail(format!("{name} holds a profile without a value")));
            }
        }
        let single = |n: u64, what: &str| {
            if !c.multi && n > c.exists.len() {
                Err(fail(format!("{n} {what} for {} profiles", c.exists.len())))
            } else {
                Ok(())
            }
        };
        let text = Dict::load(c.texts, &c.exists).map_err(&fail)?;
        let items = Dict::load(c.items, &c.exists).map_err(&fail)?;
        let nums =
            Ordered::load(c.numbers, &c.exists).map_err(|e| fail(format!("numbers: {e}")))?;
        let times = Ordered::load(c.times, &c.exists).map_err(|e| fail(format!("times: {e}")))?;
        single(text.pairs(), "texts")?;
        single(nums.len() + times.len(), "numbers and times")?;
        let [f, t] = c.bools;
        let col = Column {
            exists: Arc::new(c.exists),
            multi: c.multi,
            text,
            items,
            nums,
            times,
            bools: [Arc::new(f), Arc::new(t)],
            locations: Arc::new(c.locations),
            dated: Arc::new(c.dated),
        };
        Arc::make_mut(&mut self.attrs).insert(path, Arc::new(col));
        Ok(())
    }

    /// Adds the index of event `name` from its stored form, checked: every
    /// profile in `did` has exactly one count and one last time.
    pub fn load_event(&mut self, name: CompactString, e: EventImage) -> Result<(), String> {
        let fail = |what: String| format!("index event {name:?}: {what}");
        if self.events.contains_key(&name) {
            return Err(fail("stored twice".into()));
        }
        if e.did.is_empty() {
            return Err(fail("no profile did it".into()));
        }
        let counts = Ordered::load(e.counts, &e.did).map_err(|x| fail(format!("counts: {x}")))?;
        let last = Ordered::load(e.last, &e.did).map_err(|x| fail(format!("last: {x}")))?;
        for (what, o) in [("counts", &counts), ("last", &last)] {
            if o.len() != e.did.len() || o.members() != e.did {
                return Err(fail(format!("{what} do not give each profile one key")));
            }
        }
        let col = EventColumn {
            did: Arc::new(e.did),
            counts,
            last,
        };
        Arc::make_mut(&mut self.events).insert(name, Arc::new(col));
        Ok(())
    }

    /// Whether every column holds live profiles only (after loading them).
    pub fn check_live(&self, live: &RoaringBitmap) -> Result<(), String> {
        for (path, c) in self.attrs.iter() {
            if !c.exists.is_subset(live) {
                return Err(format!(
                    "index column {path:?} holds a profile that is not live"
                ));
            }
        }
        for (name, e) in self.events.iter() {
            if !e.did.is_subset(live) {
                return Err(format!(
                    "index event {name:?} holds a profile that is not live"
                ));
            }
        }
        Ok(())
    }
}

impl Column {
    /// Whether a profile may hold more than one value here (see the field).
    pub fn multi(&self) -> bool {
        self.multi
    }

    /// Each distinct string with its holders (times' texts are not here),
    /// in an order fixed by the strings.
    pub fn texts(&self) -> impl ExactSizeIterator<Item = (&str, Holders<'_>)> + Clone {
        self.text.entries()
    }

    /// Each distinct string array item with its holders.
    pub fn items(&self) -> impl ExactSizeIterator<Item = (&str, Holders<'_>)> + Clone {
        self.items.entries()
    }

    /// Each number key ([`super::num_key`]) with its holders, ascending.
    pub fn number_runs(&self) -> impl ExactSizeIterator<Item = (u64, Holders<'_>)> + Clone {
        self.nums.runs()
    }

    /// Each time key ([`super::time_key`]) with its holders, ascending.
    pub fn time_runs(&self) -> impl ExactSizeIterator<Item = (u64, Holders<'_>)> + Clone {
        self.times.runs()
    }
}

impl EventColumn {
    /// Each count with the profiles that did the event that many times.
    pub fn count_runs(&self) -> impl ExactSizeIterator<Item = (u64, Holders<'_>)> + Clone {
        self.counts.runs()
    }

    /// Each last-time key with its profiles, ascending.
    pub fn last_runs(&self) -> impl ExactSizeIterator<Item = (u64, Holders<'_>)> + Clone {
        self.last.runs()
    }
}

impl Dict {
    /// Every value with its holders: shard by shard, ascending within a
    /// shard, so that one index always writes the same bytes (a hash
    /// map's order depends on its history). Sorting one shard at a time
    /// keeps the copy small.
    fn entries(&self) -> impl ExactSizeIterator<Item = (&str, Holders<'_>)> + Clone {
        let len = self.shards.iter().map(|sh| sh.len()).sum();
        let it = self.shards.iter().flat_map(|sh| {
            let mut sorted: Vec<(&str, &Posting)> =
                sh.iter().map(|(s, p)| (s.as_str(), p)).collect();
            sorted.sort_unstable_by_key(|e| e.0);
            sorted.into_iter().map(|(s, p)| (s, Holders::of_posting(p)))
        });
        Exact { len, it }
    }

    /// The dictionary of stored entries, whose holders must be in `within`.
    fn load(
        entries: Vec<(CompactString, Holders<'static>)>,
        within: &RoaringBitmap,
    ) -> Result<Dict, String> {
        let mut d = Dict::default();
        if entries.is_empty() {
            return Ok(d);
        }
        let mut shards: Vec<Map<CompactString, Posting>> =
            (0..super::SHARDS).map(|_| Map::default()).collect();
        for (s, h) in entries {
            if h.is_empty() || !h.within(within) {
                return Err(format!("{s:?} has no holders or one without a value"));
            }
            let shard = &mut shards[super::shard_of(&s)];
            if shard.contains_key(&s) {
                return Err(format!("{s:?} is stored twice"));
            }
            shard.insert(s, h.into_posting());
        }
        d.shards = shards.into_iter().map(Arc::new).collect();
        Ok(d)
    }

    /// How many (value, holder) pairs.
    fn pairs(&self) -> u64 {
        let each = self.shards.iter().flat_map(|sh| sh.values());
        each.map(|p| Holders::of_posting(p).len()).sum()
    }
}

impl Ordered {
    /// How many distinct keys.
    fn keys(&self) -> usize {
        let mut n = 0;
        for b in self.buckets.values() {
            match &**b {
                Bucket::Single { .. } => n += 1,
                Bucket::Mixed { pairs, .. } => {
                    let mut rest = &pairs[..];
                    while !rest.is_empty() {
                        rest = &rest[key_run(rest)..];
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Every key with its holders, ascending.
    fn runs(&self) -> impl ExactSizeIterator<Item = (u64, Holders<'_>)> + Clone {
        Exact {
            len: self.keys(),
            it: self.raw_runs(),
        }
    }

    fn raw_runs(&self) -> impl Iterator<Item = (u64, Holders<'_>)> + Clone {
        let mut buckets = self.buckets.values();
        let mut rest: &[(u64, Uid)] = &[];
        std::iter::from_fn(move || loop {
            if let Some(&(key, uid)) = rest.first() {
                let run;
                (run, rest) = rest.split_at(key_run(rest));
                return Some((
                    key,
                    match run.len() {
                        1 => Holders::One(uid),
                        _ => Holders::Many(Cow::Owned(run.into_set())),
                    },
                ));
            }
            match &**buckets.next()? {
                Bucket::Single { key, members } => return Some((*key, Holders::of(members))),
                Bucket::Mixed { pairs, .. } => rest = pairs,
            }
        })
    }

    /// The index of stored runs (keys strictly ascending, holders in
    /// `within`).
    fn load(runs: Runs, within: &RoaringBitmap) -> Result<Ordered, String> {
        let mut last = None;
        for (key, h) in &runs {
            if last.is_some_and(|l| l >= *key) {
                return Err(format!("key {key} does not ascend"));
            }
            if h.is_empty() || !h.within(within) {
                return Err(format!("key {key} has no holders or one without a value"));
            }
            last = Some(*key);
        }
        Ok(Ordered::from_runs(runs.into_iter()))
    }

    /// How many pairs.
    fn len(&self) -> u64 {
        self.spans.values().map(|s| s.pairs).sum()
    }

    /// Every profile with a pair.
    fn members(&self) -> RoaringBitmap {
        roaring::MultiOps::union(self.spans.values().map(|s| &s.members))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::profiles::{AttrObject, AttrValue, Attrs, EventStats, Events};

    /// A column's stored form, owned, as `load_attribute` takes it.
    fn image_of(c: &Column) -> ColumnImage {
        let own = |h: Holders<'_>| match h {
            Holders::One(u) => Holders::One(u),
            Holders::Many(m) => Holders::Many(Cow::Owned(m.into_owned())),
        };
        ColumnImage {
            multi: c.multi(),
            exists: c.exists().clone(),
            texts: c.texts().map(|(s, h)| (s.into(), own(h))).collect(),
            items: c.items().map(|(s, h)| (s.into(), own(h))).collect(),
            numbers: c.number_runs().map(|(k, h)| (k, own(h))).collect(),
            times: c.time_runs().map(|(k, h)| (k, own(h))).collect(),
            bools: [c.bools(false).clone(), c.bools(true).clone()],
            locations: c.locations().clone(),
            dated: c.dated().clone(),
        }
    }

    fn event_image_of(e: &EventColumn) -> EventImage {
        let own = |(k, h): (u64, Holders<'_>)| match h {
            Holders::One(u) => (k, Holders::One(u)),
            Holders::Many(m) => (k, Holders::Many(Cow::Owned(m.into_owned()))),
        };
        EventImage {
            did: e.did().clone(),
            counts: e.count_runs().map(own).collect(),
            last: e.last_runs().map(own).collect(),
        }
    }

    /// The columns, through their stored form and back.
    fn reload(c: &Columns) -> Result<Columns, String> {
        let mut out = Columns::default();
        for (path, col) in c.attribute_columns() {
            out.load_attribute(path.into(), image_of(col))?;
        }
        for (name, e) in c.event_columns() {
            out.load_event(name.into(), event_image_of(e))?;
        }
        Ok(out)
    }

    fn sample_value(i: u32, pick: u8) -> AttrValue {
        match pick % 7 {
            0 => AttrValue::Str(format!("s{}", i % 5).into()),
            1 => AttrValue::Num((i % 4) as f64 * 1.5),
            2 => AttrValue::Bool(i.is_multiple_of(3)),
            3 => AttrValue::Time {
                text: format!("t{i}").into(),
                at: (i as i64 % 9) * 1000,
            },
            4 => AttrValue::Array(vec![format!("a{}", i % 3).into(), "b".into()]),
            5 => AttrValue::Location {
                latitude: 1.0,
                longitude: 2.0,
            },
            _ => AttrValue::Num(i as f64),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Any index, through its stored form, holds the same triples, and
        /// its buckets and spans keep their shape (a few thousand rows:
        /// event counts reach single-key buckets, and spans split).
        #[test]
        fn the_stored_form_loads_the_same_index(
            rows in proptest::collection::vec(
                (proptest::collection::vec((0u8..4, any::<u8>()), 0..4), 0u64..3),
                1..3000,
            ),
        ) {
            let mut c = Columns::default();
            for (uid, (attrs, events)) in rows.iter().enumerate() {
                let uid = uid as Uid;
                let mut o = AttrObject::new();
                for (name, pick) in attrs {
                    o.insert(format!("a{name}").into(), sample_value(uid, *pick));
                }
                let mut ev = std::collections::BTreeMap::new();
                if *events > 0 {
                    let stats = EventStats { count: *events, first: 0, last: uid as i64 % 50 };
                    ev.insert(CompactString::from("open"), stats);
                }
                c.add_profile(uid, &Attrs::from_map(&o), &Events::from_map(&ev));
            }
            // The lengths a snapshot writes before each list are right.
            for (_, col) in c.attribute_columns() {
                prop_assert_eq!(col.texts().len(), col.texts().count());
                prop_assert_eq!(col.number_runs().len(), col.number_runs().count());
                prop_assert_eq!(col.time_runs().len(), col.time_runs().count());
            }
            for (_, e) in c.event_columns() {
                prop_assert_eq!(e.count_runs().len(), e.count_runs().count());
                prop_assert_eq!(e.last_runs().len(), e.last_runs().count());
            }
            let loaded = reload(&c).map_err(TestCaseError::fail)?;
            prop_assert_eq!(loaded.triples(), c.triples());
            for (_, col) in loaded.attribute_columns() {
                col.nums.check();
                col.times.check();
            }
            for (_, e) in loaded.event_columns() {
                e.counts.check();
                e.last.check();
            }
            prop_assert!(loaded.check_live(&(0..rows.len() as Uid).collect()).is_ok());
        }
    }

    fn one_column() -> Columns {
        let mut c = Columns::default();
        for uid in 0..3 {
            let mut o = AttrObject::new();
            o.insert("plan".into(), AttrValue::Str("gold".into()));
            o.insert("age".into(), AttrValue::Num(uid as f64));
            c.add_profile(uid, &Attrs::from_map(&o), &Events::default());
        }
        c
    }

    #[test]
    fn a_stored_column_that_breaks_a_rule_is_refused_with_what_is_wrong() {
        let c = one_column();
        let (_, plan) = c.attribute_columns()[1];
        let (_, age) = c.attribute_columns()[0];
        let refused = |path: &str, img: ColumnImage| {
            let mut out = Columns::default();
            out.load_attribute(path.into(), img).unwrap_err()
        };
        let mut img = image_of(plan);
        img.texts.push(("gold".into(), Holders::One(1)));
        assert!(refused("plan", img).contains("\"gold\" is stored twice"));
        let mut img = image_of(plan);
        img.texts[0].1 = Holders::One(7);
        assert!(refused("plan", img).contains("one without a value"));
        let mut img = image_of(age);
        img.numbers.reverse();
        assert!(refused("age", img).contains("does not ascend"));
        let mut img = image_of(age);
        img.numbers.push((u64::MAX, Holders::One(0)));
        assert!(refused("age", img).contains("4 numbers and times for 3 profiles"));
        assert!(refused("age", ColumnImage::default()).contains("no profile holds a value"));
        // Twice the same path, and a column over a profile that is gone.
        let mut out = Columns::default();
        out.load_attribute("age".into(), image_of(age)).unwrap();
        let again = out.load_attribute("age".into(), image_of(age));
        assert!(again.unwrap_err().contains("stored twice"));
        let live: RoaringBitmap = [0, 1].into_iter().collect();
        assert!(out
            .check_live(&live)
            .unwrap_err()
            .contains("\"age\" holds a profile"));
    }

    #[test]
    fn a_stored_event_gives_each_profile_one_count() {
        let mut c = Columns::default();
        let mut ev = std::collections::BTreeMap::new();
        let stats = EventStats {
            count: 2,
            first: 0,
            last: 5,
        };
        ev.insert(CompactString::from("open"), stats);
        c.add_profile(4, &Attrs::default(), &Events::from_map(&ev));
        let (_, e) = c.event_columns()[0];
        let mut img = event_image_of(e);
        img.counts.push((9, Holders::One(4)));
        let mut out = Columns::default();
        let err = out.load_event("open".into(), img).unwrap_err();
        assert!(
            err.contains("counts do not give each profile one key"),
            "{err}"
        );
    }
}
