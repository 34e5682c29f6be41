//! Benchmark: GetState / SaveState through the sidecar (gRPC and HTTP) against direct Redis
//! GET / SET on the same server, in the same run. Prints p50 / p99 and the overhead.
//!
//!   cargo build --release -p outrigger-runtime
//!   cargo run --release -p outrigger-e2e --bin state-bench [-- ITERATIONS]

use std::time::{Duration, Instant};

use anyhow::Context;
use outrigger_client::OutriggerClient;
use outrigger_e2e::{memory_component, redis_component};
use outrigger_test_harness::{RedisServer, SidecarBuilder, outrigger_binary};

struct Series {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Series {
    fn new(name: &'static str, capacity: usize) -> Self {
        Self {
            name,
            samples: Vec::with_capacity(capacity),
        }
    }

    fn percentile(&self, fraction: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }
}

async fn timed<T>(
    series: &mut Series,
    call: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let value = call.await?;
    series.samples.push(started.elapsed());
    Ok(value)
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(5000);
    let warmup = iterations / 10;
    anyhow::ensure!(
        outrigger_binary().exists(),
        "{} is missing: cargo build --release -p outrigger-runtime",
        outrigger_binary().display()
    );
    let redis = RedisServer::start_volatile().context("start redis-server")?;
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("redis.yaml"),
        redis_component("statestore", &redis.address(), &[]),
    )?;
    // The same API path without the Redis hop, to separate API cost from store cost.
    std::fs::write(dir.path().join("memory.yaml"), memory_component("memory"))?;
    let sidecar = SidecarBuilder::new("bench")
        .resources_path(dir.path())
        .spawn();

    let mut direct = redis.client().await;
    let relay_port = outrigger_e2e::bench::spawn_tcp_relay(redis.port())?;
    let mut relayed = redis::Client::open(format!("redis://127.0.0.1:{relay_port}/"))?
        .get_multiplexed_async_connection()
        .await?;
    let mut grpc = OutriggerClient::connect(&sidecar.grpc_url(), None).await?;
    let http = reqwest::Client::new();
    let value = "x".repeat(100);

    let mut direct_set = Series::new("direct Redis SET", iterations);
    let mut grpc_save = Series::new("gRPC SaveState", iterations);
    let mut http_save = Series::new("HTTP POST /state", iterations);
    let mut direct_get = Series::new("direct Redis GET", iterations);
    let mut grpc_get = Series::new("gRPC GetState", iterations);
    let mut http_get = Series::new("HTTP GET /state", iterations);
    let mut relayed_get = Series::new("GET via TCP relay", iterations);
    let mut grpc_get_memory = Series::new("gRPC GetState (mem)", iterations);

    // Interleaved, so that drift in the machine's load affects every series alike.
    for round in 0..warmup + iterations {
        let key = format!("key-{}", round % 1000);
        let http_body = format!(r#"[{{"key":"{key}","value":"{value}"}}]"#);
        let http_save_url = sidecar.http_url("/v1.0/state/statestore");
        let http_get_url = sidecar.http_url(&format!("/v1.0/state/statestore/{key}"));
        timed(&mut direct_set, async {
            redis::cmd("SET")
                .arg(format!("direct||{key}"))
                .arg(&value)
                .query_async::<()>(&mut direct)
                .await?;
            Ok(())
        })
        .await?;
        timed(&mut grpc_save, async {
            Ok(grpc
                .save_state("statestore", &key, value.clone(), None)
                .await?)
        })
        .await?;
        timed(&mut http_save, async {
            let status = http
                .post(&http_save_url)
                .body(http_body)
                .send()
                .await?
                .status();
            anyhow::ensure!(status.is_success(), "save answered {status}");
            Ok(())
        })
        .await?;
        timed(&mut direct_get, async {
            let _: Option<String> = redis::cmd("GET")
                .arg(format!("direct||{key}"))
                .query_async(&mut direct)
                .await?;
            Ok(())
        })
        .await?;
        timed(&mut grpc_get, async {
            anyhow::ensure!(
                grpc.get_state("statestore", &key).await?.is_some(),
                "value missing"
            );
            Ok(())
        })
        .await?;
        timed(&mut http_get, async {
            let response = http.get(&http_get_url).send().await?;
            anyhow::ensure!(
                response.status().is_success(),
                "get answered {}",
                response.status()
            );
            response.bytes().await?;
            Ok(())
        })
        .await?;
        timed(&mut relayed_get, async {
            let _: Option<String> = redis::cmd("GET")
                .arg(format!("direct||{key}"))
                .query_async(&mut relayed)
                .await?;
            Ok(())
        })
        .await?;
        if round == 0 {
            grpc.save_state("memory", "key", value.clone(), None)
                .await?;
        }
        timed(&mut grpc_get_memory, async {
            anyhow::ensure!(
                grpc.get_state("memory", "key").await?.is_some(),
                "value missing"
            );
            Ok(())
        })
        .await?;
        if round + 1 == warmup {
            for series in [
                &mut direct_set,
                &mut grpc_save,
                &mut http_save,
                &mut direct_get,
                &mut grpc_get,
                &mut http_get,
                &mut grpc_get_memory,
                &mut relayed_get,
            ] {
                series.samples.clear();
            }
        }
    }

    println!(
        "state benchmark: {iterations} sequential operations per series after {warmup} warm-up rounds, 100-byte values, one Redis server"
    );
    println!(
        "{:<20} {:>10} {:>10} {:>14} {:>14}",
        "operation", "p50 µs", "p99 µs", "p50 vs direct", "p99 vs direct"
    );
    for (baseline, series) in [
        (&direct_get, &direct_get),
        (&direct_get, &grpc_get),
        (&direct_get, &http_get),
        (&direct_get, &grpc_get_memory),
        (&direct_get, &relayed_get),
        (&direct_set, &direct_set),
        (&direct_set, &grpc_save),
        (&direct_set, &http_save),
    ] {
        let (p50, p99) = (series.percentile(0.50), series.percentile(0.99));
        let (base50, base99) = (baseline.percentile(0.50), baseline.percentile(0.99));
        println!(
            "{:<20} {:>10.1} {:>10.1} {:>+13.1}µs {:>+13.1}µs",
            series.name,
            micros(p50),
            micros(p99),
            micros(p50) - micros(base50),
            micros(p99) - micros(base99)
        );
    }
    let overhead = micros(grpc_get.percentile(0.5)) - micros(direct_get.percentile(0.5));
    println!(
        "target: gRPC GetState p50 <= direct GET p50 + 30 µs: overhead {overhead:+.1} µs -> {}",
        if overhead <= 30.0 { "met" } else { "NOT met" }
    );
    drop(sidecar);
    Ok(())
}
