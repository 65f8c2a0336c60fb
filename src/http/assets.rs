//! Files embedded in the binary (the dashboard's `ui/`, the API
//! reference's `assets/docs/`) and the one way they are served: the
//! content type by extension, the page's Content-Security-Policy,
//! `nosniff` (a module runs only with a JavaScript type), `no-cache` with
//! an ETag (revalidate after an upgrade instead of running a stale mix of
//! modules; a 304 when nothing changed) and `no-referrer`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use rust_embed::EmbeddedFile;

use crate::error::{Error, Result};

/// The content type of a file by its extension; `None` for a kind the
/// embedded folders do not serve.
pub fn content_type(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    Some(match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        // Licences and notices that come with vendored files.
        Some("txt" | "md") | None => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// `file` (named `name`) under `csp`, or 404 when there is no such file
/// or it is of a kind not served.
pub fn serve(
    req: &HttpRequest,
    file: Option<EmbeddedFile>,
    name: &str,
    csp: &'static str,
) -> Result<HttpResponse> {
    let (file, content_type) = file
        .zip(content_type(name))
        .ok_or(Error::NotFound("file"))?;
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    ))
    .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
    .insert_header((header::REFERRER_POLICY, "no-referrer"))
    .insert_header((header::CACHE_CONTROL, "no-cache"))
    .insert_header((
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a header value"),
    ));
    if fresh {
        return Ok(res.finish());
    }
    Ok(res.content_type(content_type).body(file.data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_extension_and_none_for_other_kinds() {
        assert_eq!(
            content_type("a/b.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            content_type("vendor/LICENSE"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(content_type("x.exe"), None);
        assert_eq!(
            content_type("dir.v2/file"),
            Some("text/plain; charset=utf-8")
        );
    }
}
