//! Health, readiness and metrics.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::engine::Engine;
use crate::error::{Error, Result};

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "Health",
    operation_id = "healthz",
    summary = "Liveness",
    responses((status = 200, description = "Serving", body = super::openapi::shapes::Status,
               example = json!({"status": "ok"}))),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "Health",
    operation_id = "readyz",
    summary = "Readiness: recovery has finished",
    responses(
        (status = 200, description = "Ready", body = super::openapi::shapes::Status, example = json!({"status": "ready"})),
        (status = 503, description = "Still loading the data dir", body = super::openapi::shapes::Status,
         example = json!({"status": "recovering"})),
    ),
)]
pub async fn readyz(engine: web::Data<Engine>) -> HttpResponse {
    if engine.is_ready() {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({ "status": "recovering" }))
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "Health",
    operation_id = "metrics",
    summary = "Prometheus / OpenMetrics text",
    description = "Needs the admin token only when `metrics.require_admin_token` is set.",
    responses(
        (status = 200, description = "The metrics",
         content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        (status = 401, response = super::openapi::Unauthorized),
    ),
    security((), ("admin_token" = [])),
)]
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
