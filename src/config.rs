//! Configuration, mirroring `config.toml` field for field.
//!
//! The shipped `config.toml` is embedded in the binary and is the default:
//! `Config::default()` parses it, so the file and the built-in defaults
//! cannot drift. Environment variables override the listen address, the data
//! dir and secrets (`apply_env`). Secrets that are set nowhere are generated
//! by `secrets::ensure` at start-up.
//!
//! A secret that is set but empty (or only whitespace) is refused, naming
//! where it was set: an empty partner key or admin token is a typo or an
//! unfilled template, and accepting it would let anyone send that key (an
//! empty `partner_api_key`, or a bare `Authorization: Bearer `). Unset the
//! variable, or remove the line, to have one generated instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The shipped `config.toml`, embedded.
pub const SHIPPED: &str = include_str!("../config.toml");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    #[serde(default)]
    pub admin_token: Option<String>,
    #[serde(default)]
    pub http_workers: usize,
    pub max_body_bytes: usize,
    pub shutdown_timeout_secs: u64,
    pub engine: EngineConfig,
    pub rate_limit: RateLimitConfig,
    pub snapshot: SnapshotConfig,
    pub wal: WalConfig,
    pub metrics: MetricsConfig,
    /// Optional in a config file (one written before these sections
    /// existed): a missing section takes the shipped values.
    #[serde(default = "shipped_limits")]
    pub limits: LimitsConfig,
    #[serde(default = "shipped_reads")]
    pub reads: ReadsConfig,
    #[serde(default = "shipped_feed")]
    pub feed: FeedSettings,
    #[serde(default = "shipped_connectors")]
    pub connectors: ConnectorSettings,
    /// `[cluster]` (SPEC §11): absent, this is a single node with its
    /// local log, as it always was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    pub partners: BTreeMap<String, PartnerConfig>,
}

/// `[cluster]`: cluster mode on NATS JetStream (issue 14, `crate::cluster`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Unique and stable: it names this node's leases.
    pub node_id: String,
    /// How the other nodes reach this one (writes are forwarded there).
    pub advertise_url: String,
    pub nats_urls: Vec<String>,
    /// Fixed for the life of the cluster (`cluster::shard_of`).
    pub shards: u32,
    /// JetStream replicas of each stream, bucket and object store.
    pub replicas: usize,
    pub lease_ttl_millis: u64,
}

impl ClusterConfig {
    /// What is wrong with these settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        let key_safe = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !key_safe(&self.node_id) {
            return Err(format!(
                "cluster.node_id {:?}: 1 to 64 letters, digits, '-' or '_'",
                self.node_id
            ));
        }
        if url::Url::parse(&self.advertise_url)
            .ok()
            .is_none_or(|u| !matches!(u.scheme(), "http" | "https") || u.host().is_none())
        {
            return Err(format!(
                "cluster.advertise_url {:?}: an http(s) URL the other nodes can reach",
                self.advertise_url
            ));
        }
        if self.nats_urls.is_empty() {
            return Err("cluster.nats_urls: at least one nats:// URL".into());
        }
        if let Some(bad) = self.nats_urls.iter().find(|u| {
            url::Url::parse(u)
                .ok()
                .is_none_or(|u| u.scheme() != "nats" || u.host().is_none())
        }) {
            return Err(format!(
                "cluster.nats_urls: {bad:?} is not a nats://host:port URL"
            ));
        }
        if !(1..=1024).contains(&self.shards) {
            return Err(format!("cluster.shards = {}: 1 to 1024", self.shards));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(format!(
                "cluster.replicas = {}: 1 to 5 (JetStream's range)",
                self.replicas
            ));
        }
        if self.lease_ttl_millis < 500 {
            return Err(format!(
                "cluster.lease_ttl_millis = {}: at least 500",
                self.lease_ttl_millis
            ));
        }
        Ok(())
    }
}

/// `[feed]`: every workspace's change feed (issue 12, `crate::feed`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSettings {
    /// Bytes of events a workspace's feed keeps at most.
    pub retention_bytes: u64,
    /// Hours events are kept at most: a whole segment goes once its newest
    /// event is older.
    pub retention_hours: u64,
    /// A feed segment rolls over at this size (retention drops whole
    /// segments).
    pub segment_bytes: u64,
}

impl FeedSettings {
    pub fn feed_config(&self) -> crate::feed::FeedConfig {
        crate::feed::FeedConfig {
            retention_bytes: self.retention_bytes,
            retention: std::time::Duration::from_secs(self.retention_hours.saturating_mul(3600)),
            segment_bytes: self.segment_bytes,
        }
    }
}

/// `[connectors]`: delivery of the feed to custom HTTP connectors (issue
/// 12, `crate::connector`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSettings {
    /// Connectors one workspace may have.
    pub max_per_workspace: usize,
    /// How long one POST may take before it counts as failed.
    pub timeout_ms: u64,
    /// The first retry's backoff; each retry doubles it (with full
    /// jitter), up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// A connector whose batch keeps failing this long is disabled (Braze:
    /// 5 days).
    pub disable_after_secs: u64,
}

impl ConnectorSettings {
    pub fn delivery(&self) -> crate::connector::deliver::DeliveryConfig {
        use std::time::Duration;
        crate::connector::deliver::DeliveryConfig {
            timeout: Duration::from_millis(self.timeout_ms),
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.max_backoff_ms),
            disable_after: Duration::from_secs(self.disable_after_secs),
            batch_max: 100,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    pub cohort_arbiters: usize,
    /// Optional in a config file written before per-workspace lanes: a
    /// missing key takes the shipped value.
    #[serde(default = "shipped_sequencer_arbiters")]
    pub sequencer_arbiters: usize,
    pub max_inflight_writes: usize,
    #[serde(default = "shipped_inflight_per_workspace")]
    pub max_inflight_writes_per_workspace: usize,
    pub import_history_len: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub requests: u64,
    pub window_secs: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    pub interval_secs: u64,
    pub retain: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    Always,
    Interval,
    Off,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    pub fsync: Fsync,
    pub fsync_interval_millis: u64,
    pub commit_wait_micros: u64,
    pub segment_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub require_admin_token: bool,
}

/// `[limits]`: what one request, profile and workspace may hold. Each is
/// enforced by the module that owns the rule (docs/decisions.md, "Limits").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub array_items: usize,
    /// Optional in a config file written before nested attributes: a
    /// missing key takes the shipped value.
    #[serde(default = "shipped_nesting_depth")]
    pub nesting_depth: usize,
    #[serde(default = "shipped_object_keys")]
    pub object_keys: usize,
    pub attributes_per_profile: usize,
    pub string_bytes: usize,
    pub filter_leaves: usize,
    pub filter_regex_leaves: usize,
    pub filter_regex_bytes: usize,
    pub partner_change_objects: usize,
    pub cohorts_per_workspace: usize,
    pub segments_per_workspace: usize,
}

/// `[reads]`: the pool that CPU-heavy reads (filter evaluation) run on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadsConfig {
    pub threads: usize,
    /// Optional (a `[reads]` written before it existed): 0, automatic.
    #[serde(default)]
    pub per_workspace_threads: usize,
    pub queue_wait_millis: u64,
    pub budget_millis: u64,
}

impl Default for LimitsConfig {
    /// The shipped values.
    fn default() -> Self {
        Config::default().limits
    }
}

impl Default for ReadsConfig {
    /// The shipped values.
    fn default() -> Self {
        Config::default().reads
    }
}

// The shipped file has both sections, so parsing it never calls these.
fn shipped_limits() -> LimitsConfig {
    LimitsConfig::default()
}

fn shipped_nesting_depth() -> usize {
    LimitsConfig::default().nesting_depth
}

fn shipped_object_keys() -> usize {
    LimitsConfig::default().object_keys
}

fn shipped_reads() -> ReadsConfig {
    ReadsConfig::default()
}

fn shipped_feed() -> FeedSettings {
    Config::default().feed
}

fn shipped_connectors() -> ConnectorSettings {
    Config::default().connectors
}

fn shipped_sequencer_arbiters() -> usize {
    Config::default().engine.sequencer_arbiters
}

fn shipped_inflight_per_workspace() -> usize {
    Config::default().engine.max_inflight_writes_per_workspace
}

impl ReadsConfig {
    /// Threads of the read pool: `threads`, or one per core when 0.
    pub fn pool_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// Threads one workspace's reads may hold at once (its share of the
    /// pool): `per_workspace_threads`, or half the pool when 0, never less
    /// than one thread nor more than the pool.
    ///
    /// Half, rounded down: one busy workspace always leaves at least half
    /// of the threads to every other one, and it takes two at their share
    /// to fill the pool. With one thread the share is that thread (there is
    /// nothing to leave), so a lone workspace still gets its reads done.
    pub fn workspace_share(&self) -> usize {
        let threads = self.pool_threads();
        match self.per_workspace_threads {
            0 => (threads / 2).max(1),
            n => n.min(threads),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    #[serde(default)]
    pub api_key: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config::parse(SHIPPED).expect("the shipped config.toml parses")
    }
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.sanitize()
    }

    /// Reads `path`; a missing file means the embedded default.
    pub fn load(path: &Path) -> Result<Config, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Applies `COHORTD_*` environment overrides from `get` (the process
    /// environment in production, a map in tests).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        if let Some(v) = get("COHORTD_LISTEN") {
            self.listen = v.parse().map_err(|e| format!("COHORTD_LISTEN={v}: {e}"))?;
        }
        if let Some(v) = get("COHORTD_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("COHORTD_ADMIN_TOKEN") {
            self.admin_token = Some(non_blank_env("COHORTD_ADMIN_TOKEN", v)?);
        }
        for var in [
            "COHORTD_NODE_ID",
            "COHORTD_ADVERTISE_URL",
            "COHORTD_NATS_URLS",
        ] {
            let Some(v) = get(var) else { continue };
            let Some(c) = self.cluster.as_mut() else {
                return Err(format!(
                    "{var} is set but the config has no [cluster] section (shards and \
                     replicas are fixed for the life of a cluster: write them down there)"
                ));
            };
            match var {
                "COHORTD_NODE_ID" => c.node_id = v,
                "COHORTD_ADVERTISE_URL" => c.advertise_url = v,
                _ => {
                    c.nats_urls = v
                        .split(',')
                        .map(|u| u.trim().to_string())
                        .filter(|u| !u.is_empty())
                        .collect()
                }
            }
        }
        if let Some(c) = &self.cluster {
            c.check()?;
        }
        for (name, p) in self.partners.iter_mut() {
            let var = partner_key_var(name);
            if let Some(v) = get(&var) {
                p.api_key = Some(non_blank_env(&var, v)?);
            }
        }
        Ok(())
    }

    /// Refuses a secret in force that is empty or whitespace, naming the
    /// setting and its variable. `parse` and `apply_env` already refuse
    /// such values where they come from; this is the last word for a
    /// `Config` built in code (start-up calls it).
    pub fn check_secrets(&self) -> Result<(), String> {
        if self.admin_token.as_deref().is_some_and(is_blank) {
            return Err(blank("admin_token (or COHORTD_ADMIN_TOKEN)"));
        }
        for (name, p) in &self.partners {
            if p.api_key.as_deref().is_some_and(is_blank) {
                return Err(blank(&format!(
                    "partners.{name}.api_key (or {})",
                    partner_key_var(name)
                )));
            }
        }
        Ok(())
    }

    fn sanitize(self) -> Result<Config, String> {
        if self.partners.is_empty() {
            return Err("at least one partner must be configured under [partners]".into());
        }
        for name in self.partners.keys() {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "partner name {name:?}: use letters, digits, '-' and '_'"
                ));
            }
        }
        if self.engine.cohort_arbiters == 0 || self.engine.max_inflight_writes == 0 {
            return Err(
                "engine.cohort_arbiters and engine.max_inflight_writes must be at least 1".into(),
            );
        }
        if self.rate_limit.window_secs == 0 {
            return Err("rate_limit.window_secs must be at least 1".into());
        }
        if let Some(c) = &self.cluster {
            c.check()?;
        }
        if self.feed.segment_bytes < 4096 || self.feed.retention_hours == 0 {
            return Err(
                "feed.segment_bytes must be at least 4096 and feed.retention_hours at least 1"
                    .into(),
            );
        }
        let c = &self.connectors;
        if c.timeout_ms == 0 || c.initial_backoff_ms == 0 || c.max_backoff_ms < c.initial_backoff_ms
        {
            return Err(
                "connectors.timeout_ms and connectors.initial_backoff_ms must be at least \
                 1, and connectors.max_backoff_ms at least connectors.initial_backoff_ms"
                    .into(),
            );
        }
        if self.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        if self.admin_token.as_deref().is_some_and(is_blank) {
            return Err(blank("admin_token"));
        }
        for (name, p) in &self.partners {
            if p.api_key.as_deref().is_some_and(is_blank) {
                return Err(blank(&format!("[partners.{name}] api_key")));
            }
        }
        let l = &self.limits;
        for (key, value) in [
            ("array_items", l.array_items),
            ("attributes_per_profile", l.attributes_per_profile),
            ("string_bytes", l.string_bytes),
            ("filter_leaves", l.filter_leaves),
            ("filter_regex_leaves", l.filter_regex_leaves),
            ("filter_regex_bytes", l.filter_regex_bytes),
            ("partner_change_objects", l.partner_change_objects),
            ("cohorts_per_workspace", l.cohorts_per_workspace),
            ("segments_per_workspace", l.segments_per_workspace),
        ] {
            if value == 0 {
                return Err(format!("limits.{key} must be at least 1"));
            }
        }
        if self.reads.budget_millis == 0 {
            return Err("reads.budget_millis must be at least 1".into());
        }
        Ok(self)
    }
}

/// The environment variable that overrides a partner's API key.
pub fn partner_key_var(partner: &str) -> String {
    format!(
        "COHORTD_PARTNER_KEY_{}",
        partner.to_ascii_uppercase().replace('-', "_")
    )
}

fn is_blank(secret: &str) -> bool {
    secret.trim().is_empty()
}

fn blank(setting: &str) -> String {
    format!(
        "{setting} is empty; set a non-empty secret, or remove the setting to have one \
         generated at first start"
    )
}

fn non_blank_env(var: &str, value: String) -> Result<String, String> {
    if is_blank(&value) {
        return Err(format!(
            "{var} is set but empty; set a non-empty secret, or unset it to use the one in \
             config.toml or have one generated at first start"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = r#"
[cluster]
node_id = "n1"
advertise_url = "http://127.0.0.1:8081"
nats_urls = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
shards = 8
replicas = 3
lease_ttl_millis = 3000
"#;

    #[test]
    fn no_cluster_section_is_a_single_node_and_one_parses_and_is_checked() {
        assert_eq!(Config::default().cluster, None);
        let c = Config::parse(&format!("{SHIPPED}{CLUSTER}")).expect("parses");
        let cl = c.cluster.clone().expect("cluster");
        assert_eq!((cl.node_id.as_str(), cl.shards, cl.replicas), ("n1", 8, 3));
        for (from, to, says) in [
            ("shards = 8", "shards = 0", "cluster.shards"),
            ("replicas = 3", "replicas = 7", "cluster.replicas"),
            ("\"n1\"", "\"n 1\"", "cluster.node_id"),
            (
                "lease_ttl_millis = 3000",
                "lease_ttl_millis = 10",
                "lease_ttl_millis",
            ),
            ("\"nats://127.0.0.1:4223\"", "\"http://x:1\"", "nats_urls"),
            ("http://127.0.0.1:8081", "ftp://x", "advertise_url"),
        ] {
            let text = format!("{SHIPPED}{}", CLUSTER.replace(from, to));
            let e = Config::parse(&text).expect_err(to);
            assert!(e.contains(says), "{to}: {e}");
        }
        let mut env = c.clone();
        env.apply_env(|k| match k {
            "COHORTD_NODE_ID" => Some("n2".into()),
            "COHORTD_NATS_URLS" => Some("nats://a:1, nats://b:2".into()),
            _ => None,
        })
        .expect("overrides");
        let cl = env.cluster.expect("cluster");
        assert_eq!(cl.node_id, "n2");
        assert_eq!(cl.nats_urls, ["nats://a:1", "nats://b:2"]);
        let e = Config::default()
            .apply_env(|k| (k == "COHORTD_NODE_ID").then(|| "n1".into()))
            .expect_err("no section");
        assert!(e.contains("no [cluster] section"), "{e}");
    }

    #[test]
    fn the_shipped_file_is_the_default_and_names_the_partners() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.max_body_bytes, 8 * 1024 * 1024);
        assert_eq!(c.snapshot.retain, 5);
        assert_eq!(c.wal.fsync, Fsync::Always);
        assert_eq!(c.rate_limit.requests, 250_000);
        assert_eq!(c.limits.array_items, 1000);
        assert_eq!(c.limits.string_bytes, 4096);
        assert_eq!(c.limits.partner_change_objects, 10_000);
        assert_eq!(c.reads.budget_millis, 5000);
        assert_eq!(c.reads.per_workspace_threads, 0);
        for p in [
            "hightouch",
            "segment",
            "heap",
            "kubit",
            "amplitude",
            "mixpanel",
            "census",
        ] {
            assert!(c.partners.contains_key(p), "{p}");
        }
        assert_eq!(
            Config::load(Path::new("definitely/not/here.toml")).unwrap(),
            c
        );
    }

    #[test]
    fn limits_and_reads_may_be_left_out_but_not_given_in_part() {
        let without = SHIPPED.split("\n[limits]").next().unwrap().to_string()
            + "\n[metrics]\nrequire_admin_token = false\n[partners.segment]\n";
        let c = Config::parse(&without).unwrap();
        assert_eq!(c.limits, Config::default().limits);
        assert_eq!(c.reads, Config::default().reads);
        let partial = without + "[limits]\narray_items = 7\n";
        assert!(Config::parse(&partial)
            .unwrap_err()
            .contains("attributes_per_profile"));
        let zero = SHIPPED.replace("array_items = 1000", "array_items = 0");
        assert!(Config::parse(&zero)
            .unwrap_err()
            .contains("limits.array_items"));
    }

    #[test]
    fn a_reads_section_without_the_workspace_share_is_automatic() {
        let old = SHIPPED.replace("per_workspace_threads = 0\n", "");
        assert_ne!(old, SHIPPED);
        assert_eq!(Config::parse(&old).unwrap().reads, Config::default().reads);
        let share = |threads, per_workspace_threads| {
            ReadsConfig {
                threads,
                per_workspace_threads,
                queue_wait_millis: 1,
                budget_millis: 1,
            }
            .workspace_share()
        };
        // (threads, per_workspace_threads) → share
        for (t, p, want) in [
            (1, 0, 1),
            (2, 0, 1),
            (3, 0, 1),
            (4, 0, 2),
            (8, 0, 4),
            (4, 3, 3),
            (2, 5, 2),
            (1, 1, 1),
        ] {
            assert_eq!(share(t, p), want, "threads {t}, per_workspace_threads {p}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = format!("{SHIPPED}\nlisten_port = 3\n");
        assert!(Config::parse(&text).unwrap_err().contains("listen_port"));
    }

    #[test]
    fn environment_overrides_secrets_and_addresses() {
        let mut c = Config::default();
        let env = |k: &str| match k {
            "COHORTD_LISTEN" => Some("127.0.0.1:9999".to_string()),
            "COHORTD_ADMIN_TOKEN" => Some("adm".to_string()),
            "COHORTD_PARTNER_KEY_SEGMENT" => Some("seg-key".to_string()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.admin_token.as_deref(), Some("adm"));
        assert_eq!(c.partners["segment"].api_key.as_deref(), Some("seg-key"));
        assert_eq!(c.partners["heap"].api_key, None);
    }

    #[test]
    fn empty_or_blank_secrets_are_refused_naming_the_setting() {
        for (var, value) in [
            ("COHORTD_ADMIN_TOKEN", ""),
            ("COHORTD_ADMIN_TOKEN", " \t"),
            ("COHORTD_PARTNER_KEY_SEGMENT", ""),
            ("COHORTD_PARTNER_KEY_HEAP", "   "),
        ] {
            let mut c = Config::default();
            let e = c
                .apply_env(|k| (k == var).then(|| value.to_string()))
                .expect_err(var);
            assert!(e.starts_with(&format!("{var} is set but empty")), "{e}");
        }
        let text = SHIPPED.replace("http_workers = 0", "http_workers = 0\nadmin_token = \" \"");
        let e = Config::parse(&text).unwrap_err();
        assert!(e.starts_with("admin_token is empty"), "{e}");
        let text = SHIPPED.replace("[partners.kubit]", "[partners.kubit]\napi_key = \"\"");
        let e = Config::parse(&text).unwrap_err();
        assert!(e.starts_with("[partners.kubit] api_key is empty"), "{e}");

        let mut c = Config::default();
        c.partners.get_mut("census").unwrap().api_key = Some("\n".into());
        let e = c.check_secrets().unwrap_err();
        assert!(e.contains("partners.census.api_key") && e.contains("COHORTD_PARTNER_KEY_CENSUS"));
        c.partners.get_mut("census").unwrap().api_key = Some("k".into());
        assert_eq!(c.check_secrets(), Ok(()));
    }
}
