//! The accepted xDS resources of each type, validated and converted into a [`MeshSnapshot`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::Any;
use outrigger_mesh::model::{LocalityEndpoints, MeshSnapshot, RouteConfig};
use serde_json::json;

use crate::convert::{
    ClusterEndpointSource, ConvertedCluster, FieldError, ListenerInfo, convert_cluster,
    convert_listener, convert_load_assignment, convert_route_configuration,
};
use crate::reflect::any_to_json;

pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// The order in which types are requested and applied, so references resolve: a route's
/// clusters are known before the route arrives (Envoy's and istiod's ADS order).
pub const TYPE_ORDER: [&str; 4] = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE];

/// Why a set of resources was rejected; the message names the resource and the field, and is
/// what a NACK's `error_detail` carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdsError {
    #[error("unsupported resource type {0}")]
    UnsupportedType(String),
    #[error("{type_name} {resource}: {message}")]
    Invalid {
        type_name: &'static str,
        resource: String,
        message: String,
    },
    #[error("cannot decode {type_url}: {message}")]
    Decode { type_url: String, message: String },
    /// A resource whose `type_url` is not the type of the response carrying it.
    #[error("resources[{index}] is a {actual}, not a {expected}")]
    WrongType {
        index: usize,
        expected: String,
        actual: String,
    },
    /// The `--xds-file` source: the file cannot be read, parsed or applied.
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

/// One accepted resource: as received (for the config dump) and converted.
#[derive(Debug, Clone)]
struct Entry<T> {
    name: String,
    /// The version of the update that last changed this resource.
    version: String,
    any: Any,
    value: T,
}

/// The accepted resources of one type, in the order received.
#[derive(Debug, Clone)]
struct Accepted<T> {
    version: String,
    entries: Arc<Vec<Entry<T>>>,
}

impl<T> Default for Accepted<T> {
    fn default() -> Self {
        Self {
            version: String::new(),
            entries: Arc::new(Vec::new()),
        }
    }
}

/// A listener as received, with what Outrigger reads from it.
#[derive(Debug, Clone)]
struct AcceptedListener {
    listener: Listener,
    info: ListenerInfo,
}

/// The last accepted state of the world, per type. Cloneable (cheaply: the resources are
/// shared) so a multi-type update (a file) can be applied to a copy and committed only if
/// every type validates.
#[derive(Debug, Clone, Default)]
pub struct ResourceStore {
    default_route_config: String,
    clusters: Accepted<ConvertedCluster>,
    endpoints: Accepted<Vec<LocalityEndpoints>>,
    listeners: Accepted<AcceptedListener>,
    routes: Accepted<Arc<RouteConfig>>,
    snapshot: Arc<MeshSnapshot>,
}

impl ResourceStore {
    /// An empty store; `default_route_config` is always among the RDS names subscribed to
    /// (the route configuration the sidecar's outbound traffic uses).
    pub fn new(default_route_config: &str) -> Self {
        Self {
            default_route_config: default_route_config.to_string(),
            ..Self::default()
        }
    }

    /// A state-of-the-world update of one type: every resource is validated; on success all
    /// resources of that type are replaced, on failure nothing changes.
    pub fn apply(
        &mut self,
        type_url: &str,
        version: &str,
        resources: &[Any],
    ) -> Result<(), XdsError> {
        let update = Update {
            type_url,
            version,
            resources,
        };
        match type_url {
            CLUSTER_TYPE => {
                self.clusters = update.convert(
                    "Cluster",
                    &self.clusters,
                    |cluster: &Cluster| &cluster.name,
                    convert_cluster,
                )?;
            }
            ENDPOINT_TYPE => {
                self.endpoints = update.convert(
                    "ClusterLoadAssignment",
                    &self.endpoints,
                    |assignment: &ClusterLoadAssignment| &assignment.cluster_name,
                    convert_load_assignment,
                )?;
            }
            LISTENER_TYPE => {
                let known = self.cluster_names();
                let is_known_cluster = |name: &str| known.contains(name);
                self.listeners = update.convert(
                    "Listener",
                    &self.listeners,
                    |listener: &Listener| &listener.name,
                    |listener| {
                        Ok(AcceptedListener {
                            listener: listener.clone(),
                            info: convert_listener(listener, &is_known_cluster)?,
                        })
                    },
                )?;
            }
            ROUTE_TYPE => {
                let known = self.cluster_names();
                let is_known_cluster = |name: &str| known.contains(name);
                let routes = update.convert(
                    "RouteConfiguration",
                    &self.routes,
                    |config: &RouteConfiguration| &config.name,
                    |config| convert_route_configuration(config, &is_known_cluster).map(Arc::new),
                )?;
                self.routes = routes;
            }
            other => return Err(XdsError::UnsupportedType(other.to_string())),
        }
        self.rebuild_snapshot();
        Ok(())
    }

    /// The names of the accepted clusters, which routes may name.
    fn cluster_names(&self) -> HashSet<String> {
        self.clusters
            .entries
            .iter()
            .map(|entry| entry.name.clone())
            .collect()
    }

    /// What the data plane runs on, built from the accepted resources.
    pub fn snapshot(&self) -> Arc<MeshSnapshot> {
        Arc::clone(&self.snapshot)
    }

    /// Names to subscribe to for a type: EDS names from the accepted clusters, RDS names from
    /// the listeners plus the configured default route configuration; empty (wildcard) for CDS
    /// and LDS. Sorted and without duplicates.
    pub fn resource_names(&self, type_url: &str) -> Vec<String> {
        let names: BTreeSet<&str> = match type_url {
            ENDPOINT_TYPE => self
                .clusters
                .entries
                .iter()
                .filter_map(|entry| match &entry.value.endpoints {
                    ClusterEndpointSource::Eds(service_name) => Some(service_name.as_str()),
                    ClusterEndpointSource::Static(_) => None,
                })
                .collect(),
            ROUTE_TYPE => self
                .listeners
                .entries
                .iter()
                .flat_map(|entry| entry.value.info.route_config_names.iter())
                .map(String::as_str)
                .chain(Some(self.default_route_config.as_str()))
                .filter(|name| !name.is_empty())
                .collect(),
            _ => BTreeSet::new(),
        };
        names.into_iter().map(str::to_string).collect()
    }

    /// The `version_info` of the last accepted update of a type ("" before any).
    pub fn version(&self, type_url: &str) -> &str {
        match type_url {
            CLUSTER_TYPE => &self.clusters.version,
            ENDPOINT_TYPE => &self.endpoints.version,
            LISTENER_TYPE => &self.listeners.version,
            ROUTE_TYPE => &self.routes.version,
            _ => "",
        }
    }

    /// The accepted listeners, as received.
    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners
            .entries
            .iter()
            .map(|entry| &entry.value.listener)
    }

    /// The accepted resources in the shape of Envoy's admin `/config_dump`, each resource in
    /// proto3 JSON with its `@type`.
    pub fn config_dump(&self) -> serde_json::Value {
        // Decoded for this dump only: the pool is tens of megabytes, and a sidecar should not
        // carry it between the rare occasions an operator asks.
        let pool = crate::reflect::decode_pool();
        let resource_json = |any: &Any| resource_json(pool.as_ref(), any);
        let clusters: Vec<_> = self
            .clusters
            .entries
            .iter()
            .map(|entry| json!({"version_info": entry.version, "cluster": resource_json(&entry.any)}))
            .collect();
        let endpoints: Vec<_> = self
            .endpoints
            .entries
            .iter()
            .map(|entry| {
                json!({"version_info": entry.version, "endpoint_config": resource_json(&entry.any)})
            })
            .collect();
        let listeners: Vec<_> = self
            .listeners
            .entries
            .iter()
            .map(|entry| {
                json!({
                    "name": entry.name,
                    "active_state": {
                        "version_info": entry.version,
                        "listener": resource_json(&entry.any),
                    },
                })
            })
            .collect();
        let routes: Vec<_> = self
            .routes
            .entries
            .iter()
            .map(|entry| {
                json!({"version_info": entry.version, "route_config": resource_json(&entry.any)})
            })
            .collect();
        json!({
            "configs": [
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                    "version_info": self.clusters.version,
                    "dynamic_active_clusters": clusters,
                },
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
                    "dynamic_endpoint_configs": endpoints,
                },
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                    "version_info": self.listeners.version,
                    "dynamic_listeners": listeners,
                },
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                    "dynamic_route_configs": routes,
                },
            ]
        })
    }

    fn rebuild_snapshot(&mut self) {
        let assignments: HashMap<&str, &Vec<LocalityEndpoints>> = self
            .endpoints
            .entries
            .iter()
            .map(|entry| (entry.name.as_str(), &entry.value))
            .collect();
        let clusters = self
            .clusters
            .entries
            .iter()
            .map(|entry| {
                let mut spec = entry.value.spec.clone();
                spec.localities = match &entry.value.endpoints {
                    ClusterEndpointSource::Static(localities) => localities.clone(),
                    // An EDS cluster without an assignment yet has no endpoints.
                    ClusterEndpointSource::Eds(service_name) => assignments
                        .get(service_name.as_str())
                        .map(|localities| (*localities).clone())
                        .unwrap_or_default(),
                };
                (entry.name.clone(), Arc::new(spec))
            })
            .collect();
        // RDS route configurations first, then those inline in listeners.
        let inline = self
            .listeners
            .entries
            .iter()
            .flat_map(|entry| entry.value.info.inline_route_configs.iter());
        let route_configs = self
            .routes
            .entries
            .iter()
            .map(|entry| &entry.value)
            .chain(inline)
            .map(Arc::clone)
            .collect();
        self.snapshot = Arc::new(MeshSnapshot {
            route_configs,
            clusters,
        });
    }
}

/// A resource for the config dump; one that cannot be rendered says why instead.
fn resource_json(
    pool: Result<&prost_reflect::DescriptorPool, &String>,
    any: &Any,
) -> serde_json::Value {
    pool.map_err(Clone::clone)
        .and_then(|pool| any_to_json(pool, any))
        .unwrap_or_else(|error| json!({"@type": any.type_url, "error": error}))
}

/// One state-of-the-world response being validated.
struct Update<'a> {
    type_url: &'a str,
    version: &'a str,
    resources: &'a [Any],
}

impl Update<'_> {
    /// Decodes and converts every resource; the first failure rejects the whole update.
    fn convert<M, T>(
        &self,
        type_name: &'static str,
        previous: &Accepted<T>,
        name_of: impl Fn(&M) -> &String,
        convert: impl Fn(&M) -> Result<T, FieldError>,
    ) -> Result<Accepted<T>, XdsError>
    where
        M: prost::Message + Default,
    {
        let previous: HashMap<&str, &Entry<T>> = previous
            .entries
            .iter()
            .map(|entry| (entry.name.as_str(), entry))
            .collect();
        let mut names = HashSet::new();
        let mut entries = Vec::with_capacity(self.resources.len());
        for (index, any) in self.resources.iter().enumerate() {
            if any.type_url != self.type_url {
                return Err(XdsError::WrongType {
                    index,
                    expected: self.type_url.to_string(),
                    actual: any.type_url.clone(),
                });
            }
            let message = M::decode(any.value.as_slice()).map_err(|error| XdsError::Decode {
                type_url: self.type_url.to_string(),
                message: format!("resources[{index}]: {error}"),
            })?;
            let name = name_of(&message).clone();
            let invalid = |message: String| XdsError::Invalid {
                type_name,
                resource: if name.is_empty() {
                    format!("resources[{index}]")
                } else {
                    name.clone()
                },
                message,
            };
            let value = convert(&message).map_err(|error| invalid(error.to_string()))?;
            if name.is_empty() {
                return Err(invalid("the resource has no name".to_string()));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(
                    "duplicate resource name in the response".to_string(),
                ));
            }
            // A resource that did not change keeps the version it was last changed in.
            let version = previous
                .get(name.as_str())
                .filter(|entry| entry.any.value == any.value)
                .map_or(self.version, |entry| entry.version.as_str())
                .to_string();
            entries.push(Entry {
                name,
                version,
                any: any.clone(),
                value,
            });
        }
        Ok(Accepted {
            version: self.version.to_string(),
            entries: Arc::new(entries),
        })
    }
}
