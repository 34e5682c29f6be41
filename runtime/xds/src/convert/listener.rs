//! `Listener`: validated and kept as received; what the store needs from it is the route
//! configurations of its HTTP connection managers: the names they load over RDS, and the ones
//! they carry inline.

use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener, filter::ConfigType};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use std::sync::Arc;

use outrigger_mesh::model::RouteConfig;
use prost::{Message, Name};

use super::route::convert_route_configuration;
use super::{AtField, FieldError};

/// The network filter name of the HTTP connection manager.
const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";

/// What Outrigger uses from a listener (there is no listener model yet).
#[derive(Debug, Clone, Default)]
pub struct ListenerInfo {
    /// `rds.route_config_name` of every HTTP connection manager, in order.
    pub route_config_names: Vec<String>,
    /// Every HTTP connection manager's inline `route_config`, converted, in order; app ids
    /// resolve in them as in the RDS ones.
    pub inline_route_configs: Vec<Arc<RouteConfig>>,
}

/// `is_known_cluster` checks the inline route configurations' cluster names, as for RDS.
pub fn convert_listener(
    listener: &Listener,
    is_known_cluster: &dyn Fn(&str) -> bool,
) -> Result<ListenerInfo, FieldError> {
    if listener.name.is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    let mut info = ListenerInfo::default();
    for (chain_index, chain) in listener.filter_chains.iter().enumerate() {
        for (filter_index, filter) in chain.filters.iter().enumerate() {
            collect_route_configs(filter, is_known_cluster, &mut info)
                .at_index("filters", filter_index)
                .at_index("filter_chains", chain_index)?;
        }
    }
    if let Some(chain) = &listener.default_filter_chain {
        for (filter_index, filter) in chain.filters.iter().enumerate() {
            collect_route_configs(filter, is_known_cluster, &mut info)
                .at_index("filters", filter_index)
                .at("default_filter_chain")?;
        }
    }
    Ok(info)
}

fn collect_route_configs(
    filter: &Filter,
    is_known_cluster: &dyn Fn(&str) -> bool,
    info: &mut ListenerInfo,
) -> Result<(), FieldError> {
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
    match &manager.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            if rds.route_config_name.is_empty() {
                return Err(FieldError::new(
                    "typed_config.rds.route_config_name",
                    "must not be empty",
                ));
            }
            info.route_config_names.push(rds.route_config_name.clone());
        }
        Some(RouteSpecifier::RouteConfig(config)) => {
            let converted = convert_route_configuration(config, is_known_cluster)
                .at("typed_config.route_config")?;
            info.inline_route_configs.push(Arc::new(converted));
        }
        // Scoped routes are not supported; nothing of them is used.
        Some(RouteSpecifier::ScopedRoutes(_)) | None => {}
    }
    Ok(())
}
