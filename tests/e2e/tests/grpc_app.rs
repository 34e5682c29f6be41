//! Delivery to a gRPC app (`--app-protocol grpc`): `AppCallback.ListTopicSubscriptions`,
//! `OnTopicEvent` with SUCCESS / RETRY / DROP, and `OnBindingEvent` for input bindings.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outrigger_client::{common, runtime};
use outrigger_e2e::{config_with_resources, http_base, start};
use outrigger_runtime::config::AppProtocol;
use runtime::app_callback_server::{AppCallback, AppCallbackServer};
use tonic::{Request, Response, Status};

#[derive(Default, Clone)]
struct App {
    /// (path or binding, data, event id)
    events: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl App {
    fn events(&self) -> Vec<(String, String, String)> {
        self.events.lock().expect("lock").clone()
    }

    fn count(&self, path: &str, data: &str) -> usize {
        self.events()
            .iter()
            .filter(|(seen_path, seen_data, _)| seen_path == path && seen_data == data)
            .count()
    }

    async fn wait_for(&self, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tonic::async_trait]
impl AppCallback for App {
    async fn on_invoke(
        &self,
        _request: Request<common::InvokeRequest>,
    ) -> Result<Response<common::InvokeResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn list_topic_subscriptions(
        &self,
        _request: Request<()>,
    ) -> Result<Response<runtime::ListTopicSubscriptionsResponse>, Status> {
        let subscription =
            |topic: &str, default: &str, dead_letter: &str| runtime::TopicSubscription {
                pubsub_name: "pubsub".into(),
                topic: topic.into(),
                routes: Some(runtime::TopicRoutes {
                    rules: vec![runtime::TopicRule {
                        r#match: "event.data == \"vip\"".into(),
                        path: "/vip".into(),
                    }],
                    default: default.into(),
                }),
                dead_letter_topic: dead_letter.into(),
                ..Default::default()
            };
        Ok(Response::new(runtime::ListTopicSubscriptionsResponse {
            subscriptions: vec![
                subscription("orders", "/orders", "orders-dead"),
                subscription("orders-dead", "/dead", ""),
            ],
        }))
    }

    async fn on_topic_event(
        &self,
        request: Request<runtime::TopicEventRequest>,
    ) -> Result<Response<runtime::TopicEventResponse>, Status> {
        let event = request.into_inner();
        let data = String::from_utf8_lossy(&event.data).into_owned();
        let attempts = {
            let mut events = self.events.lock().expect("lock");
            events.push((event.path.clone(), data.clone(), event.id.clone()));
            events.iter().filter(|(_, _, id)| *id == event.id).count()
        };
        let status = match (data.as_str(), attempts) {
            ("retry-once", 1) => 1,
            ("drop", _) => 2,
            _ => 0,
        };
        Ok(Response::new(runtime::TopicEventResponse { status }))
    }

    async fn list_input_bindings(
        &self,
        _request: Request<()>,
    ) -> Result<Response<runtime::ListInputBindingsResponse>, Status> {
        Ok(Response::new(runtime::ListInputBindingsResponse {
            bindings: vec!["ticker".into()],
        }))
    }

    async fn on_binding_event(
        &self,
        request: Request<runtime::BindingEventRequest>,
    ) -> Result<Response<runtime::BindingEventResponse>, Status> {
        let event = request.into_inner();
        self.events
            .lock()
            .expect("lock")
            .push((event.name, String::new(), String::new()));
        Ok(Response::new(runtime::BindingEventResponse::default()))
    }

    async fn on_bulk_topic_event(
        &self,
        _request: Request<runtime::TopicEventBulkRequest>,
    ) -> Result<Response<runtime::TopicEventBulkResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn on_job_event(
        &self,
        _request: Request<runtime::JobEventRequest>,
    ) -> Result<Response<runtime::JobEventResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

async fn publish(base: &str, data: &str) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1.0/publish/pubsub/orders"))
        .header("content-type", "text/plain")
        .body(data.to_string())
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_app_receives_events_and_binding_triggers() {
    let app = App::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn({
        let app = app.clone();
        async move {
            tonic::transport::Server::builder()
                .add_service(AppCallbackServer::new(app))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .expect("app server")
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("pubsub.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\nspec:\n  type: pubsub.in-memory\n  version: v1\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("ticker.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ticker\nspec:\n  type: bindings.cron\n  version: v1\n  metadata:\n  - name: schedule\n    value: \"@every 200ms\"\n",
    )
    .expect("write");
    let mut config = config_with_resources("grpc-app", dir.path());
    config.app_port = Some(port);
    config.app_protocol = AppProtocol::Grpc;
    let sidecar = start(config).await;
    let base = http_base(&sidecar);
    app.wait_for("a cron trigger over OnBindingEvent", |app| {
        app.count("ticker", "") >= 1
    })
    .await;

    publish(&base, "vip").await;
    publish(&base, "regular").await;
    app.wait_for("routed events", |app| {
        app.count("/vip", "vip") == 1 && app.count("/orders", "regular") == 1
    })
    .await;
    publish(&base, "retry-once").await;
    app.wait_for("a retried event", |app| {
        app.count("/orders", "retry-once") == 2
    })
    .await;
    publish(&base, "drop").await;
    app.wait_for("a dropped event on the dead-letter topic", |app| {
        app.count("/dead", "drop") == 1
    })
    .await;
    sidecar.shutdown().await;
}
