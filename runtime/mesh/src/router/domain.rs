//! Virtual-host selection by `Host` / `:authority`, and app-id resolution.
//!
//! Domain matching follows Envoy within one route config, ASCII case-insensitively:
//! an exact name first, then the longest suffix wildcard (`*.foo.com`, `*-bar.foo.com`), then
//! the longest prefix wildcard (`foo.*`), then `*`. A wildcard never matches the empty string.
//!
//! Ports: a domain written with a port (`reviews:9080`) only matches a host with that port; a
//! domain without a port matches the name with any port or none (Envoy's
//! `ignore_port_in_host_matching`, applied per domain so both spellings can coexist). When
//! both match in the same tier with the same length, the domain with the port wins.

use crate::model::{MeshSnapshot, RouteConfig, VirtualHost};

use super::string_match::{ends_with, starts_with};

/// Finds the virtual host serving `host` (a `Host` / `:authority` value, optionally with a
/// port), looking in the route config named `preferred_config` first and then in every other
/// route config in order. The first config with any matching domain wins, even if that is
/// only its `*` domain.
pub fn find_virtual_host<'a>(
    snapshot: &'a MeshSnapshot,
    preferred_config: &str,
    host: &str,
) -> Option<(&'a RouteConfig, &'a VirtualHost)> {
    let host = Authority::parse(host);
    configs_in_preference_order(snapshot, preferred_config).find_map(|config| {
        best_virtual_host(config, |domain| {
            rank_domain(domain, &host, PortRule::MustAgree)
        })
        .map(|vhost| (config, vhost))
    })
}

/// Resolves a Dapr app id to the virtual host for it: one with the domain `<app-id>` or
/// `<app-id>.<namespace>.svc.cluster.local`, with or without a port.
///
/// An exact domain in any route config (preferred config first) beats a wildcard; only when
/// no config names the app exactly are wildcards (and finally `*`) considered, preferred
/// config first.
pub fn resolve_app_id<'a>(
    snapshot: &'a MeshSnapshot,
    preferred_config: &str,
    app_id: &str,
    namespace: &str,
) -> Option<(&'a RouteConfig, &'a VirtualHost)> {
    let cluster_local_name = format!("{app_id}.{namespace}.svc.cluster.local");
    let candidates = [
        Authority::parse(app_id),
        Authority::parse(&cluster_local_name),
    ];
    let rank_for_app = |domain: &str| {
        candidates
            .iter()
            .filter_map(|candidate| rank_domain(domain, candidate, PortRule::Any))
            .max()
    };
    let exact = configs_in_preference_order(snapshot, preferred_config).find_map(|config| {
        best_virtual_host(config, |domain| {
            rank_for_app(domain).filter(|rank| rank.tier == Tier::Exact)
        })
        .map(|vhost| (config, vhost))
    });
    exact.or_else(|| {
        configs_in_preference_order(snapshot, preferred_config)
            .find_map(|config| best_virtual_host(config, rank_for_app).map(|vhost| (config, vhost)))
    })
}

fn configs_in_preference_order<'a>(
    snapshot: &'a MeshSnapshot,
    preferred_config: &str,
) -> impl Iterator<Item = &'a RouteConfig> {
    let preferred = snapshot
        .route_config(preferred_config)
        .map(|config| &**config);
    let others = snapshot
        .route_configs
        .iter()
        .map(|config| &**config)
        .filter(move |config| config.name != preferred_config);
    preferred.into_iter().chain(others)
}

/// The virtual host with the best-ranked domain; on equal rank the first in order.
fn best_virtual_host(
    config: &RouteConfig,
    rank: impl Fn(&str) -> Option<DomainRank>,
) -> Option<&VirtualHost> {
    let mut best: Option<(DomainRank, &VirtualHost)> = None;
    for vhost in &config.virtual_hosts {
        for domain in &vhost.domains {
            if let Some(found) = rank(domain)
                && best.is_none_or(|(current, _)| found > current)
            {
                best = Some((found, vhost));
            }
        }
    }
    best.map(|(_, vhost)| vhost)
}

/// Envoy's domain tiers, weakest first so that the derived order ranks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    Any,
    PrefixWildcard,
    SuffixWildcard,
    Exact,
}

/// How well a domain matches; a greater value is a better match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct DomainRank {
    tier: Tier,
    /// Length of the non-wildcard part: longer wildcards are more specific.
    literal_len: usize,
    /// A domain that names the port is more specific than one that does not.
    names_port: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    /// A domain's port must equal the host's (a host without a port matches no ported domain).
    MustAgree,
    /// A domain matches whatever its port (for app ids, which carry none).
    Any,
}

/// A host or domain split into name and optional port.
#[derive(Debug, Clone, Copy)]
struct Authority<'a> {
    name: &'a str,
    port: Option<u16>,
}

impl<'a> Authority<'a> {
    /// Splits `name:port`, and `[v6]:port`; anything else (a bare IPv6 address, a non-numeric
    /// suffix) is all name.
    fn parse(value: &'a str) -> Self {
        let split = if value.starts_with('[') {
            value.rfind("]:").map(|at| at + 1)
        } else {
            value
                .rfind(':')
                .filter(|&at| value[..at].find(':').is_none())
        };
        if let Some(at) = split
            && let Ok(port) = value[at + 1..].parse::<u16>()
        {
            return Self {
                name: &value[..at],
                port: Some(port),
            };
        }
        Self {
            name: value,
            port: None,
        }
    }
}

fn rank_domain(domain: &str, host: &Authority<'_>, port_rule: PortRule) -> Option<DomainRank> {
    let domain = Authority::parse(domain);
    let port_agrees = match (domain.port, port_rule) {
        (None, _) | (Some(_), PortRule::Any) => true,
        (Some(port), PortRule::MustAgree) => host.port == Some(port),
    };
    if !port_agrees {
        return None;
    }
    let pattern = domain.name;
    let name = host.name;
    let (tier, literal_len) = if pattern == "*" {
        (Tier::Any, 0)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        let matches = name.len() > suffix.len() && ends_with(name, suffix, false);
        (matches.then_some(Tier::SuffixWildcard)?, suffix.len())
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        let matches = name.len() > prefix.len() && starts_with(name, prefix, false);
        (matches.then_some(Tier::PrefixWildcard)?, prefix.len())
    } else {
        (
            name.eq_ignore_ascii_case(pattern).then_some(Tier::Exact)?,
            pattern.len(),
        )
    };
    Some(DomainRank {
        tier,
        literal_len,
        names_port: domain.port.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn vhost(name: &str, domains: &[&str]) -> VirtualHost {
        VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|domain| domain.to_string()).collect(),
            ..VirtualHost::default()
        }
    }

    fn config(name: &str, vhosts: Vec<VirtualHost>) -> Arc<RouteConfig> {
        Arc::new(RouteConfig {
            name: name.into(),
            virtual_hosts: vhosts,
            ..RouteConfig::default()
        })
    }

    fn snapshot(configs: Vec<Arc<RouteConfig>>) -> MeshSnapshot {
        MeshSnapshot {
            route_configs: configs,
            ..MeshSnapshot::default()
        }
    }

    fn found(snapshot: &MeshSnapshot, preferred: &str, host: &str) -> Option<(String, String)> {
        find_virtual_host(snapshot, preferred, host)
            .map(|(config, vhost)| (config.name.clone(), vhost.name.clone()))
    }

    fn found_vhost(snapshot: &MeshSnapshot, host: &str) -> Option<String> {
        found(snapshot, "rc", host).map(|(_, vhost)| vhost)
    }

    fn precedence_snapshot() -> MeshSnapshot {
        snapshot(vec![config(
            "rc",
            vec![
                vhost("default", &["*"]),
                vhost("prefix", &["api.*"]),
                vhost("long-prefix", &["api.foo.*"]),
                vhost("suffix", &["*.foo.com"]),
                vhost("long-suffix", &["*-bar.foo.com"]),
                vhost("exact", &["api.foo.com"]),
            ],
        )])
    }

    #[test]
    fn exact_beats_suffix_beats_prefix_beats_any() {
        let snapshot = precedence_snapshot();
        assert_eq!(found_vhost(&snapshot, "api.foo.com").unwrap(), "exact");
        assert_eq!(found_vhost(&snapshot, "API.Foo.COM").unwrap(), "exact");
        assert_eq!(found_vhost(&snapshot, "x.foo.com").unwrap(), "suffix");
        assert_eq!(
            found_vhost(&snapshot, "baz-bar.foo.com").unwrap(),
            "long-suffix"
        );
        assert_eq!(
            found_vhost(&snapshot, "api.foo.org").unwrap(),
            "long-prefix"
        );
        assert_eq!(found_vhost(&snapshot, "api.bar").unwrap(), "prefix");
        assert_eq!(found_vhost(&snapshot, "other").unwrap(), "default");
    }

    #[test]
    fn wildcards_do_not_match_the_empty_string() {
        let snapshot = snapshot(vec![config(
            "rc",
            vec![vhost("suffix", &["*-bar.foo.com"])],
        )]);
        assert_eq!(found_vhost(&snapshot, "-bar.foo.com"), None);
        assert_eq!(found_vhost(&snapshot, "a-bar.foo.com").unwrap(), "suffix");
    }

    #[test]
    fn ports_match_ported_domains_and_any_port_matches_portless_domains() {
        let snapshot = snapshot(vec![config(
            "rc",
            vec![
                vhost("plain", &["reviews"]),
                vhost("ported", &["reviews:9080"]),
                vhost("other-port", &["ratings:9090"]),
            ],
        )]);
        assert_eq!(found_vhost(&snapshot, "reviews:9080").unwrap(), "ported");
        assert_eq!(found_vhost(&snapshot, "reviews:1234").unwrap(), "plain");
        assert_eq!(found_vhost(&snapshot, "reviews").unwrap(), "plain");
        assert_eq!(
            found_vhost(&snapshot, "ratings:9090").unwrap(),
            "other-port"
        );
        assert_eq!(found_vhost(&snapshot, "ratings"), None);
        assert_eq!(found_vhost(&snapshot, "ratings:80"), None);
    }

    #[test]
    fn ipv6_hosts_split_their_port() {
        let snapshot = snapshot(vec![config("rc", vec![vhost("v6", &["[::1]"])])]);
        assert_eq!(found_vhost(&snapshot, "[::1]:8080").unwrap(), "v6");
        assert_eq!(found_vhost(&snapshot, "[::1]").unwrap(), "v6");
    }

    #[test]
    fn preferred_config_is_searched_first_then_others_in_order() {
        let snapshot = snapshot(vec![
            config("first", vec![vhost("first-exact", &["a.com"])]),
            config("second", vec![vhost("second-any", &["*"])]),
            config("third", vec![vhost("third-exact", &["b.com"])]),
        ]);
        assert_eq!(
            found(&snapshot, "second", "a.com").unwrap(),
            ("second".to_string(), "second-any".to_string())
        );
        assert_eq!(
            found(&snapshot, "first", "b.com").unwrap(),
            ("second".to_string(), "second-any".to_string())
        );
        assert_eq!(
            found(&snapshot, "missing", "a.com").unwrap(),
            ("first".to_string(), "first-exact".to_string())
        );
        assert_eq!(
            found(&snapshot, "third", "b.com").unwrap(),
            ("third".to_string(), "third-exact".to_string())
        );
    }

    fn resolved(snapshot: &MeshSnapshot, preferred: &str, app_id: &str) -> Option<String> {
        resolve_app_id(snapshot, preferred, app_id, "default").map(|(_, vhost)| vhost.name.clone())
    }

    #[test]
    fn app_id_resolves_by_short_name_or_cluster_local_name() {
        let snapshot = snapshot(vec![config(
            "rc",
            vec![
                vhost("reviews", &["reviews", "reviews:9080"]),
                vhost("ratings", &["ratings.default.svc.cluster.local:9080"]),
                vhost("details", &["DETAILS.default.svc.cluster.local"]),
            ],
        )]);
        assert_eq!(resolved(&snapshot, "rc", "reviews").unwrap(), "reviews");
        assert_eq!(resolved(&snapshot, "rc", "ratings").unwrap(), "ratings");
        assert_eq!(resolved(&snapshot, "rc", "details").unwrap(), "details");
        assert_eq!(resolved(&snapshot, "rc", "unknown"), None);
        assert_eq!(
            resolve_app_id(&snapshot, "rc", "ratings", "prod").map(|(_, vhost)| &vhost.name),
            None
        );
    }

    #[test]
    fn app_id_exact_hit_in_any_config_beats_wildcard_in_preferred() {
        let snapshot = snapshot(vec![
            config(
                "preferred",
                vec![
                    vhost("wildcard", &["*.default.svc.cluster.local"]),
                    vhost("catch-all", &["*"]),
                ],
            ),
            config(
                "other",
                vec![vhost("exact", &["reviews.default.svc.cluster.local"])],
            ),
        ]);
        assert_eq!(
            resolved(&snapshot, "preferred", "reviews").unwrap(),
            "exact"
        );
        assert_eq!(
            resolved(&snapshot, "preferred", "ratings").unwrap(),
            "wildcard"
        );
        assert_eq!(resolved(&snapshot, "other", "ratings").unwrap(), "wildcard");
    }
}
