//! Redis connection settings (Dapr's metadata keys) and connections, shared by the Redis components.

pub mod settings;

use std::time::Duration;

use outrigger_components::InitError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

pub use self::settings::RedisSettings;

/// A client for the configured server; `connect` makes connections from it.
pub fn client(settings: &RedisSettings) -> Result<redis::Client, InitError> {
    let connect_error = |error: redis::RedisError| {
        InitError::Connect(format!(
            "error connecting to redis at {}: {error}",
            settings.address()
        ))
    };
    let mut redis_settings = RedisConnectionInfo::default().set_db(settings.db);
    if let Some(username) = &settings.username {
        redis_settings = redis_settings.set_username(username);
    }
    if let Some(password) = &settings.password {
        redis_settings = redis_settings.set_password(password);
    }
    let address = if settings.enable_tls {
        // Dapr's enableTLS skips certificate verification; keep that contract, and say so.
        tracing::warn!(redis = %settings.address(), "enableTLS: connecting with TLS without verifying the server certificate, as Dapr does");
        let _ = rustls::crypto::ring::default_provider().install_default();
        ConnectionAddr::TcpTls {
            host: settings.host.clone(),
            port: settings.port,
            insecure: true,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(settings.host.clone(), settings.port)
    };
    let info = address
        .into_connection_info()
        .map_err(connect_error)?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
        .set_redis_settings(redis_settings);
    redis::Client::open(info).map_err(connect_error)
}

/// A self-reconnecting connection, checked with `PING`. `response_timeout` must exceed any
/// blocking command sent on it.
pub async fn connect(
    client: &redis::Client,
    settings: &RedisSettings,
    response_timeout: Duration,
) -> Result<ConnectionManager, InitError> {
    let address = settings.address();
    let connect_error = |error: redis::RedisError| {
        InitError::Connect(format!("error connecting to redis at {address}: {error}"))
    };
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(settings.dial_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(settings.max_retries)
        // Short reconnect backoff: while Redis is down a call should fail in milliseconds,
        // not wait out a long retry schedule; the next call tries to reconnect again.
        .set_min_delay(Duration::from_millis(5))
        .set_max_delay(Duration::from_millis(100));
    let connect = ConnectionManager::new_with_config(client.clone(), config);
    let mut connection = tokio::time::timeout(settings.dial_timeout, connect)
        .await
        .map_err(|_| {
            InitError::Connect(format!(
                "error connecting to redis at {address}: no answer within {:?}",
                settings.dial_timeout
            ))
        })?
        .map_err(connect_error)?;
    redis::cmd("PING")
        .query_async::<()>(&mut connection)
        .await
        .map_err(connect_error)?;
    Ok(connection)
}
