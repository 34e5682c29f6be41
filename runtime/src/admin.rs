//! The admin port (`--admin-port`, 127.0.0.1 only), in Envoy's shapes: `/config_dump`,
//! `/clusters`, `/stats`, `/ready`.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::watch;

use crate::mesh::Mesh;

#[derive(Clone)]
struct AdminState {
    mesh: Mesh,
    ready: watch::Receiver<bool>,
}

pub fn router(mesh: Mesh, ready: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/ready", get(ready_page))
        .route("/config_dump", get(config_dump))
        .route("/clusters", get(clusters))
        .route("/stats", get(stats))
        .with_state(AdminState { mesh, ready })
}

/// Envoy answers `LIVE` when serving; 503 until the first xDS snapshot and while draining.
async fn ready_page(State(state): State<AdminState>) -> Response {
    if *state.ready.borrow() {
        (StatusCode::OK, "LIVE\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "PRE_INITIALIZING\n").into_response()
    }
}

async fn config_dump(State(state): State<AdminState>) -> Response {
    let dump = match state.mesh.store.lock() {
        Ok(store) => store.config_dump(),
        Err(poisoned) => poisoned.into_inner().config_dump(),
    };
    json(&dump)
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

/// Envoy's text form (`cluster::default_priority::threshold::value`, then the circuit-breaker
/// counts as `cluster::field::value`, then `cluster::address::field::value` per endpoint) or,
/// with `?format=json`, JSON.
async fn clusters(State(state): State<AdminState>, Query(query): Query<FormatQuery>) -> Response {
    let status = state.mesh.clusters.status();
    if query.format.as_deref() == Some("json") {
        let value = serde_json::json!({ "cluster_statuses": status });
        return json(&value);
    }
    let mut text = String::new();
    for cluster in &status {
        let thresholds = cluster.thresholds;
        for (field, count) in [
            ("max_connections", thresholds.max_connections),
            ("max_pending_requests", thresholds.max_pending_requests),
            ("max_requests", thresholds.max_requests),
            ("max_retries", thresholds.max_retries),
        ] {
            let _ = writeln!(text, "{}::default_priority::{field}::{count}", cluster.name);
        }
        for (field, count) in [
            ("connections_active", cluster.connections_active),
            ("pending_active", cluster.pending_active),
            ("requests_active", cluster.requests_active),
            ("retries_active", cluster.retries_active),
        ] {
            let _ = writeln!(text, "{}::{field}::{count}", cluster.name);
        }
        let value = serde_json::to_value(cluster).unwrap_or_default();
        let name = value["name"].as_str().unwrap_or_default();
        for endpoint in value["endpoints"].as_array().into_iter().flatten() {
            let address = endpoint["address"].as_str().unwrap_or_default();
            if let Some(fields) = endpoint.as_object() {
                for (field, field_value) in fields {
                    if field == "address" {
                        continue;
                    }
                    let shown = match field_value {
                        serde_json::Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    let _ = writeln!(text, "{name}::{address}::{field}::{shown}");
                }
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

async fn stats(State(state): State<AdminState>) -> Response {
    let mut text = String::new();
    for (name, value) in state.mesh.stats.snapshot() {
        let _ = writeln!(text, "{name}: {value}");
    }
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

fn json(value: &serde_json::Value) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
