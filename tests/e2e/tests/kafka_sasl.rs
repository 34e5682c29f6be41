//! Kafka with SASL authentication (`authType: password`) through a real sidecar process and a
//! real Kafka-protocol broker (tansu with `--authentication`): SCRAM-SHA-256 and SCRAM-SHA-512
//! users publish and receive through `pubsub.kafka` and `bindings.kafka`. As in Dapr, component
//! init connects: wrong credentials fail start-up (exit 1) within about a second with a message
//! naming the component, the user and the SASL cause (not after a timeout), unless the
//! component sets `ignoreErrors: true`; a hot reload with wrong credentials is rejected and the
//! previous version keeps serving. tansu 0.6 authenticates SCRAM only (no PLAIN), so that is
//! what is tested here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use outrigger_e2e::expect_start_failure;
use outrigger_test_harness::{KafkaBroker, KafkaUser, Scram, Sidecar, SidecarBuilder};
use serde_json::{Value, json};

/// An app that subscribes to `orders256` on `events256` and `orders512` on `events512`, and
/// records every delivery as (route, data).
#[derive(Clone, Default)]
struct App {
    received: Arc<Mutex<Vec<(String, String)>>>,
}

impl App {
    fn has(&self, route: &str, data: &str) -> bool {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .any(|(r, d)| r == route && d == data)
    }

    async fn wait_for(&self, route: &str, data: &str, broker: &KafkaBroker, sidecar: &Sidecar) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.has(route, data) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {data:?} on /{route}; received {:?}\nsidecar log:\n{}\nbroker log:\n{}",
                self.received.lock().expect("lock"),
                sidecar.log(),
                broker.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve_app(app: App) -> u16 {
    async fn receive(State(app): State<App>, Path(route): Path<String>, body: String) {
        // Pub/sub deliveries are CloudEvents; input binding events are the raw data.
        let data = outrigger_e2e::event_data(body);
        app.received.lock().expect("lock").push((route, data));
    }
    let router = Router::new()
        .route(
            "/dapr/subscribe",
            get(|| async {
                axum::Json(json!([
                    {"pubsubname": "events256", "topic": "orders256", "route": "/orders256"},
                    {"pubsubname": "events512", "topic": "orders512", "route": "/orders512"},
                ]))
            }),
        )
        .route("/{route}", post(receive))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, router).await.expect("app") });
    port
}

/// Dapr Component YAML for a Kafka component with `authType: password` over plaintext.
fn component(
    name: &str,
    component_type: &str,
    broker: &KafkaBroker,
    (username, password, mechanism): (&str, &str, &str),
    extra: &[(&str, &str)],
) -> String {
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {component_type}\n  version: v1\n  metadata:\n"
    );
    for (key, value) in [
        ("brokers", broker.address().as_str()),
        ("authType", "password"),
        ("saslUsername", username),
        ("saslPassword", password),
        ("saslMechanism", mechanism),
        ("disableTls", "true"),
        ("consumerGroup", name),
        ("initialOffset", "oldest"),
    ]
    .iter()
    .chain(extra)
    {
        yaml.push_str(&format!("  - name: {key}\n    value: \"{value}\"\n"));
    }
    yaml
}

/// A sidecar with `components` (YAML), delivering to the app on `app_port`.
async fn start_sidecar(components: &[String], app_port: u16) -> (tempfile::TempDir, Sidecar) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (index, yaml) in components.iter().enumerate() {
        std::fs::write(dir.path().join(format!("component-{index}.yaml")), yaml)
            .expect("write component");
    }
    let sidecar = outrigger_e2e::spawn_with_app(
        SidecarBuilder::new("kafka-sasl-app").resources_path(dir.path()),
        app_port,
    )
    .await;
    (dir, sidecar)
}

/// POSTs `body` and returns the status and the body.
async fn post_json(sidecar: &Sidecar, path: &str, body: &str) -> (reqwest::StatusCode, String) {
    let response = reqwest::Client::new()
        .post(sidecar.http_url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_users_publish_and_receive_through_pubsub_and_binding() {
    let broker = KafkaBroker::start_with_users(&[
        KafkaUser::new("alice", "alice-secret", Scram::Sha256),
        KafkaUser::new("bob", "bob-secret", Scram::Sha512),
    ])
    .expect("authenticating tansu broker");
    let alice = ("alice", "alice-secret", "SHA-256");
    let app = App::default();
    let port = serve_app(app.clone()).await;
    let (dir, sidecar) = start_sidecar(
        &[
            component("events256", "pubsub.kafka", &broker, alice, &[]),
            component(
                "events512",
                "pubsub.kafka",
                &broker,
                ("bob", "bob-secret", "SHA-512"),
                &[],
            ),
            component(
                "stream",
                "bindings.kafka",
                &broker,
                alice,
                &[("topics", "ingest"), ("publishTopic", "ingest")],
            ),
        ],
        port,
    )
    .await;

    for (pubsub, topic, data) in [
        ("events256", "orders256", "via-scram-sha-256"),
        ("events512", "orders512", "via-scram-sha-512"),
    ] {
        let (status, body) = post_json(
            &sidecar,
            &format!("/v1.0/publish/{pubsub}/{topic}"),
            &json!(data).to_string(),
        )
        .await;
        assert_eq!(
            status,
            reqwest::StatusCode::NO_CONTENT,
            "publish on {pubsub}: {body}\nsidecar log:\n{}\nbroker log:\n{}",
            sidecar.log(),
            broker.log()
        );
        app.wait_for(topic, data, &broker, &sidecar).await;
    }

    // The binding's output publishes with SASL, its input reads back with SASL.
    let (status, body) = post_json(
        &sidecar,
        "/v1.0/bindings/stream",
        r#"{"operation":"create","data":"via-binding"}"#,
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "binding: {body}");
    app.wait_for("stream", "via-binding", &broker, &sidecar)
        .await;

    // A new version with a wrong password fails init: rejected, the previous one keeps serving.
    std::fs::write(
        dir.path().join("component-0.yaml"),
        component(
            "events256",
            "pubsub.kafka",
            &broker,
            ("alice", "not-her-password", "SHA-256"),
            &[],
        ),
    )
    .expect("rewrite component");
    assert!(
        sidecar.wait_for_log("hot reload: rejected new version", Duration::from_secs(15)),
        "{}",
        sidecar.log()
    );
    let log = sidecar.log();
    assert!(
        log.lines()
            .any(|line| line.contains("hot reload: rejected new version")
                && line.contains("SASL authentication as \"alice\" with SCRAM-SHA-256 failed")),
        "{log}"
    );
    let (status, body) = post_json(
        &sidecar,
        "/v1.0/publish/events256/orders256",
        &json!("after-rejected-reload").to_string(),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "{body}");
    app.wait_for("orders256", "after-rejected-reload", &broker, &sidecar)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_start_up_with_the_sasl_cause_unless_errors_are_ignored() {
    let broker = KafkaBroker::start_with_user("alice", "alice-secret", Scram::Sha256)
        .expect("authenticating tansu broker");
    let address = broker.address();
    let wrong_password = ("alice", "not-her-password", "SHA-256");
    for (name, component_type, credentials, mechanism, extra) in [
        (
            "events256",
            "pubsub.kafka",
            wrong_password,
            "SCRAM-SHA-256",
            &[][..],
        ),
        // alice has no SCRAM-SHA-512 credential.
        (
            "events512",
            "pubsub.kafka",
            ("alice", "alice-secret", "SHA-512"),
            "SCRAM-SHA-512",
            &[],
        ),
        (
            "stream",
            "bindings.kafka",
            wrong_password,
            "SCRAM-SHA-256",
            &[("publishTopic", "ingest")],
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("kafka.yaml"),
            component(name, component_type, &broker, credentials, extra),
        )
        .expect("write component");
        let (took, output) = expect_start_failure(
            SidecarBuilder::new("kafka-sasl-app").resources_path(dir.path()),
            1,
            &[
                &format!("component {name:?} ({component_type}): init failed"),
                &format!(
                    "kafka at {address}: SASL authentication as \"alice\" with {mechanism} failed"
                ),
                "check saslUsername, saslPassword and saslMechanism",
                &format!("{address}/bootstrap: SASL authentication error"),
            ],
        );
        // Well within the default initTimeout (5 s), whose expiry would hide the cause.
        assert!(
            took < Duration::from_secs(4),
            "{name}: start-up failed after {took:?}:\n{output}"
        );
    }

    // With ignoreErrors the component is skipped (and the log says why); the others serve.
    let app = App::default();
    let port = serve_app(app.clone()).await;
    let (_dir, sidecar) = start_sidecar(
        &[
            component("events256", "pubsub.kafka", &broker, wrong_password, &[])
                .replace("  version: v1\n", "  version: v1\n  ignoreErrors: true\n"),
            component(
                "stream",
                "bindings.kafka",
                &broker,
                ("alice", "alice-secret", "SHA-256"),
                &[("topics", "ingest"), ("publishTopic", "ingest")],
            ),
        ],
        port,
    )
    .await;
    let log = sidecar.log();
    assert!(
        log.lines().any(|line| line.contains("ignoring component")
            && line.contains("events256")
            && line.contains("SASL authentication as \"alice\" with SCRAM-SHA-256 failed")),
        "{log}"
    );
    let (status, body) = post_json(
        &sidecar,
        "/v1.0/publish/events256/orders256",
        r#""never delivered""#,
    )
    .await;
    // The only pub/sub was skipped: none is configured.
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    let error: Value = serde_json::from_str(&body).expect("Dapr error JSON");
    assert_eq!(error["errorCode"], "ERR_PUBSUB_NOT_CONFIGURED", "{body}");
    let (status, body) = post_json(
        &sidecar,
        "/v1.0/bindings/stream",
        r#"{"operation":"create","data":"despite-the-ignored-one"}"#,
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "binding: {body}");
    app.wait_for("stream", "despite-the-ignored-one", &broker, &sidecar)
        .await;
}
