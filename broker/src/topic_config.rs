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

/// The effective value parsed as an integer (numeric configs). Allocation-free: the produce
/// path asks this for every request.
pub fn int(config: &BrokerConfig, topic: Option<&TopicImage>, name: &str) -> Option<i64> {
    if let Some(v) = topic.and_then(|t| t.configs.get(name)) {
        return v.trim().parse().ok();
    }
    let flag = match name {
        configs::RETENTION_MS => Some(config.log_retention_ms),
        configs::RETENTION_BYTES => Some(config.log_retention_bytes),
        configs::MIN_INSYNC_REPLICAS => Some(config.min_insync_replicas as i64),
        configs::MAX_MESSAGE_BYTES => Some(config.message_max_bytes as i64),
        _ => None,
    };
    flag.or_else(|| configs::lookup(name)?.default.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use metadata_quorum::configs::ConfigType;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: BrokerConfig,
    }

    #[test]
    fn the_fast_integer_path_agrees_with_describe() {
        let config = Cli::try_parse_from([
            "b",
            "--dev",
            "--log-retention-ms",
            "1234",
            "--message-max-bytes",
            "5000",
        ])
        .expect("parse")
        .config;
        for d in configs::TOPIC_CONFIGS
            .iter()
            .filter(|d| matches!(d.ty, ConfigType::Int | ConfigType::Long))
        {
            let described: i64 = resolve(&config, None, d).value.parse().expect("numeric");
            assert_eq!(int(&config, None, d.name), Some(described), "{}", d.name);
        }
        assert_eq!(int(&config, None, configs::RETENTION_MS), Some(1234));
    }
}
