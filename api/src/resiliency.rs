//! Dapr `Resiliency` policies: timeouts, retries (constant / exponential) and circuit breakers,
//! applied to calls into components (outbound) and deliveries to the app (inbound).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// How one call is protected.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub breaker: Option<Arc<CircuitBreaker>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// `None` retries forever (`maxRetries: -1`).
    pub max_retries: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Backoff {
    Constant(Duration),
    Exponential { initial: Duration, max: Duration },
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        match &self.backoff {
            Backoff::Constant(duration) => *duration,
            Backoff::Exponential { initial, max } => {
                let factor = 1.5f64.powi(i32::try_from(attempt).unwrap_or(i32::MAX));
                initial.mul_f64(factor).min(*max)
            }
        }
    }
}

/// A breaker that opens after `trip_after` consecutive failures, stays open for `open_for`,
/// then lets `half_open_requests` calls through to decide whether to close again.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: String,
    trip_after: u32,
    open_for: Duration,
    half_open_requests: u32,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    half_open_in_flight: u32,
}

impl CircuitBreaker {
    pub fn new(name: &str, trip_after: u32, open_for: Duration, half_open_requests: u32) -> Self {
        Self {
            name: name.to_string(),
            trip_after: trip_after.max(1),
            open_for,
            half_open_requests: half_open_requests.max(1),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go ahead now.
    fn admit(&self) -> bool {
        let mut state = self.lock();
        match state.open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) if state.half_open_in_flight < self.half_open_requests => {
                state.half_open_in_flight += 1;
                true
            }
            Some(_) => false,
        }
    }

    fn record(&self, success: bool) {
        let mut state = self.lock();
        if success {
            *state = BreakerState::default();
            return;
        }
        state.consecutive_failures += 1;
        let half_open = state.open_until.is_some();
        if half_open || state.consecutive_failures >= self.trip_after {
            tracing::warn!(breaker = %self.name, failures = state.consecutive_failures, "circuit breaker open");
            state.open_until = Some(Instant::now() + self.open_for);
            state.half_open_in_flight = 0;
        }
    }
}

/// Why a protected call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError<E> {
    #[error("{0}")]
    Call(E),
    #[error("timed out after {0:?} (resiliency policy)")]
    Timeout(Duration),
    #[error("circuit breaker {0} is open")]
    BreakerOpen(String),
}

impl Policy {
    /// Whether a failed call may be made again (the caller must keep what it sends).
    pub fn retries(&self) -> bool {
        self.retry.is_some()
    }

    /// Runs `call` under the policy; only errors `retriable` accepts are retried (an ETag
    /// conflict, say, is final).
    pub async fn run<T, E, F, Fut>(
        &self,
        retriable: impl Fn(&E) -> bool,
        mut call: F,
    ) -> Result<T, PolicyError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 0u32;
        loop {
            let result = self.attempt(&mut call).await;
            let again = match &result {
                Ok(_) => false,
                Err(PolicyError::Call(error)) => retriable(error),
                Err(_) => true,
            };
            let Some(retry) = self.retry.as_ref().filter(|_| again) else {
                return result;
            };
            if retry.max_retries.is_some_and(|max| attempt >= max) {
                return result;
            }
            tokio::time::sleep(retry.delay(attempt)).await;
            attempt += 1;
        }
    }

    async fn attempt<T, E, F, Fut>(&self, call: &mut F) -> Result<T, PolicyError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(breaker) = &self.breaker
            && !breaker.admit()
        {
            return Err(PolicyError::BreakerOpen(breaker.name.clone()));
        }
        let result = match self.timeout {
            Some(limit) => match tokio::time::timeout(limit, call()).await {
                Ok(result) => result.map_err(PolicyError::Call),
                Err(_) => Err(PolicyError::Timeout(limit)),
            },
            None => call().await.map_err(PolicyError::Call),
        };
        if let Some(breaker) = &self.breaker {
            breaker.record(result.is_ok());
        }
        result
    }
}

/// All policies, by target.
#[derive(Debug, Default)]
pub struct Resiliency {
    outbound: HashMap<String, Policy>,
    inbound: HashMap<String, Policy>,
}

impl Resiliency {
    /// Policy for calls into component `name` (state, publish, output bindings).
    pub fn outbound(&self, name: &str) -> Policy {
        self.outbound.get(name).cloned().unwrap_or_default()
    }

    /// Policy for deliveries from component `name` to the app.
    pub fn inbound(&self, name: &str) -> Option<Policy> {
        self.inbound.get(name).cloned()
    }

    /// Reads every `kind: Resiliency` document in `files` that applies to `app_id`.
    pub fn load(files: &[(std::path::PathBuf, String)], app_id: &str) -> Result<Self, String> {
        let mut resiliency = Self::default();
        for (path, text) in files {
            let documents: Vec<RawResiliency> =
                outrigger_components::definition::documents_of_kind(path, text, "Resiliency")?;
            for raw in documents {
                if !raw.scopes.is_empty() && !raw.scopes.iter().any(|scope| scope == app_id) {
                    continue;
                }
                raw.apply(path, &mut resiliency)?;
            }
        }
        Ok(resiliency)
    }
}

#[derive(Deserialize)]
struct RawResiliency {
    #[serde(default)]
    scopes: Vec<String>,
    spec: RawSpec,
}

#[derive(Deserialize, Default)]
struct RawSpec {
    #[serde(default)]
    policies: RawPolicies,
    #[serde(default)]
    targets: RawTargets,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawPolicies {
    #[serde(default)]
    timeouts: HashMap<String, String>,
    #[serde(default)]
    retries: HashMap<String, RawRetry>,
    #[serde(default)]
    circuit_breakers: HashMap<String, RawBreaker>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRetry {
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    initial_interval: Option<String>,
    #[serde(default)]
    max_interval: Option<String>,
    #[serde(default)]
    max_retries: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBreaker {
    #[serde(default)]
    max_requests: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    trip: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawTargets {
    #[serde(default)]
    components: HashMap<String, RawComponentTarget>,
}

#[derive(Deserialize, Default)]
struct RawComponentTarget {
    #[serde(default)]
    outbound: Option<RawTarget>,
    #[serde(default)]
    inbound: Option<RawTarget>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawTarget {
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    retry: Option<String>,
    #[serde(default)]
    circuit_breaker: Option<String>,
}

fn duration(path: &Path, field: &str, text: &str) -> Result<Duration, String> {
    outrigger_components::metadata::parse_duration(text).ok_or_else(|| {
        format!(
            "{}: {field}: expected a duration like \"5s\", got {text:?}",
            path.display()
        )
    })
}

impl RawResiliency {
    fn apply(self, path: &Path, into: &mut Resiliency) -> Result<(), String> {
        let policies = self.spec.policies;
        let mut timeouts = HashMap::new();
        for (name, text) in &policies.timeouts {
            timeouts.insert(
                name.clone(),
                duration(path, &format!("policies.timeouts.{name}"), text)?,
            );
        }
        let mut retries = HashMap::new();
        for (name, raw) in &policies.retries {
            let field = |key: &str| format!("policies.retries.{name}.{key}");
            let backoff = match raw.policy.as_deref().unwrap_or("constant") {
                "constant" => Backoff::Constant(match &raw.duration {
                    Some(text) => duration(path, &field("duration"), text)?,
                    None => Duration::from_secs(5),
                }),
                "exponential" => Backoff::Exponential {
                    initial: match &raw.initial_interval {
                        Some(text) => duration(path, &field("initialInterval"), text)?,
                        None => Duration::from_millis(500),
                    },
                    max: match &raw.max_interval {
                        Some(text) => duration(path, &field("maxInterval"), text)?,
                        None => Duration::from_secs(60),
                    },
                },
                other => {
                    return Err(format!(
                        "{}: {}: expected constant or exponential, got {other:?}",
                        path.display(),
                        field("policy")
                    ));
                }
            };
            let max_retries = match raw.max_retries {
                None | Some(-1) => None,
                Some(count) if count >= 0 => Some(u32::try_from(count).unwrap_or(u32::MAX)),
                Some(count) => {
                    return Err(format!(
                        "{}: {}: expected -1 or more, got {count}",
                        path.display(),
                        field("maxRetries")
                    ));
                }
            };
            retries.insert(
                name.clone(),
                RetryPolicy {
                    backoff,
                    max_retries,
                },
            );
        }
        let mut breakers = HashMap::new();
        for (name, raw) in &policies.circuit_breakers {
            let field = |key: &str| format!("policies.circuitBreakers.{name}.{key}");
            let trip = raw.trip.as_deref().unwrap_or("consecutiveFailures >= 5");
            let trip_after = trip
                .strip_prefix("consecutiveFailures")
                .map(str::trim)
                .and_then(|rest| {
                    rest.strip_prefix(">=")
                        .map(|count| (count, 0))
                        .or_else(|| rest.strip_prefix('>').map(|count| (count, 1)))
                })
                .and_then(|(count, extra)| {
                    count.trim().parse::<u32>().ok().map(|count| count + extra)
                })
                .ok_or_else(|| {
                    format!(
                        "{}: {}: expected \"consecutiveFailures >= N\", got {trip:?}",
                        path.display(),
                        field("trip")
                    )
                })?;
            let open_for = match &raw.timeout {
                Some(text) => duration(path, &field("timeout"), text)?,
                None => Duration::from_secs(60),
            };
            breakers.insert(
                name.clone(),
                Arc::new(CircuitBreaker::new(
                    name,
                    trip_after,
                    open_for,
                    raw.max_requests.unwrap_or(1),
                )),
            );
        }
        let resolve = |target: &RawTarget, at: &str| -> Result<Policy, String> {
            let mut policy = Policy::default();
            // A target names a timeout policy, or gives a duration inline, as Dapr allows.
            if let Some(key) = target.timeout.as_deref().filter(|key| !key.is_empty()) {
                policy.timeout = Some(match timeouts.get(key) {
                    Some(limit) => *limit,
                    None => duration(path, &format!("{at}.timeout"), key).map_err(|_| {
                        format!(
                            "{}: {at}.timeout: no timeout policy named {key:?}",
                            path.display()
                        )
                    })?,
                });
            }
            if let Some(key) = target.retry.as_ref().filter(|key| !key.is_empty()) {
                policy.retry = Some(retries.get(key).cloned().ok_or_else(|| {
                    format!(
                        "{}: {at}.retry: no retry policy named {key:?}",
                        path.display()
                    )
                })?);
            }
            if let Some(key) = target
                .circuit_breaker
                .as_ref()
                .filter(|key| !key.is_empty())
            {
                policy.breaker = Some(breakers.get(key).cloned().ok_or_else(|| {
                    format!(
                        "{}: {at}.circuitBreaker: no circuit breaker named {key:?}",
                        path.display()
                    )
                })?);
            }
            Ok(policy)
        };
        for (component, target) in self.spec.targets.components {
            if let Some(outbound) = &target.outbound {
                let policy = resolve(
                    outbound,
                    &format!("targets.components.{component}.outbound"),
                )?;
                into.outbound.insert(component.clone(), policy);
            }
            if let Some(inbound) = &target.inbound {
                let policy = resolve(inbound, &format!("targets.components.{component}.inbound"))?;
                into.inbound.insert(component, policy);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const YAML: &str = r#"
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: r
spec:
  policies:
    timeouts:
      fast: 50ms
    retries:
      three:
        policy: constant
        duration: 10ms
        maxRetries: 3
      grow:
        policy: exponential
        initialInterval: 10ms
        maxInterval: 40ms
        maxRetries: -1
    circuitBreakers:
      cb:
        maxRequests: 1
        timeout: 200ms
        trip: consecutiveFailures >= 2
  targets:
    components:
      statestore:
        outbound:
          timeout: fast
          retry: three
      pubsub:
        inbound:
          retry: grow
          circuitBreaker: cb
"#;

    fn load(yaml: &str) -> Result<Resiliency, String> {
        Resiliency::load(
            &[(
                std::path::PathBuf::from("resiliency.yaml"),
                yaml.to_string(),
            )],
            "app",
        )
    }

    #[tokio::test]
    async fn retries_stop_at_max_and_skip_final_errors() {
        let resiliency = load(YAML).expect("valid");
        let policy = resiliency.outbound("statestore");
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = policy
            .run(
                |_: &&str| true,
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("down")
                },
            )
            .await;
        assert_eq!(result, Err(PolicyError::Call("down")));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "one call and three retries"
        );
        calls.store(0, Ordering::SeqCst);
        let _: Result<(), _> = policy
            .run(
                |error: &&str| *error != "conflict",
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("conflict")
                },
            )
            .await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "final errors are not retried"
        );
        let slow: Result<(), PolicyError<&str>> = Policy {
            retry: None,
            ..policy
        }
        .run(
            |_| true,
            || async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            },
        )
        .await;
        assert_eq!(slow, Err(PolicyError::Timeout(Duration::from_millis(50))));
        assert!(
            resiliency.outbound("other").retry.is_none(),
            "no policy, no retries"
        );
    }

    #[tokio::test]
    async fn breaker_opens_then_half_opens() {
        let resiliency = load(YAML).expect("valid");
        let breaker_only = Policy {
            retry: None,
            ..resiliency.inbound("pubsub").expect("inbound policy")
        };
        for _ in 0..2 {
            let _: Result<(), _> = breaker_only.run(|_: &()| true, || async { Err(()) }).await;
        }
        let refused: Result<(), _> = breaker_only.run(|_: &()| true, || async { Ok(()) }).await;
        assert_eq!(refused, Err(PolicyError::BreakerOpen("cb".into())));
        tokio::time::sleep(Duration::from_millis(250)).await;
        let probe: Result<(), PolicyError<()>> =
            breaker_only.run(|_| true, || async { Ok(()) }).await;
        assert_eq!(
            probe,
            Ok(()),
            "half-open lets a probe through, and success closes it"
        );
    }

    #[test]
    fn bad_policies_name_the_field() {
        for (broken, field) in [
            (
                YAML.replace("fast: 50ms", "fast: soon"),
                "policies.timeouts.fast",
            ),
            (
                YAML.replace("policy: constant", "policy: fibonacci"),
                "policies.retries.three.policy",
            ),
            (
                YAML.replace("consecutiveFailures >= 2", "errors > 2"),
                "policies.circuitBreakers.cb.trip",
            ),
            (
                YAML.replace("retry: three", "retry: nope"),
                "targets.components.statestore.outbound.retry",
            ),
        ] {
            let error = load(&broken).expect_err(field);
            assert!(error.contains(field), "{field}: {error}");
        }
    }
}
