//! What clients can make the node hold, and for how long.
//!
//! ```text
//!  accept ─▶ ConnectionLimits::admit (connections_max, connections_per_ip_max)
//!  connection loop, one request at a time:
//!    wait ≤ connections_max_idle_ms for a frame's first byte
//!    read the body ≤ request_read_timeout_ms from the first byte; the buffer grows as bytes
//!      arrive, and each growth is reserved from the MemoryBudget first (waiting if need be)
//!    decode; Fetch: MemoryBudget::grant_up_to its response size, without waiting, and the
//!      fetch's max_bytes shrinks to the grant
//!    handle, encode, write ≤ response_write_timeout_ms
//!    release the reservation ── only now is the next request read
//! ```
//! `inflight_bytes_max` is the node-wide budget for request frames being read or handled and
//! responses being written (like Kafka's `queued.max.request.bytes`, which covers requests
//! only: Kafka sends fetch data with `sendfile`). Rivulet sends fetched records with `sendfile`
//! too (`server::outgoing`), so a fetch response holds only its framing in memory; its
//! reservation still covers the records' size, which keeps the budget's bound on what slow
//! consumers hold (open segment files, bytes owed) as it was.
//!
//! Two choices keep misbehaving clients from locking others out:
//! - Frames reserve what has arrived, not what their header announces: a slowloris client that
//!   announces 100 MiB and sends 10 bytes holds 64 KiB until `request_read_timeout_ms`. The
//!   price: if partial frames ever held the whole budget, they would all wait until their read
//!   timeouts closed them (Kafka reserves whole frames to avoid that, and is open to slowloris
//!   instead); the budget is sized well above `request_bytes_max` so that needs many
//!   concurrent maximum-size requests.
//! - Fetch responses never wait and never take the budget's last quarter: a fetch gets what is
//!   free (its `max_bytes` shrinks to the grant), so consumers that never read their responses
//!   slow other consumers down to one batch per fetch (Kafka's progress rule) but cannot stop
//!   produce or metadata requests. Beyond the budget the node may hold one record batch per
//!   such fetch.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::RequestKind;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Per-connection limits and the node's memory budget, shared by every connection.
#[derive(Debug)]
pub struct ServerLimits {
    /// Request and response bytes held by connections (`inflight_bytes_max`).
    pub budget: MemoryBudget,
    /// Longest wait for the first byte of a request (`connections_max_idle_ms`).
    pub idle_timeout: Duration,
    /// Longest time from a request's first byte to its last (`request_read_timeout_ms`).
    pub read_timeout: Duration,
    /// Longest time a response may take to be written (`response_write_timeout_ms`).
    pub response_write_timeout: Duration,
}

/// Permits are KiB, so a 32-bit permit count covers any budget.
const PERMIT_BYTES: usize = 1024;

/// The node-wide budget for request and response bytes held by connections.
#[derive(Debug)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    kib_max: u32,
}

/// Bytes reserved from a [`MemoryBudget`]; dropping it returns them.
#[derive(Debug)]
pub struct Reservation {
    permit: OwnedSemaphorePermit,
}

impl Reservation {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> usize {
        self.permit.num_permits() * PERMIT_BYTES
    }
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(PERMIT_BYTES)).unwrap_or(u32::MAX)
}

impl MemoryBudget {
    /// A budget of `bytes_max` bytes.
    pub fn new(bytes_max: usize) -> Self {
        let kib_max = kib(bytes_max).clamp(1, u32::MAX >> 3);
        Self {
            permits: Arc::new(Semaphore::new(kib_max as usize)),
            kib_max,
        }
    }

    /// Waits until `bytes` can be reserved (first come, first served). A request larger than
    /// the whole budget reserves all of it, so it can still run when it is alone.
    pub async fn acquire(&self, bytes: usize) -> Reservation {
        let n = kib(bytes).clamp(1, self.kib_max);
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(n)
            .await
            .unwrap_or_else(|_| unreachable!("the budget's semaphore is never closed"));
        Reservation { permit }
    }

    /// Adds `bytes` to `reservation` (waiting, like [`MemoryBudget::acquire`]), capped so that
    /// the reservation never exceeds the whole budget.
    pub async fn grow(&self, reservation: &mut Reservation, bytes: usize) {
        let held = u32::try_from(reservation.permit.num_permits()).unwrap_or(u32::MAX);
        let n = kib(bytes).min(self.kib_max.saturating_sub(held));
        if n == 0 {
            return;
        }
        let more = self
            .permits
            .clone()
            .acquire_many_owned(n)
            .await
            .unwrap_or_else(|_| unreachable!("the budget's semaphore is never closed"));
        reservation.permit.merge(more);
    }

    /// Adds up to `bytes` to `reservation` without waiting, leaving the budget's last quarter
    /// free for request frames; returns the bytes granted (a multiple of 1 KiB, maybe 0).
    pub fn grant_up_to(&self, reservation: &mut Reservation, bytes: usize) -> usize {
        let reserve = (self.kib_max / 4) as usize;
        for _ in 0..4 {
            let free = self.permits.available_permits().saturating_sub(reserve);
            let n = u32::try_from(free).unwrap_or(u32::MAX).min(kib(bytes));
            if n == 0 {
                return 0;
            }
            // Another connection may take permits between the count and the acquire; retry
            // with the new count rather than wait.
            if let Ok(more) = self.permits.clone().try_acquire_many_owned(n) {
                reservation.permit.merge(more);
                return n as usize * PERMIT_BYTES;
            }
        }
        0
    }

    /// Adds `bytes` to `reservation` if they are free now; for memory that already exists (a
    /// response larger than estimated), where waiting would only hold it longer.
    pub fn try_grow(&self, reservation: &mut Reservation, bytes: usize) -> bool {
        let held = u32::try_from(reservation.permit.num_permits()).unwrap_or(u32::MAX);
        let n = kib(bytes).min(self.kib_max.saturating_sub(held));
        if n == 0 {
            return true;
        }
        match self.permits.clone().try_acquire_many_owned(n) {
            Ok(more) => {
                reservation.permit.merge(more);
                true
            }
            Err(_) => false,
        }
    }

    /// Bytes currently free (for tests and logs).
    pub fn available_bytes(&self) -> usize {
        self.permits.available_permits() * PERMIT_BYTES
    }
}

/// The most bytes the response to `request` may take beyond its frame, reserved before the
/// handler reads anything. Only Fetch responses carry data of unbounded size; every other
/// response is small and covered by the reservation of its request frame and a response true-up.
pub fn response_estimate_bytes(request: &RequestKind, fetch_response_max: usize) -> usize {
    match request {
        RequestKind::Fetch(f) => {
            let partitions: usize = f
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| usize::try_from(p.partition_max_bytes).unwrap_or(0))
                .fold(0usize, usize::saturating_add);
            let max = usize::try_from(f.max_bytes).unwrap_or(0);
            partitions.min(max).min(fetch_response_max)
        }
        _ => 0,
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `connections_max` connections are open.
    #[error("connections_max ({0}) connections are open")]
    NodeFull(usize),
    /// `connections_per_ip_max` connections from this address are open.
    #[error("connections_per_ip_max ({0}) connections from this address are open")]
    AddressFull(usize),
}

/// Connection counts, node-wide and per client address.
#[derive(Debug)]
pub struct ConnectionLimits {
    connections_max: usize,
    per_ip_max: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// An admitted connection's place in the counts; dropping it frees the place.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl ConnectionLimits {
    /// Limits of `connections_max` connections, at most `per_ip_max` from one address.
    pub fn new(connections_max: usize, per_ip_max: usize) -> Arc<Self> {
        Arc::new(Self {
            connections_max,
            per_ip_max,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Counts a new connection from `ip`, or says which limit refuses it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refused> {
        let mut open = self.open.lock();
        if open.0 >= self.connections_max {
            return Err(Refused::NodeFull(self.connections_max));
        }
        let from_ip = open.1.entry(ip).or_insert(0);
        if *from_ip >= self.per_ip_max {
            return Err(Refused::AddressFull(self.per_ip_max));
        }
        *from_ip += 1;
        open.0 += 1;
        Ok(ConnectionSlot {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock();
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_and_node_limits() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refused::AddressFull(2));
        let _b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Refused::NodeFull(3));
        drop(a1);
        assert!(
            limits.admit(a).is_ok(),
            "a closed connection frees its place"
        );
    }

    #[tokio::test]
    async fn budget_waits_and_caps() {
        let budget = Arc::new(MemoryBudget::new(10 * 1024));
        let mut r = budget.acquire(4 * 1024).await;
        budget.grow(&mut r, 4 * 1024).await;
        assert_eq!(r.bytes(), 8 * 1024);
        assert!(!budget.try_grow(&mut r, 4 * 1024) || r.bytes() <= 10 * 1024);
        // Larger than the whole budget: capped, so it waits for everything, not forever.
        let b2 = budget.clone();
        let waiter = tokio::spawn(async move { b2.acquire(1 << 30).await.bytes() });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(r);
        assert_eq!(waiter.await.unwrap(), 10 * 1024);
        assert_eq!(budget.available_bytes(), 10 * 1024);

        // Grants never wait and leave a quarter (2 KiB of 10) for frames.
        let budget = MemoryBudget::new(10 * 1024);
        let mut r = budget.acquire(1024).await;
        assert_eq!(budget.grant_up_to(&mut r, 100 * 1024), 7 * 1024);
        let mut r2 = budget.acquire(1024).await;
        assert_eq!(budget.grant_up_to(&mut r2, 100 * 1024), 0);
        assert_eq!(budget.available_bytes(), 1024);
    }
}
