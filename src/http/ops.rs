//! Health, readiness and metrics.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::engine::Engine;
use crate::error::{Error, Result};

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(engine: web::Data<Engine>) -> HttpResponse {
    if engine.is_ready() {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({ "status": "recovering" }))
    }
}

pub async fn metrics(req: HttpRequest, engine: web::Data<Engine>) -> Result<HttpResponse> {
    if engine.config().metrics.require_admin_token
        && !super::bearer(&req).is_some_and(|t| engine.is_admin(t))
    {
        return Err(Error::Unauthorized);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(engine.render_metrics()))
}
