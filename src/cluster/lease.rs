//! Shard leases: who may append to a shard's stream, decided through the
//! `COHORTD_LEASES` key-value bucket by compare-and-set on the revision.
//!
//! Key `shard-<n>` holds the leader's [`Holder`] (node id, the URL writes
//! are forwarded to, and a term that goes up by one at each takeover).
//! Every node runs [`Lease::step`] for each shard about three times per
//! TTL:
//!
//! - **Vacant** (no key): `create` it; of several nodes trying at once,
//!   exactly one succeeds (the others see the key exists). A released key
//!   (it names nobody, and keeps its term) is taken by CAS on its
//!   revision, with the term plus one.
//! - **Held by us:** renew with `update(key, us, revision)`. A refusal
//!   (the revision moved) means another node took it: we are deposed.
//! - **Held by another:** note its revision and when we first saw it.
//!   Once that revision has not moved for the TTL, the holder stopped
//!   renewing (crashed, paused, cut off): take over with
//!   `update(key, us with term + 1, that revision)`. If two nodes try, the
//!   CAS lets one through.
//!
//! Expiry is by observation on the taker's own clock, so clock skew
//! between nodes plays no part. A holder also stops counting itself
//! leader once its last renewal is older than the TTL
//! ([`Lease::is_leader`]), before anyone could take over: a taker waits
//! the whole TTL from its *first* sight of the revision, which came after
//! the holder's renewal. What a paused holder cannot know when it wakes,
//! the stream tells it: its appends carry the last sequence it knows, and
//! the new leader's appends have moved it (`super::log`).

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{other, Error, Result};

/// What a lease key holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Empty once released: nobody holds it.
    pub node_id: String,
    /// Where the holder takes forwarded writes.
    pub url: String,
    /// Goes up by one at each takeover (1 for the first holder), released
    /// or not.
    pub term: u64,
}

impl Holder {
    /// Released: the key names nobody.
    pub fn is_vacant(&self) -> bool {
        self.node_id.is_empty()
    }
}

/// What one step found, and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// We hold the lease (just taken or renewed).
    Leader { term: u64 },
    /// Another node holds it.
    Follower { holder: Holder },
    /// We held it and another node took it over.
    Deposed { holder: Option<Holder> },
    /// Nobody holds it (released between two reads): the next step takes it.
    Vacant,
}

/// One node's view of one shard's lease.
pub struct Lease {
    store: kv::Store,
    key: String,
    me: Holder,
    ttl: Duration,
    /// Our revision of the key and when we wrote it, while we hold it.
    held: Option<(u64, Instant)>,
    /// Another holder's revision and when we first saw it.
    watching: Option<(u64, Instant)>,
}

impl Lease {
    pub fn new(store: kv::Store, shard: u32, node_id: &str, url: &str, ttl: Duration) -> Lease {
        Lease {
            store,
            key: format!("shard-{shard}"),
            me: Holder {
                node_id: node_id.to_string(),
                url: url.to_string(),
                term: 0,
            },
            ttl,
            held: None,
            watching: None,
        }
    }

    /// Whether we hold the lease and renewed it less than a TTL ago.
    pub fn is_leader(&self) -> bool {
        self.held.is_some_and(|(_, at)| at.elapsed() < self.ttl)
    }

    /// Our term while we hold the lease.
    pub fn term(&self) -> Option<u64> {
        self.held.map(|_| self.me.term)
    }

    /// How often [`step`](Self::step) should run: a third of the TTL.
    pub fn interval(&self) -> Duration {
        self.ttl / 3
    }

    /// Takes, renews or watches the lease (module docs).
    pub async fn step(&mut self) -> Result<State> {
        self.step_with(true).await
    }

    /// [`step`](Self::step); with `take_vacant` false a vacant lease is
    /// left for another node (`leadership` spreads shards over nodes so).
    /// An expired one is always taken: a shard without a leader takes no
    /// writes.
    pub async fn step_with(&mut self, take_vacant: bool) -> Result<State> {
        if let Some((revision, _)) = self.held {
            let value = encode(&self.me)?;
            return match self.store.update(&self.key, value, revision).await {
                Ok(revision) => {
                    self.held = Some((revision, Instant::now()));
                    Ok(State::Leader { term: self.me.term })
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    self.held = None;
                    let holder = self.read().await?.map(|(h, _)| h);
                    Ok(State::Deposed { holder })
                }
                Err(e) => Err(unavailable("renew the lease", e)),
            };
        }
        match self.read().await? {
            None if !take_vacant => Ok(State::Vacant),
            Some((holder, _)) if holder.is_vacant() && !take_vacant => Ok(State::Vacant),
            // Released: taken as the next term, by CAS on the release.
            Some((holder, revision)) if holder.is_vacant() => {
                self.take_over(holder, revision).await
            }
            None => {
                self.me.term = 1;
                match self.store.create(&self.key, encode(&self.me)?).await {
                    Ok(revision) => {
                        self.held = Some((revision, Instant::now()));
                        Ok(State::Leader { term: 1 })
                    }
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                        let holder = self.read().await?.map(|(h, _)| h);
                        Ok(self.follow(holder))
                    }
                    Err(e) => Err(unavailable("take the lease", e)),
                }
            }
            Some((holder, revision)) if holder.node_id == self.me.node_id => {
                // Ours from before a restart (or a renewal we did not hear
                // back from): take it again as a new term, by CAS.
                self.take_over(holder, revision).await
            }
            Some((holder, revision)) => {
                let now = Instant::now();
                let first_seen = match self.watching {
                    Some((r, at)) if r == revision => at,
                    _ => {
                        self.watching = Some((revision, now));
                        now
                    }
                };
                if now.duration_since(first_seen) < self.ttl {
                    return Ok(State::Follower { holder });
                }
                self.take_over(holder, revision).await
            }
        }
    }

    /// Gives the lease up (a clean shutdown, or a node leading more than
    /// its share), so another node need not wait out the TTL. Only if we
    /// still hold it. The key then names nobody but keeps the term, so
    /// terms only go up.
    pub async fn release(&mut self) -> Result<()> {
        if let Some((revision, _)) = self.held.take() {
            let vacant = Holder {
                node_id: String::new(),
                url: String::new(),
                term: self.me.term,
            };
            self.store
                .update(&self.key, encode(&vacant)?, revision)
                .await
                .map_err(|e| other("release the lease", e))?;
        }
        Ok(())
    }

    async fn take_over(&mut self, holder: Holder, revision: u64) -> Result<State> {
        self.me.term = holder.term + 1;
        match self
            .store
            .update(&self.key, encode(&self.me)?, revision)
            .await
        {
            Ok(revision) => {
                self.held = Some((revision, Instant::now()));
                self.watching = None;
                Ok(State::Leader { term: self.me.term })
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                let holder = self.read().await?.map(|(h, _)| h);
                Ok(self.follow(holder))
            }
            Err(e) => Err(unavailable("take the lease over", e)),
        }
    }

    fn follow(&mut self, holder: Option<Holder>) -> State {
        match holder {
            Some(holder) if !holder.is_vacant() => State::Follower { holder },
            _ => State::Vacant,
        }
    }

    /// The key's holder and revision; `None` if vacant (never written,
    /// released, or deleted).
    async fn read(&self) -> Result<Option<(Holder, u64)>> {
        let entry = self
            .store
            .entry(&self.key)
            .await
            .map_err(|e| unavailable("read the lease", e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                let holder: Holder = serde_json::from_slice(&e.value)
                    .map_err(|err| other(&format!("lease {} is unreadable", self.key), err))?;
                Ok(Some((holder, e.revision)))
            }
            _ => Ok(None),
        }
    }
}

fn encode(h: &Holder) -> Result<Bytes> {
    serde_json::to_vec(h)
        .map(Bytes::from)
        .map_err(|e| other("encode a lease", e))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("{what}: {e}"))
}
