//! cloudwarden's rule engine: tagging, budgets, anomalies, drift and cleanup candidates.
//!
//! Invariant: this crate does no I/O. It never reads the clock, the environment, files or the network;
//! `now` and all data come in as arguments and findings go out as values.
//!
//! Inputs are in [`input`] (resources, daily costs, Terraform resources: our own types, built by the daemon
//! from its database); outputs are [`finding::Finding`]s plus each rule family's aggregates for `/metrics`.

pub mod anomaly;
pub mod budget;
pub mod check;
pub mod cleanup;
pub mod cost_index;
pub mod drift;
pub mod engine;
mod fast;
pub mod file;
pub mod finding;
pub mod input;
mod intern;
pub mod located;
pub mod money;
pub mod order;
pub mod tagging;
#[cfg(test)]
pub(crate) mod test_support;
