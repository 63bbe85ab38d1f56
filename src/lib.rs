//! cloudwarden: an observability and cost-governance daemon for AWS.
//!
//! The binary (`src/main.rs`) only calls [`cli::main`]; everything lives in this library so it can be tested.
//! See ARCHITECTURE.md for the map.

pub mod anomaly_cli;
pub mod billing;
pub mod cleanup_cli;
pub mod cli;
pub mod config;
pub mod crash;
pub mod daemon;
pub mod jobs;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod report;
pub mod runtime;
pub mod server;
pub mod store;
pub mod telemetry;
