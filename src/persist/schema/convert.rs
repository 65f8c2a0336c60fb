//! The current version's types ⇄ the live domain types.
//!
//! Only the current version converts to and from the domain: older versions
//! are first migrated up (`super::migrate`). Writing borrows the live state
//! where it is big (a delta's identifiers, a workspace's profiles) through
//! `ChangesOut` and `ProfilesOut`, whose serde output is byte-for-byte the
//! shape the reader's owned types decode.

use compact_str::CompactString;
use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

use super::index::{IndexOut, IntoColumns};
use super::v5;
use super::v8 as cur;
use super::{Error, Result};
use crate::engine::cohort::{CohortImage, CohortMeta, ImportRecord};
use crate::engine::state::{Connector, Image, ImportKey, SegmentImage, WorkspaceImage};
use crate::engine::Command;
use crate::keys::KeyHash;
use crate::limits::StateLimits;
use crate::model::{self, Alias, CohortKey, Identifier, WorkspaceId};
use crate::profiles::commands::{
    AttributesObject, Contact, EventObject, Identify, NewAliases, Target, Track,
};
use crate::profiles::{
    AttrObject, AttrUpdate, AttrValue, Attrs, Details, EventStats, Events, Profile, ProfileImage,
};
use crate::segment::{AttrCond, Bound, EventCond, Filter, Instant, Pattern, Scalar};

fn s(v: &str) -> String {
    v.to_owned()
}

fn cs(v: String) -> CompactString {
    CompactString::from(v)
}

// ---- writing: domain → current ----

/// A delta's changes, encoded from the live command without a copy.
pub struct ChangesOut<'a>(&'a [model::Change]);

struct IdentifierOut<'a>(&'a Identifier);

impl Serialize for IdentifierOut<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        // Variant indices and names of `v5::Identifier`.
        match self.0 {
            Identifier::External(e) => {
                ser.serialize_newtype_variant("Identifier", 0, "External", e.as_str())
            }
            Identifier::Alias(a) => {
                ser.serialize_newtype_variant("Identifier", 1, "Alias", &alias_out(a))
            }
            Identifier::Device(d) => {
                ser.serialize_newtype_variant("Identifier", 2, "Device", d.as_str())
            }
            Identifier::Email(e) => {
                ser.serialize_newtype_variant("Identifier", 3, "Email", e.as_str())
            }
            Identifier::Phone(p) => {
                ser.serialize_newtype_variant("Identifier", 4, "Phone", p.as_str())
            }
            Identifier::BrazeId(u) => ser.serialize_newtype_variant("Identifier", 5, "BrazeId", u),
        }
    }
}

struct ChangeOut<'a>(&'a model::Change);

impl Serialize for ChangeOut<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        // Fields of `v1::Change`, in order.
        let mut st = ser.serialize_struct("Change", 2)?;
        st.serialize_field("remove", &self.0.remove)?;
        st.serialize_field("ids", &Seq(self.0.ids.iter().map(IdentifierOut)))?;
        st.end()
    }
}

impl Serialize for ChangesOut<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        Seq(self.0.iter().map(ChangeOut)).serialize(ser)
    }
}

/// A sequence of known length serialised from an iterator (bincode needs
/// the length first).
pub(super) struct Seq<I>(pub(super) I);

impl<I, T> Serialize for Seq<I>
where
    I: ExactSizeIterator<Item = T> + Clone,
    T: Serialize,
{
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = ser.serialize_seq(Some(self.0.len()))?;
        for item in self.0.clone() {
            seq.serialize_element(&item)?;
        }
        seq.end()
    }
}

/// A workspace's profiles, encoded from the store's image one profile at a
/// time (a snapshot never holds a second copy of every profile).
pub struct ProfilesOut(ProfileImage);

impl Serialize for ProfilesOut {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        struct List<'a>(&'a ProfileImage);
        impl Serialize for List<'_> {
            fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
                let mut seq = ser.serialize_seq(Some(self.0.len() as usize))?;
                let mut gaps = cur::Gaps::default();
                for (uid, p) in self.0.iter() {
                    seq.serialize_element(&(gaps.gap(uid), profile_out(p)))?;
                }
                seq.end()
            }
        }
        // Fields of `v2::Profiles`, in order.
        let mut st = ser.serialize_struct("Profiles", 2)?;
        st.serialize_field("id_bound", &self.0.id_bound())?;
        st.serialize_field("list", &List(&self.0))?;
        st.end()
    }
}

fn alias_out(a: &Alias) -> cur::Alias {
    cur::Alias {
        alias_name: s(&a.alias_name),
        alias_label: s(&a.alias_label),
    }
}

fn key_out(k: &CohortKey) -> cur::CohortKey {
    cur::CohortKey {
        partner: s(&k.partner),
        cohort_id: s(&k.cohort_id),
    }
}

fn identifier_out(id: &Identifier) -> cur::Identifier {
    match id {
        Identifier::External(e) => cur::Identifier::External(s(e)),
        Identifier::Alias(a) => cur::Identifier::Alias(alias_out(a)),
        Identifier::Device(d) => cur::Identifier::Device(s(d)),
        Identifier::Email(e) => cur::Identifier::Email(s(e)),
        Identifier::Phone(p) => cur::Identifier::Phone(s(p)),
        Identifier::BrazeId(u) => cur::Identifier::BrazeId(*u),
    }
}

fn import_key_out(k: &ImportKey) -> cur::ImportKey {
    cur::ImportKey {
        key_id: k.key_id.clone(),
        partner: s(&k.partner),
        hash: k.hash.0,
        masked: k.masked.clone(),
        created_at: k.created_at,
    }
}

fn value_out(v: &AttrValue) -> cur::AttrValue {
    match v {
        AttrValue::Str(x) => cur::AttrValue::Str(s(x)),
        AttrValue::Num(n) => cur::AttrValue::Num(*n),
        AttrValue::Bool(b) => cur::AttrValue::Bool(*b),
        AttrValue::Time { text, at } => cur::AttrValue::Time {
            text: s(text),
            at: *at,
        },
        AttrValue::Array(items) => cur::AttrValue::Array(items.iter().map(|i| s(i)).collect()),
        AttrValue::Object(o) => cur::AttrValue::Object(object_out(o)),
        AttrValue::Objects(list) => cur::AttrValue::Objects(list.iter().map(object_out).collect()),
        AttrValue::Location {
            latitude,
            longitude,
        } => cur::AttrValue::Location {
            latitude: *latitude,
            longitude: *longitude,
        },
    }
}

fn object_out(o: &AttrObject) -> cur::Object {
    o.iter().map(|(k, v)| (s(k), value_out(v))).collect()
}

fn update_out(u: &AttrUpdate) -> cur::AttrUpdate {
    match u {
        AttrUpdate::Set(v) => cur::AttrUpdate::Set(value_out(v)),
        AttrUpdate::Remove => cur::AttrUpdate::Remove,
        AttrUpdate::Increment(n) => cur::AttrUpdate::Increment(*n),
        AttrUpdate::ArrayEdit { add, remove } => cur::AttrUpdate::ArrayEdit {
            add: add.iter().map(|i| s(i)).collect(),
            remove: remove.iter().map(|i| s(i)).collect(),
        },
    }
}

fn target_out(t: &Target) -> cur::Target {
    match t {
        Target::External { id, create } => cur::Target::External {
            id: s(id),
            create: *create,
        },
        Target::Alias { alias, create } => cur::Target::Alias {
            alias: alias_out(alias),
            create: *create,
        },
        Target::Device(d) => cur::Target::Device(s(d)),
        Target::Email { email, create } => cur::Target::Email {
            email: s(email),
            create: *create,
        },
        Target::Phone { phone, create } => cur::Target::Phone {
            phone: s(phone),
            create: *create,
        },
        Target::BrazeId(u) => cur::Target::BrazeId(*u),
        Target::ExternalWith {
            id,
            create,
            braze_id,
            contact,
        } => cur::Target::ExternalWith {
            id: s(id),
            create: *create,
            braze_id: *braze_id,
            contact: contact.as_ref().map(|c| match c {
                Contact::Email(e) => cur::Contact::Email(s(e)),
                Contact::Phone(p) => cur::Contact::Phone(s(p)),
            }),
        },
    }
}

fn event_out(e: &EventObject) -> cur::EventObject {
    cur::EventObject {
        target: target_out(&e.target),
        name: s(&e.name),
        time: e.time,
        properties: e.properties.as_deref().map(str::to_string),
        currency: e.currency.as_deref().map(s),
        price: e.price,
    }
}

fn connector_out(c: &Connector) -> cur::Connector {
    cur::Connector {
        id: c.id.clone(),
        name: c.name.clone(),
        url: c.url.clone(),
        bearer_token: c.bearer_token.clone(),
        event_types: c
            .event_types
            .as_ref()
            .map(|t| t.iter().map(|t| t.code()).collect()),
        created_at: c.created_at,
        start_after: c.start_after,
    }
}

fn track_out(t: &Track) -> cur::Track {
    cur::Track {
        attributes: t
            .attributes
            .iter()
            .map(|o| cur::AttributesObject {
                target: target_out(&o.target),
                changes: o
                    .changes
                    .iter()
                    .map(|(k, u)| (s(k), update_out(u)))
                    .collect(),
            })
            .collect(),
        events: t.events.iter().map(event_out).collect(),
        purchases: t.purchases.iter().map(event_out).collect(),
    }
}

fn instant_out(i: &Instant) -> cur::Instant {
    cur::Instant {
        text: s(&i.text),
        at: i.at,
    }
}

fn scalar_out(v: &Scalar) -> cur::Scalar {
    match v {
        Scalar::Str(x) => cur::Scalar::Str(s(x)),
        Scalar::Num(n) => cur::Scalar::Num(*n),
        Scalar::Bool(b) => cur::Scalar::Bool(*b),
    }
}

fn bound_out(b: &Bound) -> cur::Bound {
    match b {
        Bound::Num(n) => cur::Bound::Num(*n),
        Bound::Time(i) => cur::Bound::Time(instant_out(i)),
    }
}

fn filter_out(f: &Filter) -> cur::Filter {
    match f {
        Filter::And(all) => cur::Filter::And(all.iter().map(filter_out).collect()),
        Filter::Or(any) => cur::Filter::Or(any.iter().map(filter_out).collect()),
        Filter::Not(inner) => cur::Filter::Not(Box::new(filter_out(inner))),
        Filter::All => cur::Filter::All,
        Filter::Cohort(k) => cur::Filter::Cohort(key_out(k)),
        Filter::Attribute { name, cond } => cur::Filter::Attribute {
            name: s(name),
            cond: match cond {
                AttrCond::Equals(v) => cur::AttrCond::Equals(scalar_out(v)),
                AttrCond::NotEquals(v) => cur::AttrCond::NotEquals(scalar_out(v)),
                AttrCond::MatchesRegex(p) => cur::AttrCond::MatchesRegex(s(p.as_str())),
                AttrCond::DoesNotMatchRegex(p) => cur::AttrCond::DoesNotMatchRegex(s(p.as_str())),
                AttrCond::Exists => cur::AttrCond::Exists,
                AttrCond::DoesNotExist => cur::AttrCond::DoesNotExist,
                AttrCond::GreaterThan(b) => cur::AttrCond::GreaterThan(bound_out(b)),
                AttrCond::LessThan(b) => cur::AttrCond::LessThan(bound_out(b)),
                AttrCond::IncludesValue(v) => cur::AttrCond::IncludesValue(s(v)),
                AttrCond::WithinKm {
                    latitude,
                    longitude,
                    km,
                } => cur::AttrCond::WithinKm {
                    latitude: *latitude,
                    longitude: *longitude,
                    km: *km,
                },
            },
        },
        Filter::Event { name, cond } => cur::Filter::Event {
            name: s(name),
            cond: match cond {
                EventCond::MoreThan(n) => cur::EventCond::MoreThan(*n),
                EventCond::LessThan(n) => cur::EventCond::LessThan(*n),
                EventCond::Exactly(n) => cur::EventCond::Exactly(*n),
                EventCond::LastPerformedAfter(i) => {
                    cur::EventCond::LastPerformedAfter(instant_out(i))
                }
                EventCond::LastPerformedBefore(i) => {
                    cur::EventCond::LastPerformedBefore(instant_out(i))
                }
            },
        },
    }
}

/// A live profile in the shape of `v6::Profile`, borrowed: its packed
/// attributes and events are written as they are held.
fn profile_out(p: &Profile) -> ProfileOut<'_> {
    ProfileOut {
        external_id: p.external_id.as_deref(),
        details: p.details_if_any().map(|d| DetailsOut {
            aliases: AliasesOut(&d.aliases),
            devices: &d.devices,
            attributes: BytesOut(d.attributes.as_bytes()),
            events: BytesOut(d.events.as_bytes()),
        }),
    }
}

/// A live profile as an owned `v6::Profile` (migrations, tests; snapshots
/// write `profile_out`, which spells the same bytes).
pub(super) fn packed_profile(p: &Profile) -> cur::Profile {
    cur::Profile {
        external_id: p.external_id.as_deref().map(s),
        details: p.details_if_any().map(|d| cur::Details {
            aliases: d.aliases.iter().map(alias_out).collect(),
            devices: d.devices.iter().map(|x| s(x)).collect(),
            attributes: cur::Packed(d.attributes.as_bytes().to_vec()),
            events: cur::Packed(d.events.as_bytes().to_vec()),
        }),
    }
}

#[derive(Serialize)]
struct ProfileOut<'a> {
    external_id: Option<&'a str>,
    details: Option<DetailsOut<'a>>,
}

#[derive(Serialize)]
struct DetailsOut<'a> {
    aliases: AliasesOut<'a>,
    devices: &'a [CompactString],
    attributes: BytesOut<'a>,
    events: BytesOut<'a>,
}

/// Aliases as a sequence of `v4::Alias` (two strings each).
struct AliasesOut<'a>(&'a [Alias]);

impl Serialize for AliasesOut<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = ser.serialize_seq(Some(self.0.len()))?;
        for a in self.0 {
            seq.serialize_element(&(a.alias_name.as_str(), a.alias_label.as_str()))?;
        }
        seq.end()
    }
}

/// Bytes as `v6::Packed` writes them.
struct BytesOut<'a>(&'a [u8]);

impl Serialize for BytesOut<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> std::result::Result<S::Ok, S::Error> {
        ser.serialize_bytes(self.0)
    }
}

fn cohort_out(c: &CohortImage) -> cur::CohortImage {
    cur::CohortImage {
        key: key_out(&c.key),
        meta: cur::CohortMeta {
            name: c.meta.name.clone(),
            created_at: c.meta.created_at,
            named: c.meta.named,
            updated_at: c.meta.updated_at,
        },
        members: c.members.clone(),
        history: c
            .history
            .iter()
            .map(|r| cur::ImportRecord {
                at: r.at,
                added: r.added,
                removed: r.removed,
                unmatched: r.unmatched,
                size: r.size,
            })
            .collect(),
    }
}

/// The record a command is logged as.
pub fn record_out(cmd: &Command) -> cur::Record<ChangesOut<'_>> {
    use cur::Record as R;
    match cmd {
        Command::CreateWorkspace { name, rest_key, at } => R::CreateWorkspace {
            name: name.clone(),
            rest_key: rest_key.0,
            at: *at,
        },
        Command::CreateImportKey { ws, key } => R::CreateImportKey {
            ws: ws.0,
            key: import_key_out(key),
        },
        Command::RevokeImportKey {
            ws,
            partner,
            key_id,
        } => R::RevokeImportKey {
            ws: ws.0,
            partner: s(partner),
            key_id: key_id.clone(),
        },
        Command::NameCohort {
            ws,
            key,
            name,
            created_at,
            at,
        } => R::NameCohort {
            ws: ws.0,
            key: key_out(key),
            name: name.clone(),
            created_at: *created_at,
            at: *at,
        },
        Command::ApplyDelta {
            ws,
            key,
            changes,
            at,
        } => R::ApplyDelta {
            ws: ws.0,
            key: key_out(key),
            changes: ChangesOut(changes),
            at: *at,
        },
        Command::Track { ws, track, at } => R::Track {
            ws: ws.0,
            track: track_out(track),
            at: *at,
        },
        Command::Identify { ws, identify, at } => R::Identify {
            at: *at,
            ws: ws.0,
            identify: cur::Identify {
                aliases: identify
                    .aliases
                    .iter()
                    .map(|(e, a)| (s(e), alias_out(a)))
                    .collect(),
                devices: identify.devices.iter().map(|(e, d)| (s(e), s(d))).collect(),
            },
        },
        Command::NewAliases { ws, aliases } => R::NewAliases {
            ws: ws.0,
            aliases: cur::NewAliases(
                aliases
                    .0
                    .iter()
                    .map(|(e, a)| (e.as_deref().map(s), alias_out(a)))
                    .collect(),
            ),
        },
        Command::DeleteUsers { ws, ids, at } => R::DeleteUsers {
            ws: ws.0,
            ids: ids.iter().map(identifier_out).collect(),
            at: *at,
        },
        Command::PutSegment {
            ws,
            id,
            name,
            filter,
        } => R::PutSegment {
            ws: ws.0,
            id: *id,
            name: name.clone(),
            filter: filter_out(filter),
        },
        Command::DeleteSegment { ws, id } => R::DeleteSegment { ws: ws.0, id: *id },
        Command::Restore {
            snapshot_id,
            format,
            image,
            keep_counters,
        } => R::Restore {
            snapshot_id: snapshot_id.clone(),
            format: *format,
            image: image.clone(),
            keep_counters: *keep_counters,
        },
        Command::SetLimits(l) => R::SetLimits(limits_out(l)),
        Command::PutConnector { ws, connector } => R::PutConnector {
            ws: ws.0,
            connector: connector_out(connector),
        },
        Command::DeleteConnector { ws, id } => R::DeleteConnector {
            ws: ws.0,
            id: id.clone(),
        },
    }
}

fn limits_out(l: &StateLimits) -> cur::StateLimits {
    cur::StateLimits {
        array_items: l.array_items,
        attributes_per_profile: l.attributes_per_profile,
        cohorts_per_workspace: l.cohorts_per_workspace,
        segments_per_workspace: l.segments_per_workspace,
    }
}

fn limits_in(l: cur::StateLimits) -> StateLimits {
    StateLimits {
        array_items: l.array_items,
        attributes_per_profile: l.attributes_per_profile,
        cohorts_per_workspace: l.cohorts_per_workspace,
        segments_per_workspace: l.segments_per_workspace,
    }
}

/// The payload a snapshot of `image` is written as. Cheap: the big parts
/// (profile tables, member sets) are shared, not copied.
pub fn image_out(image: &Image) -> cur::Image<ProfilesOut, Option<IndexOut>> {
    cur::Image {
        next_workspace: image.next_workspace,
        workspaces: image
            .workspaces
            .iter()
            .map(|w| cur::WorkspaceImage {
                id: w.id.0,
                name: w.name.clone(),
                created_at: w.created_at,
                rest_key: w.rest_key.0,
                index: w.profiles.columns().cloned().map(IndexOut),
                profiles: ProfilesOut(w.profiles.clone()),
                import_keys: w.import_keys.iter().map(import_key_out).collect(),
                segments: w
                    .segments
                    .iter()
                    .map(|sg| cur::Segment {
                        id: sg.id,
                        name: sg.name.clone(),
                        filter: filter_out(&sg.filter),
                        members: sg.members.as_deref().cloned(),
                    })
                    .collect(),
                last_segment: w.last_segment,
                cohorts: w.cohorts.iter().map(cohort_out).collect(),
                recency: w.profiles.recency().to_vec(),
                connectors: w.connectors.iter().map(connector_out).collect(),
            })
            .collect(),
        limits: image.limits.as_ref().map(limits_out),
    }
}

// ---- reading: current → domain ----

fn alias_in(a: cur::Alias) -> Alias {
    Alias {
        alias_name: cs(a.alias_name),
        alias_label: cs(a.alias_label),
    }
}

fn key_in(k: cur::CohortKey) -> CohortKey {
    CohortKey {
        partner: cs(k.partner),
        cohort_id: cs(k.cohort_id),
    }
}

fn identifier_in(id: cur::Identifier) -> Identifier {
    match id {
        cur::Identifier::External(e) => Identifier::External(cs(e)),
        cur::Identifier::Alias(a) => Identifier::Alias(alias_in(a)),
        cur::Identifier::Device(d) => Identifier::Device(cs(d)),
        cur::Identifier::Email(e) => Identifier::Email(cs(e)),
        cur::Identifier::Phone(p) => Identifier::Phone(cs(p)),
        cur::Identifier::BrazeId(u) => Identifier::BrazeId(u),
    }
}

fn import_key_in(k: cur::ImportKey) -> ImportKey {
    ImportKey {
        key_id: k.key_id,
        partner: cs(k.partner),
        hash: KeyHash(k.hash),
        masked: k.masked,
        created_at: k.created_at,
    }
}

fn value_in(v: cur::AttrValue) -> AttrValue {
    match v {
        cur::AttrValue::Str(x) => AttrValue::Str(cs(x)),
        cur::AttrValue::Num(n) => AttrValue::Num(n),
        cur::AttrValue::Bool(b) => AttrValue::Bool(b),
        cur::AttrValue::Time { text, at } => AttrValue::Time { text: cs(text), at },
        cur::AttrValue::Array(items) => AttrValue::Array(items.into_iter().map(cs).collect()),
        cur::AttrValue::Object(o) => AttrValue::Object(object_in(o)),
        cur::AttrValue::Objects(list) => {
            AttrValue::Objects(list.into_iter().map(object_in).collect())
        }
        cur::AttrValue::Location {
            latitude,
            longitude,
        } => AttrValue::Location {
            latitude,
            longitude,
        },
    }
}

fn object_in(o: cur::Object) -> AttrObject {
    o.into_iter().map(|(k, v)| (cs(k), value_in(v))).collect()
}

fn update_in(u: cur::AttrUpdate) -> AttrUpdate {
    match u {
        cur::AttrUpdate::Set(v) => AttrUpdate::Set(value_in(v)),
        cur::AttrUpdate::Remove => AttrUpdate::Remove,
        cur::AttrUpdate::Increment(n) => AttrUpdate::Increment(n),
        cur::AttrUpdate::ArrayEdit { add, remove } => AttrUpdate::ArrayEdit {
            add: add.into_iter().map(cs).collect(),
            remove: remove.into_iter().map(cs).collect(),
        },
    }
}

fn target_in(t: cur::Target) -> Target {
    match t {
        cur::Target::External { id, create } => Target::External { id: cs(id), create },
        cur::Target::Alias { alias, create } => Target::Alias {
            alias: alias_in(alias),
            create,
        },
        cur::Target::Device(d) => Target::Device(cs(d)),
        cur::Target::Email { email, create } => Target::Email {
            email: cs(email),
            create,
        },
        cur::Target::Phone { phone, create } => Target::Phone {
            phone: cs(phone),
            create,
        },
        cur::Target::BrazeId(u) => Target::BrazeId(u),
        cur::Target::ExternalWith {
            id,
            create,
            braze_id,
            contact,
        } => Target::ExternalWith {
            id: cs(id),
            create,
            braze_id,
            contact: contact.map(|c| match c {
                cur::Contact::Email(e) => Contact::Email(cs(e)),
                cur::Contact::Phone(p) => Contact::Phone(cs(p)),
            }),
        },
    }
}

fn event_in(e: cur::EventObject) -> EventObject {
    EventObject {
        target: target_in(e.target),
        name: cs(e.name),
        time: e.time,
        properties: e.properties.map(Into::into),
        currency: e.currency.map(cs),
        price: e.price,
    }
}

fn connector_in(c: cur::Connector) -> Result<Connector> {
    let event_types = match c.event_types {
        None => None,
        Some(codes) => Some(
            codes
                .into_iter()
                .map(|code| {
                    crate::feed::EventType::from_code(code).ok_or_else(|| {
                        Error::Codec(format!("connector {}: no event type {code}", c.id))
                    })
                })
                .collect::<Result<_>>()?,
        ),
    };
    Ok(Connector {
        id: c.id,
        name: c.name,
        url: c.url,
        bearer_token: c.bearer_token,
        event_types,
        created_at: c.created_at,
        start_after: c.start_after,
    })
}

fn instant_in(i: cur::Instant) -> Instant {
    Instant {
        text: cs(i.text),
        at: i.at,
    }
}

fn scalar_in(v: cur::Scalar) -> Scalar {
    match v {
        cur::Scalar::Str(x) => Scalar::Str(cs(x)),
        cur::Scalar::Num(n) => Scalar::Num(n),
        cur::Scalar::Bool(b) => Scalar::Bool(b),
    }
}

fn bound_in(b: cur::Bound) -> Bound {
    match b {
        cur::Bound::Num(n) => Bound::Num(n),
        cur::Bound::Time(i) => Bound::Time(instant_in(i)),
    }
}

fn pattern_in(source: &str) -> Result<Pattern> {
    Pattern::new(source)
        .map_err(|e| Error::Codec(format!("stored regex {source:?} no longer compiles: {e}")))
}

fn filter_in(f: cur::Filter) -> Result<Filter> {
    Ok(match f {
        cur::Filter::And(all) => {
            Filter::And(all.into_iter().map(filter_in).collect::<Result<_>>()?)
        }
        cur::Filter::Or(any) => Filter::Or(any.into_iter().map(filter_in).collect::<Result<_>>()?),
        cur::Filter::Not(inner) => Filter::Not(Box::new(filter_in(*inner)?)),
        cur::Filter::All => Filter::All,
        cur::Filter::Cohort(k) => Filter::Cohort(key_in(k)),
        cur::Filter::Attribute { name, cond } => Filter::Attribute {
            name: cs(name),
            cond: match cond {
                cur::AttrCond::Equals(v) => AttrCond::Equals(scalar_in(v)),
                cur::AttrCond::NotEquals(v) => AttrCond::NotEquals(scalar_in(v)),
                cur::AttrCond::MatchesRegex(p) => AttrCond::MatchesRegex(pattern_in(&p)?),
                cur::AttrCond::DoesNotMatchRegex(p) => AttrCond::DoesNotMatchRegex(pattern_in(&p)?),
                cur::AttrCond::Exists => AttrCond::Exists,
                cur::AttrCond::DoesNotExist => AttrCond::DoesNotExist,
                cur::AttrCond::GreaterThan(b) => AttrCond::GreaterThan(bound_in(b)),
                cur::AttrCond::LessThan(b) => AttrCond::LessThan(bound_in(b)),
                cur::AttrCond::IncludesValue(v) => AttrCond::IncludesValue(cs(v)),
                cur::AttrCond::WithinKm {
                    latitude,
                    longitude,
                    km,
                } => AttrCond::WithinKm {
                    latitude,
                    longitude,
                    km,
                },
            },
        },
        cur::Filter::Event { name, cond } => Filter::Event {
            name: cs(name),
            cond: match cond {
                cur::EventCond::MoreThan(n) => EventCond::MoreThan(n),
                cur::EventCond::LessThan(n) => EventCond::LessThan(n),
                cur::EventCond::Exactly(n) => EventCond::Exactly(n),
                cur::EventCond::LastPerformedAfter(i) => {
                    EventCond::LastPerformedAfter(instant_in(i))
                }
                cur::EventCond::LastPerformedBefore(i) => {
                    EventCond::LastPerformedBefore(instant_in(i))
                }
            },
        },
    })
}

/// A version 5 profile (migrated from an older version, owned).
pub(super) fn profile_in(p: v5::Profile) -> Profile {
    Profile::from_parts(
        p.external_id.map(cs),
        p.details.map(|d| Details {
            aliases: d.aliases.into_iter().map(alias_in).collect(),
            devices: d.devices.into_iter().map(cs).collect(),
            attributes: d
                .attributes
                .into_iter()
                .map(|(k, v)| (cs(k), value_in(v)))
                .collect(),
            events: d
                .events
                .into_iter()
                .map(|(k, e)| {
                    (
                        cs(k),
                        EventStats {
                            count: e.count,
                            first: e.first,
                            last: e.last,
                        },
                    )
                })
                .collect(),
        }),
    )
}

fn cohort_in(c: cur::CohortImage) -> CohortImage {
    CohortImage {
        key: key_in(c.key),
        meta: CohortMeta {
            name: c.meta.name,
            created_at: c.meta.created_at,
            named: c.meta.named,
            updated_at: c.meta.updated_at,
        },
        members: c.members,
        history: c
            .history
            .into_iter()
            .map(|r| ImportRecord {
                at: r.at,
                added: r.added,
                removed: r.removed,
                unmatched: r.unmatched,
                size: r.size,
            })
            .collect(),
    }
}

/// The command a record of the current version replays as.
pub fn command_in(r: cur::Record) -> Result<Command> {
    use cur::Record as R;
    Ok(match r {
        R::CreateWorkspace { name, rest_key, at } => Command::CreateWorkspace {
            name,
            rest_key: KeyHash(rest_key),
            at,
        },
        R::CreateImportKey { ws, key } => Command::CreateImportKey {
            ws: WorkspaceId(ws),
            key: import_key_in(key),
        },
        R::RevokeImportKey {
            ws,
            partner,
            key_id,
        } => Command::RevokeImportKey {
            ws: WorkspaceId(ws),
            partner: cs(partner),
            key_id,
        },
        R::NameCohort {
            ws,
            key,
            name,
            created_at,
            at,
        } => Command::NameCohort {
            ws: WorkspaceId(ws),
            key: key_in(key),
            name,
            created_at,
            at,
        },
        R::ApplyDelta {
            ws,
            key,
            changes,
            at,
        } => Command::ApplyDelta {
            ws: WorkspaceId(ws),
            key: key_in(key),
            changes: changes
                .into_iter()
                .map(|c| model::Change {
                    remove: c.remove,
                    ids: c.ids.into_iter().map(identifier_in).collect(),
                })
                .collect(),
            at,
        },
        R::Track { ws, track, at } => Command::Track {
            at,
            ws: WorkspaceId(ws),
            track: Track {
                attributes: track
                    .attributes
                    .into_iter()
                    .map(|o| AttributesObject {
                        target: target_in(o.target),
                        changes: o
                            .changes
                            .into_iter()
                            .map(|(k, u)| (cs(k), update_in(u)))
                            .collect(),
                    })
                    .collect(),
                events: track.events.into_iter().map(event_in).collect(),
                purchases: track.purchases.into_iter().map(event_in).collect(),
            },
        },
        R::Identify { ws, identify, at } => Command::Identify {
            at,
            ws: WorkspaceId(ws),
            identify: Identify {
                aliases: identify
                    .aliases
                    .into_iter()
                    .map(|(e, a)| (cs(e), alias_in(a)))
                    .collect(),
                devices: identify
                    .devices
                    .into_iter()
                    .map(|(e, d)| (cs(e), cs(d)))
                    .collect(),
            },
        },
        R::NewAliases { ws, aliases } => Command::NewAliases {
            ws: WorkspaceId(ws),
            aliases: NewAliases(
                aliases
                    .0
                    .into_iter()
                    .map(|(e, a)| (e.map(cs), alias_in(a)))
                    .collect(),
            ),
        },
        R::DeleteUsers { ws, ids, at } => Command::DeleteUsers {
            at,
            ws: WorkspaceId(ws),
            ids: ids.into_iter().map(identifier_in).collect(),
        },
        R::PutSegment {
            ws,
            id,
            name,
            filter,
        } => Command::PutSegment {
            ws: WorkspaceId(ws),
            id,
            name,
            filter: filter_in(filter)?,
        },
        R::DeleteSegment { ws, id } => Command::DeleteSegment {
            ws: WorkspaceId(ws),
            id,
        },
        R::Restore {
            snapshot_id,
            format,
            image,
            keep_counters,
        } => Command::Restore {
            snapshot_id,
            format,
            image,
            keep_counters,
        },
        R::SetLimits(l) => Command::SetLimits(limits_in(l)),
        R::PutConnector { ws, connector } => Command::PutConnector {
            ws: WorkspaceId(ws),
            connector: connector_in(connector)?,
        },
        R::DeleteConnector { ws, id } => Command::DeleteConnector {
            ws: WorkspaceId(ws),
            id,
        },
    })
}

/// The state a snapshot payload of the current version describes.
pub fn image_in<P: IntoProfileImage, X: IntoColumns>(image: cur::Image<P, X>) -> Result<Image> {
    let workspaces = image
        .workspaces
        .into_iter()
        .map(|w| {
            let profiles = w.profiles.into_profile_image()?.with_recency(w.recency);
            Ok(WorkspaceImage {
                id: WorkspaceId(w.id),
                name: w.name,
                created_at: w.created_at,
                rest_key: KeyHash(w.rest_key),
                profiles: match w.index.into_columns()? {
                    Some(columns) => profiles.with_columns(columns).map_err(Error::Codec)?,
                    None => profiles,
                },
                import_keys: w.import_keys.into_iter().map(import_key_in).collect(),
                segments: w
                    .segments
                    .into_iter()
                    .map(|sg| {
                        Ok(SegmentImage {
                            id: sg.id,
                            name: sg.name,
                            filter: filter_in(sg.filter)?,
                            members: sg.members.map(std::sync::Arc::new),
                        })
                    })
                    .collect::<Result<_>>()?,
                last_segment: w.last_segment,
                cohorts: w.cohorts.into_iter().map(cohort_in).collect(),
                connectors: w
                    .connectors
                    .into_iter()
                    .map(connector_in)
                    .collect::<Result<_>>()?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Image {
        next_workspace: image.next_workspace,
        workspaces,
        limits: image.limits.map(limits_in),
    })
}

/// A workspace's profiles as decoded, on their way into the store.
pub trait IntoProfileImage {
    fn into_profile_image(self) -> Result<ProfileImage>;
}

/// Older versions, migrated: owned schema profiles, converted one by one.
impl IntoProfileImage for v5::Profiles {
    fn into_profile_image(self) -> Result<ProfileImage> {
        let mut b = ProfileImage::builder(self.id_bound);
        let mut gaps = cur::Gaps::default();
        for (gap, p) in self.list {
            let uid = gaps.id(gap).map_err(Error::Codec)?;
            b.push(uid, profile_in(p)).map_err(Error::Codec)?;
        }
        b.finish().map_err(Error::Codec)
    }
}

/// Version 6 profiles, owned (`inspect`, tests).
impl IntoProfileImage for cur::Profiles {
    fn into_profile_image(self) -> Result<ProfileImage> {
        let mut b = ProfileImage::builder(self.id_bound);
        let mut gaps = cur::Gaps::default();
        for (gap, p) in self.list {
            let uid = gaps.id(gap).map_err(Error::Codec)?;
            b.push(uid, profile_in_v6(p).map_err(Error::Codec)?)
                .map_err(Error::Codec)?;
        }
        b.finish().map_err(Error::Codec)
    }
}

/// A version 6 profile, its packed bytes checked.
fn profile_in_v6(p: cur::Profile) -> std::result::Result<Profile, String> {
    let details = match p.details {
        Some(d) => Some(packed_details(
            d.aliases.into_iter().map(alias_in).collect(),
            d.devices.into_iter().map(cs).collect(),
            d.attributes,
            d.events,
        )?),
        None => None,
    };
    Ok(Profile::from_parts(p.external_id.map(cs), details))
}

/// A version 6 profile's details (owned or streamed): the packed bytes are
/// checked whole and kept as they are.
fn packed_details(
    aliases: Vec<Alias>,
    devices: Vec<CompactString>,
    attributes: cur::Packed,
    events: cur::Packed,
) -> std::result::Result<Details, String> {
    Ok(Details {
        aliases,
        devices,
        attributes: Attrs::from_bytes(attributes.0)?,
        events: Events::from_bytes(events.0)?,
    })
}

/// The current version's profiles, decoded straight into the store: each
/// profile is read into the domain types as it comes (strings land in
/// `CompactString`s directly), so a snapshot's profiles are never held
/// twice. The private `*In` types below spell exactly the shape of
/// `v4::Profile` (pinned by the round-trip tests against the owned types).
/// `ProfilesIn` (of `ProfileIn`s) reads versions 3 to 5;
/// `ProfilesIn<PackedProfileIn>` reads version 6.
pub struct ProfilesIn<T = ProfileIn>(ProfileImage, std::marker::PhantomData<T>);

impl<T> IntoProfileImage for ProfilesIn<T> {
    fn into_profile_image(self) -> Result<ProfileImage> {
        Ok(self.0)
    }
}

/// A profile as a snapshot spells it, on its way into the store.
pub trait ProfileInDomain {
    fn into_domain(self) -> std::result::Result<Profile, String>;
}

#[derive(serde::Deserialize)]
struct AliasIn {
    alias_name: CompactString,
    alias_label: CompactString,
}

impl AliasIn {
    fn into_domain(self) -> Alias {
        Alias {
            alias_name: self.alias_name,
            alias_label: self.alias_label,
        }
    }
}

#[derive(serde::Deserialize)]
enum ValueIn {
    Str(CompactString),
    Num(f64),
    Bool(bool),
    Time { text: CompactString, at: i64 },
    Array(Vec<CompactString>),
    Object(std::collections::BTreeMap<CompactString, ValueIn>),
    Objects(Vec<std::collections::BTreeMap<CompactString, ValueIn>>),
    Location { latitude: f64, longitude: f64 },
}

impl ValueIn {
    fn into_domain(self) -> AttrValue {
        let object = |o: std::collections::BTreeMap<CompactString, ValueIn>| -> AttrObject {
            o.into_iter().map(|(k, v)| (k, v.into_domain())).collect()
        };
        match self {
            ValueIn::Str(x) => AttrValue::Str(x),
            ValueIn::Num(n) => AttrValue::Num(n),
            ValueIn::Bool(b) => AttrValue::Bool(b),
            ValueIn::Time { text, at } => AttrValue::Time { text, at },
            ValueIn::Array(items) => AttrValue::Array(items),
            ValueIn::Object(o) => AttrValue::Object(object(o)),
            ValueIn::Objects(list) => AttrValue::Objects(list.into_iter().map(object).collect()),
            ValueIn::Location {
                latitude,
                longitude,
            } => AttrValue::Location {
                latitude,
                longitude,
            },
        }
    }
}

#[derive(serde::Deserialize)]
struct StatsIn {
    count: u64,
    first: i64,
    last: i64,
}

#[derive(serde::Deserialize)]
struct DetailsIn {
    aliases: Vec<AliasIn>,
    devices: Vec<CompactString>,
    attributes: std::collections::BTreeMap<CompactString, ValueIn>,
    events: std::collections::BTreeMap<CompactString, StatsIn>,
}

/// A profile of versions 3 to 5 (`v4::Profile`'s shape).
#[derive(serde::Deserialize)]
pub struct ProfileIn {
    external_id: Option<CompactString>,
    details: Option<DetailsIn>,
}

/// A profile of version 6 (`v6::Profile`'s shape): its packed bytes are
/// checked and kept as they are.
#[derive(serde::Deserialize)]
pub struct PackedProfileIn {
    external_id: Option<CompactString>,
    details: Option<PackedDetailsIn>,
}

#[derive(serde::Deserialize)]
struct PackedDetailsIn {
    aliases: Vec<AliasIn>,
    devices: Vec<CompactString>,
    attributes: cur::Packed,
    events: cur::Packed,
}

impl ProfileInDomain for PackedProfileIn {
    fn into_domain(self) -> std::result::Result<Profile, String> {
        let details = match self.details {
            Some(d) => Some(packed_details(
                d.aliases.into_iter().map(AliasIn::into_domain).collect(),
                d.devices,
                d.attributes,
                d.events,
            )?),
            None => None,
        };
        Ok(Profile::from_parts(self.external_id, details))
    }
}

impl ProfileInDomain for ProfileIn {
    fn into_domain(self) -> std::result::Result<Profile, String> {
        Ok(Profile::from_parts(
            self.external_id,
            self.details.map(|d| Details {
                aliases: d.aliases.into_iter().map(AliasIn::into_domain).collect(),
                devices: d.devices,
                attributes: d
                    .attributes
                    .into_iter()
                    .map(|(k, v)| (k, v.into_domain()))
                    .collect(),
                events: d
                    .events
                    .into_iter()
                    .map(|(k, e)| {
                        (
                            k,
                            EventStats {
                                count: e.count,
                                first: e.first,
                                last: e.last,
                            },
                        )
                    })
                    .collect(),
            }),
        ))
    }
}

impl<'de, T: ProfileInDomain + serde::de::DeserializeOwned> serde::Deserialize<'de>
    for ProfilesIn<T>
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
        use std::marker::PhantomData;

        struct List<T> {
            id_bound: u32,
            item: PhantomData<T>,
        }
        impl<'de, T: ProfileInDomain + serde::de::DeserializeOwned> DeserializeSeed<'de> for List<T> {
            type Value = ProfileImage;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> std::result::Result<ProfileImage, D::Error> {
                d.deserialize_seq(self)
            }
        }
        impl<'de, T: ProfileInDomain + serde::de::DeserializeOwned> Visitor<'de> for List<T> {
            type Value = ProfileImage;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of (gap, profile)")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<ProfileImage, A::Error> {
                let mut b = ProfileImage::builder(self.id_bound);
                let mut gaps = cur::Gaps::default();
                while let Some((gap, p)) = seq.next_element::<(u32, T)>()? {
                    let uid = gaps.id(gap).map_err(A::Error::custom)?;
                    let p = p.into_domain().map_err(A::Error::custom)?;
                    b.push(uid, p).map_err(A::Error::custom)?;
                }
                b.finish().map_err(A::Error::custom)
            }
        }
        struct Fields<T>(PhantomData<T>);
        impl<'de, T: ProfileInDomain + serde::de::DeserializeOwned> Visitor<'de> for Fields<T> {
            type Value = ProfilesIn<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("struct Profiles {id_bound, list}")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<ProfilesIn<T>, A::Error> {
                let id_bound: u32 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let image = seq
                    .next_element_seed(List::<T> {
                        id_bound,
                        item: PhantomData,
                    })?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                Ok(ProfilesIn(image, PhantomData))
            }
        }
        d.deserialize_struct("Profiles", &["id_bound", "list"], Fields::<T>(PhantomData))
    }
}
