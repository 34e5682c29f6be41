//! `pubsub.kafka` and `bindings.kafka` on rdkafka: offsets are committed only after the app
//! accepted a message, so an unacknowledged message is delivered again.
//!
//! As in Dapr, component init connects ([`KafkaPubSub::connect`], [`KafkaBinding::connect`]):
//! it fetches the cluster metadata, and fails with the brokers and the cause when no broker is
//! reachable or the SASL credentials are refused, so a sidecar does not start "fine" and fail
//! on its first publish. `from_metadata` creates a component without waiting for the brokers.
//!
//! With `authType: password`, a SASL authentication failure that librdkafka reports (wrong
//! `saslPassword`, unknown `saslUsername`, a `saslMechanism` the user has no credential for)
//! fails init, or later an operation that needs the broker (creating a topic on publish or
//! subscribe), within a second, with librdkafka's reason, instead of after a timeout.

pub mod binding;
mod delivery;
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
use rdkafka::client::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use self::binding::KafkaBinding;
pub use self::delivery::OutgoingMessage;
use self::delivery::PendingReport;
use self::settings::Auth;
pub use self::settings::KafkaSettings;

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long an operation has to succeed despite a SASL failure on record before it fails with
/// that failure: the credentials may have been fixed on the broker since, or the failure was a
/// refused re-authentication of a live connection (tansu refuses every one, about a minute
/// after each login), after which librdkafka logs in again at once.
const SASL_FAILURE_GRACE: Duration = Duration::from_secs(1);
/// How long component init keeps trying after librdkafka reported every broker down before it
/// fails: a broker name that resolves to several addresses is tried one address at a time, and
/// librdkafka reconnects within about 100 ms.
const BROKERS_DOWN_GRACE: Duration = Duration::from_secs(1);

/// The librdkafka callbacks of one component's clients (producer, admin, consumers): errors
/// are logged as before, and SASL authentication failures are also kept, so that operations
/// fail with them instead of waiting for a broker that will never accept the credentials;
/// so is librdkafka's report that no broker is reachable, which fails component init.
#[derive(Clone)]
pub struct KafkaContext {
    /// librdkafka's reason for the latest SASL failure; `None` after an operation succeeded.
    sasl_failure: Arc<watch::Sender<Option<String>>>,
    /// The latest connection error (refused, unresolvable, …) once every broker is down.
    brokers_down: Arc<watch::Sender<Option<String>>>,
    /// librdkafka's reason for the latest other error, the likely cause of "all brokers down".
    latest_error: Arc<Mutex<Option<String>>>,
    /// Repeats of one error are logged once per [`REPEAT_LOG_INTERVAL`]: every client of the
    /// component (producer, admin, consumers) reports the same outage, each every time it
    /// tries to reconnect.
    error_log: Arc<Mutex<RepeatedLog>>,
}

/// How often a repeated librdkafka error is logged again.
const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The last error logged, when, and how many repeats were left out since.
#[derive(Default)]
struct RepeatedLog {
    last: Option<(String, std::time::Instant)>,
    left_out: u64,
}

impl RepeatedLog {
    /// Whether to log `message` now; if so, how many repeats of the previous one were left out.
    fn admit(&mut self, message: &str, now: std::time::Instant) -> Option<u64> {
        if let Some((last, at)) = &self.last
            && last == message
            && now.duration_since(*at) < REPEAT_LOG_INTERVAL
        {
            self.left_out += 1;
            return None;
        }
        self.last = Some((message.to_string(), now));
        Some(std::mem::take(&mut self.left_out))
    }
}

impl KafkaContext {
    fn new() -> Self {
        Self {
            sasl_failure: Arc::new(watch::Sender::new(None)),
            brokers_down: Arc::new(watch::Sender::new(None)),
            latest_error: Arc::default(),
            error_log: Arc::default(),
        }
    }
}

impl ClientContext for KafkaContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => {
                self.sasl_failure.send_replace(Some(reason.to_string()));
            }
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                let cause = self
                    .latest_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
                    .unwrap_or_else(|| reason.to_string());
                self.brokers_down.send_replace(Some(cause));
            }
            _ => {
                *self
                    .latest_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(reason.to_string());
            }
        }
        let message = format!("librdkafka: {error}: {reason}");
        let admitted = self
            .error_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(&message, std::time::Instant::now());
        match admitted {
            Some(0) => tracing::error!(target: "librdkafka", "{message}"),
            Some(left_out) => tracing::error!(
                target: "librdkafka",
                "{message} ({left_out} repeats of the previous error not logged)"
            ),
            None => {}
        }
    }
}

impl ConsumerContext for KafkaContext {}

impl ProducerContext for KafkaContext {
    type DeliveryOpaque = Box<PendingReport>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Self::DeliveryOpaque) {
        delivery::record(result, &pending);
    }
}

/// Resolves with the failure on record, `grace` after noticing it, unless it was cleared
/// meanwhile (an operation succeeded; then it waits for the next failure).
async fn lasting_failure(mut failures: watch::Receiver<Option<String>>, grace: Duration) -> String {
    loop {
        while failures.borrow_and_update().is_none() {
            if failures.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
        tokio::time::sleep(grace).await;
        if let Some(reason) = failures.borrow_and_update().clone() {
            return reason;
        }
    }
}

/// The librdkafka clients a component keeps open.
struct Clients {
    producer: Arc<ThreadedProducer<KafkaContext>>,
    admin: AdminClient<KafkaContext>,
}

/// The producer, consumers and topic bookkeeping shared by the pub/sub and the binding.
pub struct KafkaClient {
    settings: KafkaSettings,
    context: KafkaContext,
    /// `None` only while being dropped.
    clients: Option<Clients>,
    known_topics: Mutex<HashSet<String>>,
}

impl Drop for KafkaClient {
    /// Closes the librdkafka clients on a thread of their own: closing flushes the producer (up
    /// to 500 ms) and waits for librdkafka's threads, which would stall the async runtime (one
    /// thread by default) after a failed init or a hot reload. Not on the blocking pool, whose
    /// tasks the runtime waits for when it shuts down.
    fn drop(&mut self) {
        if let Some(clients) = self.clients.take() {
            close_off_thread(clients);
        }
    }
}

/// Drops librdkafka handles on a thread of their own (see [`KafkaClient`]'s `Drop`).
fn close_off_thread<T: Send + 'static>(handles: T) {
    let closing = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || drop(handles));
    if let Err(error) = closing {
        // The handles were dropped here, by the failed spawn.
        tracing::warn!("kafka: closed the clients in place (no thread: {error})");
    }
}

/// A consumer that is closed off the async runtime however its loop ends: closing leaves the
/// consumer group, which waits for the broker (up to the session timeout when it is down) and
/// would stall every other request on the sidecar's one runtime thread.
/// `None` only while being dropped.
struct ConsumerHandle(Option<Arc<StreamConsumer<KafkaContext>>>);

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            close_off_thread(consumer);
        }
    }
}

impl KafkaClient {
    /// Creates the clients without waiting for a broker (librdkafka connects in the background).
    pub fn new(settings: KafkaSettings) -> Result<Self, InitError> {
        let connect = |error: rdkafka::error::KafkaError| {
            InitError::Connect(format!("kafka at {}: {error}", settings.brokers))
        };
        let context = KafkaContext::new();
        // The producer connects at once, so a SASL failure is known before the first operation.
        let producer: ThreadedProducer<KafkaContext> = settings
            .client_config()
            .set("acks", "all")
            // Send at once: each publish waits for its acknowledgement, so lingering only adds
            // latency; concurrent sends (bulk publish) still share batches.
            .set("linger.ms", "0")
            .set(
                "message.timeout.ms",
                settings.operation_timeout.as_millis().to_string(),
            )
            .create_with_context(context.clone())
            .map_err(connect)?;
        let admin: AdminClient<KafkaContext> = settings
            .client_config()
            .create_with_context(context.clone())
            .map_err(connect)?;
        Ok(Self {
            settings,
            context,
            clients: Some(Clients {
                producer: Arc::new(producer),
                admin,
            }),
            known_topics: Mutex::default(),
        })
    }

    /// Dapr's component init: creates the clients and checks that a broker answers and accepts
    /// the credentials (see [`KafkaClient::verify`]).
    pub async fn connect(settings: KafkaSettings) -> Result<Self, InitError> {
        let client = Self::new(settings)?;
        client.verify().await?;
        Ok(client)
    }

    fn clients(&self) -> Result<&Clients, String> {
        self.clients
            .as_ref()
            .ok_or_else(|| format!("kafka at {}: client closed", self.settings.brokers))
    }

    /// Fetches the cluster metadata (waiting at most `operationTimeout`, and less than the
    /// runtime's `spec.initTimeout`), off the async threads.
    /// Fails sooner, with the cause, when librdkafka reports a SASL failure or every broker
    /// down and the fetch has not succeeded a second later.
    pub async fn verify(&self) -> Result<(), InitError> {
        let producer = Arc::clone(&self.clients().map_err(InitError::Connect)?.producer);
        let timeout = self.settings.connect_timeout;
        // A thread of its own rather than the blocking pool: after a failure found sooner (or
        // the loader's initTimeout) the fetch runs on until `timeout`, and the runtime waits for
        // blocking-pool tasks when it shuts down, which would delay the sidecar's exit.
        let (sender, fetch) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("kafka-init".into())
            .spawn(move || {
                let fetched = producer
                    .client()
                    .fetch_metadata(None, timeout)
                    .map(|metadata| metadata.brokers().len());
                drop(sender.send(fetched));
            })
            .map_err(|error| {
                InitError::Connect(format!(
                    "kafka at {}: cannot start a thread: {error}",
                    self.settings.brokers
                ))
            })?;
        let sasl = lasting_failure(self.context.sasl_failure.subscribe(), SASL_FAILURE_GRACE);
        let down = lasting_failure(self.context.brokers_down.subscribe(), BROKERS_DOWN_GRACE);
        let message = tokio::select! {
            biased;
            fetched = fetch => match fetched {
                Ok(Ok(brokers)) => {
                    tracing::debug!(brokers = %self.settings.brokers, "kafka: connected; the cluster has {brokers} broker(s)");
                    self.authenticated();
                    return Ok(());
                }
                Ok(Err(error)) => self.unreachable(&format!("fetching the cluster metadata: {error}")),
                Err(_) => self.unreachable("fetching the cluster metadata: the thread ended"),
            },
            reason = sasl => self.sasl_error(&reason),
            reason = down => self.unreachable(&reason),
        };
        Err(InitError::Connect(message))
    }

    /// Why init could not reach a broker: the SASL failure if there is one on record, else
    /// `cause` with librdkafka's latest connection error.
    fn unreachable(&self, cause: &str) -> String {
        if let Some(reason) = self.context.sasl_failure.borrow().clone() {
            return self.sasl_error(&reason);
        }
        let latest = self
            .context
            .latest_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match latest {
            Some(latest) if !cause.contains(&latest) => format!(
                "kafka at {}: no broker reachable: {cause} (the latest broker error: {latest})",
                self.settings.brokers
            ),
            _ => format!(
                "kafka at {}: no broker reachable: {cause}",
                self.settings.brokers
            ),
        }
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
        // The request timeout bounds the whole call, waiting for a broker included (librdkafka's
        // default is 60 s).
        let options = AdminOptions::new()
            .operation_timeout(Some(self.settings.operation_timeout))
            .request_timeout(Some(self.settings.operation_timeout));
        let failures = self.context.sasl_failure.subscribe();
        let admin = &self.clients()?.admin;
        let results = tokio::select! {
            results = admin.create_topics([&new_topic], &options) => {
                results.map_err(|error| self.explain(format!("creating topic {topic}: {error}")))?
            }
            reason = lasting_failure(failures, SASL_FAILURE_GRACE) => {
                return Err(self.sasl_error(&reason));
            }
        };
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(format!("creating topic {name}: {code}")),
            }
        }
        self.authenticated();
        self.known_topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.to_string());
        Ok(())
    }

    pub async fn produce(&self, topic: &str, key: Option<&str>, data: &[u8]) -> Result<(), String> {
        let message = OutgoingMessage { key, payload: data };
        match self.produce_batch(topic, &[message]).await?.pop() {
            Some((_, reason)) => Err(reason),
            None => Ok(()),
        }
    }

    /// Sends every message and waits for all their acknowledgements; returns the failed ones
    /// by index, each with its reason. Fails as a whole only when the topic cannot be created.
    pub async fn produce_batch(
        &self,
        topic: &str,
        messages: &[OutgoingMessage<'_>],
    ) -> Result<Vec<(usize, String)>, String> {
        self.ensure_topic(topic).await?;
        // Not cut short by a SASL failure: a message handed to librdkafka may still be delivered.
        let mut failures = delivery::send_batch(
            &self.clients()?.producer,
            topic,
            messages,
            self.settings.operation_timeout,
        )
        .await;
        if failures.len() < messages.len() {
            self.authenticated();
        }
        failures.sort_by_key(|(index, _)| *index);
        Ok(failures
            .into_iter()
            .map(|(index, error)| {
                (
                    index,
                    self.explain(format!("kafka: publishing to {topic}: {error}")),
                )
            })
            .collect())
    }

    /// An operation succeeded, so the credentials work (again).
    fn authenticated(&self) {
        self.context
            .sasl_failure
            .send_if_modified(|failure| failure.take().is_some());
    }

    fn sasl_error(&self, reason: &str) -> String {
        let who = match &self.settings.auth {
            Auth::Password {
                username,
                mechanism,
                ..
            } => format!(" as {username:?} with {mechanism}"),
            Auth::None => String::new(),
        };
        format!(
            "kafka at {}: SASL authentication{who} failed (check saslUsername, saslPassword and saslMechanism): {reason}",
            self.settings.brokers
        )
    }

    /// `error`, with the SASL failure on record if there is one (a timeout may be its effect).
    fn explain(&self, error: String) -> String {
        match self.context.sasl_failure.borrow().as_deref() {
            Some(reason) => format!("{error} (the latest SASL failure: {reason})"),
            None => error,
        }
    }

    /// A consumer in the component's group, subscribed to `topics`, committing by hand.
    pub async fn consumer(&self, topics: &[&str]) -> Result<StreamConsumer<KafkaContext>, String> {
        for topic in topics {
            self.ensure_topic(topic).await?;
        }
        let consumer: StreamConsumer<KafkaContext> = self
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
            .create_with_context(self.context.clone())
            .map_err(|error| format!("kafka consumer: {error}"))?;
        consumer
            .subscribe(topics)
            .map_err(|error| format!("kafka subscribe {topics:?}: {error}"))?;
        Ok(consumer)
    }
}

/// Reads messages one at a time and hands each to `deliver`; commits its offset once
/// `deliver` says so. Ends when `stop` is cancelled.
pub async fn consume<F, Fut>(
    consumer: StreamConsumer<KafkaContext>,
    stop: CancellationToken,
    mut deliver: F,
) where
    F: FnMut(String, Bytes, HashMap<String, String>) -> Fut,
    Fut: Future<Output = bool>,
{
    let handle = ConsumerHandle(Some(Arc::new(consumer)));
    let Some(consumer) = handle.0.as_ref() else {
        return;
    };
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => return,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message.detach(),
            // librdkafka reports each failed (re)connection as an event in the consumer's queue
            // (the context logs it) and reconnects by itself. Pausing on each, as for other
            // errors, let a backlog of them build up during an outage that held up the messages
            // queued behind it for minutes after the broker came back.
            Err(KafkaError::MessageConsumption(code)) if is_connection_event(code) => {
                tracing::debug!("kafka consumer: {code}");
                continue;
            }
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
        let committer = Arc::clone(consumer);
        let commit =
            tokio::task::spawn_blocking(move || committer.commit(&offsets, CommitMode::Sync));
        // Stopping does not wait for a commit to a broker that is gone: the offset may stay
        // uncommitted, and the message then comes again (at least once).
        let committed = tokio::select! {
            () = stop.cancelled() => return,
            committed = commit => committed,
        };
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

/// Consumer errors that only report a broker connection failing (librdkafka retries it).
fn is_connection_event(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::Authentication
    )
}

/// The `pubsub.kafka` component.
pub struct KafkaPubSub {
    client: Arc<KafkaClient>,
}

impl KafkaPubSub {
    /// Dapr's init: fails unless a broker answers and accepts the credentials.
    pub async fn connect(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        Ok(Self {
            client: Arc::new(KafkaClient::connect(KafkaSettings::from_metadata(metadata)?).await?),
        })
    }

    /// Without waiting for a broker: the first operation does.
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
        // Entries whose metadata is unusable fail on their own; the rest go out together.
        let mut failures = Vec::new();
        let mut sent = Vec::with_capacity(entries.len());
        let mut messages = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            match outrigger_components::pubsub::message_ttl(&entry.metadata) {
                Ok(_) => {
                    sent.push(index);
                    messages.push(OutgoingMessage {
                        key: entry.metadata.get("partitionKey").map(String::as_str),
                        payload: &entry.data,
                    });
                }
                Err(error) => failures.push((index, error.to_string())),
            }
        }
        let send_failures = self
            .client
            .produce_batch(topic, &messages)
            .await
            .map_err(PubSubError::Backend)?;
        failures.extend(
            send_failures
                .into_iter()
                .filter_map(|(position, error)| sent.get(position).map(|index| (*index, error))),
        );
        failures.sort_by_key(|(index, _)| *index);
        let mut failures = failures.into_iter().peekable();
        Ok(entries
            .into_iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                let mut reason = None;
                while let Some((_, error)) = failures.next_if(|(failed, _)| *failed == index) {
                    reason.get_or_insert(error);
                }
                reason.map(|error| BulkPublishFailure {
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
    use std::time::Instant;

    use outrigger_test_harness::{KafkaBroker, Scram};

    use super::*;

    #[tokio::test]
    async fn a_sasl_failure_ends_the_wait_unless_an_operation_succeeds_within_the_grace() {
        let grace = Duration::from_millis(200);
        let failures = watch::Sender::new(None::<String>);
        let started = Instant::now();
        let waiting = tokio::spawn(lasting_failure(failures.subscribe(), grace));
        tokio::time::sleep(grace * 2).await;
        assert!(!waiting.is_finished(), "no failure on record");
        failures.send_replace(Some("bad password".into()));
        let reason = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("ends")
            .expect("task");
        assert_eq!(reason, "bad password");
        assert!(started.elapsed() >= grace * 3);
        // A success within the grace period clears it: then only a new failure ends the wait.
        let waiting = tokio::spawn(lasting_failure(failures.subscribe(), grace));
        tokio::time::sleep(grace / 4).await;
        failures.send_replace(None);
        tokio::time::sleep(grace * 2).await;
        assert!(!waiting.is_finished(), "cleared within the grace period");
        failures.send_replace(Some("unknown user".into()));
        let reason = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("ends")
            .expect("task");
        assert_eq!(reason, "unknown user");
    }

    /// The longest pause of a task that ticks every 5 ms on the same (current-thread) runtime
    /// while `work` runs: how long `work` blocked the runtime thread.
    async fn longest_stall<T>(work: impl Future<Output = T>) -> (T, Duration) {
        let done = CancellationToken::new();
        let ticker = tokio::spawn({
            let done = done.clone();
            async move {
                let mut longest = Duration::ZERO;
                let mut last = Instant::now();
                while !done.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                }
                longest
            }
        });
        let output = work.await;
        // Dropping a client closes it on another thread; give the ticker a few more turns.
        tokio::time::sleep(Duration::from_millis(300)).await;
        done.cancel();
        (output, ticker.await.expect("ticker"))
    }

    #[tokio::test]
    async fn init_fails_fast_naming_the_brokers_when_none_is_reachable() {
        let port = outrigger_test_harness::free_port();
        let brokers = format!("127.0.0.1:{port}");
        let metadata = ComponentMetadata::from_pairs([("brokers", brokers.as_str())]);
        let started = Instant::now();
        let (result, stall) = longest_stall(KafkaPubSub::connect(&metadata)).await;
        let took = started.elapsed();
        let error = result.err().expect("no broker listens").to_string();
        assert!(
            error.contains(&format!("kafka at {brokers}: no broker reachable"))
                && error.contains("Connection refused"),
            "{error}"
        );
        assert!(took < Duration::from_secs(4), "took {took:?}: {error}");
        assert!(
            stall < Duration::from_millis(100),
            "the runtime stalled {stall:?}"
        );
        let error = KafkaBinding::connect(&ComponentMetadata::from_pairs([
            ("brokers", brokers.as_str()),
            ("publishTopic", "out"),
        ]))
        .await
        .err()
        .expect("no broker listens")
        .to_string();
        assert!(error.contains("Connection refused"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publishes_with_scram_and_fails_fast_with_the_sasl_failure() {
        let broker = KafkaBroker::start_with_user("alice", "secret", Scram::Sha512)
            .expect("authenticating tansu");
        let address = broker.address();
        let pubsub = |password: &str| {
            KafkaPubSub::from_metadata(&ComponentMetadata::from_pairs([
                ("brokers", address.as_str()),
                ("authType", "password"),
                ("saslUsername", "alice"),
                ("saslPassword", password),
                ("saslMechanism", "SHA-512"),
                ("disableTls", "true"),
            ]))
            .expect("client")
        };
        let request = PublishRequest {
            topic: "sasl".into(),
            data: Bytes::from_static(b"event"),
            content_type: None,
            metadata: HashMap::new(),
        };
        pubsub("secret")
            .publish(request.clone())
            .await
            .expect("publish as alice with SCRAM-SHA-512");
        // Init connects: the right credentials pass, wrong ones fail with the SASL cause.
        let metadata = |password: &str| {
            ComponentMetadata::from_pairs([
                ("brokers", address.as_str()),
                ("authType", "password"),
                ("saslUsername", "alice"),
                ("saslPassword", password),
                ("saslMechanism", "SHA-512"),
                ("disableTls", "true"),
            ])
        };
        KafkaPubSub::connect(&metadata("secret"))
            .await
            .expect("init as alice");
        let started = Instant::now();
        let error = KafkaPubSub::connect(&metadata("wrong"))
            .await
            .err()
            .expect("wrong password")
            .to_string();
        assert!(
            error.contains(&format!(
                "kafka at {address}: SASL authentication as \"alice\" with SCRAM-SHA-512 failed"
            )),
            "{error}"
        );
        assert!(
            started.elapsed() < SASL_FAILURE_GRACE + Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let wrong = pubsub("wrong");
        // The producer connects at once: the failure is known before the publish.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        let error = wrong.publish(request).await.expect_err("wrong password");
        assert!(
            error
                .to_string()
                .contains("SASL authentication as \"alice\" with SCRAM-SHA-512 failed"),
            "{error}"
        );
        assert!(
            started.elapsed() < SASL_FAILURE_GRACE + Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binding_passes_input_and_output_conformance() {
        use outrigger_components::bindings::InvokeRequest;
        let broker = KafkaBroker::start().expect("tansu");
        let address = broker.address();
        // Init needs one reachable broker, not all of them.
        let brokers = format!(
            "127.0.0.1:{},{address}",
            outrigger_test_harness::free_port()
        );
        let binding = KafkaBinding::connect(&ComponentMetadata::from_pairs([
            ("brokers", brokers.as_str()),
            ("consumerGroup", "binding-conformance"),
            ("topics", "binding-topic"),
            ("publishTopic", "binding-topic"),
            ("initialOffset", "oldest"),
        ]))
        .await
        .map_err(|error| error.to_string())
        .expect("init with one of two brokers up");
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

    /// A guard more than a proof: with the broker killed, librdkafka happens to close fast, so
    /// this passes with the consumer closed in place too; it fails if closing ever blocks the
    /// runtime thread or the loop does not end when stopped.
    #[tokio::test]
    async fn a_consumer_closes_off_the_runtime_when_its_broker_is_gone() {
        let mut broker = KafkaBroker::start().expect("tansu");
        let address = broker.address();
        let client = KafkaClient::new(
            settings::KafkaSettings::from_metadata(&ComponentMetadata::from_pairs([
                ("brokers", address.as_str()),
                ("consumerGroup", "closing"),
                ("initialOffset", "oldest"),
            ]))
            .expect("settings"),
        )
        .expect("client");
        client.ensure_topic("closing").await.expect("topic");
        client
            .produce("closing", None, b"one")
            .await
            .expect("publish");
        let consumer = client.consumer(&["closing"]).await.expect("consumer");
        let stop = CancellationToken::new();
        let (received, mut receive) = tokio::sync::mpsc::unbounded_channel();
        let consuming = tokio::spawn(consume(consumer, stop.clone(), move |_, data, _| {
            let _ = received.send(data);
            async { true }
        }));
        let first = tokio::time::timeout(Duration::from_secs(20), receive.recv())
            .await
            .expect("delivered within 20 s");
        assert_eq!(first.as_deref(), Some(&b"one"[..]));
        // Let the offset commit finish (milliseconds while the broker is up): a commit still
        // blocked on a dead broker would hold this test's runtime at its end. The consumer is
        // in its group; with the broker gone, leaving it cannot complete.
        tokio::time::sleep(Duration::from_secs(1)).await;
        broker.stop();
        let (ended, stall) = longest_stall(async {
            stop.cancel();
            consuming.await
        })
        .await;
        assert!(ended.is_ok(), "the consume loop ends when stopped");
        assert!(
            stall < Duration::from_millis(100),
            "closing the consumer stalled the runtime {stall:?}"
        );
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

    /// A client of `broker` with one more metadata field.
    async fn connected_client(broker: &KafkaBroker, field: (&str, &str)) -> KafkaClient {
        let address = broker.address();
        let metadata = ComponentMetadata::from_pairs([("brokers", address.as_str()), field]);
        KafkaClient::connect(KafkaSettings::from_metadata(&metadata).expect("settings"))
            .await
            .expect("client")
    }

    #[tokio::test]
    async fn a_batch_reports_exactly_the_messages_that_failed() {
        let broker = KafkaBroker::start().expect("tansu");
        let client = connected_client(&broker, ("maxMessageBytes", "2000")).await;
        let too_big = vec![b'x'; 4000];
        let messages: Vec<_> = [b"first".as_slice(), &too_big, b"third", b"fourth"]
            .into_iter()
            .map(|payload| OutgoingMessage {
                key: Some("k"),
                payload,
            })
            .collect();
        let failures = client
            .produce_batch("batch", &messages)
            .await
            .expect("topic");
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].0, 1);
        assert!(
            failures[0].1.contains("publishing to batch") && failures[0].1.contains("too large"),
            "{failures:?}"
        );
        // An empty batch is done at once.
        assert!(
            client
                .produce_batch("batch", &[])
                .await
                .expect("topic")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_batch_sent_to_a_dead_broker_fails_every_message_within_the_operation_timeout() {
        let broker = KafkaBroker::start().expect("tansu");
        let client = connected_client(&broker, ("operationTimeout", "1s")).await;
        client.ensure_topic("gone").await.expect("topic");
        drop(broker);
        let messages: Vec<_> = (0..3)
            .map(|_| OutgoingMessage {
                key: None,
                payload: b"event",
            })
            .collect();
        let started = Instant::now();
        let failures = client
            .produce_batch("gone", &messages)
            .await
            .expect("the topic is known");
        let took = started.elapsed();
        let indices: Vec<usize> = failures.iter().map(|(index, _)| *index).collect();
        assert_eq!(indices, [0, 1, 2], "{failures:?}");
        assert!(
            failures
                .iter()
                .all(|(_, reason)| reason.contains("timed out")),
            "{failures:?}"
        );
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }

    #[tokio::test]
    async fn a_silent_broker_fails_init_with_the_brokers_named_before_the_init_timeout() {
        let brokers = outrigger_test_harness::silent_peer().to_string();
        let init_timeout = Duration::from_millis(1500);
        let metadata = ComponentMetadata::from_pairs([("brokers", brokers.as_str())])
            .with_init_timeout(init_timeout);
        let started = Instant::now();
        let error = KafkaPubSub::connect(&metadata)
            .await
            .err()
            .expect("the broker never answers")
            .to_string();
        let took = started.elapsed();
        assert!(
            error.contains(&format!("kafka at {brokers}: no broker reachable")),
            "{error}"
        );
        assert!(took < init_timeout, "took {took:?}: {error}");
    }

    #[test]
    fn repeated_errors_are_logged_once_per_interval_with_a_count() {
        let mut log = RepeatedLog::default();
        let start = std::time::Instant::now();
        assert_eq!(log.admit("down", start), Some(0));
        assert_eq!(log.admit("down", start + Duration::from_secs(1)), None);
        assert_eq!(log.admit("down", start + Duration::from_secs(2)), None);
        assert_eq!(
            log.admit("refused", start + Duration::from_secs(3)),
            Some(2)
        );
        assert_eq!(
            log.admit("refused", start + REPEAT_LOG_INTERVAL * 2),
            Some(0)
        );
    }
}
