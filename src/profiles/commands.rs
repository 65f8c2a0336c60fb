//! The users API as domain commands (`/users/track`, `/users/identify`,
//! `/users/alias/new`, `/users/delete`) and their application to a
//! `ProfileStore`. Parsing from JSON happens at the HTTP edge; these types are
//! what the router sequences and the log will record.

use compact_str::CompactString;

use super::{AttrUpdate, Identified, IdentifyError, ProfileStore};
use crate::model::{Alias, Identifier, Millis, Uid};

/// Which profile a track object writes to, and whether it may create it.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    External {
        id: CompactString,
        create: bool,
    },
    Alias {
        alias: Alias,
        create: bool,
    },
    /// The `device_id` extension: the profile holding the device, or a new
    /// anonymous one.
    Device(CompactString),
}

#[derive(Clone, Debug, PartialEq)]
pub struct AttributesObject {
    pub target: Target,
    pub changes: Vec<(CompactString, AttrUpdate)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventObject {
    pub target: Target,
    pub name: CompactString,
    pub time: Millis,
}

/// `/users/track`. Purchases are stored as events (see `PURCHASE_EVENT`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Track {
    pub attributes: Vec<AttributesObject>,
    pub events: Vec<EventObject>,
    pub purchases: Vec<EventObject>,
}

/// The event name a purchase is recorded under.
pub const PURCHASE_EVENT: &str = "purchase";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackReport {
    pub attributes_processed: u32,
    pub events_processed: u32,
    pub purchases_processed: u32,
    pub errors: Vec<String>,
}

fn locate(store: &mut ProfileStore, target: &Target) -> Option<Uid> {
    match target {
        Target::External { id, create } => store.upsert_external(id, *create),
        Target::Alias { alias, create } => store.upsert_alias(alias, *create),
        Target::Device(d) => Some(store.upsert_device(d)),
    }
}

fn describe(target: &Target) -> String {
    match target {
        Target::External { id, .. } => format!("external_id {id:?}"),
        Target::Alias { alias, .. } => format!(
            "user_alias {{alias_name: {:?}, alias_label: {:?}}}",
            alias.alias_name, alias.alias_label
        ),
        Target::Device(d) => format!("device_id {d:?}"),
    }
}

/// Applies attributes, then events, then purchases (SPEC §4). An object
/// whose profile does not exist and may not be created is skipped and
/// reported in `errors`.
pub fn apply_track(store: &mut ProfileStore, t: &Track) -> TrackReport {
    let mut report = TrackReport::default();
    for obj in &t.attributes {
        match locate(store, &obj.target) {
            Some(uid) => {
                for (name, change) in &obj.changes {
                    store.update_attribute(uid, name, change.clone());
                }
                report.attributes_processed += 1;
            }
            None => report.errors.push(format!(
                "attributes: no user with {} (_update_existing_only)",
                describe(&obj.target)
            )),
        }
    }
    for (list, name_override, counter) in [
        (&t.events, None, &mut report.events_processed),
        (
            &t.purchases,
            Some(PURCHASE_EVENT),
            &mut report.purchases_processed,
        ),
    ] {
        for ev in list {
            match locate(store, &ev.target) {
                Some(uid) => {
                    store.record_event(uid, name_override.unwrap_or(&ev.name), ev.time);
                    *counter += 1;
                }
                None => report.errors.push(format!(
                    "{}: no user with {} (_update_existing_only)",
                    if name_override.is_some() {
                        "purchases"
                    } else {
                        "events"
                    },
                    describe(&ev.target)
                )),
            }
        }
    }
    report
}

/// `/users/identify`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identify {
    pub aliases: Vec<(CompactString, Alias)>,
    pub devices: Vec<(CompactString, CompactString)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdentifyReport {
    pub aliases_processed: u32,
    pub devices_processed: u32,
    /// Profiles folded into others, in order: their memberships must move.
    pub merges: Vec<(Uid, Uid)>,
    pub errors: Vec<String>,
}

pub fn apply_identify(store: &mut ProfileStore, req: &Identify) -> IdentifyReport {
    let mut report = IdentifyReport::default();
    let mut record = |r: Result<Identified, IdentifyError>, what: String| match r {
        Ok(done) => {
            if let Identified::Merged { from, into } = done {
                report.merges.push((from, into));
            }
            true
        }
        Err(e) => {
            report.errors.push(format!("{what}: {e}"));
            false
        }
    };
    let (mut aliases, mut devices) = (0, 0);
    for (ext, alias) in &req.aliases {
        aliases += u32::from(record(
            store.identify_alias(ext, alias),
            format!(
                "aliases_to_identify {{external_id: {ext:?}, alias_name: {:?}, alias_label: {:?}}}",
                alias.alias_name, alias.alias_label
            ),
        ));
    }
    for (ext, device) in &req.devices {
        devices += u32::from(record(
            store.identify_device(ext, device),
            format!("devices_to_identify {{external_id: {ext:?}, device_id: {device:?}}}"),
        ));
    }
    report.aliases_processed = aliases;
    report.devices_processed = devices;
    report
}

/// `/users/alias/new`: `(external_id or None for a new alias-only profile, alias)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewAliases(pub Vec<(Option<CompactString>, Alias)>);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AliasReport {
    pub aliases_processed: u32,
    pub errors: Vec<String>,
}

pub fn apply_new_aliases(store: &mut ProfileStore, req: &NewAliases) -> AliasReport {
    let mut report = AliasReport::default();
    for (ext, alias) in &req.0 {
        match store.add_alias(ext.as_deref(), alias) {
            Ok(_) => report.aliases_processed += 1,
            Err(e) => report.errors.push(format!(
                "user_aliases {{alias_name: {:?}, alias_label: {:?}}}: {e}",
                alias.alias_name, alias.alias_label
            )),
        }
    }
    report
}

/// `/users/delete`: removes the profiles these identifiers name (an external
/// id, an alias, or a device id of an anonymous profile). Returns the ids
/// deleted, so that every cohort drops them.
pub fn apply_delete(store: &mut ProfileStore, ids: &[Identifier]) -> Vec<Uid> {
    let mut gone = Vec::new();
    for id in ids {
        if let Some(uid) = store.resolve(id) {
            if store.delete(uid) {
                gone.push(uid);
            }
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::AttrValue;

    fn ext(id: &str, create: bool) -> Target {
        Target::External {
            id: id.into(),
            create,
        }
    }

    #[test]
    fn track_applies_attributes_then_events_then_purchases() {
        let mut s = ProfileStore::new();
        let t = Track {
            attributes: vec![AttributesObject {
                target: ext("u1", true),
                changes: vec![(
                    "plan".into(),
                    AttrUpdate::Set(AttrValue::Str("gold".into())),
                )],
            }],
            events: vec![EventObject {
                target: ext("u1", true),
                name: "open".into(),
                time: 7,
            }],
            purchases: vec![EventObject {
                target: ext("u1", true),
                name: "sku".into(),
                time: 9,
            }],
        };
        let r = apply_track(&mut s, &t);
        assert_eq!(
            (
                r.attributes_processed,
                r.events_processed,
                r.purchases_processed
            ),
            (1, 1, 1)
        );
        let p = s.get(0).unwrap();
        assert_eq!(p.events()["open"].count, 1);
        assert_eq!(p.events()[PURCHASE_EVENT].last, 9);
    }

    #[test]
    fn update_existing_only_skips_and_reports() {
        let mut s = ProfileStore::new();
        let t = Track {
            attributes: vec![AttributesObject {
                target: Target::Alias {
                    alias: Alias::new("n", "l"),
                    create: false,
                },
                changes: vec![],
            }],
            ..Default::default()
        };
        let r = apply_track(&mut s, &t);
        assert_eq!(r.attributes_processed, 0);
        assert_eq!(r.errors.len(), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn identify_reports_merges_and_skips() {
        let mut s = ProfileStore::new();
        s.upsert_external("u1", true);
        s.upsert_alias(&Alias::new("e", "a"), true);
        s.upsert_external("u2", true);
        s.add_alias(Some("u2"), &Alias::new("e", "b")).unwrap();
        let r = apply_identify(
            &mut s,
            &Identify {
                aliases: vec![
                    ("u1".into(), Alias::new("e", "a")),
                    ("u1".into(), Alias::new("e", "b")),
                ],
                devices: vec![("u1".into(), "nope".into())],
            },
        );
        assert_eq!(r.merges, vec![(1, 0)]);
        assert_eq!((r.aliases_processed, r.devices_processed), (1, 0));
        assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    }

    #[test]
    fn delete_returns_what_it_removed() {
        let mut s = ProfileStore::new();
        s.upsert_external("u1", true);
        let gone = apply_delete(
            &mut s,
            &[
                Identifier::External("u1".into()),
                Identifier::External("u1".into()),
            ],
        );
        assert_eq!(gone, vec![0]);
    }
}
