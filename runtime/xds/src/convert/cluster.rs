//! `Cluster` → [`ClusterSpec`] (without EDS endpoints, which the store joins in).

use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy as ProtoLbPolicy},
};
use envoy_types::pb::envoy::config::core::v3::RoutingPriority;
use outrigger_mesh::model::{
    CircuitBreakerThresholds, ClusterSpec, LbPolicy, LocalityEndpoints, OutlierDetectionSpec,
};

use super::duration::{duration_or, positive_duration, u32_or, u64_or};
use super::endpoint::convert_load_assignment;
use super::{AtField, FieldError};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CHOICE_COUNT: u32 = 2;
const DEFAULT_MIN_RING_SIZE: u64 = 1024;
const DEFAULT_MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65537;

/// Where a cluster's endpoints come from.
#[derive(Debug, Clone)]
pub enum ClusterEndpointSource {
    /// `STATIC`: its own `load_assignment`.
    Static(Vec<LocalityEndpoints>),
    /// `EDS`: the `ClusterLoadAssignment` with this name (`eds_cluster_config.service_name`,
    /// default the cluster name).
    Eds(String),
}

/// A validated cluster: the model without endpoints, and where its endpoints come from.
#[derive(Debug, Clone)]
pub struct ConvertedCluster {
    /// `localities` is empty; the store fills it in from `endpoints`.
    pub spec: ClusterSpec,
    pub endpoints: ClusterEndpointSource,
}

/// Converts a cluster of type `STATIC` or `EDS`; any other discovery type is rejected.
pub fn convert_cluster(cluster: &Cluster) -> Result<ConvertedCluster, FieldError> {
    if cluster.name.is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    let discovery_type = match &cluster.cluster_discovery_type {
        None => DiscoveryType::Static,
        Some(ClusterDiscoveryType::Type(value)) => DiscoveryType::try_from(*value)
            .map_err(|_| FieldError::new("type", format!("unknown value {value}")))?,
        Some(ClusterDiscoveryType::ClusterType(custom)) => {
            return Err(FieldError::new(
                "cluster_type",
                format!(
                    "custom cluster type {:?} is not supported (only STATIC and EDS clusters)",
                    custom.name
                ),
            ));
        }
    };
    let endpoints = match discovery_type {
        DiscoveryType::Static => ClusterEndpointSource::Static(
            cluster
                .load_assignment
                .as_ref()
                .map(convert_load_assignment)
                .transpose()
                .at("load_assignment")?
                .unwrap_or_default(),
        ),
        DiscoveryType::Eds => {
            let service_name = cluster
                .eds_cluster_config
                .as_ref()
                .map(|config| config.service_name.as_str())
                .filter(|name| !name.is_empty())
                .unwrap_or(&cluster.name);
            ClusterEndpointSource::Eds(service_name.to_string())
        }
        other => {
            return Err(FieldError::new(
                "type",
                format!(
                    "{} is not supported (only STATIC and EDS clusters)",
                    other.as_str_name()
                ),
            ));
        }
    };
    let connect_timeout = match &cluster.connect_timeout {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(timeout) => positive_duration(timeout).at("connect_timeout")?,
    };
    Ok(ConvertedCluster {
        spec: ClusterSpec {
            name: cluster.name.clone(),
            lb_policy: lb_policy(cluster)?,
            connect_timeout,
            circuit_breakers: cluster
                .circuit_breakers
                .as_ref()
                .map(circuit_breakers)
                .unwrap_or_default(),
            outlier_detection: cluster
                .outlier_detection
                .as_ref()
                .map(outlier_detection)
                .transpose()
                .at("outlier_detection")?,
            localities: Vec::new(),
        },
        endpoints,
    })
}

fn lb_policy(cluster: &Cluster) -> Result<LbPolicy, FieldError> {
    let policy = ProtoLbPolicy::try_from(cluster.lb_policy).map_err(|_| {
        FieldError::new("lb_policy", format!("unknown value {}", cluster.lb_policy))
    })?;
    let config = cluster.lb_config.as_ref();
    Ok(match policy {
        ProtoLbPolicy::RoundRobin => LbPolicy::RoundRobin,
        ProtoLbPolicy::Random => LbPolicy::Random,
        ProtoLbPolicy::LeastRequest => {
            let choice_count = match config {
                Some(LbConfig::LeastRequestLbConfig(config)) => {
                    u32_or(config.choice_count.as_ref(), DEFAULT_CHOICE_COUNT)
                }
                _ => DEFAULT_CHOICE_COUNT,
            };
            if choice_count < 2 {
                return Err(FieldError::new(
                    "least_request_lb_config.choice_count",
                    "must be at least 2",
                ));
            }
            LbPolicy::LeastRequest { choice_count }
        }
        ProtoLbPolicy::RingHash => {
            let (minimum_ring_size, maximum_ring_size) = match config {
                Some(LbConfig::RingHashLbConfig(config)) => (
                    u64_or(config.minimum_ring_size.as_ref(), DEFAULT_MIN_RING_SIZE),
                    u64_or(config.maximum_ring_size.as_ref(), DEFAULT_MAX_RING_SIZE),
                ),
                _ => (DEFAULT_MIN_RING_SIZE, DEFAULT_MAX_RING_SIZE),
            };
            if minimum_ring_size == 0 || minimum_ring_size > maximum_ring_size {
                return Err(FieldError::new(
                    "ring_hash_lb_config",
                    format!(
                        "minimum_ring_size ({minimum_ring_size}) must be positive and not greater than maximum_ring_size ({maximum_ring_size})"
                    ),
                ));
            }
            LbPolicy::RingHash {
                minimum_ring_size,
                maximum_ring_size,
            }
        }
        ProtoLbPolicy::Maglev => {
            let table_size = match config {
                Some(LbConfig::MaglevLbConfig(config)) => {
                    u64_or(config.table_size.as_ref(), DEFAULT_MAGLEV_TABLE_SIZE)
                }
                _ => DEFAULT_MAGLEV_TABLE_SIZE,
            };
            if !is_prime(table_size) {
                return Err(FieldError::new(
                    "maglev_lb_config.table_size",
                    format!("{table_size} is not a prime number"),
                ));
            }
            LbPolicy::Maglev { table_size }
        }
        other => {
            return Err(FieldError::new(
                "lb_policy",
                format!(
                    "{} is not supported (ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV are)",
                    other.as_str_name()
                ),
            ));
        }
    })
}

/// Envoy requires a prime Maglev table size (at most 5000011).
fn is_prime(value: u64) -> bool {
    if !(2..=5_000_011).contains(&value) {
        return false;
    }
    (2..)
        .take_while(|divisor| divisor * divisor <= value)
        .all(|divisor| !value.is_multiple_of(divisor))
}

fn circuit_breakers(breakers: &CircuitBreakers) -> CircuitBreakerThresholds {
    let defaults = CircuitBreakerThresholds::default();
    breakers
        .thresholds
        .iter()
        .find(|threshold| threshold.priority == RoutingPriority::Default as i32)
        .map_or(defaults, |threshold| CircuitBreakerThresholds {
            max_connections: u32_or(threshold.max_connections.as_ref(), defaults.max_connections),
            max_pending_requests: u32_or(
                threshold.max_pending_requests.as_ref(),
                defaults.max_pending_requests,
            ),
            max_requests: u32_or(threshold.max_requests.as_ref(), defaults.max_requests),
            max_retries: u32_or(threshold.max_retries.as_ref(), defaults.max_retries),
        })
}

fn outlier_detection(detection: &OutlierDetection) -> Result<OutlierDetectionSpec, FieldError> {
    let defaults = OutlierDetectionSpec::default();
    let percent = |value: Option<&envoy_types::pb::google::protobuf::UInt32Value>,
                   default: u32,
                   field: &str| {
        let value = u32_or(value, default);
        if value > 100 {
            Err(FieldError::new(
                field,
                format!("{value} is greater than 100"),
            ))
        } else {
            Ok(value)
        }
    };
    let interval = match &detection.interval {
        None => defaults.interval,
        Some(interval) => positive_duration(interval).at("interval")?,
    };
    Ok(OutlierDetectionSpec {
        consecutive_5xx: u32_or(detection.consecutive_5xx.as_ref(), defaults.consecutive_5xx),
        enforcing_consecutive_5xx: percent(
            detection.enforcing_consecutive_5xx.as_ref(),
            defaults.enforcing_consecutive_5xx,
            "enforcing_consecutive_5xx",
        )?,
        consecutive_gateway_failure: u32_or(
            detection.consecutive_gateway_failure.as_ref(),
            defaults.consecutive_gateway_failure,
        ),
        enforcing_consecutive_gateway_failure: percent(
            detection.enforcing_consecutive_gateway_failure.as_ref(),
            defaults.enforcing_consecutive_gateway_failure,
            "enforcing_consecutive_gateway_failure",
        )?,
        interval,
        base_ejection_time: duration_or(
            detection.base_ejection_time.as_ref(),
            defaults.base_ejection_time,
        )
        .at("base_ejection_time")?,
        max_ejection_percent: percent(
            detection.max_ejection_percent.as_ref(),
            defaults.max_ejection_percent,
            "max_ejection_percent",
        )?,
    })
}
