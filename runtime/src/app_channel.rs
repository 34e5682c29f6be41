//! Calls from the sidecar into the app (`--app-port`): HTTP, or gRPC `AppCallback`, with
//! `APP_API_TOKEN`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use dapr::dapr::proto::runtime::v1::app_callback_client::AppCallbackClient;
use tokio_util::sync::CancellationToken;

/// How often the app port is probed while waiting for the app to start.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// The app's endpoint, in the protocol it speaks.
#[derive(Clone)]
pub enum AppChannel {
    Http(HttpChannel),
    Grpc(GrpcChannel),
}

impl AppChannel {
    pub fn new(port: u16, protocol: crate::config::AppProtocol, token: Option<String>) -> Self {
        match protocol {
            crate::config::AppProtocol::Http => Self::Http(HttpChannel::new(port, token)),
            crate::config::AppProtocol::Grpc => Self::Grpc(GrpcChannel::new(port, token)),
        }
    }

    /// Waits until the app accepts TCP connections; `false` if `stop` came first.
    pub async fn wait_until_reachable(&self, stop: &CancellationToken) -> bool {
        let address = match self {
            Self::Http(channel) => channel.address,
            Self::Grpc(channel) => channel.address,
        };
        wait_until_reachable(address, stop).await
    }
}

/// An app's `AppCallback` gRPC service on loopback.
#[derive(Clone)]
pub struct GrpcChannel {
    address: SocketAddr,
    client: AppCallbackClient<tonic::transport::Channel>,
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl GrpcChannel {
    pub fn new(port: u16, token: Option<String>) -> Self {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map(|endpoint| endpoint.tcp_nodelay(true).connect_lazy())
            .unwrap_or_else(|_| {
                tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy()
            });
        Self {
            address,
            client: AppCallbackClient::new(channel),
            token: token.and_then(|token| token.parse().ok()),
        }
    }

    /// The client, and a request carrying the app token.
    pub fn call<T>(
        &self,
        message: T,
    ) -> (
        AppCallbackClient<tonic::transport::Channel>,
        tonic::Request<T>,
    ) {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("dapr-api-token", token.clone());
        }
        (self.client.clone(), request)
    }
}

async fn wait_until_reachable(address: SocketAddr, stop: &CancellationToken) -> bool {
    let mut logged = false;
    loop {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            tracing::info!(app = %address, "the app is reachable");
            return true;
        }
        if !logged {
            tracing::info!(app = %address, "waiting for the app to listen before subscribing");
            logged = true;
        }
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
        }
    }
}

/// An app's HTTP endpoint on loopback.
#[derive(Clone)]
pub struct HttpChannel {
    address: SocketAddr,
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

/// The app's answer to a call.
#[derive(Debug)]
pub struct AppResponse {
    pub status: u16,
    pub body: Bytes,
}

impl HttpChannel {
    pub fn new(port: u16, token: Option<String>) -> Self {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            address,
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            token,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("dapr-api-token", token);
        }
        request
    }

    pub async fn get(&self, path: &str) -> Result<AppResponse, String> {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .map_err(|error| format!("GET {path} on the app: {error}"))?;
        Self::read(path, response).await
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: Bytes,
        headers: &[(String, String)],
    ) -> Result<AppResponse, String> {
        let mut request = self
            .request(reqwest::Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request
            .send()
            .await
            .map_err(|error| format!("POST {path} on the app: {error}"))?;
        Self::read(path, response).await
    }

    async fn read(path: &str, response: reqwest::Response) -> Result<AppResponse, String> {
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("reading the app's answer to {path}: {error}"))?;
        Ok(AppResponse { status, body })
    }
}
