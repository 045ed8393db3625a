//! # strom-connect: Kafka Connect for Strom
//!
//! ```text
//!   REST API (Kafka Connect's paths) ──▶ config store ──▶ herder ──▶ task runners
//!        │ followers forward writes       (topic or       (what this    source: poll → SMTs → converter → produce
//!        ▼ to the group leader             memory)         worker owns)  sink: consume → converter → SMTs → put
//!   worker group (group.id) ── membership ─────────────────▲
//! ```
//!
//! - [`props`]: Java properties files (worker and connector configs).
//! - [`data`], [`converter`], [`transforms`]: Connect's data model, converters and SMTs.
//! - [`plugin`]: the connector plugin trait; [`connectors`]: the built-in connectors.
//! - [`store`]: configs, statuses and offsets, in memory/a file (standalone) or in
//!   compacted topics (distributed).
//! - [`group`]: the worker group; [`herder`]: what runs where; [`worker`]: the task loops.
//! - [`rest`]: the REST API; [`metrics`]: `/metrics`.

pub mod connectors;
pub mod converter;
pub mod data;
pub mod group;
pub mod herder;
pub mod metrics;
pub mod plugin;
/// Java properties files (the worker and connector configs), shared with the `strom` CLI.
pub use strom_client::properties as props;
pub mod rest;
pub mod store;
pub mod transforms;
pub mod worker;
