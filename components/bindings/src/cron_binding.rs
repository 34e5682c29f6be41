//! `bindings.cron`: triggers the app on a schedule (`schedule`: a cron expression with or
//! without seconds, `@hourly`-style descriptors, or `@every 15s`).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use outrigger_components::bindings::{
    BindingError, BindingEvent, BindingEventHandler, InputBinding,
};
use outrigger_components::pubsub::Subscription;
use outrigger_components::{ComponentMetadata, InitError, MetadataError};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
enum Schedule {
    Every(Duration),
    Cron(Box<cron::Schedule>),
}

/// The `bindings.cron` component.
#[derive(Debug, Clone)]
pub struct CronBinding {
    schedule: Schedule,
}

impl CronBinding {
    pub fn from_metadata(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        let text = metadata.required("schedule")?.trim();
        let invalid = |why: String| {
            InitError::Metadata(MetadataError::Invalid {
                field: "schedule".into(),
                expected: format!(
                    "a cron expression (\"*/5 * * * *\", \"0 */5 * * * *\"), a descriptor (\"@hourly\") or \"@every 15s\" ({why})"
                ),
                got: text.to_string(),
            })
        };
        let schedule = if let Some(every) = text.strip_prefix("@every") {
            let period = humantime::parse_duration(every.trim())
                .map_err(|error| invalid(error.to_string()))?;
            if period.is_zero() {
                return Err(invalid("the period must be positive".into()));
            }
            Schedule::Every(period)
        } else {
            // Five fields lack seconds; Dapr (robfig/cron) accepts both forms.
            let expression = if !text.starts_with('@') && text.split_whitespace().count() == 5 {
                format!("0 {text}")
            } else {
                text.to_string()
            };
            Schedule::Cron(Box::new(
                cron::Schedule::from_str(&expression)
                    .map_err(|error| invalid(error.to_string()))?,
            ))
        };
        Ok(Self { schedule })
    }

    /// How long until the next trigger.
    fn next_delay(&self) -> Option<Duration> {
        match &self.schedule {
            Schedule::Every(period) => Some(*period),
            Schedule::Cron(schedule) => {
                let next = schedule.upcoming(chrono::Utc).next()?;
                (next - chrono::Utc::now())
                    .to_std()
                    .ok()
                    .or(Some(Duration::ZERO))
            }
        }
    }
}

#[async_trait]
impl InputBinding for CronBinding {
    async fn read(
        &self,
        handler: Arc<dyn BindingEventHandler>,
    ) -> Result<Subscription, BindingError> {
        let stop = CancellationToken::new();
        let binding = self.clone();
        let worker = tokio::spawn({
            let stop = stop.clone();
            async move {
                while let Some(delay) = binding.next_delay() {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    let now =
                        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
                    let event = BindingEvent {
                        data: Bytes::new(),
                        metadata: HashMap::from([
                            ("timeZone".to_string(), "UTC".to_string()),
                            ("readTimeUTC".to_string(), now),
                        ]),
                    };
                    // A missed tick is not retried: the next one comes on schedule.
                    if !handler.handle(event).await {
                        tracing::warn!("the app did not accept a cron trigger");
                    }
                }
            }
        });
        Ok(Subscription::new(stop, worker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Count(AtomicUsize);

    #[async_trait]
    impl BindingEventHandler for Count {
        async fn handle(&self, event: BindingEvent) -> bool {
            assert!(event.metadata.contains_key("readTimeUTC"));
            self.0.fetch_add(1, Ordering::SeqCst);
            true
        }
    }

    fn binding(schedule: &str) -> Result<CronBinding, InitError> {
        CronBinding::from_metadata(&ComponentMetadata::from_pairs([("schedule", schedule)]))
    }

    #[test]
    fn schedules_parse_like_dapr() {
        for ok in [
            "@every 15s",
            "@every 1m30s",
            "*/5 * * * *",
            "0 */5 * * * *",
            "@hourly",
            "@daily",
        ] {
            assert!(binding(ok).is_ok(), "{ok}");
        }
        for bad in ["@every soon", "@every 0s", "every minute", "* * *", ""] {
            let error = binding(bad).expect_err(bad);
            assert!(error.to_string().contains("schedule"), "{bad}: {error}");
        }
    }

    #[tokio::test]
    async fn passes_input_binding_conformance() {
        let binding = binding("@every 100ms").expect("valid");
        outrigger_conformance::bindings::run_input_suite(&binding, || async {}).await;
    }

    #[tokio::test(start_paused = true)]
    async fn every_triggers_on_the_period_until_closed() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let subscription = binding("@every 10s")
            .expect("valid")
            .read(count.clone())
            .await
            .expect("read");
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
        subscription.close().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 3, "no triggers after close");
    }
}
