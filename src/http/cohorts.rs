//! Cohort queries: list (paged by (partner, cohort_id)), one, member
//! pages, import history; and the member
//! and page renderings every listing shares (SPEC §4). Each handler
//! validates its query, makes one `Workspace` read and renders it.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::WorkspaceAuth;
use crate::engine::query;
use crate::engine::read::CohortSummary;
use crate::error::Result;
use crate::model::{CohortKey, Identifier};
use crate::time::format_millis;

#[derive(Deserialize)]
pub struct PageQuery {
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Deserialize)]
pub struct LimitQuery {
    limit: Option<usize>,
}

/// A member as every listing renders it (SPEC §4, pinned): how it is
/// listed, and its `braze_id` next to it.
pub fn member_json(m: &query::Member) -> Value {
    let mut v = match &m.listed {
        Some(Identifier::External(e)) => json!({ "external_id": e }),
        Some(Identifier::Alias(a)) => {
            json!({ "user_alias": { "alias_name": a.alias_name, "alias_label": a.alias_label } })
        }
        Some(Identifier::Device(d)) => json!({ "device_id": d }),
        Some(Identifier::Email(e)) => json!({ "email": e }),
        Some(Identifier::Phone(p)) => json!({ "phone": p }),
        Some(Identifier::BrazeId(_)) | None => json!({}),
    };
    v["braze_id"] = json!(m.braze_id);
    v
}

pub fn page_json(p: query::Page) -> Value {
    json!({
        "members": p.members.iter().map(member_json).collect::<Vec<_>>(),
        "next_cursor": p.next_cursor,
    })
}

fn cohort_json(c: &CohortSummary) -> Value {
    json!({
        "partner": c.key.partner,
        "cohort_id": c.key.cohort_id,
        "name": c.name,
        "created_at": format_millis(c.created_at),
        "updated_at": format_millis(c.updated_at),
        "size": c.size,
    })
}

fn key(path: &(String, String)) -> CohortKey {
    CohortKey::new(&path.0, &path.1)
}

pub async fn list(auth: WorkspaceAuth, q: web::Query<PageQuery>) -> Result<HttpResponse> {
    let limit = query::limit(q.limit)?;
    let after = query::parse_cohort_cursor(q.cursor.as_deref())?;
    let page = auth.0.cohort_summaries(after.as_ref(), limit);
    let cohorts: Vec<Value> = page.cohorts.iter().map(cohort_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "cohorts": cohorts, "next_cursor": page.next_cursor })))
}

pub async fn one(auth: WorkspaceAuth, path: web::Path<(String, String)>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(cohort_json(&auth.0.cohort_summary(&key(&path))?)))
}

pub async fn members(
    auth: WorkspaceAuth,
    path: web::Path<(String, String)>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let limit = query::limit(q.limit)?;
    let after = query::cursor(q.cursor.as_deref())?;
    let page = auth.0.cohort_members(&key(&path), after, limit)?;
    Ok(HttpResponse::Ok().json(page_json(page)))
}

pub async fn imports(
    auth: WorkspaceAuth,
    path: web::Path<(String, String)>,
    q: web::Query<LimitQuery>,
) -> Result<HttpResponse> {
    let limit = query::limit(q.limit)?;
    let history: Vec<Value> = auth
        .0
        .cohort_imports(&key(&path), limit)?
        .iter()
        .map(|r| {
            json!({
                "at": format_millis(r.at),
                "added": r.added,
                "removed": r.removed,
                "unmatched": r.unmatched,
                "size": r.size,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "imports": history })))
}
