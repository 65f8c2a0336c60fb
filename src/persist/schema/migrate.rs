//! Migrations: each takes one version's value to the next, and nothing
//! else. Reading a version n value runs n → n+1 → … → current, so adding a
//! version adds one function per changed type here and leaves the older
//! ones alone.

use super::{v1, v2, v3};

/// v1 → v2: a restore record says its image is version 1, and that it
/// rewinds the id counters (as version 1 restores did).
pub fn record_v1_to_v2(c: v1::Command) -> v2::Record {
    use v1::Command as C;
    use v2::Record as R;
    match c {
        C::CreateWorkspace { name, rest_key, at } => R::CreateWorkspace { name, rest_key, at },
        C::CreateImportKey { ws, key } => R::CreateImportKey { ws, key },
        C::RevokeImportKey {
            ws,
            partner,
            key_id,
        } => R::RevokeImportKey {
            ws,
            partner,
            key_id,
        },
        C::NameCohort {
            ws,
            key,
            name,
            created_at,
            at,
        } => R::NameCohort {
            ws,
            key,
            name,
            created_at,
            at,
        },
        C::ApplyDelta {
            ws,
            key,
            changes,
            at,
        } => R::ApplyDelta {
            ws,
            key,
            changes,
            at,
        },
        C::Track { ws, track } => R::Track { ws, track },
        C::Identify { ws, identify } => R::Identify { ws, identify },
        C::NewAliases { ws, aliases } => R::NewAliases { ws, aliases },
        C::DeleteUsers { ws, ids } => R::DeleteUsers { ws, ids },
        C::PutSegment {
            ws,
            id,
            name,
            filter,
        } => R::PutSegment {
            ws,
            id,
            name,
            filter,
        },
        C::DeleteSegment { ws, id } => R::DeleteSegment { ws, id },
        C::Restore { snapshot_id, image } => R::Restore {
            snapshot_id,
            format: 1,
            image,
            keep_counters: false,
        },
    }
}

/// v1 → v2: the chunked profile table becomes a list of live profiles.
/// `live` was always exactly the occupied slots; a slot outside it (which
/// v1 never wrote) is dropped rather than resurrected.
pub fn image_v1_to_v2(image: v1::Image) -> v2::Image {
    v2::Image {
        next_workspace: image.next_workspace,
        workspaces: image
            .workspaces
            .into_iter()
            .map(|w| {
                let live = w.profiles.live;
                let mut gaps = v2::Gaps::default();
                let list = w
                    .profiles
                    .table
                    .chunks
                    .into_iter()
                    .flatten()
                    .zip(0u32..)
                    .filter_map(|(slot, uid)| slot.map(|p| (uid, p)))
                    .filter(|(uid, _)| live.contains(*uid))
                    .map(|(uid, p)| (gaps.gap(uid), p))
                    .collect();
                v2::WorkspaceImage {
                    id: w.id,
                    name: w.name,
                    created_at: w.created_at,
                    rest_key: w.rest_key,
                    profiles: v2::Profiles {
                        id_bound: w.profiles.table.len,
                        list,
                    },
                    import_keys: w.import_keys,
                    segments: w.segments,
                    last_segment: w.last_segment,
                    cohorts: w.cohorts,
                }
            })
            .collect(),
    }
}

/// v2 → v3: an image written before limits existed has none in force.
/// (Records need no migration: v3 only appends a variant.)
pub fn image_v2_to_v3<P>(image: v2::Image<P>) -> v3::Image<P> {
    v3::Image {
        next_workspace: image.next_workspace,
        workspaces: image.workspaces,
        limits: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(e: &str) -> v1::Profile {
        v1::Profile {
            external_id: Some(e.into()),
            details: None,
        }
    }

    #[test]
    fn v1_tables_become_lists_with_holes_and_the_id_bound_kept() {
        let mut chunk: Vec<Option<v1::Profile>> = vec![None; 4096];
        chunk[0] = Some(profile("a"));
        chunk[4095] = Some(profile("b"));
        let mut second = vec![None; 3];
        second[1] = Some(profile("c"));
        let image = v1::Image {
            next_workspace: 1,
            workspaces: vec![v1::WorkspaceImage {
                id: 1,
                name: "w".into(),
                created_at: 5,
                rest_key: [7; 32],
                profiles: v1::ProfileImage {
                    table: v1::Table {
                        chunks: vec![chunk, second],
                        len: 4099,
                    },
                    live: [0u32, 4095, 4097].into_iter().collect(),
                },
                import_keys: Vec::new(),
                segments: Vec::new(),
                last_segment: 3,
                cohorts: Vec::new(),
            }],
        };
        let v2 = image_v1_to_v2(image);
        let w = &v2.workspaces[0];
        assert_eq!(w.profiles.id_bound, 4099);
        let mut read = v2::Gaps::default();
        let ids: Vec<u32> = w
            .profiles
            .list
            .iter()
            .map(|(g, _)| read.id(*g).expect("in range"))
            .collect();
        assert_eq!(ids, vec![0, 4095, 4097]);
        let gaps: Vec<u32> = w.profiles.list.iter().map(|(g, _)| *g).collect();
        assert_eq!(gaps, vec![0, 4094, 1]);
        assert_eq!(w.profiles.list[2].1, profile("c"));
        assert_eq!((w.last_segment, v2.next_workspace), (3, 1));
    }

    #[test]
    fn v2_images_have_no_limits_in_force_and_v2_records_decode_as_v3() {
        let image = image_v2_to_v3(v2::Image::<v2::Profiles> {
            next_workspace: 4,
            workspaces: Vec::new(),
        });
        assert_eq!((image.next_workspace, image.limits), (4, None));
        let r = v2::Record::<Vec<v2::Change>>::DeleteSegment { ws: 2, id: 9 };
        let bytes = super::super::codec::encode(&r).expect("encode");
        assert_eq!(
            super::super::codec::decode::<v3::Record>(&bytes).expect("decode"),
            v3::Record::DeleteSegment { ws: 2, id: 9 }
        );
    }

    #[test]
    fn a_v1_restore_names_its_image_version_1_and_rewinds_the_counters() {
        let r = record_v1_to_v2(v1::Command::Restore {
            snapshot_id: "s".into(),
            image: vec![1, 2],
        });
        assert_eq!(
            r,
            v2::Record::Restore {
                snapshot_id: "s".into(),
                format: 1,
                image: vec![1, 2],
                keep_counters: false
            }
        );
        let d = record_v1_to_v2(v1::Command::DeleteSegment { ws: 2, id: 9 });
        assert_eq!(d, v2::Record::DeleteSegment { ws: 2, id: 9 });
    }
}
