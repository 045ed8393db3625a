//! Effective topic configs: the topic's own value, else this broker's default (a flag), else
//! Kafka's default. DescribeConfigs reports which of the three a value came from.

use metadata_quorum::configs::{self, ConfigDef};
use metadata_quorum::TopicImage;

use crate::BrokerConfig;

/// Kafka's ConfigSource codes.
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// A resolved config value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub def: &'static ConfigDef,
    pub value: String,
    pub source: i8,
    /// (name, value, source), most specific first, as DescribeConfigs synonyms.
    pub synonyms: Vec<(String, String, i8)>,
}

/// Resolves every known config of `topic` (or broker-level values with `topic = None`).
pub fn resolve_all(config: &BrokerConfig, topic: Option<&TopicImage>) -> Vec<Resolved> {
    configs::TOPIC_CONFIGS
        .iter()
        .map(|d| resolve(config, topic, d))
        .collect()
}

pub fn resolve(
    config: &BrokerConfig,
    topic: Option<&TopicImage>,
    def: &'static ConfigDef,
) -> Resolved {
    let mut synonyms = Vec::new();
    if let Some(v) = topic.and_then(|t| t.configs.get(def.name)) {
        synonyms.push((def.name.to_string(), v.clone(), SOURCE_TOPIC));
    }
    let broker = config
        .topic_config_defaults()
        .into_iter()
        .find(|(n, _)| *n == def.name)
        .map(|(_, v)| v)
        .filter(|v| v != def.default);
    if let Some(v) = broker {
        synonyms.push((def.broker_name.to_string(), v, SOURCE_STATIC_BROKER));
    }
    synonyms.push((
        def.broker_name.to_string(),
        def.default.to_string(),
        SOURCE_DEFAULT,
    ));
    let (_, value, source) = synonyms[0].clone();
    Resolved {
        def,
        value,
        source,
        synonyms,
    }
}

/// The effective value of one config for a topic.
pub fn value(config: &BrokerConfig, topic: Option<&TopicImage>, name: &str) -> Option<String> {
    configs::lookup(name).map(|d| resolve(config, topic, d).value)
}

/// The effective value parsed as an integer (for numeric configs).
pub fn int(config: &BrokerConfig, topic: Option<&TopicImage>, name: &str) -> Option<i64> {
    value(config, topic, name).and_then(|v| v.trim().parse().ok())
}
