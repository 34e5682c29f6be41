//! What crosses the mesh unchanged and what must not: request method, body, headers and query
//! to the app; status and headers back; API tokens replaced per hop; HTTP proxy mode.

use outrigger_e2e::mesh::{
    VersionApp, invoke_with, prefix_route, route_config, send, sidecar_config,
    start_file_caller_with, static_cluster,
};
use outrigger_runtime::config::XdsSource;
use reqwest::Method;
use serde_json::json;

const CALLER_TOKEN: &str = "caller-secret";
const APP_TOKEN: &str = "reviews-app-secret";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_answers_pass_through_with_tokens_replaced() {
    let app = VersionApp::start("v1").await;
    let mut callee_config = sidecar_config("reviews", Some(app.port), XdsSource::None);
    callee_config.app_api_token = Some(APP_TOKEN.to_string());
    let callee = outrigger_e2e::start(callee_config).await;
    let mut caller_config = sidecar_config("productpage", None, XdsSource::None);
    caller_config.api_token = Some(CALLER_TOKEN.to_string());
    let (_dir, caller) = start_file_caller_with(
        caller_config,
        vec![
            static_cluster("reviews", &[callee.mesh_address], json!({})),
            route_config("reviews", vec![prefix_route("/", "reviews", json!({}))]),
        ],
    )
    .await;
    let http = reqwest::Client::new();

    let answer = invoke_with(
        &http,
        &caller,
        Method::POST,
        "reviews",
        "/orders/7?full=true&note=a%20b",
        &[
            ("dapr-api-token", CALLER_TOKEN),
            ("x-custom", "hello"),
            ("traceparent", TRACEPARENT),
            ("content-type", "application/json"),
            // An app must not be able to steer the sidecars' own hop headers.
            ("x-outrigger-call", "grpc-proxy"),
        ],
        Some(br#"{"quantity":3}"#.to_vec()),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let echo = answer.json();
    assert_eq!(echo["method"], "POST", "{echo:#}");
    assert_eq!(echo["path"], "/orders/7?full=true&note=a%20b", "{echo:#}");
    assert_eq!(echo["body"], r#"{"quantity":3}"#, "{echo:#}");
    let headers = &echo["headers"];
    assert_eq!(headers["x-custom"], "hello", "{echo:#}");
    assert_eq!(headers["traceparent"], TRACEPARENT, "{echo:#}");
    assert_eq!(headers["content-type"], "application/json", "{echo:#}");
    assert_eq!(headers["dapr-caller-app-id"], "productpage", "{echo:#}");
    // The caller's token stays with the caller's sidecar; the app gets its own.
    assert_eq!(headers["dapr-api-token"], APP_TOKEN, "{echo:#}");
    assert!(
        !headers
            .as_object()
            .into_iter()
            .flatten()
            .any(|(name, _)| name.starts_with("x-outrigger-")),
        "{echo:#}"
    );

    // The app's status and headers come back as the app sent them.
    let answer = invoke_with(
        &http,
        &caller,
        Method::GET,
        "reviews",
        "/status/418",
        &[("dapr-api-token", CALLER_TOKEN)],
        None,
    )
    .await;
    assert_eq!(answer.status, 418, "{answer:?}");
    assert_eq!(answer.version(), Some("v1"), "{answer:?}");
    assert_eq!(answer.json()["path"], "/status/418", "{answer:?}");
    assert_eq!(
        answer.flags(),
        "",
        "an app's answer carries no mesh flags: {answer:?}"
    );

    // HTTP proxy mode: any path, the target named by `dapr-app-id`.
    let answer = send(
        http.get(format!("http://{}/reviews/1?x=1", caller.http_address))
            .header("dapr-app-id", "reviews")
            .header("dapr-api-token", CALLER_TOKEN),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.version(), Some("v1"), "{answer:?}");
    assert_eq!(answer.json()["path"], "/reviews/1?x=1", "{answer:?}");
    assert_eq!(
        answer.json()["headers"]["dapr-api-token"],
        APP_TOKEN,
        "{answer:?}"
    );

    // Without the caller's token nothing is forwarded.
    let before = app.request_count();
    let answer = invoke_with(
        &http,
        &caller,
        Method::GET,
        "reviews",
        "/reviews/1",
        &[],
        None,
    )
    .await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(app.request_count(), before);
}
