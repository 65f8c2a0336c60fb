//! The dashboard (`/ui`): the static files of `ui/` (HTML, CSS and
//! JavaScript modules, no build step), embedded in the binary with
//! rust-embed so that what the tests serve is what ships, and served here.
//!
//! This module owns only the serving: which path maps to which file, its
//! content type, and the headers every asset carries. The dashboard itself
//! is a single-page app that reads and writes through the public HTTP API
//! with the key the operator signs in with (`ui/api.js`); no handler here
//! touches the engine, and nothing here is authenticated, since the files
//! hold no data.
//!
//! Every answer carries a strict Content Security Policy (scripts, styles,
//! images and requests from this origin only; no inline script or style;
//! never framed) and the headers every embedded file has (`assets`).

use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::Embed;

use super::assets;
use crate::error::Result;

/// The files of `ui/`, embedded at compile time (debug builds too).
#[derive(Embed)]
#[folder = "ui/"]
struct Assets;

/// The policy of every `/ui` answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";

/// Registers `/ui` and its assets.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(index))
        .route("/ui/", web::get().to(index))
        .route("/ui/{file:.*}", web::get().to(asset));
}

async fn index(req: HttpRequest) -> Result<HttpResponse> {
    serve(&req, "index.html")
}

async fn asset(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse> {
    serve(&req, &file)
}

/// One embedded file with the dashboard's headers (`assets::serve`).
fn serve(req: &HttpRequest, path: &str) -> Result<HttpResponse> {
    assets::serve(req, Assets::get(path), path, CONTENT_SECURITY_POLICY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_has_a_type() {
        let files: Vec<_> = Assets::iter().collect();
        assert!(files.iter().any(|f| f == "index.html"), "{files:?}");
        for f in files {
            assert!(
                assets::content_type(&f).is_some(),
                "{f} has no content type"
            );
        }
    }
}
