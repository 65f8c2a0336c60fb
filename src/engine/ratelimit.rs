//! The partner rate limit: a fixed window per (workspace, partner), as Braze
//! documents it (a number of requests an hour, reset at the window's end).
//! Not persisted: a restart starts a fresh window.

use compact_str::CompactString;
use dashmap::DashMap;

use crate::model::WorkspaceId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateStatus {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Unix seconds when the window resets.
    pub reset: u64,
}

pub struct RateLimiter {
    limit: u64,
    window_secs: u64,
    windows: DashMap<(WorkspaceId, CompactString), (u64, u64)>,
}

impl RateLimiter {
    pub fn new(limit: u64, window_secs: u64) -> Self {
        RateLimiter {
            limit,
            window_secs: window_secs.max(1),
            windows: DashMap::new(),
        }
    }

    /// Counts one request at `now` (Unix seconds) and says whether it may run.
    pub fn hit(&self, ws: WorkspaceId, partner: &str, now: u64) -> RateStatus {
        self.take(ws, partner, now, true)
    }

    /// What [`hit`](Self::hit) would answer, without counting the request
    /// (a cluster node forwarding it: the node that applies it counts it).
    pub fn peek(&self, ws: WorkspaceId, partner: &str, now: u64) -> RateStatus {
        self.take(ws, partner, now, false)
    }

    fn take(&self, ws: WorkspaceId, partner: &str, now: u64, spend: bool) -> RateStatus {
        let start = now - now % self.window_secs;
        let mut w = self
            .windows
            .entry((ws, partner.into()))
            .or_insert((start, 0));
        if w.0 != start {
            *w = (start, 0);
        }
        let allowed = w.1 < self.limit;
        if allowed && spend {
            w.1 += 1;
        }
        RateStatus {
            allowed,
            limit: self.limit,
            remaining: self.limit - w.1,
            reset: start + self.window_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spends_then_refuses_then_resets() {
        let r = RateLimiter::new(2, 3600);
        let ws = WorkspaceId(1);
        let a = r.hit(ws, "segment", 7200);
        assert_eq!((a.allowed, a.remaining, a.reset), (true, 1, 10800));
        assert!(r.hit(ws, "segment", 7201).allowed);
        let c = r.hit(ws, "segment", 7202);
        assert_eq!((c.allowed, c.remaining), (false, 0));
        assert!(r.hit(ws, "heap", 7202).allowed, "per partner");
        assert!(
            r.hit(WorkspaceId(2), "segment", 7202).allowed,
            "per workspace"
        );
        assert!(r.hit(ws, "segment", 10800).allowed, "new window");
        let p = r.peek(ws, "segment", 10801);
        assert_eq!(
            (p.allowed, p.remaining),
            (true, 1),
            "peeking spends nothing"
        );
        assert_eq!(r.peek(ws, "segment", 10801).remaining, 1);
    }
}
