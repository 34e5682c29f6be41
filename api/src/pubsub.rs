//! The pub/sub building block as both servers see it: component lookup, CloudEvent
//! envelopes, and publishing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use outrigger_components::pubsub::{
    BulkPublishEntry, BulkPublishFailure, PubSubError, PublishRequest,
};
use outrigger_components::{ComponentRegistry, RegisteredPubSub};
use serde_json::{Map, Value};

use crate::cloudevents::{self, CLOUDEVENTS_CONTENT_TYPE, EnvelopeOverrides, EventContext};
use crate::error::ApiError;
use crate::resiliency::{PolicyError, Resiliency};

/// One event to publish, as the app sent it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishInput {
    pub data: Bytes,
    pub content_type: Option<String>,
    /// Request metadata: `rawPayload`, `ttlInSeconds`, `partitionKey`, `cloudevent.*`, …
    pub metadata: HashMap<String, String>,
}

/// One entry of a bulk publish, as the app sent it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkEntryInput {
    pub entry_id: String,
    pub event: PublishInput,
}

/// W3C trace context of the publish call, if the caller sent one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

#[derive(Clone)]
pub struct PubSubApi {
    registry: Arc<ComponentRegistry>,
    app_id: Arc<str>,
    resiliency: Arc<Resiliency>,
}

/// Calls a pub/sub component under its outbound resiliency policy; bad requests are final.
async fn protected<T, F, Fut>(policy: crate::resiliency::Policy, call: F) -> Result<T, PubSubError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PubSubError>>,
{
    policy
        .run(
            |error| !matches!(error, PubSubError::InvalidRequest(_)),
            call,
        )
        .await
        .map_err(|error| match error {
            PolicyError::Call(error) => error,
            other => PubSubError::Backend(other.to_string()),
        })
}

/// What every event of one publish request shares: its time and its trace.
struct PublishMoment<'a> {
    time: String,
    traceparent: String,
    tracestate: &'a str,
}

impl<'a> PublishMoment<'a> {
    fn new(trace: &'a TraceContext) -> Self {
        Self {
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            traceparent: trace
                .traceparent
                .clone()
                .unwrap_or_else(cloudevents::new_traceparent),
            tracestate: trace.tracestate.as_deref().unwrap_or(""),
        }
    }
}

impl PubSubApi {
    pub fn new(
        registry: Arc<ComponentRegistry>,
        app_id: &str,
        resiliency: Arc<Resiliency>,
    ) -> Self {
        Self {
            registry,
            app_id: Arc::from(app_id),
            resiliency,
        }
    }

    /// Finds a pub/sub by name, with Dapr's distinct failures.
    pub fn pubsub(&self, name: &str) -> Result<Arc<RegisteredPubSub>, ApiError> {
        self.registry.pubsub(name).ok_or_else(|| {
            if self.registry.has_pubsubs() {
                ApiError::PubSubNotFound {
                    name: name.to_string(),
                }
            } else {
                ApiError::PubSubNotConfigured {
                    name: name.to_string(),
                }
            }
        })
    }

    fn target(&self, pubsub: &str, topic: &str) -> Result<Arc<RegisteredPubSub>, ApiError> {
        let registered = self.pubsub(pubsub)?;
        if topic.is_empty() {
            return Err(ApiError::TopicEmpty {
                pubsub: pubsub.to_string(),
            });
        }
        Ok(registered)
    }

    pub async fn publish(
        &self,
        pubsub: &str,
        topic: &str,
        input: PublishInput,
        trace: &TraceContext,
    ) -> Result<(), ApiError> {
        let registered = self.target(pubsub, topic)?;
        let (data, content_type) =
            self.envelope(pubsub, topic, &input, &PublishMoment::new(trace))?;
        let request = PublishRequest {
            topic: topic.to_string(),
            data,
            content_type: Some(content_type),
            metadata: input.metadata,
        };
        protected(self.resiliency.outbound(pubsub), || {
            registered.pubsub.publish(request.clone())
        })
        .await
        .map_err(|error| ApiError::PublishFailed {
            pubsub: pubsub.to_string(),
            topic: topic.to_string(),
            cause: error.to_string(),
        })
    }

    /// Publishes every entry; returns the entries that failed, each with its reason.
    pub async fn bulk_publish(
        &self,
        pubsub: &str,
        topic: &str,
        entries: Vec<BulkEntryInput>,
        trace: &TraceContext,
    ) -> Result<Vec<BulkPublishFailure>, ApiError> {
        let registered = self.target(pubsub, topic)?;
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        if let Some(entry) = entries
            .iter()
            .find(|entry| entry.entry_id.is_empty() || !seen.insert(entry.entry_id.as_str()))
        {
            return Err(ApiError::malformed_events(format!(
                "entryId {:?} is empty or duplicated; every entry needs a unique entryId",
                entry.entry_id
            )));
        }
        drop(seen);
        let mut wire_entries = Vec::with_capacity(entries.len());
        // One request, one moment: every entry carries the same time and trace.
        let moment = PublishMoment::new(trace);
        for entry in entries {
            let (data, content_type) = self.envelope(pubsub, topic, &entry.event, &moment)?;
            wire_entries.push(BulkPublishEntry {
                entry_id: entry.entry_id,
                data,
                content_type: Some(content_type),
                metadata: entry.event.metadata,
            });
        }
        // A thousand entries are copied only when a retry may need them again.
        let policy = self.resiliency.outbound(pubsub);
        let kept_for_retries = policy.retries().then(|| wire_entries.clone());
        let mut first_attempt = Some(wire_entries);
        protected(policy, || {
            let entries = first_attempt
                .take()
                .or_else(|| kept_for_retries.clone())
                .unwrap_or_default();
            registered.pubsub.bulk_publish(topic, entries)
        })
        .await
        .map_err(|error| ApiError::PublishFailed {
            pubsub: pubsub.to_string(),
            topic: topic.to_string(),
            cause: error.to_string(),
        })
    }

    /// The bytes to hand the component: a CloudEvent, or the raw body with `rawPayload`.
    fn envelope(
        &self,
        pubsub: &str,
        topic: &str,
        input: &PublishInput,
        moment: &PublishMoment<'_>,
    ) -> Result<(Bytes, String), ApiError> {
        let metadata = &input.metadata;
        if metadata
            .get("rawPayload")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
        {
            let content_type = input
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into());
            return Ok((input.data.clone(), content_type));
        }
        let expiration = match metadata.get("ttlInSeconds") {
            Some(text) => {
                let seconds: u64 = text.trim().parse().map_err(|_| {
                    ApiError::malformed(format!(
                        "metadata.ttlInSeconds must be a whole number of seconds, got {text:?}"
                    ))
                })?;
                Some(
                    humantime::format_rfc3339_seconds(
                        SystemTime::now() + Duration::from_secs(seconds),
                    )
                    .to_string(),
                )
            }
            None => None,
        };
        let context = EventContext {
            source: &self.app_id,
            topic,
            pubsub,
            traceparent: &moment.traceparent,
            tracestate: moment.tracestate,
            time: &moment.time,
            expiration: expiration.as_deref(),
        };
        let is_cloud_event = input
            .content_type
            .as_deref()
            .is_some_and(|content_type| content_type.starts_with(CLOUDEVENTS_CONTENT_TYPE));
        let bytes = if is_cloud_event {
            let parsed: Map<String, Value> = serde_json::from_slice(&input.data).map_err(
                |error| ApiError::CloudEventMalformed {
                    message: format!(
                        "the body is application/cloudevents+json but not a JSON object: {error}"
                    ),
                },
            )?;
            serde_json::to_vec(&cloudevents::complete(parsed, &context)).map_err(|error| {
                ApiError::CloudEventMalformed {
                    message: error.to_string(),
                }
            })?
        } else {
            // Dapr lets the publisher set envelope fields through `cloudevent.<field>` metadata.
            let overrides = if metadata.keys().any(|key| key.starts_with("cloudevent.")) {
                let field = |name: &str| {
                    metadata
                        .get(&format!("cloudevent.{name}"))
                        .map(String::as_str)
                };
                EnvelopeOverrides {
                    id: field("id"),
                    source: field("source"),
                    event_type: field("type"),
                    traceid: field("traceid"),
                    traceparent: field("traceparent"),
                    tracestate: field("tracestate"),
                }
            } else {
                EnvelopeOverrides::default()
            };
            cloudevents::encode_new(
                &input.data,
                input.content_type.as_deref(),
                &context,
                &overrides,
            )
        };
        Ok((Bytes::from(bytes), CLOUDEVENTS_CONTENT_TYPE.to_string()))
    }
}
