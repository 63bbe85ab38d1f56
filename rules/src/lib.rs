//! cloudwarden's rule engine: tagging, budgets, anomalies, drift and cleanup candidates.
//!
//! Invariant: this crate does no I/O. It never reads the clock, the environment, files or the network;
//! `now` and all data come in as arguments and findings go out as values. The rule modules land here with
//! the rules milestone; the crate exists now so the workspace has its final shape.
