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

pub const CONSUMER_SESSION_TIMEOUT_MS: &str = "consumer.session.timeout.ms";
pub const CONSUMER_HEARTBEAT_INTERVAL_MS: &str = "consumer.heartbeat.interval.ms";
pub const SHARE_SESSION_TIMEOUT_MS: &str = "share.session.timeout.ms";
pub const SHARE_HEARTBEAT_INTERVAL_MS: &str = "share.heartbeat.interval.ms";
pub const SHARE_RECORD_LOCK_DURATION_MS: &str = "share.record.lock.duration.ms";
pub const SHARE_DELIVERY_COUNT_LIMIT: &str = "share.delivery.count.limit";
pub const SHARE_PARTITION_MAX_RECORD_LOCKS: &str = "share.partition.max.record.locks";
pub const SHARE_AUTO_OFFSET_RESET: &str = "share.auto.offset.reset";
pub const SHARE_ISOLATION_LEVEL: &str = "share.isolation.level";

/// The ranges of the share settings, for the group configs and the broker flags alike.
pub const MIN_SHARE_RECORD_LOCK_DURATION_MS: u64 = 1000;
pub const MAX_SHARE_RECORD_LOCK_DURATION_MS: u64 = 3_600_000;
pub const MIN_SHARE_DELIVERY_COUNT_LIMIT: i16 = 2;
pub const MAX_SHARE_DELIVERY_COUNT_LIMIT: i16 = 10;
pub const MIN_SHARE_PARTITION_MAX_RECORD_LOCKS: i64 = 100;
pub const MAX_SHARE_PARTITION_MAX_RECORD_LOCKS: i64 = 10_000;

/// Group configs (Kafka's GROUP config resource, KIP-848 and KIP-932): each overrides, for
/// one group, the broker setting named as its synonym. The defaults shown are Kafka's; a
/// broker started with another value reports its own.
#[rustfmt::skip]
pub const GROUP_CONFIGS: &[ConfigDef] = &[
    def(CONSUMER_HEARTBEAT_INTERVAL_MS, "group.consumer.heartbeat.interval.ms", ConfigType::Int, "5000", 1, "how often members of this consumer group heartbeat"),
    def(CONSUMER_SESSION_TIMEOUT_MS, "group.consumer.session.timeout.ms", ConfigType::Int, "45000", 1, "how long a member of this consumer group may go without a heartbeat"),
    def(SHARE_AUTO_OFFSET_RESET, "share.auto.offset.reset", ConfigType::String, "latest", 0, "where the share group starts a partition it has not read: latest, earliest, or by_duration:<ISO-8601 duration> back from now"),
    def(SHARE_DELIVERY_COUNT_LIMIT, "group.share.delivery.count.limit", ConfigType::Int, "5", MIN_SHARE_DELIVERY_COUNT_LIMIT as i64, "deliveries of a record before it is archived"),
    def(SHARE_HEARTBEAT_INTERVAL_MS, "group.share.heartbeat.interval.ms", ConfigType::Int, "5000", 1, "how often members of this share group heartbeat"),
    def(SHARE_ISOLATION_LEVEL, "share.isolation.level", ConfigType::String, "read_uncommitted", 0, "read_committed: the share group gets only committed transactional records (up to the last stable offset; aborted ones are archived); read_uncommitted: everything up to the high watermark"),
    def(SHARE_PARTITION_MAX_RECORD_LOCKS, "group.share.partition.max.record.locks", ConfigType::Int, "2000", MIN_SHARE_PARTITION_MAX_RECORD_LOCKS, "records in flight per share-partition"),
    def(SHARE_RECORD_LOCK_DURATION_MS, "group.share.record.lock.duration.ms", ConfigType::Int, "30000", MIN_SHARE_RECORD_LOCK_DURATION_MS as i64, "how long a member holds the records a ShareFetch gave it"),
    def(SHARE_SESSION_TIMEOUT_MS, "group.share.session.timeout.ms", ConfigType::Int, "45000", 1, "how long a member of this share group may go without a heartbeat"),
];

/// The largest value of the group configs that have one (the broker flags' ranges).
fn group_config_max(name: &str) -> Option<i64> {
    match name {
        SHARE_RECORD_LOCK_DURATION_MS => Some(MAX_SHARE_RECORD_LOCK_DURATION_MS as i64),
        SHARE_DELIVERY_COUNT_LIMIT => Some(MAX_SHARE_DELIVERY_COUNT_LIMIT as i64),
        SHARE_PARTITION_MAX_RECORD_LOCKS => Some(MAX_SHARE_PARTITION_MAX_RECORD_LOCKS),
        _ => None,
    }
}

/// A group id a GROUP config resource may name: not empty, and not the brokers' internal
/// share-state ids (which carry a NUL).
pub fn check_group_id(group: &str) -> Result<(), MetadataError> {
    if group.is_empty() || group.contains('\0') {
        return Err(MetadataError::InvalidRequest {
            reason: format!("'{}' is not a group id", group.escape_debug()),
        });
    }
    Ok(())
}

pub fn lookup_group(name: &str) -> Option<&'static ConfigDef> {
    GROUP_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks a group config (Kafka's "Unknown group config name" for anything else).
pub fn validate_group(name: &str, value: &str) -> Result<(), MetadataError> {
    let invalid = |reason: String| MetadataError::InvalidConfig {
        key: name.to_string(),
        reason,
    };
    let d = lookup_group(name).ok_or_else(|| {
        invalid(format!(
            "unknown group config name (group configs: {})",
            GROUP_CONFIGS
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if name == SHARE_AUTO_OFFSET_RESET {
        return share_auto_offset_reset(value)
            .map(|_| ())
            .map_err(|e| invalid(format!("'{value}': {e}")));
    }
    if name == SHARE_ISOLATION_LEVEL {
        return share_read_committed(value)
            .map(|_| ())
            .map_err(|e| invalid(format!("'{value}': {e}")));
    }
    check_value(d, value)?;
    if let Some(max) = group_config_max(name) {
        let v: i64 = value.trim().parse().unwrap_or(i64::MAX);
        if v > max {
            return Err(invalid(format!("{v} is above the maximum {max}")));
        }
    }
    Ok(())
}

/// `share.isolation.level`: whether a share group reads only committed records
/// (`read_committed`) or everything below the high watermark (`read_uncommitted`).
pub fn share_read_committed(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "read_committed" => Ok(true),
        "read_uncommitted" => Ok(false),
        _ => Err("expected read_committed or read_uncommitted".into()),
    }
}

/// Where a share group starts a partition it has not read before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareAutoOffsetReset {
    Latest,
    Earliest,
    /// The first record at or after this many milliseconds before now.
    ByDuration(i64),
}

impl std::fmt::Display for ShareAutoOffsetReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Earliest => f.write_str("earliest"),
            Self::ByDuration(ms) if ms % 1000 == 0 => write!(f, "by_duration:PT{}S", ms / 1000),
            Self::ByDuration(ms) => write!(f, "by_duration:PT{}.{:03}S", ms / 1000, ms % 1000),
        }
    }
}

/// Parses `share.auto.offset.reset`: `latest`, `earliest` or `by_duration:<duration>`, the
/// duration in ISO-8601 (`PnDTnHnMn.nS`, as Java's `Duration.parse`), not negative.
pub fn share_auto_offset_reset(value: &str) -> Result<ShareAutoOffsetReset, String> {
    let v = value.trim();
    match v.to_ascii_lowercase().as_str() {
        "latest" => return Ok(ShareAutoOffsetReset::Latest),
        "earliest" => return Ok(ShareAutoOffsetReset::Earliest),
        _ => {}
    }
    let Some(d) = v
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("by_duration:"))
        .map(|_| &v[12..])
    else {
        return Err("not latest, earliest or by_duration:<ISO-8601 duration>".into());
    };
    iso8601_duration_ms(d.trim()).map(ShareAutoOffsetReset::ByDuration)
}

/// An ISO-8601 duration (`PnDTnHnMn.nS`) in milliseconds; negative durations are refused.
pub fn iso8601_duration_ms(d: &str) -> Result<i64, String> {
    let bad = || format!("'{d}' is not an ISO-8601 duration such as PT1H or P1DT30M");
    if d.starts_with('-') {
        return Err("a negative duration is not allowed".into());
    }
    let rest = d
        .strip_prefix(['P', 'p'])
        .filter(|r| !r.is_empty())
        .ok_or_else(bad)?;
    let (date, time) = match rest.find(['T', 't']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mut ms: i128 = 0;
    let mut units = 0;
    if !date.is_empty() {
        let days = date.strip_suffix(['D', 'd']).ok_or_else(bad)?;
        if days.len() > 18 {
            return Err("the duration is too long".into());
        }
        let n: i128 = days.parse().map_err(|_| bad())?;
        if n < 0 {
            return Err("a negative duration is not allowed".into());
        }
        ms += n * 86_400_000;
        units += 1;
    }
    if let Some(mut t) = time {
        if t.is_empty() {
            return Err(bad());
        }
        for (unit, scale) in [('H', 3_600_000i128), ('M', 60_000), ('S', 1000)] {
            let Some(i) = t.find([unit, unit.to_ascii_lowercase()]) else {
                continue;
            };
            let (num, tail) = (&t[..i], &t[i + 1..]);
            if num.is_empty() || num.starts_with(['-', '+']) {
                return Err(bad());
            }
            if unit == 'S' {
                let (whole, frac) = num.split_once(['.', ',']).unwrap_or((num, ""));
                if whole.len() > 18 {
                    return Err("the duration is too long".into());
                }
                let w: i128 = whole.parse().map_err(|_| bad())?;
                if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
                    return Err(bad());
                }
                let f: i128 = format!("{frac:0<3}")[..3].parse().map_err(|_| bad())?;
                ms += w * scale + f;
            } else {
                if num.len() > 18 {
                    return Err("the duration is too long".into());
                }
                ms += num.parse::<i128>().map_err(|_| bad())? * scale;
            }
            units += 1;
            t = tail;
        }
        if !t.is_empty() {
            return Err(bad());
        }
    }
    if units == 0 {
        return Err(bad());
    }
    i64::try_from(ms).map_err(|_| "the duration is too long".to_string())
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
    fn group_configs_are_checked_by_name_type_and_range() {
        assert!(validate_group(SHARE_RECORD_LOCK_DURATION_MS, "15000").is_ok());
        assert!(validate_group(SHARE_RECORD_LOCK_DURATION_MS, "999").is_err());
        assert!(validate_group(SHARE_RECORD_LOCK_DURATION_MS, "3600001").is_err());
        assert!(validate_group(SHARE_DELIVERY_COUNT_LIMIT, "1").is_err());
        assert!(validate_group(SHARE_DELIVERY_COUNT_LIMIT, "10").is_ok());
        assert!(validate_group(SHARE_DELIVERY_COUNT_LIMIT, "11").is_err());
        assert!(validate_group(CONSUMER_SESSION_TIMEOUT_MS, "0").is_err());
        assert!(validate_group(CONSUMER_SESSION_TIMEOUT_MS, "x").is_err());
        assert!(validate_group(SHARE_AUTO_OFFSET_RESET, "EARLIEST").is_ok());
        assert!(validate_group(SHARE_AUTO_OFFSET_RESET, "none").is_err());
        assert!(validate_group(SHARE_ISOLATION_LEVEL, "read_committed").is_ok());
        assert!(validate_group(SHARE_ISOLATION_LEVEL, "READ_UNCOMMITTED").is_ok());
        assert!(validate_group(SHARE_ISOLATION_LEVEL, "committed").is_err());
        assert!(validate_group("retention.ms", "1000").is_err());
        let Err(err) = validate_group("share.no.such", "1") else {
            panic!("an unknown name was accepted");
        };
        assert!(
            err.to_string().contains("unknown group config name"),
            "{err}"
        );
    }

    #[test]
    fn share_auto_offset_reset_takes_iso8601_durations() {
        use ShareAutoOffsetReset::*;
        let p = |v: &str| share_auto_offset_reset(v);
        assert_eq!(p("latest"), Ok(Latest));
        assert_eq!(p(" Earliest "), Ok(Earliest));
        assert_eq!(p("by_duration:PT1H"), Ok(ByDuration(3_600_000)));
        assert_eq!(p("by_duration:P1D"), Ok(ByDuration(86_400_000)));
        assert_eq!(
            p("by_duration:P2DT3H4M5.25S"),
            Ok(ByDuration(
                2 * 86_400_000 + 3 * 3_600_000 + 4 * 60_000 + 5_250
            ))
        );
        assert_eq!(p("BY_DURATION:pt0.5s"), Ok(ByDuration(500)));
        assert_eq!(p("by_duration:PT0S"), Ok(ByDuration(0)));
        for shown in [Latest, Earliest, ByDuration(3_600_000), ByDuration(500)] {
            assert_eq!(p(&shown.to_string()), Ok(shown));
        }
        for bad in [
            "by_duration:",
            "by_duration:P",
            "by_duration:PT",
            "by_duration:1H",
            "by_duration:-PT1H",
            "by_duration:PT-1H",
            "by_duration:P1H",
            "by_duration:PT1H2D",
            "by_duration:PT1M1H",
            "by_duration:PT1.5M",
            "by_duration:P99999999999999999999D",
            "by_time:PT1H",
            "",
        ] {
            assert!(p(bad).is_err(), "{bad} should be refused");
        }
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
