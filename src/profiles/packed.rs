//! How a profile holds its custom attributes and event stats in memory:
//! each as one byte string in a compact encoding, decoded on demand.
//!
//! A profile used to hold them as two `BTreeMap`s. With 20 attributes and
//! 5 events that is over 2.5 KB a profile (B-tree nodes sized for 11
//! entries of 64 bytes, and the events' map beside them), against about
//! 200 bytes here: the values are written as they are, names and strings
//! inline with a length, integers as varints. What a profile holds is read
//! far less often than it is kept: segments read the column index
//! (`super::columns`), and what reads a profile (a small candidate scan, a
//! write, a merge) decodes only the entries it needs, or the whole map
//! once.
//!
//! The encodings are canonical (one byte string per map), so equal maps
//! compare equal as bytes. They are also what a snapshot stores (format
//! version 6, `persist::schema::v6`, which spells them out and pins them):
//! a snapshot copies the bytes out and a load checks them whole
//! (`from_bytes`) and keeps them, so changing an encoding here is a new
//! format version. Anything that changes a profile decodes the map,
//! changes it and encodes it again (`Attrs::edit`), once per write,
//! however many attributes the write touches.
//!
//! Attributes: `count`, then each `(name, value)` in name order.
//! Events: `count`, then each `(name, count, first, last - first)` in name
//! order. Integers are LEB128 varints (signed ones zigzag), strings a
//! varint length then UTF-8.

use std::collections::BTreeMap;

use compact_str::CompactString;

use super::{AttrObject, AttrValue, EventStats};
use crate::varint::{put_str, put_varint, unzigzag, zigzag};

const T_STR: u8 = 0;
/// A number that is a whole `f64` within ±2^53 (not `-0.0`): a zigzag varint.
const T_INT: u8 = 1;
const T_F64: u8 = 2;
const T_FALSE: u8 = 3;
const T_TRUE: u8 = 4;
const T_TIME: u8 = 5;
const T_ARRAY: u8 = 6;
const T_OBJECT: u8 = 7;
const T_OBJECTS: u8 = 8;
const T_LOCATION: u8 = 9;

const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// A profile's custom attributes (the top-level map), packed.
#[derive(Clone, Default, PartialEq)]
pub struct Attrs(Option<Box<[u8]>>);

impl std::fmt::Debug for Attrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Attrs {
    pub const EMPTY: Attrs = Attrs(None);

    pub fn from_map(map: &AttrObject) -> Attrs {
        if map.is_empty() {
            return Attrs(None);
        }
        let mut out = Vec::with_capacity(16 * map.len());
        put_object(&mut out, map);
        Attrs(Some(out.into_boxed_slice()))
    }

    pub fn to_map(&self) -> AttrObject {
        self.iter().map(|(k, v)| (k.into(), v)).collect()
    }

    /// The encoding itself (what a snapshot of format 6 stores).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// Attributes from bytes `as_bytes` gave, checked whole (they come
    /// from a file): every length in bounds, strings UTF-8, names in
    /// ascending order at every level, nothing after the end.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Attrs, String> {
        Attrs::check(&bytes)?;
        Ok(Attrs((!bytes.is_empty()).then(|| bytes.into_boxed_slice())))
    }

    /// What `from_bytes` checks, without keeping the bytes.
    pub fn check(bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut c = Check { b: bytes, at: 0 };
        let n = c.object()?;
        c.end()?;
        if n == 0 {
            return Err("packed attributes: an empty map is written as no bytes".into());
        }
        Ok(())
    }

    /// Decodes the map, lets `f` change it, and keeps what it left.
    pub fn edit<R>(&mut self, f: impl FnOnce(&mut AttrObject) -> R) -> R {
        let mut map = self.to_map();
        let r = f(&mut map);
        *self = Attrs::from_map(&map);
        r
    }

    pub fn insert(&mut self, name: &str, value: AttrValue) -> Option<AttrValue> {
        self.edit(|m| m.insert(name.into(), value))
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Some(b) => Reader::new(b).varint() as usize,
            None => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The entries in name order, each value decoded as it is reached.
    pub fn iter(&self) -> impl Iterator<Item = (&str, AttrValue)> + '_ {
        self.entries().map(|(k, v)| (k, Reader::new(v).value()))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries().map(|(k, _)| k)
    }

    pub fn get(&self, name: &str) -> Option<AttrValue> {
        self.entries()
            .take_while(|(k, _)| *k <= name)
            .find(|(k, _)| *k == name)
            .map(|(_, v)| Reader::new(v).value())
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.keys().take_while(|k| *k <= name).any(|k| k == name)
    }

    /// The entries `paths::any_at(_, path, _)` can read: the top-level
    /// attribute named `path` and those named by a prefix of it that ends
    /// before a `.` (objects the path goes through). Everything else is
    /// skipped without being decoded.
    pub fn at_path(&self, path: &str) -> AttrObject {
        let wanted = |k: &str| {
            k == path
                || (path.len() > k.len()
                    && path.starts_with(k)
                    && path[k.len()..].starts_with(super::paths::SEP))
        };
        self.entries()
            .filter(|(k, _)| wanted(k))
            .map(|(k, v)| (k.into(), Reader::new(v).value()))
            .collect()
    }

    /// Each name with the bytes of its value.
    fn entries(&self) -> Entries<'_> {
        Entries::new(self.0.as_deref().unwrap_or(&[]))
    }
}

impl FromIterator<(CompactString, AttrValue)> for Attrs {
    fn from_iter<I: IntoIterator<Item = (CompactString, AttrValue)>>(iter: I) -> Self {
        Attrs::from_map(&iter.into_iter().collect())
    }
}

impl FromIterator<(CompactString, EventStats)> for Events {
    fn from_iter<I: IntoIterator<Item = (CompactString, EventStats)>>(iter: I) -> Self {
        Events::from_map(&iter.into_iter().collect())
    }
}

/// A packed object's entries: each name with its value's bytes (found by
/// skipping over it, which reads only tags and lengths).
struct Entries<'a> {
    r: Reader<'a>,
    left: u64,
}

impl<'a> Entries<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let mut r = Reader::new(bytes);
        let left = if r.done() { 0 } else { r.varint() };
        Entries { r, left }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let name = self.r.str();
        let start = self.r.at;
        self.r.skip_value();
        Some((name, &self.r.b[start..self.r.at]))
    }
}

/// A profile's custom event stats, packed.
#[derive(Clone, Default, PartialEq)]
pub struct Events(Option<Box<[u8]>>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Events {
    pub const EMPTY: Events = Events(None);

    pub fn from_map(map: &BTreeMap<CompactString, EventStats>) -> Events {
        if map.is_empty() {
            return Events(None);
        }
        let mut out = Vec::with_capacity(16 * map.len());
        put_varint(&mut out, map.len() as u64);
        for (name, s) in map {
            put_event(&mut out, name, s);
        }
        Events(Some(out.into_boxed_slice()))
    }

    pub fn to_map(&self) -> BTreeMap<CompactString, EventStats> {
        self.iter().map(|(k, v)| (k.into(), v)).collect()
    }

    /// The encoding itself (what a snapshot of format 6 stores).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// Event stats from bytes `as_bytes` gave, checked whole.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Events, String> {
        Events::check(&bytes)?;
        Ok(Events(
            (!bytes.is_empty()).then(|| bytes.into_boxed_slice()),
        ))
    }

    /// What `from_bytes` checks, without keeping the bytes.
    pub fn check(bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut c = Check { b: bytes, at: 0 };
        let n = c.varint()?;
        if n == 0 {
            return Err("packed events: an empty map is written as no bytes".into());
        }
        let mut last: Option<&str> = None;
        for _ in 0..n {
            let name = c.str()?;
            if last.is_some_and(|l| l >= name) {
                return Err(format!("packed events: {name:?} out of order"));
            }
            last = Some(name);
            for _ in 0..3 {
                c.varint()?;
            }
        }
        c.end()
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Some(b) => Reader::new(b).varint() as usize,
            None => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, EventStats)> + '_ {
        let mut r = Reader::new(self.0.as_deref().unwrap_or(&[]));
        let n = if r.done() { 0 } else { r.varint() };
        (0..n).map(move |_| {
            let name = r.str();
            let count = r.varint();
            let first = unzigzag(r.varint());
            let last = first.wrapping_add(unzigzag(r.varint()));
            (name, EventStats { count, first, last })
        })
    }

    pub fn get(&self, name: &str) -> Option<EventStats> {
        self.iter().find(|(k, _)| *k == name).map(|(_, s)| s)
    }

    /// Sets event `name`'s stats; returns what they were. Splices the one
    /// entry in place of the old (or where it sorts): no map is built.
    pub fn set(&mut self, name: &str, stats: EventStats) -> Option<EventStats> {
        let bytes = self.as_bytes();
        let mut r = Reader::new(bytes);
        let n = if r.done() { 0 } else { r.varint() };
        let after_count = r.at;
        let (mut start, mut end, mut old) = (bytes.len(), bytes.len(), None);
        for _ in 0..n {
            let at = r.at;
            let k = r.str();
            let (count, first, delta) = (r.varint(), unzigzag(r.varint()), unzigzag(r.varint()));
            match k.cmp(name) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => {
                    let last = first.wrapping_add(delta);
                    old = Some(EventStats { count, first, last });
                    (start, end) = (at, r.at);
                }
                std::cmp::Ordering::Greater => (start, end) = (at, at),
            }
            break;
        }
        let mut out = Vec::with_capacity(bytes.len() + name.len() + 16);
        put_varint(&mut out, n + u64::from(old.is_none()));
        out.extend_from_slice(&bytes[after_count..start]);
        put_event(&mut out, name, &stats);
        out.extend_from_slice(&bytes[end..]);
        *self = Events(Some(out.into_boxed_slice()));
        old
    }
}

fn put_event(out: &mut Vec<u8>, name: &str, s: &EventStats) {
    put_str(out, name);
    put_varint(out, s.count);
    put_varint(out, zigzag(s.first));
    put_varint(out, zigzag(s.last.wrapping_sub(s.first)));
}

fn put_object(out: &mut Vec<u8>, map: &AttrObject) {
    put_varint(out, map.len() as u64);
    for (k, v) in map {
        put_str(out, k);
        put_value(out, v);
    }
}

fn put_value(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::Str(s) => {
            out.push(T_STR);
            put_str(out, s);
        }
        AttrValue::Num(n) => {
            if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INT && !(*n == 0.0 && n.is_sign_negative())
            {
                out.push(T_INT);
                put_varint(out, zigzag(*n as i64));
            } else {
                out.push(T_F64);
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        AttrValue::Bool(b) => out.push(if *b { T_TRUE } else { T_FALSE }),
        AttrValue::Time { text, at } => {
            out.push(T_TIME);
            put_str(out, text);
            put_varint(out, zigzag(*at));
        }
        AttrValue::Array(items) => {
            out.push(T_ARRAY);
            put_varint(out, items.len() as u64);
            for i in items {
                put_str(out, i);
            }
        }
        AttrValue::Object(m) => {
            out.push(T_OBJECT);
            put_object(out, m);
        }
        AttrValue::Objects(list) => {
            out.push(T_OBJECTS);
            put_varint(out, list.len() as u64);
            for m in list {
                put_object(out, m);
            }
        }
        AttrValue::Location {
            latitude,
            longitude,
        } => {
            out.push(T_LOCATION);
            out.extend_from_slice(&latitude.to_le_bytes());
            out.extend_from_slice(&longitude.to_le_bytes());
        }
    }
}

/// Reads what this module wrote or `from_bytes` checked, so a malformed
/// byte is a bug here: reading panics rather than guessing.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }

    fn done(&self) -> bool {
        self.at >= self.b.len()
    }

    fn byte(&mut self) -> u8 {
        let b = self.b[self.at];
        self.at += 1;
        b
    }

    fn varint(&mut self) -> u64 {
        let (mut n, mut shift) = (0u64, 0);
        loop {
            let b = self.byte();
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return n;
            }
            shift += 7;
        }
    }

    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let s = &self.b[self.at..self.at + len];
        self.at += len;
        s
    }

    fn str(&mut self) -> &'a str {
        let len = self.varint() as usize;
        std::str::from_utf8(self.bytes(len)).expect("packed strings are UTF-8")
    }

    fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.bytes(8).try_into().expect("8 bytes"))
    }

    fn value(&mut self) -> AttrValue {
        match self.byte() {
            T_STR => AttrValue::Str(self.str().into()),
            T_INT => AttrValue::Num(unzigzag(self.varint()) as f64),
            T_F64 => AttrValue::Num(self.f64()),
            T_FALSE => AttrValue::Bool(false),
            T_TRUE => AttrValue::Bool(true),
            T_TIME => {
                let text = self.str().into();
                AttrValue::Time {
                    text,
                    at: unzigzag(self.varint()),
                }
            }
            T_ARRAY => {
                let n = self.varint() as usize;
                AttrValue::Array((0..n).map(|_| self.str().into()).collect())
            }
            T_OBJECT => AttrValue::Object(self.object()),
            T_OBJECTS => {
                let n = self.varint() as usize;
                AttrValue::Objects((0..n).map(|_| self.object()).collect())
            }
            T_LOCATION => AttrValue::Location {
                latitude: self.f64(),
                longitude: self.f64(),
            },
            t => panic!("packed attribute tag {t} unknown"),
        }
    }

    fn object(&mut self) -> AttrObject {
        let n = self.varint();
        (0..n)
            .map(|_| {
                let k = self.str().into();
                (k, self.value())
            })
            .collect()
    }

    fn skip_str(&mut self) {
        let len = self.varint() as usize;
        self.at += len;
    }

    fn skip_object(&mut self) {
        for _ in 0..self.varint() {
            self.skip_str();
            self.skip_value();
        }
    }

    fn skip_value(&mut self) {
        match self.byte() {
            T_STR => self.skip_str(),
            T_INT => {
                self.varint();
            }
            T_F64 => self.at += 8,
            T_FALSE | T_TRUE => {}
            T_TIME => {
                self.skip_str();
                self.varint();
            }
            T_ARRAY => {
                for _ in 0..self.varint() {
                    self.skip_str();
                }
            }
            T_OBJECT => self.skip_object(),
            T_OBJECTS => {
                for _ in 0..self.varint() {
                    self.skip_object();
                }
            }
            T_LOCATION => self.at += 16,
            t => panic!("packed attribute tag {t} unknown"),
        }
    }
}

/// `Reader`'s checked twin, for bytes read from a file: every step says
/// what is wrong instead of panicking.
struct Check<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Check<'a> {
    fn fail<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("packed attributes: {what} at byte {}", self.at))
    }

    fn end(&self) -> Result<(), String> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            self.fail("bytes after the end")
        }
    }

    fn byte(&mut self) -> Result<u8, String> {
        match self.b.get(self.at) {
            Some(b) => {
                self.at += 1;
                Ok(*b)
            }
            None => self.fail("cut short"),
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let (mut n, mut shift) = (0u64, 0u32);
        loop {
            let b = self.byte()?;
            if shift == 63 && b > 1 || shift > 63 {
                return self.fail("varint too long");
            }
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
            shift += 7;
        }
    }

    fn bytes(&mut self, len: u64) -> Result<&'a [u8], String> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.at.checked_add(l))
            .filter(|e| *e <= self.b.len());
        match end {
            Some(end) => {
                let s = &self.b[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => self.fail("length past the end"),
        }
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let len = self.varint()?;
        let at = self.at;
        std::str::from_utf8(self.bytes(len)?)
            .map_err(|_| format!("packed attributes: a string that is not UTF-8 at byte {at}"))
    }

    fn count(&mut self) -> Result<u64, String> {
        let n = self.varint()?;
        // Every item takes at least one byte.
        if n > (self.b.len() - self.at) as u64 {
            return self.fail("count past the end");
        }
        Ok(n)
    }

    /// An object; returns its number of entries.
    fn object(&mut self) -> Result<u64, String> {
        let n = self.count()?;
        let mut last: Option<&str> = None;
        for _ in 0..n {
            let name = self.str()?;
            if last.is_some_and(|l| l >= name) {
                return self.fail("names out of order");
            }
            last = Some(name);
            self.value()?;
        }
        Ok(n)
    }

    fn value(&mut self) -> Result<(), String> {
        match self.byte()? {
            T_STR => {
                self.str()?;
            }
            T_INT => {
                self.varint()?;
            }
            T_F64 => {
                self.bytes(8)?;
            }
            T_FALSE | T_TRUE => {}
            T_TIME => {
                self.str()?;
                self.varint()?;
            }
            T_ARRAY => {
                for _ in 0..self.count()? {
                    self.str()?;
                }
            }
            T_OBJECT => {
                self.object()?;
            }
            T_OBJECTS => {
                for _ in 0..self.count()? {
                    self.object()?;
                }
            }
            T_LOCATION => {
                self.bytes(16)?;
            }
            t => return self.fail(&format!("unknown tag {t}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaf() -> impl Strategy<Value = AttrValue> {
        prop_oneof![
            "[a-zé]{0,30}".prop_map(|s| AttrValue::Str(s.as_str().into())),
            any::<i64>().prop_map(|n| AttrValue::Num(n as f64)),
            any::<f64>()
                .prop_filter("JSON has no NaN", |n| !n.is_nan())
                .prop_map(AttrValue::Num),
            Just(AttrValue::Num(-0.0)),
            Just(AttrValue::Num(MAX_EXACT_INT + 2.0)),
            any::<bool>().prop_map(AttrValue::Bool),
            (any::<i64>(), "[0-9T:-]{10,25}").prop_map(|(at, text)| AttrValue::Time {
                text: text.as_str().into(),
                at
            }),
            prop::collection::vec("[a-z]{0,5}", 0..4)
                .prop_map(|v| AttrValue::Array(v.iter().map(|s| s.as_str().into()).collect())),
            (-90.0..90.0f64, -180.0..180.0f64).prop_map(|(latitude, longitude)| {
                AttrValue::Location {
                    latitude,
                    longitude,
                }
            }),
        ]
    }

    fn value() -> impl Strategy<Value = AttrValue> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            let object = prop::collection::btree_map("[a-c.]{1,3}", inner, 0..4)
                .prop_map(|m| m.into_iter().map(|(k, v)| (k.as_str().into(), v)).collect());
            prop_oneof![
                object.clone().prop_map(AttrValue::Object),
                prop::collection::vec(object, 0..3).prop_map(AttrValue::Objects),
            ]
        })
    }

    fn map() -> impl Strategy<Value = AttrObject> {
        prop::collection::btree_map("[a-e.]{1,4}", value(), 0..8)
            .prop_map(|m| m.into_iter().map(|(k, v)| (k.as_str().into(), v)).collect())
    }

    /// Bitwise equality, so that `-0.0` and `0.0` are told apart.
    fn same(a: &AttrObject, b: &AttrObject) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    proptest! {
        #[test]
        fn attributes_read_back_as_written(m in map(), probe in "[a-e.]{1,4}") {
            let packed = Attrs::from_map(&m);
            prop_assert!(same(&packed.to_map(), &m));
            prop_assert_eq!(&Attrs::from_bytes(packed.as_bytes().to_vec()).unwrap(), &packed);
            prop_assert_eq!(packed.len(), m.len());
            prop_assert_eq!(packed.is_empty(), m.is_empty());
            prop_assert_eq!(packed.keys().collect::<Vec<_>>(), m.keys().map(|k| k.as_str()).collect::<Vec<_>>());
            for (k, v) in &m {
                prop_assert_eq!(packed.get(k), Some(v.clone()));
                prop_assert!(packed.contains_key(k));
            }
            prop_assert_eq!(packed.get(&probe), m.get(probe.as_str()).cloned());
            prop_assert_eq!(packed.contains_key(&probe), m.contains_key(probe.as_str()));
            // `at_path` keeps exactly what `any_at` reads for the path.
            let part = packed.at_path(&probe);
            let mut all = Vec::new();
            super::super::paths::any_at(&m, &probe, &mut |v| { all.push(v.clone()); false });
            let mut seen = Vec::new();
            super::super::paths::any_at(&part, &probe, &mut |v| { seen.push(v.clone()); false });
            prop_assert_eq!(seen, all);
        }

        #[test]
        fn events_read_back_as_written(
            m in prop::collection::btree_map("[a-z]{1,6}", (any::<u64>(), any::<i64>(), any::<i64>()), 0..6),
            sets in prop::collection::vec(("[a-z]{1,2}", (any::<u64>(), any::<i64>())), 0..6),
        ) {
            let m: BTreeMap<CompactString, EventStats> = m
                .into_iter()
                .map(|(k, (count, first, last))| (k.as_str().into(), EventStats { count, first, last }))
                .collect();
            let packed = Events::from_map(&m);
            prop_assert_eq!(packed.to_map(), m.clone());
            prop_assert_eq!(&Events::from_bytes(packed.as_bytes().to_vec()).unwrap(), &packed);
            prop_assert_eq!(packed.len(), m.len());
            for (k, v) in &m {
                prop_assert_eq!(packed.get(k), Some(*v));
            }
            // Setting splices: the same bytes as packing the changed map.
            let (mut spliced, mut model) = (packed.clone(), m.clone());
            for (k, (count, first)) in &sets {
                let stats = EventStats { count: *count, first: *first, last: first.wrapping_add(7) };
                prop_assert_eq!(spliced.set(k, stats), model.insert(k.as_str().into(), stats));
                prop_assert_eq!(&spliced, &Events::from_map(&model));
            }
        }
    }

    proptest! {
        /// Bytes from a damaged file are refused, or are a map that reads
        /// whole: never a panic later.
        #[test]
        fn damaged_bytes_are_refused_or_read_whole(m in map(), at in any::<prop::sample::Index>(), to in any::<u8>()) {
            let mut bytes = Attrs::from_map(&m).as_bytes().to_vec();
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = to;
            }
            if let Ok(a) = Attrs::from_bytes(bytes.clone()) {
                let _ = a.to_map();
                prop_assert_eq!(a.keys().count(), a.len());
            }
            bytes.truncate(bytes.len() / 2);
            if let Ok(a) = Attrs::from_bytes(bytes) {
                let _ = a.to_map();
            }
        }
    }

    #[test]
    fn malformed_bytes_say_what_is_wrong() {
        let ok = Attrs::from_map(
            &[("a".into(), AttrValue::Str("x".into()))]
                .into_iter()
                .collect(),
        );
        let mut cut = ok.as_bytes().to_vec();
        cut.pop();
        assert!(Attrs::from_bytes(cut).unwrap_err().contains("past the end"));
        let mut more = ok.as_bytes().to_vec();
        more.push(0);
        assert!(Attrs::from_bytes(more)
            .unwrap_err()
            .contains("after the end"));
        // Two entries, "b" then "a".
        let swapped = vec![2, 1, b'b', T_TRUE, 1, b'a', T_TRUE];
        assert!(Attrs::from_bytes(swapped)
            .unwrap_err()
            .contains("out of order"));
        assert!(Attrs::from_bytes(vec![1, 1, b'a', 99])
            .unwrap_err()
            .contains("unknown tag 99"));
        assert!(Events::from_bytes(vec![0]).is_err());
    }

    /// The maps this replaced took over 2 KB for these (B-tree nodes of
    /// 64-byte entries); the names are 160 of these bytes, the five
    /// times' texts 105.
    #[test]
    fn twenty_attributes_take_under_400_bytes() {
        let mut m = AttrObject::new();
        for i in 0..20 {
            let v = match i % 4 {
                0 => AttrValue::Str(format!("city_{i}").as_str().into()),
                1 => AttrValue::Num(f64::from(i * 37)),
                2 => AttrValue::Bool(i % 3 == 0),
                _ => AttrValue::from_text("2025-06-01T10:00:00Z"),
            };
            m.insert(format!("attr_{i:02}").as_str().into(), v);
        }
        let packed = Attrs::from_map(&m);
        let len = packed.0.as_ref().map_or(0, |b| b.len());
        assert!(len < 400, "{len} bytes");
    }
}
