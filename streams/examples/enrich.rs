//! Enrichment, a stream-table join: each order (JSON) joined with its customer (JSON, the
//! latest per id from a compacted topic), written as `{"order": ..., "customer": ...}`
//! (`customer` is null while the id is unknown: a left join, so no order is lost).
//! Orders keyed by anything else than the customer id are re-keyed by their
//! `customer_id` field and repartitioned first, so that they meet their customer's task.
//!
//! ```text
//! cargo run --release -p strom-streams --example enrich -- --bootstrap-server B \
//!     --orders orders --customers customers --output enriched-orders
//! ```

use clap::Parser;
use serde_json::{json, Value};
use strom_streams::{
    serdes, KafkaStreams, Materialized, ProcessingGuarantee, Produced, Repartitioned,
    StreamsBuilder, StreamsConfig,
};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    #[arg(long, default_value = "orders")]
    orders: String,
    #[arg(long, default_value = "customers")]
    customers: String,
    #[arg(long, default_value = "enriched-orders")]
    output: String,
    #[arg(long, default_value = "enrich")]
    application_id: String,
    #[arg(long, default_value = "at_least_once")]
    processing_guarantee: String,
    #[arg(long)]
    state_dir: Option<std::path::PathBuf>,
    #[arg(long)]
    commit_interval_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();
    let b = StreamsBuilder::new();
    let customers = b.table(
        &args.customers,
        serdes::string(),
        serdes::json::<Value>(),
        Materialized::as_("customers"),
    );
    b.stream(
        &args.orders,
        serdes::nullable(serdes::string()),
        serdes::json::<Value>(),
    )
    .select_key(|k: &Option<String>, order: &Value| {
        order
            .get("customer_id")
            .and_then(|c| {
                c.as_str()
                    .map(str::to_string)
                    .or_else(|| Some(c.to_string()))
            })
            .or_else(|| k.clone())
            .unwrap_or_default()
    })
    .repartition(
        Repartitioned::with(serdes::string(), serdes::json()).with_name("orders-by-customer"),
    )
    .left_join_table(&customers, |order: &Value, customer: Option<&Value>| {
        json!({ "order": order, "customer": customer }).to_string()
    })
    .to(
        &args.output,
        Produced::with(serdes::string(), serdes::string()),
    );
    let mut config = StreamsConfig::new(&args.application_id, &args.bootstrap_server);
    config.processing_guarantee = ProcessingGuarantee::parse(&args.processing_guarantee)?;
    config.commit_interval = args
        .commit_interval_ms
        .map(std::time::Duration::from_millis);
    if let Some(dir) = args.state_dir {
        config.state_dir = dir;
    }
    let topology = b.build()?;
    println!("{}", topology.describe());
    let mut streams = KafkaStreams::new(topology, config)?;
    streams.start().await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        e = streams.failed() => eprintln!("error: {e}"),
    }
    streams.close().await?;
    Ok(())
}
