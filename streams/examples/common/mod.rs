//! What the examples share: logging, and the flags every streams application has.

use std::path::PathBuf;
use std::time::Duration;

use strom_streams::{ProcessingGuarantee, StreamsConfig, StreamsError};

/// Per-record allocations freed on other threads: jemalloc instead of glibc's malloc
/// (docs/perf.md: glibc spent a third of the CPU; mimalloc's page purging a fifth).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `tracing` to stdout, `RUST_LOG` filtering (default info), colours only on a terminal.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
}

#[derive(clap::Args)]
pub struct Common {
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// at_least_once or exactly_once_v2.
    #[arg(long, default_value = "at_least_once")]
    pub processing_guarantee: String,
    /// Where RocksDB stores and checkpoints live (default: the temp dir's strom-streams).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// commit.interval.ms (default: 30000 at least once, 100 exactly once).
    #[arg(long)]
    pub commit_interval_ms: Option<u64>,
    /// max.task.idle.ms: how long a task waits for an empty input partition (-1: never).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub max_task_idle_ms: i64,
}

impl Common {
    pub fn config(&self, application_id: &str) -> Result<StreamsConfig, StreamsError> {
        let mut c = StreamsConfig::new(application_id, &self.bootstrap_server);
        c.processing_guarantee = ProcessingGuarantee::parse(&self.processing_guarantee)?;
        c.commit_interval = self.commit_interval_ms.map(Duration::from_millis);
        c.max_task_idle_ms = self.max_task_idle_ms;
        if let Some(dir) = &self.state_dir {
            c.state_dir = dir.clone();
        }
        Ok(c)
    }
}
