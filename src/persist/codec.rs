//! Value ⇄ bytes. The only file in the crate that names `bincode`.
//!
//! bincode is unmaintained (RUSTSEC-2025-0141) and pinned at `=2.0.1`
//! (3.0.0 is a non-compiling tombstone). Every use is behind these two
//! functions, and only `persist::schema` calls them, with the versioned
//! schema types: replacing bincode means a new schema version whose
//! payloads go through another encoder, while this one stays to read the
//! older versions (docs/format.md).
//!
//! # What may go through it
//!
//! bincode's serde mode is not self-describing: the decoder is told the type
//! and reads exactly the fields the type declares, in order. So these do
//! **not** round-trip and must stay out of schema types:
//!
//! - `serde_json::Value` and other `deserialize_any` types (store JSON as a
//!   `String` instead);
//! - `#[serde(untagged)]` enums and `#[serde(flatten)]` fields;
//! - `#[serde(skip_serializing_if = …)]` (the field vanishes on encode, the
//!   decoder still expects it).
//!
//! Plain `#[derive(Serialize, Deserialize)]` structs, enums (externally
//! tagged, the default), maps, sets, `Option`, `Vec` and strings are fine.

use super::{Error, Result};

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encode `v` with bincode's standard configuration (varint integers).
pub fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(v, config()).map_err(|e| Error::Codec(e.to_string()))
}

/// Encode `v` into `w` as it goes (a snapshot's payload, never held whole).
pub fn encode_into<T: serde::Serialize>(v: &T, w: &mut dyn std::io::Write) -> Result<()> {
    let mut w = w;
    bincode::serde::encode_into_std_write(v, &mut w, config())
        .map(|_| ())
        .map_err(|e| Error::Codec(e.to_string()))
}

/// Decode a `T` that must occupy all of `bytes`: trailing bytes mean the
/// writer and reader disagree on the type, which we report rather than
/// ignore.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| Error::Codec(e.to_string()))?;
    if used != bytes.len() {
        return Err(Error::Codec(format!(
            "{} trailing bytes after the value ({used} of {} used)",
            bytes.len() - used,
            bytes.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Op {
        Add { ids: Vec<u32> },
        Remove(u32),
        Clear,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        name: String,
        at: i64,
        note: Option<String>,
        ops: Vec<Op>,
        attrs: BTreeMap<String, f64>,
    }

    #[test]
    fn a_plain_derived_struct_and_enum_round_trip() {
        let r = Record {
            name: "c1".into(),
            at: -5,
            note: None,
            ops: vec![Op::Add { ids: vec![1, 2] }, Op::Remove(7), Op::Clear],
            attrs: BTreeMap::from([("plan".into(), 3.5)]),
        };
        let bytes = encode(&r).expect("encode");
        assert_eq!(decode::<Record>(&bytes).expect("decode"), r);
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&Op::Remove(1)).expect("encode");
        bytes.push(0);
        assert!(matches!(decode::<Op>(&bytes), Err(Error::Codec(_))));
    }

    #[test]
    fn truncated_input_is_rejected() {
        let bytes = encode(&Op::Add { ids: vec![1, 2, 3] }).expect("encode");
        assert!(decode::<Op>(&bytes[..bytes.len() - 1]).is_err());
    }
}
