//! The ADS client against the in-process test control plane, with a fake sink whose accept /
//! reject rules the tests choose (the real `ResourceStore` is tested on its own).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::google::protobuf::Any;
use outrigger_test_harness::ads_server::any;
use outrigger_test_harness::{AckRecord, TestAdsServer, free_port};
use outrigger_xds::ads::{AdsSettings, NodeIdentity, ResourceSink, run_ads, run_ads_store};
use outrigger_xds::store::ResourceStore;
use outrigger_xds::store::{CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE};
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(3);
const NODE_ID: &str = "sidecar~10.1.2.3~orders.shop~shop.svc.cluster.local";

type Rule = Box<dyn Fn(&str, &str) -> Option<String> + Send>;

/// Accepts everything except what `reject` names a reason for. EDS names are the accepted
/// clusters; RDS names are the accepted listeners (by the tests' convention a listener's route
/// configuration has the listener's name).
#[derive(Default)]
struct FakeSink {
    /// Per type: the accepted version and resource names.
    accepted: HashMap<String, (String, Vec<String>)>,
    reject: Option<Rule>,
    accepted_updates: usize,
}

impl FakeSink {
    fn rejecting(rule: impl Fn(&str, &str) -> Option<String> + Send + 'static) -> Self {
        Self {
            reject: Some(Box::new(rule)),
            ..Self::default()
        }
    }

    fn accepted(&self, type_url: &str) -> Option<(String, Vec<String>)> {
        self.accepted.get(type_url).cloned()
    }
}

impl ResourceSink for FakeSink {
    fn apply(&mut self, type_url: &str, version: &str, resources: &[Any]) -> Result<(), String> {
        if let Some(reason) = self
            .reject
            .as_ref()
            .and_then(|rule| rule(type_url, version))
        {
            return Err(reason);
        }
        let names = resources.iter().map(name_of).collect();
        self.accepted
            .insert(type_url.to_string(), (version.to_string(), names));
        Ok(())
    }

    fn resource_names(&self, type_url: &str) -> Vec<String> {
        let source = match type_url {
            ENDPOINT_TYPE => CLUSTER_TYPE,
            ROUTE_TYPE => LISTENER_TYPE,
            _ => return Vec::new(),
        };
        self.accepted
            .get(source)
            .map(|(_, names)| names.clone())
            .unwrap_or_default()
    }

    fn on_accepted(&mut self) {
        self.accepted_updates += 1;
    }
}

fn name_of(resource: &Any) -> String {
    let value = resource.value.as_slice();
    match resource.type_url.as_str() {
        CLUSTER_TYPE => Cluster::decode(value).map(|c| c.name),
        ENDPOINT_TYPE => ClusterLoadAssignment::decode(value).map(|c| c.cluster_name),
        LISTENER_TYPE => Listener::decode(value).map(|l| l.name),
        ROUTE_TYPE => RouteConfiguration::decode(value).map(|r| r.name),
        other => panic!("unexpected type {other}"),
    }
    .expect("decodable test resource")
}

fn cluster(name: &str) -> Any {
    any(&Cluster {
        name: name.to_string(),
        ..Cluster::default()
    })
}

fn endpoints(name: &str) -> Any {
    any(&ClusterLoadAssignment {
        cluster_name: name.to_string(),
        ..ClusterLoadAssignment::default()
    })
}

fn listener(name: &str) -> Any {
    any(&Listener {
        name: name.to_string(),
        ..Listener::default()
    })
}

fn route(name: &str) -> Any {
    any(&RouteConfiguration {
        name: name.to_string(),
        ..RouteConfiguration::default()
    })
}

/// One of each type: cluster `a` with its endpoints, listener `l` with its routes.
fn basic_snapshot() -> Vec<Any> {
    vec![cluster("a"), endpoints("a"), listener("l"), route("l")]
}

fn settings(address: String) -> AdsSettings {
    AdsSettings {
        address,
        node: NodeIdentity {
            app_id: "orders".to_string(),
            namespace: "shop".to_string(),
            ip: "10.1.2.3".to_string(),
            labels: BTreeMap::from([("app".to_string(), "orders".to_string())]),
            cluster: None,
        },
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
    }
}

struct Client {
    sink: Arc<Mutex<FakeSink>>,
    synced: watch::Receiver<bool>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Client {
    fn start(address: String, sink: FakeSink) -> Client {
        let sink = Arc::new(Mutex::new(sink));
        let (synced_tx, synced) = watch::channel(false);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_ads_until_stopped(
            settings(address),
            Arc::clone(&sink),
            synced_tx,
            stop.clone(),
        ));
        Client {
            sink,
            synced,
            stop,
            task,
        }
    }

    fn accepted(&self, type_url: &str) -> Option<(String, Vec<String>)> {
        self.sink.lock().expect("sink lock").accepted(type_url)
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), self.task)
            .await
            .expect("the ADS client stops promptly")
            .expect("the ADS client task does not panic");
    }
}

async fn run_ads_until_stopped(
    settings: AdsSettings,
    sink: Arc<Mutex<FakeSink>>,
    synced: watch::Sender<bool>,
    stop: CancellationToken,
) {
    run_ads(settings, sink, synced, stop)
        .await
        .expect("valid ADS settings");
}

fn is_ack(type_url: &'static str, version: &'static str) -> impl Fn(&AckRecord) -> bool {
    move |record| record.is_ack() && record.type_url == type_url && record.version_info == version
}

#[tokio::test]
async fn subscribes_with_the_istio_node_and_acks_version_and_nonce() {
    let server = TestAdsServer::start().await;
    server.set_resources("1", basic_snapshot());
    let client = Client::start(server.address().to_string(), FakeSink::default());

    server
        .wait_for(is_ack(ROUTE_TYPE, "1"), WAIT)
        .await
        .expect("client ACKs RDS v1");

    let requests = server.acks();
    let first = &requests[0];
    assert!(first.has_node, "the first request carries the node");
    assert_eq!(first.node_id, NODE_ID);
    assert_eq!(first.type_url, CLUSTER_TYPE);
    assert_eq!(first.version_info, "");
    assert!(first.resource_names.is_empty(), "CDS is a wildcard");
    assert!(
        requests[1..].iter().all(|request| !request.has_node),
        "only the first request carries the node: {requests:#?}"
    );
    let lds = requests
        .iter()
        .find(|request| request.type_url == LISTENER_TYPE)
        .expect("an LDS request");
    assert!(lds.resource_names.is_empty(), "LDS is a wildcard");

    // EDS is requested only after CDS was accepted, with the accepted clusters' names.
    let cds_ack = requests
        .iter()
        .position(is_ack(CLUSTER_TYPE, "1"))
        .expect("CDS ACK");
    let eds_request = requests
        .iter()
        .position(|request| request.type_url == ENDPOINT_TYPE)
        .expect("an EDS request");
    assert!(cds_ack < eds_request, "{requests:#?}");
    assert_eq!(requests[eds_request].resource_names, ["a"]);

    // Every ACK echoes the nonce of a response of its type with the same version.
    let responses = server.responses();
    for ack in requests.iter().filter(|request| request.is_ack()) {
        let answered = responses
            .iter()
            .find(|response| response.nonce == ack.response_nonce)
            .expect("ACK nonce names a sent response");
        assert_eq!(answered.type_url, ack.type_url);
        assert_eq!(answered.version_info, ack.version_info);
    }
    for type_url in [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE] {
        assert_eq!(
            client.accepted(type_url).map(|(v, _)| v).as_deref(),
            Some("1")
        );
    }
    assert!(*client.synced.borrow(), "synced after all four types");
    assert!(client.sink.lock().expect("sink lock").accepted_updates >= 4);
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn nack_carries_the_last_accepted_version_and_the_reason() {
    let server = TestAdsServer::start().await;
    server.set_resources("1", basic_snapshot());
    let sink = FakeSink::rejecting(|type_url, version| {
        (type_url == LISTENER_TYPE && version == "2")
            .then(|| "listener l: port 0 is not allowed".to_string())
    });
    let client = Client::start(server.address().to_string(), sink);
    server
        .wait_for(is_ack(ROUTE_TYPE, "1"), WAIT)
        .await
        .expect("client ACKs RDS v1");

    server.set_resources("2", basic_snapshot());
    let nack = server
        .wait_for(
            |record| record.is_nack() && record.type_url == LISTENER_TYPE,
            WAIT,
        )
        .await
        .expect("client NACKs LDS v2");
    assert_eq!(
        nack.version_info, "1",
        "a NACK carries the last accepted version"
    );
    assert_eq!(
        nack.error_detail.as_deref(),
        Some("listener l: port 0 is not allowed")
    );
    let rejected = server
        .responses()
        .into_iter()
        .find(|response| response.nonce == nack.response_nonce)
        .expect("the NACK names the rejected response's nonce");
    assert_eq!(rejected.type_url, LISTENER_TYPE);
    assert_eq!(rejected.version_info, "2");

    server
        .wait_for(is_ack(ROUTE_TYPE, "2"), WAIT)
        .await
        .expect("other types keep being ACKed");
    assert_eq!(
        client.accepted(LISTENER_TYPE).map(|(v, _)| v).as_deref(),
        Some("1")
    );
    assert_eq!(
        client.accepted(CLUSTER_TYPE).map(|(v, _)| v).as_deref(),
        Some("2")
    );
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn endpoint_subscription_follows_the_accepted_clusters() {
    let server = TestAdsServer::start().await;
    let all_endpoints = vec![endpoints("a"), endpoints("b")];
    let mut v1 = vec![cluster("a"), listener("l"), route("l")];
    v1.extend(all_endpoints.clone());
    server.set_resources("1", v1);
    let client = Client::start(server.address().to_string(), FakeSink::default());
    server
        .wait_for(is_ack(ENDPOINT_TYPE, "1"), WAIT)
        .await
        .expect("client ACKs EDS v1");
    assert_eq!(
        client.accepted(ENDPOINT_TYPE),
        Some(("1".to_string(), vec!["a".to_string()])),
        "only the requested endpoints are served"
    );

    let mut v2 = vec![cluster("a"), cluster("b"), listener("l"), route("l")];
    v2.extend(all_endpoints);
    server.set_resources("2", v2);
    let resubscribed = server
        .wait_for(
            |record| record.type_url == ENDPOINT_TYPE && record.resource_names == ["a", "b"],
            WAIT,
        )
        .await
        .expect("client re-requests EDS with both clusters");
    assert!(!resubscribed.is_nack());
    let both = server
        .wait_for_response(
            |response| response.type_url == ENDPOINT_TYPE && response.resource_names == ["a", "b"],
            WAIT,
        )
        .await
        .expect("server answers the new EDS subscription");
    server
        .wait_for(
            |record| record.is_ack() && record.response_nonce == both.nonce,
            WAIT,
        )
        .await
        .expect("client ACKs the endpoints of both clusters");
    assert_eq!(
        client.accepted(ENDPOINT_TYPE),
        Some(("2".to_string(), vec!["a".to_string(), "b".to_string()]))
    );
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn synced_waits_for_every_subscribed_type() {
    let server = TestAdsServer::start().await;
    let sink = FakeSink::rejecting(|type_url, version| {
        (type_url == ROUTE_TYPE && version == "1").then(|| "route l: bad".to_string())
    });
    let client = Client::start(server.address().to_string(), sink);
    server
        .wait_for(|record| record.type_url == LISTENER_TYPE, WAIT)
        .await
        .expect("client subscribes to LDS");
    assert!(!*client.synced.borrow(), "not synced before any response");

    server.set_resources("1", basic_snapshot());
    server
        .wait_for(
            |record| record.is_nack() && record.type_url == ROUTE_TYPE,
            WAIT,
        )
        .await
        .expect("client NACKs RDS v1");
    assert!(
        server.acks().iter().any(is_ack(LISTENER_TYPE, "1")),
        "CDS, EDS and LDS were accepted before RDS"
    );
    assert!(
        !*client.synced.borrow(),
        "not synced while a subscribed type has no accepted response"
    );

    server.set_resources("2", basic_snapshot());
    let mut synced = client.synced.clone();
    tokio::time::timeout(WAIT, synced.wait_for(|synced| *synced))
        .await
        .expect("synced once RDS is accepted")
        .expect("the client keeps the synced sender");
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn reconnects_to_a_restarted_server_and_resumes_from_the_accepted_version() {
    let server = TestAdsServer::start().await;
    let port = server.address().port();
    server.set_resources("1", basic_snapshot());
    let client = Client::start(server.address().to_string(), FakeSink::default());
    server
        .wait_for(is_ack(ROUTE_TYPE, "1"), WAIT)
        .await
        .expect("client ACKs RDS v1");
    assert_eq!(server.connected_streams(), 1);

    server.stop().await;
    assert!(*client.synced.borrow(), "synced survives the disconnect");

    let server = TestAdsServer::start_on(port).await;
    let first = server
        .wait_for(|record| record.type_url == CLUSTER_TYPE, WAIT)
        .await
        .expect("client reconnects and subscribes again");
    assert!(first.has_node, "the node is sent again on the new stream");
    assert_eq!(first.node_id, NODE_ID);
    assert_eq!(first.version_info, "1", "resumes from the accepted version");
    assert!(first.response_nonce.is_empty());
    let eds = server
        .wait_for(|record| record.type_url == ENDPOINT_TYPE, WAIT)
        .await
        .expect("EDS is re-requested on the new stream");
    assert_eq!(eds.resource_names, ["a"]);
    assert_eq!(eds.version_info, "1");

    server.set_resources("2", basic_snapshot());
    server
        .wait_for(is_ack(ROUTE_TYPE, "2"), WAIT)
        .await
        .expect("client applies v2 from the restarted server");
    for type_url in [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE] {
        assert_eq!(
            client.accepted(type_url).map(|(v, _)| v).as_deref(),
            Some("2")
        );
    }
    assert_eq!(server.connected_streams(), 1);
    client.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn stop_ends_the_client_while_connected_and_while_retrying() {
    let server = TestAdsServer::start().await;
    let connected = Client::start(server.address().to_string(), FakeSink::default());
    server
        .wait_for(|record| record.type_url == CLUSTER_TYPE, WAIT)
        .await
        .expect("client subscribes");
    connected.stop().await;

    let unreachable = Client::start(format!("127.0.0.1:{}", free_port()), FakeSink::default());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!*unreachable.synced.borrow());
    unreachable.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn store_wiring_nacks_an_undecodable_cluster_and_does_not_publish_it() {
    let server = TestAdsServer::start().await;
    server.set_resources(
        "1",
        vec![Any {
            type_url: CLUSTER_TYPE.to_string(),
            value: vec![0xff, 0xff, 0xff],
        }],
    );
    let store = Arc::new(Mutex::new(ResourceStore::new("outrigger")));
    let initial = store.lock().expect("store lock").snapshot();
    let (snapshots, snapshot_rx) = watch::channel(Arc::clone(&initial));
    let (synced, synced_rx) = watch::channel(false);
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_ads_store(
        settings(server.address().to_string()),
        store,
        snapshots,
        synced,
        stop.clone(),
    ));
    let nack = server
        .wait_for(
            |record| record.is_nack() && record.type_url == CLUSTER_TYPE,
            WAIT,
        )
        .await
        .expect("the store rejects the cluster");
    assert_eq!(nack.version_info, "");
    assert!(
        nack.error_detail
            .as_deref()
            .is_some_and(|reason| !reason.is_empty()),
        "{nack:?}"
    );
    // Other types (an empty LDS) may be accepted and published; the cluster never is.
    assert!(
        snapshot_rx.borrow().clusters.is_empty(),
        "the rejected cluster was not published"
    );
    assert!(!*synced_rx.borrow());
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the ADS client stops promptly")
        .expect("the ADS client task does not panic")
        .expect("valid ADS settings");
    server.stop().await;
}
