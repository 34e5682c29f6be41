//! Sidecar-to-sidecar transport: one pooled HTTP/2 connection per peer endpoint.
//!
//! How a byte stream to a peer is opened is behind [`MeshConnector`], so mutual TLS can wrap
//! the plain TCP connector without the router or the pool knowing.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type that crosses the mesh in both directions.
pub type MeshBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes` (empty when `bytes` is empty).
pub fn full_body(bytes: impl Into<Bytes>) -> MeshBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Any body whose error converts into [`BoxError`], boxed as a [`MeshBody`].
pub fn box_body<B>(body: B) -> MeshBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A connected byte stream to a peer.
pub trait MeshStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> MeshStream for T {}

pub type ConnectFuture = Pin<Box<dyn Future<Output = std::io::Result<Box<dyn MeshStream>>> + Send>>;

/// Opens byte streams to peer sidecars.
pub trait MeshConnector: Send + Sync + 'static {
    fn connect(&self, address: SocketAddr) -> ConnectFuture;
}

/// Plain TCP with `TCP_NODELAY` (small request/response frames must not wait for Nagle).
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpConnector;

impl MeshConnector for TcpConnector {
    fn connect(&self, address: SocketAddr) -> ConnectFuture {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as Box<dyn MeshStream>)
        })
    }
}

/// Why a request did not get a response from the peer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connection to {address} failed: {source}")]
    Connect {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to {address} timed out after {timeout:?}")]
    ConnectTimeout {
        address: SocketAddr,
        timeout: Duration,
    },
    #[error("{address} refused the stream")]
    Refused { address: SocketAddr },
    #[error("{address} reset the request: {source}")]
    Reset {
        address: SocketAddr,
        #[source]
        source: hyper::Error,
    },
}

impl SendError {
    /// The connection could not be made (Envoy's `UF`, retry condition `connect-failure`).
    pub fn is_connect_failure(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::ConnectTimeout { .. })
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<SendRequest<MeshBody>>>>;

/// Pooled HTTP/2 connections to peer mesh ports, one per endpoint, multiplexed.
pub struct MeshTransport {
    connector: Arc<dyn MeshConnector>,
    slots: Mutex<HashMap<SocketAddr, Slot>>,
}

impl std::fmt::Debug for MeshTransport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MeshTransport")
            .finish_non_exhaustive()
    }
}

impl MeshTransport {
    pub fn new(connector: Arc<dyn MeshConnector>) -> Self {
        Self {
            connector,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Plain TCP transport.
    pub fn tcp() -> Self {
        Self::new(Arc::new(TcpConnector))
    }

    /// Sends one request to `address`, connecting first when there is no live connection.
    pub async fn send(
        &self,
        address: SocketAddr,
        connect_timeout: Duration,
        request: http::Request<MeshBody>,
    ) -> Result<http::Response<Incoming>, SendError> {
        let mut sender = self.sender(address, connect_timeout).await?;
        sender
            .send_request(request)
            .await
            .map_err(|source| classify(address, source))
    }

    async fn sender(
        &self,
        address: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<SendRequest<MeshBody>, SendError> {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(slots.entry(address).or_default())
        };
        // Holding the slot while connecting makes concurrent first requests share one
        // connection instead of racing to open several.
        let mut guard = slot.lock().await;
        if let Some(sender) = guard.as_mut()
            && !sender.is_closed()
            && sender.ready().await.is_ok()
        {
            return Ok(sender.clone());
        }
        *guard = None;
        let stream = tokio::time::timeout(connect_timeout, self.connector.connect(address))
            .await
            .map_err(|_| SendError::ConnectTimeout {
                address,
                timeout: connect_timeout,
            })?
            .map_err(|source| SendError::Connect { address, source })?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| SendError::Connect {
                address,
                source: std::io::Error::other(source),
            })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(peer = %address, "mesh connection closed: {error}");
            }
        });
        *guard = Some(sender.clone());
        Ok(sender)
    }
}

/// A stream the peer refused (HTTP/2 `REFUSED_STREAM`) is safe to retry anywhere; any other
/// failure after the request went out is a reset.
fn classify(address: SocketAddr, source: hyper::Error) -> SendError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&source);
    while let Some(error) = cause {
        if let Some(h2_error) = error.downcast_ref::<h2::Error>()
            && h2_error.reason() == Some(h2::Reason::REFUSED_STREAM)
        {
            return SendError::Refused { address };
        }
        cause = error.source();
    }
    SendError::Reset { address, source }
}
