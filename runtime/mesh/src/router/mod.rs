//! Envoy route semantics as pure functions over the routing model.
//!
//! Nothing here does I/O or draws random numbers: callers pass the request's facts and any
//! random draws in, so every decision is deterministic and testable. The order a request
//! goes through these functions is the order of the modules below: normalise the path, pick
//! the virtual host, match a route, then apply the route's action (weighted choice, rewrite,
//! redirect, header mutations, faults, hash for consistent load balancing).

mod domain;
mod fault;
mod format;
mod hash;
mod headers;
mod matching;
mod path;
mod redirect;
mod rewrite;
mod string_match;
mod weighted;

pub use domain::{find_virtual_host, resolve_app_id};
pub use fault::{FaultDecision, decide_fault, effective_fault};
pub use format::{FormatContext, HeaderDirection, HeaderFormat};
pub use hash::request_hash;
pub use headers::{apply_request_mutations, apply_response_mutations};
pub use matching::{RequestFacts, match_route, route_matches};
pub use path::{PathError, normalize_path};
pub use redirect::redirect_location;
pub use rewrite::rewrite_path;
pub use string_match::{full_match_regex, string_matches};
pub use weighted::choose_weighted;
