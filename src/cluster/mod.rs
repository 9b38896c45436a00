//! Cluster reads that more than one controller makes, and the caches that spare them: a Secret
//! by name (`secrets`), a value derived from a watched object kept while its watch shows it
//! unchanged (`watched`), and CA key pairs parsed once per Secret resourceVersion (`ca`).

pub mod ca;
pub mod secrets;
pub mod watched;

pub use watched::{ObjectKey, WatchedCache};
