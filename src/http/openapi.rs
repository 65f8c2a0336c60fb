//! The OpenAPI document (`/openapi.json`) and the API reference (`/docs`).
//! (Being written; issue 13.)

use actix_web::web;

/// Registers `/openapi.json` and `/docs`.
pub fn routes(_cfg: &mut web::ServiceConfig) {}
