//! RING_HASH: Envoy's ketama-style consistent-hash ring.
//!
//! Built as Envoy builds it: each host gets `scale × normalized weight` entries (at least enough
//! that the lightest host has `minimum_ring_size × its share`, at most `maximum_ring_size` in
//! all), keyed by xxhash64 of `"<address>_<n>"`, sorted by hash. A lookup takes the first entry
//! whose hash is ≥ the request hash, wrapping to the start.

use twox_hash::XxHash64;

/// Envoy's upper bound on `maximum_ring_size`.
const RING_SIZE_LIMIT: u64 = 8 * 1024 * 1024;

/// A built ring; entries name endpoints by their index in the priority level.
#[derive(Debug)]
pub(crate) struct Ring {
    /// (hash, endpoint index), sorted by hash.
    entries: Vec<(u64, usize)>,
}

impl Ring {
    /// `hosts`: (address as text, weight ≥ 1) by endpoint index.
    pub(crate) fn build(
        hosts: &[(String, u64)],
        minimum_ring_size: u64,
        maximum_ring_size: u64,
    ) -> Self {
        let total_weight: u64 = hosts.iter().map(|(_, weight)| *weight).sum();
        let Some(min_weight) = hosts.iter().map(|(_, weight)| *weight).min() else {
            return Self {
                entries: Vec::new(),
            };
        };
        if total_weight == 0 || min_weight == 0 {
            return Self {
                entries: Vec::new(),
            };
        }
        let maximum = maximum_ring_size.clamp(1, RING_SIZE_LIMIT) as f64;
        let minimum = minimum_ring_size.clamp(1, RING_SIZE_LIMIT) as f64;
        let min_normalized = min_weight as f64 / total_weight as f64;
        let scale = ((min_normalized * minimum).ceil() / min_normalized).min(maximum);

        let mut entries = Vec::with_capacity(scale.ceil() as usize);
        let mut current_hashes = 0.0_f64;
        let mut target_hashes = 0.0_f64;
        for (index, (address, weight)) in hosts.iter().enumerate() {
            target_hashes += scale * (*weight as f64 / total_weight as f64);
            let mut n = 0_u64;
            while current_hashes < target_hashes {
                let key = format!("{address}_{n}");
                entries.push((XxHash64::oneshot(0, key.as_bytes()), index));
                n += 1;
                current_hashes += 1.0;
            }
        }
        entries.sort_unstable();
        Self { entries }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Endpoint indices in ring order from the entry owning `hash`, once round the ring.
    pub(crate) fn walk(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let len = self.entries.len();
        let start = self.entries.partition_point(|(entry, _)| *entry < hash);
        (0..len).map(move |step| self.entries[(start + step) % len].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::{addr, cluster_with, endpoint, spread_hashes};
    use crate::model::{HealthStatus, LbPolicy};
    use std::collections::HashMap;
    use std::net::SocketAddr;

    const POLICY: LbPolicy = LbPolicy::RingHash {
        minimum_ring_size: 1024,
        maximum_ring_size: 8 * 1024 * 1024,
    };

    fn hosts(count: u16) -> Vec<(String, u64)> {
        (1..=count).map(|i| (addr(i).to_string(), 1)).collect()
    }

    #[test]
    fn ring_size_follows_minimum_and_weights() {
        let ring = Ring::build(&hosts(4), 1024, RING_SIZE_LIMIT);
        assert_eq!(ring.len(), 1024);
        let weighted = vec![(addr(1).to_string(), 1), (addr(2).to_string(), 3)];
        let ring = Ring::build(&weighted, 1024, RING_SIZE_LIMIT);
        let heavy = ring.entries.iter().filter(|(_, i)| *i == 1).count();
        assert_eq!(ring.len(), 1024);
        assert_eq!(heavy, 768);
        // The maximum wins over the minimum.
        assert_eq!(Ring::build(&hosts(4), 1024, 100).len(), 100);
        assert_eq!(Ring::build(&[], 1024, 2048).len(), 0);
    }

    fn picks(cluster: &crate::cluster::Cluster, hashes: &[u64]) -> Vec<SocketAddr> {
        hashes
            .iter()
            .map(|h| cluster.pick(Some(*h), &[]).unwrap().address())
            .collect()
    }

    #[test]
    fn same_hash_same_endpoint_and_even_spread() {
        let cluster = cluster_with("ring", POLICY, |spec| {
            spec.localities[0].endpoints = (1..=4)
                .map(|i| endpoint(i, 1, HealthStatus::Healthy))
                .collect();
        });
        let hashes = spread_hashes(20_000);
        let first = picks(&cluster, &hashes);
        assert_eq!(first, picks(&cluster, &hashes));
        let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
        for address in &first {
            *counts.entry(*address).or_default() += 1;
        }
        assert_eq!(counts.len(), 4);
        for count in counts.values() {
            assert!((3_000..=7_000).contains(count), "{counts:?}");
        }
    }

    #[test]
    fn weights_are_respected() {
        let cluster = cluster_with("ring", POLICY, |spec| {
            spec.localities[0].endpoints = vec![
                endpoint(1, 1, HealthStatus::Healthy),
                endpoint(2, 3, HealthStatus::Healthy),
            ];
        });
        let heavy = picks(&cluster, &spread_hashes(20_000))
            .iter()
            .filter(|a| **a == addr(2))
            .count();
        assert!((13_000..=17_000).contains(&heavy), "{heavy}");
    }

    #[test]
    fn removing_one_endpoint_keeps_most_keys() {
        let before = cluster_with("ring", POLICY, |spec| {
            spec.localities[0].endpoints = (1..=5)
                .map(|i| endpoint(i, 1, HealthStatus::Healthy))
                .collect();
        });
        let after = cluster_with("ring", POLICY, |spec| {
            spec.localities[0].endpoints = (1..=4)
                .map(|i| endpoint(i, 1, HealthStatus::Healthy))
                .collect();
        });
        let hashes = spread_hashes(10_000);
        let old = picks(&before, &hashes);
        let new = picks(&after, &hashes);
        let survivors: Vec<_> = old
            .iter()
            .zip(&new)
            .filter(|(old, _)| **old != addr(5))
            .collect();
        let kept = survivors.iter().filter(|(old, new)| old == new).count();
        // Not all: the ring keeps its size, so each remaining host gains entries (205 → 256),
        // and those take some keys from the others, as in Envoy.
        assert!(
            kept * 100 >= survivors.len() * 80,
            "{kept} of {}",
            survivors.len()
        );
    }

    #[test]
    fn ineligible_endpoint_is_skipped_to_the_next_on_the_ring() {
        let healthy = cluster_with("ring", POLICY, |spec| {
            spec.localities[0].endpoints = (1..=3)
                .map(|i| endpoint(i, 1, HealthStatus::Healthy))
                .collect();
        });
        let one_down = cluster_with("ring", POLICY, |spec| {
            spec.localities[0].endpoints = (1..=3)
                .map(|i| {
                    let health = if i == 2 {
                        HealthStatus::Unhealthy
                    } else {
                        HealthStatus::Healthy
                    };
                    endpoint(i, 1, health)
                })
                .collect();
        });
        let hashes = spread_hashes(5_000);
        for (old, new) in picks(&healthy, &hashes)
            .iter()
            .zip(picks(&one_down, &hashes))
        {
            assert_ne!(new, addr(2));
            if *old != addr(2) {
                assert_eq!(*old, new);
            }
        }
    }

    #[test]
    fn avoided_hosts_are_skipped_unless_nothing_is_left() {
        let cluster = cluster_with("ring", POLICY, |spec| {
            spec.localities[0].endpoints = (1..=2)
                .map(|i| endpoint(i, 1, HealthStatus::Healthy))
                .collect();
        });
        let first = cluster.pick(Some(42), &[]).unwrap().address();
        let second = cluster.pick(Some(42), &[first]).unwrap().address();
        assert_ne!(first, second);
        let again = cluster.pick(Some(42), &[first, second]).unwrap().address();
        assert_eq!(again, first);
    }
}
