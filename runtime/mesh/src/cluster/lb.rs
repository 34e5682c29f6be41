//! Load balancing within one priority level.
//!
//! The per-policy structures (round-robin weights, hash ring, Maglev table) are built once per
//! version of a cluster, over all of the level's endpoints; which endpoints may be chosen is
//! decided per pick by the `accept` filter the caller passes in.

use std::sync::{Arc, Mutex, PoisonError};

use super::endpoint::Endpoint;
use super::maglev::MaglevTable;
use super::ring_hash::Ring;
use crate::model::LbPolicy;

/// Envoy's default `choice_count`.
const DEFAULT_CHOICE_COUNT: usize = 2;

/// One priority level's balancer.
pub(crate) enum Balancer {
    /// Smooth weighted round robin (nginx's): each pick adds every candidate's weight to its
    /// running score, takes the highest score and lowers it by the candidates' total weight.
    /// With equal weights this is a strict rotation.
    RoundRobin {
        scores: Mutex<Vec<i64>>,
    },
    /// Weighted random.
    Random,
    /// Best of `choice_count` weighted-random candidates, by active requests per unit of weight.
    LeastRequest {
        choice_count: usize,
    },
    RingHash(Ring),
    Maglev(MaglevTable),
}

impl Balancer {
    pub(crate) fn new(policy: LbPolicy, endpoints: &[Arc<Endpoint>]) -> Self {
        match policy {
            LbPolicy::RoundRobin => Self::RoundRobin {
                scores: Mutex::new(vec![0; endpoints.len()]),
            },
            LbPolicy::Random => Self::Random,
            LbPolicy::LeastRequest { choice_count } => Self::LeastRequest {
                choice_count: match choice_count {
                    0 => DEFAULT_CHOICE_COUNT,
                    count => count as usize,
                },
            },
            LbPolicy::RingHash {
                minimum_ring_size,
                maximum_ring_size,
            } => Self::RingHash(Ring::build(
                &hash_keys(endpoints),
                minimum_ring_size,
                maximum_ring_size,
            )),
            LbPolicy::Maglev { table_size } => {
                Self::Maglev(MaglevTable::build(&hash_keys(endpoints), table_size))
            }
        }
    }

    /// Picks the index of an endpoint in `endpoints` for which `accept` holds.
    pub(crate) fn pick(
        &self,
        endpoints: &[Arc<Endpoint>],
        hash: Option<u64>,
        accept: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        match self {
            Self::RoundRobin { scores } => round_robin(scores, endpoints, accept),
            Self::Random => {
                let candidates = candidates(endpoints, accept);
                weighted_random(endpoints, &candidates)
            }
            Self::LeastRequest { choice_count } => {
                least_request(endpoints, &candidates(endpoints, accept), *choice_count)
            }
            Self::RingHash(ring) => {
                let hash = hash.unwrap_or_else(rand::random);
                ring.walk(hash)
                    .find(|index| accept(*index))
                    .or_else(|| first_accepted(endpoints, accept))
            }
            Self::Maglev(table) => {
                let hash = hash.unwrap_or_else(rand::random);
                table
                    .walk(hash)
                    .find(|index| accept(*index))
                    .or_else(|| first_accepted(endpoints, accept))
            }
        }
    }
}

/// Ring/table keys: the address as Envoy prints it, with the balancing weight.
fn hash_keys(endpoints: &[Arc<Endpoint>]) -> Vec<(String, u64)> {
    endpoints
        .iter()
        .map(|endpoint| (endpoint.address().to_string(), endpoint.lb_weight()))
        .collect()
}

fn candidates(endpoints: &[Arc<Endpoint>], accept: &dyn Fn(usize) -> bool) -> Vec<usize> {
    (0..endpoints.len())
        .filter(|index| accept(*index))
        .collect()
}

/// For a host the ring or table gave no slot (more hosts than slots).
fn first_accepted(endpoints: &[Arc<Endpoint>], accept: &dyn Fn(usize) -> bool) -> Option<usize> {
    (0..endpoints.len()).find(|index| accept(*index))
}

fn round_robin(
    scores: &Mutex<Vec<i64>>,
    endpoints: &[Arc<Endpoint>],
    accept: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    // Eligibility may take the endpoint's own lock; decide it before taking the scores lock.
    let candidates = candidates(endpoints, accept);
    let mut scores = scores.lock().unwrap_or_else(PoisonError::into_inner);
    let mut total = 0_i64;
    let mut best: Option<(usize, i64)> = None;
    for &index in &candidates {
        let weight = weight_of(endpoints, index);
        let Some(score) = scores.get_mut(index) else {
            continue;
        };
        *score = score.saturating_add(weight);
        total = total.saturating_add(weight);
        // Strictly greater: ties go to the earlier endpoint, which makes equal weights rotate.
        if best.is_none_or(|(_, best_score)| *score > best_score) {
            best = Some((index, *score));
        }
    }
    let (chosen, _) = best?;
    if let Some(score) = scores.get_mut(chosen) {
        *score = score.saturating_sub(total);
    }
    Some(chosen)
}

fn weight_of(endpoints: &[Arc<Endpoint>], index: usize) -> i64 {
    endpoints
        .get(index)
        .map_or(0, |endpoint| endpoint.lb_weight() as i64)
}

fn weighted_random(endpoints: &[Arc<Endpoint>], candidates: &[usize]) -> Option<usize> {
    let total: u64 = candidates
        .iter()
        .filter_map(|index| endpoints.get(*index))
        .map(|endpoint| endpoint.lb_weight())
        .sum();
    if total == 0 {
        return None;
    }
    let mut draw = rand::random_range(0..total);
    for &index in candidates {
        let weight = endpoints
            .get(index)
            .map_or(0, |endpoint| endpoint.lb_weight());
        if draw < weight {
            return Some(index);
        }
        draw -= weight;
    }
    None
}

fn least_request(
    endpoints: &[Arc<Endpoint>],
    candidates: &[usize],
    choice_count: usize,
) -> Option<usize> {
    // With at least as many choices as candidates, sampling would only approximate looking at
    // all of them; look at all of them, from a random start so ties spread.
    if choice_count >= candidates.len() {
        if candidates.is_empty() {
            return None;
        }
        let start = rand::random_range(0..candidates.len());
        return (0..candidates.len())
            .map(|step| candidates[(start + step) % candidates.len()])
            .reduce(|best, index| less_loaded(endpoints, best, index));
    }
    (0..choice_count)
        .filter_map(|_| weighted_random(endpoints, candidates))
        .reduce(|best, index| less_loaded(endpoints, best, index))
}

/// The one with fewer active requests per unit of weight; `best` on a tie.
fn less_loaded(endpoints: &[Arc<Endpoint>], best: usize, other: usize) -> usize {
    let load = |index: usize| {
        endpoints.get(index).map_or((u64::MAX, 1), |endpoint| {
            (endpoint.active_requests(), endpoint.lb_weight())
        })
    };
    let (best_active, best_weight) = load(best);
    let (other_active, other_weight) = load(other);
    // other/other_weight < best/best_weight, without division.
    if u128::from(other_active) * u128::from(best_weight)
        < u128::from(best_active) * u128::from(other_weight)
    {
        other
    } else {
        best
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use crate::cluster::testing::{addr, cluster_with, endpoint};
    use crate::model::{HealthStatus, LbPolicy};

    fn weighted(policy: LbPolicy, weights: &[u32]) -> std::sync::Arc<crate::cluster::Cluster> {
        cluster_with("lb", policy, |spec| {
            spec.localities[0].endpoints = weights
                .iter()
                .enumerate()
                .map(|(i, w)| endpoint(i as u16 + 1, *w, HealthStatus::Healthy))
                .collect();
        })
    }

    fn count(picks: impl Iterator<Item = SocketAddr>) -> HashMap<SocketAddr, usize> {
        let mut counts = HashMap::new();
        for address in picks {
            *counts.entry(address).or_default() += 1;
        }
        counts
    }

    #[test]
    fn round_robin_rotates_with_equal_weights() {
        let cluster = weighted(LbPolicy::RoundRobin, &[1, 1, 1]);
        let picks: Vec<_> = (0..9)
            .map(|_| cluster.pick(None, &[]).unwrap().address())
            .collect();
        let rotation = [addr(1), addr(2), addr(3)];
        let expected: Vec<_> = rotation.iter().cycle().take(9).copied().collect();
        assert_eq!(picks, expected);
    }

    #[test]
    fn round_robin_follows_weights_smoothly() {
        let cluster = weighted(LbPolicy::RoundRobin, &[5, 1, 1]);
        let picks: Vec<_> = (0..70)
            .map(|_| cluster.pick(None, &[]).unwrap().address())
            .collect();
        let counts = count(picks.iter().copied());
        assert_eq!(counts[&addr(1)], 50);
        assert_eq!(counts[&addr(2)], 10);
        assert_eq!(counts[&addr(3)], 10);
        // Smooth: the cycle is a a b a c a a, so the heavy host runs at most 4 in a row (a plain
        // weighted rotation would give it 5).
        let longest_run = picks
            .chunk_by(|a, b| a == b)
            .map(<[SocketAddr]>::len)
            .max()
            .unwrap();
        assert!(longest_run <= 4, "{picks:?}");
    }

    #[test]
    fn zero_weight_counts_as_one() {
        let cluster = weighted(LbPolicy::RoundRobin, &[0, 0]);
        let counts = count((0..10).map(|_| cluster.pick(None, &[]).unwrap().address()));
        assert_eq!(counts[&addr(1)], 5);
        assert_eq!(counts[&addr(2)], 5);
    }

    #[test]
    fn random_follows_weights() {
        let cluster = weighted(LbPolicy::Random, &[1, 3]);
        let counts = count((0..20_000).map(|_| cluster.pick(None, &[]).unwrap().address()));
        assert!((4_000..=6_000).contains(&counts[&addr(1)]), "{counts:?}");
        assert!((14_000..=16_000).contains(&counts[&addr(2)]), "{counts:?}");
    }

    #[test]
    fn least_request_prefers_the_idle_host() {
        let cluster = weighted(LbPolicy::LeastRequest { choice_count: 2 }, &[1, 1]);
        let busy = cluster
            .endpoints()
            .iter()
            .find(|e| e.address() == addr(1))
            .cloned()
            .unwrap();
        let _guards: Vec<_> = (0..3).map(|_| busy.start_request()).collect();
        for _ in 0..100 {
            assert_eq!(cluster.pick(None, &[]).unwrap().address(), addr(2));
        }
    }

    #[test]
    fn least_request_samples_when_there_are_more_hosts_than_choices() {
        let cluster = weighted(LbPolicy::LeastRequest { choice_count: 2 }, &[1; 10]);
        let busy = cluster.endpoints()[0].clone();
        let _guards: Vec<_> = (0..3).map(|_| busy.start_request()).collect();
        let counts = count((0..10_000).map(|_| cluster.pick(None, &[]).unwrap().address()));
        // The busy host only wins when both choices are itself: 1 % of picks.
        assert!(
            counts.get(&addr(1)).copied().unwrap_or(0) < 300,
            "{counts:?}"
        );
        assert!(counts.len() >= 9);
    }

    #[test]
    fn avoided_hosts_are_skipped_unless_nothing_is_left() {
        for policy in [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::LeastRequest { choice_count: 2 },
        ] {
            let cluster = weighted(policy, &[1, 1]);
            for _ in 0..20 {
                assert_eq!(cluster.pick(None, &[addr(1)]).unwrap().address(), addr(2));
            }
            assert!(cluster.pick(None, &[addr(1), addr(2)]).is_some());
        }
    }
}
