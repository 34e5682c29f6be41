//! Resilience of mesh invocations configured by xDS: retries, timeouts, fault injection,
//! outlier detection and circuit breaking, each seen from a caller sidecar.

use std::time::{Duration, Instant};

use outrigger_e2e::mesh::{
    Answer, Backend, admin_clusters, eventually, invoke_with, prefix_route, route_config,
    start_file_caller, static_cluster,
};
use outrigger_runtime::RunningSidecar;
use reqwest::Method;
use serde_json::{Value, json};

async fn get(http: &reqwest::Client, caller: &RunningSidecar, path: &str) -> Answer {
    invoke_with(http, caller, Method::GET, "reviews", path, &[], None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_hide_an_endpoint_answering_503() {
    let good = Backend::start("reviews", "good").await;
    let bad = Backend::start("reviews", "bad").await;
    bad.app.set_status(503);
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[good.mesh(), bad.mesh()], json!({})),
            route_config(
                "reviews",
                vec![prefix_route(
                    "/",
                    "reviews",
                    json!({ "retryPolicy": { "retryOn": "5xx", "numRetries": 2 } }),
                )],
            ),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    for call in 0..200 {
        let answer = get(&http, &caller, "/reviews/1").await;
        assert_eq!(answer.status, 200, "call {call}: {answer:?}");
        assert_eq!(answer.version(), Some("good"), "call {call}: {answer:?}");
    }
    // A retried request carries its body again.
    for call in 0..10 {
        let body = format!("order {call}");
        let answer = invoke_with(
            &http,
            &caller,
            Method::POST,
            "reviews",
            "/orders",
            &[],
            Some(body.clone().into_bytes()),
        )
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.json()["body"], body.as_str(), "{answer:?}");
    }
    // Round robin sends about half of the first tries to the bad endpoint: the retries, not
    // luck, produced the 200s.
    assert!(
        bad.app.request_count() >= 50,
        "the bad endpoint saw {} requests",
        bad.app.request_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_answers_504_ut_at_the_deadline() {
    let slow = Backend::start("reviews", "slow").await;
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[slow.mesh()], json!({})),
            route_config(
                "reviews",
                vec![prefix_route("/", "reviews", json!({ "timeout": "0.3s" }))],
            ),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    let started = Instant::now();
    let answer = get(&http, &caller, "/sleep/2000").await;
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 504, "{answer:?}");
    assert!(answer.flags().contains("UT"), "{answer:?}");
    assert_eq!(
        answer.json()["errorCode"],
        "ERR_DIRECT_INVOKE",
        "{answer:?}"
    );
    assert!(
        (Duration::from_millis(300)..Duration::from_millis(350)).contains(&elapsed),
        "answered after {elapsed:?}, expected the 300 ms deadline (+50 ms)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_try_timeout_retries_then_gives_up_within_the_route_timeout() {
    let slow = Backend::start("reviews", "slow").await;
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[slow.mesh()], json!({})),
            route_config(
                "reviews",
                vec![prefix_route(
                    "/",
                    "reviews",
                    json!({
                        "timeout": "1s",
                        "retryPolicy": { "retryOn": "5xx", "numRetries": 2, "perTryTimeout": "0.1s" },
                    }),
                )],
            ),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    let started = Instant::now();
    let answer = get(&http, &caller, "/sleep/2000").await;
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 504, "{answer:?}");
    assert!(answer.flags().contains("UT"), "{answer:?}");
    // Three tries of 100 ms plus two jittered back-offs (< 25 ms and < 75 ms by default), far
    // from the 1 s route timeout.
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1050),
        "answered after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(600),
        "three 100 ms tries took {elapsed:?}: the per-try timeout was not applied"
    );
    assert!(
        eventually(Duration::from_secs(1), || async {
            slow.app.request_count() == 3
        })
        .await,
        "the app saw {} requests, expected 3 tries",
        slow.app.request_count()
    );
}

/// The fault filter's `typedPerFilterConfig` for a route.
fn fault(config: Value) -> Value {
    let mut fault =
        json!({ "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault" });
    outrigger_e2e::mesh::merge(&mut fault, config);
    json!({ "envoy.filters.http.fault": fault })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_abort_hits_half_the_calls_and_delay_adds_its_time() {
    let backend = Backend::start("reviews", "v1").await;
    let mut aborting = prefix_route("/aborted", "reviews", json!({}));
    aborting["typedPerFilterConfig"] = fault(json!({
        "abort": { "httpStatus": 503, "percentage": { "numerator": 50, "denominator": "HUNDRED" } },
    }));
    let mut delayed = prefix_route("/delayed", "reviews", json!({}));
    delayed["typedPerFilterConfig"] = fault(json!({
        "delay": { "fixedDelay": "0.2s", "percentage": { "numerator": 100, "denominator": "HUNDRED" } },
    }));
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[backend.mesh()], json!({})),
            route_config("reviews", vec![aborting, delayed]),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    let mut aborted = 0;
    for call in 0..1000 {
        let answer = get(&http, &caller, "/aborted").await;
        match answer.status {
            503 => {
                aborted += 1;
                assert!(answer.flags().contains("FI"), "call {call}: {answer:?}");
            }
            200 => {
                assert_eq!(answer.version(), Some("v1"), "call {call}: {answer:?}");
                assert!(!answer.flags().contains("FI"), "call {call}: {answer:?}");
            }
            _ => panic!("call {call}: {answer:?}"),
        }
    }
    assert!((450..=550).contains(&aborted), "{aborted} of 1000 aborted");
    // Aborted calls never reach the app.
    assert_eq!(backend.app.request_count(), 1000 - aborted);

    for _ in 0..3 {
        let started = Instant::now();
        let answer = get(&http, &caller, "/delayed").await;
        let elapsed = started.elapsed();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(
            elapsed >= Duration::from_millis(200),
            "a 0.2 s delay fault answered after {elapsed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_the_failing_endpoint() {
    let good = Backend::start("reviews", "good").await;
    let bad = Backend::start("reviews", "bad").await;
    bad.app.set_status(503);
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster(
                "reviews",
                &[good.mesh(), bad.mesh()],
                json!({ "outlierDetection": {
                    "consecutive5xx": 3,
                    "interval": "1s",
                    "baseEjectionTime": "30s",
                    "maxEjectionPercent": 100,
                }}),
            ),
            route_config("reviews", vec![prefix_route("/", "reviews", json!({}))]),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    let bad_address = bad.mesh().to_string();
    let is_bad_ejected = |clusters: &Value| {
        clusters["cluster_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|cluster| cluster["name"] == "reviews")
            .flat_map(|cluster| cluster["endpoints"].as_array().into_iter().flatten())
            .any(|endpoint| {
                endpoint["address"] == bad_address.as_str() && endpoint["ejected"] == true
            })
    };
    // Three consecutive 503s eject; round robin reaches them within about six calls.
    let mut calls = 0;
    while !is_bad_ejected(&admin_clusters(&http, &caller).await) {
        calls += 1;
        assert!(
            calls <= 36,
            "not ejected after 36 calls: {:#}",
            admin_clusters(&http, &caller).await
        );
        let answer = get(&http, &caller, "/reviews/1").await;
        assert!(matches!(answer.status, 200 | 503), "{answer:?}");
    }
    let bad_requests = bad.app.request_count();
    for call in 0..100 {
        let answer = get(&http, &caller, "/reviews/1").await;
        assert_eq!(answer.status, 200, "call {call} after ejection: {answer:?}");
        assert_eq!(answer.version(), Some("good"), "{answer:?}");
    }
    assert_eq!(
        bad.app.request_count(),
        bad_requests,
        "an ejected endpoint got traffic"
    );
    let clusters = admin_clusters(&http, &caller).await;
    assert!(is_bad_ejected(&clusters), "{clusters:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_overflow_answers_503_uo() {
    let backend = Backend::start("reviews", "v1").await;
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster(
                "reviews",
                &[backend.mesh()],
                json!({ "circuitBreakers": { "thresholds": [{ "maxRequests": 1 }] } }),
            ),
            route_config("reviews", vec![prefix_route("/", "reviews", json!({}))]),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    let answers =
        futures::future::join_all((0..5).map(|_| get(&http, &caller, "/sleep/500"))).await;
    let ok = answers.iter().filter(|answer| answer.status == 200).count();
    let overflow = answers
        .iter()
        .filter(|answer| answer.status == 503 && answer.flags().contains("UO"))
        .count();
    assert!(ok >= 1, "{answers:#?}");
    assert!(overflow >= 1, "{answers:#?}");
    assert_eq!(ok + overflow, 5, "{answers:#?}");

    // Every slot is given back: the breaker closes again once the burst is over.
    let answer = get(&http, &caller, "/reviews/1").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let clusters = admin_clusters(&http, &caller).await;
    let reviews = clusters["cluster_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|cluster| cluster["name"] == "reviews")
        .cloned()
        .unwrap_or_default();
    assert_eq!(reviews["requests_active"], 0, "{clusters:#}");
    assert_eq!(reviews["thresholds"]["max_requests"], 1, "{clusters:#}");
}

/// An app that sends its headers at once and the rest of the body after `stall`.
async fn stalling_body_app(stall: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let router = axum::Router::new().fallback(move || async move {
        let first = futures::stream::once(async { Ok::<_, std::io::Error>("first part, ") });
        let rest = futures::stream::once(async move {
            tokio::time::sleep(stall).await;
            Ok("the rest")
        });
        axum::body::Body::from_stream(futures::StreamExt::chain(first, rest))
    });
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_covers_the_whole_response_body() {
    let port = stalling_body_app(Duration::from_secs(3)).await;
    let callee = outrigger_e2e::mesh::start_sidecar(
        "reviews",
        Some(port),
        outrigger_runtime::config::XdsSource::None,
    )
    .await;
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster("reviews", &[callee.mesh_address], json!({})),
            route_config(
                "reviews",
                vec![prefix_route("/", "reviews", json!({ "timeout": "0.3s" }))],
            ),
        ],
    )
    .await;

    // Envoy's route timeout spans until the upstream response is complete, body included: a
    // body that stalls past it must not hold the caller for the app's whole stall.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let outcome = match http
        .get(format!(
            "http://{}/v1.0/invoke/reviews/method/stream",
            caller.http_address
        ))
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            format!("{status}: {:?}", response.text().await)
        }
        Err(error) => format!("error: {error}"),
    };
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1000),
        "a 0.3 s route timeout let the call run {elapsed:?} ({outcome})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_counts_a_request_until_its_body_is_done() {
    let port = stalling_body_app(Duration::from_secs(1)).await;
    let callee = outrigger_e2e::mesh::start_sidecar(
        "reviews",
        Some(port),
        outrigger_runtime::config::XdsSource::None,
    )
    .await;
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster(
                "reviews",
                &[callee.mesh_address],
                json!({ "circuitBreakers": { "thresholds": [{ "maxRequests": 1 }] } }),
            ),
            route_config("reviews", vec![prefix_route("/", "reviews", json!({}))]),
        ],
    )
    .await;

    // The first request has its headers but its body is still streaming: it is still active
    // (Envoy counts a request until its stream completes), so a second one overflows.
    let http = reqwest::Client::new();
    let first = http
        .get(format!(
            "http://{}/v1.0/invoke/reviews/method/stream",
            caller.http_address
        ))
        .send()
        .await
        .expect("first call");
    assert_eq!(first.status(), 200);
    let second = get(&http, &caller, "/stream").await;
    let first_body = first.text().await.expect("first body");
    assert_eq!(first_body, "first part, the rest");
    assert_eq!(
        (second.status, second.flags()),
        (503, "UO"),
        "a second request was admitted while the only slot's response was streaming: {second:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejected_endpoint_returns_after_the_ejection_time() {
    let good = Backend::start("reviews", "good").await;
    let flaky = Backend::start("reviews", "flaky").await;
    flaky.app.set_status(503);
    let (_dir, caller) = start_file_caller(
        "productpage",
        vec![
            static_cluster(
                "reviews",
                &[good.mesh(), flaky.mesh()],
                json!({ "outlierDetection": {
                    "consecutive5xx": 3,
                    "baseEjectionTime": "0.5s",
                    "maxEjectionPercent": 100,
                }}),
            ),
            route_config("reviews", vec![prefix_route("/", "reviews", json!({}))]),
        ],
    )
    .await;

    let http = reqwest::Client::new();
    // Eject it: three consecutive 503s within a dozen round-robin calls.
    for _ in 0..12 {
        get(&http, &caller, "/reviews/1").await;
    }
    let ejected_at = Instant::now();
    let clusters = admin_clusters(&http, &caller).await;
    assert_eq!(
        clusters["cluster_statuses"][0]["endpoints"][1]["ejected"], true,
        "{clusters:#}"
    );
    flaky.app.set_status(200);
    // Back after 0.5 s (the first ejection is not multiplied): it answers again.
    let returned = eventually(Duration::from_secs(3), || async {
        get(&http, &caller, "/reviews/1").await.version() == Some("flaky")
    })
    .await;
    assert!(returned, "the endpoint never came back");
    assert!(
        ejected_at.elapsed() >= Duration::from_millis(400),
        "back after {:?}, before its ejection time",
        ejected_at.elapsed()
    );
}
