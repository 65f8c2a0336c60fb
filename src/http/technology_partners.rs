//! Technology Partners: the partners a workspace can connect, with the REST
//! endpoint to give them, and their data import keys (generate several for
//! rotation without downtime; invalidate one).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{created, WorkspaceAuth};
use crate::engine::router::Command;
use crate::engine::state::{keys_by_partner, ImportKey};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::keys::{self, KeyHash};
use crate::time::{format_millis, now_millis};

/// The base URL a partner should call: this server as the client reached it.
fn rest_endpoint(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

fn known_partner(engine: &Engine, partner: &str) -> Result<()> {
    if engine.is_partner(partner) {
        Ok(())
    } else {
        Err(Error::NotFound("partner"))
    }
}

pub async fn list(
    req: HttpRequest,
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
) -> HttpResponse {
    let endpoint = rest_endpoint(&req);
    let mut keys = keys_by_partner(&auth.0);
    let partners: Vec<_> = engine
        .partners()
        .map(|p| {
            let keys: Vec<_> = keys
                .remove(p)
                .unwrap_or_default()
                .into_iter()
                .map(|k| {
                    json!({
                        "key_id": k.key_id,
                        "masked_key": k.masked,
                        "created_at": format_millis(k.created_at),
                    })
                })
                .collect();
            json!({ "partner": p, "rest_endpoint": endpoint, "data_import_keys": keys })
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
    known_partner(&engine, &partner)?;
    let secret = keys::generate("cdik_");
    let key = ImportKey {
        key_id: keys::short_id(),
        partner: partner.as_str().into(),
        hash: KeyHash::of(&secret),
        masked: keys::mask(&secret),
        created_at: now_millis(),
    };
    let key_id = key.key_id.clone();
    engine
        .submit(Command::CreateImportKey { ws: auth.0.id, key })
        .await?;
    Ok(created(json!({
        "key_id": key_id,
        "data_import_key": secret,
        "rest_endpoint": rest_endpoint(&req),
    })))
}

pub async fn revoke_key(
    engine: web::Data<Engine>,
    auth: WorkspaceAuth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (partner, key_id) = path.into_inner();
    known_partner(&engine, &partner)?;
    engine
        .submit(Command::RevokeImportKey {
            ws: auth.0.id,
            partner: partner.as_str().into(),
            key_id: key_id.clone(),
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "message": "success", "key_id": key_id })))
}
