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

pub async fn revoke_key(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (partner, key_id) = path.into_inner();
    engine.revoke_import_key(&auth.0, &partner, &key_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "message": "success", "key_id": key_id })))
}
