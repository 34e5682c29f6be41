//! Routing pushed over ADS by an in-process control plane: changes under load, NACKed updates,
//! a control plane that goes away and comes back, and readiness before the first snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outrigger_e2e::mesh::{
    Answer, Backend, ads_resources, discovery_response, eventually, invoke_with, prefix_route,
    route_config, start_sidecar, static_cluster, wait_ready,
};
use outrigger_runtime::RunningSidecar;
use outrigger_runtime::config::XdsSource;
use outrigger_test_harness::{AckRecord, TestAdsServer};
use reqwest::Method;
use serde_json::{Value, json};

const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const WAIT: Duration = Duration::from_secs(5);

/// `reviews` v1, v2 and v3, each behind its own sidecar, as clusters `v1`, `v2`, `v3`.
struct Reviews {
    backends: Vec<Backend>,
}

impl Reviews {
    async fn start() -> Self {
        let mut backends = Vec::new();
        for version in ["v1", "v2", "v3"] {
            backends.push(Backend::start("reviews", version).await);
        }
        Self { backends }
    }

    /// The three clusters and `routes` for `reviews`, as ADS resources.
    fn snapshot(&self, routes: Vec<Value>) -> Vec<envoy_types::pb::google::protobuf::Any> {
        self.snapshot_of(&["v1", "v2", "v3"], routes)
    }

    /// Only the clusters of `versions`, and `routes` for `reviews`, as ADS resources.
    fn snapshot_of(
        &self,
        versions: &[&str],
        routes: Vec<Value>,
    ) -> Vec<envoy_types::pb::google::protobuf::Any> {
        let mut resources: Vec<Value> = self
            .backends
            .iter()
            .filter(|backend| versions.contains(&backend.app.version))
            .map(|backend| static_cluster(backend.app.version, &[backend.mesh()], json!({})))
            .collect();
        resources.push(route_config("reviews", routes));
        ads_resources(&discovery_response("unused", resources))
    }
}

fn all_to(cluster: &str) -> Vec<Value> {
    vec![prefix_route("/", cluster, json!({}))]
}

fn split_v1_v3() -> Vec<Value> {
    vec![json!({
        "match": { "prefix": "/" },
        "route": { "weightedClusters": { "clusters": [
            { "name": "v1", "weight": 50 },
            { "name": "v3", "weight": 50 },
        ]}},
    })]
}

async fn call(http: &reqwest::Client, caller: &RunningSidecar) -> Answer {
    invoke_with(
        http,
        caller,
        Method::GET,
        "reviews",
        "/reviews/1",
        &[],
        None,
    )
    .await
}

/// Versions answering `calls` sequential calls; failures are counted as `status N`.
async fn versions(caller: &RunningSidecar, calls: usize) -> HashMap<String, usize> {
    let http = reqwest::Client::new();
    let mut counts = HashMap::new();
    for _ in 0..calls {
        let answer = call(&http, caller).await;
        let key = match (answer.status, answer.version()) {
            (200, Some(version)) => version.to_string(),
            (status, _) => format!("status {status}"),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

async fn all_answered_by(caller: &RunningSidecar, version: &str, calls: usize) -> bool {
    versions(caller, calls).await.get(version) == Some(&calls)
}

fn is_route_ack(version: &'static str) -> impl Fn(&AckRecord) -> bool {
    move |record| record.type_url == ROUTE_TYPE && record.version_info == version && record.is_ack()
}

async fn ads_caller(server: &TestAdsServer) -> RunningSidecar {
    start_sidecar(
        "productpage",
        None,
        XdsSource::Ads(server.address().to_string()),
    )
    .await
}

/// Runs four workers calling `reviews` continuously while `push` (version "2") is applied;
/// asserts no call failed, calls finished before the push went to `before`, and calls started
/// after its RDS ACK all went to `after`.
async fn push_under_load(
    server: &TestAdsServer,
    caller: RunningSidecar,
    push: Vec<envoy_types::pb::google::protobuf::Any>,
    before: &[&str],
    after: &str,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<(tokio::time::Instant, Answer)>>> = Arc::default();
    let caller = Arc::new(caller);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, log, caller) = (Arc::clone(&stop), Arc::clone(&log), Arc::clone(&caller));
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while !stop.load(Ordering::SeqCst) {
                    let started = tokio::time::Instant::now();
                    let answer = call(&http, &caller).await;
                    log.lock().expect("log").push((started, answer));
                }
            })
        })
        .collect();
    let logged = |count: usize| {
        let log = Arc::clone(&log);
        move || {
            let log = Arc::clone(&log);
            async move { log.lock().expect("log").len() >= count }
        }
    };
    assert!(eventually(WAIT, logged(200)).await, "the load did not run");

    let done_before_push = log.lock().expect("log").len();
    server.set_resources("2", push);
    server
        .wait_for(is_route_ack("2"), WAIT)
        .await
        .expect("the new routes are ACKed");
    let acked = tokio::time::Instant::now();
    let done_at_ack = log.lock().expect("log").len();
    assert!(
        eventually(WAIT, logged(done_at_ack + 200)).await,
        "the load stopped"
    );
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("worker");
    }

    let log = std::mem::take(&mut *log.lock().expect("log"));
    let failed: Vec<&Answer> = log
        .iter()
        .map(|(_, answer)| answer)
        .filter(|answer| answer.status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:#?}",
        failed.len(),
        log.len()
    );
    let old: Vec<Option<&str>> = log[..done_before_push]
        .iter()
        .map(|(_, answer)| answer.version())
        .collect();
    assert!(
        old.iter()
            .all(|version| version.is_some_and(|version| before.contains(&version))),
        "calls before the push not all in {before:?}: {old:?}"
    );
    let after_ack: Vec<Option<&str>> = log
        .iter()
        .filter(|(started, _)| *started >= acked)
        .map(|(_, answer)| answer.version())
        .collect();
    assert!(
        after_ack.len() >= 100,
        "{} calls after the ACK",
        after_ack.len()
    );
    assert!(
        after_ack.iter().all(|version| *version == Some(after)),
        "calls started after the ACK not all {after}: {after_ack:?}"
    );
    assert!(all_answered_by(&caller, after, 50).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_change_over_ads_under_load_loses_no_request() {
    let reviews = Reviews::start().await;
    let server = TestAdsServer::start().await;
    server.set_resources("1", reviews.snapshot(split_v1_v3()));
    let caller = ads_caller(&server).await;
    assert!(wait_ready(&caller, WAIT).await, "{:#?}", server.acks());
    push_under_load(
        &server,
        caller,
        reviews.snapshot(all_to("v2")),
        &["v1", "v3"],
        "v2",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_to_a_cluster_added_in_the_same_push_loses_no_request() {
    let reviews = Reviews::start().await;
    let server = TestAdsServer::start().await;
    // At first there is no cluster `v2` at all; the push adds it and routes everything to it.
    let first = reviews.snapshot_of(&["v1", "v3"], split_v1_v3());
    server.set_resources("1", first);
    let caller = ads_caller(&server).await;
    assert!(wait_ready(&caller, WAIT).await, "{:#?}", server.acks());
    push_under_load(
        &server,
        caller,
        reviews.snapshot(all_to("v2")),
        &["v1", "v3"],
        "v2",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_updates_keep_the_old_routing_and_name_the_problem() {
    let reviews = Reviews::start().await;
    let server = TestAdsServer::start().await;
    server.set_resources("1", reviews.snapshot(all_to("v1")));
    let caller = ads_caller(&server).await;
    assert!(wait_ready(&caller, WAIT).await, "{:#?}", server.acks());
    assert!(all_answered_by(&caller, "v1", 20).await);

    // A path regex that does not compile.
    server.set_resources(
        "2",
        reviews.snapshot(vec![json!({
            "match": { "safeRegex": { "regex": "([" } },
            "route": { "cluster": "v2" },
        })]),
    );
    let nack = server
        .wait_for(
            |record| record.type_url == ROUTE_TYPE && record.is_nack(),
            WAIT,
        )
        .await
        .expect("the bad regex is NACKed");
    let detail = nack.error_detail.clone().unwrap_or_default();
    assert!(detail.contains("regex"), "NACK detail: {detail}");
    assert_eq!(
        nack.version_info, "1",
        "a NACK reports the last accepted version"
    );
    assert!(all_answered_by(&caller, "v1", 20).await);

    // Fixed: the same route with a valid regex.
    server.set_resources(
        "3",
        reviews.snapshot(vec![json!({
            "match": { "safeRegex": { "regex": "/reviews/[0-9]+" } },
            "route": { "cluster": "v2" },
        })]),
    );
    server
        .wait_for(is_route_ack("3"), WAIT)
        .await
        .expect("the fixed regex is ACKed");
    assert!(eventually(WAIT, || all_answered_by(&caller, "v2", 10)).await);

    // A route to a cluster nobody defined.
    server.set_resources("4", reviews.snapshot(all_to("v9")));
    let nack = server
        .wait_for(
            |record| {
                record.type_url == ROUTE_TYPE
                    && record.is_nack()
                    && record
                        .error_detail
                        .as_deref()
                        .is_some_and(|detail| !detail.contains("regex"))
            },
            WAIT,
        )
        .await
        .expect("the unknown cluster is NACKed");
    let detail = nack.error_detail.clone().unwrap_or_default();
    assert!(detail.contains("v9"), "NACK detail: {detail}");
    assert_eq!(nack.version_info, "3");
    assert!(all_answered_by(&caller, "v2", 20).await);

    server.set_resources("5", reviews.snapshot(all_to("v3")));
    server
        .wait_for(is_route_ack("5"), WAIT)
        .await
        .expect("the fixed route is ACKed");
    assert!(eventually(WAIT, || all_answered_by(&caller, "v3", 10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_outage_keeps_routing_and_resyncs_on_return() {
    let reviews = Reviews::start().await;
    let server = TestAdsServer::start().await;
    let port = server.address().port();
    server.set_resources("1", reviews.snapshot(all_to("v1")));
    let caller = ads_caller(&server).await;
    assert!(wait_ready(&caller, WAIT).await, "{:#?}", server.acks());
    assert!(all_answered_by(&caller, "v1", 20).await);

    server.stop().await;
    // With no control plane, the last accepted routing keeps serving and the sidecar stays
    // ready.
    assert!(all_answered_by(&caller, "v1", 50).await);
    assert!(wait_ready(&caller, Duration::from_millis(100)).await);

    let server = TestAdsServer::start_on(port).await;
    server.set_resources("2", reviews.snapshot(all_to("v2")));
    server
        .wait_for(is_route_ack("2"), Duration::from_secs(10))
        .await
        .expect("the sidecar reconnects and ACKs the new routes");
    assert!(eventually(WAIT, || all_answered_by(&caller, "v2", 10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_caller_is_not_ready_until_the_first_snapshot() {
    let reviews = Reviews::start().await;
    let server = TestAdsServer::start().await;
    let caller = ads_caller(&server).await;
    // Connected and subscribed, but nothing to serve yet.
    server
        .wait_for(|record| record.response_nonce.is_empty(), WAIT)
        .await
        .expect("the sidecar subscribes");
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("http://{}/ready", caller.admin_address))
        .send()
        .await
        .expect("admin /ready");
    assert_eq!(ready.status(), 503);
    let outbound = http
        .get(format!(
            "http://{}/v1.0/healthz/outbound",
            caller.http_address
        ))
        .send()
        .await
        .expect("healthz/outbound");
    assert_ne!(outbound.status(), 204);

    server.set_resources("1", reviews.snapshot(all_to("v3")));
    assert!(wait_ready(&caller, WAIT).await, "{:#?}", server.acks());
    let outbound = http
        .get(format!(
            "http://{}/v1.0/healthz/outbound",
            caller.http_address
        ))
        .send()
        .await
        .expect("healthz/outbound");
    assert_eq!(outbound.status(), 204);
    assert!(all_answered_by(&caller, "v3", 10).await);
}
