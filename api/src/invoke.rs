//! Service invocation, protocol-neutral: what both servers hand to the mesh and get back.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response};
use outrigger_mesh::invoke::{
    APP_ID_HEADER, CALLER_APP_ID_HEADER, CallKind, DATA_TYPE_HEADER, InvokeError, Invoker,
    OutboundBody, OutboundRequest, is_internal, remove_headers,
};
use outrigger_mesh::transport::MeshBody;

use crate::error::ApiError;

/// One invocation as a server decoded it.
pub struct Invocation {
    pub app_id: String,
    pub method: Method,
    /// Path and query as the target app should see them; starts with `/`.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: OutboundBody,
    pub kind: CallKind,
    /// The `google.protobuf.Any` type URL of gRPC invocation data, carried to the callee.
    pub data_type: Option<HeaderValue>,
    /// The calling app's address on the API port (Envoy's downstream remote address).
    pub source_ip: Option<IpAddr>,
}

/// Sends invocations through the mesh as this app.
#[derive(Clone)]
pub struct InvokeApi {
    invoker: Arc<Invoker>,
    caller: HeaderValue,
}

impl InvokeApi {
    pub fn new(invoker: Arc<Invoker>, caller_app_id: &str) -> Self {
        Self {
            invoker,
            caller: HeaderValue::from_str(caller_app_id)
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        }
    }

    pub async fn invoke(&self, invocation: Invocation) -> Result<Response<MeshBody>, ApiError> {
        if invocation.app_id.is_empty() {
            return Err(ApiError::malformed(
                "failed getting app id: the app id is empty",
            ));
        }
        let mut headers = invocation.headers;
        // The caller's token is for this sidecar only; the callee's sidecar sends the app its own.
        for name in ["dapr-api-token", APP_ID_HEADER] {
            headers.remove(name);
        }
        remove_headers(&mut headers, is_internal);
        headers.insert(
            HeaderName::from_static(CALLER_APP_ID_HEADER),
            self.caller.clone(),
        );
        if let Some(data_type) = invocation.data_type {
            headers.insert(HeaderName::from_static(DATA_TYPE_HEADER), data_type);
        }
        self.invoker
            .invoke(OutboundRequest {
                app_id: invocation.app_id,
                method: invocation.method,
                path_and_query: invocation.path_and_query,
                headers,
                body: invocation.body,
                kind: invocation.kind,
                source_ip: invocation.source_ip,
            })
            .await
            .map_err(ApiError::from)
    }
}

impl From<InvokeError> for ApiError {
    fn from(error: InvokeError) -> Self {
        ApiError::Invoke {
            status: error.status.as_u16(),
            flag: error.flag.code(),
            message: error.message,
        }
    }
}
