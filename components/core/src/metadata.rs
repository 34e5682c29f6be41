//! Typed access to a component's `spec.metadata`, with errors that name the field.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::definition::MetadataItem;

/// A component's metadata as plain text values. Keys are matched case-insensitively, as Dapr does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComponentMetadata {
    values: BTreeMap<String, String>,
    /// The component's `spec.initTimeout`, when the runtime bounds its init.
    init_timeout: Option<Duration>,
}

/// A metadata value that is missing, malformed or not resolvable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata field {field:?}: expected {expected}, got {got:?}")]
    Invalid {
        field: String,
        expected: String,
        got: String,
    },
    #[error("metadata field {field:?} is required")]
    Missing { field: String },
    #[error(
        "metadata field {field:?} uses secretKeyRef {secret}/{key}, but secret stores are not supported yet"
    )]
    SecretsUnsupported {
        field: String,
        secret: String,
        key: String,
    },
}

impl ComponentMetadata {
    /// Resolves plain values; secret references are refused until secret stores exist.
    pub fn resolve(items: &[MetadataItem]) -> Result<Self, MetadataError> {
        let mut values = BTreeMap::new();
        for item in items {
            match item {
                MetadataItem::Plain { name, value } => {
                    values.insert(name.to_ascii_lowercase(), value.clone());
                }
                MetadataItem::SecretRef { name, secret, key } => {
                    return Err(MetadataError::SecretsUnsupported {
                        field: name.clone(),
                        secret: secret.clone(),
                        key: key.clone(),
                    });
                }
            }
        }
        Ok(Self {
            values,
            init_timeout: None,
        })
    }

    /// Builds metadata from pairs, for components created in code.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
                .collect(),
            init_timeout: None,
        }
    }

    /// Records the time the runtime gives the component's init (`spec.initTimeout`), so that
    /// a component waiting on a remote service can give up first, with a cause.
    pub fn with_init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = Some(timeout);
        self
    }

    /// The time the runtime gives the component's init, if it bounds it.
    pub fn init_timeout(&self) -> Option<Duration> {
        self.init_timeout
    }

    /// Sets `field` unless the component declares it (the runtime's defaults, e.g. `consumerID`).
    pub fn with_default(mut self, field: &str, value: &str) -> Self {
        let key = field.to_ascii_lowercase();
        if self.values.get(&key).is_none_or(String::is_empty) {
            self.values.insert(key, value.to_string());
        }
        self
    }

    /// The raw value; an empty value counts as absent.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.values
            .get(&field.to_ascii_lowercase())
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    pub fn required(&self, field: &str) -> Result<&str, MetadataError> {
        self.get(field).ok_or_else(|| MetadataError::Missing {
            field: field.to_string(),
        })
    }

    pub fn bool_or(&self, field: &str, default: bool) -> Result<bool, MetadataError> {
        match self.get(field) {
            None => Ok(default),
            Some(text) => match text.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "y" | "on" => Ok(true),
                "false" | "0" | "no" | "n" | "off" => Ok(false),
                _ => Err(invalid(field, "a boolean (true or false)", text)),
            },
        }
    }

    pub fn u64_or(&self, field: &str, default: u64) -> Result<u64, MetadataError> {
        self.parse_or(field, default, "a non-negative integer")
    }

    pub fn i64_or(&self, field: &str, default: i64) -> Result<i64, MetadataError> {
        self.parse_or(field, default, "an integer")
    }

    /// A duration as Go writes it (`5s`, `500ms`, `1m30s`); a bare number counts as milliseconds,
    /// which is how Dapr's metadata decoder treats integers for duration fields.
    pub fn duration_or(&self, field: &str, default: Duration) -> Result<Duration, MetadataError> {
        match self.get(field) {
            None => Ok(default),
            Some(text) => parse_duration(text)
                .ok_or_else(|| invalid(field, "a duration like \"5s\" or \"500ms\"", text)),
        }
    }

    fn parse_or<T: std::str::FromStr>(
        &self,
        field: &str,
        default: T,
        expected: &str,
    ) -> Result<T, MetadataError> {
        match self.get(field) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| invalid(field, expected, text)),
        }
    }
}

fn invalid(field: &str, expected: &str, got: &str) -> MetadataError {
    MetadataError::Invalid {
        field: field.to_string(),
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

/// Parses Go-style durations (`5s`, `1m30s`, `250ms`); a bare integer is milliseconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(millis) = text.parse::<u64>() {
        return Some(Duration::from_millis(millis));
    }
    humantime::parse_duration(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_getters_name_the_field_on_bad_input() {
        let metadata = ComponentMetadata::from_pairs([
            ("redisDB", "x"),
            ("enableTLS", "maybe"),
            ("dialTimeout", "3s"),
            ("readTimeout", "1m30s"),
            ("empty", ""),
        ]);
        let error = metadata.u64_or("redisDB", 0).expect_err("not a number");
        assert_eq!(
            error.to_string(),
            "metadata field \"redisDB\": expected a non-negative integer, got \"x\""
        );
        assert!(metadata.bool_or("enableTLS", false).is_err());
        assert_eq!(
            metadata.duration_or("dialtimeout", Duration::ZERO),
            Ok(Duration::from_secs(3))
        );
        assert_eq!(
            metadata.duration_or("readTimeout", Duration::ZERO),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(metadata.u64_or("empty", 7), Ok(7));
        assert_eq!(
            metadata.required("missing"),
            Err(MetadataError::Missing {
                field: "missing".into()
            })
        );
    }

    #[test]
    fn bare_numbers_are_milliseconds() {
        assert_eq!(parse_duration("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("soon"), None);
    }
}
