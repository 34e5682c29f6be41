//! Delivering one event to an HTTP app and reading its verdict, as Dapr does.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use outrigger_api::cloudevents::{self, CLOUDEVENTS_CONTENT_TYPE, EventContext};
use outrigger_components::pubsub::{DeliveryOutcome, MessageHandler, PubSub, ReceivedMessage};
use serde_json::Value;

use super::spec::SubscriptionSpec;
use crate::app_channel::{AppChannel, AppResponse, GrpcChannel};
use outrigger_api::resiliency::Policy;

/// Delivers a subscription's events to the app.
pub struct AppDelivery {
    pub channel: AppChannel,
    pub spec: Arc<SubscriptionSpec>,
    pub pubsub: Arc<dyn PubSub>,
    /// The pub/sub's inbound resiliency policy, if one is declared.
    pub policy: Option<Policy>,
}

/// The app's verdict: 2xx with no body or `SUCCESS` acks, `RETRY` (or any status other than
/// `SUCCESS`/`DROP`) retries, `DROP` or 404 drops, any other non-2xx retries.
pub fn verdict(response: &AppResponse) -> DeliveryOutcome {
    match response.status {
        200..=299 => {
            let status = serde_json::from_slice::<Value>(&response.body)
                .ok()
                .and_then(|body| {
                    body.get("status")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
            match status.as_deref() {
                None | Some("") | Some("SUCCESS") => DeliveryOutcome::Ack,
                Some("DROP") => DeliveryOutcome::Drop,
                Some(_) => DeliveryOutcome::Retry,
            }
        }
        404 => DeliveryOutcome::Drop,
        _ => DeliveryOutcome::Retry,
    }
}

impl AppDelivery {
    /// The CloudEvent to send: the message itself, or a new envelope around a raw payload.
    fn event(&self, message: &ReceivedMessage) -> (Value, Bytes) {
        if let Ok(event @ Value::Object(_)) = serde_json::from_slice::<Value>(&message.data) {
            return (event, message.data.clone());
        }
        let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let context = EventContext {
            source: "",
            topic: &message.topic,
            pubsub: &self.spec.pubsub,
            traceparent: "",
            tracestate: "",
            time: &time,
            expiration: None,
        };
        let event = Value::Object(cloudevents::wrap(
            &message.data,
            Some("application/octet-stream"),
            &context,
        ));
        let bytes = serde_json::to_vec(&event)
            .map(Bytes::from)
            .unwrap_or_default();
        (event, bytes)
    }

    /// `AppCallback.OnTopicEvent`: SUCCESS acks, RETRY retries, DROP drops; an app that does
    /// not implement it drops, any other failure retries, as in Dapr.
    async fn deliver_grpc(
        &self,
        channel: &GrpcChannel,
        message: &ReceivedMessage,
        path: &str,
    ) -> DeliveryOutcome {
        let event = outrigger_api::grpc::topic_event::topic_event(message, &self.spec.pubsub, path);
        let (mut client, request) = channel.call(event);
        match client.on_topic_event(request).await {
            Ok(response) => match response.into_inner().status {
                0 => DeliveryOutcome::Ack,
                2 => DeliveryOutcome::Drop,
                _ => DeliveryOutcome::Retry,
            },
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                tracing::warn!(
                    "the app does not implement AppCallback.OnTopicEvent: dropping the event"
                );
                DeliveryOutcome::Drop
            }
            Err(status) => {
                tracing::warn!(
                    "AppCallback.OnTopicEvent failed: {status}; the event will be delivered again"
                );
                DeliveryOutcome::Retry
            }
        }
    }

    async fn dead_letter(&self, message: ReceivedMessage) -> DeliveryOutcome {
        match &self.spec.dead_letter_topic {
            Some(topic) => outrigger_api::deadletter::forward(&*self.pubsub, topic, message).await,
            None => DeliveryOutcome::Drop,
        }
    }
}

#[async_trait]
impl MessageHandler for AppDelivery {
    /// With an inbound policy, a `Retry` is retried (and timed, and counted by the breaker)
    /// here first; only when the policy gives up does the component redeliver later.
    async fn handle(&self, message: ReceivedMessage) -> DeliveryOutcome {
        let Some(policy) = &self.policy else {
            return self.deliver(message).await;
        };
        let result = policy
            .run(
                |_: &()| true,
                || {
                    let message = message.clone();
                    async move {
                        match self.deliver(message).await {
                            DeliveryOutcome::Retry => Err(()),
                            outcome => Ok(outcome),
                        }
                    }
                },
            )
            .await;
        result.unwrap_or(DeliveryOutcome::Retry)
    }
}

impl AppDelivery {
    async fn deliver(&self, message: ReceivedMessage) -> DeliveryOutcome {
        let (event, body) = self.event(&message);
        let path = match self.spec.route(&event) {
            Ok(Some(path)) => path.to_string(),
            Ok(None) => {
                tracing::warn!(subscription = %self.spec.origin, topic = %message.topic, "no route matches the event and there is no default route: dropping it");
                return self.dead_letter(message).await;
            }
            Err(error) => {
                tracing::error!(subscription = %self.spec.origin, "{error}: dropping the event");
                return self.dead_letter(message).await;
            }
        };
        let text = |field: &str| {
            event
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut headers = vec![("pubsubname".to_string(), self.spec.pubsub.clone())];
        for field in ["traceparent", "tracestate"] {
            let value = text(field);
            if !value.is_empty() {
                headers.push((field.to_string(), value));
            }
        }
        let channel = match &self.channel {
            AppChannel::Http(channel) => channel,
            AppChannel::Grpc(channel) => {
                let outcome = self.deliver_grpc(channel, &message, &path).await;
                return match outcome {
                    DeliveryOutcome::Drop => self.dead_letter(message).await,
                    other => other,
                };
            }
        };
        let outcome = match channel
            .post(&path, CLOUDEVENTS_CONTENT_TYPE, body, &headers)
            .await
        {
            Ok(response) => {
                let outcome = verdict(&response);
                if outcome != DeliveryOutcome::Ack {
                    tracing::debug!(path = %path, status = response.status, ?outcome, "the app did not accept the event");
                }
                outcome
            }
            Err(error) => {
                tracing::warn!("{error}; the event will be delivered again");
                DeliveryOutcome::Retry
            }
        };
        match outcome {
            DeliveryOutcome::Drop => self.dead_letter(message).await,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> AppResponse {
        AppResponse {
            status,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn app_answers_decide_like_dapr() {
        assert_eq!(verdict(&response(200, "")), DeliveryOutcome::Ack);
        assert_eq!(verdict(&response(204, "")), DeliveryOutcome::Ack);
        assert_eq!(verdict(&response(200, "not json")), DeliveryOutcome::Ack);
        assert_eq!(
            verdict(&response(200, r#"{"status":"SUCCESS"}"#)),
            DeliveryOutcome::Ack
        );
        assert_eq!(
            verdict(&response(200, r#"{"status":"RETRY"}"#)),
            DeliveryOutcome::Retry
        );
        assert_eq!(
            verdict(&response(200, r#"{"status":"success"}"#)),
            DeliveryOutcome::Retry,
            "status is case-sensitive"
        );
        assert_eq!(
            verdict(&response(200, r#"{"status":"DROP"}"#)),
            DeliveryOutcome::Drop
        );
        assert_eq!(verdict(&response(404, "")), DeliveryOutcome::Drop);
        assert_eq!(verdict(&response(500, "")), DeliveryOutcome::Retry);
        assert_eq!(verdict(&response(400, "")), DeliveryOutcome::Retry);
    }
}
