//! The built-in connectors.

pub mod file;
pub mod http;
pub mod jdbc;
pub mod jdbc_source;
pub mod mirror;
pub mod postgres_cdc;
