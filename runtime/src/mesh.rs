//! The sidecar's mesh: the xDS source feeding routing snapshots, the cluster manager kept in
//! step with them, and the invoker the APIs route through.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use outrigger_mesh::cluster::ClusterManager;
use outrigger_mesh::invoke::{Invoker, InvokerSettings};
use outrigger_mesh::model::MeshSnapshot;
use outrigger_mesh::stats::MeshStats;
use outrigger_mesh::transport::MeshTransport;
use outrigger_xds::ads::{AdsSettings, NodeIdentity};
use outrigger_xds::store::{ResourceStore, XdsError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, XdsSource};

/// How often `--xds-file` is checked for changes.
const XDS_FILE_POLL: Duration = Duration::from_millis(250);

/// Everything the servers and the admin page share about the mesh.
#[derive(Clone)]
pub struct Mesh {
    pub invoker: Arc<Invoker>,
    pub clusters: Arc<ClusterManager>,
    pub stats: Arc<MeshStats>,
    /// The accepted xDS resources, for `/config_dump`.
    pub store: Arc<Mutex<ResourceStore>>,
    /// True once the first full xDS snapshot was accepted (at once without an xDS source).
    pub synced: watch::Receiver<bool>,
}

/// Starts the xDS source and the cluster manager. A bad `--xds-file` fails start-up.
pub fn start(config: &Config, stop: &CancellationToken) -> Result<Mesh, XdsError> {
    let mut store = ResourceStore::new(&config.xds_route_config);
    let mut applied_file = None;
    let initially_synced = match &config.xds {
        XdsSource::None => true,
        XdsSource::File(path) => {
            applied_file = Some(outrigger_xds::file::apply_file(&mut store, path)?);
            true
        }
        XdsSource::Ads(_) => false,
    };
    let (snapshot_sender, accepted) = watch::channel(store.snapshot());
    let (synced_sender, synced) = watch::channel(initially_synced);
    let store = Arc::new(Mutex::new(store));
    let clusters = Arc::new(ClusterManager::new());
    let stats = Arc::new(MeshStats::default());

    match &config.xds {
        XdsSource::None => {}
        XdsSource::File(path) => {
            tokio::spawn(outrigger_xds::file::watch_file(
                path.clone(),
                XDS_FILE_POLL,
                Arc::clone(&store),
                snapshot_sender,
                synced_sender,
                stop.clone(),
                applied_file,
            ));
        }
        XdsSource::Ads(address) => {
            let settings = AdsSettings {
                address: address.clone(),
                node: NodeIdentity {
                    app_id: config.app_id.clone(),
                    namespace: namespace_of(config),
                    ip: config.instance_ip.clone(),
                    labels: config.xds_node_labels.clone(),
                    cluster: None,
                },
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
            };
            tokio::spawn(outrigger_xds::ads::run_ads_store(
                settings,
                Arc::clone(&store),
                snapshot_sender,
                synced_sender,
                stop.clone(),
            ));
        }
    }
    let invoker = Arc::new(Invoker::new(
        InvokerSettings {
            route_config: config.xds_route_config.clone(),
            namespace: namespace_of(config),
        },
        accepted.clone(),
        Arc::clone(&clusters),
        Arc::new(MeshTransport::tcp()),
        Arc::clone(&stats),
    ));
    tokio::spawn(follow_snapshots(
        accepted,
        Arc::clone(&invoker),
        stop.clone(),
    ));
    Ok(Mesh {
        invoker,
        clusters,
        stats,
        store,
        synced,
    })
}

fn namespace_of(config: &Config) -> String {
    config
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string())
}

/// Applies each accepted snapshot to the cluster manager even when no request comes, so
/// `/clusters` shows it; requests apply it themselves if they come first.
async fn follow_snapshots(
    mut snapshots: watch::Receiver<Arc<MeshSnapshot>>,
    invoker: Arc<Invoker>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = snapshots.changed() => {
                if changed.is_err() {
                    return;
                }
                snapshots.borrow_and_update();
                invoker.current_snapshot();
            }
        }
    }
}
