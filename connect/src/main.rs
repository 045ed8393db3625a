//! `strom-connect`: a Kafka Connect worker.
//!
//! ```text
//! strom-connect standalone worker.properties [connector.properties ...]
//! strom-connect distributed worker.properties
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use strom_client::admin::Admin;
use strom_client::producer::{Producer, ProducerConfig};
use tokio::sync::watch;
use tracing::info;

use strom_connect::herder::{Herder, Membership};
use strom_connect::metrics::Metrics;
use strom_connect::plugin::Plugins;
use strom_connect::props::{self, Props};
use strom_connect::rest::{self, Api};
use strom_connect::store::{
    ConfigOp, ConfigStore, FileOffsetStore, MemoryConfigStore, MemoryStatusStore, OffsetStore,
    StatusStore, TopicConfigStore, TopicOffsetStore, TopicStatusStore,
};
use strom_connect::worker::Worker;

#[derive(Parser)]
#[command(
    name = "strom-connect",
    version,
    about = "A Kafka Connect worker for Strom (or any Kafka cluster)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// One worker; offsets in `offset.storage.file.filename`; connectors from the files given
    /// and the REST API.
    Standalone {
        worker: PathBuf,
        connectors: Vec<PathBuf>,
    },
    /// A worker of the group `group.id`; configs, offsets and statuses in topics.
    Distributed { worker: PathBuf },
}

/// Where the worker keeps configs, statuses and offsets, by mode.
struct Stores {
    configs: Arc<dyn ConfigStore>,
    statuses: Arc<dyn StatusStore>,
    offsets: Arc<dyn OffsetStore>,
    offset_topic: Option<String>,
    group_id: String,
}

fn setting<'a>(p: &'a Props, key: &str, default: &'a str) -> &'a str {
    p.get(key).map(String::as_str).unwrap_or(default)
}

fn required<'a>(p: &'a Props, key: &str) -> anyhow::Result<&'a str> {
    p.get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .with_context(|| {
            format!("Missing required configuration \"{key}\" which has no default value.")
        })
}

/// The bind address of `listeners` and the URL others reach this worker at.
fn listener(p: &Props) -> anyhow::Result<(String, String, String)> {
    let l = setting(p, "listeners", "http://0.0.0.0:8083");
    let first = l.split(',').next().unwrap_or(l).trim();
    let hostport = first.strip_prefix("http://").with_context(|| {
        format!("listeners: only http:// listeners are supported, not '{first}'")
    })?;
    let (host, port) = hostport
        .rsplit_once(':')
        .with_context(|| format!("listeners: '{first}' has no port"))?;
    let bind_host = if host.is_empty() { "0.0.0.0" } else { host };
    let adv_host = match p.get("rest.advertised.host.name") {
        Some(h) => h.clone(),
        None if bind_host == "0.0.0.0" => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into()),
        None => bind_host.to_string(),
    };
    let adv_port = p
        .get("rest.advertised.port")
        .cloned()
        .unwrap_or_else(|| port.to_string());
    let id = format!("{adv_host}:{adv_port}");
    Ok((
        format!("{bind_host}:{port}"),
        id.clone(),
        format!("http://{id}"),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,strom_client=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let (worker_file, connector_files, distributed) = match cli.mode {
        Mode::Standalone { worker, connectors } => (worker, connectors, false),
        Mode::Distributed { worker } => (worker, Vec::new(), true),
    };
    let wp =
        props::load(&worker_file).with_context(|| format!("reading {}", worker_file.display()))?;
    let bootstrap = setting(&wp, "bootstrap.servers", "localhost:9092").to_string();
    let (bind, id, url) = listener(&wp)?;
    let rf = |k: &str| wp.get(k).and_then(|v| v.parse::<i16>().ok()).unwrap_or(-1);
    let parts = |k: &str, d: i32| wp.get(k).and_then(|v| v.parse::<i32>().ok()).unwrap_or(d);
    let ms = |k: &str, d: u64| {
        Duration::from_millis(wp.get(k).and_then(|v| v.parse().ok()).unwrap_or(d))
    };

    // A cluster that has just started may not be named yet: wait for it.
    let mut cluster_id = None;
    for _ in 0..100 {
        cluster_id = Admin::new(&bootstrap)
            .describe_cluster()
            .await
            .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?
            .cluster_id
            .filter(|c| !c.is_empty());
        if cluster_id.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stores = if distributed {
        let group = required(&wp, "group.id")?.to_string();
        let ct = required(&wp, "config.storage.topic")?;
        let ot = required(&wp, "offset.storage.topic")?;
        let st = required(&wp, "status.storage.topic")?;
        let offsets = TopicOffsetStore::open(
            &bootstrap,
            ot,
            parts("offset.storage.partitions", 25),
            rf("offset.storage.replication.factor"),
        )
        .await?;
        let statuses = TopicStatusStore::open(
            &bootstrap,
            st,
            parts("status.storage.partitions", 5),
            rf("status.storage.replication.factor"),
        )
        .await?;
        let configs =
            TopicConfigStore::open(&bootstrap, ct, rf("config.storage.replication.factor")).await?;
        Stores {
            configs: Arc::new(configs),
            statuses: Arc::new(statuses),
            offsets: Arc::new(offsets),
            offset_topic: Some(ot.to_string()),
            group_id: group,
        }
    } else {
        let file = PathBuf::from(required(&wp, "offset.storage.file.filename")?);
        Stores {
            configs: Arc::new(MemoryConfigStore::new()),
            statuses: Arc::new(MemoryStatusStore::default()),
            offsets: Arc::new(FileOffsetStore::open(file)?),
            offset_topic: None,
            group_id: "connect-standalone".to_string(),
        }
    };
    let exactly_once_source = match setting(&wp, "exactly.once.source.support", "disabled") {
        "enabled" if distributed => true,
        "enabled" => anyhow::bail!("exactly.once.source.support=enabled needs distributed mode"),
        "disabled" | "preparing" => false,
        other => anyhow::bail!(
            "exactly.once.source.support must be disabled, preparing or enabled, not '{other}'"
        ),
    };
    let mut pc = ProducerConfig::new(&bootstrap);
    pc.linger = ms("producer.linger.ms", 5);
    let worker = Arc::new(Worker {
        id: id.clone(),
        bootstrap: bootstrap.clone(),
        config: wp.clone(),
        plugins: Plugins::builtin(),
        configs: stores.configs,
        statuses: stores.statuses,
        offsets: stores.offsets,
        producer: Producer::new(pc).await?,
        exactly_once_source,
        offset_topic: stores.offset_topic,
        group_id: stores.group_id.clone(),
        metrics: Metrics::default(),
    });

    let (membership, group) = if distributed {
        let (rx, handle) = strom_connect::group::join(
            &bootstrap,
            &stores.group_id,
            required(&wp, "config.storage.topic")?,
            required(&wp, "status.storage.topic")?,
            &id,
            &url,
            ms("session.timeout.ms", 10_000),
            ms("heartbeat.interval.ms", 3_000),
            ms("rebalance.timeout.ms", 60_000),
        )
        .await?;
        (rx, Some(handle))
    } else {
        let m = Membership {
            members: vec![id.clone()],
            leader_url: Some(url.clone()),
        };
        (watch::channel(Arc::new(m)).1, None)
    };
    let herder = Herder::new(worker.clone(), membership);
    for f in &connector_files {
        let c = props::load(f).with_context(|| format!("reading {}", f.display()))?;
        let name = required(&c, "name")?.to_string();
        worker
            .configs
            .write(ConfigOp::PutConnector(name, c.clone()))
            .await?;
    }
    herder.start();

    let api = Api {
        herder: herder.clone(),
        worker: worker.clone(),
        distributed,
        url: url.clone(),
        cluster_id,
        http: reqwest::Client::new(),
    };
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    info!(%bind, %url, mode = if distributed { "distributed" } else { "standalone" }, "REST API listening");
    let server = axum::serve(listener, rest::router(api)).with_graceful_shutdown(shutdown_signal());
    server.await?;
    info!("shutting down: stopping tasks and committing their offsets");
    herder.shutdown().await;
    if let Some(g) = group {
        g.leave().await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}
