//! CA keys in a hardware security module, through PKCS#11 (`cryptoki`): the key never leaves
//! the token; certkeeper holds a pool of logged-in sessions and asks the token to sign.

pub mod encode;
pub mod uri;
