//! An in-process ADS (state-of-the-world) control plane for tests: serves a snapshot set by the
//! test, records every request (subscriptions, ACKs, NACKs) and can be stopped and restarted on
//! the same port.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// Packs an Envoy message into an `Any` with its type URL.
pub fn any<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// The type URLs the server pushes, in push order (CDS, EDS, LDS, RDS).
pub fn type_order() -> [String; 4] {
    [
        Cluster::type_url(),
        ClusterLoadAssignment::type_url(),
        Listener::type_url(),
        RouteConfiguration::type_url(),
    ]
}

/// One request received from a client: a subscription (empty `response_nonce`), an ACK or a
/// NACK (`error_detail` set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRecord {
    pub type_url: String,
    pub version_info: String,
    pub response_nonce: String,
    /// The NACK reason (`error_detail.message`).
    pub error_detail: Option<String>,
    /// The node id of the stream (sent on its first request).
    pub node_id: String,
    pub resource_names: Vec<String>,
    /// Whether this request carried the `Node` itself.
    pub has_node: bool,
}

impl AckRecord {
    /// An ACK: answers a response and reports no error.
    pub fn is_ack(&self) -> bool {
        !self.response_nonce.is_empty() && self.error_detail.is_none()
    }

    /// A NACK: answers a response with an error.
    pub fn is_nack(&self) -> bool {
        self.error_detail.is_some()
    }
}

/// One response pushed to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentResponse {
    pub type_url: String,
    pub version_info: String,
    pub nonce: String,
    /// The names of the resources in the response.
    pub resource_names: Vec<String>,
}

/// [`TestAdsServer::wait_for`] gave up; carries every request seen, for the failure message.
#[derive(Debug)]
pub struct WaitTimeout {
    pub seen: Vec<AckRecord>,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "no matching request; requests seen:")?;
        for record in &self.seen {
            writeln!(f, "  {record:?}")?;
        }
        Ok(())
    }
}

impl std::error::Error for WaitTimeout {}

/// An in-process ADS server on a loopback port.
pub struct TestAdsServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// Nonces are unique across every server in the process, so a restarted server never repeats
/// one.
static NEXT_NONCE: AtomicU64 = AtomicU64::new(1);

/// Lock order: `state` may be held while updating `requests`/`responses`, never the reverse
/// (`wait_for` predicates run under the watch locks and must not need `state`).
struct Shared {
    state: Mutex<ServerState>,
    requests: watch::Sender<Vec<AckRecord>>,
    responses: watch::Sender<Vec<SentResponse>>,
}

#[derive(Default)]
struct ServerState {
    snapshot: Option<Snapshot>,
    streams: HashMap<u64, ClientStream>,
    next_stream_id: u64,
}

struct Snapshot {
    version: String,
    /// Per type URL: (resource name, resource).
    resources: BTreeMap<String, Vec<(String, Any)>>,
}

type ResponseSender = mpsc::UnboundedSender<Result<DiscoveryResponse, Status>>;

struct ClientStream {
    sender: ResponseSender,
    node_id: String,
    /// Subscribed types and their requested names.
    subscriptions: HashMap<String, Vec<String>>,
}

impl TestAdsServer {
    /// Starts on a free loopback port.
    pub async fn start() -> TestAdsServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test ADS server to 127.0.0.1:0");
        Self::serve(listener)
    }

    /// Starts on a given loopback port, e.g. to restart after [`TestAdsServer::stop`]; retries
    /// briefly while the old socket is released.
    pub async fn start_on(port: u16) -> TestAdsServer {
        let mut attempts = 0;
        loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => return Self::serve(listener),
                Err(_) if attempts < 40 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("bind the test ADS server to 127.0.0.1:{port}: {error}"),
            }
        }
    }

    fn serve(listener: TcpListener) -> TestAdsServer {
        let address = listener
            .local_addr()
            .expect("the test ADS listener has an address");
        let shared = Arc::new(Shared {
            state: Mutex::new(ServerState::default()),
            requests: watch::channel(Vec::new()).0,
            responses: watch::channel(Vec::new()).0,
        });
        let shutdown = CancellationToken::new();
        let service = AdsService {
            shared: Arc::clone(&shared),
            shutdown: shutdown.clone(),
        };
        let signal = shutdown.clone();
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AggregatedDiscoveryServiceServer::new(service))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    signal.cancelled_owned(),
                )
                .await;
        });
        TestAdsServer {
            address,
            shared,
            shutdown,
            task,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Replaces the whole snapshot (all types) and pushes it to every connected client, type by
    /// type in CDS, EDS, LDS, RDS order; a client gets only the types it subscribed to, and of
    /// EDS and RDS only the names it asked for.
    pub fn set_resources(&self, version: &str, resources: Vec<Any>) {
        let mut by_type: BTreeMap<String, Vec<(String, Any)>> = BTreeMap::new();
        for type_url in type_order() {
            by_type.entry(type_url).or_default();
        }
        for resource in resources {
            let name = resource_name(&resource);
            by_type
                .entry(resource.type_url.clone())
                .or_default()
                .push((name, resource));
        }
        let mut state = self.shared.lock();
        state.snapshot = Some(Snapshot {
            version: version.to_string(),
            resources: by_type,
        });
        let ids: Vec<u64> = state.streams.keys().copied().collect();
        for id in ids {
            for type_url in push_order(&state) {
                state.push(&self.shared.responses, id, &type_url);
            }
        }
    }

    /// Every request received so far, oldest first.
    pub fn acks(&self) -> Vec<AckRecord> {
        self.shared.requests.borrow().clone()
    }

    /// Every response sent so far, oldest first.
    pub fn responses(&self) -> Vec<SentResponse> {
        self.shared.responses.borrow().clone()
    }

    /// Waits until a response matching `predicate` has been sent (including ones sent before
    /// the call) and returns the first such response.
    pub async fn wait_for_response(
        &self,
        predicate: impl Fn(&SentResponse) -> bool,
        timeout: Duration,
    ) -> Result<SentResponse, WaitTimeout> {
        let mut responses = self.shared.responses.subscribe();
        let found = tokio::time::timeout(
            timeout,
            responses.wait_for(|sent| sent.iter().any(&predicate)),
        )
        .await;
        match found {
            Ok(Ok(sent)) => Ok(sent
                .iter()
                .find(|response| predicate(response))
                .cloned()
                .expect("wait_for_response saw a matching response")),
            _ => Err(WaitTimeout { seen: self.acks() }),
        }
    }

    /// Waits until a request matching `predicate` has been received (including ones received
    /// before the call) and returns the first such request.
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&AckRecord) -> bool,
        timeout: Duration,
    ) -> Result<AckRecord, WaitTimeout> {
        let mut requests = self.shared.requests.subscribe();
        let found = tokio::time::timeout(
            timeout,
            requests.wait_for(|records| records.iter().any(&predicate)),
        )
        .await;
        match found {
            Ok(Ok(records)) => Ok(records
                .iter()
                .find(|record| predicate(record))
                .cloned()
                .expect("wait_for saw a matching request")),
            _ => Err(WaitTimeout { seen: self.acks() }),
        }
    }

    /// Clients with an open stream.
    pub fn connected_streams(&self) -> usize {
        self.shared.lock().streams.len()
    }

    /// Ends every stream with `UNAVAILABLE` and closes the listener and the connections, as a
    /// control plane going away would.
    pub async fn stop(self) {
        {
            let mut state = self.shared.lock();
            for (_, stream) in state.streams.drain() {
                let _ = stream
                    .sender
                    .send(Err(Status::unavailable("test ADS server stopping")));
            }
        }
        self.shutdown.cancel();
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, record: AckRecord) {
        self.requests.send_modify(|records| records.push(record));
    }
}

/// The four known types in order, then any other type in the snapshot.
fn push_order(state: &ServerState) -> Vec<String> {
    let mut order: Vec<String> = type_order().into_iter().collect();
    if let Some(snapshot) = &state.snapshot {
        for type_url in snapshot.resources.keys() {
            if !order.contains(type_url) {
                order.push(type_url.clone());
            }
        }
    }
    order
}

impl ServerState {
    /// Sends a stream the current resources of one type, if it subscribed to the type.
    fn push(&self, sent_log: &watch::Sender<Vec<SentResponse>>, stream_id: u64, type_url: &str) {
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        let Some(stream) = self.streams.get(&stream_id) else {
            return;
        };
        let Some(names) = stream.subscriptions.get(type_url) else {
            return;
        };
        let wildcard =
            names.iter().any(|name| name == "*") || (names.is_empty() && !is_named_type(type_url));
        let selected: Vec<&(String, Any)> = snapshot
            .resources
            .get(type_url)
            .map(|resources| {
                resources
                    .iter()
                    .filter(|(name, _)| wildcard || names.contains(name))
                    .collect()
            })
            .unwrap_or_default();
        let nonce = NEXT_NONCE.fetch_add(1, Ordering::Relaxed).to_string();
        let response = DiscoveryResponse {
            version_info: snapshot.version.clone(),
            resources: selected.iter().map(|(_, any)| any.clone()).collect(),
            type_url: type_url.to_string(),
            nonce: nonce.clone(),
            ..DiscoveryResponse::default()
        };
        let sent = SentResponse {
            type_url: type_url.to_string(),
            version_info: snapshot.version.clone(),
            nonce,
            resource_names: selected.iter().map(|(name, _)| name.clone()).collect(),
        };
        if stream.sender.send(Ok(response)).is_ok() {
            sent_log.send_modify(|log| log.push(sent));
        }
    }
}

/// EDS and RDS are subscribed to by name; CDS and LDS by wildcard.
fn is_named_type(type_url: &str) -> bool {
    type_url == ClusterLoadAssignment::type_url() || type_url == RouteConfiguration::type_url()
}

/// The xDS resource name: `name`, or `cluster_name` of a `ClusterLoadAssignment`; "" for
/// other types or undecodable resources.
fn resource_name(resource: &Any) -> String {
    let value = resource.value.as_slice();
    let type_url = resource.type_url.as_str();
    let name = if type_url == Cluster::type_url() {
        Cluster::decode(value).map(|cluster| cluster.name)
    } else if type_url == ClusterLoadAssignment::type_url() {
        ClusterLoadAssignment::decode(value).map(|assignment| assignment.cluster_name)
    } else if type_url == Listener::type_url() {
        Listener::decode(value).map(|listener| listener.name)
    } else if type_url == RouteConfiguration::type_url() {
        RouteConfiguration::decode(value).map(|route| route.name)
    } else {
        return String::new();
    };
    name.unwrap_or_default()
}

struct AdsService {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let mut incoming = request.into_inner();
        let (sender, receiver) = mpsc::unbounded_channel();
        let stream_id = {
            let mut state = self.shared.lock();
            let id = state.next_stream_id;
            state.next_stream_id += 1;
            state.streams.insert(
                id,
                ClientStream {
                    sender,
                    node_id: String::new(),
                    subscriptions: HashMap::new(),
                },
            );
            id
        };
        let shared = Arc::clone(&self.shared);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => break,
                    message = incoming.message() => message,
                };
                match message {
                    Ok(Some(request)) => handle_request(&shared, stream_id, request),
                    Ok(None) | Err(_) => break,
                }
            }
            shared.lock().streams.remove(&stream_id);
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            receiver,
        ))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "the test ADS server speaks state of the world only",
        ))
    }
}

/// Records a request and, when it opens or changes a subscription, pushes that type.
fn handle_request(shared: &Shared, stream_id: u64, request: DiscoveryRequest) {
    let mut state = shared.lock();
    let Some(stream) = state.streams.get_mut(&stream_id) else {
        return;
    };
    if let Some(node) = &request.node {
        stream.node_id = node.id.clone();
    }
    let record = AckRecord {
        type_url: request.type_url.clone(),
        version_info: request.version_info.clone(),
        response_nonce: request.response_nonce.clone(),
        error_detail: request
            .error_detail
            .as_ref()
            .map(|status| status.message.clone()),
        node_id: stream.node_id.clone(),
        resource_names: request.resource_names.clone(),
        has_node: request.node.is_some(),
    };
    let previous = stream
        .subscriptions
        .insert(request.type_url.clone(), request.resource_names.clone());
    let changed = previous.as_ref() != Some(&request.resource_names);
    if changed {
        state.push(&shared.responses, stream_id, &request.type_url);
    }
    drop(state);
    shared.record(record);
}
