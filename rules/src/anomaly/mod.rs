//! Anomaly detection. [`metric`] scores metric series (CloudWatch-like `(timestamp, value)` points) online
//! and evaluates detectors the way the Numenta Anomaly Benchmark (NAB) does.

pub mod cost;
pub mod metric;
