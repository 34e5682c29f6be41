//! Route and cluster features seen end to end from a caller sidecar: EDS over ADS, request
//! mirroring, header mutations and path / host rewrites, redirects, RING_HASH with a header
//! hash policy, the admin pages, and which statuses a retry policy retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use outrigger_e2e::mesh::{
    Answer, Backend, admin_clusters, ads_resources, discovery_response, eventually, invoke_with,
    prefix_route, route_config, start_file_caller, start_sidecar, static_cluster, wait_ready,
};
use outrigger_runtime::RunningSidecar;
use outrigger_runtime::config::XdsSource;
use outrigger_test_harness::TestAdsServer;
use reqwest::Method;
use serde_json::{Value, json};

const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const ENDPOINT_TYPE: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const WAIT: Duration = Duration::from_secs(5);

async fn get(http: &reqwest::Client, caller: &RunningSidecar, path: &str) -> Answer {
    invoke_with(http, caller, Method::GET, "reviews", path, &[], None).await
}

/// Versions answering `calls` sequential calls; failures are counted as `status N`.
async fn versions(
    http: &reqwest::Client,
    caller: &RunningSidecar,
    headers: &[(&str, &str)],
    calls: usize,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..calls {
        let answer = invoke_with(
            http,
            caller,
            Method::GET,
            "reviews",
            "/reviews/1",
            headers,
            None,
        )
        .await;
        let key = match (answer.status, answer.version()) {
            (200, Some(version)) => version.to_string(),
            (status, _) => format!("status {status}"),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// One request an [`Recorder`] app received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Every value of every header, in order.
    headers: HashMap<String, Vec<String>>,
    body: String,
}

/// A test app that records every request (all values of repeated headers included) and
/// answers with a fixed status, the header `x-app-secret`, and what it received as JSON.
#[derive(Clone)]
struct Recorder {
    port: u16,
    status: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn start(status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let recorder = Self {
            port: listener.local_addr().expect("recorder address").port(),
            status,
            seen: Arc::default(),
        };
        let router = Router::new().fallback(record).with_state(recorder.clone());
        tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("recorder serves");
        });
        recorder
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("recorder log").clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().expect("recorder log").len()
    }
}

async fn record(State(recorder): State<Recorder>, request: Request) -> Response {
    // The sidecar's own discovery calls are not invocations.
    if request.uri().path().starts_with("/dapr/") {
        return (StatusCode::OK, "[]").into_response();
    }
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(String::new, |path| path.as_str().to_string());
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in request.headers() {
        headers
            .entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = axum::body::to_bytes(request.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let seen = Seen {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let reply = json!({
        "method": seen.method,
        "path": seen.path,
        "headers": seen.headers,
        "body": seen.body,
    });
    recorder.seen.lock().expect("recorder log").push(seen);
    let status = StatusCode::from_u16(recorder.status).unwrap_or(StatusCode::OK);
    (
        status,
        [("x-app-version", "recorder"), ("x-app-secret", "s3cret")],
        reply.to_string(),
    )
        .into_response()
}

/// A [`Recorder`] behind its own `reviews` sidecar.
struct RecorderBackend {
    app: Recorder,
    sidecar: RunningSidecar,
}

impl RecorderBackend {
    async fn start(status: u16) -> Self {
        let app = Recorder::start(status).await;
        let sidecar = start_sidecar("reviews", Some(app.port), XdsSource::None).await;
        Self { app, sidecar }
    }
}

/// The `ClusterLoadAssignment` `name` with `endpoints` (peer sidecars' mesh ports).
fn assignment(name: &str, endpoints: &[std::net::SocketAddr]) -> Value {
    let lb_endpoints: Vec<Value> = endpoints
        .iter()
        .map(|address| {
            json!({ "endpoint": { "address": { "socketAddress": {
                "address": address.ip().to_string(),
                "portValue": address.port(),
            }}}})
        })
        .collect();
    json!({
        "@type": ENDPOINT_TYPE,
        "clusterName": name,
        "endpoints": [{ "lbEndpoints": lb_endpoints }],
    })
}

/// Cluster `reviews` of type EDS, fed by the assignment `reviews-eds`.
fn eds_cluster() -> Value {
    json!({
        "@type": CLUSTER_TYPE,
        "name": "reviews",
        "type": "EDS",
        "connectTimeout": "1s",
        "edsClusterConfig": { "edsConfig": { "ads": {} }, "serviceName": "reviews-eds" },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eds_over_ads_spreads_over_the_assignment_and_follows_its_updates() {
    let v1 = Backend::start("reviews", "v1").await;
    let v2 = Backend::start("reviews", "v2").await;
    let server = TestAdsServer::start().await;
    let snapshot = |endpoints: &[std::net::SocketAddr]| {
        ads_resources(&discovery_response(
            "unused",
            vec![
                eds_cluster(),
                assignment("reviews-eds", endpoints),
                route_config("reviews", vec![prefix_route("/", "reviews", json!({}))]),
            ],
        ))
    };
    server.set_resources("1", snapshot(&[v1.mesh(), v2.mesh()]));
    let caller = start_sidecar(
        "productpage",
        None,
        XdsSource::Ads(server.address().to_string()),
    )
    .await;
    assert!(wait_ready(&caller, WAIT).await, "{:#?}", server.acks());
    // The sidecar asks for the assignment by the cluster's `serviceName`, not its name.
    server
        .wait_for(
            |record| {
                record.type_url == ENDPOINT_TYPE
                    && record.resource_names == ["reviews-eds"]
                    && record.version_info == "1"
                    && record.is_ack()
            },
            WAIT,
        )
        .await
        .expect("the assignment reviews-eds is subscribed to and ACKed");

    let http = reqwest::Client::new();
    let counts = versions(&http, &caller, &[], 40).await;
    assert_eq!(
        counts.values().sum::<usize>(),
        counts.get("v1").copied().unwrap_or(0) + counts.get("v2").copied().unwrap_or(0),
        "some calls failed: {counts:?}"
    );
    assert!(
        counts.get("v1").copied().unwrap_or(0) >= 10
            && counts.get("v2").copied().unwrap_or(0) >= 10,
        "round robin over both EDS endpoints: {counts:?}"
    );
    let endpoints = admin_clusters(&http, &caller).await;
    let reviews = endpoints["cluster_statuses"]
        .as_array()
        .and_then(|clusters| clusters.iter().find(|cluster| cluster["name"] == "reviews"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        reviews["endpoints"].as_array().map(Vec::len),
        Some(2),
        "{endpoints:#}"
    );

    // Only v2 is left in the assignment.
    server.set_resources("2", snapshot(&[v2.mesh()]));
    server
        .wait_for(
            |record| {
                record.type_url == ENDPOINT_TYPE && record.version_info == "2" && record.is_ack()
            },
            WAIT,
        )
        .await
        .expect("the new assignment is ACKed");
    assert!(
        eventually(WAIT, || async {
            versions(&http, &caller, &[], 5).await.get("v2") == Some(&5)
        })
        .await,
        "traffic did not move to v2"
    );
    let v1_before = v1.app.request_count();
    let counts = versions(&http, &caller, &[], 40).await;
    assert_eq!(counts.get("v2"), Some(&40), "{counts:?}");
    assert_eq!(
        v1.app.request_count(),
        v1_before,
        "v1 still got calls after it left the assignment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_requests_reach_the_shadow_whose_answer_is_ignored() {
    let primary = Backend::start("reviews", "primary").await;
    let shadow = RecorderBackend::start(500).await;
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[primary.mesh()], json!({})),
            static_cluster("shadow", &[shadow.sidecar.mesh_address], json!({})),
            route_config(
                "reviews",
                vec![prefix_route(
                    "/",
                    "reviews",
                    json!({ "requestMirrorPolicies": [{ "cluster": "shadow" }] }),
                )],
            ),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    for call in 0..20 {
        let answer = get(&http, &caller, &format!("/mirror/{call}?q={call}")).await;
        assert_eq!(answer.status, 200, "call {call}: {answer:?}");
        assert_eq!(answer.version(), Some("primary"), "call {call}: {answer:?}");
    }
    for call in 0..5 {
        let body = format!("order {call}");
        let answer = invoke_with(
            &http,
            &caller,
            Method::POST,
            "reviews",
            "/orders",
            &[("x-order", "yes")],
            Some(body.clone().into_bytes()),
        )
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.version(), Some("primary"), "{answer:?}");
        assert_eq!(answer.json()["body"], body.as_str(), "{answer:?}");
    }
    assert_eq!(primary.app.request_count(), 25);
    assert!(
        eventually(WAIT, || async { shadow.app.count() >= 25 }).await,
        "the shadow received {} of 25 copies",
        shadow.app.count()
    );
    let seen = shadow.app.seen();
    assert_eq!(seen.len(), 25, "the shadow got extra requests: {seen:#?}");
    for call in 0..20 {
        let path = format!("/mirror/{call}?q={call}");
        assert!(
            seen.iter()
                .any(|request| request.method == "GET" && request.path == path),
            "no copy of {path}: {seen:#?}"
        );
    }
    for call in 0..5 {
        let body = format!("order {call}");
        assert!(
            seen.iter().any(|request| request.method == "POST"
                && request.path == "/orders"
                && request.body == body
                && request.headers.get("x-order") == Some(&vec!["yes".to_string()])),
            "no copy of POST {body:?} with its header: {seen:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_header_mutations_and_path_rewrites_reach_the_app() {
    let backend = RecorderBackend::start(200).await;
    let mut headers_route = prefix_route("/headers", "reviews", json!({}));
    headers_route["requestHeadersToAdd"] = json!([
        { "header": { "key": "x-replaced", "value": "mesh" }, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD" },
        { "header": { "key": "x-appended", "value": "mesh" }, "appendAction": "APPEND_IF_EXISTS_OR_ADD" },
        { "header": { "key": "x-default", "value": "mesh" } },
        { "header": { "key": "x-legacy-replaced", "value": "mesh" }, "append": false },
        { "header": { "key": "x-legacy-appended", "value": "mesh" }, "append": true },
        { "header": { "key": "x-new", "value": "mesh" }, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD" },
        // Envoy's command operators: filled in per request; `%%` is a literal `%`.
        { "header": { "key": "x-client-ip", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" } },
        { "header": { "key": "x-kept-copy", "value": "was %REQ(x-kept)%" } },
        { "header": { "key": "x-share", "value": "100%%" } },
    ]);
    headers_route["requestHeadersToRemove"] = json!(["x-remove-me"]);
    headers_route["responseHeadersToAdd"] = json!([
        { "header": { "key": "x-route", "value": "headers" }, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD" },
    ]);
    headers_route["responseHeadersToRemove"] = json!(["x-app-secret"]);
    let regex_route = json!({
        "match": { "safeRegex": { "regex": "/items/[0-9]+" } },
        "route": {
            "cluster": "reviews",
            "regexRewrite": {
                "pattern": { "regex": "^/items/([0-9]+)$" },
                "substitution": "/catalog/\\1",
            },
        },
    });
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[backend.sidecar.mesh_address], json!({})),
            route_config(
                "reviews",
                vec![
                    headers_route,
                    prefix_route("/v1/", "reviews", json!({ "prefixRewrite": "/v2/" })),
                    regex_route,
                    prefix_route("/", "reviews", json!({})),
                ],
            ),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    let answer = invoke_with(
        &http,
        &caller,
        Method::GET,
        "reviews",
        "/headers",
        &[
            ("x-replaced", "client"),
            ("x-appended", "client"),
            ("x-default", "client"),
            ("x-legacy-replaced", "client"),
            ("x-legacy-appended", "client"),
            ("x-remove-me", "client"),
            ("x-kept", "client"),
        ],
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = &answer.json()["headers"];
    let expected = [
        ("x-replaced", json!(["mesh"])),
        ("x-appended", json!(["client", "mesh"])),
        // Envoy's default `append_action` is APPEND_IF_EXISTS_OR_ADD.
        ("x-default", json!(["client", "mesh"])),
        ("x-legacy-replaced", json!(["mesh"])),
        ("x-legacy-appended", json!(["client", "mesh"])),
        ("x-new", json!(["mesh"])),
        ("x-kept", json!(["client"])),
        ("x-remove-me", Value::Null),
        ("x-client-ip", json!(["127.0.0.1"])),
        ("x-kept-copy", json!(["was client"])),
        ("x-share", json!(["100%"])),
    ];
    for (name, values) in expected {
        assert_eq!(seen[name], values, "{name}: the app saw {seen:#}");
    }
    assert_eq!(answer.header("x-route"), Some("headers"), "{answer:?}");
    assert_eq!(answer.header("x-app-secret"), None, "{answer:?}");
    // Another route's answer is not mutated.
    let plain = get(&http, &caller, "/plain").await;
    assert_eq!(plain.status, 200, "{plain:?}");
    assert_eq!(plain.header("x-route"), None, "{plain:?}");
    assert_eq!(plain.header("x-app-secret"), Some("s3cret"), "{plain:?}");

    let rewritten = get(&http, &caller, "/v1/items/7?full=true&x=1").await;
    assert_eq!(rewritten.status, 200, "{rewritten:?}");
    assert_eq!(
        rewritten.json()["path"],
        "/v2/items/7?full=true&x=1",
        "{rewritten:?}"
    );

    let regex = get(&http, &caller, "/items/42?q=a").await;
    assert_eq!(regex.status, 200, "{regex:?}");
    assert_eq!(regex.json()["path"], "/catalog/42?q=a", "{regex:?}");
    // The regex route does not match this one; the catch-all sends it unchanged.
    let unchanged = get(&http, &caller, "/items/abc").await;
    assert_eq!(unchanged.json()["path"], "/items/abc", "{unchanged:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rewrite_literal_is_the_host_the_app_sees() {
    let backend = RecorderBackend::start(200).await;
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[backend.sidecar.mesh_address], json!({})),
            route_config(
                "reviews",
                vec![
                    prefix_route(
                        "/host",
                        "reviews",
                        json!({ "hostRewriteLiteral": "reviews.internal" }),
                    ),
                    prefix_route(
                        "/badhost",
                        "reviews",
                        json!({ "hostRewriteLiteral": "bad host" }),
                    ),
                    prefix_route("/", "reviews", json!({})),
                ],
            ),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    let plain = get(&http, &caller, "/plain").await;
    assert_eq!(plain.status, 200, "{plain:?}");
    let rewritten = get(&http, &caller, "/host").await;
    assert_eq!(rewritten.status, 200, "{rewritten:?}");
    // Envoy: "during forwarding, the host header will be swapped with this value".
    assert_eq!(
        rewritten.json()["headers"]["host"],
        json!(["reviews.internal"]),
        "with hostRewriteLiteral the app saw {}; without it {}",
        rewritten.json()["headers"]["host"],
        plain.json()["headers"]["host"]
    );
    // A rewrite that makes no valid URI is the caller's 400, naming the URI; nothing is sent.
    let unusable = get(&http, &caller, "/badhost").await;
    assert_eq!(unusable.status, 400, "{unusable:?}");
    assert!(
        unusable.json()["message"].as_str().is_some_and(
            |message| message.contains("unusable upstream URI \"http://bad host/badhost\"")
        ),
        "{unusable:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_answers_302_with_the_new_location_without_calling_the_app() {
    let backend = Backend::start("reviews", "v1").await;
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[backend.mesh()], json!({})),
            route_config(
                "reviews",
                vec![
                    json!({
                        "match": { "prefix": "/old" },
                        "redirect": { "pathRedirect": "/new", "responseCode": "FOUND" },
                    }),
                    prefix_route("/", "reviews", json!({})),
                ],
            ),
        ],
    )
    .await;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let answer = get(&http, &caller, "/old/page").await;
    assert_eq!(answer.status, 302, "{answer:?}");
    let location = answer.header("location").unwrap_or_default();
    assert!(location.ends_with("/new"), "location {location:?}");
    assert_eq!(location, "http://reviews/new", "{answer:?}");
    assert_eq!(backend.app.request_count(), 0, "the app was called");
    // Other paths still reach the app.
    let answer = get(&http, &caller, "/other").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.version(), Some("v1"), "{answer:?}");
}

/// Three `reviews` versions behind a RING_HASH cluster whose one route hashes with `policy`.
async fn ring_hash_caller(policy: Value) -> (Vec<Backend>, tempfile::TempDir, RunningSidecar) {
    let mut backends = Vec::new();
    for version in ["v1", "v2", "v3"] {
        backends.push(Backend::start("reviews", version).await);
    }
    let endpoints: Vec<_> = backends.iter().map(Backend::mesh).collect();
    let (dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &endpoints, json!({ "lbPolicy": "RING_HASH" })),
            route_config(
                "reviews",
                vec![prefix_route(
                    "/",
                    "reviews",
                    json!({ "hashPolicy": [policy] }),
                )],
            ),
        ],
    )
    .await;
    (backends, dir, caller)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_on_a_header_keeps_each_user_on_one_endpoint() {
    let (_backends, _dir, caller) =
        ring_hash_caller(json!({ "header": { "headerName": "x-user" } })).await;

    let http = reqwest::Client::new();
    let mut placed: BTreeMap<String, String> = BTreeMap::new();
    for user in 0..8 {
        let user = format!("user-{user}");
        let counts = versions(&http, &caller, &[("x-user", &user)], 20).await;
        assert_eq!(
            counts.len(),
            1,
            "{user} was spread over several endpoints: {counts:?}"
        );
        let (version, _) = counts.into_iter().next().expect("one version");
        assert!(version.starts_with('v'), "{user}: {version}");
        placed.insert(user, version);
    }
    let used: std::collections::BTreeSet<&String> = placed.values().collect();
    assert!(
        used.len() > 1,
        "every user landed on the same endpoint: {placed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_on_the_source_ip_keeps_the_app_on_one_endpoint() {
    let (_backends, _dir, caller) =
        ring_hash_caller(json!({ "connectionProperties": { "sourceIp": true } })).await;

    // The app always calls from 127.0.0.1: one hash, one endpoint. Without the caller's
    // address the policy would have nothing to hash and the ring would spread the calls.
    let counts = versions(&reqwest::Client::new(), &caller, &[], 60).await;
    assert_eq!(counts.len(), 1, "spread over several endpoints: {counts:?}");
}

/// `/stats` as a map.
async fn stats(http: &reqwest::Client, sidecar: &RunningSidecar) -> HashMap<String, u64> {
    let text = http
        .get(format!("http://{}/stats", sidecar.admin_address))
        .send()
        .await
        .expect("admin /stats")
        .text()
        .await
        .expect("admin /stats text");
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(": ")?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

async fn config_dump(http: &reqwest::Client, sidecar: &RunningSidecar) -> Value {
    http.get(format!("http://{}/config_dump", sidecar.admin_address))
        .send()
        .await
        .expect("admin /config_dump")
        .json()
        .await
        .expect("admin /config_dump JSON")
}

/// The `configs` entry of `/config_dump` with this `@type`.
fn dump_section<'a>(dump: &'a Value, admin_type: &str) -> &'a Value {
    dump["configs"]
        .as_array()
        .and_then(|configs| {
            configs
                .iter()
                .find(|config| config["@type"] == format!("type.googleapis.com/{admin_type}"))
        })
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_pages_show_pushed_config_stats_and_endpoints() {
    let v1 = Backend::start("reviews", "v1").await;
    let v2 = Backend::start("reviews", "v2").await;
    let server = TestAdsServer::start().await;
    let resources = |clusters: Vec<Value>| {
        let mut resources = clusters;
        resources.push(route_config(
            "reviews",
            vec![prefix_route("/", "reviews", json!({}))],
        ));
        ads_resources(&discovery_response("unused", resources))
    };
    server.set_resources(
        "v-7",
        resources(vec![static_cluster("reviews", &[v1.mesh()], json!({}))]),
    );
    let caller = start_sidecar(
        "productpage",
        None,
        XdsSource::Ads(server.address().to_string()),
    )
    .await;
    assert!(wait_ready(&caller, WAIT).await, "{:#?}", server.acks());
    server
        .wait_for(
            |record| {
                record.type_url == ROUTE_TYPE && record.version_info == "v-7" && record.is_ack()
            },
            WAIT,
        )
        .await
        .expect("the routes are ACKed");
    let http = reqwest::Client::new();

    let dump = config_dump(&http, &caller).await;
    let clusters = dump_section(&dump, "envoy.admin.v3.ClustersConfigDump");
    assert_eq!(clusters["version_info"], "v-7", "{dump:#}");
    let active = clusters["dynamic_active_clusters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(active.len(), 1, "{dump:#}");
    assert_eq!(active[0]["version_info"], "v-7", "{dump:#}");
    assert_eq!(active[0]["cluster"]["name"], "reviews", "{dump:#}");
    assert_eq!(active[0]["cluster"]["@type"], CLUSTER_TYPE, "{dump:#}");
    let routes = dump_section(&dump, "envoy.admin.v3.RoutesConfigDump");
    let dynamic_routes = routes["dynamic_route_configs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(dynamic_routes.len(), 1, "{dump:#}");
    assert_eq!(dynamic_routes[0]["version_info"], "v-7", "{dump:#}");
    assert_eq!(
        dynamic_routes[0]["route_config"]["name"], "outrigger",
        "{dump:#}"
    );
    assert_eq!(
        dynamic_routes[0]["route_config"]["@type"], ROUTE_TYPE,
        "{dump:#}"
    );
    // As in Envoy's dump, field names are the proto ones (snake_case).
    assert_eq!(
        dynamic_routes[0]["route_config"]["virtual_hosts"][0]["name"], "reviews",
        "{dump:#}"
    );

    // `/stats` counts each call by cluster and status class.
    let before = stats(&http, &caller).await;
    let counter = |stats: &HashMap<String, u64>, name: &str| stats.get(name).copied().unwrap_or(0);
    for _ in 0..5 {
        let answer = get(&http, &caller, "/reviews/1").await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let answer = get(&http, &caller, "/status/503").await;
    assert_eq!(answer.status, 503, "{answer:?}");
    let after = stats(&http, &caller).await;
    for (name, grew_by) in [
        ("cluster.reviews.upstream_rq_2xx", 5),
        ("cluster.reviews.upstream_rq_5xx", 1),
        ("cluster.reviews.upstream_rq_total", 6),
    ] {
        assert_eq!(
            counter(&after, name),
            counter(&before, name) + grew_by,
            "{name}: before {before:?}, after {after:?}"
        );
    }

    // `/clusters` in Envoy's text form.
    let text = http
        .get(format!("http://{}/clusters", caller.admin_address))
        .send()
        .await
        .expect("admin /clusters")
        .text()
        .await
        .expect("admin /clusters text");
    let prefix = format!("reviews::{}::", v1.mesh());
    let health = format!("{prefix}health::");
    assert!(
        text.lines()
            .any(|line| line == format!("{health}HEALTHY") || line == format!("{health}UNKNOWN")),
        "no {health}HEALTHY|UNKNOWN line in:\n{text}"
    );
    assert!(
        text.lines()
            .any(|line| line == format!("{prefix}successes::5")),
        "no {prefix}successes::5 line in:\n{text}"
    );

    // A new push: a second cluster, a new version everywhere.
    server.set_resources(
        "v-8",
        resources(vec![
            static_cluster("reviews", &[v1.mesh()], json!({})),
            static_cluster("reviews-canary", &[v2.mesh()], json!({})),
        ]),
    );
    server
        .wait_for(
            |record| {
                record.type_url == CLUSTER_TYPE && record.version_info == "v-8" && record.is_ack()
            },
            WAIT,
        )
        .await
        .expect("the clusters are ACKed");
    let dump = config_dump(&http, &caller).await;
    let clusters = dump_section(&dump, "envoy.admin.v3.ClustersConfigDump");
    assert_eq!(clusters["version_info"], "v-8", "{dump:#}");
    let mut names: Vec<&str> = clusters["dynamic_active_clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["cluster"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["reviews", "reviews-canary"], "{dump:#}");
    let text = http
        .get(format!("http://{}/clusters", caller.admin_address))
        .send()
        .await
        .expect("admin /clusters")
        .text()
        .await
        .expect("admin /clusters text");
    assert!(
        text.lines()
            .any(|line| line.starts_with(&format!("reviews-canary::{}::health::", v2.mesh()))),
        "reviews-canary missing from:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_status_codes_retry_a_409_elsewhere() {
    let good = Backend::start("reviews", "good").await;
    let conflict = Backend::start("reviews", "conflict").await;
    conflict.app.set_status(409);
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[good.mesh(), conflict.mesh()], json!({})),
            route_config(
                "reviews",
                vec![prefix_route(
                    "/",
                    "reviews",
                    json!({ "retryPolicy": {
                        "retryOn": "retriable-status-codes",
                        "retriableStatusCodes": [409],
                        "numRetries": 2,
                    }}),
                )],
            ),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    for call in 0..50 {
        let answer = get(&http, &caller, "/reviews/1").await;
        assert_eq!(answer.status, 200, "call {call}: {answer:?}");
        assert_eq!(answer.version(), Some("good"), "call {call}: {answer:?}");
    }
    // Round robin sends about half of the first tries to the conflicting endpoint.
    assert!(
        conflict.app.request_count() >= 15,
        "the 409 endpoint saw {} requests: the retries were not exercised",
        conflict.app.request_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_error_retries_503_but_not_500() {
    let good = Backend::start("reviews", "good").await;
    let bad = Backend::start("reviews", "bad").await;
    bad.app.set_status(500);
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[good.mesh(), bad.mesh()], json!({})),
            route_config(
                "reviews",
                vec![prefix_route(
                    "/",
                    "reviews",
                    json!({ "retryPolicy": { "retryOn": "gateway-error", "numRetries": 2 } }),
                )],
            ),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    let mut failed: u64 = 0;
    for call in 0..50 {
        let answer = get(&http, &caller, "/reviews/1").await;
        match (answer.status, answer.version()) {
            (500, Some("bad")) => failed += 1,
            (200, Some("good")) => {}
            _ => panic!("call {call}: {answer:?}"),
        }
    }
    assert!(failed >= 1, "no 500 reached the caller in 50 calls");
    // Each 500 was answered by a single try: no retry went anywhere.
    assert_eq!(bad.app.request_count(), failed);
    assert_eq!(good.app.request_count(), 50 - failed);

    // A 503 is a gateway error: retried on the other endpoint.
    bad.app.set_status(503);
    for call in 0..50 {
        let answer = get(&http, &caller, "/reviews/1").await;
        assert_eq!(answer.status, 200, "call {call}: {answer:?}");
        assert_eq!(answer.version(), Some("good"), "call {call}: {answer:?}");
    }
    assert!(
        bad.app.request_count() >= failed + 15,
        "the 503 endpoint saw {} requests in all: the retries were not exercised",
        bad.app.request_count()
    );
}
