//! The built-in connectors.

pub mod file;
pub mod jdbc;
