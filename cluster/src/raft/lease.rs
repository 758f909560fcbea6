//! Node liveness leases.
//!
//! Leader side ([`LeaderLeases`]): when each node last heartbeated. A new controller leader gives
//! every unfenced node a fresh lease (it cannot know how long they have been silent); a fenced
//! node is only unfenced by a real heartbeat.
//!
//! Node side ([`NodeLease`]): when the last heartbeat reply arrived and whether it said fenced.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::state::NodeId;

/// The controller leader's view of node liveness.
#[derive(Debug, Default)]
pub(crate) struct LeaderLeases {
    /// The term this node leads in and when that leadership started.
    leading: Option<(u64, Instant)>,
    heard: HashMap<NodeId, Instant>,
    /// When preferred leaders were last checked (reset by a new leadership).
    last_preferred: Option<Instant>,
    /// The last controller leader this node heartbeated while following.
    observed_leader: Option<NodeId>,
    /// The previous leader, when this node took over from it: an election happened because
    /// it went silent, so it gets only a short grace instead of a full fresh lease.
    suspect: Option<NodeId>,
}

impl LeaderLeases {
    /// Records that this node leads in `term`; a new term restarts every lease at `now`.
    pub(crate) fn leading(&mut self, term: u64, now: Instant) {
        if self.leading.map(|(t, _)| t) != Some(term) {
            self.leading = Some((term, now));
            self.last_preferred = Some(now);
            self.suspect = self.observed_leader.take();
        }
    }

    /// Whether the preferred-leader check is due (every `interval` while leading).
    pub(crate) fn preferred_due(&mut self, now: Instant, interval: Duration) -> bool {
        match self.last_preferred {
            Some(t) if now.saturating_duration_since(t) < interval => false,
            _ => {
                self.last_preferred = Some(now);
                true
            }
        }
    }

    /// Records the controller leader this node follows (heartbeats go to it).
    pub(crate) fn observe_leader(&mut self, leader: NodeId) {
        self.observed_leader = Some(leader);
    }

    /// Forgets the leadership (this node is a follower now).
    pub(crate) fn not_leading(&mut self) {
        self.leading = None;
    }

    /// A heartbeat from `node`.
    pub(crate) fn heard(&mut self, node: NodeId, now: Instant) {
        self.heard.insert(node, now);
    }

    /// Whether `node` (currently `fenced` or not) holds a lease at `now`.
    pub(crate) fn alive(
        &self,
        node: NodeId,
        fenced: bool,
        now: Instant,
        timeout: Duration,
    ) -> bool {
        let heard = self.heard.get(&node).copied();
        let since = if fenced {
            heard
        } else {
            let start = self.leading.map(|(_, at)| {
                // The leader we replaced has a quarter of a lease to show up.
                if self.suspect == Some(node) && heard.is_none_or(|h| h < at) {
                    at.checked_sub(timeout - timeout / 4).unwrap_or(at)
                } else {
                    at
                }
            });
            match (heard, start) {
                (Some(h), Some(l)) => Some(h.max(l)),
                (h, l) => h.or(l),
            }
        };
        since.is_some_and(|t| now.saturating_duration_since(t) < timeout)
    }
}

/// This node's own lease, as renewed by heartbeat replies.
#[derive(Debug, Default)]
pub(crate) struct NodeLease {
    last_ack: Option<Instant>,
    fenced: bool,
}

impl NodeLease {
    /// A heartbeat reply for a heartbeat sent at `sent` (never moves the lease backwards: a
    /// late reply to an older heartbeat must not shorten a lease a newer one renewed).
    pub(crate) fn ack(&mut self, sent: Instant, fenced: bool) {
        self.last_ack = Some(self.last_ack.map_or(sent, |t| t.max(sent)));
        self.fenced = fenced;
    }

    pub(crate) fn valid(&self, now: Instant, timeout: Duration) -> bool {
        self.expires_at(timeout).is_some_and(|e| now < e)
    }

    /// When the lease runs out (`None` while fenced or never acknowledged).
    pub(crate) fn expires_at(&self, timeout: Duration) -> Option<Instant> {
        if self.fenced {
            return None;
        }
        self.last_ack.map(|t| t + timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(2000);

    #[test]
    fn new_leadership_gives_unfenced_nodes_a_fresh_lease_only() {
        let t0 = Instant::now();
        let mut l = LeaderLeases::default();
        assert!(!l.alive(2, false, t0, T));
        l.leading(1, t0);
        assert!(l.alive(2, false, t0 + Duration::from_millis(1999), T));
        assert!(!l.alive(2, false, t0 + T, T));
        assert!(
            !l.alive(2, true, t0, T),
            "a fenced node needs a real heartbeat"
        );
        // The same term again does not renew.
        l.leading(1, t0 + T);
        assert!(!l.alive(2, false, t0 + T, T));
        // A new term does.
        l.leading(2, t0 + T);
        assert!(l.alive(2, false, t0 + T, T));
        l.heard(3, t0 + T);
        assert!(l.alive(3, true, t0 + T + Duration::from_millis(10), T));
        assert!(!l.alive(3, true, t0 + T + T, T));
        l.not_leading();
        assert!(!l.alive(2, false, t0 + T, T));
    }

    #[test]
    fn the_replaced_leader_gets_only_a_short_grace() {
        let t0 = Instant::now() + T;
        let mut l = LeaderLeases::default();
        l.observe_leader(1);
        l.leading(5, t0);
        let grace = T / 4;
        assert!(l.alive(1, false, t0 + grace - Duration::from_millis(1), T));
        assert!(
            !l.alive(1, false, t0 + grace, T),
            "the old leader is fenced early"
        );
        assert!(l.alive(2, false, t0 + grace, T), "others keep a full lease");
        // A heartbeat from the old leader after the takeover gives it a normal lease.
        l.heard(1, t0 + Duration::from_millis(100));
        assert!(l.alive(1, false, t0 + T, T));
    }

    #[test]
    fn node_lease_expires_and_respects_fencing() {
        let t0 = Instant::now();
        let mut n = NodeLease::default();
        assert!(!n.valid(t0, T));
        n.ack(t0, false);
        assert!(n.valid(t0 + Duration::from_millis(100), T));
        assert!(!n.valid(t0 + T, T));
        assert_eq!(n.expires_at(T), Some(t0 + T));
        n.ack(t0, true);
        assert!(!n.valid(t0, T));
        assert_eq!(n.expires_at(T), None);
    }
}
