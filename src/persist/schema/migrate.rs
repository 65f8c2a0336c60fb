//! Migrations: each takes one version's value to the next, and nothing
//! else. Reading a version n value runs n → n+1 → … → current, so adding a
//! version adds one function per changed type here and leaves the older
//! ones alone.

use super::{codec, v1, v2, v3, v4, v5, v6, v7, v8, Result};

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

/// v3 → v4: old data holds no nested value, location or `within_km`, and
/// every type v4 declares again has v3's fields in v3's order with new
/// variants only at the end, so a v3 value's bytes are the same v4 value.
/// The re-spelling goes through those bytes (what reading a v3 file does
/// directly).
fn v3_to_v4<A: serde::Serialize, B: serde::de::DeserializeOwned>(v: &A) -> Result<B> {
    codec::decode(&codec::encode(v)?)
}

/// v3 → v4 for a log record (see [`v3_to_v4`]).
pub fn record_v3_to_v4(r: &v3::Record) -> Result<v4::Record> {
    v3_to_v4(r)
}

/// v3 → v4 for a saved segment (see [`v3_to_v4`]).
pub fn segment_v3_to_v4(s: v3::Segment) -> Result<v4::Segment> {
    v3_to_v4(&s)
}

/// v3 → v4 for an image (see [`v3_to_v4`]).
pub fn image_v3_to_v4(image: &v3::Image) -> Result<v4::Image> {
    v3_to_v4(image)
}

/// v3 → v4 for an image whose profiles stay as they were read (the
/// streaming reader's `convert::ProfilesIn`: re-encoding them would copy
/// the largest part of a snapshot): only the saved segments change type.
pub fn profiles_image_v3_to_v4<P>(image: v3::Image<P>) -> Result<v4::Image<P>> {
    Ok(v4::Image {
        next_workspace: image.next_workspace,
        workspaces: image
            .workspaces
            .into_iter()
            .map(|w| -> Result<_> {
                Ok(v4::WorkspaceImage {
                    id: w.id,
                    name: w.name,
                    created_at: w.created_at,
                    rest_key: w.rest_key,
                    profiles: w.profiles,
                    import_keys: w.import_keys,
                    segments: w
                        .segments
                        .into_iter()
                        .map(segment_v3_to_v4)
                        .collect::<Result<_>>()?,
                    last_segment: w.last_segment,
                    cohorts: w.cohorts,
                })
            })
            .collect::<Result<_>>()?,
        limits: image.limits,
    })
}

/// v4 → v5 for a log record: every type v5 declares again has v4's fields
/// in v4's order with new variants only at the end, so a v4 record's bytes
/// are the same v5 record (old records name nobody by email, phone or
/// braze_id).
pub fn record_v4_to_v5(r: &v4::Record) -> Result<v5::Record> {
    v3_to_v4(r)
}

/// v4 → v5 for an image: each workspace gains an empty `recency` (nobody
/// was found by email or phone before; ties between holders go to the
/// highest profile id). Generic over the profiles, so the streaming reader
/// (`convert::ProfilesIn`) migrates without a copy.
pub fn image_v4_to_v5<P>(image: v4::Image<P>) -> v5::Image<P> {
    v5::Image {
        next_workspace: image.next_workspace,
        workspaces: image
            .workspaces
            .into_iter()
            .map(|w| v5::WorkspaceImage {
                id: w.id,
                name: w.name,
                created_at: w.created_at,
                rest_key: w.rest_key,
                profiles: w.profiles,
                import_keys: w.import_keys,
                segments: w.segments,
                last_segment: w.last_segment,
                cohorts: w.cohorts,
                recency: Vec::new(),
            })
            .collect(),
        limits: image.limits,
    }
}

/// v5 → v6 for an image: each profile's attributes and events are packed
/// (through the live types, whose `profiles::packed` is the one place
/// that writes the encoding). Everything else is the same type.
pub fn image_v5_to_v6(image: v5::Image) -> v6::Image {
    v6::Image {
        next_workspace: image.next_workspace,
        workspaces: image
            .workspaces
            .into_iter()
            .map(|w| v6::WorkspaceImage {
                id: w.id,
                name: w.name,
                created_at: w.created_at,
                rest_key: w.rest_key,
                profiles: v6::Profiles {
                    id_bound: w.profiles.id_bound,
                    list: w
                        .profiles
                        .list
                        .into_iter()
                        .map(|(gap, p)| {
                            (
                                gap,
                                super::convert::packed_profile(&super::convert::profile_in(p)),
                            )
                        })
                        .collect(),
                },
                import_keys: w.import_keys,
                segments: w.segments,
                last_segment: w.last_segment,
                cohorts: w.cohorts,
                recency: w.recency,
            })
            .collect(),
        limits: image.limits,
    }
}

/// v6 → v7 for an image: the column index was not stored (`None`: it is
/// rebuilt from the profiles at load, as before). Generic over the
/// profiles, so the streaming reader keeps its single copy.
pub fn image_v6_to_v7<P>(image: v6::Image<P>) -> v7::Image<P> {
    v7::Image {
        next_workspace: image.next_workspace,
        workspaces: image
            .workspaces
            .into_iter()
            .map(|w| v7::WorkspaceImage {
                id: w.id,
                name: w.name,
                created_at: w.created_at,
                rest_key: w.rest_key,
                index: None,
                profiles: w.profiles,
                import_keys: w.import_keys,
                segments: w.segments,
                last_segment: w.last_segment,
                cohorts: w.cohorts,
                recency: w.recency,
            })
            .collect(),
        limits: image.limits,
    }
}

/// v5 (= v7) → v8 for a log record: events and purchases gain no
/// properties, currency or price, and `Track`, `Identify` and
/// `DeleteUsers` no time (`at: None`: the record makes no feed events, as
/// it made none when written). Every other variant is the same.
pub fn record_v5_to_v8(r: v5::Record) -> v8::Record {
    use v8::Record as R;
    let event = |e: v5::EventObject| v8::EventObject {
        target: e.target,
        name: e.name,
        time: e.time,
        properties: None,
        currency: None,
        price: None,
    };
    match r {
        v5::Record::CreateWorkspace { name, rest_key, at } => {
            R::CreateWorkspace { name, rest_key, at }
        }
        v5::Record::CreateImportKey { ws, key } => R::CreateImportKey { ws, key },
        v5::Record::RevokeImportKey {
            ws,
            partner,
            key_id,
        } => R::RevokeImportKey {
            ws,
            partner,
            key_id,
        },
        v5::Record::NameCohort {
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
        v5::Record::ApplyDelta {
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
        v5::Record::Track { ws, track } => R::Track {
            ws,
            track: v8::Track {
                attributes: track.attributes,
                events: track.events.into_iter().map(event).collect(),
                purchases: track.purchases.into_iter().map(event).collect(),
            },
            at: None,
        },
        v5::Record::Identify { ws, identify } => R::Identify {
            ws,
            identify,
            at: None,
        },
        v5::Record::NewAliases { ws, aliases } => R::NewAliases { ws, aliases },
        v5::Record::DeleteUsers { ws, ids } => R::DeleteUsers { ws, ids, at: None },
        v5::Record::PutSegment {
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
        v5::Record::DeleteSegment { ws, id } => R::DeleteSegment { ws, id },
        v5::Record::Restore {
            snapshot_id,
            format,
            image,
            keep_counters,
        } => R::Restore {
            snapshot_id,
            format,
            image,
            keep_counters,
        },
        v5::Record::SetLimits(l) => R::SetLimits(l),
    }
}

/// v7 → v8 for an image: no workspace has connectors, and no segment its
/// members (they are evaluated at load).
pub fn image_v7_to_v8<P, X>(image: v7::Image<P, X>) -> v8::Image<P, X> {
    v8::Image {
        next_workspace: image.next_workspace,
        workspaces: image
            .workspaces
            .into_iter()
            .map(|w| v8::WorkspaceImage {
                id: w.id,
                name: w.name,
                created_at: w.created_at,
                rest_key: w.rest_key,
                index: w.index,
                profiles: w.profiles,
                import_keys: w.import_keys,
                segments: w
                    .segments
                    .into_iter()
                    .map(|s| v8::Segment {
                        id: s.id,
                        name: s.name,
                        filter: s.filter,
                        members: None,
                    })
                    .collect(),
                last_segment: w.last_segment,
                cohorts: w.cohorts,
                recency: w.recency,
                connectors: Vec::new(),
            })
            .collect(),
        limits: image.limits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_records_are_the_same_v5_records_and_v4_images_gain_no_recency() {
        let track = v4::Track {
            attributes: vec![v4::AttributesObject {
                target: v4::Target::External {
                    id: "u".into(),
                    create: true,
                },
                changes: vec![(
                    "email".into(),
                    v4::AttrUpdate::Set(v4::AttrValue::Str("A@x".into())),
                )],
            }],
            events: vec![],
            purchases: vec![],
        };
        let r4 = v4::Record::Track { ws: 3, track };
        let r5 = record_v4_to_v5(&r4).unwrap();
        let v5::Record::Track { ws: 3, track } = &r5 else {
            panic!("{r5:?}")
        };
        assert_eq!(
            track.attributes[0].target,
            v5::Target::External {
                id: "u".into(),
                create: true
            }
        );
        let d4 = v4::Record::<Vec<v4::Change>>::DeleteUsers {
            ws: 1,
            ids: vec![v4::Identifier::Device("d".into())],
        };
        assert_eq!(
            record_v4_to_v5(&d4).unwrap(),
            v5::Record::DeleteUsers {
                ws: 1,
                ids: vec![v5::Identifier::Device("d".into())]
            }
        );
        let image = v4::Image::<v4::Profiles> {
            next_workspace: 2,
            workspaces: vec![v4::WorkspaceImage {
                id: 1,
                name: "w".into(),
                created_at: 5,
                rest_key: [0; 32],
                profiles: v4::Profiles::default(),
                import_keys: vec![],
                segments: vec![],
                last_segment: 0,
                cohorts: vec![],
            }],
            limits: None,
        };
        let up = image_v4_to_v5(image);
        assert_eq!(up.workspaces.len(), 1);
        assert!(up.workspaces[0].recency.is_empty());
        assert_eq!((up.next_workspace, up.workspaces[0].id), (2, 1));
    }

    #[test]
    fn v3_records_and_images_are_the_same_v4_values() {
        let track = v3::Track {
            attributes: vec![v3::AttributesObject {
                target: v3::Target::Device("d".into()),
                changes: vec![
                    (
                        "s".into(),
                        v3::AttrUpdate::Set(v3::AttrValue::Array(vec!["x".into()])),
                    ),
                    ("n".into(), v3::AttrUpdate::Increment(2.0)),
                ],
            }],
            events: Vec::new(),
            purchases: Vec::new(),
        };
        let r = record_v3_to_v4(&v3::Record::Track { ws: 1, track }).expect("migrates");
        let v4::Record::Track { ws: 1, track } = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            track.attributes[0].changes,
            vec![
                (
                    "s".into(),
                    v4::AttrUpdate::Set(v4::AttrValue::Array(vec!["x".into()]))
                ),
                ("n".into(), v4::AttrUpdate::Increment(2.0)),
            ]
        );
        let filter = v3::Filter::Attribute {
            name: "plan".into(),
            cond: v3::AttrCond::IncludesValue("a".into()),
        };
        let r = record_v3_to_v4(&v3::Record::PutSegment {
            ws: 1,
            id: None,
            name: "s".into(),
            filter,
        })
        .expect("migrates");
        assert!(matches!(
            r,
            v4::Record::PutSegment { filter: v4::Filter::Attribute { cond: v4::AttrCond::IncludesValue(ref v), .. }, .. } if v == "a"
        ));
        let limits = v3::StateLimits {
            array_items: 1,
            attributes_per_profile: 2,
            cohorts_per_workspace: 3,
            segments_per_workspace: 4,
        };
        let r = record_v3_to_v4(&v3::Record::SetLimits(limits)).expect("migrates");
        assert_eq!(r, v4::Record::SetLimits(limits));
        let mut details = v3::Details::default();
        details.attributes.insert(
            "t".into(),
            v3::AttrValue::Time {
                text: "x".into(),
                at: 5,
            },
        );
        let image = v3::Image {
            next_workspace: 2,
            workspaces: vec![v3::WorkspaceImage {
                id: 1,
                name: "w".into(),
                created_at: 5,
                rest_key: [7; 32],
                profiles: v3::Profiles {
                    id_bound: 3,
                    list: vec![(
                        2,
                        v3::Profile {
                            external_id: Some("u".into()),
                            details: Some(details),
                        },
                    )],
                },
                import_keys: Vec::new(),
                segments: Vec::new(),
                last_segment: 0,
                cohorts: Vec::new(),
            }],
            limits: Some(limits),
        };
        let v4 = image_v3_to_v4(&image).expect("migrates");
        let p = &v4.workspaces[0].profiles.list[0];
        assert_eq!(p.0, 2);
        assert_eq!(
            p.1.details.as_ref().expect("details").attributes["t"],
            v4::AttrValue::Time {
                text: "x".into(),
                at: 5
            }
        );
        assert_eq!(v4.limits, Some(limits));
    }

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

    #[test]
    fn v7_records_gain_no_time_or_properties_and_v7_images_no_connectors() {
        let event = |name: &str| v5::EventObject {
            target: v5::Target::Device("d".into()),
            name: name.into(),
            time: 5,
        };
        let track = v5::Record::Track {
            ws: 1,
            track: v5::Track {
                attributes: Vec::new(),
                events: vec![event("open")],
                purchases: vec![event("sku")],
            },
        };
        let v8::Record::Track { ws, track, at } = record_v5_to_v8(track) else {
            panic!("a track stays a track");
        };
        assert_eq!((ws, at), (1, None));
        let moved = |name: &str| v8::EventObject {
            target: v5::Target::Device("d".into()),
            name: name.into(),
            time: 5,
            properties: None,
            currency: None,
            price: None,
        };
        assert_eq!(track.events, vec![moved("open")]);
        assert_eq!(track.purchases, vec![moved("sku")]);
        assert_eq!(
            record_v5_to_v8(v5::Record::DeleteUsers {
                ws: 2,
                ids: Vec::new()
            }),
            v8::Record::DeleteUsers {
                ws: 2,
                ids: Vec::new(),
                at: None
            }
        );
        assert_eq!(
            record_v5_to_v8(v5::Record::DeleteSegment { ws: 2, id: 9 }),
            v8::Record::DeleteSegment { ws: 2, id: 9 }
        );
        let image = image_v7_to_v8(v7::Image::<(), ()> {
            next_workspace: 2,
            workspaces: vec![v7::WorkspaceImage {
                id: 1,
                name: "w".into(),
                created_at: 0,
                rest_key: [0; 32],
                index: (),
                profiles: (),
                import_keys: Vec::new(),
                segments: Vec::new(),
                last_segment: 3,
                cohorts: Vec::new(),
                recency: vec![(1, 2)],
            }],
            limits: None,
        });
        assert!(image.workspaces[0].connectors.is_empty());
        assert_eq!(image.workspaces[0].recency, vec![(1, 2)]);
        assert_eq!(image.workspaces[0].last_segment, 3);
    }
}
