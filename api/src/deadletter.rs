//! Dead-letter topics: a dropped message goes, unchanged, to the topic the subscription names.

use outrigger_components::pubsub::{DeliveryOutcome, PubSub, PublishRequest, ReceivedMessage};

/// Publishes a dropped message to `topic`; if that fails the message is retried rather than lost.
pub async fn forward(
    pubsub: &dyn PubSub,
    topic: &str,
    message: ReceivedMessage,
) -> DeliveryOutcome {
    let request = PublishRequest {
        topic: topic.to_string(),
        data: message.data,
        content_type: message.content_type,
        metadata: message.metadata,
    };
    match pubsub.publish(request).await {
        Ok(()) => DeliveryOutcome::Drop,
        Err(error) => {
            tracing::warn!(dead_letter_topic = %topic, "cannot forward a dropped message to its dead-letter topic, retrying it: {error}");
            DeliveryOutcome::Retry
        }
    }
}
