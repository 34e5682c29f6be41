//! Proto3 JSON ⇄ protobuf through the descriptor set `envoy-types` ships.
//!
//! Decoding the pool costs tens of megabytes and milliseconds, so it is decoded for each use
//! (a file load, a config dump) and dropped afterwards, never kept by an idle sidecar.

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

use crate::ENVOY_DESCRIPTOR_SET;

/// Every Envoy v3 message type (and its dependencies).
pub(crate) fn decode_pool() -> Result<DescriptorPool, String> {
    DescriptorPool::decode(ENVOY_DESCRIPTOR_SET)
        .map_err(|error| format!("cannot decode the Envoy descriptor set: {error}"))
}

/// The descriptor of a message type, by full name, in a freshly decoded pool.
pub(crate) fn message_descriptor(full_name: &str) -> Result<MessageDescriptor, String> {
    decode_pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("unknown message type {full_name}"))
}

/// An `Any` in proto3 JSON with its `"@type"`, field names as in the `.proto` files (as
/// Envoy's admin `/config_dump` prints them).
pub(crate) fn any_to_json(pool: &DescriptorPool, any: &Any) -> Result<serde_json::Value, String> {
    let full_name = any.type_url.rsplit('/').next().unwrap_or_default();
    let descriptor = pool
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("unknown message type {full_name}"))?;
    let message = DynamicMessage::decode(descriptor, any.value.as_slice())
        .map_err(|error| format!("cannot decode {}: {error}", any.type_url))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    let mut value = message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|error| format!("cannot serialise {}: {error}", any.type_url))?;
    if let serde_json::Value::Object(fields) = &mut value {
        fields.insert(
            "@type".to_string(),
            serde_json::Value::String(any.type_url.clone()),
        );
    }
    Ok(value)
}
