//! The pub/sub building block's contract: publishing, and subscribing with a handler whose
//! answer (ack, retry, drop) decides each message's fate.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a pub/sub component can do beyond publish and subscribe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PubSubFeatures {
    /// Messages with the same partition key are delivered in publish order.
    pub ordered_per_key: bool,
    /// Per-message expiry (`ttlInSeconds`) is enforced by the component.
    pub message_ttl: bool,
    /// Messages survive a restart of the sidecar (and of the subscriber).
    pub durable: bool,
}

impl PubSubFeatures {
    /// The capability names Dapr reports in its metadata API.
    pub fn dapr_capabilities(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.message_ttl {
            names.push("MESSAGE_TTL".to_string());
        }
        names
    }
}

/// One message to publish. `data` is already the wire form (a CloudEvent, or raw).
#[derive(Debug, Clone, PartialEq)]
pub struct PublishRequest {
    pub topic: String,
    pub data: Bytes,
    pub content_type: Option<String>,
    /// Request metadata, e.g. `partitionKey`, `ttlInSeconds`.
    pub metadata: HashMap<String, String>,
}

/// One entry of a bulk publish.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkPublishEntry {
    pub entry_id: String,
    pub data: Bytes,
    pub content_type: Option<String>,
    pub metadata: HashMap<String, String>,
}

/// An entry a bulk publish could not publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkPublishFailure {
    pub entry_id: String,
    pub error: String,
}

/// A message handed to a subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    pub topic: String,
    pub data: Bytes,
    pub content_type: Option<String>,
    pub metadata: HashMap<String, String>,
}

/// What the subscriber decided about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Processed: never deliver it again.
    Ack,
    /// Not processed: deliver it again later.
    Retry,
    /// Not processable: discard it (the caller has already dead-lettered it if asked to).
    Drop,
}

/// Receives messages for one subscription. Messages of one subscription are handed over
/// one at a time, in order, by every component that claims `ordered_per_key`.
#[async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    async fn handle(&self, message: ReceivedMessage) -> DeliveryOutcome;
}

/// What to subscribe to.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeRequest {
    pub topic: String,
    pub metadata: HashMap<String, String>,
}

/// A live subscription; closing it stops delivery after the message in hand.
pub struct Subscription {
    stop: CancellationToken,
    worker: JoinHandle<()>,
}

impl Subscription {
    pub fn new(stop: CancellationToken, worker: JoinHandle<()>) -> Self {
        Self { stop, worker }
    }

    /// Ends the subscription at once, as a crash would: the message in hand is neither
    /// finished nor acknowledged.
    pub fn abort(self) {
        self.stop.cancel();
        self.worker.abort();
    }

    /// Stops taking new messages and waits for the one being delivered, if any.
    pub async fn close(self) {
        self.stop.cancel();
        if let Err(error) = self.worker.await {
            tracing::warn!("subscription worker ended abnormally: {error}");
        }
    }
}

/// How a pub/sub operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PubSubError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Backend(String),
    #[error("the component is closed")]
    Closed,
}

/// Checks the request metadata every component understands; `ttlInSeconds` must be a number
/// of seconds (or -1) even where the component cannot enforce it.
pub fn message_ttl(
    metadata: &HashMap<String, String>,
) -> Result<Option<crate::state::Ttl>, PubSubError> {
    match metadata.get("ttlInSeconds") {
        None => Ok(None),
        Some(text) => {
            crate::state::ttl_from_seconds_text(text).map_err(PubSubError::InvalidRequest)
        }
    }
}

/// The contract every pub/sub component implements.
#[async_trait]
pub trait PubSub: Send + Sync + 'static {
    fn features(&self) -> PubSubFeatures;

    /// Returns once the component has accepted the message (durably, where it is durable).
    async fn publish(&self, request: PublishRequest) -> Result<(), PubSubError>;

    /// Publishes every entry and reports the ones that failed; components with a native
    /// batch call override this.
    async fn bulk_publish(
        &self,
        topic: &str,
        entries: Vec<BulkPublishEntry>,
    ) -> Result<Vec<BulkPublishFailure>, PubSubError> {
        let mut failures = Vec::new();
        for entry in entries {
            let request = PublishRequest {
                topic: topic.to_string(),
                data: entry.data,
                content_type: entry.content_type,
                metadata: entry.metadata,
            };
            if let Err(error) = self.publish(request).await {
                failures.push(BulkPublishFailure {
                    entry_id: entry.entry_id,
                    error: error.to_string(),
                });
            }
        }
        Ok(failures)
    }

    /// Starts delivering `topic` to `handler`. A message is redelivered until the handler
    /// acks or drops it, or the subscription closes (then it stays unacknowledged).
    async fn subscribe(
        &self,
        request: SubscribeRequest,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<Subscription, PubSubError>;
}
