//! The `--xds-file PATH` source: one `DiscoveryResponse` in proto3 JSON mapping (JSON or
//! YAML), which unlike Envoy's file source may mix resource types, watched for changes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use envoy_types::pb::google::protobuf::Any;
use outrigger_mesh::model::MeshSnapshot;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::reflect::message_descriptor;
use crate::store::{ResourceStore, TYPE_ORDER, XdsError};

/// A parsed file: its version and its resources grouped by type.
struct FileContents {
    version: String,
    groups: Vec<(String, Vec<Any>)>,
}

fn file_error(path: &Path, message: impl Into<String>) -> XdsError {
    XdsError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads the file and groups its resources by type, one group per type of
/// [`TYPE_ORDER`](crate::store::TYPE_ORDER), in that order (empty for a type the file does
/// not hold: the file is the whole state of the world).
pub fn load_file(path: &Path) -> Result<Vec<(String, Vec<Any>)>, XdsError> {
    Ok(read_file(path)?.groups)
}

/// What [`apply_file`] applied: hand it to [`watch_file`] so the same content is not
/// decoded a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedContent(u64);

/// Loads the file and applies every type to `store`, all or nothing: on error `store` is
/// unchanged and the error names the file.
pub fn apply_file(store: &mut ResourceStore, path: &Path) -> Result<AppliedContent, XdsError> {
    let bytes =
        std::fs::read(path).map_err(|error| file_error(path, format!("cannot read: {error}")))?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| file_error(path, "the file is not valid UTF-8"))?;
    let contents = parse_contents(path, text)?;
    *store = applied(store, path, &contents)?;
    Ok(AppliedContent(content_hash(&bytes)))
}

/// Serves the file: applies it at start (unless start-up already did) and whenever its content changes (polled every
/// `poll`), publishing each accepted snapshot and marking the source synced. A file that
/// cannot be read, parsed or validated is logged and the last good configuration stays.
///
/// `already_applied` is what start-up applied with [`apply_file`]; that content is not applied
/// again (decoding the descriptor pool twice would double the memory it leaves behind).
pub async fn watch_file(
    path: PathBuf,
    poll: Duration,
    store: Arc<Mutex<ResourceStore>>,
    snapshots: watch::Sender<Arc<MeshSnapshot>>,
    synced: watch::Sender<bool>,
    stop: CancellationToken,
    already_applied: Option<AppliedContent>,
) {
    let mut last_content: Option<u64> = already_applied.map(|applied| applied.0);
    let mut last_read_error: Option<String> = None;
    loop {
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                last_read_error = None;
                let hash = content_hash(&bytes);
                if last_content != Some(hash) {
                    last_content = Some(hash);
                    reload(&path, bytes, &store, &snapshots, &synced).await;
                }
            }
            Err(error) => {
                let message = error.to_string();
                if last_read_error.as_deref() != Some(message.as_str()) {
                    tracing::error!(file = %path.display(), error = %message, "cannot read the xDS file; keeping the last good configuration");
                    last_read_error = Some(message);
                }
                // Re-read whatever appears next, even if it is the old content again.
                last_content = None;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(poll) => {}
        }
    }
}

async fn reload(
    path: &Path,
    bytes: Vec<u8>,
    store: &Arc<Mutex<ResourceStore>>,
    snapshots: &watch::Sender<Arc<MeshSnapshot>>,
    synced: &watch::Sender<bool>,
) {
    let current = store.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let owned_path = path.to_path_buf();
    // Parsing (and the first decode of the descriptor pool) is CPU work: off the runtime.
    let outcome = tokio::task::spawn_blocking(move || {
        let text = String::from_utf8(bytes)
            .map_err(|_| file_error(&owned_path, "the file is not valid UTF-8"))?;
        let contents = parse_contents(&owned_path, &text)?;
        applied(&current, &owned_path, &contents)
    })
    .await;
    match outcome {
        Ok(Ok(updated)) => {
            let snapshot = updated.snapshot();
            *store.lock().unwrap_or_else(PoisonError::into_inner) = updated;
            snapshots.send_replace(snapshot);
            synced.send_replace(true);
            tracing::info!(file = %path.display(), "applied the xDS file");
        }
        Ok(Err(error)) => {
            tracing::error!(file = %path.display(), %error, "rejected the xDS file; keeping the last good configuration");
        }
        Err(error) => {
            tracing::error!(file = %path.display(), %error, "applying the xDS file failed; keeping the last good configuration");
        }
    }
}

/// `store` with every type of the file applied, in [`TYPE_ORDER`].
fn applied(
    store: &ResourceStore,
    path: &Path,
    contents: &FileContents,
) -> Result<ResourceStore, XdsError> {
    let mut candidate = store.clone();
    for (type_url, resources) in &contents.groups {
        candidate
            .apply(type_url, &contents.version, resources)
            .map_err(|error| file_error(path, error.to_string()))?;
    }
    Ok(candidate)
}

fn read_file(path: &Path) -> Result<FileContents, XdsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| file_error(path, format!("cannot read: {error}")))?;
    parse_contents(path, &text)
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

fn parse_contents(path: &Path, text: &str) -> Result<FileContents, XdsError> {
    let descriptor = message_descriptor("envoy.service.discovery.v3.DiscoveryResponse")
        .map_err(|error| file_error(path, error))?;
    let extension = path
        .extension()
        .and_then(OsStr::to_str)
        .map(str::to_ascii_lowercase);
    let message = match extension.as_deref() {
        Some("json") => from_json(descriptor, text),
        Some("yaml" | "yml") => from_yaml(descriptor, text),
        _ => from_json(descriptor.clone(), text).or_else(|json_error| {
            from_yaml(descriptor, text).map_err(|yaml_error| {
                format!("neither JSON ({json_error}) nor YAML ({yaml_error})")
            })
        }),
    }
    .map_err(|error| file_error(path, error))?;
    let response: DiscoveryResponse = message
        .transcode_to()
        .map_err(|error| file_error(path, format!("cannot decode: {error}")))?;
    let mut by_type: HashMap<&str, Vec<Any>> = TYPE_ORDER
        .iter()
        .map(|type_url| (*type_url, Vec::new()))
        .collect();
    for (index, resource) in response.resources.into_iter().enumerate() {
        match by_type.get_mut(resource.type_url.as_str()) {
            Some(group) => group.push(resource),
            None => {
                return Err(file_error(
                    path,
                    format!(
                        "resources[{index}]: unsupported resource type {}",
                        resource.type_url
                    ),
                ));
            }
        }
    }
    let groups = TYPE_ORDER
        .iter()
        .map(|type_url| {
            let resources = by_type.remove(type_url).unwrap_or_default();
            (type_url.to_string(), resources)
        })
        .collect();
    // Without a version_info the content identifies the version (for the config dump).
    let version = if response.version_info.is_empty() {
        format!("{:016x}", content_hash(text.as_bytes()))
    } else {
        response.version_info
    };
    Ok(FileContents { version, groups })
}

fn from_json(descriptor: MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let message = DynamicMessage::deserialize(descriptor, &mut deserializer)
        .map_err(|error| format!("invalid JSON: {error}"))?;
    deserializer
        .end()
        .map_err(|error| format!("invalid JSON: {error}"))?;
    Ok(message)
}

fn from_yaml(descriptor: MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    let value: serde_json::Value =
        serde_yaml::from_str(text).map_err(|error| format!("invalid YAML: {error}"))?;
    DynamicMessage::deserialize(descriptor, value)
        .map_err(|error| format!("invalid DiscoveryResponse: {error}"))
}
