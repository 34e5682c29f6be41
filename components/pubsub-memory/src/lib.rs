//! `pubsub.in-memory`: process-local topics with ordered, retried delivery to each subscriber.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use outrigger_components::pubsub::message_ttl;
use outrigger_components::pubsub::{
    DeliveryOutcome, MessageHandler, PubSub, PubSubError, PubSubFeatures, PublishRequest,
    ReceivedMessage, SubscribeRequest, Subscription,
};
use outrigger_components::state::Ttl;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// First wait before redelivering a message the subscriber asked to retry.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// Longest wait between redeliveries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

struct Queued {
    message: ReceivedMessage,
    expires_at: Option<Instant>,
}

#[derive(Default)]
struct Topics {
    subscribers: HashMap<String, Vec<(u64, mpsc::UnboundedSender<Queued>)>>,
}

/// The `pubsub.in-memory` component. Messages live only in this process: a message
/// published while a topic has no subscriber is discarded, as in Dapr.
#[derive(Clone, Default)]
pub struct InMemoryPubSub {
    topics: Arc<Mutex<Topics>>,
    next_id: Arc<AtomicU64>,
}

impl InMemoryPubSub {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Topics> {
        // Only map edits happen under the lock; a poisoned map is still consistent.
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn expiry(metadata: &HashMap<String, String>) -> Result<Option<Instant>, PubSubError> {
    match message_ttl(metadata)? {
        Some(Ttl::After(duration)) => Ok(Some(Instant::now() + duration)),
        Some(Ttl::Never) | None => Ok(None),
    }
}

#[async_trait]
impl PubSub for InMemoryPubSub {
    fn features(&self) -> PubSubFeatures {
        PubSubFeatures {
            ordered_per_key: true,
            message_ttl: true,
            durable: false,
        }
    }

    async fn publish(&self, request: PublishRequest) -> Result<(), PubSubError> {
        if request.topic.is_empty() {
            return Err(PubSubError::InvalidRequest(
                "topic must not be empty".into(),
            ));
        }
        let expires_at = expiry(&request.metadata)?;
        let message = ReceivedMessage {
            topic: request.topic,
            data: request.data,
            content_type: request.content_type,
            metadata: request.metadata,
        };
        let topics = self.lock();
        for (_, subscriber) in topics.subscribers.get(&message.topic).into_iter().flatten() {
            // A closed receiver belongs to a subscription that is shutting down.
            let _ = subscriber.send(Queued {
                message: message.clone(),
                expires_at,
            });
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequest,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<Subscription, PubSubError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::unbounded_channel();
        self.lock()
            .subscribers
            .entry(request.topic.clone())
            .or_default()
            .push((id, sender));
        let stop = CancellationToken::new();
        let worker = tokio::spawn(deliver(
            self.clone(),
            request.topic,
            id,
            receiver,
            handler,
            stop.clone(),
        ));
        Ok(Subscription::new(stop, worker))
    }
}

/// Hands messages to the handler one at a time, redelivering on `Retry` with a bounded backoff.
async fn deliver(
    pubsub: InMemoryPubSub,
    topic: String,
    id: u64,
    mut receiver: mpsc::UnboundedReceiver<Queued>,
    handler: Arc<dyn MessageHandler>,
    stop: CancellationToken,
) {
    'messages: loop {
        let queued = tokio::select! {
            () = stop.cancelled() => break,
            queued = receiver.recv() => match queued {
                Some(queued) => queued,
                None => break,
            },
        };
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            if queued
                .expires_at
                .is_some_and(|deadline| deadline <= Instant::now())
            {
                tracing::debug!(topic = %topic, "dropping a message whose ttlInSeconds has passed");
                continue 'messages;
            }
            match handler.handle(queued.message.clone()).await {
                DeliveryOutcome::Ack | DeliveryOutcome::Drop => continue 'messages,
                DeliveryOutcome::Retry => {
                    tokio::select! {
                        () = stop.cancelled() => break 'messages,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
    }
    let mut topics = pubsub.lock();
    if let Some(subscribers) = topics.subscribers.get_mut(&topic) {
        subscribers.retain(|(subscriber, _)| *subscriber != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_pubsub_conformance() {
        outrigger_conformance::pubsub::run_suite(|| async {
            Arc::new(InMemoryPubSub::new()) as Arc<dyn PubSub>
        })
        .await;
    }
}
