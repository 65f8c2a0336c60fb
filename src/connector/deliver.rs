//! The delivery engine of a custom HTTP connector (SPEC §10, "Delivery"):
//! one thread per connector reads the workspace's change feed from the
//! connector's acknowledged position and POSTs it to the connector's URL
//! in batches, in order, at least once.
//!
//! This module owns the loop and what it promises; the server owns which
//! connectors run ([`start`] / [`Handle::stop`]) and reaches the feed
//! through [`Source`], so nothing here depends on the engine.
//!
//! # A batch
//!
//! Up to [`DeliveryConfig::batch_max`] events of the connector's kinds
//! after `acked`, sent as `POST url` with `Content-Type:
//! application/json`, body `{"events":[…]}` (each payload exactly as
//! stored), `Authorization: Bearer <token>` when the connector has one,
//! and `Idempotency-Key: <batch id>`. The batch id is a UUID-shaped hash
//! of (connector id, first seq, last seq), so every retry of a batch
//! carries the same key, including after a restart.
//!
//! # At least once, in order
//!
//! Before a batch is sent, its last seq is recorded as `inflight_through`
//! in the connector's progress file (`connector::progress`); any 2xx
//! acknowledges it (`acked` = its last seq, nothing in flight). Anything
//! else (another status, a timeout, a connection refused or closed) is a
//! failed attempt: the same batch (same body, same key) is sent again
//! after an exponential backoff with jitter, and nothing after it is sent
//! before it is acknowledged. After a restart, a batch recorded in flight
//! is read again as exactly the events of `(acked, inflight_through]`, so
//! the receiver sees the same batch with the same key. Events of kinds the
//! connector does not take still move `acked` on.
//!
//! The progress file is written without fsync (see its docs): losing the
//! last writes to a power loss only sends some batches again.
//!
//! # When events are gone, and giving up
//!
//! A cursor older than the feed's retention ([`Read::Expired`]) moves on
//! to the oldest retained event; how many events were lost is counted
//! ([`StatusSnapshot::skipped`]) and said in `last_error`. A batch that has
//! been failing for longer than [`DeliveryConfig::disable_after`] since
//! its first failure disables the connector: that is persisted with the
//! last error, the thread ends, and [`start`] on a disabled connector
//! starts no delivery. The failure clock restarts with the process.
//!
//! # Stopping
//!
//! [`Handle::stop`] (or dropping the handle) wakes the thread from a
//! backoff or an idle wait at once; a request being sent finishes or
//! times out first (at most [`DeliveryConfig::timeout`]). The progress
//! file is fsynced as the thread ends.

use std::io::Read as _;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rand::Rng;
use sha2::{Digest, Sha256};

use super::progress::{Progress, ProgressFile, MAX_ERROR_BYTES};
use crate::persist::feed::{Read, Stored};
use crate::persist::{Error, Result};

/// The feed a connector reads (the server implements it over its
/// workspace's `feed::Feed`).
pub trait Source: Send + Sync + 'static {
    /// Up to `limit` events after seq `after` whose kind is in `kinds`
    /// (`None`: every kind); see [`Read`].
    fn read(&self, after: u64, limit: usize, kinds: Option<&[u8]>) -> Result<Read>;
    /// Blocks until an event with a seq above `after` exists, or `timeout`.
    fn wait_after(&self, after: u64, timeout: Duration);
    /// The newest seq (0: none yet).
    fn newest(&self) -> u64;
}

/// What a connector delivers, and where.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The connector's id; names its progress file and goes into each
    /// batch id.
    pub id: String,
    pub url: String,
    pub bearer_token: Option<String>,
    /// Event type codes (`feed::EventType::code`) to deliver; `None`: all.
    pub kinds: Option<Vec<u8>>,
}

/// How delivery retries and when it gives up.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// For a whole request: connecting, sending, and reading the answer.
    pub timeout: Duration,
    /// The wait before the first retry of a batch, and the least wait.
    pub initial_backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// A batch failing for longer than this (from its first failure)
    /// disables the connector.
    pub disable_after: Duration,
    /// Events per batch, at most (SPEC §10: ≤ 100).
    pub batch_max: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            disable_after: Duration::from_secs(24 * 3600),
            batch_max: 100,
        }
    }
}

/// Whether a connector delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Active,
    Disabled,
}

impl State {
    /// As in the API (`"active"` | `"disabled"`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Disabled => "disabled",
        }
    }
}

/// A running connector's counters, shared with whoever reports them.
#[derive(Debug)]
pub struct Status {
    /// 0 active, 1 disabled.
    state: AtomicU8,
    sent: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    acked: AtomicU64,
    /// `NO_TIME`: nothing waiting.
    oldest_unacked_ms: AtomicI64,
    last_error: Mutex<String>,
}

const NO_TIME: i64 = i64::MIN;

/// A [`Status`] at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSnapshot {
    pub state: State,
    /// Events the receiver acknowledged since the connector started.
    pub sent: u64,
    /// Attempts that failed since the connector started.
    pub failed: u64,
    /// Events lost to the feed's retention before they were delivered.
    pub skipped: u64,
    /// Every event up to this seq is acknowledged or skipped.
    pub acked: u64,
    /// The time of the oldest event of the connector's kinds not yet
    /// acknowledged; `None` when caught up.
    pub oldest_unacked_ms: Option<i64>,
    /// What failed last ("HTTP 500", "timed out after 10s", …); empty
    /// if nothing has.
    pub last_error: String,
}

impl StatusSnapshot {
    /// Events in the feed after the acknowledged position (of any kind).
    pub fn lag_events(&self, newest: u64) -> u64 {
        newest.saturating_sub(self.acked)
    }

    /// Whole seconds since the oldest unacknowledged event (0 when caught
    /// up).
    pub fn lag_seconds(&self, now_ms: i64) -> u64 {
        self.oldest_unacked_ms
            .map_or(0, |t| (now_ms.saturating_sub(t).max(0) / 1000) as u64)
    }
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: AtomicU8::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            oldest_unacked_ms: AtomicI64::new(NO_TIME),
            last_error: Mutex::new(String::new()),
        }
    }
}

impl Status {
    pub fn new() -> Status {
        Status::default()
    }

    pub fn snapshot(&self) -> StatusSnapshot {
        let oldest = self.oldest_unacked_ms.load(Ordering::Relaxed);
        StatusSnapshot {
            state: self.state(),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            oldest_unacked_ms: (oldest != NO_TIME).then_some(oldest),
            last_error: self.last_error.lock().clone(),
        }
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            0 => State::Active,
            _ => State::Disabled,
        }
    }

    /// See [`StatusSnapshot::lag_events`].
    pub fn lag_events(&self, newest: u64) -> u64 {
        newest.saturating_sub(self.acked.load(Ordering::Relaxed))
    }

    /// See [`StatusSnapshot::lag_seconds`].
    pub fn lag_seconds(&self, now_ms: i64) -> u64 {
        self.snapshot().lag_seconds(now_ms)
    }

    fn set_state(&self, s: State) {
        let v = match s {
            State::Active => 0,
            State::Disabled => 1,
        };
        self.state.store(v, Ordering::Relaxed);
    }

    pub fn set_error(&self, e: &str) {
        *self.last_error.lock() = e.to_string();
    }

    fn set_oldest(&self, ms: Option<i64>) {
        self.oldest_unacked_ms
            .store(ms.unwrap_or(NO_TIME), Ordering::Relaxed);
    }
}

/// The stop flag, with a condvar so that waits end at once.
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    fn is_set(&self) -> bool {
        *self.stopped.lock()
    }

    fn set(&self) {
        *self.stopped.lock() = true;
        self.wake.notify_all();
    }

    /// Sleeps `d` unless stopped first; true if stopped.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut stopped = self.stopped.lock();
        while !*stopped {
            if self.wake.wait_until(&mut stopped, deadline).timed_out() {
                break;
            }
        }
        *stopped
    }
}

/// A running connector (see [`start`]). Dropping it stops it too.
pub struct Handle {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    /// Stops the connector's thread and waits for it (a request being sent
    /// ends first; see the module docs).
    pub fn stop(self) {
        drop(self);
    }

    /// Whether the thread has ended (stopped, disabled, or never started
    /// because the connector is disabled).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("a connector thread panicked");
            }
        }
    }
}

/// The idle wait of a caught-up connector between looks at the stop flag.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// The most of an answer's body read (so the connection can be reused);
/// what is over it is left and the connection closed.
const MAX_ANSWER_BYTES: u64 = 64 << 10;

/// Starts delivering `spec` from its progress in `progress_dir` (created
/// if missing), reporting into `status`. A connector whose progress says
/// disabled starts no thread: `status` says disabled, with the error that
/// disabled it. Errors: the progress file cannot be read (damaged: the
/// error names it) or the thread cannot be started.
pub fn start(
    spec: Spec,
    source: Arc<dyn Source>,
    progress_dir: &Path,
    cfg: DeliveryConfig,
    status: Arc<Status>,
) -> Result<Handle> {
    start_sharing(spec, source, progress_dir, cfg, status, None)
}

/// [`start`], with `on_save` called after each write of the progress file
/// (cluster mode shares it: `connector::shared`).
pub fn start_sharing(
    spec: Spec,
    source: Arc<dyn Source>,
    progress_dir: &Path,
    cfg: DeliveryConfig,
    status: Arc<Status>,
    on_save: Option<super::shared::OnSave>,
) -> Result<Handle> {
    let (file, progress) = ProgressFile::open(progress_dir, &spec.id)?;
    status.acked.store(progress.acked, Ordering::Relaxed);
    status.set_error(&progress.last_error);
    let stop = Arc::new(Stop::default());
    if progress.disabled {
        status.set_state(State::Disabled);
        return Ok(Handle { stop, thread: None });
    }
    status.set_state(State::Active);
    let sender = Sender::new(&spec, cfg.timeout);
    let prefix: String = spec.id.chars().take(8).collect();
    let mut worker = Worker {
        spec,
        source,
        cfg,
        status,
        stop: stop.clone(),
        file,
        progress,
        sender,
        on_save,
    };
    let thread = std::thread::Builder::new()
        .name(format!("connector-{prefix}"))
        .spawn(move || {
            // Export is background work: it must not take cores from the
            // requests being acknowledged, nor stop while they are busy.
            crate::threads::lower_nice();
            worker.run()
        })
        .map_err(|source| Error::Io {
            context: "start a connector thread".into(),
            source,
        })?;
    Ok(Handle {
        stop,
        thread: Some(thread),
    })
}

/// A batch in hand.
struct Batch {
    first: u64,
    last: u64,
    count: u64,
    body: Vec<u8>,
    key: String,
}

/// What a look at the feed found.
enum Next {
    Batch(Batch),
    /// Nothing new; `acked` is up to date.
    Idle,
    /// `acked` moved on without a batch (other kinds, or expired): look
    /// again at once.
    Moved,
}

struct Worker {
    spec: Spec,
    source: Arc<dyn Source>,
    cfg: DeliveryConfig,
    status: Arc<Status>,
    stop: Arc<Stop>,
    file: ProgressFile,
    /// What the progress file says (or should: see `save`).
    progress: Progress,
    sender: Sender,
    on_save: Option<super::shared::OnSave>,
}

impl Worker {
    fn run(&mut self) {
        let mut read_failures = 0;
        while !self.stop.is_set() {
            match self.next() {
                Ok(Next::Batch(b)) => {
                    read_failures = 0;
                    if !self.deliver(b) {
                        break;
                    }
                }
                Ok(Next::Moved) => read_failures = 0,
                Ok(Next::Idle) => {
                    read_failures = 0;
                    self.source.wait_after(self.progress.acked, IDLE_WAIT);
                }
                Err(e) => {
                    // The feed could not be read: not the receiver's
                    // failure, so no attempt counted and no disable clock.
                    let msg = format!("reading the change feed: {e}");
                    tracing::warn!(connector = %self.spec.id, error = %msg);
                    self.status.set_error(&msg);
                    let wait = self.backoff(read_failures);
                    read_failures += 1;
                    if self.stop.sleep(wait) {
                        break;
                    }
                }
            }
        }
        if let Err(e) = self.file.sync() {
            tracing::warn!(connector = %self.spec.id, error = %e,
                "connector progress not synced at stop; the last batches may be sent again");
        }
    }

    /// Reads the next batch after `acked` (the recorded in-flight one
    /// first, the same as it was).
    fn next(&mut self) -> Result<Next> {
        let acked = self.progress.acked;
        let inflight = self.progress.inflight_through;
        let read =
            self.source
                .read(acked, self.cfg.batch_max.max(1), self.spec.kinds.as_deref())?;
        let (mut events, mut through) = match read {
            Read::Events { events, through } => (events, through),
            Read::Expired { oldest } => {
                self.expired(oldest);
                return Ok(Next::Moved);
            }
        };
        if inflight > acked {
            // Exactly the batch that was in flight: nothing past it.
            events.retain(|e| e.seq <= inflight);
            through = through.min(inflight);
        }
        if let (Some(first), Some(last)) = (events.first(), events.last()) {
            self.status.set_oldest(Some(first.time_ms));
            let (first, last) = (first.seq, last.seq);
            return Ok(Next::Batch(Batch {
                first,
                last,
                count: events.len() as u64,
                body: body(&events),
                key: batch_id(&self.spec.id, first, last),
            }));
        }
        if through > acked {
            // Only events of other kinds: past them.
            self.progress.acked = through;
            if self.progress.inflight_through <= through {
                self.progress.inflight_through = 0;
            }
            self.save();
            return Ok(Next::Moved);
        }
        let was_behind = self.status.snapshot().oldest_unacked_ms.is_some();
        self.status.set_oldest(None);
        if was_behind {
            // Caught up: said to whoever shares the figures.
            self.share();
        }
        Ok(Next::Idle)
    }

    /// Events after `acked` were dropped by retention: on from `oldest`.
    fn expired(&mut self, oldest: u64) {
        let acked = self.progress.acked;
        let lost = oldest.saturating_sub(acked + 1);
        let msg = format!(
            "{lost} events (seq {} to {}) were dropped by the feed's retention before delivery",
            acked + 1,
            oldest.saturating_sub(1)
        );
        tracing::warn!(connector = %self.spec.id, error = %msg);
        self.status.skipped.fetch_add(lost, Ordering::Relaxed);
        self.status.set_error(&msg);
        self.progress.acked = acked.max(oldest.saturating_sub(1));
        self.progress.inflight_through = 0;
        self.progress.last_error = msg;
        self.save();
    }

    /// Sends `b` until a 2xx, a stop, or disabling; false when the thread
    /// should end.
    fn deliver(&mut self, b: Batch) -> bool {
        if self.progress.inflight_through != b.last {
            self.progress.inflight_through = b.last;
            self.save();
        }
        let mut first_failure: Option<Instant> = None;
        let mut attempt = 0;
        loop {
            match self.sender.post(&b.body, &b.key) {
                Ok(()) => {
                    self.progress.acked = b.last;
                    self.progress.inflight_through = 0;
                    self.status.sent.fetch_add(b.count, Ordering::Relaxed);
                    self.save();
                    return true;
                }
                Err(msg) => {
                    self.status.failed.fetch_add(1, Ordering::Relaxed);
                    let since = *first_failure.get_or_insert_with(Instant::now);
                    let failing = since.elapsed();
                    if failing > self.cfg.disable_after {
                        let msg = format!(
                            "{msg} (disabled: seq {} to {} failing for {:.1?})",
                            b.first, b.last, failing
                        );
                        tracing::warn!(connector = %self.spec.id, error = %msg,
                            "connector disabled");
                        self.status.set_error(&msg);
                        self.status.set_state(State::Disabled);
                        self.progress.disabled = true;
                        self.progress.last_error = msg;
                        self.save();
                        return false;
                    }
                    tracing::debug!(connector = %self.spec.id, error = %msg, attempt,
                        "connector batch failed; retrying");
                    self.status.set_error(&msg);
                    self.progress.last_error = msg;
                    self.save();
                    let wait = self.backoff(attempt);
                    attempt += 1;
                    if self.stop.sleep(wait) {
                        return false;
                    }
                }
            }
        }
    }

    /// The wait before retry `attempt` (0 first): up to `initial ×
    /// 2^attempt`, capped at `max_backoff`, uniformly at random between
    /// `initial_backoff` and that.
    fn backoff(&self, attempt: u32) -> Duration {
        let initial = self.cfg.initial_backoff;
        let max = self.cfg.max_backoff.max(initial);
        let cap = initial
            .checked_mul(1u32 << attempt.min(30))
            .map_or(max, |c| c.min(max));
        if cap <= initial {
            return initial;
        }
        rand::thread_rng().gen_range(initial..=cap)
    }

    /// Writes the progress (no fsync) and mirrors `acked` into the status.
    /// A write that fails is reported and delivery goes on: each write is
    /// the whole state, so the next one catches the file up, and a file
    /// behind only makes batches be sent again.
    fn save(&mut self) {
        self.status
            .acked
            .store(self.progress.acked, Ordering::Relaxed);
        if let Err(e) = self.file.write(&self.progress) {
            let msg = format!("writing progress: {e}");
            tracing::warn!(connector = %self.spec.id, error = %msg);
            self.status.set_error(&msg);
        }
        self.share();
    }

    /// Hands the progress and figures to `on_save` (cluster mode).
    fn share(&self) {
        if let Some(f) = &self.on_save {
            f(&self.progress, &self.status.snapshot());
        }
    }
}

/// The HTTP side of a connector: one keep-alive agent, no redirects.
struct Sender {
    agent: ureq::Agent,
    url: String,
    /// `Bearer <token>`.
    authorization: Option<String>,
    timeout: Duration,
}

impl Sender {
    fn new(spec: &Spec, timeout: Duration) -> Sender {
        Sender {
            agent: ureq::AgentBuilder::new()
                .timeout(timeout)
                .redirects(0)
                .build(),
            url: spec.url.clone(),
            authorization: spec.bearer_token.as_ref().map(|t| format!("Bearer {t}")),
            timeout,
        }
    }

    /// One attempt: `Ok` on any 2xx, else what failed.
    fn post(&self, body: &[u8], key: &str) -> std::result::Result<(), String> {
        let mut req = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .set("Idempotency-Key", key);
        if let Some(auth) = &self.authorization {
            req = req.set("Authorization", auth);
        }
        match req.send_bytes(body) {
            Ok(resp) => {
                let code = resp.status();
                let text = answer_text(resp);
                if (200..300).contains(&code) {
                    Ok(())
                } else {
                    // 1xx/3xx: ureq follows no redirect here (redirects 0).
                    Err(http_error(code, &text))
                }
            }
            Err(ureq::Error::Status(code, resp)) => Err(http_error(code, &answer_text(resp))),
            Err(ureq::Error::Transport(t)) => Err(self.transport_error(&t)),
        }
    }

    fn transport_error(&self, t: &ureq::Transport) -> String {
        use std::io::ErrorKind as K;
        // The io error under ureq's, if any.
        let mut io_kind = None;
        let mut source = std::error::Error::source(t);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                io_kind = Some(io.kind());
                break;
            }
            source = e.source();
        }
        match (t.kind(), io_kind) {
            (_, Some(K::TimedOut | K::WouldBlock)) => {
                format!("timed out after {:?}", self.timeout)
            }
            (
                ureq::ErrorKind::Io,
                Some(K::ConnectionAborted | K::ConnectionReset | K::UnexpectedEof | K::BrokenPipe),
            ) => format!("connection closed: {t}"),
            (ureq::ErrorKind::ConnectionFailed, _) => format!("connection failed: {t}"),
            (ureq::ErrorKind::Dns, _) => format!("DNS lookup failed: {t}"),
            _ => t.to_string(),
        }
    }
}

/// `"HTTP 500"`, with the start of the answer's body when there is one.
fn http_error(code: u16, text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {code}")
    } else {
        let mut end = text.len().min(200);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("HTTP {code}: {}", &text[..end])
    }
}

/// Reads (a bounded part of) an answer's body, so that a wholly read
/// answer leaves its connection for the next request.
fn answer_text(resp: ureq::Response) -> String {
    let mut buf = Vec::new();
    let _ = resp
        .into_reader()
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut buf);
    buf.truncate(MAX_ERROR_BYTES);
    String::from_utf8_lossy(&buf).into_owned()
}

/// `{"events":[p1,p2,…]}` with each payload as stored.
fn body(events: &[Stored]) -> Vec<u8> {
    let size: usize = events.iter().map(|e| e.payload.len() + 1).sum();
    let mut out = Vec::with_capacity(size + 16);
    out.extend_from_slice(b"{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&e.payload);
    }
    out.extend_from_slice(b"]}");
    out
}

/// The batch id of seqs `first..=last` of connector `id`: a UUID-shaped
/// (version 8, "custom") rendering of a SHA-256 of the three, so the same
/// batch always has the same id.
pub fn batch_id(id: &str, first: u64, last: u64) -> String {
    let mut h = Sha256::new();
    h.update(b"cohortd connector batch\0");
    h.update((id.len() as u64).to_le_bytes());
    h.update(id.as_bytes());
    h.update(first.to_le_bytes());
    h.update(last.to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// The scriptable HTTP receiver the integration tests use too.
#[cfg(test)]
#[path = "../../tests/common/receiver.rs"]
mod receiver;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;

    use super::*;
    use crate::connector::progress;

    use super::receiver::{Behaviour, Receiver};

    /// An in-memory feed: events in seq order from `oldest`.
    #[derive(Default)]
    struct Fake {
        events: Mutex<Vec<Stored>>,
        grew: Condvar,
    }

    impl Fake {
        /// Appends `n` events, kinds cycling through `kinds`.
        fn push(&self, n: u64, kinds: &[u8]) {
            let mut events = self.events.lock();
            let start = events.last().map_or(1, |e| e.seq + 1);
            for seq in start..start + n {
                let kind = kinds[(seq % kinds.len() as u64) as usize];
                events.push(Stored {
                    seq,
                    position: seq,
                    time_ms: seq as i64 * 1000,
                    kind,
                    payload: format!("{{\"seq\":{seq},\"kind\":{kind}}}")
                        .into_bytes()
                        .into(),
                    shared: None,
                });
            }
            self.grew.notify_all();
        }

        /// Retention: every event before `seq` goes.
        fn drop_before(&self, seq: u64) {
            self.events.lock().retain(|e| e.seq >= seq);
        }
    }

    impl Source for Fake {
        fn read(&self, after: u64, limit: usize, kinds: Option<&[u8]>) -> Result<Read> {
            let events = self.events.lock();
            let oldest = events.first().map_or(1, |e| e.seq);
            if after > 0 && after + 1 < oldest {
                return Ok(Read::Expired { oldest });
            }
            let mut out = Vec::new();
            let mut through = after;
            for e in events.iter().filter(|e| e.seq > after) {
                if out.len() >= limit {
                    break;
                }
                through = e.seq;
                if kinds.is_none_or(|k| k.contains(&e.kind)) {
                    out.push(e.clone());
                }
            }
            Ok(Read::Events {
                events: out,
                through,
            })
        }

        fn wait_after(&self, after: u64, timeout: Duration) {
            let mut events = self.events.lock();
            if events.last().is_none_or(|e| e.seq <= after) {
                self.grew.wait_for(&mut events, timeout);
            }
        }

        fn newest(&self) -> u64 {
            self.events.lock().last().map_or(0, |e| e.seq)
        }
    }

    fn fast() -> DeliveryConfig {
        DeliveryConfig {
            timeout: Duration::from_millis(150),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            disable_after: Duration::from_secs(3600),
            batch_max: 100,
        }
    }

    fn spec(id: &str, url: &str) -> Spec {
        Spec {
            id: id.into(),
            url: url.into(),
            bearer_token: None,
            kinds: None,
        }
    }

    const LONG: Duration = Duration::from_secs(20);

    fn seqs(events: &[Value]) -> Vec<u64> {
        events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
    }

    /// Waits (up to `LONG`) until `done`.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + LONG;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn is_uuid_shaped(s: &str) -> bool {
        let groups: Vec<&str> = s.split('-').collect();
        groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
            && groups.iter().all(|g| {
                g.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            })
    }

    #[test]
    fn every_event_is_delivered_once_in_order_in_batches_of_at_most_100() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        let feed = Arc::new(Fake::default());
        feed.push(250, &[4, 5]);
        let status = Arc::new(Status::new());
        let mut s = spec("with-token", &rx.url());
        s.bearer_token = Some("s3cret".into());
        let h = start(s, feed.clone(), dir.path(), fast(), status.clone()).unwrap();
        assert!(rx.wait_for_events(250, LONG));
        // New events while it runs are delivered too.
        feed.push(30, &[4]);
        assert!(rx.wait_for_events(280, LONG));
        eventually("caught up", || {
            status.snapshot().oldest_unacked_ms.is_none()
        });
        h.stop();

        let acked = rx.acknowledged_events();
        assert_eq!(seqs(&acked), (1..=280).collect::<Vec<_>>());
        assert_eq!(rx.acknowledged_count(), 280);
        let requests = rx.requests();
        assert!(requests.len() >= 3, "{} requests", requests.len());
        let mut keys = HashSet::new();
        for r in &requests {
            assert!(r.acknowledged());
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/ingest");
            let events = r.events();
            assert!(
                !events.is_empty() && events.len() <= 100,
                "{}",
                events.len()
            );
            // The body: {"events":[payloads as stored, joined by commas]}.
            let payloads: Vec<String> = seqs(&events)
                .iter()
                .map(|&n| String::from_utf8(feed.events.lock()[n as usize - 1].payload.to_vec()))
                .collect::<std::result::Result<_, _>>()
                .unwrap();
            let expected = format!("{{\"events\":[{}]}}", payloads.join(","));
            assert_eq!(String::from_utf8(r.body.clone()).unwrap(), expected);
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.authorization(), Some("Bearer s3cret"));
            let key = r.idempotency_key().unwrap();
            assert!(is_uuid_shaped(key), "{key}");
            let first = seqs(&events)[0];
            let last = *seqs(&events).last().unwrap();
            assert_eq!(key, batch_id("with-token", first, last));
            assert!(keys.insert(key.to_string()), "a key used twice: {key}");
        }
        let snap = status.snapshot();
        assert_eq!((snap.sent, snap.failed, snap.skipped), (280, 0, 0));
        assert_eq!(snap.acked, 280);
        assert_eq!(snap.state, State::Active);
        assert_eq!(snap.last_error, "");
        assert_eq!(
            (snap.lag_events(feed.newest()), snap.lag_seconds(i64::MAX)),
            (0, 0)
        );
        let p = progress::read(dir.path(), "with-token").unwrap().unwrap();
        assert_eq!((p.acked, p.inflight_through, p.disabled), (280, 0, false));

        // Without a token: no Authorization header at all.
        let rx2 = Receiver::start();
        let h = start(
            spec("no-token", &rx2.url()),
            feed.clone(),
            dir.path(),
            fast(),
            Arc::new(Status::new()),
        )
        .unwrap();
        assert!(rx2.wait_for_events(280, LONG));
        h.stop();
        assert!(rx2.requests().iter().all(|r| r.authorization().is_none()));
    }

    #[test]
    fn batch_ids_are_stable_and_tell_batches_and_connectors_apart() {
        let a = batch_id("c1", 1, 100);
        assert_eq!(a, batch_id("c1", 1, 100));
        assert!(is_uuid_shaped(&a), "{a}");
        let others = [
            batch_id("c1", 1, 99),
            batch_id("c1", 2, 100),
            batch_id("c2", 1, 100),
            batch_id("c", 11, 100),
        ];
        assert!(others.iter().all(|o| *o != a));
    }

    #[test]
    fn failures_are_retried_in_order_with_the_same_batch_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        rx.script([
            Behaviour::Status(500),
            Behaviour::Status(500),
            Behaviour::Hang(Duration::from_secs(2)),
            Behaviour::Close,
        ]);
        let feed = Arc::new(Fake::default());
        feed.push(230, &[4, 5, 6]);
        let status = Arc::new(Status::new());
        let h = start(
            spec("retries", &rx.url()),
            feed.clone(),
            dir.path(),
            fast(),
            status.clone(),
        )
        .unwrap();
        assert!(rx.wait_for_events(230, LONG));
        h.stop();

        let requests = rx.requests();
        // Four failures of the first batch, then it and the rest.
        let first = &requests[0];
        for r in &requests[1..5] {
            assert_eq!(r.idempotency_key(), first.idempotency_key());
            assert_eq!(r.body, first.body);
        }
        assert_eq!(
            requests[..5].iter().map(|r| r.answered).collect::<Vec<_>>(),
            [Some(500), Some(500), None, None, Some(200)]
        );
        assert_eq!(seqs(&first.events()), (1..=100).collect::<Vec<_>>());
        assert_eq!(
            seqs(&rx.acknowledged_events()),
            (1..=230).collect::<Vec<_>>(),
            "nothing lost, nothing twice, in order"
        );
        let snap = status.snapshot();
        assert_eq!((snap.sent, snap.failed, snap.acked), (230, 4, 230));
        assert!(
            snap.last_error.starts_with("connection closed"),
            "{}",
            snap.last_error
        );
        let p = progress::read(dir.path(), "retries").unwrap().unwrap();
        assert!(
            p.last_error.starts_with("connection closed"),
            "{}",
            p.last_error
        );
    }

    #[test]
    fn each_failure_says_what_failed() {
        let rx = Receiver::start();
        rx.script([
            Behaviour::Status(500),
            Behaviour::Hang(Duration::from_secs(2)),
            Behaviour::Close,
            Behaviour::Status(302),
            Behaviour::Ok,
        ]);
        let sender = Sender::new(&spec("x", &rx.url()), Duration::from_millis(150));
        let body = b"{\"events\":[]}";
        let e = sender.post(body, "k").unwrap_err();
        assert!(e.starts_with("HTTP 500"), "{e}");
        assert_eq!(sender.post(body, "k").unwrap_err(), "timed out after 150ms");
        let e = sender.post(body, "k").unwrap_err();
        assert!(e.starts_with("connection closed"), "{e}");
        let e = sender.post(body, "k").unwrap_err();
        assert!(e.starts_with("HTTP 302"), "a redirect is not followed: {e}");
        sender.post(body, "k").unwrap();
        // https is built in (the tls feature): against a plain HTTP port
        // it fails in the handshake, not as an unknown scheme.
        let tls = Sender::new(
            &spec("x", &rx.url().replace("http:", "https:")),
            Duration::from_millis(150),
        );
        let e = tls.post(body, "k").unwrap_err();
        assert!(!e.to_lowercase().contains("scheme"), "{e}");
        // Nothing listening.
        let port = rx.addr().port();
        drop(rx);
        let gone = Sender::new(
            &spec("x", &format!("http://127.0.0.1:{port}/")),
            Duration::from_millis(150),
        );
        let e = gone.post(body, "k").unwrap_err();
        assert!(e.starts_with("connection failed"), "{e}");
    }

    #[test]
    fn a_batch_in_flight_at_a_stop_is_sent_again_the_same_first() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        rx.script([Behaviour::Hang(Duration::from_secs(5))]);
        let feed = Arc::new(Fake::default());
        feed.push(60, &[4]);
        // A timeout long enough that the stop comes while it hangs.
        let patient = DeliveryConfig {
            timeout: Duration::from_secs(2),
            ..fast()
        };
        let h = start(
            spec("restart", &rx.url()),
            feed.clone(),
            dir.path(),
            patient,
            Arc::new(Status::new()),
        )
        .unwrap();
        assert!(rx.wait_for_requests(1, LONG));
        // More events arrive; a plain read after acked would now make a
        // bigger first batch, with another key.
        feed.push(100, &[4]);
        h.stop();
        let p = progress::read(dir.path(), "restart").unwrap().unwrap();
        assert_eq!((p.acked, p.inflight_through), (0, 60));

        let status = Arc::new(Status::new());
        let h = start(
            spec("restart", &rx.url()),
            feed.clone(),
            dir.path(),
            fast(),
            status.clone(),
        )
        .unwrap();
        assert!(rx.wait_for_events(160, LONG));
        h.stop();
        let requests = rx.requests();
        let hung = &requests[0];
        let again = requests.iter().find(|r| r.acknowledged()).unwrap();
        assert_eq!(again.idempotency_key(), hung.idempotency_key());
        assert_eq!(again.body, hung.body);
        assert_eq!(seqs(&again.events()), (1..=60).collect::<Vec<_>>());
        assert_eq!(
            seqs(&rx.acknowledged_events()),
            (1..=160).collect::<Vec<_>>(),
            "no duplicates after the batch in flight"
        );
        assert_eq!(status.snapshot().sent, 160);
        let p = progress::read(dir.path(), "restart").unwrap().unwrap();
        assert_eq!((p.acked, p.inflight_through), (160, 0));
    }

    #[test]
    fn a_kinds_filter_sends_only_those_kinds_and_acks_past_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        let feed = Arc::new(Fake::default());
        feed.push(300, &[0, 4, 1, 5, 2]);
        // A tail of other kinds only, longer than a batch.
        feed.push(150, &[0, 1]);
        let status = Arc::new(Status::new());
        let mut s = spec("kinds", &rx.url());
        s.kinds = Some(vec![4, 5]);
        let h = start(s, feed.clone(), dir.path(), fast(), status.clone()).unwrap();
        eventually("acked past the other kinds", || {
            status.snapshot().acked == 450
        });
        h.stop();
        let acked = rx.acknowledged_events();
        assert!(acked
            .iter()
            .all(|e| [4, 5].contains(&e["kind"].as_u64().unwrap())));
        let expected: Vec<u64> = (1..=300)
            .filter(|s| [4, 5].contains(&[0, 4, 1, 5, 2][(s % 5) as usize]))
            .collect();
        assert_eq!(seqs(&acked), expected);
        assert!(rx.requests().iter().all(|r| r.events().len() <= 100));
        assert_eq!(status.snapshot().sent, expected.len() as u64);
        assert_eq!(status.snapshot().lag_events(feed.newest()), 0);
        let p = progress::read(dir.path(), "kinds").unwrap().unwrap();
        assert_eq!(p.acked, 450);
    }

    #[test]
    fn a_batch_failing_past_the_period_disables_and_stays_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        rx.script(std::iter::repeat_n(Behaviour::Status(500), 10_000));
        let feed = Arc::new(Fake::default());
        feed.push(10, &[4]);
        let status = Arc::new(Status::new());
        let cfg = DeliveryConfig {
            disable_after: Duration::from_millis(60),
            ..fast()
        };
        let h = start(
            spec("doomed", &rx.url()),
            feed.clone(),
            dir.path(),
            cfg.clone(),
            status.clone(),
        )
        .unwrap();
        eventually("disabled", || h.is_finished());
        let snap = status.snapshot();
        assert_eq!(snap.state, State::Disabled);
        assert!(snap.failed >= 2, "{}", snap.failed);
        assert!(
            snap.last_error.starts_with("HTTP 500"),
            "{}",
            snap.last_error
        );
        assert!(snap.last_error.contains("disabled"), "{}", snap.last_error);
        assert_eq!((snap.sent, snap.acked), (0, 0));
        assert_eq!(snap.lag_events(feed.newest()), 10);
        assert_eq!(snap.oldest_unacked_ms, Some(1000));
        assert_eq!(snap.lag_seconds(61_000), 60);
        h.stop();
        let p = progress::read(dir.path(), "doomed").unwrap().unwrap();
        assert!(p.disabled);
        assert_eq!(p.last_error, snap.last_error);

        // Started again: disabled from the file, nothing sent.
        let sent_before = rx.requests().len();
        let status = Arc::new(Status::new());
        let h = start(
            spec("doomed", &rx.url()),
            feed.clone(),
            dir.path(),
            cfg,
            status.clone(),
        )
        .unwrap();
        assert!(h.is_finished());
        let snap = status.snapshot();
        assert_eq!(snap.state, State::Disabled);
        assert_eq!(snap.last_error, p.last_error);
        h.stop();
        assert_eq!(rx.requests().len(), sent_before);
    }

    #[test]
    fn an_expired_cursor_skips_to_the_oldest_retained_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        let feed = Arc::new(Fake::default());
        feed.push(10, &[4]);
        let h = start(
            spec("late", &rx.url()),
            feed.clone(),
            dir.path(),
            fast(),
            Arc::new(Status::new()),
        )
        .unwrap();
        assert!(rx.wait_for_events(10, LONG));
        h.stop();
        // While it was stopped, 40 more events came and retention dropped
        // all but the last 20.
        feed.push(40, &[4]);
        feed.drop_before(31);
        let status = Arc::new(Status::new());
        let h = start(
            spec("late", &rx.url()),
            feed.clone(),
            dir.path(),
            fast(),
            status.clone(),
        )
        .unwrap();
        assert!(rx.wait_for_events(30, LONG));
        h.stop();
        let expected: Vec<u64> = (1..=10).chain(31..=50).collect();
        assert_eq!(seqs(&rx.acknowledged_events()), expected);
        let snap = status.snapshot();
        assert_eq!((snap.skipped, snap.sent, snap.acked), (20, 20, 50));
        assert!(
            snap.last_error
                .starts_with("20 events (seq 11 to 30) were dropped"),
            "{}",
            snap.last_error
        );
    }
}
