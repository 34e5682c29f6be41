//! `pubsub.redis`: topics as Redis Streams, one consumer group per app, acknowledged with
//! `XACK` only after the subscriber accepts, and pending messages of dead consumers reclaimed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use outrigger_components::pubsub::{
    DeliveryOutcome, MessageHandler, PubSub, PubSubError, PubSubFeatures, PublishRequest,
    ReceivedMessage, SubscribeRequest, Subscription,
};
use outrigger_components::{ComponentMetadata, InitError};
use outrigger_redis_common::RedisSettings;
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio_util::sync::CancellationToken;

/// How long one `XREADGROUP` blocks; shutdown is noticed within this.
const BLOCK: Duration = Duration::from_millis(1000);
/// First wait before redelivering a message the subscriber asked to retry.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// Longest wait between redeliveries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Stream behaviour from the component metadata (Dapr's keys and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamOptions {
    /// `consumerID`: the consumer group, and this consumer's name (the app id by default).
    pub consumer_id: String,
    /// `maxLenApprox`: trim streams to about this many entries.
    pub max_len_approx: Option<u64>,
    /// `processingTimeout`: a message pending this long is reclaimed from its consumer.
    pub processing_timeout: Duration,
    /// `redeliverInterval`: how often to look for such messages (0 turns reclaiming off).
    pub redeliver_interval: Duration,
    /// `queueDepth`: messages read per `XREADGROUP`.
    pub queue_depth: usize,
    /// `concurrency`: messages handled at once; 1 keeps publish order.
    pub concurrency: usize,
}

impl StreamOptions {
    pub fn from_metadata(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        let consumer_id = metadata.required("consumerID")?.to_string();
        let max_len = metadata.u64_or("maxLenApprox", 0)?;
        let concurrency = metadata.u64_or("concurrency", 10)?.max(1);
        Ok(Self {
            consumer_id,
            max_len_approx: (max_len > 0).then_some(max_len),
            processing_timeout: metadata
                .duration_or("processingTimeout", Duration::from_secs(60))?,
            redeliver_interval: metadata
                .duration_or("redeliverInterval", Duration::from_secs(60))?,
            queue_depth: usize::try_from(metadata.u64_or("queueDepth", 100)?.max(1)).unwrap_or(100),
            concurrency: usize::try_from(concurrency).unwrap_or(10),
        })
    }
}

/// The `pubsub.redis` component.
pub struct RedisStreamsPubSub {
    settings: RedisSettings,
    client: redis::Client,
    publisher: ConnectionManager,
    options: StreamOptions,
}

impl RedisStreamsPubSub {
    pub async fn from_metadata(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        let settings = RedisSettings::from_metadata(metadata)?;
        let options = StreamOptions::from_metadata(metadata)?;
        let client = outrigger_redis_common::client(&settings)?;
        let timeout = settings.read_timeout.max(settings.write_timeout);
        let publisher = outrigger_redis_common::connect(&client, &settings, timeout).await?;
        Ok(Self {
            settings,
            client,
            publisher,
            options,
        })
    }
}

fn backend(error: redis::RedisError) -> PubSubError {
    PubSubError::Backend(format!("redis: {error}"))
}

#[async_trait]
impl PubSub for RedisStreamsPubSub {
    fn features(&self) -> PubSubFeatures {
        PubSubFeatures {
            ordered_per_key: self.options.concurrency == 1,
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
        let mut command = redis::cmd("XADD");
        command.arg(&request.topic);
        if let Some(max_len) = self.options.max_len_approx {
            command.arg("MAXLEN").arg("~").arg(max_len);
        }
        command.arg("*").arg("data").arg(request.data.as_ref());
        if !request.metadata.is_empty() {
            let metadata = serde_json::to_string(&request.metadata)
                .map_err(|error| PubSubError::InvalidRequest(error.to_string()))?;
            command.arg("metadata").arg(metadata);
        }
        let mut connection = self.publisher.clone();
        let deadline = self.settings.write_timeout;
        match tokio::time::timeout(deadline, command.query_async::<String>(&mut connection)).await {
            Ok(result) => result.map(drop).map_err(backend),
            Err(_) => Err(PubSubError::Backend(format!(
                "redis: no answer to XADD within {deadline:?}"
            ))),
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequest,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<Subscription, PubSubError> {
        // A blocking read must not share a connection with other calls, and its connection
        // must wait longer than the block.
        let timeout = BLOCK + self.settings.read_timeout;
        let mut connection = outrigger_redis_common::connect(&self.client, &self.settings, timeout)
            .await
            .map_err(|error| PubSubError::Backend(error.to_string()))?;
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&request.topic)
            .arg(&self.options.consumer_id)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut connection)
            .await;
        // BUSYGROUP: the group exists already (another run of this app created it).
        match created {
            Err(error) if error.code() != Some("BUSYGROUP") => return Err(backend(error)),
            _ => {}
        }
        let stop = CancellationToken::new();
        let consumer = Consumer {
            topic: request.topic,
            options: self.options.clone(),
            connection,
            handler,
            in_flight: Arc::default(),
            stop: stop.clone(),
        };
        let worker = tokio::spawn(consumer.run());
        Ok(Subscription::new(stop, worker))
    }
}

/// One subscription's reader: new messages, then reclaimed ones, each handed to the handler.
struct Consumer {
    topic: String,
    options: StreamOptions,
    connection: ConnectionManager,
    handler: Arc<dyn MessageHandler>,
    /// Ids being handled here, so a reclaim never hands the same message out twice.
    in_flight: Arc<Mutex<HashSet<String>>>,
    stop: CancellationToken,
}

impl Consumer {
    async fn run(mut self) {
        let mut tasks = tokio::task::JoinSet::new();
        let reclaiming = !self.options.redeliver_interval.is_zero();
        let mut next_reclaim = tokio::time::Instant::now() + self.options.redeliver_interval;
        // Messages this consumer read before a restart and never acknowledged come first.
        let mut backlog = true;
        let stop = self.stop.clone();
        loop {
            if stop.is_cancelled() {
                break;
            }
            while tasks.len() >= self.options.concurrency {
                tasks.join_next().await;
            }
            let batch = if reclaiming && tokio::time::Instant::now() >= next_reclaim {
                next_reclaim = tokio::time::Instant::now() + self.options.redeliver_interval;
                self.reclaim().await
            } else {
                let from = if backlog { "0" } else { ">" };
                tokio::select! {
                    () = stop.cancelled() => break,
                    batch = self.read(from) => batch,
                }
            };
            let messages = match batch {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(topic = %self.topic, "redis streams read failed, retrying: {error}");
                    // A read whose answer was lost may still have assigned messages to this
                    // consumer; read its own pending entries first once Redis answers again.
                    backlog = true;
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            if backlog && messages.is_empty() {
                backlog = false;
            }
            for message in messages {
                if !self
                    .in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(message.id.clone())
                {
                    continue;
                }
                let delivery = Delivery {
                    topic: self.topic.clone(),
                    group: self.options.consumer_id.clone(),
                    connection: self.connection.clone(),
                    handler: Arc::clone(&self.handler),
                    in_flight: Arc::clone(&self.in_flight),
                    stop: self.stop.clone(),
                };
                if self.options.concurrency == 1 {
                    delivery.deliver(message).await;
                } else {
                    while tasks.len() >= self.options.concurrency {
                        tasks.join_next().await;
                    }
                    tasks.spawn(delivery.deliver(message));
                }
            }
        }
        // Deliveries in hand finish; anything unacknowledged stays pending for redelivery.
        while tasks.join_next().await.is_some() {}
    }

    async fn read(&mut self, from: &str) -> redis::RedisResult<Vec<StreamId>> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.options.consumer_id)
            .arg(&self.options.consumer_id)
            .arg("COUNT")
            .arg(self.options.queue_depth)
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(1000))
            .arg("STREAMS")
            .arg(&self.topic)
            .arg(from)
            .query_async(&mut self.connection)
            .await?;
        Ok(reply
            .map(|reply| reply.keys.into_iter().flat_map(|key| key.ids).collect())
            .unwrap_or_default())
    }

    /// Takes over messages another consumer (or a crashed earlier run) left pending too long.
    async fn reclaim(&mut self) -> redis::RedisResult<Vec<StreamId>> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&self.topic)
            .arg(&self.options.consumer_id)
            .arg(&self.options.consumer_id)
            .arg(u64::try_from(self.options.processing_timeout.as_millis()).unwrap_or(u64::MAX))
            .arg("0-0")
            .arg("COUNT")
            .arg(self.options.queue_depth)
            .query_async(&mut self.connection)
            .await?;
        if !reply.claimed.is_empty() {
            tracing::info!(topic = %self.topic, count = reply.claimed.len(), "reclaimed messages left pending past processingTimeout");
        }
        Ok(reply.claimed)
    }
}

/// Everything needed to hand one message to the handler and acknowledge it.
struct Delivery {
    topic: String,
    group: String,
    connection: ConnectionManager,
    handler: Arc<dyn MessageHandler>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    stop: CancellationToken,
}

impl Delivery {
    async fn deliver(mut self, entry: StreamId) {
        let message = ReceivedMessage {
            topic: self.topic.clone(),
            data: entry
                .get::<Vec<u8>>("data")
                .map(Bytes::from)
                .unwrap_or_default(),
            content_type: None,
            metadata: entry
                .get::<String>("metadata")
                .and_then(|text| serde_json::from_str::<HashMap<String, String>>(&text).ok())
                .unwrap_or_default(),
        };
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            match self.handler.handle(message.clone()).await {
                DeliveryOutcome::Ack | DeliveryOutcome::Drop => {
                    let acked: redis::RedisResult<i64> = redis::cmd("XACK")
                        .arg(&self.topic)
                        .arg(&self.group)
                        .arg(&entry.id)
                        .query_async(&mut self.connection)
                        .await;
                    if let Err(error) = acked {
                        // Not acknowledged: it stays pending and is redelivered later.
                        tracing::warn!(topic = %self.topic, id = %entry.id, "XACK failed: {error}");
                    }
                    break;
                }
                DeliveryOutcome::Retry => {
                    tokio::select! {
                        () = self.stop.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        }
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&entry.id);
    }
}

#[cfg(test)]
mod tests {
    use outrigger_test_harness::RedisServer;

    use super::*;

    async fn pubsub(server: &RedisServer, extra: &[(&str, &str)]) -> RedisStreamsPubSub {
        let address = server.address();
        let mut pairs = vec![
            ("redisHost", address.as_str()),
            ("consumerID", "conformance-app"),
        ];
        pairs.extend_from_slice(extra);
        RedisStreamsPubSub::from_metadata(&ComponentMetadata::from_pairs(pairs))
            .await
            .expect("connects")
    }

    #[tokio::test]
    async fn passes_pubsub_conformance_against_real_redis() {
        let server = RedisServer::start().expect("redis-server");
        let shared: Arc<dyn PubSub> = Arc::new(pubsub(&server, &[("concurrency", "1")]).await);
        outrigger_conformance::pubsub::run_suite(|| {
            let shared = Arc::clone(&shared);
            async move { shared }
        })
        .await;
    }

    #[tokio::test]
    async fn unacknowledged_messages_of_a_dead_consumer_are_redelivered() {
        struct Swallow(tokio::sync::mpsc::UnboundedSender<Bytes>, bool);
        #[async_trait]
        impl MessageHandler for Swallow {
            async fn handle(&self, message: ReceivedMessage) -> DeliveryOutcome {
                let _ = self.0.send(message.data);
                if self.1 {
                    DeliveryOutcome::Ack
                } else {
                    std::future::pending().await
                }
            }
        }
        let server = RedisServer::start().expect("redis-server");
        let settings = [
            ("processingTimeout", "500ms"),
            ("redeliverInterval", "200ms"),
            ("concurrency", "1"),
        ];
        let crashing = pubsub(&server, &settings).await;
        let (seen, mut first_seen) = tokio::sync::mpsc::unbounded_channel();
        let request = || SubscribeRequest {
            topic: "crash-topic".into(),
            metadata: HashMap::new(),
        };
        let doomed = crashing
            .subscribe(request(), Arc::new(Swallow(seen, false)))
            .await
            .expect("subscribe");
        crashing
            .publish(PublishRequest {
                topic: "crash-topic".into(),
                data: Bytes::from_static(b"survivor"),
                content_type: None,
                metadata: HashMap::new(),
            })
            .await
            .expect("publish");
        assert_eq!(
            first_seen.recv().await.as_deref(),
            Some(b"survivor".as_slice())
        );
        // The consumer dies mid-delivery, without acknowledging.
        doomed.abort();
        drop(crashing);

        let restarted = pubsub(&server, &settings).await;
        let (seen, mut redelivered) = tokio::sync::mpsc::unbounded_channel();
        let subscription = restarted
            .subscribe(request(), Arc::new(Swallow(seen, true)))
            .await
            .expect("subscribe");
        let again = tokio::time::timeout(Duration::from_secs(10), redelivered.recv())
            .await
            .expect("redelivered within 10s");
        assert_eq!(again.as_deref(), Some(b"survivor".as_slice()));
        subscription.close().await;
        assert_eq!(
            server.pending_count("crash-topic", "conformance-app").await,
            0,
            "acknowledged after redelivery"
        );
    }
}
