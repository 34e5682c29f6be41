//! gRPC proxy mode: a call to any service other than Dapr's own that carries `dapr-app-id`
//! metadata is forwarded, streaming both ways, to that app's gRPC server through the mesh.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use outrigger_mesh::invoke::{APP_ID_HEADER, CallKind, OutboundBody};
use outrigger_mesh::transport::box_body;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;

use super::status::to_status;
use crate::context::ApiContext;
use crate::error::ApiError;
use crate::invoke::Invocation;

/// The path prefix of the services this sidecar serves itself.
const OWN_SERVICES: &[&str] = &["/dapr.proto.runtime.v1.Dapr/", "/grpc.health.v1.Health/"];

/// Wraps the gRPC server's routes with proxy mode.
#[derive(Clone)]
pub struct ProxyLayer {
    context: ApiContext,
}

impl ProxyLayer {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

impl<S> tower::Layer<S> for ProxyLayer {
    type Service = ProxyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProxyService {
            inner,
            context: self.context.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ProxyService<S> {
    inner: S,
    context: ApiContext,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<Request<Body>> for ProxyService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let proxied = !OWN_SERVICES.iter().any(|own| path.starts_with(own))
            && request.headers().contains_key(APP_ID_HEADER);
        if !proxied {
            return Box::pin(self.inner.call(request));
        }
        let context = self.context.clone();
        Box::pin(async move { Ok(proxy(context, request).await) })
    }
}

async fn proxy(context: ApiContext, request: Request<Body>) -> Response<Body> {
    let presented = request
        .headers()
        .get("dapr-api-token")
        .map(|value| value.as_bytes());
    if !context.token_matches(presented) {
        return to_status(&ApiError::Unauthenticated).into_http();
    }
    let (parts, body) = request.into_parts();
    let app_id = parts
        .headers
        .get(APP_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_string();
    let invocation = Invocation {
        app_id,
        method: Method::POST,
        path_and_query,
        headers: parts.headers,
        body: OutboundBody::Streaming(box_body(body)),
        kind: CallKind::GrpcProxy,
        data_type: None,
        source_ip: parts
            .extensions
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .map(|address| address.ip()),
    };
    match context.invoke.invoke(invocation).await {
        Ok(response) => response.map(Body::new),
        Err(error) => to_status(&error).into_http(),
    }
}
