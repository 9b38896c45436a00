//! What certkeeper tells people: Kubernetes Events, Prometheus metrics and the health
//! endpoint, and logs.

pub mod audit;
pub mod events;
pub mod logs;
pub mod metrics;
#[cfg(test)]
mod metrics_tests;
#[cfg(test)]
mod monitoring_tests;
pub mod server;
