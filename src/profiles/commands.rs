//! The users API as domain commands (`/users/track`, `/users/identify`,
//! `/users/alias/new`, `/users/delete`) and their application to a
//! `ProfileStore`. Parsing from JSON happens at the HTTP edge; these types are
//! what the workspace's lane sequences and the log will record.

use compact_str::CompactString;

use super::{AttrUpdate, AttrValue, Identified, IdentifyError, ProfileStore};
use crate::config::LimitsConfig;
use crate::limits::{Exceeded, Limit};
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

/// The profile `target` names now, without creating it.
fn find(store: &ProfileStore, target: &Target) -> Option<Uid> {
    match target {
        Target::External { id, .. } => store.by_external(id),
        Target::Alias { alias, .. } => store.by_alias(alias),
        Target::Device(d) => store.by_device(d),
    }
}

/// Whether `target` creates its profile when it does not exist.
fn creates(target: &Target) -> bool {
    match target {
        Target::External { create, .. } | Target::Alias { create, .. } => *create,
        Target::Device(_) => true,
    }
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
/// reported in `errors`, and so is an attributes object that would take its
/// profile over `attributes_per_profile` or one of its arrays over
/// `array_items` (checked against the profile as earlier objects of the
/// same request left it; a skipped object creates nothing and changes
/// nothing).
pub fn apply_track(store: &mut ProfileStore, t: &Track, limits: &LimitsConfig) -> TrackReport {
    let mut report = TrackReport::default();
    for obj in &t.attributes {
        let found = find(store, &obj.target);
        if found.is_none() && !creates(&obj.target) {
            report.errors.push(format!(
                "attributes: no user with {} (_update_existing_only)",
                describe(&obj.target)
            ));
            continue;
        }
        if let Err(e) = store.check_attribute_changes(found, &obj.changes, limits) {
            report
                .errors
                .push(format!("attributes: {}: {e}", describe(&obj.target)));
            continue;
        }
        let uid = locate(store, &obj.target).expect("the profile exists or may be created");
        for (name, change) in &obj.changes {
            store.update_attribute(uid, name, change.clone());
        }
        report.attributes_processed += 1;
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

/// An entry whose merge would take the identified profile over
/// `attributes_per_profile` is skipped and reported, like any other entry
/// that cannot be identified.
pub fn apply_identify(
    store: &mut ProfileStore,
    req: &Identify,
    limits: &LimitsConfig,
) -> IdentifyReport {
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
            store.identify_alias(ext, alias, limits),
            format!(
                "aliases_to_identify {{external_id: {ext:?}, alias_name: {:?}, alias_label: {:?}}}",
                alias.alias_name, alias.alias_label
            ),
        ));
    }
    for (ext, device) in &req.devices {
        devices += u32::from(record(
            store.identify_device(ext, device, limits),
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

// ---- the limits a request can be checked against before it is applied ----

/// Where in the request a value is, for messages.
fn target_at<'t>(at: &str, target: &'t Target) -> [(String, &'t str); 2] {
    match target {
        Target::External { id, .. } => [(format!("{at}.external_id"), id), (String::new(), "")],
        Target::Alias { alias, .. } => [
            (format!("{at}.user_alias.alias_name"), &alias.alias_name),
            (format!("{at}.user_alias.alias_label"), &alias.alias_label),
        ],
        Target::Device(d) => [(format!("{at}.device_id"), d), (String::new(), "")],
    }
}

/// `string_bytes`: one string written to a profile.
fn check_str(limits: &LimitsConfig, s: &str, at: impl FnOnce() -> String) -> Result<(), Exceeded> {
    Exceeded::check(Limit::StringBytes, limits.string_bytes, s.len(), at)
}

/// `array_items` and `string_bytes` for one list of array items.
fn check_items(limits: &LimitsConfig, items: &[CompactString], at: &str) -> Result<(), Exceeded> {
    Exceeded::check(Limit::ArrayItems, limits.array_items, items.len(), || {
        at.to_string()
    })?;
    for (i, item) in items.iter().enumerate() {
        check_str(limits, item, || format!("{at}[{i}]"))?;
    }
    Ok(())
}

fn check_target(limits: &LimitsConfig, at: &str, target: &Target) -> Result<(), Exceeded> {
    for (place, s) in target_at(at, target) {
        check_str(limits, s, || place)?;
    }
    Ok(())
}

/// The limits a `/users/track` request is held to whatever the state:
/// every string within `string_bytes`, every array value and add/remove
/// list within `array_items`, and no object with more attribute changes
/// than `attributes_per_profile` (it could never fit a profile). The first
/// one over names its place (`attributes[2].tags`).
pub fn check_track(t: &Track, limits: &LimitsConfig) -> Result<(), Exceeded> {
    for (i, obj) in t.attributes.iter().enumerate() {
        let at = format!("attributes[{i}]");
        check_target(limits, &at, &obj.target)?;
        Exceeded::check(
            Limit::AttributesPerProfile,
            limits.attributes_per_profile,
            obj.changes.len(),
            || at.clone(),
        )?;
        for (name, change) in &obj.changes {
            check_str(limits, name, || format!("{at}: an attribute name"))?;
            let here = || format!("{at}.{}", super::short(name));
            match change {
                AttrUpdate::Set(AttrValue::Str(v)) => check_str(limits, v, here)?,
                AttrUpdate::Set(AttrValue::Time { text, .. }) => check_str(limits, text, here)?,
                AttrUpdate::Set(AttrValue::Array(items)) => check_items(limits, items, &here())?,
                AttrUpdate::ArrayEdit { add, remove } => {
                    check_items(limits, add, &format!("{}.add", here()))?;
                    check_items(limits, remove, &format!("{}.remove", here()))?;
                }
                AttrUpdate::Set(AttrValue::Num(_) | AttrValue::Bool(_))
                | AttrUpdate::Remove
                | AttrUpdate::Increment(_) => {}
            }
        }
    }
    for (list, name_key, objects) in [
        ("events", "name", &t.events),
        ("purchases", "product_id", &t.purchases),
    ] {
        for (i, ev) in objects.iter().enumerate() {
            let at = format!("{list}[{i}]");
            check_target(limits, &at, &ev.target)?;
            check_str(limits, &ev.name, || format!("{at}.{name_key}"))?;
        }
    }
    Ok(())
}

/// `/users/identify`: every identifier within `string_bytes`.
pub fn check_identify(req: &Identify, limits: &LimitsConfig) -> Result<(), Exceeded> {
    for (i, (ext, alias)) in req.aliases.iter().enumerate() {
        let at = format!("aliases_to_identify[{i}]");
        check_str(limits, ext, || format!("{at}.external_id"))?;
        check_target(
            limits,
            &at,
            &Target::Alias {
                alias: alias.clone(),
                create: false,
            },
        )?;
    }
    for (i, (ext, device)) in req.devices.iter().enumerate() {
        let at = format!("devices_to_identify[{i}]");
        check_str(limits, ext, || format!("{at}.external_id"))?;
        check_str(limits, device, || format!("{at}.device_id"))?;
    }
    Ok(())
}

/// `/users/alias/new`: every identifier within `string_bytes`.
pub fn check_new_aliases(req: &NewAliases, limits: &LimitsConfig) -> Result<(), Exceeded> {
    for (i, (ext, alias)) in req.0.iter().enumerate() {
        let at = format!("user_aliases[{i}]");
        if let Some(ext) = ext {
            check_str(limits, ext, || format!("{at}.external_id"))?;
        }
        check_str(limits, &alias.alias_name, || format!("{at}.alias_name"))?;
        check_str(limits, &alias.alias_label, || format!("{at}.alias_label"))?;
    }
    Ok(())
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
        let r = apply_track(&mut s, &t, &LimitsConfig::default());
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
        let r = apply_track(&mut s, &t, &LimitsConfig::default());
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
            &LimitsConfig::default(),
        );
        assert_eq!(r.merges, vec![(1, 0)]);
        assert_eq!((r.aliases_processed, r.devices_processed), (1, 0));
        assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    }

    #[test]
    fn an_object_over_a_limit_is_skipped_and_creates_nothing() {
        let mut s = ProfileStore::new();
        let limits = LimitsConfig {
            attributes_per_profile: 2,
            array_items: 2,
            ..LimitsConfig::default()
        };
        let attrs = |target: Target, names: &[&str]| AttributesObject {
            target,
            changes: names
                .iter()
                .map(|n| ((*n).into(), AttrUpdate::Set(AttrValue::Bool(true))))
                .collect(),
        };
        let grow = |target: Target, items: &[&str]| AttributesObject {
            target,
            changes: vec![(
                "tags".into(),
                AttrUpdate::ArrayEdit {
                    add: items.iter().map(|i| CompactString::from(*i)).collect(),
                    remove: vec![],
                },
            )],
        };
        let t = Track {
            attributes: vec![
                attrs(ext("u1", true), &["a"]),
                attrs(ext("u1", true), &["b", "c"]),
                attrs(ext("new", true), &["a", "b", "c"]),
                grow(ext("u2", true), &["x", "y"]),
                grow(ext("u2", true), &["z"]),
            ],
            ..Default::default()
        };
        let r = apply_track(&mut s, &t, &limits);
        assert_eq!(r.attributes_processed, 2, "{:?}", r.errors);
        assert_eq!(r.errors.len(), 3, "{:?}", r.errors);
        assert!(r.errors[0].starts_with("attributes: external_id \"u1\": the profile after this object: 3 attributes, over the limit of 2 (limits.attributes_per_profile"), "{}", r.errors[0]);
        assert!(
            r.errors[2].contains("limits.array_items"),
            "{}",
            r.errors[2]
        );
        assert_eq!(
            s.by_external("new"),
            None,
            "a refused object creates nothing"
        );
        let u1 = s.get(s.by_external("u1").unwrap()).unwrap();
        assert_eq!(
            u1.attributes().len(),
            1,
            "the refused object changed nothing"
        );
        let u2 = s.get(s.by_external("u2").unwrap()).unwrap();
        assert_eq!(
            u2.attributes()["tags"],
            AttrValue::Array(vec!["x".into(), "y".into()])
        );
    }

    #[test]
    fn request_checks_name_the_first_place_over_a_limit() {
        let limits = LimitsConfig {
            string_bytes: 4,
            array_items: 2,
            attributes_per_profile: 2,
            ..LimitsConfig::default()
        };
        let obj = |target: Target, changes: Vec<(&str, AttrUpdate)>| Track {
            attributes: vec![AttributesObject {
                target,
                changes: changes.into_iter().map(|(n, c)| (n.into(), c)).collect(),
            }],
            ..Default::default()
        };
        let cases = [
            (
                obj(ext("u12345", true), vec![]),
                "attributes[0].external_id: 6 bytes",
            ),
            (
                obj(
                    ext("u", true),
                    vec![("plan", AttrUpdate::Set(AttrValue::Str("golden".into())))],
                ),
                "attributes[0].plan: 6 bytes",
            ),
            (
                obj(ext("u", true), vec![("plans", AttrUpdate::Remove)]),
                "attributes[0]: an attribute name: 5 bytes",
            ),
            (
                obj(
                    ext("u", true),
                    vec![("t", AttrUpdate::Set(AttrValue::Array(vec!["a".into(); 3])))],
                ),
                "attributes[0].t: 3 items",
            ),
            (
                obj(
                    ext("u", true),
                    vec![(
                        "t",
                        AttrUpdate::ArrayEdit {
                            add: vec![],
                            remove: vec!["a".into(), "b".into(), "c".into()],
                        },
                    )],
                ),
                "attributes[0].t.remove: 3 items",
            ),
            (
                obj(
                    ext("u", true),
                    vec![
                        ("a", AttrUpdate::Remove),
                        ("b", AttrUpdate::Remove),
                        ("c", AttrUpdate::Remove),
                    ],
                ),
                "attributes[0]: 3 attributes",
            ),
            (
                Track {
                    events: vec![EventObject {
                        target: Target::Device("d".into()),
                        name: "opened".into(),
                        time: 0,
                    }],
                    ..Default::default()
                },
                "events[0].name: 6 bytes",
            ),
        ];
        for (track, says) in cases {
            let e = check_track(&track, &limits).expect_err(says).to_string();
            assert!(e.starts_with(says), "{e} should start with {says}");
        }
        assert!(check_track(
            &obj(
                ext("u", true),
                vec![(
                    "t",
                    AttrUpdate::Set(AttrValue::Array(vec!["abcd".into(); 2]))
                )]
            ),
            &limits
        )
        .is_ok());
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
