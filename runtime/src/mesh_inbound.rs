//! The mesh port (`--mesh-port`): invocations from peer sidecars over HTTP/2, delivered to
//! this sidecar's app over HTTP, as `AppCallback.OnInvoke`, or forwarded as raw gRPC.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use dapr::dapr::proto::common::v1::{HttpExtension, InvokeRequest, http_extension::Verb};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use outrigger_mesh::invoke::{
    APP_ID_HEADER, CALL_KIND_HEADER, CallKind, DATA_TYPE_HEADER, RESPONSE_FLAGS_HEADER,
    is_hop_by_hop, is_internal, remove_headers,
};
use outrigger_mesh::transport::{MeshBody, box_body, full_body};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app_channel::GrpcChannel;
use crate::config::AppProtocol;

/// The app behind this sidecar, as invocations reach it.
pub struct InboundApp {
    pub app_id: String,
    pub port: Option<u16>,
    pub protocol: AppProtocol,
    /// `APP_API_TOKEN`, sent to the app as `dapr-api-token`.
    pub token: Option<HeaderValue>,
    http1: Client<HttpConnector, MeshBody>,
    http2: Client<HttpConnector, MeshBody>,
    grpc: Option<GrpcChannel>,
}

impl InboundApp {
    pub fn new(
        app_id: String,
        port: Option<u16>,
        protocol: AppProtocol,
        token: Option<String>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http1 = Client::builder(TokioExecutor::new()).build(connector.clone());
        let http2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        let grpc = match (port, protocol) {
            (Some(port), AppProtocol::Grpc) => Some(GrpcChannel::new(port, token.clone())),
            _ => None,
        };
        Self {
            app_id,
            port,
            protocol,
            token: token.and_then(|token| HeaderValue::from_str(&token).ok()),
            http1,
            http2,
            grpc,
        }
    }
}

/// Serves the mesh port until `stop`, then lets open requests finish.
pub async fn serve(listener: TcpListener, app: Arc<InboundApp>, stop: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("mesh port accept failed: {error}");
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "TCP_NODELAY not set: {error}");
        }
        let app = Arc::clone(&app);
        let service = hyper::service::service_fn(move |request| {
            let app = Arc::clone(&app);
            async move { Ok::<_, std::convert::Infallible>(handle(&app, peer, request).await) }
        });
        let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, "mesh connection ended: {error}");
            }
        });
    }
    graceful.shutdown().await;
}

async fn handle(
    app: &InboundApp,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<MeshBody> {
    if let Some(target) = request.headers().get(APP_ID_HEADER)
        && target.as_bytes() != app.app_id.as_bytes()
        && !is_qualified_self(target.as_bytes(), &app.app_id)
    {
        return error_response(
            StatusCode::NOT_FOUND,
            None,
            &format!(
                "failed to invoke, id: {}: this sidecar serves app {}",
                String::from_utf8_lossy(target.as_bytes()),
                app.app_id
            ),
        );
    }
    let kind = request
        .headers()
        .get(CALL_KIND_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(CallKind::parse)
        .unwrap_or(CallKind::Invoke);
    let Some(port) = app.port else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            &format!(
                "failed to invoke, id: {}: the app has no --app-port, so it cannot be invoked",
                app.app_id
            ),
        );
    };
    tracing::trace!(%peer, ?kind, path = %request.uri(), "inbound invocation");
    match (kind, app.protocol) {
        (CallKind::GrpcProxy, _) => forward(app, &app.http2, port, request).await,
        (CallKind::Invoke, AppProtocol::Http) => forward(app, &app.http1, port, request).await,
        (CallKind::Invoke, AppProtocol::Grpc) => on_invoke(app, request).await,
    }
}

/// `app.namespace` names this app too (Dapr's namespaced app ids).
fn is_qualified_self(target: &[u8], app_id: &str) -> bool {
    target
        .strip_prefix(app_id.as_bytes())
        .is_some_and(|rest| rest.first() == Some(&b'.'))
}

/// Passes the request through to the app and its answer back, streaming both bodies.
async fn forward(
    app: &InboundApp,
    client: &Client<HttpConnector, MeshBody>,
    port: u16,
    request: Request<Incoming>,
) -> Response<MeshBody> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let uri = match format!("http://127.0.0.1:{port}{path}").parse::<http::Uri>() {
        Ok(uri) => uri,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                None,
                &format!("invalid invocation path {path:?}: {error}"),
            );
        }
    };
    let mut outbound = Request::new(box_body(body));
    *outbound.method_mut() = parts.method;
    *outbound.uri_mut() = uri;
    copy_app_headers(&parts.headers, outbound.headers_mut(), app.token.as_ref());
    // The caller addresses the app by its id; any other authority is a route's
    // `host_rewrite_literal`, which the app must see as its Host (as Envoy forwards it).
    if let Some(authority) = parts.uri.authority()
        && authority.as_str() != app.app_id
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        outbound.headers_mut().insert(http::header::HOST, host);
    }
    if parts
        .headers
        .get(http::header::TE)
        .is_some_and(|te| te == "trailers")
    {
        outbound
            .headers_mut()
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    match client.request(outbound).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            remove_headers(&mut parts.headers, is_hop_by_hop);
            Response::from_parts(parts, box_body(body))
        }
        Err(error) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("UF"),
            &format!(
                "failed to invoke, id: {}: the app did not answer on port {port}: {error}",
                app.app_id
            ),
        ),
    }
}

/// A mesh invocation for a gRPC app becomes `AppCallback.OnInvoke`.
async fn on_invoke(app: &InboundApp, request: Request<Incoming>) -> Response<MeshBody> {
    let Some(channel) = &app.grpc else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "no gRPC app channel",
        );
    };
    let (parts, body) = request.into_parts();
    let data = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                None,
                &format!("reading the invocation body: {error}"),
            );
        }
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let verb = Verb::from_str_name(parts.method.as_str()).unwrap_or(Verb::None);
    let message = InvokeRequest {
        method: parts.uri.path().trim_start_matches('/').to_string(),
        data: Some(prost_types::Any {
            type_url: header(DATA_TYPE_HEADER),
            value: data.to_vec(),
        }),
        content_type: header(http::header::CONTENT_TYPE.as_str()),
        http_extension: Some(HttpExtension {
            verb: verb as i32,
            querystring: parts.uri.query().unwrap_or_default().to_string(),
        }),
    };
    let (mut client, mut grpc_request) = channel.call(message);
    for (name, value) in &parts.headers {
        if forwards_as_metadata(name)
            && let Ok(key) = tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes())
            && let Ok(value) = tonic::metadata::MetadataValue::try_from(value.as_bytes())
        {
            grpc_request.metadata_mut().insert(key, value);
        }
    }
    match client.on_invoke(grpc_request).await {
        Ok(response) => {
            let answer = response.into_inner();
            let data = answer.data.unwrap_or_default();
            let mut response = Response::new(full_body(Bytes::from(data.value)));
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(&answer.content_type)
                && !answer.content_type.is_empty()
            {
                headers.insert(http::header::CONTENT_TYPE, value);
            }
            if let Ok(value) = HeaderValue::from_str(&data.type_url)
                && !data.type_url.is_empty()
            {
                headers.insert(DATA_TYPE_HEADER, value);
            }
            response
        }
        Err(status) => {
            let mut response = error_response(
                http_status_of(status.code()),
                None,
                &format!("failed to invoke, id: {}: {}", app.app_id, status.message()),
            );
            let headers = response.headers_mut();
            headers.insert("grpc-status", HeaderValue::from(status.code() as i32));
            if let Ok(value) = HeaderValue::from_str(status.message()) {
                headers.insert("grpc-message", value);
            }
            response
        }
    }
}

/// Headers that become gRPC metadata for `OnInvoke`: not pseudo, hop-by-hop or content framing.
fn forwards_as_metadata(name: &HeaderName) -> bool {
    !is_hop_by_hop(name)
        && !is_internal(name)
        && !matches!(
            name.as_str(),
            "content-type" | "content-length" | "dapr-api-token"
        )
}

/// Copies what the app should see: no hop-by-hop or internal headers, the caller's
/// `dapr-api-token` replaced by this app's `APP_API_TOKEN`.
fn copy_app_headers(from: &HeaderMap, to: &mut HeaderMap, token: Option<&HeaderValue>) {
    for (name, value) in from {
        if !is_hop_by_hop(name) && !is_internal(name) && name.as_str() != "dapr-api-token" {
            to.append(name.clone(), value.clone());
        }
    }
    if let Some(token) = token {
        to.insert("dapr-api-token", token.clone());
    }
}

/// Dapr's JSON error body, with Envoy's response flags when the mesh produced the answer.
pub fn error_response(
    status: StatusCode,
    flags: Option<&str>,
    message: &str,
) -> Response<MeshBody> {
    let body = serde_json::json!({ "errorCode": "ERR_DIRECT_INVOKE", "message": message });
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(flags) = flags.and_then(|flags| HeaderValue::from_str(flags).ok()) {
        response.headers_mut().insert(RESPONSE_FLAGS_HEADER, flags);
    }
    response
}

/// gRPC code → HTTP status, as grpc-gateway (and Dapr) map them.
fn http_status_of(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
