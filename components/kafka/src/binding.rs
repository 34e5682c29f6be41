//! `bindings.kafka`: input (`topics`, delivered to the app) and output (`create` publishes to
//! `publishTopic`, keyed by the `key` or `partitionKey` metadata).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use outrigger_components::bindings::{
    BindingError, BindingEvent, BindingEventHandler, InputBinding, InvokeRequest, InvokeResponse,
    OutputBinding, check_operation,
};
use outrigger_components::pubsub::Subscription;
use outrigger_components::{ComponentMetadata, InitError};
use tokio_util::sync::CancellationToken;

use crate::{KafkaClient, KafkaSettings, consume};

const OPERATIONS: [&str; 1] = ["create"];

/// The `bindings.kafka` component.
pub struct KafkaBinding {
    client: Arc<KafkaClient>,
    topics: Vec<String>,
    publish_topic: Option<String>,
}

impl KafkaBinding {
    /// Dapr's init: fails unless a broker answers and accepts the credentials.
    pub async fn connect(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        let (settings, topics, publish_topic) = Self::settings(metadata)?;
        Ok(Self {
            client: Arc::new(KafkaClient::connect(settings).await?),
            topics,
            publish_topic,
        })
    }

    /// Without waiting for a broker: the first operation does.
    pub fn from_metadata(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        let (settings, topics, publish_topic) = Self::settings(metadata)?;
        Ok(Self {
            client: Arc::new(KafkaClient::new(settings)?),
            topics,
            publish_topic,
        })
    }

    /// The connection settings, the input topics and the output topic.
    fn settings(
        metadata: &ComponentMetadata,
    ) -> Result<(KafkaSettings, Vec<String>, Option<String>), InitError> {
        let topics: Vec<String> = metadata
            .get("topics")
            .map(|topics| {
                topics
                    .split(',')
                    .map(str::trim)
                    .filter(|topic| !topic.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let publish_topic = metadata.get("publishTopic").map(str::to_string);
        if topics.is_empty() && publish_topic.is_none() {
            return Err(InitError::Metadata(
                outrigger_components::MetadataError::Missing {
                    field: "topics (input) or publishTopic (output)".into(),
                },
            ));
        }
        Ok((
            KafkaSettings::from_metadata(metadata)?,
            topics,
            publish_topic,
        ))
    }

    /// The input side, when `topics` is set.
    pub fn has_input(&self) -> bool {
        !self.topics.is_empty()
    }

    /// The output side, when `publishTopic` is set.
    pub fn has_output(&self) -> bool {
        self.publish_topic.is_some()
    }
}

#[async_trait]
impl OutputBinding for KafkaBinding {
    fn operations(&self) -> Vec<String> {
        OPERATIONS
            .iter()
            .map(|operation| operation.to_string())
            .collect()
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, BindingError> {
        check_operation(&request.operation, &OPERATIONS)?;
        let topic = self.publish_topic.as_deref().ok_or_else(|| {
            BindingError::InvalidRequest("this binding has no publishTopic".into())
        })?;
        let key = request
            .metadata
            .get("key")
            .or_else(|| request.metadata.get("partitionKey"))
            .map(String::as_str);
        self.client
            .produce(topic, key, &request.data)
            .await
            .map_err(BindingError::Backend)?;
        Ok(InvokeResponse::default())
    }
}

#[async_trait]
impl InputBinding for KafkaBinding {
    async fn read(
        &self,
        handler: Arc<dyn BindingEventHandler>,
    ) -> Result<Subscription, BindingError> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let consumer = self
            .client
            .consumer(&topics)
            .await
            .map_err(BindingError::Backend)?;
        let stop = CancellationToken::new();
        let worker = tokio::spawn({
            let stop = stop.clone();
            async move {
                let deliver =
                    |topic: String, data: Bytes, mut metadata: HashMap<String, String>| {
                        let handler = Arc::clone(&handler);
                        let stop = stop.clone();
                        async move {
                            metadata.insert("topic".into(), topic);
                            let mut delay = std::time::Duration::from_millis(50);
                            loop {
                                if handler
                                    .handle(BindingEvent {
                                        data: data.clone(),
                                        metadata: metadata.clone(),
                                    })
                                    .await
                                {
                                    return true;
                                }
                                tokio::select! {
                                    () = stop.cancelled() => return false,
                                    () = tokio::time::sleep(delay) => {}
                                }
                                delay = (delay * 2).min(std::time::Duration::from_secs(5));
                            }
                        }
                    };
                consume(consumer, stop.clone(), deliver).await;
            }
        });
        Ok(Subscription::new(stop, worker))
    }
}
