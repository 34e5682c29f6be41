//! Outlier detection: Envoy's consecutive-5xx and consecutive-gateway-failure detectors.
//!
//! Differences from Envoy, on purpose:
//! - A threshold ejects at once (Envoy also does this for the consecutive detectors); there is no
//!   interval timer. An ejection ends lazily: the host is back as soon as its time has passed and
//!   someone looks (a pick, `status()` or the ejection cap count). `interval` is therefore unused.
//! - The ejection multiplier (`times_ejected`) only grows; Envoy's newer decrement of it while a
//!   host stays healthy is not implemented. Ejections are capped at Envoy's default
//!   `max_ejection_time`: 300 s, or `base_ejection_time` when that is longer.
//! - Ejection cap: a host may be ejected when `max_ejection_percent > 0` and either no host of the
//!   cluster is ejected yet (Envoy always allows one) or, counting it, at most
//!   `max_ejection_percent` % of the cluster's hosts (all priorities, any health) are ejected.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::endpoint::{EndpointState, Outcome};
use crate::model::OutlierDetectionSpec;

/// Envoy's default `max_ejection_time`.
const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// A cluster's detector configuration and the hosts the ejection cap is counted over.
pub(crate) struct OutlierGroup {
    spec: Option<OutlierDetectionSpec>,
    hosts: Vec<Arc<EndpointState>>,
    /// Serialises eject decisions so two hosts cannot both slip under the cap at the same time.
    eject_decision: Mutex<()>,
}

impl OutlierGroup {
    pub(crate) fn new(spec: Option<OutlierDetectionSpec>, hosts: Vec<Arc<EndpointState>>) -> Self {
        Self {
            spec,
            hosts,
            eject_decision: Mutex::new(()),
        }
    }

    /// Feeds one outcome of `host` to the detectors; may eject it.
    pub(crate) fn observe(&self, host: &HostOutlier, outcome: Outcome, now: Instant) {
        let Some(spec) = self.spec else {
            return;
        };
        let trips = host.count(outcome, &spec, now);
        // Envoy checks the gateway-failure detector before the 5xx one; either may eject.
        let enforced = (trips.gateway_failure
            && draw_percent(spec.enforcing_consecutive_gateway_failure))
            || (trips.consecutive_5xx && draw_percent(spec.enforcing_consecutive_5xx));
        if !enforced {
            return;
        }
        let _decision = lock(&self.eject_decision);
        if self.may_eject_one_more(spec.max_ejection_percent, now) {
            host.eject(&spec, now);
        }
    }

    fn may_eject_one_more(&self, max_ejection_percent: u32, now: Instant) -> bool {
        if max_ejection_percent == 0 {
            return false;
        }
        let ejected = self
            .hosts
            .iter()
            .filter(|host| host.outlier.is_ejected(now))
            .count() as u64;
        let total = self.hosts.len() as u64;
        ejected == 0 || (ejected + 1) * 100 <= u64::from(max_ejection_percent) * total
    }
}

/// Which detectors reached their threshold with one outcome.
#[derive(Debug, Default, Clone, Copy)]
struct Trips {
    consecutive_5xx: bool,
    gateway_failure: bool,
}

#[derive(Debug, Default)]
struct OutlierCounters {
    consecutive_5xx: u32,
    consecutive_gateway_failure: u32,
    times_ejected: u32,
    /// `Some(None)`: ejected with no end (the end did not fit in an `Instant`).
    ejected: Option<Option<Instant>>,
}

/// One host's outlier state; survives cluster updates with the host.
#[derive(Debug, Default)]
pub(crate) struct HostOutlier {
    /// Lets the pick path skip the lock for the (usual) host that is not ejected.
    ejected_flag: AtomicBool,
    counters: Mutex<OutlierCounters>,
}

impl HostOutlier {
    /// Whether the host is ejected at `now`; ends an ejection whose time has passed.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        if !self.ejected_flag.load(Ordering::Acquire) {
            return false;
        }
        let mut counters = lock(&self.counters);
        match counters.ejected {
            Some(Some(until)) if now >= until => {
                counters.ejected = None;
                self.ejected_flag.store(false, Ordering::Release);
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    pub(crate) fn times_ejected(&self) -> u32 {
        lock(&self.counters).times_ejected
    }

    /// Ends any ejection (the cluster no longer does outlier detection).
    pub(crate) fn clear_ejection(&self) {
        let mut counters = lock(&self.counters);
        counters.ejected = None;
        self.ejected_flag.store(false, Ordering::Release);
    }

    fn count(&self, outcome: Outcome, spec: &OutlierDetectionSpec, now: Instant) -> Trips {
        let mut trips = Trips::default();
        // A host already ejected is not judged again until it is back (answers of requests that
        // were in flight when it was ejected would otherwise re-eject it at once).
        if self.is_ejected(now) {
            return trips;
        }
        let mut counters = lock(&self.counters);
        if outcome.is_gateway_failure() {
            counters.consecutive_gateway_failure += 1;
            if reached(
                counters.consecutive_gateway_failure,
                spec.consecutive_gateway_failure,
            ) {
                counters.consecutive_gateway_failure = 0;
                trips.gateway_failure = true;
            }
        } else {
            counters.consecutive_gateway_failure = 0;
        }
        if outcome.is_5xx() {
            counters.consecutive_5xx += 1;
            if reached(counters.consecutive_5xx, spec.consecutive_5xx) {
                counters.consecutive_5xx = 0;
                trips.consecutive_5xx = true;
            }
        } else {
            counters.consecutive_5xx = 0;
        }
        trips
    }

    fn eject(&self, spec: &OutlierDetectionSpec, now: Instant) {
        let mut counters = lock(&self.counters);
        counters.times_ejected = counters.times_ejected.saturating_add(1);
        let max = spec.base_ejection_time.max(DEFAULT_MAX_EJECTION_TIME);
        let duration = spec
            .base_ejection_time
            .saturating_mul(counters.times_ejected)
            .min(max);
        counters.ejected = Some(now.checked_add(duration));
        counters.consecutive_5xx = 0;
        counters.consecutive_gateway_failure = 0;
        self.ejected_flag.store(true, Ordering::Release);
        tracing::debug!(
            times_ejected = counters.times_ejected,
            ?duration,
            "outlier ejected"
        );
    }
}

/// A threshold of 0 never trips (as in Envoy, where the counter never equals 0 after a failure).
fn reached(count: u32, threshold: u32) -> bool {
    threshold > 0 && count >= threshold
}

/// True with `percent` % probability.
fn draw_percent(percent: u32) -> bool {
    match percent {
        0 => false,
        100.. => true,
        _ => rand::random_range(0..100) < percent,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cluster::testing::{addr, cluster_with, endpoint};
    use crate::cluster::{Cluster, Outcome};
    use crate::model::{HealthStatus, LbPolicy, OutlierDetectionSpec};
    use std::sync::Arc;

    fn detected(hosts: u16, detection: OutlierDetectionSpec) -> Arc<Cluster> {
        cluster_with("detected", LbPolicy::RoundRobin, |spec| {
            spec.outlier_detection = Some(detection);
            spec.localities[0].endpoints = (1..=hosts)
                .map(|i| endpoint(i, 1, HealthStatus::Healthy))
                .collect();
        })
    }

    fn endpoint_of(cluster: &Cluster, port_index: u16) -> Arc<crate::cluster::Endpoint> {
        cluster
            .endpoints()
            .iter()
            .find(|e| e.address() == addr(port_index))
            .cloned()
            .unwrap()
    }

    fn never_picked(cluster: &Cluster, port_index: u16) -> bool {
        (0..20).all(|_| cluster.pick(None, &[]).unwrap().address() != addr(port_index))
    }

    #[tokio::test(start_paused = true)]
    async fn five_consecutive_503_eject() {
        let cluster = detected(2, OutlierDetectionSpec::default());
        let host = endpoint_of(&cluster, 1);
        for _ in 0..4 {
            host.record(Outcome::Status(503));
        }
        assert!(!host.is_ejected());
        host.record(Outcome::Status(503));
        assert!(host.is_ejected());
        assert!(never_picked(&cluster, 1));
        assert_eq!(host.times_ejected(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn local_failures_count_as_5xx() {
        let cluster = detected(2, OutlierDetectionSpec::default());
        let host = endpoint_of(&cluster, 1);
        for _ in 0..5 {
            host.record(Outcome::LocalFailure);
        }
        assert!(host.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_count() {
        let cluster = detected(2, OutlierDetectionSpec::default());
        let host = endpoint_of(&cluster, 1);
        for _ in 0..4 {
            host.record(Outcome::Status(500));
        }
        host.record(Outcome::Success);
        for _ in 0..4 {
            host.record(Outcome::Status(500));
        }
        assert!(!host.is_ejected());
        host.record(Outcome::Status(500));
        assert!(host.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_expires_and_the_second_lasts_twice_as_long() {
        let cluster = detected(2, OutlierDetectionSpec::default());
        let host = endpoint_of(&cluster, 1);
        for _ in 0..5 {
            host.record(Outcome::Status(503));
        }
        assert!(host.is_ejected());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(host.is_ejected());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!host.is_ejected());
        assert!((0..10).any(|_| cluster.pick(None, &[]).unwrap().address() == addr(1)));

        for _ in 0..5 {
            host.record(Outcome::Status(503));
        }
        assert_eq!(host.times_ejected(), 2);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(host.is_ejected());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!host.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn counters_reset_on_ejection() {
        let cluster = detected(2, OutlierDetectionSpec::default());
        let host = endpoint_of(&cluster, 1);
        for _ in 0..5 {
            host.record(Outcome::Status(503));
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!host.is_ejected());
        // Back in service with fresh counters: four more failures do not eject.
        for _ in 0..4 {
            host.record(Outcome::Status(503));
        }
        assert!(!host.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_caps_ejections() {
        // 10 hosts, 20 %: two may be ejected, the third may not.
        let detection = OutlierDetectionSpec {
            max_ejection_percent: 20,
            ..OutlierDetectionSpec::default()
        };
        let cluster = detected(10, detection);
        for i in 1..=3 {
            let host = endpoint_of(&cluster, i);
            for _ in 0..5 {
                host.record(Outcome::Status(500));
            }
        }
        assert!(endpoint_of(&cluster, 1).is_ejected());
        assert!(endpoint_of(&cluster, 2).is_ejected());
        assert!(!endpoint_of(&cluster, 3).is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn at_least_one_host_may_be_ejected() {
        // 3 hosts at 10 %: one is 33 %, still allowed because none is ejected yet.
        let cluster = detected(3, OutlierDetectionSpec::default());
        for i in 1..=2 {
            let host = endpoint_of(&cluster, i);
            for _ in 0..5 {
                host.record(Outcome::Status(500));
            }
        }
        assert!(endpoint_of(&cluster, 1).is_ejected());
        assert!(!endpoint_of(&cluster, 2).is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn gateway_failure_not_enforced_at_zero() {
        let detection = OutlierDetectionSpec {
            consecutive_5xx: 100,
            consecutive_gateway_failure: 3,
            enforcing_consecutive_gateway_failure: 0,
            ..OutlierDetectionSpec::default()
        };
        let cluster = detected(2, detection);
        let host = endpoint_of(&cluster, 1);
        for _ in 0..10 {
            host.record(Outcome::Status(502));
        }
        assert!(!host.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn gateway_failure_enforced_at_100() {
        let detection = OutlierDetectionSpec {
            consecutive_5xx: 100,
            consecutive_gateway_failure: 3,
            enforcing_consecutive_gateway_failure: 100,
            ..OutlierDetectionSpec::default()
        };
        let cluster = detected(2, detection);
        let host = endpoint_of(&cluster, 1);
        // A 500 is a 5xx but not a gateway failure: it resets the gateway count.
        host.record(Outcome::Status(504));
        host.record(Outcome::Status(504));
        host.record(Outcome::Status(500));
        host.record(Outcome::Status(504));
        host.record(Outcome::Status(504));
        assert!(!host.is_ejected());
        host.record(Outcome::LocalFailure);
        assert!(host.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn no_detection_no_ejection() {
        let cluster = cluster_with("plain", LbPolicy::RoundRobin, |_| {});
        let host = cluster.endpoints()[0].clone();
        for _ in 0..50 {
            host.record(Outcome::Status(503));
        }
        assert!(!host.is_ejected());
        assert_eq!(host.failures(), 50);
    }
}
