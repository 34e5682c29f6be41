//! Envoy cluster semantics: the cluster set, load balancing, outlier detection, circuit breakers
//! and endpoint health.
//!
//! `ClusterManager` holds the current clusters; a request takes a `Cluster`, asks it for permits
//! (circuit breakers) and an endpoint (`pick`), counts itself on the endpoint
//! (`Endpoint::start_request`) and reports how it went (`Endpoint::record`). A request that has
//! to wait for a connection holds a pending permit meanwhile, and each connection the
//! cluster's pool opens holds a connection permit until it closes (`invoke` and `transport`).
//!
//! Priorities: a pick uses the lowest-numbered priority level that has at least one endpoint
//! receiving traffic (health `Unknown`/`Healthy`/`Degraded` and not ejected). This is the simple
//! form of Envoy's priority failover: there is no overprovisioning factor spilling part of the
//! load to the next level, and localities of one priority are balanced as one set (no locality
//! weighting).

mod breaker;
mod endpoint;
mod lb;
mod maglev;
mod outlier;
mod ring_hash;
mod status;
#[cfg(test)]
mod testing;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::time::Instant;

pub use breaker::{
    BreakerThreshold, ConnectionPermit, Overflow, PendingPermit, RequestPermit, RetryPermit,
};
pub use endpoint::{ActiveRequest, Endpoint, Outcome};
pub use status::{ClusterStatus, EndpointStatus, LocalityStatus, ThresholdsStatus, lb_policy_name};

use breaker::BreakerCounters;
use endpoint::{EndpointState, Placement};
use lb::Balancer;
use outlier::OutlierGroup;

use crate::model::{ClusterSpec, LocalityEndpoints};

/// The current set of clusters. Cheap to share via `Arc`; reads never block.
pub struct ClusterManager {
    clusters: ArcSwap<HashMap<String, Arc<Cluster>>>,
}

impl Default for ClusterManager {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterManager {
    pub fn new() -> Self {
        Self {
            clusters: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// Replaces the cluster set. A cluster whose spec is unchanged keeps its state; an endpoint
    /// (by address) that stays in a changed cluster keeps its counters and ejection state, and
    /// a changed cluster keeps its circuit-breaker counts (permits taken before still count).
    pub fn update(&self, clusters: &HashMap<String, Arc<ClusterSpec>>) {
        let current = self.clusters.load();
        let next = clusters
            .iter()
            .map(|(name, spec)| {
                let previous = current.get(name);
                let cluster = match previous {
                    Some(previous) if same_spec(&previous.spec, spec) => Arc::clone(previous),
                    _ => Arc::new(Cluster::build(Arc::clone(spec), previous.map(Arc::as_ref))),
                };
                (name.clone(), cluster)
            })
            .collect();
        self.clusters.store(Arc::new(next));
    }

    pub fn get(&self, name: &str) -> Option<Arc<Cluster>> {
        self.clusters.load().get(name).cloned()
    }

    /// For the admin `/clusters` page: every cluster (by name), every endpoint.
    pub fn status(&self) -> Vec<ClusterStatus> {
        let clusters = self.clusters.load();
        let mut statuses: Vec<ClusterStatus> =
            clusters.values().map(|cluster| cluster.status()).collect();
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        statuses
    }
}

/// One version of a cluster: its spec, endpoints by priority level and their balancers.
pub struct Cluster {
    spec: Arc<ClusterSpec>,
    name: Arc<str>,
    breakers: Arc<BreakerCounters>,
    /// In configuration order.
    endpoints: Vec<Arc<Endpoint>>,
    /// Every endpoint address, sorted, without repeats (for `has_endpoint`).
    addresses: Vec<SocketAddr>,
    /// By ascending priority number (most preferred first).
    levels: Vec<PriorityLevel>,
}

struct PriorityLevel {
    endpoints: Vec<Arc<Endpoint>>,
    balancer: Balancer,
}

impl Cluster {
    /// Builds a cluster, taking over endpoint state and breaker counts from `previous` (the
    /// version it replaces), if any.
    fn build(spec: Arc<ClusterSpec>, previous: Option<&Cluster>) -> Self {
        let mut states: HashMap<SocketAddr, Arc<EndpointState>> = previous
            .map(|previous| {
                previous
                    .endpoints
                    .iter()
                    .map(|endpoint| (endpoint.address(), Arc::clone(endpoint.state())))
                    .collect()
            })
            .unwrap_or_default();
        // Keep only the addresses still present; an address listed twice shares one state.
        let mut kept: HashMap<SocketAddr, Arc<EndpointState>> = HashMap::new();
        for endpoint_spec in spec.localities.iter().flat_map(|l| &l.endpoints) {
            let state = states.remove(&endpoint_spec.address).unwrap_or_default();
            if spec.outlier_detection.is_none() {
                state.outlier.clear_ejection();
            }
            kept.entry(endpoint_spec.address).or_insert(state);
        }
        let outlier_group = Arc::new(OutlierGroup::new(
            spec.outlier_detection,
            kept.values().cloned().collect(),
        ));

        let mut endpoints = Vec::new();
        let mut by_priority: BTreeMap<u32, Vec<Arc<Endpoint>>> = BTreeMap::new();
        for locality in &spec.localities {
            for endpoint_spec in &locality.endpoints {
                let state = kept
                    .get(&endpoint_spec.address)
                    .cloned()
                    .unwrap_or_default();
                let endpoint = Arc::new(Endpoint::new(
                    Placement {
                        address: endpoint_spec.address,
                        priority: locality.priority,
                        locality: locality.locality.clone(),
                        weight: endpoint_spec.weight,
                        health: endpoint_spec.health,
                    },
                    state,
                    Arc::clone(&outlier_group),
                ));
                endpoints.push(Arc::clone(&endpoint));
                by_priority
                    .entry(locality.priority)
                    .or_default()
                    .push(endpoint);
            }
        }
        let levels = by_priority
            .into_values()
            .map(|endpoints| PriorityLevel {
                balancer: Balancer::new(spec.lb_policy, &endpoints),
                endpoints,
            })
            .collect();
        let mut addresses: Vec<SocketAddr> = endpoints
            .iter()
            .map(|endpoint| endpoint.address())
            .collect();
        addresses.sort_unstable();
        addresses.dedup();

        Self {
            name: Arc::from(spec.name.as_str()),
            breakers: previous
                .map(|previous| Arc::clone(&previous.breakers))
                .unwrap_or_default(),
            spec,
            endpoints,
            addresses,
            levels,
        }
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every endpoint, in configuration order.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Whether `address` is one of this version's endpoints.
    pub fn has_endpoint(&self, address: SocketAddr) -> bool {
        self.addresses.binary_search(&address).is_ok()
    }

    /// A slot under `max_connections` for a connection about to be opened to an endpoint that
    /// has none, held by the connection until it closes. As in Envoy's HTTP connection pools,
    /// the connection is opened even when the cluster is at the threshold (counted as an
    /// overflow, Envoy's `upstream_cx_overflow`): otherwise requests balanced to that endpoint
    /// would have no way to reach it. HTTP/2 multiplexes every request to an endpoint over its
    /// one connection, so `max_connections` never fails a request here.
    pub fn open_connection(&self) -> ConnectionPermit {
        breaker::acquire_connection(&self.breakers, self.spec.circuit_breakers.max_connections)
    }

    /// Circuit breaker on concurrent requests (`max_requests`); `Err(Overflow)` → the caller
    /// answers 503 UO. The permit gives its slot back on drop.
    pub fn try_start_request(&self) -> Result<RequestPermit, Overflow> {
        breaker::acquire_request(
            &self.breakers,
            self.spec.circuit_breakers.max_requests,
            &self.name,
        )
    }

    /// `max_retries` concurrent retries.
    pub fn try_start_retry(&self) -> Result<RetryPermit, Overflow> {
        breaker::acquire_retry(
            &self.breakers,
            self.spec.circuit_breakers.max_retries,
            &self.name,
        )
    }

    /// `max_pending_requests`: requests waiting for a usable connection (held while another
    /// request connects, or while connecting and handshaking; never on a live connection).
    pub fn try_start_pending(&self) -> Result<PendingPermit, Overflow> {
        breaker::acquire_pending(
            &self.breakers,
            self.spec.circuit_breakers.max_pending_requests,
            &self.name,
        )
    }

    /// Picks an endpoint that receives traffic (health Unknown/Healthy/Degraded, not ejected) by
    /// the cluster's `lb_policy`, from the first priority level that has one (see the module
    /// docs). `hash` feeds RING_HASH and MAGLEV (`None` → random). `avoid`: addresses this
    /// request already tried; ignored when the level has nothing else. `None`: no healthy
    /// upstream (503 UH).
    pub fn pick(&self, hash: Option<u64>, avoid: &[SocketAddr]) -> Option<Arc<Endpoint>> {
        let now = Instant::now();
        // Normally the first level with an eligible endpoint answers; going on covers a host
        // ejected by another task between the two looks.
        self.levels
            .iter()
            .filter(|level| level.endpoints.iter().any(|e| e.receives_traffic(now)))
            .find_map(|level| level.pick(hash, avoid, now))
    }

    /// This cluster for the admin `/clusters` page.
    pub fn status(&self) -> ClusterStatus {
        let now = Instant::now();
        ClusterStatus {
            name: self.spec.name.clone(),
            lb_policy: lb_policy_name(self.spec.lb_policy),
            thresholds: self.spec.circuit_breakers.into(),
            connections_active: self.breakers.active(BreakerThreshold::MaxConnections),
            connection_overflows: self.breakers.connection_overflows(),
            requests_active: self.breakers.active(BreakerThreshold::MaxRequests),
            pending_active: self.breakers.active(BreakerThreshold::MaxPendingRequests),
            retries_active: self.breakers.active(BreakerThreshold::MaxRetries),
            outlier_detection: self.spec.outlier_detection.is_some(),
            endpoints: self
                .endpoints
                .iter()
                .map(|endpoint| EndpointStatus {
                    address: endpoint.address(),
                    priority: endpoint.priority(),
                    locality: endpoint.locality().into(),
                    weight: endpoint.weight(),
                    health: endpoint.health().as_str(),
                    ejected: endpoint.state().outlier.is_ejected(now),
                    times_ejected: endpoint.times_ejected(),
                    active_requests: endpoint.active_requests(),
                    successes: endpoint.successes(),
                    failures: endpoint.failures(),
                })
                .collect(),
        }
    }
}

impl PriorityLevel {
    fn pick(&self, hash: Option<u64>, avoid: &[SocketAddr], now: Instant) -> Option<Arc<Endpoint>> {
        let eligible = |index: usize| {
            self.endpoints
                .get(index)
                .is_some_and(|endpoint| endpoint.receives_traffic(now))
        };
        let untried = |index: usize| {
            eligible(index)
                && self
                    .endpoints
                    .get(index)
                    .is_some_and(|endpoint| !avoid.contains(&endpoint.address()))
        };
        let skip_tried = !avoid.is_empty() && (0..self.endpoints.len()).any(untried);
        let index = if skip_tried {
            self.balancer.pick(&self.endpoints, hash, &untried)
        } else {
            self.balancer.pick(&self.endpoints, hash, &eligible)
        }?;
        self.endpoints.get(index).cloned()
    }
}

/// `ClusterSpec` has no `PartialEq` (the model leaves it out); compare what a cluster is built from.
fn same_spec(a: &ClusterSpec, b: &ClusterSpec) -> bool {
    fn same_locality(a: &LocalityEndpoints, b: &LocalityEndpoints) -> bool {
        a.locality == b.locality && a.priority == b.priority && a.endpoints == b.endpoints
    }
    std::ptr::eq(a, b)
        || (a.name == b.name
            && a.lb_policy == b.lb_policy
            && a.connect_timeout == b.connect_timeout
            && a.circuit_breakers == b.circuit_breakers
            && a.outlier_detection == b.outlier_detection
            && a.localities.len() == b.localities.len()
            && a.localities
                .iter()
                .zip(&b.localities)
                .all(|(a, b)| same_locality(a, b)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::testing::{addr, endpoint, locality, spec_with};
    use super::*;
    use crate::model::{HealthStatus, LbPolicy, OutlierDetectionSpec};

    fn manager_with(specs: Vec<ClusterSpec>) -> ClusterManager {
        let manager = ClusterManager::new();
        manager.update(&specs_map(specs));
        manager
    }

    fn specs_map(specs: Vec<ClusterSpec>) -> HashMap<String, Arc<ClusterSpec>> {
        specs
            .into_iter()
            .map(|spec| (spec.name.clone(), Arc::new(spec)))
            .collect()
    }

    fn two_priorities(p0_health: HealthStatus) -> ClusterSpec {
        spec_with("failover", LbPolicy::RoundRobin, |spec| {
            spec.outlier_detection = Some(OutlierDetectionSpec {
                max_ejection_percent: 100,
                ..OutlierDetectionSpec::default()
            });
            spec.localities = vec![
                locality(
                    1,
                    "b",
                    vec![
                        endpoint(3, 1, HealthStatus::Healthy),
                        endpoint(4, 1, HealthStatus::Healthy),
                    ],
                ),
                locality(
                    0,
                    "a",
                    vec![endpoint(1, 1, p0_health), endpoint(2, 1, p0_health)],
                ),
            ];
        })
    }

    #[test]
    fn picks_from_the_lowest_priority_number() {
        let manager = manager_with(vec![two_priorities(HealthStatus::Healthy)]);
        let cluster = manager.get("failover").unwrap();
        for _ in 0..10 {
            let picked = cluster.pick(None, &[]).unwrap().address();
            assert!(picked == addr(1) || picked == addr(2));
        }
    }

    #[test]
    fn unhealthy_priority_fails_over_to_the_next() {
        for health in [
            HealthStatus::Unhealthy,
            HealthStatus::Draining,
            HealthStatus::Timeout,
        ] {
            let manager = manager_with(vec![two_priorities(health)]);
            let cluster = manager.get("failover").unwrap();
            for _ in 0..10 {
                let picked = cluster.pick(None, &[]).unwrap().address();
                assert!(picked == addr(3) || picked == addr(4), "{health:?}");
            }
        }
    }

    #[test]
    fn degraded_and_unknown_receive_traffic() {
        for health in [HealthStatus::Degraded, HealthStatus::Unknown] {
            let manager = manager_with(vec![two_priorities(health)]);
            let picked = manager.get("failover").unwrap().pick(None, &[]).unwrap();
            assert_eq!(picked.priority(), 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ejected_priority_fails_over_and_comes_back() {
        let manager = manager_with(vec![two_priorities(HealthStatus::Healthy)]);
        let cluster = manager.get("failover").unwrap();
        for endpoint in cluster.endpoints().iter().filter(|e| e.priority() == 0) {
            for _ in 0..5 {
                endpoint.record(Outcome::Status(503));
            }
            assert!(endpoint.is_ejected());
        }
        assert_eq!(cluster.pick(None, &[]).unwrap().priority(), 1);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(cluster.pick(None, &[]).unwrap().priority(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_to_pick_is_none() {
        let empty = manager_with(vec![spec_with("empty", LbPolicy::RoundRobin, |spec| {
            spec.localities.clear();
        })]);
        assert!(empty.get("empty").unwrap().pick(None, &[]).is_none());

        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::LeastRequest { choice_count: 2 },
            LbPolicy::RingHash {
                minimum_ring_size: 1024,
                maximum_ring_size: 4096,
            },
            LbPolicy::Maglev { table_size: 65_537 },
        ] {
            let manager = manager_with(vec![spec_with("down", policy, |spec| {
                spec.localities[0].endpoints = vec![endpoint(1, 1, HealthStatus::Unhealthy)];
                spec.localities.push(locality(1, "b", Vec::new()));
            })]);
            assert!(
                manager
                    .get("down")
                    .unwrap()
                    .pick(Some(1), &[addr(1)])
                    .is_none()
            );
        }

        let all_ejected = manager_with(vec![spec_with("ejected", LbPolicy::RoundRobin, |spec| {
            spec.outlier_detection = Some(OutlierDetectionSpec {
                max_ejection_percent: 100,
                ..OutlierDetectionSpec::default()
            });
        })]);
        let cluster = all_ejected.get("ejected").unwrap();
        for endpoint in cluster.endpoints() {
            for _ in 0..5 {
                endpoint.record(Outcome::LocalFailure);
            }
        }
        assert!(cluster.pick(None, &[]).is_none());
    }

    #[test]
    fn unchanged_spec_keeps_the_cluster() {
        let manager = manager_with(vec![spec_with("same", LbPolicy::RoundRobin, |_| {})]);
        let before = manager.get("same").unwrap();
        manager.update(&specs_map(vec![spec_with(
            "same",
            LbPolicy::RoundRobin,
            |_| {},
        )]));
        assert!(Arc::ptr_eq(&before, &manager.get("same").unwrap()));
    }

    #[tokio::test(start_paused = true)]
    async fn update_keeps_state_of_surviving_endpoints() {
        let outlier = Some(OutlierDetectionSpec {
            max_ejection_percent: 100,
            ..OutlierDetectionSpec::default()
        });
        let manager = manager_with(vec![spec_with("c", LbPolicy::RoundRobin, |spec| {
            spec.outlier_detection = outlier;
        })]);
        let old = manager.get("c").unwrap();
        let survivor = old.endpoints()[0].clone();
        let _active = survivor.start_request();
        survivor.record(Outcome::Success);
        for _ in 0..5 {
            survivor.record(Outcome::Status(500));
        }
        assert!(survivor.is_ejected());
        let _permit = old.try_start_request().unwrap();

        // Host 2 leaves, host 3 joins, the policy changes.
        manager.update(&specs_map(vec![spec_with("c", LbPolicy::Random, |spec| {
            spec.outlier_detection = outlier;
            spec.localities[0].endpoints = vec![
                endpoint(1, 1, HealthStatus::Healthy),
                endpoint(3, 1, HealthStatus::Healthy),
            ];
        })]));
        let new = manager.get("c").unwrap();
        assert!(!Arc::ptr_eq(&old, &new));
        let kept = new
            .endpoints()
            .iter()
            .find(|e| e.address() == addr(1))
            .unwrap();
        assert!(kept.is_ejected());
        assert_eq!(kept.times_ejected(), 1);
        assert_eq!(kept.active_requests(), 1);
        assert_eq!((kept.successes(), kept.failures()), (1, 5));
        let joined = new
            .endpoints()
            .iter()
            .find(|e| e.address() == addr(3))
            .unwrap();
        assert_eq!(joined.successes(), 0);
        assert_eq!(new.status().requests_active, 1);
        for _ in 0..10 {
            assert_eq!(new.pick(None, &[]).unwrap().address(), addr(3));
        }

        // Clusters missing from the update are gone.
        manager.update(&HashMap::new());
        assert!(manager.get("c").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn status_lists_every_cluster_and_endpoint() {
        let manager = manager_with(vec![
            two_priorities(HealthStatus::Healthy),
            spec_with("another", LbPolicy::Maglev { table_size: 65_537 }, |_| {}),
        ]);
        let cluster = manager.get("failover").unwrap();
        let first = cluster
            .endpoints()
            .iter()
            .find(|e| e.address() == addr(1))
            .unwrap();
        let _active = first.start_request();
        for _ in 0..5 {
            first.record(Outcome::Status(503));
        }
        first.record(Outcome::Success);

        let statuses = manager.status();
        let names: Vec<_> = statuses.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["another", "failover"]);
        assert_eq!(statuses[0].lb_policy, "MAGLEV");
        let failover = &statuses[1];
        assert_eq!(failover.lb_policy, "ROUND_ROBIN");
        assert_eq!(failover.thresholds.max_retries, 3);
        assert!(failover.outlier_detection);
        assert_eq!(failover.endpoints.len(), 4);
        let ejected = failover
            .endpoints
            .iter()
            .find(|e| e.address == addr(1))
            .unwrap();
        assert!(ejected.ejected);
        assert_eq!(ejected.times_ejected, 1);
        assert_eq!(ejected.active_requests, 1);
        assert_eq!((ejected.successes, ejected.failures), (1, 5));
        assert_eq!(ejected.priority, 0);
        assert_eq!(ejected.health, "HEALTHY");
        assert_eq!(ejected.locality.zone, "a");

        let json = serde_json::to_value(failover).unwrap();
        assert_eq!(json["endpoints"][2]["address"], "10.0.0.1:8080");
        assert_eq!(json["endpoints"][0]["locality"]["zone"], "b");

        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!manager.status()[1].endpoints[2].ejected);
    }

    #[test]
    fn has_endpoint_knows_every_address_of_the_version() {
        let manager = manager_with(vec![two_priorities(HealthStatus::Healthy)]);
        let cluster = manager.get("failover").unwrap();
        for i in 1..=4 {
            assert!(cluster.has_endpoint(addr(i)), "host {i}");
        }
        assert!(!cluster.has_endpoint(addr(5)));
    }

    #[test]
    fn manager_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ClusterManager>();
        assert_send_sync::<Cluster>();
        assert_send_sync::<Endpoint>();
        assert_send_sync::<ActiveRequest>();
        assert_send_sync::<RequestPermit>();
        assert_send_sync::<ConnectionPermit>();
        assert_send_sync::<PendingPermit>();
    }
}
