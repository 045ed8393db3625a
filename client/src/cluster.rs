//! A client's view of the cluster: bootstrap, Metadata, and one connection per broker, so
//! requests go to the partition's leader (or the group's coordinator).
//!
//! Every Metadata answer refreshes the broker addresses and, for the topics it names, each
//! partition's leader and epoch; callers ask [`ClusterClient::leader`] and refresh on
//! `NOT_LEADER_OR_FOLLOWER` and friends.

use std::collections::HashMap;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::{BrokerError, ClientError, Connection};

/// A partition as the last Metadata answer described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLeader {
    /// -1 while the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
}

pub struct ClusterClient {
    bootstrap: Vec<String>,
    security: crate::security::Security,
    brokers: HashMap<i32, String>,
    conns: HashMap<i32, Connection>,
    any: Option<Connection>,
    topics: HashMap<String, Vec<PartitionLeader>>,
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl ClusterClient {
    /// `bootstrap` is `host:port[,host:port...]`; connections are PLAINTEXT.
    pub fn new(bootstrap: &str) -> Self {
        Self::with_security(bootstrap, crate::security::Security::plaintext())
    }

    /// Connections run TLS and SASL as `security` says.
    pub fn with_security(bootstrap: &str, security: crate::security::Security) -> Self {
        Self {
            security,
            bootstrap: bootstrap
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            brokers: HashMap::new(),
            conns: HashMap::new(),
            any: None,
            topics: HashMap::new(),
        }
    }

    /// How this client's connections authenticate.
    pub fn security(&self) -> &crate::security::Security {
        &self.security
    }

    /// Forgets every connection (after a failure), so the next call connects afresh.
    pub fn reset(&mut self) {
        self.any = None;
        self.conns.clear();
    }

    /// Forgets the connection to broker `id` (it failed or the broker moved).
    pub fn drop_broker(&mut self, id: i32) {
        self.conns.remove(&id);
    }

    /// A connection to any reachable broker: a known one first, else the bootstrap list.
    pub async fn any(&mut self) -> Result<&mut Connection, ClientError> {
        if self.any.is_none() {
            let mut last = ClientError::Closed;
            let known = self.brokers.values().cloned();
            let candidates: Vec<String> = self.bootstrap.iter().cloned().chain(known).collect();
            for addr in &candidates {
                match self.security.connect(addr).await {
                    Ok(c) => {
                        self.any = Some(c);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            if self.any.is_none() {
                return Err(last);
            }
        }
        self.any.as_mut().ok_or(ClientError::Closed)
    }

    /// Metadata for `topics` (None: all), without creating topics.
    pub async fn metadata(
        &mut self,
        topics: Option<&[&str]>,
    ) -> Result<MetadataResponse, ClientError> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|t| {
                t.iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let md = match self.any().await?.send(req, 12).await {
            Ok(md) => md,
            Err(e) => {
                self.any = None;
                return Err(e);
            }
        };
        for b in &md.brokers {
            let addr = format!("{}:{}", b.host.as_str(), b.port);
            if self.brokers.get(&b.node_id.0) != Some(&addr) {
                self.conns.remove(&b.node_id.0);
            }
            self.brokers.insert(b.node_id.0, addr);
        }
        for t in &md.topics {
            let Some(name) = t.name.as_ref() else {
                continue;
            };
            if t.error_code != 0 {
                self.topics.remove(name.as_str());
                continue;
            }
            let mut parts: Vec<(i32, PartitionLeader)> = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        PartitionLeader {
                            leader: p.leader_id.0,
                            leader_epoch: p.leader_epoch,
                        },
                    )
                })
                .collect();
            parts.sort_by_key(|(i, _)| *i);
            self.topics.insert(
                name.to_string(),
                parts.into_iter().map(|(_, p)| p).collect(),
            );
        }
        Ok(md)
    }

    /// The partition count of `topic` from the last Metadata answer that named it.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        self.topics.get(topic).map(|p| p.len() as i32)
    }

    /// Leader and epoch of a partition from the last Metadata answer that named its topic.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<PartitionLeader> {
        self.topics
            .get(topic)?
            .get(usize::try_from(partition).ok()?)
            .copied()
    }

    /// The broker coordinating `group` (FindCoordinator), added to the known brokers.
    pub async fn find_coordinator(&mut self, group: &str) -> Result<i32, FindCoordinatorError> {
        self.find_coordinator_of(group, 0).await
    }

    /// The coordinator of `key`: a group (key type 0) or a transactional id (1).
    pub async fn find_coordinator_of(
        &mut self,
        key: &str,
        key_type: i8,
    ) -> Result<i32, FindCoordinatorError> {
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.to_string()))
            .with_key_type(key_type);
        let r = match self.any().await?.send(req, 3).await {
            Ok(r) => r,
            Err(e) => {
                self.any = None;
                return Err(e.into());
            }
        };
        if r.error_code != 0 {
            return Err(FindCoordinatorError::Broker(BrokerError::new(
                r.error_code,
                r.error_message.as_deref(),
            )));
        }
        let addr = format!("{}:{}", r.host.as_str(), r.port);
        if self.brokers.get(&r.node_id.0) != Some(&addr) {
            self.conns.remove(&r.node_id.0);
        }
        self.brokers.insert(r.node_id.0, addr);
        Ok(r.node_id.0)
    }

    /// The address of broker `id` (from the last Metadata or FindCoordinator answer).
    pub fn address(&self, id: i32) -> Option<&str> {
        self.brokers.get(&id).map(String::as_str)
    }

    /// A connection to broker `id` (from the last Metadata answer).
    pub async fn broker(&mut self, id: i32) -> Result<&mut Connection, ClientError> {
        if !self.conns.contains_key(&id) {
            let addr = self
                .brokers
                .get(&id)
                .cloned()
                .ok_or_else(|| ClientError::Decode {
                    reason: format!("broker {id} is not in the cluster metadata"),
                })?;
            let conn = self.security.connect(&addr).await?;
            self.conns.insert(id, conn);
        }
        self.conns.get_mut(&id).ok_or(ClientError::Closed)
    }

    /// Takes the connection to broker `id` out (connecting if needed), for a request that
    /// runs concurrently with others; give it back with [`ClusterClient::put_back`].
    pub async fn take(&mut self, id: i32) -> Result<Connection, ClientError> {
        self.broker(id).await?;
        self.conns.remove(&id).ok_or(ClientError::Closed)
    }

    pub fn put_back(&mut self, id: i32, conn: Connection) {
        self.conns.insert(id, conn);
    }
}

/// Why FindCoordinator gave no coordinator.
#[derive(Debug, thiserror::Error)]
pub enum FindCoordinatorError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Broker(BrokerError),
}
