//! The HTTP fault filter's per-route configuration (`typed_per_filter_config`).

use std::collections::HashMap;

use envoy_types::pb::envoy::config::route::v3::FilterConfig;
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    HttpFault, fault_abort::ErrorType,
};
use envoy_types::pb::google::protobuf::Any;
use outrigger_mesh::model::{FaultAbort, FaultDelay, FaultPolicy, FaultStatus, RouteFault};
use prost::{Message, Name};

use super::duration::to_duration;
use super::matchers::per_million;
use super::{AtField, FieldError};

/// The filter name Envoy (and istiod) key the fault filter's per-route config by.
pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// The fault filter's config in a `typed_per_filter_config` map: absent (inherit), disabled,
/// or a policy.
pub(crate) fn fault_from_filter_configs(
    configs: &HashMap<String, Any>,
) -> Result<RouteFault, FieldError> {
    match configs.get(FAULT_FILTER) {
        None => Ok(RouteFault::Inherit),
        Some(any) => fault_policy(any)
            .map(|policy| policy.map_or(RouteFault::Disabled, RouteFault::Policy))
            .at(&format!("typed_per_filter_config[{FAULT_FILTER}]")),
    }
}

/// The policy of a fault filter config; `None` when it is `FilterConfig { disabled: true }`.
fn fault_policy(any: &Any) -> Result<Option<FaultPolicy>, FieldError> {
    let fault = if any.type_url == FilterConfig::type_url() {
        let wrapper = FilterConfig::decode(any.value.as_slice())
            .map_err(|error| FieldError::here(format!("cannot decode FilterConfig: {error}")))?;
        if wrapper.disabled {
            return Ok(None);
        }
        let inner = wrapper
            .config
            .ok_or_else(|| FieldError::new("config", "is required"))?;
        decode_fault(&inner).at("config")?
    } else {
        decode_fault(any)?
    };
    convert_fault(&fault).map(Some)
}

fn decode_fault(any: &Any) -> Result<HttpFault, FieldError> {
    if any.type_url != HttpFault::type_url() {
        return Err(FieldError::here(format!(
            "expected {}, got {}",
            HttpFault::type_url(),
            any.type_url
        )));
    }
    HttpFault::decode(any.value.as_slice())
        .map_err(|error| FieldError::here(format!("cannot decode HTTPFault: {error}")))
}

fn convert_fault(fault: &HttpFault) -> Result<FaultPolicy, FieldError> {
    // Conditions Outrigger cannot evaluate would make the fault apply too broadly: reject them.
    if !fault.headers.is_empty() {
        return Err(FieldError::new(
            "headers",
            "header conditions are not supported",
        ));
    }
    if !fault.upstream_cluster.is_empty() {
        return Err(FieldError::new("upstream_cluster", "is not supported"));
    }
    if !fault.downstream_nodes.is_empty() {
        return Err(FieldError::new("downstream_nodes", "is not supported"));
    }
    let delay = match &fault.delay {
        None => None,
        Some(delay) => {
            let duration = match &delay.fault_delay_secifier {
                Some(FaultDelaySecifier::FixedDelay(duration)) => {
                    to_duration(duration).at("delay.fixed_delay")?
                }
                Some(FaultDelaySecifier::HeaderDelay(_)) => {
                    return Err(FieldError::new("delay.header_delay", "is not supported"));
                }
                None => return Err(FieldError::new("delay.fixed_delay", "is required")),
            };
            Some(FaultDelay {
                delay: duration,
                // Envoy reads an absent percentage as the proto default: 0%.
                per_million: optional_per_million(delay.percentage.as_ref())
                    .at("delay.percentage")?,
            })
        }
    };
    let abort = match &fault.abort {
        None => None,
        Some(abort) => {
            let status = match &abort.error_type {
                Some(ErrorType::HttpStatus(status)) => {
                    let status = u16::try_from(*status)
                        .ok()
                        .filter(|status| (200..600).contains(status))
                        .ok_or_else(|| {
                            FieldError::new(
                                "abort.http_status",
                                format!("{status} is not in [200, 600)"),
                            )
                        })?;
                    FaultStatus::Http(status)
                }
                Some(ErrorType::GrpcStatus(status)) => FaultStatus::Grpc(
                    i32::try_from(*status)
                        .map_err(|_| FieldError::new("abort.grpc_status", "is out of range"))?,
                ),
                Some(ErrorType::HeaderAbort(_)) => {
                    return Err(FieldError::new("abort.header_abort", "is not supported"));
                }
                None => {
                    return Err(FieldError::new(
                        "abort",
                        "one of http_status or grpc_status is required",
                    ));
                }
            };
            Some(FaultAbort {
                status,
                per_million: optional_per_million(abort.percentage.as_ref())
                    .at("abort.percentage")?,
            })
        }
    };
    Ok(FaultPolicy { delay, abort })
}

fn optional_per_million(
    percent: Option<&envoy_types::pb::envoy::r#type::v3::FractionalPercent>,
) -> Result<u32, FieldError> {
    percent.map_or(Ok(0), per_million)
}
