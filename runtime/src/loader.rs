//! Loading components from the resources paths into the registry, and keeping the registry
//! in step with the files (hot reload).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use outrigger_components::definition::parse_component_documents;
use outrigger_components::state::keys::KeyPrefix;
use outrigger_components::{
    ComponentDefinition, ComponentInfo, ComponentRegistry, DefinitionError, RegisteredBinding,
    RegisteredComponent, RegisteredPubSub, RegisteredStateStore,
};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::factories::{ComponentFactories, Factory};

/// The name of the embedded default state store.
pub const DEFAULT_STATE_STORE: &str = "statestore";
/// The name of the embedded default pub/sub.
pub const DEFAULT_PUBSUB: &str = "pubsub";

/// Why a component could not be loaded; every variant names the file and the component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("resources path {path}: {message}")]
    ResourcesPath { path: PathBuf, message: String },
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error(
        "{file}: component {component:?}: field spec.type: unknown type {component_type:?}; supported: {supported}"
    )]
    UnknownType {
        file: PathBuf,
        component: String,
        component_type: String,
        supported: String,
    },
    #[error(
        "{file}: component {component:?}: field spec.version: {component_type} has no version {version:?}; supported: v1"
    )]
    UnknownVersion {
        file: PathBuf,
        component: String,
        component_type: String,
        version: String,
    },
    #[error("{file}: component {component:?}: field spec.metadata: {message}")]
    Metadata {
        file: PathBuf,
        component: String,
        message: String,
    },
    #[error("{file}: component {component:?} ({component_type}): init failed: {message}")]
    Init {
        file: PathBuf,
        component: String,
        component_type: String,
        message: String,
    },
    #[error(
        "{file}: component {component:?} ({component_type}): init did not finish within spec.initTimeout {timeout:?}"
    )]
    InitTimeout {
        file: PathBuf,
        component: String,
        component_type: String,
        timeout: std::time::Duration,
    },
    #[error("{file}: component {component:?}: field metadata.name: also declared in {other}")]
    Duplicate {
        file: PathBuf,
        component: String,
        other: PathBuf,
    },
}

impl LoadError {
    /// Errors in what the user wrote (as opposed to a backend that did not answer).
    pub fn is_definition_error(&self) -> bool {
        !matches!(self, Self::Init { .. } | Self::InitTimeout { .. })
    }
}

/// Keeps the registry equal to what the resources paths declare.
pub struct ComponentLoader {
    app_id: String,
    namespace: Option<String>,
    resources_paths: Vec<PathBuf>,
    factories: ComponentFactories,
    registry: Arc<ComponentRegistry>,
    /// Definitions currently loaded, by component name.
    loaded: BTreeMap<String, ComponentDefinition>,
    /// Last good parse of each file, with the text it came from.
    files: HashMap<PathBuf, (String, Vec<ComponentDefinition>)>,
}

impl ComponentLoader {
    pub fn new(
        config: &Config,
        factories: ComponentFactories,
        registry: Arc<ComponentRegistry>,
    ) -> Self {
        Self {
            app_id: config.app_id.clone(),
            namespace: config.namespace.clone(),
            resources_paths: config.resources_paths.clone(),
            factories,
            registry,
            loaded: BTreeMap::new(),
            files: HashMap::new(),
        }
    }

    /// Start-up load: any error fails start-up, except for components with `ignoreErrors: true`.
    /// With no resources paths, loads the embedded defaults.
    pub async fn load_initial(&mut self) -> Result<(), LoadError> {
        if self.resources_paths.is_empty() {
            self.load_embedded_defaults();
            return Ok(());
        }
        let mut declared = Vec::new();
        for file in self.component_files()? {
            let text = std::fs::read_to_string(&file).map_err(|source| DefinitionError::Io {
                file: file.clone(),
                source,
            })?;
            let definitions = parse_component_documents(&file, &text)?;
            self.files.insert(file, (text, definitions.clone()));
            declared.extend(definitions);
        }
        for definition in self.in_scope(declared)?.into_values() {
            match self.instantiate(&definition).await {
                Ok(registered) => {
                    tracing::info!(component = %definition.name, r#type = %definition.component_type, file = %definition.source.display(), "component loaded");
                    self.registry.put(registered);
                    self.loaded.insert(definition.name.clone(), definition);
                }
                Err(error) if definition.ignore_errors => {
                    tracing::warn!(component = %definition.name, "ignoring component that failed to load (ignoreErrors: true): {error}");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn load_embedded_defaults(&mut self) {
        let store = Arc::new(outrigger_state_memory::InMemoryStateStore::new());
        let features = outrigger_components::state::StateStore::features(&*store);
        self.registry.put_state_store(RegisteredStateStore {
            store,
            info: ComponentInfo {
                name: DEFAULT_STATE_STORE.to_string(),
                component_type: "state.in-memory".to_string(),
                version: "v1".to_string(),
                capabilities: features.dapr_capabilities(),
                source: None,
            },
            key_prefix: KeyPrefix::app_id(&self.app_id),
        });
        let pubsub = Arc::new(outrigger_pubsub_memory::InMemoryPubSub::new());
        let features = outrigger_components::pubsub::PubSub::features(&*pubsub);
        self.registry
            .put(RegisteredComponent::PubSub(RegisteredPubSub {
                pubsub,
                info: ComponentInfo {
                    name: DEFAULT_PUBSUB.to_string(),
                    component_type: "pubsub.in-memory".to_string(),
                    version: "v1".to_string(),
                    capabilities: features.dapr_capabilities(),
                    source: None,
                },
            }));
        tracing::info!(
            "no --resources-path given: loaded the embedded in-memory state store {DEFAULT_STATE_STORE:?} and pub/sub {DEFAULT_PUBSUB:?}"
        );
    }

    /// One hot-reload pass: re-reads changed files and applies added, changed and removed
    /// components. A file or component that fails keeps its previous version serving.
    pub async fn reconcile(&mut self) {
        let files = match self.component_files() {
            Ok(files) => files,
            Err(error) => {
                tracing::error!("hot reload: {error}");
                return;
            }
        };
        let mut changed = false;
        let mut seen = Vec::with_capacity(files.len());
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                // Unreadable for a moment (being written); keep its last good parse.
                seen.push(file);
                continue;
            };
            if self
                .files
                .get(&file)
                .is_some_and(|(previous, _)| *previous == text)
            {
                seen.push(file);
                continue;
            }
            changed = true;
            match parse_component_documents(&file, &text) {
                Ok(definitions) => {
                    self.files.insert(file.clone(), (text, definitions));
                }
                Err(error) => {
                    tracing::error!(
                        "hot reload: rejected {}: {error}; the previous version keeps serving",
                        file.display()
                    );
                    // Remember the bad text so the error is logged once, keeping the last good parse.
                    let previous = self
                        .files
                        .remove(&file)
                        .map(|(_, definitions)| definitions)
                        .unwrap_or_default();
                    self.files.insert(file.clone(), (text, previous));
                }
            }
            seen.push(file);
        }
        let before = self.files.len();
        self.files.retain(|file, _| seen.contains(file));
        changed |= self.files.len() != before;
        if !changed {
            return;
        }
        let declared: Vec<ComponentDefinition> = self
            .files
            .values()
            .flat_map(|(_, definitions)| definitions.clone())
            .collect();
        let desired = match self.in_scope(declared) {
            Ok(desired) => desired,
            Err(error) => {
                tracing::error!("hot reload: {error}; keeping the components already loaded");
                return;
            }
        };
        let removed: Vec<String> = self
            .loaded
            .keys()
            .filter(|name| !desired.contains_key(*name))
            .cloned()
            .collect();
        for name in removed {
            self.registry.remove(&name);
            self.loaded.remove(&name);
            tracing::info!(component = %name, "hot reload: component removed");
        }
        for (name, definition) in desired {
            if self.loaded.get(&name) == Some(&definition) {
                continue;
            }
            match self.instantiate(&definition).await {
                Ok(registered) => {
                    self.registry.put(registered);
                    tracing::info!(component = %name, file = %definition.source.display(), "hot reload: component loaded");
                    self.loaded.insert(name, definition);
                }
                Err(error) => {
                    tracing::error!(component = %name, "hot reload: rejected new version: {error}; the previous version keeps serving");
                }
            }
        }
    }

    /// Polls the resources paths until `stop` is cancelled.
    pub async fn watch(mut self, interval: std::time::Duration, stop: CancellationToken) {
        if self.resources_paths.is_empty() {
            return;
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => self.reconcile().await,
            }
        }
    }

    /// `*.yaml` / `*.yml` files directly inside each resources path, in name order.
    fn component_files(&self) -> Result<Vec<PathBuf>, LoadError> {
        let mut files = Vec::new();
        for path in &self.resources_paths {
            let entries = std::fs::read_dir(path).map_err(|error| LoadError::ResourcesPath {
                path: path.clone(),
                message: format!("cannot read directory: {error}"),
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|file| file.is_file() && is_yaml(file))
                .collect();
            found.sort();
            files.extend(found);
        }
        Ok(files)
    }

    /// The components this app may load, by name; duplicates are an error.
    fn in_scope(
        &self,
        declared: Vec<ComponentDefinition>,
    ) -> Result<BTreeMap<String, ComponentDefinition>, LoadError> {
        let mut by_name: BTreeMap<String, ComponentDefinition> = BTreeMap::new();
        for definition in declared {
            if !definition.is_in_scope(&self.app_id) {
                tracing::debug!(component = %definition.name, "skipping component scoped to other apps");
                continue;
            }
            if let Some(existing) = by_name.get(&definition.name) {
                return Err(LoadError::Duplicate {
                    file: definition.source.clone(),
                    component: definition.name.clone(),
                    other: existing.source.clone(),
                });
            }
            by_name.insert(definition.name.clone(), definition);
        }
        Ok(by_name)
    }

    async fn instantiate(
        &self,
        definition: &ComponentDefinition,
    ) -> Result<RegisteredComponent, LoadError> {
        let Some(factory) = self.factories.get(&definition.component_type) else {
            return Err(LoadError::UnknownType {
                file: definition.source.clone(),
                component: definition.name.clone(),
                component_type: definition.component_type.clone(),
                supported: self.factories.types().join(", "),
            });
        };
        if definition.version != "v1" {
            return Err(LoadError::UnknownVersion {
                file: definition.source.clone(),
                component: definition.name.clone(),
                component_type: definition.component_type.clone(),
                version: definition.version.clone(),
            });
        }
        let metadata_error = |message: String| LoadError::Metadata {
            file: definition.source.clone(),
            component: definition.name.clone(),
            message,
        };
        let metadata = definition
            .metadata()
            .map_err(|error| metadata_error(error.to_string()))?
            .with_init_timeout(definition.init_timeout);
        let info = |capabilities: Vec<String>| ComponentInfo {
            name: definition.name.clone(),
            component_type: definition.component_type.clone(),
            version: definition.version.clone(),
            capabilities,
            source: Some(definition.source.clone()),
        };
        let init_failed = |error: outrigger_components::InitError| match error {
            outrigger_components::InitError::Metadata(error) => metadata_error(error.to_string()),
            error => LoadError::Init {
                file: definition.source.clone(),
                component: definition.name.clone(),
                component_type: definition.component_type.clone(),
                message: error.to_string(),
            },
        };
        let timed_out = |_| LoadError::InitTimeout {
            file: definition.source.clone(),
            component: definition.name.clone(),
            component_type: definition.component_type.clone(),
            timeout: definition.init_timeout,
        };
        match factory {
            Factory::State(factory) => {
                let key_prefix = KeyPrefix::from_metadata(
                    &metadata,
                    &self.app_id,
                    &definition.name,
                    self.namespace.as_deref(),
                )
                .map_err(|error| metadata_error(error.to_string()))?;
                let store = tokio::time::timeout(definition.init_timeout, factory(metadata))
                    .await
                    .map_err(timed_out)?
                    .map_err(init_failed)?;
                Ok(RegisteredComponent::State(RegisteredStateStore {
                    info: info(store.features().dapr_capabilities()),
                    store,
                    key_prefix,
                }))
            }
            Factory::PubSub(factory) => {
                // As in Dapr, an app's subscribers form one consumer group named after the app.
                let metadata = metadata.with_default("consumerID", &self.app_id);
                let pubsub = tokio::time::timeout(definition.init_timeout, factory(metadata))
                    .await
                    .map_err(timed_out)?
                    .map_err(init_failed)?;
                Ok(RegisteredComponent::PubSub(RegisteredPubSub {
                    info: info(pubsub.features().dapr_capabilities()),
                    pubsub,
                }))
            }
            Factory::Binding(factory) => {
                let metadata = metadata.with_default("consumerID", &self.app_id);
                let parts = tokio::time::timeout(definition.init_timeout, factory(metadata))
                    .await
                    .map_err(timed_out)?
                    .map_err(init_failed)?;
                let capabilities = [
                    (parts.input.is_some(), "INPUT_BINDING"),
                    (parts.output.is_some(), "OUTPUT_BINDING"),
                ]
                .into_iter()
                .filter(|(present, _)| *present)
                .map(|(_, name)| name.to_string())
                .collect();
                Ok(RegisteredComponent::Binding(RegisteredBinding {
                    input: parts.input,
                    output: parts.output,
                    info: info(capabilities),
                }))
            }
        }
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|extension| extension.to_str()),
        Some("yaml" | "yml")
    )
}
