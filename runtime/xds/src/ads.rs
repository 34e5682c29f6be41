//! The ADS client: one state-of-the-world `StreamAggregatedResources` stream to a control plane
//! (istiod or any xDS server), subscribing to clusters, endpoints, listeners and routes, ACKing
//! accepted updates and NACKing rejected ones, and reconnecting with backoff.
//!
//! Protocol notes (the parts a control plane relies on):
//! - The first request of every stream carries the [`Node`]; later requests do not.
//! - CDS and LDS are wildcard subscriptions (empty `resource_names`). EDS and RDS subscribe to
//!   the names the sink derives from the accepted clusters and listeners; a request is sent for
//!   them once there are names, and again whenever the names change (SotW: every request
//!   carries the complete set of names; a type whose names all went away is re-requested with
//!   an empty list).
//! - An ACK repeats the response's `version_info` and `nonce`; a NACK carries the last accepted
//!   version of that type, the response's nonce and an `error_detail` with the reason.
//! - After a reconnect every request carries the last accepted version of its type, so the
//!   control plane can skip sending resources the client already has.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{Node, node::UserAgentVersionType};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use envoy_types::pb::google::rpc::Status;
use outrigger_mesh::model::MeshSnapshot;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::store::{
    CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, ResourceStore, TYPE_ORDER,
};

/// How long one connection attempt to the control plane may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on the ADS connection, so a control plane that vanished without closing the
/// connection is noticed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Large route and cluster sets exceed tonic's 4 MiB default.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// `google.rpc.Code.INVALID_ARGUMENT`, the code of a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

/// Where the control plane is and who this sidecar is.
#[derive(Debug, Clone)]
pub struct AdsSettings {
    /// `host:port` of the ADS server (plaintext gRPC).
    pub address: String,
    pub node: NodeIdentity,
    /// First delay before reconnecting after a failure; doubled per failure up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl AdsSettings {
    /// Settings with the default backoff (100 ms doubling up to 5 s).
    pub fn new(address: impl Into<String>, node: NodeIdentity) -> Self {
        Self {
            address: address.into(),
            node,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The identity presented to the control plane, in the form istiod expects of a sidecar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeIdentity {
    pub app_id: String,
    pub namespace: String,
    /// The pod (or host) IP that the mesh reaches this sidecar on.
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    /// The service cluster; the app id when not given.
    pub cluster: Option<String>,
}

impl NodeIdentity {
    /// Istio's sidecar node id: `sidecar~<ip>~<app-id>.<namespace>~<namespace>.svc.cluster.local`.
    pub fn node_id(&self) -> String {
        format!(
            "sidecar~{ip}~{app}.{ns}~{ns}.svc.cluster.local",
            ip = self.ip,
            app = self.app_id,
            ns = self.namespace
        )
    }

    /// The `Node` sent on the first request of each stream, with the metadata istiod reads
    /// (`NAMESPACE`, `LABELS`, `NAME`).
    pub fn to_node(&self) -> Node {
        let labels = Struct {
            fields: self
                .labels
                .iter()
                .map(|(key, value)| (key.clone(), string_value(value)))
                .collect(),
        };
        let metadata = Struct {
            fields: HashMap::from([
                ("NAMESPACE".to_string(), string_value(&self.namespace)),
                ("NAME".to_string(), string_value(&self.app_id)),
                (
                    "LABELS".to_string(),
                    Value {
                        kind: Some(Kind::StructValue(labels)),
                    },
                ),
            ]),
        };
        Node {
            id: self.node_id(),
            cluster: self.cluster.clone().unwrap_or_else(|| self.app_id.clone()),
            metadata: Some(metadata),
            user_agent_name: "outrigger".to_string(),
            user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion(
                env!("CARGO_PKG_VERSION").to_string(),
            )),
            ..Node::default()
        }
    }
}

fn string_value(value: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(value.to_string())),
    }
}

/// Where the ADS client puts what it receives: validates and keeps each type's resources.
pub trait ResourceSink: Send + 'static {
    /// A state-of-the-world update of one type; `Err` is the reason sent in the NACK.
    fn apply(&mut self, type_url: &str, version: &str, resources: &[Any]) -> Result<(), String>;
    /// The names to subscribe to for a type (EDS, RDS); empty for wildcard types and when
    /// nothing references the type yet.
    fn resource_names(&self, type_url: &str) -> Vec<String>;
    /// Called after every accepted update (before the ACK is sent).
    fn on_accepted(&mut self) {}
}

impl ResourceSink for ResourceStore {
    fn apply(&mut self, type_url: &str, version: &str, resources: &[Any]) -> Result<(), String> {
        ResourceStore::apply(self, type_url, version, resources).map_err(|error| error.to_string())
    }

    fn resource_names(&self, type_url: &str) -> Vec<String> {
        ResourceStore::resource_names(self, type_url)
    }
}

/// A shared sink, so its owner can inspect it while the client runs.
impl<S: ResourceSink> ResourceSink for Arc<Mutex<S>> {
    fn apply(&mut self, type_url: &str, version: &str, resources: &[Any]) -> Result<(), String> {
        lock(self).apply(type_url, version, resources)
    }

    fn resource_names(&self, type_url: &str) -> Vec<String> {
        lock(self).resource_names(type_url)
    }

    fn on_accepted(&mut self) {
        lock(self).on_accepted();
    }
}

/// A poisoned lock only means another thread panicked mid-update; the store's updates are
/// all-or-nothing, so its state is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why the ADS client cannot run at all (connection failures are retried, not returned).
#[derive(Debug, thiserror::Error)]
pub enum AdsError {
    #[error("invalid ADS address {address:?}: {message}")]
    InvalidAddress { address: String, message: String },
}

/// The real wiring: applies updates to the shared [`ResourceStore`] and publishes its snapshot
/// after every accepted update.
pub async fn run_ads_store(
    settings: AdsSettings,
    store: Arc<Mutex<ResourceStore>>,
    snapshots: watch::Sender<Arc<MeshSnapshot>>,
    synced: watch::Sender<bool>,
    stop: CancellationToken,
) -> Result<(), AdsError> {
    let sink = PublishingStore { store, snapshots };
    run_ads(settings, sink, synced, stop).await
}

struct PublishingStore {
    store: Arc<Mutex<ResourceStore>>,
    snapshots: watch::Sender<Arc<MeshSnapshot>>,
}

impl ResourceSink for PublishingStore {
    fn apply(&mut self, type_url: &str, version: &str, resources: &[Any]) -> Result<(), String> {
        ResourceSink::apply(&mut *lock(&self.store), type_url, version, resources)
    }

    fn resource_names(&self, type_url: &str) -> Vec<String> {
        lock(&self.store).resource_names(type_url)
    }

    fn on_accepted(&mut self) {
        let snapshot = lock(&self.store).snapshot();
        self.snapshots.send_replace(snapshot);
    }
}

/// Runs the ADS client until `stop` is cancelled, reconnecting with exponential backoff.
///
/// `synced` becomes `true` once CDS and LDS have each had an accepted response, and so has
/// every one of EDS and RDS that was subscribed to (had names requested) at that point. It
/// never goes back to `false`: after a disconnect the last accepted configuration keeps
/// serving.
pub async fn run_ads<S: ResourceSink>(
    settings: AdsSettings,
    sink: S,
    synced: watch::Sender<bool>,
    stop: CancellationToken,
) -> Result<(), AdsError> {
    let endpoint = endpoint(&settings.address)?;
    let mut client = AdsClient {
        node: settings.node.to_node(),
        sink,
        synced,
        types: TYPE_ORDER
            .iter()
            .map(|type_url| (type_url.to_string(), TypeState::default()))
            .collect(),
    };
    let mut backoff = Backoff::new(settings.initial_backoff, settings.max_backoff);
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            outcome = client.session(&endpoint, &settings.address, &mut backoff) => outcome,
        };
        match outcome {
            SessionEnd::ConnectFailed(reason) => {
                warn!(address = %settings.address, %reason, "cannot connect to the ADS server");
            }
            SessionEnd::Disconnected(reason) => {
                warn!(address = %settings.address, %reason, "ADS stream ended");
            }
        }
        let delay = backoff.next_delay();
        debug!(?delay, "reconnecting to the ADS server after a delay");
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

fn endpoint(address: &str) -> Result<Endpoint, AdsError> {
    let invalid = |message: String| AdsError::InvalidAddress {
        address: address.to_string(),
        message,
    };
    if address.is_empty() {
        return Err(invalid("empty".to_string()));
    }
    Ok(Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| invalid(error.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT))
}

/// Why a session ended; either way the client reconnects.
enum SessionEnd {
    ConnectFailed(String),
    Disconnected(String),
}

/// What the client knows of one resource type; survives reconnects.
#[derive(Debug, Default)]
struct TypeState {
    /// The last accepted `version_info` ("" before any).
    accepted_version: String,
    /// Whether any response of this type was accepted (for `synced`).
    ever_accepted: bool,
    /// The nonce of the last response of this type on the current stream.
    nonce: String,
    /// The names last requested (always empty for wildcard types).
    names: Vec<String>,
    /// Whether a request for this type was sent on the current stream.
    requested: bool,
}

struct AdsClient<S> {
    node: Node,
    sink: S,
    synced: watch::Sender<bool>,
    types: BTreeMap<String, TypeState>,
}

impl<S: ResourceSink> AdsClient<S> {
    /// One connection and stream: subscribes, then handles responses until the stream ends.
    async fn session(
        &mut self,
        endpoint: &Endpoint,
        address: &str,
        backoff: &mut Backoff,
    ) -> SessionEnd {
        let channel: Channel = match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await
        {
            Ok(Ok(channel)) => channel,
            Ok(Err(error)) => return SessionEnd::ConnectFailed(error_chain(&error)),
            Err(_) => return SessionEnd::ConnectFailed("connect timed out".to_string()),
        };
        let mut grpc = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        let (requests, outgoing) = mpsc::unbounded_channel();
        let mut stream = Stream {
            requests,
            node: Some(self.node.clone()),
        };
        self.subscribe_all(&mut stream);
        let response = grpc
            .stream_aggregated_resources(UnboundedReceiverStream::new(outgoing))
            .await;
        let mut responses = match response {
            Ok(response) => response.into_inner(),
            Err(status) => return SessionEnd::ConnectFailed(status_text(&status)),
        };
        info!(%address, node = %self.node.id, "ADS stream open");
        loop {
            match responses.message().await {
                Ok(Some(response)) => {
                    // A response proves the control plane works; later failures start over
                    // from the shortest delay.
                    backoff.reset();
                    self.handle(&mut stream, response);
                }
                Ok(None) => return SessionEnd::Disconnected("closed by the server".to_string()),
                Err(status) => return SessionEnd::Disconnected(status_text(&status)),
            }
        }
    }

    /// The opening requests of a stream: every type in [`TYPE_ORDER`], with the last accepted
    /// version; EDS and RDS only when there are names to ask for.
    fn subscribe_all(&mut self, stream: &mut Stream) {
        for state in self.types.values_mut() {
            state.nonce.clear();
            state.names.clear();
            state.requested = false;
        }
        for type_url in TYPE_ORDER {
            if is_wildcard(type_url) {
                self.request(stream, type_url, Vec::new());
            } else {
                let names = self.sink.resource_names(type_url);
                if !names.is_empty() {
                    self.request(stream, type_url, names);
                }
            }
        }
    }

    /// Sends a subscription request for a type (not an ACK: it carries the last nonce of the
    /// type, if any, and the last accepted version).
    fn request(&mut self, stream: &mut Stream, type_url: &str, names: Vec<String>) {
        let state = self.types.entry(type_url.to_string()).or_default();
        state.names = names;
        state.requested = true;
        self.send_request(stream, type_url);
    }

    /// Sends the current subscription of a type.
    fn send_request(&self, stream: &mut Stream, type_url: &str) {
        let Some(state) = self.types.get(type_url) else {
            return;
        };
        stream.send(DiscoveryRequest {
            version_info: state.accepted_version.clone(),
            resource_names: state.names.clone(),
            type_url: type_url.to_string(),
            response_nonce: state.nonce.clone(),
            ..DiscoveryRequest::default()
        });
    }

    fn handle(&mut self, stream: &mut Stream, response: DiscoveryResponse) {
        let DiscoveryResponse {
            version_info,
            resources,
            type_url,
            nonce,
            ..
        } = response;
        let outcome = self.sink.apply(&type_url, &version_info, &resources);
        let state = self.types.entry(type_url.clone()).or_default();
        state.nonce = nonce.clone();
        match outcome {
            Ok(()) => {
                state.accepted_version = version_info.clone();
                state.ever_accepted = true;
                self.sink.on_accepted();
                // Subscriptions and `synced` are updated before the ACK goes out, so whoever
                // sees the ACK sees their effect.
                let resubscribe = self.follow_name_changes();
                self.update_synced();
                debug!(%type_url, version = %version_info, %nonce, resources = resources.len(), "ACK");
                let names = self
                    .types
                    .get(&type_url)
                    .map(|state| state.names.clone())
                    .unwrap_or_default();
                stream.send(DiscoveryRequest {
                    version_info,
                    resource_names: names,
                    type_url,
                    response_nonce: nonce,
                    ..DiscoveryRequest::default()
                });
                for type_url in resubscribe {
                    self.send_request(stream, type_url);
                }
            }
            Err(reason) => {
                warn!(%type_url, version = %version_info, %nonce, %reason, "NACK: rejected xDS update");
                stream.send(DiscoveryRequest {
                    version_info: state.accepted_version.clone(),
                    resource_names: state.names.clone(),
                    type_url,
                    response_nonce: nonce,
                    error_detail: Some(Status {
                        code: INVALID_ARGUMENT,
                        message: reason,
                        details: Vec::new(),
                    }),
                    ..DiscoveryRequest::default()
                });
            }
        }
    }

    /// An accepted update may change which endpoints and route configurations are referenced;
    /// SotW re-requests the type with the complete new set of names. Updates the subscriptions
    /// and returns the types whose request must be sent.
    fn follow_name_changes(&mut self) -> Vec<&'static str> {
        let mut changed = Vec::new();
        for type_url in [ENDPOINT_TYPE, ROUTE_TYPE] {
            let names = self.sink.resource_names(type_url);
            let state = self.types.entry(type_url.to_string()).or_default();
            let unchanged = if state.requested {
                state.names == names
            } else {
                names.is_empty()
            };
            if !unchanged {
                debug!(%type_url, ?names, "subscription changed");
                state.names = names;
                state.requested = true;
                changed.push(type_url);
            }
        }
        changed
    }

    fn update_synced(&mut self) {
        if *self.synced.borrow() {
            return;
        }
        let all_accepted = TYPE_ORDER.iter().all(|type_url| {
            self.types.get(*type_url).is_some_and(|state| {
                let subscribed = is_wildcard(type_url) || !state.names.is_empty();
                !subscribed || state.ever_accepted
            })
        });
        if all_accepted {
            info!("ADS synced: clusters, endpoints, listeners and routes received");
            self.synced.send_replace(true);
        }
    }
}

fn is_wildcard(type_url: &str) -> bool {
    type_url == CLUSTER_TYPE || type_url == LISTENER_TYPE
}

/// The request half of the current stream; the node goes on its first request only.
struct Stream {
    requests: mpsc::UnboundedSender<DiscoveryRequest>,
    node: Option<Node>,
}

impl Stream {
    fn send(&mut self, mut request: DiscoveryRequest) {
        request.node = self.node.take();
        // A closed channel means the stream is gone; the read side notices and reconnects.
        let _ = self.requests.send(request);
    }
}

fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Exponential backoff with jitter, so many sidecars do not reconnect in lockstep after a
/// control plane restart.
struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        Self {
            initial,
            max,
            current: initial,
        }
    }

    fn reset(&mut self) {
        self.current = self.initial;
    }

    /// A delay between half and all of the current step; the step then doubles.
    fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = step / 2;
        half + half.mul_f64(jitter_fraction())
    }
}

/// A fraction in [0, 1) that differs between processes and calls; not cryptographic, only
/// to spread reconnects.
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    let bits = RandomState::new().hash_one(nanos);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_has_istio_sidecar_form() {
        let identity = NodeIdentity {
            app_id: "orders".to_string(),
            namespace: "shop".to_string(),
            ip: "10.0.0.7".to_string(),
            labels: BTreeMap::from([("app".to_string(), "orders".to_string())]),
            cluster: None,
        };
        let node = identity.to_node();
        assert_eq!(
            node.id,
            "sidecar~10.0.0.7~orders.shop~shop.svc.cluster.local"
        );
        assert_eq!(node.cluster, "orders");
        assert_eq!(node.user_agent_name, "outrigger");
        let metadata = node.metadata.expect("metadata");
        assert_eq!(
            metadata
                .fields
                .get("NAMESPACE")
                .and_then(|v| v.kind.clone()),
            Some(Kind::StringValue("shop".to_string()))
        );
        assert_eq!(
            metadata.fields.get("NAME").and_then(|v| v.kind.clone()),
            Some(Kind::StringValue("orders".to_string()))
        );
        let Some(Kind::StructValue(labels)) =
            metadata.fields.get("LABELS").and_then(|v| v.kind.clone())
        else {
            panic!("LABELS is a struct");
        };
        assert_eq!(
            labels.fields.get("app").and_then(|v| v.kind.clone()),
            Some(Kind::StringValue("orders".to_string()))
        );
        let explicit = NodeIdentity {
            cluster: Some("orders-v2".to_string()),
            ..identity
        };
        assert_eq!(explicit.to_node().cluster, "orders-v2");
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        let steps = [100, 200, 400, 400, 400];
        for (delay, step) in delays.iter().zip(steps) {
            let step = Duration::from_millis(step);
            assert!(
                *delay >= step / 2 && *delay <= step,
                "{delay:?} not within {step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn an_empty_or_malformed_address_is_an_error() {
        assert!(endpoint("").is_err());
        assert!(endpoint("bad host:1").is_err());
        assert!(endpoint("127.0.0.1:15010").is_ok());
    }
}
