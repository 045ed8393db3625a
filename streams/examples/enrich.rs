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

mod common;
use serde_json::{json, Value};
use strom_streams::{serdes, KafkaStreams, Materialized, Produced, Repartitioned, StreamsBuilder};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: common::Common,
    #[arg(long, default_value = "orders")]
    orders: String,
    #[arg(long, default_value = "customers")]
    customers: String,
    #[arg(long, default_value = "enriched-orders")]
    output: String,
    #[arg(long, default_value = "enrich")]
    application_id: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::init_logging();
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
    let config = args.common.config(&args.application_id)?;
    let topology = b.build()?;
    println!("{}", topology.describe());
    let mut streams = KafkaStreams::new(topology, config)?;
    streams.start().await?;
    streams.run_until_shutdown().await?;
    Ok(())
}
