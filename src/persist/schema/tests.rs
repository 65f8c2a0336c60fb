//! The schema's promises: the current version round-trips every command and
//! every image; its bytes are pinned; version 1 data written by b09aa9e
//! (the checked-in fixtures) decodes; newer versions are refused by name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::*;
use crate::engine::cohort::{CohortImage, CohortMeta, ImportRecord};
use crate::engine::state::{Connector, ImportKey, SegmentImage, WorkspaceImage};
use crate::keys::KeyHash;
use crate::model::{Alias, Change, CohortKey, Identifier, WorkspaceId};
use crate::persist::wal::{Wal, WalOptions};
use crate::profiles::commands::{
    AttributesObject, Contact, EventObject, Identify, NewAliases, Target, Track,
};
use crate::profiles::{AttrObject, AttrUpdate, AttrValue, EventStats, Profile, ProfileStore};
use crate::segment::{self, Filter};

fn ws() -> WorkspaceId {
    WorkspaceId(3)
}

fn filter() -> Filter {
    segment::parse(
        &serde_json::json!({"and": [
            {"cohort": {"partner": "heap", "cohort_id": "c1"}},
            {"not": {"attribute": {"name": "plan", "op": "matches_regex", "value": "^gold$"}}},
            {"or": [
                {"attribute": {"name": "age", "op": "greater_than", "value": 3.5}},
                {"attribute": {"name": "seen", "op": "less_than", "value": "2024-01-01T00:00:00Z"}},
                {"attribute": {"name": "vip", "op": "equals", "value": true}},
                {"attribute": {"name": "tags", "op": "includes_value", "value": "a"}},
                {"attribute": {"name": "x", "op": "does_not_exist"}},
                {"attribute": {"name": "x", "op": "exists"}},
                {"attribute": {"name": "plan", "op": "not_equals", "value": "a"}},
                {"attribute": {"name": "n", "op": "equals", "value": 3}},
                {"attribute": {"name": "plan", "op": "does_not_match_regex", "value": "x+"}},
                {"attribute": {"name": "seen", "op": "greater_than", "value": "2023-01-01T00:00:00+05:00"}},
                {"attribute": {"name": "address.city", "op": "equals", "value": "Lisbon"}},
                {"attribute": {"name": "current_location", "op": "within_km",
                               "value": {"latitude": 38.72, "longitude": -9.14, "km": 10.5}}},
                {"event": {"name": "open", "op": "more_than", "count": 1}},
                {"event": {"name": "open", "op": "less_than", "count": 9}},
                {"event": {"name": "open", "op": "last_performed_before", "time": "2025-01-01T00:00:00Z"}},
                {"event": {"name": "open", "op": "exactly", "count": 2}},
                {"event": {"name": "open", "op": "last_performed_after", "time": "2024-01-01T00:00:00Z"}},
                {"all": true}
            ]}
        ]}),
        &|_: &CohortKey| true,
    )
    .expect("valid filter")
}

/// A nested object value with every kind of member.
fn nested() -> AttrValue {
    let inner: AttrObject = [
        ("zip".into(), AttrValue::Num(1000.0)),
        (
            "geo".into(),
            AttrValue::Object([("ok".into(), AttrValue::Bool(true))].into()),
        ),
    ]
    .into();
    AttrValue::Object(
        [
            ("city".into(), AttrValue::Str("Lisbon".into())),
            ("since".into(), AttrValue::from_text("2024-05-01T10:00:00Z")),
            ("tags".into(), AttrValue::Array(vec!["a".into()])),
            ("inner".into(), AttrValue::Object(inner)),
            ("list".into(), AttrValue::Objects(vec![AttrObject::new()])),
        ]
        .into(),
    )
}

fn every_command() -> Vec<Command> {
    let alias = Alias::new("email", "a@b");
    let target = Target::External {
        id: "u1".into(),
        create: true,
    };
    vec![
        Command::CreateWorkspace {
            name: "acme".into(),
            rest_key: KeyHash::of("k"),
            at: 1,
        },
        Command::CreateImportKey {
            ws: ws(),
            key: ImportKey {
                key_id: "id".into(),
                partner: "heap".into(),
                hash: KeyHash::of("s"),
                masked: "s***".into(),
                created_at: -2,
            },
        },
        Command::RevokeImportKey {
            ws: ws(),
            partner: "heap".into(),
            key_id: "id".into(),
        },
        Command::NameCohort {
            ws: ws(),
            key: CohortKey::new("heap", "c1"),
            name: "C one".into(),
            created_at: 5,
            at: 6,
        },
        Command::ApplyDelta {
            ws: ws(),
            key: CohortKey::new("heap", "c1"),
            changes: vec![
                Change {
                    remove: false,
                    ids: vec![
                        Identifier::External("u1".into()),
                        Identifier::Device("d1".into()),
                        Identifier::Alias(alias.clone()),
                    ],
                },
                Change {
                    remove: true,
                    ids: vec![Identifier::External("u2".into())],
                },
            ],
            at: 7,
        },
        Command::Track {
            ws: ws(),
            track: Track {
                attributes: vec![AttributesObject {
                    target: target.clone(),
                    changes: vec![
                        ("s".into(), AttrUpdate::Set(AttrValue::Str("x".into()))),
                        ("n".into(), AttrUpdate::Set(AttrValue::Num(1.5))),
                        ("b".into(), AttrUpdate::Set(AttrValue::Bool(true))),
                        (
                            "t".into(),
                            AttrUpdate::Set(AttrValue::from_text("2024-05-01T10:00:00Z")),
                        ),
                        (
                            "a".into(),
                            AttrUpdate::Set(AttrValue::Array(vec!["p".into(), "q".into()])),
                        ),
                        ("address".into(), AttrUpdate::Set(nested())),
                        (
                            "kids".into(),
                            AttrUpdate::Set(AttrValue::Objects(vec![
                                AttrObject::new(),
                                [("name".into(), AttrValue::Str("k".into()))].into(),
                            ])),
                        ),
                        (
                            "current_location".into(),
                            AttrUpdate::Set(AttrValue::Location {
                                latitude: 38.72,
                                longitude: -9.14,
                            }),
                        ),
                        ("gone".into(), AttrUpdate::Remove),
                        ("inc".into(), AttrUpdate::Increment(-2.0)),
                        (
                            "edit".into(),
                            AttrUpdate::ArrayEdit {
                                add: vec!["y".into()],
                                remove: vec!["z".into()],
                            },
                        ),
                    ],
                }],
                events: vec![EventObject {
                    target: Target::Alias {
                        alias: alias.clone(),
                        create: false,
                    },
                    name: "open".into(),
                    time: 9,
                    properties: Some(r#"{"k":[1,{"x":null}]}"#.into()),
                    currency: None,
                    price: None,
                }],
                purchases: vec![EventObject {
                    target: Target::Device("d9".into()),
                    name: "sku".into(),
                    time: 10,
                    properties: None,
                    currency: Some("USD".into()),
                    price: Some(9.99),
                }],
            },
            at: Some(11),
        },
        Command::Identify {
            ws: ws(),
            identify: Identify {
                aliases: vec![("u1".into(), alias.clone())],
                devices: vec![("u1".into(), "d1".into())],
            },
            at: Some(12),
        },
        Command::NewAliases {
            ws: ws(),
            aliases: NewAliases(vec![(Some("u1".into()), alias.clone()), (None, alias)]),
        },
        Command::DeleteUsers {
            ws: ws(),
            ids: vec![Identifier::External("u1".into())],
            at: Some(13),
        },
        Command::DeleteUsers {
            ws: ws(),
            ids: vec![
                Identifier::Email("A@b.c".into()),
                Identifier::Phone("+4712345678".into()),
                Identifier::BrazeId(7),
            ],
            at: None,
        },
        Command::Track {
            ws: ws(),
            track: Track {
                attributes: vec![
                    AttributesObject {
                        target: Target::Email {
                            email: "A@b.c".into(),
                            create: true,
                        },
                        changes: vec![],
                    },
                    AttributesObject {
                        target: Target::ExternalWith {
                            id: "u1".into(),
                            create: false,
                            braze_id: Some(3),
                            contact: Some(Contact::Phone("+4712345678".into())),
                        },
                        changes: vec![],
                    },
                    AttributesObject {
                        target: Target::ExternalWith {
                            id: "u1".into(),
                            create: true,
                            braze_id: None,
                            contact: Some(Contact::Email("a@b.c".into())),
                        },
                        changes: vec![],
                    },
                ],
                events: vec![EventObject {
                    target: Target::Phone {
                        phone: "+4712345678".into(),
                        create: false,
                    },
                    name: "e".into(),
                    time: 1,
                    properties: None,
                    currency: None,
                    price: None,
                }],
                purchases: vec![EventObject {
                    target: Target::BrazeId(0),
                    name: "purchase".into(),
                    time: 2,
                    properties: Some("{}".into()),
                    currency: Some("eur".into()),
                    price: Some(-0.5),
                }],
            },
            at: None,
        },
        Command::PutSegment {
            ws: ws(),
            id: None,
            name: "s".into(),
            filter: filter(),
        },
        Command::PutSegment {
            ws: ws(),
            id: Some(4),
            name: "s".into(),
            filter: Filter::All,
        },
        Command::DeleteSegment { ws: ws(), id: 4 },
        Command::Restore {
            snapshot_id: "snap".into(),
            format: 1,
            image: vec![0, 1, 2],
            keep_counters: false,
        },
        Command::Restore {
            snapshot_id: "snap".into(),
            format: 2,
            image: vec![0, 1, 2],
            keep_counters: true,
        },
        Command::SetLimits(crate::limits::StateLimits {
            array_items: 1,
            attributes_per_profile: 2,
            cohorts_per_workspace: 3,
            segments_per_workspace: u64::MAX,
        }),
        Command::PutConnector {
            ws: ws(),
            connector: connector(),
        },
        Command::PutConnector {
            ws: ws(),
            connector: Connector {
                bearer_token: None,
                event_types: None,
                ..connector()
            },
        },
        Command::DeleteConnector {
            ws: ws(),
            id: "conn_1".into(),
        },
    ]
}

fn connector() -> Connector {
    Connector {
        id: "conn_1".into(),
        name: "heap".into(),
        url: "https://heapanalytics.com/api/integrations/braze".into(),
        bearer_token: Some("t0k".into()),
        event_types: Some(vec![
            crate::feed::EventType::CustomEvent,
            crate::feed::EventType::SegmentExited,
        ]),
        created_at: 5,
        start_after: 17,
    }
}

#[test]
fn every_command_round_trips_through_the_current_version() {
    for cmd in every_command() {
        let bytes = encode_record(&cmd).expect("encode");
        assert_eq!(decode_record(LOG_VERSION, &bytes).expect("decode"), cmd);
    }
}

fn image() -> Image {
    let mut store = ProfileStore::new();
    let u1 = store.upsert_external("u1", true).expect("created");
    store.update_attribute(u1, "plan", AttrUpdate::Set(AttrValue::Str("gold".into())));
    store.update_attribute(
        u1,
        "tags",
        AttrUpdate::Set(AttrValue::Array(vec!["a".into()])),
    );
    store.update_attribute(u1, "address", AttrUpdate::Set(nested()));
    store.update_attribute(
        u1,
        "current_location",
        AttrUpdate::Set(AttrValue::Location {
            latitude: -1.5,
            longitude: 170.25,
        }),
    );
    store.record_event(u1, "open", 5);
    let gone = store.upsert_external("gone", true).expect("created");
    store.upsert_device("d1");
    store.upsert_alias(&Alias::new("n", "l"), true);
    store.delete(gone);
    let last = store.upsert_external("last", true).expect("created");
    store.delete(last);
    let mail = store.insert_contact(&Identifier::Email("Old@x.io".into()));
    store.update_attribute(
        u1,
        "email",
        AttrUpdate::Set(AttrValue::Str("old@X.io".into())),
    );
    store.touch(u1);
    assert_eq!(store.by_email("OLD@x.io"), Some(u1));
    store.touch(mail);
    assert_eq!(
        store.by_email("old@x.io"),
        Some(mail),
        "most recently updated"
    );
    Image {
        limits: Some(crate::limits::StateLimits {
            array_items: 1000,
            attributes_per_profile: 200,
            cohorts_per_workspace: 50,
            segments_per_workspace: 7,
        }),
        next_workspace: 4,
        workspaces: vec![WorkspaceImage {
            id: ws(),
            name: "acme".into(),
            created_at: 1,
            rest_key: KeyHash::of("k"),
            profiles: store.image(),
            import_keys: vec![ImportKey {
                key_id: "id".into(),
                partner: "heap".into(),
                hash: KeyHash::of("s"),
                masked: "m".into(),
                created_at: 2,
            }],
            segments: vec![SegmentImage {
                id: 2,
                name: "s".into(),
                filter: filter(),
                members: Some(Arc::new(RoaringBitmap::from_iter([0u32, 2]))),
            }],
            last_segment: 7,
            cohorts: vec![CohortImage {
                key: CohortKey::new("heap", "c1"),
                meta: CohortMeta {
                    name: "C".into(),
                    created_at: 1,
                    named: true,
                    updated_at: 3,
                },
                members: Arc::new(RoaringBitmap::from_iter([0u32, 2])),
                history: vec![ImportRecord {
                    at: 3,
                    added: 2,
                    removed: 0,
                    unmatched: 1,
                    size: 2,
                }],
            }],
            connectors: vec![connector()],
        }],
    }
}

/// The reader's fast path (straight into the store) and the owned types
/// agree on every byte.
#[test]
fn the_streaming_reader_and_the_owned_types_agree() {
    let bytes = encode_image(&image()).expect("encode");
    let streamed = decode_image(SNAPSHOT_VERSION, &bytes).expect("streamed");
    let owned = convert::image_in(decode_schema_image(SNAPSHOT_VERSION, &bytes).expect("owned"))
        .expect("owned");
    assert_eq!(encode_image(&streamed).expect("encode"), bytes);
    assert_eq!(encode_image(&owned).expect("encode"), bytes);
    // A gap past the id bound is refused by both, not built.
    let mut bad: v8::Image = decode_schema_image(SNAPSHOT_VERSION, &bytes).expect("owned");
    bad.workspaces[0].profiles.id_bound = 1;
    let bad = codec::encode(&bad).expect("encode");
    assert!(decode_image(SNAPSHOT_VERSION, &bad).is_err());
    assert!(
        convert::image_in(decode_schema_image(SNAPSHOT_VERSION, &bad).expect("decodes")).is_err()
    );
}

#[test]
fn images_round_trip_through_the_current_version() {
    let bytes = encode_image(&image()).expect("encode");
    let back = decode_image(SNAPSHOT_VERSION, &bytes).expect("decode");
    assert_eq!(encode_image(&back).expect("encode"), bytes);
    let w = &back.workspaces[0];
    let store = ProfileStore::from_image(w.profiles.clone());
    assert_eq!(store.len(), 4);
    assert_eq!(store.id_bound(), 6, "deleted ids stay used");
    // The email index is rebuilt from the attributes, and the holders'
    // order kept.
    assert_eq!(store.by_email("OLD@X.IO"), Some(5));
    assert_eq!(
        store.holders(&Identifier::Email("old@x.io".into())).len(),
        2
    );
    let u1 = store.by_external("u1").expect("u1");
    assert_eq!(
        store
            .get(u1)
            .expect("live")
            .events()
            .get("open")
            .unwrap()
            .count,
        1
    );
    assert_eq!(
        store
            .get(u1)
            .expect("live")
            .attributes()
            .get("address")
            .unwrap(),
        nested()
    );
    assert_eq!(store.by_external("gone"), None);
    assert_eq!(w.segments[0].filter, filter());
    assert_eq!((w.last_segment, back.next_workspace), (7, 4));
    assert_eq!(w.cohorts[0], image().workspaces[0].cohorts[0]);
    assert_eq!(back.limits, image().limits);
    // The column index came from the snapshot, and is the one a rebuild
    // from the profiles gives.
    let stored = w.profiles.columns().expect("stored").triples();
    assert!(stored.iter().any(|t| t.0 == "plan" && t.1 == "text gold"));
    let rebuilt = ProfileStore::from_image(w.profiles.clone().without_columns());
    assert_eq!(rebuilt.columns().triples(), stored);
    assert_eq!(store.columns().triples(), stored);
}

/// A stored column index that breaks a rule is refused by the streaming
/// reader, the owned types and `inspect` alike, with what is wrong.
#[test]
fn a_damaged_column_index_is_refused_at_load() {
    let bytes = encode_image(&image()).expect("encode");
    let good: v8::Image = decode_schema_image(SNAPSHOT_VERSION, &bytes).expect("owned");
    let base = index::index_of(good.workspaces[0].index.as_ref().expect("stored")).expect("index");
    let p = base
        .attributes
        .iter()
        .position(|a| a.path == "plan")
        .unwrap();
    let mut gone = base.clone();
    // A profile that is not live (id 1 was deleted).
    gone.attributes[p].exists.insert(1);
    gone.attributes[p].texts[0].1 = v7::Holders::Many([0, 1].into_iter().collect());
    let mut twice = base.clone();
    twice.attributes.push(twice.attributes[p].clone());
    let mut order = base.clone();
    order.events[0].counts.push((0, v7::Holders::One(0)));
    let cases = [
        (gone, "holds a profile that is not live"),
        (twice, "stored twice"),
        (order, "counts: key 1 does not ascend"),
    ];
    for (bad_index, want) in cases {
        let mut bad = good.clone();
        bad.workspaces[0].index = Some(v6::Packed(codec::encode(&bad_index).expect("encode")));
        let bad = codec::encode(&bad).expect("encode");
        let e = decode_image(SNAPSHOT_VERSION, &bad).expect_err("damaged");
        assert!(e.to_string().contains(want), "{want}: {e}");
        let owned = decode_schema_image(SNAPSHOT_VERSION, &bad).expect("decodes");
        let e = convert::image_in(owned).expect_err("damaged");
        assert!(e.to_string().contains(want), "{want}: {e}");
        let d = tempfile::tempdir().expect("tempdir");
        let snap =
            crate::persist::snapshot::write(d.path(), 9, 0, SNAPSHOT_VERSION, &bad).expect("write");
        let e = inspect(&snap.path).expect_err("damaged");
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
}

/// The bytes of the current version (5) are part of the contract: a change
/// to a domain type must not move them. If this fails, the change belongs
/// in a new version (docs/format.md).
#[test]
fn current_version_bytes_are_pinned() {
    let delta = Command::ApplyDelta {
        ws: WorkspaceId(1),
        key: CohortKey::new("p", "c"),
        changes: vec![Change {
            remove: true,
            ids: vec![
                Identifier::External("u".into()),
                Identifier::Alias(Alias::new("n", "l")),
                Identifier::Device("d".into()),
            ],
        }],
        at: 2,
    };
    assert_eq!(
        hex::encode(encode_record(&delta).expect("encode")),
        "04010170016301010300017501016e016c02016404"
    );
    // The borrowed writer spells a delta exactly as version 1 did.
    let as_v1 = v1::Command::ApplyDelta {
        ws: 1,
        key: v1::CohortKey {
            partner: "p".into(),
            cohort_id: "c".into(),
        },
        changes: vec![v1::Change {
            remove: true,
            ids: vec![
                v1::Identifier::External("u".into()),
                v1::Identifier::Alias(v1::Alias {
                    alias_name: "n".into(),
                    alias_label: "l".into(),
                }),
                v1::Identifier::Device("d".into()),
            ],
        }],
        at: 2,
    };
    assert_eq!(
        codec::encode(&as_v1).expect("encode"),
        encode_record(&delta).expect("encode")
    );
    let restore = Command::Restore {
        snapshot_id: "s".into(),
        format: 1,
        image: vec![9],
        keep_counters: true,
    };
    assert_eq!(
        hex::encode(encode_record(&restore).expect("encode")),
        "0b017301010901"
    );
    let mut store = ProfileStore::new();
    store.upsert_external("u", true);
    let small = Image {
        limits: None,
        next_workspace: 1,
        workspaces: vec![WorkspaceImage {
            id: WorkspaceId(1),
            name: "w".into(),
            created_at: 0,
            rest_key: KeyHash([0; 32]),
            profiles: store.image(),
            import_keys: Vec::new(),
            segments: Vec::new(),
            last_segment: 0,
            cohorts: Vec::new(),
            connectors: Vec::new(),
        }],
    };
    assert_eq!(
        hex::encode(encode_image(&small).expect("encode")),
        // After the rest key: an index of no column and no event, as 2
        // bytes (01 02 0000); the profiles; no import keys, segments,
        // cohorts, recency or connectors; no limits.
        format!(
            "010101017700{}01020000 01010001017500 0000000000 00 00",
            "00".repeat(32)
        )
        .replace(' ', "")
    );
}

/// A version 7 column index's bytes (`v7` documents the shape; changing
/// it is a format version).
#[test]
fn index_bytes_are_pinned() {
    let mut store = ProfileStore::new();
    let u = store.upsert_external("u", true).expect("created");
    for (name, v) in [
        ("b", AttrValue::Bool(true)),
        ("n", AttrValue::Num(3.0)),
        ("s", AttrValue::Str("x".into())),
        ("t", AttrValue::from_text("2024-05-01T10:00:00Z")),
    ] {
        store.update_attribute(u, name, AttrUpdate::Set(v));
    }
    store.record_event(u, "e", 9);
    let body = codec::encode(&index::IndexBody(store.columns())).expect("encode");
    // The image carries those bytes as bytes.
    let carried = codec::encode(&index::IndexOut(store.columns().clone())).expect("encode");
    assert_eq!(
        carried,
        codec::encode(&v6::Packed(body.clone())).expect("encode")
    );
    // A bitmap {0} in the portable format: 18 bytes, written as bytes.
    let zero = "12 3a300000 01000000 0000 0000 10000000 0000";
    let empty = "08 3a300000 00000000";
    // Paths ascending. "b": not multi, exists {0}, no texts, items,
    // numbers or times, falses {}, trues {0}, no locations, not dated.
    let b = format!("0162 00 {zero} 00 00 00 00 {empty} {zero} {empty} {empty}");
    // "n": 3.0 is key 0xC008000000000000: one run, the gap from 0 as a
    // varint (fd + u64 LE), held by One(0).
    let n = format!(
        "016e 00 {zero} 00 00 01 fd000000000000 08c0 0000 00 {empty} {empty} {empty} {empty}"
    );
    // "s": the text "x" held by One(0).
    let s = format!("0173 00 {zero} 01 0178 0000 00 00 00 {empty} {empty} {empty} {empty}");
    // "t": time key of 1714557600000 ms (sign bit flipped), dated {0}.
    let t = format!(
        "0174 00 {zero} 00 00 00 01 fd 00 c1 98 33 8f 01 00 80 0000 {empty} {empty} {empty} {zero}"
    );
    // Event "e": did {0}, count 1, last 9.
    let e = format!("0165 {zero} 01 01 0000 01 fd 0900000000000080 0000");
    let want = format!("04 {b} {n} {s} {t} 01 {e}").replace(' ', "");
    assert_eq!(hex::encode(body), want);
}

/// What version 4 added, pinned: nested values, locations and `within_km`
/// are the last variants of their enums.
#[test]
fn version_4_values_are_pinned() {
    let track = Command::Track {
        ws: WorkspaceId(1),
        track: Track {
            attributes: vec![AttributesObject {
                target: Target::Device("d".into()),
                changes: vec![
                    (
                        "a".into(),
                        AttrUpdate::Set(AttrValue::Object(
                            [("c".into(), AttrValue::Objects(vec![AttrObject::new()]))].into(),
                        )),
                    ),
                    (
                        "l".into(),
                        AttrUpdate::Set(AttrValue::Location {
                            latitude: 0.5,
                            longitude: -1.0,
                        }),
                    ),
                ],
            }],
            events: Vec::new(),
            purchases: Vec::new(),
        },
        at: None,
    };
    let v4 = "0501010201640201610005010163060100016c0007000000000000e03f000000000000f0bf0000";
    assert_eq!(
        decode_record(4, &hex::decode(v4).expect("hex")).expect("decode"),
        track
    );
    // Version 8 appends the track's time (none here).
    assert_eq!(
        hex::encode(encode_record(&track).expect("encode")),
        format!("{v4}00")
    );
    let put = Command::PutSegment {
        ws: WorkspaceId(1),
        id: None,
        name: "s".into(),
        filter: segment::parse(
            &serde_json::json!({"attribute": {"name": "l", "op": "within_km",
                "value": {"latitude": 0.5, "longitude": -1, "km": 2}}}),
            &|_: &CohortKey| true,
        )
        .expect("valid"),
    };
    assert_eq!(
        hex::encode(encode_record(&put).expect("encode")),
        "090100017305016c09000000000000e03f000000000000f0bf0000000000000040"
    );
}

/// What version 5 added, pinned: the new identifiers and targets are the
/// last variants of their enums, and an image's workspace ends with
/// `recency`. (Version 8 records spell these commands differently; the
/// version 5 bytes still read as them, with no time.)
#[test]
fn version_5_values_are_pinned() {
    let delete = Command::DeleteUsers {
        ws: WorkspaceId(1),
        ids: vec![
            Identifier::Email("e".into()),
            Identifier::Phone("p".into()),
            Identifier::BrazeId(2),
        ],
        at: None,
    };
    let v5 = |h: &str| decode_record(5, &hex::decode(h).expect("hex")).expect("decode");
    assert_eq!(v5("0801030301650401700502"), delete);
    let track = Command::Track {
        ws: WorkspaceId(1),
        track: Track {
            attributes: vec![AttributesObject {
                target: Target::ExternalWith {
                    id: "u".into(),
                    create: true,
                    braze_id: Some(2),
                    contact: Some(Contact::Email("e".into())),
                },
                changes: Vec::new(),
            }],
            events: vec![EventObject {
                target: Target::Email {
                    email: "e".into(),
                    create: false,
                },
                name: "n".into(),
                time: 0,
                properties: None,
                currency: None,
                price: None,
            }],
            purchases: vec![
                EventObject {
                    target: Target::Phone {
                        phone: "p".into(),
                        create: true,
                    },
                    name: "n".into(),
                    time: 0,
                    properties: None,
                    currency: None,
                    price: None,
                },
                EventObject {
                    target: Target::BrazeId(1),
                    name: "n".into(),
                    time: 0,
                    properties: None,
                    currency: None,
                    price: None,
                },
            ],
        },
        at: None,
    };
    assert_eq!(
        v5("05010106017501010201000165000103016500016e000204017001016e000501016e00"),
        track
    );
}

#[test]
fn newer_versions_are_refused_by_name() {
    let bytes = encode_record(&Command::DeleteSegment { ws: ws(), id: 1 }).expect("encode");
    let e = decode_record(LOG_VERSION + 1, &bytes).expect_err("newer");
    assert!(e.to_string().contains("version 9"), "{e}");
    assert!(e.to_string().contains("1 to 8"), "{e}");
    let e = decode_image(SNAPSHOT_VERSION + 1, &[]).expect_err("newer");
    assert!(
        e.to_string().contains("snapshot of format version 9"),
        "{e}"
    );
}

#[test]
fn version_1_records_migrate() {
    let v1_restore = codec::encode(&v1::Command::Restore {
        snapshot_id: "s".into(),
        image: vec![4, 2],
    })
    .expect("encode");
    assert_eq!(
        decode_record(1, &v1_restore).expect("decode"),
        Command::Restore {
            snapshot_id: "s".into(),
            format: 1,
            image: vec![4, 2],
            keep_counters: false
        }
    );
    let v1_delta = codec::encode(&v1::Command::ApplyDelta {
        ws: 2,
        key: v1::CohortKey {
            partner: "p".into(),
            cohort_id: "c".into(),
        },
        changes: vec![v1::Change {
            remove: false,
            ids: vec![v1::Identifier::External("u".into())],
        }],
        at: 1,
    })
    .expect("encode");
    assert_eq!(
        decode_record(1, &v1_delta).expect("decode"),
        Command::ApplyDelta {
            ws: WorkspaceId(2),
            key: CohortKey::new("p", "c"),
            changes: vec![Change {
                remove: false,
                ids: vec![Identifier::External("u".into())]
            }],
            at: 1
        }
    );
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .join("data")
}

const V2_FIXTURE_RICH: &str = "v2-e6dd830/rich";
const V2_FIXTURE_RESTORE: &str = "v2-e6dd830/restore";

/// Every record and snapshot in the fixtures decodes, each as the version
/// its writer used.
#[test]
fn the_fixtures_decode_as_their_versions() {
    for (name, v) in [
        ("v1-b09aa9e/rich", 1),
        ("v1-b09aa9e/restore", 1),
        (V2_FIXTURE_RICH, 2),
        (V2_FIXTURE_RESTORE, 2),
        ("v3-0cf6801/rich", 3),
        ("v3-0cf6801/restore", 3),
        ("v4-4191e56/rich", 4),
        ("v4-4191e56/restore", 4),
        ("v5-167a36a/rich", 5),
        ("v5-167a36a/restore", 5),
        ("v6-b5c5beb/rich", 6),
        ("v6-b5c5beb/restore", 6),
        ("v7-3648983/rich", 7),
        ("v7-3648983/restore", 7),
        ("v8-291ac78/rich", 8),
        ("v8-291ac78/restore", 8),
    ] {
        let data = fixture(name);
        let snaps = crate::persist::snapshot::list(&data).expect("list");
        assert!(!snaps.is_empty(), "{name}: no snapshot");
        for info in &snaps {
            assert_eq!(info.format_version, v, "{name}");
            let (_, bytes) = crate::persist::snapshot::load(&info.path).expect("load");
            let image = decode_image(v, &bytes).expect("decode");
            assert!(!image.workspaces.is_empty(), "{name}");
            assert!(image.workspaces[0].profiles.len() > 10, "{name}");
        }
        // Open a copy: opening the log starts a segment of the current version.
        let copy = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(data.join("wal")).expect("wal dir") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, copy.path().join(path.file_name().expect("name"))).expect("copy");
        }
        let (_wal, log) = Wal::open(copy.path(), WalOptions::default()).expect("open");
        let mut kinds = std::collections::HashSet::new();
        let mut restores = 0;
        log.replay(log.first_position() - 1, |_, version, bytes| {
            assert_eq!(version, v, "{name}");
            let cmd = decode_record(version, bytes)?;
            if let Command::Restore { format, image, .. } = &cmd {
                restores += 1;
                assert_eq!(*format, v, "{name}");
                decode_image(*format, image)?;
            }
            kinds.insert(std::mem::discriminant(&cmd));
            Ok(())
        })
        .expect("replay");
        if name.ends_with("rich") {
            assert!(kinds.len() >= 10, "{name}: {} kinds of record", kinds.len());
            if v >= 8 {
                // Connectors in the log, and segments' members in the image.
                let put = Command::PutConnector {
                    ws: ws(),
                    connector: connector(),
                };
                assert!(kinds.contains(&std::mem::discriminant(&put)), "{name}");
                let (_, bytes) = crate::persist::snapshot::load(&snaps[0].path).expect("load");
                let image = decode_schema_image(v, &bytes).expect("owned");
                let w1 = &image.workspaces[0];
                assert!(!w1.connectors.is_empty(), "{name}");
                assert!(w1.segments.iter().all(|s| s.members.is_some()), "{name}");
            }
        } else {
            assert_eq!(restores, 1, "{name}");
        }
    }
}

#[test]
fn inspect_reads_every_version() {
    let data = fixture("v1-b09aa9e/rich");
    let info = &crate::persist::snapshot::list(&data).expect("list")[0];
    let out: serde_json::Value =
        serde_json::from_str(&inspect(&info.path).expect("inspect")).expect("json");
    assert_eq!(out["format_version"], 1);
    assert_eq!(out["workspaces"].as_array().expect("array").len(), 2);
    let d = tempfile::tempdir().expect("tempdir");
    let payload = encode_image(&image()).expect("encode");
    let v2 =
        crate::persist::snapshot::write(d.path(), 9, 0, SNAPSHOT_VERSION, &payload).expect("write");
    let out: serde_json::Value =
        serde_json::from_str(&inspect(&v2.path).expect("inspect")).expect("json");
    assert_eq!(out["format_version"], SNAPSHOT_VERSION);
    assert_eq!(out["workspaces"][0]["profiles"], 4);
    assert_eq!(out["workspaces"][0]["connectors"], 1);
    assert_eq!(out["workspaces"][0]["memberships"], 2);
    // `address` and the 8 paths below it, current_location, email, plan
    // and tags.
    assert_eq!(
        out["workspaces"][0]["column_index"],
        serde_json::json!({"attribute_paths": 13, "events": 1})
    );
}

/// `inspect_with` reports reading up to the payload's length, then
/// decoding, then every profile checked, in that order.
#[test]
fn inspect_reports_its_steps_in_order_up_to_their_totals() {
    let d = tempfile::tempdir().expect("tempdir");
    let payload = encode_image(&image()).expect("encode");
    let snap =
        crate::persist::snapshot::write(d.path(), 9, 0, SNAPSHOT_VERSION, &payload).expect("write");
    let mut steps = Vec::new();
    super::inspect_with(&snap.path, &mut |s| steps.push(s)).expect("inspect");
    use super::InspectStep::*;
    let len = payload.len() as u64;
    assert_eq!(
        steps.first(),
        Some(&Reading {
            done: len,
            total: len
        })
    );
    assert_eq!(steps[1], Decoding);
    assert_eq!(steps.last(), Some(&Checking { done: 4, total: 4 }));
    assert!(steps[2..]
        .iter()
        .all(|s| matches!(s, Checking { total: 4, .. })));
}

/// Version 6 keeps profiles' attributes packed: bytes that do not read
/// whole are refused at load with what is wrong, never kept to panic on
/// later, by the streaming reader and by `inspect` alike.
#[test]
fn damaged_packed_attributes_are_refused_at_load() {
    let bytes = encode_image(&image()).expect("encode");
    let mut bad: v8::Image = decode_schema_image(SNAPSHOT_VERSION, &bytes).expect("owned");
    let details = bad.workspaces[0]
        .profiles
        .list
        .iter_mut()
        .find_map(|(_, p)| p.details.as_mut().filter(|d| !d.attributes.0.is_empty()))
        .expect("a profile with attributes");
    details.attributes.0.push(0);
    let bad = codec::encode(&bad).expect("encode");
    let e = decode_image(SNAPSHOT_VERSION, &bad).expect_err("damaged");
    assert!(e.to_string().contains("packed attributes"), "{e}");
    let d = tempfile::tempdir().expect("tempdir");
    let snap =
        crate::persist::snapshot::write(d.path(), 9, 0, SNAPSHOT_VERSION, &bad).expect("write");
    let e = inspect(&snap.path).expect_err("damaged");
    assert!(e.to_string().contains("bytes after the end"), "{e}");
}

/// A version 6 profile's bytes, packed attributes and events included
/// (`v6` documents the encoding; changing it is a format version).
#[test]
fn packed_profile_bytes_are_pinned() {
    let mut p = Profile::identified("u");
    let d = p.details_mut();
    d.attributes.insert("a", AttrValue::Str("x".into()));
    d.attributes.insert("n", AttrValue::Num(-3.0));
    d.attributes
        .insert("t", AttrValue::from_text("2024-05-01T10:00:00Z"));
    d.events.set(
        "e",
        EventStats {
            count: 2,
            first: 5,
            last: 9,
        },
    );
    let bytes = codec::encode(&convert::packed_profile(&p)).expect("encode");
    // Some("u"), Some(details): no aliases, no devices; 40 bytes of
    // attributes: 3 entries, "a" str "x", "n" int zigzag(-3) = 5, "t" time
    // (20-byte text, zigzag instant); 6 bytes of events: 1 entry, "e",
    // count 2, zigzag(5) = 10, zigzag(9 - 5) = 8.
    assert_eq!(
        hex::encode(bytes),
        "0101750100002803016100017801\
         6e010501740514323032342d30352d30315431303a30303a30305a8084c6b9e663\
         06010165020a08"
    );
}
