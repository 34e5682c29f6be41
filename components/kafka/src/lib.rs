//! `pubsub.kafka` and `bindings.kafka` on rdkafka: offsets are committed only after the app
//! accepted a message, so an unacknowledged message is delivered again.

pub mod binding;
pub mod settings;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use outrigger_components::pubsub::{
    BulkPublishEntry, BulkPublishFailure, DeliveryOutcome, MessageHandler, PubSub, PubSubError,
    PubSubFeatures, PublishRequest, ReceivedMessage, SubscribeRequest, Subscription,
};
use outrigger_components::{ComponentMetadata, InitError};
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

pub use self::binding::KafkaBinding;
pub use self::settings::KafkaSettings;

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// The producer, consumers and topic bookkeeping shared by the pub/sub and the binding.
pub struct KafkaClient {
    settings: KafkaSettings,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    known_topics: Mutex<HashSet<String>>,
}

impl KafkaClient {
    pub fn new(settings: KafkaSettings) -> Result<Self, InitError> {
        let connect = |error: rdkafka::error::KafkaError| {
            InitError::Connect(format!("kafka at {}: {error}", settings.brokers))
        };
        let producer: FutureProducer = settings
            .client_config()
            .set("acks", "all")
            // Send at once: each publish waits for its acknowledgement, so lingering only adds
            // latency; concurrent sends (bulk publish) still share batches.
            .set("linger.ms", "0")
            .set(
                "message.timeout.ms",
                settings.operation_timeout.as_millis().to_string(),
            )
            .create()
            .map_err(connect)?;
        let admin: AdminClient<DefaultClientContext> =
            settings.client_config().create().map_err(connect)?;
        Ok(Self {
            settings,
            producer,
            admin,
            known_topics: Mutex::default(),
        })
    }

    /// Creates `topic` if the broker does not have it (brokers such as tansu do not create
    /// topics on first use).
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), String> {
        if self
            .known_topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(topic)
        {
            return Ok(());
        }
        let new_topic = NewTopic::new(topic, self.settings.partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(self.settings.operation_timeout));
        let results = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|error| format!("creating topic {topic}: {error}"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(format!("creating topic {name}: {code}")),
            }
        }
        self.known_topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_string());
        Ok(())
    }

    pub async fn produce(&self, topic: &str, key: Option<&str>, data: &[u8]) -> Result<(), String> {
        self.ensure_topic(topic).await?;
        let mut record = FutureRecord::<str, [u8]>::to(topic).payload(data);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.producer
            .send(record, self.settings.operation_timeout)
            .await
            .map(drop)
            .map_err(|(error, _)| format!("kafka: publishing to {topic}: {error}"))
    }

    /// A consumer in the component's group, subscribed to `topics`, committing by hand.
    pub async fn consumer(&self, topics: &[&str]) -> Result<StreamConsumer, String> {
        for topic in topics {
            self.ensure_topic(topic).await?;
        }
        let consumer: StreamConsumer = self
            .settings
            .client_config()
            .set("group.id", &self.settings.consumer_group)
            .set("enable.auto.commit", "false")
            // A consumer that died holds its partitions until the session times out; Dapr's
            // (Sarama's) 10 s keeps that wait short.
            .set(
                "session.timeout.ms",
                self.settings.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.settings.session_timeout.as_millis() / 3)
                    .max(100)
                    .to_string(),
            )
            .set(
                "auto.offset.reset",
                if self.settings.start_at_oldest {
                    "earliest"
                } else {
                    "latest"
                },
            )
            .create()
            .map_err(|error| format!("kafka consumer: {error}"))?;
        consumer
            .subscribe(topics)
            .map_err(|error| format!("kafka subscribe {topics:?}: {error}"))?;
        Ok(consumer)
    }
}

/// Reads messages one at a time and hands each to `deliver`; commits its offset once
/// `deliver` says so. Ends when `stop` is cancelled.
pub async fn consume<F, Fut>(consumer: StreamConsumer, stop: CancellationToken, mut deliver: F)
where
    F: FnMut(String, Bytes, HashMap<String, String>) -> Fut,
    Fut: Future<Output = bool>,
{
    let consumer = Arc::new(consumer);
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message.detach(),
            Err(error) => {
                tracing::warn!("kafka receive failed, retrying: {error}");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        let data = Bytes::copy_from_slice(message.payload().unwrap_or_default());
        let mut metadata = HashMap::new();
        if let Some(key) = message.key() {
            metadata.insert(
                "partitionKey".to_string(),
                String::from_utf8_lossy(key).into_owned(),
            );
        }
        if !deliver(message.topic().to_string(), data, metadata).await {
            // Not accepted and stopping: leave the offset uncommitted so it comes back.
            return;
        }
        let mut offsets = rdkafka::TopicPartitionList::new();
        if let Err(error) = offsets.add_partition_offset(
            message.topic(),
            message.partition(),
            rdkafka::Offset::Offset(message.offset() + 1),
        ) {
            tracing::warn!("kafka: cannot record the offset to commit: {error}");
            continue;
        }
        // A synchronous commit waits for the broker; off the async threads, so a slow or
        // absent broker never stalls the sidecar's other work.
        let committer = Arc::clone(&consumer);
        let committed =
            tokio::task::spawn_blocking(move || committer.commit(&offsets, CommitMode::Sync)).await;
        let failure = match committed {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(error) => Some(error.to_string()),
        };
        if let Some(error) = failure {
            tracing::warn!(
                topic = message.topic(),
                "kafka commit failed; the message may be delivered again: {error}"
            );
        }
    }
}

/// The `pubsub.kafka` component.
pub struct KafkaPubSub {
    client: Arc<KafkaClient>,
}

impl KafkaPubSub {
    pub fn from_metadata(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        Ok(Self {
            client: Arc::new(KafkaClient::new(KafkaSettings::from_metadata(metadata)?)?),
        })
    }
}

#[async_trait]
impl PubSub for KafkaPubSub {
    fn features(&self) -> PubSubFeatures {
        PubSubFeatures {
            ordered_per_key: true,
            message_ttl: false,
            durable: true,
        }
    }

    async fn publish(&self, request: PublishRequest) -> Result<(), PubSubError> {
        if request.topic.is_empty() {
            return Err(PubSubError::InvalidRequest(
                "topic must not be empty".into(),
            ));
        }
        outrigger_components::pubsub::message_ttl(&request.metadata)?;
        let key = request.metadata.get("partitionKey").map(String::as_str);
        self.client
            .produce(&request.topic, key, &request.data)
            .await
            .map_err(PubSubError::Backend)
    }

    /// Sends every entry at once and reports each failure.
    async fn bulk_publish(
        &self,
        topic: &str,
        entries: Vec<BulkPublishEntry>,
    ) -> Result<Vec<BulkPublishFailure>, PubSubError> {
        self.client
            .ensure_topic(topic)
            .await
            .map_err(PubSubError::Backend)?;
        let sends = entries.iter().map(|entry| async move {
            outrigger_components::pubsub::message_ttl(&entry.metadata)
                .map_err(|error| error.to_string())?;
            let key = entry.metadata.get("partitionKey").map(String::as_str);
            self.client.produce(topic, key, &entry.data).await
        });
        let results = futures::future::join_all(sends).await;
        Ok(entries
            .into_iter()
            .zip(results)
            .filter_map(|(entry, result)| {
                result.err().map(|error| BulkPublishFailure {
                    entry_id: entry.entry_id,
                    error,
                })
            })
            .collect())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequest,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<Subscription, PubSubError> {
        let consumer = self
            .client
            .consumer(&[&request.topic])
            .await
            .map_err(PubSubError::Backend)?;
        let stop = CancellationToken::new();
        let worker = tokio::spawn({
            let stop = stop.clone();
            async move {
                let deliver = |topic: String, data: Bytes, metadata: HashMap<String, String>| {
                    let handler = Arc::clone(&handler);
                    let stop = stop.clone();
                    async move {
                        let message = ReceivedMessage {
                            topic,
                            data,
                            content_type: None,
                            metadata,
                        };
                        let mut delay = FIRST_RETRY_DELAY;
                        loop {
                            match handler.handle(message.clone()).await {
                                DeliveryOutcome::Ack | DeliveryOutcome::Drop => return true,
                                DeliveryOutcome::Retry => {
                                    tokio::select! {
                                        () = stop.cancelled() => return false,
                                        () = tokio::time::sleep(delay) => {}
                                    }
                                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                                }
                            }
                        }
                    }
                };
                consume(consumer, stop.clone(), deliver).await;
            }
        });
        Ok(Subscription::new(stop, worker))
    }
}

#[cfg(test)]
mod tests {
    use outrigger_test_harness::KafkaBroker;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binding_passes_input_and_output_conformance() {
        use outrigger_components::bindings::InvokeRequest;
        let broker = KafkaBroker::start().expect("tansu");
        let address = broker.address();
        let binding = KafkaBinding::from_metadata(&ComponentMetadata::from_pairs([
            ("brokers", address.as_str()),
            ("consumerGroup", "binding-conformance"),
            ("topics", "binding-topic"),
            ("publishTopic", "binding-topic"),
            ("initialOffset", "oldest"),
        ]))
        .expect("client");
        let valid = InvokeRequest {
            operation: "create".into(),
            data: Bytes::from_static(b"event"),
            metadata: HashMap::new(),
        };
        outrigger_conformance::bindings::run_output_suite(&binding, valid.clone()).await;
        outrigger_conformance::bindings::run_input_suite(&binding, || async {
            use outrigger_components::bindings::OutputBinding;
            binding.invoke(valid.clone()).await.expect("publish");
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_pubsub_conformance_against_a_real_broker() {
        let broker = KafkaBroker::start().expect("tansu");
        let address = broker.address();
        let pubsub: Arc<dyn PubSub> = Arc::new(
            KafkaPubSub::from_metadata(&ComponentMetadata::from_pairs([
                ("brokers", address.as_str()),
                ("consumerGroup", "conformance"),
                ("initialOffset", "oldest"),
            ]))
            .expect("client"),
        );
        outrigger_conformance::pubsub::run_suite(|| {
            let pubsub = Arc::clone(&pubsub);
            async move { pubsub }
        })
        .await;
    }
}
