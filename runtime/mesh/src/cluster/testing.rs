//! Builders shared by the cluster tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use twox_hash::XxHash64;

use super::Cluster;
use crate::model::{
    CircuitBreakerThresholds, ClusterSpec, EndpointSpec, HealthStatus, LbPolicy, Locality,
    LocalityEndpoints,
};

/// `10.0.<i/256>.<i%256>:8080`.
pub(crate) fn addr(i: u16) -> SocketAddr {
    let [high, low] = i.to_be_bytes();
    SocketAddr::from(([10, 0, high, low], 8080))
}

pub(crate) fn endpoint(i: u16, weight: u32, health: HealthStatus) -> EndpointSpec {
    EndpointSpec {
        address: addr(i),
        health,
        weight,
    }
}

pub(crate) fn locality(
    priority: u32,
    zone: &str,
    endpoints: Vec<EndpointSpec>,
) -> LocalityEndpoints {
    LocalityEndpoints {
        locality: Locality {
            region: "region".into(),
            zone: zone.into(),
            sub_zone: String::new(),
        },
        priority,
        endpoints,
    }
}

/// A cluster with one priority-0 locality holding hosts 1 and 2, as `edit` leaves it.
pub(crate) fn spec_with(
    name: &str,
    policy: LbPolicy,
    edit: impl FnOnce(&mut ClusterSpec),
) -> ClusterSpec {
    let mut spec = ClusterSpec {
        name: name.into(),
        lb_policy: policy,
        connect_timeout: Duration::from_secs(1),
        circuit_breakers: CircuitBreakerThresholds::default(),
        outlier_detection: None,
        localities: vec![locality(
            0,
            "a",
            vec![
                endpoint(1, 1, HealthStatus::Healthy),
                endpoint(2, 1, HealthStatus::Healthy),
            ],
        )],
    };
    edit(&mut spec);
    spec
}

pub(crate) fn cluster_with(
    name: &str,
    policy: LbPolicy,
    edit: impl FnOnce(&mut ClusterSpec),
) -> Arc<Cluster> {
    Arc::new(Cluster::build(
        Arc::new(spec_with(name, policy, edit)),
        None,
    ))
}

/// `count` well-spread request hashes.
pub(crate) fn spread_hashes(count: u64) -> Vec<u64> {
    (0..count)
        .map(|i| XxHash64::oneshot(7, &i.to_le_bytes()))
        .collect()
}
