//! `POST /partners/{partner}/cohorts` and `/partners/{partner}/cohorts/users`:
//! the Braze partner cohort import API, exactly.
//!
//! Checks run in SPEC order: unknown partner (404) → body read (413) → JSON
//! parses into an object (400) → partner API key (401) → client secret (401)
//! → the secret belongs to this partner (401) → rate limit (429) → fields
//! (400). The envelope is read borrowing each field as raw JSON; the small
//! fields are decoded, and `cohort_changes` is kept as its span of the body
//! and decoded only once the request is authorized, so a request with a bad
//! key is refused before its changes are looked at. A large body is read,
//! and large changes decoded, off the HTTP worker (`body::parse`).
//! Errors answer `{"message": …}` with Braze's texts; `X-RateLimit-*`
//! headers are on every response once the workspace is known.

use std::borrow::Cow;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::de::{DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::engine::ratelimit::RateStatus;
use crate::engine::state::Workspace;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::limits::{Exceeded, Limit};
use crate::model::{Alias, Change, CohortKey, Identifier};

/// At most this many identifiers per users request, counted raw.
pub const MAX_IDENTIFIERS: usize = 1000;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    partner_api_key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    client_secret: Option<&'a RawValue>,
    #[serde(borrow, default)]
    cohort_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    created_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    cohort_changes: Option<&'a RawValue>,
}

/// One change of a delta: identifiers to add, or to remove with
/// `should_remove`. Each key is optional; absent, `null` or `[]` means
/// none. Ids are non-empty strings.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = CohortChange)]
pub(super) struct ChangeWire<'a> {
    /// External ids: match the profile with that `external_id`.
    #[serde(borrow, default)]
    user_ids: Option<Vec<Cow<'a, str>>>,
    /// Device ids: match anonymous profiles only.
    #[serde(borrow, default)]
    device_ids: Option<Vec<Cow<'a, str>>>,
    /// Aliases: match the profile holding that exact pair.
    #[serde(borrow, default)]
    #[schema(value_type = Option<Vec<super::openapi::shapes::UserAlias>>)]
    aliases: Option<Vec<AliasWire<'a>>>,
    /// Absent, `null` or `false`: add.
    #[serde(default)]
    should_remove: Option<bool>,
}

#[derive(Deserialize)]
struct AliasWire<'a> {
    #[serde(borrow)]
    alias_name: Cow<'a, str>,
    #[serde(borrow)]
    alias_label: Cow<'a, str>,
}

/// A raw field as a string, or `None` when absent, `null` or not a string.
fn text(raw: Option<&RawValue>) -> Option<String> {
    raw.and_then(|r| serde_json::from_str::<Cow<'_, str>>(r.get()).ok())
        .map(Cow::into_owned)
}

fn non_empty(field: &Option<String>, err: Error) -> Result<&str> {
    field.as_deref().filter(|s| !s.is_empty()).ok_or(err)
}

/// The envelope, read: its small fields decoded, and `cohort_changes`
/// as its span of the body, decoded only once the request is authorized.
struct Fields {
    partner_api_key: Option<String>,
    client_secret: Option<String>,
    cohort_id: Option<String>,
    name: Option<String>,
    created_at: Option<String>,
    cohort_changes: Option<std::ops::Range<usize>>,
}

/// Reads the envelope, or says why the body is not one (the 400's text).
fn fields(body: &[u8]) -> std::result::Result<Fields, String> {
    // serde would also read a JSON array into the envelope struct.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let env: Envelope<'_> =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    if !is_object {
        return Err("request body must be a JSON object".to_string());
    }
    // A borrowed raw value is a slice of `body`: its span is where it starts.
    let span = |raw: &RawValue| {
        let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
        start..start + raw.get().len()
    };
    Ok(Fields {
        partner_api_key: text(env.partner_api_key),
        client_secret: text(env.client_secret),
        cohort_id: text(env.cohort_id),
        name: text(env.name),
        created_at: text(env.created_at),
        cohort_changes: env.cohort_changes.map(span),
    })
}

/// An authorized partner request: its workspace and rate-limit status.
struct Authorized {
    ws: std::sync::Arc<Workspace>,
    rate: RateStatus,
}

/// The common front of both endpoints, up to and including the rate limit.
/// On error, returns the rate status too when the workspace was known.
/// A large body is read on the parse pool (`body::parse`).
async fn admit(
    engine: &Engine,
    partner: &str,
    body: &web::Bytes,
) -> std::result::Result<(Fields, Authorized), (Error, Option<RateStatus>)> {
    let bytes = body.clone();
    let env = super::body::parse(body.len(), move || fields(&bytes))
        .await
        .map_err(|e| (e, None))?
        .map_err(|m| (Error::bad_request("invalid_json", m), None))?;
    let ws = engine
        .authorize_partner(
            partner,
            env.partner_api_key.as_deref(),
            env.client_secret.as_deref(),
        )
        .map_err(|e| (e, None))?;
    let rate = engine.rate_hit(&ws, partner);
    if !rate.allowed {
        return Err((Error::RateLimited, Some(rate)));
    }
    Ok((env, Authorized { ws, rate }))
}

fn respond(
    result: std::result::Result<(serde_json::Value, RateStatus), (Error, Option<RateStatus>)>,
) -> HttpResponse {
    let (mut builder, body, rate) = match result {
        Ok((body, rate)) => (HttpResponse::Created(), body, Some(rate)),
        Err((e, rate)) => {
            let status = actix_web::ResponseError::status_code(&e);
            (HttpResponse::build(status), e.partner_body(), rate)
        }
    };
    if let Some(r) = rate {
        builder
            .insert_header(("X-RateLimit-Limit", r.limit.to_string()))
            .insert_header(("X-RateLimit-Remaining", r.remaining.to_string()))
            .insert_header(("X-RateLimit-Reset", r.reset.to_string()));
        if !r.allowed {
            builder.status(StatusCode::TOO_MANY_REQUESTS);
        }
    }
    builder.json(body)
}

async fn body_of(engine: &Engine, partner: &str, payload: web::Payload) -> Result<web::BytesMut> {
    if !engine.is_partner(partner) {
        return Err(Error::UnknownPartner(partner.to_string()));
    }
    super::read_body(payload, engine.config().max_body_bytes)
        .await
        .inspect_err(|e| {
            if matches!(e, Error::PayloadTooLarge(_)) {
                engine.metrics().reject("too_large");
            }
        })
}

/// Which partner endpoint a request is for.
#[derive(Clone, Copy)]
enum Endpoint {
    /// `POST /partners/{partner}/cohorts`: create or rename a cohort.
    Name,
    /// `POST /partners/{partner}/cohorts/users`: apply a delta.
    Users,
}

/// The partner path parameter, as both endpoints document it.
const PARTNER_PARAM: &str = "A configured partner (the shipped config.toml: hightouch, segment, \
     heap, kubit, amplitude, mixpanel, census). An unknown one is a 404 before any key check.";

#[utoipa::path(
    post,
    path = "/partners/{partner}/cohorts",
    tag = "Partner cohort import",
    operation_id = "nameCohort",
    summary = "Name a cohort (Braze's cohort name endpoint)",
    description = "Creates the cohort, or renames it if it exists (members untouched). \
        Idempotent: partners resend it before every batch with a fresh `created_at`; the \
        first one seen is kept. Authenticated by `partner_api_key` and `client_secret` in \
        the body.",
    params(("partner" = String, Path, description = PARTNER_PARAM, example = "segment")),
    request_body(content = super::openapi::shapes::CohortNameRequest, example = json!({
        "partner_api_key": "segment-secret",
        "client_secret": "cdik_98518623e9acc6d027f79748504825800477daafd8469232aedcdda34d1dbb4b",
        "cohort_id": "aud_1",
        "name": "Big spenders",
        "created_at": "2026-11-24T05:14:36.000Z"
    })),
    responses(
        (status = 201, description = "Created or renamed", body = super::openapi::shapes::PartnerSuccess,
         headers(
             ("X-RateLimit-Limit" = u64, description = "Requests per window for this workspace and partner"),
             ("X-RateLimit-Remaining" = u64, description = "Requests left in the window"),
             ("X-RateLimit-Reset" = u64, description = "Unix seconds when the window resets")
         ),
         example = json!({"message": "success"})),
        (status = 400, description = "Malformed JSON, or a field: `cohort_id must be a valid string`, \
            `name must be a non-empty string`, `created_at must be a valid time as an ISO-8601 string`",
         body = super::openapi::shapes::PartnerError,
         example = json!({"message": "name must be a non-empty string"})),
        (status = 401, description = "`Invalid Partner API key`, `Invalid client secret`, or \
            `Partner not enabled for client with client secret: <client_secret>`",
         body = super::openapi::shapes::PartnerError,
         example = json!({"message": "Invalid Partner API key"})),
        (status = 404, description = "Unknown partner", body = super::openapi::shapes::PartnerError,
         example = json!({"message": "unknown partner \"acme\""})),
        (status = 413, description = "Body over `max_body_bytes`", body = super::openapi::shapes::PartnerError),
        (status = 429, description = "The workspace's rate limit for this partner is spent \
            (`X-RateLimit-*` headers say until when)", body = super::openapi::shapes::PartnerError,
         example = json!({"message": "rate limit exceeded"})),
        (status = 503, description = "Saturated or recovering: retry later, nothing was applied",
         body = super::openapi::shapes::PartnerError),
    ),
)]
pub async fn name_cohort(
    engine: web::Data<Engine>,
    partner: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    serve(&engine, &partner, payload, Endpoint::Name).await
}

#[utoipa::path(
    post,
    path = "/partners/{partner}/cohorts/users",
    tag = "Partner cohort import",
    operation_id = "cohortUsers",
    summary = "Apply a delta (Braze's user cohort endpoint)",
    description = "Adds and removes the profiles the identifiers match (existing ones only: an \
        identifier that matches none is counted in `unmatched` and ignored). Changes apply in \
        order; the request applies whole or not at all. A delta with identifiers creates a \
        never-named cohort (named by its id). Authenticated by `partner_api_key` and \
        `client_secret` in the body.",
    params(("partner" = String, Path, description = PARTNER_PARAM, example = "segment")),
    request_body(content = super::openapi::shapes::CohortUsersRequest, example = json!({
        "partner_api_key": "segment-secret",
        "client_secret": "cdik_98518623e9acc6d027f79748504825800477daafd8469232aedcdda34d1dbb4b",
        "cohort_id": "aud_1",
        "cohort_changes": [
            {"user_ids": ["u1", "u2", "unknown"]},
            {"user_ids": ["u2"], "should_remove": true}
        ]
    })),
    responses(
        (status = 201, description = "Applied", body = super::openapi::shapes::CohortUsersResponse,
         headers(
             ("X-RateLimit-Limit" = u64, description = "Requests per window for this workspace and partner"),
             ("X-RateLimit-Remaining" = u64, description = "Requests left in the window"),
             ("X-RateLimit-Reset" = u64, description = "Unix seconds when the window resets")
         ),
         example = json!({"message": "success", "added": 1, "removed": 0, "unmatched": 1, "cohort_size": 1})),
        (status = 400, description = "Malformed JSON, `cohort_id must be a valid string`, the \
            `cohort_changes must be …` message, or `Only 1,000 user_ids, device_ids, and aliases \
            are allowed per request`", body = super::openapi::shapes::PartnerError,
         example = json!({"message": "Only 1,000 user_ids, device_ids, and aliases are allowed per request"})),
        (status = 401, description = "`Invalid Partner API key`, `Invalid client secret`, or \
            `Partner not enabled for client with client secret: <client_secret>`",
         body = super::openapi::shapes::PartnerError,
         example = json!({"message": "Invalid Partner API key"})),
        (status = 404, description = "Unknown partner", body = super::openapi::shapes::PartnerError),
        (status = 413, description = "Body over `max_body_bytes`", body = super::openapi::shapes::PartnerError),
        (status = 429, description = "The workspace's rate limit for this partner is spent",
         body = super::openapi::shapes::PartnerError),
        (status = 503, description = "Saturated or recovering: retry later, nothing was applied",
         body = super::openapi::shapes::PartnerError),
    ),
)]
pub async fn cohort_users(
    engine: web::Data<Engine>,
    partner: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    serve(&engine, &partner, payload, Endpoint::Users).await
}

/// Both endpoints: the common front (partner, body, JSON, keys, rate
/// limit), then the endpoint's fields and its one engine call.
async fn serve(
    engine: &Engine,
    partner: &str,
    payload: web::Payload,
    endpoint: Endpoint,
) -> HttpResponse {
    let body = match body_of(engine, partner, payload).await {
        Ok(b) => b.freeze(),
        Err(e) => return respond(Err((e, None))),
    };
    let (env, auth) = match admit(engine, partner, &body).await {
        Ok(ok) => ok,
        Err(e) => return respond(Err(e)),
    };
    let rate = auth.rate;
    let result = match endpoint {
        Endpoint::Name => name(engine, partner, &env, &auth).await,
        Endpoint::Users => users(engine, partner, &env, &body, &auth).await,
    };
    respond(result.map(|b| (b, rate)).map_err(|e| (e, Some(rate))))
}

async fn name(
    engine: &Engine,
    partner: &str,
    env: &Fields,
    auth: &Authorized,
) -> Result<serde_json::Value> {
    let cohort_id = non_empty(&env.cohort_id, Error::InvalidCohortId)?;
    let name = non_empty(&env.name, Error::InvalidName)?;
    let created_at = env
        .created_at
        .as_deref()
        .and_then(crate::time::parse_iso8601)
        .ok_or(Error::InvalidCreatedAt)?;
    engine
        .name_cohort(
            &auth.ws,
            CohortKey::new(partner, cohort_id),
            name.to_string(),
            created_at,
        )
        .await?;
    Ok(json!({ "message": "success" }))
}

async fn users(
    engine: &Engine,
    partner: &str,
    env: &Fields,
    body: &web::Bytes,
    auth: &Authorized,
) -> Result<serde_json::Value> {
    let cohort_id = non_empty(&env.cohort_id, Error::InvalidCohortId)?;
    let max_objects = engine.config().limits.partner_change_objects;
    let span = env
        .cohort_changes
        .clone()
        .ok_or(Error::InvalidCohortChanges)?;
    let bytes = body.clone();
    let changes =
        super::body::parse(span.len(), move || parse_changes(&bytes[span], max_objects)).await??;
    let d = engine
        .apply_delta(&auth.ws, CohortKey::new(partner, cohort_id), changes)
        .await?;
    Ok(json!({
        "message": "success",
        "added": d.added,
        "removed": d.removed,
        "unmatched": d.unmatched,
        "cohort_size": d.size,
    }))
}

/// `cohort_changes` → domain changes. Every shape error is Braze's one
/// message; the 1,000 cap counts identifiers raw, before de-duplication.
/// At most `max_objects` change objects (`limits.partner_change_objects`):
/// the array is read one object at a time and no object past the limit is
/// built (the rest is only counted, for the message), so an oversized body
/// costs a scan, not an allocation per object.
fn parse_changes(raw: &[u8], max_objects: usize) -> Result<Vec<Change>> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let wire = match (CappedChanges { max: max_objects }).deserialize(&mut de) {
        Ok(Ok(wire)) => wire,
        Ok(Err(sent)) => {
            return Err(Exceeded::new(
                Limit::PartnerChangeObjects,
                max_objects,
                sent,
                "cohort_changes",
            )
            .into())
        }
        Err(_) => return Err(Error::InvalidCohortChanges),
    };
    let total: usize = wire
        .iter()
        .map(|c| {
            c.user_ids.as_ref().map_or(0, Vec::len)
                + c.device_ids.as_ref().map_or(0, Vec::len)
                + c.aliases.as_ref().map_or(0, Vec::len)
        })
        .sum();
    if total > MAX_IDENTIFIERS {
        return Err(Error::TooManyIdentifiers);
    }
    let mut out = Vec::with_capacity(wire.len());
    for c in wire {
        let mut ids = Vec::new();
        for u in c.user_ids.unwrap_or_default() {
            ids.push(Identifier::External(id_text(&u)?));
        }
        for d in c.device_ids.unwrap_or_default() {
            ids.push(Identifier::Device(id_text(&d)?));
        }
        for a in c.aliases.unwrap_or_default() {
            if a.alias_name.is_empty() || a.alias_label.is_empty() {
                return Err(Error::InvalidCohortChanges);
            }
            ids.push(Identifier::Alias(Alias::new(&a.alias_name, &a.alias_label)));
        }
        out.push(Change {
            remove: c.should_remove.unwrap_or(false),
            ids,
        });
    }
    Ok(out)
}

/// Reads a `cohort_changes` array of at most `max` objects: `Ok(objects)`,
/// or `Err(n)` when it holds `n > max` (objects past `max` are skipped
/// unbuilt, only counted). Not an array, or an object of the wrong shape
/// before the limit, is a deserialization error.
struct CappedChanges {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for CappedChanges {
    type Value = std::result::Result<Vec<ChangeWire<'de>>, usize>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CappedChanges {
    type Value = std::result::Result<Vec<ChangeWire<'de>>, usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of change objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        while out.len() < self.max {
            match seq.next_element::<ChangeWire<'de>>()? {
                Some(c) => out.push(c),
                None => return Ok(Ok(out)),
            }
        }
        let mut sent = out.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            sent += 1;
        }
        Ok(if sent > self.max { Err(sent) } else { Ok(out) })
    }
}

fn id_text(s: &str) -> Result<compact_str::CompactString> {
    if s.is_empty() {
        return Err(Error::InvalidCohortChanges);
    }
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Vec<Change>> {
        parse_capped(json, 10_000)
    }

    fn parse_capped(json: &str, max: usize) -> Result<Vec<Change>> {
        parse_changes(json.as_bytes(), max)
    }

    #[test]
    fn the_envelope_keeps_cohort_changes_as_its_span_of_the_body() {
        let body = br#" { "client_secret": "s\u00e9", "name": 7,
            "cohort_changes" :  [ {"user_ids": ["a"]} ] , "cohort_id": "c" } "#;
        let f = fields(body).unwrap();
        assert_eq!(f.client_secret.as_deref(), Some("s\u{e9}"));
        assert_eq!(f.name, None, "not a string");
        assert_eq!(f.cohort_id.as_deref(), Some("c"));
        let span = f.cohort_changes.unwrap();
        assert_eq!(&body[span.clone()], br#"[ {"user_ids": ["a"]} ]"#);
        assert_eq!(parse_changes(&body[span], 10).unwrap().len(), 1);
        assert_eq!(
            fields(b"[1]").err().as_deref(),
            Some("request body must be a JSON object")
        );
        assert!(fields(b"{").err().unwrap().starts_with("malformed JSON: "));
    }

    #[test]
    fn change_objects_are_capped_and_counted() {
        let objects = |n: usize| format!("[{}]", vec!["{}"; n].join(","));
        assert_eq!(parse_capped(&objects(3), 3).unwrap().len(), 3);
        assert_eq!(parse_capped("[]", 3).unwrap().len(), 0);
        let Err(Error::LimitExceeded(e)) = parse_capped(&objects(7), 3) else {
            panic!("seven objects pass a cap of three");
        };
        assert_eq!((e.limit, e.max, e.got), (Limit::PartnerChangeObjects, 3, 7));
        assert_eq!(
            e.to_string(),
            "cohort_changes: 7 change objects, over the limit of 3 (limits.partner_change_objects in config.toml)"
        );
        // Shapes before the cap are still checked; past it nothing is built.
        assert_eq!(
            parse_capped(r#"[{"user_ids": 1}, {}, {}, {}]"#, 3),
            Err(Error::InvalidCohortChanges)
        );
        assert!(matches!(
            parse_capped(r#"[{}, {}, {}, {"user_ids": 1}]"#, 3),
            Err(Error::LimitExceeded(_))
        ));
        assert_eq!(
            parse_capped(r#"{"a": 1}"#, 3),
            Err(Error::InvalidCohortChanges)
        );
    }

    #[test]
    fn absent_null_and_empty_keys_mean_none() {
        let c =
            parse(r#"[{"user_ids": null, "device_ids": [], "should_remove": null}, {}]"#).unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|c| c.ids.is_empty() && !c.remove));
    }

    #[test]
    fn identifiers_keep_the_partners_order() {
        let c = parse(
            r#"[{"user_ids":["a"],"device_ids":["d"],"aliases":[{"alias_name":"n","alias_label":"l"}],"should_remove":true}]"#,
        )
        .unwrap();
        assert!(c[0].remove);
        assert_eq!(
            c[0].ids,
            vec![
                Identifier::External("a".into()),
                Identifier::Device("d".into()),
                Identifier::Alias(Alias::new("n", "l"))
            ]
        );
    }

    #[test]
    fn wrong_shapes_are_the_braze_message() {
        for bad in [
            r#""[]""#,
            r#"{}"#,
            r#"[1]"#,
            r#"[{"user_ids":[1]}]"#,
            r#"[{"user_ids":[null]}]"#,
            r#"[{"user_ids":[""]}]"#,
            r#"[{"user_ids":"u1"}]"#,
            r#"[{"should_remove":"yes"}]"#,
            r#"[{"aliases":[{"alias_name":"n"}]}]"#,
            r#"[{"aliases":[{"alias_name":"n","alias_label":""}]}]"#,
        ] {
            assert_eq!(parse(bad), Err(Error::InvalidCohortChanges), "{bad}");
        }
    }

    #[test]
    fn the_cap_counts_raw_identifiers() {
        let ids: Vec<String> = (0..600).map(|_| "\"same\"".to_string()).collect();
        let list = ids.join(",");
        let body = format!(r#"[{{"user_ids":[{list}]}},{{"device_ids":[{list}]}}]"#);
        assert_eq!(parse(&body), Err(Error::TooManyIdentifiers));
        let body = format!(r#"[{{"user_ids":[{list}]}}]"#);
        assert!(parse(&body).is_ok());
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let c = parse(r#"[{"user_ids":["a\u00e9\"b"]}]"#).unwrap();
        assert_eq!(c[0].ids[0], Identifier::External("aé\"b".into()));
    }
}
