//! The engine: the one thing the HTTP layer calls.
//!
//! `Engine` is a cheap `Clone` handle over the shared state (read directly by
//! queries), the router actor (through which every write passes), the
//! secrets in force and the rate limiter. Writes are admitted through a
//! bounded number of in-flight slots: when all are taken the engine is
//! saturated and the write is refused with 503 before anything is applied.
//! (An actix `send` to a full mailbox would instead wait, and a `do_send`
//! is unbounded; the slot count is the explicit bound, and `do_send` keeps
//! the router → cohort order intact.)

pub mod cohort;
pub mod query;
pub mod ratelimit;
pub mod router;
pub mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::{Actor, Addr, Arbiter};
use tokio::sync::{oneshot, Semaphore};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::secrets::Secrets;
use ratelimit::{RateLimiter, RateStatus};
use router::{Command, Outcome, Router, Submit};
use state::{State, Workspace};

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    secrets: Secrets,
    state: Arc<State>,
    router: Addr<Router>,
    slots: Arc<Semaphore>,
    rate: RateLimiter,
    ready: AtomicBool,
    metrics: Metrics,
    _arbiters: Vec<Arbiter>,
}

impl Engine {
    /// Starts the router and the cohort arbiters. Must run inside an actix
    /// `System`.
    pub fn start(config: Config, secrets: Secrets) -> Engine {
        let state = Arc::new(State::default());
        let arbiters: Vec<Arbiter> = (0..config.engine.cohort_arbiters)
            .map(|_| Arbiter::new())
            .collect();
        let handles = arbiters.iter().map(Arbiter::handle).collect();
        let router_arbiter = Arbiter::new();
        let router_state = state.clone();
        let history_len = config.engine.import_history_len;
        let router = Router::start_in_arbiter(&router_arbiter.handle(), move |_| {
            Router::new(router_state, handles, history_len)
        });
        let mut all = arbiters;
        all.push(router_arbiter);
        let engine = Engine {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(config.engine.max_inflight_writes)),
                rate: RateLimiter::new(config.rate_limit.requests, config.rate_limit.window_secs),
                config,
                secrets,
                state,
                router,
                ready: AtomicBool::new(false),
                metrics: Metrics::new(),
                _arbiters: all,
            }),
        };
        engine.set_ready();
        engine
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn state(&self) -> &State {
        &self.inner.state
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::Release);
        self.inner.metrics.ready.set(1);
    }

    /// Applies one mutation and resolves once it is visible to every read.
    pub async fn submit(&self, cmd: Command) -> Result<Outcome> {
        let Ok(_slot) = self.inner.slots.clone().try_acquire_owned() else {
            self.inner.metrics.reject("saturated");
            return Err(Error::Saturated);
        };
        let (reply, rx) = oneshot::channel();
        self.inner.router.do_send(Submit { cmd, reply });
        let pending = rx
            .await
            .map_err(|_| Error::Internal("router stopped before replying".into()))?;
        pending.await
    }

    /// Writes admitted and not yet answered.
    pub fn inflight_writes(&self) -> usize {
        self.inner.config.engine.max_inflight_writes - self.inner.slots.available_permits()
    }

    // ---- authentication: the one place that decides who may do what ----

    pub fn is_admin(&self, token: &str) -> bool {
        self.inner.secrets.admin.matches(token)
    }

    pub fn workspace_for_key(&self, rest_key: &str) -> Option<Arc<Workspace>> {
        self.inner.state.workspace_by_rest_key(rest_key)
    }

    pub fn is_partner(&self, partner: &str) -> bool {
        self.inner.secrets.partners.contains_key(partner)
    }

    pub fn partners(&self) -> impl Iterator<Item = &str> {
        self.inner.secrets.partners.keys().map(String::as_str)
    }

    /// The partner endpoints' checks, in SPEC order: partner API key, then
    /// client secret, then that the secret belongs to this partner.
    pub fn authorize_partner(
        &self,
        partner: &str,
        api_key: Option<&str>,
        client_secret: Option<&str>,
    ) -> Result<Arc<Workspace>> {
        let stored = self
            .inner
            .secrets
            .partners
            .get(partner)
            .ok_or_else(|| Error::UnknownPartner(partner.to_string()))?;
        if !api_key.is_some_and(|k| stored.matches(k)) {
            return Err(Error::InvalidPartnerKey);
        }
        let secret = client_secret.ok_or(Error::InvalidClientSecret)?;
        let owner = self
            .inner
            .state
            .import_key_owner(secret)
            .ok_or(Error::InvalidClientSecret)?;
        if owner.partner != partner {
            return Err(Error::PartnerNotEnabled(secret.to_string()));
        }
        self.inner
            .state
            .workspace(owner.workspace)
            .ok_or(Error::InvalidClientSecret)
    }

    /// Counts one partner request against its (workspace, partner) window.
    pub fn rate_hit(&self, ws: &Workspace, partner: &str) -> RateStatus {
        let now = u64::try_from(crate::time::now_millis() / 1000).unwrap_or(0);
        let status = self.inner.rate.hit(ws.id, partner, now);
        if !status.allowed {
            self.inner.metrics.reject("rate_limited");
        }
        status
    }

    /// Refreshes the scrape-time gauges and renders `/metrics`.
    pub fn render_metrics(&self) -> String {
        let m = &self.inner.metrics;
        let (workspaces, profiles, cohorts, memberships) = self.inner.state.totals();
        m.workspaces.set(workspaces as i64);
        m.profiles.set(profiles as i64);
        m.cohorts.set(cohorts as i64);
        m.memberships.set(memberships as i64);
        m.inflight_writes.set(self.inflight_writes() as i64);
        m.render()
    }
}
