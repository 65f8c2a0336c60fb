//! Operator API: workspaces, snapshots and restore. Authenticated with the
//! admin token; each handler is one engine call.

use super::body::Json;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{created, AdminAuth};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::time::format_millis;

/// A workspace to create.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    #[schema(min_length = 1)]
    name: String,
}

#[utoipa::path(
    post,
    path = "/admin/workspaces",
    tag = "Operators",
    operation_id = "createWorkspace",
    summary = "Create a workspace",
    description = "Answers the workspace id and its REST API key, shown only here.",
    request_body(content = NewWorkspace, example = json!({"name": "acme"})),
    responses(
        (status = 201, description = "Created", body = super::openapi::shapes::WorkspaceCreated,
         example = json!({"workspace_id": "ws_1",
             "rest_api_key": "crk_26b333021f420bc5092c81eee0ff0c1d73ce984bc68f45f5bc908bdc3b5c0d5c"})),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("admin_token" = [])),
)]
pub async fn create_workspace(
    _: AdminAuth,
    engine: web::Data<Engine>,
    body: Json<NewWorkspace>,
) -> Result<HttpResponse> {
    let name = body.into_inner().name;
    if name.trim().is_empty() {
        return Err(Error::bad_request(
            "invalid_name",
            "name must be a non-empty string",
        ));
    }
    let new = engine.create_workspace(name).await?;
    Ok(created(
        json!({ "workspace_id": new.id.to_string(), "rest_api_key": new.rest_key }),
    ))
}

#[utoipa::path(
    get,
    path = "/admin/workspaces",
    tag = "Operators",
    operation_id = "listWorkspaces",
    summary = "List workspaces",
    responses(
        (status = 200, description = "Every workspace", body = super::openapi::shapes::Workspaces,
         example = json!({"workspaces": [{"workspace_id": "ws_1", "name": "acme",
             "created_at": "2026-12-03T14:01:44.471Z", "profiles": 3, "cohorts": 1}]})),
        (status = 401, response = super::openapi::Unauthorized),
    ),
    security(("admin_token" = [])),
)]
pub async fn list_workspaces(_: AdminAuth, engine: web::Data<Engine>) -> HttpResponse {
    let all: Vec<_> = engine
        .workspaces()
        .into_iter()
        .map(|w| {
            json!({
                "workspace_id": w.id.to_string(),
                "name": w.name,
                "created_at": format_millis(w.created_at),
                "profiles": w.profiles,
                "cohorts": w.cohorts,
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "workspaces": all }))
}

fn snapshot_json(s: &crate::persist::snapshot::SnapshotInfo) -> serde_json::Value {
    json!({
        "snapshot_id": s.id,
        "created_at": format_millis(s.created_at_millis),
        "bytes": s.bytes,
        "log_position": s.log_position,
    })
}

/// `POST /admin/snapshots`: answers once the snapshot file is durable.
#[utoipa::path(
    post,
    path = "/admin/snapshots",
    tag = "Operators",
    operation_id = "takeSnapshot",
    summary = "Take a snapshot now",
    description = "Answers once the snapshot file is durable.",
    responses(
        (status = 201, description = "The snapshot", body = super::openapi::shapes::Snapshot,
         example = json!({"snapshot_id": "snap-00000000000000000008-1796306505313",
             "created_at": "2026-12-03T14:01:45.313Z", "bytes": 637, "log_position": 8})),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("admin_token" = [])),
)]
pub async fn take_snapshot(_: AdminAuth, engine: web::Data<Engine>) -> Result<HttpResponse> {
    let info = engine.snapshot().await?;
    Ok(created(snapshot_json(&info)))
}

#[utoipa::path(
    get,
    path = "/admin/snapshots",
    tag = "Operators",
    operation_id = "listSnapshots",
    summary = "List snapshots, newest first",
    responses(
        (status = 200, description = "The snapshots on disk", body = super::openapi::shapes::Snapshots,
         example = json!({"snapshots": [{"snapshot_id": "snap-00000000000000000008-1796306505313",
             "created_at": "2026-12-03T14:01:45.313Z", "bytes": 637, "log_position": 8}]})),
        (status = 401, response = super::openapi::Unauthorized),
    ),
    security(("admin_token" = [])),
)]
pub async fn list_snapshots(_: AdminAuth, engine: web::Data<Engine>) -> Result<HttpResponse> {
    let all: Vec<_> = engine
        .list_snapshots()
        .await?
        .iter()
        .map(snapshot_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "snapshots": all })))
}

/// The snapshot to restore.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    snapshot_id: String,
}

/// `POST /admin/restore`: replaces the live state with a snapshot's.
/// Answers with the snapshot taken right after, the new starting point.
#[utoipa::path(
    post,
    path = "/admin/restore",
    tag = "Operators",
    operation_id = "restoreSnapshot",
    summary = "Replace the live state with a snapshot's",
    description = "Concurrent requests wait or get 503; no answer mixes state from before and \
        after. The restore is logged, so it survives a crash. Answers with the snapshot taken \
        right after, the new starting point.",
    request_body(content = RestoreBody,
        example = json!({"snapshot_id": "snap-00000000000000000008-1796306505313"})),
    responses(
        (status = 200, description = "Restored", body = super::openapi::shapes::Restored),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("admin_token" = [])),
)]
pub async fn restore(
    _: AdminAuth,
    req: actix_web::HttpRequest,
    engine: web::Data<Engine>,
    body: Json<RestoreBody>,
) -> Result<HttpResponse> {
    // In a cluster, each shard is restored at its leader, with this token.
    let authorization = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let after = engine
        .restore(
            &body.snapshot_id,
            super::cluster::restore_shard_at(authorization),
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "message": "success",
        "restored": body.snapshot_id,
        "snapshot": snapshot_json(&after),
    })))
}
