//! Redis component metadata, with Dapr's keys and defaults.

use std::time::Duration;

use outrigger_components::state::{Ttl, ttl_from_seconds_text};
use outrigger_components::{ComponentMetadata, InitError, MetadataError};

/// Connection and behaviour settings read from the component's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
    /// `enableTLS`: TLS without certificate verification, as Dapr does (`InsecureSkipVerify`).
    pub enable_tls: bool,
    pub dial_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Multiplexed connections to spread requests over.
    pub pool_size: usize,
    pub max_retries: usize,
    /// Applied to writes that carry no `ttlInSeconds` of their own.
    pub default_ttl: Option<Ttl>,
}

impl RedisSettings {
    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn from_metadata(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        let address = metadata.required("redisHost")?;
        let (host, port) = parse_host(address)?;
        match metadata
            .get("redisType")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("node") => {}
            Some(other) => return Err(InitError::Unsupported(format!("redisType {other:?}"))),
        }
        if metadata.bool_or("failover", false)? {
            return Err(InitError::Unsupported(
                "failover: true (Redis Sentinel)".into(),
            ));
        }
        let default_ttl = match metadata.get("ttlInSeconds") {
            None => None,
            Some(text) => {
                ttl_from_seconds_text(text).map_err(|message| MetadataError::Invalid {
                    field: "ttlInSeconds".into(),
                    expected: "a positive number of seconds or -1".into(),
                    got: format!("{text} ({message})"),
                })?
            }
        };
        let max_retries = match metadata.get("redisMaxRetries") {
            Some(_) => metadata.u64_or("redisMaxRetries", 3)?,
            None => metadata.u64_or("maxRetries", 3)?,
        };
        let pool_size = metadata.u64_or("poolSize", 1)?;
        if pool_size == 0 {
            return Err(MetadataError::Invalid {
                field: "poolSize".into(),
                expected: "at least 1".into(),
                got: "0".into(),
            }
            .into());
        }
        Ok(Self {
            host,
            port,
            username: metadata.get("redisUsername").map(str::to_string),
            password: metadata.get("redisPassword").map(str::to_string),
            db: metadata.i64_or("redisDB", 0)?,
            enable_tls: metadata.bool_or("enableTLS", false)?,
            dial_timeout: metadata.duration_or("dialTimeout", Duration::from_secs(5))?,
            read_timeout: metadata.duration_or("readTimeout", Duration::from_secs(3))?,
            write_timeout: metadata.duration_or("writeTimeout", Duration::from_secs(3))?,
            pool_size: usize::try_from(pool_size).unwrap_or(usize::MAX).min(64),
            max_retries: usize::try_from(max_retries).unwrap_or(usize::MAX),
            default_ttl,
        })
    }
}

fn parse_host(address: &str) -> Result<(String, u16), MetadataError> {
    let invalid = || MetadataError::Invalid {
        field: "redisHost".into(),
        expected: "host:port, e.g. localhost:6379".into(),
        got: address.to_string(),
    };
    let (host, port) = address.trim().rsplit_once(':').ok_or_else(invalid)?;
    let port = port.parse().map_err(|_| invalid())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || address.contains(',') {
        return Err(invalid());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<RedisSettings, InitError> {
        RedisSettings::from_metadata(&ComponentMetadata::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn reads_dapr_keys_and_defaults() {
        let parsed = settings(&[
            ("redisHost", "127.0.0.1:6390"),
            ("redisDB", "2"),
            ("ttlInSeconds", "60"),
        ])
        .expect("valid");
        assert_eq!(
            (parsed.host.as_str(), parsed.port, parsed.db),
            ("127.0.0.1", 6390, 2)
        );
        assert_eq!(
            parsed.default_ttl,
            Some(Ttl::After(Duration::from_secs(60)))
        );
        assert_eq!(parsed.read_timeout, Duration::from_secs(3));
    }

    #[test]
    fn bad_metadata_names_the_field() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "redisHost"),
            (&[("redisHost", "nohostport")], "redisHost"),
            (&[("redisHost", "h:1"), ("redisDB", "two")], "redisDB"),
            (
                &[("redisHost", "h:1"), ("dialTimeout", "soon")],
                "dialTimeout",
            ),
            (
                &[("redisHost", "h:1"), ("ttlInSeconds", "-4")],
                "ttlInSeconds",
            ),
            (
                &[("redisHost", "h:1"), ("enableTLS", "perhaps")],
                "enableTLS",
            ),
            (
                &[("redisHost", "h:1"), ("redisType", "cluster")],
                "redisType",
            ),
        ];
        for (pairs, field) in cases {
            let error = settings(pairs).expect_err("invalid");
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
    }
}
