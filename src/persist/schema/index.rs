//! A workspace's column index ⇄ `v7::IndexBytes` (the bincode of a
//! `v7::Index`; see `v7`'s module docs for the shape).
//!
//! Writing borrows the live index ([`IndexOut`]): each column's sets are
//! serialised where they are, into the bytes the image then carries.
//! Reading ([`IndexIn`]) copies those bytes and decodes them on a thread
//! of their own while the reader goes on with the profiles that follow
//! them; the thread decodes one column at a time into its owned `v7` form,
//! converts it and loads it into the domain index, which checks it
//! (`profiles::columns::image`), so only one column is ever held twice.

use std::borrow::Cow;

use compact_str::CompactString;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::convert::Seq;
use super::v7 as cur;
use super::{codec, Error, Result};
use crate::profiles::columns::{Column, ColumnImage, Columns, EventColumn, EventImage, Holders};

type SerResult<S> = std::result::Result<<S as Serializer>::Ok, <S as Serializer>::Error>;

/// A workspace's column index, serialised as `v7::IndexBytes` from the
/// live one.
pub struct IndexOut(pub Columns);

/// The live index in the shape of `v7::Index`.
pub(super) struct IndexBody<'a>(pub(super) &'a Columns);

struct HoldersOut<'a>(Holders<'a>);

impl Serialize for HoldersOut<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> SerResult<S> {
        // Variant indices and names of `v7::Holders`.
        match &self.0 {
            Holders::One(u) => ser.serialize_newtype_variant("Holders", 0, "One", u),
            Holders::Many(m) => ser.serialize_newtype_variant("Holders", 1, "Many", &**m),
        }
    }
}

/// Values with their holders.
struct EntriesOut<I>(I);

impl<'a, I> Serialize for EntriesOut<I>
where
    I: ExactSizeIterator<Item = (&'a str, Holders<'a>)> + Clone,
{
    fn serialize<S: Serializer>(&self, ser: S) -> SerResult<S> {
        Seq(self.0.clone().map(|(s, h)| (s, HoldersOut(h)))).serialize(ser)
    }
}

/// Keys ascending with their holders, each key as its gap from the last.
struct RunsOut<I>(I);

impl<'a, I> Serialize for RunsOut<I>
where
    I: ExactSizeIterator<Item = (u64, Holders<'a>)> + Clone,
{
    fn serialize<S: Serializer>(&self, ser: S) -> SerResult<S> {
        let mut prev = 0;
        let gaps = self.0.clone().map(move |(key, h)| {
            let gap = key - prev;
            prev = key;
            (gap, HoldersOut(h))
        });
        Seq(gaps).serialize(ser)
    }
}

struct AttrOut<'a>(&'a str, &'a Column);

impl Serialize for AttrOut<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> SerResult<S> {
        let c = self.1;
        // Fields of `v7::AttrIndex`, in order.
        let mut st = ser.serialize_struct("AttrIndex", 11)?;
        st.serialize_field("path", self.0)?;
        st.serialize_field("multi", &c.multi())?;
        st.serialize_field("exists", c.exists())?;
        st.serialize_field("texts", &EntriesOut(c.texts()))?;
        st.serialize_field("items", &EntriesOut(c.items()))?;
        st.serialize_field("numbers", &RunsOut(c.number_runs()))?;
        st.serialize_field("times", &RunsOut(c.time_runs()))?;
        st.serialize_field("falses", c.bools(false))?;
        st.serialize_field("trues", c.bools(true))?;
        st.serialize_field("locations", c.locations())?;
        st.serialize_field("dated", c.dated())?;
        st.end()
    }
}

struct EventOut<'a>(&'a str, &'a EventColumn);

impl Serialize for EventOut<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> SerResult<S> {
        let e = self.1;
        // Fields of `v7::EventIndex`, in order.
        let mut st = ser.serialize_struct("EventIndex", 4)?;
        st.serialize_field("name", self.0)?;
        st.serialize_field("did", e.did())?;
        st.serialize_field("counts", &RunsOut(e.count_runs()))?;
        st.serialize_field("last", &RunsOut(e.last_runs()))?;
        st.end()
    }
}

impl Serialize for IndexOut {
    fn serialize<S: Serializer>(&self, ser: S) -> SerResult<S> {
        let bytes = codec::encode(&IndexBody(&self.0)).map_err(serde::ser::Error::custom)?;
        ser.serialize_bytes(&bytes)
    }
}

impl Serialize for IndexBody<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> SerResult<S> {
        let attrs = self.0.attribute_columns();
        let events = self.0.event_columns();
        // Fields of `v7::Index`, in order.
        let mut st = ser.serialize_struct("Index", 2)?;
        st.serialize_field("attributes", &Seq(attrs.iter().map(|(p, c)| AttrOut(p, c))))?;
        st.serialize_field("events", &Seq(events.iter().map(|(n, e)| EventOut(n, e))))?;
        st.end()
    }
}

// ---- reading ----

fn holders_in(h: cur::Holders) -> Holders<'static> {
    match h {
        cur::Holders::One(u) => Holders::One(u),
        cur::Holders::Many(m) => Holders::Many(Cow::Owned(m)),
    }
}

fn entries_in(list: Vec<(String, cur::Holders)>) -> Vec<(CompactString, Holders<'static>)> {
    list.into_iter()
        .map(|(s, h)| (CompactString::from(s), holders_in(h)))
        .collect()
}

/// Gaps back to keys (their order is the domain's to check).
fn runs_in(runs: cur::Runs) -> std::result::Result<Vec<(u64, Holders<'static>)>, String> {
    let mut key = 0u64;
    runs.into_iter()
        .map(|(gap, h)| {
            key = key
                .checked_add(gap)
                .ok_or_else(|| format!("a key gap of {gap} passes the largest key"))?;
            Ok((key, holders_in(h)))
        })
        .collect()
}

/// Loads one stored attribute column into `into`.
fn load_attr(into: &mut Columns, a: cur::AttrIndex) -> std::result::Result<(), String> {
    let img = ColumnImage {
        multi: a.multi,
        exists: a.exists,
        texts: entries_in(a.texts),
        items: entries_in(a.items),
        numbers: runs_in(a.numbers).map_err(|e| format!("index column {:?}: {e}", a.path))?,
        times: runs_in(a.times).map_err(|e| format!("index column {:?}: {e}", a.path))?,
        bools: [a.falses, a.trues],
        locations: a.locations,
        dated: a.dated,
    };
    into.load_attribute(a.path.into(), img)
}

/// Loads one stored event index into `into`.
fn load_event(into: &mut Columns, e: cur::EventIndex) -> std::result::Result<(), String> {
    let fail = |x: String| format!("index event {:?}: {x}", e.name);
    let img = EventImage {
        did: e.did,
        counts: runs_in(e.counts).map_err(fail)?,
        last: runs_in(e.last).map_err(fail)?,
    };
    into.load_event(e.name.into(), img)
}

/// A workspace's stored index, as decoded, on its way into the store.
pub trait IntoColumns {
    /// The index, checked, or `None` if the image did not store it.
    fn into_columns(self) -> Result<Option<Columns>>;
}

/// The bytes of a `v7::Index`, owned (`inspect`, tests, and older images
/// migrated up: `None`).
impl IntoColumns for Option<cur::IndexBytes> {
    fn into_columns(self) -> Result<Option<Columns>> {
        self.map(|bytes| Ok(codec::decode::<IndexColumns>(&bytes.0)?.0))
            .transpose()
    }
}

/// The decoded `v7::Index` of a `v7::IndexBytes`, as owned values.
#[cfg(test)]
pub fn index_of(bytes: &cur::IndexBytes) -> Result<cur::Index> {
    codec::decode(&bytes.0)
}

/// A `v7::IndexBytes` being decoded on a thread of its own (the reader's
/// fast path), straight into the domain index, one column at a time.
pub struct IndexIn(std::thread::JoinHandle<Result<Columns>>);

impl IntoColumns for Option<IndexIn> {
    fn into_columns(self) -> Result<Option<Columns>> {
        let Some(IndexIn(thread)) = self else {
            return Ok(None);
        };
        let columns = thread
            .join()
            .map_err(|_| Error::Codec("the column index's decoding thread panicked".into()))??;
        Ok(Some(columns))
    }
}

impl<'de> serde::Deserialize<'de> for IndexIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // Copied, so that the thread owns them: a tenth or so of what
        // decoding them costs.
        let cur::Packed(bytes) = serde::Deserialize::deserialize(d)?;
        let thread = std::thread::Builder::new()
            .name("index-load".into())
            .spawn(move || Ok(codec::decode::<IndexColumns>(&bytes)?.0))
            .map_err(serde::de::Error::custom)?;
        Ok(IndexIn(thread))
    }
}

/// A `v7::Index` decoded straight into the domain index.
struct IndexColumns(Columns);

impl<'de> serde::Deserialize<'de> for IndexColumns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{DeserializeOwned, DeserializeSeed, Error as _, SeqAccess, Visitor};

        /// A list of `T`, each loaded into the index as it is decoded.
        struct List<'c, T> {
            into: &'c mut Columns,
            load: fn(&mut Columns, T) -> std::result::Result<(), String>,
        }
        impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for List<'_, T> {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> std::result::Result<(), D::Error> {
                d.deserialize_seq(self)
            }
        }
        impl<'de, T: DeserializeOwned> Visitor<'de> for List<'_, T> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of index columns")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
                while let Some(item) = seq.next_element::<T>()? {
                    (self.load)(self.into, item).map_err(A::Error::custom)?;
                }
                Ok(())
            }
        }
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = IndexColumns;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("struct Index {attributes, events}")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<IndexColumns, A::Error> {
                let mut c = Columns::default();
                let attrs = List {
                    into: &mut c,
                    load: load_attr,
                };
                seq.next_element_seed(attrs)?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let events = List {
                    into: &mut c,
                    load: load_event,
                };
                seq.next_element_seed(events)?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                Ok(IndexColumns(c))
            }
        }
        d.deserialize_struct("Index", &["attributes", "events"], Fields)
    }
}
