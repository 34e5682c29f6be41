//! `google.protobuf.Duration` and the wrapper types.

use std::time::Duration;

use envoy_types::pb::google::protobuf::{Duration as ProtoDuration, UInt32Value, UInt64Value};

use super::FieldError;

/// A non-negative protobuf duration as a [`Duration`].
pub(crate) fn to_duration(value: &ProtoDuration) -> Result<Duration, FieldError> {
    let seconds = u64::try_from(value.seconds);
    let nanos = u32::try_from(value.nanos);
    match (seconds, nanos) {
        (Ok(seconds), Ok(nanos)) if nanos < 1_000_000_000 => Ok(Duration::new(seconds, nanos)),
        _ => Err(FieldError::here(format!(
            "invalid duration {}s {}ns (must be non-negative, with nanos below one second)",
            value.seconds, value.nanos
        ))),
    }
}

/// An optional duration with a default for an absent field.
pub(crate) fn duration_or(
    value: Option<&ProtoDuration>,
    default: Duration,
) -> Result<Duration, FieldError> {
    value.map_or(Ok(default), to_duration)
}

/// A duration field that Envoy requires to be strictly positive.
pub(crate) fn positive_duration(value: &ProtoDuration) -> Result<Duration, FieldError> {
    let duration = to_duration(value)?;
    if duration.is_zero() {
        return Err(FieldError::here("must be greater than 0s"));
    }
    Ok(duration)
}

pub(crate) fn u32_or(value: Option<&UInt32Value>, default: u32) -> u32 {
    value.map_or(default, |wrapper| wrapper.value)
}

pub(crate) fn u64_or(value: Option<&UInt64Value>, default: u64) -> u64 {
    value.map_or(default, |wrapper| wrapper.value)
}
