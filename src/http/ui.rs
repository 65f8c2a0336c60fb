//! The dashboard (`/ui`): static files embedded in the binary.
//! (Being written; issue 13.)

use actix_web::web;

/// Registers `/ui` and its assets.
pub fn routes(_cfg: &mut web::ServiceConfig) {}
