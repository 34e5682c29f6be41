//! The admin `/clusters` view of clusters and their endpoints.

use std::net::SocketAddr;

use serde::Serialize;

use crate::model::{CircuitBreakerThresholds, LbPolicy, Locality};

/// One cluster as the admin `/clusters` page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    /// Envoy's name for the policy, e.g. `ROUND_ROBIN`.
    pub lb_policy: &'static str,
    pub thresholds: ThresholdsStatus,
    /// Connections (open or connecting), requests, pending requests and retries holding a
    /// circuit-breaker slot now.
    pub connections_active: u32,
    /// Connections opened beyond `max_connections` so far (Envoy's `upstream_cx_overflow`).
    pub connection_overflows: u64,
    pub requests_active: u32,
    pub pending_active: u32,
    pub retries_active: u32,
    pub outlier_detection: bool,
    /// In configuration order.
    pub endpoints: Vec<EndpointStatus>,
}

/// The circuit-breaker thresholds in force.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ThresholdsStatus {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl From<CircuitBreakerThresholds> for ThresholdsStatus {
    fn from(thresholds: CircuitBreakerThresholds) -> Self {
        Self {
            max_connections: thresholds.max_connections,
            max_pending_requests: thresholds.max_pending_requests,
            max_requests: thresholds.max_requests,
            max_retries: thresholds.max_retries,
        }
    }
}

/// One endpoint of a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    pub address: SocketAddr,
    pub priority: u32,
    pub locality: LocalityStatus,
    pub weight: u32,
    /// `HealthStatus::as_str`, e.g. `HEALTHY`.
    pub health: &'static str,
    pub ejected: bool,
    pub times_ejected: u32,
    pub active_requests: u64,
    pub successes: u64,
    pub failures: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocalityStatus {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

impl From<&Locality> for LocalityStatus {
    fn from(locality: &Locality) -> Self {
        Self {
            region: locality.region.clone(),
            zone: locality.zone.clone(),
            sub_zone: locality.sub_zone.clone(),
        }
    }
}

/// Envoy's name for a load-balancing policy.
pub fn lb_policy_name(policy: LbPolicy) -> &'static str {
    match policy {
        LbPolicy::RoundRobin => "ROUND_ROBIN",
        LbPolicy::LeastRequest { .. } => "LEAST_REQUEST",
        LbPolicy::Random => "RANDOM",
        LbPolicy::RingHash { .. } => "RING_HASH",
        LbPolicy::Maglev { .. } => "MAGLEV",
    }
}
