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
use serde::{Deserialize, Serialize};
use strom_streams::dsl::SessionWindows;
use strom_streams::{
    serdes, Grouped, KafkaStreams, Materialized, ProcessingGuarantee, Produced, StreamsBuilder,
    StreamsConfig,
};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
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
    #[arg(long, default_value = "at_least_once")]
    processing_guarantee: String,
    #[arg(long)]
    state_dir: Option<std::path::PathBuf>,
    #[arg(long)]
    commit_interval_ms: Option<u64>,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
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
    let m = streams.metrics();
    streams.close().await?;
    eprintln!(
        "sessionize: processed {} clicks, {} late and dropped",
        m.processed, m.late_dropped
    );
    Ok(())
}
