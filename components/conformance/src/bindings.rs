//! The bindings conformance suites: output bindings refuse unknown operations naming the
//! ones they support and serve the ones they claim; input bindings deliver and stop on close.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use outrigger_components::bindings::{
    BindingError, BindingEvent, BindingEventHandler, InputBinding, InvokeRequest, OutputBinding,
};

/// Checks an output binding; `valid` is a request for one of its operations that must succeed.
pub async fn run_output_suite(binding: &dyn OutputBinding, valid: InvokeRequest) {
    let operations = binding.operations();
    assert!(
        !operations.is_empty(),
        "an output binding names its operations"
    );
    assert!(
        operations.contains(&valid.operation),
        "the valid request uses a claimed operation"
    );
    let refused = binding
        .invoke(InvokeRequest {
            operation: "no-such-operation".into(),
            ..valid.clone()
        })
        .await;
    match refused {
        Err(BindingError::UnsupportedOperation { supported, .. }) => {
            assert_eq!(
                supported, operations,
                "the refusal names exactly the claimed operations"
            )
        }
        other => panic!("an unknown operation must be refused as unsupported, got {other:?}"),
    }
    binding
        .invoke(valid.clone())
        .await
        .unwrap_or_else(|error| panic!("claimed operation {:?} failed: {error}", valid.operation));
}

struct Collect(Mutex<Vec<BindingEvent>>);

#[async_trait]
impl BindingEventHandler for Collect {
    async fn handle(&self, event: BindingEvent) -> bool {
        self.0.lock().expect("lock").push(event);
        true
    }
}

/// Checks an input binding; `trigger` makes it produce at least one event (a no-op for
/// bindings that produce events on their own, like cron).
pub async fn run_input_suite<F, Fut>(binding: &dyn InputBinding, trigger: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let events = Arc::new(Collect(Mutex::new(Vec::new())));
    let subscription = binding
        .read(events.clone())
        .await
        .expect("an input binding starts reading");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while events.0.lock().expect("lock").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an input binding delivers events"
        );
        trigger().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    subscription.close().await;
    let seen = events.0.lock().expect("lock").len();
    trigger().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        events.0.lock().expect("lock").len(),
        seen,
        "nothing is delivered after close"
    );
}
