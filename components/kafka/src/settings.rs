//! Kafka component metadata, with Dapr's keys.

use std::time::Duration;

use outrigger_components::{ComponentMetadata, InitError, MetadataError};
use rdkafka::ClientConfig;

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    None,
    /// SASL with `saslMechanism` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    Password {
        username: String,
        password: String,
        mechanism: String,
        tls: bool,
    },
}

/// Connection and consumer settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSettings {
    pub brokers: String,
    pub consumer_group: String,
    pub client_id: String,
    pub auth: Auth,
    /// `initialOffset`: where a new consumer group starts, `newest` (default) or `oldest`.
    pub start_at_oldest: bool,
    pub max_message_bytes: u64,
    /// Partitions for topics this component creates when they do not exist yet.
    pub partitions: i32,
    pub operation_timeout: Duration,
    /// `sessionTimeout`: how long a consumer that stopped heartbeating keeps its partitions.
    pub session_timeout: Duration,
    /// How long the start-up check may wait for a broker: `operationTimeout`, but short of the
    /// runtime's `spec.initTimeout`, so that a silent broker fails init with the brokers named
    /// instead of the runtime's bare "init did not finish".
    pub connect_timeout: Duration,
}

/// How much sooner than `spec.initTimeout` the start-up check gives up.
const INIT_TIMEOUT_MARGIN: Duration = Duration::from_millis(250);

fn invalid(field: &str, expected: &str, got: &str) -> InitError {
    InitError::Metadata(MetadataError::Invalid {
        field: field.into(),
        expected: expected.into(),
        got: got.into(),
    })
}

impl KafkaSettings {
    pub fn from_metadata(metadata: &ComponentMetadata) -> Result<Self, InitError> {
        let operation_timeout =
            metadata.duration_or("operationTimeout", Duration::from_secs(10))?;
        let brokers = metadata.required("brokers")?.to_string();
        let consumer_group = metadata
            .get("consumerGroup")
            .or_else(|| metadata.get("consumerID"))
            .unwrap_or("outrigger")
            .to_string();
        let auth = match metadata
            .get("authType")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("none") => Auth::None,
            Some("password") => Auth::Password {
                username: metadata.required("saslUsername")?.to_string(),
                password: metadata.required("saslPassword")?.to_string(),
                mechanism: match metadata
                    .get("saslMechanism")
                    .map(str::to_ascii_uppercase)
                    .as_deref()
                {
                    None | Some("PLAIN") | Some("PLAINTEXT") => "PLAIN".to_string(),
                    Some("SHA-256") | Some("SCRAM-SHA-256") => "SCRAM-SHA-256".to_string(),
                    Some("SHA-512") | Some("SCRAM-SHA-512") => "SCRAM-SHA-512".to_string(),
                    Some(other) => {
                        return Err(invalid(
                            "saslMechanism",
                            "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                            other,
                        ));
                    }
                },
                tls: !metadata.bool_or("disableTls", false)?,
            },
            Some(other) => {
                return Err(InitError::Unsupported(format!(
                    "authType {other:?} (supported: none, password)"
                )));
            }
        };
        let start_at_oldest = match metadata
            .get("initialOffset")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("newest") => false,
            Some("oldest") => true,
            Some(other) => return Err(invalid("initialOffset", "newest or oldest", other)),
        };
        let partitions = metadata.u64_or("partitions", 1)?;
        Ok(Self {
            brokers,
            consumer_group,
            client_id: metadata.get("clientID").unwrap_or("outrigger").to_string(),
            auth,
            start_at_oldest,
            max_message_bytes: metadata.u64_or("maxMessageBytes", 1024 * 1024)?,
            partitions: i32::try_from(partitions.max(1)).map_err(|_| {
                invalid(
                    "partitions",
                    "a small positive number",
                    &partitions.to_string(),
                )
            })?,
            operation_timeout,
            session_timeout: metadata.duration_or("sessionTimeout", Duration::from_secs(10))?,
            connect_timeout: match metadata.init_timeout() {
                Some(init) => {
                    operation_timeout.min(init.saturating_sub(INIT_TIMEOUT_MARGIN).max(init / 2))
                }
                None => operation_timeout,
            },
        })
    }

    /// The librdkafka settings every client of this component shares.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("message.max.bytes", self.max_message_bytes.to_string())
            // librdkafka checks message timeouts when a reconnect attempt comes round, and backs
            // off up to 10 s by default: a publish during an outage would then take 10 s to
            // fail whatever `operationTimeout` says. Reconnecting at least once per
            // operation timeout (1 s at most) keeps failures as prompt as configured.
            .set(
                "reconnect.backoff.max.ms",
                self.operation_timeout
                    .as_millis()
                    .clamp(100, 1000)
                    .to_string(),
            );
        match &self.auth {
            Auth::None => {
                config.set("security.protocol", "plaintext");
            }
            Auth::Password {
                username,
                password,
                mechanism,
                tls,
            } => {
                config
                    .set(
                        "security.protocol",
                        if *tls { "sasl_ssl" } else { "sasl_plaintext" },
                    )
                    .set("sasl.mechanisms", mechanism)
                    .set("sasl.username", username)
                    .set("sasl.password", password);
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dapr_keys_and_refuses_bad_ones() {
        let settings = KafkaSettings::from_metadata(&ComponentMetadata::from_pairs([
            ("brokers", "127.0.0.1:9092"),
            ("consumerGroup", "g"),
            ("authType", "password"),
            ("saslUsername", "u"),
            ("saslPassword", "p"),
            ("saslMechanism", "SHA-512"),
            ("initialOffset", "oldest"),
        ]))
        .expect("valid");
        assert_eq!(settings.consumer_group, "g");
        assert!(settings.start_at_oldest);
        assert!(
            matches!(settings.auth, Auth::Password { ref mechanism, tls: true, .. } if mechanism == "SCRAM-SHA-512")
        );
        for (pairs, field) in [
            (vec![("consumerGroup", "g")], "brokers"),
            (
                vec![("brokers", "b"), ("initialOffset", "middle")],
                "initialOffset",
            ),
            (
                vec![("brokers", "b"), ("authType", "password")],
                "saslUsername",
            ),
            (vec![("brokers", "b"), ("authType", "oidc")], "authType"),
        ] {
            let error = KafkaSettings::from_metadata(&ComponentMetadata::from_pairs(pairs))
                .expect_err(field);
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
    }
}
