//! Benchmark: publishing through the sidecar (gRPC PublishEvent, BulkPublishEvent) against a
//! direct rdkafka producer to the same Kafka-protocol broker, in the same run.
//!
//!   cargo build --release -p outrigger-runtime
//!   cargo run --release -p outrigger-e2e --bin publish-bench [-- ITERATIONS [BULK_ROUNDS]]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use outrigger_client::{OutriggerClient, runtime};
use outrigger_test_harness::{KafkaBroker, SidecarBuilder, outrigger_binary};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn percentile(samples: &mut [Duration], fraction: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * fraction).round() as usize;
    samples
        .get(index)
        .map_or(0.0, |sample| sample.as_secs_f64() * 1e6)
}

#[tokio::main]
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
    let (mut sidecar_samples, mut direct_samples, mut memory_samples) =
        (Vec::new(), Vec::new(), Vec::new());
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
        if round >= iterations / 10 {
            sidecar_samples.push(through_sidecar);
            direct_samples.push(straight);
            memory_samples.push(hop_alone);
        }
    }
    // Bulk throughput: several batches each way, alternating, compared by their medians (one
    // batch alone swings with the broker's own pauses).
    let batch = 1000;
    let rounds: usize = std::env::args()
        .nth(2)
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(7);
    let (mut sidecar_rates, mut direct_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let response = client
            .raw()
            .bulk_publish_event(runtime::BulkPublishRequest {
                pubsub_name: "kafka".into(),
                topic: "bench".into(),
                entries: (0..batch)
                    .map(|index| runtime::BulkPublishRequestEntry {
                        entry_id: index.to_string(),
                        event: payload.clone(),
                        content_type: "text/plain".into(),
                        metadata: HashMap::new(),
                    })
                    .collect(),
                metadata: HashMap::new(),
            })
            .await?
            .into_inner();
        anyhow::ensure!(
            response.failed_entries.is_empty(),
            "bulk publish failures: {:?}",
            response.failed_entries
        );
        sidecar_rates.push(f64::from(batch) / started.elapsed().as_secs_f64());
        let started = Instant::now();
        let sends: Vec<_> = (0..batch).map(|_| direct(&producer)).collect();
        for result in futures::future::join_all(sends).await {
            result?;
        }
        direct_rates.push(f64::from(batch) / started.elapsed().as_secs_f64());
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let sidecar_rate = median(&mut sidecar_rates);
    let direct_rate = median(&mut direct_rates);

    let (sidecar50, sidecar99) = (
        percentile(&mut sidecar_samples, 0.5),
        percentile(&mut sidecar_samples, 0.99),
    );
    let (direct50, direct99) = (
        percentile(&mut direct_samples, 0.5),
        percentile(&mut direct_samples, 0.99),
    );
    println!(
        "publish benchmark: {iterations} sequential publishes of 100 bytes, then {rounds} batches of {batch} each way"
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
        "bulk (median of {rounds} batches): direct {direct_rate:.0} msg/s, sidecar BulkPublishEvent {sidecar_rate:.0} msg/s, ratio {:.0}% (target >= 80%)",
        100.0 * sidecar_rate / direct_rate
    );
    Ok(())
}
