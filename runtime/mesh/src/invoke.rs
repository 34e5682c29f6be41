//! Outbound service invocation: app id → virtual host → route → cluster → endpoint, with the
//! route's fault injection, timeouts, retries, mirroring and header rewriting.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::{Cluster, ClusterManager, Outcome, Overflow};
use crate::flags::{ResponseFlag, ResponseFlags};
use crate::guarded_body::GuardedBody;
use crate::model::{
    ClusterTarget, FaultPolicy, FaultStatus, ForwardAction, MeshSnapshot, RetryPolicy, Route,
    RouteAction, RouteConfig, VirtualHost,
};
use crate::router::{self, RequestFacts};
use crate::stats::MeshStats;
use crate::transport::{
    Checkout, MeshBody, MeshTransport, PooledSender, SendError, box_body, full_body,
};

/// The header naming the target app on the mesh hop (Dapr's own name for it).
pub const APP_ID_HEADER: &str = "dapr-app-id";
/// The header naming the calling app.
pub const CALLER_APP_ID_HEADER: &str = "dapr-caller-app-id";
/// How the callee sidecar should hand the request to its app: `invoke` or `grpc-proxy`.
pub const CALL_KIND_HEADER: &str = "x-outrigger-call";
/// Carries the `google.protobuf.Any` type URL of invocation data across the mesh hop, so a
/// gRPC app receives the `Any` its caller sent, and the caller the `Any` the app answered.
pub const DATA_TYPE_HEADER: &str = "x-outrigger-data-type";
/// Set on answers the mesh produced itself, with Envoy's response flags.
pub const RESPONSE_FLAGS_HEADER: &str = "x-outrigger-response-flags";

/// How the callee sidecar delivers the request to its app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Dapr service invocation: HTTP to an HTTP app, `AppCallback.OnInvoke` to a gRPC app.
    Invoke,
    /// gRPC proxy mode: the HTTP/2 request is forwarded as is to the app's gRPC server.
    GrpcProxy,
}

impl CallKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invoke => "invoke",
            Self::GrpcProxy => "grpc-proxy",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "invoke" => Some(Self::Invoke),
            "grpc-proxy" => Some(Self::GrpcProxy),
            _ => None,
        }
    }
}

/// A request body: buffered bodies can be retried and mirrored, streaming ones cannot.
pub enum OutboundBody {
    Buffered(Bytes),
    Streaming(MeshBody),
}

/// One call to another app, as the API layer hands it over.
pub struct OutboundRequest {
    /// The target app id, as the caller wrote it (`reviews`, `reviews.default`).
    pub app_id: String,
    pub method: Method,
    /// Path and query as the target app should see them, e.g. `/orders/1?full=true`.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: OutboundBody,
    pub kind: CallKind,
    /// The calling client's address, for `hash_policy.connection_properties.source_ip`.
    pub source_ip: Option<IpAddr>,
}

/// A failure the mesh answers itself; the status and flag follow Envoy.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct InvokeError {
    pub status: StatusCode,
    pub flag: ResponseFlag,
    pub app_id: String,
    pub message: String,
}

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct InvokerSettings {
    /// The route configuration searched first (`--xds-route-config`, default `outrigger`).
    pub route_config: String,
    /// The caller's namespace, for `<app-id>.<namespace>.svc.cluster.local`.
    pub namespace: String,
}

/// Routes outbound invocations over the mesh. Cheap to share behind an `Arc`.
pub struct Invoker {
    settings: InvokerSettings,
    snapshots: watch::Receiver<Arc<MeshSnapshot>>,
    /// The snapshot whose clusters the cluster manager holds.
    applied: arc_swap::ArcSwap<MeshSnapshot>,
    applying: std::sync::Mutex<()>,
    clusters: Arc<ClusterManager>,
    transport: Arc<MeshTransport>,
    stats: Arc<MeshStats>,
}

impl std::fmt::Debug for Invoker {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Invoker")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What one try produced.
enum TryResult {
    Answered(Response<hyper::body::Incoming>),
    Failed(SendError),
    /// The cluster's `max_pending_requests` breaker is open: answered 503 UO, never retried
    /// (as in Envoy), not the endpoint's fault.
    Overflow(Overflow),
    TimedOut,
}

impl Invoker {
    pub fn new(
        settings: InvokerSettings,
        snapshots: watch::Receiver<Arc<MeshSnapshot>>,
        clusters: Arc<ClusterManager>,
        transport: Arc<MeshTransport>,
        stats: Arc<MeshStats>,
    ) -> Self {
        let current = Arc::clone(&snapshots.borrow());
        clusters.update(&current.clusters);
        Self {
            settings,
            snapshots,
            applied: arc_swap::ArcSwap::new(current),
            applying: std::sync::Mutex::new(()),
            clusters,
            transport,
            stats,
        }
    }

    /// The newest accepted snapshot, with the cluster manager brought up to it first, so a
    /// route is never served before its clusters exist (nor after an ACK with old routes).
    pub fn current_snapshot(&self) -> Arc<MeshSnapshot> {
        let newest = Arc::clone(&self.snapshots.borrow());
        if Arc::ptr_eq(&newest, &self.applied.load()) {
            return newest;
        }
        let _applying = self
            .applying
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !Arc::ptr_eq(&newest, &self.applied.load()) {
            self.clusters.update(&newest.clusters);
            // Connections to endpoints (or clusters) that are gone stop taking requests now,
            // and close when their last request ends, instead of counting against
            // `max_connections` until the peer closes them.
            self.transport.drain_all(|pool, address| {
                self.clusters
                    .get(pool)
                    .is_some_and(|cluster| cluster.has_endpoint(address))
            });
            self.applied.store(Arc::clone(&newest));
        }
        newest
    }

    pub fn stats(&self) -> &Arc<MeshStats> {
        &self.stats
    }

    /// Routes and sends one call; answers the mesh produces itself (direct responses,
    /// redirects, fault aborts) are `Ok` like upstream answers, failures are `Err`.
    pub async fn invoke(
        &self,
        request: OutboundRequest,
    ) -> Result<Response<MeshBody>, InvokeError> {
        let started = std::time::Instant::now();
        let app_id = request.app_id.clone();
        let method = request.method.clone();
        let path = request.path_and_query.clone();
        let mut flags = ResponseFlags::default();
        let mut cluster_name = None;
        let result = self
            .route_and_send(request, &mut flags, &mut cluster_name)
            .await;
        let status = match &result {
            Ok(response) => response.status(),
            Err(error) => {
                flags.add(error.flag);
                error.status
            }
        };
        self.stats
            .record_request(cluster_name.as_deref(), status.as_u16(), &flags);
        let elapsed_us = started.elapsed().as_micros();
        if flags.is_empty() {
            tracing::debug!(target: "access", app_id, %method, path, status = status.as_u16(), flags = %flags, cluster = cluster_name.as_deref().unwrap_or("-"), elapsed_us, "invoke");
        } else {
            tracing::info!(target: "access", app_id, %method, path, status = status.as_u16(), flags = %flags, cluster = cluster_name.as_deref().unwrap_or("-"), elapsed_us, "invoke");
        }
        result
    }

    async fn route_and_send(
        &self,
        request: OutboundRequest,
        flags: &mut ResponseFlags,
        cluster_name: &mut Option<String>,
    ) -> Result<Response<MeshBody>, InvokeError> {
        let mut request = request;
        // What `%…%` operators in added headers see of this request.
        let format_context = router::FormatContext {
            request_headers: None,
            source_ip: request.source_ip,
            start_time: std::time::SystemTime::now(),
        };
        // `:authority` matchers see the target app id, as a mesh client would address it.
        if let Ok(host) = HeaderValue::from_str(&request.app_id) {
            request.headers.insert(http::header::HOST, host);
        }
        let error = |status: StatusCode, flag: ResponseFlag, message: String| InvokeError {
            status,
            flag,
            app_id: request.app_id.clone(),
            message,
        };
        let (raw_path, query) = match request.path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (request.path_and_query.as_str(), None),
        };
        let path = router::normalize_path(raw_path).map_err(|cause| {
            error(
                StatusCode::BAD_REQUEST,
                ResponseFlag::DownstreamProtocolError,
                format!("invalid method path {raw_path:?}: {cause}"),
            )
        })?;
        // The app sees the path the route matched: normalised, with the query as sent.
        let normalized_path_and_query = match query {
            Some(query) => format!("{path}?{query}"),
            None => path.clone(),
        };
        let snapshot = self.current_snapshot();
        let Some((route_config, vhost)) = router::resolve_app_id(
            &snapshot,
            &self.settings.route_config,
            &request.app_id,
            &self.settings.namespace,
        ) else {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ResponseFlag::NoRoute,
                format!(
                    "failed to invoke, id: {}: no virtual host serves this app id",
                    request.app_id
                ),
            ));
        };
        let facts = RequestFacts {
            method: &request.method,
            path: &path,
            query,
            headers: &request.headers,
        };
        let Some(route) = router::match_route(vhost, &facts) else {
            return Err(error(
                StatusCode::NOT_FOUND,
                ResponseFlag::NoRoute,
                format!(
                    "failed to invoke, id: {}: no route of virtual host {} matches {} {path}",
                    request.app_id, vhost.name, request.method
                ),
            ));
        };

        if let Some(fault) = router::effective_fault(route, vhost)
            && let Some(answer) = inject_fault(fault, flags).await
        {
            return Ok(answer);
        }

        let action = match &route.action {
            RouteAction::DirectResponse { status, body } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
                let mut response = Response::new(full_body(body.clone().unwrap_or_default()));
                *response.status_mut() = status;
                apply_response_layers(
                    &mut response,
                    route,
                    vhost,
                    route_config,
                    None,
                    &format_context,
                );
                return Ok(response);
            }
            RouteAction::Redirect(redirect) => {
                let location = router::redirect_location(
                    redirect,
                    "http",
                    &request.app_id,
                    &path,
                    query,
                    &route.matcher,
                );
                let status =
                    StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
                let mut response = Response::new(full_body(Bytes::new()));
                *response.status_mut() = status;
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(http::header::LOCATION, value);
                }
                return Ok(response);
            }
            RouteAction::Forward(action) => action,
        };

        let (target, weighted_headers) = match &action.target {
            ClusterTarget::Single(name) => (name.as_str(), None),
            ClusterTarget::Weighted(choices) => {
                let choice = router::choose_weighted(choices, rand::random());
                (choice.name.as_str(), Some(&choice.headers))
            }
        };
        *cluster_name = Some(target.to_string());
        let Some(cluster) = self.clusters.get(target) else {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                ResponseFlag::NoClusterFound,
                format!(
                    "failed to invoke, id: {}: cluster {target} is not configured",
                    request.app_id
                ),
            ));
        };

        let hash = router::request_hash(&action.hash_policy, &request.headers, request.source_ip);
        let mut headers = std::mem::take(&mut request.headers);
        let mut layers = Vec::with_capacity(4);
        layers.extend(weighted_headers);
        layers.extend([&route.headers, &vhost.headers, &route_config.headers]);
        router::apply_request_mutations(&mut headers, &layers, &format_context);
        let upstream_path =
            router::rewrite_path(action, &route.matcher, &normalized_path_and_query);
        let authority = action
            .host_rewrite
            .clone()
            .unwrap_or_else(|| request.app_id.clone());
        let uri = format!("http://{authority}{upstream_path}");
        let uri = http::Uri::try_from(uri.as_str()).map_err(|cause| {
            error(
                StatusCode::BAD_REQUEST,
                ResponseFlag::DownstreamProtocolError,
                format!("unusable upstream URI {uri:?}: {cause}"),
            )
        })?;
        let upstream = UpstreamRequest::new(
            request.method.clone(),
            uri,
            headers,
            &request.app_id,
            request.kind,
        );

        if let OutboundBody::Buffered(body) = &request.body {
            self.mirror(action, &upstream, body);
        }
        let retry_policy = action.retry_policy.as_ref().or(vhost.retry_policy.as_ref());
        let mut response = self
            .forward(
                &cluster,
                action,
                retry_policy,
                upstream,
                request.body,
                hash,
                flags,
            )
            .await?;
        apply_response_layers(
            &mut response,
            route,
            vhost,
            route_config,
            weighted_headers,
            &format_context,
        );
        Ok(response)
    }

    /// Sends to the cluster, retrying as the policy allows, within the route timeout.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        cluster: &Arc<Cluster>,
        action: &ForwardAction,
        retry_policy: Option<&RetryPolicy>,
        upstream: UpstreamRequest,
        body: OutboundBody,
        hash: Option<u64>,
        flags: &mut ResponseFlags,
    ) -> Result<Response<MeshBody>, InvokeError> {
        let app_id = upstream.app_id.clone();
        let error = |status: StatusCode, flag: ResponseFlag, message: String| InvokeError {
            status,
            flag,
            app_id: app_id.clone(),
            message,
        };
        let cluster_name = cluster.spec().name.clone();
        let request_permit = cluster.try_start_request().map_err(|overflow| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                ResponseFlag::UpstreamOverflow,
                format!("failed to invoke, id: {app_id}: {overflow}"),
            )
        })?;
        let deadline = action.timeout.map(|timeout| Instant::now() + timeout);
        let (buffered, mut streaming) = match body {
            OutboundBody::Buffered(bytes) => (Some(bytes), None),
            OutboundBody::Streaming(body) => (None, Some(body)),
        };
        // A streamed body can be sent once only, so it is never retried.
        let num_retries = match (&buffered, retry_policy) {
            (Some(_), Some(policy)) => policy.num_retries,
            _ => 0,
        };
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut attempt: u32 = 0;
        let mut retry_permit = None;
        loop {
            let Some(endpoint) = cluster.pick(hash, &tried) else {
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ResponseFlag::NoHealthyUpstream,
                    format!(
                        "failed to invoke, id: {app_id}: no healthy upstream in cluster {cluster_name}"
                    ),
                ));
            };
            tried.push(endpoint.address());
            let request_body = match (&buffered, streaming.take()) {
                (Some(bytes), _) => full_body(bytes.clone()),
                (None, Some(body)) => body,
                (None, None) => full_body(Bytes::new()),
            };
            let request = upstream.build(request_body, attempt);
            let per_try = retry_policy.and_then(|policy| policy.per_try_timeout);
            let try_deadline = earliest(deadline, per_try.map(|timeout| Instant::now() + timeout));
            let active = endpoint.start_request();
            let send = send_try(&self.transport, cluster, endpoint.address(), request);
            let result = match try_deadline {
                Some(at) => tokio::time::timeout_at(at, send)
                    .await
                    .unwrap_or(TryResult::TimedOut),
                None => send.await,
            };
            match &result {
                TryResult::Answered(response) if response.status().is_server_error() => {
                    endpoint.record(Outcome::Status(response.status().as_u16()));
                }
                TryResult::Answered(_) => endpoint.record(Outcome::Success),
                TryResult::Failed(_) | TryResult::TimedOut => {
                    endpoint.record(Outcome::LocalFailure);
                }
                TryResult::Overflow(_) => {}
            }

            let overall_expired = deadline.is_some_and(|at| Instant::now() >= at);
            let retryable = retry_policy.is_some_and(|policy| should_retry(policy, &result));
            if retryable && attempt < num_retries && !overall_expired {
                match cluster.try_start_retry() {
                    Ok(permit) => {
                        retry_permit = Some(permit);
                        attempt += 1;
                        let pause =
                            retry_policy.map_or(Duration::ZERO, |policy| backoff(policy, attempt));
                        let sleep_until = earliest(deadline, Some(Instant::now() + pause))
                            .unwrap_or_else(Instant::now);
                        tokio::time::sleep_until(sleep_until).await;
                        if deadline.is_some_and(|at| Instant::now() >= at) {
                            return Err(self.timeout_error(&app_id, &cluster_name, action));
                        }
                        continue;
                    }
                    Err(overflow) => {
                        tracing::debug!("retry not attempted: {overflow}");
                        flags.add(ResponseFlag::UpstreamOverflow);
                    }
                }
            } else if retryable && attempt > 0 && attempt >= num_retries {
                flags.add(ResponseFlag::UpstreamRetryLimitExceeded);
            }
            return match result {
                // The breaker slot, the endpoint's active count and the route deadline last
                // until the body is done, as in Envoy, not just until the headers arrive.
                TryResult::Answered(response) => Ok(response.map(|body| {
                    let guards: Vec<Box<dyn Send>> = vec![
                        Box::new(request_permit),
                        Box::new(retry_permit),
                        Box::new(active),
                    ];
                    box_body(GuardedBody::new(box_body(body), deadline, guards))
                })),
                TryResult::TimedOut => Err(self.timeout_error(&app_id, &cluster_name, action)),
                TryResult::Overflow(overflow) => Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ResponseFlag::UpstreamOverflow,
                    format!("failed to invoke, id: {app_id}: {overflow}"),
                )),
                TryResult::Failed(failure) => {
                    let flag = if failure.is_connect_failure() {
                        ResponseFlag::UpstreamConnectionFailure
                    } else {
                        ResponseFlag::UpstreamRemoteReset
                    };
                    Err(error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        flag,
                        format!(
                            "failed to invoke, id: {app_id}: upstream connect error or disconnect/reset before headers in cluster {cluster_name}: {failure}"
                        ),
                    ))
                }
            };
        }
    }

    fn timeout_error(&self, app_id: &str, cluster: &str, action: &ForwardAction) -> InvokeError {
        InvokeError {
            status: StatusCode::GATEWAY_TIMEOUT,
            flag: ResponseFlag::UpstreamRequestTimeout,
            app_id: app_id.to_string(),
            message: format!(
                "failed to invoke, id: {app_id}: upstream request timeout in cluster {cluster} (route timeout {})",
                action
                    .timeout
                    .map_or_else(|| "none".to_string(), |timeout| format!("{timeout:?}"))
            ),
        }
    }

    /// Sends copies to mirror clusters in the background; their answers are ignored. A copy
    /// goes through the mirror cluster's pool and circuit breakers like any request, within the
    /// route timeout; whatever becomes of it never touches the main request.
    fn mirror(&self, action: &ForwardAction, upstream: &UpstreamRequest, body: &Bytes) {
        for mirror in &action.mirrors {
            if rand::random_range(0..1_000_000) >= mirror.fraction_per_million {
                continue;
            }
            let Some(cluster) = self.clusters.get(&mirror.cluster) else {
                tracing::debug!(cluster = mirror.cluster, "mirror cluster is not configured");
                continue;
            };
            let Some(endpoint) = cluster.pick(None, &[]) else {
                continue;
            };
            let request = upstream.build(full_body(body.clone()), 0);
            let transport = Arc::clone(&self.transport);
            let timeout = action.timeout;
            tokio::spawn(async move {
                let _permit = match cluster.try_start_request() {
                    Ok(permit) => permit,
                    Err(overflow) => {
                        tracing::debug!("mirrored request not sent: {overflow}");
                        return;
                    }
                };
                let _active = endpoint.start_request();
                let send = send_try(&transport, &cluster, endpoint.address(), request);
                let result = match timeout {
                    Some(timeout) => tokio::time::timeout(timeout, send)
                        .await
                        .unwrap_or(TryResult::TimedOut),
                    None => send.await,
                };
                match result {
                    TryResult::Answered(_) => {}
                    TryResult::Failed(error) => {
                        tracing::debug!("mirrored request failed: {error}");
                    }
                    TryResult::Overflow(overflow) => {
                        tracing::debug!("mirrored request not sent: {overflow}");
                    }
                    TryResult::TimedOut => tracing::debug!("mirrored request timed out"),
                }
            });
        }
    }
}

/// One try on `address` over `cluster`'s connection pool. With a live connection the request
/// goes out at once, no circuit breaker involved. Otherwise it is a pending request
/// (`max_pending_requests`) until it has a connection: one another request is opening, or
/// one it opens itself (counted under `max_connections`, never refused by it), connect and
/// handshake within the cluster's `connect_timeout`.
async fn send_try(
    transport: &MeshTransport,
    cluster: &Cluster,
    address: SocketAddr,
    request: http::Request<MeshBody>,
) -> TryResult {
    let sender = match transport.ready_sender(cluster.name(), address) {
        Some(sender) => sender,
        None => match wait_for_connection(transport, cluster, address).await {
            Ok(sender) => sender,
            Err(Unusable::Overflow(overflow)) => return TryResult::Overflow(overflow),
            Err(Unusable::Failed(failure)) => return TryResult::Failed(failure),
        },
    };
    sender
        .send(request)
        .await
        .map_or_else(TryResult::Failed, TryResult::Answered)
}

/// Why a try got no connection.
enum Unusable {
    Overflow(Overflow),
    Failed(SendError),
}

/// The slow path of [`send_try`], holding a pending permit throughout.
async fn wait_for_connection(
    transport: &MeshTransport,
    cluster: &Cluster,
    address: SocketAddr,
) -> Result<PooledSender, Unusable> {
    let _pending = cluster.try_start_pending().map_err(Unusable::Overflow)?;
    match transport.checkout(cluster.name(), address).await {
        Checkout::Ready(sender) => Ok(sender),
        Checkout::Vacant(vacancy) => {
            // Connections to endpoints the cluster no longer has close once their requests
            // are done, so they stop counting against `max_connections`.
            transport.drain(cluster.name(), |address| cluster.has_endpoint(address));
            let permit = cluster.open_connection();
            vacancy
                .connect(cluster.spec().connect_timeout, permit)
                .await
                .map_err(Unusable::Failed)
        }
    }
}

/// The request to send to a peer sidecar, before its body: everything but the attempt count
/// is settled once, so a retry or a mirror copy only clones it.
struct UpstreamRequest {
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    app_id: String,
}

impl UpstreamRequest {
    fn new(
        method: Method,
        uri: http::Uri,
        mut headers: HeaderMap,
        app_id: &str,
        kind: CallKind,
    ) -> Self {
        remove_headers(&mut headers, is_hop_by_hop);
        // The one `te` value HTTP/2 allows; gRPC peers rely on it.
        if kind == CallKind::GrpcProxy {
            headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        }
        if let Ok(value) = HeaderValue::from_str(app_id) {
            headers.insert(HeaderName::from_static(APP_ID_HEADER), value);
        }
        headers.insert(
            HeaderName::from_static(CALL_KIND_HEADER),
            HeaderValue::from_static(kind.as_str()),
        );
        Self {
            method,
            uri,
            headers,
            app_id: app_id.to_string(),
        }
    }

    fn build(&self, body: MeshBody, attempt: u32) -> http::Request<MeshBody> {
        let mut request = http::Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = http::Version::HTTP_2;
        *request.headers_mut() = self.headers.clone();
        if attempt > 0 {
            request.headers_mut().insert(
                HeaderName::from_static("x-envoy-attempt-count"),
                HeaderValue::from(attempt + 1),
            );
        }
        request
    }
}

/// The prefix of the headers sidecars set for each other; an app's own are dropped.
pub const INTERNAL_HEADER_PREFIX: &str = "x-outrigger-";

/// A header only sidecars may set.
pub fn is_internal(name: &HeaderName) -> bool {
    name.as_str().starts_with(INTERNAL_HEADER_PREFIX)
}

/// Removes every header whose name `unwanted` selects.
pub fn remove_headers(headers: &mut HeaderMap, unwanted: impl Fn(&HeaderName) -> bool) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| unwanted(name))
        .cloned()
        .collect();
    for name in names {
        headers.remove(&name);
    }
}

/// Connection-level headers that must not be forwarded over HTTP/2 (RFC 9113 8.2.2).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "te"
    )
}

fn earliest(left: Option<Instant>, right: Option<Instant>) -> Option<Instant> {
    match (left, right) {
        (Some(left), Some(right)) => Some(left.min(right)),
        (left, right) => left.or(right),
    }
}

/// Envoy's retry conditions, for the outcome of one try.
fn should_retry(policy: &RetryPolicy, result: &TryResult) -> bool {
    let on = policy.retry_on;
    match result {
        TryResult::Answered(response) => {
            let status = response.status().as_u16();
            (on.server_error && status >= 500)
                || (on.gateway_error && matches!(status, 502..=504))
                || (on.retriable_status_codes && policy.retriable_status_codes.contains(&status))
        }
        TryResult::TimedOut => on.server_error || on.gateway_error || on.reset,
        TryResult::Overflow(_) => false,
        TryResult::Failed(SendError::Refused { .. }) => {
            on.refused_stream || on.server_error || on.reset
        }
        TryResult::Failed(failure) if failure.is_connect_failure() => {
            on.connect_failure || on.server_error || on.gateway_error || on.reset
        }
        TryResult::Failed(_) => on.server_error || on.reset,
    }
}

/// Envoy's jittered exponential back-off: retry `n` waits a random time in
/// `[0, base × (2ⁿ − 1))`, capped at the maximum.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let factor = (1u32 << attempt.min(16)).saturating_sub(1).max(1);
    let upper = policy
        .backoff_base
        .saturating_mul(factor)
        .min(policy.backoff_max);
    let upper_ms = u64::try_from(upper.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::random_range(0..upper_ms))
}

/// Applies the fault filter: a delay, then maybe an abort answered in place of the upstream.
async fn inject_fault(
    fault: &FaultPolicy,
    flags: &mut ResponseFlags,
) -> Option<Response<MeshBody>> {
    let (delay_draw, abort_draw) = (
        rand::random_range(0..1_000_000),
        rand::random_range(0..1_000_000),
    );
    let decision = router::decide_fault(fault, delay_draw, abort_draw);
    if let Some(delay) = decision.delay {
        flags.add(ResponseFlag::DelayInjected);
        tokio::time::sleep(delay).await;
    }
    let status = decision.abort?;
    flags.add(ResponseFlag::FaultInjected);
    let mut response = Response::new(full_body("fault filter abort"));
    match status {
        FaultStatus::Http(code) => {
            *response.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        }
        FaultStatus::Grpc(code) => {
            // A trailers-only gRPC answer: HTTP 200 with the status in the headers.
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from(code));
            headers.insert(
                "grpc-message",
                HeaderValue::from_static("fault filter abort"),
            );
        }
    }
    if let Ok(value) = HeaderValue::from_str(&flags.to_string()) {
        response.headers_mut().insert(RESPONSE_FLAGS_HEADER, value);
    }
    Some(response)
}

fn apply_response_layers(
    response: &mut Response<MeshBody>,
    route: &Route,
    vhost: &VirtualHost,
    route_config: &RouteConfig,
    weighted: Option<&crate::model::HeaderMutations>,
    context: &router::FormatContext<'_>,
) {
    let mut layers = Vec::with_capacity(4);
    layers.extend(weighted);
    layers.extend([&route.headers, &vhost.headers, &route_config.headers]);
    router::apply_response_mutations(response.headers_mut(), &layers, context);
}
