//! Streaming subscriptions (`SubscribeTopicEventsAlpha1`): events go out on the response
//! stream and each waits for the client's `event_processed` answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use dapr::dapr::proto::runtime::v1 as runtime;
use outrigger_components::pubsub::{
    DeliveryOutcome, MessageHandler, PubSub, ReceivedMessage, SubscribeRequest,
};
use runtime::subscribe_topic_events_request_alpha1::SubscribeTopicEventsRequestType as RequestType;
use runtime::subscribe_topic_events_response_alpha1::SubscribeTopicEventsResponseType as ResponseType;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::ResponseStream;
use super::topic_event::topic_event;
use crate::context::ApiContext;

type Outbound = mpsc::Sender<Result<runtime::SubscribeTopicEventsResponseAlpha1, Status>>;
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<DeliveryOutcome>>>>;

/// Opens the subscription described by the first request and streams its events.
pub async fn open(
    context: ApiContext,
    mut inbound: Streaming<runtime::SubscribeTopicEventsRequestAlpha1>,
) -> Result<ResponseStream<runtime::SubscribeTopicEventsResponseAlpha1>, Status> {
    let first = inbound.message().await?;
    let Some(RequestType::InitialRequest(initial)) =
        first.and_then(|request| request.subscribe_topic_events_request_type)
    else {
        return Err(Status::invalid_argument("initial request is required"));
    };
    if initial.pubsub_name.is_empty() {
        return Err(Status::invalid_argument("pubsubName is required"));
    }
    if initial.topic.is_empty() {
        return Err(Status::invalid_argument("topic is required"));
    }
    let registered = context.pubsub.pubsub(&initial.pubsub_name)?;
    let (outbound, receiver) = mpsc::channel(16);
    let initial_response = runtime::SubscribeTopicEventsResponseAlpha1 {
        subscribe_topic_events_response_type: Some(ResponseType::InitialResponse(
            runtime::SubscribeTopicEventsResponseInitialAlpha1 {},
        )),
    };
    outbound
        .send(Ok(initial_response))
        .await
        .map_err(|_| Status::cancelled("the client went away"))?;
    let pending: Pending = Arc::default();
    let handler = Arc::new(StreamHandler {
        outbound: outbound.clone(),
        pending: Arc::clone(&pending),
        pubsub_name: initial.pubsub_name.clone(),
        pubsub: Arc::clone(&registered.pubsub),
        dead_letter_topic: initial.dead_letter_topic.filter(|topic| !topic.is_empty()),
    });
    let subscription = registered
        .pubsub
        .subscribe(
            SubscribeRequest {
                topic: initial.topic.clone(),
                metadata: initial.metadata,
            },
            handler,
        )
        .await
        .map_err(|error| {
            Status::internal(format!(
                "failed to create subscription for {}: {error}",
                initial.pubsub_name
            ))
        })?;
    tracing::info!(pubsub = %initial.pubsub_name, topic = %initial.topic, "streaming subscription opened");
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = context.shutdown.cancelled() => break,
                next = inbound.message() => next,
            };
            match next {
                Ok(Some(request)) => match request.subscribe_topic_events_request_type {
                    Some(RequestType::EventProcessed(processed)) => {
                        // No status at all means success, as in Dapr; unknown values retry.
                        let outcome = match processed.status.map_or(0, |status| status.status) {
                            0 => DeliveryOutcome::Ack,
                            2 => DeliveryOutcome::Drop,
                            _ => DeliveryOutcome::Retry,
                        };
                        let waiting = pending
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&processed.id);
                        match waiting {
                            Some(waiting) => {
                                let _ = waiting.send(outcome);
                            }
                            None => {
                                tracing::warn!(id = %processed.id, "event_processed for an event that is not waiting")
                            }
                        }
                    }
                    Some(RequestType::InitialRequest(_)) => {
                        let _ = outbound
                            .send(Err(Status::invalid_argument(
                                "duplicate initial request received",
                            )))
                            .await;
                        break;
                    }
                    None => {}
                },
                Ok(None) | Err(_) => break,
            }
        }
        // Events still waiting for an answer stay unacknowledged and are delivered again.
        subscription.close().await;
        tracing::info!(pubsub = %initial.pubsub_name, topic = %initial.topic, "streaming subscription closed");
    });
    Ok(Box::pin(ReceiverStream::new(receiver)))
}

struct StreamHandler {
    outbound: Outbound,
    pending: Pending,
    pubsub_name: String,
    pubsub: Arc<dyn PubSub>,
    dead_letter_topic: Option<String>,
}

#[async_trait]
impl MessageHandler for StreamHandler {
    async fn handle(&self, message: ReceivedMessage) -> DeliveryOutcome {
        let event = topic_event(&message, &self.pubsub_name, "/");
        let id = event.id.clone();
        let (answer, answered) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), answer);
        let response = runtime::SubscribeTopicEventsResponseAlpha1 {
            subscribe_topic_events_response_type: Some(ResponseType::EventMessage(event)),
        };
        if self.outbound.send(Ok(response)).await.is_err() {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            return DeliveryOutcome::Retry;
        }
        let outcome = answered.await.unwrap_or(DeliveryOutcome::Retry);
        match (&self.dead_letter_topic, outcome) {
            (Some(topic), DeliveryOutcome::Drop) => {
                crate::deadletter::forward(&*self.pubsub, topic, message).await
            }
            _ => outcome,
        }
    }
}
