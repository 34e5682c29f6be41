//! The outrigger sidecar runtime: configuration, component loading and hot reload, the API, mesh and admin servers.

pub mod admin;
pub mod app_channel;
pub mod config;
pub mod factories;
pub mod loader;
pub mod logging;
pub mod mesh;
pub mod mesh_inbound;
pub mod sidecar;
pub mod subscriptions;

pub use config::{Config, RunArgs};
pub use sidecar::{RunningSidecar, StartError, start};
