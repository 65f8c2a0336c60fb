//! Technology Partners: the partners a workspace can connect, with the REST
//! endpoint to give them, and their data import keys (generate several for
//! rotation without downtime; invalidate one).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{created, WorkspaceAuth};
use crate::engine::Engine;
use crate::error::Result;
use crate::time::format_millis;

/// The base URL a partner should call: this server as the client reached it.
fn rest_endpoint(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

#[utoipa::path(
    get,
    path = "/technology_partners",
    tag = "Technology partners",
    operation_id = "listTechnologyPartners",
    summary = "Partners, with the endpoint to give them and their keys",
    responses(
        (status = 200, description = "Every configured partner", body = super::openapi::shapes::TechnologyPartners,
         example = json!({"technology_partners": [{"partner": "segment", "rest_endpoint": "http://127.0.0.1:8080",
             "data_import_keys": [{"key_id": "3cb63ec41590cb48", "masked_key": "cdik********bb4b",
                                   "created_at": "2026-12-03T14:01:44.699Z"}]}]})),
        (status = 401, response = super::openapi::Unauthorized),
    ),
    security(("workspace_key" = [])),
)]
pub async fn list(
    req: HttpRequest,
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
) -> HttpResponse {
    let endpoint = rest_endpoint(&req);
    let partners: Vec<_> = engine
        .technology_partners(&auth.0)
        .into_iter()
        .map(|p| {
            let keys: Vec<_> = p
                .keys
                .into_iter()
                .map(|k| {
                    json!({
                        "key_id": k.key_id,
                        "masked_key": k.masked,
                        "created_at": format_millis(k.created_at),
                    })
                })
                .collect();
            json!({ "partner": p.partner, "rest_endpoint": endpoint, "data_import_keys": keys })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "technology_partners": partners }))
}

#[utoipa::path(
    post,
    path = "/technology_partners/{partner}/data_import_keys",
    tag = "Technology partners",
    operation_id = "createDataImportKey",
    summary = "Generate a data import key (the partner's client_secret)",
    description = "The full key is shown only in this answer. Older keys stay live until \
        invalidated, so a key can be rotated without downtime.",
    params(("partner" = String, Path, description = "A configured partner", example = "segment")),
    responses(
        (status = 201, description = "The new key", body = super::openapi::shapes::NewDataImportKey,
         example = json!({"key_id": "3cb63ec41590cb48",
             "data_import_key": "cdik_98518623e9acc6d027f79748504825800477daafd8469232aedcdda34d1dbb4b",
             "rest_endpoint": "http://127.0.0.1:8080"})),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn create_key(
    req: HttpRequest,
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    partner: web::Path<String>,
) -> Result<HttpResponse> {
    let key = engine.create_import_key(&auth.0, &partner).await?;
    Ok(created(json!({
        "key_id": key.key_id,
        "data_import_key": key.secret,
        "rest_endpoint": rest_endpoint(&req),
    })))
}

#[utoipa::path(
    delete,
    path = "/technology_partners/{partner}/data_import_keys/{key_id}",
    tag = "Technology partners",
    operation_id = "revokeDataImportKey",
    summary = "Invalidate a data import key",
    description = "From then on the key gets `401 Invalid client secret`.",
    params(("partner" = String, Path, description = "A configured partner", example = "segment"),
        ("key_id" = String, Path, description = "The key's id, as listed", example = "3cb63ec41590cb48")),
    responses(
        (status = 200, description = "Invalidated", body = super::openapi::shapes::KeyRevoked,
         example = json!({"message": "success", "key_id": "3cb63ec41590cb48"})),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("workspace_key" = [])),
)]
pub async fn revoke_key(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (partner, key_id) = path.into_inner();
    engine.revoke_import_key(&auth.0, &partner, &key_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "message": "success", "key_id": key_id })))
}
