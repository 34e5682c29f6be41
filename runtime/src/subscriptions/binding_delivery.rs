//! Delivering input binding events to the app: `POST /{binding-name}`; a 2xx answer accepts.

use async_trait::async_trait;
use outrigger_components::bindings::{BindingEvent, BindingEventHandler};

use dapr::dapr::proto::runtime::v1 as runtime;

use crate::app_channel::AppChannel;

pub struct AppBindingDelivery {
    pub channel: AppChannel,
    pub binding: String,
}

#[async_trait]
impl BindingEventHandler for AppBindingDelivery {
    async fn handle(&self, event: BindingEvent) -> bool {
        let channel = match &self.channel {
            AppChannel::Http(channel) => channel,
            AppChannel::Grpc(channel) => {
                let (mut client, request) = channel.call(runtime::BindingEventRequest {
                    name: self.binding.clone(),
                    data: event.data.to_vec(),
                    metadata: event.metadata,
                });
                return match client.on_binding_event(request).await {
                    Ok(_) => true,
                    Err(status) => {
                        tracing::warn!(binding = %self.binding, "AppCallback.OnBindingEvent failed: {status}");
                        false
                    }
                };
            }
        };
        let headers: Vec<(String, String)> = event.metadata.into_iter().collect();
        let path = format!("/{}", self.binding);
        match channel
            .post(&path, "application/json", event.data, &headers)
            .await
        {
            Ok(response) if (200..300).contains(&response.status) => true,
            Ok(response) => {
                tracing::warn!(binding = %self.binding, status = response.status, "the app refused an input binding event");
                false
            }
            Err(error) => {
                tracing::warn!(binding = %self.binding, "{error}");
                false
            }
        }
    }
}
