//! Saved segments and live membership queries (SPEC §4): CRUD, count,
//! member pages, batch membership checks, preview, and a user's
//! cohorts and segments.
//!
//! Every query is one `engine::read` call, which sees every acknowledged
//! write; those that evaluate a filter run on the engine's read pool with
//! a time budget (`engine::readpool`). Filter semantics and the filter
//! limits live in `crate::segment`. What stays here is the wire: the
//! bodies, their error texts, and the membership check's borrowed parse
//! and hand-built answer.

use super::body::{off_worker, read_json};
use std::borrow::Cow;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::cohorts::{member_json, page_response, PageQuery};
use super::{created, WorkspaceAuth};
use crate::engine::query;
use crate::engine::state::{Segment, Workspace};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{Alias, Identifier};
use crate::segment::{self, Filter, ParseError};

/// Users per batch membership check.
pub const MAX_CHECK_USERS: usize = 1000;
/// Sample size of a preview: default and maximum.
pub const PREVIEW_SAMPLE: usize = 10;
pub const MAX_PREVIEW_SAMPLE: usize = 100;

/// A saved segment as written: a name and a filter.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentBody {
    /// Need not be unique.
    #[schema(min_length = 1)]
    name: String,
    #[schema(value_type = super::openapi::shapes::Filter)]
    filter: Value,
}

/// A filter to evaluate without saving it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    #[schema(value_type = super::openapi::shapes::Filter)]
    filter: Value,
    /// Members in `sample`: default 10, at most 100.
    #[serde(default)]
    #[schema(maximum = 100)]
    sample_size: Option<usize>,
}

/// A member as a request names it (wire form, borrowed from the body):
/// exactly one of `external_id`, `user_alias` or `device_id`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MemberRef, max_properties = 1)]
struct MemberWire<'a> {
    #[serde(borrow, default)]
    #[schema(min_length = 1)]
    external_id: Option<Cow<'a, str>>,
    /// Matches anonymous profiles only.
    #[serde(borrow, default)]
    #[schema(min_length = 1)]
    device_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    #[schema(value_type = Option<super::openapi::shapes::UserAlias>)]
    user_alias: Option<AliasWire<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasWire<'a> {
    #[serde(borrow)]
    alias_name: Cow<'a, str>,
    #[serde(borrow)]
    alias_label: Cow<'a, str>,
}

/// A membership check: up to 1,000 users.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MembershipCheck)]
struct CheckWire<'a> {
    #[serde(borrow)]
    #[schema(max_items = 1000)]
    users: Vec<MemberWire<'a>>,
}

const MEMBER_SHAPE: &str = "give exactly one of {\"external_id\": s}, {\"user_alias\": {\"alias_name\", \"alias_label\"}}, {\"device_id\": s}";

impl MemberWire<'_> {
    fn identifier(self, at: &str) -> Result<Identifier> {
        let bad = || Error::bad_request("invalid_user", format!("{at}: {MEMBER_SHAPE}"));
        let ok = |s: &Cow<'_, str>| !s.is_empty();
        match (self.external_id, self.user_alias, self.device_id) {
            (Some(e), None, None) if ok(&e) => Ok(Identifier::External(e.as_ref().into())),
            (None, Some(a), None) if ok(&a.alias_name) && ok(&a.alias_label) => {
                Ok(Identifier::Alias(Alias::new(&a.alias_name, &a.alias_label)))
            }
            (None, None, Some(d)) if ok(&d) => Ok(Identifier::Device(d.as_ref().into())),
            _ => Err(bad()),
        }
    }
}

fn parse_wire<'a, T: Deserialize<'a>>(body: &'a [u8], expected: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::bad_request(
            "invalid_request",
            format!(
                "invalid request body: {e}; expected {expected}, where a member is: {MEMBER_SHAPE}"
            ),
        )
    })
}

/// The error for a membership check body that did not parse on the fast
/// path: names the first bad entry (`users[3]: …`) when the body is an
/// object with a `users` array.
fn locate_bad_member(bytes: &[u8], e: serde_json::Error) -> Error {
    // A body that is not JSON at all has no entry to name: skip building
    // its tree (up to ~100 MiB for an 8 MiB body).
    let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
    let tree = is_json.then(|| serde_json::from_slice::<Value>(bytes).ok());
    if let Some(Some(Value::Object(o))) = tree {
        if let Some(Value::Array(users)) = o.get("users") {
            for (i, u) in users.iter().enumerate() {
                let at = format!("users[{i}]");
                let checked = MemberWire::deserialize(u)
                    .map_err(|_| {
                        Error::bad_request("invalid_user", format!("{at}: {MEMBER_SHAPE}"))
                    })
                    .and_then(|m| m.identifier(&at));
                if let Err(err) = checked {
                    return err;
                }
            }
        }
    }
    parse_wire::<CheckWire<'_>>(bytes, "{\"users\": [member, …]}")
        .err()
        .unwrap_or_else(|| {
            Error::bad_request("invalid_request", format!("invalid request body: {e}"))
        })
}

async fn body(engine: &Engine, payload: web::Payload) -> Result<web::BytesMut> {
    super::read_body(payload, engine.config().max_body_bytes).await
}

/// Validates a filter against this workspace's cohorts and the filter
/// limits of `[limits]`.
fn parse_filter(engine: &Engine, ws: &Workspace, v: &Value) -> Result<Filter> {
    segment::parse_limited(v, &|key| ws.has_cohort(key), &engine.filter_limits()).map_err(|e| {
        match e {
            ParseError::Limit(e) => e.into(),
            ParseError::Invalid(e) => {
                Error::bad_request("invalid_filter", format!("invalid filter: {e}"))
            }
        }
    })
}

fn parse_segment(engine: &Engine, ws: &Workspace, body: SegmentBody) -> Result<(String, Filter)> {
    if body.name.trim().is_empty() {
        return Err(Error::bad_request(
            "invalid_name",
            "name must be a non-empty string",
        ));
    }
    Ok((body.name, parse_filter(engine, ws, &body.filter)?))
}

/// [`parse_segment`] on the parse pool: compiling a filter's regexes
/// may take far longer than its body's size suggests.
async fn segment_off_worker(
    engine: &Engine,
    ws: &Arc<Workspace>,
    body: SegmentBody,
) -> Result<(String, Filter)> {
    let (e, ws) = (engine.clone(), ws.clone());
    off_worker(move || parse_segment(&e, &ws, body)).await?
}

fn segment_json(s: &Segment) -> Value {
    saved_json(s.id, &s.name, &s.filter)
}

fn saved_json(id: u64, name: &str, filter: &crate::segment::Filter) -> Value {
    json!({ "segment_id": Segment::format_id(id), "name": name, "filter": filter.to_json() })
}

fn find(ws: &Workspace, id: &str) -> Result<Arc<Segment>> {
    Segment::parse_id(id)
        .and_then(|n| ws.segment(n))
        .ok_or(Error::NotFound("segment"))
}

#[utoipa::path(
    post,
    path = "/segments",
    tag = "Segments",
    operation_id = "createSegment",
    summary = "Save a segment",
    description = "Saves a named filter; its membership is always live. Segment ids are never \
        reused. An invalid filter (unknown op, bad regex, unknown cohort) is a 400 naming the \
        problem.",
    request_body(content = SegmentBody, example = json!({
        "name": "gold big spenders",
        "filter": {"and": [
                {"cohort": {"partner": "segment", "cohort_id": "aud_1"}},
                {"attribute": {"name": "plan", "op": "equals", "value": "gold"}}
            ]}
    })),
    responses(
        (status = 201, description = "Saved", body = super::openapi::shapes::SegmentCreated,
         example = json!({"segment_id": "seg_1"})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 413, response = super::openapi::TooLarge),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn create(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body: SegmentBody = read_json(&engine, payload, Ok).await?;
    let (name, filter) = segment_off_worker(&engine, &auth.0, body).await?;
    let id = engine.put_segment(&auth.0, None, name, filter).await?;
    Ok(created(json!({ "segment_id": Segment::format_id(id) })))
}

/// `GET /segments`: a page of the saved segments, by id, exactly as
/// `GET /cohorts` pages (`cursor`, `limit`, `next_cursor`).
#[utoipa::path(
    get,
    path = "/segments",
    tag = "Segments",
    operation_id = "listSegments",
    summary = "List saved segments",
    params(super::cohorts::PageQuery),
    responses(
        (status = 200, description = "A page of segments, by id", body = super::openapi::shapes::SegmentPage,
         example = json!({"segments": [{"segment_id": "seg_1", "name": "gold big spenders",
             "filter": {"and": [
                {"cohort": {"partner": "segment", "cohort_id": "aud_1"}},
                {"attribute": {"name": "plan", "op": "equals", "value": "gold"}}
            ]}}], "next_cursor": null})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
    ),
    security(("workspace_key" = [])),
)]
pub async fn list(auth: WorkspaceAuth, q: web::Query<PageQuery>) -> Result<HttpResponse> {
    let limit = query::limit(q.limit)?;
    let after = query::parse_segment_cursor(q.cursor.as_deref())?;
    let page = auth.0.segment_page(after, limit);
    let segments: Vec<Value> = page.segments.iter().map(|s| segment_json(s)).collect();
    Ok(HttpResponse::Ok().json(json!({ "segments": segments, "next_cursor": page.next_cursor })))
}

#[utoipa::path(
    get,
    path = "/segments/{id}",
    tag = "Segments",
    operation_id = "getSegment",
    summary = "One saved segment",
    params(super::openapi::shapes::SegmentPath),
    responses(
        (status = 200, description = "The segment", body = super::openapi::shapes::Segment),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("workspace_key" = [])),
)]
pub async fn get(auth: WorkspaceAuth, id: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(segment_json(find(&auth.0, &id)?.as_ref())))
}

#[utoipa::path(
    put,
    path = "/segments/{id}",
    tag = "Segments",
    operation_id = "replaceSegment",
    summary = "Replace a saved segment's name and filter",
    params(super::openapi::shapes::SegmentPath),
    request_body(content = SegmentBody, example = json!({
        "name": "gold",
        "filter": {"attribute": {"name": "plan", "op": "equals", "value": "gold"}}
    })),
    responses(
        (status = 200, description = "The segment as written", body = super::openapi::shapes::Segment),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 413, response = super::openapi::TooLarge),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn replace(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body: SegmentBody = read_json(&engine, payload, Ok).await?;
    let existing = find(&auth.0, &id)?;
    let (name, filter) = segment_off_worker(&engine, &auth.0, body).await?;
    // Answer with what this request wrote, not a re-read that a concurrent
    // DELETE could turn into a 404 after the write was applied.
    let body = saved_json(existing.id, &name, &filter);
    engine
        .put_segment(&auth.0, Some(existing.id), name, filter)
        .await?;
    Ok(HttpResponse::Ok().json(body))
}

#[utoipa::path(
    delete,
    path = "/segments/{id}",
    tag = "Segments",
    operation_id = "deleteSegment",
    summary = "Delete a saved segment",
    params(super::openapi::shapes::SegmentPath),
    responses(
        (status = 200, description = "Deleted", body = super::openapi::shapes::SegmentDeleted,
         example = json!({"message": "success", "segment_id": "seg_1"})),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn delete(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let existing = find(&auth.0, &id)?;
    engine.delete_segment(&auth.0, existing.id).await?;
    Ok(
        HttpResponse::Ok()
            .json(json!({ "message": "success", "segment_id": existing.id_string() })),
    )
}

#[utoipa::path(
    get,
    path = "/segments/{id}/count",
    tag = "Segments",
    operation_id = "countSegment",
    summary = "A saved segment's live size",
    params(super::openapi::shapes::SegmentPath),
    responses(
        (status = 200, description = "The live count", body = super::openapi::shapes::Count,
         example = json!({"count": 1})),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn count(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let seg = find(&auth.0, &id)?;
    let n = engine.count_matching(&auth.0, seg).await?;
    Ok(HttpResponse::Ok().json(json!({ "count": n })))
}

#[utoipa::path(
    get,
    path = "/segments/{id}/members",
    tag = "Segments",
    operation_id = "segmentMembers",
    summary = "Page through a saved segment's members",
    params(super::openapi::shapes::SegmentPath, super::cohorts::PageQuery),
    responses(
        (status = 200, description = "A page of members", body = super::openapi::shapes::MemberPage,
         example = json!({"members": [{"braze_id": "000000010000000000000000", "external_id": "u1"}],
             "next_cursor": null})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn members(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    id: web::Path<String>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let seg = find(&auth.0, &id)?;
    let limit = query::limit(q.limit)?;
    let from = query::parse_member_cursor(q.cursor.as_deref())?;
    let page = engine.matching_page(&auth.0, seg, from, limit).await?;
    Ok(page_response(page))
}

/// A membership check's body: its users' identifiers.
fn parse_check(bytes: &[u8]) -> Result<Vec<Identifier>> {
    let wire: CheckWire<'_> = match serde_json::from_slice(bytes) {
        Ok(w) => w,
        Err(e) => return Err(locate_bad_member(bytes, e)),
    };
    if wire.users.len() > MAX_CHECK_USERS {
        return Err(Error::bad_request(
            "too_many_users",
            format!(
                "at most {MAX_CHECK_USERS} users per check, got {}",
                wire.users.len()
            ),
        ));
    }
    wire.users
        .into_iter()
        .enumerate()
        .map(|(i, u)| u.identifier(&format!("users[{i}]")))
        .collect()
}

/// `POST /segments/{id}/membership`: parsed borrowed from the body and
/// answered without building a JSON tree, since this is the hot path of a
/// campaign scheduler (1,000 users a call).
#[utoipa::path(
    post,
    path = "/segments/{id}/membership",
    tag = "Segments",
    operation_id = "checkMembership",
    summary = "Check up to 1,000 users against a saved segment",
    description = "A boolean per user, in request order; an identifier that matches no profile \
        is `false`.",
    params(super::openapi::shapes::SegmentPath),
    request_body(content = CheckWire, example = json!({
        "users": [{"external_id": "u1"}, {"user_alias": {"alias_name": "a@example.com", "alias_label": "email"}},
                  {"device_id": "d1"}]
    })),
    responses(
        (status = 200, description = "One result per user", body = super::openapi::shapes::MembershipResults,
         example = json!({"results": [{"member": true}, {"member": false}, {"member": false}]})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 413, response = super::openapi::TooLarge),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn membership(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let seg = find(&auth.0, &id)?;
    let bytes = body(&engine, payload).await?.freeze();
    // Off the worker when large (`body::parse`).
    let ids = super::body::parse(bytes.len(), move || parse_check(&bytes)).await??;
    let answers = engine.matches_many(&auth.0, seg, ids).await?;
    let mut out = String::with_capacity(16 + answers.len() * 18);
    out.push_str("{\"results\":[");
    for (i, &member) in answers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(if member {
            "{\"member\":true}"
        } else {
            "{\"member\":false}"
        });
    }
    out.push_str("]}");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(out))
}

#[utoipa::path(
    post,
    path = "/segments/preview",
    tag = "Segments",
    operation_id = "previewSegment",
    summary = "Count and sample a filter without saving it",
    description = "What a segment builder shows while a filter is edited.",
    request_body(content = PreviewBody, example = json!({
        "filter": {"and": [
                {"cohort": {"partner": "segment", "cohort_id": "aud_1"}},
                {"attribute": {"name": "plan", "op": "equals", "value": "gold"}}
            ]},
        "sample_size": 10
    })),
    responses(
        (status = 200, description = "The live count and a sample", body = super::openapi::shapes::Preview,
         example = json!({"count": 1, "sample": [{"braze_id": "000000010000000000000000", "external_id": "u1"}]})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 413, response = super::openapi::TooLarge),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn preview(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let body: PreviewBody = read_json(&engine, payload, Ok).await?;
    let n = match body.sample_size {
        None => PREVIEW_SAMPLE,
        Some(n) if n <= MAX_PREVIEW_SAMPLE => n,
        Some(n) => {
            return Err(Error::bad_request(
                "invalid_sample_size",
                format!("sample_size must be at most {MAX_PREVIEW_SAMPLE}, got {n}"),
            ))
        }
    };
    let (e, ws) = (engine.get_ref().clone(), auth.0.clone());
    let filter = off_worker(move || parse_filter(&e, &ws, &body.filter)).await??;
    let preview = engine.preview(&auth.0, filter, n).await?;
    Ok(HttpResponse::Ok().json(json!({
        "count": preview.count,
        "sample": preview.sample.iter().map(member_json).collect::<Vec<_>>(),
    })))
}

/// `POST /users/memberships`: one user → its cohorts and saved segments.
#[utoipa::path(
    post,
    path = "/users/memberships",
    tag = "Segments",
    operation_id = "userMemberships",
    summary = "The cohorts and saved segments one user is in",
    request_body(content = MemberWire, example = json!({"external_id": "u1"})),
    responses(
        (status = 200, description = "Its cohorts and segments", body = super::openapi::shapes::UserMemberships,
         example = json!({"cohorts": [{"partner": "segment", "cohort_id": "aud_1", "name": "Big spenders"}],
             "segments": [{"segment_id": "seg_1", "name": "gold big spenders"}]})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, description = "No such user", body = super::openapi::shapes::ApiError,
         example = json!({"code": "not_found", "message": "user not found"})),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn user_memberships(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let bytes = body(&engine, payload).await?.freeze();
    let id = super::body::parse(bytes.len(), move || {
        parse_wire::<MemberWire<'_>>(&bytes, "one member")?.identifier("body")
    })
    .await??;
    let of = engine.memberships(&auth.0, id).await?;
    let cohorts: Vec<Value> = of
        .cohorts
        .iter()
        .map(|c| json!({ "partner": c.key.partner, "cohort_id": c.key.cohort_id, "name": c.name }))
        .collect();
    let segments: Vec<Value> = of
        .segments
        .iter()
        .map(|s| json!({ "segment_id": s.id_string(), "name": s.name }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "cohorts": cohorts, "segments": segments })))
}
