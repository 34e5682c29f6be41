//! The pub/sub conformance suite: every message delivered, order where claimed, redelivery
//! on retry, drop honoured, per-entry bulk failures, clean close.
//!
//! Panics (as a test failure) with a message naming the check that failed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use outrigger_components::pubsub::{
    BulkPublishEntry, DeliveryOutcome, MessageHandler, PubSub, PublishRequest, ReceivedMessage,
    SubscribeRequest,
};

/// How long a check waits for deliveries before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// Runs every check against pub/subs made by `make_pubsub`. Topics are unique per run.
pub async fn run_suite<F, Fut>(make_pubsub: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn PubSub>>,
{
    let run = uuid::Uuid::new_v4().simple().to_string();
    let pubsub = make_pubsub().await;
    delivers_every_message_in_order(&*pubsub, &format!("order-{run}")).await;
    redelivers_on_retry_and_honours_drop(&*pubsub, &format!("retry-{run}")).await;
    bulk_publish_reports_each_failure(&*pubsub, &format!("bulk-{run}")).await;
    close_stops_delivery(&*pubsub, &format!("close-{run}")).await;
}

/// Decides a delivery from the message text and how many times it has been seen.
type Decision = Box<dyn Fn(&str, usize) -> DeliveryOutcome + Send + Sync>;

/// Records deliveries; answers with `decide` for each.
struct Recorder {
    received: Mutex<Vec<String>>,
    decide: Decision,
}

impl Recorder {
    fn new(decide: impl Fn(&str, usize) -> DeliveryOutcome + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            received: Mutex::new(Vec::new()),
            decide: Box::new(decide),
        })
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().expect("lock").clone()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&[String]) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(&self.received()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: timed out; received so far: {:?}",
                self.received()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[async_trait]
impl MessageHandler for Recorder {
    async fn handle(&self, message: ReceivedMessage) -> DeliveryOutcome {
        let text = String::from_utf8_lossy(&message.data).into_owned();
        let seen = {
            let mut received = self.received.lock().expect("lock");
            received.push(text.clone());
            received.iter().filter(|item| **item == text).count()
        };
        (self.decide)(&text, seen)
    }
}

fn request(topic: &str, data: String, key: &str) -> PublishRequest {
    PublishRequest {
        topic: topic.to_string(),
        data: Bytes::from(data),
        content_type: Some("text/plain".into()),
        metadata: HashMap::from([("partitionKey".to_string(), key.to_string())]),
    }
}

async fn subscribe(
    pubsub: &dyn PubSub,
    topic: &str,
    handler: Arc<Recorder>,
) -> outrigger_components::pubsub::Subscription {
    pubsub
        .subscribe(
            SubscribeRequest {
                topic: topic.to_string(),
                metadata: HashMap::new(),
            },
            handler,
        )
        .await
        .unwrap_or_else(|error| panic!("subscribe {topic}: {error}"))
}

async fn delivers_every_message_in_order(pubsub: &dyn PubSub, topic: &str) {
    let recorder = Recorder::new(|_, _| DeliveryOutcome::Ack);
    let subscription = subscribe(pubsub, topic, Arc::clone(&recorder)).await;
    let sent: Vec<String> = (0..100).map(|index| format!("m{index:03}")).collect();
    for message in &sent {
        pubsub
            .publish(request(topic, message.clone(), "one-key"))
            .await
            .unwrap_or_else(|error| panic!("publish {message}: {error}"));
    }
    recorder
        .wait_for("every published message is delivered", |got| {
            got.len() >= sent.len()
        })
        .await;
    let mut got = recorder.received();
    if pubsub.features().ordered_per_key {
        assert_eq!(
            got, sent,
            "messages with one partition key arrive in publish order"
        );
    } else {
        got.sort();
        assert_eq!(
            got, sent,
            "every message arrives exactly once when all are acked"
        );
    }
    subscription.close().await;
}

async fn redelivers_on_retry_and_honours_drop(pubsub: &dyn PubSub, topic: &str) {
    // "flaky" asks for a retry twice; "poison" is dropped; "fine" is acked.
    let recorder = Recorder::new(|text, seen| match (text, seen) {
        ("flaky", 1 | 2) => DeliveryOutcome::Retry,
        ("poison", _) => DeliveryOutcome::Drop,
        _ => DeliveryOutcome::Ack,
    });
    let subscription = subscribe(pubsub, topic, Arc::clone(&recorder)).await;
    for message in ["flaky", "poison", "fine"] {
        pubsub
            .publish(request(topic, message.to_string(), message))
            .await
            .expect("publish");
    }
    recorder
        .wait_for("a retried message is delivered again until acked", |got| {
            got.iter().filter(|item| *item == "flaky").count() >= 3
                && got.contains(&"fine".to_string())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = recorder.received();
    assert_eq!(
        got.iter().filter(|item| *item == "flaky").count(),
        3,
        "acked after the third try, then never again: {got:?}"
    );
    assert_eq!(
        got.iter().filter(|item| *item == "poison").count(),
        1,
        "a dropped message is not redelivered: {got:?}"
    );
    subscription.close().await;
}

async fn bulk_publish_reports_each_failure(pubsub: &dyn PubSub, topic: &str) {
    let recorder = Recorder::new(|_, _| DeliveryOutcome::Ack);
    let subscription = subscribe(pubsub, topic, Arc::clone(&recorder)).await;
    let entry = |id: &str, ttl: &str| BulkPublishEntry {
        entry_id: id.to_string(),
        data: Bytes::from(format!("bulk-{id}")),
        content_type: Some("text/plain".into()),
        metadata: HashMap::from([("ttlInSeconds".to_string(), ttl.to_string())]),
    };
    let failures = pubsub
        .bulk_publish(
            topic,
            vec![
                entry("1", "60"),
                entry("2", "not-a-number"),
                entry("3", "60"),
            ],
        )
        .await
        .expect("bulk publish");
    let failed: Vec<_> = failures
        .iter()
        .map(|failure| failure.entry_id.as_str())
        .collect();
    assert_eq!(
        failed,
        ["2"],
        "only the malformed entry fails, and it is named"
    );
    assert!(!failures[0].error.is_empty(), "a failed entry says why");
    recorder
        .wait_for("the good entries of a bulk publish are delivered", |got| {
            got.contains(&"bulk-1".to_string()) && got.contains(&"bulk-3".to_string())
        })
        .await;
    subscription.close().await;
}

async fn close_stops_delivery(pubsub: &dyn PubSub, topic: &str) {
    let recorder = Recorder::new(|_, _| DeliveryOutcome::Ack);
    let subscription = subscribe(pubsub, topic, Arc::clone(&recorder)).await;
    pubsub
        .publish(request(topic, "before".into(), "k"))
        .await
        .expect("publish");
    recorder
        .wait_for("delivery before close", |got| !got.is_empty())
        .await;
    subscription.close().await;
    pubsub
        .publish(request(topic, "after".into(), "k"))
        .await
        .expect("publish after close");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        recorder.received(),
        ["before"],
        "nothing is delivered to a closed subscription"
    );
}
