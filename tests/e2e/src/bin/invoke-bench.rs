//! Benchmark: HTTP service invocation through two sidecars, against the app called directly
//! and through two nginx hops, in the same run. The generator sends on a fixed schedule (the
//! rate does not drop when answers slow down) over a fixed set of keep-alive connections, and
//! measures each request from its send to the end of its answer.
//!
//!   cargo build --release -p outrigger-runtime
//!   cargo run --release -p outrigger-e2e --bin invoke-bench [-- SECONDS RATE CONNECTIONS]
//!
//! Needs nginx (Debian: apt-get install nginx-light).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use outrigger_e2e::mesh::ads_resources;
use outrigger_test_harness::{Sidecar, SidecarBuilder, TestAdsServer, free_port, outrigger_binary};

const RESPONSE_SIZE: usize = 1024;

/// Serves a 1 KB body to every request over HTTP/1.1.
async fn start_echo_app() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let payload = Bytes::from(vec![b'x'; RESPONSE_SIZE]);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let payload = payload.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let payload = payload.clone();
                    async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(payload))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(port)
}

/// One nginx process (no master, no daemon) proxying `listen` → `upstream` with keep-alive.
fn start_nginx(dir: &Path, name: &str, listen: u16, upstream: u16) -> anyhow::Result<Child> {
    let prefix = dir.join(name);
    std::fs::create_dir_all(prefix.join("logs"))?;
    let config = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log warn;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  keepalive_requests 10000000;\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n  upstream next {{ server 127.0.0.1:{upstream}; keepalive 64; keepalive_requests 10000000; }}\n  server {{\n    listen 127.0.0.1:{listen};\n    location / {{\n      proxy_pass http://next;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
        prefix = prefix.display()
    );
    let config_path = prefix.join("nginx.conf");
    std::fs::write(&config_path, config)?;
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&config_path)
        .stdin(Stdio::null())
        .spawn()
        .context("starting nginx (Debian: apt-get install nginx-light)")?;
    Ok(child)
}

/// Resident memory of a process in MB: total, anonymous (its own), and file-backed (code and
/// read-only data of the binary and libraries, shared with every process mapping them).
struct Resident {
    total: f64,
    anonymous: f64,
    file: f64,
}

fn resident(pid: u32) -> Resident {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kilobytes| kilobytes / 1024.0)
    };
    Resident {
        total: field("VmRSS:"),
        anonymous: field("RssAnon:"),
        file: field("RssFile:"),
    }
}

async fn wait_until_answering(address: SocketAddr, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(status) = get_once(address, path).await
            && status == 200
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{address}{path} never answered 200"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_once(address: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header("host", "bench")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}

/// Results of one open-loop run.
struct RunFigures {
    latency: Histogram<u64>,
    errors: u64,
}

/// Sends `rate` requests per second for `duration` over `connections` keep-alive connections.
async fn open_loop(
    address: SocketAddr,
    path: &str,
    rate: u64,
    duration: Duration,
    connections: u64,
) -> anyhow::Result<RunFigures> {
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let total = (duration.as_secs_f64() * rate as f64) as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (mut sender, driver) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(driver);
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut errors = 0;
            let mut index = connection;
            while index < total {
                let scheduled = start + interval * index as u32;
                tokio::time::sleep_until(scheduled).await;
                // Measured from the send: tokio's timer wakes up to a millisecond late, which
                // would otherwise swamp the microseconds being compared. The schedule still
                // fixes the rate, and a connection that falls behind sends at once.
                let sent = tokio::time::Instant::now();
                let request = hyper::Request::get(path.as_str())
                    .header("host", "bench")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let ok = match sender.send_request(request).await {
                    Ok(response) => {
                        let ok = response.status() == 200;
                        ok && response
                            .into_body()
                            .collect()
                            .await
                            .is_ok_and(|body| body.to_bytes().len() == RESPONSE_SIZE)
                    }
                    Err(_) => false,
                };
                if !ok {
                    errors += 1;
                }
                let micros = sent.elapsed().as_micros() as u64;
                let _ = histogram.record(micros.max(1));
                index += connections;
            }
            (histogram, errors)
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for task in tasks {
        let (histogram, task_errors) = task.await?;
        latency.add(histogram)?;
        errors += task_errors;
    }
    Ok(RunFigures { latency, errors })
}

struct Scenario {
    name: &'static str,
    address: SocketAddr,
    path: &'static str,
    /// Processes between the generator and the app, for CPU and memory figures.
    hops: Vec<u32>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|v| v.parse()).transpose()?.unwrap_or(10);
    let rate: u64 = args.next().map(|v| v.parse()).transpose()?.unwrap_or(1000);
    let connections: u64 = args.next().map(|v| v.parse()).transpose()?.unwrap_or(16);
    anyhow::ensure!(
        outrigger_binary().exists(),
        "{} is missing: cargo build --release -p outrigger-runtime",
        outrigger_binary().display()
    );
    let app_port = start_echo_app().await?;
    let dir = tempfile::tempdir()?;

    let callee: Sidecar = SidecarBuilder::new("echo")
        .arg("--app-port")
        .arg(&app_port.to_string())
        .spawn();
    // The caller is fed over ADS, as a control plane would feed it in production.
    let control_plane = TestAdsServer::start().await;
    control_plane.set_resources(
        "1",
        ads_resources(&serde_json::json!({
            "versionInfo": "1",
            "resources": [
                {
                    "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                    "name": "echo", "type": "STATIC", "connectTimeout": "1s",
                    "loadAssignment": { "clusterName": "echo", "endpoints": [{ "lbEndpoints": [{
                        "endpoint": { "address": { "socketAddress": { "address": "127.0.0.1", "portValue": callee.mesh_port } } }
                    }]}]},
                },
                {
                    "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                    "name": "outrigger",
                    "virtualHosts": [{ "name": "echo", "domains": ["echo"],
                        "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "echo" } }] }],
                },
            ],
        })),
    );
    let caller: Sidecar = SidecarBuilder::new("bench")
        .arg("--xds-address")
        .arg(&control_plane.address().to_string())
        .spawn();

    let nginx_front = free_port();
    let nginx_back = free_port();
    let mut back = start_nginx(dir.path(), "back", nginx_back, app_port)?;
    let mut front = start_nginx(dir.path(), "front", nginx_front, nginx_back)?;

    // The floor of any two-hop path here: two byte relays, no HTTP at all.
    let relay_back = outrigger_e2e::bench::spawn_tcp_relay(app_port)?;
    let relay_front = outrigger_e2e::bench::spawn_tcp_relay(relay_back)?;

    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let scenarios = [
        Scenario {
            name: "direct app",
            address: local(app_port),
            path: "/echo",
            hops: vec![],
        },
        Scenario {
            name: "two TCP relays (floor)",
            address: local(relay_front),
            path: "/echo",
            hops: vec![],
        },
        Scenario {
            name: "two nginx hops",
            address: local(nginx_front),
            path: "/echo",
            hops: vec![front.id(), back.id()],
        },
        Scenario {
            name: "two outrigger sidecars",
            address: local(caller.http_port),
            path: "/v1.0/invoke/echo/method/echo",
            hops: vec![caller.pid(), callee.pid()],
        },
    ];
    for scenario in &scenarios {
        wait_until_answering(scenario.address, scenario.path).await?;
    }

    println!(
        "invoke-bench: {rate} rps for {seconds} s over {connections} connections, {RESPONSE_SIZE}-byte answers"
    );
    println!(
        "{:<24} {:>7} {:>7} {:>8} {:>7} {:>7} {:>15} {:>17} {:>20} {:>6}",
        "path",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "+p50 µs",
        "+p99 µs",
        "vCPU/1k rps/hop",
        "CPU µs/req user+sys",
        "RSS MB/hop (anon+file)",
        "errors"
    );
    let mut baseline: Option<(u64, u64)> = None;
    for scenario in &scenarios {
        // Warm-up: connections, pools and caches.
        open_loop(
            scenario.address,
            scenario.path,
            rate,
            Duration::from_secs(1),
            connections,
        )
        .await?;
        let cpu_before: Vec<(f64, f64)> = scenario
            .hops
            .iter()
            .map(|pid| outrigger_e2e::bench::cpu_seconds(*pid))
            .collect();
        let figures = open_loop(
            scenario.address,
            scenario.path,
            rate,
            Duration::from_secs(seconds),
            connections,
        )
        .await?;
        let cpu_after: Vec<(f64, f64)> = scenario
            .hops
            .iter()
            .map(|pid| outrigger_e2e::bench::cpu_seconds(*pid))
            .collect();
        let p50 = figures.latency.value_at_quantile(0.50);
        let p99 = figures.latency.value_at_quantile(0.99);
        let p999 = figures.latency.value_at_quantile(0.999);
        let (base50, base99) = *baseline.get_or_insert((p50, p99));
        let hops = scenario.hops.len().max(1) as f64;
        let (user, system) = cpu_after.iter().zip(&cpu_before).fold(
            (0.0, 0.0),
            |(user, system), (after, before)| {
                (user + after.0 - before.0, system + after.1 - before.1)
            },
        );
        let (user, system) = (user / hops, system / hops);
        let vcpu_per_1k = (user + system) / seconds as f64 * (1000.0 / rate as f64);
        let requests = (rate * seconds) as f64;
        let micros_per_request = |cpu: f64| cpu * 1e6 / requests;
        let memory: Vec<Resident> = scenario.hops.iter().map(|pid| resident(*pid)).collect();
        let average = |pick: fn(&Resident) -> f64| memory.iter().map(pick).sum::<f64>() / hops;
        let no_hops = scenario.hops.is_empty();
        println!(
            "{:<24} {:>7} {:>7} {:>8} {:>7} {:>7} {:>15} {:>17} {:>20} {:>6}",
            scenario.name,
            p50,
            p99,
            p999,
            p50 as i64 - base50 as i64,
            p99 as i64 - base99 as i64,
            if no_hops {
                "-".to_string()
            } else {
                format!("{vcpu_per_1k:.4}")
            },
            if no_hops {
                "-".to_string()
            } else {
                format!(
                    "{:.0}+{:.0}",
                    micros_per_request(user),
                    micros_per_request(system)
                )
            },
            if no_hops {
                "-".to_string()
            } else {
                format!(
                    "{:.1} ({:.1}+{:.1})",
                    average(|m| m.total),
                    average(|m| m.anonymous),
                    average(|m| m.file)
                )
            },
            figures.errors,
        );
    }
    println!(
        "targets: two sidecars add ≤ 100 µs at p50; ≤ 0.05 vCPU per sidecar per 1000 rps; RSS ≤ 12 MB per sidecar"
    );
    let _ = front.kill();
    let _ = back.kill();
    let _ = front.wait();
    let _ = back.wait();
    Ok(())
}
