//! The `strom` command line: topics, cluster, produce, consume and perf, over the Kafka
//! protocol. Errors are one line with the Kafka error name and what to do; the exit code is
//! 1 for a failed operation and 2 for a bad command line (clap).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataResponse,
    ProduceRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};

use crate::cluster::{topic_name, ClusterClient};
pub use crate::error_name;
use crate::producer::{Producer, ProducerConfig, ProducerError, ProducerRecord};
use crate::{records, ClientError};

#[derive(Parser)]
#[command(
    name = "strom",
    version,
    about = "Strom's command line: topics, cluster, produce, consume, perf"
)]
pub struct Cli {
    /// Brokers to bootstrap from, host:port[,host:port...].
    #[arg(
        long,
        short = 'b',
        env = "STROM_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap_server: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Brokers, the controller and the cluster id.
    Cluster,
    /// Produce lines from stdin or a file, one record per line.
    Produce(ProduceArgs),
    /// Consume records and print them.
    Consume(ConsumeArgs),
    /// Load tests, like kafka-producer-perf-test / kafka-consumer-perf-test.
    #[command(subcommand)]
    Perf(PerfCommand),
    /// List, describe and reset consumer groups.
    #[command(subcommand)]
    Groups(GroupsCommand),
}

#[derive(Subcommand)]
pub enum GroupsCommand {
    List,
    /// Members, assignments, committed offsets and lag.
    Describe {
        group: String,
    },
    /// Move an empty group's committed offsets (a dry run unless --execute).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        #[arg(long)]
        execute: bool,
    },
}

#[derive(Subcommand)]
pub enum TopicsCommand {
    List,
    Describe {
        topic: String,
    },
    Create {
        topic: String,
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// A topic config, key=value (repeatable).
        #[arg(long = "config", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    Delete {
        topic: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<Codec> for Compression {
    fn from(c: Codec) -> Self {
        match c {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// Split each line into key and value at the first occurrence of this string.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// A header for every record, key=value (repeatable).
    #[arg(long = "header", value_parser = parse_kv)]
    pub headers: Vec<(String, String)>,
    /// Send everything to this partition (default: keyed records by murmur2, others spread).
    #[arg(long)]
    pub partition: Option<i32>,
    #[arg(long, value_enum, default_value = "none")]
    pub compression: Codec,
    /// -1 (all), 0 or 1.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_parser = clap::value_parser!(i16).range(-1..=1))]
    pub acks: i16,
    /// Records per batch.
    #[arg(long, default_value_t = 500)]
    pub batch_records: usize,
}

#[derive(Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Only this partition (default: all).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Where to start: an offset, `beginning` or `end`.
    #[arg(long, default_value = "end")]
    pub offset: String,
    /// Same as --offset beginning.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    pub follow: bool,
    /// `json`, or a template with %t topic, %p partition, %o offset, %k key, %v value,
    /// %T timestamp, %h headers (k=v,...), \n and \t.
    #[arg(long, default_value = "%v\\n")]
    pub format: String,
}

#[derive(Subcommand)]
pub enum PerfCommand {
    /// Produce fixed-size records as fast as possible (or at --throughput).
    Produce {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        #[arg(long, default_value_t = 100)]
        record_size: usize,
        #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = clap::value_parser!(i16).range(-1..=1))]
        acks: i16,
        /// Records per second at most (-1: no cap).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        throughput: i64,
        #[arg(long, default_value_t = 1000)]
        batch_records: usize,
        #[arg(long, value_enum, default_value = "none")]
        compression: Codec,
    },
    /// Read a partition from the beginning.
    Consume {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 0)]
        partition: i32,
        #[arg(long)]
        records: u64,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("'{s}' is not key=value"))
}

/// A failure the CLI reports in one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{name}: {message}")]
    Kafka { name: String, message: String },
    #[error("{0}")]
    Input(String),
}

/// Kafka's UPPER_SNAKE name for an error code.
fn kafka(code: i16, message: Option<&str>, hint: &str) -> CliError {
    let mut m = message.unwrap_or("").to_string();
    if !hint.is_empty() {
        if !m.is_empty() {
            m.push_str("; ");
        }
        m.push_str(hint);
    }
    CliError::Kafka {
        name: error_name(code),
        message: m,
    }
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let mut client = ClusterClient::new(&cli.bootstrap_server);
    match cli.command {
        Command::Topics(t) => topics(&mut client, t).await,
        Command::Cluster => cluster(&mut client).await,
        Command::Produce(a) => produce(&cli.bootstrap_server, a).await,
        Command::Consume(a) => consume(&mut client, a).await,
        Command::Perf(p) => perf(&mut client, p).await,
        Command::Groups(g) => groups(&mut client, g).await,
    }
}

async fn topics(client: &mut ClusterClient, cmd: TopicsCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match cmd {
        TopicsCommand::List => {
            let md = client.metadata(None).await?;
            let mut names: Vec<String> = md
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
                .collect();
            names.sort();
            for n in names {
                let _ = writeln!(out, "{n}");
            }
        }
        TopicsCommand::Describe { topic } => {
            let md = client.metadata(Some(&[topic.as_str()])).await?;
            let t = md
                .topics
                .first()
                .ok_or_else(|| CliError::Input("empty metadata answer".into()))?;
            if t.error_code != 0 {
                return Err(kafka(
                    t.error_code,
                    Some(&format!("topic '{topic}'")),
                    "check the name with `strom topics list`",
                ));
            }
            let _ = writeln!(
                out,
                "topic {topic} id {} partitions {}",
                t.topic_id,
                t.partitions.len()
            );
            for p in &t.partitions {
                let ids = |v: &[kafka_protocol::messages::BrokerId]| {
                    v.iter()
                        .map(|b| b.0.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let _ = writeln!(
                    out,
                    "  partition {} leader {} epoch {} replicas [{}] isr [{}]",
                    p.partition_index,
                    p.leader_id.0,
                    p.leader_epoch,
                    ids(&p.replica_nodes),
                    ids(&p.isr_nodes)
                );
            }
        }
        TopicsCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let req = CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(&topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication_factor)
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(Some(StrBytes::from_string(v.clone())))
                            })
                            .collect(),
                    )]);
            let r = client.any().await?.send(req, 7).await?;
            let t = r
                .topics
                .first()
                .ok_or_else(|| CliError::Input("empty answer".into()))?;
            if t.error_code != 0 {
                return Err(kafka(t.error_code, t.error_message.as_deref(), ""));
            }
            let _ = writeln!(
                out,
                "created topic {topic} ({} partitions, replication factor {})",
                t.num_partitions, t.replication_factor
            );
        }
        TopicsCommand::Delete { topic } => {
            let req = DeleteTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topic_names(vec![topic_name(&topic)]);
            let r = client.any().await?.send(req, 5).await?;
            let t = r
                .responses
                .first()
                .ok_or_else(|| CliError::Input("empty answer".into()))?;
            if t.error_code != 0 {
                return Err(kafka(t.error_code, t.error_message.as_deref(), ""));
            }
            let _ = writeln!(out, "deleted topic {topic}");
        }
    }
    Ok(())
}

async fn cluster(client: &mut ClusterClient) -> Result<(), CliError> {
    let md = client.metadata(None).await?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "cluster {}", md.cluster_id.as_deref().unwrap_or("?"));
    for b in &md.brokers {
        let _ = writeln!(
            out,
            "broker {} at {}:{}",
            b.node_id.0,
            b.host.as_str(),
            b.port
        );
    }
    let _ = writeln!(out, "topics {}", md.topics.len());
    for t in &md.topics {
        let leaders: BTreeMap<i32, i32> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        let _ = writeln!(
            out,
            "  {} leaders {:?}",
            t.name.as_ref().map_or("?", |n| n.as_str()),
            leaders
        );
    }
    Ok(())
}

/// Partition count and leaders of `topic`, failing with the Kafka error when it is missing.
fn leaders(md: &MetadataResponse, topic: &str) -> Result<BTreeMap<i32, i32>, CliError> {
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .ok_or_else(|| CliError::Input(format!("no metadata for '{topic}'")))?;
    if t.error_code != 0 {
        return Err(kafka(
            t.error_code,
            Some(&format!("topic '{topic}'")),
            "create it with `strom topics create`",
        ));
    }
    Ok(t.partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect())
}

fn record(
    key: Option<Bytes>,
    value: Bytes,
    headers: &[(String, String)],
    ts: i64,
    i: usize,
) -> Record {
    let mut r = records::record(i, key, Some(value), ts);
    r.headers = headers
        .iter()
        .map(|(k, v)| {
            (
                StrBytes::from_string(k.clone()),
                Some(Bytes::from(v.clone())),
            )
        })
        .collect();
    r
}

fn encode(batch: &[Record], compression: Compression) -> Result<Bytes, CliError> {
    records::encode(batch, compression)
        .map_err(|e| CliError::Input(format!("could not encode records: {e}")))
}

/// Sends one batch to the partition's leader; returns its base offset.
async fn send_batch(
    client: &mut ClusterClient,
    leaders: &BTreeMap<i32, i32>,
    topic: &str,
    partition: i32,
    acks: i16,
    batch: Bytes,
) -> Result<i64, CliError> {
    let leader = *leaders.get(&partition).ok_or_else(|| {
        CliError::Input(format!("partition {partition} of '{topic}' does not exist"))
    })?;
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let conn = client.broker(leader).await?;
    if acks == 0 {
        conn.write_request(&req, 9).await?;
        return Ok(-1);
    }
    let r = conn.send(req, 9).await?;
    let p = &r.responses[0].partition_responses[0];
    if p.error_code != 0 {
        return Err(kafka(p.error_code, p.error_message.as_deref(), ""));
    }
    Ok(p.base_offset)
}

/// Lines to records through the library producer (batching, Java partitioning, retries,
/// idempotence with acks=-1); every delivery is awaited before the summary line.
async fn produce(bootstrap: &str, a: ProduceArgs) -> Result<(), CliError> {
    let producer = Producer::new(ProducerConfig {
        acks: a.acks,
        idempotence: a.acks == -1,
        compression: a.compression.into(),
        max_batch_records: a.batch_records.max(1),
        ..ProducerConfig::new(bootstrap)
    })
    .await
    .map_err(producer_error)?;
    let input: Box<dyn BufRead> = match &a.file {
        Some(f) => Box::new(std::io::BufReader::new(std::fs::File::open(f).map_err(
            |e| CliError::Input(format!("cannot read {}: {e}", f.display())),
        )?)),
        None => Box::new(std::io::stdin().lock()),
    };
    let start = Instant::now();
    let mut deliveries = std::collections::VecDeque::new();
    let mut total = 0u64;
    for line in input.lines() {
        let line = line.map_err(|e| CliError::Input(format!("cannot read input: {e}")))?;
        let (key, value) = match a.key_separator.as_deref().and_then(|s| line.split_once(s)) {
            Some((k, v)) => (Some(k.to_string()), v.to_string()),
            None => (None, line),
        };
        let mut record = ProducerRecord::new(a.topic.as_str(), value);
        record.key = key.map(Bytes::from);
        record.partition = a.partition;
        for (k, v) in &a.headers {
            record = record.with_header(k.as_str(), v.clone());
        }
        deliveries.push_back(producer.send(record).await.map_err(producer_error)?);
        total += 1;
        // Bounded memory on big files: settle the oldest deliveries as the window fills.
        while deliveries.len() > 100_000 {
            if let Some(d) = deliveries.pop_front() {
                d.await.map_err(producer_error)?;
            }
        }
    }
    for d in deliveries {
        d.await.map_err(producer_error)?;
    }
    producer.close().await;
    eprintln!(
        "produced {total} records to {} in {} ms",
        a.topic,
        start.elapsed().as_millis()
    );
    Ok(())
}

fn producer_error(e: ProducerError) -> CliError {
    match e {
        ProducerError::Broker { name, message, .. } => CliError::Kafka {
            name,
            message: message.unwrap_or_default(),
        },
        ProducerError::UnknownTopic(t) => CliError::Kafka {
            name: "UNKNOWN_TOPIC_OR_PARTITION".into(),
            message: format!("topic '{t}'; create it with `strom topics create`"),
        },
        other => CliError::Input(other.to_string()),
    }
}

async fn list_offset(
    client: &mut ClusterClient,
    leader: i32,
    topic: &str,
    partition: i32,
    ts: i64,
) -> Result<i64, CliError> {
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(ts)])]);
    let r = client.broker(leader).await?.send(req, 7).await?;
    let p = &r.topics[0].partitions[0];
    if p.error_code != 0 {
        return Err(kafka(p.error_code, None, ""));
    }
    Ok(p.offset)
}

fn render(format: &str, topic: &str, partition: i32, r: &Record) -> String {
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|v| String::from_utf8_lossy(v).to_string())
            .unwrap_or_default()
    };
    if format == "json" {
        let headers: BTreeMap<String, String> = r
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), text(v)))
            .collect();
        return serde_json::json!({
            "topic": topic, "partition": partition, "offset": r.offset, "timestamp": r.timestamp,
            "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).to_string()),
            "value": r.value.as_ref().map(|v| String::from_utf8_lossy(v).to_string()),
            "headers": headers,
        })
        .to_string()
            + "\n";
    }
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(n)) => {
                chars.next();
                match n {
                    't' => out.push_str(topic),
                    'p' => out.push_str(&partition.to_string()),
                    'o' => out.push_str(&r.offset.to_string()),
                    'k' => out.push_str(&text(&r.key)),
                    'v' => out.push_str(&text(&r.value)),
                    'T' => out.push_str(&r.timestamp.to_string()),
                    'h' => out.push_str(
                        &r.headers
                            .iter()
                            .map(|(k, v)| format!("{}={}", k.as_str(), text(v)))
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    '%' => out.push('%'),
                    other => {
                        out.push('%');
                        out.push(other);
                    }
                }
            }
            ('\\', Some('n')) => {
                chars.next();
                out.push('\n');
            }
            ('\\', Some('t')) => {
                chars.next();
                out.push('\t');
            }
            _ => out.push(c),
        }
    }
    out
}

async fn consume(client: &mut ClusterClient, a: ConsumeArgs) -> Result<(), CliError> {
    let md = client.metadata(Some(&[a.topic.as_str()])).await?;
    let leaders = leaders(&md, &a.topic)?;
    let partitions: Vec<i32> = match a.partition {
        Some(p) if leaders.contains_key(&p) => vec![p],
        Some(p) => {
            return Err(CliError::Input(format!(
                "partition {p} of '{}' does not exist",
                a.topic
            )))
        }
        None => leaders.keys().copied().collect(),
    };
    let start = if a.from_beginning {
        "beginning".to_string()
    } else {
        a.offset.clone()
    };
    // Per partition: (next offset, end offset seen at start).
    let mut positions = BTreeMap::new();
    for p in &partitions {
        let leader = leaders[p];
        let end = list_offset(client, leader, &a.topic, *p, -1).await?;
        let from = match start.as_str() {
            "beginning" => list_offset(client, leader, &a.topic, *p, -2).await?,
            "end" => end,
            n => n.parse().map_err(|_| {
                CliError::Input(format!("--offset '{n}' is not a number, beginning or end"))
            })?,
        };
        positions.insert(*p, (from, end));
    }
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    loop {
        let done_at_end = !a.follow && positions.values().all(|(next, end)| next >= end);
        if a.count.is_some_and(|c| seen >= c) || (a.count.is_none() && done_at_end) {
            break;
        }
        let mut progressed = false;
        for p in &partitions {
            let (next, _) = positions[p];
            let req = FetchRequest::default()
                .with_replica_id((-1).into())
                .with_max_wait_ms(if a.follow || a.count.is_some() {
                    500
                } else {
                    0
                })
                .with_min_bytes(1)
                .with_max_bytes(16 << 20)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(&a.topic))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(next)
                        .with_partition_max_bytes(8 << 20)])]);
            let r = client.broker(leaders[p]).await?.send(req, 12).await?;
            let pd = &r.responses[0].partitions[0];
            if pd.error_code != 0 {
                return Err(kafka(
                    pd.error_code,
                    None,
                    "the partition moved or the offset is gone; try --offset beginning",
                ));
            }
            let Some(mut data) = pd.records.clone() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let sets = RecordBatchDecoder::decode_all(&mut data)
                .map_err(|e| CliError::Input(format!("undecodable records: {e}")))?;
            for r in sets.into_iter().flat_map(|s| s.records) {
                if r.offset < next || a.count.is_some_and(|c| seen >= c) {
                    continue;
                }
                let _ = out.write_all(render(&a.format, &a.topic, *p, &r).as_bytes());
                seen += 1;
                if let Some(pos) = positions.get_mut(p) {
                    pos.0 = r.offset + 1;
                }
                progressed = true;
            }
        }
        if !progressed && !a.follow && a.count.is_none() {
            break;
        }
    }
    let _ = out.flush();
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn perf(client: &mut ClusterClient, cmd: PerfCommand) -> Result<(), CliError> {
    match cmd {
        PerfCommand::Produce {
            topic,
            records,
            record_size,
            acks,
            throughput,
            batch_records,
            compression,
        } => {
            let md = client.metadata(Some(&[topic.as_str()])).await?;
            let leaders = leaders(&md, &topic)?;
            let value = Bytes::from(vec![b'x'; record_size]);
            let batch_records = batch_records.max(1);
            let template: Vec<Record> = (0..batch_records)
                .map(|i| record(None, value.clone(), &[], records::now_ms(), i))
                .collect();
            let batch = encode(&template, compression.into())?;
            let start = Instant::now();
            let mut latencies_ms = Vec::new();
            let mut sent = 0u64;
            while sent < records {
                let n = (records - sent).min(batch_records as u64) as usize;
                let b = if n == batch_records {
                    batch.clone()
                } else {
                    encode(&template[..n], compression.into())?
                };
                let t0 = Instant::now();
                send_batch(client, &leaders, &topic, 0, acks, b).await?;
                latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                sent += n as u64;
                if throughput > 0 {
                    let due = Duration::from_secs_f64(sent as f64 / throughput as f64);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            let secs = start.elapsed().as_secs_f64();
            latencies_ms.sort_by(f64::total_cmp);
            let avg = latencies_ms.iter().sum::<f64>() / latencies_ms.len().max(1) as f64;
            println!(
                "{sent} records sent, {:.0} records/sec ({:.2} MB/sec), {avg:.2} ms avg latency, {:.2} ms p50, {:.2} ms p99, {:.2} ms p99.9, {:.2} ms max (per {batch_records}-record batch)",
                sent as f64 / secs,
                sent as f64 * record_size as f64 / secs / 1e6,
                percentile(&latencies_ms, 0.5),
                percentile(&latencies_ms, 0.99),
                percentile(&latencies_ms, 0.999),
                latencies_ms.last().copied().unwrap_or(0.0),
            );
        }
        PerfCommand::Consume {
            topic,
            partition,
            records,
        } => {
            let md = client.metadata(Some(&[topic.as_str()])).await?;
            let leaders = leaders(&md, &topic)?;
            let leader = *leaders
                .get(&partition)
                .ok_or_else(|| CliError::Input(format!("partition {partition} does not exist")))?;
            let mut next = list_offset(client, leader, &topic, partition, -2).await?;
            let (start, mut count, mut bytes) = (Instant::now(), 0u64, 0u64);
            while count < records {
                let req = FetchRequest::default()
                    .with_replica_id((-1).into())
                    .with_max_wait_ms(500)
                    .with_min_bytes(1)
                    .with_max_bytes(64 << 20)
                    .with_topics(vec![FetchTopic::default()
                        .with_topic(topic_name(&topic))
                        .with_partitions(vec![FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(next)
                            .with_partition_max_bytes(32 << 20)])]);
                let r = client.broker(leader).await?.send(req, 12).await?;
                let pd = &r.responses[0].partitions[0];
                if pd.error_code != 0 {
                    return Err(kafka(pd.error_code, None, ""));
                }
                let data = pd.records.clone().unwrap_or_default();
                if data.is_empty() {
                    return Err(CliError::Input(format!(
                        "only {count} of {records} records in the partition"
                    )));
                }
                // Walk batch headers only: base offset, lastOffsetDelta, recordsCount.
                let mut pos = 0;
                while pos + 61 <= data.len() {
                    let h = &data[pos..];
                    let base = i64::from_be_bytes(h[0..8].try_into().unwrap_or_default());
                    let len =
                        i32::from_be_bytes(h[8..12].try_into().unwrap_or_default()) as usize + 12;
                    let delta = i32::from_be_bytes(h[23..27].try_into().unwrap_or_default()) as i64;
                    let n = i32::from_be_bytes(h[57..61].try_into().unwrap_or_default()) as u64;
                    if pos + len > data.len() {
                        break;
                    }
                    count += n;
                    bytes += len as u64;
                    next = base + delta + 1;
                    pos += len;
                }
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{count} records consumed, {:.0} records/sec ({:.2} MB/sec of batches)",
                count as f64 / secs,
                bytes as f64 / secs / 1e6
            );
        }
    }
    Ok(())
}

/// The coordinator broker of `group`.
async fn coordinator(client: &mut ClusterClient, group: &str) -> Result<i32, CliError> {
    use kafka_protocol::messages::FindCoordinatorRequest;
    client.metadata(None).await?;
    let r = client
        .any()
        .await?
        .send(
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string())),
            3,
        )
        .await?;
    if r.error_code != 0 {
        return Err(kafka(
            r.error_code,
            r.error_message.as_deref(),
            "is the cluster up?",
        ));
    }
    Ok(r.node_id.0)
}

/// (topic, partition, committed offset) of a group.
async fn committed_offsets(
    client: &mut ClusterClient,
    coord: i32,
    group: &str,
) -> Result<Vec<(String, i32, i64)>, CliError> {
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest};
    let r = client
        .broker(coord)
        .await?
        .send(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(None),
            7,
        )
        .await?;
    if r.error_code != 0 {
        return Err(kafka(r.error_code, None, ""));
    }
    let mut out: Vec<(String, i32, i64)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.to_string(), p.partition_index, p.committed_offset))
        })
        .collect();
    out.sort();
    Ok(out)
}

async fn groups(client: &mut ClusterClient, cmd: GroupsCommand) -> Result<(), CliError> {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        DescribeGroupsRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    };
    let mut out = std::io::stdout().lock();
    match cmd {
        GroupsCommand::List => {
            let md = client.metadata(None).await?;
            let mut all = std::collections::BTreeSet::new();
            for b in &md.brokers {
                let r = client
                    .broker(b.node_id.0)
                    .await?
                    .send(ListGroupsRequest::default(), 4)
                    .await?;
                for g in r.groups {
                    all.insert(format!(
                        "{} {}",
                        g.group_id.as_str(),
                        g.group_state.as_str()
                    ));
                }
            }
            for g in all {
                let _ = writeln!(out, "{g}");
            }
        }
        GroupsCommand::Describe { group } => {
            let coord = coordinator(client, &group).await?;
            let d = client
                .broker(coord)
                .await?
                .send(
                    DescribeGroupsRequest::default()
                        .with_groups(vec![GroupId(StrBytes::from_string(group.clone()))]),
                    5,
                )
                .await?;
            let g = d
                .groups
                .first()
                .ok_or_else(|| CliError::Input("empty answer".into()))?;
            if g.error_code != 0 {
                return Err(kafka(g.error_code, None, ""));
            }
            let _ = writeln!(
                out,
                "group {group} state {} protocol {} members {}",
                g.group_state.as_str(),
                g.protocol_data.as_str(),
                g.members.len()
            );
            for m in &g.members {
                let _ = writeln!(
                    out,
                    "  member {} client {} assignment {}",
                    m.member_id.as_str(),
                    m.client_id.as_str(),
                    describe_assignment(&m.member_assignment)
                );
            }
            let md = client.metadata(None).await?;
            for (topic, partition, offset) in committed_offsets(client, coord, &group).await? {
                let end = match leaders(&md, &topic)
                    .ok()
                    .and_then(|l| l.get(&partition).copied())
                {
                    Some(leader) => list_offset(client, leader, &topic, partition, -1)
                        .await
                        .ok(),
                    None => None,
                };
                let lag = end.map_or("?".to_string(), |e| (e - offset).max(0).to_string());
                let _ = writeln!(
                    out,
                    "  {topic} {partition} committed {offset} end {} lag {lag}",
                    end.map_or("?".into(), |e| e.to_string())
                );
            }
        }
        GroupsCommand::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } => {
            if !(to_earliest || to_latest || to_offset.is_some()) {
                return Err(CliError::Input(
                    "say where to: --to-earliest, --to-latest or --to-offset N".into(),
                ));
            }
            let md = client.metadata(Some(&[topic.as_str()])).await?;
            let leaders = leaders(&md, &topic)?;
            let mut plan = Vec::new();
            for (p, leader) in &leaders {
                let target = match to_offset {
                    Some(n) => n,
                    None => {
                        list_offset(
                            client,
                            *leader,
                            &topic,
                            *p,
                            if to_earliest { -2 } else { -1 },
                        )
                        .await?
                    }
                };
                plan.push((*p, target));
            }
            for (p, target) in &plan {
                let _ = writeln!(out, "{topic} {p} -> {target}");
            }
            if !execute {
                let _ = writeln!(out, "(dry run: add --execute to apply)");
                return Ok(());
            }
            let coord = coordinator(client, &group).await?;
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(
                        plan.iter()
                            .map(|(p, o)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(*o)
                            })
                            .collect(),
                    )]);
            let r = client.broker(coord).await?.send(req, 8).await?;
            if let Some(code) = r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| p.error_code)
                .find(|c| *c != 0)
            {
                return Err(kafka(code, None, "stop the group's consumers first"));
            }
            let _ = writeln!(
                out,
                "reset {} partition(s) of {topic} for {group}",
                plan.len()
            );
        }
    }
    Ok(())
}

/// "topic:p,p topic:p" from a consumer-protocol assignment.
fn describe_assignment(bytes: &Bytes) -> String {
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::protocol::Decodable;
    if bytes.len() < 2 {
        return "-".into();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]).clamp(0, 3);
    let mut body = bytes.slice(2..);
    match ConsumerProtocolAssignment::decode(&mut body, version) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .map(|tp| {
                format!(
                    "{}:{}",
                    tp.topic.as_str(),
                    tp.partitions
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => "(not a consumer assignment)".into(),
    }
}
