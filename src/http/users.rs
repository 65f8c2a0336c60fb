//! The users API (Braze-compatible subset): `/users/track`,
//! `/users/identify`, `/users/alias/new`, `/users/delete`.
//!
//! Errors as Braze answers them. Fatal — a 400, nothing applied — is only
//! what is wrong with the request as a whole: a body that is not JSON or
//! not an object, one of its arrays that is not an array or holds more
//! objects than allowed (75 per `/users/track` array, 50 per list of the
//! others), or no array with anything in it. Everything about one object
//! is not fatal: a malformed object (a bad value, a missing or ambiguous
//! identifier) is left out of the command and reported in `errors` of the
//! 201 as `{"type", "input_array", "index"}`, with its index in the
//! request, and every other object applies. The engine refuses objects
//! over a request limit the same way, and reports what the state refuses
//! (`_update_existing_only`, an alias held by someone else, a profile
//! over a `[limits]` value); `profiles::commands::Batch` keeps the request
//! indexes through all of it.

pub(super) mod export;
pub use export::export_ids;

use super::body::read_json;
use actix_web::{web, HttpRequest, HttpResponse};
use compact_str::CompactString;
use serde_json::{json, Map, Value};

use super::{created, WorkspaceAuth};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{is_email, is_phone, parse_braze_id, Alias, Identifier, WorkspaceId};
use crate::profiles::commands::{
    AttributesObject, Batch, Contact, EventObject, Identify, InputArray, NewAliases, ObjectError,
    Target, Track,
};
use crate::profiles::{AttrObject, AttrUpdate, AttrValue};

/// Objects of each kind per `/users/track` request (Braze's limit).
pub const MAX_TRACK_OBJECTS: usize = 75;
/// Entries per identify, alias and delete request (Braze's limit).
pub const MAX_USER_ENTRIES: usize = 50;

/// A fatal error: the request as a whole is wrong.
fn fatal(what: impl std::fmt::Display) -> Error {
    Error::bad_request("invalid_request", what.to_string())
}

/// What is wrong with one object (non-fatal), naming the field within it.
type Parsed<T> = std::result::Result<T, String>;

fn body_object(v: &Value) -> Result<&Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| fatal("request body must be a JSON object"))
}

/// An optional top-level array of at most `max` objects.
fn list<'a>(body: &'a Map<String, Value>, key: &str, max: usize) -> Result<&'a [Value]> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) if items.len() <= max => Ok(items),
        Some(Value::Array(items)) => Err(fatal(format_args!(
            "{key}: at most {max} objects per request, got {}",
            items.len()
        ))),
        Some(_) => Err(fatal(format_args!("{key}: must be an array"))),
    }
}

/// `at.field`, or `field` at the top of the object.
fn place(at: &str, field: &str) -> String {
    if at.is_empty() {
        field.to_string()
    } else {
        format!("{at}.{field}")
    }
}

/// `at: what`, or `what` about the object itself.
fn problem(at: &str, what: impl std::fmt::Display) -> String {
    if at.is_empty() {
        what.to_string()
    } else {
        format!("{at}: {what}")
    }
}

/// A name for a message, cut short if long (it may be over `string_bytes`).
fn short(name: &str) -> String {
    match name.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_string(),
    }
}

fn object(v: &Value) -> Parsed<&Map<String, Value>> {
    v.as_object().ok_or_else(|| "must be an object".to_string())
}

/// A non-empty string at `at` (`""`: the value itself).
fn string(v: Option<&Value>, at: &str) -> Parsed<CompactString> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str().into()),
        _ => Err(problem(at, "must be a non-empty string")),
    }
}

/// `{alias_name, alias_label}` at `at` (`""`: the value itself).
fn alias(v: Option<&Value>, at: &str) -> Parsed<Alias> {
    let obj = v
        .and_then(Value::as_object)
        .ok_or_else(|| problem(at, "must be an object {alias_name, alias_label}"))?;
    Ok(Alias {
        alias_name: string(obj.get("alias_name"), &place(at, "alias_name"))?,
        alias_label: string(obj.get("alias_label"), &place(at, "alias_label"))?,
    })
}

const IDENTIFIER_KEYS: [&str; 4] = ["external_id", "user_alias", "device_id", "braze_id"];

/// A braze_id at `at` (`""`: the value itself): the profile id it names in
/// `ws`.
fn braze_id(ws: WorkspaceId, v: Option<&Value>, at: &str) -> Parsed<crate::model::Uid> {
    let s = string(v, at)?;
    parse_braze_id(ws, &s).ok_or_else(|| {
        problem(
            at,
            "matches no user (a braze_id is 24 hex digits, as member pages list it)",
        )
    })
}

/// An email identifier at `at`.
fn email(v: Option<&Value>, at: &str) -> Parsed<CompactString> {
    let s = string(v, at)?;
    if is_email(&s) {
        Ok(s)
    } else {
        Err(problem(at, "must be an email address"))
    }
}

/// A phone identifier at `at`: E.164, not normalised.
fn phone(v: Option<&Value>, at: &str) -> Parsed<CompactString> {
    let s = string(v, at)?;
    if is_phone(&s) {
        Ok(s)
    } else {
        Err(problem(
            at,
            "must be an E.164 phone number (\"+\" then 8 to 15 digits, nothing else)",
        ))
    }
}

/// The email, else the phone, of an object that has an external_id, if
/// it is a valid identifier (else it is only an attribute, or ignored).
fn contact(obj: &Map<String, Value>) -> Option<Contact> {
    if let Ok(e) = email(obj.get("email"), "email") {
        return Some(Contact::Email(e));
    }
    phone(obj.get("phone"), "phone").ok().map(Contact::Phone)
}

/// Which profile a track object addresses. One of external_id, user_alias,
/// device_id and braze_id, or external_id with braze_id (which must name
/// the same profile); with none of them, `email`, else `phone`.
/// `_update_existing_only` defaults to false for external_id, email and
/// phone, and true for user_alias; a device_id object always writes (the
/// SDK extension); a braze_id never creates.
fn target(ws: WorkspaceId, obj: &Map<String, Value>) -> Parsed<Target> {
    let given: Vec<&str> = IDENTIFIER_KEYS
        .iter()
        .copied()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let existing_only = match obj.get("_update_existing_only") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err("_update_existing_only: must be a boolean".into()),
    };
    let present = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    match given.as_slice() {
        ["external_id"] | ["external_id", "braze_id"] => {
            let id = string(obj.get("external_id"), "external_id")?;
            let create = !existing_only.unwrap_or(false);
            let braze = match given.len() {
                2 => Some(braze_id(ws, obj.get("braze_id"), "braze_id")?),
                _ => None,
            };
            let contact = contact(obj);
            Ok(if braze.is_none() && contact.is_none() {
                Target::External { id, create }
            } else {
                Target::ExternalWith {
                    id,
                    create,
                    braze_id: braze,
                    contact,
                }
            })
        }
        ["user_alias"] => Ok(Target::Alias {
            alias: alias(obj.get("user_alias"), "user_alias")?,
            create: !existing_only.unwrap_or(true),
        }),
        ["device_id"] => Ok(Target::Device(string(obj.get("device_id"), "device_id")?)),
        ["braze_id"] => Ok(Target::BrazeId(braze_id(
            ws,
            obj.get("braze_id"),
            "braze_id",
        )?)),
        [] if present("email") => Ok(Target::Email {
            email: email(obj.get("email"), "email")?,
            create: !existing_only.unwrap_or(false),
        }),
        [] if present("phone") => Ok(Target::Phone {
            phone: phone(obj.get("phone"), "phone")?,
            create: !existing_only.unwrap_or(false),
        }),
        [] => {
            Err("needs one of external_id, user_alias, device_id, braze_id, email or phone".into())
        }
        _ => Err(format!(
            "give exactly one identifier (braze_id may come with external_id), got {}",
            given.join(", ")
        )),
    }
}

/// The attribute Braze's SDKs and Segment's destination send a location in.
pub const LOCATION_ATTRIBUTE: &str = "current_location";

/// One attribute of a track object. An object value is an *operation* when
/// its keys are exactly `inc` (`{"inc": n}`: increment), or a non-empty
/// subset of `add` and `remove` (edit a string array); those keep their
/// meaning and their errors. Any other object is a *value*: a nested
/// custom attribute, stored as sent. `current_location` takes a location
/// `{"latitude", "longitude"}` (or null), nothing else.
fn attr_change(name: &str, v: &Value, at: &str) -> Parsed<AttrUpdate> {
    if name == LOCATION_ATTRIBUTE {
        return match v {
            Value::Null => Ok(AttrUpdate::Remove),
            Value::Object(o) => location(o, at).map(AttrUpdate::Set),
            _ => Err(problem(
                at,
                "must be an object {\"latitude\": n, \"longitude\": n} or null",
            )),
        };
    }
    Ok(match v {
        Value::Null => AttrUpdate::Remove,
        Value::Object(o) if o.len() == 1 && o.contains_key("inc") => {
            let by = o["inc"]
                .as_f64()
                .ok_or_else(|| problem(at, "inc must be a number"))?;
            AttrUpdate::Increment(by)
        }
        Value::Object(o) if !o.is_empty() && o.keys().all(|k| k == "add" || k == "remove") => {
            let part = |k: &str| -> Parsed<Vec<CompactString>> {
                match o.get(k) {
                    None => Ok(Vec::new()),
                    Some(Value::Array(items)) => strings(items, at),
                    Some(_) => Err(problem(at, format_args!("{k} must be an array of strings"))),
                }
            };
            AttrUpdate::ArrayEdit {
                add: part("add")?,
                remove: part("remove")?,
            }
        }
        v => AttrUpdate::Set(value(v, at)?),
    })
}

/// A value that is not null: what a nested object holds, too.
fn value(v: &Value, at: &str) -> Parsed<AttrValue> {
    Ok(match v {
        Value::Null => return Err(problem(at, "must not be null")),
        Value::Bool(b) => AttrValue::Bool(*b),
        Value::Number(n) => AttrValue::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => AttrValue::from_text(s),
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            AttrValue::Objects(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, o)| {
                        nested_object(o.as_object().expect("checked"), &format!("{at}[{i}]"))
                    })
                    .collect::<Parsed<_>>()?,
            )
        }
        Value::Array(items) => AttrValue::Array(strings(items, at)?),
        Value::Object(o) => AttrValue::Object(nested_object(o, at)?),
    })
}

/// A nested object: its members are values; a `null` member is left out
/// (the key is absent), an empty key is refused.
fn nested_object(o: &Map<String, Value>, at: &str) -> Parsed<AttrObject> {
    let mut out = AttrObject::new();
    for (k, v) in o {
        if k.is_empty() {
            return Err(problem(at, "object keys must be non-empty strings"));
        }
        if v.is_null() {
            continue;
        }
        out.insert(k.as_str().into(), value(v, &place(at, &short(k)))?);
    }
    Ok(out)
}

/// `{"latitude": [-90, 90], "longitude": [-180, 180]}`, numbers.
fn location(o: &Map<String, Value>, at: &str) -> Parsed<AttrValue> {
    if let Some(k) = o.keys().find(|k| *k != "latitude" && *k != "longitude") {
        return Err(problem(
            at,
            format_args!(
                "unknown key {:?}; a location is {{\"latitude\", \"longitude\"}}",
                short(k)
            ),
        ));
    }
    let coord = |k: &str, max: f64| -> Parsed<f64> {
        match o.get(k).and_then(Value::as_f64) {
            Some(x) if (-max..=max).contains(&x) => Ok(x),
            _ => Err(problem(
                &place(at, k),
                format_args!("must be a number from -{max} to {max}"),
            )),
        }
    };
    Ok(AttrValue::Location {
        latitude: coord("latitude", 90.0)?,
        longitude: coord("longitude", 180.0)?,
    })
}

fn strings(items: &[Value], at: &str) -> Parsed<Vec<CompactString>> {
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(s.as_str().into()),
            _ => Err(problem(at, "arrays may hold strings only, or objects only")),
        })
        .collect()
}

fn event_time(obj: &Map<String, Value>) -> Parsed<i64> {
    match obj.get("time") {
        Some(Value::String(s)) => {
            crate::time::parse_iso8601(s).ok_or_else(|| "time: must be an ISO-8601 time".into())
        }
        _ => Err("time: is required, as an ISO-8601 string".into()),
    }
}

fn attributes_object(ws: WorkspaceId, v: &Value) -> Parsed<AttributesObject> {
    let obj = object(v)?;
    let target = target(ws, obj)?;
    let mut changes = Vec::new();
    for (k, v) in obj {
        if IDENTIFIER_KEYS.contains(&k.as_str()) || k == "_update_existing_only" {
            continue;
        }
        changes.push((k.as_str().into(), attr_change(k, v, &short(k))?));
    }
    Ok(AttributesObject { target, changes })
}

/// An event (`name_key` "name") or a purchase ("product_id", with the
/// `currency` and `price` Braze requires of one).
fn event_object(ws: WorkspaceId, v: &Value, name_key: &str) -> Parsed<EventObject> {
    let obj = object(v)?;
    let purchase = name_key == "product_id";
    Ok(EventObject {
        target: target(ws, obj)?,
        name: string(obj.get(name_key), name_key)?,
        time: event_time(obj)?,
        properties: event_properties(obj)?,
        currency: if purchase { Some(currency(obj)?) } else { None },
        price: if purchase { Some(price(obj)?) } else { None },
    })
}

/// The largest `properties` object an event or purchase may carry, as
/// JSON (Braze's 50 KB).
const MAX_PROPERTIES_BYTES: usize = 50 * 1024;

/// An event's or purchase's `properties` (kept as JSON text for the change
/// feed): an object of at most 50 KB; absent or null is none.
fn event_properties(obj: &Map<String, Value>) -> Parsed<Option<std::sync::Arc<str>>> {
    match obj.get("properties") {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > MAX_PROPERTIES_BYTES {
                return Err(format!(
                    "properties: must be at most {MAX_PROPERTIES_BYTES} bytes of JSON, not {}",
                    text.len()
                ));
            }
            Ok(Some(text.into()))
        }
        Some(_) => Err("properties: must be an object".into()),
    }
}

/// A purchase's `currency`: a three-letter ISO 4217 code, as given.
fn currency(obj: &Map<String, Value>) -> Parsed<CompactString> {
    match obj.get("currency") {
        Some(Value::String(c)) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok(c.as_str().into())
        }
        _ => Err("currency: is required, as a three-letter ISO 4217 code".into()),
    }
}

/// A purchase's `price`: a number.
fn price(obj: &Map<String, Value>) -> Parsed<f64> {
    match obj.get("price").and_then(Value::as_f64) {
        Some(p) => Ok(p),
        None => Err("price: is required, as a number".into()),
    }
}

fn parse_track(ws: WorkspaceId, body: &Value) -> Result<Batch<Track>> {
    let body = body_object(body)?;
    let attributes = list(body, "attributes", MAX_TRACK_OBJECTS)?;
    let events = list(body, "events", MAX_TRACK_OBJECTS)?;
    let purchases = list(body, "purchases", MAX_TRACK_OBJECTS)?;
    if attributes.is_empty() && events.is_empty() && purchases.is_empty() {
        return Err(fatal(
            "give at least one of attributes, events or purchases",
        ));
    }
    let mut batch = Batch::<Track>::default();
    for (i, v) in attributes.iter().enumerate() {
        batch.add(
            InputArray::Attributes,
            i,
            attributes_object(ws, v),
            |t, o| t.attributes.push(o),
        );
    }
    for (i, v) in events.iter().enumerate() {
        batch.add(
            InputArray::Events,
            i,
            event_object(ws, v, "name"),
            |t, o| t.events.push(o),
        );
    }
    for (i, v) in purchases.iter().enumerate() {
        batch.add(
            InputArray::Purchases,
            i,
            event_object(ws, v, "product_id"),
            |t, o| t.purchases.push(o),
        );
    }
    Ok(batch)
}

/// `errors` as Braze lists them.
fn errors_json(errors: &[ObjectError]) -> Value {
    errors
        .iter()
        .map(|e| json!({"type": e.message, "input_array": e.array.name(), "index": e.index}))
        .collect()
}

/// `X-Braze-Batch: true` marks a request from a client that batches many
/// users into it (Segment's Braze destination, for one). Accepted on every
/// users call and counted in `cohortd_users_batched_requests_total`;
/// nothing else changes, since every object is judged on its own anyway.
/// Any other value, or none, is an ordinary request.
fn note_batch(engine: &Engine, req: &HttpRequest, route: &'static str) {
    let batched = req
        .headers()
        .get("x-braze-batch")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if batched {
        engine.metrics().batched(route);
    }
}

#[utoipa::path(
    post,
    path = "/users/track",
    tag = "Users",
    operation_id = "trackUsers",
    summary = "Create and update profiles: attributes, events, purchases",
    description = "Fatal (400, nothing applied): a malformed body, a non-object, an array over 75 \
        objects, or no arrays at all. Anything wrong with one object is not fatal: that object \
        is skipped and listed in `errors`, every other one applies, and the answer is 201.",
    params(super::openapi::shapes::BrazeBatch),
    request_body(content = super::openapi::shapes::TrackRequest, example = json!({
        "attributes": [
            {"external_id": "u1", "plan": "gold", "current_location": {"latitude": 38.72, "longitude": -9.14}},
            {"external_id": "u2", "plan": "silver"},
            {"device_id": "d1", "app_version": "1.2"}
        ],
        "events": [{"external_id": "u1", "name": "opened_app", "time": "2026-11-24T05:14:36Z",
                    "properties": {"screen": "home"}}],
        "purchases": [{"external_id": "u1", "product_id": "sku_1", "currency": "USD", "price": 9.99,
                       "time": "2026-11-24T05:14:36Z"}]
    })),
    responses(
        (status = 201, description = "Applied, but for the objects listed in `errors`",
         body = super::openapi::shapes::TrackResponse,
         example = json!({"message": "success", "attributes_processed": 3, "events_processed": 1,
             "purchases_processed": 1, "errors": []})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 413, response = super::openapi::TooLarge),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn track(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    note_batch(&engine, &req, "/users/track");
    let ws = auth.0.id();
    let batch = read_json(&engine, payload, move |v: Value| parse_track(ws, &v)).await?;
    let r = engine.track(&auth.0, batch).await?;
    Ok(created(json!({
        "message": "success",
        "attributes_processed": r.attributes_processed,
        "events_processed": r.events_processed,
        "purchases_processed": r.purchases_processed,
        "errors": errors_json(&r.errors),
    })))
}

fn identify_alias(v: &Value) -> Parsed<(CompactString, Alias)> {
    let obj = object(v)?;
    Ok((
        string(obj.get("external_id"), "external_id")?,
        alias(obj.get("user_alias"), "user_alias")?,
    ))
}

fn identify_device(v: &Value) -> Parsed<(CompactString, CompactString)> {
    let obj = object(v)?;
    Ok((
        string(obj.get("external_id"), "external_id")?,
        string(obj.get("device_id"), "device_id")?,
    ))
}

fn parse_identify(body: &Value) -> Result<Batch<Identify>> {
    let body = body_object(body)?;
    let aliases = list(body, "aliases_to_identify", MAX_USER_ENTRIES)?;
    let devices = list(body, "devices_to_identify", MAX_USER_ENTRIES)?;
    if aliases.is_empty() && devices.is_empty() {
        return Err(fatal("give aliases_to_identify and/or devices_to_identify"));
    }
    let mut batch = Batch::<Identify>::default();
    for (i, v) in aliases.iter().enumerate() {
        batch.add(
            InputArray::AliasesToIdentify,
            i,
            identify_alias(v),
            |r, e| r.aliases.push(e),
        );
    }
    for (i, v) in devices.iter().enumerate() {
        batch.add(
            InputArray::DevicesToIdentify,
            i,
            identify_device(v),
            |r, e| r.devices.push(e),
        );
    }
    Ok(batch)
}

#[utoipa::path(
    post,
    path = "/users/identify",
    tag = "Users",
    operation_id = "identifyUsers",
    summary = "Identify alias-only or anonymous device profiles",
    description = "An alias-only profile (`aliases_to_identify`) or an anonymous device profile \
        (`devices_to_identify`) becomes, or merges into, the identified profile with that \
        external_id. A merge unions cohort memberships, aliases, devices, attributes (the \
        identified side wins) and event stats.",
    params(super::openapi::shapes::BrazeBatch),
    request_body(content = super::openapi::shapes::IdentifyRequest, example = json!({
        "aliases_to_identify": [{"external_id": "u1", "user_alias": {"alias_name": "a@example.com", "alias_label": "email"}}],
        "devices_to_identify": [{"external_id": "u3", "device_id": "d1"}]
    })),
    responses(
        (status = 201, description = "Applied, but for the entries listed in `errors`",
         body = super::openapi::shapes::IdentifyResponse,
         example = json!({"message": "success", "aliases_processed": 1, "devices_processed": 1,
             "merged": 1, "errors": []})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 413, response = super::openapi::TooLarge),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn identify(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    note_batch(&engine, &req, "/users/identify");
    let batch = read_json(&engine, payload, |v: Value| parse_identify(&v)).await?;
    let r = engine.identify(&auth.0, batch).await?;
    Ok(created(json!({
        "message": "success",
        "aliases_processed": r.aliases_processed,
        "devices_processed": r.devices_processed,
        "merged": r.merges.len(),
        "errors": errors_json(&r.errors),
    })))
}

/// `{"external_id"?, "alias_name", "alias_label"}`.
fn new_alias(v: &Value) -> Parsed<(Option<CompactString>, Alias)> {
    let obj = object(v)?;
    let external = match obj.get("external_id") {
        None | Some(Value::Null) => None,
        v => Some(string(v, "external_id")?),
    };
    Ok((external, alias(Some(v), "")?))
}

fn parse_alias_new(body: &Value) -> Result<Batch<NewAliases>> {
    let body = body_object(body)?;
    let items = list(body, "user_aliases", MAX_USER_ENTRIES)?;
    if items.is_empty() {
        return Err(fatal("user_aliases: give at least one alias"));
    }
    let mut batch = Batch::<NewAliases>::default();
    for (i, v) in items.iter().enumerate() {
        batch.add(InputArray::UserAliases, i, new_alias(v), |r, e| r.0.push(e));
    }
    Ok(batch)
}

#[utoipa::path(
    post,
    path = "/users/alias/new",
    tag = "Users",
    operation_id = "newAliases",
    summary = "Add aliases",
    params(super::openapi::shapes::BrazeBatch),
    request_body(content = super::openapi::shapes::AliasNewRequest, example = json!({
        "user_aliases": [{"alias_name": "a@example.com", "alias_label": "email"}]
    })),
    responses(
        (status = 201, description = "Applied, but for the entries listed in `errors`",
         body = super::openapi::shapes::AliasNewResponse,
         example = json!({"message": "success", "aliases_processed": 1, "errors": []})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 413, response = super::openapi::TooLarge),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn alias_new(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    note_batch(&engine, &req, "/users/alias/new");
    let batch = read_json(&engine, payload, |v: Value| parse_alias_new(&v)).await?;
    let r = engine.new_aliases(&auth.0, batch).await?;
    Ok(created(json!({
        "message": "success",
        "aliases_processed": r.aliases_processed,
        "errors": errors_json(&r.errors),
    })))
}

/// The identifiers to delete: external_ids, user_aliases, device_ids,
/// braze_ids, email_addresses, phone_numbers, each entry on its own (a
/// malformed one is refused, the others stay; a braze_id of another
/// workspace is malformed here).
fn parse_delete(ws: WorkspaceId, body: &Value) -> Result<Batch<Vec<Identifier>>> {
    let body = body_object(body)?;
    let externals = list(body, "external_ids", MAX_USER_ENTRIES)?;
    let aliases = list(body, "user_aliases", MAX_USER_ENTRIES)?;
    let devices = list(body, "device_ids", MAX_USER_ENTRIES)?;
    let braze_ids = list(body, "braze_ids", MAX_USER_ENTRIES)?;
    let emails = list(body, "email_addresses", MAX_USER_ENTRIES)?;
    let phones = list(body, "phone_numbers", MAX_USER_ENTRIES)?;
    if [externals, aliases, devices, braze_ids, emails, phones]
        .iter()
        .all(|l| l.is_empty())
    {
        return Err(fatal(
            "give external_ids, user_aliases, device_ids, braze_ids, email_addresses and/or \
             phone_numbers",
        ));
    }
    let mut batch = Batch::<Vec<Identifier>>::default();
    for (i, v) in externals.iter().enumerate() {
        batch.add(InputArray::ExternalIds, i, string(Some(v), ""), |ids, e| {
            ids.push(Identifier::External(e))
        });
    }
    for (i, v) in aliases.iter().enumerate() {
        batch.add(InputArray::UserAliases, i, alias(Some(v), ""), |ids, a| {
            ids.push(Identifier::Alias(a))
        });
    }
    for (i, v) in devices.iter().enumerate() {
        batch.add(InputArray::DeviceIds, i, string(Some(v), ""), |ids, d| {
            ids.push(Identifier::Device(d))
        });
    }
    for (i, v) in braze_ids.iter().enumerate() {
        batch.add(
            InputArray::BrazeIds,
            i,
            braze_id(ws, Some(v), ""),
            |ids, u| ids.push(Identifier::BrazeId(u)),
        );
    }
    for (i, v) in emails.iter().enumerate() {
        batch.add(
            InputArray::EmailAddresses,
            i,
            email(Some(v), ""),
            |ids, e| ids.push(Identifier::Email(e)),
        );
    }
    for (i, v) in phones.iter().enumerate() {
        batch.add(InputArray::PhoneNumbers, i, phone(Some(v), ""), |ids, p| {
            ids.push(Identifier::Phone(p))
        });
    }
    Ok(batch)
}

#[utoipa::path(
    post,
    path = "/users/delete",
    tag = "Users",
    operation_id = "deleteUsers",
    summary = "Delete profiles",
    description = "A deleted profile leaves every cohort and segment at once.",
    params(super::openapi::shapes::BrazeBatch),
    request_body(content = super::openapi::shapes::DeleteRequest, example = json!({"external_ids": ["u2"]})),
    responses(
        (status = 201, description = "Deleted, but for the entries listed in `errors`",
         body = super::openapi::shapes::DeleteResponse,
         example = json!({"message": "success", "deleted": 1, "errors": []})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 413, response = super::openapi::TooLarge),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn delete(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    note_batch(&engine, &req, "/users/delete");
    let ws = auth.0.id();
    let batch = read_json(&engine, payload, move |v: Value| parse_delete(ws, &v)).await?;
    let r = engine.delete_users(&auth.0, batch).await?;
    Ok(created(json!({
        "message": "success",
        "deleted": r.deleted,
        "errors": errors_json(&r.errors),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: WorkspaceId = WorkspaceId(1);

    /// The request's errors before anything applied, as `(array, index,
    /// message)`.
    fn refused<C>(batch: Batch<C>) -> (C, Vec<(&'static str, usize, String)>) {
        let (command, origins) = batch.split();
        let errors = origins
            .resolve(Vec::new())
            .into_iter()
            .map(|e| (e.array.name(), e.index, e.message))
            .collect();
        (command, errors)
    }

    #[test]
    fn track_parses_every_value_kind() {
        let (t, errors) = refused(
            parse_track(
                WS,
                &json!({"attributes": [{
                    "external_id": "u1", "plan": "gold", "n": 3, "vip": true, "gone": null,
                    "since": "2024-01-01T00:00:00Z", "tags": ["a"], "visits": {"inc": 2},
                    "pets": {"add": ["cat"], "remove": ["dog"]}
                }]}),
            )
            .unwrap(),
        );
        assert!(errors.is_empty(), "{errors:?}");
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
        let t = parse_track(WS, &json!({"attributes": [
            {"user_alias": {"alias_name": "n", "alias_label": "l"}},
            {"user_alias": {"alias_name": "n", "alias_label": "l"}, "_update_existing_only": false},
            {"external_id": "x", "_update_existing_only": true}
        ]}))
        .unwrap()
        .command;
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
    fn a_bad_object_is_refused_by_its_index_and_the_others_stay() {
        let cases = [
            (json!({"plan": "x"}), "needs one of external_id"),
            (
                json!({"external_id": "u", "device_id": "d", "braze_id": "000000010000000000000000"}),
                "give exactly one identifier",
            ),
            (
                json!({"external_id": "u", "device_id": "d"}),
                "give exactly one identifier (braze_id may come with external_id), got external_id, device_id",
            ),
            (
                json!({"external_id": "u", "braze_id": "b"}),
                "braze_id: matches no user",
            ),
            (json!({"braze_id": "b"}), "braze_id: matches no user"),
            (
                json!({"braze_id": "000000020000000000000000"}),
                "braze_id: matches no user",
            ),
            (json!({"phone": "555-1234"}), "phone: must be an E.164"),
            (json!({"email": "nobody"}), "email: must be an email address"),
            (
                json!({"user_alias": {"alias_name": "n", "alias_label": "l"}, "braze_id": "000000010000000000000000"}),
                "give exactly one identifier",
            ),
            (
                json!({"external_id": "u", "current_location": {"latitude": 91, "longitude": 0}}),
                "current_location.latitude: must be a number from -90 to 90",
            ),
            (
                json!({"external_id": "u", "current_location": "Lisbon"}),
                "current_location: must be an object",
            ),
            (
                json!({"external_id": "u", "x": {"inc": "1"}}),
                "x: inc must be a number",
            ),
            (
                json!({"external_id": "u", "x": {"a": {"": 1}}}),
                "x.a: object keys must be non-empty strings",
            ),
            (
                json!({"external_id": "u", "t": [1]}),
                "t: arrays may hold strings only, or objects only",
            ),
            (
                json!({"external_id": "u", "t": [{"a": 1}, "b"]}),
                "t: arrays may hold strings only, or objects only",
            ),
            (
                json!({"external_id": 5}),
                "external_id: must be a non-empty string",
            ),
            (
                json!({"external_id": ""}),
                "external_id: must be a non-empty string",
            ),
            (
                json!({"user_alias": {"alias_name": "n"}}),
                "user_alias.alias_label: must be a non-empty string",
            ),
            (
                json!({"external_id": "u", "_update_existing_only": "no"}),
                "_update_existing_only: must be a boolean",
            ),
            (json!(7), "must be an object"),
        ];
        for (bad, says) in cases {
            let body = json!({"attributes": [{"external_id": "a"}, bad, {"external_id": "b"}]});
            let (t, errors) = refused(parse_track(WS, &body).unwrap());
            assert_eq!(t.attributes.len(), 2, "{body}");
            assert_eq!(errors.len(), 1, "{body}");
            let (array, index, message) = &errors[0];
            assert_eq!((*array, *index), ("attributes", 1), "{body}");
            assert!(message.contains(says), "{body} → {message}");
        }
        let (t, errors) = refused(
            parse_track(WS, &json!({
                "events": [{"external_id": "u", "name": "e"}, {"external_id": "u", "name": "e", "time": "soon"},
                           {"external_id": "u", "name": "e", "time": "2024-01-01T00:00:00Z"}],
                "purchases": [{"external_id": "u", "time": "2024-01-01T00:00:00Z"}],
            }))
            .unwrap(),
        );
        assert_eq!((t.events.len(), t.purchases.len()), (1, 0));
        assert_eq!(
            errors,
            vec![
                (
                    "events",
                    0,
                    "time: is required, as an ISO-8601 string".to_string()
                ),
                ("events", 1, "time: must be an ISO-8601 time".to_string()),
                (
                    "purchases",
                    0,
                    "product_id: must be a non-empty string".to_string()
                ),
            ]
        );
    }

    #[test]
    fn only_the_request_as_a_whole_is_fatal() {
        let cases = [
            (json!({}), "at least one"),
            (json!({"attributes": []}), "at least one"),
            (json!([]), "JSON object"),
            (
                json!({"attributes": {"external_id": "u"}}),
                "attributes: must be an array",
            ),
        ];
        for (body, needle) in cases {
            let err = parse_track(WS, &body).unwrap_err().to_string();
            assert!(err.contains(needle), "{body} → {err}");
        }
        let many: Vec<Value> = (0..76)
            .map(|i| json!({"external_id": format!("u{i}")}))
            .collect();
        let err = parse_track(
            WS,
            &json!({ "attributes": [{"external_id": "u"}], "events": many }),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "events: at most 75 objects per request, got 76");
    }

    #[test]
    fn identify_alias_and_delete_refuse_entries_one_by_one() {
        assert!(parse_identify(&json!({})).is_err());
        assert!(parse_delete(WS, &json!({"external_ids": []})).is_err());
        assert!(parse_alias_new(&json!({"user_aliases": []})).is_err());
        let (r, errors) = refused(
            parse_identify(&json!({
                "aliases_to_identify": [{"external_id": "u", "user_alias": {"alias_name": "n", "alias_label": "l"}},
                                        {"external_id": "u"}],
                "devices_to_identify": [{"device_id": "d"}, {"external_id": "u", "device_id": "d"}],
            }))
            .unwrap(),
        );
        assert_eq!((r.aliases.len(), r.devices.len()), (1, 1));
        assert_eq!(
            errors,
            vec![
                (
                    "aliases_to_identify",
                    1,
                    "user_alias: must be an object {alias_name, alias_label}".to_string()
                ),
                (
                    "devices_to_identify",
                    0,
                    "external_id: must be a non-empty string".to_string()
                ),
            ]
        );
        let (r, errors) = refused(
            parse_alias_new(&json!({"user_aliases": [
                {"alias_name": "n"}, {"external_id": 3, "alias_name": "n", "alias_label": "l"},
                {"alias_name": "n", "alias_label": "l"},
            ]}))
            .unwrap(),
        );
        assert_eq!(r.0.len(), 1);
        assert_eq!(
            errors,
            vec![
                (
                    "user_aliases",
                    0,
                    "alias_label: must be a non-empty string".to_string()
                ),
                (
                    "user_aliases",
                    1,
                    "external_id: must be a non-empty string".to_string()
                ),
            ]
        );
        let (ids, errors) = refused(
            parse_delete(
                WS,
                &json!({"external_ids": ["a", 5], "device_ids": ["d"], "braze_ids": ["b"]}),
            )
            .unwrap(),
        );
        assert_eq!(ids.len(), 2);
        assert_eq!(
            errors.iter().map(|(a, i, _)| (*a, *i)).collect::<Vec<_>>(),
            vec![("external_ids", 1), ("braze_ids", 0)]
        );
    }

    #[test]
    fn objects_are_operations_only_in_the_exact_shapes() {
        let change = |v: Value| attr_change("x", &v, "x").expect("parses");
        assert_eq!(change(json!({"inc": 2})), AttrUpdate::Increment(2.0));
        assert!(matches!(
            change(json!({"add": ["a"]})),
            AttrUpdate::ArrayEdit { .. }
        ));
        assert!(matches!(
            change(json!({"add": ["a"], "remove": []})),
            AttrUpdate::ArrayEdit { .. }
        ));
        let AttrUpdate::Set(AttrValue::Object(o)) =
            change(json!({"inc": 2, "by": 1, "gone": null, "when": "2024-05-01T10:00:00Z"}))
        else {
            panic!("an object of other keys is a value")
        };
        assert_eq!(o.len(), 3, "null members are left out");
        assert_eq!(o["inc"], AttrValue::Num(2.0));
        assert!(matches!(o["when"], AttrValue::Time { .. }));
        assert_eq!(
            change(json!({})),
            AttrUpdate::Set(AttrValue::Object(AttrObject::new()))
        );
        // Inside a value, an {"inc": n} is just an object.
        let AttrUpdate::Set(AttrValue::Object(o)) = change(json!({"a": {"inc": 1}})) else {
            panic!()
        };
        assert!(matches!(o["a"], AttrValue::Object(_)));
        let AttrUpdate::Set(AttrValue::Objects(list)) = change(json!([{"a": 1}, {}])) else {
            panic!("an array of objects")
        };
        assert_eq!(list.len(), 2);
        assert_eq!(
            change(json!([])),
            AttrUpdate::Set(AttrValue::Array(Vec::new()))
        );
        assert_eq!(
            attr_change(
                "current_location",
                &json!({"latitude": 38.72, "longitude": -9.14}),
                "c"
            ),
            Ok(AttrUpdate::Set(AttrValue::Location {
                latitude: 38.72,
                longitude: -9.14
            }))
        );
        assert_eq!(
            attr_change("current_location", &Value::Null, "c"),
            Ok(AttrUpdate::Remove)
        );
    }
}
