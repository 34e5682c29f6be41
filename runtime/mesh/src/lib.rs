//! The service-mesh data plane: the routing model xDS is converted into, route matching, clusters with load balancing and outlier detection, and the sidecar-to-sidecar transport.

pub mod cluster;
pub mod flags;
pub mod guarded_body;
pub mod invoke;
pub mod model;
pub mod router;
pub mod stats;
pub mod transport;
