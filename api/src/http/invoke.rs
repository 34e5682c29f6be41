//! `/v1.0/invoke/{app-id}/method/{method-path}` and HTTP proxy mode (`dapr-app-id` header).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use outrigger_mesh::invoke::{APP_ID_HEADER, CallKind, OutboundBody, RESPONSE_FLAGS_HEADER};

use super::body::read_limited;
use crate::context::ApiContext;
use crate::error::ApiError;
use crate::invoke::Invocation;

const INVOKE_PREFIX: &str = "/v1.0/invoke/";

/// `/v1.0/invoke/{app-id}/method/{method-path}`, every verb.
pub async fn invoke(State(context): State<ApiContext>, request: Request) -> Response {
    // The raw path, not axum's decoded capture: an encoded `%2F` must stay inside the method
    // path so it cannot act as a separator when the route is matched.
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("", |path| path.as_str())
        .to_string();
    let Some((app_id, method_path)) = split_invoke_path(&path_and_query) else {
        return ApiError::malformed(format!(
            "malformed invocation path {:?}: expected /v1.0/invoke/{{app-id}}/method/{{method}}",
            request.uri().path()
        ))
        .into_response();
    };
    forward(context, app_id, method_path, request).await
}

/// Any other path with a `dapr-app-id` header is forwarded as is (Dapr's HTTP proxy mode).
pub async fn proxy_or_not_found(State(context): State<ApiContext>, request: Request) -> Response {
    let Some(app_id) = request
        .headers()
        .get(APP_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
    else {
        return super::system::not_found(request.uri().clone())
            .await
            .into_response();
    };
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_string();
    forward(context, app_id, path_and_query, request).await
}

async fn forward(
    context: ApiContext,
    app_id: String,
    path_and_query: String,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    // Present when the server was started with connect info (the sidecar's HTTP API is).
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    let bytes = match read_limited(&parts.headers, body, context.max_body_size).await {
        Ok(bytes) => bytes,
        Err(error) => return error.into_response(),
    };
    let invocation = Invocation {
        app_id,
        method: parts.method,
        path_and_query,
        headers: parts.headers,
        body: OutboundBody::Buffered(bytes),
        kind: CallKind::Invoke,
        data_type: None,
        source_ip,
    };
    match context.invoke.invoke(invocation).await {
        Ok(response) => response.map(Body::new),
        Err(error) => {
            let flag = match &error {
                ApiError::Invoke { flag, .. } => Some(*flag),
                _ => None,
            };
            let mut response = error.into_response();
            if let Some(flag) = flag {
                response
                    .headers_mut()
                    .insert(RESPONSE_FLAGS_HEADER, http::HeaderValue::from_static(flag));
            }
            response
        }
    }
}

/// Splits `/v1.0/invoke/{app-id}/method/{rest}` into the app id and `/{rest}` (query kept).
fn split_invoke_path(path_and_query: &str) -> Option<(String, String)> {
    let rest = path_and_query.strip_prefix(INVOKE_PREFIX)?;
    let (app_id, after) = rest.split_once('/')?;
    let method = after.strip_prefix("method")?;
    if app_id.is_empty() || !method.starts_with('/') || method.len() < 2 || method.starts_with("/?")
    {
        return None;
    }
    Some((app_id.to_string(), method.to_string()))
}

#[cfg(test)]
mod tests {
    use super::split_invoke_path;

    #[test]
    fn splits_app_id_and_method_path() {
        assert_eq!(
            split_invoke_path("/v1.0/invoke/reviews/method/api/v1/items?x=1"),
            Some(("reviews".into(), "/api/v1/items?x=1".into()))
        );
        assert_eq!(
            split_invoke_path("/v1.0/invoke/reviews.default/method/a%2Fb"),
            Some(("reviews.default".into(), "/a%2Fb".into()))
        );
        assert_eq!(split_invoke_path("/v1.0/invoke/reviews/method/"), None);
        assert_eq!(split_invoke_path("/v1.0/invoke/reviews/method"), None);
        assert_eq!(split_invoke_path("/v1.0/invoke/reviews/methods/x"), None);
        assert_eq!(split_invoke_path("/v1.0/invoke//method/x"), None);
        assert_eq!(split_invoke_path("/v1.0/invoke/reviews"), None);
    }
}
