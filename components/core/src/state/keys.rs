//! Dapr's key layout: `<prefix>||<key>`, where the prefix comes from the `keyPrefix` metadata.

use crate::metadata::{ComponentMetadata, MetadataError};

/// Dapr's separator between key prefix and key.
pub const SEPARATOR: &str = "||";

/// The `keyPrefix` strategy of one state store, already resolved to the text to prepend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix {
    prefix: Option<String>,
}

impl KeyPrefix {
    /// Resolves `keyPrefix` (`appid` by default, `name`, `namespace`, `none`, or custom text).
    pub fn from_metadata(
        metadata: &ComponentMetadata,
        app_id: &str,
        store_name: &str,
        namespace: Option<&str>,
    ) -> Result<Self, MetadataError> {
        let strategy = metadata.get("keyPrefix").unwrap_or("appid");
        let prefix = match strategy.to_ascii_lowercase().as_str() {
            "none" => None,
            "appid" => Some(app_id.to_string()),
            "name" => Some(store_name.to_string()),
            "namespace" => Some(match namespace {
                Some(namespace) if !namespace.is_empty() => format!("{namespace}.{app_id}"),
                _ => app_id.to_string(),
            }),
            _ => Some(strategy.to_ascii_lowercase()),
        };
        if let Some(prefix) = prefix.as_ref().filter(|prefix| prefix.contains(SEPARATOR)) {
            return Err(MetadataError::Invalid {
                field: "keyPrefix".into(),
                expected: format!("a prefix without {SEPARATOR:?}"),
                got: prefix.clone(),
            });
        }
        Ok(Self {
            prefix: prefix.filter(|prefix| !prefix.is_empty()),
        })
    }

    /// The default `appid` strategy.
    pub fn app_id(app_id: &str) -> Self {
        Self {
            prefix: Some(app_id.to_string()).filter(|prefix| !prefix.is_empty()),
        }
    }

    /// The key as stored; keys that contain the separator are refused, as Dapr does.
    pub fn qualify(&self, key: &str) -> Result<String, String> {
        if key.is_empty() {
            return Err("key must not be empty".to_string());
        }
        if key.contains(SEPARATOR) {
            return Err(format!(
                "input key/keyPrefix '{key}' can't contain '{SEPARATOR}'"
            ));
        }
        Ok(match &self.prefix {
            Some(prefix) => format!("{prefix}{SEPARATOR}{key}"),
            None => key.to_string(),
        })
    }

    /// The key the app used, from the key as stored.
    pub fn original<'a>(&self, stored: &'a str) -> &'a str {
        match &self.prefix {
            Some(prefix) => stored
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix(SEPARATOR))
                .unwrap_or(stored),
            None => stored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(strategy: Option<&str>, namespace: Option<&str>) -> KeyPrefix {
        let metadata = match strategy {
            Some(value) => ComponentMetadata::from_pairs([("keyPrefix", value)]),
            None => ComponentMetadata::default(),
        };
        KeyPrefix::from_metadata(&metadata, "myapp", "statestore", namespace).expect("valid")
    }

    #[test]
    fn strategies_match_dapr() {
        assert_eq!(prefix(None, None).qualify("k"), Ok("myapp||k".into()));
        assert_eq!(
            prefix(Some("appid"), None).qualify("k"),
            Ok("myapp||k".into())
        );
        assert_eq!(
            prefix(Some("name"), None).qualify("k"),
            Ok("statestore||k".into())
        );
        assert_eq!(
            prefix(Some("namespace"), Some("prod")).qualify("k"),
            Ok("prod.myapp||k".into())
        );
        assert_eq!(
            prefix(Some("namespace"), None).qualify("k"),
            Ok("myapp||k".into())
        );
        assert_eq!(prefix(Some("none"), None).qualify("k"), Ok("k".into()));
        assert_eq!(
            prefix(Some("Shared"), None).qualify("k"),
            Ok("shared||k".into())
        );
    }

    #[test]
    fn separator_in_key_or_prefix_is_refused_and_original_key_round_trips() {
        let app = prefix(None, None);
        assert!(app.qualify("a||b").is_err());
        assert!(app.qualify("").is_err());
        assert_eq!(app.original("myapp||k"), "k");
        assert!(
            KeyPrefix::from_metadata(
                &ComponentMetadata::from_pairs([("keyPrefix", "a||b")]),
                "myapp",
                "s",
                None
            )
            .is_err()
        );
    }
}
