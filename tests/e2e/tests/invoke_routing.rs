//! Service invocation through two sidecars, routed by xDS in the shape of Istio's Bookinfo
//! `reviews` example: one app id, three versions, each behind its own sidecar.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use outrigger_e2e::mesh::{
    VersionApp, discovery_response, invoke, route_config, start_sidecar, static_cluster,
    wait_ready, write_xds_file,
};
use outrigger_runtime::RunningSidecar;
use outrigger_runtime::config::XdsSource;
use serde_json::{Value, json};

/// Three `reviews` versions, each an app behind its own sidecar.
struct Reviews {
    apps: Vec<VersionApp>,
    sidecars: Vec<RunningSidecar>,
}

impl Reviews {
    async fn start() -> Self {
        let mut apps = Vec::new();
        let mut sidecars = Vec::new();
        for version in ["v1", "v2", "v3"] {
            let app = VersionApp::start(version).await;
            sidecars.push(start_sidecar("reviews", Some(app.port), XdsSource::None).await);
            apps.push(app);
        }
        Self { apps, sidecars }
    }

    fn mesh(&self, index: usize) -> SocketAddr {
        self.sidecars[index].mesh_address
    }

    /// Clusters `v1`, `v2`, `v3`, one endpoint each.
    fn clusters(&self, extra: &Value) -> Vec<Value> {
        (0..3)
            .map(|index| {
                static_cluster(
                    &format!("v{}", index + 1),
                    &[self.mesh(index)],
                    extra.clone(),
                )
            })
            .collect()
    }
}

/// Bookinfo's reviews routing: `end-user: jason` → v2, everyone else 50/50 v1/v3.
fn bookinfo_routes() -> Vec<Value> {
    vec![
        json!({
            "match": { "prefix": "/", "headers": [{ "name": "end-user", "stringMatch": { "exact": "jason" } }] },
            "route": { "cluster": "v2" },
        }),
        json!({
            "match": { "prefix": "/" },
            "route": { "weightedClusters": { "clusters": [
                { "name": "v1", "weight": 50 },
                { "name": "v3", "weight": 50 },
            ]}},
        }),
    ]
}

async fn count_versions(
    caller: &RunningSidecar,
    calls: usize,
    headers: &[(&str, &str)],
) -> HashMap<String, usize> {
    let http = reqwest::Client::new();
    let mut counts = HashMap::new();
    for _ in 0..calls {
        let (status, version, body) = invoke(&http, caller, "reviews", "/reviews/1", headers).await;
        let key = if status == 200 {
            version.unwrap_or_else(|| "none".into())
        } else {
            format!("status {status}: {body}")
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_file_routes_by_header_and_weight_and_follows_edits() {
    let reviews = Reviews::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("xds.json");
    let mut resources = reviews.clusters(&json!({}));
    resources.push(route_config("reviews", bookinfo_routes()));
    write_xds_file(&file, &discovery_response("1", resources));

    let caller = start_sidecar("productpage", None, XdsSource::File(file.clone())).await;
    assert!(wait_ready(&caller, Duration::from_secs(5)).await);

    let jason = count_versions(&caller, 50, &[("end-user", "jason")]).await;
    assert_eq!(jason.get("v2"), Some(&50), "{jason:?}");

    let split = count_versions(&caller, 2000, &[]).await;
    let v1 = split.get("v1").copied().unwrap_or(0);
    let v3 = split.get("v3").copied().unwrap_or(0);
    assert_eq!(v1 + v3, 2000, "{split:?}");
    assert!((900..=1100).contains(&v1), "50/50 within ±5 %: {split:?}");

    // Edit the file: everyone to v3.
    let mut resources = reviews.clusters(&json!({}));
    resources.push(route_config(
        "reviews",
        vec![json!({ "match": { "prefix": "/" }, "route": { "cluster": "v3" } })],
    ));
    write_xds_file(&file, &discovery_response("2", resources));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let counts = count_versions(&caller, 20, &[]).await;
        if counts.get("v3") == Some(&20) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "edit not applied: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken edit is rejected and the last good routing keeps serving.
    std::fs::write(&file, "{ not json").expect("write");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let counts = count_versions(&caller, 20, &[]).await;
    assert_eq!(counts.get("v3"), Some(&20), "{counts:?}");
    assert_eq!(reviews.apps[1].request_count(), 50);
}
