//! A small Rust client for Outrigger's Dapr-compatible gRPC API: typed state calls with the API token.

use std::collections::HashMap;

use bytes::Bytes;
pub use dapr::dapr::proto::common::v1 as common;
pub use dapr::dapr::proto::runtime::v1 as runtime;
use dapr::dapr::proto::runtime::v1::dapr_client::DaprClient;
pub use prost_types;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the API token is not valid header text")]
    InvalidToken,
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
}

/// Adds `dapr-api-token` to every call when a token is configured.
#[derive(Clone)]
pub struct ApiToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for ApiToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("dapr-api-token", token.clone());
        }
        Ok(request)
    }
}

/// A value read from a state store.
#[derive(Debug, Clone, PartialEq)]
pub struct StateValue {
    pub data: Bytes,
    pub etag: Option<String>,
}

#[derive(Clone)]
pub struct OutriggerClient {
    inner: DaprClient<InterceptedService<Channel, ApiToken>>,
}

impl OutriggerClient {
    /// Connects to a sidecar's gRPC API, e.g. `http://127.0.0.1:50001`.
    pub async fn connect(address: &str, api_token: Option<&str>) -> Result<Self, ClientError> {
        let token = api_token
            .map(|token| token.parse().map_err(|_| ClientError::InvalidToken))
            .transpose()?;
        let channel = Channel::from_shared(address.to_string())
            .map_err(|_| ClientError::InvalidToken)?
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                address: address.to_string(),
                source,
            })?;
        Ok(Self {
            inner: DaprClient::with_interceptor(channel, ApiToken(token)),
        })
    }

    /// The generated Dapr client, for calls this wrapper does not cover.
    pub fn raw(&mut self) -> &mut DaprClient<InterceptedService<Channel, ApiToken>> {
        &mut self.inner
    }

    /// `None` when the key does not exist.
    pub async fn get_state(
        &mut self,
        store: &str,
        key: &str,
    ) -> Result<Option<StateValue>, ClientError> {
        let response = self
            .inner
            .get_state(runtime::GetStateRequest {
                store_name: store.to_string(),
                key: key.to_string(),
                consistency: 0,
                metadata: HashMap::new(),
            })
            .await?
            .into_inner();
        if response.data.is_empty() && response.etag.is_empty() {
            return Ok(None);
        }
        Ok(Some(StateValue {
            data: Bytes::from(response.data),
            etag: Some(response.etag).filter(|etag| !etag.is_empty()),
        }))
    }

    /// Saves one value; with `etag`, only if it still matches.
    pub async fn save_state(
        &mut self,
        store: &str,
        key: &str,
        value: impl Into<Bytes>,
        etag: Option<&str>,
    ) -> Result<(), ClientError> {
        self.inner
            .save_state(runtime::SaveStateRequest {
                store_name: store.to_string(),
                states: vec![common::StateItem {
                    key: key.to_string(),
                    value: value.into().to_vec(),
                    etag: etag.map(|value| common::Etag {
                        value: value.to_string(),
                    }),
                    metadata: HashMap::new(),
                    options: None,
                }],
            })
            .await?;
        Ok(())
    }

    pub async fn delete_state(
        &mut self,
        store: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<(), ClientError> {
        self.inner
            .delete_state(runtime::DeleteStateRequest {
                store_name: store.to_string(),
                key: key.to_string(),
                etag: etag.map(|value| common::Etag {
                    value: value.to_string(),
                }),
                options: None,
                metadata: HashMap::new(),
            })
            .await?;
        Ok(())
    }

    pub async fn metadata(&mut self) -> Result<runtime::GetMetadataResponse, ClientError> {
        Ok(self
            .inner
            .get_metadata(runtime::GetMetadataRequest {})
            .await?
            .into_inner())
    }
}
