//! Fault injection decisions (Envoy's HTTP fault filter, per route).
//!
//! The `x-envoy-fault-*` request headers are not honoured: Envoy only reads them when the
//! filter config enables them (`header_delay` / `header_abort`), which the model does not carry.

use std::time::Duration;

use crate::model::{FaultPolicy, FaultStatus, Route, RouteFault, VirtualHost};

/// The faults to inject into one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultDecision {
    /// Wait this long before processing the request further.
    pub delay: Option<Duration>,
    /// Answer with this status instead of forwarding (after any delay).
    pub abort: Option<FaultStatus>,
}

/// Decides the faults for one request. Each draw is uniform in `0..1_000_000`; a fault applies
/// when its draw is below its `per_million`.
pub fn decide_fault(policy: &FaultPolicy, delay_draw: u32, abort_draw: u32) -> FaultDecision {
    FaultDecision {
        delay: policy
            .delay
            .as_ref()
            .filter(|delay| delay_draw < delay.per_million)
            .map(|delay| delay.delay),
        abort: policy
            .abort
            .as_ref()
            .filter(|abort| abort_draw < abort.per_million)
            .map(|abort| abort.status),
    }
}

/// The fault policy for a request: the route's own, else its virtual host's, unless the route
/// disables the filter.
pub fn effective_fault<'a>(route: &'a Route, vhost: &'a VirtualHost) -> Option<&'a FaultPolicy> {
    match &route.fault {
        RouteFault::Inherit => vhost.fault.as_ref(),
        RouteFault::Disabled => None,
        RouteFault::Policy(policy) => Some(policy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FaultAbort, FaultDelay, PathMatch, RouteAction, RouteMatch};

    fn policy(per_million: u32) -> FaultPolicy {
        FaultPolicy {
            delay: Some(FaultDelay {
                delay: Duration::from_millis(250),
                per_million,
            }),
            abort: Some(FaultAbort {
                status: FaultStatus::Http(503),
                per_million,
            }),
        }
    }

    #[test]
    fn zero_percent_never_injects() {
        assert_eq!(decide_fault(&policy(0), 0, 0), FaultDecision::default());
    }

    #[test]
    fn fifty_percent_boundary() {
        let half = policy(500_000);
        assert_eq!(
            decide_fault(&half, 499_999, 499_999),
            FaultDecision {
                delay: Some(Duration::from_millis(250)),
                abort: Some(FaultStatus::Http(503)),
            }
        );
        assert_eq!(
            decide_fault(&half, 500_000, 500_000),
            FaultDecision::default()
        );
        let mixed = decide_fault(&half, 0, 999_999);
        assert_eq!(mixed.delay, Some(Duration::from_millis(250)));
        assert_eq!(mixed.abort, None);
    }

    #[test]
    fn hundred_percent_always_injects() {
        let all = decide_fault(&policy(1_000_000), 999_999, 999_999);
        assert_eq!(all.delay, Some(Duration::from_millis(250)));
        assert_eq!(all.abort, Some(FaultStatus::Http(503)));
    }

    #[test]
    fn empty_policy_injects_nothing() {
        assert_eq!(
            decide_fault(&FaultPolicy::default(), 0, 0),
            FaultDecision::default()
        );
    }

    #[test]
    fn route_fault_overrides_virtual_host_fault() {
        let mut route = Route {
            name: "r".into(),
            matcher: RouteMatch {
                path: PathMatch::Prefix("/".into()),
                case_sensitive: true,
                headers: Vec::new(),
                query_parameters: Vec::new(),
            },
            action: RouteAction::DirectResponse {
                status: 200,
                body: None,
            },
            headers: Default::default(),
            fault: RouteFault::Inherit,
        };
        let vhost = VirtualHost {
            fault: Some(policy(1)),
            ..VirtualHost::default()
        };
        assert_eq!(
            effective_fault(&route, &vhost)
                .unwrap()
                .delay
                .as_ref()
                .unwrap()
                .per_million,
            1
        );
        route.fault = RouteFault::Policy(policy(2));
        assert_eq!(
            effective_fault(&route, &vhost)
                .unwrap()
                .delay
                .as_ref()
                .unwrap()
                .per_million,
            2
        );
        route.fault = RouteFault::Disabled;
        assert!(effective_fault(&route, &vhost).is_none());
    }
}
