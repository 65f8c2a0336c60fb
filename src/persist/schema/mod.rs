//! The on-disk schema: every type that is written to a log record or a
//! snapshot, by format version, and the only way in or out of them.
//!
//! The live domain types (`model`, `profiles`, `segment`, `engine`) carry no
//! serde derives for persistence: adding a field to one of them cannot
//! change a byte on disk. What is written is declared here, per version:
//!
//! - [`v1`]: what cohortd wrote up to commit b09aa9e (a frozen copy of the
//!   serde shape of the live types of that time; headerless log segments);
//! - [`v2`]: segment headers, restores that name their image's version and
//!   keep the id counters, profiles as a list;
//! - [`v3`]: the state-dependent limits in force are logged and kept in
//!   images;
//! - [`v4`]: nested custom attributes, locations, `within_km`;
//! - [`v5`]: email, phone and braze_id as users API identifiers; how
//!   recently each email or phone holder was updated;
//! - [`v6`]: snapshots store profiles' attributes and event stats packed,
//!   as the server holds them;
//! - [`v7`]: snapshots store each workspace's column index, so a restart
//!   does not rebuild it;
//! - [`v8`]: the current version (the log carries what the change feed
//!   reports: events' properties, purchases' prices, the time of
//!   identifies and deletes; workspaces keep their export connectors).
//!
//! Writing always uses the current version ([`LOG_VERSION`],
//! [`SNAPSHOT_VERSION`]); `convert` maps the domain to it. Reading accepts
//! every version from 1 to the current one: a value is decoded with its
//! version's types, migrated up one version at a time (`migrate`), then
//! converted to the domain. A version newer than this build is an error
//! that names it ([`Error::UnsupportedVersion`] from the containers, or
//! [`Error::Codec`] here), never a value skipped as corrupt.
//!
//! `docs/format.md` describes every version and the steps to add a field or
//! a record kind.

mod convert;
mod index;
mod migrate;
pub mod v1;
pub mod v2;
pub mod v3;
pub mod v4;
pub mod v5;
pub mod v6;
pub mod v7;
pub mod v8;

use std::path::Path;

use super::{codec, snapshot, Error, Result};
use crate::engine::state::Image;
use crate::engine::Command;
use crate::profiles::{Attrs, Events};

/// The format version of the log records this build writes.
pub const LOG_VERSION: u32 = 8;
/// The format version of the snapshot payloads this build writes (the
/// same number: one version names the format of a whole data dir).
pub const SNAPSHOT_VERSION: u32 = 8;
/// The oldest version this build reads (every version ever released).
pub const OLDEST_VERSION: u32 = 1;

fn unsupported(what: &str, version: u32, newest: u32) -> Error {
    Error::Codec(format!(
        "{what} of format version {version}: this build reads versions {OLDEST_VERSION} to \
         {newest}"
    ))
}

/// A command as the current version's log record.
pub fn encode_record(cmd: &Command) -> Result<Vec<u8>> {
    codec::encode(&convert::record_out(cmd))
}

/// A log record of format `version` as the command it replays as.
pub fn decode_record(version: u32, bytes: &[u8]) -> Result<Command> {
    let current: v8::Record = match version {
        1 => {
            let v2 = migrate::record_v1_to_v2(codec::decode::<v1::Command>(bytes)?);
            // v3 only appends a variant: re-spell the v2 record as v3.
            let v3: v3::Record = codec::decode(&codec::encode(&v2)?)?;
            migrate::record_v5_to_v8(migrate::record_v4_to_v5(&migrate::record_v3_to_v4(&v3)?)?)
        }
        // A v2 record's bytes are the same v3 record's (see `v3`), a v3
        // record's the same v4 record's (see `v4`), a v4 record's the
        // same v5 record's (see `v5`), and v6 and v7 records are v5's (see
        // `v6`, `v7`).
        2..=7 => migrate::record_v5_to_v8(codec::decode(bytes)?),
        8 => codec::decode(bytes)?,
        v => return Err(unsupported("log record", v, LOG_VERSION)),
    };
    convert::command_in(current)
}

/// A state as the current version's snapshot payload.
pub fn encode_image(image: &Image) -> Result<Vec<u8>> {
    codec::encode(&convert::image_out(image))
}

/// [`encode_image`], written into `w` as it goes.
pub fn encode_image_into(image: &Image, w: &mut dyn std::io::Write) -> Result<()> {
    codec::encode_into(&convert::image_out(image), w)
}

/// The image a snapshot payload of format `version` holds, migrated to the
/// current version's types.
fn decode_schema_image(version: u32, bytes: &[u8]) -> Result<v8::Image> {
    use migrate::image_v7_to_v8 as v7_to_v8;
    Ok(match version {
        8 => codec::decode(bytes)?,
        7 => v7_to_v8(codec::decode(bytes)?),
        6 => v7_to_v8(migrate::image_v6_to_v7(codec::decode::<v6::Image>(bytes)?)),
        v => v7_to_v8(migrate::image_v6_to_v7(migrate::image_v5_to_v6(
            decode_v5_image(v, bytes)?,
        ))),
    })
}

/// An image of format 1 to 5 as version 5's types.
fn decode_v5_image(version: u32, bytes: &[u8]) -> Result<v5::Image> {
    Ok(match version {
        1 => migrate::image_v4_to_v5(migrate::image_v3_to_v4(&migrate::image_v2_to_v3(
            migrate::image_v1_to_v2(codec::decode::<v1::Image>(bytes)?),
        ))?),
        2 => migrate::image_v4_to_v5(migrate::image_v3_to_v4(&migrate::image_v2_to_v3(
            codec::decode::<v2::Image>(bytes)?,
        ))?),
        // A v3 image's bytes are the same v4 image's (see `v4`).
        3 | 4 => migrate::image_v4_to_v5(codec::decode::<v4::Image>(bytes)?),
        5 => codec::decode(bytes)?,
        v => return Err(unsupported("snapshot", v, SNAPSHOT_VERSION)),
    })
}

/// The state a snapshot payload of format `version` describes. Versions 6
/// to 8 decode profiles straight into the store, and versions 7 and 8 their
/// column index too (one copy in memory); older ones go through their own
/// types and the migrations. Every version before 7 migrates to an image
/// without a column index, which loading then rebuilds, and every version
/// before 8 to workspaces without connectors.
pub fn decode_image(version: u32, bytes: &[u8]) -> Result<Image> {
    use convert::{PackedProfileIn, ProfilesIn};
    use migrate::image_v7_to_v8;
    fn v6_to_v7<P>(image: v6::Image<P>) -> v8::Image<P> {
        migrate::image_v7_to_v8(migrate::image_v6_to_v7(image))
    }
    match version {
        8 => convert::image_in(codec::decode::<
            v8::Image<ProfilesIn<PackedProfileIn>, Option<index::IndexIn>>,
        >(bytes)?),
        7 => convert::image_in(image_v7_to_v8(codec::decode::<
            v7::Image<ProfilesIn<PackedProfileIn>, Option<index::IndexIn>>,
        >(bytes)?)),
        6 => convert::image_in(v6_to_v7(codec::decode::<
            v6::Image<ProfilesIn<PackedProfileIn>>,
        >(bytes)?)),
        5 => convert::image_in(v6_to_v7(codec::decode::<v5::Image<ProfilesIn>>(bytes)?)),
        // A v3 image's bytes are the same v4 image's (see `v4`); v4 → v5
        // adds an empty `recency` to each workspace.
        3 | 4 => convert::image_in(v6_to_v7(migrate::image_v4_to_v5(codec::decode::<
            v4::Image<ProfilesIn>,
        >(bytes)?))),
        2 => {
            // v2 → v3 adds `limits: None`; v3 → v4 re-spells the segments.
            let v3 = migrate::image_v2_to_v3(codec::decode::<v2::Image<ProfilesIn>>(bytes)?);
            convert::image_in(v6_to_v7(migrate::image_v4_to_v5(
                migrate::profiles_image_v3_to_v4(v3)?,
            )))
        }
        // Version 1: owned version 5 profiles, unpacked as they are (not
        // packed into version 6 only to be unpacked again).
        v => convert::image_in(v6_to_v7(decode_v5_image(v, bytes)?)),
    }
}

/// Where [`inspect_with`] is, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InspectStep {
    /// Payload bytes read and checksummed.
    Reading { done: u64, total: u64 },
    /// Decoding the image (one step, no count).
    Decoding,
    /// Profiles whose packed attributes and events were checked.
    Checking { done: u64, total: u64 },
}

/// `cohortd inspect FILE`: a snapshot's header, log position and counts, as
/// JSON. Verifies the checksums and decodes the whole image (offline; no
/// server, no data dir lock).
pub fn inspect(path: &Path) -> Result<String> {
    inspect_with(path, &mut |_| {})
}

/// [`inspect`], reporting each step to `step` as it goes.
pub fn inspect_with(path: &Path, step: &mut dyn FnMut(InspectStep)) -> Result<String> {
    /// Profiles checked between two reports.
    const EVERY: u64 = 1 << 16;
    let (info, bytes) = snapshot::load_with(path, &mut |done, total| {
        step(InspectStep::Reading { done, total })
    })?;
    step(InspectStep::Decoding);
    let image = decode_schema_image(info.format_version, &bytes)?;
    drop(bytes);
    // The packed bytes are checked as a load would.
    let total: u64 = image
        .workspaces
        .iter()
        .map(|w| w.profiles.list.len() as u64)
        .sum();
    let mut done = 0;
    step(InspectStep::Checking { done, total });
    for w in &image.workspaces {
        for (_, p) in &w.profiles.list {
            if let Some(d) = &p.details {
                Attrs::check(&d.attributes.0).map_err(Error::Codec)?;
                Events::check(&d.events.0).map_err(Error::Codec)?;
            }
            done += 1;
            if done % EVERY == 0 {
                step(InspectStep::Checking { done, total });
            }
        }
    }
    step(InspectStep::Checking { done, total });
    // So is the stored column index, as a load would check it.
    let mut indexed = Vec::new();
    for w in &image.workspaces {
        use index::IntoColumns;
        let Some(columns) = w.index.clone().into_columns()? else {
            indexed.push(serde_json::Value::Null);
            continue;
        };
        let mut live = roaring::RoaringBitmap::new();
        let mut gaps = v7::Gaps::default();
        for (gap, _) in &w.profiles.list {
            live.insert(gaps.id(*gap).map_err(Error::Codec)?);
        }
        columns.check_live(&live).map_err(Error::Codec)?;
        indexed.push(serde_json::json!({
            "attribute_paths": columns.attribute_columns().len(),
            "events": columns.event_columns().len(),
        }));
    }
    let workspaces: Vec<_> = image
        .workspaces
        .iter()
        .zip(indexed)
        .map(|(w, column_index)| {
            serde_json::json!({
                "workspace_id": crate::model::WorkspaceId(w.id).to_string(),
                "name": w.name,
                "profiles": w.profiles.list.len(),
                "cohorts": w.cohorts.len(),
                "memberships": w.cohorts.iter().map(|c| c.members.len()).sum::<u64>(),
                "segments": w.segments.len(),
                "connectors": w.connectors.len(),
                "data_import_keys": w.import_keys.len(),
                // `null`: not stored, rebuilt from the profiles at load.
                "column_index": column_index,
            })
        })
        .collect();
    let out = serde_json::json!({
        "snapshot_id": info.id,
        "format_version": info.format_version,
        "created_at": crate::time::format_millis(info.created_at_millis),
        "log_position": info.log_position,
        "bytes": info.bytes,
        "workspaces": workspaces,
    });
    serde_json::to_string_pretty(&out).map_err(|e| Error::Codec(e.to_string()))
}

#[cfg(test)]
mod tests;
