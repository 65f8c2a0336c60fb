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
//!
//! In a cluster ([`Connectors::reconcile_where`]) a node delivers only the
//! connectors of the workspaces whose shard it leads, and is reconciled
//! again each time it starts or stops leading one. Each delivery shares
//! its progress (`shared`), and starts from the shared progress when that
//! is further on than its own file; a connector this node does not
//! deliver is reported from what its deliverer shared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::deliver::{self, DeliveryConfig, Handle, Source, Spec, Status, StatusSnapshot};
use super::progress::{self, Progress, ProgressFile};
use super::shared::SharedProgress;
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
    /// Whether this node delivers it (in a cluster, the figures of one it
    /// does not are its deliverer's, as last shared).
    pub delivering: bool,
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
    /// Cluster mode: the progress every node shares.
    shared: Option<Arc<SharedProgress>>,
}

impl Connectors {
    pub fn new(
        data_dir: &Path,
        cfg: DeliveryConfig,
        feeds: Arc<Feeds>,
        shared: Option<Arc<SharedProgress>>,
    ) -> Connectors {
        Connectors {
            dir: data_dir.join("connectors"),
            cfg,
            feeds,
            running: Mutex::new(HashMap::new()),
            shared,
        }
    }

    fn dir_of(&self, ws: WorkspaceId) -> PathBuf {
        self.dir.join(ws.to_string())
    }

    /// Makes the running connectors the ones the current state holds.
    /// `state` is read once this holds the lock, so that of two calls at
    /// once the last sees the newest state.
    pub fn reconcile(&self, state: impl FnOnce() -> Arc<State>) {
        self.reconcile_where(state, |_| true)
    }

    /// [`reconcile`](Self::reconcile), running only the connectors of the
    /// workspaces `delivers` says this node delivers (in a cluster, those
    /// whose shard it leads).
    pub fn reconcile_where(
        &self,
        state: impl FnOnce() -> Arc<State>,
        delivers: impl Fn(WorkspaceId) -> bool,
    ) {
        let mut running = self.running.lock();
        let mut all: HashMap<(WorkspaceId, String), Arc<Connector>> = HashMap::new();
        for ws in state().workspaces_sorted() {
            for c in ws.connectors_sorted() {
                all.insert((ws.id(), c.id.clone()), c);
            }
        }
        let wanted: HashMap<(WorkspaceId, String), Arc<Connector>> = all
            .iter()
            .filter(|((ws, _), _)| delivers(*ws))
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        let gone: Vec<_> = running
            .keys()
            .filter(|k| wanted.get(*k) != running.get(*k).map(|r| &r.connector))
            .cloned()
            .collect();
        let mut stopping = Vec::new();
        for key in gone {
            if let Some(r) = running.remove(&key) {
                // Gone from the state, not only delivered elsewhere now.
                let removed = !all.contains_key(&key);
                stopping.push((key, r, removed));
            }
        }
        if let Some(shared) = &self.shared {
            for ((ws, id), _, _) in stopping.iter().filter(|(_, _, removed)| *removed) {
                shared.remove(*ws, id);
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
        let seeded = match &self.shared {
            Some(shared) => shared.seed(&dir, ws, &c.id),
            None => Ok(()),
        };
        let on_save = self.shared.as_ref().map(|s| s.on_save(ws, &c.id));
        let handle = seeded
            .and_then(|()| first_progress(&dir, &c))
            .and_then(|()| {
                let spec = Spec {
                    id: c.id.clone(),
                    url: c.url.clone(),
                    bearer_token: c.bearer_token.clone(),
                    kinds: c
                        .event_types
                        .as_ref()
                        .map(|t| t.iter().map(|t| t.code()).collect()),
                };
                deliver::start_sharing(
                    spec,
                    feed.clone(),
                    &dir,
                    self.cfg.clone(),
                    status.clone(),
                    on_save,
                )
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

    /// One connector's figures: this node's if it delivers it, else (in
    /// a cluster) its deliverer's as last shared.
    pub fn report(&self, ws: WorkspaceId, c: &Arc<Connector>) -> Option<Report> {
        if let Some(r) = self.running.lock().get(&(ws, c.id.clone())) {
            return Some(report(ws, r));
        }
        self.shared_report(ws, c.clone())
    }

    /// Every connector of `state` with figures ([`report`](Self::report)),
    /// by workspace and id.
    pub fn reports(&self, state: &State) -> Vec<Report> {
        state
            .workspaces_sorted()
            .iter()
            .flat_map(|ws| {
                ws.connectors_sorted()
                    .into_iter()
                    .filter_map(|c| self.report(ws.id(), &c))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A connector delivered by another node, from what it shared (`None`
    /// on a single node, or before anything was shared: created a moment
    /// ago).
    fn shared_report(&self, ws: WorkspaceId, connector: Arc<Connector>) -> Option<Report> {
        let shared = self.shared.as_ref()?.get(ws, &connector.id)?;
        let status = shared.status();
        let newest = self.feeds.feed(ws).map_or(0, |f| f.newest());
        Some(Report {
            workspace: ws,
            lag_events: status.lag_events(newest),
            lag_seconds: status.lag_seconds(crate::time::now_millis()),
            delivering: false,
            connector,
            status,
        })
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
        delivering: true,
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
