//! Invocation counters in Envoy's stat names, served by the admin `/stats` page.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::flags::ResponseFlags;

#[derive(Debug, Default)]
pub struct MeshStats {
    counters: Mutex<BTreeMap<String, u64>>,
}

impl MeshStats {
    pub fn increment(&self, name: String) {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *counters.entry(name).or_default() += 1;
    }

    /// Counts one finished request: its status class per cluster and each response flag.
    pub fn record_request(&self, cluster: Option<&str>, status: u16, flags: &ResponseFlags) {
        self.increment("outrigger.invoke.rq_total".to_string());
        if let Some(cluster) = cluster {
            self.increment(format!("cluster.{cluster}.upstream_rq_total"));
            self.increment(format!("cluster.{cluster}.upstream_rq_{}xx", status / 100));
        }
        for flag in flags.iter() {
            self.increment(format!("outrigger.invoke.response_flag.{}", flag.code()));
        }
    }

    /// Every counter, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(name, value)| (name.clone(), *value))
            .collect()
    }
}
