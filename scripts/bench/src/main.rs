//! A librdkafka load generator in the spirit of rdkafka_performance: produce N records of a
//! fixed size to one partition (or spread over `--partitions`) as fast as librdkafka will batch them, then consume them all
//! back, printing msg/s and MB/s for each phase.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer, DefaultProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, default_value = "bench")]
    topic: String,
    #[arg(long, default_value_t = 5_000_000)]
    records: u64,
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    #[arg(long, default_value = "1")]
    acks: String,
    #[arg(long, default_value = "none")]
    compression: String,
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// Partitions to spread the records over (round robin), from 0; the topic must have them.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Skip the produce phase (consume what is there).
    #[arg(long)]
    consume_only: bool,
    /// Skip the consume phase.
    #[arg(long)]
    produce_only: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.consume_only {
        produce(&args)?;
    }
    if !args.produce_only {
        consume(&args)?;
    }
    Ok(())
}

fn report(phase: &str, records: u64, bytes: u64, elapsed: Duration) {
    let s = elapsed.as_secs_f64();
    println!(
        "{phase}: {records} records in {s:.2} s = {:.0} msg/s, {:.1} MB/s",
        records as f64 / s,
        bytes as f64 / s / 1e6
    );
}

fn produce(args: &Args) -> anyhow::Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2000000")
        .set("enable.idempotence", "false")
        .create()
        .context("creating the producer")?;
    let payload = vec![b'x'; args.record_size];
    let start = Instant::now();
    let partitions = args.partitions.max(1) as u64;
    for i in 0..args.records {
        let mut record = BaseRecord::<(), [u8]>::to(&args.topic)
            .payload(&payload)
            .partition((i % partitions) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("produce failed: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).context("flush")?;
    report("produce", args.records, args.records * args.record_size as u64, start.elapsed());
    Ok(())
}

fn consume(args: &Args) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", "strom-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.max.messages.kbytes", "1048576")
        .set("queued.min.messages", "1000000")
        .create()
        .context("creating the consumer")?;
    let mut want = 0u64;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions.max(1) as i32 {
        let (low, high) = consumer.fetch_watermarks(&args.topic, p, Duration::from_secs(10))?;
        want += (high - low) as u64;
        tpl.add_partition_offset(&args.topic, p, Offset::Offset(low))?;
    }
    consumer.assign(&tpl)?;
    let start = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < want {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => bail!("consume failed: {e}"),
            None => bail!("no record for 10 s after {n} of {want}"),
        }
    }
    report("consume", n, bytes, start.elapsed());
    Ok(())
}
