//! The outrigger sidecar runtime: configuration, component loading and hot reload, and the API servers.

pub mod app_channel;
pub mod config;
pub mod factories;
pub mod loader;
pub mod logging;
pub mod sidecar;
pub mod subscriptions;

pub use config::{Config, RunArgs};
pub use sidecar::{RunningSidecar, StartError, start};
