//! The server against a naive model of SPEC's rules, over random sequences
//! of users API calls and cohort deltas.
//!
//! The model is written from SPEC §2–§4 and docs/decisions.md alone (it
//! calls nothing of cohortd): profiles are a `Vec` searched linearly,
//! cohorts a `BTreeSet` of profile indexes each. Identifiers come from small
//! pools so that sequences keep running into each other: the same user
//! named twice in one delta, an alias differing only in case, a device that
//! logs in, a profile deleted and tracked again.
//!
//! Emails are identifiers of the users API only (docs/decisions.md): an
//! object addressed by `email` finds the most recently updated holder (any
//! case) or creates an email-only profile; an unknown external_id that
//! comes with the email of an anonymous profile takes it over; a delete by
//! email removes every holder; a delta naming an email matches nobody.
//!
//! Per SPEC's error rules, a malformed object (here: one naming two
//! identifiers, or none) is skipped and reported by its index while the
//! rest of its request applies; the model says which indexes are skipped,
//! by shape or by state, and the server's `errors` must name exactly those.
//!
//! After every call the response counts are compared; after every call the
//! cohort listing, every cohort's members and, at the end, the import
//! histories are compared too. One server serves every case, each case in a
//! fresh workspace.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;

use common::{delta, Server, Workspace};
use proptest::prelude::*;
use serde_json::{json, Value};

const PARTNER: &str = "hightouch";
const EXTERNAL_IDS: u8 = 5;
const DEVICES: u8 = 4;
const ALIAS_NAMES: [&str; 2] = ["email", "crm"];
/// `x` and `X` are different labels: the pair must match exactly.
const ALIAS_LABELS: [&str; 3] = ["x", "X", "y"];
const COHORTS: u8 = 3;
/// The first two are one address in two cases.
const EMAILS: [&str; 3] = ["a@x.io", "A@X.io", "b@x.io"];

fn email_key(e: u8) -> String {
    EMAILS[e as usize].to_lowercase()
}

static SERVER: LazyLock<Server> = LazyLock::new(Server::start);
static CASE: AtomicUsize = AtomicUsize::new(0);

// ---- the operations ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Id {
    External(u8),
    Alias(u8, u8),
    Device(u8),
    Email(u8),
}

impl Id {
    fn external(self) -> String {
        match self {
            Id::External(i) => format!("u{i}"),
            _ => unreachable!("not an external id"),
        }
    }
}

fn external(i: u8) -> String {
    Id::External(i).external()
}

fn device(i: u8) -> String {
    format!("d{i}")
}

fn alias_pair(n: u8, l: u8) -> (String, String) {
    (
        ALIAS_NAMES[n as usize].to_string(),
        ALIAS_LABELS[l as usize].to_string(),
    )
}

fn alias_json(n: u8, l: u8) -> Value {
    let (name, label) = alias_pair(n, l);
    json!({ "alias_name": name, "alias_label": label })
}

/// Whom a `/users/track` attributes object addresses.
#[derive(Clone, Debug)]
enum Target {
    External {
        id: u8,
        existing_only: Option<bool>,
    },
    Alias {
        n: u8,
        l: u8,
        existing_only: Option<bool>,
    },
    Device(u8),
    Email {
        e: u8,
        existing_only: Option<bool>,
    },
    /// An external_id with an email attribute.
    ExternalEmail {
        id: u8,
        e: u8,
        existing_only: Option<bool>,
    },
    /// A malformed object: two identifiers (`external_id` and `device_id`)
    /// when `true`, none when `false`.
    Malformed(bool),
}

#[derive(Clone, Debug)]
enum Op {
    Track(Vec<Target>),
    IdentifyAliases(Vec<(u8, (u8, u8))>),
    IdentifyDevices(Vec<(u8, u8)>),
    NewAlias {
        external: Option<u8>,
        alias: (u8, u8),
    },
    Delete(Vec<Id>),
    /// `(should_remove, identifiers)` per change object.
    Delta {
        cohort: u8,
        changes: Vec<(bool, Vec<Id>)>,
    },
}

fn id_strategy() -> impl Strategy<Value = Id> {
    prop_oneof![
        (0..EXTERNAL_IDS).prop_map(Id::External),
        (0..ALIAS_NAMES.len() as u8, 0..ALIAS_LABELS.len() as u8)
            .prop_map(|(n, l)| Id::Alias(n, l)),
        (0..DEVICES).prop_map(Id::Device),
        (0..EMAILS.len() as u8).prop_map(Id::Email),
    ]
}

fn alias_strategy() -> impl Strategy<Value = (u8, u8)> {
    (0..ALIAS_NAMES.len() as u8, 0..ALIAS_LABELS.len() as u8)
}

fn existing_only() -> impl Strategy<Value = Option<bool>> {
    prop_oneof![Just(None), Just(Some(false)), Just(Some(true))]
}

fn target_strategy() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => (0..EXTERNAL_IDS, existing_only()).prop_map(|(id, existing_only)| Target::External { id, existing_only }),
        3 => (alias_strategy(), existing_only()).prop_map(|((n, l), existing_only)| Target::Alias { n, l, existing_only }),
        2 => (0..DEVICES).prop_map(Target::Device),
        2 => (0..EMAILS.len() as u8, existing_only()).prop_map(|(e, existing_only)| Target::Email { e, existing_only }),
        2 => (0..EXTERNAL_IDS, 0..EMAILS.len() as u8, existing_only())
            .prop_map(|(id, e, existing_only)| Target::ExternalEmail { id, e, existing_only }),
        1 => any::<bool>().prop_map(Target::Malformed),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let change = (any::<bool>(), prop::collection::vec(id_strategy(), 0..4));
    prop_oneof![
        4 => (0..COHORTS, prop::collection::vec(change, 0..4))
            .prop_map(|(cohort, changes)| Op::Delta { cohort, changes }),
        3 => prop::collection::vec(target_strategy(), 1..4).prop_map(Op::Track),
        1 => prop::collection::vec((0..EXTERNAL_IDS, alias_strategy()), 1..3).prop_map(Op::IdentifyAliases),
        1 => prop::collection::vec((0..EXTERNAL_IDS, 0..DEVICES), 1..3).prop_map(Op::IdentifyDevices),
        1 => (prop::option::of(0..EXTERNAL_IDS), alias_strategy())
            .prop_map(|(external, alias)| Op::NewAlias { external, alias }),
        1 => prop::collection::vec(id_strategy(), 1..3).prop_map(Op::Delete),
    ]
}

// ---- the model ----

#[derive(Clone, Debug, Default)]
struct Profile {
    external_id: Option<u8>,
    aliases: Vec<(u8, u8)>,
    devices: Vec<u8>,
    /// The `email` attribute, as last sent.
    email: Option<u8>,
    /// When it was last updated (a track object, or a merge into it).
    touched: u64,
}

/// `[added, removed, unmatched, size]` of one import.
type Import = [u64; 4];

#[derive(Debug, Default)]
struct Model {
    /// `None` once deleted or merged away; indexes are never reused.
    profiles: Vec<Option<Profile>>,
    cohorts: BTreeMap<u8, BTreeSet<usize>>,
    /// Newest last.
    imports: BTreeMap<u8, Vec<Import>>,
    /// The last `touched` given out.
    clock: u64,
}

impl Model {
    fn live(&self) -> impl Iterator<Item = (usize, &Profile)> {
        self.profiles
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
    }

    fn by_external(&self, e: u8) -> Option<usize> {
        self.live()
            .find(|(_, p)| p.external_id == Some(e))
            .map(|(i, _)| i)
    }

    fn by_alias(&self, a: (u8, u8)) -> Option<usize> {
        self.live()
            .find(|(_, p)| p.aliases.contains(&a))
            .map(|(i, _)| i)
    }

    fn by_device(&self, d: u8) -> Option<usize> {
        self.live()
            .find(|(_, p)| p.devices.contains(&d))
            .map(|(i, _)| i)
    }

    /// The most recently updated holder of the email (any case).
    fn by_email(&self, e: u8) -> Option<usize> {
        self.live()
            .filter(|(_, p)| p.email.is_some_and(|x| email_key(x) == email_key(e)))
            .max_by_key(|(i, p)| (p.touched, *i))
            .map(|(i, _)| i)
    }

    fn touch(&mut self, i: usize) {
        self.clock += 1;
        let now = self.clock;
        self.profile(i).touched = now;
    }

    fn is_anonymous(&self, i: usize) -> bool {
        self.profiles[i].as_ref().unwrap().external_id.is_none()
    }

    /// SPEC's matching rule; devices match anonymous profiles only.
    fn resolve(&self, id: Id) -> Option<usize> {
        match id {
            Id::External(e) => self.by_external(e),
            Id::Alias(n, l) => self.by_alias((n, l)),
            Id::Device(d) => self.by_device(d).filter(|&i| self.is_anonymous(i)),
            // Cohort import never matches an email.
            Id::Email(_) => None,
        }
    }

    fn create(&mut self, p: Profile) -> usize {
        self.profiles.push(Some(p));
        self.profiles.len() - 1
    }

    fn profile(&mut self, i: usize) -> &mut Profile {
        self.profiles[i].as_mut().unwrap()
    }

    /// `from` folds into `into`: identifiers unite, memberships unite.
    fn merge(&mut self, from: usize, into: usize) {
        let gone = self.profiles[from].take().unwrap();
        let p = self.profile(into);
        for a in gone.aliases {
            if !p.aliases.contains(&a) {
                p.aliases.push(a);
            }
        }
        for d in gone.devices {
            if !p.devices.contains(&d) {
                p.devices.push(d);
            }
        }
        p.email = p.email.or(gone.email);
        self.touch(into);
        for set in self.cohorts.values_mut() {
            if set.remove(&from) {
                set.insert(into);
            }
        }
    }

    fn delete(&mut self, i: usize) {
        self.profiles[i] = None;
        for set in self.cohorts.values_mut() {
            set.remove(&i);
        }
    }

    /// `(processed, indexes of the objects skipped)`.
    fn track(&mut self, targets: &[Target]) -> (u64, Vec<u64>) {
        let (mut processed, mut errors) = (0, Vec::new());
        for (index, t) in targets.iter().enumerate() {
            let found = match *t {
                // Skipped for its shape; the others apply all the same.
                Target::Malformed(_) => None,
                Target::External { id, existing_only } => match self.by_external(id) {
                    Some(i) => Some(i),
                    None if !existing_only.unwrap_or(false) => Some(self.create(Profile {
                        external_id: Some(id),
                        ..Default::default()
                    })),
                    None => None,
                },
                Target::Alias {
                    n,
                    l,
                    existing_only,
                } => match self.by_alias((n, l)) {
                    Some(i) => Some(i),
                    None if !existing_only.unwrap_or(true) => Some(self.create(Profile {
                        aliases: vec![(n, l)],
                        ..Default::default()
                    })),
                    None => None,
                },
                // Whoever holds the device (even after a login), else a new
                // anonymous profile.
                Target::Device(d) => Some(self.by_device(d).unwrap_or_else(|| {
                    self.create(Profile {
                        devices: vec![d],
                        ..Default::default()
                    })
                })),
                Target::Email { e, existing_only } => match self.by_email(e) {
                    Some(i) => Some(i),
                    None if !existing_only.unwrap_or(false) => Some(self.create(Profile {
                        email: Some(e),
                        ..Default::default()
                    })),
                    None => None,
                },
                Target::ExternalEmail {
                    id,
                    e,
                    existing_only,
                } => {
                    let create = !existing_only.unwrap_or(false);
                    match self.by_external(id) {
                        Some(i) => Some(i),
                        None if create => {
                            match self.by_email(e).filter(|&h| self.is_anonymous(h)) {
                                // The anonymous holder takes the external_id.
                                Some(h) => {
                                    self.profile(h).external_id = Some(id);
                                    Some(h)
                                }
                                None => Some(self.create(Profile {
                                    external_id: Some(id),
                                    ..Default::default()
                                })),
                            }
                        }
                        None => None,
                    }
                }
            };
            match found {
                Some(i) => {
                    if let Target::Email { e, .. } | Target::ExternalEmail { e, .. } = *t {
                        self.profile(i).email = Some(e);
                    }
                    self.touch(i);
                    processed += 1;
                }
                None => errors.push(index as u64),
            }
        }
        (processed, errors)
    }

    /// The anonymous `holder` becomes `e`, or merges into `e`'s profile.
    /// Returns whether it merged.
    fn identify_holder(&mut self, e: u8, holder: usize, target: Option<usize>) -> bool {
        match target {
            None => {
                self.profile(holder).external_id = Some(e);
                false
            }
            Some(into) => {
                self.merge(holder, into);
                true
            }
        }
    }

    /// `(processed, merged, indexes of the entries skipped)`.
    fn identify_aliases(&mut self, entries: &[(u8, (u8, u8))]) -> (u64, u64, Vec<u64>) {
        let (mut processed, mut merged, mut errors) = (0, 0, Vec::new());
        for (index, &(e, a)) in entries.iter().enumerate() {
            let target = self.by_external(e);
            match self.by_alias(a) {
                Some(h) if Some(h) == target => processed += 1,
                Some(h) if !self.is_anonymous(h) => errors.push(index as u64),
                Some(h) => {
                    merged += u64::from(self.identify_holder(e, h, target));
                    processed += 1;
                }
                None => {
                    // An alias nobody holds joins the identified profile,
                    // created if needed (docs/decisions.md).
                    let t = target.unwrap_or_else(|| {
                        self.create(Profile {
                            external_id: Some(e),
                            ..Default::default()
                        })
                    });
                    self.profile(t).aliases.push(a);
                    processed += 1;
                }
            }
        }
        (processed, merged, errors)
    }

    /// `(processed, merged, indexes of the entries skipped)`.
    fn identify_devices(&mut self, entries: &[(u8, u8)]) -> (u64, u64, Vec<u64>) {
        let (mut processed, mut merged, mut errors) = (0, 0, Vec::new());
        for (index, &(e, d)) in entries.iter().enumerate() {
            let target = self.by_external(e);
            match self.by_device(d) {
                // Logging in again as the same user changes nothing.
                Some(h) if Some(h) == target => processed += 1,
                Some(h) if self.is_anonymous(h) => {
                    merged += u64::from(self.identify_holder(e, h, target));
                    processed += 1;
                }
                _ => errors.push(index as u64),
            }
        }
        (processed, merged, errors)
    }

    /// `/users/alias/new`: `(processed, errors)`.
    fn new_alias(&mut self, external: Option<u8>, a: (u8, u8)) -> (u64, u64) {
        let owner = match external {
            Some(e) => match self.by_external(e) {
                Some(i) => Some(i),
                None => return (0, 1),
            },
            None => None,
        };
        match (self.by_alias(a), owner) {
            (Some(h), Some(o)) if h == o => (1, 0),
            (Some(_), _) => (0, 1),
            (None, Some(o)) => {
                self.profile(o).aliases.push(a);
                (1, 0)
            }
            (None, None) => {
                self.create(Profile {
                    aliases: vec![a],
                    ..Default::default()
                });
                (1, 0)
            }
        }
    }

    fn delete_users(&mut self, ids: &[Id]) -> u64 {
        let mut deleted = 0;
        for &id in ids {
            if let Id::Email(e) = id {
                // Every holder, in any case.
                let holders: Vec<usize> = self
                    .live()
                    .filter(|(_, p)| p.email.is_some_and(|x| email_key(x) == email_key(e)))
                    .map(|(i, _)| i)
                    .collect();
                for i in holders {
                    self.delete(i);
                    deleted += 1;
                }
            } else if let Some(i) = self.resolve(id) {
                self.delete(i);
                deleted += 1;
            }
        }
        deleted
    }

    /// `[added, removed, unmatched, cohort_size]` of a delta.
    fn delta(&mut self, cohort: u8, changes: &[(bool, Vec<Id>)]) -> Import {
        let total: usize = changes.iter().map(|(_, ids)| ids.len()).sum();
        if total == 0 {
            let size = self.cohorts.get(&cohort).map_or(0, |s| s.len() as u64);
            return [0, 0, 0, size];
        }
        // Later operations win: the last one per profile decides.
        let mut last: BTreeMap<usize, bool> = BTreeMap::new();
        let mut unmatched: BTreeSet<Id> = BTreeSet::new();
        for (remove, ids) in changes {
            for &id in ids {
                match self.resolve(id) {
                    Some(i) => {
                        last.insert(i, !remove);
                    }
                    None => {
                        unmatched.insert(id);
                    }
                }
            }
        }
        let set = self.cohorts.entry(cohort).or_default();
        let (mut added, mut removed) = (0, 0);
        for (i, add) in last {
            if add {
                added += u64::from(set.insert(i));
            } else {
                removed += u64::from(set.remove(&i));
            }
        }
        let import = [added, removed, unmatched.len() as u64, set.len() as u64];
        self.imports.entry(cohort).or_default().push(import);
        import
    }

    /// A member as listings show it: external_id, else first alias, else
    /// first device.
    fn listed(&self, i: usize) -> Value {
        let p = self.profiles[i].as_ref().unwrap();
        if let Some(e) = p.external_id {
            json!({ "external_id": external(e) })
        } else if let Some(&(n, l)) = p.aliases.first() {
            json!({ "user_alias": alias_json(n, l) })
        } else if let Some(&d) = p.devices.first() {
            json!({ "device_id": device(d) })
        } else {
            json!({ "email": EMAILS[p.email.expect("an email-only profile") as usize] })
        }
    }

    fn members(&self, cohort: u8) -> BTreeSet<String> {
        self.cohorts[&cohort]
            .iter()
            .map(|&i| self.listed(i).to_string())
            .collect()
    }
}

// ---- the server side ----

struct Client {
    ws: Workspace<'static>,
    secret: String,
}

fn cohort_id(c: u8) -> String {
    format!("c{c}")
}

fn id_wire(ids: &[Id]) -> Value {
    let mut users = Vec::new();
    let mut devices = Vec::new();
    let mut aliases = Vec::new();
    for &id in ids {
        match id {
            Id::External(_) => users.push(json!(id.external())),
            // An email sent as a user id: matches no external_id here.
            Id::Email(e) => users.push(json!(EMAILS[e as usize])),
            Id::Device(d) => devices.push(json!(device(d))),
            Id::Alias(n, l) => aliases.push(alias_json(n, l)),
        }
    }
    json!({ "user_ids": users, "device_ids": devices, "aliases": aliases })
}

fn target_wire(t: &Target) -> Value {
    let mut obj = match *t {
        Target::External { id, .. } => json!({ "external_id": external(id) }),
        Target::Alias { n, l, .. } => json!({ "user_alias": alias_json(n, l) }),
        Target::Device(d) => json!({ "device_id": device(d) }),
        Target::Email { e, .. } => json!({ "email": EMAILS[e as usize] }),
        Target::ExternalEmail { id, e, .. } => {
            json!({ "external_id": external(id), "email": EMAILS[e as usize] })
        }
        Target::Malformed(true) => json!({ "external_id": external(0), "device_id": device(0) }),
        Target::Malformed(false) => json!({}),
    };
    if let Target::External {
        existing_only: Some(b),
        ..
    }
    | Target::Alias {
        existing_only: Some(b),
        ..
    }
    | Target::Email {
        existing_only: Some(b),
        ..
    }
    | Target::ExternalEmail {
        existing_only: Some(b),
        ..
    } = *t
    {
        obj["_update_existing_only"] = json!(b);
    }
    obj["plan"] = json!("gold");
    obj
}

/// The indexes `errors` names, each checked to be of `input_array`.
fn skipped(r: &Value, input_array: &str) -> Vec<u64> {
    r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["input_array"], input_array, "{r}");
            e["index"].as_u64().unwrap()
        })
        .collect()
}

impl Client {
    fn post(&self, path: &str, body: Value) -> Value {
        let r = self.ws.post(path, body.clone());
        assert_eq!(r.status, 201, "{path} {body} → {}", r.body);
        r.body
    }

    /// Applies `op` to the server and the model and compares the answers.
    fn apply(&self, model: &mut Model, op: &Op) {
        let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
        match op {
            Op::Track(targets) => {
                let objects: Vec<Value> = targets.iter().map(target_wire).collect();
                let r = self.post("/users/track", json!({ "attributes": objects }));
                let got = (n(&r, "attributes_processed"), skipped(&r, "attributes"));
                assert_eq!(got, model.track(targets), "{op:?} → {r}");
            }
            Op::IdentifyAliases(entries) => {
                let body: Vec<Value> = entries
                    .iter()
                    .map(|&(e, (an, al))| json!({ "external_id": external(e), "user_alias": alias_json(an, al) }))
                    .collect();
                let r = self.post("/users/identify", json!({ "aliases_to_identify": body }));
                let got = (
                    n(&r, "aliases_processed"),
                    n(&r, "merged"),
                    skipped(&r, "aliases_to_identify"),
                );
                assert_eq!(got, model.identify_aliases(entries), "{op:?} → {r}");
            }
            Op::IdentifyDevices(entries) => {
                let body: Vec<Value> = entries
                    .iter()
                    .map(|&(e, d)| json!({ "external_id": external(e), "device_id": device(d) }))
                    .collect();
                let r = self.post("/users/identify", json!({ "devices_to_identify": body }));
                let got = (
                    n(&r, "devices_processed"),
                    n(&r, "merged"),
                    skipped(&r, "devices_to_identify"),
                );
                assert_eq!(got, model.identify_devices(entries), "{op:?} → {r}");
            }
            Op::NewAlias {
                external: e,
                alias: (an, al),
            } => {
                let mut entry = alias_json(*an, *al);
                if let Some(e) = e {
                    entry["external_id"] = json!(external(*e));
                }
                let r = self.post("/users/alias/new", json!({ "user_aliases": [entry] }));
                let got = (
                    n(&r, "aliases_processed"),
                    skipped(&r, "user_aliases").len() as u64,
                );
                assert_eq!(got, model.new_alias(*e, (*an, *al)), "{op:?} → {r}");
            }
            Op::Delete(ids) => {
                let mut body = json!({});
                let externals: Vec<String> = ids
                    .iter()
                    .filter(|i| matches!(i, Id::External(_)))
                    .map(|i| i.external())
                    .collect();
                let aliases: Vec<Value> = ids
                    .iter()
                    .filter_map(|i| match *i {
                        Id::Alias(n, l) => Some(alias_json(n, l)),
                        _ => None,
                    })
                    .collect();
                let devices: Vec<String> = ids
                    .iter()
                    .filter_map(|i| match *i {
                        Id::Device(d) => Some(device(d)),
                        _ => None,
                    })
                    .collect();
                let emails: Vec<&str> = ids
                    .iter()
                    .filter_map(|i| match *i {
                        Id::Email(e) => Some(EMAILS[e as usize]),
                        _ => None,
                    })
                    .collect();
                body["external_ids"] = json!(externals);
                body["user_aliases"] = json!(aliases);
                body["device_ids"] = json!(devices);
                body["email_addresses"] = json!(emails);
                let r = self.post("/users/delete", body);
                // The server reads external_ids, then user_aliases, then
                // device_ids; the model takes them in that order too.
                let mut ordered = ids.clone();
                ordered.sort_by_key(|i| match i {
                    Id::External(_) => 0,
                    Id::Alias(..) => 1,
                    Id::Device(_) => 2,
                    Id::Email(_) => 3,
                });
                assert_eq!(
                    n(&r, "deleted"),
                    model.delete_users(&ordered),
                    "{op:?} → {r}"
                );
            }
            Op::Delta { cohort, changes } => {
                let wire: Vec<Value> = changes
                    .iter()
                    .map(|(remove, ids)| {
                        let mut c = id_wire(ids);
                        if *remove {
                            c["should_remove"] = json!(true);
                        }
                        c
                    })
                    .collect();
                let body = delta(&self.secret, &cohort_id(*cohort), Value::Array(wire));
                let r = self.ws.server.call(
                    "POST",
                    &format!("/partners/{PARTNER}/cohorts/users"),
                    None,
                    Some(&body),
                );
                assert_eq!(r.status, 201, "{body} → {}", r.body);
                let got = ["added", "removed", "unmatched", "cohort_size"].map(|k| n(&r.body, k));
                assert_eq!(got, model.delta(*cohort, changes), "{op:?} → {}", r.body);
            }
        }
    }

    /// Every cohort's existence, size and member list.
    fn compare_cohorts(&self, model: &Model, after: &Op) {
        let r = self.ws.get("/cohorts");
        let listed: BTreeMap<String, u64> = r.body["cohorts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["cohort_id"].as_str().unwrap().to_string(),
                    c["size"].as_u64().unwrap(),
                )
            })
            .collect();
        let expected: BTreeMap<String, u64> = model
            .cohorts
            .iter()
            .map(|(&c, set)| (cohort_id(c), set.len() as u64))
            .collect();
        assert_eq!(listed, expected, "cohorts after {after:?}");
        for &c in model.cohorts.keys() {
            let members: Vec<String> = self
                .ws
                .members(PARTNER, &cohort_id(c))
                .iter()
                .map(Value::to_string)
                .collect();
            let distinct: BTreeSet<String> = members.iter().cloned().collect();
            assert_eq!(
                distinct.len(),
                members.len(),
                "a member listed twice: {members:?}"
            );
            assert_eq!(
                distinct,
                model.members(c),
                "members of c{c} after {after:?}"
            );
        }
    }

    fn compare_imports(&self, model: &Model) {
        for (&c, imports) in &model.imports {
            let r = self
                .ws
                .get(&format!("/cohorts/{PARTNER}/{}/imports", cohort_id(c)));
            let got: Vec<Import> = r.body["imports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| ["added", "removed", "unmatched", "size"].map(|k| i[k].as_u64().unwrap()))
                .collect();
            let want: Vec<Import> = imports.iter().rev().copied().collect();
            assert_eq!(got, want, "import history of c{c}, newest first");
        }
    }
}

fn run(ops: &[Op]) {
    let server: &'static Server = &SERVER;
    let ws = server.workspace(&format!("model-{}", CASE.fetch_add(1, Ordering::Relaxed)));
    let secret = ws.import_key(PARTNER);
    let client = Client { ws, secret };
    let mut model = Model::default();
    for op in ops {
        client.apply(&mut model, op);
        client.compare_cohorts(&model, op);
    }
    client.compare_imports(&model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_server_agrees_with_a_naive_model_of_the_rules(ops in prop::collection::vec(op_strategy(), 1..25)) {
        run(&ops);
    }
}

/// A fixed sequence through the interesting corners, so that they are
/// covered whatever proptest draws.
#[test]
fn the_model_comparison_covers_logins_merges_case_and_repeats() {
    use Id::*;
    let ext = |id| Target::External {
        id,
        existing_only: None,
    };
    run(&[
        Op::Track(vec![
            ext(0),
            Target::Malformed(true),
            ext(1),
            Target::Device(0),
            Target::Malformed(false),
            Target::Device(1),
        ]),
        Op::Track(vec![Target::Malformed(true)]),
        Op::Track(vec![Target::Alias {
            n: 0,
            l: 0,
            existing_only: Some(false),
        }]),
        Op::Delta {
            cohort: 0,
            changes: vec![(
                false,
                vec![External(0), Device(0), Alias(0, 0), Alias(0, 1)],
            )],
        },
        Op::Delta {
            cohort: 1,
            changes: vec![(false, vec![External(1), Device(1)])],
        },
        Op::IdentifyDevices(vec![(1, 0)]),
        Op::IdentifyAliases(vec![(1, (0, 0))]),
        Op::Delta {
            cohort: 0,
            changes: vec![
                (true, vec![External(1), Device(0)]),
                (false, vec![External(1), External(2)]),
                (true, vec![External(1)]),
                (false, vec![External(0)]),
            ],
        },
        Op::IdentifyDevices(vec![(3, 1)]),
        Op::Delete(vec![External(3), Alias(0, 0)]),
        Op::Track(vec![Target::Device(1), Target::Device(0), ext(3)]),
        Op::Delta {
            cohort: 2,
            changes: vec![
                (false, vec![Device(1), Device(0), External(3)]),
                (false, vec![]),
            ],
        },
    ]);
}
