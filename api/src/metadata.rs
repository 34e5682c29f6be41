//! The sidecar's self-description served by `GET /v1.0/metadata` and gRPC `GetMetadata`.

use std::collections::BTreeMap;

use outrigger_components::ComponentInfo;
use serde::Serialize;

use crate::context::ApiContext;

/// Dapr's metadata document, in its JSON field names.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetadataView {
    pub id: String,
    pub runtime_version: String,
    pub enabled_features: Vec<String>,
    pub actors: Vec<serde_json::Value>,
    pub components: Vec<ComponentView>,
    pub extended: BTreeMap<String, String>,
    pub subscriptions: Vec<serde_json::Value>,
    pub http_endpoints: Vec<serde_json::Value>,
    pub app_connection_properties: AppConnectionView,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComponentView {
    pub name: String,
    #[serde(rename = "type")]
    pub component_type: String,
    pub version: String,
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppConnectionView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub protocol: String,
    pub channel_address: String,
}

impl From<ComponentInfo> for ComponentView {
    fn from(info: ComponentInfo) -> Self {
        Self {
            name: info.name,
            component_type: info.component_type,
            version: info.version,
            capabilities: info.capabilities,
        }
    }
}

impl MetadataView {
    pub fn of(context: &ApiContext) -> Self {
        let sidecar = &context.sidecar;
        // Dapr keeps runtime facts in `extended`; the ports let tests that start sidecars on
        // port 0 discover where the APIs listen.
        let extended = BTreeMap::from([
            (
                "daprRuntimeVersion".to_string(),
                sidecar.runtime_version.clone(),
            ),
            ("daprHttpPort".to_string(), sidecar.http_port.to_string()),
            ("daprGrpcPort".to_string(), sidecar.grpc_port.to_string()),
        ]);
        Self {
            id: sidecar.app_id.clone(),
            runtime_version: sidecar.runtime_version.clone(),
            enabled_features: Vec::new(),
            actors: Vec::new(),
            components: context
                .registry
                .components()
                .into_iter()
                .map(ComponentView::from)
                .collect(),
            extended,
            subscriptions: Vec::new(),
            http_endpoints: Vec::new(),
            app_connection_properties: AppConnectionView {
                port: sidecar.app_port,
                protocol: sidecar.app_protocol.clone(),
                channel_address: "127.0.0.1".to_string(),
            },
        }
    }
}
