//! What certkeeper tells people: Kubernetes Events, Prometheus metrics and the health
//! endpoint, and logs.

pub mod events;
pub mod logs;
pub mod metrics;
pub mod server;
