//! The API's description and its reader: the OpenAPI 3.1 document at
//! `GET /openapi.json`, and the API reference at `/docs` (Swagger UI,
//! vendored and embedded, pointed at that document).
//!
//! This module owns the document as a whole: [`ApiDoc`] lists every
//! operation (each handler carries its own `#[utoipa::path]`, next to the
//! code it describes), the security schemes, the shared error responses
//! and the tags. The schemas come from the wire types the handlers parse
//! (they derive `utoipa::ToSchema` where they are declared) and, for what
//! a handler reads field by field or answers with `json!`, from
//! [`shapes`]. It is generated from the code so that it cannot silently
//! lose a route: `tests/openapi.rs` holds it to the route table
//! (`http::ROUTES`) both ways, validates every example in it against its
//! schema, and sends the main examples to a real server to validate the
//! answers, which is what keeps [`shapes`] honest.
//!
//! `/docs` is served from `assets/docs/`, embedded in the binary: the
//! page, its script (no inline script, so the Content-Security-Policy can
//! forbid them) and the vendored swagger-ui-dist files. It loads nothing
//! from anywhere but this server.

pub mod shapes;

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse};

use super::{
    admin, cluster, cohorts, connectors, feed, ops, partner, segments, technology_partners, users,
};
use crate::error::Result;
use shapes::ApiError;

/// The security scheme of workspace calls.
pub const WORKSPACE_KEY: &str = "workspace_key";
/// The security scheme of operator calls.
pub const ADMIN_TOKEN: &str = "admin_token";

const DESCRIPTION: &str = "\
cohortd keeps live cohort membership: analytics partners push cohort deltas \
through the Braze-compatible partner cohort import API, campaign schedulers \
read cohorts and segments back, and the change feed and connectors export \
what changed.

**Authentication.** Three kinds, none shared:

* Workspace calls: `Authorization: Bearer <workspace REST API key>` \
(`workspace_key`). A key never reaches another workspace's data (404).
* Operator calls (`/admin/…`): `Authorization: Bearer <admin token>` \
(`admin_token`). The admin token is not a workspace key.
* Partner cohort import (`/partners/{partner}/…`): in the **body**, as \
Braze's partner API does: `partner_api_key` (the partner's key, operator \
config) and `client_secret` (a data import key of the workspace, generated \
for that partner under `/technology_partners`; it picks the workspace). \
OpenAPI has no security scheme for body fields, so these operations declare \
none; their request schemas carry both fields. Checks run in this order: \
unknown partner (404), JSON (400), partner key (401), client secret (401), \
the key belongs to this partner (401), rate limit (429), fields (400).

**Errors.** Partner endpoints answer Braze's exact texts as \
`{\"message\": …}` (`PartnerError`); every other endpoint answers \
`{\"code\": …, \"message\": …}` (`ApiError`) with a stable `code`. Until \
recovery has finished every endpoint but `/healthz`, `/readyz` and \
`/metrics` answers 503 `{\"code\": \"unavailable\", …}`.

**Paging.** Listings take `limit` (default 100, at most 10,000) and \
`cursor`, and answer `next_cursor` (`null` on the last page). A cursor is a \
position, never an offset.";

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "cohortd", description = DESCRIPTION),
    paths(
        partner::name_cohort,
        partner::cohort_users,
        users::track,
        users::identify,
        users::alias_new,
        users::delete,
        users::export::export_ids,
        cohorts::list,
        cohorts::one,
        cohorts::members,
        cohorts::imports,
        segments::create,
        segments::list,
        segments::preview,
        segments::get,
        segments::replace,
        segments::delete,
        segments::count,
        segments::members,
        segments::membership,
        segments::user_memberships,
        technology_partners::list,
        technology_partners::create_key,
        technology_partners::revoke_key,
        admin::create_workspace,
        admin::list_workspaces,
        admin::take_snapshot,
        admin::list_snapshots,
        admin::restore,
        cluster::status,
        cluster::restore_shard,
        feed::read,
        connectors::create,
        connectors::list,
        connectors::get,
        connectors::delete,
        connectors::admin_list,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        openapi_json,
    ),
    components(
        schemas(shapes::ApiError, shapes::PartnerError),
        responses(BadRequest, Unauthorized, NotFound, TooLarge, Unavailable)
    ),
    modifiers(&SecuritySchemes, &AtLeastOneProperty),
    tags(
        (name = "Partner cohort import", description = "Braze-compatible, exactly (SPEC §2): what Hightouch, Segment, Heap, Kubit, Amplitude, Mixpanel and Census send."),
        (name = "Users", description = "Braze-compatible users API subset (SPEC §3): the profiles cohort import matches."),
        (name = "Cohorts", description = "Cohorts read back (SPEC §4)."),
        (name = "Segments", description = "Saved segments and live membership queries (SPEC §4)."),
        (name = "Technology partners", description = "Partners and their data import keys (SPEC §5)."),
        (name = "Change feed", description = "Every write as Braze Currents-style events (SPEC §10)."),
        (name = "Connectors", description = "Push the change feed to an HTTP endpoint (SPEC §10)."),
        (name = "Operators", description = "Workspaces, snapshots, restore (SPEC §6); admin token."),
        (name = "Health", description = "Probes, metrics and this document."),
    )
)]
pub struct ApiDoc;

/// Registers the security schemes the operations name.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            WORKSPACE_KEY,
            bearer(
                "A workspace REST API key (`POST /admin/workspaces` answers it once; \
                 `cohortd workspace create NAME`).",
            ),
        );
        components.add_security_scheme(
            ADMIN_TOKEN,
            bearer(
                "The admin token: `COHORTD_ADMIN_TOKEN`, or generated at first start and \
                 stored in the data dir.",
            ),
        );
    }
}

/// Sets `minProperties: 1` on the schemas that need it. utoipa 5.5's
/// derive writes `#[schema(min_properties = n)]` as `maxProperties`
/// (utoipa-gen `component/features.rs`), so it is set here instead.
struct AtLeastOneProperty;

impl Modify for AtLeastOneProperty {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let schemas = &mut doc.components.get_or_insert_with(Default::default).schemas;
        // A member named in a request: exactly one identifier.
        match schemas.get_mut("MemberRef") {
            Some(RefOr::T(Schema::Object(o))) => o.min_properties = Some(1),
            _ => panic!("MemberRef is an object schema"),
        }
    }
}

/// The request is malformed: not JSON, a wrong type, a bad query
/// parameter, an invalid filter, or over one of `[limits]`.
#[derive(ToResponse)]
#[response(
    description = "Malformed request: the message names the problem",
    example = json!({"code": "invalid_json", "message": "invalid JSON body: expected value at line 1 column 1"})
)]
pub struct BadRequest(pub ApiError);

/// Missing or invalid bearer token.
#[derive(ToResponse)]
#[response(
    description = "Missing or invalid bearer token",
    example = json!({"code": "unauthorized", "message": "missing or invalid bearer token"})
)]
pub struct Unauthorized(pub ApiError);

/// Not found (in this workspace).
#[derive(ToResponse)]
#[response(
    description = "Not found (another workspace's objects are not found either)",
    example = json!({"code": "not_found", "message": "segment not found"})
)]
pub struct NotFound(pub ApiError);

/// The body is over `max_body_bytes`.
#[derive(ToResponse)]
#[response(
    description = "Body over `max_body_bytes` (config.toml, default 8 MiB)",
    example = json!({"code": "payload_too_large", "message": "request body is larger than 8388608 bytes"})
)]
pub struct TooLarge(pub ApiError);

/// Retry later: nothing was applied.
#[derive(ToResponse)]
#[response(
    description = "Retry later, nothing was applied: recovering, the engine or the \
                   workspace's writes saturated, or the read pool busy",
    example = json!({"code": "workspace_saturated", "message": "this workspace has 64 writes in flight (engine.max_inflight_writes_per_workspace); retry later (nothing was applied)"})
)]
pub struct Unavailable(pub ApiError);

/// The document, rendered once.
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().expect("the document renders"));

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "Health",
    operation_id = "openapiDocument",
    summary = "This document",
    description = "The OpenAPI 3.1 document of this API, generated from the code. \
                   `/docs` renders it.",
    responses((status = 200, description = "The document", content_type = "application/json",
               body = Object)),
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

/// `assets/docs/`, in the binary (in debug builds too: tests serve what
/// ships).
#[derive(rust_embed::Embed)]
#[folder = "assets/docs/"]
struct DocsAssets;

/// What `/docs` allows the page: this server's scripts (no inline ones),
/// styles (Swagger UI sets inline styles), images and fetches, nothing
/// else; no framing.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Registers `/openapi.json` and `/docs`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json))
        .route("/docs", web::get().to(docs_root))
        .route("/docs/{file:.*}", web::get().to(docs_file));
}

/// `GET /docs`: to `/docs/`, so that the page's relative links resolve.
async fn docs_root() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// `GET /docs/{file}` (`/docs/` is the page): an embedded asset with the
/// reference's policy (`assets::serve`).
async fn docs_file(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse> {
    let name = match file.as_str() {
        "" => "index.html",
        name => name,
    };
    super::assets::serve(&req, DocsAssets::get(name), name, DOCS_CSP)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document's array limits are literals (utoipa takes no
    /// constants); the handlers' constants own them, and this holds the
    /// document to those.
    #[test]
    fn documented_array_limits_are_the_ones_enforced() {
        let doc: serde_json::Value = serde_json::from_str(&DOCUMENT).expect("json");
        let schemas = &doc["components"]["schemas"];
        let limit = |schema: &str, field: &str| {
            schemas[schema]["properties"][field]["maxItems"]
                .as_u64()
                .unwrap_or_else(|| panic!("{schema}.{field} has no maxItems"))
        };
        let track = users::MAX_TRACK_OBJECTS as u64;
        let entries = users::MAX_USER_ENTRIES as u64;
        for field in ["attributes", "events", "purchases"] {
            assert_eq!(limit("TrackRequest", field), track, "{field}");
        }
        for (schema, fields) in [
            (
                "IdentifyRequest",
                &["aliases_to_identify", "devices_to_identify"][..],
            ),
            ("AliasNewRequest", &["user_aliases"][..]),
            (
                "DeleteRequest",
                &[
                    "external_ids",
                    "user_aliases",
                    "device_ids",
                    "braze_ids",
                    "email_addresses",
                    "phone_numbers",
                ][..],
            ),
            ("ExportRequest", &["external_ids", "user_aliases"][..]),
        ] {
            for field in fields {
                assert_eq!(limit(schema, field), entries, "{schema}.{field}");
            }
        }
        assert_eq!(
            limit("MembershipCheck", "users"),
            segments::MAX_CHECK_USERS as u64
        );
    }

    /// Shared parameters keep their wire names and places.
    #[test]
    fn shared_parameters_render_as_the_wire_has_them() {
        let doc: serde_json::Value = serde_json::from_str(&DOCUMENT).expect("json");
        let params = |path: &str, method: &str| {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} has no parameters"))
                .iter()
                .map(|p| {
                    format!(
                        "{} in {}",
                        p["name"].as_str().unwrap(),
                        p["in"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(params("/users/track", "post"), ["X-Braze-Batch in header"]);
        assert_eq!(params("/segments/{id}/count", "get"), ["id in path"]);
        assert_eq!(params("/connectors/{id}", "delete"), ["id in path"]);
        assert_eq!(
            params("/cohorts/{partner}/{cohort_id}", "get"),
            ["partner in path", "cohort_id in path"]
        );
    }
}
