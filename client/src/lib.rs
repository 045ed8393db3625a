//! # strom-client: talking Kafka to Strom (and to any Kafka broker)
//!
//! ```text
//!   producer::Producer   consumer::Consumer   admin::Admin      cli (the `strom` binary)
//!        |                  |        |            |                  |
//!        |            group member   fetcher      |       built on the three on the left
//!        +------------------+--------+------------+
//!                           |
//!                 cluster::ClusterClient  (bootstrap, Metadata, a connection per broker)
//!                           |
//!                      Connection  (one TCP stream: typed requests in, typed responses out)
//! ```
//!
//! - [`producer::Producer`]: batching per partition, compression, acks, retries that follow
//!   the leader, idempotence on by default, delivery futures; Java's murmur2 partitioner.
//! - [`consumer::Consumer`]: `assign` or `subscribe` (a classic-protocol group member with
//!   range, roundrobin or cooperative-sticky), `poll` or a `Stream`, commits (sync, async,
//!   automatic), `seek`, `auto.offset.reset`, rebalance callbacks.
//! - [`admin::Admin`]: topics, configs, partitions, cluster, groups and their offsets.
//! - [`share::ShareConsumer`]: a share-group member (KIP-932, queues): records handed to
//!   one member at a time, acknowledged one by one (accept, release, reject).
//!
//! Underneath is [`Connection`]: one TCP connection that sends typed requests from the
//! `kafka-protocol` crate and returns their typed responses, in order.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> Result<(), strom_client::ClientError> {
//! use kafka_protocol::messages::MetadataRequest;
//! let mut conn = strom_client::Connection::connect("127.0.0.1:9092").await?;
//! let metadata = conn.send(MetadataRequest::default().with_topics(None), 12).await?;
//! println!("{} brokers", metadata.brokers.len());
//! # Ok(()) }
//! ```

pub mod admin;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod consumer;
pub mod features;
pub mod partitioner;
pub mod placement;
pub mod producer;
pub mod properties;
pub mod records;
pub mod security;
pub mod share;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Partition numbers by topic, topics in order: how Kafka requests and the consumer
/// protocol list partitions.
pub(crate) fn partitions_by_topic<'a>(
    tps: impl IntoIterator<Item = &'a TopicPartition>,
) -> std::collections::BTreeMap<&'a str, Vec<i32>> {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for tp in tps {
        by_topic
            .entry(tp.topic.as_str())
            .or_default()
            .push(tp.partition);
    }
    by_topic
}

/// A Kafka error code a broker answered with, its name, and the broker's message if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerError {
    pub code: i16,
    pub name: String,
    pub message: Option<String>,
}

impl BrokerError {
    pub fn new(code: i16, message: Option<&str>) -> Self {
        Self {
            code,
            name: error_name(code),
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }
    }

    /// Whether this is Kafka's `error` (`ResponseError::NotCoordinator` and so on).
    pub fn is(&self, error: kafka_protocol::ResponseError) -> bool {
        self.code == error.code()
    }
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.code)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

/// Largest response accepted, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection failed: {source}")]
    Io {
        #[from]
        source: std::io::Error,
    },
    #[error("could not encode the request: {reason}")]
    Encode { reason: String },
    #[error("malformed response: {reason}")]
    Decode { reason: String },
    #[error("response for correlation id {got}, expected {expected}")]
    CorrelationMismatch { expected: i32, got: i32 },
    #[error("the broker closed the connection")]
    Closed,
    #[error("authentication failed: {reason}")]
    Auth { reason: String },
}

/// A byte stream a [`Connection`] runs over: TCP, or TLS over TCP.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// One connection to a broker. Requests are answered in the order they are sent.
///
/// A SASL connection whose broker gave its session a lifetime (KIP-368) authenticates again
/// on the same connection before the session ends: at the first request after a random point
/// between 85% and 95% of the lifetime, as Kafka's clients do.
pub struct Connection {
    stream: Box<dyn Io>,
    next_correlation_id: i32,
    client_id: StrBytes,
    reauth: Option<Reauth>,
}

/// When and how a connection re-authenticates.
struct Reauth {
    sasl: std::sync::Arc<security::SaslCredentials>,
    due: std::time::Instant,
}

impl Connection {
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self::from_stream(stream))
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Self {
        Self::from_io(Box::new(stream))
    }

    /// Wraps an already connected (and, for TLS, handshaken) stream.
    pub fn from_io(stream: Box<dyn Io>) -> Self {
        Self {
            stream,
            next_correlation_id: 1,
            client_id: StrBytes::from_static_str("strom-client"),
            reauth: None,
        }
    }

    /// After SASL: re-authenticate with `sasl` before `lifetime` runs out (none: never).
    pub(crate) fn set_session(
        &mut self,
        sasl: std::sync::Arc<security::SaslCredentials>,
        lifetime: Option<std::time::Duration>,
    ) {
        self.reauth = lifetime.map(|l| {
            // 85% to 95% of the lifetime, spread so that connections do not all re-authenticate
            // at once.
            let spread = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() % 11);
            Reauth {
                sasl,
                due: std::time::Instant::now() + l.mul_f64(0.85 + f64::from(spread) / 100.0),
            }
        });
    }

    /// Re-authenticates (KIP-368) if the session is close to its end.
    async fn reauthenticate_if_due(&mut self) -> Result<(), ClientError> {
        let Some(sasl) = self
            .reauth
            .as_ref()
            .filter(|r| std::time::Instant::now() >= r.due)
            .map(|r| r.sasl.clone())
        else {
            return Ok(());
        };
        let lifetime = security::authenticate(self, &sasl).await?;
        self.set_session(sasl, lifetime);
        Ok(())
    }

    /// Names this connection's requests with `client_id` (Kafka's request header field).
    pub fn with_client_id(mut self, client_id: &str) -> Self {
        self.client_id = StrBytes::from_string(client_id.to_string());
        self
    }

    /// Sends `request` at `version` and waits for its response.
    pub async fn send<R: Request>(
        &mut self,
        request: R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.reauthenticate_if_due().await?;
        self.exchange(request, version).await
    }

    /// Sends `request` and waits for its response, with no re-authentication first (the SASL
    /// exchange itself).
    pub(crate) async fn exchange<R: Request>(
        &mut self,
        request: R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let correlation_id = self.write_unchecked(&request, version).await?;
        self.read_response::<R>(version, correlation_id).await
    }

    /// Sends `request` without waiting for an answer (`acks=0` produce, which gets none).
    pub async fn write_request<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<i32, ClientError> {
        self.reauthenticate_if_due().await?;
        self.write_unchecked(request, version).await
    }

    async fn write_unchecked<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<i32, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let encode = |e: anyhow::Error| ClientError::Encode {
            reason: e.to_string(),
        };
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()))
            .encode(&mut buf, R::header_version(version))
            .map_err(encode)?;
        request.encode(&mut buf, version).map_err(encode)?;
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await?;
        // Over TLS the request's tail may still sit in rustls's buffer after write_all.
        self.stream.flush().await?;
        Ok(correlation_id)
    }

    /// Reads the next response, which must answer `correlation_id`.
    pub async fn read_response<R: Request>(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response, ClientError> {
        let mut frame = self.read_frame().await?;
        let decode = |e: anyhow::Error| ClientError::Decode {
            reason: e.to_string(),
        };
        let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(decode)?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::CorrelationMismatch {
                expected: correlation_id,
                got: header.correlation_id,
            });
        }
        R::Response::decode(&mut frame, version).map_err(decode)
    }

    /// Reads one raw response frame (without its length prefix).
    pub async fn read_frame(&mut self) -> Result<bytes::Bytes, ClientError> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ClientError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        let len = i32::from_be_bytes(len);
        if len < 0 || len as usize > MAX_RESPONSE_BYTES {
            return Err(ClientError::Decode {
                reason: format!("response length {len}"),
            });
        }
        // Read into uninitialised capacity: zeroing the frame first cost a memset of every
        // byte fetched (docs/perf.md, "What security costs").
        let len = len as usize;
        let mut frame = BytesMut::with_capacity(len);
        while frame.len() < len {
            let want = (len - frame.len()) as u64;
            if (&mut self.stream).take(want).read_buf(&mut frame).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
        Ok(frame.freeze())
    }
}

/// A Kafka error code's name as Kafka spells it (`NOT_LEADER_OR_FOLLOWER`), "NONE" for 0.
pub fn error_name(code: i16) -> String {
    match code.err() {
        None => "NONE".into(),
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::new();
            for (i, c) in camel.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

/// Reads the correlation id at the front of a response frame.
pub fn correlation_id(frame: &[u8]) -> Option<i32> {
    let mut b = frame.get(0..4)?;
    Some(b.get_i32())
}
