//! The example files under deploy/ stay valid.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use outrigger_runtime::{Config, RunArgs};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn example_components_parse() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(deploy_dir().join("components")).expect("deploy/components") {
        let path = entry.expect("entry").path();
        for definition in
            outrigger_components::parse_component_file(&path).expect("valid component file")
        {
            definition.metadata().expect("plain metadata");
            names.push(definition.name);
        }
    }
    names.sort();
    assert_eq!(names, ["cache", "statestore"]);
}

#[test]
fn example_config_loads() {
    let args = RunArgs {
        config: Some(deploy_dir().join("outrigger.yaml")),
        ..RunArgs::default()
    };
    let config = Config::load(&args, &HashMap::new()).expect("valid example config");
    assert_eq!(config.app_id, "myapp");
    assert_eq!(
        config.resources_paths,
        vec![PathBuf::from("/etc/outrigger/components")]
    );
    assert!(config.log_as_json);
    assert_eq!(config.mesh_port, 15008);
    assert_eq!(config.admin_port, 15000);
    assert_eq!(config.xds_route_config, "outrigger");
    assert_eq!(config.xds, outrigger_runtime::config::XdsSource::None);
    assert_eq!(config.runtime_threads, 1);
}
