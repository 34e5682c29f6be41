//! Finds the protobuf descriptor set that the `envoy-types` crate ships (`src/generated/types.bin`)
//! so the file source and the config dump can convert between proto3 JSON and Envoy's types
//! without a second copy of the schema. The crate does not export it, so its location comes from
//! `cargo metadata`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(&manifest_dir)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == "envoy-types")
        .and_then(|package| package["manifest_path"].as_str())
        .expect("envoy-types is a dependency");
    let descriptor = PathBuf::from(manifest)
        .parent()
        .expect("a manifest path has a parent")
        .join("src/generated/types.bin");
    assert!(descriptor.is_file(), "{} is missing", descriptor.display());
    println!(
        "cargo:rustc-env=ENVOY_TYPES_DESCRIPTOR_SET={}",
        descriptor.display()
    );
    println!("cargo:rerun-if-changed=build.rs");
}
