//! Benchmark: publishing through the sidecar (gRPC PublishEvent, BulkPublishEvent) against a
//! direct rdkafka producer to the same Kafka-protocol broker, in the same run.
//!
//!   cargo build --release -p outrigger-runtime
//!   cargo run --release -p outrigger-e2e --bin publish-bench [-- ITERATIONS [BULK_ROUNDS]]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use outrigger_api::cloudevents;
use outrigger_client::{OutriggerClient, runtime};
use outrigger_e2e::bench::{cpu_seconds, echo_round_trip, spawn_tcp_echo};
use outrigger_test_harness::{KafkaBroker, SidecarBuilder, outrigger_binary};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// One series of the bulk benchmark.
enum Series {
    /// A direct rdkafka producer sending these bytes per message.
    Direct(Vec<u8>),
    /// `BulkPublishEvent` through the sidecar, wrapped in CloudEvents unless `raw`.
    Sidecar { raw: bool },
}

/// Sends `batch` messages through the sidecar's `BulkPublishEvent`; returns messages per second.
async fn sidecar_batch(
    client: &mut OutriggerClient,
    payload: &[u8],
    raw: bool,
    batch: u32,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let metadata = if raw {
        HashMap::from([("rawPayload".to_string(), "true".to_string())])
    } else {
        HashMap::new()
    };
    let response = client
        .raw()
        .bulk_publish_event(runtime::BulkPublishRequest {
            pubsub_name: "kafka".into(),
            topic: "bench".into(),
            entries: (0..batch)
                .map(|index| runtime::BulkPublishRequestEntry {
                    entry_id: index.to_string(),
                    event: payload.to_vec(),
                    content_type: "text/plain".into(),
                    metadata: HashMap::new(),
                })
                .collect(),
            metadata,
        })
        .await?
        .into_inner();
    anyhow::ensure!(
        response.failed_entries.is_empty(),
        "bulk publish failures: {:?}",
        response.failed_entries
    );
    Ok(f64::from(batch) / started.elapsed().as_secs_f64())
}

/// Sends `batch` messages with a direct rdkafka producer, all at once as an application
/// would; returns messages per second.
async fn direct_batch(
    producer: &FutureProducer,
    payload: &[u8],
    batch: u32,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let sends: Vec<_> = (0..batch)
        .map(|_| {
            producer.send(
                FutureRecord::<str, [u8]>::to("bench").payload(payload),
                Duration::from_secs(10),
            )
        })
        .collect();
    for result in futures::future::join_all(sends).await {
        result.map_err(|(error, _)| anyhow::anyhow!("direct send: {error}"))?;
    }
    Ok(f64::from(batch) / started.elapsed().as_secs_f64())
}

fn percentile(samples: &mut [Duration], fraction: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * fraction).round() as usize;
    samples
        .get(index)
        .map_or(0.0, |sample| sample.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(2000);
    anyhow::ensure!(
        outrigger_binary().exists(),
        "{} is missing: cargo build --release -p outrigger-runtime",
        outrigger_binary().display()
    );
    let broker = KafkaBroker::start()?;
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("kafka.yaml"),
        format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: kafka\nspec:\n  type: pubsub.kafka\n  version: v1\n  metadata:\n  - name: brokers\n    value: \"{}\"\n",
            broker.address()
        ),
    )?;
    // The same hop into the sidecar without a broker behind it: what the API alone costs.
    std::fs::write(
        dir.path().join("memory.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: memory\nspec:\n  type: pubsub.in-memory\n  version: v1\n",
    )?;
    let sidecar = SidecarBuilder::new("bench")
        .resources_path(dir.path())
        .spawn();
    let mut client = OutriggerClient::connect(&sidecar.grpc_url(), None).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()?;
    let payload = vec![b'x'; 100];
    let publish_to = |client: &mut OutriggerClient, pubsub: &'static str| {
        let mut client = client.clone();
        let payload = payload.clone();
        async move {
            client
                .raw()
                .publish_event(runtime::PublishEventRequest {
                    pubsub_name: pubsub.into(),
                    topic: "bench".into(),
                    data: payload,
                    data_content_type: "text/plain".into(),
                    metadata: HashMap::new(),
                })
                .await
        }
    };
    let publish = |client: &mut OutriggerClient| publish_to(client, "kafka");
    // The sidecar creates the topic on first use; both paths then write to it.
    publish(&mut client).await?;
    let direct = |producer: &FutureProducer| {
        let producer = producer.clone();
        let payload = payload.clone();
        async move {
            producer
                .send(
                    FutureRecord::<str, [u8]>::to("bench").payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(error, _)| anyhow::anyhow!("direct send: {error}"))
        }
    };
    let mut echo = tokio::net::TcpStream::connect(("127.0.0.1", spawn_tcp_echo()?)).await?;
    echo.set_nodelay(true)?;
    let (mut sidecar_samples, mut direct_samples, mut memory_samples, mut echo_samples) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..iterations + iterations / 10 {
        let started = Instant::now();
        publish(&mut client).await?;
        let through_sidecar = started.elapsed();
        let started = Instant::now();
        direct(&producer).await?;
        let straight = started.elapsed();
        let started = Instant::now();
        publish_to(&mut client, "memory").await?;
        let hop_alone = started.elapsed();
        let started = Instant::now();
        echo_round_trip(&mut echo, &payload).await?;
        let loopback = started.elapsed();
        if round >= iterations / 10 {
            sidecar_samples.push(through_sidecar);
            direct_samples.push(straight);
            memory_samples.push(hop_alone);
            echo_samples.push(loopback);
        }
    }
    // Bulk throughput: many rounds of 1000-entry batches, one batch of every series per round
    // in a rotating order; each series is compared with direct by the median of its per-round
    // ratios (one batch alone swings with the broker's own pauses; a round's batches share
    // the machine's state).
    let batch = 1000;
    let rounds: usize = std::env::args()
        .nth(2)
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(101);
    // What the sidecar hands the broker for each 100-byte event: its CloudEvent envelope.
    let envelope_sized = vec![
        b'y';
        cloudevents::encode_new(
            &payload,
            Some("text/plain"),
            &cloudevents::EventContext {
                source: "bench",
                topic: "bench",
                pubsub: "kafka",
                traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                tracestate: "",
                time: "2026-11-22T00:00:00Z",
                expiration: None,
            },
            &cloudevents::EnvelopeOverrides::default(),
        )
        .len()
    ];
    let series = [
        Series::Direct(payload.clone()),
        Series::Sidecar { raw: false },
        Series::Sidecar { raw: true },
        Series::Direct(envelope_sized.clone()),
    ];
    let mut rates = vec![Vec::with_capacity(rounds); series.len()];
    // CPU seconds each series cost the bench client, the sidecar and the broker: where a
    // series' time goes, not only how long it took.
    let processes = [std::process::id(), sidecar.pid(), broker.pid().unwrap_or(0)];
    let cpu_now = || {
        processes.map(|pid| {
            let (user, system) = cpu_seconds(pid);
            user + system
        })
    };
    let mut cpu = vec![[0.0; 3]; series.len()];
    for round in 0..rounds {
        for offset in 0..series.len() {
            let index = (round + offset) % series.len();
            let before = cpu_now();
            let rate = match &series[index] {
                Series::Direct(payload) => direct_batch(&producer, payload, batch).await?,
                Series::Sidecar { raw } => {
                    sidecar_batch(&mut client, &payload, *raw, batch).await?
                }
            };
            for ((total, after), before) in cpu[index].iter_mut().zip(cpu_now()).zip(before) {
                *total += after - before;
            }
            rates[index].push(rate);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let ratio = |of: usize, to: usize| {
        let mut ratios: Vec<f64> = rates[of]
            .iter()
            .zip(&rates[to])
            .map(|(of, to)| of / to)
            .collect();
        100.0 * median(&mut ratios)
    };
    let (cloud_events, raw, same_bytes) = (ratio(1, 0), ratio(2, 0), ratio(1, 3));
    let medians: Vec<f64> = rates
        .iter()
        .map(|rates| median(&mut rates.clone()))
        .collect();

    let (sidecar50, sidecar99) = (
        percentile(&mut sidecar_samples, 0.5),
        percentile(&mut sidecar_samples, 0.99),
    );
    let (direct50, direct99) = (
        percentile(&mut direct_samples, 0.5),
        percentile(&mut direct_samples, 0.99),
    );
    println!(
        "publish benchmark: {iterations} sequential publishes of 100 bytes, then {rounds} rounds of four {batch}-entry bulk series"
    );
    println!("{:<28} {:>10} {:>10}", "single publish", "p50 µs", "p99 µs");
    println!(
        "{:<28} {:>10.1} {:>10.1}",
        "direct rdkafka producer", direct50, direct99
    );
    println!(
        "{:<28} {:>10.1} {:>10.1}",
        "gRPC PublishEvent", sidecar50, sidecar99
    );
    let (memory50, memory99) = (
        percentile(&mut memory_samples, 0.5),
        percentile(&mut memory_samples, 0.99),
    );
    println!(
        "{:<28} {:>10.1} {:>10.1}   (the sidecar hop with no broker: the floor of the overhead)",
        "gRPC PublishEvent, in-memory", memory50, memory99
    );
    println!(
        "{:<28} {:>10.1} {:>10.1}   (any local process's round trip before it does anything)",
        "100-byte TCP echo, loopback",
        percentile(&mut echo_samples, 0.5),
        percentile(&mut echo_samples, 0.99)
    );
    println!(
        "overhead p50 {:+.1} µs, p99 {:+.1} µs (target p50 <= +50 µs: {})",
        sidecar50 - direct50,
        sidecar99 - direct99,
        if sidecar50 - direct50 <= 50.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "bulk, {rounds} rounds of {batch}-entry batches    msg/s (median)   vs direct (median of per-round ratios)"
    );
    println!(
        "{:<48} {:>10.0}",
        "direct rdkafka producer, 100-byte events", medians[0]
    );
    println!(
        "{:<48} {:>10.0}   {:>5.0}%  (target >= 80%: {})",
        "sidecar BulkPublishEvent (CloudEvents)",
        medians[1],
        cloud_events,
        if cloud_events >= 80.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "{:<48} {:>10.0}   {:>5.0}%  (rawPayload: the same bytes on the wire as direct)",
        "sidecar BulkPublishEvent (rawPayload)", medians[2], raw
    );
    println!(
        "{:<48} {:>10.0}   {:>5.0}%  (the sidecar's CloudEvents against direct with the same bytes)",
        format!(
            "direct rdkafka producer, {}-byte events",
            envelope_sized.len()
        ),
        medians[3],
        same_bytes
    );
    println!(
        "CPU ms per {batch}-entry batch (from /proc, 10 ms ticks summed over {rounds} rounds): client / sidecar / broker"
    );
    let labels = [
        "direct, 100-byte events",
        "sidecar, CloudEvents",
        "sidecar, rawPayload",
        "direct, envelope-sized events",
    ];
    for (label, [client, sidecar, broker]) in labels.iter().zip(&cpu) {
        let per_batch = |seconds: f64| 1000.0 * seconds / rounds as f64;
        println!(
            "  {label:<32} {:>6.2} / {:>6.2} / {:>6.2}",
            per_batch(*client),
            per_batch(*sidecar),
            per_batch(*broker)
        );
    }
    Ok(())
}
