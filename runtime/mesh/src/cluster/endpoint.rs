//! Upstream endpoints: their static description and the live state (counters, ejection) that
//! follows an address across cluster updates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use super::outlier::{HostOutlier, OutlierGroup};
use crate::model::{HealthStatus, Locality};

/// What became of one request to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any non-5xx answer.
    Success,
    /// A 5xx answer (a code below 500 is treated as `Success`).
    Status(u16),
    /// Connect failure, reset or timeout.
    LocalFailure,
}

impl Outcome {
    /// Counts for the consecutive-5xx detector (Envoy maps local failures to 5xx by default).
    pub(crate) fn is_5xx(self) -> bool {
        match self {
            Self::Success => false,
            Self::Status(code) => code >= 500,
            Self::LocalFailure => true,
        }
    }

    /// Counts for the consecutive-gateway-failure detector.
    pub(crate) fn is_gateway_failure(self) -> bool {
        matches!(self, Self::Status(502..=504) | Self::LocalFailure)
    }
}

/// The live state of one upstream address; kept while the address stays in its cluster.
#[derive(Debug, Default)]
pub(crate) struct EndpointState {
    active_requests: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    pub(crate) outlier: HostOutlier,
}

/// One upstream host of a cluster, as placed in one version of that cluster.
pub struct Endpoint {
    address: SocketAddr,
    priority: u32,
    locality: Locality,
    weight: u32,
    health: HealthStatus,
    state: Arc<EndpointState>,
    outlier_group: Arc<OutlierGroup>,
}

impl Endpoint {
    pub(crate) fn new(
        placement: Placement,
        state: Arc<EndpointState>,
        outlier_group: Arc<OutlierGroup>,
    ) -> Self {
        Self {
            address: placement.address,
            priority: placement.priority,
            locality: placement.locality,
            weight: placement.weight,
            health: placement.health,
            state,
            outlier_group,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn priority(&self) -> u32 {
        self.priority
    }

    pub fn locality(&self) -> &Locality {
        &self.locality
    }

    /// The configured `load_balancing_weight`.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The weight the balancers use: Envoy rejects weight 0, so it is treated as 1 here.
    pub(crate) fn lb_weight(&self) -> u64 {
        u64::from(self.weight.max(1))
    }

    pub fn health(&self) -> HealthStatus {
        self.health
    }

    /// Whether outlier detection has the host out of service now.
    pub fn is_ejected(&self) -> bool {
        self.state.outlier.is_ejected(Instant::now())
    }

    pub fn times_ejected(&self) -> u32 {
        self.state.outlier.times_ejected()
    }

    pub fn active_requests(&self) -> u64 {
        self.state.active_requests.load(Ordering::Acquire)
    }

    pub fn successes(&self) -> u64 {
        self.state.successes.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.state.failures.load(Ordering::Relaxed)
    }

    /// Healthy enough for traffic (by health status) and not ejected at `now`.
    pub(crate) fn receives_traffic(&self, now: Instant) -> bool {
        self.health.receives_traffic() && !self.state.outlier.is_ejected(now)
    }

    pub(crate) fn state(&self) -> &Arc<EndpointState> {
        &self.state
    }

    /// Counts an active request (for LEAST_REQUEST and /clusters) until the guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> ActiveRequest {
        self.state.active_requests.fetch_add(1, Ordering::AcqRel);
        ActiveRequest {
            endpoint: Arc::clone(self),
        }
    }

    /// Feeds outlier detection and the per-endpoint success/failure counters.
    pub fn record(&self, outcome: Outcome) {
        let counter = if outcome.is_5xx() {
            &self.state.failures
        } else {
            &self.state.successes
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.outlier_group
            .observe(&self.state.outlier, outcome, Instant::now());
    }
}

/// Where and how an endpoint sits in a cluster (from its `LocalityEndpoints` and `EndpointSpec`).
pub(crate) struct Placement {
    pub(crate) address: SocketAddr,
    pub(crate) priority: u32,
    pub(crate) locality: Locality,
    pub(crate) weight: u32,
    pub(crate) health: HealthStatus,
}

/// An active request on an endpoint; the count drops with the guard.
pub struct ActiveRequest {
    endpoint: Arc<Endpoint>,
}

impl ActiveRequest {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.endpoint
            .state
            .active_requests
            .fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::cluster_with;
    use crate::model::LbPolicy;

    #[test]
    fn outcomes_classify_like_envoy() {
        assert!(Outcome::Status(500).is_5xx());
        assert!(!Outcome::Status(500).is_gateway_failure());
        assert!(Outcome::Status(503).is_gateway_failure());
        assert!(Outcome::LocalFailure.is_5xx());
        assert!(Outcome::LocalFailure.is_gateway_failure());
        assert!(!Outcome::Status(404).is_5xx());
        assert!(!Outcome::Success.is_5xx());
    }

    #[test]
    fn active_request_guard_counts() {
        let cluster = cluster_with("c", LbPolicy::RoundRobin, |_| {});
        let endpoint = cluster.pick(None, &[]).unwrap();
        let first = endpoint.start_request();
        let second = endpoint.start_request();
        assert_eq!(endpoint.active_requests(), 2);
        drop(first);
        assert_eq!(second.endpoint().active_requests(), 1);
        drop(second);
        assert_eq!(endpoint.active_requests(), 0);
        endpoint.record(Outcome::Success);
        endpoint.record(Outcome::Status(502));
        assert_eq!((endpoint.successes(), endpoint.failures()), (1, 1));
    }
}
