//! Subscriptions: which topics this app receives, opened on the pub/sub components and kept
//! in step with component reloads.

pub mod binding_delivery;
pub mod delivery;
pub mod spec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use outrigger_components::ComponentRegistry;
use outrigger_components::pubsub::{SubscribeRequest, Subscription};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::binding_delivery::AppBindingDelivery;
use self::delivery::AppDelivery;
use self::spec::SubscriptionSpec;
use crate::app_channel::AppChannel;

/// Opens the app's subscriptions once it is up and re-opens them when components change.
pub struct SubscriptionManager {
    pub app_id: String,
    pub registry: Arc<ComponentRegistry>,
    pub channel: Option<AppChannel>,
    pub resources_paths: Vec<PathBuf>,
    /// Set once the app answers (or at once without `--app-port`).
    pub app_ready: watch::Sender<bool>,
    /// Inbound policies apply to delivery to the app.
    pub resiliency: Arc<outrigger_api::resiliency::Resiliency>,
    /// How often `kind: Subscription` files are re-read (hot reload).
    pub poll_interval: std::time::Duration,
}

impl SubscriptionManager {
    pub async fn run(self, stop: CancellationToken) {
        if let Some(channel) = &self.channel
            && !channel.wait_until_reachable(&stop).await
        {
            return;
        }
        self.app_ready.send_replace(true);
        let mut changes = self.registry.changes();
        changes.mark_unchanged();
        let mut declared = self.declarative();
        let mut open = self.open_all().await;
        let mut ticker = tokio::time::interval(self.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reopen = tokio::select! {
                () = stop.cancelled() => break,
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // A component was added, replaced or removed.
                    true
                }
                _ = ticker.tick() => {
                    let now = self.declarative();
                    let changed = now != declared;
                    declared = now;
                    changed
                }
            };
            if reopen {
                // Re-open everything on the current components and subscriptions. Messages in
                // flight stay unacknowledged and come back.
                close_all(std::mem::take(&mut open)).await;
                open = self.open_all().await;
            }
        }
        // Shutdown: stop pulling first; deliveries in flight finish inside close().
        close_all(open).await;
    }

    async fn specs(&self) -> Vec<SubscriptionSpec> {
        let mut by_topic: HashMap<(String, String), SubscriptionSpec> = HashMap::new();
        for spec in self.declarative() {
            by_topic.insert((spec.pubsub.clone(), spec.topic.clone()), spec);
        }
        // A programmatic subscription replaces a declarative one for the same topic, as in Dapr.
        for spec in self.programmatic().await {
            by_topic.insert((spec.pubsub.clone(), spec.topic.clone()), spec);
        }
        let mut specs: Vec<_> = by_topic.into_values().collect();
        specs
            .sort_by(|left, right| (&left.pubsub, &left.topic).cmp(&(&right.pubsub, &right.topic)));
        specs
    }

    fn declarative(&self) -> Vec<SubscriptionSpec> {
        let mut specs = Vec::new();
        for directory in &self.resources_paths {
            let Ok(entries) = std::fs::read_dir(directory) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .collect();
            files.sort();
            for file in files {
                if !matches!(
                    file.extension().and_then(|extension| extension.to_str()),
                    Some("yaml" | "yml")
                ) {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&file) else {
                    continue;
                };
                match spec::from_yaml_file(&file, &text, &self.app_id) {
                    Ok(found) => specs.extend(found),
                    Err(error) => tracing::error!("subscription rejected: {error}"),
                }
            }
        }
        specs
    }

    async fn programmatic(&self) -> Vec<SubscriptionSpec> {
        let result = match &self.channel {
            None => return Vec::new(),
            Some(AppChannel::Http(channel)) => match channel.get("/dapr/subscribe").await {
                Ok(response) if (200..300).contains(&response.status) => {
                    spec::from_app_json(&response.body)
                }
                Ok(response) if response.status == 404 => Ok(Vec::new()),
                Ok(response) => Err(format!("GET /dapr/subscribe answered {}", response.status)),
                Err(error) => Err(error),
            },
            Some(AppChannel::Grpc(channel)) => {
                let (mut client, request) = channel.call(());
                match client.list_topic_subscriptions(request).await {
                    Ok(response) => spec::from_grpc(response.into_inner().subscriptions),
                    Err(status) if status.code() == tonic::Code::Unimplemented => Ok(Vec::new()),
                    Err(status) => Err(format!(
                        "AppCallback.ListTopicSubscriptions failed: {status}"
                    )),
                }
            }
        };
        result.unwrap_or_else(|error| {
            tracing::error!("{error}; no programmatic subscriptions");
            Vec::new()
        })
    }

    async fn open_all(&self) -> Vec<Subscription> {
        let mut open = self.open_subscriptions().await;
        open.extend(self.open_input_bindings().await);
        open
    }

    /// Starts every input binding, delivering its events to `POST /{binding-name}` on the app.
    async fn open_input_bindings(&self) -> Vec<Subscription> {
        let mut open = Vec::new();
        for binding in self.registry.bindings() {
            let Some(input) = &binding.input else {
                continue;
            };
            let name = binding.info.name.clone();
            let Some(channel) = &self.channel else {
                tracing::error!(binding = %name, "input binding declared but no --app-port is given to deliver its events to");
                continue;
            };
            let handler = std::sync::Arc::new(AppBindingDelivery {
                channel: channel.clone(),
                binding: name.clone(),
            });
            match input.read(handler).await {
                Ok(subscription) => {
                    tracing::info!(binding = %name, "input binding started");
                    open.push(subscription);
                }
                Err(error) => {
                    tracing::error!(binding = %name, "cannot start input binding: {error}")
                }
            }
        }
        open
    }

    async fn open_subscriptions(&self) -> Vec<Subscription> {
        let mut open = Vec::new();
        let specs = self.specs().await;
        if specs.is_empty() {
            return open;
        }
        let Some(channel) = &self.channel else {
            tracing::error!(
                "subscriptions are declared but no --app-port is given to deliver them to"
            );
            return open;
        };
        for spec in specs {
            let Some(registered) = self.registry.pubsub(&spec.pubsub) else {
                tracing::error!(subscription = %spec.origin, pubsub = %spec.pubsub, "subscription to an unknown pub/sub: not opened");
                continue;
            };
            let spec = Arc::new(spec);
            let handler = Arc::new(AppDelivery {
                channel: channel.clone(),
                spec: Arc::clone(&spec),
                pubsub: Arc::clone(&registered.pubsub),
                policy: self.resiliency.inbound(&spec.pubsub),
            });
            let request = SubscribeRequest {
                topic: spec.topic.clone(),
                metadata: spec.metadata.clone(),
            };
            match registered.pubsub.subscribe(request, handler).await {
                Ok(subscription) => {
                    tracing::info!(pubsub = %spec.pubsub, topic = %spec.topic, "subscribed");
                    open.push(subscription);
                }
                Err(error) => {
                    tracing::error!(subscription = %spec.origin, "cannot subscribe: {error}")
                }
            }
        }
        open
    }
}

async fn close_all(subscriptions: Vec<Subscription>) {
    futures::future::join_all(subscriptions.into_iter().map(Subscription::close)).await;
}
