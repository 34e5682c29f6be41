//! Starting and stopping one sidecar: components, the two API servers, hot reload.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use outrigger_api::resiliency::Resiliency;
use outrigger_api::{ApiContext, Lifecycle, SidecarInfo};
use outrigger_components::ComponentRegistry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app_channel::AppChannel;
use crate::config::Config;
use crate::factories::ComponentFactories;
use crate::loader::{ComponentLoader, LoadError};
use crate::mesh::Mesh;
use crate::mesh_inbound::InboundApp;
use crate::subscriptions::SubscriptionManager;

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Components(#[from] LoadError),
    #[error("resiliency: {0}")]
    Resiliency(String),
    #[error("xDS: {0}")]
    Xds(#[from] outrigger_xds::store::XdsError),
    #[error("cannot listen on {address} for the {api} API: {source}")]
    Bind {
        api: &'static str,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A started sidecar. Dropping it does not stop it; call [`RunningSidecar::shutdown`].
pub struct RunningSidecar {
    pub http_address: SocketAddr,
    pub grpc_address: SocketAddr,
    pub mesh_address: SocketAddr,
    pub admin_address: SocketAddr,
    pub registry: Arc<ComponentRegistry>,
    pub mesh: Mesh,
    shutdown: CancellationToken,
    servers: JoinSet<()>,
    grace: Duration,
}

impl RunningSidecar {
    /// Cancelled when anything asks the sidecar to stop (a signal, or the shutdown API).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, then returns.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until shutdown is requested and the servers have drained (or the grace period ran out).
    pub async fn wait(mut self) {
        self.shutdown.cancelled().await;
        let drained = async { while self.servers.join_next().await.is_some() {} };
        if tokio::time::timeout(self.grace, drained).await.is_err() {
            tracing::warn!(grace = ?self.grace, "in-flight requests did not finish within the grace period; stopping anyway");
            self.servers.abort_all();
        }
        tracing::info!("outrigger stopped");
    }
}

/// Loads components, binds both API ports and starts serving.
pub async fn start(config: Config) -> Result<RunningSidecar, StartError> {
    let resiliency = Arc::new(load_resiliency(&config).map_err(StartError::Resiliency)?);
    let registry = Arc::new(ComponentRegistry::new());
    let mut loader = ComponentLoader::new(
        &config,
        ComponentFactories::builtin(),
        Arc::clone(&registry),
    );
    loader.load_initial().await?;

    let bind = |api: &'static str, port: u16| {
        let address = SocketAddr::new(config.listen_address, port);
        async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Bind {
                    api,
                    address,
                    source,
                })
        }
    };
    let http_listener = bind("HTTP", config.http_port).await?;
    let grpc_listener = bind("gRPC", config.grpc_port).await?;
    let mesh_listener = TcpListener::bind(SocketAddr::new(
        config.mesh_listen_address,
        config.mesh_port,
    ))
    .await
    .map_err(|source| StartError::Bind {
        api: "mesh",
        address: SocketAddr::new(config.mesh_listen_address, config.mesh_port),
        source,
    })?;
    let admin_listener = bind_admin(config.admin_port).await?;
    let http_address = local_address(&http_listener, "HTTP")?;
    let grpc_address = local_address(&grpc_listener, "gRPC")?;
    let mesh_address = local_address(&mesh_listener, "mesh")?;
    let admin_address = local_address(&admin_listener, "admin")?;

    let shutdown = CancellationToken::new();
    let mesh = crate::mesh::start(&config, &shutdown)?;
    let (ready_sender, ready) = watch::channel(false);
    let (app_ready_sender, app_ready) = watch::channel(config.app_port.is_none());
    let context = ApiContext::new(
        Arc::clone(&registry),
        SidecarInfo {
            app_id: config.app_id.clone(),
            namespace: config.namespace.clone(),
            http_port: http_address.port(),
            grpc_port: grpc_address.port(),
            app_port: config.app_port,
            app_protocol: config.app_protocol.as_str().to_string(),
            runtime_version: format!("outrigger-{}", env!("CARGO_PKG_VERSION")),
        },
        config.api_token.clone(),
        config.max_body_size,
        Lifecycle {
            ready,
            app_ready,
            shutdown: shutdown.clone(),
        },
        Arc::clone(&resiliency),
        Arc::clone(&mesh.invoker),
    );

    let mut servers = JoinSet::new();
    let inbound_app = Arc::new(InboundApp::new(
        config.app_id.clone(),
        config.app_port,
        config.app_protocol,
        config.app_api_token.clone(),
    ));
    servers.spawn(crate::mesh_inbound::serve(
        mesh_listener,
        inbound_app,
        shutdown.clone(),
    ));
    let stop = shutdown.clone();
    let admin = crate::admin::router(mesh.clone(), context.ready.clone());
    tokio::spawn(async move {
        let serve =
            axum::serve(admin_listener, admin).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(error) = serve.await {
            tracing::error!("admin server failed: {error}");
        }
    });
    let stop = shutdown.clone();
    let router = outrigger_api::http::router(context.clone());
    servers.spawn(async move {
        // Small request/response exchanges must not wait for Nagle and delayed ACKs.
        let http_listener = http_listener.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY not set: {error}");
            }
        });
        let serve = axum::serve(
            http_listener,
            // The peer's address reaches invocations (`hash_policy` on the source IP,
            // `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`).
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(stop.cancelled_owned());
        if let Err(error) = serve.await {
            tracing::error!("HTTP API server failed: {error}");
        }
    });
    let stop = shutdown.clone();
    let proxy = outrigger_api::grpc::ProxyLayer::new(context.clone());
    let grpc = outrigger_api::grpc::service(context);
    servers.spawn(async move {
        let incoming =
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let serve = tonic::transport::Server::builder()
            .layer(proxy)
            .add_service(grpc)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned());
        if let Err(error) = serve.await {
            tracing::error!("gRPC API server failed: {error}");
        }
    });
    tokio::spawn(loader.watch(config.resources_poll_interval, shutdown.clone()));
    let subscriptions = SubscriptionManager {
        app_id: config.app_id.clone(),
        registry: Arc::clone(&registry),
        channel: config
            .app_port
            .map(|port| AppChannel::new(port, config.app_protocol, config.app_api_token.clone())),
        resources_paths: config.resources_paths.clone(),
        app_ready: app_ready_sender,
        resiliency,
        poll_interval: config.resources_poll_interval,
    };
    // Joined with the servers on shutdown, so in-flight deliveries get the grace period.
    servers.spawn(subscriptions.run(shutdown.clone()));

    // Ready once components are loaded, the listeners are bound and (unless configured
    // otherwise) the first xDS snapshot is accepted. The task keeps the sender alive for the
    // sidecar's lifetime so readers never see a closed channel.
    tokio::spawn({
        let stop = shutdown.clone();
        let mut synced = mesh.synced.clone();
        let wait_for_sync = config.xds_wait_for_sync;
        async move {
            if wait_for_sync {
                tokio::select! {
                    () = stop.cancelled() => {}
                    _ = synced.wait_for(|synced| *synced) => {
                        ready_sender.send_replace(true);
                    }
                }
            } else {
                ready_sender.send_replace(true);
            }
            stop.cancelled().await;
            ready_sender.send_replace(false);
        }
    });
    tracing::info!(
        app_id = %config.app_id,
        http_port = http_address.port(),
        grpc_port = grpc_address.port(),
        mesh_port = mesh_address.port(),
        admin_port = admin_address.port(),
        "outrigger sidecar listening"
    );
    Ok(RunningSidecar {
        http_address,
        grpc_address,
        mesh_address,
        admin_address,
        registry,
        mesh,
        shutdown,
        servers,
        grace: config.graceful_shutdown,
    })
}

/// Reads `kind: Resiliency` documents from the resources paths.
fn load_resiliency(config: &Config) -> Result<Resiliency, String> {
    let mut files = Vec::new();
    for directory in &config.resources_paths {
        let Ok(entries) = std::fs::read_dir(directory) else {
            continue;
        };
        for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
            if matches!(
                path.extension().and_then(|extension| extension.to_str()),
                Some("yaml" | "yml")
            ) {
                let text = std::fs::read_to_string(&path)
                    .map_err(|error| format!("{}: {error}", path.display()))?;
                files.push((path, text));
            }
        }
    }
    Resiliency::load(&files, &config.app_id)
}

/// The admin port is for operators on this host only.
async fn bind_admin(port: u16) -> Result<TcpListener, StartError> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind {
            api: "admin",
            address,
            source,
        })
}

fn local_address(listener: &TcpListener, api: &'static str) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        api,
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}
