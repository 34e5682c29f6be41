//! Conversion of Envoy v3 structs into the mesh model, with Envoy's defaults and validation.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection,
    circuit_breakers::Thresholds,
    cluster::{
        ClusterDiscoveryType, CustomClusterType, DiscoveryType, LbConfig,
        LbPolicy as ProtoLbPolicy, LeastRequestLbConfig, MaglevLbConfig, RingHashLbConfig,
    },
};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption as ProtoHeaderValueOption,
    HealthStatus as ProtoHealth, Locality as ProtoLocality, RoutingPriority,
    RuntimeFractionalPercent, data_source, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, FilterConfig, HeaderMatcher as ProtoHeaderMatcher,
    QueryParameterMatcher as ProtoQueryParameterMatcher, RedirectAction,
    RetryPolicy as ProtoRetryPolicy, Route as ProtoRoute, RouteAction as ProtoRouteAction,
    RouteConfiguration, WeightedCluster,
    header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    retry_policy::RetryBackOff,
    route::Action,
    route_action::{
        ClusterSpecifier, HashPolicy as ProtoHashPolicy, HostRewriteSpecifier, RequestMirrorPolicy,
        hash_policy,
    },
    route_match::PathSpecifier,
    weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay as ProtoFaultDelay, fault_delay::FaultDelaySecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort as ProtoFaultAbort, HttpFault, fault_abort::ErrorType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher as ProtoStringMatcher,
    string_matcher::MatchPattern,
};
use envoy_types::pb::envoy::r#type::v3::{
    FractionalPercent, Int64Range, fractional_percent::DenominatorType,
};
use envoy_types::pb::google::protobuf::{
    BoolValue, Duration as ProtoDuration, UInt32Value, UInt64Value,
};
use outrigger_mesh::model::{
    CircuitBreakerThresholds, ClusterTarget, FaultStatus, ForwardAction, HashPolicy, HeaderRule,
    HealthStatus, LbPolicy, OutlierDetectionSpec, PathMatch, RouteAction, RouteConfig, RouteFault,
    StringPattern,
};
use outrigger_mesh::router::HeaderFormat;
use outrigger_xds::convert::{
    ClusterEndpointSource, FieldError, convert_cluster, convert_listener, convert_load_assignment,
    convert_route_configuration,
};

use support::*;

fn seconds(seconds: i64) -> ProtoDuration {
    ProtoDuration { seconds, nanos: 0 }
}

fn millis(millis: i32) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::from(millis / 1000),
        nanos: (millis % 1000) * 1_000_000,
    }
}

fn u32v(value: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value })
}

fn percent(numerator: u32, denominator: DenominatorType) -> FractionalPercent {
    FractionalPercent {
        numerator,
        denominator: denominator as i32,
    }
}

// ----- clusters -----

#[test]
fn static_cluster_gets_envoy_defaults_and_its_own_endpoints() {
    let converted =
        convert_cluster(&static_cluster("outbound|9080|v1|reviews", &[9081, 9082])).unwrap();
    let spec = &converted.spec;
    assert_eq!(spec.name, "outbound|9080|v1|reviews");
    assert_eq!(spec.lb_policy, LbPolicy::RoundRobin);
    assert_eq!(spec.connect_timeout, Duration::from_secs(5));
    assert_eq!(spec.circuit_breakers, CircuitBreakerThresholds::default());
    assert!(spec.outlier_detection.is_none());
    let ClusterEndpointSource::Static(localities) = &converted.endpoints else {
        panic!("a STATIC cluster has its own endpoints");
    };
    assert_eq!(localities.len(), 1);
    let addresses: Vec<_> = localities[0]
        .endpoints
        .iter()
        .map(|endpoint| endpoint.address.to_string())
        .collect();
    assert_eq!(addresses, ["127.0.0.1:9081", "127.0.0.1:9082"]);
    assert_eq!(localities[0].endpoints[0].weight, 1);
    assert_eq!(localities[0].endpoints[0].health, HealthStatus::Unknown);
}

#[test]
fn cluster_without_type_is_static() {
    let cluster = Cluster {
        name: "plain".into(),
        ..Default::default()
    };
    let converted = convert_cluster(&cluster).unwrap();
    assert!(matches!(&converted.endpoints, ClusterEndpointSource::Static(l) if l.is_empty()));
}

#[test]
fn eds_cluster_service_name_defaults_to_the_cluster_name() {
    let named = convert_cluster(&eds_cluster("outbound|9080||ratings", "ratings-eds")).unwrap();
    assert!(matches!(&named.endpoints, ClusterEndpointSource::Eds(name) if name == "ratings-eds"));
    let mut unnamed = eds_cluster("outbound|9080||ratings", "");
    unnamed.eds_cluster_config = None;
    let unnamed = convert_cluster(&unnamed).unwrap();
    assert!(
        matches!(&unnamed.endpoints, ClusterEndpointSource::Eds(name) if name == "outbound|9080||ratings")
    );
}

#[test]
fn unsupported_cluster_types_are_rejected() {
    for (discovery_type, name) in [
        (DiscoveryType::StrictDns, "STRICT_DNS"),
        (DiscoveryType::LogicalDns, "LOGICAL_DNS"),
        (DiscoveryType::OriginalDst, "ORIGINAL_DST"),
    ] {
        let cluster = Cluster {
            name: "dns".into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery_type as i32)),
            ..Default::default()
        };
        let error = convert_cluster(&cluster).unwrap_err().to_string();
        assert_eq!(
            error,
            format!("type: {name} is not supported (only STATIC and EDS clusters)")
        );
    }
    let custom = Cluster {
        name: "aggregate".into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::ClusterType(CustomClusterType {
            name: "envoy.clusters.aggregate".into(),
            typed_config: None,
        })),
        ..Default::default()
    };
    let error = convert_cluster(&custom).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "cluster_type: custom cluster type \"envoy.clusters.aggregate\" is not supported"
        ),
        "{error}"
    );
}

#[test]
fn load_balancing_policies_and_their_defaults() {
    let with = |policy: ProtoLbPolicy, config: Option<LbConfig>| {
        let mut cluster = static_cluster("c", &[]);
        cluster.lb_policy = policy as i32;
        cluster.lb_config = config;
        convert_cluster(&cluster).map(|converted| converted.spec.lb_policy)
    };
    assert_eq!(with(ProtoLbPolicy::Random, None).unwrap(), LbPolicy::Random);
    assert_eq!(
        with(ProtoLbPolicy::LeastRequest, None).unwrap(),
        LbPolicy::LeastRequest { choice_count: 2 }
    );
    assert_eq!(
        with(
            ProtoLbPolicy::LeastRequest,
            Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                choice_count: u32v(5),
                ..Default::default()
            }))
        )
        .unwrap(),
        LbPolicy::LeastRequest { choice_count: 5 }
    );
    assert_eq!(
        with(ProtoLbPolicy::RingHash, None).unwrap(),
        LbPolicy::RingHash {
            minimum_ring_size: 1024,
            maximum_ring_size: 8 * 1024 * 1024
        }
    );
    assert_eq!(
        with(
            ProtoLbPolicy::RingHash,
            Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                minimum_ring_size: Some(UInt64Value { value: 64 }),
                maximum_ring_size: Some(UInt64Value { value: 4096 }),
                ..Default::default()
            }))
        )
        .unwrap(),
        LbPolicy::RingHash {
            minimum_ring_size: 64,
            maximum_ring_size: 4096
        }
    );
    assert_eq!(
        with(ProtoLbPolicy::Maglev, None).unwrap(),
        LbPolicy::Maglev { table_size: 65537 }
    );
    assert_eq!(
        with(
            ProtoLbPolicy::Maglev,
            Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                table_size: Some(UInt64Value { value: 251 })
            }))
        )
        .unwrap(),
        LbPolicy::Maglev { table_size: 251 }
    );
    let error = with(ProtoLbPolicy::ClusterProvided, None)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("lb_policy: CLUSTER_PROVIDED is not supported"),
        "{error}"
    );
}

#[test]
fn connect_timeout_and_default_priority_circuit_breakers() {
    let mut cluster = static_cluster("c", &[]);
    cluster.connect_timeout = Some(millis(250));
    cluster.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![
            Thresholds {
                priority: RoutingPriority::High as i32,
                max_connections: u32v(1),
                ..Default::default()
            },
            Thresholds {
                priority: RoutingPriority::Default as i32,
                max_connections: u32v(10),
                max_requests: u32v(20),
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    let spec = convert_cluster(&cluster).unwrap().spec;
    assert_eq!(spec.connect_timeout, Duration::from_millis(250));
    assert_eq!(
        spec.circuit_breakers,
        CircuitBreakerThresholds {
            max_connections: 10,
            max_pending_requests: 1024,
            max_requests: 20,
            max_retries: 3,
        }
    );
    cluster.connect_timeout = Some(seconds(0));
    let error = convert_cluster(&cluster).unwrap_err().to_string();
    assert_eq!(error, "connect_timeout: must be greater than 0s");
}

#[test]
fn outlier_detection_applies_envoy_defaults() {
    let mut cluster = static_cluster("c", &[]);
    cluster.outlier_detection = Some(OutlierDetection::default());
    let spec = convert_cluster(&cluster).unwrap().spec;
    assert_eq!(
        spec.outlier_detection,
        Some(OutlierDetectionSpec::default())
    );
    let defaults = OutlierDetectionSpec::default();
    assert_eq!(defaults.consecutive_5xx, 5);
    assert_eq!(defaults.enforcing_consecutive_gateway_failure, 0);

    cluster.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: u32v(3),
        interval: Some(seconds(1)),
        base_ejection_time: Some(seconds(2)),
        max_ejection_percent: u32v(50),
        consecutive_gateway_failure: u32v(2),
        enforcing_consecutive_gateway_failure: u32v(100),
        ..Default::default()
    });
    let spec = convert_cluster(&cluster).unwrap().spec;
    assert_eq!(
        spec.outlier_detection,
        Some(OutlierDetectionSpec {
            consecutive_5xx: 3,
            enforcing_consecutive_5xx: 100,
            consecutive_gateway_failure: 2,
            enforcing_consecutive_gateway_failure: 100,
            interval: Duration::from_secs(1),
            base_ejection_time: Duration::from_secs(2),
            max_ejection_percent: 50,
        })
    );
}

// ----- endpoints -----

#[test]
fn load_assignment_keeps_localities_priorities_health_and_weights() {
    let mut healthy = lb_endpoint("10.0.0.1", 80);
    healthy.health_status = ProtoHealth::Healthy as i32;
    healthy.load_balancing_weight = u32v(3);
    let mut draining = lb_endpoint("::1", 81);
    draining.health_status = ProtoHealth::Draining as i32;
    let assignment = ClusterLoadAssignment {
        cluster_name: "ratings".into(),
        endpoints: vec![
            LocalityLbEndpoints {
                locality: Some(ProtoLocality {
                    region: "eu".into(),
                    zone: "eu-1a".into(),
                    sub_zone: String::new(),
                }),
                lb_endpoints: vec![healthy],
                ..Default::default()
            },
            LocalityLbEndpoints {
                priority: 1,
                lb_endpoints: vec![draining],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let localities = convert_load_assignment(&assignment).unwrap();
    assert_eq!(localities.len(), 2);
    assert_eq!(localities[0].locality.zone, "eu-1a");
    assert_eq!(localities[0].priority, 0);
    assert_eq!(localities[0].endpoints[0].weight, 3);
    assert_eq!(localities[0].endpoints[0].health, HealthStatus::Healthy);
    assert_eq!(localities[1].priority, 1);
    assert_eq!(localities[1].endpoints[0].address.to_string(), "[::1]:81");
    assert_eq!(localities[1].endpoints[0].health, HealthStatus::Draining);
}

#[test]
fn hostname_endpoint_is_rejected_with_the_field_path() {
    let assignment = ClusterLoadAssignment {
        cluster_name: "ratings".into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![
                lb_endpoint("127.0.0.1", 80),
                lb_endpoint("ratings.default", 80),
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let error = convert_load_assignment(&assignment).unwrap_err();
    assert_eq!(
        error.path(),
        "endpoints[0].lb_endpoints[1].endpoint.address.socket_address.address"
    );
    assert!(
        error
            .message()
            .contains("\"ratings.default\" is not an IP address"),
        "{error}"
    );
    let mut zero_weight = lb_endpoint("127.0.0.1", 80);
    zero_weight.load_balancing_weight = u32v(0);
    let assignment = ClusterLoadAssignment {
        cluster_name: "ratings".into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![zero_weight],
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        convert_load_assignment(&assignment)
            .unwrap_err()
            .to_string(),
        "endpoints[0].lb_endpoints[0].load_balancing_weight: must be at least 1"
    );
}

#[test]
fn static_cluster_with_a_hostname_is_rejected() {
    let mut cluster = static_cluster("c", &[]);
    cluster.load_assignment = Some(ClusterLoadAssignment {
        cluster_name: "c".into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![lb_endpoint("example.com", 80)],
            ..Default::default()
        }],
        ..Default::default()
    });
    let error = convert_cluster(&cluster).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: \"example.com\" is not an IP address"
        ),
        "{error}"
    );
}

// ----- routes -----

const KNOWN: [&str; 4] = ["v1", "v2", "v3", "mirror"];

fn convert(config: &RouteConfiguration) -> Result<RouteConfig, FieldError> {
    convert_route_configuration(config, &|name| KNOWN.contains(&name))
}

fn single_route(route: ProtoRoute) -> RouteConfiguration {
    route_config("outrigger", vec![virtual_host("vh", &["*"], vec![route])])
}

fn forward(config: &RouteConfig) -> &ForwardAction {
    match &config.virtual_hosts[0].routes[0].action {
        RouteAction::Forward(action) => action,
        other => panic!("expected a forward action, got {other:?}"),
    }
}

fn route_with_action(action: ProtoRouteAction) -> ProtoRoute {
    ProtoRoute {
        r#match: Some(prefix_match("/")),
        action: Some(Action::Route(action)),
        ..Default::default()
    }
}

fn to_cluster(name: &str) -> ProtoRouteAction {
    ProtoRouteAction {
        cluster_specifier: Some(ClusterSpecifier::Cluster(name.into())),
        ..Default::default()
    }
}

fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher {
        regex: pattern.into(),
        engine_type: None,
    }
}

#[test]
fn forward_route_defaults() {
    let config = convert(&single_route(route_to("v1"))).unwrap();
    assert_eq!(config.name, "outrigger");
    let virtual_host = &config.virtual_hosts[0];
    assert_eq!(virtual_host.domains, ["*"]);
    let route = &virtual_host.routes[0];
    assert!(matches!(&route.matcher.path, PathMatch::Prefix(prefix) if prefix == "/"));
    assert!(route.matcher.case_sensitive);
    let action = forward(&config);
    assert!(matches!(&action.target, ClusterTarget::Single(name) if name == "v1"));
    assert_eq!(action.timeout, Some(Duration::from_secs(15)));
    assert!(action.retry_policy.is_none());
    assert!(action.mirrors.is_empty());
}

#[test]
fn timeout_zero_means_no_deadline() {
    let mut action = to_cluster("v1");
    action.timeout = Some(seconds(0));
    let config = convert(&single_route(route_with_action(action.clone()))).unwrap();
    assert_eq!(forward(&config).timeout, None);
    action.timeout = Some(millis(1500));
    let config = convert(&single_route(route_with_action(action))).unwrap();
    assert_eq!(forward(&config).timeout, Some(Duration::from_millis(1500)));
}

#[test]
fn path_matchers() {
    let with_path = |specifier: PathSpecifier, case_sensitive: Option<bool>| {
        let mut route = route_to("v1");
        route.r#match = Some(envoy_types::pb::envoy::config::route::v3::RouteMatch {
            path_specifier: Some(specifier),
            case_sensitive: case_sensitive.map(|value| BoolValue { value }),
            ..Default::default()
        });
        convert(&single_route(route))
            .map(|config| config.virtual_hosts[0].routes[0].matcher.clone())
    };
    let exact = with_path(PathSpecifier::Path("/exact".into()), Some(false)).unwrap();
    assert!(matches!(&exact.path, PathMatch::Exact(path) if path == "/exact"));
    assert!(!exact.case_sensitive);
    let separated = with_path(PathSpecifier::PathSeparatedPrefix("/api".into()), None).unwrap();
    assert!(matches!(&separated.path, PathMatch::PathSeparatedPrefix(prefix) if prefix == "/api"));
    let regex_match = with_path(PathSpecifier::SafeRegex(regex("/reviews/[0-9]+")), None).unwrap();
    let PathMatch::Regex(compiled) = &regex_match.path else {
        panic!("expected a regex");
    };
    assert!(compiled.is_match("/reviews/12"));
    assert!(
        !compiled.is_match("/reviews/12/x"),
        "a route regex matches the whole path"
    );
    assert!(!compiled.is_match("/x/reviews/12"));
}

#[test]
fn bad_regex_is_rejected_with_the_field_path() {
    let mut config = route_config(
        "outrigger",
        vec![virtual_host(
            "vh",
            &["*"],
            vec![route_to("v1"), route_to("v2"), route_to("v3")],
        )],
    );
    config.virtual_hosts[0].routes[2].r#match =
        Some(envoy_types::pb::envoy::config::route::v3::RouteMatch {
            path_specifier: Some(PathSpecifier::SafeRegex(regex("/reviews/(["))),
            ..Default::default()
        });
    let error = convert(&config).unwrap_err();
    assert_eq!(error.path(), "virtual_hosts[0].routes[2].match.safe_regex");
    assert!(error.message().starts_with("regex parse error:"), "{error}");
    assert!(
        error.message().contains("/reviews/(["),
        "names the pattern as written: {error}"
    );
}

#[test]
#[allow(deprecated)]
fn header_matchers_including_deprecated_fields() {
    let header =
        |name: &str, specifier: Option<HeaderMatchSpecifier>, invert: bool| ProtoHeaderMatcher {
            name: name.into(),
            header_match_specifier: specifier,
            invert_match: invert,
            ..Default::default()
        };
    let mut route = route_to("v1");
    route.r#match.as_mut().unwrap().headers = vec![
        header(
            "End-User",
            Some(HeaderMatchSpecifier::StringMatch(ProtoStringMatcher {
                ignore_case: true,
                match_pattern: Some(MatchPattern::Exact("jason".into())),
            })),
            false,
        ),
        header(
            "x-exact",
            Some(HeaderMatchSpecifier::ExactMatch("a".into())),
            false,
        ),
        header(
            "x-prefix",
            Some(HeaderMatchSpecifier::PrefixMatch("p".into())),
            false,
        ),
        header(
            "x-suffix",
            Some(HeaderMatchSpecifier::SuffixMatch("s".into())),
            false,
        ),
        header(
            "x-contains",
            Some(HeaderMatchSpecifier::ContainsMatch("c".into())),
            false,
        ),
        header(
            "x-regex",
            Some(HeaderMatchSpecifier::SafeRegexMatch(regex("v[0-9]"))),
            false,
        ),
        header(
            "x-present",
            Some(HeaderMatchSpecifier::PresentMatch(false)),
            false,
        ),
        header(
            "x-range",
            Some(HeaderMatchSpecifier::RangeMatch(Int64Range {
                start: 1,
                end: 10,
            })),
            true,
        ),
        header("x-bare", None, false),
    ];
    let config = convert(&single_route(route)).unwrap();
    let headers = &config.virtual_hosts[0].routes[0].matcher.headers;
    assert_eq!(headers[0].name, "end-user");
    assert!(
        matches!(&headers[0].rule, HeaderRule::Value(m) if m.ignore_case && matches!(&m.pattern, StringPattern::Exact(v) if v == "jason"))
    );
    assert!(
        matches!(&headers[1].rule, HeaderRule::Value(m) if !m.ignore_case && matches!(&m.pattern, StringPattern::Exact(v) if v == "a"))
    );
    assert!(
        matches!(&headers[2].rule, HeaderRule::Value(m) if matches!(&m.pattern, StringPattern::Prefix(v) if v == "p"))
    );
    assert!(
        matches!(&headers[3].rule, HeaderRule::Value(m) if matches!(&m.pattern, StringPattern::Suffix(v) if v == "s"))
    );
    assert!(
        matches!(&headers[4].rule, HeaderRule::Value(m) if matches!(&m.pattern, StringPattern::Contains(v) if v == "c"))
    );
    let HeaderRule::Value(regex_matcher) = &headers[5].rule else {
        panic!("expected a value rule");
    };
    let StringPattern::Regex(compiled) = &regex_matcher.pattern else {
        panic!("expected a regex");
    };
    assert!(compiled.is_match("v1") && !compiled.is_match("xv1"));
    assert!(matches!(headers[6].rule, HeaderRule::Present(false)));
    assert!(matches!(
        headers[7].rule,
        HeaderRule::Range { start: 1, end: 10 }
    ));
    assert!(headers[7].invert);
    assert!(matches!(headers[8].rule, HeaderRule::Present(true)));
}

#[test]
fn query_parameter_matchers() {
    let mut route = route_to("v1");
    route.r#match.as_mut().unwrap().query_parameters = vec![
        ProtoQueryParameterMatcher {
            name: "debug".into(),
            query_parameter_match_specifier: Some(QueryParameterMatchSpecifier::PresentMatch(true)),
        },
        ProtoQueryParameterMatcher {
            name: "v".into(),
            query_parameter_match_specifier: Some(QueryParameterMatchSpecifier::StringMatch(
                ProtoStringMatcher {
                    ignore_case: false,
                    match_pattern: Some(MatchPattern::Prefix("2".into())),
                },
            )),
        },
    ];
    let config = convert(&single_route(route)).unwrap();
    let parameters = &config.virtual_hosts[0].routes[0].matcher.query_parameters;
    assert_eq!(parameters[0].name, "debug");
    assert!(parameters[0].value.is_none());
    assert!(
        matches!(&parameters[1].value, Some(m) if matches!(&m.pattern, StringPattern::Prefix(p) if p == "2"))
    );
}

fn header_option(
    key: &str,
    value: &str,
    append: Option<bool>,
    action: HeaderAppendAction,
) -> ProtoHeaderValueOption {
    #[allow(deprecated)]
    ProtoHeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value: value.into(),
            raw_value: Vec::new(),
        }),
        append: append.map(|value| BoolValue { value }),
        append_action: action as i32,
        keep_empty_value: false,
    }
}

#[test]
fn weighted_clusters_ignore_total_weight_and_keep_their_header_mutations() {
    #[allow(deprecated)]
    let weighted = WeightedCluster {
        clusters: vec![
            ClusterWeight {
                name: "v1".into(),
                weight: u32v(50),
                request_headers_to_add: vec![header_option(
                    "X-Version",
                    "v1",
                    None,
                    HeaderAppendAction::OverwriteIfExistsOrAdd,
                )],
                ..Default::default()
            },
            ClusterWeight {
                name: "v3".into(),
                weight: u32v(50),
                response_headers_to_remove: vec!["X-Internal".into()],
                ..Default::default()
            },
            ClusterWeight {
                name: "v2".into(),
                weight: u32v(0),
                ..Default::default()
            },
        ],
        total_weight: u32v(1000),
        ..Default::default()
    };
    let action = ProtoRouteAction {
        cluster_specifier: Some(ClusterSpecifier::WeightedClusters(weighted)),
        ..Default::default()
    };
    let config = convert(&single_route(route_with_action(action))).unwrap();
    let ClusterTarget::Weighted(clusters) = &forward(&config).target else {
        panic!("expected weighted clusters");
    };
    let summary: Vec<_> = clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight))
        .collect();
    assert_eq!(summary, [("v1", 50), ("v3", 50)]);
    assert_eq!(clusters[0].headers.request_add[0].name, "x-version");
    assert!(!clusters[0].headers.request_add[0].append);
    assert_eq!(clusters[1].headers.response_remove, ["x-internal"]);
}

#[test]
fn weighted_clusters_with_zero_sum_are_rejected() {
    let action = ProtoRouteAction {
        cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: vec![ClusterWeight {
                name: "v1".into(),
                weight: u32v(0),
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    };
    let error = convert(&single_route(route_with_action(action)))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "virtual_hosts[0].routes[0].route.weighted_clusters.clusters: the sum of the weights must be greater than 0"
    );
}

#[test]
fn routes_to_unknown_clusters_are_rejected() {
    let error = convert(&single_route(route_to("v9")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "virtual_hosts[0].routes[0].route.cluster: unknown cluster \"v9\""
    );

    let weighted = ProtoRouteAction {
        cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: vec![
                ClusterWeight {
                    name: "v1".into(),
                    weight: u32v(90),
                    ..Default::default()
                },
                ClusterWeight {
                    name: "v9".into(),
                    weight: u32v(10),
                    ..Default::default()
                },
            ],
            ..Default::default()
        })),
        ..Default::default()
    };
    let error = convert(&single_route(route_with_action(weighted)))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "virtual_hosts[0].routes[0].route.weighted_clusters.clusters[1].name: unknown cluster \"v9\""
    );

    let mut mirrored = to_cluster("v1");
    mirrored.request_mirror_policies = vec![RequestMirrorPolicy {
        cluster: "shadow".into(),
        ..Default::default()
    }];
    let error = convert(&single_route(route_with_action(mirrored)))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "virtual_hosts[0].routes[0].route.request_mirror_policies[0].cluster: unknown cluster \"shadow\""
    );
}

#[test]
fn domains_must_be_present_and_unique() {
    let config = route_config(
        "outrigger",
        vec![
            virtual_host(
                "reviews",
                &["reviews", "reviews.default.svc.cluster.local"],
                vec![],
            ),
            virtual_host("reviews-2", &["Reviews"], vec![]),
        ],
    );
    let error = convert(&config).unwrap_err().to_string();
    assert_eq!(
        error,
        "virtual_hosts[1].domains[0]: duplicate domain \"Reviews\" (domains must be unique within a route configuration)"
    );
    let config = route_config("outrigger", vec![virtual_host("empty", &[], vec![])]);
    assert_eq!(
        convert(&config).unwrap_err().to_string(),
        "virtual_hosts[0].domains: must not be empty"
    );
}

#[test]
fn retry_policy_defaults_and_conditions() {
    let mut action = to_cluster("v1");
    action.retry_policy = Some(ProtoRetryPolicy {
        retry_on: "5xx, gateway-error,reset,connect-failure,refused-stream,retriable-status-codes,retriable-4xx".into(),
        retriable_status_codes: vec![409],
        ..Default::default()
    });
    let config = convert(&single_route(route_with_action(action))).unwrap();
    let policy = forward(&config).retry_policy.clone().unwrap();
    assert!(policy.retry_on.server_error);
    assert!(policy.retry_on.gateway_error);
    assert!(policy.retry_on.reset);
    assert!(policy.retry_on.connect_failure);
    assert!(policy.retry_on.refused_stream);
    assert!(policy.retry_on.retriable_status_codes);
    assert_eq!(policy.retriable_status_codes, [409]);
    assert_eq!(policy.num_retries, 1);
    assert_eq!(policy.per_try_timeout, None);
    assert_eq!(policy.backoff_base, Duration::from_millis(25));
    assert_eq!(policy.backoff_max, Duration::from_millis(250));

    let mut action = to_cluster("v1");
    action.retry_policy = Some(ProtoRetryPolicy {
        retry_on: "connect-failure".into(),
        num_retries: u32v(3),
        per_try_timeout: Some(millis(500)),
        retry_back_off: Some(RetryBackOff {
            base_interval: Some(millis(100)),
            max_interval: None,
        }),
        ..Default::default()
    });
    let config = convert(&single_route(route_with_action(action))).unwrap();
    let policy = forward(&config).retry_policy.clone().unwrap();
    assert!(!policy.retry_on.server_error && policy.retry_on.connect_failure);
    assert_eq!(policy.num_retries, 3);
    assert_eq!(policy.per_try_timeout, Some(Duration::from_millis(500)));
    assert_eq!(policy.backoff_base, Duration::from_millis(100));
    assert_eq!(policy.backoff_max, Duration::from_secs(1));
}

#[test]
fn virtual_host_retry_policy() {
    let mut config = single_route(route_to("v1"));
    config.virtual_hosts[0].retry_policy = Some(ProtoRetryPolicy {
        retry_on: "gateway-error".into(),
        num_retries: u32v(2),
        ..Default::default()
    });
    let config = convert(&config).unwrap();
    let policy = config.virtual_hosts[0].retry_policy.clone().unwrap();
    assert!(policy.retry_on.gateway_error);
    assert_eq!(policy.num_retries, 2);
}

#[test]
fn rewrites_hash_policies_and_mirrors() {
    let mut action = to_cluster("v1");
    action.prefix_rewrite = "/v2/".into();
    action.host_rewrite_specifier = Some(HostRewriteSpecifier::HostRewriteLiteral(
        "reviews.internal".into(),
    ));
    action.hash_policy = vec![
        ProtoHashPolicy {
            terminal: true,
            policy_specifier: Some(hash_policy::PolicySpecifier::Header(hash_policy::Header {
                header_name: "X-User".into(),
                regex_rewrite: None,
            })),
        },
        ProtoHashPolicy {
            terminal: false,
            policy_specifier: Some(hash_policy::PolicySpecifier::ConnectionProperties(
                hash_policy::ConnectionProperties { source_ip: true },
            )),
        },
    ];
    action.request_mirror_policies = vec![
        RequestMirrorPolicy {
            cluster: "mirror".into(),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(percent(25, DenominatorType::Hundred)),
                runtime_key: String::new(),
            }),
            ..Default::default()
        },
        RequestMirrorPolicy {
            cluster: "v2".into(),
            ..Default::default()
        },
        RequestMirrorPolicy {
            cluster: "v3".into(),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(percent(5, DenominatorType::TenThousand)),
                runtime_key: String::new(),
            }),
            ..Default::default()
        },
    ];
    let config = convert(&single_route(route_with_action(action))).unwrap();
    let action = forward(&config);
    assert_eq!(action.prefix_rewrite.as_deref(), Some("/v2/"));
    assert_eq!(action.host_rewrite.as_deref(), Some("reviews.internal"));
    assert!(
        matches!(&action.hash_policy[0], HashPolicy::Header { name, terminal: true } if name == "x-user")
    );
    assert!(matches!(
        action.hash_policy[1],
        HashPolicy::SourceIp { terminal: false }
    ));
    let mirrors: Vec<_> = action
        .mirrors
        .iter()
        .map(|m| (m.cluster.as_str(), m.fraction_per_million))
        .collect();
    assert_eq!(
        mirrors,
        [("mirror", 250_000), ("v2", 1_000_000), ("v3", 500)]
    );

    let mut action = to_cluster("v1");
    action.regex_rewrite = Some(RegexMatchAndSubstitute {
        pattern: Some(regex("^/service/([^/]+)(/.*)$")),
        substitution: "\\2/instance/\\1".into(),
    });
    let config = convert(&single_route(route_with_action(action))).unwrap();
    let rewrite = forward(&config).regex_rewrite.clone().unwrap();
    assert_eq!(rewrite.substitution, "\\2/instance/\\1");
    assert!(rewrite.pattern.is_match("/service/foo/v1/api"));
}

#[test]
fn redirect_and_direct_response() {
    let redirect = ProtoRoute {
        r#match: Some(prefix_match("/old")),
        action: Some(Action::Redirect(RedirectAction {
            host_redirect: "new.example".into(),
            port_redirect: 8443,
            response_code: RedirectResponseCode::TemporaryRedirect as i32,
            strip_query: true,
            scheme_rewrite_specifier: Some(SchemeRewriteSpecifier::HttpsRedirect(true)),
            path_rewrite_specifier: Some(PathRewriteSpecifier::PrefixRewrite("/new".into())),
        })),
        ..Default::default()
    };
    let direct = ProtoRoute {
        r#match: Some(prefix_match("/health")),
        action: Some(Action::DirectResponse(DirectResponseAction {
            status: 200,
            body: Some(DataSource {
                watched_directory: None,
                specifier: Some(data_source::Specifier::InlineString("ok".into())),
            }),
            body_format: None,
        })),
        ..Default::default()
    };
    let config = convert(&route_config(
        "outrigger",
        vec![virtual_host("vh", &["*"], vec![redirect, direct])],
    ))
    .unwrap();
    let routes = &config.virtual_hosts[0].routes;
    let RouteAction::Redirect(redirect) = &routes[0].action else {
        panic!("expected a redirect");
    };
    assert_eq!(redirect.scheme.as_deref(), Some("https"));
    assert_eq!(redirect.host.as_deref(), Some("new.example"));
    assert_eq!(redirect.port, Some(8443));
    assert_eq!(redirect.prefix_rewrite.as_deref(), Some("/new"));
    assert_eq!(redirect.status, 307);
    assert!(redirect.strip_query);
    let RouteAction::DirectResponse { status, body } = &routes[1].action else {
        panic!("expected a direct response");
    };
    assert_eq!(*status, 200);
    assert_eq!(body.as_deref(), Some(&b"ok"[..]));

    let bad_status = ProtoRoute {
        r#match: Some(prefix_match("/")),
        action: Some(Action::DirectResponse(DirectResponseAction {
            status: 99,
            ..Default::default()
        })),
        ..Default::default()
    };
    assert_eq!(
        convert(&single_route(bad_status)).unwrap_err().to_string(),
        "virtual_hosts[0].routes[0].direct_response.status: 99 is not in [200, 600)"
    );
}

#[test]
fn header_mutations_at_every_level() {
    let mut config = single_route(route_to("v1"));
    config.request_headers_to_add = vec![header_option(
        "x-config",
        "1",
        None,
        HeaderAppendAction::AppendIfExistsOrAdd,
    )];
    config.response_headers_to_remove = vec!["Server".into()];
    config.virtual_hosts[0].response_headers_to_add = vec![header_option(
        "x-vh",
        "2",
        Some(false),
        HeaderAppendAction::AppendIfExistsOrAdd,
    )];
    config.virtual_hosts[0].request_headers_to_remove = vec!["x-drop".into()];
    config.virtual_hosts[0].routes[0].request_headers_to_add = vec![header_option(
        "x-route",
        "3",
        Some(true),
        HeaderAppendAction::OverwriteIfExistsOrAdd,
    )];
    let converted = convert(&config).unwrap();
    assert!(
        converted.headers.request_add[0].append,
        "append_action default appends"
    );
    assert_eq!(converted.headers.response_remove, ["server"]);
    let virtual_host = &converted.virtual_hosts[0];
    assert!(
        !virtual_host.headers.response_add[0].append,
        "append: false overwrites"
    );
    assert_eq!(virtual_host.headers.request_remove, ["x-drop"]);
    let route_header = &virtual_host.routes[0].headers.request_add[0];
    assert_eq!(
        (route_header.name.as_str(), &route_header.value),
        ("x-route", &HeaderFormat::literal("3"))
    );
    assert!(
        route_header.append,
        "the deprecated append wins over append_action"
    );

    config.virtual_hosts[0].routes[0].request_headers_to_add = vec![header_option(
        ":path",
        "/",
        None,
        HeaderAppendAction::OverwriteIfExistsOrAdd,
    )];
    assert_eq!(
        convert(&config).unwrap_err().to_string(),
        "virtual_hosts[0].routes[0].request_headers_to_add[0].header.key: pseudo-header :path cannot be modified"
    );

    // Envoy's `%…%` operators: parsed when accepted, refused when unknown or unterminated.
    config.virtual_hosts[0].routes[0].request_headers_to_add = vec![header_option(
        "x-client",
        "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% 100%%",
        None,
        HeaderAppendAction::OverwriteIfExistsOrAdd,
    )];
    let converted = convert(&config).unwrap();
    assert_ne!(
        converted.virtual_hosts[0].routes[0].headers.request_add[0].value,
        HeaderFormat::literal("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% 100%%")
    );
    config.virtual_hosts[0].routes[0].request_headers_to_add = vec![header_option(
        "x-share",
        "50%",
        None,
        HeaderAppendAction::OverwriteIfExistsOrAdd,
    )];
    assert_eq!(
        convert(&config).unwrap_err().to_string(),
        "virtual_hosts[0].routes[0].request_headers_to_add[0].header.value: \"50%\": unterminated operator at position 2 (a literal % is written %%)"
    );
    config.virtual_hosts[0].routes[0].request_headers_to_add = Vec::new();
    config.virtual_hosts[0].response_headers_to_add = vec![header_option(
        "x-echo",
        "%REQ(x-user)%",
        None,
        HeaderAppendAction::OverwriteIfExistsOrAdd,
    )];
    assert_eq!(
        convert(&config).unwrap_err().to_string(),
        "virtual_hosts[0].response_headers_to_add[0].header.value: \"%REQ(x-user)%\": %REQ(...)% is supported in request headers only"
    );
}

fn fault_any(fault: &HttpFault) -> envoy_types::pb::google::protobuf::Any {
    any(fault)
}

#[test]
fn fault_at_virtual_host_and_route_level() {
    let delay = HttpFault {
        delay: Some(ProtoFaultDelay {
            percentage: Some(percent(100, DenominatorType::Hundred)),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(seconds(7))),
        }),
        ..Default::default()
    };
    let abort = HttpFault {
        abort: Some(ProtoFaultAbort {
            percentage: Some(percent(10, DenominatorType::Hundred)),
            error_type: Some(ErrorType::HttpStatus(503)),
            ..Default::default()
        }),
        ..Default::default()
    };
    let grpc_abort_wrapped = FilterConfig {
        config: Some(fault_any(&HttpFault {
            abort: Some(ProtoFaultAbort {
                percentage: Some(percent(1, DenominatorType::Million)),
                error_type: Some(ErrorType::GrpcStatus(14)),
                ..Default::default()
            }),
            ..Default::default()
        })),
        is_optional: false,
        disabled: false,
    };
    let mut config = route_config(
        "outrigger",
        vec![virtual_host(
            "vh",
            &["*"],
            vec![route_to("v1"), route_to("v2")],
        )],
    );
    config.virtual_hosts[0].typed_per_filter_config =
        HashMap::from([("envoy.filters.http.fault".to_string(), fault_any(&delay))]);
    config.virtual_hosts[0].routes[0].typed_per_filter_config =
        HashMap::from([("envoy.filters.http.fault".to_string(), fault_any(&abort))]);
    config.virtual_hosts[0].routes[1].typed_per_filter_config = HashMap::from([(
        "envoy.filters.http.fault".to_string(),
        any(&grpc_abort_wrapped),
    )]);
    let converted = convert(&config).unwrap();
    let virtual_host = &converted.virtual_hosts[0];
    let vh_delay = virtual_host.fault.as_ref().unwrap().delay.as_ref().unwrap();
    assert_eq!(vh_delay.delay, Duration::from_secs(7));
    assert_eq!(vh_delay.per_million, 1_000_000);
    fn policy(fault: &RouteFault) -> &outrigger_mesh::model::FaultPolicy {
        match fault {
            RouteFault::Policy(policy) => policy,
            other => panic!("expected a policy, got {other:?}"),
        }
    }
    let route_abort = policy(&virtual_host.routes[0].fault)
        .abort
        .as_ref()
        .unwrap();
    assert_eq!(route_abort.status, FaultStatus::Http(503));
    assert_eq!(route_abort.per_million, 100_000);
    let wrapped = policy(&virtual_host.routes[1].fault)
        .abort
        .as_ref()
        .unwrap();
    assert_eq!(wrapped.status, FaultStatus::Grpc(14));
    assert_eq!(wrapped.per_million, 1);

    // A disabled filter on a route cancels the virtual host's fault there; on the virtual host
    // it is the same as none.
    let disabled = any(&FilterConfig {
        config: None,
        is_optional: false,
        disabled: true,
    });
    config.virtual_hosts[0].routes[1].typed_per_filter_config =
        HashMap::from([("envoy.filters.http.fault".to_string(), disabled.clone())]);
    let converted = convert(&config).unwrap();
    assert!(matches!(
        converted.virtual_hosts[0].routes[1].fault,
        RouteFault::Disabled
    ));
    assert!(matches!(
        converted.virtual_hosts[0].routes[0].fault,
        RouteFault::Policy(_)
    ));
    config.virtual_hosts[0].typed_per_filter_config =
        HashMap::from([("envoy.filters.http.fault".to_string(), disabled)]);
    assert!(convert(&config).unwrap().virtual_hosts[0].fault.is_none());

    let bad = HttpFault {
        abort: Some(ProtoFaultAbort {
            error_type: Some(ErrorType::HttpStatus(700)),
            ..Default::default()
        }),
        ..Default::default()
    };
    config.virtual_hosts[0].routes[0].typed_per_filter_config =
        HashMap::from([("envoy.filters.http.fault".to_string(), fault_any(&bad))]);
    assert_eq!(
        convert(&config).unwrap_err().to_string(),
        "virtual_hosts[0].routes[0].typed_per_filter_config[envoy.filters.http.fault].abort.http_status: 700 is not in [200, 600)"
    );
}

// ----- listeners -----

#[test]
fn listener_collects_rds_names() {
    let listener = listener_with_manager("0.0.0.0_9080", &rds_manager("9080"));
    let info = convert_listener(&listener, &|name| KNOWN.contains(&name)).unwrap();
    assert_eq!(info.route_config_names, ["9080"]);
    assert!(info.inline_route_configs.is_empty());
    let unnamed = Listener::default();
    assert_eq!(
        convert_listener(&unnamed, &|name| KNOWN.contains(&name))
            .unwrap_err()
            .to_string(),
        "name: must not be empty"
    );
}

fn listener_with_inline_routes(config: RouteConfiguration) -> Listener {
    listener_with_manager("virtualInbound", &inline_routes_manager(config))
}

#[test]
fn listener_converts_its_inline_route_configuration() {
    let listener = listener_with_inline_routes(route_config(
        "inbound|9080||",
        vec![virtual_host("inbound", &["reviews"], vec![route_to("v1")])],
    ));
    let info = convert_listener(&listener, &|name| KNOWN.contains(&name)).unwrap();
    assert!(info.route_config_names.is_empty());
    assert_eq!(info.inline_route_configs.len(), 1);
    assert_eq!(info.inline_route_configs[0].name, "inbound|9080||");
    assert_eq!(
        info.inline_route_configs[0].virtual_hosts[0].domains,
        ["reviews"]
    );
    // Validated as an RDS one is, with the path through the listener.
    let bad = listener_with_inline_routes(single_route(route_to("v9")));
    assert_eq!(
        convert_listener(&bad, &|name| KNOWN.contains(&name))
            .unwrap_err()
            .to_string(),
        "filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.cluster: unknown cluster \"v9\""
    );
}

#[test]
fn mirror_policies_are_inherited_from_the_virtual_host_and_route_configuration() {
    let mirror_to = |cluster: &str| RequestMirrorPolicy {
        cluster: cluster.into(),
        ..Default::default()
    };
    let mut own = to_cluster("v1");
    own.request_mirror_policies = vec![mirror_to("v3")];
    let mut config = route_config(
        "outrigger",
        vec![
            virtual_host("a", &["a"], vec![route_to("v1"), route_with_action(own)]),
            virtual_host("b", &["b"], vec![route_to("v1")]),
        ],
    );
    config.request_mirror_policies = vec![mirror_to("mirror")];
    config.virtual_hosts[0].request_mirror_policies = vec![mirror_to("v2")];
    let converted = convert(&config).unwrap();
    let mirrors_of =
        |host: usize, route: usize| match &converted.virtual_hosts[host].routes[route].action {
            RouteAction::Forward(action) => action
                .mirrors
                .iter()
                .map(|m| m.cluster.clone())
                .collect::<Vec<_>>(),
            other => panic!("expected a forward action, got {other:?}"),
        };
    assert_eq!(mirrors_of(0, 0), ["v2"]);
    assert_eq!(mirrors_of(0, 1), ["v3"]);
    assert_eq!(mirrors_of(1, 0), ["mirror"]);
}
