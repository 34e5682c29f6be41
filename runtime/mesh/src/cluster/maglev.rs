//! MAGLEV: the Maglev consistent-hash lookup table, weighted as Envoy weights it.
//!
//! Each host's permutation of the table is `(offset + n × skip) % size`, with
//! `offset = xxhash64(address, seed 0) % size` and `skip = xxhash64(address, seed 1) % (size − 1) + 1`.
//! Hosts take turns claiming their next free slot; a host of weight `w` takes a turn in
//! `w / max weight` of the rounds. The size must be prime so every permutation covers the table;
//! a size that is not is raised to the next prime.

use twox_hash::XxHash64;

/// Envoy's default `table_size`; used for a size of 0.
pub(crate) const DEFAULT_TABLE_SIZE: u64 = 65_537;
/// Envoy's upper bound on `table_size`.
const TABLE_SIZE_LIMIT: u64 = 5_000_011;

/// A built lookup table; slots name endpoints by their index in the priority level.
#[derive(Debug)]
pub(crate) struct MaglevTable {
    slots: Vec<u32>,
}

struct BuildEntry {
    offset: u64,
    skip: u64,
    weight: u64,
    next: u64,
    target_weight: u64,
}

impl MaglevTable {
    /// `hosts`: (address as text, weight ≥ 1) by endpoint index.
    pub(crate) fn build(hosts: &[(String, u64)], table_size: u64) -> Self {
        let requested = if table_size == 0 {
            DEFAULT_TABLE_SIZE
        } else {
            table_size
        };
        let size = next_prime(requested.clamp(2, TABLE_SIZE_LIMIT));
        let Some(max_weight) = hosts.iter().map(|(_, weight)| *weight).max() else {
            return Self { slots: Vec::new() };
        };
        if max_weight == 0 || hosts.len() > u32::MAX as usize {
            return Self { slots: Vec::new() };
        }
        let mut entries: Vec<BuildEntry> = hosts
            .iter()
            .map(|(address, weight)| BuildEntry {
                offset: XxHash64::oneshot(0, address.as_bytes()) % size,
                skip: XxHash64::oneshot(1, address.as_bytes()) % (size - 1) + 1,
                weight: *weight,
                next: 0,
                target_weight: 0,
            })
            .collect();

        let mut slots: Vec<Option<u32>> = vec![None; size as usize];
        let mut filled = 0_u64;
        let mut round = 1_u64;
        while filled < size {
            for (index, entry) in entries.iter_mut().enumerate() {
                if filled == size {
                    break;
                }
                // A host of the largest weight takes a slot every round; one of a third of it,
                // every third round.
                if entry.weight == 0 || round.saturating_mul(entry.weight) < entry.target_weight {
                    continue;
                }
                entry.target_weight = entry.target_weight.saturating_add(max_weight);
                // `size` is prime, so the permutation reaches every slot and this ends.
                let mut slot = permutation(entry, size);
                while slots[slot as usize].is_some() {
                    entry.next += 1;
                    slot = permutation(entry, size);
                }
                slots[slot as usize] = Some(index as u32);
                entry.next += 1;
                filled += 1;
            }
            round += 1;
        }
        Self {
            slots: slots.into_iter().map(|slot| slot.unwrap_or(0)).collect(),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Endpoint indices from slot `hash % size` onwards, once round the table.
    pub(crate) fn walk(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let len = self.slots.len();
        let start = if len == 0 {
            0
        } else {
            (hash % len as u64) as usize
        };
        (0..len).map(move |step| self.slots[(start + step) % len] as usize)
    }
}

fn permutation(entry: &BuildEntry, size: u64) -> u64 {
    // Both terms are below `size` ≤ TABLE_SIZE_LIMIT, so nothing overflows.
    (entry.offset + (entry.next % size) * entry.skip) % size
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut divisor = 2_u64;
    while divisor * divisor <= n {
        if n.is_multiple_of(divisor) {
            return false;
        }
        divisor += 1;
    }
    true
}

fn next_prime(n: u64) -> u64 {
    let mut candidate = n.max(2);
    while !is_prime(candidate) {
        candidate += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;
    use crate::cluster::testing::{addr, cluster_with, endpoint, spread_hashes};
    use crate::model::{HealthStatus, LbPolicy};
    use std::collections::HashMap;
    use std::net::SocketAddr;

    const POLICY: LbPolicy = LbPolicy::Maglev {
        table_size: DEFAULT_TABLE_SIZE,
    };

    fn maglev(hosts: u16, unhealthy: Option<u16>) -> std::sync::Arc<Cluster> {
        cluster_with("maglev", POLICY, |spec| {
            spec.localities[0].endpoints = (1..=hosts)
                .map(|i| {
                    let health = if Some(i) == unhealthy {
                        HealthStatus::Unhealthy
                    } else {
                        HealthStatus::Healthy
                    };
                    endpoint(i, 1, health)
                })
                .collect();
        })
    }

    fn picks(cluster: &Cluster, hashes: &[u64]) -> Vec<SocketAddr> {
        hashes
            .iter()
            .map(|h| cluster.pick(Some(*h), &[]).unwrap().address())
            .collect()
    }

    #[test]
    fn primes() {
        assert!(is_prime(65_537));
        assert_eq!(next_prime(65_536), 65_537);
        assert_eq!(next_prime(0), 2);
        assert_eq!(next_prime(8), 11);
    }

    #[test]
    fn table_is_full_and_weighted() {
        let hosts = vec![(addr(1).to_string(), 1), (addr(2).to_string(), 3)];
        let table = MaglevTable::build(&hosts, 1009);
        assert_eq!(table.len(), 1009);
        let heavy = table.slots.iter().filter(|slot| **slot == 1).count();
        assert!((740..=775).contains(&heavy), "{heavy}");
        // Not prime: raised to the next prime instead of looping forever.
        assert_eq!(MaglevTable::build(&hosts, 1000).len(), 1009);
        assert_eq!(MaglevTable::build(&[], 1009).len(), 0);
        assert_eq!(MaglevTable::build(&hosts, 0).len(), 65_537);
        assert_eq!(MaglevTable::build(&hosts, 1).len(), 2);
    }

    #[test]
    fn same_hash_same_endpoint_and_even_spread() {
        let cluster = maglev(4, None);
        let hashes = spread_hashes(20_000);
        let first = picks(&cluster, &hashes);
        assert_eq!(first, picks(&cluster, &hashes));
        let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
        for address in &first {
            *counts.entry(*address).or_default() += 1;
        }
        assert_eq!(counts.len(), 4);
        for count in counts.values() {
            assert!((4_000..=6_000).contains(count), "{counts:?}");
        }
    }

    #[test]
    fn removing_one_endpoint_keeps_most_keys() {
        let before = maglev(5, None);
        let after = maglev(4, None);
        let hashes = spread_hashes(10_000);
        let old = picks(&before, &hashes);
        let new = picks(&after, &hashes);
        let survivors: Vec<_> = old
            .iter()
            .zip(&new)
            .filter(|(old, _)| **old != addr(5))
            .collect();
        let kept = survivors.iter().filter(|(old, new)| old == new).count();
        assert!(
            kept * 100 >= survivors.len() * 90,
            "{kept} of {}",
            survivors.len()
        );
    }

    #[test]
    fn ineligible_endpoint_is_skipped() {
        let healthy = maglev(3, None);
        let one_down = maglev(3, Some(2));
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
}
