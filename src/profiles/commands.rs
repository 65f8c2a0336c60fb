//! The users API as domain commands (`/users/track`, `/users/identify`,
//! `/users/alias/new`, `/users/delete`) and their application to a
//! `ProfileStore`. Parsing from JSON happens at the HTTP edge; these types are
//! what the workspace's lane sequences and the log will record.
//!
//! Errors follow Braze: what is wrong with the request as a whole is fatal
//! (the HTTP layer answers 400), what is wrong with one object is not. A
//! refused object is left out of the command and reported as an
//! [`ObjectError`] naming its array and its index *in the request*. The
//! command only holds the objects that can be applied, so a [`Batch`]
//! carries, next to it, where each of them came from in the request and
//! the objects refused so far; the errors an apply reports (by position in
//! the command) are mapped back through it ([`Origins::resolve`]), the one
//! place that knows both numberings.

use std::collections::BTreeMap;

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
    /// The most recently updated profile holding the email (any case), or
    /// a new email-only profile if `create`.
    Email {
        email: CompactString,
        create: bool,
    },
    /// The most recently updated profile holding the phone, or a new
    /// phone-only profile if `create`.
    Phone {
        phone: CompactString,
        create: bool,
    },
    /// The profile with that id (`braze_id`); never creates.
    BrazeId(Uid),
    /// An external_id with more: a `braze_id` that must name the same
    /// profile, and/or the object's email or phone, which an unknown
    /// external_id takes over when it names an anonymous profile.
    ExternalWith {
        id: CompactString,
        create: bool,
        braze_id: Option<Uid>,
        contact: Option<Contact>,
    },
}

/// An email or phone that came with an external_id.
#[derive(Clone, Debug, PartialEq)]
pub enum Contact {
    Email(CompactString),
    Phone(CompactString),
}

/// How a track object reaches its profile.
enum Plan {
    Existing(Uid),
    /// No profile: create one.
    Create,
    /// The anonymous profile takes the object's external_id.
    Become(Uid),
}

impl Plan {
    fn existing(&self) -> Option<Uid> {
        match self {
            Plan::Existing(u) | Plan::Become(u) => Some(*u),
            Plan::Create => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AttributesObject {
    pub target: Target,
    pub changes: Vec<(CompactString, AttrUpdate)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventObject {
    pub target: Target,
    /// An event's name, or a purchase's product_id.
    pub name: CompactString,
    pub time: Millis,
    /// The object's `properties`, a JSON object as text (what the change
    /// feed reports; profiles keep only counts and times).
    pub properties: Option<std::sync::Arc<str>>,
    /// A purchase's currency and price, as given.
    pub currency: Option<CompactString>,
    pub price: Option<f64>,
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

/// What a `/users/track` applied. `errors` name positions in the command
/// until [`Origins::resolve`] maps them to the request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackReport {
    pub attributes_processed: u32,
    pub events_processed: u32,
    pub purchases_processed: u32,
    pub errors: Vec<ObjectError>,
    /// The events and purchases recorded, in order, and on whom (what the
    /// change feed reports).
    pub recorded: Vec<Recorded>,
    /// The profiles whose attributes an object wrote, in order.
    pub updated: Vec<Uid>,
}

/// One event or purchase a track recorded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recorded {
    pub array: InputArray,
    /// Its place in the command's `events` or `purchases`.
    pub index: usize,
    pub uid: Uid,
}

/// Which profile `target` names now, or why the object is skipped
/// (`_update_existing_only` with nobody to update, a braze_id that names
/// nobody or not the external_id's profile). Changes nothing.
fn plan(store: &ProfileStore, target: &Target) -> Result<Plan, String> {
    let or_create = |found: Option<Uid>, create: bool| match found {
        Some(uid) => Ok(Plan::Existing(uid)),
        None if create => Ok(Plan::Create),
        None => Err(no_user(target)),
    };
    match target {
        Target::External { id, create } => or_create(store.by_external(id), *create),
        Target::Alias { alias, create } => or_create(store.by_alias(alias), *create),
        Target::Device(d) => or_create(store.by_device(d), true),
        Target::Email { email, create } => or_create(store.by_email(email), *create),
        Target::Phone { phone, create } => or_create(store.by_phone(phone), *create),
        Target::BrazeId(uid) => store
            .get(*uid)
            .map(|_| Plan::Existing(*uid))
            .ok_or_else(|| no_braze_id(*uid)),
        Target::ExternalWith {
            id,
            create,
            braze_id,
            contact,
        } => {
            let found = store.by_external(id);
            if let Some(b) = braze_id {
                if store.get(*b).is_none() {
                    return Err(no_braze_id(*b));
                }
                return match found {
                    Some(uid) if uid == *b => Ok(Plan::Existing(uid)),
                    _ => Err(format!(
                        "braze_id and external_id {id:?} name different users"
                    )),
                };
            }
            if found.is_none() && *create {
                let holder = match contact {
                    Some(Contact::Email(e)) => store.by_email(e),
                    Some(Contact::Phone(p)) => store.by_phone(p),
                    None => None,
                };
                if let Some(h) = holder.filter(|h| store.get(*h).is_some_and(|p| p.is_anonymous()))
                {
                    return Ok(Plan::Become(h));
                }
            }
            or_create(found, *create)
        }
    }
}

fn no_braze_id(uid: Uid) -> String {
    format!("braze_id matches no user (profile id {uid})")
}

/// Carries out a plan: the profile the object writes to.
fn execute(store: &mut ProfileStore, target: &Target, plan: Plan) -> Uid {
    match plan {
        Plan::Existing(uid) => uid,
        Plan::Become(uid) => {
            if let Target::ExternalWith { id, .. } = target {
                store.become_identified(uid, id);
            }
            uid
        }
        Plan::Create => match target {
            Target::External { id, .. } | Target::ExternalWith { id, .. } => {
                store.upsert_external(id, true).expect("create = true")
            }
            Target::Alias { alias, .. } => store.upsert_alias(alias, true).expect("create = true"),
            Target::Device(d) => store.upsert_device(d),
            Target::Email { email, .. } => store.insert_contact(&Identifier::Email(email.clone())),
            Target::Phone { phone, .. } => store.insert_contact(&Identifier::Phone(phone.clone())),
            Target::BrazeId(_) => unreachable!("a braze_id never creates"),
        },
    }
}

fn describe(target: &Target) -> String {
    match target {
        Target::External { id, .. } | Target::ExternalWith { id, .. } => {
            format!("external_id {id:?}")
        }
        Target::Alias { alias, .. } => format!(
            "user_alias {{alias_name: {:?}, alias_label: {:?}}}",
            alias.alias_name, alias.alias_label
        ),
        Target::Device(d) => format!("device_id {d:?}"),
        Target::Email { email, .. } => format!("email {email:?}"),
        Target::Phone { phone, .. } => format!("phone {phone:?}"),
        Target::BrazeId(uid) => format!("braze_id (profile id {uid})"),
    }
}

/// Applies attributes, then events, then purchases (SPEC §4). An object
/// whose profile does not exist and may not be created is skipped and
/// reported in `errors`, and so is an attributes object that would take its
/// profile over `attributes_per_profile` or one of its arrays over
/// `array_items` (checked against the profile as earlier objects of the
/// same request left it; a skipped object creates nothing and changes
/// nothing). Errors name the object's position in `t`.
pub fn apply_track(store: &mut ProfileStore, t: &Track, limits: &LimitsConfig) -> TrackReport {
    let mut report = TrackReport::default();
    for (pos, obj) in t.attributes.iter().enumerate() {
        let plan = match plan(store, &obj.target) {
            Ok(p) => p,
            Err(e) => {
                report
                    .errors
                    .push(ObjectError::new(InputArray::Attributes, pos, e));
                continue;
            }
        };
        if let Err(e) = store.check_attribute_changes(plan.existing(), &obj.changes, limits) {
            report
                .errors
                .push(ObjectError::new(InputArray::Attributes, pos, e.to_string()));
            continue;
        }
        let uid = execute(store, &obj.target, plan);
        store.update_attributes(uid, &obj.changes);
        store.touch(uid);
        report.attributes_processed += 1;
        report.updated.push(uid);
    }
    for (array, list, name_override, counter) in [
        (
            InputArray::Events,
            &t.events,
            None,
            &mut report.events_processed,
        ),
        (
            InputArray::Purchases,
            &t.purchases,
            Some(PURCHASE_EVENT),
            &mut report.purchases_processed,
        ),
    ] {
        for (pos, ev) in list.iter().enumerate() {
            match plan(store, &ev.target) {
                Ok(p) => {
                    let uid = execute(store, &ev.target, p);
                    store.record_event(uid, name_override.unwrap_or(&ev.name), ev.time);
                    store.touch(uid);
                    *counter += 1;
                    report.recorded.push(Recorded {
                        array,
                        index: pos,
                        uid,
                    });
                }
                Err(e) => report.errors.push(ObjectError::new(array, pos, e)),
            }
        }
    }
    report
}

/// The error of an object skipped under `_update_existing_only`.
fn no_user(target: &Target) -> String {
    format!("no user with {} (_update_existing_only)", describe(target))
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
    pub merges: Vec<Merge>,
    pub errors: Vec<ObjectError>,
}

/// A profile folded into another by `/users/identify`.
#[derive(Clone, Debug, PartialEq)]
pub struct Merge {
    pub from: Uid,
    pub into: Uid,
    /// The merged profile's first device before the merge (it is
    /// anonymous: this and its id are what named it).
    pub from_device: Option<CompactString>,
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
    let mut record = |r: Result<Identified, IdentifyError>, device, array, pos| match r {
        Ok(done) => {
            if let Identified::Merged { from, into } = done {
                report.merges.push(Merge {
                    from,
                    into,
                    from_device: device,
                });
            }
            true
        }
        Err(e) => {
            report
                .errors
                .push(ObjectError::new(array, pos, e.to_string()));
            false
        }
    };
    let (mut aliases, mut devices) = (0, 0);
    let first_device = |store: &ProfileStore, uid: Option<Uid>| {
        uid.and_then(|u| store.get(u))
            .and_then(|p| p.devices().first().cloned())
    };
    for (pos, (ext, alias)) in req.aliases.iter().enumerate() {
        let device = first_device(store, store.by_alias(alias));
        aliases += u32::from(record(
            store.identify_alias(ext, alias, limits),
            device,
            InputArray::AliasesToIdentify,
            pos,
        ));
    }
    for (pos, (ext, device)) in req.devices.iter().enumerate() {
        let first = first_device(store, store.by_device(device));
        devices += u32::from(record(
            store.identify_device(ext, device, limits),
            first,
            InputArray::DevicesToIdentify,
            pos,
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
    pub errors: Vec<ObjectError>,
}

pub fn apply_new_aliases(store: &mut ProfileStore, req: &NewAliases) -> AliasReport {
    let mut report = AliasReport::default();
    for (pos, (ext, alias)) in req.0.iter().enumerate() {
        match store.add_alias(ext.as_deref(), alias) {
            Ok(_) => report.aliases_processed += 1,
            Err(e) => report.errors.push(ObjectError::new(
                InputArray::UserAliases,
                pos,
                e.to_string(),
            )),
        }
    }
    report
}

/// What a `/users/delete` did: only entries refused as malformed are
/// errors (an identifier that names nobody deletes nothing).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteReport {
    pub deleted: u32,
    pub errors: Vec<ObjectError>,
}

/// `/users/delete`: removes the profiles these identifiers name (an external
/// id, an alias, a device id of an anonymous profile, a braze_id, and
/// *every* profile holding an email or phone). Returns the ids deleted, so
/// that every cohort drops them; `seen` is shown each profile just before
/// it goes.
pub fn apply_delete(
    store: &mut ProfileStore,
    ids: &[Identifier],
    mut seen: impl FnMut(Uid, &super::Profile),
) -> Vec<Uid> {
    let mut gone = Vec::new();
    for id in ids {
        for uid in store.named(id) {
            if let Some(p) = store.get(uid) {
                seen(uid, p);
            }
            if store.delete(uid) {
                gone.push(uid);
            }
        }
    }
    gone
}

// ---- per-object errors, and where an object came from in the request ----

/// The arrays of users API requests, as `errors[].input_array` names them.
/// The order is the order errors are listed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InputArray {
    Attributes,
    Events,
    Purchases,
    AliasesToIdentify,
    DevicesToIdentify,
    ExternalIds,
    UserAliases,
    DeviceIds,
    BrazeIds,
    EmailAddresses,
    PhoneNumbers,
}

impl InputArray {
    /// The request key of the array.
    pub fn name(self) -> &'static str {
        match self {
            InputArray::Attributes => "attributes",
            InputArray::Events => "events",
            InputArray::Purchases => "purchases",
            InputArray::AliasesToIdentify => "aliases_to_identify",
            InputArray::DevicesToIdentify => "devices_to_identify",
            InputArray::ExternalIds => "external_ids",
            InputArray::UserAliases => "user_aliases",
            InputArray::DeviceIds => "device_ids",
            InputArray::BrazeIds => "braze_ids",
            InputArray::EmailAddresses => "email_addresses",
            InputArray::PhoneNumbers => "phone_numbers",
        }
    }
}

/// One object of a request that was skipped (Braze's non-fatal error):
/// `{"type": message, "input_array": array, "index": index}` on the wire.
/// `index` is the object's index in the request's array, except in an
/// apply's report, where it is the position in the command until
/// [`Origins::resolve`] maps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectError {
    pub array: InputArray,
    pub index: usize,
    pub message: String,
}

impl ObjectError {
    pub fn new(array: InputArray, index: usize, message: impl Into<String>) -> ObjectError {
        ObjectError {
            array,
            index,
            message: message.into(),
        }
    }
}

/// A users API command being built from a request: the objects that can
/// be applied (`command`), and [`Origins`], which knows the request index
/// of each and holds the objects refused so far.
#[derive(Debug)]
pub struct Batch<C> {
    pub command: C,
    origins: Origins,
}

/// Where the objects of a command came from in the request, and the
/// objects left out of it, with their errors.
#[derive(Debug, Default)]
pub struct Origins {
    /// Per array, the request index of each object the command holds, in
    /// command order.
    kept: BTreeMap<InputArray, Vec<usize>>,
    /// By request index.
    refused: Vec<ObjectError>,
}

impl<C: Default> Default for Batch<C> {
    fn default() -> Self {
        Batch::new(C::default())
    }
}

impl<C> Batch<C> {
    pub fn new(command: C) -> Batch<C> {
        Batch {
            command,
            origins: Origins::default(),
        }
    }

    /// Object `index` of `array` in the request: pushed onto the command
    /// with `push` when it parsed, refused with its error when not.
    pub fn add<T>(
        &mut self,
        array: InputArray,
        index: usize,
        parsed: Result<T, String>,
        push: impl FnOnce(&mut C, T),
    ) {
        match parsed {
            Ok(object) => {
                push(&mut self.command, object);
                self.origins.kept.entry(array).or_default().push(index);
            }
            Err(message) => self.refuse(array, index, message),
        }
    }

    /// Object `index` of `array` in the request is refused.
    pub fn refuse(&mut self, array: InputArray, index: usize, message: impl Into<String>) {
        self.origins
            .refused
            .push(ObjectError::new(array, index, message));
    }

    /// Keeps the objects of `array` (the command's list `list`) that pass
    /// `check`, and refuses the others.
    pub fn retain<T>(
        &mut self,
        array: InputArray,
        list: impl FnOnce(&mut C) -> &mut Vec<T>,
        mut check: impl FnMut(&T) -> Result<(), String>,
    ) {
        let list = list(&mut self.command);
        let kept = self.origins.kept.entry(array).or_default();
        debug_assert_eq!(list.len(), kept.len(), "{array:?}: one origin per object");
        let (mut pos, mut refused) = (0, Vec::new());
        list.retain(|object| {
            let ok = match check(object) {
                Ok(()) => true,
                Err(message) => {
                    refused.push((pos, message));
                    false
                }
            };
            pos += 1;
            ok
        });
        for (pos, message) in refused.into_iter().rev() {
            let index = kept.remove(pos);
            self.origins
                .refused
                .push(ObjectError::new(array, index, message));
        }
    }

    /// The command, and what is needed to report on it.
    pub fn split(self) -> (C, Origins) {
        (self.command, self.origins)
    }
}

impl Origins {
    /// Every error of the request: the objects refused before it applied,
    /// and `applied` (an apply's report, by position in the command),
    /// mapped to request indexes; ordered by array, then index.
    pub fn resolve(self, applied: Vec<ObjectError>) -> Vec<ObjectError> {
        let mut errors = self.refused;
        for mut e in applied {
            let index = self.kept.get(&e.array).and_then(|kept| kept.get(e.index));
            debug_assert!(index.is_some(), "an apply reports objects of its command");
            e.index = index.copied().unwrap_or(e.index);
            errors.push(e);
        }
        errors.sort_by_key(|e| (e.array, e.index));
        errors
    }
}

/// What every users API command has: whether it holds anything to apply
/// (a command with nothing left is not logged).
pub trait Objects {
    fn is_empty(&self) -> bool;
}

impl Objects for Track {
    fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.events.is_empty() && self.purchases.is_empty()
    }
}

impl Objects for Identify {
    fn is_empty(&self) -> bool {
        self.aliases.is_empty() && self.devices.is_empty()
    }
}

impl Objects for NewAliases {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Objects for Vec<Identifier> {
    fn is_empty(&self) -> bool {
        <[Identifier]>::is_empty(self)
    }
}

/// What every users API report has: its per-object errors.
pub trait Report: Default {
    fn errors_mut(&mut self) -> &mut Vec<ObjectError>;
}

macro_rules! reports {
    ($($ty:ty),*) => {$(
        impl Report for $ty {
            fn errors_mut(&mut self) -> &mut Vec<ObjectError> {
                &mut self.errors
            }
        }
    )*};
}

reports!(TrackReport, IdentifyReport, AliasReport, DeleteReport);

// ---- the limits an object is checked against before it is applied ----

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

/// The identifier strings of a target, each with its place in the object.
fn check_target(limits: &LimitsConfig, target: &Target) -> Result<(), Exceeded> {
    match target {
        Target::External { id, .. } => check_str(limits, id, || "external_id".into()),
        Target::Alias { alias, .. } => check_alias(limits, alias, "user_alias."),
        Target::Device(d) => check_str(limits, d, || "device_id".into()),
        Target::Email { email, .. } => check_str(limits, email, || "email".into()),
        Target::Phone { .. } | Target::BrazeId(_) => Ok(()),
        Target::ExternalWith { id, .. } => check_str(limits, id, || "external_id".into()),
    }
}

fn check_alias(limits: &LimitsConfig, alias: &Alias, prefix: &str) -> Result<(), Exceeded> {
    check_str(limits, &alias.alias_name, || format!("{prefix}alias_name"))?;
    check_str(limits, &alias.alias_label, || {
        format!("{prefix}alias_label")
    })
}

/// The limits one `/users/track` attributes object is held to whatever
/// the state: every string within `string_bytes`, every array value and
/// add/remove list within `array_items`, and no more attribute changes
/// than `attributes_per_profile` (it could never fit a profile). The first
/// one over names its place in the object (`tags`, `tags.add[2]`).
pub fn check_attributes(obj: &AttributesObject, limits: &LimitsConfig) -> Result<(), Exceeded> {
    check_target(limits, &obj.target)?;
    Exceeded::check(
        Limit::AttributesPerProfile,
        limits.attributes_per_profile,
        obj.changes.len(),
        || "this object".into(),
    )?;
    for (name, change) in &obj.changes {
        check_str(limits, name, || "an attribute name".into())?;
        let here = || super::short(name);
        match change {
            AttrUpdate::Set(AttrValue::Str(v)) => check_str(limits, v, here)?,
            AttrUpdate::Set(AttrValue::Time { text, .. }) => check_str(limits, text, here)?,
            AttrUpdate::Set(AttrValue::Array(items)) => check_items(limits, items, &here())?,
            AttrUpdate::Set(v @ (AttrValue::Object(_) | AttrValue::Objects(_))) => {
                check_nested(limits, v, &here(), 0)?
            }
            AttrUpdate::ArrayEdit { add, remove } => {
                check_items(limits, add, &format!("{}.add", here()))?;
                check_items(limits, remove, &format!("{}.remove", here()))?;
            }
            AttrUpdate::Set(
                AttrValue::Num(_) | AttrValue::Bool(_) | AttrValue::Location { .. },
            )
            | AttrUpdate::Remove
            | AttrUpdate::Increment(_) => {}
        }
    }
    Ok(())
}

/// A nested value at `at`, inside `levels` objects: at most
/// `nesting_depth` object levels (an array of objects is the level of its
/// objects), `object_keys` keys per object, `array_items` objects per array
/// and items per string array, every key and string within `string_bytes`.
fn check_nested(
    limits: &LimitsConfig,
    v: &AttrValue,
    at: &str,
    levels: usize,
) -> Result<(), Exceeded> {
    let object = |o: &super::AttrObject, at: &str| -> Result<(), Exceeded> {
        Exceeded::check(
            Limit::NestingDepth,
            limits.nesting_depth,
            levels + 1,
            || at.to_string(),
        )?;
        Exceeded::check(Limit::ObjectKeys, limits.object_keys, o.len(), || {
            at.to_string()
        })?;
        for (k, v) in o {
            let here = format!("{at}.{}", super::short(k));
            check_str(limits, k, || format!("a key of {at}"))?;
            check_nested(limits, v, &here, levels + 1)?;
        }
        Ok(())
    };
    match v {
        AttrValue::Str(s) | AttrValue::Time { text: s, .. } => check_str(limits, s, || at.into()),
        AttrValue::Array(items) => check_items(limits, items, at),
        AttrValue::Object(o) => object(o, at),
        AttrValue::Objects(list) => {
            Exceeded::check(Limit::ArrayItems, limits.array_items, list.len(), || {
                at.to_string()
            })?;
            list.iter()
                .enumerate()
                .try_for_each(|(i, o)| object(o, &format!("{at}[{i}]")))
        }
        AttrValue::Num(_) | AttrValue::Bool(_) | AttrValue::Location { .. } => Ok(()),
    }
}

/// One event or purchase: its identifier and its name (`name_key`: the
/// field the name came from) within `string_bytes`.
pub fn check_event(
    ev: &EventObject,
    name_key: &str,
    limits: &LimitsConfig,
) -> Result<(), Exceeded> {
    check_target(limits, &ev.target)?;
    check_str(limits, &ev.name, || name_key.into())
}

/// The request limits of `/users/track`, per object: an object over one is
/// refused, the others stay.
pub fn check_track(batch: &mut Batch<Track>, limits: &LimitsConfig) {
    let over = |r: Result<(), Exceeded>| r.map_err(|e| e.to_string());
    batch.retain(
        InputArray::Attributes,
        |t| &mut t.attributes,
        |o| over(check_attributes(o, limits)),
    );
    batch.retain(
        InputArray::Events,
        |t| &mut t.events,
        |e| over(check_event(e, "name", limits)),
    );
    batch.retain(
        InputArray::Purchases,
        |t| &mut t.purchases,
        |e| over(check_event(e, "product_id", limits)),
    );
}

/// `/users/identify`: every identifier of an entry within `string_bytes`.
pub fn check_identify(batch: &mut Batch<Identify>, limits: &LimitsConfig) {
    batch.retain(
        InputArray::AliasesToIdentify,
        |r| &mut r.aliases,
        |(ext, alias)| {
            check_str(limits, ext, || "external_id".into())
                .and_then(|()| check_alias(limits, alias, "user_alias."))
                .map_err(|e| e.to_string())
        },
    );
    batch.retain(
        InputArray::DevicesToIdentify,
        |r| &mut r.devices,
        |(ext, device)| {
            check_str(limits, ext, || "external_id".into())
                .and_then(|()| check_str(limits, device, || "device_id".into()))
                .map_err(|e| e.to_string())
        },
    );
}

/// `/users/alias/new`: every identifier of an entry within `string_bytes`.
pub fn check_new_aliases(batch: &mut Batch<NewAliases>, limits: &LimitsConfig) {
    batch.retain(
        InputArray::UserAliases,
        |r| &mut r.0,
        |(ext, alias)| {
            ext.as_deref()
                .map_or(Ok(()), |e| check_str(limits, e, || "external_id".into()))
                .and_then(|()| check_alias(limits, alias, ""))
                .map_err(|e| e.to_string())
        },
    );
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
                properties: None,
                currency: None,
                price: None,
            }],
            purchases: vec![EventObject {
                target: ext("u1", true),
                name: "sku".into(),
                time: 9,
                properties: None,
                currency: None,
                price: None,
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
        assert_eq!(p.events().get("open").unwrap().count, 1);
        assert_eq!(p.events().get(PURCHASE_EVENT).unwrap().last, 9);
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
        assert_eq!((r.merges[0].from, r.merges[0].into), (1, 0));
        assert_eq!(r.merges.len(), 1);
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
        let at: Vec<(InputArray, usize)> = r.errors.iter().map(|e| (e.array, e.index)).collect();
        assert_eq!(
            at,
            [
                (InputArray::Attributes, 1),
                (InputArray::Attributes, 2),
                (InputArray::Attributes, 4)
            ],
            "positions in the command"
        );
        assert_eq!(r.errors[0].message, "the profile after this object: 3 attributes, over the limit of 2 (limits.attributes_per_profile in config.toml)");
        assert!(
            r.errors[2].message.contains("limits.array_items"),
            "{}",
            r.errors[2].message
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
            u2.attributes().get("tags").unwrap(),
            AttrValue::Array(vec!["x".into(), "y".into()])
        );
    }

    #[test]
    fn object_checks_name_the_first_place_over_a_limit() {
        let limits = LimitsConfig {
            string_bytes: 4,
            array_items: 2,
            attributes_per_profile: 2,
            ..LimitsConfig::default()
        };
        let obj = |target: Target, changes: Vec<(&str, AttrUpdate)>| AttributesObject {
            target,
            changes: changes.into_iter().map(|(n, c)| (n.into(), c)).collect(),
        };
        let cases = [
            (obj(ext("u12345", true), vec![]), "external_id: 6 bytes"),
            (
                obj(
                    Target::Alias {
                        alias: Alias::new("n", "label"),
                        create: true,
                    },
                    vec![],
                ),
                "user_alias.alias_label: 5 bytes",
            ),
            (
                obj(
                    ext("u", true),
                    vec![("plan", AttrUpdate::Set(AttrValue::Str("golden".into())))],
                ),
                "plan: 6 bytes",
            ),
            (
                obj(ext("u", true), vec![("plans", AttrUpdate::Remove)]),
                "an attribute name: 5 bytes",
            ),
            (
                obj(
                    ext("u", true),
                    vec![("t", AttrUpdate::Set(AttrValue::Array(vec!["a".into(); 3])))],
                ),
                "t: 3 items",
            ),
            (
                obj(
                    ext("u", true),
                    vec![("t", AttrUpdate::Set(AttrValue::Array(vec!["abcde".into()])))],
                ),
                "t[0]: 5 bytes",
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
                "t.remove: 3 items",
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
                "this object: 3 attributes",
            ),
        ];
        for (o, says) in cases {
            let e = check_attributes(&o, &limits).expect_err(says).to_string();
            assert!(e.starts_with(says), "{e} should start with {says}");
        }
        let ev = EventObject {
            target: Target::Device("d".into()),
            name: "opened".into(),
            time: 0,
            properties: None,
            currency: None,
            price: None,
        };
        let e = check_event(&ev, "name", &limits).unwrap_err().to_string();
        assert!(e.starts_with("name: 6 bytes"), "{e}");
        assert!(check_attributes(
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
    fn a_batch_keeps_request_indexes_through_refusals_and_the_apply() {
        let limits = LimitsConfig {
            string_bytes: 4,
            ..LimitsConfig::default()
        };
        let attrs = |id: &str| AttributesObject {
            target: ext(id, true),
            changes: vec![],
        };
        // Request: attributes [ok, malformed, too long, ghost, ok].
        let mut batch = Batch::<Track>::default();
        batch.add(InputArray::Attributes, 0, Ok(attrs("a")), |t, o| {
            t.attributes.push(o)
        });
        batch.add::<AttributesObject>(InputArray::Attributes, 1, Err("bad".into()), |t, o| {
            t.attributes.push(o)
        });
        batch.add(InputArray::Attributes, 2, Ok(attrs("long-id")), |t, o| {
            t.attributes.push(o)
        });
        let ghost = AttributesObject {
            target: ext("g", false),
            changes: vec![],
        };
        batch.add(InputArray::Attributes, 3, Ok(ghost), |t, o| {
            t.attributes.push(o)
        });
        batch.add(InputArray::Attributes, 4, Ok(attrs("b")), |t, o| {
            t.attributes.push(o)
        });
        check_track(&mut batch, &limits);
        let (track, origins) = batch.split();
        assert_eq!(track.attributes.len(), 3, "a, ghost, b");
        let mut s = ProfileStore::new();
        let r = apply_track(&mut s, &track, &limits);
        assert_eq!(r.attributes_processed, 2);
        let errors = origins.resolve(r.errors);
        let at: Vec<(usize, &str)> = errors
            .iter()
            .map(|e| (e.index, e.message.as_str()))
            .collect();
        assert_eq!(
            at,
            [
                (1, "bad"),
                (
                    2,
                    "external_id: 7 bytes, over the limit of 4 (limits.string_bytes in config.toml)"
                ),
                (3, "no user with external_id \"g\" (_update_existing_only)"),
            ]
        );
    }

    #[test]
    fn delete_returns_what_it_removed() {
        let mut s = ProfileStore::new();
        s.upsert_external("u1", true);
        let mut seen = Vec::new();
        let gone = apply_delete(
            &mut s,
            &[
                Identifier::External("u1".into()),
                Identifier::External("u1".into()),
            ],
            |uid, p| seen.push((uid, p.external_id.clone())),
        );
        assert_eq!(gone, vec![0]);
        assert_eq!(
            seen,
            vec![(0, Some("u1".into()))],
            "shown once, before it went"
        );
    }
}
