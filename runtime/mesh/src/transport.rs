//! Sidecar-to-sidecar transport: pooled HTTP/2 connections, one per pool (a cluster) and peer
//! endpoint.
//!
//! How a byte stream to a peer is opened is behind [`MeshConnector`], so mutual TLS can wrap
//! the plain TCP connector without the router or the pool knowing.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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

type Sender = SendRequest<MeshBody>;

/// One pooled connection slot: a pool's connection to one address.
#[derive(Default)]
struct Entry {
    /// The live connection, with its id, once the handshake is done.
    connection: Option<(u64, Sender)>,
    /// Held while a request checks out this slot and connects, so concurrent first requests
    /// share one connection instead of racing to open several. It is cloned only under the
    /// pools lock, so a count of one there means nobody is waiting for it.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Entry {
    fn is_idle(&self) -> bool {
        Arc::strong_count(&self.turn) == 1
    }
}

/// Drops the connections to addresses `keep` rejects (each closes once its requests are done),
/// and the slots nobody waits on any more.
fn retain_connections(entries: &mut HashMap<SocketAddr, Entry>, keep: impl Fn(SocketAddr) -> bool) {
    entries.retain(|address, entry| {
        if keep(*address) {
            return true;
        }
        entry.connection = None;
        !entry.is_idle()
    });
}

/// Pool name → peer address → slot.
type Pools = HashMap<Arc<str>, HashMap<SocketAddr, Entry>>;

#[derive(Default)]
struct Shared {
    pools: Mutex<Pools>,
    next_id: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pools> {
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connection `id` ended: its slot no longer offers it, and goes when nobody waits on it.
    fn forget(&self, pool: &str, address: SocketAddr, id: u64) {
        let mut pools = self.lock();
        let Some(entries) = pools.get_mut(pool) else {
            return;
        };
        if let Some(entry) = entries.get_mut(&address)
            && entry
                .connection
                .as_ref()
                .is_some_and(|(live, _)| *live == id)
        {
            entry.connection = None;
            if entry.is_idle() {
                entries.remove(&address);
            }
        }
        if entries.is_empty() {
            pools.remove(pool);
        }
    }
}

/// Pooled HTTP/2 connections to peer mesh ports, multiplexed: per pool (the caller's name for
/// a set of connections, e.g. a cluster, as Envoy keeps one pool per cluster) at most one live
/// connection per peer address.
///
/// The transport knows nothing of routing or circuit breakers. A caller first asks for a live
/// connection ([`MeshTransport::ready_sender`]: no waiting, no allocation); without one it
/// waits for the slot ([`MeshTransport::checkout`]) and, if the slot is still vacant, decides
/// whether a new connection may be opened and opens it ([`Vacancy::connect`]), handing over a
/// permit that the connection holds until it closes.
pub struct MeshTransport {
    connector: Arc<dyn MeshConnector>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MeshTransport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MeshTransport")
            .finish_non_exhaustive()
    }
}

/// A handle on a live connection, ready to send one request.
pub struct PooledSender {
    sender: Sender,
    address: SocketAddr,
}

impl std::fmt::Debug for PooledSender {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PooledSender")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl PooledSender {
    /// Sends one request on the connection.
    pub async fn send(
        mut self,
        request: http::Request<MeshBody>,
    ) -> Result<http::Response<Incoming>, SendError> {
        let address = self.address;
        self.sender
            .send_request(request)
            .await
            .map_err(|source| classify(address, source))
    }
}

/// What waiting for a pool's slot found.
#[derive(Debug)]
pub enum Checkout {
    /// A live connection (another request opened it meanwhile, or it became ready).
    Ready(PooledSender),
    /// No live connection: this caller's turn to open one.
    Vacant(Vacancy),
}

/// The turn to open a pool's connection to one address; other requests for the same slot wait
/// until it is used or dropped.
pub struct Vacancy {
    connector: Arc<dyn MeshConnector>,
    shared: Arc<Shared>,
    pool: Arc<str>,
    address: SocketAddr,
    turn: tokio::sync::OwnedMutexGuard<()>,
}

impl std::fmt::Debug for Vacancy {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Vacancy")
            .field("pool", &self.pool)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl MeshTransport {
    pub fn new(connector: Arc<dyn MeshConnector>) -> Self {
        Self {
            connector,
            shared: Arc::default(),
        }
    }

    /// Plain TCP transport.
    pub fn tcp() -> Self {
        Self::new(Arc::new(TcpConnector))
    }

    /// The pool's live, ready connection to `address`, if there is one. Never waits.
    pub fn ready_sender(&self, pool: &str, address: SocketAddr) -> Option<PooledSender> {
        let mut sender = {
            let pools = self.shared.lock();
            let (_, sender) = pools.get(pool)?.get(&address)?.connection.as_ref()?;
            if sender.is_closed() {
                return None;
            }
            sender.clone()
        };
        // An HTTP/2 connection is ready as long as it is open (streams beyond the peer's
        // concurrency limit queue inside the connection), so this one poll answers at once.
        let mut context = Context::from_waker(Waker::noop());
        match sender.poll_ready(&mut context) {
            Poll::Ready(Ok(())) => Some(PooledSender { sender, address }),
            Poll::Ready(Err(_)) | Poll::Pending => None,
        }
    }

    /// Waits for the pool's slot for `address` (another request may be connecting) and then
    /// answers its live connection, or the turn to open one.
    pub async fn checkout(&self, pool: &str, address: SocketAddr) -> Checkout {
        let (pool, turn) = {
            let mut pools = self.shared.lock();
            let pool = match pools.get_key_value(pool) {
                Some((name, _)) => Arc::clone(name),
                None => Arc::from(pool),
            };
            let entry = pools
                .entry(Arc::clone(&pool))
                .or_default()
                .entry(address)
                .or_default();
            (pool, Arc::clone(&entry.turn))
        };
        let turn = turn.lock_owned().await;
        let live = {
            let pools = self.shared.lock();
            pools
                .get(&pool)
                .and_then(|entries| entries.get(&address))
                .and_then(|entry| entry.connection.as_ref())
                .map(|(_, sender)| sender.clone())
        };
        if let Some(mut sender) = live
            && !sender.is_closed()
            && sender.ready().await.is_ok()
        {
            return Checkout::Ready(PooledSender { sender, address });
        }
        Checkout::Vacant(Vacancy {
            connector: Arc::clone(&self.connector),
            shared: Arc::clone(&self.shared),
            pool,
            address,
            turn,
        })
    }

    /// Stops offering the pool's connections to addresses `keep` rejects: each closes once the
    /// requests still on it are done (and gives back what its permit counts then).
    pub fn drain(&self, pool: &str, keep: impl Fn(SocketAddr) -> bool) {
        let mut pools = self.shared.lock();
        let Some(entries) = pools.get_mut(pool) else {
            return;
        };
        retain_connections(entries, keep);
        if entries.is_empty() {
            pools.remove(pool);
        }
    }

    /// [`Self::drain`] over every pool at once: `keep` sees the pool name and the address.
    pub fn drain_all(&self, keep: impl Fn(&str, SocketAddr) -> bool) {
        let mut pools = self.shared.lock();
        pools.retain(|pool, entries| {
            retain_connections(entries, |address| keep(pool, address));
            !entries.is_empty()
        });
    }
}

impl Vacancy {
    /// Opens the connection: connects, does the HTTP/2 handshake and waits for the peer's
    /// first bytes (its connection preface), all within `connect_timeout`. `permit` is held by
    /// the connection until it closes; dropped at once if the connection fails.
    pub async fn connect<P: Send + 'static>(
        self,
        connect_timeout: Duration,
        permit: P,
    ) -> Result<PooledSender, SendError> {
        let address = self.address;
        let connecting = async {
            let stream = self
                .connector
                .connect(address)
                .await
                .map_err(|source| SendError::Connect { address, source })?;
            let (first_read, preface) = tokio::sync::oneshot::channel();
            let stream = PooledStream {
                inner: stream,
                first_read: Some(first_read),
                _permit: Box::new(permit),
            };
            let (sender, connection) =
                hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(|source| SendError::Connect {
                        address,
                        source: std::io::Error::other(source),
                    })?;
            // Until the peer's preface (a SETTINGS frame, the first thing an HTTP/2 server
            // sends) arrives, nothing says the peer serves at all: a request sent now could
            // wait forever. The connection is driven by hyper's own task meanwhile.
            preface.await.map_err(|_| SendError::Connect {
                address,
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the connection closed during the HTTP/2 handshake",
                ),
            })?;
            Ok((sender, connection))
        };
        // Dropping the half-made connection on a timeout shuts it down, and its permit with it.
        let (sender, connection) = tokio::time::timeout(connect_timeout, connecting)
            .await
            .map_err(|_| SendError::ConnectTimeout {
                address,
                timeout: connect_timeout,
            })??;

        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut pools = self.shared.lock();
            let entry = pools
                .entry(Arc::clone(&self.pool))
                .or_default()
                .entry(address)
                .or_insert_with(|| Entry {
                    connection: None,
                    turn: Arc::clone(tokio::sync::OwnedMutexGuard::mutex(&self.turn)),
                });
            entry.connection = Some((id, sender.clone()));
        }
        let shared = Arc::clone(&self.shared);
        let pool = Arc::clone(&self.pool);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(peer = %address, pool = %pool, "mesh connection closed: {error}");
            }
            shared.forget(&pool, address, id);
        });
        Ok(PooledSender { sender, address })
    }
}

/// The byte stream of a pooled connection: reports the first bytes read (the peer's preface)
/// and holds the connection's permit until hyper drops the stream, i.e. until it is closed.
struct PooledStream {
    inner: Box<dyn MeshStream>,
    first_read: Option<tokio::sync::oneshot::Sender<()>>,
    _permit: Box<dyn Send>,
}

impl AsyncRead for PooledStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && let Some(first_read) = this.first_read.take()
        {
            // The receiver is gone once the connect gave up; nothing to tell then.
            let _ = first_read.send(());
        }
        result
    }
}

impl AsyncWrite for PooledStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// Counts the permits alive, like a circuit-breaker counter.
    #[derive(Clone, Default)]
    struct Permits(Arc<AtomicUsize>);

    struct Permit(Arc<AtomicUsize>);

    impl Permits {
        fn take(&self) -> Permit {
            self.0.fetch_add(1, Ordering::SeqCst);
            Permit(Arc::clone(&self.0))
        }

        fn held(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }

        async fn wait_until_held(&self, count: usize) {
            let waited = tokio::time::timeout(Duration::from_secs(5), async {
                while self.held() != count {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            assert!(
                waited.is_ok(),
                "{} permits held, expected {count}",
                self.held()
            );
        }
    }

    impl Drop for Permit {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// An HTTP/2 server answering 200 "ok" on every connection until the sender is dropped;
    /// each accepted connection is closed when `close` fires.
    async fn h2_server() -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (close, closed) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut closed = closed.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_request| async {
                        Ok::<_, Infallible>(http::Response::new(full_body("ok")))
                    });
                    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = closed.wait_for(|closed| *closed) => {}
                    }
                });
            }
        });
        (address, close)
    }

    /// Accepts TCP connections and reads them, never answering.
    async fn silent_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while stream.read(&mut buffer).await.is_ok_and(|read| read > 0) {}
                });
            }
        });
        address
    }

    fn request() -> http::Request<MeshBody> {
        let mut request = http::Request::new(full_body(Bytes::new()));
        *request.uri_mut() = "http://reviews/".parse().unwrap();
        request
    }

    async fn vacancy(transport: &MeshTransport, pool: &str, address: SocketAddr) -> Vacancy {
        match transport.checkout(pool, address).await {
            Checkout::Vacant(vacancy) => vacancy,
            Checkout::Ready(_) => panic!("{pool} already has a connection to {address}"),
        }
    }

    #[tokio::test]
    async fn a_connection_is_pooled_per_pool_and_holds_its_permit_until_it_closes() {
        let (address, close) = h2_server().await;
        let transport = MeshTransport::tcp();
        let permits = Permits::default();
        assert!(transport.ready_sender("reviews", address).is_none());

        let sender = vacancy(&transport, "reviews", address)
            .await
            .connect(Duration::from_secs(1), permits.take())
            .await
            .unwrap();
        let response = sender.send(request()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(permits.held(), 1);

        // The fast path finds it; another pool to the same address does not share it.
        let again = transport.ready_sender("reviews", address).unwrap();
        assert_eq!(again.send(request()).await.unwrap().status(), 200);
        assert!(transport.ready_sender("ratings", address).is_none());
        match transport.checkout("reviews", address).await {
            Checkout::Ready(sender) => {
                assert_eq!(sender.send(request()).await.unwrap().status(), 200)
            }
            Checkout::Vacant(_) => panic!("the live connection was not found"),
        }

        // The peer closes: the permit comes back and the slot is vacant again.
        close.send_replace(true);
        permits.wait_until_held(0).await;
        let forgotten = tokio::time::timeout(Duration::from_secs(5), async {
            while transport.ready_sender("reviews", address).is_some() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(forgotten.is_ok(), "a closed connection is still offered");
    }

    #[tokio::test]
    async fn a_failed_connect_drops_its_permit_and_frees_the_slot() {
        let address = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let transport = MeshTransport::tcp();
        let permits = Permits::default();
        let error = vacancy(&transport, "reviews", address)
            .await
            .connect(Duration::from_secs(1), permits.take())
            .await
            .unwrap_err();
        assert!(matches!(error, SendError::Connect { .. }), "{error:?}");
        assert_eq!(permits.held(), 0);
        // The slot is free for the next try (no lock left behind).
        let next = tokio::time::timeout(
            Duration::from_secs(1),
            transport.checkout("reviews", address),
        )
        .await
        .unwrap();
        assert!(matches!(next, Checkout::Vacant(_)));
    }

    #[tokio::test]
    async fn a_peer_that_never_sends_its_preface_times_out_and_releases_the_permit() {
        let address = silent_server().await;
        let transport = MeshTransport::tcp();
        let permits = Permits::default();
        let started = tokio::time::Instant::now();
        let error = vacancy(&transport, "reviews", address)
            .await
            .connect(Duration::from_millis(300), permits.take())
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            matches!(error, SendError::ConnectTimeout { .. }),
            "{error:?}"
        );
        assert!(error.is_connect_failure());
        assert!(
            (Duration::from_millis(300)..Duration::from_secs(2)).contains(&elapsed),
            "{elapsed:?}"
        );
        // The half-open connection shuts down; its permit goes with it.
        permits.wait_until_held(0).await;
        assert!(transport.ready_sender("reviews", address).is_none());
    }

    #[tokio::test]
    async fn concurrent_checkouts_share_the_connection_being_opened() {
        let (address, _close) = h2_server().await;
        let transport = Arc::new(MeshTransport::tcp());
        let permits = Permits::default();
        let first = vacancy(&transport, "reviews", address).await;
        // The second waits for the slot while the first connects.
        let waiting = tokio::spawn({
            let transport = Arc::clone(&transport);
            async move { transport.checkout("reviews", address).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        first
            .connect(Duration::from_secs(1), permits.take())
            .await
            .unwrap();
        match waiting.await.unwrap() {
            Checkout::Ready(sender) => {
                assert_eq!(sender.send(request()).await.unwrap().status(), 200)
            }
            Checkout::Vacant(_) => panic!("a second connection was opened"),
        }
        assert_eq!(permits.held(), 1);
    }

    #[tokio::test]
    async fn drained_connections_close_and_release_their_permits() {
        let (kept_address, _close_kept) = h2_server().await;
        let (gone_address, _close_gone) = h2_server().await;
        let transport = MeshTransport::tcp();
        let permits = Permits::default();
        for address in [kept_address, gone_address] {
            vacancy(&transport, "reviews", address)
                .await
                .connect(Duration::from_secs(1), permits.take())
                .await
                .unwrap();
        }
        assert_eq!(permits.held(), 2);
        transport.drain("reviews", |address| address == kept_address);
        assert!(transport.ready_sender("reviews", gone_address).is_none());
        assert!(transport.ready_sender("reviews", kept_address).is_some());
        permits.wait_until_held(1).await;
    }

    #[tokio::test]
    async fn drain_all_closes_connections_of_gone_pools_and_endpoints() {
        let (address, _close) = h2_server().await;
        let transport = MeshTransport::tcp();
        let permits = Permits::default();
        for pool in ["reviews", "ratings"] {
            vacancy(&transport, pool, address)
                .await
                .connect(Duration::from_secs(1), permits.take())
                .await
                .unwrap();
        }
        assert_eq!(permits.held(), 2);
        transport.drain_all(|pool, _| pool == "reviews");
        assert!(transport.ready_sender("reviews", address).is_some());
        assert!(transport.ready_sender("ratings", address).is_none());
        permits.wait_until_held(1).await;
    }
}
