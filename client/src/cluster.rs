//! A client's view of the cluster: bootstrap, Metadata, and one connection per broker, so
//! requests go to the partition's leader.

use std::collections::HashMap;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::{ClientError, Connection};

pub struct ClusterClient {
    bootstrap: Vec<String>,
    brokers: HashMap<i32, String>,
    conns: HashMap<i32, Connection>,
    any: Option<Connection>,
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl ClusterClient {
    /// `bootstrap` is `host:port[,host:port...]`.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            brokers: HashMap::new(),
            conns: HashMap::new(),
            any: None,
        }
    }

    /// Forgets every connection (after a failure), so the next call connects afresh.
    pub fn reset(&mut self) {
        self.any = None;
        self.conns.clear();
    }

    /// A connection to any reachable bootstrap broker.
    pub async fn any(&mut self) -> Result<&mut Connection, ClientError> {
        if self.any.is_none() {
            let mut last = ClientError::Closed;
            for addr in &self.bootstrap {
                match Connection::connect(addr.as_str()).await {
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
        let md = self.any().await?.send(req, 12).await?;
        for b in &md.brokers {
            self.brokers
                .insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        Ok(md)
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
            self.conns
                .insert(id, Connection::connect(addr.as_str()).await?);
        }
        self.conns.get_mut(&id).ok_or(ClientError::Closed)
    }
}
