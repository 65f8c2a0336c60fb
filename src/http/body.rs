//! Request bodies: read with a size limit, and parsed off the HTTP workers
//! when they are large.
//!
//! An actix worker is one thread serving many connections, so a handler
//! that parses an 8 MiB body in place (~80 ms into a `serde_json::Value`)
//! holds every other connection of that worker, whichever workspace sent
//! them, and `/healthz` with them. Here a body up to [`INLINE_BYTES`] — a
//! 1,000-identifier partner delta, a normal `/users/track` — is parsed in
//! place (a hop to another thread would cost more than the parse), and a
//! larger one on the parse pool, while the worker serves others.
//!
//! Large parses are bounded: at most one per core runs at once
//! ([`PARSE_SLOTS`]), because each may build a tree many times its body's
//! size; one that finds no slot within [`PARSE_WAIT`] is refused with 503,
//! nothing parsed. They run on background threads (`threads::Pool`), at a
//! lower priority than the workers, the lanes and the log writer, so that
//! on a busy machine the heavy request waits for the cores, not the others.

use std::sync::LazyLock;
use std::time::Duration;

use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::{FutureExt, LocalBoxFuture};
use serde::de::{DeserializeOwned, IgnoredAny};
use tokio::sync::Semaphore;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::threads::Pool;

/// Bodies up to this size are parsed on the HTTP worker.
pub const INLINE_BYTES: usize = 16 << 10;

/// How long a large body waits for a parse slot before it is refused.
pub const PARSE_WAIT: Duration = Duration::from_secs(2);

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Large parses running at once: one per core.
static PARSE_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(cores()));

/// Where they run: background threads (`threads::Pool`), below the
/// priority of the workers, lanes and log writer.
static PARSE_POOL: LazyLock<Pool> = LazyLock::new(|| Pool::new("cohortd-parse", cores()));

/// Runs `parse` over a body of `len` bytes: in place when it is small, on
/// the parse pool (within [`PARSE_SLOTS`]) when it is not.
pub async fn parse<T: Send + 'static>(
    len: usize,
    parse: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    if len <= INLINE_BYTES {
        return Ok(parse());
    }
    off_worker(parse).await
}

/// Runs `work` on the parse pool within [`PARSE_SLOTS`], whatever the
/// body's size: for parses whose cost is not in proportion to it (a
/// filter's regexes compile to up to `limits.filter_regex_bytes`).
pub async fn off_worker<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let Ok(Ok(_slot)) = tokio::time::timeout(PARSE_WAIT, PARSE_SLOTS.acquire()).await else {
        return Err(Error::Unavailable(
            "too many large request bodies are being parsed; nothing was applied, retry shortly"
                .into(),
        ));
    };
    PARSE_POOL
        .run(work)
        .await
        .ok_or_else(|| Error::Internal("parsing a request body failed".into()))
}

/// The body as JSON of type `T`, in place of `web::Json<T>`: the same
/// limit (`max_body_bytes`, 413 past it) and the same 400 `invalid_json`,
/// parsed as [`parse`] says.
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + Send + 'static> FromRequest for Json<T> {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let engine = super::engine(req);
        let payload = web::Payload::from_request(req, payload).into_inner();
        async move {
            let payload = payload.map_err(|e| Error::bad_request("invalid_body", e.to_string()))?;
            read_json(&engine, payload, |v: T| Ok(Json(v))).await
        }
        .boxed_local()
    }
}

/// Reads the body (413 past `max_body_bytes`), parses it as JSON of type
/// `T` (400 `invalid_json`) and converts it with `then`, all as [`parse`]
/// says: a handler whose conversion walks the whole body (a
/// `/users/track` of 75 objects with 1,000-item arrays) keeps that walk
/// off the worker too.
pub async fn read_json<T, R>(
    engine: &Engine,
    payload: web::Payload,
    then: impl FnOnce(T) -> Result<R> + Send + 'static,
) -> Result<R>
where
    T: DeserializeOwned,
    R: Send + 'static,
{
    let bytes = super::read_body(payload, engine.config().max_body_bytes)
        .await?
        .freeze();
    let len = bytes.len();
    let work = move || {
        let invalid = |e: serde_json::Error| {
            Error::bad_request("invalid_json", format!("invalid JSON body: {e}"))
        };
        // A large body is checked for syntax first, which allocates
        // nothing: a broken 8 MiB body would otherwise build (and drop) a
        // tree of ~100 MiB before its error is found. The parser's syntax
        // errors are the same either way.
        if len > INLINE_BYTES {
            serde_json::from_slice::<IgnoredAny>(&bytes).map_err(invalid)?;
        }
        then(serde_json::from_slice::<T>(&bytes).map_err(invalid)?)
    };
    parse(len, work).await?
}
