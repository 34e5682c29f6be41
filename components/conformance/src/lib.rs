//! Conformance suites: one per building block, run by every component implementation's tests.

pub mod bindings;
pub mod pubsub;
pub mod state;
