//! [`StreamsConfig`]: the settings of a streams instance, with Kafka Streams' names and
//! defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::StreamsError;
use crate::task::OnDeserializationError;

/// `processing.guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// `at_least_once`: outputs are flushed before input offsets are committed; after a
    /// crash, records since the last commit are processed again.
    #[default]
    AtLeastOnce,
    /// `exactly_once_v2`: one transaction per thread per commit covers the outputs, the
    /// changelog writes and the input offsets; inputs are read read_committed.
    ExactlyOnceV2,
}

impl ProcessingGuarantee {
    /// Kafka's config value: `at_least_once` or `exactly_once_v2`.
    pub fn parse(s: &str) -> Result<Self, StreamsError> {
        match s {
            "at_least_once" => Ok(Self::AtLeastOnce),
            "exactly_once_v2" | "exactly_once_beta" => Ok(Self::ExactlyOnceV2),
            other => Err(StreamsError::Config(format!(
                "processing.guarantee '{other}': expected at_least_once or exactly_once_v2"
            ))),
        }
    }
}

/// A streams instance's settings.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// `application.id`: the consumer group, the prefix of internal topics and transactional
    /// ids, and the state directory's name.
    pub application_id: String,
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `num.stream.threads`.
    pub num_stream_threads: usize,
    /// `processing.guarantee`.
    pub processing_guarantee: ProcessingGuarantee,
    /// `commit.interval.ms`: by default 30 s at least once, 100 ms exactly once.
    pub commit_interval: Option<Duration>,
    /// `state.dir`: RocksDB stores and checkpoints live in `<state.dir>/<application.id>/`.
    pub state_dir: PathBuf,
    /// `replication.factor` of internal topics; -1 takes the broker's default.
    pub replication_factor: i16,
    /// `default.deserialization.exception.handler`.
    pub on_deserialization_error: OnDeserializationError,
    /// `processing.exception.handler` (KIP-1033): a processor's failure on a record
    /// (`StreamsError::Processing`) fails the thread, or is logged and skipped.
    pub on_processing_error: crate::task::OnProcessingError,
    /// `errors.dead.letter.queue.topic.name`: records skipped by the handlers go there.
    pub dead_letter_topic: Option<String>,
    /// `session.timeout.ms` of the group (an instance that dies loses its tasks after this).
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `max.poll.records`.
    pub max_poll_records: usize,
    /// `transaction.timeout.ms` (exactly once): an instance killed mid-transaction holds
    /// its partitions' readers back this long at most.
    pub transaction_timeout: Duration,
    /// `num.standby.replicas`: warm copies of each task's stores on other instances, kept
    /// up to date from the changelogs, so that a takeover restores only the tail.
    pub num_standby_replicas: usize,
    /// `application.server`: this instance's `host:port` for interactive queries; every
    /// instance learns which server hosts which tasks.
    pub application_server: Option<String>,
    /// `statestore.cache.max.bytes`: memory for aggregations' cached updates, split evenly
    /// over the threads; an update is forwarded (and logged) at the next commit or when the
    /// cache fills. 0 forwards every update at once.
    pub cache_max_bytes: usize,
    /// `repartition.purge.interval.ms`: how often consumed and committed records of
    /// repartition topics are deleted (DeleteRecords), so those topics stay small.
    pub repartition_purge_interval: Duration,
    /// `max.task.idle.ms` (KIP-353, KIP-695): how long a task with several input partitions
    /// waits for an empty one before processing the others. With 0 (the default) or more, a
    /// task waits while an empty partition is known to have records still to fetch (its
    /// consumer lag is above 0, or not known yet), so records meet in timestamp order; above
    /// 0 it also waits that many ms for new records when the partition has none; -1 never
    /// waits.
    pub max_task_idle_ms: i64,
}

impl StreamsConfig {
    pub fn new(application_id: impl Into<String>, bootstrap_servers: impl Into<String>) -> Self {
        Self {
            application_id: application_id.into(),
            bootstrap_servers: bootstrap_servers.into(),
            num_stream_threads: 1,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            commit_interval: None,
            state_dir: std::env::temp_dir().join("strom-streams"),
            replication_factor: -1,
            on_deserialization_error: OnDeserializationError::Fail,
            on_processing_error: crate::task::OnProcessingError::Fail,
            dead_letter_topic: None,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            max_poll_records: 1000,
            transaction_timeout: Duration::from_secs(10),
            num_standby_replicas: 0,
            application_server: None,
            cache_max_bytes: 10 * 1024 * 1024,
            repartition_purge_interval: Duration::from_secs(30),
            max_task_idle_ms: 0,
        }
    }

    /// The commit interval in force.
    pub fn commit_interval(&self) -> Duration {
        self.commit_interval
            .unwrap_or(match self.processing_guarantee {
                ProcessingGuarantee::AtLeastOnce => Duration::from_secs(30),
                ProcessingGuarantee::ExactlyOnceV2 => Duration::from_millis(100),
            })
    }

    pub fn validate(&self) -> Result<(), StreamsError> {
        let bad = |m: String| Err(StreamsError::Config(m));
        let id = &self.application_id;
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return bad(format!(
                "application.id '{id}' must be non-empty ASCII letters, digits, '.', '_' or '-'"
            ));
        }
        if self.bootstrap_servers.trim().is_empty() {
            return bad("bootstrap.servers is empty".into());
        }
        if self.num_stream_threads == 0 {
            return bad("num.stream.threads must be at least 1".into());
        }
        if self.heartbeat_interval >= self.session_timeout {
            return bad("heartbeat.interval.ms must be lower than session.timeout.ms".into());
        }
        if self.max_poll_records == 0 {
            return bad("max.poll.records must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_guarantee() {
        let mut c = StreamsConfig::new("app", "127.0.0.1:9092");
        assert_eq!(c.commit_interval(), Duration::from_secs(30));
        c.processing_guarantee = ProcessingGuarantee::parse("exactly_once_v2").unwrap();
        assert_eq!(c.commit_interval(), Duration::from_millis(100));
        assert!(c.validate().is_ok());
        assert!(ProcessingGuarantee::parse("exactly_once").is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut c = StreamsConfig::new("my app", "b:1");
        assert!(c.validate().is_err());
        c.application_id = "ok".into();
        c.num_stream_threads = 0;
        assert!(c.validate().is_err());
    }
}
