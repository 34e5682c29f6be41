//! The resource store: all-or-nothing updates, the snapshot, subscription names, config dump.
#![allow(clippy::unwrap_used)]

mod support;

use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::google::protobuf::Any;
use outrigger_xds::store::{
    CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, ResourceStore, XdsError,
};

use support::*;

fn listener(name: &str, route_config_name: &str) -> Listener {
    let mut manager = rds_manager(route_config_name);
    manager.stat_prefix = name.into();
    listener_with_manager(name, &manager)
}

/// Route configuration `outrigger` with one virtual host whose one route goes to `cluster`.
fn outrigger_routes(host: &str, domains: &[&str], cluster: &str) -> [Any; 1] {
    [any(&route_config(
        "outrigger",
        vec![virtual_host(host, domains, vec![route_to(cluster)])],
    ))]
}

fn store_with_clusters() -> ResourceStore {
    let mut store = ResourceStore::new("outrigger");
    store
        .apply(
            CLUSTER_TYPE,
            "c1",
            &[
                any(&static_cluster("v1", &[9081])),
                any(&eds_cluster("ratings", "outbound|9080||ratings")),
                any(&eds_cluster("details", "")),
            ],
        )
        .unwrap();
    store
}

#[test]
fn snapshot_joins_eds_assignments_by_service_name() {
    let mut store = store_with_clusters();
    let snapshot = store.snapshot();
    assert_eq!(snapshot.clusters.len(), 3);
    assert_eq!(snapshot.clusters["v1"].localities[0].endpoints.len(), 1);
    assert!(
        snapshot.clusters["ratings"].localities.is_empty(),
        "an EDS cluster has no endpoints before its assignment arrives"
    );

    store
        .apply(
            ENDPOINT_TYPE,
            "e1",
            &[
                any(&load_assignment("outbound|9080||ratings", &[9084, 9085])),
                any(&load_assignment("details", &[9086])),
            ],
        )
        .unwrap();
    let snapshot = store.snapshot();
    let ratings: Vec<_> = snapshot.clusters["ratings"].localities[0]
        .endpoints
        .iter()
        .map(|endpoint| endpoint.address.port())
        .collect();
    assert_eq!(ratings, [9084, 9085]);
    assert_eq!(
        snapshot.clusters["details"].localities[0].endpoints[0]
            .address
            .port(),
        9086
    );
    assert_eq!(store.version(ENDPOINT_TYPE), "e1");
    assert_eq!(store.version(CLUSTER_TYPE), "c1");
    assert_eq!(store.version(ROUTE_TYPE), "");
}

#[test]
fn route_configurations_inline_in_listeners_join_the_snapshot_after_the_rds_ones() {
    let mut store = store_with_clusters();
    store
        .apply(
            ROUTE_TYPE,
            "r1",
            &outrigger_routes("reviews", &["reviews"], "v1"),
        )
        .unwrap();
    let manager = inline_routes_manager(route_config(
        "inbound|9080||",
        vec![virtual_host(
            "ratings",
            &["ratings"],
            vec![route_to("ratings")],
        )],
    ));
    let inbound = listener_with_manager("virtualInbound", &manager);
    store.apply(LISTENER_TYPE, "l1", &[any(&inbound)]).unwrap();
    let names: Vec<_> = store
        .snapshot()
        .route_configs
        .iter()
        .map(|config| config.name.clone())
        .collect();
    assert_eq!(names, ["outrigger", "inbound|9080||"]);

    // An inline route to a cluster the store does not have is rejected with the listener.
    let bad = listener_with_manager(
        "virtualInbound",
        &inline_routes_manager(route_config(
            "inbound|9080||",
            vec![virtual_host(
                "ratings",
                &["ratings"],
                vec![route_to("nowhere")],
            )],
        )),
    );
    let error = store
        .apply(LISTENER_TYPE, "l2", &[any(&bad)])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("virtualInbound") && error.contains("unknown cluster \"nowhere\""),
        "{error}"
    );
    assert_eq!(
        store.snapshot().route_configs.len(),
        2,
        "the last good state serves"
    );
}

#[test]
fn rejected_update_keeps_the_previous_state() {
    let mut store = store_with_clusters();
    store
        .apply(ROUTE_TYPE, "r1", &outrigger_routes("vh", &["*"], "v1"))
        .unwrap();
    let error = store
        .apply(ROUTE_TYPE, "r2", &outrigger_routes("vh", &["*"], "v9"))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "RouteConfiguration outrigger: virtual_hosts[0].routes[0].route.cluster: unknown cluster \"v9\""
    );
    assert_eq!(store.version(ROUTE_TYPE), "r1");
    assert!(store.snapshot().route_config("outrigger").is_some());

    let mut dns = static_cluster("dns", &[]);
    dns.cluster_discovery_type =
        Some(envoy_types::pb::envoy::config::cluster::v3::cluster::ClusterDiscoveryType::Type(1));
    let error = store
        .apply(
            CLUSTER_TYPE,
            "c2",
            &[any(&static_cluster("v2", &[1])), any(&dns)],
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Cluster dns: type: STRICT_DNS is not supported (only STATIC and EDS clusters)"
    );
    assert_eq!(store.version(CLUSTER_TYPE), "c1");
    assert!(store.snapshot().clusters.contains_key("v1"));
    assert!(!store.snapshot().clusters.contains_key("v2"));
}

#[test]
fn wrong_type_duplicate_names_and_unknown_types_are_errors() {
    let mut store = ResourceStore::new("outrigger");
    let error = store
        .apply(
            CLUSTER_TYPE,
            "1",
            &[any(&static_cluster("v1", &[])), any(&listener("l", "r"))],
        )
        .unwrap_err();
    assert_eq!(
        error,
        XdsError::WrongType {
            index: 1,
            expected: CLUSTER_TYPE.to_string(),
            actual: LISTENER_TYPE.to_string(),
        }
    );
    assert_eq!(
        error.to_string(),
        "resources[1] is a type.googleapis.com/envoy.config.listener.v3.Listener, not a type.googleapis.com/envoy.config.cluster.v3.Cluster"
    );
    let error = store
        .apply(
            CLUSTER_TYPE,
            "1",
            &[
                any(&static_cluster("v1", &[])),
                any(&static_cluster("v1", &[])),
            ],
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Cluster v1: duplicate resource name in the response"
    );
    let garbage = Any {
        type_url: CLUSTER_TYPE.to_string(),
        value: vec![0xff, 0xff, 0xff],
    };
    assert!(matches!(
        store.apply(CLUSTER_TYPE, "1", &[garbage]),
        Err(XdsError::Decode { .. })
    ));
    assert!(matches!(
        store.apply(
            "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
            "1",
            &[]
        ),
        Err(XdsError::UnsupportedType(_))
    ));
    assert!(store.snapshot().clusters.is_empty());
}

#[test]
fn resource_names_per_type() {
    let mut store = store_with_clusters();
    assert_eq!(
        store.resource_names(ENDPOINT_TYPE),
        ["details", "outbound|9080||ratings"]
    );
    assert_eq!(store.resource_names(ROUTE_TYPE), ["outrigger"]);
    assert!(store.resource_names(CLUSTER_TYPE).is_empty());
    assert!(store.resource_names(LISTENER_TYPE).is_empty());
    store
        .apply(
            LISTENER_TYPE,
            "l1",
            &[
                any(&listener("b", "9080")),
                any(&listener("a", "outrigger")),
                any(&listener("c", "15001")),
            ],
        )
        .unwrap();
    assert_eq!(
        store.resource_names(ROUTE_TYPE),
        ["15001", "9080", "outrigger"]
    );
    assert_eq!(store.listeners().count(), 3);
}

#[test]
fn config_dump_renders_every_resource_with_its_type() {
    let mut store = store_with_clusters();
    store
        .apply(
            ENDPOINT_TYPE,
            "e1",
            &[any(&load_assignment("details", &[9086]))],
        )
        .unwrap();
    store
        .apply(LISTENER_TYPE, "l1", &[any(&listener("a", "outrigger"))])
        .unwrap();
    store
        .apply(ROUTE_TYPE, "r1", &outrigger_routes("vh", &["*"], "v1"))
        .unwrap();
    // Re-applying an unchanged cluster keeps the version it was last changed in.
    store
        .apply(
            CLUSTER_TYPE,
            "c2",
            &[
                any(&static_cluster("v1", &[9081])),
                any(&eds_cluster("ratings", "outbound|9080||ratings")),
                any(&eds_cluster("details", "")),
                any(&static_cluster("v2", &[9082])),
            ],
        )
        .unwrap();
    let dump = store.config_dump();
    let configs = dump["configs"].as_array().unwrap();
    assert_eq!(
        configs[0]["@type"],
        "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"
    );
    assert_eq!(configs[0]["version_info"], "c2");
    let clusters = configs[0]["dynamic_active_clusters"].as_array().unwrap();
    assert_eq!(clusters[0]["version_info"], "c1");
    assert_eq!(clusters[0]["cluster"]["@type"], CLUSTER_TYPE);
    assert_eq!(clusters[0]["cluster"]["name"], "v1");
    assert_eq!(clusters[0]["cluster"]["type"], "STATIC");
    assert_eq!(clusters[3]["version_info"], "c2");
    assert_eq!(
        clusters[0]["cluster"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["port_value"],
        9081
    );
    assert_eq!(
        configs[1]["@type"],
        "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"
    );
    assert_eq!(
        configs[1]["dynamic_endpoint_configs"][0]["endpoint_config"]["cluster_name"],
        "details"
    );
    assert_eq!(
        configs[2]["@type"],
        "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"
    );
    let listener = &configs[2]["dynamic_listeners"][0];
    assert_eq!(listener["name"], "a");
    assert_eq!(
        listener["active_state"]["listener"]["filter_chains"][0]["filters"][0]["typed_config"]["rds"]
            ["route_config_name"],
        "outrigger"
    );
    assert_eq!(
        configs[3]["@type"],
        "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"
    );
    let route = &configs[3]["dynamic_route_configs"][0];
    assert_eq!(route["version_info"], "r1");
    assert_eq!(route["route_config"]["@type"], ROUTE_TYPE);
    assert_eq!(route["route_config"]["name"], "outrigger");
    assert!(!dump.to_string().contains("\"error\""), "{dump}");
}
