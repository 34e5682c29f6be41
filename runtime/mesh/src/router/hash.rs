//! The request hash for `RING_HASH` and `MAGLEV` load balancing.

use std::net::IpAddr;

use http::HeaderMap;
use twox_hash::XxHash64;

use crate::model::HashPolicy;

/// Envoy's `HashPolicyImpl::generateHash`: every policy that yields a value is folded in with
/// `hash = hash.rotate_left(1) ^ value` (the rotation keeps duplicate policies from cancelling
/// out). As in Envoy, evaluation stops at a `terminal` policy once a hash exists (produced by
/// that policy or an earlier one). `None` when no policy yields a value.
///
/// - `Header`: xxHash64 (seed 0) of the header's value; with several values they are sorted and
///   chained, each hash seeding the next (Envoy's `HashUtil::xxHash64` over a span), so their
///   order does not matter.
/// - `SourceIp`: xxHash64 (seed 0) of the address's text form (`10.0.0.1`, `2001:db8::1`).
pub fn request_hash(
    policies: &[HashPolicy],
    headers: &HeaderMap,
    source_ip: Option<IpAddr>,
) -> Option<u64> {
    let mut hash: Option<u64> = None;
    for policy in policies {
        let (value, terminal) = match policy {
            HashPolicy::Header { name, terminal } => (header_hash(headers, name), *terminal),
            HashPolicy::SourceIp { terminal } => (
                source_ip.map(|ip| XxHash64::oneshot(0, ip.to_string().as_bytes())),
                *terminal,
            ),
        };
        if let Some(value) = value {
            hash = Some(hash.map_or(0, |current| current.rotate_left(1)) ^ value);
        }
        if terminal && hash.is_some() {
            break;
        }
    }
    hash
}

fn header_hash(headers: &HeaderMap, name: &str) -> Option<u64> {
    let mut values: Vec<&[u8]> = headers
        .get_all(name)
        .iter()
        .map(|value| value.as_bytes())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values.into_iter().fold(0, XxHash64::oneshot))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use http::HeaderValue;

    use super::*;

    fn header(name: &str, terminal: bool) -> HashPolicy {
        HashPolicy::Header {
            name: name.into(),
            terminal,
        }
    }

    fn xx(bytes: &[u8]) -> u64 {
        XxHash64::oneshot(0, bytes)
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn single_policies_hash_header_value_or_ip_text() {
        let headers = map(&[("x-user", "alice")]);
        assert_eq!(
            request_hash(&[header("x-user", false)], &headers, None),
            Some(xx(b"alice"))
        );
        assert_eq!(
            request_hash(
                &[HashPolicy::SourceIp { terminal: false }],
                &headers,
                Some(IP)
            ),
            Some(xx(b"10.0.0.1"))
        );
        assert_eq!(
            request_hash(&[header("x-missing", false)], &headers, None),
            None
        );
        assert_eq!(
            request_hash(&[HashPolicy::SourceIp { terminal: false }], &headers, None),
            None
        );
        assert_eq!(request_hash(&[], &headers, Some(IP)), None);
    }

    #[test]
    fn policies_combine_with_rotate_and_xor() {
        let headers = map(&[("x-a", "1"), ("x-b", "2")]);
        let policies = [
            header("x-a", false),
            header("x-missing", false),
            header("x-b", false),
        ];
        assert_eq!(
            request_hash(&policies, &headers, None),
            Some(xx(b"1").rotate_left(1) ^ xx(b"2"))
        );
        let duplicated = [header("x-a", false), header("x-a", false)];
        assert_ne!(request_hash(&duplicated, &headers, None), Some(0));
    }

    #[test]
    fn terminal_policy_stops_once_a_hash_exists() {
        let headers = map(&[("x-a", "1"), ("x-b", "2")]);
        let stop_at_a = [header("x-a", true), header("x-b", false)];
        assert_eq!(request_hash(&stop_at_a, &headers, None), Some(xx(b"1")));
        let terminal_missing = [header("x-missing", true), header("x-b", false)];
        assert_eq!(
            request_hash(&terminal_missing, &headers, None),
            Some(xx(b"2"))
        );
        let earlier_hash = [
            header("x-a", false),
            header("x-missing", true),
            header("x-b", false),
        ];
        assert_eq!(request_hash(&earlier_hash, &headers, None), Some(xx(b"1")));
    }

    #[test]
    fn several_header_values_hash_independently_of_order() {
        let forward = map(&[("x-k", "b"), ("x-k", "a")]);
        let backward = map(&[("x-k", "a"), ("x-k", "b")]);
        let expected = XxHash64::oneshot(xx(b"a"), b"b");
        assert_eq!(
            request_hash(&[header("x-k", false)], &forward, None),
            Some(expected)
        );
        assert_eq!(
            request_hash(&[header("x-k", false)], &backward, None),
            Some(expected)
        );
    }
}
