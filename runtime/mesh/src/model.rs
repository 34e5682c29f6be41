//! The validated routing configuration the data plane runs on.
//!
//! The xDS client (`outrigger-xds`) converts Envoy v3 resources into these types once, when a
//! snapshot is accepted; nothing on the request path looks at protobuf. Every regex is already
//! compiled and every default already applied, so a value of these types is always usable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use regex::Regex;

/// One accepted configuration: what the router and the cluster manager serve from.
#[derive(Debug, Clone, Default)]
pub struct MeshSnapshot {
    /// Route configurations by name (RDS `RouteConfiguration.name`), in the order received.
    pub route_configs: Vec<Arc<RouteConfig>>,
    /// Clusters by name, each with its endpoints (from EDS or its own `load_assignment`).
    pub clusters: HashMap<String, Arc<ClusterSpec>>,
}

impl MeshSnapshot {
    pub fn route_config(&self, name: &str) -> Option<&Arc<RouteConfig>> {
        self.route_configs.iter().find(|config| config.name == name)
    }
}

/// An Envoy `RouteConfiguration`.
#[derive(Debug, Clone, Default)]
pub struct RouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    pub headers: HeaderMutations,
}

/// An Envoy `VirtualHost`.
#[derive(Debug, Clone, Default)]
pub struct VirtualHost {
    pub name: String,
    /// As configured: exact names, `*.suffix` / `prefix*` wildcards, `*`, optionally with `:port`.
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    /// Used by routes that have no retry policy of their own.
    pub retry_policy: Option<RetryPolicy>,
    pub headers: HeaderMutations,
    /// `typed_per_filter_config["envoy.filters.http.fault"]` on the virtual host.
    pub fault: Option<FaultPolicy>,
}

/// An Envoy `Route`: a match and what to do with a request that matches.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: RouteAction,
    pub headers: HeaderMutations,
    /// `typed_per_filter_config["envoy.filters.http.fault"]`; overrides the virtual host's.
    pub fault: RouteFault,
}

/// A route's own fault filter config, which overrides its virtual host's.
#[derive(Debug, Clone, Default)]
pub enum RouteFault {
    /// None of its own: the virtual host's applies.
    #[default]
    Inherit,
    /// `FilterConfig { disabled: true }`: no fault on this route, whatever the virtual host's.
    Disabled,
    Policy(FaultPolicy),
}

/// An Envoy `RouteMatch`.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// Applies to `Prefix`, `Exact` and `PathSeparatedPrefix` (Envoy's default: true).
    pub case_sensitive: bool,
    /// All must match.
    pub headers: Vec<HeaderMatcher>,
    /// All must match.
    pub query_parameters: Vec<QueryParameterMatcher>,
}

/// How a route matches the (normalised) path, without the query string.
#[derive(Debug, Clone)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    /// Must match the whole path.
    Regex(Regex),
    /// `path_separated_prefix`: the prefix, followed by the end of the path, `/`, `?` or `#`.
    PathSeparatedPrefix(String),
}

/// An Envoy `StringMatcher`.
#[derive(Debug, Clone)]
pub struct StringMatcher {
    pub pattern: StringPattern,
    /// Does not apply to `Regex` (Envoy's rule).
    pub ignore_case: bool,
}

#[derive(Debug, Clone)]
pub enum StringPattern {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    /// Must match the whole value.
    Regex(Regex),
}

/// An Envoy `HeaderMatcher`.
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// Lower-case header name.
    pub name: String,
    pub rule: HeaderRule,
    /// `invert_match`.
    pub invert: bool,
}

#[derive(Debug, Clone)]
pub enum HeaderRule {
    /// The header is present and its value matches.
    Value(StringMatcher),
    /// `present_match: true` means present; `false` means absent.
    Present(bool),
    /// `range_match`: the value parses as an integer in `[start, end)`.
    Range { start: i64, end: i64 },
}

/// An Envoy `QueryParameterMatcher`.
#[derive(Debug, Clone)]
pub struct QueryParameterMatcher {
    pub name: String,
    /// `None`: the parameter only has to be present (`present_match`).
    pub value: Option<StringMatcher>,
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    Forward(Box<ForwardAction>),
    Redirect(Redirect),
    DirectResponse { status: u16, body: Option<Bytes> },
}

/// An Envoy `RouteAction`: send the request upstream.
#[derive(Debug, Clone)]
pub struct ForwardAction {
    pub target: ClusterTarget,
    /// Overall deadline, retries included. `None`: no deadline (`timeout: 0s`). Envoy's default
    /// when the field is absent (15 s) is applied by the converter.
    pub timeout: Option<Duration>,
    /// The route's own policy; when `None` the virtual host's applies.
    pub retry_policy: Option<RetryPolicy>,
    pub prefix_rewrite: Option<String>,
    /// `regex_rewrite`: every match of the pattern in the path is replaced by `substitution`.
    pub regex_rewrite: Option<RegexRewrite>,
    /// `host_rewrite_literal`.
    pub host_rewrite: Option<String>,
    pub hash_policy: Vec<HashPolicy>,
    pub mirrors: Vec<MirrorPolicy>,
}

#[derive(Debug, Clone)]
pub struct RegexRewrite {
    pub pattern: Regex,
    /// With `\1`-style group references, as Envoy writes them.
    pub substitution: String,
}

/// Which cluster(s) a forwarded request goes to.
#[derive(Debug, Clone)]
pub enum ClusterTarget {
    Single(String),
    /// `weighted_clusters`: (cluster, weight); weights are > 0 and their sum is > 0.
    Weighted(Vec<WeightedCluster>),
}

#[derive(Debug, Clone)]
pub struct WeightedCluster {
    pub name: String,
    pub weight: u32,
    /// Header mutations of this one choice (`request_headers_to_add` etc. on the weighted entry).
    pub headers: HeaderMutations,
}

/// An Envoy `RetryPolicy`.
#[derive(Debug, Clone, Default)]
pub struct RetryPolicy {
    pub retry_on: RetryOn,
    pub num_retries: u32,
    /// `None`: each try may use what remains of the route timeout.
    pub per_try_timeout: Option<Duration>,
    pub retriable_status_codes: Vec<u16>,
    /// Envoy's defaults: 25 ms base, 10 × base max.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// The `retry_on` conditions Outrigger implements (a comma-separated list in Envoy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// `5xx`: any 5xx answer, a reset, a connect failure or a per-try timeout.
    pub server_error: bool,
    /// `gateway-error`: 502, 503, 504, and per-try timeout.
    pub gateway_error: bool,
    /// `reset`: the upstream reset or closed the stream before answering; per-try timeout.
    pub reset: bool,
    /// `connect-failure`.
    pub connect_failure: bool,
    /// `refused-stream`: the upstream refused the HTTP/2 stream (REFUSED_STREAM).
    pub refused_stream: bool,
    /// `retriable-status-codes`: the codes in `RetryPolicy::retriable_status_codes`.
    pub retriable_status_codes: bool,
}

/// An Envoy `RouteAction.HashPolicy` (for `RING_HASH` and `MAGLEV` clusters).
#[derive(Debug, Clone)]
pub enum HashPolicy {
    /// Lower-case header name.
    Header {
        name: String,
        terminal: bool,
    },
    SourceIp {
        terminal: bool,
    },
}

/// `request_mirror_policies`: a copy goes to `cluster`; its answer is ignored.
#[derive(Debug, Clone)]
pub struct MirrorPolicy {
    pub cluster: String,
    /// Share of requests mirrored, in millionths (1_000_000 = all).
    pub fraction_per_million: u32,
}

/// An Envoy `RedirectAction`.
#[derive(Debug, Clone, Default)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub prefix_rewrite: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    pub status: u16,
    pub strip_query: bool,
}

/// `request_headers_to_add` / `_remove` and `response_headers_to_add` / `_remove`.
#[derive(Debug, Clone, Default)]
pub struct HeaderMutations {
    pub request_add: Vec<HeaderValueOption>,
    /// Lower-case names.
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderValueOption>,
    /// Lower-case names.
    pub response_remove: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct HeaderValueOption {
    /// Lower-case name.
    pub name: String,
    /// The value, with Envoy's `%…%` operators filled in per request.
    pub value: crate::router::HeaderFormat,
    /// `true`: append to existing values; `false`: replace them (Envoy's `append_action`).
    pub append: bool,
}

/// The HTTP fault filter's per-route config (`envoy.extensions.filters.http.fault.v3.HTTPFault`).
#[derive(Debug, Clone, Default)]
pub struct FaultPolicy {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone)]
pub struct FaultDelay {
    pub delay: Duration,
    /// In millionths of requests.
    pub per_million: u32,
}

#[derive(Debug, Clone)]
pub struct FaultAbort {
    pub status: FaultStatus,
    /// In millionths of requests.
    pub per_million: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultStatus {
    Http(u16),
    Grpc(i32),
}

/// An Envoy `Cluster` of type `STATIC` or `EDS`, with its endpoints resolved.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    pub lb_policy: LbPolicy,
    pub connect_timeout: Duration,
    pub circuit_breakers: CircuitBreakerThresholds,
    pub outlier_detection: Option<OutlierDetectionSpec>,
    /// Grouped by locality; lower `priority` is preferred.
    pub localities: Vec<LocalityEndpoints>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    /// Power of `choice_count` choices (Envoy's default 2).
    LeastRequest {
        choice_count: u32,
    },
    Random,
    RingHash {
        minimum_ring_size: u64,
        maximum_ring_size: u64,
    },
    Maglev {
        table_size: u64,
    },
}

/// The default-priority `circuit_breakers.thresholds`; Envoy's defaults are 1024/1024/1024/3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerThresholds {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for CircuitBreakerThresholds {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// An Envoy `OutlierDetection`, with Envoy's defaults applied for absent fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetectionSpec {
    /// Default 5.
    pub consecutive_5xx: u32,
    /// Percent chance an ejection for consecutive 5xx is enforced (default 100).
    pub enforcing_consecutive_5xx: u32,
    /// Default 5.
    pub consecutive_gateway_failure: u32,
    /// Percent (default 0: counted but not enforced, as in Envoy).
    pub enforcing_consecutive_gateway_failure: u32,
    /// How often ejections are reviewed (default 10 s).
    pub interval: Duration,
    /// Ejection lasts `base_ejection_time × times ejected` (default 30 s).
    pub base_ejection_time: Duration,
    /// Cap on ejected hosts, percent of the cluster (default 10; at least one host may be ejected).
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetectionSpec {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            enforcing_consecutive_5xx: 100,
            consecutive_gateway_failure: 5,
            enforcing_consecutive_gateway_failure: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

/// An Envoy `LocalityLbEndpoints`.
#[derive(Debug, Clone)]
pub struct LocalityEndpoints {
    pub locality: Locality,
    pub priority: u32,
    pub endpoints: Vec<EndpointSpec>,
}

/// An Envoy `LbEndpoint` with a socket address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub address: SocketAddr,
    pub health: HealthStatus,
    /// `load_balancing_weight`, default 1.
    pub weight: u32,
}

/// Envoy's `HealthStatus`. `Unknown`, `Healthy` and `Degraded` receive traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HealthStatus {
    #[default]
    Unknown,
    Healthy,
    Unhealthy,
    Draining,
    Timeout,
    Degraded,
}

impl HealthStatus {
    pub fn receives_traffic(self) -> bool {
        matches!(self, Self::Unknown | Self::Healthy | Self::Degraded)
    }

    /// The name Envoy's admin `/clusters` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Healthy => "HEALTHY",
            Self::Unhealthy => "UNHEALTHY",
            Self::Draining => "DRAINING",
            Self::Timeout => "TIMEOUT",
            Self::Degraded => "DEGRADED",
        }
    }
}
