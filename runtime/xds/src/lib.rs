//! The xDS client: ADS (state of the world) and the `--xds-file` source, validating Envoy v3 resources and converting them into the mesh model.

pub mod ads;
pub mod convert;
pub mod file;
mod reflect;
pub mod store;

/// The `FileDescriptorSet` of every Envoy v3 type, as shipped by `envoy-types`.
pub const ENVOY_DESCRIPTOR_SET: &[u8] = include_bytes!(env!("ENVOY_TYPES_DESCRIPTOR_SET"));
