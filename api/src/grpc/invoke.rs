//! gRPC `InvokeService`: the `InvokeRequest` becomes an HTTP-shaped mesh call (verb, path,
//! query, content type, body), and the answer becomes an `InvokeResponse` or a status.

use bytes::Bytes;
use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::common::v1::http_extension::Verb;
use dapr::dapr::proto::runtime::v1 as runtime;
use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use outrigger_mesh::invoke::{CallKind, DATA_TYPE_HEADER, OutboundBody};
use tonic::{Request, Response, Status};

use super::status::{code_of_http_status, to_status};
use crate::context::ApiContext;
use crate::error::ApiError;
use crate::invoke::Invocation;

pub async fn invoke_service(
    context: &ApiContext,
    request: Request<runtime::InvokeServiceRequest>,
) -> Result<Response<common::InvokeResponse>, Status> {
    let headers = headers_of(request.metadata());
    let source_ip = request.remote_addr().map(|address| address.ip());
    let request = request.into_inner();
    let message = request
        .message
        .ok_or_else(|| to_status(&ApiError::malformed("InvokeService: message is required")))?;
    if message.method.is_empty() {
        return Err(to_status(&ApiError::malformed(
            "InvokeService: message.method is required",
        )));
    }
    let extension = message.http_extension.unwrap_or_default();
    // Dapr sends POST when the caller sets no verb.
    let verb = match Verb::try_from(extension.verb).unwrap_or(Verb::None) {
        Verb::None => "POST",
        verb => verb.as_str_name(),
    };
    let method = Method::from_bytes(verb.as_bytes()).unwrap_or(Method::POST);
    let mut path_and_query = format!("/{}", message.method.trim_start_matches('/'));
    if !extension.querystring.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(extension.querystring.trim_start_matches('?'));
    }
    let data = message.data.unwrap_or_default();
    let mut headers = headers;
    if let Ok(value) = HeaderValue::from_str(&message.content_type)
        && !message.content_type.is_empty()
    {
        headers.insert(http::header::CONTENT_TYPE, value);
    }
    let response = context
        .invoke
        .invoke(Invocation {
            app_id: request.id,
            method,
            path_and_query,
            headers,
            data_type: HeaderValue::from_str(&data.type_url)
                .ok()
                .filter(|_| !data.type_url.is_empty()),
            body: OutboundBody::Buffered(Bytes::from(data.value)),
            kind: CallKind::Invoke,
            source_ip,
        })
        .await
        .map_err(|error| to_status(&error))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|error| Status::unavailable(format!("reading the invocation answer: {error}")))?
        .to_bytes();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    if !parts.status.is_success() {
        // A gRPC app's own status travels in grpc-status / grpc-message; an HTTP app's
        // status is mapped as Dapr maps it.
        if let Some(code) = header("grpc-status").and_then(|code| code.parse::<i32>().ok()) {
            return Err(Status::new(
                tonic::Code::from(code),
                header("grpc-message").unwrap_or_default(),
            ));
        }
        return Err(Status::new(
            code_of_http_status(parts.status.as_u16()),
            format!(
                "the app answered {}: {}",
                parts.status,
                String::from_utf8_lossy(&body)
            ),
        ));
    }
    Ok(Response::new(common::InvokeResponse {
        data: Some(prost_types::Any {
            type_url: header(DATA_TYPE_HEADER).unwrap_or_default(),
            value: body.to_vec(),
        }),
        content_type: header(http::header::CONTENT_TYPE.as_str()).unwrap_or_default(),
    }))
}

/// The call's metadata as HTTP headers, minus gRPC framing and binary entries.
fn headers_of(metadata: &tonic::metadata::MetadataMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for entry in metadata.iter() {
        if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = entry {
            let name = key.as_str();
            if name.starts_with("grpc-") || matches!(name, "content-type" | "te" | "user-agent") {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value.as_encoded_bytes()),
            ) {
                headers.append(name, value);
            }
        }
    }
    headers
}
