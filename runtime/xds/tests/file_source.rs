//! The `--xds-file` source: YAML and JSON files, errors naming the file, and the watcher.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outrigger_mesh::model::{
    ClusterTarget, FaultStatus, HeaderRule, LbPolicy, MeshSnapshot, RouteAction, RouteFault,
    StringPattern,
};
use outrigger_xds::file::{apply_file, load_file, watch_file};
use outrigger_xds::store::{
    CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, ResourceStore, XdsError,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bookinfo.yaml")
}

fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn bookinfo_yaml_converts_to_the_expected_model() {
    let groups = load_file(&fixture()).unwrap();
    let counts: Vec<_> = groups
        .iter()
        .map(|(type_url, resources)| (type_url.as_str(), resources.len()))
        .collect();
    assert_eq!(
        counts,
        [
            (CLUSTER_TYPE, 4),
            (ENDPOINT_TYPE, 1),
            (LISTENER_TYPE, 1),
            (ROUTE_TYPE, 1)
        ]
    );

    let mut store = ResourceStore::new("outrigger");
    apply_file(&mut store, &fixture()).unwrap();
    assert_eq!(store.version(CLUSTER_TYPE), "bookinfo-1");
    assert_eq!(
        store.resource_names(ENDPOINT_TYPE),
        ["outbound|9080||ratings"]
    );
    assert_eq!(store.resource_names(ROUTE_TYPE), ["outrigger"]);
    let snapshot = store.snapshot();

    let v1 = &snapshot.clusters["outbound|9080|v1|reviews"];
    assert_eq!(v1.connect_timeout, Duration::from_secs(1));
    assert_eq!(
        v1.localities[0].endpoints[0].address.to_string(),
        "127.0.0.1:9081"
    );
    let v3 = &snapshot.clusters["outbound|9080|v3|reviews"];
    assert_eq!(v3.circuit_breakers.max_connections, 100);
    assert_eq!(v3.circuit_breakers.max_pending_requests, 10);
    assert_eq!(v3.circuit_breakers.max_requests, 1024);
    let outlier = v3.outlier_detection.unwrap();
    assert_eq!(outlier.consecutive_5xx, 3);
    assert_eq!(outlier.base_ejection_time, Duration::from_secs(5));
    assert_eq!(outlier.enforcing_consecutive_5xx, 100);
    let ratings = &snapshot.clusters["outbound|9080||ratings"];
    assert_eq!(
        ratings.lb_policy,
        LbPolicy::LeastRequest { choice_count: 2 }
    );
    assert_eq!(
        ratings.localities[0].endpoints[0].address.to_string(),
        "127.0.0.1:9084"
    );
    assert_eq!(ratings.localities[0].locality.region, "local");

    let config = snapshot.route_config("outrigger").unwrap();
    let reviews = &config.virtual_hosts[0];
    assert_eq!(
        reviews.domains,
        ["reviews", "reviews.default.svc.cluster.local"]
    );
    let jason = &reviews.routes[0];
    assert_eq!(jason.matcher.headers[0].name, "end-user");
    assert!(
        matches!(&jason.matcher.headers[0].rule, HeaderRule::Value(m) if matches!(&m.pattern, StringPattern::Exact(v) if v == "jason"))
    );
    let RouteAction::Forward(action) = &jason.action else {
        panic!("expected a forward action");
    };
    assert!(
        matches!(&action.target, ClusterTarget::Single(name) if name == "outbound|9080|v2|reviews")
    );
    let RouteAction::Forward(default) = &reviews.routes[1].action else {
        panic!("expected a forward action");
    };
    let ClusterTarget::Weighted(split) = &default.target else {
        panic!("expected weighted clusters");
    };
    let split: Vec<_> = split.iter().map(|c| (c.name.as_str(), c.weight)).collect();
    assert_eq!(
        split,
        [
            ("outbound|9080|v1|reviews", 50),
            ("outbound|9080|v3|reviews", 50)
        ]
    );
    assert_eq!(default.timeout, Some(Duration::from_secs(10)));
    let retry = default.retry_policy.as_ref().unwrap();
    assert!(retry.retry_on.server_error && retry.retry_on.connect_failure);
    assert_eq!(retry.num_retries, 2);
    assert_eq!(retry.per_try_timeout, Some(Duration::from_secs(2)));

    let ratings_host = &config.virtual_hosts[1];
    let RouteFault::Policy(fault) = &ratings_host.routes[0].fault else {
        panic!("a fault policy on the first ratings route")
    };
    let delay = fault.delay.as_ref().unwrap();
    assert_eq!(delay.delay, Duration::from_secs(1));
    assert_eq!(delay.per_million, 1_000_000);
    assert!(matches!(ratings_host.routes[1].fault, RouteFault::Inherit));

    let dump = store.config_dump().to_string();
    assert!(dump.contains("outbound|9080|v1|reviews"));
}

#[test]
fn json_file_with_an_abort_fault() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "mesh.json",
        r#"{
          "version_info": "7",
          "resources": [
            {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "backend",
             "type": "STATIC", "lbPolicy": "RING_HASH",
             "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
               {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}}}]}]}},
            {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": "outrigger",
             "virtual_hosts": [{"name": "backend", "domains": ["*"],
               "typed_per_filter_config": {"envoy.filters.http.fault": {
                 "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                 "config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                            "abort": {"http_status": 503, "percentage": {"numerator": 50}}}}},
               "routes": [{"match": {"safe_regex": {"regex": "/api/.*"}},
                           "route": {"cluster": "backend", "timeout": "0s",
                                     "hash_policy": [{"header": {"header_name": "x-user"}}]}}]}]}
          ]
        }"#,
    );
    let mut store = ResourceStore::new("outrigger");
    apply_file(&mut store, &path).unwrap();
    assert_eq!(store.version(ROUTE_TYPE), "7");
    let snapshot = store.snapshot();
    assert!(matches!(
        snapshot.clusters["backend"].lb_policy,
        LbPolicy::RingHash { .. }
    ));
    let virtual_host = &snapshot.route_config("outrigger").unwrap().virtual_hosts[0];
    let abort = virtual_host.fault.as_ref().unwrap().abort.as_ref().unwrap();
    assert_eq!(abort.status, FaultStatus::Http(503));
    assert_eq!(abort.per_million, 500_000);
    let RouteAction::Forward(action) = &virtual_host.routes[0].action else {
        panic!("expected a forward action");
    };
    assert_eq!(action.timeout, None);
    assert_eq!(action.hash_policy.len(), 1);
}

fn assert_file_error(path: &Path, expected: &str) {
    let mut store = ResourceStore::new("outrigger");
    let error = apply_file(&mut store, path).unwrap_err();
    let XdsError::File {
        path: named,
        message,
    } = &error
    else {
        panic!("expected a file error, got {error:?}");
    };
    assert_eq!(named, &path.display().to_string());
    assert!(
        message.contains(expected),
        "{message:?} should contain {expected:?}"
    );
    assert!(error.to_string().starts_with(&path.display().to_string()));
    assert!(store.snapshot().clusters.is_empty());
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_file_error(
        &write(&dir, "bad.json", r#"{"version_info": "1", "resources": ["#),
        "invalid JSON",
    );
    assert_file_error(
        &write(&dir, "typo.yaml", "version_info: '1'\nresourcez: []\n"),
        "invalid DiscoveryResponse: unrecognized field name 'resourcez'",
    );
    assert_file_error(
        &write(
            &dir,
            "unknown-type.yaml",
            "resources:\n- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Clustr\n  name: x\n",
        ),
        "envoy.config.cluster.v3.Clustr",
    );
    assert_file_error(
        &write(
            &dir,
            "secret.yaml",
            "resources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: x\n",
        ),
        "resources[0]: unsupported resource type type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
    );
    let bad_regex = std::fs::read_to_string(fixture()).unwrap().replace(
        "prefix: /\n        headers:\n        - name: end-user",
        "safe_regex: {regex: '/(['}\n        headers:\n        - name: end-user",
    );
    assert_file_error(
        &write(&dir, "bad-regex.yml", &bad_regex),
        "RouteConfiguration outrigger: virtual_hosts[0].routes[0].match.safe_regex: regex parse error",
    );
    let missing = dir.path().join("missing.yaml");
    assert_file_error(&missing, "cannot read");
    // No extension: JSON is tried first, then YAML.
    let path = write(&dir, "mesh", "version_info: '1'\nresources: []\n");
    let mut store = ResourceStore::new("outrigger");
    apply_file(&mut store, &path).unwrap();
}

#[test]
fn a_type_absent_from_the_file_means_no_resources_of_that_type() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ResourceStore::new("outrigger");
    apply_file(&mut store, &fixture()).unwrap();
    let path = write(&dir, "empty.yaml", "version_info: '2'\nresources: []\n");
    apply_file(&mut store, &path).unwrap();
    let snapshot = store.snapshot();
    assert!(snapshot.clusters.is_empty());
    assert!(snapshot.route_configs.is_empty());
    assert_eq!(store.version(LISTENER_TYPE), "2");
}

async fn wait_for(
    receiver: &mut watch::Receiver<Arc<MeshSnapshot>>,
    condition: impl Fn(&MeshSnapshot) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if condition(&receiver.borrow_and_update()) {
                return;
            }
            receiver.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn watcher_picks_up_edits_and_keeps_the_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(fixture()).unwrap();
    let path = write(&dir, "mesh.yaml", &original);
    let store = Arc::new(Mutex::new(ResourceStore::new("outrigger")));
    let (snapshots, mut snapshot_receiver) = watch::channel(Arc::new(MeshSnapshot::default()));
    let (synced, synced_receiver) = watch::channel(false);
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(watch_file(
        path.clone(),
        Duration::from_millis(20),
        Arc::clone(&store),
        snapshots,
        synced,
        stop.clone(),
        None,
    ));

    wait_for(&mut snapshot_receiver, |snapshot| {
        snapshot.clusters.len() == 4
    })
    .await;
    assert!(*synced_receiver.borrow());

    let edited = original.replace("port_value: 9081", "port_value: 9091");
    std::fs::write(&path, &edited).unwrap();
    let v1_port = |snapshot: &MeshSnapshot| {
        snapshot.clusters["outbound|9080|v1|reviews"].localities[0].endpoints[0]
            .address
            .port()
    };
    wait_for(&mut snapshot_receiver, |snapshot| v1_port(snapshot) == 9091).await;

    // A broken edit: the route now names a cluster that does not exist.
    let broken = edited.replace(
        "cluster: outbound|9080|v2|reviews",
        "cluster: outbound|9080|v9|reviews",
    );
    std::fs::write(&path, &broken).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(v1_port(&snapshot_receiver.borrow()), 9091);
    assert_eq!(store.lock().unwrap().snapshot().clusters.len(), 4);

    // Fixing the file is picked up again.
    std::fs::write(
        &path,
        edited.replace("port_value: 9091", "port_value: 9092"),
    )
    .unwrap();
    wait_for(&mut snapshot_receiver, |snapshot| v1_port(snapshot) == 9092).await;

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .unwrap()
        .unwrap();
}
