//! A Kafka "broker" that stores nothing: it answers ApiVersions, Metadata (one topic, every
//! partition led by itself) and Produce (every partition accepted, offsets counted per
//! connection and partition), and nothing else. It is the ceiling of a produce benchmark on
//! the machine: what the client reaches when the broker costs no more than reading the
//! requests and answering them (`scripts/bench-rdkafka.sh --null`; docs/perf.md, "The
//! client's ceiling"). Not a test double for Strom's behaviour.
//!
//!   cargo run --release -p broker --example null_broker -- 127.0.0.1:9092 bench 8

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::{bail, Context};
use broker::protocol::{codec::FrameCodec, decode_request, encode_response, preamble, versions};
use bytes::Bytes;
use futures::StreamExt;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;

/// The APIs answered, advertised at the versions Strom itself supports.
const APIS: [ApiKey; 3] = [ApiKey::ApiVersions, ApiKey::Metadata, ApiKey::Produce];
/// Advertised besides, never answered: librdkafka writes record batches (message format v2)
/// only to a broker that also has Fetch v4 or later, and message sets v0/v1 otherwise (a
/// CRC per record: another client workload altogether).
const ADVERTISED: [ApiKey; 4] = [
    ApiKey::ApiVersions,
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::Fetch,
];

struct Sink {
    addr: SocketAddr,
    topic: String,
    partitions: i32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, topic, partitions] = args.as_slice() else {
        bail!("usage: null_broker <host:port> <topic> <partitions>");
    };
    let sink = std::sync::Arc::new(Sink {
        addr: addr.parse().context("listen address")?,
        topic: topic.clone(),
        partitions: partitions.parse().context("partitions")?,
    });
    let listener = TcpListener::bind(sink.addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let sink = std::sync::Arc::clone(&sink);
        tokio::spawn(async move {
            if let Err(e) = serve(&sink, stream).await {
                eprintln!("null_broker: connection closed: {e:#}");
            }
        });
    }
}

async fn serve(sink: &Sink, stream: TcpStream) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, FrameCodec::new(128 << 20));
    // The next offset of each partition.
    let mut next: HashMap<i32, i64> = HashMap::new();
    while let Some(frame) = frames.next().await {
        let frame: Bytes = frame?.freeze();
        let p = preamble(&frame)?;
        let key = ApiKey::try_from(p.api_key).map_err(|_| anyhow::anyhow!("api {}", p.api_key))?;
        if !APIS.contains(&key) {
            bail!("{key:?} is not answered here");
        }
        let request = decode_request(key, p.version, frame)?;
        let response = match request.body {
            RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions()),
            RequestKind::Metadata(r) => ResponseKind::Metadata(metadata(sink, &r)),
            // acks=0 is not answered, as by Kafka.
            RequestKind::Produce(r) if r.acks == 0 => {
                produce(&r, &mut next);
                continue;
            }
            RequestKind::Produce(r) => ResponseKind::Produce(produce(&r, &mut next)),
            _ => bail!("{key:?} is not answered here"),
        };
        let out = encode_response(key, p.version, p.correlation_id, &response)?;
        write.write_all(&out).await?;
    }
    Ok(())
}

fn api_versions() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        ADVERTISED
            .iter()
            .map(|k| {
                let (min, max) = versions::supported(*k).expect("Strom supports it");
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect(),
    )
}

fn metadata(sink: &Sink, _request: &MetadataRequest) -> MetadataResponse {
    let partitions = (0..sink.partitions)
        .map(|i| {
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(0.into())
                .with_leader_epoch(0)
                .with_replica_nodes(vec![0.into()])
                .with_isr_nodes(vec![0.into()])
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(0.into())
            .with_host(StrBytes::from_string(sink.addr.ip().to_string()))
            .with_port(sink.addr.port() as i32)])
        .with_cluster_id(Some(StrBytes::from_static_str("null")))
        .with_controller_id(0.into())
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(sink.topic.clone()))))
            .with_partitions(partitions)])
}

/// Every partition's records accepted at the next offsets: the record count of each v2 batch
/// is read from its header (bytes 57..61), nothing else is looked at.
fn produce(request: &ProduceRequest, next: &mut HashMap<i32, i64>) -> ProduceResponse {
    let topics = request
        .topic_data
        .iter()
        .map(|t| {
            let partitions = t
                .partition_data
                .iter()
                .map(|p| {
                    let records = p.records.as_deref().unwrap_or_default();
                    let offset = next.entry(p.index).or_default();
                    let base = *offset;
                    *offset += record_count(records);
                    PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_base_offset(base)
                        .with_log_append_time_ms(-1)
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(topics)
}

fn record_count(mut records: &[u8]) -> i64 {
    let mut n = 0;
    while records.len() >= 61 {
        let len = i32::from_be_bytes(records[8..12].try_into().expect("4 bytes"));
        n += i32::from_be_bytes(records[57..61].try_into().expect("4 bytes")) as i64;
        // A negative length ends the count (the batch is not looked at further).
        let Some(rest) = usize::try_from(len)
            .ok()
            .and_then(|l| records.get(12 + l..))
        else {
            break;
        };
        records = rest;
    }
    n
}
