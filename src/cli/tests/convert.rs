//! `convert` tests.
