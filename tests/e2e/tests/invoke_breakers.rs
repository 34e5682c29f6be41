//! The connection-pool circuit breakers of a cluster, `max_connections` and
//! `max_pending_requests`, seen from a caller sidecar, as Envoy's HTTP pools apply them:
//! `max_connections` is counted but never strands an endpoint without a connection;
//! `max_pending_requests` overflow answers 503 with `UO` naming the threshold; every slot is
//! given back.

use std::time::{Duration, Instant};

use outrigger_e2e::mesh::{
    Answer, Backend, admin_clusters, eventually, invoke_with, prefix_route, route_config,
    start_file_caller, static_cluster,
};
use outrigger_runtime::RunningSidecar;
use outrigger_test_harness::silent_peer;
use reqwest::Method;
use serde_json::{Value, json};

async fn get(http: &reqwest::Client, caller: &RunningSidecar, path: &str) -> Answer {
    invoke_with(http, caller, Method::GET, "reviews", path, &[], None).await
}

/// Cluster `name` in the caller's admin `/clusters?format=json` (`Null` when absent).
async fn cluster_status(http: &reqwest::Client, caller: &RunningSidecar, name: &str) -> Value {
    let clusters = admin_clusters(http, caller).await;
    clusters["cluster_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|cluster| cluster["name"] == name)
        .cloned()
        .unwrap_or_default()
}

/// The circuit-breaker counts of a cluster: connections, pending, requests, retries.
fn counts(cluster: &Value) -> [u64; 4] {
    [
        "connections_active",
        "pending_active",
        "requests_active",
        "retries_active",
    ]
    .map(|field| cluster[field].as_u64().unwrap_or(u64::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_counts_an_overflow_but_never_strands_an_endpoint() {
    let first = Backend::start("reviews", "first").await;
    let second = Backend::start("reviews", "second").await;
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster(
                "reviews",
                &[first.mesh(), second.mesh()],
                json!({ "circuitBreakers": { "thresholds": [{ "maxConnections": 1 }] } }),
            ),
            route_config("reviews", vec![prefix_route("/", "reviews", json!({}))]),
        ],
    )
    .await;

    // Round robin alternates between the two endpoints. The first call opens the cluster's
    // only allowed connection; the second endpoint still gets one, as Envoy's HTTP pools give
    // an endpoint without connections one beyond the threshold, and counts an overflow.
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(get(&http, &caller, "/reviews/1").await);
    }
    for (call, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, 200, "call {call}: {answers:#?}");
    }
    assert_eq!(first.app.request_count(), 3, "{answers:#?}");
    assert_eq!(second.app.request_count(), 3, "{answers:#?}");

    // Two connections stay open (one beyond the threshold, counted once); nothing else is held.
    let reviews = cluster_status(&http, &caller, "reviews").await;
    assert_eq!(counts(&reviews), [2, 0, 0, 0], "{reviews:#}");
    assert_eq!(reviews["connection_overflows"], 1, "{reviews:#}");
    assert_eq!(reviews["thresholds"]["max_connections"], 1, "{reviews:#}");
    let text = http
        .get(format!("http://{}/clusters", caller.admin_address))
        .send()
        .await
        .expect("admin /clusters")
        .text()
        .await
        .expect("admin /clusters text");
    for line in [
        "reviews::default_priority::max_connections::1",
        "reviews::connections_active::2",
        "reviews::pending_active::0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pending_requests_overflows_while_a_connection_is_being_made() {
    let silent = silent_peer();
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster(
                "reviews",
                &[silent],
                json!({
                    "connectTimeout": "1s",
                    "circuitBreakers": { "thresholds": [{ "maxPendingRequests": 1 }] },
                }),
            ),
            route_config("reviews", vec![prefix_route("/", "reviews", json!({}))]),
        ],
    )
    .await;

    // One request waits for the connection, which never completes its handshake; the others
    // find the pending slot taken and answer at once.
    let http = reqwest::Client::new();
    let timed = |path: &'static str| {
        let http = http.clone();
        let caller = &caller;
        async move {
            let started = Instant::now();
            let answer = get(&http, caller, path).await;
            (answer, started.elapsed())
        }
    };
    let answers = futures::future::join_all((0..5).map(|_| timed("/reviews/1"))).await;
    let (pending, overflowed): (Vec<_>, Vec<_>) = answers
        .iter()
        .partition(|(answer, _)| answer.flags() != "UO");
    assert_eq!(pending.len(), 1, "{answers:#?}");
    assert_eq!(overflowed.len(), 4, "{answers:#?}");
    for (answer, elapsed) in &overflowed {
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(
            answer
                .body
                .contains("circuit breaker overflow: max_pending_requests of cluster reviews"),
            "{answer:?}"
        );
        assert!(
            *elapsed < Duration::from_millis(500),
            "an overflow answered after {elapsed:?}, not at once"
        );
    }
    let (answer, elapsed) = pending[0];
    assert_eq!((answer.status, answer.flags()), (503, "UF"), "{answer:?}");
    assert!(answer.body.contains("timed out after 1s"), "{answer:?}");
    assert!(
        (Duration::from_millis(950)..Duration::from_secs(3)).contains(elapsed),
        "the pending request ended after {elapsed:?}, expected the 1 s connect timeout"
    );

    // Every slot comes back: the pending request's and the half-made connection's.
    let released = eventually(Duration::from_secs(3), || async {
        counts(&cluster_status(&http, &caller, "reviews").await) == [0, 0, 0, 0]
    })
    .await;
    let reviews = cluster_status(&http, &caller, "reviews").await;
    assert!(released, "{reviews:#}");
    assert_eq!(
        reviews["thresholds"]["max_pending_requests"], 1,
        "{reviews:#}"
    );

    // The breaker closes again: the next request is pending once more (and times out).
    let (answer, _) = timed("/reviews/2").await;
    assert_eq!((answer.status, answer.flags()), (503, "UF"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_stuck_connecting_never_holds_up_the_main_request() {
    let backend = Backend::start("reviews", "primary").await;
    let silent = silent_peer();
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[backend.mesh()], json!({})),
            static_cluster(
                "shadow",
                &[silent],
                json!({
                    "connectTimeout": "1s",
                    "circuitBreakers": { "thresholds": [{ "maxPendingRequests": 1 }] },
                }),
            ),
            route_config(
                "reviews",
                vec![prefix_route(
                    "/",
                    "reviews",
                    json!({ "requestMirrorPolicies": [{ "cluster": "shadow" }] }),
                )],
            ),
        ],
    )
    .await;

    // The copies wait for (or overflow) the shadow's connection; the calls do not.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let answers =
        futures::future::join_all((0..5).map(|_| get(&http, &caller, "/reviews/1"))).await;
    let elapsed = started.elapsed();
    for answer in &answers {
        assert_eq!(answer.status, 200, "{answers:#?}");
        assert_eq!(answer.version(), Some("primary"), "{answers:#?}");
    }
    assert!(
        elapsed < Duration::from_millis(900),
        "the calls took {elapsed:?}: they waited for the mirror"
    );

    // The mirror's connect times out; the shadow's slots come back.
    let released = eventually(Duration::from_secs(4), || async {
        counts(&cluster_status(&http, &caller, "shadow").await) == [0, 0, 0, 0]
    })
    .await;
    let shadow = cluster_status(&http, &caller, "shadow").await;
    assert!(released, "{shadow:#}");
}
