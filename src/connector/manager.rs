//! Which connectors run: one delivery thread (`deliver`) per connector the
//! state holds, started and stopped to match it.
//!
//! The state (through the log) says which connectors exist; this module
//! only follows it. [`Connectors::reconcile`] is the one place that starts
//! and stops deliveries: the engine calls it after recovery, after a
//! connector is created or deleted, and after a restore, and it is cheap
//! when nothing changed. A connector that is gone from the state (deleted,
//! or not in a restored snapshot) is stopped and its progress file
//! removed; ids are never reused, so nothing else could want it.
//!
//! Progress files live under `<data_dir>/connectors/<workspace>/`, next
//! to the feed they point into. A connector starts from its own
//! `start_after` (the feed's newest seq when it was created) the first
//! time; after that from its progress file.
//!
//! Stopping a delivery joins its thread, which may be in the middle of a
//! request (up to `timeout_ms`): that happens on a thread of its own,
//! never on the caller's (an HTTP worker).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::deliver::{self, DeliveryConfig, Handle, Source, Spec, Status, StatusSnapshot};
use super::progress::{self, Progress, ProgressFile};
use crate::engine::state::{Connector, State};
use crate::feed::{Feed, Feeds};
use crate::model::WorkspaceId;
use crate::persist::feed::Read;

/// The workspace's feed, as a connector reads it.
impl Source for Feed {
    fn read(&self, after: u64, limit: usize, kinds: Option<&[u8]>) -> crate::persist::Result<Read> {
        self.read_kinds(after, limit, kinds)
    }

    fn wait_after(&self, after: u64, timeout: Duration) {
        self.wait_after_blocking(after, timeout)
    }

    fn newest(&self) -> u64 {
        Feed::newest(self)
    }
}

/// A connector's figures, for its status, `/metrics` and the CLI.
#[derive(Clone, Debug)]
pub struct Report {
    pub workspace: WorkspaceId,
    pub connector: Arc<Connector>,
    pub status: StatusSnapshot,
    /// Events in the feed after the last one acknowledged.
    pub lag_events: u64,
    /// Age of the oldest event not acknowledged yet (0 when caught up).
    pub lag_seconds: u64,
}

struct Running {
    connector: Arc<Connector>,
    /// `None` when the feed could not be opened.
    feed: Option<Arc<Feed>>,
    status: Arc<Status>,
    /// `None` when it could not start (its status says why).
    handle: Option<Handle>,
}

/// Every running connector.
pub struct Connectors {
    dir: PathBuf,
    cfg: DeliveryConfig,
    feeds: Arc<Feeds>,
    running: Mutex<HashMap<(WorkspaceId, String), Running>>,
}

impl Connectors {
    pub fn new(data_dir: &Path, cfg: DeliveryConfig, feeds: Arc<Feeds>) -> Connectors {
        Connectors {
            dir: data_dir.join("connectors"),
            cfg,
            feeds,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn dir_of(&self, ws: WorkspaceId) -> PathBuf {
        self.dir.join(ws.to_string())
    }

    /// Makes the running connectors the ones the current state holds.
    /// `state` is read once this holds the lock, so that of two calls at
    /// once the last sees the newest state.
    pub fn reconcile(&self, state: impl FnOnce() -> Arc<State>) {
        let mut running = self.running.lock();
        let mut wanted: HashMap<(WorkspaceId, String), Arc<Connector>> = HashMap::new();
        for ws in state().workspaces_sorted() {
            for c in ws.connectors_sorted() {
                wanted.insert((ws.id(), c.id.clone()), c);
            }
        }
        let gone: Vec<_> = running
            .keys()
            .filter(|k| wanted.get(*k) != running.get(*k).map(|r| &r.connector))
            .cloned()
            .collect();
        let mut stopping = Vec::new();
        for key in gone {
            if let Some(r) = running.remove(&key) {
                let removed = !wanted.contains_key(&key);
                stopping.push((key, r, removed));
            }
        }
        for (key, connector) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            let r = self.start(key.0, connector);
            running.insert(key, r);
        }
        drop(running);
        if !stopping.is_empty() {
            let dir = self.dir.clone();
            let spawned = std::thread::Builder::new()
                .name("connector-stop".into())
                .spawn(move || {
                    for ((ws, id), r, removed) in stopping {
                        drop(r.handle);
                        if !removed {
                            continue;
                        }
                        if let Err(e) = progress::remove(&dir.join(ws.to_string()), &id) {
                            tracing::warn!(workspace = %ws, connector = %id, error = %e,
                                "a deleted connector's progress file could not be removed");
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a thread to stop connectors");
            }
        }
    }

    /// Starts delivering `c`; a connector that cannot start keeps its
    /// status with the error, and is tried again at the next restart.
    fn start(&self, ws: WorkspaceId, c: Arc<Connector>) -> Running {
        let status = Arc::new(Status::new());
        let feed = match self.feeds.feed(ws) {
            Ok(f) => f,
            Err(e) => {
                status.set_error(&format!("the change feed cannot be opened: {e}"));
                tracing::error!(workspace = %ws, connector = %c.id, error = %e,
                    "connector not started: its feed cannot be opened");
                return Running {
                    connector: c,
                    feed: None,
                    status,
                    handle: None,
                };
            }
        };
        let dir = self.dir_of(ws);
        let handle = first_progress(&dir, &c).and_then(|()| {
            let spec = Spec {
                id: c.id.clone(),
                url: c.url.clone(),
                bearer_token: c.bearer_token.clone(),
                kinds: c
                    .event_types
                    .as_ref()
                    .map(|t| t.iter().map(|t| t.code()).collect()),
            };
            deliver::start(spec, feed.clone(), &dir, self.cfg.clone(), status.clone())
        });
        let handle = match handle {
            Ok(h) => Some(h),
            Err(e) => {
                status.set_error(&format!("delivery cannot start: {e}"));
                tracing::error!(workspace = %ws, connector = %c.id, error = %e,
                    "connector not started");
                None
            }
        };
        Running {
            connector: c,
            feed: Some(feed),
            status,
            handle,
        }
    }

    /// One connector's figures.
    pub fn report(&self, ws: WorkspaceId, id: &str) -> Option<Report> {
        let running = self.running.lock();
        let r = running.get(&(ws, id.to_string()))?;
        Some(report(ws, r))
    }

    /// Every connector's figures, by workspace and id.
    pub fn reports(&self) -> Vec<Report> {
        let running = self.running.lock();
        let mut all: Vec<Report> = running.iter().map(|((ws, _), r)| report(*ws, r)).collect();
        all.sort_by(|a, b| (a.workspace, &a.connector.id).cmp(&(b.workspace, &b.connector.id)));
        all
    }

    /// Stops every delivery (at shutdown), waiting for each.
    pub fn stop_all(&self) {
        let all: Vec<Running> = self.running.lock().drain().map(|(_, r)| r).collect();
        for r in all {
            drop(r.handle);
        }
    }
}

fn report(ws: WorkspaceId, r: &Running) -> Report {
    let status = r.status.snapshot();
    let now = crate::time::now_millis();
    Report {
        workspace: ws,
        connector: r.connector.clone(),
        lag_events: status.lag_events(r.feed.as_deref().map_or(0, Feed::newest)),
        lag_seconds: status.lag_seconds(now),
        status,
    }
}

/// A connector's first start: its progress file begins at `start_after`.
fn first_progress(dir: &Path, c: &Connector) -> crate::persist::Result<()> {
    if progress::read(dir, &c.id)?.is_some() {
        return Ok(());
    }
    let (mut file, _) = ProgressFile::open(dir, &c.id)?;
    file.write(&Progress {
        acked: c.start_after,
        ..Progress::default()
    })
}
