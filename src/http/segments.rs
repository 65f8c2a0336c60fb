//! Saved segments and live membership queries (SPEC §4): CRUD, count,
//! member pages, batch membership checks, preview, and a user's
//! cohorts and segments.
//!
//! Every query reads the current state directly (no actor hop), so it sees
//! every acknowledged write; filter semantics live in `crate::segment`.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::cohorts::{member_json, page_json, PageQuery};
use super::{created, WorkspaceAuth};
use crate::engine::query;
use crate::engine::router::{Command, Outcome};
use crate::engine::state::{Segment, Workspace};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{Alias, Identifier};
use crate::segment::{self, Filter};

/// Users per batch membership check.
pub const MAX_CHECK_USERS: usize = 1000;
/// Sample size of a preview: default and maximum.
pub const PREVIEW_SAMPLE: usize = 10;
pub const MAX_PREVIEW_SAMPLE: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentBody {
    name: String,
    filter: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    filter: Value,
    #[serde(default)]
    sample_size: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    users: Vec<Value>,
}

/// Validates a filter against this workspace's cohorts.
fn parse_filter(ws: &Workspace, v: &Value) -> Result<Filter> {
    segment::parse(v, &|key| ws.cohort(key).is_some())
        .map_err(|e| Error::bad_request("invalid_filter", format!("invalid filter: {e}")))
}

fn parse_segment(ws: &Workspace, body: SegmentBody) -> Result<(String, Filter)> {
    if body.name.trim().is_empty() {
        return Err(Error::bad_request(
            "invalid_name",
            "name must be a non-empty string",
        ));
    }
    Ok((body.name, parse_filter(ws, &body.filter)?))
}

fn segment_json(s: &Segment) -> Value {
    json!({ "segment_id": s.id_string(), "name": s.name, "filter": s.filter.to_json() })
}

fn find(ws: &Workspace, id: &str) -> Result<Arc<Segment>> {
    Segment::parse_id(id)
        .and_then(|n| ws.segment(n))
        .ok_or(Error::NotFound("segment"))
}

/// A member as a request names it: exactly one of `external_id`,
/// `user_alias`, `device_id`.
fn identifier(v: &Value, at: &str) -> Result<Identifier> {
    let bad = || {
        Error::bad_request(
            "invalid_user",
            format!("{at}: give exactly one of {{\"external_id\": s}}, {{\"user_alias\": {{\"alias_name\", \"alias_label\"}}}}, {{\"device_id\": s}}"),
        )
    };
    let obj = v.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(Into::into);
    match obj.iter().next() {
        Some((k, v)) if k == "external_id" => text(v).map(Identifier::External).ok_or_else(bad),
        Some((k, v)) if k == "device_id" => text(v).map(Identifier::Device).ok_or_else(bad),
        Some((k, v)) if k == "user_alias" => {
            let name = v.get("alias_name").and_then(text);
            let label = v.get("alias_label").and_then(text);
            match (name, label) {
                (Some(alias_name), Some(alias_label)) => Ok(Identifier::Alias(Alias {
                    alias_name,
                    alias_label,
                })),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

pub async fn create(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    body: web::Json<SegmentBody>,
) -> Result<HttpResponse> {
    let (name, filter) = parse_segment(&auth.0, body.into_inner())?;
    let cmd = Command::PutSegment {
        ws: auth.0.id,
        id: None,
        name,
        filter,
    };
    let Outcome::Segment(id) = engine.submit(cmd).await? else {
        return Err(Error::Internal(
            "segment creation answered with another outcome".into(),
        ));
    };
    Ok(created(json!({ "segment_id": Segment::format_id(id) })))
}

pub async fn list(auth: WorkspaceAuth) -> HttpResponse {
    let all: Vec<Value> = auth
        .0
        .segments_sorted()
        .iter()
        .map(|s| segment_json(s))
        .collect();
    HttpResponse::Ok().json(json!({ "segments": all }))
}

pub async fn get(auth: WorkspaceAuth, id: web::Path<String>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(segment_json(find(&auth.0, &id)?.as_ref())))
}

pub async fn replace(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    id: web::Path<String>,
    body: web::Json<SegmentBody>,
) -> Result<HttpResponse> {
    let existing = find(&auth.0, &id)?;
    let (name, filter) = parse_segment(&auth.0, body.into_inner())?;
    let cmd = Command::PutSegment {
        ws: auth.0.id,
        id: Some(existing.id),
        name,
        filter,
    };
    engine.submit(cmd).await?;
    Ok(HttpResponse::Ok().json(segment_json(find(&auth.0, &id)?.as_ref())))
}

pub async fn delete(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let existing = find(&auth.0, &id)?;
    engine
        .submit(Command::DeleteSegment {
            ws: auth.0.id,
            id: existing.id,
        })
        .await?;
    Ok(
        HttpResponse::Ok()
            .json(json!({ "message": "success", "segment_id": existing.id_string() })),
    )
}

pub async fn count(auth: WorkspaceAuth, id: web::Path<String>) -> Result<HttpResponse> {
    let seg = find(&auth.0, &id)?;
    let n = segment::count(&seg.filter, &auth.0.profiles.read(), auth.0.as_ref());
    Ok(HttpResponse::Ok().json(json!({ "count": n })))
}

pub async fn members(
    auth: WorkspaceAuth,
    id: web::Path<String>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let seg = find(&auth.0, &id)?;
    let limit = query::limit(q.limit)?;
    let after = query::cursor(q.cursor.as_deref())?;
    let profiles = auth.0.profiles.read();
    let set = segment::evaluate(&seg.filter, &profiles, auth.0.as_ref());
    Ok(HttpResponse::Ok().json(page_json(query::page(&set, &profiles, after, limit))))
}

pub async fn membership(
    auth: WorkspaceAuth,
    id: web::Path<String>,
    body: web::Json<CheckBody>,
) -> Result<HttpResponse> {
    let seg = find(&auth.0, &id)?;
    if body.users.len() > MAX_CHECK_USERS {
        return Err(Error::bad_request(
            "too_many_users",
            format!(
                "at most {MAX_CHECK_USERS} users per check, got {}",
                body.users.len()
            ),
        ));
    }
    let ids = body
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| identifier(u, &format!("users[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    let profiles = auth.0.profiles.read();
    let uids: Vec<Option<u32>> = ids.iter().map(|id| profiles.resolve(id)).collect();
    let known: Vec<u32> = uids.iter().flatten().copied().collect();
    let mut answers =
        segment::contains_many(&seg.filter, &profiles, auth.0.as_ref(), &known).into_iter();
    let results: Vec<Value> = uids
        .iter()
        .map(|u| json!({ "member": u.is_some() && answers.next().unwrap_or(false) }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "results": results })))
}

pub async fn preview(auth: WorkspaceAuth, body: web::Json<PreviewBody>) -> Result<HttpResponse> {
    let body = body.into_inner();
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
    let filter = parse_filter(&auth.0, &body.filter)?;
    let profiles = auth.0.profiles.read();
    let set = segment::evaluate(&filter, &profiles, auth.0.as_ref());
    let sample = if n == 0 {
        Vec::new()
    } else {
        query::page(&set, &profiles, None, n).members
    };
    Ok(HttpResponse::Ok().json(json!({
        "count": set.len(),
        "sample": sample.iter().map(member_json).collect::<Vec<_>>(),
    })))
}

/// `POST /users/memberships`: one user → its cohorts and saved segments.
pub async fn user_memberships(auth: WorkspaceAuth, body: web::Json<Value>) -> Result<HttpResponse> {
    let id = identifier(&body, "body")?;
    let ws = &auth.0;
    let profiles = ws.profiles.read();
    let uid = profiles.resolve(&id).ok_or(Error::NotFound("user"))?;
    let cohorts: Vec<Value> = ws
        .cohorts_sorted()
        .iter()
        .filter(|c| c.members().contains(uid))
        .map(|c| json!({ "partner": c.key.partner, "cohort_id": c.key.cohort_id, "name": c.meta().name }))
        .collect();
    let segments: Vec<Value> = ws
        .segments_sorted()
        .iter()
        .filter(|s| segment::contains(&s.filter, &profiles, ws.as_ref(), uid))
        .map(|s| json!({ "segment_id": s.id_string(), "name": s.name }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "cohorts": cohorts, "segments": segments })))
}
