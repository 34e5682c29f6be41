//! Weighted cluster choice.

use crate::model::{HeaderMutations, WeightedCluster};

/// Returned for an empty list, which the converter never produces: an unknown (empty) cluster
/// name makes the caller answer "no cluster" instead of panicking here.
static NO_CLUSTER: WeightedCluster = WeightedCluster {
    name: String::new(),
    weight: 0,
    headers: HeaderMutations {
        request_add: Vec::new(),
        request_remove: Vec::new(),
        response_add: Vec::new(),
        response_remove: Vec::new(),
    },
};

/// Picks a weighted cluster: `draw % total_weight` falls into one cluster's share of the
/// cumulative weights, in list order (Envoy's algorithm). The caller passes a uniformly random
/// `draw`. If every weight is 0 the first cluster is chosen.
pub fn choose_weighted(clusters: &[WeightedCluster], draw: u64) -> &WeightedCluster {
    let total: u64 = clusters
        .iter()
        .map(|cluster| u64::from(cluster.weight))
        .sum();
    let Some(point) = draw.checked_rem(total) else {
        return clusters.first().unwrap_or(&NO_CLUSTER);
    };
    let mut cumulative = 0;
    for cluster in clusters {
        cumulative += u64::from(cluster.weight);
        if point < cumulative {
            return cluster;
        }
    }
    // Unreachable: point < total, the last cumulative weight.
    clusters.last().unwrap_or(&NO_CLUSTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighted(pairs: &[(&str, u32)]) -> Vec<WeightedCluster> {
        pairs
            .iter()
            .map(|(name, weight)| WeightedCluster {
                name: (*name).into(),
                weight: *weight,
                headers: HeaderMutations::default(),
            })
            .collect()
    }

    #[test]
    fn draws_walk_cumulative_weights_at_the_boundaries() {
        let clusters = weighted(&[("a", 10), ("b", 30), ("c", 60)]);
        let chosen = |draw| choose_weighted(&clusters, draw).name.as_str();
        assert_eq!(chosen(0), "a");
        assert_eq!(chosen(9), "a");
        assert_eq!(chosen(10), "b");
        assert_eq!(chosen(39), "b");
        assert_eq!(chosen(40), "c");
        assert_eq!(chosen(99), "c");
        assert_eq!(chosen(100), "a");
        assert_eq!(chosen(u64::MAX), "b"); // u64::MAX % 100 == 15
    }

    #[test]
    fn zero_weights_and_empty_lists_do_not_panic() {
        assert_eq!(
            choose_weighted(&weighted(&[("a", 0), ("b", 0)]), 7).name,
            "a"
        );
        assert_eq!(choose_weighted(&[], 7).name, "");
        assert_eq!(
            choose_weighted(&weighted(&[("a", 0), ("b", 1)]), 7).name,
            "b"
        );
    }
}
