//! Prometheus metrics: request counts and latencies by route, rejections by
//! reason, and engine gauges read from the state at scrape time.
//!
//! Every label takes its value from a fixed, small set, whatever a client
//! sends: a method is one of the standard ones or `other`, a route is the
//! pattern of the route table (`/cohorts/{partner}/{cohort_id}`) or
//! `unmatched`. Requests need no token to reach the counters, so a label
//! copied from the request would let anyone create series without bound
//! (memory, and every scrape after it).

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: String,
    pub status: u16,
}

/// The `route` of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The `method` label: a standard method's name, else `other`.
pub fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == method)
        .unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// A users API route, from the route table (a fixed set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UsersRouteLabels {
    pub route: &'static str,
}

/// A connector's series: its workspace and id. Not from a request: from
/// the state, which holds at most `connectors.max_per_workspace` per
/// workspace, and a deleted connector's series go at the next scrape.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectorLabels {
    pub workspace: String,
    pub connector: String,
}

/// Per-connector gauges, set from each connector's status at scrape time.
#[derive(Default)]
pub struct ConnectorFamilies {
    pub sent: Family<ConnectorLabels, Gauge>,
    pub failed: Family<ConnectorLabels, Gauge>,
    pub lag_events: Family<ConnectorLabels, Gauge>,
    pub lag_seconds: Family<ConnectorLabels, Gauge>,
    pub disabled: Family<ConnectorLabels, Gauge>,
}

/// One connector's figures at a scrape.
pub struct ConnectorFigures {
    pub sent: u64,
    pub failed: u64,
    pub lag_events: u64,
    pub lag_seconds: u64,
    pub disabled: bool,
}

impl ConnectorFamilies {
    /// Sets one connector's series.
    pub fn set(&self, labels: &ConnectorLabels, f: ConnectorFigures) {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.sent.get_or_create(labels).set(n(f.sent));
        self.failed.get_or_create(labels).set(n(f.failed));
        self.lag_events.get_or_create(labels).set(n(f.lag_events));
        self.lag_seconds.get_or_create(labels).set(n(f.lag_seconds));
        self.disabled
            .get_or_create(labels)
            .set(i64::from(f.disabled));
    }

    /// Forgets every series (before they are set again, so deleted
    /// connectors' go).
    pub fn clear(&self) {
        for f in [
            &self.sent,
            &self.failed,
            &self.lag_events,
            &self.lag_seconds,
            &self.disabled,
        ] {
            f.clear();
        }
    }
}

/// A shard's series (cluster mode): at most `cluster.shards` of them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: u32,
}

/// Per-shard gauges (cluster mode), set at scrape time.
#[derive(Default)]
pub struct ShardFamilies {
    pub applied: Family<ShardLabels, Gauge>,
    pub lag: Family<ShardLabels, Gauge>,
    pub leader: Family<ShardLabels, Gauge>,
}

impl ShardFamilies {
    /// Sets one shard's series: the sequence this node applied, the
    /// records it has not applied yet, whether it leads the shard.
    pub fn set(&self, shard: u32, applied: u64, lag: u64, leads: bool) {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let l = ShardLabels { shard };
        self.applied.get_or_create(&l).set(n(applied));
        self.lag.get_or_create(&l).set(n(lag));
        self.leader.get_or_create(&l).set(i64::from(leads));
    }
}

pub struct Metrics {
    registry: Registry,
    pub connectors: ConnectorFamilies,
    pub shards: ShardFamilies,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub rejected: Family<ReasonLabels, Counter>,
    pub batched: Family<UsersRouteLabels, Counter>,
    pub identifiers_matched: Counter,
    pub identifiers_unmatched: Counter,
    pub workspaces: Gauge,
    pub profiles: Gauge,
    pub cohorts: Gauge,
    pub memberships: Gauge,
    pub inflight_writes: Gauge,
    pub read_pool_busy: Gauge,
    pub ready: Gauge,
    pub wal_records: Gauge,
    pub wal_fsyncs: Gauge,
    pub wal_io_errors: Gauge,
    pub feed_events: Gauge,
    pub feed_write_errors: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cohortd");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.0, 18))
        });
        let rejected = Family::<ReasonLabels, Counter>::default();
        let batched = Family::<UsersRouteLabels, Counter>::default();
        let m = Metrics {
            requests: requests.clone(),
            latency: latency.clone(),
            rejected: rejected.clone(),
            batched: batched.clone(),
            identifiers_matched: Counter::default(),
            identifiers_unmatched: Counter::default(),
            workspaces: Gauge::default(),
            profiles: Gauge::default(),
            cohorts: Gauge::default(),
            memberships: Gauge::default(),
            inflight_writes: Gauge::default(),
            read_pool_busy: Gauge::default(),
            ready: Gauge::default(),
            wal_records: Gauge::default(),
            wal_fsyncs: Gauge::default(),
            wal_io_errors: Gauge::default(),
            feed_events: Gauge::default(),
            feed_write_errors: Gauge::default(),
            connectors: ConnectorFamilies::default(),
            shards: ShardFamilies::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests,
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency,
        );
        registry.register(
            "rejected_requests",
            "Requests refused before doing work (saturated, rate_limited, too_large, read_pool_busy, read_share_busy), or stopped (read_budget_exceeded)",
            rejected,
        );
        registry.register(
            "users_batched_requests",
            "Users API requests sent with X-Braze-Batch: true (a client batching users), by route",
            batched,
        );
        registry.register(
            "import_identifiers_matched",
            "Cohort import identifiers that matched a profile",
            m.identifiers_matched.clone(),
        );
        registry.register(
            "import_identifiers_unmatched",
            "Cohort import identifiers that matched no profile",
            m.identifiers_unmatched.clone(),
        );
        registry.register("workspaces", "Workspaces", m.workspaces.clone());
        registry.register("profiles", "Live profiles", m.profiles.clone());
        registry.register("cohorts", "Partner cohorts", m.cohorts.clone());
        registry.register(
            "memberships",
            "Cohort memberships (sum of cohort sizes)",
            m.memberships.clone(),
        );
        registry.register(
            "inflight_writes",
            "Writes admitted and not yet answered (each holds one of engine.max_inflight_writes slots)",
            m.inflight_writes.clone(),
        );
        registry.register(
            "read_pool_busy",
            "Reads evaluating filters on the read pool now (at most reads.threads)",
            m.read_pool_busy.clone(),
        );
        registry.register("ready", "1 once recovery has finished", m.ready.clone());
        registry.register(
            "wal_records",
            "Write-ahead log records written since start",
            m.wal_records.clone(),
        );
        registry.register(
            "wal_fsyncs",
            "Write-ahead log fsyncs since start (group commit: far fewer than records)",
            m.wal_fsyncs.clone(),
        );
        registry.register(
            "wal_io_errors",
            "Write-ahead log IO errors since start",
            m.wal_io_errors.clone(),
        );
        registry.register(
            "feed_events",
            "Change feed events written since start (every workspace)",
            m.feed_events.clone(),
        );
        registry.register(
            "feed_write_errors",
            "Commands whose change feed events could not be written since start (they are missing from the feed)",
            m.feed_write_errors.clone(),
        );
        let c = &m.connectors;
        for (name, help, family) in [
            (
                "connector_sent_events",
                "Events a connector's endpoint acknowledged since start",
                &c.sent,
            ),
            (
                "connector_failed_attempts",
                "A connector's delivery attempts that failed since start (each is retried)",
                &c.failed,
            ),
            (
                "connector_lag_events",
                "Feed events after a connector's last acknowledged one",
                &c.lag_events,
            ),
            (
                "connector_lag_seconds",
                "Age of the oldest event a connector has not delivered (0: caught up)",
                &c.lag_seconds,
            ),
            (
                "connector_disabled",
                "1 when a connector was disabled for failing too long",
                &c.disabled,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        let sh = &m.shards;
        for (name, help, family) in [
            (
                "cluster_shard_applied_sequence",
                "Cluster mode: the last sequence of a shard's stream this node applied",
                &sh.applied,
            ),
            (
                "cluster_shard_lag",
                "Cluster mode: records in a shard's stream this node has not applied yet (as of the stream's last sequence read, about once a second)",
                &sh.lag,
            ),
            (
                "cluster_shard_leader",
                "Cluster mode: 1 when this node leads the shard",
                &sh.leader,
            ),
        ] {
            registry.register(name, help, family.clone());
        }
        Metrics { registry, ..m }
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts one users API request that said `X-Braze-Batch: true`;
    /// `route` is its route-table pattern.
    pub fn batched(&self, route: &'static str) {
        self.batched
            .get_or_create(&UsersRouteLabels { route })
            .inc();
    }

    /// Counts and times one request. `route` must be a route-table
    /// pattern (`None`: no route matched), never the request's path.
    pub fn observe(&self, method: &str, route: Option<&str>, status: u16, seconds: f64) {
        let route = route.unwrap_or(UNMATCHED);
        self.requests
            .get_or_create(&RequestLabels {
                method: method_label(method),
                route: route.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("get"), "other", "methods are case-sensitive");
        assert_eq!(method_label("BREW"), "other");
        let m = Metrics::new();
        for i in 0..100 {
            m.observe(&format!("X{i}"), None, 404, 0.001);
        }
        let text = m.render();
        let series = text
            .lines()
            .filter(|l| l.starts_with("cohortd_http_requests_total{"))
            .collect::<Vec<_>>();
        assert_eq!(
            series,
            ["cohortd_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 100"]
        );
    }
}
