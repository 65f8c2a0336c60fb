//! Format version 6.
//!
//! What changed from version 5: a snapshot stores each profile's custom
//! attributes and event stats as the bytes the server holds them in
//! (`profiles::packed`), not as maps of values. Writing a snapshot copies
//! them, and loading one checks them and keeps them, with no map built or
//! taken apart on either side.
//!
//! `Details` is declared again with `attributes` and `events` as
//! [`Packed`] (bincode bytes: a varint length, then the bytes); with it
//! `Profile` and `Profiles`, field for field as in version 5. `Image` and
//! `WorkspaceImage` are version 5's, over these profiles. Log records are
//! unchanged: a version 5 record's bytes are the same version 6 record.
//!
//! The packed encodings, which are now part of the format:
//!
//! - attributes: `object` = varint count, then per entry, in ascending byte
//!   order of names with no name twice, `str` name and `value`;
//!   `str` = varint byte length then UTF-8; `value` = one tag byte then
//!   0 `str` (a string), 1 zigzag varint (a whole number within ±2^53,
//!   not -0.0), 2 f64 LE (any other number), 3 false, 4 true,
//!   5 `str` text and zigzag varint instant in ms (a time),
//!   6 varint count then `str`s (an array of strings), 7 `object`,
//!   8 varint count then `object`s (an array of objects),
//!   9 latitude then longitude, f64 LE each (a location);
//! - events: varint count, then per event, in ascending byte order of names,
//!   `str` name, varint count, zigzag varint first time, zigzag varint
//!   (last − first).
//!
//! Varints are LEB128; zigzag maps n to 2n for n ≥ 0 and −2n − 1 below. An
//! empty map is no bytes at all. Migrating a version 5 image
//! (`migrate::profiles_v5_to_v6`) packs each profile's maps in that form.

use serde::{Deserialize, Serialize};

pub use super::v5::*;

/// Bytes in a packed encoding (see the module docs), written as bincode
/// bytes (a varint length, then the bytes as they are).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Packed(pub Vec<u8>);

impl Serialize for Packed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Packed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Packed;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("packed bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Packed, E> {
                Ok(Packed(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Packed, E> {
                Ok(Packed(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Details {
    pub aliases: Vec<Alias>,
    pub devices: Vec<String>,
    pub attributes: Packed,
    pub events: Packed,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub external_id: Option<String>,
    pub details: Option<Details>,
}

/// As version 5's `Profiles`, of version 6 profiles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profiles {
    pub id_bound: u32,
    pub list: Vec<(u32, Profile)>,
}

/// A workspace in a version 6 image: version 5's, over version 6 profiles.
pub type WorkspaceImage<P = Profiles> = super::v5::WorkspaceImage<P>;

/// A snapshot payload of version 6: version 5's, over version 6 profiles.
pub type Image<P = Profiles> = super::v5::Image<P>;
