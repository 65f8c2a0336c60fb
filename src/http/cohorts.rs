//! Cohort queries: list, one, member pages, import history.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::WorkspaceAuth;
use crate::engine::cohort::CohortCell;
use crate::engine::query;
use crate::error::{Error, Result};
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

/// A member as every listing renders it (SPEC §4, pinned).
pub fn member_json(m: &Identifier) -> Value {
    match m {
        Identifier::External(e) => json!({ "external_id": e }),
        Identifier::Alias(a) => {
            json!({ "user_alias": { "alias_name": a.alias_name, "alias_label": a.alias_label } })
        }
        Identifier::Device(d) => json!({ "device_id": d }),
    }
}

pub fn page_json(p: query::Page) -> Value {
    json!({
        "members": p.members.iter().map(member_json).collect::<Vec<_>>(),
        "next_cursor": p.next_cursor,
    })
}

fn cohort_json(c: &CohortCell) -> Value {
    let meta = c.meta();
    json!({
        "partner": c.key.partner,
        "cohort_id": c.key.cohort_id,
        "name": meta.name,
        "created_at": format_millis(meta.created_at),
        "updated_at": format_millis(meta.updated_at),
        "size": c.size(),
    })
}

fn find(auth: &WorkspaceAuth, path: &(String, String)) -> Result<std::sync::Arc<CohortCell>> {
    auth.0
        .cohort(&CohortKey::new(&path.0, &path.1))
        .ok_or(Error::NotFound("cohort"))
}

pub async fn list(auth: WorkspaceAuth) -> HttpResponse {
    let cohorts: Vec<Value> = auth
        .0
        .cohorts_sorted()
        .iter()
        .map(|c| cohort_json(c))
        .collect();
    HttpResponse::Ok().json(json!({ "cohorts": cohorts }))
}

pub async fn one(auth: WorkspaceAuth, path: web::Path<(String, String)>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(cohort_json(find(&auth, &path)?.as_ref())))
}

pub async fn members(
    auth: WorkspaceAuth,
    path: web::Path<(String, String)>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let limit = query::limit(q.limit)?;
    let after = query::cursor(q.cursor.as_deref())?;
    let set = find(&auth, &path)?.members();
    let page = query::page(&set, &auth.0.profiles.read(), after, limit);
    Ok(HttpResponse::Ok().json(page_json(page)))
}

pub async fn imports(
    auth: WorkspaceAuth,
    path: web::Path<(String, String)>,
    q: web::Query<LimitQuery>,
) -> Result<HttpResponse> {
    let limit = query::limit(q.limit)?;
    let history: Vec<Value> = find(&auth, &path)?
        .history(limit)
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
