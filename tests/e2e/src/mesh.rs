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

/// A sidecar config for `app_id` in front of `app_port` (if any), routed by `xds`, for tests
/// that change more settings before starting it with [`crate::start`].
pub fn sidecar_config(app_id: &str, app_port: Option<u16>, xds: XdsSource) -> Config {
    let mut config = Config::for_test(app_id);
    config.app_port = app_port;
    config.xds = xds;
    config
}

/// The same JSON builders feed ADS: `response` (a proto3-JSON `DiscoveryResponse`) converted to
/// the `Any`s a [`TestAdsServer`](outrigger_test_harness::TestAdsServer) pushes.
pub fn ads_resources(response: &Value) -> Vec<envoy_types::pb::google::protobuf::Any> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("xds.json");
    write_xds_file(&file, response);
    outrigger_xds::file::load_file(&file)
        .expect("the xDS JSON converts")
        .into_iter()
        .flat_map(|(_, resources)| resources)
        .collect()
}

/// A route sending `prefix` to `cluster`, with `extra` merged into its `route` action.
pub fn prefix_route(prefix: &str, cluster: &str, action_extra: Value) -> Value {
    let mut action = json!({ "cluster": cluster });
    merge(&mut action, action_extra);
    json!({ "match": { "prefix": prefix }, "route": action })
}

/// What an invocation answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// `x-app-version`: which app answered.
    pub fn version(&self) -> Option<&str> {
        self.header("x-app-version")
    }

    /// `x-outrigger-response-flags`, or "" when the mesh set none.
    pub fn flags(&self) -> &str {
        self.header("x-outrigger-response-flags").unwrap_or("")
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends `request`; a transport error is status 0 with the error as body.
pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.text().await.unwrap_or_default();
            Answer {
                status,
                headers,
                body,
            }
        }
        Err(error) => Answer {
            status: 0,
            headers: reqwest::header::HeaderMap::new(),
            body: error.to_string(),
        },
    }
}

/// Invokes `app_id` with `method` through `sidecar`'s HTTP API, keeping the whole answer.
pub async fn invoke_with(
    http: &reqwest::Client,
    sidecar: &RunningSidecar,
    method: reqwest::Method,
    app_id: &str,
    method_path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Answer {
    let mut request = http.request(
        method,
        format!(
            "http://{}/v1.0/invoke/{app_id}/method/{}",
            sidecar.http_address,
            method_path.trim_start_matches('/')
        ),
    );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    send(request).await
}

/// Sends `GET {path}` over a raw HTTP/1.1 connection, so the path reaches the sidecar exactly
/// as written: HTTP client libraries resolve `%2e%2e` segments themselves (WHATWG URL rules).
pub async fn raw_get(address: SocketAddr, path: &str) -> Answer {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    raw_request(address, request.as_bytes()).await
}

/// Writes `request` (a whole HTTP/1.1 request, which should say `Connection: close`) and
/// reads the answer until the server closes the connection.
pub async fn raw_request(address: SocketAddr, request: &[u8]) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect for a raw request");
    stream
        .write_all(request)
        .await
        .expect("write a raw request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .expect("read a raw response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let mut headers = reqwest::header::HeaderMap::new();
    let mut chunked = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()),
                reqwest::header::HeaderValue::from_str(value.trim()),
            )
        {
            chunked |= name == reqwest::header::TRANSFER_ENCODING && value == "chunked";
            headers.append(name, value);
        }
    }
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// Decodes a chunked HTTP/1.1 body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `condition` every 20 ms until it holds; `false` if it did not within `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Admin `/clusters?format=json`.
pub async fn admin_clusters(http: &reqwest::Client, sidecar: &RunningSidecar) -> Value {
    http.get(format!(
        "http://{}/clusters?format=json",
        sidecar.admin_address
    ))
    .send()
    .await
    .expect("admin /clusters")
    .json()
    .await
    .expect("admin /clusters JSON")
}

/// A [`VersionApp`] behind its own sidecar (no xDS: it only serves the mesh port).
pub struct Backend {
    pub app: VersionApp,
    pub sidecar: RunningSidecar,
}

impl Backend {
    pub async fn start(app_id: &str, version: &'static str) -> Self {
        let app = VersionApp::start(version).await;
        let sidecar = start_sidecar(app_id, Some(app.port), XdsSource::None).await;
        Self { app, sidecar }
    }

    /// Where callers' clusters reach this backend.
    pub fn mesh(&self) -> SocketAddr {
        self.sidecar.mesh_address
    }
}

/// Starts a caller sidecar `app_id` routed by an `--xds-file` holding `resources`, and waits
/// until it is ready. Keep the returned directory alive as long as the sidecar.
pub async fn start_file_caller(
    app_id: &str,
    resources: Vec<Value>,
) -> (tempfile::TempDir, RunningSidecar) {
    start_file_caller_with(sidecar_config(app_id, None, XdsSource::None), resources).await
}

/// [`start_file_caller`] with a config of the test's own; its `xds` is replaced by the file.
pub async fn start_file_caller_with(
    mut config: Config,
    resources: Vec<Value>,
) -> (tempfile::TempDir, RunningSidecar) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("xds.json");
    write_xds_file(&file, &discovery_response("1", resources));
    config.xds = XdsSource::File(file);
    let caller = crate::start(config).await;
    assert!(
        wait_ready(&caller, Duration::from_secs(5)).await,
        "the caller sidecar became ready"
    );
    (dir, caller)
}
