//! Which shards this node leads: one task stepping every shard's lease
//! (`lease`) a third of a TTL apart, and each shard's role published on a
//! watch channel, which is what the engine follows to change sides
//! (docs/cluster.md, plan step 3).
//!
//! A role is only as good as the last renewal: when JetStream does not
//! answer, a leader stays [`Role::Leader`] while its last renewal is less
//! than a TTL old (`Lease::is_leader`) and becomes [`Role::Unknown`] after
//! that, before any other node can have taken over.
//!
//! **Spreading shards over nodes.** Each node announces itself in the
//! lease bucket (`node-<id>`, put at every step) and counts the nodes
//! whose announcement moved within a TTL. Its share is the shard count
//! over the live nodes, rounded up. It takes a vacant shard only while it
//! leads fewer than its share (or once the shard stayed vacant a whole
//! TTL, so that nodes whose counts disagree never leave one unled), and
//! when it leads more (a node joined), it releases one shard per step,
//! which a node under its share takes at its next step: the shard is
//! without a leader for at most about one step. A node that stops
//! announcing itself (a crash) is no longer counted after a TTL, and its
//! leases are taken over as they expire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::jet::Jet;
use super::lease::{Holder, Lease, State};
use super::{Error, Result};

/// A shard's role on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not known yet, or no longer (no answer from JetStream for a TTL).
    Unknown,
    /// This node holds the lease, in this term.
    Leader { term: u64 },
    /// Another node holds it.
    Follower { holder: Holder },
}

/// This node's leases, stepped on a task of its own.
pub struct Leadership {
    roles: Vec<watch::Receiver<Role>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Starts stepping the leases of `shards` shards as node `node_id`
    /// (forwarded writes go to `url`).
    pub async fn start(
        jet: &Jet,
        shards: u32,
        node_id: &str,
        url: &str,
        ttl: Duration,
    ) -> Result<Leadership> {
        let store = jet.leases().await?;
        let mut leases = Vec::new();
        let mut senders = Vec::new();
        let mut roles = Vec::new();
        for shard in 0..shards {
            leases.push(Lease::new(store.clone(), shard, node_id, url, ttl));
            let (tx, rx) = watch::channel(Role::Unknown);
            senders.push(tx);
            roles.push(rx);
        }
        let members = Members {
            store,
            me: node_id.to_string(),
            key: format!("{NODE_PREFIX}{node_id}"),
            value: Bytes::from(format!("{{\"node_id\":{node_id:?},\"url\":{url:?}}}")),
            ttl,
            seen: HashMap::new(),
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(leases, members, senders, stopped, ttl / 3, ttl));
        Ok(Leadership { roles, stop, task })
    }

    /// Shard `shard`'s role now.
    pub fn role(&self, shard: u32) -> Role {
        self.roles[shard as usize].borrow().clone()
    }

    /// Shard `shard`'s role, as it changes.
    pub fn watch(&self, shard: u32) -> watch::Receiver<Role> {
        self.roles[shard as usize].clone()
    }

    /// Stops stepping and gives up the leases held (a clean shutdown: the
    /// other nodes need not wait out the TTL).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

/// Dropped without [`Leadership::stop`] (a crash, as far as the other
/// nodes can tell): stepping stops and nothing is released; the leases
/// held expire by their TTL.
impl Drop for Leadership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The other nodes, as this one sees them: each node puts its key
/// (`node-<id>`) at every step, and a node is live while its key's
/// revision moved within the TTL (observed on our clock, as leases are).
struct Members {
    store: kv::Store,
    me: String,
    key: String,
    value: Bytes,
    ttl: Duration,
    seen: HashMap<String, (u64, Instant)>,
}

impl Members {
    /// Puts our key and counts the live nodes (us included).
    async fn step(&mut self) -> Result<usize> {
        self.store
            .put(&self.key, self.value.clone())
            .await
            .map_err(|e| Error::Unavailable(format!("announce node {}: {e}", self.me)))?;
        let mut keys = self
            .store
            .keys()
            .await
            .map_err(|e| Error::Unavailable(format!("list nodes: {e}")))?;
        let mut live = 1;
        let now = Instant::now();
        let mut present = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| Error::Unavailable(format!("list nodes: {e}")))?;
            if !key.starts_with(NODE_PREFIX) || key == self.key {
                continue;
            }
            let Some(entry) = self
                .store
                .entry(&key)
                .await
                .map_err(|e| Error::Unavailable(format!("read {key}: {e}")))?
            else {
                continue;
            };
            let since = match self.seen.get(&key) {
                Some((revision, at)) if *revision == entry.revision => *at,
                _ => now,
            };
            self.seen.insert(key.clone(), (entry.revision, since));
            if now.duration_since(since) < self.ttl {
                live += 1;
            }
            present.push(key);
        }
        self.seen.retain(|k, _| present.contains(k));
        Ok(live)
    }
}

/// Keys of the node announcements, beside the shard leases.
const NODE_PREFIX: &str = "node-";

async fn run(
    mut leases: Vec<Lease>,
    mut members: Members,
    roles: Vec<watch::Sender<Role>>,
    mut stopped: watch::Receiver<bool>,
    interval: Duration,
    ttl: Duration,
) {
    let shards = leases.len();
    let mut vacant_since: Vec<Option<Instant>> = vec![None; shards];
    let mut live = 1;
    loop {
        match members.step().await {
            Ok(n) => live = n,
            Err(e) => tracing::warn!(error = %e, "cannot count the cluster's nodes"),
        }
        // Our share: every shard led, as evenly as the nodes allow.
        let share = shards.div_ceil(live.max(1));
        let mut led = roles
            .iter()
            .filter(|r| matches!(*r.borrow(), Role::Leader { .. }))
            .count();
        for (i, (lease, role)) in leases.iter_mut().zip(&roles).enumerate() {
            let was_leader = matches!(*role.borrow(), Role::Leader { .. });
            // A vacant shard is left to a node under its share, unless it
            // stayed vacant a whole TTL (the nodes' counts disagree).
            let long_vacant = vacant_since[i].is_some_and(|t| t.elapsed() >= ttl);
            let take = led < share || long_vacant;
            let now = match lease.step_with(take).await {
                Ok(State::Leader { term }) => Role::Leader { term },
                Ok(State::Follower { holder }) => Role::Follower { holder },
                Ok(State::Deposed {
                    holder: Some(holder),
                }) => Role::Follower { holder },
                Ok(State::Deposed { holder: None } | State::Vacant) => Role::Unknown,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot step a shard lease");
                    match lease.term() {
                        Some(term) if lease.is_leader() => Role::Leader { term },
                        _ => Role::Unknown,
                    }
                }
            };
            let is_leader = matches!(now, Role::Leader { .. });
            led = led + usize::from(is_leader) - usize::from(was_leader);
            vacant_since[i] = match (&now, vacant_since[i]) {
                (Role::Unknown, None) => Some(Instant::now()),
                (Role::Unknown, since) => since,
                _ => None,
            };
            publish(role, now);
        }
        // Over our share (another node joined): hand one shard over per
        // step, the highest we lead; a node under its share takes it.
        if led > share {
            if let Some((lease, role)) = leases
                .iter_mut()
                .zip(&roles)
                .rev()
                .find(|(_, r)| matches!(*r.borrow(), Role::Leader { .. }))
            {
                publish(role, Role::Unknown);
                if let Err(e) = lease.release().await {
                    tracing::warn!(error = %e, "cannot hand a shard over; it stays led here");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => break,
        }
    }
    for (lease, role) in leases.iter_mut().zip(&roles) {
        publish(role, Role::Unknown);
        if let Err(e) = lease.release().await {
            tracing::warn!(error = %e, "cannot release a shard lease; it expires by its TTL");
        }
    }
    let _ = members.store.delete(&members.key).await;
}

/// Sets a shard's role, waking watchers only on a change.
fn publish(role: &watch::Sender<Role>, now: Role) {
    role.send_if_modified(|r| {
        let changed = *r != now;
        *r = now;
        changed
    });
}
