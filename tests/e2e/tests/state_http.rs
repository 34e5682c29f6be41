//! The HTTP state API against the embedded in-memory store and a real Redis, including every
//! documented error.

use outrigger_e2e::{config_with_resources, http_base, redis_component, start};
use outrigger_runtime::Config;
use outrigger_test_harness::RedisServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(base: String) -> Self {
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        (status, response.text().await.expect("body"), headers)
    }

    async fn post(&self, path: &str, body: &str) -> (StatusCode, String) {
        let (status, text, _) = self.send(reqwest::Method::POST, path, Some(body)).await;
        (status, text)
    }

    async fn get(&self, path: &str) -> (StatusCode, String, reqwest::header::HeaderMap) {
        self.send(reqwest::Method::GET, path, None).await
    }
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|value| value["errorCode"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("<not a Dapr error body: {body}>"))
}

async fn round_trip(api: &Api, store: &str) {
    let (status, body) = api
        .post(
            &format!("/v1.0/state/{store}"),
            r#"[{"key":"order-1","value":{"id": 1, "total": 10.50}},{"key":"greeting","value":"hello"}]"#,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, body, headers) = api.get(&format!("/v1.0/state/{store}/order-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body, r#"{"id":1,"total":10.50}"#,
        "value stored as compact JSON, numbers untouched"
    );
    let etag = headers
        .get("etag")
        .expect("ETag header")
        .to_str()
        .expect("text")
        .to_string();
    let (_, body, _) = api.get(&format!("/v1.0/state/{store}/greeting")).await;
    assert_eq!(
        body, "\"hello\"",
        "a JSON string keeps its quotes, as Dapr stores it"
    );

    let (status, body, _) = api.get(&format!("/v1.0/state/{store}/missing")).await;
    assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));

    // ETag: the current one wins, a stale one conflicts.
    let update = format!(r#"[{{"key":"order-1","value":2,"etag":"{etag}"}}]"#);
    assert_eq!(
        api.post(&format!("/v1.0/state/{store}"), &update).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = api.post(&format!("/v1.0/state/{store}"), &update).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "ERR_STATE_SAVE");
    let (status, body) = api
        .post(
            &format!("/v1.0/state/{store}"),
            r#"[{"key":"order-1","value":3,"etag":"not-a-version"}]"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "ERR_STATE_SAVE");

    // first-write refuses to overwrite without an etag.
    let (status, _) = api
        .post(
            &format!("/v1.0/state/{store}"),
            r#"[{"key":"greeting","value":"again","options":{"concurrency":"first-write"}}]"#,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Bulk get: order kept, missing keys have no data.
    let (status, body) = api
        .post(
            &format!("/v1.0/state/{store}/bulk"),
            r#"{"keys":["greeting","missing","order-1"],"parallelism":2}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(items[0]["key"], "greeting");
    assert_eq!(items[0]["data"], "hello");
    assert!(items[0]["etag"].is_string());
    assert_eq!(items[1], json!({"key": "missing"}));
    assert_eq!(items[2]["data"], 2);

    // Transaction: all or nothing.
    let (status, body) = api
        .post(
            &format!("/v1.0/state/{store}/transaction"),
            r#"{"operations":[{"operation":"upsert","request":{"key":"tx-a","value":"A"}},{"operation":"delete","request":{"key":"greeting"}}]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        api.get(&format!("/v1.0/state/{store}/tx-a")).await.1,
        "\"A\""
    );
    assert_eq!(
        api.get(&format!("/v1.0/state/{store}/greeting")).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, body) = api
        .post(
            &format!("/v1.0/state/{store}/transaction"),
            r#"{"operations":[{"operation":"upsert","request":{"key":"tx-b","value":"B"}},{"operation":"upsert","request":{"key":"tx-a","value":"A2","etag":"12345"}}]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "ERR_STATE_TRANSACTION");
    assert_eq!(
        api.get(&format!("/v1.0/state/{store}/tx-b")).await.0,
        StatusCode::NO_CONTENT,
        "nothing applied"
    );

    // Delete with If-Match.
    let (_, _, headers) = api.get(&format!("/v1.0/state/{store}/tx-a")).await;
    let etag = headers
        .get("etag")
        .expect("etag")
        .to_str()
        .expect("text")
        .to_string();
    let stale = api
        .http
        .delete(format!("{}/v1.0/state/{store}/tx-a", api.base))
        .header("If-Match", "99999")
        .send()
        .await
        .expect("delete");
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    assert_eq!(
        error_code(&stale.text().await.expect("body")),
        "ERR_STATE_DELETE"
    );
    let fresh = api
        .http
        .delete(format!("{}/v1.0/state/{store}/tx-a", api.base))
        .header("If-Match", etag)
        .send()
        .await
        .expect("delete");
    assert_eq!(fresh.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&format!("/v1.0/state/{store}/tx-a")).await.0,
        StatusCode::NO_CONTENT
    );

    // TTL from request metadata, reported back as metadata.ttlExpireTime.
    let (status, _) = api
        .post(
            &format!("/v1.0/state/{store}"),
            r#"[{"key":"session","value":"s","metadata":{"ttlInSeconds":"1"}}]"#,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, headers) = api.get(&format!("/v1.0/state/{store}/session")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers.contains_key("metadata.ttlExpireTime"),
        "{headers:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        api.get(&format!("/v1.0/state/{store}/session")).await.0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn embedded_in_memory_store_round_trip() {
    let sidecar = start(Config::for_test("http-memory")).await;
    round_trip(&Api::new(http_base(&sidecar)), "statestore").await;
    sidecar.shutdown().await;
}

#[tokio::test]
async fn redis_store_round_trip_uses_dapr_key_layout() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("redis.yaml"),
        redis_component("orders", &redis.address(), &[]),
    )
    .expect("write");
    let sidecar = start(config_with_resources("http-redis", dir.path())).await;
    let api = Api::new(http_base(&sidecar));
    round_trip(&api, "orders").await;
    let mut direct = redis.client().await;
    let data: String = redis::cmd("HGET")
        .arg("http-redis||order-1")
        .arg("data")
        .query_async(&mut direct)
        .await
        .expect("key stored as <app-id>||<key>");
    assert_eq!(data, "2");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn every_route_answers_bad_input_with_the_documented_error_and_keeps_serving() {
    let mut config = Config::for_test("bad-input");
    config.max_body_size = 1024;
    let sidecar = start(config).await;
    let api = Api::new(http_base(&sidecar));
    let big = format!(r#"[{{"key":"k","value":"{}"}}]"#, "x".repeat(2048));
    let cases: Vec<(reqwest::Method, &str, Option<&str>, StatusCode, &str)> = vec![
        (
            reqwest::Method::POST,
            "/v1.0/state/nostore",
            Some("[]"),
            StatusCode::BAD_REQUEST,
            "ERR_STATE_STORE_NOT_FOUND",
        ),
        (
            reqwest::Method::GET,
            "/v1.0/state/nostore/k",
            None,
            StatusCode::BAD_REQUEST,
            "ERR_STATE_STORE_NOT_FOUND",
        ),
        (
            reqwest::Method::DELETE,
            "/v1.0/state/nostore/k",
            None,
            StatusCode::BAD_REQUEST,
            "ERR_STATE_STORE_NOT_FOUND",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/nostore/bulk",
            Some("{}"),
            StatusCode::BAD_REQUEST,
            "ERR_STATE_STORE_NOT_FOUND",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/nostore/transaction",
            Some("{}"),
            StatusCode::BAD_REQUEST,
            "ERR_STATE_STORE_NOT_FOUND",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore",
            Some("{not json"),
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore",
            Some(""),
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore",
            Some(r#"{"key":"k"}"#),
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore",
            Some(r#"[{"value":1}]"#),
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore",
            Some(r#"[{"key":"","value":1}]"#),
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore",
            Some(r#"[{"key":"a||b","value":1}]"#),
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore",
            Some(r#"[{"key":"k","value":1,"options":{"concurrency":"sometimes"}}]"#),
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore",
            Some(r#"[{"key":"k","value":1,"metadata":{"ttlInSeconds":"soon"}}]"#),
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore",
            Some(&big),
            StatusCode::PAYLOAD_TOO_LARGE,
            "ERR_BODY_TOO_LARGE",
        ),
        (
            reqwest::Method::GET,
            "/v1.0/state/statestore/a||b",
            None,
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::GET,
            "/v1.0/state/statestore/k?consistency=psychic",
            None,
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::DELETE,
            "/v1.0/state/statestore/k?concurrency=never",
            None,
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore/bulk",
            Some(r#"{"keys":"k"}"#),
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore/bulk",
            Some(r#"{"keys":["a||b"]}"#),
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore/transaction",
            Some("[]"),
            StatusCode::BAD_REQUEST,
            "ERR_MALFORMED_REQUEST",
        ),
        (
            reqwest::Method::POST,
            "/v1.0/state/statestore/transaction",
            Some(r#"{"operations":[{"operation":"merge","request":{"key":"k"}}]}"#),
            StatusCode::BAD_REQUEST,
            "ERR_NOT_SUPPORTED_STATE_OPERATION",
        ),
        (
            reqwest::Method::GET,
            "/v1.0/secrets/vault/db-password",
            None,
            StatusCode::NOT_IMPLEMENTED,
            "ERR_NOT_IMPLEMENTED",
        ),
        (
            reqwest::Method::GET,
            "/v1.0/nothing-here",
            None,
            StatusCode::NOT_FOUND,
            "ERR_NOT_FOUND",
        ),
    ];
    for (method, path, body, expected_status, expected_code) in cases {
        let (status, text, _) = api.send(method.clone(), path, body).await;
        assert_eq!(status, expected_status, "{method} {path}: {text}");
        assert_eq!(error_code(&text), expected_code, "{method} {path}: {text}");
        let message = serde_json::from_str::<Value>(&text).expect("json")["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            !message.is_empty(),
            "{method} {path}: error message must say what is wrong"
        );
    }
    // Still serving after all of that.
    assert_eq!(
        api.post("/v1.0/state/statestore", r#"[{"key":"k","value":1}]"#)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get("/v1.0/state/statestore/k").await.1, "1");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn no_state_store_configured_is_a_distinct_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sidecar = start(config_with_resources("empty", dir.path())).await;
    let api = Api::new(http_base(&sidecar));
    let (status, body, _) = api.get("/v1.0/state/statestore/k").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(&body), "ERR_STATE_STORE_NOT_CONFIGURED");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn api_token_guards_every_route_but_health() {
    let mut config = Config::for_test("guarded");
    config.api_token = Some("s3cret".into());
    let sidecar = start(config).await;
    let api = Api::new(http_base(&sidecar));
    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        assert_eq!(
            api.get(path).await.0,
            StatusCode::NO_CONTENT,
            "{path} is exempt"
        );
    }
    let (status, body, _) = api.get("/v1.0/state/statestore/k").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "ERR_API_TOKEN_INVALID");
    assert_eq!(api.get("/v1.0/metadata").await.0, StatusCode::UNAUTHORIZED);
    let wrong = api
        .http
        .get(format!("{}/v1.0/metadata", api.base))
        .header("dapr-api-token", "guess")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let right = api
        .http
        .get(format!("{}/v1.0/metadata", api.base))
        .header("dapr-api-token", "s3cret")
        .send()
        .await
        .expect("send");
    assert_eq!(right.status(), StatusCode::OK);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn metadata_reports_app_ports_and_components() {
    let sidecar = start(Config::for_test("meta")).await;
    let api = Api::new(http_base(&sidecar));
    let (status, body, _) = api.get("/v1.0/metadata").await;
    assert_eq!(status, StatusCode::OK);
    let metadata: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(metadata["id"], "meta");
    assert_eq!(
        metadata["extended"]["daprHttpPort"],
        sidecar.http_address.port().to_string()
    );
    assert_eq!(
        metadata["extended"]["daprGrpcPort"],
        sidecar.grpc_address.port().to_string()
    );
    assert_eq!(
        metadata["components"],
        json!([
            {"name": "pubsub", "type": "pubsub.in-memory", "version": "v1", "capabilities": ["MESSAGE_TTL"]},
            {"name": "statestore", "type": "state.in-memory", "version": "v1", "capabilities": ["ETAG", "TRANSACTIONAL", "TTL"]}
        ])
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn shutdown_route_stops_the_sidecar() {
    let sidecar = start(Config::for_test("stopper")).await;
    let api = Api::new(http_base(&sidecar));
    assert_eq!(
        api.post("/v1.0/shutdown", "").await.0,
        StatusCode::NO_CONTENT
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), sidecar.wait())
        .await
        .expect("the sidecar stops after /v1.0/shutdown");
}

#[tokio::test]
async fn scopes_and_key_prefix_strategies_apply() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    let scoped = format!(
        "{}scopes:\n- someone-else\n",
        outrigger_e2e::memory_component("private")
    );
    std::fs::write(dir.path().join("private.yaml"), scoped).expect("write");
    for (name, strategy) in [("byname", "name"), ("shared", "none"), ("custom", "Team-A")] {
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            redis_component(name, &redis.address(), &[("keyPrefix", strategy)]),
        )
        .expect("write");
    }
    let sidecar = start(config_with_resources("prefixes", dir.path())).await;
    let api = Api::new(http_base(&sidecar));
    let (status, body) = api.post("/v1.0/state/private", "[]").await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::BAD_REQUEST, "ERR_STATE_STORE_NOT_FOUND"),
        "scoped to another app"
    );
    for store in ["byname", "shared", "custom"] {
        let (status, body) = api
            .post(
                &format!("/v1.0/state/{store}"),
                r#"[{"key":"k","value":"v"}]"#,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{store}: {body}");
    }
    let mut direct = redis.client().await;
    for stored_key in ["byname||k", "k", "team-a||k"] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(stored_key)
            .query_async(&mut direct)
            .await
            .expect("exists");
        assert!(exists, "expected Redis key {stored_key:?}");
    }
    sidecar.shutdown().await;
}
