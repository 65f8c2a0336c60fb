//! The users API (Braze-compatible subset): `/users/track`,
//! `/users/identify`, `/users/alias/new`, `/users/delete`.
//!
//! A request is validated whole before anything is applied: a malformed
//! object anywhere is a 400 naming it (`attributes[3].external_id: …`) and
//! changes nothing. What depends on state — a profile that does not exist
//! under `_update_existing_only`, an alias held by someone else, an object
//! that would take its profile over a `[limits]` value — is reported per
//! object in `errors` of a 201, as Braze does. The request limits (string
//! sizes, array items) are the engine's to check (`profiles::commands`).

use super::body::read_json;
use actix_web::{web, HttpResponse};
use compact_str::CompactString;
use serde_json::{json, Map, Value};

use super::{created, WorkspaceAuth};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{Alias, Identifier};
use crate::profiles::commands::{
    AttributesObject, EventObject, Identify, NewAliases, Target, Track,
};
use crate::profiles::{AttrUpdate, AttrValue};

/// Objects of each kind per `/users/track` request (Braze's limit).
pub const MAX_TRACK_OBJECTS: usize = 75;
/// Entries per identify, alias and delete request (Braze's limit).
pub const MAX_USER_ENTRIES: usize = 50;

fn bad(at: impl std::fmt::Display, what: impl std::fmt::Display) -> Error {
    Error::bad_request("invalid_request", format!("{at}: {what}"))
}

fn body_object(v: &Value) -> Result<&Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Error::bad_request("invalid_request", "request body must be a JSON object"))
}

/// An optional top-level array of at most `max` objects.
fn list<'a>(body: &'a Map<String, Value>, key: &str, max: usize) -> Result<&'a [Value]> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) if items.len() <= max => Ok(items),
        Some(Value::Array(items)) => Err(bad(
            key,
            format!("at most {max} objects per request, got {}", items.len()),
        )),
        Some(_) => Err(bad(key, "must be an array")),
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| bad(at, "must be an object"))
}

fn string(v: Option<&Value>, at: &str, field: &str) -> Result<CompactString> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str().into()),
        _ => Err(bad(
            format_args!("{at}.{field}"),
            "must be a non-empty string",
        )),
    }
}

fn alias(v: Option<&Value>, at: &str) -> Result<Alias> {
    let obj = v
        .and_then(Value::as_object)
        .ok_or_else(|| bad(at, "must be an object {alias_name, alias_label}"))?;
    Ok(Alias {
        alias_name: string(obj.get("alias_name"), at, "alias_name")?,
        alias_label: string(obj.get("alias_label"), at, "alias_label")?,
    })
}

const IDENTIFIER_KEYS: [&str; 4] = ["external_id", "user_alias", "device_id", "braze_id"];

/// Which profile a track object addresses. Exactly one identifier;
/// `_update_existing_only` defaults to false for external_id and true for
/// user_alias; a device_id object always writes (the SDK extension).
fn target(obj: &Map<String, Value>, at: &str) -> Result<Target> {
    let given: Vec<&str> = IDENTIFIER_KEYS
        .iter()
        .copied()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let existing_only = match obj.get("_update_existing_only") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(bad(
                format_args!("{at}._update_existing_only"),
                "must be a boolean",
            ))
        }
    };
    match given.as_slice() {
        ["external_id"] => Ok(Target::External {
            id: string(obj.get("external_id"), at, "external_id")?,
            create: !existing_only.unwrap_or(false),
        }),
        ["user_alias"] => Ok(Target::Alias {
            alias: alias(obj.get("user_alias"), &format!("{at}.user_alias"))?,
            create: !existing_only.unwrap_or(true),
        }),
        ["device_id"] => Ok(Target::Device(string(
            obj.get("device_id"),
            at,
            "device_id",
        )?)),
        ["braze_id"] => Err(bad(
            at,
            "braze_id is not supported; use external_id, user_alias or device_id",
        )),
        [] => Err(bad(at, "needs one of external_id, user_alias or device_id")),
        _ => Err(bad(
            at,
            format_args!("give exactly one identifier, got {}", given.join(", ")),
        )),
    }
}

fn attr_change(v: &Value, at: &str) -> Result<AttrUpdate> {
    Ok(match v {
        Value::Null => AttrUpdate::Remove,
        Value::Bool(b) => AttrUpdate::Set(AttrValue::Bool(*b)),
        Value::Number(n) => AttrUpdate::Set(AttrValue::Num(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => AttrUpdate::Set(AttrValue::from_text(s)),
        Value::Array(items) => AttrUpdate::Set(AttrValue::Array(strings(items, at)?)),
        Value::Object(o) => {
            if let (Some(n), 1) = (o.get("inc"), o.len()) {
                let by = n.as_f64().ok_or_else(|| bad(at, "inc must be a number"))?;
                AttrUpdate::Increment(by)
            } else if !o.is_empty() && o.keys().all(|k| k == "add" || k == "remove") {
                let part = |k: &str| -> Result<Vec<CompactString>> {
                    match o.get(k) {
                        None => Ok(Vec::new()),
                        Some(Value::Array(items)) => strings(items, at),
                        Some(_) => Err(bad(at, format_args!("{k} must be an array of strings"))),
                    }
                };
                AttrUpdate::ArrayEdit {
                    add: part("add")?,
                    remove: part("remove")?,
                }
            } else {
                return Err(bad(
                    at,
                    "an object value must be {\"inc\": n} or {\"add\": [..], \"remove\": [..]}",
                ));
            }
        }
    })
}

fn strings(items: &[Value], at: &str) -> Result<Vec<CompactString>> {
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(s.as_str().into()),
            _ => Err(bad(at, "arrays may hold strings only")),
        })
        .collect()
}

fn event_time(obj: &Map<String, Value>, at: &str) -> Result<i64> {
    match obj.get("time") {
        Some(Value::String(s)) => crate::time::parse_iso8601(s)
            .ok_or_else(|| bad(format_args!("{at}.time"), "must be an ISO-8601 time")),
        _ => Err(bad(
            format_args!("{at}.time"),
            "is required, as an ISO-8601 string",
        )),
    }
}

fn parse_track(body: &Value) -> Result<Track> {
    let body = body_object(body)?;
    let mut track = Track::default();
    for (i, v) in list(body, "attributes", MAX_TRACK_OBJECTS)?
        .iter()
        .enumerate()
    {
        let at = format!("attributes[{i}]");
        let obj = object(v, &at)?;
        let target = target(obj, &at)?;
        let mut changes = Vec::new();
        for (k, v) in obj {
            if IDENTIFIER_KEYS.contains(&k.as_str()) || k == "_update_existing_only" {
                continue;
            }
            changes.push((k.as_str().into(), attr_change(v, &format!("{at}.{k}"))?));
        }
        track.attributes.push(AttributesObject { target, changes });
    }
    for (i, v) in list(body, "events", MAX_TRACK_OBJECTS)?.iter().enumerate() {
        let at = format!("events[{i}]");
        let obj = object(v, &at)?;
        track.events.push(EventObject {
            target: target(obj, &at)?,
            name: string(obj.get("name"), &at, "name")?,
            time: event_time(obj, &at)?,
        });
    }
    for (i, v) in list(body, "purchases", MAX_TRACK_OBJECTS)?
        .iter()
        .enumerate()
    {
        let at = format!("purchases[{i}]");
        let obj = object(v, &at)?;
        track.purchases.push(EventObject {
            target: target(obj, &at)?,
            name: string(obj.get("product_id"), &at, "product_id")?,
            time: event_time(obj, &at)?,
        });
    }
    if track.attributes.is_empty() && track.events.is_empty() && track.purchases.is_empty() {
        return Err(Error::bad_request(
            "invalid_request",
            "give at least one of attributes, events or purchases",
        ));
    }
    Ok(track)
}

pub async fn track(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let track = read_json(&engine, payload, |v: Value| parse_track(&v)).await?;
    let r = engine.track(&auth.0, track).await?;
    Ok(created(json!({
        "message": "success",
        "attributes_processed": r.attributes_processed,
        "events_processed": r.events_processed,
        "purchases_processed": r.purchases_processed,
        "errors": r.errors,
    })))
}

fn parse_identify(body: &Value) -> Result<Identify> {
    let body = body_object(body)?;
    let mut req = Identify::default();
    for (i, v) in list(body, "aliases_to_identify", MAX_USER_ENTRIES)?
        .iter()
        .enumerate()
    {
        let at = format!("aliases_to_identify[{i}]");
        let obj = object(v, &at)?;
        req.aliases.push((
            string(obj.get("external_id"), &at, "external_id")?,
            alias(obj.get("user_alias"), &format!("{at}.user_alias"))?,
        ));
    }
    for (i, v) in list(body, "devices_to_identify", MAX_USER_ENTRIES)?
        .iter()
        .enumerate()
    {
        let at = format!("devices_to_identify[{i}]");
        let obj = object(v, &at)?;
        req.devices.push((
            string(obj.get("external_id"), &at, "external_id")?,
            string(obj.get("device_id"), &at, "device_id")?,
        ));
    }
    if req.aliases.is_empty() && req.devices.is_empty() {
        return Err(Error::bad_request(
            "invalid_request",
            "give aliases_to_identify and/or devices_to_identify",
        ));
    }
    Ok(req)
}

pub async fn identify(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let identify = read_json(&engine, payload, |v: Value| parse_identify(&v)).await?;
    let r = engine.identify(&auth.0, identify).await?;
    Ok(created(json!({
        "message": "success",
        "aliases_processed": r.aliases_processed,
        "devices_processed": r.devices_processed,
        "merged": r.merges.len(),
        "errors": r.errors,
    })))
}

fn parse_alias_new(body: &Value) -> Result<NewAliases> {
    let body = body_object(body)?;
    let items = list(body, "user_aliases", MAX_USER_ENTRIES)?;
    if items.is_empty() {
        return Err(bad("user_aliases", "give at least one alias"));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let at = format!("user_aliases[{i}]");
        let obj = object(v, &at)?;
        let external = match obj.get("external_id") {
            None | Some(Value::Null) => None,
            v => Some(string(v, &at, "external_id")?),
        };
        out.push((external, alias(Some(v), &at)?));
    }
    Ok(NewAliases(out))
}

pub async fn alias_new(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let aliases = read_json(&engine, payload, |v: Value| parse_alias_new(&v)).await?;
    let r = engine.new_aliases(&auth.0, aliases).await?;
    Ok(created(json!({
        "message": "success",
        "aliases_processed": r.aliases_processed,
        "errors": r.errors,
    })))
}

fn parse_delete(body: &Value) -> Result<Vec<Identifier>> {
    let body = body_object(body)?;
    if body.get("braze_ids").is_some_and(|v| !v.is_null()) {
        return Err(bad(
            "braze_ids",
            "not supported; use external_ids, user_aliases or device_ids",
        ));
    }
    let mut ids = Vec::new();
    for (i, v) in list(body, "external_ids", MAX_USER_ENTRIES)?
        .iter()
        .enumerate()
    {
        ids.push(Identifier::External(string(
            Some(v),
            "external_ids",
            &i.to_string(),
        )?));
    }
    for (i, v) in list(body, "user_aliases", MAX_USER_ENTRIES)?
        .iter()
        .enumerate()
    {
        ids.push(Identifier::Alias(alias(
            Some(v),
            &format!("user_aliases[{i}]"),
        )?));
    }
    for (i, v) in list(body, "device_ids", MAX_USER_ENTRIES)?
        .iter()
        .enumerate()
    {
        ids.push(Identifier::Device(string(
            Some(v),
            "device_ids",
            &i.to_string(),
        )?));
    }
    if ids.is_empty() {
        return Err(Error::bad_request(
            "invalid_request",
            "give external_ids, user_aliases and/or device_ids",
        ));
    }
    Ok(ids)
}

pub async fn delete(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let ids = read_json(&engine, payload, |v: Value| parse_delete(&v)).await?;
    let n = engine.delete_users(&auth.0, ids).await?;
    Ok(created(json!({ "message": "success", "deleted": n })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_parses_every_value_kind() {
        let t = parse_track(&json!({"attributes": [{
            "external_id": "u1", "plan": "gold", "n": 3, "vip": true, "gone": null,
            "since": "2024-01-01T00:00:00Z", "tags": ["a"], "visits": {"inc": 2},
            "pets": {"add": ["cat"], "remove": ["dog"]}
        }]}))
        .unwrap();
        let a = &t.attributes[0];
        assert_eq!(
            a.target,
            Target::External {
                id: "u1".into(),
                create: true
            }
        );
        assert_eq!(a.changes.len(), 8);
    }

    #[test]
    fn alias_objects_default_to_update_existing_only() {
        let t = parse_track(&json!({"attributes": [
            {"user_alias": {"alias_name": "n", "alias_label": "l"}},
            {"user_alias": {"alias_name": "n", "alias_label": "l"}, "_update_existing_only": false},
            {"external_id": "x", "_update_existing_only": true}
        ]}))
        .unwrap();
        assert!(matches!(
            t.attributes[0].target,
            Target::Alias { create: false, .. }
        ));
        assert!(matches!(
            t.attributes[1].target,
            Target::Alias { create: true, .. }
        ));
        assert!(matches!(
            t.attributes[2].target,
            Target::External { create: false, .. }
        ));
    }

    #[test]
    fn bad_objects_name_where_they_are() {
        let cases = [
            (
                json!({"attributes": [{"plan": "x"}]}),
                "attributes[0]: needs one of",
            ),
            (
                json!({"attributes": [{"external_id": "u", "device_id": "d"}]}),
                "exactly one",
            ),
            (
                json!({"events": [{"external_id": "u", "name": "e"}]}),
                "events[0].time",
            ),
            (
                json!({"events": [{"external_id": "u", "name": "e", "time": "soon"}]}),
                "ISO-8601",
            ),
            (
                json!({"attributes": [{"external_id": "u", "x": {"deep": 1}}]}),
                "attributes[0].x",
            ),
            (json!({"attributes": [{"external_id": 5}]}), "external_id"),
            (json!({}), "at least one"),
            (json!([]), "JSON object"),
        ];
        for (body, needle) in cases {
            let err = parse_track(&body).unwrap_err().to_string();
            assert!(err.contains(needle), "{body} → {err}");
        }
        let many: Vec<Value> = (0..76)
            .map(|i| json!({"external_id": format!("u{i}")}))
            .collect();
        let err = parse_track(&json!({ "attributes": many }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 75"), "{err}");
    }

    #[test]
    fn identify_and_delete_need_something_to_do() {
        assert!(parse_identify(&json!({})).is_err());
        assert!(parse_delete(&json!({"external_ids": []})).is_err());
        assert_eq!(
            parse_delete(&json!({"external_ids": ["a"], "device_ids": ["d"]}))
                .unwrap()
                .len(),
            2
        );
    }
}
