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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    name: String,
}

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
pub async fn take_snapshot(_: AdminAuth, engine: web::Data<Engine>) -> Result<HttpResponse> {
    let info = engine.snapshot().await?;
    Ok(created(snapshot_json(&info)))
}

pub async fn list_snapshots(_: AdminAuth, engine: web::Data<Engine>) -> Result<HttpResponse> {
    let all: Vec<_> = engine.snapshots()?.iter().map(snapshot_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "snapshots": all })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    snapshot_id: String,
}

/// `POST /admin/restore`: replaces the live state with a snapshot's.
/// Answers with the snapshot taken right after, the new starting point.
pub async fn restore(
    _: AdminAuth,
    engine: web::Data<Engine>,
    body: Json<RestoreBody>,
) -> Result<HttpResponse> {
    let after = engine.restore(&body.snapshot_id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "message": "success",
        "restored": body.snapshot_id,
        "snapshot": snapshot_json(&after),
    })))
}
