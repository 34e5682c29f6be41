//! `ClusterLoadAssignment` → localities with endpoints.

use std::net::{IpAddr, SocketAddr};

use envoy_types::pb::envoy::config::core::v3::{
    HealthStatus as ProtoHealthStatus, address, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use outrigger_mesh::model::{EndpointSpec, HealthStatus, Locality, LocalityEndpoints};

use super::duration::u32_or;
use super::{AtField, FieldError};

/// The endpoints of a load assignment (EDS, or a STATIC cluster's own `load_assignment`).
pub fn convert_load_assignment(
    assignment: &ClusterLoadAssignment,
) -> Result<Vec<LocalityEndpoints>, FieldError> {
    if !assignment.named_endpoints.is_empty() {
        return Err(FieldError::new("named_endpoints", "is not supported"));
    }
    assignment
        .endpoints
        .iter()
        .enumerate()
        .map(|(index, locality)| locality_endpoints(locality).at_index("endpoints", index))
        .collect()
}

fn locality_endpoints(locality: &LocalityLbEndpoints) -> Result<LocalityEndpoints, FieldError> {
    if locality.lb_config.is_some() {
        return Err(FieldError::new(
            "leds_cluster_locality_config",
            "is not supported (use lb_endpoints)",
        ));
    }
    let endpoints = locality
        .lb_endpoints
        .iter()
        .enumerate()
        .map(|(index, endpoint)| lb_endpoint(endpoint).at_index("lb_endpoints", index))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(LocalityEndpoints {
        locality: locality
            .locality
            .as_ref()
            .map(|locality| Locality {
                region: locality.region.clone(),
                zone: locality.zone.clone(),
                sub_zone: locality.sub_zone.clone(),
            })
            .unwrap_or_default(),
        priority: locality.priority,
        endpoints,
    })
}

fn lb_endpoint(endpoint: &LbEndpoint) -> Result<EndpointSpec, FieldError> {
    let socket_address = match &endpoint.host_identifier {
        Some(HostIdentifier::Endpoint(endpoint)) => match endpoint
            .address
            .as_ref()
            .and_then(|address| address.address.as_ref())
        {
            Some(address::Address::SocketAddress(socket_address)) => socket_address,
            Some(_) => {
                return Err(FieldError::new(
                    "endpoint.address",
                    "only socket_address is supported",
                ));
            }
            None => return Err(FieldError::new("endpoint.address", "is required")),
        },
        Some(HostIdentifier::EndpointName(_)) => {
            return Err(FieldError::new("endpoint_name", "is not supported"));
        }
        None => return Err(FieldError::new("endpoint", "is required")),
    };
    let at = "endpoint.address.socket_address";
    let ip: IpAddr = socket_address.address.parse().map_err(|_| {
        FieldError::new(
            format!("{at}.address"),
            format!(
                "{:?} is not an IP address (hostnames are not supported; only STATIC and EDS endpoints with IP literals)",
                socket_address.address
            ),
        )
    })?;
    let port = match &socket_address.port_specifier {
        Some(PortSpecifier::PortValue(port)) => u16::try_from(*port).map_err(|_| {
            FieldError::new(format!("{at}.port_value"), format!("{port} is not a port"))
        })?,
        Some(PortSpecifier::NamedPort(_)) => {
            return Err(FieldError::new(
                format!("{at}.named_port"),
                "is not supported",
            ));
        }
        None => return Err(FieldError::new(format!("{at}.port_value"), "is required")),
    };
    let weight = u32_or(endpoint.load_balancing_weight.as_ref(), 1);
    if weight == 0 {
        return Err(FieldError::new(
            "load_balancing_weight",
            "must be at least 1",
        ));
    }
    Ok(EndpointSpec {
        address: SocketAddr::new(ip, port),
        health: health_status(endpoint.health_status)?,
        weight,
    })
}

fn health_status(value: i32) -> Result<HealthStatus, FieldError> {
    Ok(match ProtoHealthStatus::try_from(value) {
        Ok(ProtoHealthStatus::Unknown) => HealthStatus::Unknown,
        Ok(ProtoHealthStatus::Healthy) => HealthStatus::Healthy,
        Ok(ProtoHealthStatus::Unhealthy) => HealthStatus::Unhealthy,
        Ok(ProtoHealthStatus::Draining) => HealthStatus::Draining,
        Ok(ProtoHealthStatus::Timeout) => HealthStatus::Timeout,
        Ok(ProtoHealthStatus::Degraded) => HealthStatus::Degraded,
        Err(_) => {
            return Err(FieldError::new(
                "health_status",
                format!("unknown value {value}"),
            ));
        }
    })
}
