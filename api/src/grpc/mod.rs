//! The gRPC API: `dapr.proto.runtime.v1.Dapr`, served with the types the `dapr` crate generates.

mod invoke;
mod proxy;
mod status;
mod subscribe;
pub mod topic_event;
mod unimplemented;

use std::collections::HashMap;
use std::pin::Pin;

use bytes::Bytes;
use dapr::dapr::proto::common::v1 as common;
use dapr::dapr::proto::runtime::v1 as runtime;
use dapr::dapr::proto::runtime::v1::dapr_server::{Dapr, DaprServer};
use futures::Stream;
use outrigger_components::state::{Concurrency, Consistency};
use tonic::{Request, Response, Status, Streaming};

pub use self::proxy::ProxyLayer;
pub use self::status::to_status;
use self::unimplemented::unimplemented_methods;
use crate::context::ApiContext;
use crate::error::ApiError;
use crate::metadata::MetadataView;
use crate::pubsub::{BulkEntryInput, PublishInput, TraceContext};
use crate::state::{DeleteItem, SaveItem, TransactionStep};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Dapr gRPC service over the shared API context.
pub struct DaprGrpc {
    context: ApiContext,
}

impl DaprGrpc {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

/// The tonic service with the API token check in front and the body limit applied.
pub fn service(
    context: ApiContext,
) -> tonic::service::interceptor::InterceptedService<DaprServer<DaprGrpc>, TokenCheck> {
    let limit = context.max_body_size;
    let check = TokenCheck {
        context: context.clone(),
    };
    let server = DaprServer::new(DaprGrpc::new(context))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    tonic::service::interceptor::InterceptedService::new(server, check)
}

/// Rejects calls without the configured `dapr-api-token` metadata.
#[derive(Clone)]
pub struct TokenCheck {
    context: ApiContext,
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("dapr-api-token")
            .map(|value| value.as_bytes());
        if self.context.token_matches(presented) {
            Ok(request)
        } else {
            Err(to_status(&ApiError::Unauthenticated))
        }
    }
}

fn concurrency_from(options: Option<&common::StateOptions>) -> Concurrency {
    let first_write = common::state_options::StateConcurrency::ConcurrencyFirstWrite as i32;
    match options {
        Some(options) if options.concurrency == first_write => Concurrency::FirstWrite,
        _ => Concurrency::LastWrite,
    }
}

fn consistency_from(value: i32) -> Consistency {
    if value == common::state_options::StateConsistency::ConsistencyStrong as i32 {
        Consistency::Strong
    } else {
        Consistency::Eventual
    }
}

fn save_item(item: common::StateItem) -> SaveItem {
    SaveItem {
        concurrency: concurrency_from(item.options.as_ref()),
        consistency: consistency_from(
            item.options
                .as_ref()
                .map_or(0, |options| options.consistency),
        ),
        key: item.key,
        value: Bytes::from(item.value),
        etag: item.etag.map(|etag| etag.value),
        metadata: item.metadata,
    }
}

fn delete_item(
    key: String,
    etag: Option<common::Etag>,
    options: Option<common::StateOptions>,
    metadata: HashMap<String, String>,
) -> DeleteItem {
    DeleteItem {
        concurrency: concurrency_from(options.as_ref()),
        consistency: consistency_from(options.as_ref().map_or(0, |options| options.consistency)),
        key,
        etag: etag.map(|etag| etag.value),
        metadata,
    }
}

fn transaction_step(
    operation: runtime::TransactionalStateOperation,
) -> Result<TransactionStep, ApiError> {
    let item = operation
        .request
        .ok_or_else(|| ApiError::malformed("transaction operation is missing its request"))?;
    match operation.operation_type.as_str() {
        "upsert" => Ok(TransactionStep::Upsert(save_item(item))),
        "delete" => Ok(TransactionStep::Delete(delete_item(
            item.key,
            item.etag,
            item.options,
            item.metadata,
        ))),
        other => Err(ApiError::UnsupportedTransactionOperation {
            operation: other.to_string(),
        }),
    }
}

fn trace_context(metadata: &tonic::metadata::MetadataMap) -> TraceContext {
    let text = |name: &str| {
        metadata
            .get(name)
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(str::to_string)
    };
    TraceContext {
        traceparent: text("traceparent"),
        tracestate: text("tracestate"),
    }
}

impl DaprGrpc {
    /// Both bulk publish method names: failed entries are reported in the response.
    async fn bulk_publish(
        &self,
        request: Request<runtime::BulkPublishRequest>,
    ) -> Result<Response<runtime::BulkPublishResponse>, Status> {
        let trace = trace_context(request.metadata());
        let request = request.into_inner();
        let request_metadata = request.metadata;
        let entries = request
            .entries
            .into_iter()
            .map(|entry| {
                let mut metadata = entry.metadata;
                for (name, value) in &request_metadata {
                    metadata
                        .entry(name.clone())
                        .or_insert_with(|| value.clone());
                }
                BulkEntryInput {
                    entry_id: entry.entry_id,
                    event: PublishInput {
                        data: Bytes::from(entry.event),
                        content_type: Some(entry.content_type)
                            .filter(|content_type| !content_type.is_empty()),
                        metadata,
                    },
                }
            })
            .collect();
        let failures = self
            .context
            .pubsub
            .bulk_publish(&request.pubsub_name, &request.topic, entries, &trace)
            .await?;
        Ok(Response::new(runtime::BulkPublishResponse {
            failed_entries: failures
                .into_iter()
                .map(|failure| runtime::BulkPublishResponseFailedEntry {
                    entry_id: failure.entry_id,
                    error: failure.error,
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl Dapr for DaprGrpc {
    async fn invoke_service(
        &self,
        request: Request<runtime::InvokeServiceRequest>,
    ) -> Result<Response<common::InvokeResponse>, Status> {
        invoke::invoke_service(&self.context, request).await
    }

    async fn get_state(
        &self,
        request: Request<runtime::GetStateRequest>,
    ) -> Result<Response<runtime::GetStateResponse>, Status> {
        let request = request.into_inner();
        let item = self
            .context
            .state
            .get(
                &request.store_name,
                &request.key,
                consistency_from(request.consistency),
                request.metadata,
            )
            .await?;
        Ok(Response::new(match item {
            Some(item) => runtime::GetStateResponse {
                data: item.value.to_vec(),
                etag: item.etag.unwrap_or_default(),
                metadata: item.metadata,
            },
            None => runtime::GetStateResponse::default(),
        }))
    }

    async fn get_bulk_state(
        &self,
        request: Request<runtime::GetBulkStateRequest>,
    ) -> Result<Response<runtime::GetBulkStateResponse>, Status> {
        let request = request.into_inner();
        let items = self
            .context
            .state
            .bulk_get(&request.store_name, request.keys)
            .await?;
        let items = items
            .into_iter()
            .map(|item| match item.result {
                Ok(Some(found)) => runtime::BulkStateItem {
                    key: item.key,
                    data: found.value.to_vec(),
                    etag: found.etag.unwrap_or_default(),
                    error: String::new(),
                    metadata: found.metadata,
                },
                Ok(None) => runtime::BulkStateItem {
                    key: item.key,
                    ..Default::default()
                },
                Err(error) => runtime::BulkStateItem {
                    key: item.key,
                    error,
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(runtime::GetBulkStateResponse { items }))
    }

    async fn save_state(
        &self,
        request: Request<runtime::SaveStateRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let items = request.states.into_iter().map(save_item).collect();
        self.context.state.save(&request.store_name, items).await?;
        Ok(Response::new(()))
    }

    async fn delete_state(
        &self,
        request: Request<runtime::DeleteStateRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let item = delete_item(request.key, request.etag, request.options, request.metadata);
        self.context.state.delete(&request.store_name, item).await?;
        Ok(Response::new(()))
    }

    async fn delete_bulk_state(
        &self,
        request: Request<runtime::DeleteBulkStateRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let items = request
            .states
            .into_iter()
            .map(|item| delete_item(item.key, item.etag, item.options, item.metadata))
            .collect();
        self.context
            .state
            .delete_bulk(&request.store_name, items)
            .await?;
        Ok(Response::new(()))
    }

    async fn execute_state_transaction(
        &self,
        request: Request<runtime::ExecuteStateTransactionRequest>,
    ) -> Result<Response<()>, Status> {
        let request = request.into_inner();
        let steps = request
            .operations
            .into_iter()
            .map(transaction_step)
            .collect::<Result<Vec<_>, _>>()?;
        self.context
            .state
            .transact(&request.store_name, steps)
            .await?;
        Ok(Response::new(()))
    }

    async fn get_metadata(
        &self,
        _request: Request<runtime::GetMetadataRequest>,
    ) -> Result<Response<runtime::GetMetadataResponse>, Status> {
        let view = MetadataView::of(&self.context);
        Ok(Response::new(runtime::GetMetadataResponse {
            id: view.id,
            runtime_version: view.runtime_version,
            enabled_features: view.enabled_features,
            registered_components: view
                .components
                .into_iter()
                .map(|component| runtime::RegisteredComponents {
                    name: component.name,
                    r#type: component.component_type,
                    version: component.version,
                    capabilities: component.capabilities,
                })
                .collect(),
            extended_metadata: view.extended.into_iter().collect(),
            app_connection_properties: Some(runtime::AppConnectionProperties {
                port: view.app_connection_properties.port.map_or(0, i32::from),
                protocol: view.app_connection_properties.protocol,
                channel_address: view.app_connection_properties.channel_address,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn shutdown(
        &self,
        _request: Request<runtime::ShutdownRequest>,
    ) -> Result<Response<()>, Status> {
        tracing::info!("shutdown requested through the gRPC API");
        self.context.shutdown.cancel();
        Ok(Response::new(()))
    }

    async fn publish_event(
        &self,
        request: Request<runtime::PublishEventRequest>,
    ) -> Result<Response<()>, Status> {
        let trace = trace_context(request.metadata());
        let request = request.into_inner();
        let input = PublishInput {
            data: Bytes::from(request.data),
            content_type: Some(request.data_content_type)
                .filter(|content_type| !content_type.is_empty()),
            metadata: request.metadata,
        };
        self.context
            .pubsub
            .publish(&request.pubsub_name, &request.topic, input, &trace)
            .await?;
        Ok(Response::new(()))
    }

    async fn bulk_publish_event(
        &self,
        request: Request<runtime::BulkPublishRequest>,
    ) -> Result<Response<runtime::BulkPublishResponse>, Status> {
        self.bulk_publish(request).await
    }

    async fn bulk_publish_event_alpha1(
        &self,
        request: Request<runtime::BulkPublishRequest>,
    ) -> Result<Response<runtime::BulkPublishResponse>, Status> {
        self.bulk_publish(request).await
    }

    async fn invoke_binding(
        &self,
        request: Request<runtime::InvokeBindingRequest>,
    ) -> Result<Response<runtime::InvokeBindingResponse>, Status> {
        let request = request.into_inner();
        let response = self
            .context
            .bindings
            .invoke(
                &request.name,
                outrigger_components::bindings::InvokeRequest {
                    operation: request.operation,
                    data: Bytes::from(request.data),
                    metadata: request.metadata,
                },
            )
            .await?;
        Ok(Response::new(runtime::InvokeBindingResponse {
            data: response.data.to_vec(),
            metadata: response.metadata,
        }))
    }

    async fn subscribe_topic_events_alpha1(
        &self,
        request: Request<Streaming<runtime::SubscribeTopicEventsRequestAlpha1>>,
    ) -> Result<Response<Self::SubscribeTopicEventsAlpha1Stream>, Status> {
        let stream = subscribe::open(self.context.clone(), request.into_inner()).await?;
        Ok(Response::new(stream))
    }

    type SubscribeTopicEventsAlpha1Stream =
        ResponseStream<runtime::SubscribeTopicEventsResponseAlpha1>;
    type SubscribeConfigurationAlpha1Stream =
        ResponseStream<runtime::SubscribeConfigurationResponse>;
    type SubscribeConfigurationStream = ResponseStream<runtime::SubscribeConfigurationResponse>;
    type EncryptAlpha1Stream = ResponseStream<runtime::EncryptResponse>;
    type DecryptAlpha1Stream = ResponseStream<runtime::DecryptResponse>;

    unimplemented_methods! {
        query_state_alpha1("QueryStateAlpha1", runtime::QueryStateRequest) -> runtime::QueryStateResponse;
        get_secret("GetSecret", runtime::GetSecretRequest) -> runtime::GetSecretResponse;
        get_bulk_secret("GetBulkSecret", runtime::GetBulkSecretRequest) -> runtime::GetBulkSecretResponse;
        register_actor_timer("RegisterActorTimer", runtime::RegisterActorTimerRequest) -> ();
        unregister_actor_timer("UnregisterActorTimer", runtime::UnregisterActorTimerRequest) -> ();
        register_actor_reminder("RegisterActorReminder", runtime::RegisterActorReminderRequest) -> ();
        unregister_actor_reminder("UnregisterActorReminder", runtime::UnregisterActorReminderRequest) -> ();
        unregister_actor_reminders_by_type("UnregisterActorRemindersByType", runtime::UnregisterActorRemindersByTypeRequest) -> runtime::UnregisterActorRemindersByTypeResponse;
        list_actor_reminders("ListActorReminders", runtime::ListActorRemindersRequest) -> runtime::ListActorRemindersResponse;
        get_actor_state("GetActorState", runtime::GetActorStateRequest) -> runtime::GetActorStateResponse;
        get_actor_reminder("GetActorReminder", runtime::GetActorReminderRequest) -> runtime::GetActorReminderResponse;
        execute_actor_state_transaction("ExecuteActorStateTransaction", runtime::ExecuteActorStateTransactionRequest) -> ();
        invoke_actor("InvokeActor", runtime::InvokeActorRequest) -> runtime::InvokeActorResponse;
        get_configuration_alpha1("GetConfigurationAlpha1", runtime::GetConfigurationRequest) -> runtime::GetConfigurationResponse;
        get_configuration("GetConfiguration", runtime::GetConfigurationRequest) -> runtime::GetConfigurationResponse;
        subscribe_configuration_alpha1("SubscribeConfigurationAlpha1", runtime::SubscribeConfigurationRequest) -> Self::SubscribeConfigurationAlpha1Stream;
        subscribe_configuration("SubscribeConfiguration", runtime::SubscribeConfigurationRequest) -> Self::SubscribeConfigurationStream;
        unsubscribe_configuration_alpha1("UnsubscribeConfigurationAlpha1", runtime::UnsubscribeConfigurationRequest) -> runtime::UnsubscribeConfigurationResponse;
        unsubscribe_configuration("UnsubscribeConfiguration", runtime::UnsubscribeConfigurationRequest) -> runtime::UnsubscribeConfigurationResponse;
        try_lock_alpha1("TryLockAlpha1", runtime::TryLockRequest) -> runtime::TryLockResponse;
        unlock_alpha1("UnlockAlpha1", runtime::UnlockRequest) -> runtime::UnlockResponse;
        encrypt_alpha1("EncryptAlpha1", Streaming<runtime::EncryptRequest>) -> Self::EncryptAlpha1Stream;
        decrypt_alpha1("DecryptAlpha1", Streaming<runtime::DecryptRequest>) -> Self::DecryptAlpha1Stream;
        set_metadata("SetMetadata", runtime::SetMetadataRequest) -> ();
        subtle_get_key_alpha1("SubtleGetKeyAlpha1", runtime::SubtleGetKeyRequest) -> runtime::SubtleGetKeyResponse;
        subtle_encrypt_alpha1("SubtleEncryptAlpha1", runtime::SubtleEncryptRequest) -> runtime::SubtleEncryptResponse;
        subtle_decrypt_alpha1("SubtleDecryptAlpha1", runtime::SubtleDecryptRequest) -> runtime::SubtleDecryptResponse;
        subtle_wrap_key_alpha1("SubtleWrapKeyAlpha1", runtime::SubtleWrapKeyRequest) -> runtime::SubtleWrapKeyResponse;
        subtle_unwrap_key_alpha1("SubtleUnwrapKeyAlpha1", runtime::SubtleUnwrapKeyRequest) -> runtime::SubtleUnwrapKeyResponse;
        subtle_sign_alpha1("SubtleSignAlpha1", runtime::SubtleSignRequest) -> runtime::SubtleSignResponse;
        subtle_verify_alpha1("SubtleVerifyAlpha1", runtime::SubtleVerifyRequest) -> runtime::SubtleVerifyResponse;
        start_workflow_alpha1("StartWorkflowAlpha1", runtime::StartWorkflowRequest) -> runtime::StartWorkflowResponse;
        get_workflow_alpha1("GetWorkflowAlpha1", runtime::GetWorkflowRequest) -> runtime::GetWorkflowResponse;
        purge_workflow_alpha1("PurgeWorkflowAlpha1", runtime::PurgeWorkflowRequest) -> ();
        terminate_workflow_alpha1("TerminateWorkflowAlpha1", runtime::TerminateWorkflowRequest) -> ();
        pause_workflow_alpha1("PauseWorkflowAlpha1", runtime::PauseWorkflowRequest) -> ();
        resume_workflow_alpha1("ResumeWorkflowAlpha1", runtime::ResumeWorkflowRequest) -> ();
        raise_event_workflow_alpha1("RaiseEventWorkflowAlpha1", runtime::RaiseEventWorkflowRequest) -> ();
        start_workflow_beta1("StartWorkflowBeta1", runtime::StartWorkflowRequest) -> runtime::StartWorkflowResponse;
        get_workflow_beta1("GetWorkflowBeta1", runtime::GetWorkflowRequest) -> runtime::GetWorkflowResponse;
        purge_workflow_beta1("PurgeWorkflowBeta1", runtime::PurgeWorkflowRequest) -> ();
        terminate_workflow_beta1("TerminateWorkflowBeta1", runtime::TerminateWorkflowRequest) -> ();
        pause_workflow_beta1("PauseWorkflowBeta1", runtime::PauseWorkflowRequest) -> ();
        resume_workflow_beta1("ResumeWorkflowBeta1", runtime::ResumeWorkflowRequest) -> ();
        raise_event_workflow_beta1("RaiseEventWorkflowBeta1", runtime::RaiseEventWorkflowRequest) -> ();
        schedule_job_alpha1("ScheduleJobAlpha1", runtime::ScheduleJobRequest) -> runtime::ScheduleJobResponse;
        schedule_job("ScheduleJob", runtime::ScheduleJobRequest) -> runtime::ScheduleJobResponse;
        get_job_alpha1("GetJobAlpha1", runtime::GetJobRequest) -> runtime::GetJobResponse;
        get_job("GetJob", runtime::GetJobRequest) -> runtime::GetJobResponse;
        delete_job_alpha1("DeleteJobAlpha1", runtime::DeleteJobRequest) -> runtime::DeleteJobResponse;
        delete_job("DeleteJob", runtime::DeleteJobRequest) -> runtime::DeleteJobResponse;
        delete_jobs_by_prefix_alpha1("DeleteJobsByPrefixAlpha1", runtime::DeleteJobsByPrefixRequestAlpha1) -> runtime::DeleteJobsByPrefixResponseAlpha1;
        delete_jobs_by_prefix("DeleteJobsByPrefix", runtime::DeleteJobsByPrefixRequest) -> runtime::DeleteJobsByPrefixResponse;
        list_jobs_alpha1("ListJobsAlpha1", runtime::ListJobsRequestAlpha1) -> runtime::ListJobsResponseAlpha1;
        list_jobs("ListJobs", runtime::ListJobsRequest) -> runtime::ListJobsResponse;
        converse_alpha1("ConverseAlpha1", runtime::ConversationRequest) -> runtime::ConversationResponse;
        converse_alpha2("ConverseAlpha2", runtime::ConversationRequestAlpha2) -> runtime::ConversationResponseAlpha2;
        create_index_alpha1("CreateIndexAlpha1", runtime::CreateIndexRequestAlpha1) -> ();
        get_index_alpha1("GetIndexAlpha1", runtime::GetIndexRequestAlpha1) -> runtime::GetIndexResponseAlpha1;
        list_indexes_alpha1("ListIndexesAlpha1", runtime::ListIndexesRequestAlpha1) -> runtime::ListIndexesResponseAlpha1;
        delete_index_alpha1("DeleteIndexAlpha1", runtime::DeleteIndexRequestAlpha1) -> ();
        index_documents_alpha1("IndexDocumentsAlpha1", runtime::IndexDocumentsRequestAlpha1) -> runtime::IndexDocumentsResponseAlpha1;
        get_documents_alpha1("GetDocumentsAlpha1", runtime::GetDocumentsRequestAlpha1) -> runtime::GetDocumentsResponseAlpha1;
        delete_documents_alpha1("DeleteDocumentsAlpha1", runtime::DeleteDocumentsRequestAlpha1) -> runtime::DeleteDocumentsResponseAlpha1;
        search_alpha1("SearchAlpha1", runtime::SearchRequestAlpha1) -> runtime::SearchResponseAlpha1;
        create_collection_alpha1("CreateCollectionAlpha1", runtime::CreateCollectionRequestAlpha1) -> ();
        get_collection_alpha1("GetCollectionAlpha1", runtime::GetCollectionRequestAlpha1) -> runtime::GetCollectionResponseAlpha1;
        list_collections_alpha1("ListCollectionsAlpha1", runtime::ListCollectionsRequestAlpha1) -> runtime::ListCollectionsResponseAlpha1;
        delete_collection_alpha1("DeleteCollectionAlpha1", runtime::DeleteCollectionRequestAlpha1) -> ();
        upsert_vectors_alpha1("UpsertVectorsAlpha1", runtime::UpsertVectorsRequestAlpha1) -> runtime::UpsertVectorsResponseAlpha1;
        delete_vectors_alpha1("DeleteVectorsAlpha1", runtime::DeleteVectorsRequestAlpha1) -> runtime::DeleteVectorsResponseAlpha1;
        get_vectors_alpha1("GetVectorsAlpha1", runtime::GetVectorsRequestAlpha1) -> runtime::GetVectorsResponseAlpha1;
        query_vectors_alpha1("QueryVectorsAlpha1", runtime::QueryVectorsRequestAlpha1) -> runtime::QueryVectorsResponseAlpha1;
        batch_query_vectors_alpha1("BatchQueryVectorsAlpha1", runtime::BatchQueryVectorsRequestAlpha1) -> runtime::BatchQueryVectorsResponseAlpha1;
    }
}
