//! Which shards this node leads: one task stepping every shard's lease
//! (`lease`) a third of a TTL apart, and each shard's role published on a
//! watch channel, which is what the engine follows to change sides
//! (docs/cluster.md, plan step 3).
//!
//! A role is only as good as the last renewal: when JetStream does not
//! answer, a leader stays [`Role::Leader`] while its last renewal is less
//! than a TTL old (`Lease::is_leader`) and becomes [`Role::Unknown`] after
//! that, before any other node can have taken over. Nothing here spreads
//! leadership over the nodes yet: the first node up takes every vacant
//! shard.

use std::time::Duration;

use tokio::sync::watch;

use super::jet::Jet;
use super::lease::{Holder, Lease, State};
use super::Result;

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
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(leases, senders, stopped, ttl / 3));
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

async fn run(
    mut leases: Vec<Lease>,
    roles: Vec<watch::Sender<Role>>,
    mut stopped: watch::Receiver<bool>,
    interval: Duration,
) {
    loop {
        for (lease, role) in leases.iter_mut().zip(&roles) {
            let now = match lease.step().await {
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
            role.send_if_modified(|r| {
                let changed = *r != now;
                *r = now;
                changed
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => break,
        }
    }
    for (lease, role) in leases.iter_mut().zip(&roles) {
        if let Err(e) = lease.release().await {
            tracing::warn!(error = %e, "cannot release a shard lease; it expires by its TTL");
        }
        role.send_replace(Role::Unknown);
    }
}
