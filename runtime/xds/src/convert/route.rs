//! `RouteConfiguration` → [`RouteConfig`].

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RetryPolicy as ProtoRetryPolicy, Route as ProtoRoute,
    RouteAction as ProtoRouteAction, RouteConfiguration, RouteMatch as ProtoRouteMatch,
    VirtualHost as ProtoVirtualHost, WeightedCluster,
    redirect_action::{PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier},
    route::Action,
    route_action::{
        ClusterSpecifier, HashPolicy as ProtoHashPolicy, HostRewriteSpecifier, RequestMirrorPolicy,
        hash_policy::PolicySpecifier,
    },
    route_match::PathSpecifier,
};
use outrigger_mesh::model::{
    ClusterTarget, ForwardAction, HashPolicy, MirrorPolicy, PathMatch, Redirect, RetryOn,
    RetryPolicy, Route, RouteAction, RouteConfig, RouteFault, RouteMatch, VirtualHost,
    WeightedCluster as ModelWeightedCluster,
};

use super::duration::{duration_or, positive_duration, to_duration, u32_or};
use super::fault::fault_from_filter_configs;
use super::headers::{HeaderFields, header_mutations};
use super::matchers::{
    full_match_regex, header_matcher, header_name, per_million, query_parameter_matcher,
    regex_rewrite,
};
use super::{AtField, FieldError};

/// Envoy's route timeout when `timeout` is absent.
const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Envoy's retry back-off base interval when `retry_back_off` is absent.
const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

/// Converts a route configuration; every cluster a route names (directly, weighted or as a
/// mirror) must satisfy `is_known_cluster`.
pub fn convert_route_configuration(
    config: &RouteConfiguration,
    is_known_cluster: &dyn Fn(&str) -> bool,
) -> Result<RouteConfig, FieldError> {
    if config.name.is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    if config.vhds.is_some() {
        return Err(FieldError::new("vhds", "is not supported"));
    }
    let context = Context { is_known_cluster };
    let mirrors = context
        .mirrors(&config.request_mirror_policies)
        .at("request_mirror_policies")?;
    let mut domains = HashSet::new();
    let mut names = HashSet::new();
    let mut virtual_hosts = Vec::with_capacity(config.virtual_hosts.len());
    for (index, virtual_host) in config.virtual_hosts.iter().enumerate() {
        let converted = context
            .virtual_host(virtual_host, &mirrors, &mut domains)
            .at_index("virtual_hosts", index)?;
        if !names.insert(converted.name.clone()) {
            return Err(FieldError::new(
                format!("virtual_hosts[{index}].name"),
                format!("duplicate virtual host name {:?}", converted.name),
            ));
        }
        virtual_hosts.push(converted);
    }
    Ok(RouteConfig {
        name: config.name.clone(),
        virtual_hosts,
        headers: header_mutations(HeaderFields {
            request_add: &config.request_headers_to_add,
            request_remove: &config.request_headers_to_remove,
            response_add: &config.response_headers_to_add,
            response_remove: &config.response_headers_to_remove,
        })?,
    })
}

struct Context<'a> {
    is_known_cluster: &'a dyn Fn(&str) -> bool,
}

impl Context<'_> {
    fn known_cluster(&self, name: &str) -> Result<String, FieldError> {
        if name.is_empty() {
            return Err(FieldError::here("must not be empty"));
        }
        if !(self.is_known_cluster)(name) {
            return Err(FieldError::here(format!("unknown cluster {name:?}")));
        }
        Ok(name.to_string())
    }

    fn virtual_host(
        &self,
        virtual_host: &ProtoVirtualHost,
        inherited_mirrors: &[MirrorPolicy],
        seen_domains: &mut HashSet<String>,
    ) -> Result<VirtualHost, FieldError> {
        if virtual_host.name.is_empty() {
            return Err(FieldError::new("name", "must not be empty"));
        }
        if virtual_host.domains.is_empty() {
            return Err(FieldError::new("domains", "must not be empty"));
        }
        for (index, domain) in virtual_host.domains.iter().enumerate() {
            if domain.is_empty() {
                return Err(FieldError::new(
                    format!("domains[{index}]"),
                    "must not be empty",
                ));
            }
            // Envoy matches hosts case-insensitively, so `Foo` and `foo` collide.
            if !seen_domains.insert(domain.to_ascii_lowercase()) {
                return Err(FieldError::new(
                    format!("domains[{index}]"),
                    format!(
                        "duplicate domain {domain:?} (domains must be unique within a route configuration)"
                    ),
                ));
            }
        }
        let own_mirrors = self
            .mirrors(&virtual_host.request_mirror_policies)
            .at("request_mirror_policies")?;
        let mirrors = if own_mirrors.is_empty() {
            inherited_mirrors
        } else {
            own_mirrors.as_slice()
        };
        let retry_policy = virtual_host
            .retry_policy
            .as_ref()
            .map(retry_policy)
            .transpose()
            .at("retry_policy")?;
        let routes = virtual_host
            .routes
            .iter()
            .enumerate()
            .map(|(index, route)| self.route(route, mirrors).at_index("routes", index))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(VirtualHost {
            name: virtual_host.name.clone(),
            domains: virtual_host.domains.clone(),
            routes,
            retry_policy,
            headers: header_mutations(HeaderFields {
                request_add: &virtual_host.request_headers_to_add,
                request_remove: &virtual_host.request_headers_to_remove,
                response_add: &virtual_host.response_headers_to_add,
                response_remove: &virtual_host.response_headers_to_remove,
            })?,
            // On a virtual host, a disabled filter is the same as none.
            fault: match fault_from_filter_configs(&virtual_host.typed_per_filter_config)? {
                RouteFault::Policy(policy) => Some(policy),
                RouteFault::Inherit | RouteFault::Disabled => None,
            },
        })
    }

    fn route(
        &self,
        route: &ProtoRoute,
        inherited_mirrors: &[MirrorPolicy],
    ) -> Result<Route, FieldError> {
        let matcher = route
            .r#match
            .as_ref()
            .ok_or_else(|| FieldError::new("match", "is required"))
            .and_then(|matcher| route_match(matcher).at("match"))?;
        let action = match &route.action {
            None => {
                return Err(FieldError::here(
                    "one of route, redirect or direct_response is required",
                ));
            }
            Some(Action::Route(action)) => RouteAction::Forward(Box::new(
                self.forward(action, inherited_mirrors).at("route")?,
            )),
            Some(Action::Redirect(redirect)) => {
                RouteAction::Redirect(convert_redirect(redirect).at("redirect")?)
            }
            Some(Action::DirectResponse(response)) => {
                direct_response(response).at("direct_response")?
            }
            Some(Action::FilterAction(_)) => {
                return Err(FieldError::new("filter_action", "is not supported"));
            }
            Some(Action::NonForwardingAction(_)) => {
                return Err(FieldError::new("non_forwarding_action", "is not supported"));
            }
        };
        Ok(Route {
            name: route.name.clone(),
            matcher,
            action,
            headers: header_mutations(HeaderFields {
                request_add: &route.request_headers_to_add,
                request_remove: &route.request_headers_to_remove,
                response_add: &route.response_headers_to_add,
                response_remove: &route.response_headers_to_remove,
            })?,
            fault: fault_from_filter_configs(&route.typed_per_filter_config)?,
        })
    }

    fn forward(
        &self,
        action: &ProtoRouteAction,
        inherited_mirrors: &[MirrorPolicy],
    ) -> Result<ForwardAction, FieldError> {
        let target = match &action.cluster_specifier {
            Some(ClusterSpecifier::Cluster(name)) => {
                ClusterTarget::Single(self.known_cluster(name).at("cluster")?)
            }
            Some(ClusterSpecifier::WeightedClusters(weighted)) => {
                self.weighted(weighted).at("weighted_clusters")?
            }
            Some(ClusterSpecifier::ClusterHeader(_)) => {
                return Err(FieldError::new("cluster_header", "is not supported"));
            }
            Some(
                ClusterSpecifier::ClusterSpecifierPlugin(_)
                | ClusterSpecifier::InlineClusterSpecifierPlugin(_),
            ) => {
                return Err(FieldError::new(
                    "cluster_specifier_plugin",
                    "is not supported",
                ));
            }
            None => {
                return Err(FieldError::here(
                    "one of cluster or weighted_clusters is required",
                ));
            }
        };
        let timeout = duration_or(action.timeout.as_ref(), DEFAULT_ROUTE_TIMEOUT).at("timeout")?;
        let prefix_rewrite =
            (!action.prefix_rewrite.is_empty()).then(|| action.prefix_rewrite.clone());
        let regex_rewrite = action
            .regex_rewrite
            .as_ref()
            .map(regex_rewrite)
            .transpose()
            .at("regex_rewrite")?;
        if prefix_rewrite.is_some() && regex_rewrite.is_some() {
            return Err(FieldError::here(
                "prefix_rewrite and regex_rewrite cannot both be set",
            ));
        }
        let host_rewrite = match &action.host_rewrite_specifier {
            Some(HostRewriteSpecifier::HostRewriteLiteral(host)) if !host.is_empty() => {
                Some(host.clone())
            }
            Some(other) => {
                tracing::debug!(specifier = ?other, "host rewrite other than host_rewrite_literal is ignored");
                None
            }
            None => None,
        };
        let hash_policy = action
            .hash_policy
            .iter()
            .enumerate()
            .filter_map(|(index, policy)| {
                hash_policy(policy)
                    .at_index("hash_policy", index)
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let own_mirrors = self
            .mirrors(&action.request_mirror_policies)
            .at("request_mirror_policies")?;
        let mirrors = if own_mirrors.is_empty() {
            inherited_mirrors.to_vec()
        } else {
            own_mirrors
        };
        Ok(ForwardAction {
            target,
            timeout: (!timeout.is_zero()).then_some(timeout),
            retry_policy: action
                .retry_policy
                .as_ref()
                .map(retry_policy)
                .transpose()
                .at("retry_policy")?,
            prefix_rewrite,
            regex_rewrite,
            host_rewrite,
            hash_policy,
            mirrors,
        })
    }

    fn weighted(&self, weighted: &WeightedCluster) -> Result<ClusterTarget, FieldError> {
        // `total_weight` is deprecated and ignored: the sum of the weights is the total.
        let mut clusters = Vec::with_capacity(weighted.clusters.len());
        let mut total: u64 = 0;
        for (index, entry) in weighted.clusters.iter().enumerate() {
            let at = format!("clusters[{index}]");
            if !entry.cluster_header.is_empty() {
                return Err(FieldError::new(
                    format!("{at}.cluster_header"),
                    "is not supported",
                ));
            }
            let name = self
                .known_cluster(&entry.name)
                .map_err(|error| error.within(&format!("{at}.name")))?;
            let weight = u32_or(entry.weight.as_ref(), 0);
            let headers = header_mutations(HeaderFields {
                request_add: &entry.request_headers_to_add,
                request_remove: &entry.request_headers_to_remove,
                response_add: &entry.response_headers_to_add,
                response_remove: &entry.response_headers_to_remove,
            })
            .map_err(|error| error.within(&at))?;
            total += u64::from(weight);
            // A zero weight is valid in Envoy but never chosen; the model keeps positive ones.
            if weight > 0 {
                clusters.push(ModelWeightedCluster {
                    name,
                    weight,
                    headers,
                });
            }
        }
        if total == 0 {
            return Err(FieldError::new(
                "clusters",
                "the sum of the weights must be greater than 0",
            ));
        }
        if u32::try_from(total).is_err() {
            return Err(FieldError::new(
                "clusters",
                "the sum of the weights must fit in 32 bits",
            ));
        }
        Ok(ClusterTarget::Weighted(clusters))
    }

    fn mirrors(&self, policies: &[RequestMirrorPolicy]) -> Result<Vec<MirrorPolicy>, FieldError> {
        policies
            .iter()
            .enumerate()
            .map(|(index, policy)| self.mirror(policy).at_index("", index))
            .collect()
    }

    fn mirror(&self, policy: &RequestMirrorPolicy) -> Result<MirrorPolicy, FieldError> {
        if !policy.cluster_header.is_empty() {
            return Err(FieldError::new("cluster_header", "is not supported"));
        }
        let cluster = self.known_cluster(&policy.cluster).at("cluster")?;
        let fraction_per_million = match &policy.runtime_fraction {
            None => 1_000_000,
            Some(fraction) => fraction
                .default_value
                .as_ref()
                .ok_or_else(|| FieldError::new("default_value", "is required"))
                .and_then(per_million)
                .at("runtime_fraction")?,
        };
        Ok(MirrorPolicy {
            cluster,
            fraction_per_million,
        })
    }
}

fn route_match(matcher: &ProtoRouteMatch) -> Result<RouteMatch, FieldError> {
    let path = match &matcher.path_specifier {
        Some(PathSpecifier::Prefix(prefix)) => PathMatch::Prefix(prefix.clone()),
        Some(PathSpecifier::Path(path)) => PathMatch::Exact(path.clone()),
        Some(PathSpecifier::SafeRegex(regex)) => {
            PathMatch::Regex(full_match_regex(regex).at("safe_regex")?)
        }
        Some(PathSpecifier::PathSeparatedPrefix(prefix)) => {
            if !prefix.starts_with('/') || prefix.contains(['?', '#']) {
                return Err(FieldError::new(
                    "path_separated_prefix",
                    "must start with / and contain neither ? nor #",
                ));
            }
            PathMatch::PathSeparatedPrefix(prefix.clone())
        }
        Some(PathSpecifier::ConnectMatcher(_)) => {
            return Err(FieldError::new("connect_matcher", "is not supported"));
        }
        Some(PathSpecifier::PathMatchPolicy(_)) => {
            return Err(FieldError::new("path_match_policy", "is not supported"));
        }
        None => {
            return Err(FieldError::here(
                "one of prefix, path, safe_regex or path_separated_prefix is required",
            ));
        }
    };
    // Conditions that would narrow the match are rejected rather than ignored, so a route never
    // matches more requests than its configuration says.
    let unsupported = [
        ("runtime_fraction", matcher.runtime_fraction.is_some()),
        ("grpc", matcher.grpc.is_some()),
        ("tls_context", matcher.tls_context.is_some()),
        ("cookies", !matcher.cookies.is_empty()),
        ("dynamic_metadata", !matcher.dynamic_metadata.is_empty()),
        ("filter_state", !matcher.filter_state.is_empty()),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(FieldError::new(*field, "is not supported"));
    }
    let headers = matcher
        .headers
        .iter()
        .enumerate()
        .map(|(index, header)| header_matcher(header).at_index("headers", index))
        .collect::<Result<Vec<_>, _>>()?;
    let query_parameters = matcher
        .query_parameters
        .iter()
        .enumerate()
        .map(|(index, parameter)| {
            query_parameter_matcher(parameter).at_index("query_parameters", index)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteMatch {
        path,
        case_sensitive: matcher
            .case_sensitive
            .as_ref()
            .is_none_or(|value| value.value),
        headers,
        query_parameters,
    })
}

/// An Envoy `RetryPolicy`; conditions Outrigger does not implement are ignored, as Envoy
/// ignores unknown ones.
pub(crate) fn retry_policy(policy: &ProtoRetryPolicy) -> Result<RetryPolicy, FieldError> {
    let mut retry_on = RetryOn::default();
    for condition in policy
        .retry_on
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        match condition {
            "5xx" => retry_on.server_error = true,
            "gateway-error" => retry_on.gateway_error = true,
            "reset" => retry_on.reset = true,
            "connect-failure" => retry_on.connect_failure = true,
            "refused-stream" => retry_on.refused_stream = true,
            "retriable-status-codes" => retry_on.retriable_status_codes = true,
            other => tracing::debug!(condition = other, "ignoring unsupported retry_on condition"),
        }
    }
    let retriable_status_codes = policy
        .retriable_status_codes
        .iter()
        .enumerate()
        .map(|(index, code)| {
            u16::try_from(*code)
                .ok()
                .filter(|code| (100..600).contains(code))
                .ok_or_else(|| {
                    FieldError::new(
                        format!("retriable_status_codes[{index}]"),
                        format!("{code} is not an HTTP status code"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let per_try_timeout = policy
        .per_try_timeout
        .as_ref()
        .map(to_duration)
        .transpose()
        .at("per_try_timeout")?
        .filter(|timeout| !timeout.is_zero());
    let (backoff_base, backoff_max) = match &policy.retry_back_off {
        None => (DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_BASE * 10),
        Some(backoff) => {
            let base = backoff
                .base_interval
                .as_ref()
                .ok_or_else(|| FieldError::new("base_interval", "is required"))
                .and_then(|base| positive_duration(base).at("base_interval"))
                .at("retry_back_off")?;
            let max = match &backoff.max_interval {
                None => base.saturating_mul(10),
                Some(max) => positive_duration(max)
                    .at("max_interval")
                    .at("retry_back_off")?,
            };
            if max < base {
                return Err(FieldError::new(
                    "retry_back_off.max_interval",
                    "must be greater than or equal to base_interval",
                ));
            }
            (base, max)
        }
    };
    Ok(RetryPolicy {
        retry_on,
        num_retries: u32_or(policy.num_retries.as_ref(), 1),
        per_try_timeout,
        retriable_status_codes,
        backoff_base,
        backoff_max,
    })
}

/// `None` for hash policies Outrigger does not implement (they are skipped, as the next policy
/// or a random choice applies).
fn hash_policy(policy: &ProtoHashPolicy) -> Result<Option<HashPolicy>, FieldError> {
    let terminal = policy.terminal;
    match &policy.policy_specifier {
        Some(PolicySpecifier::Header(header)) => Ok(Some(HashPolicy::Header {
            name: header_name(&header.header_name).at("header.header_name")?,
            terminal,
        })),
        Some(PolicySpecifier::ConnectionProperties(properties)) if properties.source_ip => {
            Ok(Some(HashPolicy::SourceIp { terminal }))
        }
        Some(PolicySpecifier::ConnectionProperties(_)) => Ok(None),
        Some(other) => {
            tracing::debug!(policy = ?other, "ignoring unsupported hash policy");
            Ok(None)
        }
        None => Err(FieldError::here("policy_specifier is required")),
    }
}

fn convert_redirect(redirect: &RedirectAction) -> Result<Redirect, FieldError> {
    let scheme = match &redirect.scheme_rewrite_specifier {
        Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".to_string()),
        Some(SchemeRewriteSpecifier::HttpsRedirect(false)) => None,
        Some(SchemeRewriteSpecifier::SchemeRedirect(scheme)) if !scheme.is_empty() => {
            Some(scheme.to_ascii_lowercase())
        }
        Some(SchemeRewriteSpecifier::SchemeRedirect(_)) | None => None,
    };
    let port = match redirect.port_redirect {
        0 => None,
        port => Some(
            u16::try_from(port)
                .map_err(|_| FieldError::new("port_redirect", format!("{port} is not a port")))?,
        ),
    };
    let (path, prefix_rewrite) = match &redirect.path_rewrite_specifier {
        Some(PathRewriteSpecifier::PathRedirect(path)) => (Some(path.clone()), None),
        Some(PathRewriteSpecifier::PrefixRewrite(prefix)) => (None, Some(prefix.clone())),
        Some(PathRewriteSpecifier::RegexRewrite(_)) => {
            return Err(FieldError::new("regex_rewrite", "is not supported"));
        }
        Some(PathRewriteSpecifier::PathRewrite(_)) => {
            return Err(FieldError::new("path_rewrite", "is not supported"));
        }
        None => (None, None),
    };
    let status = match RedirectResponseCode::try_from(redirect.response_code) {
        Ok(RedirectResponseCode::MovedPermanently) => 301,
        Ok(RedirectResponseCode::Found) => 302,
        Ok(RedirectResponseCode::SeeOther) => 303,
        Ok(RedirectResponseCode::TemporaryRedirect) => 307,
        Ok(RedirectResponseCode::PermanentRedirect) => 308,
        Err(_) => {
            return Err(FieldError::new(
                "response_code",
                format!("unknown value {}", redirect.response_code),
            ));
        }
    };
    Ok(Redirect {
        scheme,
        host: (!redirect.host_redirect.is_empty()).then(|| redirect.host_redirect.clone()),
        port,
        path,
        prefix_rewrite,
        status,
        strip_query: redirect.strip_query,
    })
}

fn direct_response(response: &DirectResponseAction) -> Result<RouteAction, FieldError> {
    let status = u16::try_from(response.status)
        .ok()
        .filter(|status| (200..600).contains(status))
        .ok_or_else(|| {
            FieldError::new(
                "status",
                format!("{} is not in [200, 600)", response.status),
            )
        })?;
    let body = match response
        .body
        .as_ref()
        .and_then(|body| body.specifier.as_ref())
    {
        None => None,
        Some(Specifier::InlineString(text)) => Some(Bytes::from(text.clone())),
        Some(Specifier::InlineBytes(bytes)) => Some(Bytes::from(bytes.clone())),
        Some(Specifier::Filename(_)) => {
            return Err(FieldError::new("body.filename", "is not supported"));
        }
        Some(Specifier::EnvironmentVariable(_)) => {
            return Err(FieldError::new(
                "body.environment_variable",
                "is not supported",
            ));
        }
    };
    Ok(RouteAction::DirectResponse { status, body })
}
