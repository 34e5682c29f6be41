//! Shared helpers for the end-to-end tests: in-process sidecars and component files.

pub mod bench;
pub mod mesh;

use std::path::Path;

use outrigger_runtime::{Config, RunningSidecar};

/// Starts a sidecar in this process on free ports.
pub async fn start(config: Config) -> RunningSidecar {
    outrigger_runtime::start(config)
        .await
        .expect("sidecar starts")
}

/// A config whose components come from `dir`.
pub fn config_with_resources(app_id: &str, dir: &Path) -> Config {
    let mut config = Config::for_test(app_id);
    config.resources_paths = vec![dir.to_path_buf()];
    config
}

/// Starts a sidecar whose only component is a Redis state store `store` on `redis`. Keep the
/// returned directory alive as long as the sidecar: hot reload watches it.
pub async fn start_with_redis(
    app_id: &str,
    redis: &outrigger_test_harness::RedisServer,
    store: &str,
    extra_metadata: &[(&str, &str)],
) -> (tempfile::TempDir, RunningSidecar) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(format!("{store}.yaml")),
        redis_component(store, &redis.address(), extra_metadata),
    )
    .expect("write component");
    let sidecar = start(config_with_resources(app_id, dir.path())).await;
    (dir, sidecar)
}

/// Dapr Component YAML for a Redis state store.
pub fn redis_component(name: &str, address: &str, extra_metadata: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{address}\"\n"
    );
    for (key, value) in extra_metadata {
        yaml.push_str(&format!("  - name: {key}\n    value: \"{value}\"\n"));
    }
    yaml
}

/// Dapr Component YAML for an in-memory state store.
pub fn memory_component(name: &str) -> String {
    format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: state.in-memory\n  version: v1\n"
    )
}

/// Polls `{base}/v1.0/healthz` until it answers 204 (the sidecar is up and so is its app);
/// `false` if that did not happen within `timeout`.
pub async fn wait_until_app_ready(base: &str, timeout: std::time::Duration) -> bool {
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let status = http
            .get(format!("{base}/v1.0/healthz"))
            .send()
            .await
            .map(|response| response.status());
        if matches!(status, Ok(reqwest::StatusCode::NO_CONTENT)) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// Spawns the `outrigger` process `builder` describes, serving the app on `app_port`, and
/// waits until the sidecar and its app are ready (panics with the sidecar's log otherwise).
pub async fn spawn_with_app(
    builder: outrigger_test_harness::SidecarBuilder,
    app_port: u16,
) -> outrigger_test_harness::Sidecar {
    let sidecar = builder.arg("--app-port").arg(&app_port.to_string()).spawn();
    assert!(
        wait_until_app_ready(&sidecar.http_url(""), std::time::Duration::from_secs(30)).await,
        "sidecar never became ready:\n{}",
        sidecar.log()
    );
    sidecar
}

/// Base URL of a running sidecar's HTTP API.
pub fn http_base(sidecar: &RunningSidecar) -> String {
    format!("http://{}", sidecar.http_address)
}

pub fn grpc_url(sidecar: &RunningSidecar) -> String {
    format!("http://{}", sidecar.grpc_address)
}

/// Runs the sidecar binary until it exits and checks it failed to start: exit `code`, and every
/// needle in its output. Returns how long it took and the output, for further checks.
pub fn expect_start_failure(
    builder: outrigger_test_harness::SidecarBuilder,
    code: i32,
    needles: &[&str],
) -> (std::time::Duration, String) {
    let started = std::time::Instant::now();
    let (status, output) = builder.run_to_exit(std::time::Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(status.code(), Some(code), "exit status; output:\n{output}");
    for needle in needles {
        assert!(
            output.contains(needle),
            "output should mention {needle:?}:\n{output}"
        );
    }
    (took, output)
}

/// What an app receives as data: a CloudEvent's string `data`, or the raw body (input binding
/// events are not wrapped).
pub fn event_data(body: String) -> String {
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|event| {
            event
                .get("data")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or(body)
}
