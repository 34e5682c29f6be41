//! `pubsub.redis` through real sidecar processes: an event whose delivery was cut by SIGKILL
//! arrives after the restart, and every publish acknowledged across a Redis outage is delivered.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use outrigger_test_harness::{RedisServer, Sidecar, SidecarBuilder};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct App {
    /// `data` of every event received, in order.
    received: Arc<Mutex<Vec<String>>>,
    /// While true, deliveries hang (the app is "busy" when the sidecar dies).
    hang: Arc<Mutex<bool>>,
}

impl App {
    fn received(&self) -> Vec<String> {
        self.received.lock().expect("lock").clone()
    }

    async fn wait_for(&self, what: &str, check: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check(&self.received()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {:?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve_app(app: App) -> u16 {
    async fn event(State(app): State<App>, body: String) -> axum::Json<Value> {
        let event: Value = serde_json::from_str(&body).expect("CloudEvent");
        app.received
            .lock()
            .expect("lock")
            .push(event["data"].as_str().unwrap_or_default().to_string());
        let hang = *app.hang.lock().expect("lock");
        if hang {
            std::future::pending::<()>().await;
        }
        axum::Json(json!({"status": "SUCCESS"}))
    }
    let router = Router::new()
        .route(
            "/dapr/subscribe",
            get(|| async {
                axum::Json(json!([{"pubsubname": "events", "topic": "work", "route": "/work"}]))
            }),
        )
        .route("/work", post(event))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, router).await.expect("app") });
    port
}

fn components(redis: &RedisServer) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("events.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: events\nspec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{}\"\n  - name: concurrency\n    value: \"1\"\n  - name: readTimeout\n    value: 1s\n  - name: writeTimeout\n    value: 1s\n",
            redis.address()
        ),
    )
    .expect("write component");
    dir
}

async fn start_sidecar(dir: &tempfile::TempDir, app_port: u16) -> Sidecar {
    start_sidecar_with(dir, app_port, &[]).await
}

async fn start_sidecar_with(dir: &tempfile::TempDir, app_port: u16, extra: &[&str]) -> Sidecar {
    let mut builder = SidecarBuilder::new("worker").resources_path(dir.path());
    for arg in extra {
        builder = builder.arg(arg);
    }
    let sidecar = outrigger_e2e::spawn_with_app(builder, app_port).await;
    assert!(
        sidecar.wait_for_log("subscribed", Duration::from_secs(10)),
        "{}",
        sidecar.log()
    );
    sidecar
}

async fn publish(sidecar: &Sidecar, data: &str) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(sidecar.http_url("/v1.0/publish/events/work"))
        .header("content-type", "text/plain")
        .body(data.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|response| response.status())
        .unwrap_or(reqwest::StatusCode::REQUEST_TIMEOUT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_cut_off_by_sigkill_is_delivered_after_restart() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = components(&redis);
    let app = App::default();
    let port = serve_app(app.clone()).await;
    *app.hang.lock().expect("lock") = true;
    let mut first = start_sidecar(&dir, port).await;
    assert_eq!(
        publish(&first, "precious").await,
        reqwest::StatusCode::NO_CONTENT
    );
    app.wait_for("the first delivery", |got| got.len() == 1)
        .await;
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10)).expect("killed");

    *app.hang.lock().expect("lock") = false;
    let second = start_sidecar(&dir, port).await;
    app.wait_for("redelivery after the restart", |got| {
        got == ["precious", "precious"]
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.pending_count("work", "worker").await != 0 {
        assert!(
            Instant::now() < deadline,
            "the redelivered event is acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_acknowledged_across_a_redis_outage_is_delivered() {
    let mut redis = RedisServer::start().expect("redis-server");
    let dir = components(&redis);
    let app = App::default();
    let port = serve_app(app.clone()).await;
    let sidecar = start_sidecar(&dir, port).await;
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for index in 0..150 {
        if index == 50 {
            redis.stop();
        }
        if index == 100 {
            redis.restart().expect("redis restarts");
        }
        match publish(&sidecar, &format!("m{index}")).await {
            reqwest::StatusCode::NO_CONTENT => acknowledged.push(format!("m{index}")),
            status => {
                assert_eq!(
                    status,
                    reqwest::StatusCode::INTERNAL_SERVER_ERROR,
                    "a failed publish says so"
                );
                refused += 1;
            }
        }
    }
    assert!(refused >= 40, "publishes during the outage fail: {refused}");
    assert!(
        acknowledged.len() >= 90,
        "publishes succeed outside the outage: {}",
        acknowledged.len()
    );
    app.wait_for("every acknowledged publish", |got| {
        let got: HashSet<&String> = got.iter().collect();
        acknowledged.iter().all(|message| got.contains(message))
    })
    .await;
    drop(sidecar);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_leaves_unfinished_deliveries_unacknowledged() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = components(&redis);
    let app = App::default();
    let port = serve_app(app.clone()).await;
    *app.hang.lock().expect("lock") = true;
    let mut sidecar = start_sidecar_with(&dir, port, &["--graceful-shutdown-seconds", "1"]).await;
    assert_eq!(
        publish(&sidecar, "unfinished").await,
        reqwest::StatusCode::NO_CONTENT
    );
    app.wait_for("the delivery that will not finish", |got| got.len() == 1)
        .await;
    assert_eq!(
        publish(&sidecar, "queued").await,
        reqwest::StatusCode::NO_CONTENT
    );
    let stopping = Instant::now();
    sidecar.signal("TERM");
    let status = sidecar
        .wait_exit(Duration::from_secs(10))
        .expect("exits within the grace period");
    assert_eq!(status.code(), Some(0), "{}", sidecar.log());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the grace period bounds shutdown: {:?}",
        stopping.elapsed()
    );
    assert_eq!(
        app.received(),
        ["unfinished"],
        "nothing new is pulled after SIGTERM"
    );
    assert_eq!(
        redis.pending_count("work", "worker").await,
        1,
        "the unfinished delivery stays unacknowledged"
    );

    *app.hang.lock().expect("lock") = false;
    let restarted = start_sidecar(&dir, port).await;
    app.wait_for("both events after the restart", |got| {
        got.iter().filter(|data| *data == "unfinished").count() == 2
            && got.contains(&"queued".to_string())
    })
    .await;
    drop(restarted);
}
