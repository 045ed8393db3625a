//! `strom-broker`: parse flags, start the broker, stop cleanly on Ctrl-C or SIGTERM.

use broker::{Broker, BrokerConfig};
use clap::{CommandFactory, Parser};

/// jemalloc instead of glibc's malloc, with the settings in `.cargo/config.toml`: a fetch's
/// buffers (its answer, each partition's records) were fresh memory every time under glibc,
/// and faulting their pages in was 43% of the broker's CPU in a catch-up consume (decision
/// 0024; docs/perf.md, "Where the catch-up consume time went").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "strom-broker",
    version,
    about = "Strom: a Kafka-compatible streaming broker"
)]
struct Cli {
    #[command(flatten)]
    config: BrokerConfig,

    /// A Kafka server.properties file: its settings apply unless a flag or STROM_* variable
    /// gives them (Kafka's names; see docs/configs.md).
    #[arg(long = "config", env = "STROM_CONFIG")]
    config_file: Option<std::path::PathBuf>,

    /// Log output format.
    #[arg(long, env = "STROM_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,

    /// Export a span per Kafka request over OTLP/HTTP (JSON) to this collector, e.g.
    /// http://127.0.0.1:4318 (spans go to its /v1/traces). Off when not given.
    #[arg(long, env = "STROM_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (args, ignored) =
        match broker::properties::expand(std::env::args_os().collect(), &Cli::command(), |k| {
            std::env::var(k).ok()
        }) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        };
    let mut cli = Cli::parse_from(args);
    if cli.config.node_id_from_hostname {
        match metadata_quorum::identity::resolve(None, true).and_then(|id| {
            i32::try_from(id)
                .map_err(|_| format!("--node-id-from-hostname: ordinal {id} is too large"))
        }) {
            Ok(id) => cli.config.node_id = id,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
    }
    let telemetry = strom_telemetry::init_or_exit(strom_telemetry::Options {
        service: "strom-broker",
        node_id: Some(cli.config.node_id.to_string()),
        filter_env: "STROM_LOG",
        default_filter: "info",
        json: cli.log_format == "json",
        otlp_endpoint: cli.otlp_endpoint.as_deref(),
    });
    for key in &ignored {
        tracing::warn!(setting = %key, "a --config setting Strom does not have: ignored");
    }
    match built_in_malloc_conf() {
        conf if conf.contains("oversize_threshold:0") => {
            tracing::info!(malloc_conf = conf, "allocator: jemalloc")
        }
        // Built from outside the repository (cargo reads .cargo/config.toml from the
        // current directory): fetch buffers are faulted in again every time.
        conf => tracing::warn!(
            malloc_conf = conf,
            "allocator: jemalloc without the settings in .cargo/config.toml (decision 0024)"
        ),
    }
    if let Err(e) = cli.config.validate() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let running = match Broker::start(cli.config).await {
        Ok(r) => r,
        Err(e) => {
            // One line naming what failed (a flag and its address, a data dir, ...).
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    // The spans not sent yet go now (a blocking flush, off the async workers).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The jemalloc options compiled in (`JEMALLOC_SYS_WITH_MALLOC_CONF`).
fn built_in_malloc_conf() -> &'static str {
    // jemalloc's string comes with its terminating NUL.
    tikv_jemalloc_ctl::config::malloc_conf::read()
        .unwrap_or("")
        .trim_end_matches('\0')
}

#[cfg(test)]
mod tests {
    #[test]
    fn jemalloc_is_built_with_the_repositorys_settings() {
        let conf = super::built_in_malloc_conf();
        for option in [
            "oversize_threshold:0",
            "dirty_decay_ms:1000",
            "background_thread:true",
        ] {
            assert!(conf.contains(option), "{option} not in {conf:?}");
        }
    }
}
