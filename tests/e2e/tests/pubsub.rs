//! Publishing over HTTP and gRPC, and streaming subscriptions (SubscribeTopicEventsAlpha1).

use std::collections::HashMap;
use std::time::Duration;

use outrigger_client::{OutriggerClient, runtime};
use outrigger_e2e::{grpc_url, http_base, start};
use outrigger_runtime::Config;
use runtime::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as RequestType;
use runtime::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType as ResponseType;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A streaming subscriber driven by the test.
struct Subscriber {
    requests: mpsc::Sender<runtime::SubscribeTopicEventsRequestAlpha1>,
    events: tonic::Streaming<runtime::SubscribeTopicEventsResponseAlpha1>,
}

impl Subscriber {
    async fn open(
        client: &mut OutriggerClient,
        pubsub: &str,
        topic: &str,
        dead_letter: Option<&str>,
    ) -> Self {
        let (requests, receiver) = mpsc::channel(16);
        requests
            .send(runtime::SubscribeTopicEventsRequestAlpha1 {
                subscribe_topic_events_request_type: Some(RequestType::InitialRequest(
                    runtime::SubscribeTopicEventsRequestInitialAlpha1 {
                        pubsub_name: pubsub.into(),
                        topic: topic.into(),
                        metadata: HashMap::new(),
                        dead_letter_topic: dead_letter.map(str::to_string),
                    },
                )),
            })
            .await
            .expect("queue initial request");
        let mut events = client
            .raw()
            .subscribe_topic_events_alpha1(ReceiverStream::new(receiver))
            .await
            .expect("subscribe")
            .into_inner();
        let first = events
            .message()
            .await
            .expect("stream")
            .expect("initial response");
        assert!(
            matches!(
                first.subscribe_topic_events_response_type,
                Some(ResponseType::InitialResponse(_))
            ),
            "the first message is the initial response"
        );
        Self { requests, events }
    }

    async fn next(&mut self) -> runtime::TopicEventRequest {
        let message = tokio::time::timeout(Duration::from_secs(10), self.events.message())
            .await
            .expect("an event within 10s")
            .expect("stream")
            .expect("stream open");
        match message.subscribe_topic_events_response_type {
            Some(ResponseType::EventMessage(event)) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    async fn answer(&self, id: &str, status: i32) {
        self.requests
            .send(runtime::SubscribeTopicEventsRequestAlpha1 {
                subscribe_topic_events_request_type: Some(RequestType::EventProcessed(
                    runtime::SubscribeTopicEventsRequestProcessedAlpha1 {
                        id: id.into(),
                        status: Some(runtime::TopicEventResponse { status }),
                    },
                )),
            })
            .await
            .expect("send answer");
    }
}

const SUCCESS: i32 = 0;
const RETRY: i32 = 1;
const DROP: i32 = 2;

fn extension(event: &runtime::TopicEventRequest, name: &str) -> String {
    use outrigger_client::prost_types::value::Kind;
    match event
        .extensions
        .as_ref()
        .and_then(|ext| ext.fields.get(name))
        .and_then(|value| value.kind.clone())
    {
        Some(Kind::StringValue(text)) => text,
        other => panic!("extension {name}: {other:?}"),
    }
}

#[tokio::test]
async fn http_publish_reaches_a_streaming_subscriber_as_a_cloud_event() {
    let sidecar = start(Config::for_test("publisher")).await;
    let mut client = OutriggerClient::connect(&grpc_url(&sidecar), None)
        .await
        .expect("connect");
    let mut subscriber = Subscriber::open(&mut client, "pubsub", "orders", None).await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!(
            "{}/v1.0/publish/pubsub/orders",
            http_base(&sidecar)
        ))
        .header("content-type", "application/json")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(r#"{"orderId": 42}"#)
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    let event = subscriber.next().await;
    assert_eq!(event.source, "publisher", "source is the publishing app id");
    assert_eq!(event.r#type, "com.dapr.event.sent");
    assert_eq!(event.spec_version, "1.0");
    assert_eq!(event.data_content_type, "application/json");
    assert_eq!(event.topic, "orders");
    assert_eq!(event.pubsub_name, "pubsub");
    let data: Value = serde_json::from_slice(&event.data).expect("json data");
    assert_eq!(data, json!({"orderId": 42}));
    assert_eq!(
        extension(&event, "traceparent"),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(extension(&event, "pubsubname"), "pubsub");
    assert!(!extension(&event, "time").is_empty());
    subscriber.answer(&event.id, SUCCESS).await;

    // A body that already is a CloudEvent keeps its own attributes.
    let response = http
        .post(format!("{}/v1.0/publish/pubsub/orders", http_base(&sidecar)))
        .header("content-type", "application/cloudevents+json")
        .body(r#"{"id":"mine-1","source":"legacy","type":"order.placed","specversion":"1.0","datacontenttype":"text/plain","data":"hello"}"#)
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    let event = subscriber.next().await;
    assert_eq!(
        (
            event.id.as_str(),
            event.source.as_str(),
            event.r#type.as_str()
        ),
        ("mine-1", "legacy", "order.placed")
    );
    assert_eq!(event.data, b"hello");
    subscriber.answer(&event.id, SUCCESS).await;
    // Open streams hold a connection: end them so shutdown need not wait out the grace period.
    drop(subscriber);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn retry_redelivers_and_drop_goes_to_the_dead_letter_topic() {
    let sidecar = start(Config::for_test("retrier")).await;
    let mut client = OutriggerClient::connect(&grpc_url(&sidecar), None)
        .await
        .expect("connect");
    let mut subscriber = Subscriber::open(&mut client, "pubsub", "jobs", Some("jobs-dead")).await;
    let mut dead_letters = Subscriber::open(&mut client, "pubsub", "jobs-dead", None).await;
    let publish = |data: &'static str| {
        let mut client = client.clone();
        async move {
            client
                .raw()
                .publish_event(runtime::PublishEventRequest {
                    pubsub_name: "pubsub".into(),
                    topic: "jobs".into(),
                    data: data.as_bytes().to_vec(),
                    data_content_type: "text/plain".into(),
                    metadata: HashMap::new(),
                })
                .await
                .expect("publish")
        }
    };
    publish("first").await;
    let event = subscriber.next().await;
    assert_eq!(event.data, b"first");
    subscriber.answer(&event.id, RETRY).await;
    let again = subscriber.next().await;
    assert_eq!(
        (again.id.as_str(), again.data.as_slice()),
        (event.id.as_str(), b"first".as_slice()),
        "a retried event comes back"
    );
    subscriber.answer(&again.id, DROP).await;
    let dead = dead_letters.next().await;
    assert_eq!(
        dead.id, event.id,
        "the dropped event lands on the dead-letter topic unchanged"
    );
    dead_letters.answer(&dead.id, SUCCESS).await;

    publish("second").await;
    let next = subscriber.next().await;
    assert_eq!(next.data, b"second", "after a drop the next event flows");
    subscriber.answer(&next.id, SUCCESS).await;
    drop((subscriber, dead_letters));
    sidecar.shutdown().await;
}

#[tokio::test]
async fn bulk_publish_and_publish_errors() {
    let sidecar = start(Config::for_test("bulk")).await;
    let base = http_base(&sidecar);
    let mut client = OutriggerClient::connect(&grpc_url(&sidecar), None)
        .await
        .expect("connect");
    let mut subscriber = Subscriber::open(&mut client, "pubsub", "batch", None).await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{base}/v1.0-alpha1/publish/bulk/pubsub/batch"))
        .body(r#"[{"entryId":"1","event":{"n":1},"contentType":"application/json"},{"entryId":"2","event":"two","contentType":"text/plain"}]"#)
        .send()
        .await
        .expect("bulk");
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    let mut received = Vec::new();
    for _ in 0..2 {
        let event = subscriber.next().await;
        received.push(String::from_utf8_lossy(&event.data).into_owned());
        subscriber.answer(&event.id, SUCCESS).await;
    }
    received.sort();
    assert_eq!(received, ["two", r#"{"n":1}"#]);

    #[allow(deprecated)] // The Alpha1 name is the one Dapr 1.14-1.16 SDKs call.
    let grpc_bulk = client
        .raw()
        .bulk_publish_event_alpha1(runtime::BulkPublishRequest {
            pubsub_name: "pubsub".into(),
            topic: "batch".into(),
            entries: vec![runtime::BulkPublishRequestEntry {
                entry_id: "g1".into(),
                event: b"grpc".to_vec(),
                content_type: "text/plain".into(),
                metadata: HashMap::new(),
            }],
            metadata: HashMap::new(),
        })
        .await
        .expect("grpc bulk")
        .into_inner();
    assert!(grpc_bulk.failed_entries.is_empty());
    let event = subscriber.next().await;
    assert_eq!(event.data, b"grpc");
    subscriber.answer(&event.id, SUCCESS).await;

    let cases = [
        (
            "/v1.0/publish/nosuch/t",
            "x",
            reqwest::StatusCode::NOT_FOUND,
            "ERR_PUBSUB_NOT_FOUND",
        ),
        (
            "/v1.0-alpha1/publish/bulk/pubsub/batch",
            "{}",
            reqwest::StatusCode::BAD_REQUEST,
            "ERR_PUBSUB_EVENTS_SER",
        ),
        (
            "/v1.0-alpha1/publish/bulk/pubsub/batch",
            r#"[{"entryId":"1","event":"a","contentType":"text/plain"},{"entryId":"1","event":"b","contentType":"text/plain"}]"#,
            reqwest::StatusCode::BAD_REQUEST,
            "ERR_PUBSUB_EVENTS_SER",
        ),
    ];
    for (path, body, status, code) in cases {
        let response = http
            .post(format!("{base}{path}"))
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), status, "{path}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["errorCode"], code, "{path}: {body}");
    }
    let cloud_event_garbage = http
        .post(format!("{base}/v1.0/publish/pubsub/batch"))
        .header("content-type", "application/cloudevents+json")
        .body("[1,2]")
        .send()
        .await
        .expect("send");
    assert_eq!(
        cloud_event_garbage.status(),
        reqwest::StatusCode::BAD_REQUEST
    );
    let status = client
        .raw()
        .publish_event(runtime::PublishEventRequest {
            pubsub_name: "nosuch".into(),
            topic: "t".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown pubsub");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("nosuch"));
    drop(subscriber);
    sidecar.shutdown().await;
}
