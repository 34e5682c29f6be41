//! Sending a batch of messages and waiting for their delivery reports with one wake-up.
//!
//! rdkafka's `FutureProducer` gives every message its own future, completed by librdkafka's
//! polling thread: a thousand-entry bulk publish woke the sidecar's runtime thread once per
//! delivery report. Here the polling thread fills in the reports of a whole batch and wakes
//! the waiting task once, when the last one arrives.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;

use crate::KafkaContext;

/// How long to wait before trying again when librdkafka's local queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);
/// How much longer than `message.timeout.ms` to wait for delivery reports before giving up
/// on them (librdkafka reports every message by then; this only guards against a lost one).
const REPORT_GRACE: Duration = Duration::from_secs(5);

/// One message of a batch.
pub struct OutgoingMessage<'a> {
    pub key: Option<&'a str>,
    pub payload: &'a [u8],
}

/// The delivery reports of one batch, filled in by librdkafka's polling thread.
struct BatchReports {
    /// Reports still to come, plus one held by the sending task until it has sent them all.
    outstanding: AtomicUsize,
    /// Which messages have their report (or failed to be sent at all).
    settled: Box<[AtomicBool]>,
    /// The failed messages: index in the batch and librdkafka's reason.
    failures: Mutex<Vec<(usize, String)>>,
    all_reported: Notify,
}

impl BatchReports {
    fn new(len: usize) -> Self {
        Self {
            outstanding: AtomicUsize::new(len + 1),
            settled: (0..len).map(|_| AtomicBool::new(false)).collect(),
            failures: Mutex::default(),
            all_reported: Notify::new(),
        }
    }

    fn fail(&self, index: usize, reason: String) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((index, reason));
    }

    /// Message `index` is settled; the last one wakes the sending task.
    fn settle(&self, index: usize) {
        if let Some(settled) = self.settled.get(index) {
            settled.store(true, Ordering::Release);
        }
        self.release();
    }

    /// One fewer report to wait for.
    fn release(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_reported.notify_one();
        }
    }
}

/// What librdkafka hands back with a message's delivery report.
pub struct PendingReport {
    batch: Arc<BatchReports>,
    index: usize,
}

/// Records a delivery report (called on librdkafka's polling thread).
pub fn record(result: &DeliveryResult<'_>, pending: &PendingReport) {
    if let Err((error, _)) = result {
        pending.batch.fail(pending.index, error.to_string());
    }
    pending.batch.settle(pending.index);
}

/// Sends every message of the batch and waits for all their delivery reports; returns the
/// failed ones by index, each with its reason. A full local queue is waited out, for at most
/// `timeout`, as `FutureProducer` does.
pub async fn send_batch(
    producer: &ThreadedProducer<KafkaContext>,
    topic: &str,
    messages: &[OutgoingMessage<'_>],
    timeout: Duration,
) -> Vec<(usize, String)> {
    let batch = Arc::new(BatchReports::new(messages.len()));
    let started = Instant::now();
    for (index, message) in messages.iter().enumerate() {
        let mut record = BaseRecord::with_opaque_to(
            topic,
            Box::new(PendingReport {
                batch: Arc::clone(&batch),
                index,
            }),
        )
        .payload(message.payload);
        if let Some(key) = message.key {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((error, returned))
                    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                        && started.elapsed() < timeout =>
                {
                    record = returned;
                    tokio::time::sleep(QUEUE_FULL_PAUSE).await;
                }
                Err((error, _)) => {
                    batch.fail(index, error.to_string());
                    batch.settle(index);
                    break;
                }
            }
        }
    }
    let all_reported = batch.all_reported.notified();
    batch.release();
    let deadline = timeout + REPORT_GRACE;
    let complete = tokio::time::timeout(deadline, all_reported).await.is_ok();
    let mut failures = std::mem::take(
        &mut *batch
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    if !complete {
        // The message may still arrive, so a missing report is a failure the caller may
        // retry (at-least-once), never a success.
        tracing::warn!(topic, "kafka: delivery reports missing after {deadline:?}");
        for (index, settled) in batch.settled.iter().enumerate() {
            if !settled.load(Ordering::Acquire) {
                failures.push((index, format!("no delivery report within {deadline:?}")));
            }
        }
    }
    failures
}
