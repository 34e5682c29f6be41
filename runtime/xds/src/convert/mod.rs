//! Envoy v3 resources → the mesh model, validated as Envoy validates them.
//!
//! Each converter reports the first problem as a [`FieldError`] carrying the field path inside
//! the resource (`virtual_hosts[0].routes[2].match.safe_regex`); the store turns it into an
//! [`XdsError::Invalid`](crate::store::XdsError::Invalid) naming the resource.

mod cluster;
mod duration;
mod endpoint;
mod fault;
mod headers;
mod listener;
mod matchers;
mod route;

use std::fmt;

pub use cluster::{ClusterEndpointSource, ConvertedCluster, convert_cluster};
pub use endpoint::convert_load_assignment;
pub use listener::{ListenerInfo, convert_listener};
pub use route::convert_route_configuration;

/// A validation failure at a field path inside one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    path: String,
    message: String,
}

impl FieldError {
    /// A problem with the value at `field` (relative to the caller's position).
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: field.into(),
            message: message.into(),
        }
    }

    /// A problem with the value the caller is converting (no further path).
    pub(crate) fn here(message: impl Into<String>) -> Self {
        Self::new(String::new(), message)
    }

    /// Prefixes the path with the enclosing field.
    pub(crate) fn within(mut self, field: &str) -> Self {
        self.path = match (field.is_empty(), self.path.is_empty()) {
            (true, _) => self.path,
            (false, true) => field.to_string(),
            (false, false) if self.path.starts_with('[') => format!("{field}{}", self.path),
            (false, false) => format!("{field}.{}", self.path),
        };
        self
    }

    /// The field path, e.g. `virtual_hosts[0].domains`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            formatter.write_str(&self.message)
        } else {
            write!(formatter, "{}: {}", self.path, self.message)
        }
    }
}

/// Adds the enclosing field to an error's path.
pub(crate) trait AtField<T> {
    fn at(self, field: &str) -> Result<T, FieldError>;
    fn at_index(self, field: &str, index: usize) -> Result<T, FieldError>;
}

impl<T> AtField<T> for Result<T, FieldError> {
    fn at(self, field: &str) -> Result<T, FieldError> {
        self.map_err(|error| error.within(field))
    }

    fn at_index(self, field: &str, index: usize) -> Result<T, FieldError> {
        self.map_err(|error| error.within(&format!("{field}[{index}]")))
    }
}
