//! `inspect` tests.
