//! Everything cloudwarden reads from the outside world: AWS APIs today, billing files and Terraform state next.
//!
//! Only this crate sees aws-sdk types. Every collector converts what it receives into the plain model types of
//! [`model`] at the edge, so the rest of the daemon (the `rules` crate, the store, the exporters) never depends
//! on the wire format.

pub mod arn;
pub mod aws;
pub mod billing;
pub mod model;
pub mod money;
pub mod source;
pub mod terraform;

pub use aws::calls::{ApiCallKey, ApiCallStats, CallOutcome};
pub use aws::{AccountSpec, AwsContext, AwsSettings};
pub use model::{Details, InventoryReport, Resource, Scope, ScopeFailure};
