//! Helpers for service-invocation tests: small versioned HTTP apps behind their own sidecars,
//! and xDS resources written in Envoy's proto3 JSON.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use outrigger_runtime::config::XdsSource;
use outrigger_runtime::{Config, RunningSidecar};
use serde_json::{Value, json};

/// A test app that answers every request with its version and what it received.
///
/// - `/sleep/{ms}…` answers after `ms` milliseconds;
/// - `/status/{code}…` answers with that status;
/// - otherwise it answers with [`VersionApp::set_status`]'s status (200 at first).
#[derive(Clone)]
pub struct VersionApp {
    pub version: &'static str,
    pub port: u16,
    pub requests: Arc<AtomicU64>,
    status: Arc<AtomicU16>,
}

impl VersionApp {
    pub async fn start(version: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind app");
        let port = listener.local_addr().expect("app address").port();
        let app = Self {
            version,
            port,
            requests: Arc::new(AtomicU64::new(0)),
            status: Arc::new(AtomicU16::new(200)),
        };
        let router = Router::new().fallback(answer).with_state(app.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.expect("app serves");
        });
        app
    }

    /// The status every ordinary request gets from now on.
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn answer(State(app): State<VersionApp>, request: Request) -> Response {
    // The sidecar's own subscription discovery is not an invocation.
    if request.uri().path() == "/dapr/subscribe" {
        return (StatusCode::OK, "[]").into_response();
    }
    app.requests.fetch_add(1, Ordering::SeqCst);
    let path = request.uri().path().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(String::new, |path| path.as_str().to_string());
    let method = request.method().to_string();
    let headers: serde_json::Map<String, Value> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
            )
        })
        .collect();
    let body = axum::body::to_bytes(request.into_body(), 16 << 20)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let mut status =
        StatusCode::from_u16(app.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next()) {
        (Some("sleep"), Some(ms)) => {
            let ms: u64 = ms.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        (Some("status"), Some(code)) => {
            status = code
                .parse()
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::OK);
        }
        _ => {}
    }
    let reply = json!({
        "version": app.version,
        "method": method,
        "path": path_and_query,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    (status, [("x-app-version", app.version)], reply.to_string()).into_response()
}

/// A sidecar for `app_id` in front of `app_port` (if any), routed by `xds`.
pub async fn start_sidecar(app_id: &str, app_port: Option<u16>, xds: XdsSource) -> RunningSidecar {
    let mut config = Config::for_test(app_id);
    config.app_port = app_port;
    config.xds = xds;
    crate::start(config).await
}

/// Waits until the sidecar's admin `/ready` answers 200.
pub async fn wait_ready(sidecar: &RunningSidecar, timeout: Duration) -> bool {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        let ready = http
            .get(format!("http://{}/ready", sidecar.admin_address))
            .send()
            .await
            .is_ok_and(|response| response.status() == reqwest::StatusCode::OK);
        if ready {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A `DiscoveryResponse` in proto3 JSON holding `resources`.
pub fn discovery_response(version: &str, resources: Vec<Value>) -> Value {
    json!({ "versionInfo": version, "resources": resources })
}

/// A STATIC cluster whose endpoints are peer sidecars' mesh ports.
pub fn static_cluster(name: &str, endpoints: &[SocketAddr], extra: Value) -> Value {
    let lb_endpoints: Vec<Value> = endpoints
        .iter()
        .map(|address| {
            json!({ "endpoint": { "address": { "socketAddress": {
                "address": address.ip().to_string(),
                "portValue": address.port(),
            }}}})
        })
        .collect();
    let mut cluster = json!({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": "STATIC",
        "connectTimeout": "1s",
        "loadAssignment": { "clusterName": name, "endpoints": [{ "lbEndpoints": lb_endpoints }] },
    });
    merge(&mut cluster, extra);
    cluster
}

/// The route configuration `outrigger` with one virtual host for `app_id`.
pub fn route_config(app_id: &str, routes: Vec<Value>) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": "outrigger",
        "virtualHosts": [{
            "name": app_id,
            "domains": [app_id, format!("{app_id}.default.svc.cluster.local")],
            "routes": routes,
        }],
    })
}

/// Adds `extra`'s keys to `target` (objects only; `extra` wins).
pub fn merge(target: &mut Value, extra: Value) {
    if let (Some(target), Value::Object(extra)) = (target.as_object_mut(), extra) {
        for (key, value) in extra {
            target.insert(key, value);
        }
    }
}

/// Writes `response` as an `--xds-file`.
pub fn write_xds_file(path: &std::path::Path, response: &Value) {
    let text = serde_json::to_string_pretty(response).expect("JSON");
    // Write then rename, so the watcher never reads half a file.
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write xDS file");
    std::fs::rename(&temporary, path).expect("rename xDS file");
}

/// Invokes `app_id` through `sidecar`'s HTTP API; returns status, `x-app-version`, body.
pub async fn invoke(
    http: &reqwest::Client,
    sidecar: &RunningSidecar,
    app_id: &str,
    method_path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let mut request = http.get(format!(
        "http://{}/v1.0/invoke/{app_id}/method/{}",
        sidecar.http_address,
        method_path.trim_start_matches('/')
    ));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let version = response
                .headers()
                .get("x-app-version")
                .and_then(|value| value.to_str().ok())
                .map(str::to_string);
            let body = response.text().await.unwrap_or_default();
            (status, version, body)
        }
        Err(error) => (0, None, error.to_string()),
    }
}
