//! `Listener`: validated and kept as received; what the store needs from it is the names of
//! the route configurations its HTTP connection managers load over RDS.

use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener, filter::ConfigType};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use prost::{Message, Name};

use super::{AtField, FieldError};

/// The network filter name of the HTTP connection manager.
const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";

/// What Outrigger uses from a listener (there is no listener model yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerInfo {
    /// `rds.route_config_name` of every HTTP connection manager, in order.
    pub route_config_names: Vec<String>,
}

pub fn convert_listener(listener: &Listener) -> Result<ListenerInfo, FieldError> {
    if listener.name.is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    let mut info = ListenerInfo::default();
    for (chain_index, chain) in listener.filter_chains.iter().enumerate() {
        for (filter_index, filter) in chain.filters.iter().enumerate() {
            collect_rds_name(filter, &mut info)
                .at_index("filters", filter_index)
                .at_index("filter_chains", chain_index)?;
        }
    }
    if let Some(chain) = &listener.default_filter_chain {
        for (filter_index, filter) in chain.filters.iter().enumerate() {
            collect_rds_name(filter, &mut info)
                .at_index("filters", filter_index)
                .at("default_filter_chain")?;
        }
    }
    Ok(info)
}

fn collect_rds_name(filter: &Filter, info: &mut ListenerInfo) -> Result<(), FieldError> {
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        return Ok(());
    };
    let is_manager =
        filter.name == HTTP_CONNECTION_MANAGER || any.type_url == HttpConnectionManager::type_url();
    if !is_manager {
        return Ok(());
    }
    if any.type_url != HttpConnectionManager::type_url() {
        return Err(FieldError::new(
            "typed_config",
            format!(
                "expected {}, got {}",
                HttpConnectionManager::type_url(),
                any.type_url
            ),
        ));
    }
    let manager = HttpConnectionManager::decode(any.value.as_slice()).map_err(|error| {
        FieldError::new(
            "typed_config",
            format!("cannot decode HttpConnectionManager: {error}"),
        )
    })?;
    if let Some(RouteSpecifier::Rds(rds)) = &manager.route_specifier {
        if rds.route_config_name.is_empty() {
            return Err(FieldError::new(
                "typed_config.rds.route_config_name",
                "must not be empty",
            ));
        }
        info.route_config_names.push(rds.route_config_name.clone());
    }
    Ok(())
}
