//! Metric anomaly detection: an online detector for CloudWatch-like series and a NAB-style scorer.

pub mod detector;
pub mod evaluate;
pub mod nab;
pub mod novelty;

#[cfg(test)]
mod tests;
