//! ElectLeaders (KIP-460), what kafka-leader-election.sh sends: move leadership to each
//! partition's preferred replica, or (unclean) to any live replica of a leaderless partition.

use std::collections::BTreeMap;

use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::ElectLeadersRequest;

use super::{check, Admin, AdminError};
use crate::cluster::topic_name;
use crate::{BrokerError, TopicPartition};

/// Kafka's ElectionType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// The first replica leads, if it is alive and in the ISR.
    Preferred,
    /// A live replica outside the ISR leads a partition whose ISR is all gone (may lose data).
    Unclean,
}

impl ElectionType {
    fn code(self) -> i8 {
        match self {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        }
    }
}

/// One partition's result: `Ok` when a leader was elected.
pub type ElectionResult = (TopicPartition, Result<(), BrokerError>);

impl Admin {
    /// Elects leaders for `partitions`, or for every partition (`None`: then only the
    /// partitions whose leader changed are in the answer, as Kafka does).
    pub async fn elect_leaders(
        &mut self,
        election: ElectionType,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<Vec<ElectionResult>, AdminError> {
        let topics = partitions.map(|ps| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for tp in ps {
                by_topic.entry(&tp.topic).or_default().push(tp.partition);
            }
            by_topic
                .into_iter()
                .map(|(t, parts)| {
                    TopicPartitions::default()
                        .with_topic(topic_name(t))
                        .with_partitions(parts)
                })
                .collect()
        });
        let req = ElectLeadersRequest::default()
            .with_election_type(election.code())
            .with_topic_partitions(topics)
            .with_timeout_ms(60_000);
        let r = self.any_send(req, 2).await?;
        check("ElectLeaders", r.error_code, None)?;
        let mut out = Vec::new();
        for t in r.replica_election_results {
            for p in t.partition_result {
                let tp = TopicPartition::new(t.topic.to_string(), p.partition_id);
                let result = if p.error_code == 0 {
                    Ok(())
                } else {
                    Err(BrokerError::new(p.error_code, p.error_message.as_deref()))
                };
                out.push((tp, result));
            }
        }
        out.sort_by(|a, b| (&a.0.topic, a.0.partition).cmp(&(&b.0.topic, b.0.partition)));
        Ok(out)
    }
}
