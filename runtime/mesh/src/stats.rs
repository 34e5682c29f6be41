//! Invocation counters in Envoy's stat names, served by the admin `/stats` page.
//!
//! Counting happens once per request, so it takes one lock and allocates only the first time a
//! cluster or flag is seen; the Envoy names are spelled out when the page is rendered.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::flags::{ResponseFlag, ResponseFlags};

#[derive(Debug, Default)]
pub struct MeshStats {
    counters: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: u64,
    clusters: BTreeMap<String, ClusterCounters>,
    flags: BTreeMap<ResponseFlag, u64>,
}

#[derive(Debug, Default)]
struct ClusterCounters {
    requests: u64,
    /// Answers by status class: index 1 is 1xx … index 5 is 5xx (0 for anything else).
    by_class: [u64; 6],
}

impl MeshStats {
    /// Counts one finished request: its status class per cluster and each response flag.
    pub fn record_request(&self, cluster: Option<&str>, status: u16, flags: &ResponseFlags) {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counters.requests += 1;
        if let Some(cluster) = cluster {
            let entry = match counters.clusters.get_mut(cluster) {
                Some(entry) => entry,
                None => counters.clusters.entry(cluster.to_string()).or_default(),
            };
            entry.requests += 1;
            let class = usize::from(status / 100);
            entry.by_class[if class < 6 { class } else { 0 }] += 1;
        }
        for flag in flags.iter() {
            *counters.flags.entry(flag).or_default() += 1;
        }
    }

    /// Every counter under its Envoy name, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut named = vec![("outrigger.invoke.rq_total".to_string(), counters.requests)];
        for (cluster, entry) in &counters.clusters {
            named.push((
                format!("cluster.{cluster}.upstream_rq_total"),
                entry.requests,
            ));
            for (class, count) in entry.by_class.iter().enumerate() {
                if *count > 0 {
                    let class = if class == 0 {
                        "other".to_string()
                    } else {
                        format!("{class}xx")
                    };
                    named.push((format!("cluster.{cluster}.upstream_rq_{class}"), *count));
                }
            }
        }
        for (flag, count) in &counters.flags {
            named.push((
                format!("outrigger.invoke.response_flag.{}", flag.code()),
                *count,
            ));
        }
        named.sort();
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_by_cluster_class_and_flag() {
        let stats = MeshStats::default();
        let mut flags = ResponseFlags::default();
        stats.record_request(Some("reviews"), 200, &flags);
        stats.record_request(Some("reviews"), 204, &flags);
        flags.add(ResponseFlag::UpstreamOverflow);
        stats.record_request(Some("reviews"), 503, &flags);
        stats.record_request(None, 500, &ResponseFlags::default());
        let snapshot = stats.snapshot();
        let value = |name: &str| {
            snapshot
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| *value)
        };
        assert_eq!(value("outrigger.invoke.rq_total"), Some(4));
        assert_eq!(value("cluster.reviews.upstream_rq_total"), Some(3));
        assert_eq!(value("cluster.reviews.upstream_rq_2xx"), Some(2));
        assert_eq!(value("cluster.reviews.upstream_rq_5xx"), Some(1));
        assert_eq!(value("cluster.reviews.upstream_rq_4xx"), None);
        assert_eq!(value("outrigger.invoke.response_flag.UO"), Some(1));
        let names: Vec<&String> = snapshot.iter().map(|(name, _)| name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
