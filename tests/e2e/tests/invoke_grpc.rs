//! gRPC invocation through two sidecars: `InvokeService` to an HTTP app and to a gRPC app
//! (`AppCallback.OnInvoke`), and gRPC proxy mode with a real bidirectional-streaming service.

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use outrigger_client::{common, prost_types, runtime};
use outrigger_e2e::mesh::{
    VersionApp, discovery_response, route_config, start_sidecar, static_cluster, wait_ready,
    write_xds_file,
};
use outrigger_runtime::RunningSidecar;
use outrigger_runtime::config::{AppProtocol, Config, XdsSource};
use outrigger_test_harness::TestAdsServer;
use runtime::app_callback_server::{AppCallback, AppCallbackServer};
use runtime::dapr_client::DaprClient;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

/// A caller sidecar whose `--xds-file` routes `app_id` to `target`'s mesh port.
async fn caller_routing_to(
    dir: &std::path::Path,
    app_id: &str,
    target: SocketAddr,
) -> RunningSidecar {
    let file = dir.join("xds.json");
    let resources = vec![
        static_cluster("target", &[target], json!({})),
        route_config(
            app_id,
            vec![json!({
                "match": { "prefix": "/" },
                "route": { "cluster": "target" },
                // The caller's address, as the gRPC API saw it.
                "requestHeadersToAdd": [
                    { "header": { "key": "x-client-ip", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" } },
                ],
            })],
        ),
    ];
    write_xds_file(&file, &discovery_response("1", resources));
    let caller = start_sidecar("caller", None, XdsSource::File(file)).await;
    assert!(wait_ready(&caller, Duration::from_secs(5)).await);
    caller
}

async fn dapr_client(sidecar: &RunningSidecar) -> DaprClient<tonic::transport::Channel> {
    DaprClient::connect(format!("http://{}", sidecar.grpc_address))
        .await
        .expect("connect to the caller sidecar")
}

fn invoke_request(
    app_id: &str,
    method: &str,
    verb: Option<common::http_extension::Verb>,
    query: &str,
    data: &[u8],
) -> runtime::InvokeServiceRequest {
    runtime::InvokeServiceRequest {
        id: app_id.into(),
        message: Some(common::InvokeRequest {
            method: method.into(),
            data: Some(prost_types::Any {
                type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
                value: data.to_vec(),
            }),
            content_type: "text/plain".into(),
            http_extension: verb.map(|verb| common::HttpExtension {
                verb: verb as i32,
                querystring: query.into(),
            }),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_service_reaches_an_http_app_with_verb_query_and_body() {
    let app = VersionApp::start("v1").await;
    let callee = start_sidecar("orders", Some(app.port), XdsSource::None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let caller = caller_routing_to(dir.path(), "orders", callee.mesh_address).await;
    let mut client = dapr_client(&caller).await;

    let answer = client
        .invoke_service(invoke_request(
            "orders",
            "orders/7",
            Some(common::http_extension::Verb::Put),
            "full=true",
            b"hello",
        ))
        .await
        .expect("InvokeService succeeds")
        .into_inner();
    let echoed: Value = serde_json::from_slice(&answer.data.expect("data").value).expect("JSON");
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["path"], "/orders/7?full=true");
    assert_eq!(echoed["body"], "hello");
    assert_eq!(echoed["headers"]["content-type"], "text/plain");
    assert_eq!(echoed["headers"]["dapr-caller-app-id"], "caller");
    assert_eq!(echoed["headers"]["x-client-ip"], "127.0.0.1");
    assert!(
        answer.content_type.starts_with("application/json")
            || answer.content_type.is_empty()
            || answer.content_type.starts_with("text/plain"),
        "{}",
        answer.content_type
    );

    // No verb: Dapr sends POST.
    let answer = client
        .invoke_service(invoke_request("orders", "orders", None, "", b"x"))
        .await
        .expect("InvokeService succeeds")
        .into_inner();
    let echoed: Value = serde_json::from_slice(&answer.data.expect("data").value).expect("JSON");
    assert_eq!(echoed["method"], "POST");

    // The app's 503 becomes UNAVAILABLE.
    let status = client
        .invoke_service(invoke_request(
            "orders",
            "status/503",
            Some(common::http_extension::Verb::Get),
            "",
            b"",
        ))
        .await
        .expect_err("a 503 answer is an error");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    // An unknown app id names the app id.
    let status = client
        .invoke_service(invoke_request("nobody", "x", None, "", b""))
        .await
        .expect_err("unknown app id");
    assert!(status.message().contains("nobody"), "{status:?}");
}

/// A gRPC app answering `OnInvoke` with what it received.
#[derive(Clone, Default)]
struct EchoApp;

#[tonic::async_trait]
impl AppCallback for EchoApp {
    async fn on_invoke(
        &self,
        request: Request<common::InvokeRequest>,
    ) -> Result<Response<common::InvokeResponse>, Status> {
        let caller = request
            .metadata()
            .get("dapr-caller-app-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let request = request.into_inner();
        if request.method == "missing" {
            return Err(Status::not_found("no such order"));
        }
        let data = request.data.unwrap_or_default();
        let extension = request.http_extension.unwrap_or_default();
        let reply = json!({
            "method": request.method,
            "type_url": data.type_url,
            "data": String::from_utf8_lossy(&data.value),
            "content_type": request.content_type,
            "verb": extension.verb,
            "query": extension.querystring,
            "caller": caller,
        });
        Ok(Response::new(common::InvokeResponse {
            data: Some(prost_types::Any {
                type_url: "type.googleapis.com/test.Echo".into(),
                value: reply.to_string().into_bytes(),
            }),
            content_type: "application/json".into(),
        }))
    }

    async fn list_topic_subscriptions(
        &self,
        _request: Request<()>,
    ) -> Result<Response<runtime::ListTopicSubscriptionsResponse>, Status> {
        Ok(Response::new(
            runtime::ListTopicSubscriptionsResponse::default(),
        ))
    }

    async fn on_topic_event(
        &self,
        _request: Request<runtime::TopicEventRequest>,
    ) -> Result<Response<runtime::TopicEventResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn list_input_bindings(
        &self,
        _request: Request<()>,
    ) -> Result<Response<runtime::ListInputBindingsResponse>, Status> {
        Ok(Response::new(runtime::ListInputBindingsResponse::default()))
    }

    async fn on_binding_event(
        &self,
        _request: Request<runtime::BindingEventRequest>,
    ) -> Result<Response<runtime::BindingEventResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn on_bulk_topic_event(
        &self,
        _request: Request<runtime::TopicEventBulkRequest>,
    ) -> Result<Response<runtime::TopicEventBulkResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    async fn on_job_event(
        &self,
        _request: Request<runtime::JobEventRequest>,
    ) -> Result<Response<runtime::JobEventResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

async fn start_grpc_app<S>(service: S) -> u16
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .expect("gRPC app serves");
    });
    port
}

async fn start_grpc_callee(app_id: &str, port: u16) -> RunningSidecar {
    let mut config = Config::for_test(app_id);
    config.app_port = Some(port);
    config.app_protocol = AppProtocol::Grpc;
    outrigger_e2e::start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_service_reaches_a_grpc_app_through_on_invoke() {
    let port = start_grpc_app(AppCallbackServer::new(EchoApp)).await;
    let callee = start_grpc_callee("inventory", port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let caller = caller_routing_to(dir.path(), "inventory", callee.mesh_address).await;
    let mut client = dapr_client(&caller).await;

    let answer = client
        .invoke_service(invoke_request(
            "inventory",
            "items/3",
            Some(common::http_extension::Verb::Get),
            "color=red",
            b"payload",
        ))
        .await
        .expect("InvokeService succeeds")
        .into_inner();
    let data = answer.data.expect("data");
    assert_eq!(data.type_url, "type.googleapis.com/test.Echo");
    assert_eq!(answer.content_type, "application/json");
    let echoed: Value = serde_json::from_slice(&data.value).expect("JSON");
    assert_eq!(echoed["method"], "items/3");
    assert_eq!(
        echoed["type_url"],
        "type.googleapis.com/google.protobuf.StringValue"
    );
    assert_eq!(echoed["data"], "payload");
    assert_eq!(echoed["content_type"], "text/plain");
    assert_eq!(echoed["verb"], common::http_extension::Verb::Get as i32);
    assert_eq!(echoed["query"], "color=red");
    assert_eq!(echoed["caller"], "caller");

    // The app's own gRPC status comes back unchanged.
    let status = client
        .invoke_service(invoke_request("inventory", "missing", None, "", b""))
        .await
        .expect_err("the app answers NOT_FOUND");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(status.message().contains("no such order"), "{status:?}");

    // The HTTP invoke API reaches the gRPC app too.
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/v1.0/invoke/inventory/method/items/9?size=L",
            caller.http_address
        ))
        .header("content-type", "text/plain")
        .body("from-http")
        .send()
        .await
        .expect("HTTP invoke");
    assert_eq!(response.status(), 200);
    let echoed: Value = response.json().await.expect("JSON");
    assert_eq!(echoed["method"], "items/9");
    assert_eq!(echoed["data"], "from-http");
    assert_eq!(echoed["query"], "size=L");
    assert_eq!(echoed["verb"], common::http_extension::Verb::Post as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_proxy_mode_streams_both_ways_to_the_target_apps_grpc_server() {
    // The target app is a real gRPC server with a bidirectional-streaming method: the test
    // ADS server (envoy.service.discovery.v3.AggregatedDiscoveryService).
    let ads = TestAdsServer::start().await;
    let cluster = |name: &str| {
        outrigger_test_harness::ads_server::any(
            &envoy_types::pb::envoy::config::cluster::v3::Cluster {
                name: name.into(),
                ..Default::default()
            },
        )
    };
    ads.set_resources("1", vec![cluster("first")]);
    let callee = start_grpc_callee("discovery", ads.address().port()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let caller = caller_routing_to(dir.path(), "discovery", callee.mesh_address).await;

    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", caller.grpc_address))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to the caller sidecar");
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender
        .send(DiscoveryRequest {
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
            ..Default::default()
        })
        .await
        .expect("queue request");
    let mut request = Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    request
        .metadata_mut()
        .insert("dapr-app-id", "discovery".parse().expect("metadata"));
    let mut responses = client
        .stream_aggregated_resources(request)
        .await
        .expect("the proxied stream opens")
        .into_inner();

    let first = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("first push in time")
        .expect("stream healthy")
        .expect("a response");
    assert_eq!(first.version_info, "1");
    // ACK it, then a second push travels down the same stream through both sidecars.
    sender
        .send(DiscoveryRequest {
            type_url: first.type_url.clone(),
            version_info: first.version_info.clone(),
            response_nonce: first.nonce.clone(),
            ..Default::default()
        })
        .await
        .expect("queue ACK");
    ads.wait_for(
        |ack| ack.version_info == "1" && ack.is_ack(),
        Duration::from_secs(5),
    )
    .await
    .expect("the app received the ACK through the proxy");
    ads.set_resources("2", vec![cluster("first"), cluster("second")]);
    let second = tokio::time::timeout(Duration::from_secs(5), responses.message())
        .await
        .expect("second push in time")
        .expect("stream healthy")
        .expect("a response");
    assert_eq!(second.version_info, "2");
    assert_eq!(second.resources.len(), 2);

    // The app's own status passes through unchanged.
    let mut delta_request =
        Request::new(tokio_stream::iter(vec![DeltaDiscoveryRequest::default()]));
    delta_request
        .metadata_mut()
        .insert("dapr-app-id", "discovery".parse().expect("metadata"));
    let outcome = client.delta_aggregated_resources(delta_request).await;
    let status = match outcome {
        Err(status) => status,
        Ok(response) => response
            .into_inner()
            .message()
            .await
            .expect_err("delta is not implemented by the app"),
    };
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");

    // Without dapr-app-id the call is not proxied: the sidecar has no such service.
    let mut plain = Request::new(tokio_stream::iter(vec![DiscoveryRequest::default()]));
    plain
        .metadata_mut()
        .insert("x-other", "1".parse().expect("metadata"));
    let outcome = client.stream_aggregated_resources(plain).await;
    let status = match outcome {
        Err(status) => status,
        Ok(response) => response
            .into_inner()
            .message()
            .await
            .expect_err("no such service on the sidecar"),
    };
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
}
