//! Circuit breakers: caps on open connections, concurrent requests, pending requests and retries
//! per cluster.
//!
//! Each cap is a counter raised by taking a permit and lowered when the permit is dropped, so a
//! request or connection that ends in any way (answer, error, cancellation, close) gives its slot
//! back.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The live counts the thresholds are checked against. Shared by every version of a cluster
/// (kept across `ClusterManager::update`), so permits taken before an update still count after it.
#[derive(Debug, Default)]
pub(crate) struct BreakerCounters {
    connections: AtomicU32,
    requests: AtomicU32,
    pending: AtomicU32,
    retries: AtomicU32,
    /// Connections opened with `max_connections` already reached (Envoy's
    /// `upstream_cx_overflow`).
    connection_overflows: AtomicU64,
}

impl BreakerCounters {
    fn counter(&self, threshold: BreakerThreshold) -> &AtomicU32 {
        match threshold {
            BreakerThreshold::MaxConnections => &self.connections,
            BreakerThreshold::MaxRequests => &self.requests,
            BreakerThreshold::MaxPendingRequests => &self.pending,
            BreakerThreshold::MaxRetries => &self.retries,
        }
    }

    /// The current count for `threshold`.
    pub(crate) fn active(&self, threshold: BreakerThreshold) -> u32 {
        self.counter(threshold).load(Ordering::Acquire)
    }

    /// Connections opened so far beyond `max_connections`.
    pub(crate) fn connection_overflows(&self) -> u64 {
        self.connection_overflows.load(Ordering::Relaxed)
    }
}

/// Which circuit-breaker threshold a permit counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerThreshold {
    MaxConnections,
    MaxRequests,
    MaxPendingRequests,
    MaxRetries,
}

impl BreakerThreshold {
    /// The Envoy field name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::MaxRequests => "max_requests",
            Self::MaxPendingRequests => "max_pending_requests",
            Self::MaxRetries => "max_retries",
        }
    }
}

impl fmt::Display for BreakerThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A circuit breaker is open: the caller answers 503 with Envoy's `UO` flag.
#[derive(Debug, Clone, thiserror::Error)]
#[error("circuit breaker overflow: {threshold} of cluster {cluster}")]
pub struct Overflow {
    pub threshold: BreakerThreshold,
    pub cluster: Arc<str>,
}

/// One taken slot; gives it back on drop.
#[derive(Debug)]
struct Slot {
    counters: Arc<BreakerCounters>,
    threshold: BreakerThreshold,
}

impl Slot {
    /// Takes a slot unless `max` are already taken (`max == 0` always overflows).
    fn acquire(
        counters: &Arc<BreakerCounters>,
        threshold: BreakerThreshold,
        max: u32,
        cluster: &Arc<str>,
    ) -> Result<Self, Overflow> {
        counters
            .counter(threshold)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < max).then_some(taken + 1)
            })
            .map(|_| Self {
                counters: Arc::clone(counters),
                threshold,
            })
            .map_err(|_| Overflow {
                threshold,
                cluster: Arc::clone(cluster),
            })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counters
            .counter(self.threshold)
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// A slot under `max_connections`, held for the whole life of one connection (connecting
/// included), by the task that drives it.
#[derive(Debug)]
pub struct ConnectionPermit {
    _slot: Slot,
}

/// A slot under `max_requests`, held for the whole request.
#[derive(Debug)]
pub struct RequestPermit {
    _slot: Slot,
}

/// A slot under `max_retries`, held while a retry is in flight.
#[derive(Debug)]
pub struct RetryPermit {
    _slot: Slot,
}

/// A slot under `max_pending_requests`, held while waiting for a usable connection (another
/// request connecting, or this one connecting and handshaking).
#[derive(Debug)]
pub struct PendingPermit {
    _slot: Slot,
}

/// Always succeeds: beyond `max` the connection is counted as an overflow and opened anyway
/// (see `Cluster::open_connection`).
pub(crate) fn acquire_connection(counters: &Arc<BreakerCounters>, max: u32) -> ConnectionPermit {
    let taken = counters.connections.fetch_add(1, Ordering::AcqRel);
    if taken >= max {
        counters
            .connection_overflows
            .fetch_add(1, Ordering::Relaxed);
    }
    ConnectionPermit {
        _slot: Slot {
            counters: Arc::clone(counters),
            threshold: BreakerThreshold::MaxConnections,
        },
    }
}

pub(crate) fn acquire_request(
    counters: &Arc<BreakerCounters>,
    max: u32,
    cluster: &Arc<str>,
) -> Result<RequestPermit, Overflow> {
    Slot::acquire(counters, BreakerThreshold::MaxRequests, max, cluster)
        .map(|slot| RequestPermit { _slot: slot })
}

pub(crate) fn acquire_retry(
    counters: &Arc<BreakerCounters>,
    max: u32,
    cluster: &Arc<str>,
) -> Result<RetryPermit, Overflow> {
    Slot::acquire(counters, BreakerThreshold::MaxRetries, max, cluster)
        .map(|slot| RetryPermit { _slot: slot })
}

pub(crate) fn acquire_pending(
    counters: &Arc<BreakerCounters>,
    max: u32,
    cluster: &Arc<str>,
) -> Result<PendingPermit, Overflow> {
    Slot::acquire(counters, BreakerThreshold::MaxPendingRequests, max, cluster)
        .map(|slot| PendingPermit { _slot: slot })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::{cluster_with, endpoint};
    use crate::model::{CircuitBreakerThresholds, HealthStatus, LbPolicy};

    fn limited(
        max_requests: u32,
        max_retries: u32,
        max_pending: u32,
    ) -> Arc<crate::cluster::Cluster> {
        limited_connections(1024, max_requests, max_retries, max_pending)
    }

    fn limited_connections(
        max_connections: u32,
        max_requests: u32,
        max_retries: u32,
        max_pending: u32,
    ) -> Arc<crate::cluster::Cluster> {
        cluster_with("limited", LbPolicy::RoundRobin, |spec| {
            spec.circuit_breakers = CircuitBreakerThresholds {
                max_connections,
                max_pending_requests: max_pending,
                max_requests,
                max_retries,
            };
            spec.localities[0].endpoints = vec![endpoint(1, 1, HealthStatus::Healthy)];
        })
    }

    #[test]
    fn max_requests_overflows_and_releases_on_drop() {
        let cluster = limited(2, 3, 1);
        let first = cluster.try_start_request().unwrap();
        let second = cluster.try_start_request().unwrap();
        let overflow = cluster.try_start_request().unwrap_err();
        assert_eq!(overflow.threshold, BreakerThreshold::MaxRequests);
        assert_eq!(
            overflow.to_string(),
            "circuit breaker overflow: max_requests of cluster limited"
        );
        drop(first);
        let third = cluster.try_start_request().unwrap();
        drop((second, third));
        assert_eq!(cluster.status().requests_active, 0);
    }

    #[test]
    fn retries_and_pending_have_their_own_caps() {
        let cluster = limited(10, 1, 1);
        let retry = cluster.try_start_retry().unwrap();
        assert_eq!(
            cluster.try_start_retry().unwrap_err().threshold,
            BreakerThreshold::MaxRetries
        );
        let pending = cluster.try_start_pending().unwrap();
        assert_eq!(
            cluster.try_start_pending().unwrap_err().threshold,
            BreakerThreshold::MaxPendingRequests
        );
        // Requests are not affected by the other two.
        let _request = cluster.try_start_request().unwrap();
        drop(retry);
        drop(pending);
        assert!(cluster.try_start_retry().is_ok());
        assert!(cluster.try_start_pending().is_ok());
    }

    #[test]
    fn zero_threshold_always_overflows() {
        let cluster = limited_connections(0, 0, 0, 0);
        assert!(cluster.try_start_request().is_err());
        assert!(cluster.try_start_retry().is_err());
        assert!(cluster.try_start_pending().is_err());
    }

    #[test]
    fn max_connections_counts_open_connections_apart_from_requests() {
        let cluster = limited_connections(2, 1, 1, 1);
        let first = cluster.open_connection();
        let second = cluster.open_connection();
        assert_eq!(cluster.status().connection_overflows, 0);
        // Beyond the threshold the connection is still opened, and counted as an overflow.
        let third = cluster.open_connection();
        let status = cluster.status();
        assert_eq!(
            (status.connections_active, status.connection_overflows),
            (3, 1)
        );
        drop(third);
        // Connections and requests are counted apart: two open connections with one request
        // and one pending request between them.
        let request = cluster.try_start_request().unwrap();
        let pending = cluster.try_start_pending().unwrap();
        let status = cluster.status();
        assert_eq!(
            (
                status.connections_active,
                status.requests_active,
                status.pending_active
            ),
            (2, 1, 1)
        );
        drop((request, pending));
        assert_eq!(cluster.status().connections_active, 2);

        // A connection that closes gives its slot back.
        drop(first);
        assert_eq!(cluster.status().connections_active, 1);
        let fourth = cluster.open_connection();
        assert_eq!(cluster.status().connection_overflows, 1);
        drop((second, fourth));
        let status = cluster.status();
        assert_eq!(
            (
                status.connections_active,
                status.requests_active,
                status.pending_active
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn permits_taken_before_an_update_count_after_it() {
        let manager = crate::cluster::ClusterManager::new();
        let spec = |max_connections| {
            crate::cluster::testing::spec_with("c", LbPolicy::RoundRobin, |spec| {
                spec.circuit_breakers.max_connections = max_connections;
            })
        };
        let update = |max_connections| {
            let specs = std::iter::once(("c".to_string(), Arc::new(spec(max_connections))));
            manager.update(&specs.collect());
        };
        update(2);
        let old = manager.get("c").unwrap();
        let open = old.open_connection();
        let pending = old.try_start_pending().unwrap();
        // The threshold drops to 1: the connection opened before the update fills it.
        update(1);
        let new = manager.get("c").unwrap();
        assert!(!Arc::ptr_eq(&old, &new));
        assert_eq!(new.status().connections_active, 1);
        assert_eq!(new.status().pending_active, 1);
        let over = new.open_connection();
        assert_eq!(new.status().connection_overflows, 1);
        drop((open, pending, over));
        assert_eq!(new.status().connections_active, 0);
        assert_eq!(new.status().pending_active, 0);
        let _within = new.open_connection();
        assert_eq!(new.status().connection_overflows, 1);
    }
}
