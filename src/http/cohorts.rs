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

/// `?cursor=&limit=` of every paged listing.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Page size: 1 to 10,000, default 100.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// `?limit=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// How many: 1 to 10,000, default 100.
    #[param(minimum = 1, maximum = 10000)]
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

#[utoipa::path(
    get,
    path = "/cohorts",
    tag = "Cohorts",
    operation_id = "listCohorts",
    summary = "List cohorts",
    description = "A page of the workspace's cohorts, by (partner, cohort_id), with their live sizes.",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of cohorts", body = super::openapi::shapes::CohortPage,
         example = json!({"cohorts": [{"partner": "segment", "cohort_id": "aud_1", "name": "Big spenders",
             "created_at": "2026-11-24T05:14:36.000Z", "updated_at": "2026-11-24T05:20:00.000Z", "size": 1}],
             "next_cursor": null})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
    ),
    security(("workspace_key" = [])),
)]
pub async fn list(auth: WorkspaceAuth, q: web::Query<PageQuery>) -> Result<HttpResponse> {
    let limit = query::limit(q.limit)?;
    let after = query::parse_cohort_cursor(q.cursor.as_deref())?;
    let page = auth.0.cohort_summaries(after.as_ref(), limit);
    let cohorts: Vec<Value> = page.cohorts.iter().map(cohort_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "cohorts": cohorts, "next_cursor": page.next_cursor })))
}

#[utoipa::path(
    get,
    path = "/cohorts/{partner}/{cohort_id}",
    tag = "Cohorts",
    operation_id = "getCohort",
    summary = "One cohort",
    params(super::openapi::shapes::CohortPath),
    responses(
        (status = 200, description = "The cohort, with its live size", body = super::openapi::shapes::Cohort),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("workspace_key" = [])),
)]
pub async fn one(auth: WorkspaceAuth, path: web::Path<(String, String)>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(cohort_json(&auth.0.cohort_summary(&key(&path))?)))
}

#[utoipa::path(
    get,
    path = "/cohorts/{partner}/{cohort_id}/members",
    tag = "Cohorts",
    operation_id = "cohortMembers",
    summary = "Page through a cohort's members",
    description = "Members in a stable order: paging never repeats a member and never skips one \
        that stayed a member throughout.",
    params(super::openapi::shapes::CohortPath, PageQuery),
    responses(
        (status = 200, description = "A page of members", body = super::openapi::shapes::MemberPage,
         example = json!({"members": [{"braze_id": "000000010000000000000000", "external_id": "u1"}],
             "next_cursor": null})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("workspace_key" = [])),
)]
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

#[utoipa::path(
    get,
    path = "/cohorts/{partner}/{cohort_id}/imports",
    tag = "Cohorts",
    operation_id = "cohortImports",
    summary = "A cohort's import history",
    description = "One entry per delta with at least one identifier, newest first: what a \
        partner's import status screen shows.",
    params(super::openapi::shapes::CohortPath, LimitQuery),
    responses(
        (status = 200, description = "The import history", body = super::openapi::shapes::ImportHistory,
         example = json!({"imports": [{"at": "2026-11-24T05:20:00.000Z", "added": 1, "removed": 0,
             "unmatched": 1, "size": 1}]})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("workspace_key" = [])),
)]
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
