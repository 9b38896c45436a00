//! CA keys in a hardware security module, through PKCS#11 (`cryptoki`): the key never leaves
//! the token; certkeeper holds a pool of logged-in sessions per token and asks it to sign.
//!
//! `registry` holds the modules the controller was given and a pool per token; `key` finds and
//! judges a key (the Issuer's Ready reasons) and signs with it, verifying every signature
//! against the CA certificate; `pool` runs each session on its own thread so a hung call can be
//! given up on; `module` loads and re-initialises a library as a whole.

pub mod encode;
pub mod error;
pub mod generate;
pub mod key;
pub mod module;
pub mod pool;
pub mod registry;
pub mod uri;

pub use error::{HsmError, HsmReason};
pub use key::{KeySelector, Pkcs11Key};
pub use registry::{Due, HsmKey, PinRef, Pkcs11Registry, Pkcs11Settings};
pub use uri::Pkcs11Uri;

#[cfg(test)]
mod controller_tests;
#[cfg(test)]
mod tests;
