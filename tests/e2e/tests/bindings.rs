//! Bindings through the sidecar: HTTP and Redis output bindings over HTTP and gRPC, a cron
//! input binding triggering the app, and the documented errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{any, post};
use outrigger_client::{OutriggerClient, runtime};
use outrigger_e2e::{config_with_resources, grpc_url, http_base, start};
use outrigger_test_harness::RedisServer;
use serde_json::Value;

async fn serve(router: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
    port
}

fn component(name: &str, kind: &str, metadata: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {kind}\n  version: v1\n  metadata:\n"
    );
    for (key, value) in metadata {
        yaml.push_str(&format!("  - name: {key}\n    value: \"{value}\"\n"));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_and_input_bindings_work_end_to_end() {
    let redis = RedisServer::start().expect("redis-server");
    let web_port =
        serve(Router::new().route(
            "/{*path}",
            any(|uri: axum::http::Uri, body: String| async move {
                format!("{} got {body}", uri.path())
            }),
        ))
        .await;
    let ticks = Arc::new(Mutex::new(0usize));
    let app_port = serve(Router::new().route(
        "/ticker",
        post({
            let ticks = Arc::clone(&ticks);
            move || async move {
                *ticks.lock().expect("lock") += 1;
                ""
            }
        }),
    ))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let files = [
        (
            "web.yaml",
            component(
                "web",
                "bindings.http",
                &[("url", &format!("http://127.0.0.1:{web_port}"))],
            ),
        ),
        (
            "cache.yaml",
            component(
                "cache",
                "bindings.redis",
                &[("redisHost", &redis.address())],
            ),
        ),
        (
            "ticker.yaml",
            component("ticker", "bindings.cron", &[("schedule", "@every 200ms")]),
        ),
    ];
    for (file, yaml) in files {
        std::fs::write(dir.path().join(file), yaml).expect("write");
    }
    let mut config = config_with_resources("binder", dir.path());
    config.app_port = Some(app_port);
    let sidecar = start(config).await;
    let base = http_base(&sidecar);
    let http = reqwest::Client::new();

    let response = http
        .post(format!("{base}/v1.0/bindings/web"))
        .body(r#"{"operation":"post","data":{"a":1},"metadata":{"path":"/echo"}}"#)
        .send()
        .await
        .expect("invoke");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("metadata.statusCode")
            .and_then(|v| v.to_str().ok()),
        Some("200")
    );
    assert_eq!(response.text().await.expect("body"), r#"/echo got {"a":1}"#);

    let mut client = OutriggerClient::connect(&grpc_url(&sidecar), None)
        .await
        .expect("connect");
    let call = |operation: &str, data: &str| runtime::InvokeBindingRequest {
        name: "cache".into(),
        data: data.as_bytes().to_vec(),
        metadata: HashMap::from([("key".to_string(), "k1".to_string())]),
        operation: operation.into(),
    };
    client
        .raw()
        .invoke_binding(call("create", "cached"))
        .await
        .expect("create");
    let got = client
        .raw()
        .invoke_binding(call("get", ""))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.data, b"cached");

    let deadline = Instant::now() + Duration::from_secs(10);
    while *ticks.lock().expect("lock") < 2 {
        assert!(
            Instant::now() < deadline,
            "the cron binding triggers the app"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cases = [
        (
            "nosuch",
            r#"{"operation":"get"}"#,
            reqwest::StatusCode::NOT_FOUND,
            "ERR_BINDING_NOT_FOUND",
            "nosuch",
        ),
        (
            "web",
            r#"{"operation":"launch"}"#,
            reqwest::StatusCode::BAD_REQUEST,
            "ERR_INVOKE_OUTPUT_BINDING",
            "supported operations: create, get",
        ),
        (
            "web",
            r#"{"data":1}"#,
            reqwest::StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            "operation is required",
        ),
        (
            "web",
            "[1]",
            reqwest::StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
            "JSON object",
        ),
        (
            "cache",
            r#"{"operation":"get"}"#,
            reqwest::StatusCode::BAD_REQUEST,
            "ERR_INVOKE_OUTPUT_BINDING",
            "metadata.key",
        ),
        (
            "ticker",
            r#"{"operation":"get"}"#,
            reqwest::StatusCode::NOT_FOUND,
            "ERR_BINDING_NOT_FOUND",
            "ticker",
        ),
    ];
    for (name, body, status, code, message) in cases {
        let response = http
            .post(format!("{base}/v1.0/bindings/{name}"))
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), status, "{name} {body}");
        let error: Value = response.json().await.expect("json");
        assert_eq!(error["errorCode"], code, "{name} {body}: {error}");
        assert!(
            error["message"].as_str().unwrap_or("").contains(message),
            "{name} {body}: {error}"
        );
    }
    let failure = http
        .post(format!("{base}/v1.0/bindings/web"))
        .body(r#"{"operation":"get","metadata":{"path":"/x"}}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(
        failure.status(),
        reqwest::StatusCode::OK,
        "a 2xx from the target passes through"
    );
    sidecar.shutdown().await;
}
