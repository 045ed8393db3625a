//! Topic configs: the names Kafka uses, their types and defaults, and validation.
//!
//! A topic stores only the configs set on it (in [`crate::TopicImage::configs`]); everything
//! else falls back to the broker's default. What each config means for Strom's RocksDB storage
//! is in `docs/configs.md`.

use crate::MetadataError;

/// The type of a config value, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    Int,
    Long,
    Double,
    String,
    List,
}

impl ConfigType {
    /// Kafka's DescribeConfigs `config_type` code.
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// One topic config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDef {
    pub name: &'static str,
    /// The broker config it defaults to (Kafka's synonym), e.g. `log.retention.ms`.
    pub broker_name: &'static str,
    pub ty: ConfigType,
    pub default: &'static str,
    /// Allowed values for enumerations (lists: each element), empty when free.
    pub allowed: &'static [&'static str],
    /// The smallest allowed number (for numeric types).
    pub min: i64,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    broker_name: &'static str,
    ty: ConfigType,
    default: &'static str,
    min: i64,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        broker_name,
        ty,
        default,
        allowed: &[],
        min,
        doc,
    }
}

pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// Replicas whose leader-side replication is throttled (KIP-73): `*`, or
/// `partition:broker,...` (a partition led by that broker).
pub const LEADER_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
/// Replicas whose follower-side replication is throttled: `*`, or `partition:broker,...`
/// (that broker's replica of the partition).
pub const FOLLOWER_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";
/// Dynamic broker configs (per broker, or the cluster-wide default): the byte rates the
/// throttled replicas' replication is held to, on the leader and on the follower side.
pub const LEADER_THROTTLED_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_THROTTLED_RATE: &str = "follower.replication.throttled.rate";
/// Every dynamic broker config: the only broker configs AlterConfigs changes (the others are
/// flags).
pub const DYNAMIC_BROKER_CONFIGS: &[ConfigDef] = &[
    def(
        LEADER_THROTTLED_RATE,
        LEADER_THROTTLED_RATE,
        ConfigType::Long,
        "9223372036854775807",
        0,
        "bytes per second the leader sends to throttled replicas outside the ISR (KIP-73)",
    ),
    def(
        FOLLOWER_THROTTLED_RATE,
        FOLLOWER_THROTTLED_RATE,
        ConfigType::Long,
        "9223372036854775807",
        0,
        "bytes per second a follower fetches for its throttled replicas outside the ISR (KIP-73)",
    ),
];
pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";
pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
pub const MESSAGE_TIMESTAMP_TYPE: &str = "message.timestamp.type";
pub const SEGMENT_MS: &str = "segment.ms";
pub const SEGMENT_BYTES: &str = "segment.bytes";

pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        allowed: &["delete", "compact"],
        ..def(CLEANUP_POLICY, "log.cleanup.policy", ConfigType::List, "delete", 0, "delete: drop old batches by retention.ms / retention.bytes; compact: keep the latest record per key; both: compact,delete")
    },
    ConfigDef {
        allowed: &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"],
        ..def("compression.type", "compression.type", ConfigType::String, "producer", 0, "accepted; Strom stores batches as the producer compressed them")
    },
    def(DELETE_RETENTION_MS, "log.cleaner.delete.retention.ms", ConfigType::Long, "86400000", 0, "how long compaction keeps tombstones"),
    def("file.delete.delay.ms", "log.segment.delete.delay.ms", ConfigType::Long, "60000", 0, "accepted; deletes are RocksDB range deletes, immediate"),
    def("flush.messages", "log.flush.interval.messages", ConfigType::Long, "9223372036854775807", 1, "accepted; the RocksDB WAL is written on every append"),
    def("flush.ms", "log.flush.interval.ms", ConfigType::Long, "9223372036854775807", 0, "accepted; the RocksDB WAL is written on every append"),
    def(FOLLOWER_THROTTLED_REPLICAS, FOLLOWER_THROTTLED_REPLICAS, ConfigType::List, "", 0, "replicas (partition:broker, or *) whose catch-up on the follower is held to follower.replication.throttled.rate"),
    def("index.interval.bytes", "log.index.interval.bytes", ConfigType::Int, "4096", 0, "accepted; the time index has one entry per batch that raises the max timestamp"),
    def(LEADER_THROTTLED_REPLICAS, LEADER_THROTTLED_REPLICAS, ConfigType::List, "", 0, "replicas (partition:broker, or *) whose leader serves followers outside the ISR at leader.replication.throttled.rate"),
    def("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms", ConfigType::Long, "9223372036854775807", 1, "accepted; compaction runs every check interval"),
    def(MAX_MESSAGE_BYTES, "message.max.bytes", ConfigType::Int, "1048588", 0, "largest record batch accepted"),
    def("message.timestamp.after.max.ms", "log.message.timestamp.after.max.ms", ConfigType::Long, "9223372036854775807", 0, "accepted, not enforced"),
    def("message.timestamp.before.max.ms", "log.message.timestamp.before.max.ms", ConfigType::Long, "9223372036854775807", 0, "accepted, not enforced"),
    ConfigDef {
        allowed: &["CreateTime"],
        ..def(MESSAGE_TIMESTAMP_TYPE, "log.message.timestamp.type", ConfigType::String, "CreateTime", 0, "CreateTime: batches keep the producer's timestamps (LogAppendTime is not supported yet)")
    },
    def("min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio", ConfigType::Double, "0.5", 0, "accepted; compaction runs every check interval"),
    def(MIN_COMPACTION_LAG_MS, "log.cleaner.min.compaction.lag.ms", ConfigType::Long, "0", 0, "records younger than this are never compacted"),
    def(MIN_INSYNC_REPLICAS, "min.insync.replicas", ConfigType::Int, "1", 1, "replicas that must have a write before acks=all answers"),
    def("preallocate", "log.preallocate", ConfigType::Boolean, "false", 0, "accepted; RocksDB manages its files"),
    def(RETENTION_BYTES, "log.retention.bytes", ConfigType::Long, "-1", -1, "a partition over this size loses its oldest batches (-1: no limit)"),
    def(RETENTION_MS, "log.retention.ms", ConfigType::Long, "604800000", -1, "batches whose newest record is older than this are deleted (-1: forever)"),
    def(SEGMENT_BYTES, "log.segment.bytes", ConfigType::Int, "1073741824", 14, "accepted; Strom has no segment files: retention works per batch"),
    def("segment.index.bytes", "log.index.size.max.bytes", ConfigType::Int, "10485760", 4, "accepted; no index files"),
    def("segment.jitter.ms", "log.roll.jitter.ms", ConfigType::Long, "0", 0, "accepted; no segments"),
    def(SEGMENT_MS, "log.roll.ms", ConfigType::Long, "604800000", 1, "accepted; Strom has no segment files: retention works per batch"),
    def(UNCLEAN_LEADER_ELECTION_ENABLE, "unclean.leader.election.enable", ConfigType::Boolean, "false", 0, "with no live ISR member, elect a live replica outside the ISR (may lose acknowledged writes)"),
];

pub fn lookup(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// A dynamic broker config by name.
pub fn lookup_broker(name: &str) -> Option<&'static ConfigDef> {
    DYNAMIC_BROKER_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks a dynamic broker config; the error names the flags for anything else.
pub fn validate_broker(name: &str, value: &str) -> Result<(), MetadataError> {
    let d = lookup_broker(name).ok_or_else(|| MetadataError::InvalidConfig {
        key: name.to_string(),
        reason: format!(
            "not a dynamic broker config (dynamic: {}); the others are the broker's flags",
            DYNAMIC_BROKER_CONFIGS
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })?;
    check_value(d, value)
}

/// Whether a throttled-replicas list (`*`, or `partition:broker,...`) names `broker`'s
/// replica of `partition`.
pub fn throttled(list: &str, partition: u32, broker: i32) -> bool {
    list.split(',').map(str::trim).any(|item| {
        item == "*"
            || item.split_once(':').is_some_and(|(p, b)| {
                p.trim().parse::<u32>() == Ok(partition) && b.trim().parse::<i32>() == Ok(broker)
            })
    })
}

/// Checks a config name and value; the error is INVALID_CONFIG with the reason.
pub fn validate(name: &str, value: &str) -> Result<(), MetadataError> {
    let invalid = |reason: String| MetadataError::InvalidConfig {
        key: name.to_string(),
        reason,
    };
    let d = lookup(name).ok_or_else(|| invalid("unknown topic config".into()))?;
    check_value(d, value)
}

fn check_value(d: &ConfigDef, value: &str) -> Result<(), MetadataError> {
    let name = d.name;
    let invalid = |reason: String| MetadataError::InvalidConfig {
        key: name.to_string(),
        reason,
    };
    if matches!(
        name,
        LEADER_THROTTLED_REPLICAS | FOLLOWER_THROTTLED_REPLICAS
    ) {
        let items: Vec<&str> = value.split(',').map(str::trim).collect();
        let ok = value.trim().is_empty()
            || value.trim() == "*"
            || items.iter().all(|i| {
                i.split_once(':').is_some_and(|(p, b)| {
                    p.trim().parse::<u32>().is_ok() && b.trim().parse::<i32>().is_ok_and(|b| b >= 0)
                })
            });
        return if ok {
            Ok(())
        } else {
            Err(invalid(format!(
                "'{value}' is not * or a list of partition:broker"
            )))
        };
    }
    match d.ty {
        ConfigType::Int | ConfigType::Long => {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid(format!("'{value}' is not an integer")))?;
            if d.ty == ConfigType::Int && i32::try_from(v).is_err() {
                return Err(invalid(format!("{v} does not fit in 32 bits")));
            }
            if v < d.min {
                return Err(invalid(format!("{v} is below the minimum {}", d.min)));
            }
        }
        ConfigType::Double => {
            let v: f64 = value
                .trim()
                .parse()
                .map_err(|_| invalid(format!("'{value}' is not a number")))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(format!("{v} is not between 0 and 1")));
            }
        }
        ConfigType::Boolean => {
            if !matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "false") {
                return Err(invalid(format!("'{value}' is not true or false")));
            }
        }
        ConfigType::String => {
            if !d.allowed.is_empty() && !d.allowed.contains(&value.trim()) {
                return Err(invalid(format!("'{value}' is not one of {:?}", d.allowed)));
            }
        }
        ConfigType::List => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if items.is_empty() || items.iter().any(|i| !d.allowed.contains(i)) {
                return Err(invalid(format!(
                    "'{value}' is not a list of {:?}",
                    d.allowed
                )));
            }
        }
    }
    Ok(())
}

/// The cleanup policy as flags: (delete, compact).
pub fn cleanup_policy(value: &str) -> (bool, bool) {
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    (items.contains(&"delete"), items.contains(&"compact"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_types_ranges_and_enums() {
        assert!(validate(RETENTION_MS, "1000").is_ok());
        assert!(validate(RETENTION_MS, "-1").is_ok());
        assert!(validate(RETENTION_MS, "-2").is_err());
        assert!(validate(RETENTION_MS, "soon").is_err());
        assert!(
            validate(MAX_MESSAGE_BYTES, "99999999999").is_err(),
            "int overflow"
        );
        assert!(validate(CLEANUP_POLICY, "compact,delete").is_ok());
        assert!(validate(CLEANUP_POLICY, "compact, delete").is_ok());
        assert!(validate(CLEANUP_POLICY, "shred").is_err());
        assert!(validate("preallocate", "yes").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate(MESSAGE_TIMESTAMP_TYPE, "LogAppendTime").is_err());
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate(MIN_INSYNC_REPLICAS, "0").is_err());
    }

    #[test]
    fn throttled_replica_lists_and_rates() {
        assert!(validate(LEADER_THROTTLED_REPLICAS, "0:1, 1:2,2:3").is_ok());
        assert!(validate(FOLLOWER_THROTTLED_REPLICAS, "*").is_ok());
        assert!(validate(FOLLOWER_THROTTLED_REPLICAS, "").is_ok());
        assert!(validate(LEADER_THROTTLED_REPLICAS, "0-1").is_err());
        assert!(validate(LEADER_THROTTLED_REPLICAS, "0:1,*").is_err());
        assert!(throttled("0:1,1:2", 1, 2));
        assert!(!throttled("0:1,1:2", 1, 1));
        assert!(throttled("*", 7, 9));
        assert!(!throttled("", 0, 1));
        assert!(validate_broker(LEADER_THROTTLED_RATE, "1048576").is_ok());
        assert!(validate_broker(FOLLOWER_THROTTLED_RATE, "-1").is_err());
        assert!(validate_broker("log.retention.ms", "1").is_err());
    }

    #[test]
    fn every_default_is_valid() {
        for d in TOPIC_CONFIGS {
            assert!(validate(d.name, d.default).is_ok(), "{}", d.name);
        }
    }
}
