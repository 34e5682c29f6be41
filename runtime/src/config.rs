//! Outrigger's configuration: flags, `OUTRIGGER_*` environment, config file and defaults,
//! layered with the `config` crate (defaults < file < environment < flags) and validated
//! once into [`Config`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

pub const DEFAULT_HTTP_PORT: u16 = 3500;
pub const DEFAULT_GRPC_PORT: u16 = 50001;
pub const DEFAULT_MAX_BODY_SIZE: &str = "4Mi";
pub const DEFAULT_MESH_PORT: u16 = 15008;
pub const DEFAULT_ADMIN_PORT: u16 = 15000;
pub const DEFAULT_ROUTE_CONFIG: &str = "outrigger";

/// `outrigger run` flags, named as daprd names them.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// The id of the application this sidecar serves (required).
    #[arg(long)]
    pub app_id: Option<String>,
    /// The port the application listens on.
    #[arg(long)]
    pub app_port: Option<u16>,
    /// How to talk to the application: http or grpc.
    #[arg(long)]
    pub app_protocol: Option<String>,
    /// HTTP API port (0 picks a free port) [default: 3500].
    #[arg(long)]
    pub dapr_http_port: Option<u16>,
    /// gRPC API port (0 picks a free port) [default: 50001].
    #[arg(long)]
    pub dapr_grpc_port: Option<u16>,
    /// Address the APIs listen on [default: 127.0.0.1].
    #[arg(long)]
    pub dapr_listen_addresses: Option<String>,
    /// Directory of component YAML; may be given more than once.
    #[arg(long = "resources-path", visible_alias = "components-path")]
    pub resources_paths: Vec<PathBuf>,
    /// Outrigger's own YAML config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// trace, debug, info, warn or error [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log as JSON lines.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub log_as_json: Option<bool>,
    /// Seconds to let in-flight requests finish on SIGTERM [default: 5].
    #[arg(long)]
    pub graceful_shutdown_seconds: Option<u64>,
    /// Largest request body, e.g. 4Mi, 512Ki, 1048576 [default: 4Mi].
    #[arg(long)]
    pub max_body_size: Option<String>,
    /// Port for invocations from peer sidecars, HTTP/2 (0 picks a free port) [default: 15008].
    #[arg(long)]
    pub mesh_port: Option<u16>,
    /// Address the mesh port listens on [default: 0.0.0.0].
    #[arg(long)]
    pub mesh_listen_address: Option<String>,
    /// Admin port on 127.0.0.1: /config_dump, /clusters, /ready (0 picks a free port) [default: 15000].
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// xDS control plane (ADS over gRPC), host:port.
    #[arg(long)]
    pub xds_address: Option<String>,
    /// Local xDS source: a DiscoveryResponse in proto3 JSON (YAML or JSON), watched for changes.
    #[arg(long)]
    pub xds_file: Option<PathBuf>,
    /// The route configuration searched first for app ids [default: outrigger].
    #[arg(long)]
    pub xds_route_config: Option<String>,
    /// Stay not-ready until the first full xDS snapshot is accepted [default: true].
    #[arg(long)]
    pub xds_wait_for_sync: Option<bool>,
    /// Threads serving requests: 1 runs everything on one thread (the least CPU per request),
    /// 0 one per core [default: 1].
    #[arg(long)]
    pub runtime_threads: Option<usize>,
    /// A workload label sent in the xDS node metadata (`LABELS`), as key=value; repeatable.
    #[arg(long = "xds-node-label")]
    pub xds_node_labels: Vec<String>,
}

/// The config file's schema: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    app_id: Option<String>,
    app_port: Option<u16>,
    app_protocol: Option<String>,
    dapr_http_port: Option<u16>,
    dapr_grpc_port: Option<u16>,
    dapr_listen_addresses: Option<String>,
    resources_paths: Option<Vec<PathBuf>>,
    log_level: Option<String>,
    log_as_json: Option<bool>,
    graceful_shutdown_seconds: Option<u64>,
    max_body_size: Option<String>,
    namespace: Option<String>,
    resources_poll_interval_ms: Option<u64>,
    mesh_port: Option<u16>,
    mesh_listen_address: Option<String>,
    admin_port: Option<u16>,
    xds_address: Option<String>,
    xds_file: Option<PathBuf>,
    xds_route_config: Option<String>,
    xds_wait_for_sync: Option<bool>,
    runtime_threads: Option<usize>,
    xds_node_labels: Option<Vec<String>>,
}

/// All layers merged, before validation. Field names are the layering keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MergedConfig {
    app_id: Option<String>,
    app_port: Option<u16>,
    app_protocol: String,
    dapr_http_port: u16,
    dapr_grpc_port: u16,
    dapr_listen_addresses: String,
    #[serde(default)]
    resources_paths: Vec<PathBuf>,
    log_level: String,
    log_as_json: bool,
    graceful_shutdown_seconds: u64,
    max_body_size: String,
    namespace: Option<String>,
    resources_poll_interval_ms: u64,
    api_token: Option<String>,
    app_api_token: Option<String>,
    mesh_port: u16,
    mesh_listen_address: String,
    admin_port: u16,
    xds_address: Option<String>,
    xds_file: Option<PathBuf>,
    xds_route_config: String,
    xds_wait_for_sync: bool,
    instance_ip: Option<String>,
    runtime_threads: usize,
    #[serde(default)]
    xds_node_labels: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppProtocol {
    Http,
    Grpc,
}

impl AppProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// Where xDS resources come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdsSource {
    /// No routing configuration: invocations answer "no route".
    None,
    /// ADS over gRPC to `host:port`.
    Ads(String),
    /// A watched local file.
    File(PathBuf),
}

/// The validated configuration every part of the sidecar reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub app_id: String,
    pub app_port: Option<u16>,
    pub app_protocol: AppProtocol,
    pub http_port: u16,
    pub grpc_port: u16,
    pub listen_address: IpAddr,
    /// Empty means "use the embedded default components".
    pub resources_paths: Vec<PathBuf>,
    pub log_level: tracing::Level,
    pub log_as_json: bool,
    pub graceful_shutdown: Duration,
    pub max_body_size: usize,
    /// `DAPR_API_TOKEN`.
    pub api_token: Option<String>,
    /// `APP_API_TOKEN`, sent to the app by later building blocks.
    pub app_api_token: Option<String>,
    /// `NAMESPACE`, used by the `namespace` key prefix strategy.
    pub namespace: Option<String>,
    pub resources_poll_interval: Duration,
    /// `OUTRIGGER_*` variables that name no setting; logged as a warning at start-up.
    pub ignored_env: Vec<String>,
    pub mesh_port: u16,
    pub mesh_listen_address: IpAddr,
    pub admin_port: u16,
    pub xds: XdsSource,
    pub xds_route_config: String,
    pub xds_wait_for_sync: bool,
    /// `INSTANCE_IP` (or `POD_IP`): this workload's address in the xDS node id.
    pub instance_ip: String,
    /// Worker threads of the async runtime; 1 is a single-threaded runtime, 0 one per core.
    pub runtime_threads: usize,
    /// Workload labels for the xDS node metadata.
    pub xds_node_labels: std::collections::BTreeMap<String, String>,
}

/// A configuration problem: names the source and the field, and says what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {file}: {message}")]
    File { file: PathBuf, message: String },
    #[error("{field}: expected {expected}, got {got:?}")]
    Invalid {
        field: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error(
        "{field} is required (flag --{flag}, config file key {file_key}, or env OUTRIGGER_{env})"
    )]
    Missing {
        field: &'static str,
        flag: &'static str,
        file_key: &'static str,
        env: &'static str,
    },
    #[error("configuration: {0}")]
    Layering(String),
}

impl Config {
    /// A config for in-process tests: ports picked by the OS, embedded components, no token.
    pub fn for_test(app_id: &str) -> Self {
        Self {
            app_id: app_id.to_string(),
            app_port: None,
            app_protocol: AppProtocol::Http,
            http_port: 0,
            grpc_port: 0,
            listen_address: IpAddr::from([127, 0, 0, 1]),
            resources_paths: Vec::new(),
            log_level: tracing::Level::INFO,
            log_as_json: false,
            graceful_shutdown: Duration::from_secs(5),
            max_body_size: 4 << 20,
            api_token: None,
            app_api_token: None,
            namespace: None,
            resources_poll_interval: Duration::from_millis(200),
            ignored_env: Vec::new(),
            mesh_port: 0,
            mesh_listen_address: IpAddr::from([127, 0, 0, 1]),
            admin_port: 0,
            xds: XdsSource::None,
            xds_route_config: DEFAULT_ROUTE_CONFIG.to_string(),
            xds_wait_for_sync: true,
            instance_ip: "127.0.0.1".to_string(),
            runtime_threads: 1,
            xds_node_labels: std::collections::BTreeMap::new(),
        }
    }

    /// Merges defaults, the config file (`--config`), `OUTRIGGER_*` variables and flags, then
    /// validates. `env` is passed in so that tests never touch the process environment.
    pub fn load(args: &RunArgs, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let layering = |error: config::ConfigError| ConfigError::Layering(error.to_string());
        let mut builder = config::Config::builder()
            .set_default("app_protocol", "http")
            .and_then(|b| b.set_default("dapr_http_port", i64::from(DEFAULT_HTTP_PORT)))
            .and_then(|b| b.set_default("dapr_grpc_port", i64::from(DEFAULT_GRPC_PORT)))
            .and_then(|b| b.set_default("dapr_listen_addresses", "127.0.0.1"))
            .and_then(|b| b.set_default("log_level", "info"))
            .and_then(|b| b.set_default("log_as_json", false))
            .and_then(|b| b.set_default("graceful_shutdown_seconds", 5))
            .and_then(|b| b.set_default("max_body_size", DEFAULT_MAX_BODY_SIZE))
            .and_then(|b| b.set_default("resources_poll_interval_ms", 500))
            .and_then(|b| b.set_default("mesh_port", i64::from(DEFAULT_MESH_PORT)))
            .and_then(|b| b.set_default("mesh_listen_address", "0.0.0.0"))
            .and_then(|b| b.set_default("admin_port", i64::from(DEFAULT_ADMIN_PORT)))
            .and_then(|b| b.set_default("xds_route_config", DEFAULT_ROUTE_CONFIG))
            .and_then(|b| b.set_default("xds_wait_for_sync", true))
            .and_then(|b| b.set_default("runtime_threads", 1))
            .map_err(layering)?;

        let config_file = args
            .config
            .clone()
            .or_else(|| env.get("OUTRIGGER_CONFIG").map(PathBuf::from));
        if let Some(path) = &config_file {
            builder = builder.add_source(config::File::from_str(
                &file_layer(path)?,
                config::FileFormat::Json,
            ));
        }

        // Only the variables that name a setting are read: other OUTRIGGER_* variables (test
        // harnesses, wrappers) are reported, not fatal, as daprd ignores unrelated variables.
        let mut ignored_env = Vec::new();
        let mut outrigger_env = config::Map::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix("OUTRIGGER_") else {
                continue;
            };
            if ENV_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
                outrigger_env.insert(name.clone(), value.clone());
            } else if name != "OUTRIGGER_CONFIG" {
                ignored_env.push(name.clone());
            }
        }
        ignored_env.sort();
        builder = builder.add_source(
            config::Environment::with_prefix("OUTRIGGER")
                .prefix_separator("_")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("resources_paths")
                .with_list_parse_key("xds_node_labels")
                .source(Some(outrigger_env)),
        );

        // Dapr's own variables keep their names, so existing launch scripts work.
        for (variable, key) in [
            ("DAPR_API_TOKEN", "api_token"),
            ("APP_API_TOKEN", "app_api_token"),
            ("NAMESPACE", "namespace"),
            ("POD_IP", "instance_ip"),
            ("INSTANCE_IP", "instance_ip"),
        ] {
            if let Some(value) = env.get(variable).filter(|value| !value.is_empty()) {
                builder = builder
                    .set_override(key, value.as_str())
                    .map_err(layering)?;
            }
        }

        builder = apply_flags(builder, args).map_err(layering)?;
        let merged: MergedConfig = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|error| ConfigError::Layering(error.to_string()))?;
        let mut config = merged.validate()?;
        config.ignored_env = ignored_env;
        Ok(config)
    }
}

/// Settings that `OUTRIGGER_<KEY>` variables may set.
const ENV_KEYS: &[&str] = &[
    "app_id",
    "app_port",
    "app_protocol",
    "dapr_http_port",
    "dapr_grpc_port",
    "dapr_listen_addresses",
    "resources_paths",
    "log_level",
    "log_as_json",
    "graceful_shutdown_seconds",
    "max_body_size",
    "namespace",
    "resources_poll_interval_ms",
    "mesh_port",
    "mesh_listen_address",
    "admin_port",
    "xds_address",
    "xds_file",
    "xds_route_config",
    "xds_wait_for_sync",
    "runtime_threads",
    "xds_node_labels",
];

/// Reads and checks the config file, returning it as the JSON layer the builder merges.
fn file_layer(path: &Path) -> Result<String, ConfigError> {
    let file_error = |message: String| ConfigError::File {
        file: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|error| file_error(format!("cannot read: {error}")))?;
    let file: FileConfig = if text.trim().is_empty() {
        FileConfig::default()
    } else {
        serde_yaml::from_str(&text).map_err(|error| file_error(error.to_string()))?
    };
    let layer = SnakeCaseLayer::from(file);
    serde_json::to_string(&layer).map_err(|error| file_error(error.to_string()))
}

/// The file's values under the layering keys, omitting what the file does not set.
#[derive(Serialize)]
struct SnakeCaseLayer {
    #[serde(flatten)]
    values: serde_json::Map<String, serde_json::Value>,
}

impl From<FileConfig> for SnakeCaseLayer {
    fn from(file: FileConfig) -> Self {
        let camel = serde_json::to_value(file).unwrap_or_default();
        let values = camel
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| (snake_case(key), value.clone()))
            .collect();
        Self { values }
    }
}

fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for character in camel.chars() {
        if character.is_ascii_uppercase() {
            out.push('_');
            out.push(character.to_ascii_lowercase());
        } else {
            out.push(character);
        }
    }
    out
}

type Builder = config::ConfigBuilder<config::builder::DefaultState>;

fn apply_flags(mut builder: Builder, args: &RunArgs) -> Result<Builder, config::ConfigError> {
    builder = builder
        .set_override_option("app_id", args.app_id.clone())?
        .set_override_option("app_port", args.app_port.map(i64::from))?
        .set_override_option("app_protocol", args.app_protocol.clone())?
        .set_override_option("dapr_http_port", args.dapr_http_port.map(i64::from))?
        .set_override_option("dapr_grpc_port", args.dapr_grpc_port.map(i64::from))?
        .set_override_option("dapr_listen_addresses", args.dapr_listen_addresses.clone())?
        .set_override_option("log_level", args.log_level.clone())?
        .set_override_option("log_as_json", args.log_as_json)?
        .set_override_option(
            "graceful_shutdown_seconds",
            args.graceful_shutdown_seconds
                .map(|seconds| seconds.to_string()),
        )?
        .set_override_option("max_body_size", args.max_body_size.clone())?
        .set_override_option("mesh_port", args.mesh_port.map(i64::from))?
        .set_override_option("mesh_listen_address", args.mesh_listen_address.clone())?
        .set_override_option("admin_port", args.admin_port.map(i64::from))?
        .set_override_option("xds_address", args.xds_address.clone())?
        .set_override_option(
            "xds_file",
            args.xds_file
                .as_ref()
                .map(|path| path.display().to_string()),
        )?
        .set_override_option("xds_route_config", args.xds_route_config.clone())?
        .set_override_option("xds_wait_for_sync", args.xds_wait_for_sync)?
        .set_override_option(
            "runtime_threads",
            args.runtime_threads
                .map(|threads| i64::try_from(threads).unwrap_or(i64::MAX)),
        )?;
    if !args.xds_node_labels.is_empty() {
        builder = builder.set_override("xds_node_labels", args.xds_node_labels.clone())?;
    }
    if !args.resources_paths.is_empty() {
        let paths: Vec<String> = args
            .resources_paths
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        builder = builder.set_override("resources_paths", paths)?;
    }
    Ok(builder)
}

impl MergedConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let app_id = self
            .app_id
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .ok_or(ConfigError::Missing {
                field: "app id",
                flag: "app-id",
                file_key: "appId",
                env: "APP_ID",
            })?;
        if app_id.contains("||") || app_id.contains('/') || app_id.chars().any(char::is_whitespace)
        {
            return Err(ConfigError::Invalid {
                field: "--app-id",
                expected: "an id without whitespace, '/' or '||'",
                got: app_id,
            });
        }
        let app_protocol = match self.app_protocol.to_ascii_lowercase().as_str() {
            "http" => AppProtocol::Http,
            "grpc" => AppProtocol::Grpc,
            _ => {
                return Err(ConfigError::Invalid {
                    field: "--app-protocol",
                    expected: "http or grpc",
                    got: self.app_protocol,
                });
            }
        };
        let listen_address =
            self.dapr_listen_addresses
                .trim()
                .parse()
                .map_err(|_| ConfigError::Invalid {
                    field: "--dapr-listen-addresses",
                    expected: "one IP address, e.g. 127.0.0.1 or 0.0.0.0",
                    got: self.dapr_listen_addresses.clone(),
                })?;
        let log_level = self.log_level.parse().map_err(|_| ConfigError::Invalid {
            field: "--log-level",
            expected: "trace, debug, info, warn or error",
            got: self.log_level.clone(),
        })?;
        let max_body_size =
            parse_size(&self.max_body_size).ok_or_else(|| ConfigError::Invalid {
                field: "--max-body-size",
                expected: "a size like 4Mi, 512Ki, 16M or 1048576",
                got: self.max_body_size.clone(),
            })?;
        if self.resources_poll_interval_ms == 0 {
            return Err(ConfigError::Invalid {
                field: "resourcesPollIntervalMs",
                expected: "a positive number of milliseconds",
                got: "0".into(),
            });
        }
        let mesh_listen_address =
            self.mesh_listen_address
                .trim()
                .parse()
                .map_err(|_| ConfigError::Invalid {
                    field: "--mesh-listen-address",
                    expected: "one IP address, e.g. 0.0.0.0 or 127.0.0.1",
                    got: self.mesh_listen_address.clone(),
                })?;
        let xds = match (
            self.xds_address.filter(|a| !a.trim().is_empty()),
            self.xds_file,
        ) {
            (Some(address), Some(file)) => {
                return Err(ConfigError::Invalid {
                    field: "--xds-address / --xds-file",
                    expected: "at most one xDS source",
                    got: format!("{address} and {}", file.display()),
                });
            }
            (Some(address), None) => {
                let address = address.trim().to_string();
                let port_ok = address
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !port_ok {
                    return Err(ConfigError::Invalid {
                        field: "--xds-address",
                        expected: "host:port, e.g. istiod.istio-system.svc:15010",
                        got: address,
                    });
                }
                XdsSource::Ads(address)
            }
            (None, Some(file)) => XdsSource::File(file),
            (None, None) => XdsSource::None,
        };
        if self.xds_route_config.trim().is_empty() {
            return Err(ConfigError::Invalid {
                field: "--xds-route-config",
                expected: "a route configuration name",
                got: self.xds_route_config,
            });
        }
        let mut xds_node_labels = std::collections::BTreeMap::new();
        for label in &self.xds_node_labels {
            match label.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    xds_node_labels.insert(key.trim().to_string(), value.trim().to_string());
                }
                _ => {
                    return Err(ConfigError::Invalid {
                        field: "--xds-node-label",
                        expected: "key=value, e.g. version=v1",
                        got: label.clone(),
                    });
                }
            }
        }
        Ok(Config {
            xds_node_labels,
            runtime_threads: self.runtime_threads,
            mesh_port: self.mesh_port,
            mesh_listen_address,
            admin_port: self.admin_port,
            xds,
            xds_route_config: self.xds_route_config.trim().to_string(),
            xds_wait_for_sync: self.xds_wait_for_sync,
            instance_ip: self
                .instance_ip
                .filter(|ip| !ip.trim().is_empty())
                .unwrap_or_else(|| "127.0.0.1".to_string()),
            app_id,
            app_port: self.app_port,
            app_protocol,
            http_port: self.dapr_http_port,
            grpc_port: self.dapr_grpc_port,
            listen_address,
            resources_paths: self.resources_paths,
            log_level,
            log_as_json: self.log_as_json,
            graceful_shutdown: Duration::from_secs(self.graceful_shutdown_seconds),
            max_body_size,
            api_token: self.api_token.filter(|token| !token.is_empty()),
            app_api_token: self.app_api_token.filter(|token| !token.is_empty()),
            namespace: self.namespace.filter(|namespace| !namespace.is_empty()),
            resources_poll_interval: Duration::from_millis(self.resources_poll_interval_ms),
            ignored_env: Vec::new(),
        })
    }
}

/// Parses Kubernetes-style quantities (`4Mi`, `512Ki`, `1Gi`, `16M`, `1k`) and plain bytes.
pub fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: usize = digits.parse().ok()?;
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KB" | "kB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier).filter(|size| *size > 0)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn args(app_id: &str) -> RunArgs {
        RunArgs {
            app_id: Some(app_id.to_string()),
            ..RunArgs::default()
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile()
            .expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    #[test]
    fn mesh_and_xds_settings_default_and_validate() {
        let config = Config::load(&args("demo"), &HashMap::new()).expect("valid");
        assert_eq!(config.mesh_port, 15008);
        assert_eq!(config.admin_port, 15000);
        assert_eq!(config.xds, XdsSource::None);
        assert_eq!(config.xds_route_config, "outrigger");
        assert!(config.xds_wait_for_sync);
        assert_eq!(config.instance_ip, "127.0.0.1");

        let ads = RunArgs {
            xds_address: Some("istiod.istio-system.svc:15010".into()),
            ..args("demo")
        };
        let config = Config::load(&ads, &env(&[("INSTANCE_IP", "10.0.0.7")])).expect("valid");
        assert_eq!(
            config.xds,
            XdsSource::Ads("istiod.istio-system.svc:15010".into())
        );
        assert_eq!(config.instance_ip, "10.0.0.7");

        let both = RunArgs {
            xds_address: Some("cp:15010".into()),
            xds_file: Some(PathBuf::from("/tmp/xds.yaml")),
            ..args("demo")
        };
        let error = Config::load(&both, &HashMap::new()).expect_err("two sources");
        assert!(
            error.to_string().contains("at most one xDS source"),
            "{error}"
        );

        let no_port = RunArgs {
            xds_address: Some("istiod".into()),
            ..args("demo")
        };
        let error = Config::load(&no_port, &HashMap::new()).expect_err("no port");
        assert!(error.to_string().contains("--xds-address"), "{error}");

        let labelled = RunArgs {
            xds_node_labels: vec!["app=reviews".into(), "version=v2".into()],
            ..args("demo")
        };
        let config = Config::load(&labelled, &HashMap::new()).expect("valid labels");
        assert_eq!(
            config.xds_node_labels.get("version").map(String::as_str),
            Some("v2")
        );
        let bad_label = RunArgs {
            xds_node_labels: vec!["v2".into()],
            ..args("demo")
        };
        let error = Config::load(&bad_label, &HashMap::new()).expect_err("no '='");
        assert!(error.to_string().contains("--xds-node-label"), "{error}");

        let bad_listen = RunArgs {
            mesh_listen_address: Some("everywhere".into()),
            ..args("demo")
        };
        let error = Config::load(&bad_listen, &HashMap::new()).expect_err("bad address");
        assert!(
            error.to_string().contains("--mesh-listen-address"),
            "{error}"
        );
    }

    #[test]
    fn defaults_match_daprd() {
        let config = Config::load(&args("demo"), &HashMap::new()).expect("valid");
        assert_eq!(config.http_port, 3500);
        assert_eq!(config.grpc_port, 50001);
        assert_eq!(config.max_body_size, 4 << 20);
        assert_eq!(config.graceful_shutdown, Duration::from_secs(5));
        assert_eq!(config.app_protocol, AppProtocol::Http);
        assert!(config.resources_paths.is_empty());
        assert_eq!(config.api_token, None);
    }

    #[test]
    fn layers_apply_in_order_defaults_file_env_flags() {
        let config_file = file(
            "appId: from-file\ndaprHttpPort: 4000\ndaprGrpcPort: 4001\nlogLevel: debug\nresourcesPaths: [/a]\n",
        );
        let mut run = RunArgs {
            config: Some(config_file.path().to_path_buf()),
            dapr_grpc_port: Some(0),
            ..RunArgs::default()
        };
        let environment = env(&[
            ("OUTRIGGER_DAPR_HTTP_PORT", "5000"),
            ("OUTRIGGER_DAPR_GRPC_PORT", "5001"),
            ("DAPR_API_TOKEN", "secret"),
            ("UNRELATED", "x"),
        ]);
        let config = Config::load(&run, &environment).expect("valid");
        assert_eq!(config.app_id, "from-file");
        assert_eq!(config.http_port, 5000, "env beats file");
        assert_eq!(config.grpc_port, 0, "flag beats env");
        assert_eq!(config.log_level, tracing::Level::DEBUG);
        assert_eq!(config.resources_paths, vec![PathBuf::from("/a")]);
        assert_eq!(config.api_token.as_deref(), Some("secret"));
        run.resources_paths = vec![PathBuf::from("/b"), PathBuf::from("/c")];
        let config = Config::load(&run, &environment).expect("valid");
        assert_eq!(
            config.resources_paths,
            vec![PathBuf::from("/b"), PathBuf::from("/c")]
        );
    }

    #[test]
    fn unknown_file_key_names_file_and_field() {
        let config_file = file("appId: x\ndaprHtttpPort: 1\n");
        let run = RunArgs {
            config: Some(config_file.path().to_path_buf()),
            ..RunArgs::default()
        };
        let error = Config::load(&run, &HashMap::new()).expect_err("typo");
        let text = error.to_string();
        assert!(
            text.contains(&config_file.path().display().to_string()),
            "{text}"
        );
        assert!(text.contains("daprHtttpPort"), "{text}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (
                RunArgs {
                    app_protocol: Some("smtp".into()),
                    ..args("a")
                },
                "--app-protocol",
            ),
            (
                RunArgs {
                    log_level: Some("loud".into()),
                    ..args("a")
                },
                "--log-level",
            ),
            (
                RunArgs {
                    max_body_size: Some("4 lots".into()),
                    ..args("a")
                },
                "--max-body-size",
            ),
            (RunArgs::default(), "app id"),
            (args("bad||id"), "--app-id"),
        ];
        for (run, field) in cases {
            let error = Config::load(&run, &HashMap::new()).expect_err(field);
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
        let config = Config::load(&args("a"), &env(&[("OUTRIGGER_NO_SUCH_KEY", "1")]))
            .expect("unknown env is not fatal");
        assert_eq!(
            config.ignored_env,
            vec!["OUTRIGGER_NO_SUCH_KEY".to_string()]
        );
        let error = Config::load(&args("a"), &env(&[("OUTRIGGER_DAPR_HTTP_PORT", "high")]))
            .expect_err("bad env");
        assert!(error.to_string().contains("dapr_http_port"), "{error}");
    }

    #[test]
    fn sizes_parse_like_kubernetes_quantities() {
        assert_eq!(parse_size("4Mi"), Some(4 << 20));
        assert_eq!(parse_size("512Ki"), Some(512 << 10));
        assert_eq!(parse_size("16M"), Some(16_000_000));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("Mi"), None);
    }
}
