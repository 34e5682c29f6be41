//! The `outrigger` binary as a process: start-up errors exit 2 with one clear message, signals
//! drain in-flight requests and exit 0.

use std::time::Duration;

use outrigger_e2e::{expect_start_failure, memory_component, redis_component};
use outrigger_test_harness::{RedisServer, SidecarBuilder};

#[test]
fn bad_flags_and_config_exit_2_naming_the_problem() {
    expect_start_failure(
        SidecarBuilder::new("x").arg("--no-such-flag"),
        2,
        &["--no-such-flag"],
    );
    expect_start_failure(
        SidecarBuilder::new("x").arg("--app-protocol").arg("smtp"),
        2,
        &["--app-protocol", "smtp"],
    );
    expect_start_failure(
        SidecarBuilder::new("x").arg("--max-body-size").arg("lots"),
        2,
        &["--max-body-size"],
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("outrigger.yaml");
    std::fs::write(&config, "appId: x\nlogLevl: debug\n").expect("write");
    expect_start_failure(
        SidecarBuilder::new("x")
            .arg("--config")
            .arg(config.to_str().expect("utf8")),
        2,
        &["outrigger.yaml", "logLevl"],
    );
    expect_start_failure(
        SidecarBuilder::new("x")
            .arg("--config")
            .arg("/nonexistent/outrigger.yaml"),
        2,
        &["/nonexistent/outrigger.yaml"],
    );
}

#[test]
fn bad_component_files_exit_2_naming_file_component_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("store.yaml");
    let builder = || SidecarBuilder::new("x").resources_path(dir.path());

    std::fs::write(&file, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: orders\nspec:\n  type: state.nosuch\n  version: v1\n").expect("write");
    expect_start_failure(
        builder(),
        2,
        &["store.yaml", "orders", "spec.type", "state.nosuch"],
    );

    std::fs::write(&file, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: orders\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisDB\n    value: two\n  - name: redisHost\n    value: 127.0.0.1:1\n").expect("write");
    expect_start_failure(builder(), 2, &["store.yaml", "orders", "redisDB", "two"]);

    std::fs::write(&file, "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: orders\nspec:\n  type: state.redis\n  metadata:\n  - name: redisPassword\n    secretKeyRef:\n      name: redis\n      key: password\n").expect("write");
    expect_start_failure(
        builder(),
        2,
        &[
            "orders",
            "redisPassword",
            "secret stores are not supported yet",
        ],
    );

    std::fs::write(&file, "kind: Component\nmetadata: [oops\n").expect("write");
    expect_start_failure(builder(), 2, &["store.yaml", "not valid YAML"]);

    expect_start_failure(
        SidecarBuilder::new("x").resources_path(&dir.path().join("missing")),
        2,
        &["missing", "cannot read directory"],
    );
}

#[test]
fn unreachable_backend_fails_start_up_unless_errors_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = outrigger_test_harness::free_port();
    let component = redis_component(
        "orders",
        &format!("127.0.0.1:{port}"),
        &[("dialTimeout", "300ms")],
    );
    std::fs::write(dir.path().join("store.yaml"), &component).expect("write");
    expect_start_failure(
        SidecarBuilder::new("x").resources_path(dir.path()),
        1,
        &["orders", "state.redis", &format!("127.0.0.1:{port}")],
    );

    std::fs::write(
        dir.path().join("store.yaml"),
        component.replace("  version: v1\n", "  version: v1\n  ignoreErrors: true\n"),
    )
    .expect("write");
    let sidecar = SidecarBuilder::new("x").resources_path(dir.path()).spawn();
    assert!(
        sidecar.log().contains("ignoring component"),
        "{}",
        sidecar.log()
    );
}

#[test]
fn go_style_single_dash_flags_work_like_daprd() {
    let (status, output) = SidecarBuilder::new("x")
        .arg("-app-protocol")
        .arg("bogus")
        .run_to_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains("--app-protocol"),
        "the flag was understood: {output}"
    );
}

#[test]
fn sigterm_and_sigint_exit_zero() {
    for signal in ["TERM", "INT"] {
        let mut sidecar = SidecarBuilder::new("signals").spawn();
        sidecar.signal(signal);
        let status = sidecar
            .wait_exit(Duration::from_secs(10))
            .expect("exits after the signal");
        assert_eq!(status.code(), Some(0), "SIG{signal}: {}", sidecar.log());
    }
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("store.yaml"),
        redis_component(
            "store",
            &redis.address(),
            &[("readTimeout", "5s"), ("writeTimeout", "5s")],
        ),
    )
    .expect("write");
    let mut sidecar = SidecarBuilder::new("drain")
        .resources_path(dir.path())
        .spawn();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = sidecar.http_url("/v1.0/state/store");
    let status = runtime.block_on(async {
        let sleeper = redis.hold_busy(1).await;
        let write = tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .body(r#"[{"key":"late","value":1}]"#)
                .send()
                .await
                .map(|response| response.status())
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        sidecar.signal("TERM");
        let status = write
            .await
            .expect("task")
            .expect("the in-flight request gets an answer");
        sleeper.await.expect("sleeper");
        status
    });
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    let exit = sidecar.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(exit.code(), Some(0), "{}", sidecar.log());
    assert!(sidecar.log().contains("outrigger stopped"));
}

#[test]
fn a_departed_log_reader_neither_breaks_hot_reload_nor_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sidecar = SidecarBuilder::new("orphan")
        .resources_path(dir.path())
        .close_output_after_start()
        .spawn();
    // The loader logs the new component to stdout and stderr, whose readers are gone.
    std::fs::write(dir.path().join("late.yaml"), memory_component("late")).expect("write");
    let url = sidecar.http_url("/v1.0/state/late");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let saved = runtime.block_on(async {
        let client = reqwest::Client::new();
        for _ in 0..100 {
            let response = client
                .post(&url)
                .body(r#"[{"key":"k","value":1}]"#)
                .send()
                .await;
            if response.is_ok_and(|response| response.status() == 204) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    assert!(saved, "the hot-reloaded store never answered");
    sidecar.signal("TERM");
    let status = sidecar
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM although its log cannot be written");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_second_signal_exits_without_waiting_for_the_grace_period() {
    let redis = RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("store.yaml"),
        redis_component("store", &redis.address(), &[("readTimeout", "30s")]),
    )
    .expect("write");
    let mut sidecar = SidecarBuilder::new("impatient")
        .resources_path(dir.path())
        .arg("--graceful-shutdown-seconds")
        .arg("30")
        .spawn();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = sidecar.http_url("/v1.0/state/store/held");
    runtime.block_on(async {
        // A read held for 20 s by a busy Redis keeps the first signal's drain waiting.
        let _sleeper = redis.hold_busy(20).await;
        let _held = tokio::spawn(reqwest::get(url));
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    sidecar.signal("TERM");
    assert!(
        sidecar.wait_for_log("signal received", Duration::from_secs(5)),
        "{}",
        sidecar.log()
    );
    let started = std::time::Instant::now();
    sidecar.signal("TERM");
    let status = sidecar
        .wait_exit(Duration::from_secs(5))
        .expect("a second signal exits at once");
    assert_eq!(status.code(), Some(1), "{}", sidecar.log());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(sidecar.log().contains("second signal"), "{}", sidecar.log());
}
