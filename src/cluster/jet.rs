//! The connection to the NATS servers and the JetStream assets cohortd
//! keeps there: one stream per shard, the lease bucket and the snapshot
//! object store, created on first use with `cluster.replicas` replicas
//! (and left as they are when they exist).
//!
//! Everything here is for a 2.9 server (Debian's `nats-server`): the
//! client is built without the `server_2_10`+ features, and no asset uses
//! anything newer (no compression, no subject transforms, one filter
//! subject per consumer).

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use super::{other, Error, Result};
use crate::config::ClusterConfig;

/// How long one JetStream request may take before it counts as
/// unavailable (a publish ack, a key-value update, a stream lookup).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The lease bucket.
pub const LEASES: &str = "COHORTD_LEASES";
/// The snapshot object store.
pub const SNAPSHOTS: &str = "COHORTD_SNAPSHOTS";

/// The connectors' progress bucket.
pub const CONNECTORS: &str = "COHORTD_CONNECTORS";

/// Shard `n`'s stream.
pub fn stream_name(shard: u32) -> String {
    format!("COHORTD_SHARD_{shard}")
}

/// The subject shard `n`'s stream takes.
pub fn subject(shard: u32) -> String {
    format!("cohortd.shard.{shard}")
}

/// A connection to the cluster's NATS servers, with its JetStream context.
#[derive(Clone)]
pub struct Jet {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    /// This node's id (`cluster.node_id`).
    pub node_id: String,
    replicas: usize,
}

impl Jet {
    /// Connects to any of `cfg.nats_urls` (the client moves to another on
    /// its own when one goes away). Waits up to `patience` for a server to
    /// answer.
    pub async fn connect(cfg: &ClusterConfig, patience: Duration) -> Result<Jet> {
        let options = async_nats::ConnectOptions::new()
            .name(format!("cohortd-{}", cfg.node_id))
            .connection_timeout(patience)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .retry_on_initial_connect();
        let connect = async_nats::connect_with_options(cfg.nats_urls.clone(), options);
        let client = tokio::time::timeout(patience, connect)
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "no NATS server of {:?} answered within {patience:?}",
                    cfg.nats_urls
                ))
            })?
            .map_err(|e| Error::Unavailable(format!("connecting to NATS: {e}")))?;
        let js = jetstream::context::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        Ok(Jet {
            client,
            js,
            node_id: cfg.node_id.clone(),
            replicas: cfg.replicas,
        })
    }

    /// Replicas of each stream, bucket and object store.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// Shard `shard`'s stream, created if it does not exist.
    pub async fn shard_stream(&self, shard: u32) -> Result<stream::Stream> {
        self.js
            .get_or_create_stream(stream::Config {
                name: stream_name(shard),
                subjects: vec![subject(shard)],
                storage: stream::StorageType::File,
                num_replicas: self.replicas,
                // Trimmed by cohortd (to the second-newest snapshot), never
                // by age or count.
                retention: stream::RetentionPolicy::Limits,
                discard: stream::DiscardPolicy::Old,
                // A retried publish with the same id is stored once.
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Unavailable(format!("stream {}: {e}", stream_name(shard))))
    }

    /// The lease bucket, created if it does not exist.
    pub async fn leases(&self) -> Result<kv::Store> {
        self.bucket(LEASES, "cohortd shard leases (one key per shard)")
            .await
    }

    /// The connectors' progress bucket (`connector::shared`), created if
    /// it does not exist.
    pub async fn connectors(&self) -> Result<kv::Store> {
        self.bucket(CONNECTORS, "cohortd connectors' delivery progress")
            .await
    }

    /// A key-value bucket keeping each key's last value, created if it
    /// does not exist.
    async fn bucket(&self, name: &str, description: &str) -> Result<kv::Store> {
        match self.js.get_key_value(name).await {
            Ok(store) => return Ok(store),
            Err(e) if e.kind() == jetstream::context::KeyValueErrorKind::GetBucket => {}
            Err(e) => return Err(Error::Unavailable(format!("bucket {name}: {e}"))),
        }
        // The bucket's stream, made as `create_key_value` makes it: that
        // call first reads the account's info, whose 2.9 form lacks fields
        // this client requires (`reserved_memory`), and so fails there.
        self.js
            .get_or_create_stream(stream::Config {
                name: format!("KV_{name}"),
                description: Some(description.into()),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                storage: stream::StorageType::File,
                num_replicas: self.replicas,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Unavailable(format!("bucket {name}: {e}")))?;
        self.js
            .get_key_value(name)
            .await
            .map_err(|e| other(&format!("bucket {name}"), e))
    }
}
