//! The thin HTTP layer: the route table, authentication extractors, and
//! the wire types of each resource (one file per resource). Handlers parse
//! into domain types, make one engine call, and render; no business rule
//! lives here.
//!
//! The engine call is typed both ways: a write is an `Engine` method per
//! operation (`engine.apply_delta(&ws, key, changes)`) that answers with
//! that operation's result, and a read is a method on the authenticated
//! `Workspace` (`engine::read`) that answers with plain values. So this
//! layer never builds a log command, never matches on a router outcome,
//! and never takes one of the engine's locks; `WorkspaceAuth` is only the
//! handle those calls take.

mod admin;
mod assets;
pub mod body;
pub mod cluster;
mod cohorts;
mod connectors;
mod feed;
pub mod openapi;
mod ops;
mod partner;
mod segments;
mod technology_partners;
mod ui;
mod users;

/// Objects per `/users/track` array (Braze's limit; `cohortd import`
/// batches by it).
pub use users::MAX_TRACK_OBJECTS;

use std::future::{ready, Ready};
use std::time::Instant;

use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::FutureExt;
use futures_util::StreamExt;

use crate::engine::state::Workspace;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Declares the route table once and expands it twice: into [`ROUTES`],
/// the public list (`METHOD`, path template) that `tests/openapi.rs` holds
/// the OpenAPI document to, and into `register`, which registers each
/// route with its handler. A route is served if and only if it is listed.
macro_rules! route_table {
    ($($method:ident $path:literal => $handler:path,)*) => {
        /// Every route of the API as `(METHOD, path template)`, in the
        /// order `configure` registers them. Not listed: `/openapi.json`
        /// and `/docs` (`openapi::routes`) and the dashboard (`ui::routes`).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path),)*];

        /// Registers every route of [`ROUTES`] with its handler.
        fn register(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::method(Method::$method).to($handler));)*
        }
    };
}

route_table! {
    // Partner cohort import API (Braze-compatible).
    POST "/partners/{partner}/cohorts" => partner::name_cohort,
    POST "/partners/{partner}/cohorts/users" => partner::cohort_users,
    // Users API.
    POST "/users/track" => users::track,
    POST "/users/identify" => users::identify,
    POST "/users/alias/new" => users::alias_new,
    POST "/users/delete" => users::delete,
    POST "/users/export/ids" => users::export_ids,
    // Queries.
    GET "/cohorts" => cohorts::list,
    GET "/cohorts/{partner}/{cohort_id}" => cohorts::one,
    GET "/cohorts/{partner}/{cohort_id}/members" => cohorts::members,
    GET "/cohorts/{partner}/{cohort_id}/imports" => cohorts::imports,
    POST "/segments" => segments::create,
    GET "/segments" => segments::list,
    POST "/segments/preview" => segments::preview,
    GET "/segments/{id}" => segments::get,
    PUT "/segments/{id}" => segments::replace,
    DELETE "/segments/{id}" => segments::delete,
    GET "/segments/{id}/count" => segments::count,
    GET "/segments/{id}/members" => segments::members,
    POST "/segments/{id}/membership" => segments::membership,
    POST "/users/memberships" => segments::user_memberships,
    // Technology partners and data import keys.
    GET "/technology_partners" => technology_partners::list,
    POST "/technology_partners/{partner}/data_import_keys" => technology_partners::create_key,
    DELETE "/technology_partners/{partner}/data_import_keys/{key_id}" => technology_partners::revoke_key,
    // Operators.
    POST "/admin/workspaces" => admin::create_workspace,
    GET "/admin/workspaces" => admin::list_workspaces,
    POST "/admin/snapshots" => admin::take_snapshot,
    GET "/admin/snapshots" => admin::list_snapshots,
    POST "/admin/restore" => admin::restore,
    GET "/feed" => feed::read,
    POST "/connectors" => connectors::create,
    GET "/connectors" => connectors::list,
    GET "/connectors/{id}" => connectors::get,
    DELETE "/connectors/{id}" => connectors::delete,
    GET "/admin/connectors" => connectors::admin_list,
    GET "/cluster" => cluster::status,
    POST "/cluster/restore-shard" => cluster::restore_shard,
    GET "/healthz" => ops::healthz,
    GET "/readyz" => ops::readyz,
    GET "/metrics" => ops::metrics,
}

/// Registers every route: the table above, then the API's description
/// and reference, and the dashboard.
pub fn configure(engine: Engine) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(engine))
            .app_data(
                web::QueryConfig::default().error_handler(|e, _| {
                    Error::bad_request("invalid_query", e.to_string()).into()
                }),
            )
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e, _| Error::bad_request("invalid_path", e.to_string()).into()),
            )
            .configure(register)
            // The API's description and reference, and the dashboard.
            .configure(openapi::routes)
            .configure(ui::routes)
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(Error::NotFound("route"))
            }));
    }
}

/// Wraps the app: counts and times every request by its route pattern.
pub fn observe<S, B>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<
        actix_web::dev::ServiceRequest,
        Response = ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    let started = Instant::now();
    let engine = req.app_data::<web::Data<Engine>>().cloned();
    // Labels from fixed sets only (see `metrics`): the route's pattern,
    // never the path; the method as `metrics::method_label` folds it.
    let route = req.match_pattern();
    let method = req.method().clone();
    srv.call(req).map(move |res| {
        if let (Some(engine), Ok(res)) = (engine, &res) {
            engine.metrics().observe(
                method.as_str(),
                route.as_deref(),
                res.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
        }
        res
    })
}

/// What `until_ready` answers: the app's response, or its own 503.
type Gated<B> = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

/// Paths that answer while the engine recovers: the probes and metrics.
const ALWAYS_SERVED: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Wraps the app: until the engine has recovered, every request but the
/// probes and metrics is answered 503 "recovering" without reaching a
/// handler (nothing else could answer truthfully before the state exists).
pub fn until_ready<S, B>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> futures_util::future::Either<
    impl std::future::Future<Output = Gated<B>>,
    std::future::Ready<Gated<B>>,
>
where
    S: Service<
        actix_web::dev::ServiceRequest,
        Response = ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    use futures_util::future::Either;
    let ready = req
        .app_data::<web::Data<Engine>>()
        .is_some_and(|e| e.is_ready());
    if ready || ALWAYS_SERVED.contains(&req.path()) {
        return Either::Left(
            srv.call(req)
                .map(|r| r.map(ServiceResponse::map_into_left_body)),
        );
    }
    let refused =
        Error::Unavailable("cohortd is recovering its data; retry once /readyz answers 200".into());
    let res = req.into_response(actix_web::ResponseError::error_response(&refused));
    Either::Right(std::future::ready(Ok(res.map_into_right_body())))
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn engine(req: &HttpRequest) -> Engine {
    req.app_data::<web::Data<Engine>>()
        .expect("configure() registers the engine")
        .get_ref()
        .clone()
}

/// A request made with a workspace REST API key.
pub struct WorkspaceAuth(pub std::sync::Arc<Workspace>);

impl FromRequest for WorkspaceAuth {
    type Error = Error;
    type Future = Ready<Result<Self>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let ws = bearer(req).and_then(|k| engine(req).workspace_for_key(k));
        ready(ws.map(WorkspaceAuth).ok_or(Error::Unauthorized))
    }
}

/// A request made with the admin token.
pub struct AdminAuth;

impl FromRequest for AdminAuth {
    type Error = Error;
    type Future = Ready<Result<Self>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let ok = bearer(req).is_some_and(|t| engine(req).is_admin(t));
        ready(if ok {
            Ok(AdminAuth)
        } else {
            Err(Error::Unauthorized)
        })
    }
}

/// Reads a whole body, refusing (413) past `limit` bytes without reading on.
pub async fn read_body(payload: web::Payload, limit: usize) -> Result<web::BytesMut> {
    collect_body(payload, limit).await
}

/// The chunks of a body, up to `limit` bytes (413 past it, without
/// reading on); any payload stream (`cluster` keeps a write's body).
pub(crate) async fn collect_body<E: std::fmt::Display>(
    mut payload: impl futures_util::Stream<Item = std::result::Result<web::Bytes, E>> + Unpin,
    limit: usize,
) -> Result<web::BytesMut> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Error::bad_request("invalid_body", e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub fn created(body: serde_json::Value) -> HttpResponse {
    HttpResponse::Created().json(body)
}
