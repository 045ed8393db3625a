//! Sessionization: click events `{"user": ..., "page": ..., "ts": ...}` keyed by user, cut
//! into sessions of activity on event time (`ts`); one JSON record per closed session,
//! `{"user", "start", "end", "clicks", "pages"}`, once the session can no longer change
//! (its end + the inactivity gap + the grace period is behind stream time). Clicks later
//! than the grace period are dropped and counted.
//!
//! ```text
//! cargo run --release -p strom-streams --example sessionize -- --bootstrap-server B \
//!     --input clicks --output sessions --inactivity-gap-ms 30000 --grace-ms 5000
//! ```

use clap::Parser;

mod common;
use serde::{Deserialize, Serialize};
use strom_streams::dsl::SessionWindows;
use strom_streams::{serdes, Grouped, KafkaStreams, Materialized, Produced, StreamsBuilder};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    common: common::Common,
    #[arg(long, default_value = "clicks")]
    input: String,
    #[arg(long, default_value = "sessions")]
    output: String,
    #[arg(long, default_value = "sessionize")]
    application_id: String,
    #[arg(long, default_value_t = 30_000)]
    inactivity_gap_ms: i64,
    #[arg(long, default_value_t = 0)]
    grace_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Click {
    user: String,
    page: String,
    ts: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Activity {
    clicks: u64,
    pages: Vec<String>,
}

#[derive(Serialize)]
struct SessionOut<'a> {
    user: &'a str,
    start: i64,
    end: i64,
    clicks: u64,
    pages: &'a [String],
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::init_logging();
    let args = Args::parse();
    let b = StreamsBuilder::new();
    b.stream_with_timestamps(
        &args.input,
        serdes::string(),
        serdes::json::<Click>(),
        |_, c, _| c.ts,
    )
    .group_by_key(Grouped::with(serdes::string(), serdes::json()))
    .windowed_by_sessions(
        SessionWindows::with_inactivity_gap(args.inactivity_gap_ms).grace(args.grace_ms),
    )
    .aggregate_merging(
        Activity::default,
        |_, c: &Click, a: &Activity| {
            let mut a = a.clone();
            a.clicks += 1;
            a.pages.push(c.page.clone());
            a
        },
        |_, x, y| Activity {
            clicks: x.clicks + y.clicks,
            pages: x.pages.iter().chain(&y.pages).cloned().collect(),
        },
        Materialized::as_("sessions").with_value_serde(serdes::json()),
    )
    .suppress_until_window_closes(serdes::string(), serdes::json())
    .to_stream()
    .filter(|_, a| a.is_some())
    .map(|w, a: &Option<Activity>| {
        let a = a.clone().unwrap_or_default();
        let out = SessionOut {
            user: &w.key,
            start: w.window.start,
            end: w.window.end,
            clicks: a.clicks,
            pages: &a.pages,
        };
        (
            w.key.clone(),
            serde_json::to_string(&out).unwrap_or_default(),
        )
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
    let m = streams.run_until_shutdown().await?;
    eprintln!(
        "sessionize: processed {} clicks, {} late and dropped",
        m.processed, m.late_dropped
    );
    Ok(())
}
