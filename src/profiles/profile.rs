//! One profile's data and the rule for merging two profiles.

use std::collections::BTreeMap;

use compact_str::CompactString;

use super::packed::{Attrs, Events};
use crate::model::{Alias, Identifier, Millis};

/// The attribute that holds a profile's email address (an identifier).
pub const EMAIL: &str = "email";
/// The attribute that holds a profile's phone number (an identifier when E.164).
pub const PHONE: &str = "phone";

/// A custom attribute value as stored.
///
/// A string that parses as an ISO-8601 time is stored as `Time`, keeping its
/// text: `equals`/`regex` filters see the text, `greater_than`/`less_than`
/// with a time value see the instant. Numbers are `f64` so `3` equals `3.0`.
///
/// Nested custom attributes are `Object` (a JSON object) and `Objects` (an
/// array of JSON objects); their members are values again, up to
/// `limits.nesting_depth` object levels. Filters reach them by dotted path
/// (`super::paths`). `Location` is what `current_location` holds.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(CompactString),
    Num(f64),
    Bool(bool),
    Time {
        text: CompactString,
        at: Millis,
    },
    Array(Vec<CompactString>),
    Object(AttrObject),
    Objects(Vec<AttrObject>),
    /// Degrees; latitude in [-90, 90], longitude in [-180, 180].
    Location {
        latitude: f64,
        longitude: f64,
    },
}

/// A nested object's members, by key (also the shape of a profile's
/// top-level attributes).
pub type AttrObject = BTreeMap<CompactString, AttrValue>;

impl AttrValue {
    /// A string value: `Time` if it parses as ISO-8601, else `Str`.
    pub fn from_text(s: &str) -> AttrValue {
        match crate::time::parse_iso8601(s) {
            // Only strings that look like a date: a bare number is not a time.
            Some(at) if s.len() >= 10 && s.as_bytes()[4] == b'-' => {
                AttrValue::Time { text: s.into(), at }
            }
            _ => AttrValue::Str(s.into()),
        }
    }

    /// The value as JSON, the way it was sent.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            AttrValue::Str(s) => Value::String(s.to_string()),
            // Whole numbers as integers (`3`, not `3.0`), as they are sent.
            AttrValue::Num(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
                Value::from(*n as i64)
            }
            AttrValue::Num(n) => serde_json::Number::from_f64(*n)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Time { text, .. } => Value::String(text.to_string()),
            AttrValue::Array(items) => {
                Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
            }
            AttrValue::Object(o) => object_json(o),
            AttrValue::Objects(list) => Value::Array(list.iter().map(object_json).collect()),
            AttrValue::Location {
                latitude,
                longitude,
            } => serde_json::json!({"latitude": latitude, "longitude": longitude}),
        }
    }
}

fn object_json(o: &AttrObject) -> serde_json::Value {
    serde_json::Value::Object(
        o.iter()
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect(),
    )
}

/// What is known of one custom event on one profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventStats {
    pub count: u64,
    pub first: Millis,
    pub last: Millis,
}

impl EventStats {
    pub fn record(&mut self, at: Millis) {
        self.count += 1;
        self.first = self.first.min(at);
        self.last = self.last.max(at);
    }

    /// The merge rule: counts add, earliest first, latest last.
    pub fn merge(&mut self, other: &EventStats) {
        self.count += other.count;
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }
}

/// A person known to a workspace. Identified when `external_id` is set,
/// anonymous otherwise.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    pub external_id: Option<CompactString>,
    /// Everything else, boxed: most profiles of a large workspace carry an
    /// external_id and little more, and this keeps a profile at 32 bytes.
    details: Option<Box<Details>>,
}

/// A profile's aliases, devices, custom attributes and event stats.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Details {
    pub aliases: Vec<Alias>,
    pub devices: Vec<CompactString>,
    /// Packed (`super::packed`): decoded on demand.
    pub attributes: Attrs,
    pub events: Events,
}

static NO_DETAILS: Details = Details {
    aliases: Vec::new(),
    devices: Vec::new(),
    attributes: Attrs::EMPTY,
    events: Events::EMPTY,
};

impl Profile {
    pub fn identified(external_id: &str) -> Profile {
        Profile {
            external_id: Some(external_id.into()),
            details: None,
        }
    }

    pub fn alias_only(alias: Alias) -> Profile {
        let mut p = Profile::default();
        p.details_mut().aliases.push(alias);
        p
    }

    pub fn anonymous(device: &str) -> Profile {
        let mut p = Profile::default();
        p.details_mut().devices.push(device.into());
        p
    }

    /// A profile from its parts, as a snapshot stored it.
    pub fn from_parts(external_id: Option<CompactString>, details: Option<Details>) -> Profile {
        Profile {
            external_id,
            details: details.map(Box::new),
        }
    }

    /// The details, if the profile ever had any (what a snapshot stores).
    /// Starts bringing the profile's details (aliases, devices, attributes,
    /// events: a separate allocation) into the cache, for a batch that reads
    /// many profiles' details after this (a delta's feed events).
    pub fn prefetch_details(&self) {
        if let Some(d) = self.details.as_deref() {
            super::index::prefetch(d as *const Details as *const u8);
        }
    }

    pub fn details_if_any(&self) -> Option<&Details> {
        self.details.as_deref()
    }

    pub fn details(&self) -> &Details {
        self.details.as_deref().unwrap_or(&NO_DETAILS)
    }

    pub fn details_mut(&mut self) -> &mut Details {
        self.details.get_or_insert_with(Box::default)
    }

    pub fn aliases(&self) -> &[Alias] {
        &self.details().aliases
    }

    pub fn devices(&self) -> &[CompactString] {
        &self.details().devices
    }

    pub fn attributes(&self) -> &Attrs {
        &self.details().attributes
    }

    pub fn events(&self) -> &Events {
        &self.details().events
    }

    pub fn is_anonymous(&self) -> bool {
        self.external_id.is_none()
    }

    /// How the profile is listed: its external_id, else its first alias, else
    /// its first device id, else its email, else its phone (as the
    /// attributes hold them, when they are identifiers). `None` for a
    /// profile with none of them (an email-only profile whose email was
    /// removed): it is listed by its braze_id alone.
    pub fn listed_as(&self) -> Option<Identifier> {
        if let Some(e) = &self.external_id {
            return Some(Identifier::External(e.clone()));
        }
        if let Some(a) = self.aliases().first() {
            return Some(Identifier::Alias(a.clone()));
        }
        if let Some(d) = self.devices().first() {
            return Some(Identifier::Device(d.clone()));
        }
        if let Some(e) = self.contact(EMAIL) {
            return Some(Identifier::Email(e));
        }
        self.contact(PHONE).map(Identifier::Phone)
    }

    /// The `email` (`EMAIL`) or `phone` (`PHONE`) attribute, if it is an
    /// identifier: a string that `model::is_email` / `model::is_phone`
    /// accepts. What the email and phone indexes hold.
    pub fn contact(&self, which: &str) -> Option<CompactString> {
        let details = self.details.as_deref()?;
        match details.attributes.get(which)? {
            AttrValue::Str(s) if which == EMAIL && crate::model::is_email(&s) => Some(s),
            AttrValue::Str(s) if which == PHONE && crate::model::is_phone(&s) => Some(s),
            _ => None,
        }
    }

    /// Folds `other` into `self` (the identified side): aliases and devices are
    /// unioned, `self`'s attributes win, event stats merge.
    pub fn absorb(&mut self, other: Profile) {
        let Some(other) = other.details else {
            return;
        };
        let mine = self.details_mut();
        append_new(&mut mine.aliases, other.aliases);
        append_new(&mut mine.devices, other.devices);
        if !other.attributes.is_empty() {
            mine.attributes.edit(|attrs| {
                for (k, v) in other.attributes.iter() {
                    attrs.entry(k.into()).or_insert(v);
                }
            });
        }
        if !other.events.is_empty() {
            let mut events = mine.events.to_map();
            for (k, v) in other.events.iter() {
                events
                    .entry(k.into())
                    .and_modify(|mine| mine.merge(&v))
                    .or_insert(v);
            }
            mine.events = Events::from_map(&events);
        }
    }
}

/// Appends the items of `more` that `list` does not hold yet, in order,
/// each once: a set lookup per item, not a scan of `list`.
fn append_new<T: Clone + Eq + std::hash::Hash>(list: &mut Vec<T>, more: Vec<T>) {
    if more.is_empty() {
        return;
    }
    let mut seen: hashbrown::HashSet<T, foldhash::fast::RandomState> =
        list.iter().cloned().collect();
    for item in more {
        if seen.insert(item.clone()) {
            list.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_strings_are_times_and_keep_their_text() {
        match AttrValue::from_text("2024-05-01T10:00:00Z") {
            AttrValue::Time { text, at } => {
                assert_eq!(text, "2024-05-01T10:00:00Z");
                assert_eq!(at, 1_714_557_600_000);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(AttrValue::from_text("gold"), AttrValue::Str("gold".into()));
        assert_eq!(
            AttrValue::from_text("20240501"),
            AttrValue::Str("20240501".into())
        );
    }

    #[test]
    fn absorbing_keeps_identified_attributes_and_merges_events() {
        let mut me = Profile::identified("u1");
        me.details_mut()
            .attributes
            .insert("plan", AttrValue::Str("gold".into()));
        me.details_mut().events.set(
            "buy",
            EventStats {
                count: 2,
                first: 10,
                last: 20,
            },
        );
        let mut other = Profile::alias_only(Alias::new("email", "a@b"));
        other.details_mut().devices.push("d1".into());
        other
            .details_mut()
            .attributes
            .insert("plan", AttrValue::Str("free".into()));
        other
            .details_mut()
            .attributes
            .insert("city", AttrValue::Str("Oslo".into()));
        other.details_mut().events.set(
            "buy",
            EventStats {
                count: 3,
                first: 5,
                last: 15,
            },
        );
        me.absorb(other);
        assert_eq!(
            me.attributes().get("plan").unwrap(),
            AttrValue::Str("gold".into())
        );
        assert_eq!(
            me.attributes().get("city").unwrap(),
            AttrValue::Str("Oslo".into())
        );
        assert_eq!(
            me.events().get("buy").unwrap(),
            EventStats {
                count: 5,
                first: 5,
                last: 20
            }
        );
        assert_eq!(me.aliases(), [Alias::new("email", "a@b")]);
        assert_eq!(me.devices(), [CompactString::from("d1")]);
    }

    #[test]
    fn absorbing_unions_identifier_lists_in_order_once() {
        let mut me = Profile::anonymous("d1");
        me.details_mut().devices.push("d2".into());
        let mut other = Profile::anonymous("d3");
        for d in ["d2", "d3", "d4", "d1", "d4"] {
            other.details_mut().devices.push(d.into());
        }
        me.absorb(other);
        let got: Vec<&str> = me.devices().iter().map(|d| d.as_str()).collect();
        assert_eq!(got, ["d1", "d2", "d3", "d4"]);
    }
}
