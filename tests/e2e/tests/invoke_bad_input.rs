//! Invocations the mesh must refuse or fail cleanly: unknown app ids and paths, malformed
//! invoke paths, encoded path traversal, oversized bodies, and upstreams that cannot serve.

use outrigger_e2e::mesh::{
    Backend, invoke_with, prefix_route, raw_get, raw_request, route_config, sidecar_config,
    start_file_caller_with, static_cluster,
};
use outrigger_runtime::RunningSidecar;
use outrigger_runtime::config::XdsSource;
use reqwest::Method;
use serde_json::{Value, json};

/// The caller refuses bodies above this (`--max-body-size`), small to keep the test fast.
const MAX_BODY: usize = 1024;

/// A caller whose `reviews` routes cover every case below; keep the directory alive.
async fn caller(backend: &Backend) -> (tempfile::TempDir, RunningSidecar) {
    let mut sick = static_cluster("sick", &[backend.mesh()], json!({}));
    sick["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["healthStatus"] = json!("UNHEALTHY");
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let routes: Vec<Value> = vec![
        json!({ "match": { "prefix": "/admin" }, "directResponse": { "status": 403 } }),
        prefix_route("/public", "v1", json!({})),
        prefix_route("/api", "v1", json!({})),
        prefix_route("/sick", "sick", json!({})),
        prefix_route("/closed", "closed", json!({})),
    ];
    let mut config = sidecar_config("productpage", None, XdsSource::None);
    config.max_body_size = MAX_BODY;
    start_file_caller_with(
        config,
        vec![
            static_cluster("v1", &[backend.mesh()], json!({})),
            sick,
            static_cluster("closed", &[closed_port], json!({})),
            route_config("reviews", routes),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_app_and_unmatched_path_answer_no_route() {
    let backend = Backend::start("reviews", "v1").await;
    let (_dir, caller) = caller(&backend).await;
    let http = reqwest::Client::new();

    let answer = invoke_with(&http, &caller, Method::GET, "ratings", "/api/1", &[], None).await;
    assert_eq!(answer.status, 500, "{answer:?}");
    assert_eq!(
        answer.json()["errorCode"],
        "ERR_DIRECT_INVOKE",
        "{answer:?}"
    );
    let message = answer.json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("ratings"), "{answer:?}");
    assert_eq!(answer.flags(), "NR", "{answer:?}");

    let answer = invoke_with(
        &http,
        &caller,
        Method::GET,
        "reviews",
        "/nothing",
        &[],
        None,
    )
    .await;
    assert_eq!(answer.status, 404, "{answer:?}");
    assert_eq!(
        answer.json()["errorCode"],
        "ERR_DIRECT_INVOKE",
        "{answer:?}"
    );
    assert_eq!(answer.flags(), "NR", "{answer:?}");
    assert_eq!(backend.app.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_invoke_paths_answer_400() {
    let backend = Backend::start("reviews", "v1").await;
    let (_dir, caller) = caller(&backend).await;
    for path in [
        "/v1.0/invoke/reviews",
        "/v1.0/invoke/reviews/method/",
        "/v1.0/invoke//method/x",
    ] {
        let answer = raw_get(caller.http_address, path).await;
        assert_eq!(answer.status, 400, "{path}: {answer:?}");
        assert_eq!(
            answer.json()["errorCode"],
            "ERR_MALFORMED_REQUEST",
            "{path}: {answer:?}"
        );
    }
    assert_eq!(backend.app.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_traversal_is_normalised_before_matching() {
    let backend = Backend::start("reviews", "v1").await;
    let (_dir, caller) = caller(&backend).await;

    // Sanity: the direct response guards `/admin`.
    let answer = raw_get(caller.http_address, "/v1.0/invoke/reviews/method/admin").await;
    assert_eq!(answer.status, 403, "{answer:?}");

    // `%2e%2e` is `..`: the path is `/admin`, so the `/public` route must not match it.
    let answer = raw_get(
        caller.http_address,
        "/v1.0/invoke/reviews/method/public/%2e%2e/admin",
    )
    .await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(
        backend.app.request_count(),
        0,
        "the traversal reached the app"
    );

    // `%2F` is not a separator: `..%2Fadmin` is one segment under `/public`.
    let answer = raw_get(
        caller.http_address,
        "/v1.0/invoke/reviews/method/public/..%2Fadmin",
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.version(), Some("v1"), "{answer:?}");
    let seen = answer.json()["path"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(seen.starts_with("/public/"), "the app saw {seen:?}");
    assert!(
        !seen.contains("/admin") || seen.contains("%2F"),
        "the app saw {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_answer_413() {
    let backend = Backend::start("reviews", "v1").await;
    let (_dir, caller) = caller(&backend).await;
    let http = reqwest::Client::new();

    let at_limit = vec![b'a'; MAX_BODY];
    let answer = invoke_with(
        &http,
        &caller,
        Method::POST,
        "reviews",
        "/api/1",
        &[],
        Some(at_limit),
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "a body of exactly the limit is fine: {answer:?}"
    );
    assert_eq!(answer.json()["body"].as_str().map(str::len), Some(MAX_BODY));

    let too_large = vec![b'a'; MAX_BODY + 1];
    let answer = invoke_with(
        &http,
        &caller,
        Method::POST,
        "reviews",
        "/api/1",
        &[],
        Some(too_large.clone()),
    )
    .await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(
        answer.json()["errorCode"],
        "ERR_BODY_TOO_LARGE",
        "{answer:?}"
    );

    // Without a Content-Length (chunked) the limit is found while reading.
    let mut request = format!(
        "POST /v1.0/invoke/reviews/method/api/1 HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        caller.http_address
    )
    .into_bytes();
    for chunk in too_large.chunks(100) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_request(caller.http_address, &request).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(
        answer.json()["errorCode"],
        "ERR_BODY_TOO_LARGE",
        "{answer:?}"
    );
    assert_eq!(
        backend.app.request_count(),
        1,
        "only the body within the limit was delivered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_upstreams_answer_503_with_their_flag() {
    let backend = Backend::start("reviews", "v1").await;
    let (_dir, caller) = caller(&backend).await;
    let http = reqwest::Client::new();

    let answer = invoke_with(&http, &caller, Method::GET, "reviews", "/sick", &[], None).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.flags(), "UH", "{answer:?}");
    assert_eq!(
        answer.json()["errorCode"],
        "ERR_DIRECT_INVOKE",
        "{answer:?}"
    );

    let answer = invoke_with(&http, &caller, Method::GET, "reviews", "/closed", &[], None).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.flags(), "UF", "{answer:?}");
    assert_eq!(
        answer.json()["errorCode"],
        "ERR_DIRECT_INVOKE",
        "{answer:?}"
    );
    assert_eq!(backend.app.request_count(), 0);
}
