//! `POST /users/export/ids`: profiles as Braze's export by identifier
//! returns them (what the dashboard's user lookup and a support tool read).
//!
//! The request names up to 50 `external_ids` and 50 `user_aliases`, and
//! at most one each of `device_id`, `braze_id`, `email_address` and
//! `phone`, as Braze's does; `fields_to_export` picks the fields. The
//! answer lists each profile found once, in request order (an email or
//! phone names every profile holding it, as delete addresses them), and
//! every identifier that named none in `invalid_user_ids`, as given.
//!
//! Where cohortd keeps less than Braze, the shape says so rather than
//! inventing: purchases are recorded as the `purchase` event (SPEC §3), so
//! they are in `custom_events` under that name, and a device is listed by
//! its id only. Braze's standard attributes (`first_name`, `email`, …) are
//! top-level fields, every other attribute is under `custom_attributes`,
//! and `current_location` is `last_coordinates` `[longitude, latitude]`.

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use super::{alias, body_object, braze_id, email, fatal, phone, string, MAX_USER_ENTRIES};
use super::{created, read_json, WorkspaceAuth, LOCATION_ATTRIBUTE};
use crate::engine::Engine;
use crate::error::Result;
use crate::model::{BrazeId, Identifier, WorkspaceId};
use crate::profiles::{AttrValue, Profile};
use crate::time::format_millis;

/// Attributes Braze exports as top-level fields, not custom attributes.
const STANDARD: [&str; 12] = [
    "first_name",
    "last_name",
    "email",
    "phone",
    "dob",
    "country",
    "home_city",
    "language",
    "gender",
    "time_zone",
    "email_subscribe",
    "push_subscribe",
];

/// Fields besides the standard attributes that `fields_to_export` may name.
const FIELDS: [&str; 7] = [
    "external_id",
    "user_aliases",
    "braze_id",
    "devices",
    "custom_attributes",
    "custom_events",
    "last_coordinates",
];

/// What one request asks for.
#[derive(Debug, PartialEq)]
struct Export {
    ids: Vec<Identifier>,
    /// As given, for `invalid_user_ids`, by position in `ids`.
    given: Vec<Value>,
    /// Identifiers that can name no profile here (a braze_id of another
    /// workspace), as given.
    elsewhere: Vec<Value>,
    /// `None`: every field.
    fields: Option<Vec<String>>,
}

fn parse(ws: WorkspaceId, body: &Value) -> Result<Export> {
    let body = body_object(body)?;
    const KNOWN: [&str; 7] = [
        "external_ids",
        "user_aliases",
        "device_id",
        "braze_id",
        "email_address",
        "phone",
        "fields_to_export",
    ];
    if let Some(k) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(fatal(format_args!(
            "unknown field {k:?}: give external_ids, user_aliases, device_id, braze_id, \
             email_address and/or phone (and fields_to_export)"
        )));
    }
    let mut ids = Vec::new();
    let mut given = Vec::new();
    let mut elsewhere = Vec::new();
    let mut add = |id: Identifier, v: &Value| {
        ids.push(id);
        given.push(v.clone());
    };
    let bad = |what: String| fatal(what);
    for (i, v) in super::list(body, "external_ids", MAX_USER_ENTRIES)?
        .iter()
        .enumerate()
    {
        let id = string(Some(v), &format!("external_ids[{i}]")).map_err(bad)?;
        add(Identifier::External(id), v);
    }
    for (i, v) in super::list(body, "user_aliases", MAX_USER_ENTRIES)?
        .iter()
        .enumerate()
    {
        let a = alias(Some(v), &format!("user_aliases[{i}]")).map_err(bad)?;
        add(Identifier::Alias(a), v);
    }
    let one = |k: &str| body.get(k).filter(|v| !v.is_null());
    if let Some(v) = one("device_id") {
        add(
            Identifier::Device(string(Some(v), "device_id").map_err(bad)?),
            v,
        );
    }
    if let Some(v) = one("braze_id") {
        match braze_id(ws, Some(v), "braze_id") {
            Ok(uid) => add(Identifier::BrazeId(uid), v),
            // Well-formed but of another workspace: named no profile here.
            Err(_) if v.as_str().is_some_and(is_braze_id) => elsewhere.push(v.clone()),
            Err(e) => return Err(bad(e)),
        }
    }
    if let Some(v) = one("email_address") {
        add(
            Identifier::Email(email(Some(v), "email_address").map_err(bad)?),
            v,
        );
    }
    if let Some(v) = one("phone") {
        add(Identifier::Phone(phone(Some(v), "phone").map_err(bad)?), v);
    }
    if ids.is_empty() && elsewhere.is_empty() {
        return Err(fatal(
            "give external_ids, user_aliases, device_id, braze_id, email_address or phone",
        ));
    }
    let fields = match body.get("fields_to_export") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut fields = Vec::with_capacity(items.len());
            for v in items {
                match v.as_str() {
                    Some(f) if FIELDS.contains(&f) || STANDARD.contains(&f) => {
                        fields.push(f.to_string())
                    }
                    _ => {
                        return Err(fatal(format_args!(
                            "fields_to_export: unknown field {v}; known: {}, {}",
                            FIELDS.join(", "),
                            STANDARD.join(", ")
                        )))
                    }
                }
            }
            Some(fields)
        }
        Some(_) => return Err(fatal("fields_to_export: must be an array of field names")),
    };
    Ok(Export {
        ids,
        given,
        elsewhere,
        fields,
    })
}

/// 24 hex digits: the shape of any workspace's braze_id.
fn is_braze_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One profile as the export lists it.
fn user(ws: WorkspaceId, uid: crate::model::Uid, p: &Profile) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(e) = &p.external_id {
        out.insert("external_id".into(), json!(e.as_str()));
    }
    if !p.aliases().is_empty() {
        let aliases: Vec<Value> = p
            .aliases()
            .iter()
            .map(|a| json!({"alias_name": a.alias_name.as_str(), "alias_label": a.alias_label.as_str()}))
            .collect();
        out.insert("user_aliases".into(), Value::Array(aliases));
    }
    out.insert("braze_id".into(), json!(BrazeId(ws, uid).to_string()));
    if !p.devices().is_empty() {
        let devices: Vec<Value> = p
            .devices()
            .iter()
            .map(|d| json!({"device_id": d.as_str()}))
            .collect();
        out.insert("devices".into(), Value::Array(devices));
    }
    let mut custom = Map::new();
    for (name, value) in p.attributes().iter() {
        match value {
            AttrValue::Location {
                latitude,
                longitude,
            } if name == LOCATION_ATTRIBUTE => {
                out.insert("last_coordinates".into(), json!([longitude, latitude]));
            }
            v if STANDARD.contains(&name) => {
                out.insert(name.to_string(), v.to_json());
            }
            v => {
                custom.insert(name.to_string(), v.to_json());
            }
        }
    }
    if !custom.is_empty() {
        out.insert("custom_attributes".into(), Value::Object(custom));
    }
    if !p.events().is_empty() {
        let events: Vec<Value> = p
            .events()
            .iter()
            .map(|(name, s)| {
                json!({"name": name, "first": format_millis(s.first),
                       "last": format_millis(s.last), "count": s.count})
            })
            .collect();
        out.insert("custom_events".into(), Value::Array(events));
    }
    out
}

#[utoipa::path(
    post,
    path = "/users/export/ids",
    tag = "Users",
    operation_id = "exportUsersByIds",
    summary = "Export profiles by identifier (Braze's export by identifier)",
    description = "Each profile found once, in request order (an email or phone names every \
        profile holding it); every identifier that named none in `invalid_user_ids`, as given.",
    request_body(content = crate::http::openapi::shapes::ExportRequest, example = json!({
        "external_ids": ["u1", "nobody"],
        "fields_to_export": ["external_id", "braze_id", "custom_attributes", "custom_events"]
    })),
    responses(
        (status = 201, description = "The profiles found", body = crate::http::openapi::shapes::ExportResponse,
         example = json!({"message": "success",
             "users": [{"external_id": "u1", "braze_id": "000000010000000000000000",
                        "custom_attributes": {"plan": "gold"},
                        "custom_events": [{"name": "opened_app", "first": "2026-11-24T05:14:36.000Z",
                                           "last": "2026-11-24T05:14:36.000Z", "count": 1}]}],
             "invalid_user_ids": ["nobody"]})),
        (status = 400, response = crate::http::openapi::BadRequest),
        (status = 401, response = crate::http::openapi::Unauthorized),
        (status = 413, response = crate::http::openapi::TooLarge),
        (status = 503, response = crate::http::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn export_ids(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let ws = auth.0.id();
    let req = read_json(&engine, payload, move |v: Value| parse(ws, &v)).await?;
    let found = auth.0.profiles_named(&req.ids);
    let mut users = Vec::new();
    let mut seen = Vec::new();
    let mut invalid = req.elsewhere.clone();
    for (hits, given) in found.iter().zip(&req.given) {
        if hits.is_empty() {
            invalid.push(given.clone());
        }
        for (uid, p) in hits {
            if seen.contains(uid) {
                continue;
            }
            seen.push(*uid);
            let mut u = user(ws, *uid, p);
            if let Some(fields) = &req.fields {
                u.retain(|k, _| fields.iter().any(|f| f == k));
            }
            users.push(Value::Object(u));
        }
    }
    let mut answer = json!({"users": users, "message": "success"});
    if !invalid.is_empty() {
        answer["invalid_user_ids"] = Value::Array(invalid);
    }
    Ok(created(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: WorkspaceId = WorkspaceId(1);

    fn refused(body: Value) -> String {
        match parse(WS, &body) {
            Err(e) => e.to_string(),
            Ok(x) => panic!("accepted {body}: {x:?}"),
        }
    }

    #[test]
    fn identifiers_are_read_in_request_order() {
        let x = parse(
            WS,
            &json!({"external_ids": ["a", "b"], "user_aliases": [{"alias_name": "n", "alias_label": "l"}],
                    "device_id": "d", "email_address": "x@example.com", "phone": "+14155550100",
                    "fields_to_export": ["external_id", "first_name"]}),
        )
        .unwrap();
        assert_eq!(x.ids.len(), 6);
        assert_eq!(x.ids[0], Identifier::External("a".into()));
        assert_eq!(x.ids[3], Identifier::Device("d".into()));
        assert_eq!(x.given[1], json!("b"));
        assert_eq!(x.fields.unwrap(), ["external_id", "first_name"]);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert!(refused(json!({})).contains("give external_ids"));
        assert!(refused(json!([])).contains("JSON object"));
        assert!(refused(json!({"external_ids": "a"})).contains("must be an array"));
        assert!(refused(json!({"external_ids": [""]})).contains("external_ids[0]"));
        let many: Vec<String> = (0..51).map(|i| i.to_string()).collect();
        assert!(refused(json!({ "external_ids": many })).contains("at most 50"));
        assert!(refused(json!({"external_id": "a"})).contains("unknown field"));
        assert!(refused(json!({"phone": "12"})).contains("E.164"));
        assert!(
            refused(json!({"external_ids": ["a"], "fields_to_export": ["nope"]}))
                .contains("unknown field \"nope\"")
        );
    }
}
