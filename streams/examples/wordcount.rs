//! Word count, as Kafka's WordCountDemo: splits each input value (UTF-8 text) into
//! lowercase words and writes `(word, count)` to the output topic, the count as a decimal
//! UTF-8 string.
//!
//! ```text
//! cargo run --release -p strom-streams --example wordcount -- \
//!     --bootstrap-server 127.0.0.1:9092 --input lines --output counts \
//!     --application-id wordcount [--processing-guarantee exactly_once_v2] [--state-dir DIR]
//! ```
//!
//! Runs until SIGINT or SIGTERM, then closes cleanly (commit, checkpoints, leave group).
//! With `--application-server HOST:PORT` it answers interactive queries on the counts:
//! `curl HOST:PORT/stores/counts/keys/hello` (a 307 points to the instance that has it).

use clap::Parser;

mod common;
use strom_streams::{serdes, Grouped, KafkaStreams, Materialized, Produced, StreamsBuilder};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: common::Common,
    #[arg(long)]
    input: String,
    #[arg(long)]
    output: String,
    #[arg(long, default_value = "wordcount")]
    application_id: String,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// num.standby.replicas: warm copies of each task's store on other instances.
    #[arg(long, default_value_t = 0)]
    num_standby_replicas: usize,
    /// statestore.cache.max.bytes: 0 forwards every count update at once (by default
    /// updates are cached and forwarded at each commit, as in Kafka Streams).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    cache_max_bytes: usize,
    /// repartition.purge.interval.ms: how often consumed repartition records are deleted.
    #[arg(long, default_value_t = 30_000)]
    repartition_purge_interval_ms: u64,
    /// application.server: serve interactive queries on this host:port
    /// (`GET /stores/counts/keys/{word}`, `/stores/counts/all`, `/metadata`).
    #[arg(long)]
    application_server: Option<String>,
    /// session.timeout.ms: how soon the group notices an instance that died.
    #[arg(long, default_value_t = 45_000)]
    session_timeout_ms: u64,
}

fn topology(
    input: &str,
    output: &str,
) -> Result<strom_streams::Topology, strom_streams::StreamsError> {
    let b = StreamsBuilder::new();
    b.stream(input, serdes::unit(), serdes::string())
        .flat_map_values(|line: &String| {
            line.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, word: &String| word.clone(),
            Grouped::with(serdes::string(), serdes::string()),
        )
        .count(Materialized::as_("counts"))
        .to_stream()
        .map_values(|n: &Option<i64>| n.unwrap_or(0).to_string())
        .to(output, Produced::with(serdes::string(), serdes::string()));
    b.build()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::init_logging();
    let args = Args::parse();
    let mut config = args.common.config(&args.application_id)?;
    config.num_stream_threads = args.threads;
    config.num_standby_replicas = args.num_standby_replicas;
    config.cache_max_bytes = args.cache_max_bytes;
    config.repartition_purge_interval =
        std::time::Duration::from_millis(args.repartition_purge_interval_ms);
    config.application_server = args.application_server.clone();
    config.session_timeout = std::time::Duration::from_millis(args.session_timeout_ms);
    config.heartbeat_interval = config.session_timeout / 4;
    let topology = topology(&args.input, &args.output)?;
    println!("{}", topology.describe());
    let mut streams = KafkaStreams::new(topology, config)?;
    streams.start().await?;
    if let Some(addr) = &args.application_server {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let app = streams.queries()?.router::<String, i64>("counts");
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let m = streams.run_until_shutdown().await?;
    eprintln!(
        "wordcount: processed {} records, {} commits, {} restored",
        m.processed, m.commits, m.restored
    );
    Ok(())
}
