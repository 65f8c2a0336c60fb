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
//! never framed), `X-Content-Type-Options: nosniff` (a module is only run
//! as one with a JavaScript type) and `Cache-Control: no-cache` (revalidate
//! after an upgrade rather than run a stale mix of modules).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};
use rust_embed::Embed;

use crate::error::Error;

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

async fn index() -> HttpResponse {
    serve("index.html").unwrap_or_else(|| HttpResponse::from_error(Error::NotFound("asset")))
}

async fn asset(file: web::Path<String>) -> HttpResponse {
    serve(&file).unwrap_or_else(|| HttpResponse::from_error(Error::NotFound("asset")))
}

/// One embedded file with its type and the dashboard's headers; `None`
/// when there is no such file (or its type is not one the dashboard uses).
fn serve(path: &str) -> Option<HttpResponse> {
    let file = Assets::get(path)?;
    let content_type = content_type(path)?;
    Some(
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"))
            .body(file.data.into_owned()),
    )
}

/// The content type by extension, for the kinds of file `ui/` holds
/// (JavaScript modules must be `text/javascript` to run under `nosniff`).
fn content_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.')?.1;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_has_a_type() {
        let files: Vec<_> = Assets::iter().collect();
        assert!(files.iter().any(|f| f == "index.html"), "{files:?}");
        for f in files {
            assert!(content_type(&f).is_some(), "{f} has no content type");
        }
    }
}
