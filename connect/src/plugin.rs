//! The plugin trait: what a connector is, what its tasks do, and the config definitions the
//! REST API validates against (Kafka Connect's `ConfigDef`).
//!
//! A connector plugin is one [`ConnectorPlugin`]: it names itself (a Kafka-style class name
//! plus short aliases), declares its config keys, splits its config into task configs, and
//! makes tasks. Source tasks are polled for records; sink tasks are handed batches and told
//! to flush before their offsets are committed.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value as Json};

use crate::data::ConnectRecord;
use crate::props::Props;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorType {
    Source,
    Sink,
}

impl ConnectorType {
    pub fn name(self) -> &'static str {
        match self {
            ConnectorType::Source => "source",
            ConnectorType::Sink => "sink",
        }
    }
}

/// A config key's type, with Kafka's names (`STRING`, `INT`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    String,
    Int,
    Long,
    Boolean,
    List,
    Password,
    Class,
}

impl ConfigType {
    pub fn name(self) -> &'static str {
        match self {
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Long => "LONG",
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::List => "LIST",
            ConfigType::Password => "PASSWORD",
            ConfigType::Class => "CLASS",
        }
    }

    /// Checks a value parses as this type.
    pub fn check(self, value: &str) -> Result<(), String> {
        let v = value.trim();
        match self {
            ConfigType::Int => v
                .parse::<i32>()
                .map(|_| ())
                .map_err(|_| format!("Invalid value {value} for configuration: Not a number of type INT")),
            ConfigType::Long => v
                .parse::<i64>()
                .map(|_| ())
                .map_err(|_| format!("Invalid value {value} for configuration: Not a number of type LONG")),
            ConfigType::Boolean => match v.to_ascii_lowercase().as_str() {
                "true" | "false" => Ok(()),
                _ => Err(format!("Invalid value {value} for configuration: Expected value to be either true or false")),
            },
            _ => Ok(()),
        }
    }
}

/// One config key of a connector (Kafka's `ConfigDef.ConfigKey`).
#[derive(Clone)]
pub struct ConfigKey {
    pub name: &'static str,
    pub ty: ConfigType,
    /// None with `required`: the key must be given.
    pub default: Option<&'static str>,
    pub required: bool,
    pub importance: &'static str,
    pub doc: &'static str,
    pub group: Option<&'static str>,
    /// Allowed values (case-insensitive), when the key is an enumeration.
    pub one_of: &'static [&'static str],
    /// Lower bound for numbers.
    pub at_least: Option<i64>,
}

impl ConfigKey {
    pub const fn new(name: &'static str, ty: ConfigType, doc: &'static str) -> Self {
        Self {
            name,
            ty,
            default: None,
            required: false,
            importance: "MEDIUM",
            doc,
            group: None,
            one_of: &[],
            at_least: None,
        }
    }

    pub const fn required(mut self) -> Self {
        self.required = true;
        self.importance = "HIGH";
        self
    }

    pub const fn default(mut self, d: &'static str) -> Self {
        self.default = Some(d);
        self
    }

    pub const fn one_of(mut self, values: &'static [&'static str]) -> Self {
        self.one_of = values;
        self
    }

    pub const fn at_least(mut self, n: i64) -> Self {
        self.at_least = Some(n);
        self
    }

    pub const fn group(mut self, g: &'static str) -> Self {
        self.group = Some(g);
        self
    }

    /// The errors for `value` (None: absent).
    pub fn errors(&self, value: Option<&str>) -> Vec<String> {
        let Some(v) = value else {
            if self.required && self.default.is_none() {
                return vec![format!(
                    "Missing required configuration \"{}\" which has no default value.",
                    self.name
                )];
            }
            return Vec::new();
        };
        if let Err(e) = self.ty.check(v) {
            return vec![e.replace("configuration:", &format!("configuration {}:", self.name))];
        }
        if !self.one_of.is_empty() && !self.one_of.iter().any(|o| o.eq_ignore_ascii_case(v.trim()))
        {
            return vec![format!(
                "Invalid value {v} for configuration {}: String must be one of: {}",
                self.name,
                self.one_of.join(", ")
            )];
        }
        if let (Some(min), Ok(n)) = (self.at_least, v.trim().parse::<i64>()) {
            if n < min {
                return vec![format!(
                    "Invalid value {v} for configuration {}: Value must be at least {min}",
                    self.name
                )];
            }
        }
        Vec::new()
    }

    /// Kafka Connect's `definition` object in a validation answer.
    pub fn definition_json(&self, order: usize) -> Json {
        json!({
            "name": self.name,
            "type": self.ty.name(),
            "required": self.required && self.default.is_none(),
            "default_value": self.default,
            "importance": self.importance,
            "documentation": self.doc,
            "group": self.group,
            "width": "NONE",
            "display_name": self.name,
            "dependents": [],
            "order": order as i64,
        })
    }
}

/// A source task's view of its stored offsets.
#[async_trait]
pub trait OffsetReader: Send + Sync {
    /// The last committed offset for a source partition.
    async fn offset(&self, partition: &Json) -> Option<Json>;
}

/// What a source task reads records from.
#[async_trait]
pub trait SourceTask: Send {
    async fn start(&mut self, config: &Props, offsets: Arc<dyn OffsetReader>)
        -> anyhow::Result<()>;
    /// The next records; an empty batch when there is nothing yet (after waiting a little).
    async fn poll(&mut self) -> anyhow::Result<Vec<ConnectRecord>>;
    /// The cluster acknowledged a record this task sent: where it went. Called in the order
    /// the records were polled, before `commit`.
    fn delivered(
        &mut self,
        source_partition: &Json,
        source_offset: &Json,
        topic: &str,
        partition: i32,
        offset: i64,
    ) {
        let _ = (source_partition, source_offset, topic, partition, offset);
    }
    /// True when the task cannot go on until what it sent is committed (a CDC slot that
    /// only advances on commit): the worker then flushes at once instead of on its interval.
    fn wants_commit(&self) -> bool {
        false
    }
    /// Records up to here are in Kafka and their offsets stored.
    async fn commit(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    async fn stop(&mut self) {}
}

/// What a sink task writes records to.
#[async_trait]
pub trait SinkTask: Send {
    async fn start(&mut self, config: &Props) -> anyhow::Result<()>;
    /// Writes (or buffers) a batch. A retriable error is retried with the same batch.
    async fn put(&mut self, records: Vec<ConnectRecord>) -> anyhow::Result<()>;
    /// Records the last `put` could not deliver and skipped (Kafka's `ErrantRecordReporter`):
    /// the worker hands them to its error handling (log, dead letter queue), or fails the
    /// task under `errors.tolerance=none`.
    fn take_errant(&mut self) -> Vec<(ConnectRecord, String)> {
        Vec::new()
    }
    /// Makes everything put so far durable in the target: offsets are committed after this.
    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    async fn stop(&mut self) {}
}

/// A connector plugin.
pub trait ConnectorPlugin: Send + Sync {
    /// The class name shown by `GET /connector-plugins` (Kafka's where there is one).
    fn class(&self) -> &'static str;
    /// Other names `connector.class` may use.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    fn kind(&self) -> ConnectorType;
    fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }
    /// The converter used when neither the connector nor the worker names one for it
    /// (a mirror copies bytes as they are).
    fn default_converter(&self) -> Option<&'static str> {
        None
    }
    /// The connector's own config keys (the worker adds the common ones).
    fn config_def(&self) -> Vec<ConfigKey>;
    /// Errors beyond what the definitions catch, as (key, message).
    fn validate(&self, config: &Props) -> Vec<(String, String)> {
        let _ = config;
        Vec::new()
    }
    /// Splits the connector's config into at most `max_tasks` task configs.
    fn task_configs(&self, config: &Props, max_tasks: usize) -> anyhow::Result<Vec<Props>> {
        let _ = max_tasks;
        Ok(vec![config.clone()])
    }
    fn source_task(&self) -> Option<Box<dyn SourceTask>> {
        None
    }
    fn sink_task(&self) -> Option<Box<dyn SinkTask>> {
        None
    }
}

/// The connectors a worker knows, by class name and alias.
#[derive(Clone)]
pub struct Plugins {
    all: Vec<Arc<dyn ConnectorPlugin>>,
}

impl Plugins {
    /// The built-in connectors.
    pub fn builtin() -> Self {
        Self {
            all: vec![
                Arc::new(crate::connectors::file::FileStreamSource),
                Arc::new(crate::connectors::file::FileStreamSink),
                Arc::new(crate::connectors::jdbc::JdbcSink),
                Arc::new(crate::connectors::jdbc_source::JdbcSource),
                Arc::new(crate::connectors::postgres_cdc::PostgresCdc),
                Arc::new(crate::connectors::http::HttpSink),
                Arc::new(crate::connectors::mirror::MirrorSource),
                Arc::new(crate::connectors::mirror::MirrorCheckpoint),
            ],
        }
    }

    /// Adds a plugin (for embedding the worker with connectors of one's own).
    pub fn with(mut self, plugin: Arc<dyn ConnectorPlugin>) -> Self {
        self.all.push(plugin);
        self
    }

    pub fn all(&self) -> &[Arc<dyn ConnectorPlugin>] {
        &self.all
    }

    /// The plugin `connector.class` names: full class name, short class name, or alias,
    /// with or without a `Connector` suffix, as Kafka Connect resolves them.
    pub fn find(&self, name: &str) -> Option<Arc<dyn ConnectorPlugin>> {
        let short = crate::converter::short_name(name);
        let strip = |s: &str| s.strip_suffix("Connector").unwrap_or(s).to_string();
        self.all
            .iter()
            .find(|p| {
                p.class() == name
                    || p.aliases().contains(&name)
                    || strip(crate::converter::short_name(p.class())) == strip(short)
                    || p.aliases().iter().any(|a| strip(a) == strip(short))
            })
            .cloned()
    }
}
