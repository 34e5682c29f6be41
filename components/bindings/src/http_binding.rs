//! `bindings.http`: calls `url` (plus the request's `path` metadata) with the operation as
//! the HTTP method; other request metadata become headers.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use outrigger_components::bindings::{
    BindingError, InvokeRequest, InvokeResponse, OutputBinding, check_operation,
};
use outrigger_components::{ComponentMetadata, InitError, MetadataError};

const OPERATIONS: [&str; 9] = [
    "create", "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

/// The `bindings.http` component.
pub struct HttpBinding {
    url: String,
    client: reqwest::Client,
    error_if_not_2xx: bool,
}

impl HttpBinding {
    pub fn from_metadata(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        let url = metadata.required("url")?.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(InitError::Metadata(MetadataError::Invalid {
                field: "url".into(),
                expected: "an http:// URL".into(),
                got: url,
            }));
        }
        let timeout = metadata.duration_or("responseTimeout", Duration::from_secs(60))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|error| InitError::Connect(error.to_string()))?;
        Ok(Self {
            url,
            client,
            error_if_not_2xx: metadata.bool_or("errorIfNot2XX", true)?,
        })
    }
}

#[async_trait]
impl OutputBinding for HttpBinding {
    fn operations(&self) -> Vec<String> {
        OPERATIONS
            .iter()
            .map(|operation| operation.to_string())
            .collect()
    }

    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, BindingError> {
        check_operation(&request.operation, &OPERATIONS)?;
        let method_name = if request.operation == "create" {
            "POST"
        } else {
            &request.operation.to_ascii_uppercase()
        };
        let method = reqwest::Method::from_bytes(method_name.as_bytes())
            .map_err(|error| BindingError::InvalidRequest(error.to_string()))?;
        let path = request
            .metadata
            .get("path")
            .map(String::as_str)
            .unwrap_or("");
        let url = if path.is_empty() || path.starts_with('/') {
            format!("{}{path}", self.url)
        } else {
            format!("{}/{path}", self.url)
        };
        let mut call = self.client.request(method, &url);
        for (name, value) in request
            .metadata
            .iter()
            .filter(|(name, _)| name.as_str() != "path")
        {
            call = call.header(name.as_str(), value.as_str());
        }
        if !request.data.is_empty() {
            call = call.body(request.data);
        }
        let response = call.send().await.map_err(|error| {
            BindingError::Backend(format!("{} {url}: {error}", request.operation))
        })?;
        let status = response.status();
        let mut metadata: HashMap<String, String> = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|value| (name.to_string(), value.to_string()))
            })
            .collect();
        metadata.insert("statusCode".into(), status.as_u16().to_string());
        metadata.insert("status".into(), status.to_string());
        let data: Bytes = response.bytes().await.map_err(|error| {
            BindingError::Backend(format!("reading the answer from {url}: {error}"))
        })?;
        if self.error_if_not_2xx && !status.is_success() {
            return Err(BindingError::Backend(format!(
                "received status code {} from {url}: {}",
                status.as_u16(),
                String::from_utf8_lossy(&data)
            )));
        }
        Ok(InvokeResponse { data, metadata })
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::any;

    use super::*;

    #[tokio::test]
    async fn methods_paths_headers_and_errors() {
        let app = Router::new().route(
            "/{*path}",
            any(
                |method: axum::http::Method,
                 headers: axum::http::HeaderMap,
                 uri: axum::http::Uri,
                 body: String| async move {
                    if uri.path() == "/missing" {
                        return (axum::http::StatusCode::NOT_FOUND, "nope".to_string());
                    }
                    let header = headers
                        .get("x-team")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    (
                        axum::http::StatusCode::OK,
                        format!("{method} {} {header} {body}", uri.path()),
                    )
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        let binding =
            HttpBinding::from_metadata(&ComponentMetadata::from_pairs([("url", url.as_str())]))
                .expect("valid");
        let call = |operation: &str, path: &str, data: &'static str| InvokeRequest {
            operation: operation.into(),
            data: Bytes::from_static(data.as_bytes()),
            metadata: HashMap::from([
                ("path".to_string(), path.to_string()),
                ("x-team".to_string(), "blue".to_string()),
            ]),
        };
        let created = binding
            .invoke(call("create", "/orders", "{\"id\":1}"))
            .await
            .expect("create");
        assert_eq!(created.data, Bytes::from("POST /orders blue {\"id\":1}"));
        assert_eq!(
            created.metadata.get("statusCode").map(String::as_str),
            Some("200")
        );
        let fetched = binding
            .invoke(call("get", "items/7", ""))
            .await
            .expect("get");
        assert_eq!(fetched.data, Bytes::from("GET /items/7 blue "));
        let missing = binding
            .invoke(call("get", "/missing", ""))
            .await
            .expect_err("404");
        assert!(missing.to_string().contains("404"), "{missing}");
        let unsupported = binding
            .invoke(call("launch", "/", ""))
            .await
            .expect_err("unknown operation");
        assert!(
            unsupported
                .to_string()
                .contains("supported operations: create, get"),
            "{unsupported}"
        );
        assert!(
            HttpBinding::from_metadata(&ComponentMetadata::from_pairs([("url", "ftp://x")]))
                .is_err()
        );
        outrigger_conformance::bindings::run_output_suite(
            &binding,
            call("post", "/conformance", "x"),
        )
        .await;
    }
}
