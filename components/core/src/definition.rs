//! Reading Dapr `Component` documents (`apiVersion: dapr.io/v1alpha1`, `kind: Component`) from YAML.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::metadata::{ComponentMetadata, MetadataError};

/// Dapr's default `spec.initTimeout`.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(5);

/// One `Component` document, validated for shape but not yet instantiated.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentDefinition {
    /// The file the document came from, for error messages.
    pub source: PathBuf,
    pub name: String,
    pub namespace: Option<String>,
    /// `spec.type`, e.g. `state.redis`.
    pub component_type: String,
    /// `spec.version`, `v1` when absent.
    pub version: String,
    pub items: Vec<MetadataItem>,
    pub init_timeout: Duration,
    pub ignore_errors: bool,
    /// App ids allowed to load this component; empty means every app.
    pub scopes: Vec<String>,
}

/// One `spec.metadata[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataItem {
    Plain {
        name: String,
        value: String,
    },
    SecretRef {
        name: String,
        secret: String,
        key: String,
    },
}

impl ComponentDefinition {
    /// The building block this component serves, the part of `spec.type` before the first dot.
    pub fn building_block(&self) -> &str {
        self.component_type
            .split_once('.')
            .map_or(self.component_type.as_str(), |(block, _)| block)
    }

    /// Whether an app with `app_id` may load this component (`scopes`).
    pub fn is_in_scope(&self, app_id: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|scope| scope == app_id)
    }

    /// Resolves `spec.metadata` into plain values.
    pub fn metadata(&self) -> Result<ComponentMetadata, MetadataError> {
        ComponentMetadata::resolve(&self.items)
    }
}

/// Why a component file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("{file}: cannot read file: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: document {document}: not valid YAML: {message}")]
    Yaml {
        file: PathBuf,
        document: usize,
        message: String,
    },
    #[error("{file}: component {component:?}: field {field}: {message}")]
    Field {
        file: PathBuf,
        component: String,
        field: String,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawComponent {
    #[serde(default)]
    metadata: RawObjectMeta,
    spec: Option<RawSpec>,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawObjectMeta {
    #[serde(default)]
    name: String,
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpec {
    #[serde(rename = "type", default)]
    component_type: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    metadata: Vec<RawMetadataItem>,
    #[serde(default)]
    init_timeout: Option<String>,
    #[serde(default)]
    ignore_errors: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetadataItem {
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: Option<serde_yaml::Value>,
    #[serde(default)]
    secret_key_ref: Option<RawSecretKeyRef>,
}

#[derive(Deserialize)]
struct RawSecretKeyRef {
    #[serde(default)]
    name: String,
    #[serde(default)]
    key: String,
}

/// Decodes every document of `kind` (e.g. `Subscription`, `Resiliency`) in YAML `text`;
/// errors name the file, the document and what did not match.
pub fn documents_of_kind<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    kind: &str,
) -> Result<Vec<T>, String> {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value = serde_yaml::Value::deserialize(document).map_err(|error| {
            format!(
                "{}: document {number}: not valid YAML: {error}",
                path.display()
            )
        })?;
        if value.get("kind").and_then(serde_yaml::Value::as_str) != Some(kind) {
            continue;
        }
        documents.push(serde_yaml::from_value(value).map_err(|error| {
            format!(
                "{}: document {number}: does not match the {kind} schema: {error}",
                path.display()
            )
        })?);
    }
    Ok(documents)
}

/// Reads every `Component` document in the file; documents of other kinds are skipped.
pub fn parse_component_file(path: &Path) -> Result<Vec<ComponentDefinition>, DefinitionError> {
    let text = std::fs::read_to_string(path).map_err(|source| DefinitionError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    parse_component_documents(path, &text)
}

/// Reads every `Component` document in `text`, attributing errors to `path`.
pub fn parse_component_documents(
    path: &Path,
    text: &str,
) -> Result<Vec<ComponentDefinition>, DefinitionError> {
    let mut definitions = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value =
            serde_yaml::Value::deserialize(document).map_err(|error| DefinitionError::Yaml {
                file: path.to_path_buf(),
                document: number,
                message: error.to_string(),
            })?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(serde_yaml::Value::as_str);
        if kind != Some("Component") {
            tracing::debug!(file = %path.display(), document = number, kind = ?kind, "skipping a document that is not a Component");
            continue;
        }
        definitions.push(definition_from_value(path, value)?);
    }
    Ok(definitions)
}

fn definition_from_value(
    path: &Path,
    value: serde_yaml::Value,
) -> Result<ComponentDefinition, DefinitionError> {
    let name_hint = value
        .get("metadata")
        .and_then(|meta| meta.get("name"))
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or("")
        .to_string();
    let field_error = |field: &str, message: String| DefinitionError::Field {
        file: path.to_path_buf(),
        component: name_hint.clone(),
        field: field.to_string(),
        message,
    };
    let raw: RawComponent = serde_yaml::from_value(value).map_err(|error| {
        field_error(
            "(document)",
            format!("does not match the Component schema: {error}"),
        )
    })?;
    if raw.metadata.name.trim().is_empty() {
        return Err(field_error(
            "metadata.name",
            "is required and must not be empty".into(),
        ));
    }
    let spec = raw
        .spec
        .ok_or_else(|| field_error("spec", "is required".into()))?;
    if spec.component_type.trim().is_empty() || !spec.component_type.contains('.') {
        return Err(field_error(
            "spec.type",
            format!(
                "expected a type like \"state.redis\", got {:?}",
                spec.component_type
            ),
        ));
    }
    let init_timeout = match spec.init_timeout.as_deref() {
        None | Some("") => DEFAULT_INIT_TIMEOUT,
        Some(text) => crate::metadata::parse_duration(text).ok_or_else(|| {
            field_error(
                "spec.initTimeout",
                format!("expected a duration like \"5s\" or \"500ms\", got {text:?}"),
            )
        })?,
    };
    let mut items = Vec::with_capacity(spec.metadata.len());
    for (index, item) in spec.metadata.into_iter().enumerate() {
        if item.name.trim().is_empty() {
            return Err(field_error(
                &format!("spec.metadata[{index}].name"),
                "is required and must not be empty".into(),
            ));
        }
        let field = format!("spec.metadata[{index}] ({})", item.name);
        items.push(match (item.value, item.secret_key_ref) {
            (_, Some(secret)) => MetadataItem::SecretRef {
                name: item.name,
                secret: secret.name,
                key: secret.key,
            },
            (value, None) => MetadataItem::Plain {
                value: scalar_to_string(value).map_err(|message| field_error(&field, message))?,
                name: item.name,
            },
        });
    }
    Ok(ComponentDefinition {
        source: path.to_path_buf(),
        name: raw.metadata.name,
        namespace: raw.metadata.namespace,
        component_type: spec.component_type,
        version: spec
            .version
            .filter(|version| !version.is_empty())
            .unwrap_or_else(|| "v1".to_string()),
        items,
        init_timeout,
        ignore_errors: spec.ignore_errors.unwrap_or(false),
        scopes: raw.scopes,
    })
}

/// Dapr accepts strings, numbers and booleans as metadata values and treats them all as text.
fn scalar_to_string(value: Option<serde_yaml::Value>) -> Result<String, String> {
    match value {
        None | Some(serde_yaml::Value::Null) => Ok(String::new()),
        Some(serde_yaml::Value::String(text)) => Ok(text),
        Some(serde_yaml::Value::Bool(flag)) => Ok(flag.to_string()),
        Some(serde_yaml::Value::Number(number)) => Ok(number.to_string()),
        Some(other) => Err(format!(
            "expected a string, number or boolean value, got {}",
            match other {
                serde_yaml::Value::Sequence(_) => "a list",
                serde_yaml::Value::Mapping(_) => "a mapping",
                _ => "a tagged value",
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ComponentDefinition>, DefinitionError> {
        parse_component_documents(Path::new("components.yaml"), text)
    }

    #[test]
    fn reads_dapr_component_with_scopes_and_several_documents() {
        let defs = parse(
            r#"
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  initTimeout: 2s
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisDB
    value: 3
  - name: enableTLS
    value: false
scopes:
- app1
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: other
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: cache
spec:
  type: state.in-memory
  ignoreErrors: true
"#,
        )
        .expect("valid file");
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[0].name, "statestore");
        assert_eq!(defs[0].building_block(), "state");
        assert_eq!(defs[0].init_timeout, Duration::from_secs(2));
        assert!(defs[0].is_in_scope("app1"));
        assert!(!defs[0].is_in_scope("app2"));
        let metadata = defs[0].metadata().expect("plain metadata");
        assert_eq!(metadata.get("redisdb"), Some("3"));
        assert_eq!(metadata.get("enableTLS"), Some("false"));
        assert_eq!(defs[1].version, "v1");
        assert!(defs[1].ignore_errors);
        assert!(defs[1].is_in_scope("anyone"));
    }

    #[test]
    fn missing_type_names_file_component_and_field() {
        let error = parse("kind: Component\nmetadata:\n  name: broken\nspec:\n  version: v1\n")
            .expect_err("type is required");
        let text = error.to_string();
        assert!(text.contains("components.yaml"), "{text}");
        assert!(text.contains("broken"), "{text}");
        assert!(text.contains("spec.type"), "{text}");
    }

    #[test]
    fn bad_init_timeout_and_nested_value_are_rejected() {
        let error = parse(
            "kind: Component\nmetadata: {name: a}\nspec: {type: state.x, initTimeout: soon}\n",
        )
        .expect_err("bad duration");
        assert!(error.to_string().contains("spec.initTimeout"));
        let error = parse(
            "kind: Component\nmetadata: {name: a}\nspec:\n  type: state.x\n  metadata:\n  - name: k\n    value: [1, 2]\n",
        )
        .expect_err("list value");
        assert!(
            error.to_string().contains("spec.metadata[0] (k)"),
            "{error}"
        );
    }

    #[test]
    fn secret_reference_is_kept_and_refused_on_resolve() {
        let defs = parse(
            "kind: Component\nmetadata: {name: s}\nspec:\n  type: state.redis\n  metadata:\n  - name: redisPassword\n    secretKeyRef: {name: redis, key: password}\n",
        )
        .expect("parses");
        let error = defs[0].metadata().expect_err("secrets unsupported");
        assert!(
            error
                .to_string()
                .contains("secret stores are not supported yet"),
            "{error}"
        );
    }

    #[test]
    fn invalid_yaml_names_the_document() {
        let error = parse("kind: Other\n---\nkind: [unclosed\n").expect_err("bad yaml");
        assert!(error.to_string().contains("document 2"), "{error}");
    }
}
