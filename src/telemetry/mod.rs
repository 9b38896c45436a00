//! What certkeeper tells people: Kubernetes Events and logs.

pub mod events;
pub mod logs;
