//! Cohort queries: list (paged by (partner, cohort_id)), one, member
//! pages, import history; and the member
//! and page renderings every listing shares (SPEC §4). Each handler
//! validates its query, makes one `Workspace` read and renders it.

use actix_web::{web, HttpResponse};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
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
/// listed, and its `braze_id` next to it. Keys in name order.
struct MemberOut<'a>(&'a query::Member);

impl Serialize for MemberOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let m = self.0;
        let mut map = s.serialize_map(None)?;
        let digits = m.braze_id.digits();
        let braze_id = std::str::from_utf8(&digits).expect("hex digits are ASCII");
        map.serialize_entry("braze_id", braze_id)?;
        match &m.listed {
            Some(Identifier::External(e)) => map.serialize_entry("external_id", e)?,
            Some(Identifier::Alias(a)) => map.serialize_entry(
                "user_alias",
                &json!({ "alias_name": a.alias_name, "alias_label": a.alias_label }),
            )?,
            Some(Identifier::Device(d)) => map.serialize_entry("device_id", d)?,
            Some(Identifier::Email(e)) => map.serialize_entry("email", e)?,
            Some(Identifier::Phone(p)) => map.serialize_entry("phone", p)?,
            Some(Identifier::BrazeId(_)) | None => {}
        }
        map.end()
    }
}

pub fn member_json(m: &query::Member) -> Value {
    serde_json::to_value(MemberOut(m)).expect("a member renders")
}

/// A page of members, `{"members": [...], "next_cursor": ...}`, written
/// straight to bytes (a page is up to 10,000 members: no tree of values).
pub fn page_response(p: query::Page) -> HttpResponse {
    #[derive(Serialize)]
    struct PageOut<'a> {
        members: Vec<MemberOut<'a>>,
        next_cursor: &'a Option<String>,
    }
    let out = PageOut {
        members: p.members.iter().map(MemberOut).collect(),
        next_cursor: &p.next_cursor,
    };
    HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::to_vec(&out).expect("a page renders"))
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
    Ok(page_response(page))
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
