//! Cluster reads that more than one controller makes, and the caches that spare them: a Secret
//! by name (`secrets`), a value derived from a watched object kept while its watch shows it
//! unchanged (`watched`), CA key pairs parsed once per Secret resourceVersion (`ca`), and the
//! revocation records of an issuer from the watch's cache (`revocations`), and UIDs kept
//! compactly beside many objects (`uid`).

pub mod ca;
pub mod revocations;
pub mod secrets;
pub mod uid;
pub mod watched;

pub use watched::{ObjectKey, Readers, WatchedCache};
