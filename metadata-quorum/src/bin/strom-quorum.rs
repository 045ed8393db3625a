//! `strom-quorum`: one controller of the metadata quorum.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use metadata_quorum::controller::TopicDefaults;
use metadata_quorum::quorum::tls::{QuorumTls, TlsFiles};
use metadata_quorum::quorum::{LeaderBalance, QuorumConfig, QuorumNode, ReplicaBalance};

#[derive(Parser)]
#[command(
    name = "strom-quorum",
    version,
    about = "A controller of Strom's Raft metadata quorum"
)]
struct Cli {
    /// This controller's id; must appear in --voters (unless --join).
    #[arg(
        long,
        env = "STROM_NODE_ID",
        required_unless_present = "node_id_from_hostname"
    )]
    node_id: Option<u64>,
    /// Take the node id from the hostname's trailing ordinal (`strom-controller-0` is 0), as a
    /// Kubernetes StatefulSet names its pods.
    #[arg(long, env = "STROM_NODE_ID_FROM_HOSTNAME", conflicts_with = "node_id")]
    node_id_from_hostname: bool,
    /// Where the Raft log and metadata snapshots live.
    #[arg(long, env = "STROM_DATA_DIR", default_value = "./strom-quorum-data")]
    data_dir: PathBuf,
    /// Address to bind (Raft RPC, controller RPC, HTTP API).
    #[arg(long, env = "STROM_LISTEN", default_value = "127.0.0.1:9093")]
    listen: SocketAddr,
    /// Every voter, as id@host:port,... (Kafka's controller.quorum.voters).
    #[arg(long, env = "STROM_VOTERS")]
    voters: String,
    /// Join a running quorum (KIP-853): --voters names its current voters, not this one.
    /// The controller waits, serving nothing, until `strom metadata-quorum add-controller`
    /// catches it up as a learner and makes it a voter.
    #[arg(long, env = "STROM_JOIN")]
    join: bool,
    /// A broker silent for this long is fenced (broker.session.timeout.ms).
    #[arg(long, env = "STROM_BROKER_SESSION_TIMEOUT_MS", default_value_t = 3000)]
    broker_session_timeout_ms: u64,
    /// Partitions of topics created without a count (num.partitions).
    #[arg(long, env = "STROM_NUM_PARTITIONS", default_value_t = 1)]
    num_partitions: u32,
    /// Replicas of topics created without a factor (default.replication.factor).
    #[arg(long, env = "STROM_DEFAULT_REPLICATION_FACTOR", default_value_t = 1)]
    default_replication_factor: u16,
    /// Raft heartbeat interval of the active controller.
    #[arg(long, env = "STROM_RAFT_HEARTBEAT_MS", default_value_t = 50)]
    raft_heartbeat_ms: u64,
    /// Longest a follower waits for the leader before standing for election; each wait is
    /// drawn from 60-100% of it. Followers also refuse votes this long after hearing a leader.
    #[arg(long, env = "STROM_RAFT_ELECTION_TIMEOUT_MS", default_value_t = 500)]
    raft_election_timeout_ms: u64,
    /// Serve and reach the other voters over mutual TLS (brokers then need --quorum-tls).
    #[arg(long, env = "STROM_TLS", requires_all = ["ssl_certificate", "ssl_key", "ssl_ca"])]
    tls: bool,
    /// This controller's PEM certificate chain (with --tls).
    #[arg(long, env = "STROM_SSL_CERTIFICATE")]
    ssl_certificate: Option<PathBuf>,
    /// Its PEM private key.
    #[arg(long, env = "STROM_SSL_KEY")]
    ssl_key: Option<PathBuf>,
    /// The PEM CA that every controller's and broker's certificate chains to.
    #[arg(long, env = "STROM_SSL_CA")]
    ssl_ca: Option<PathBuf>,
    /// Move leadership back to each partition's preferred (first) replica when brokers are
    /// unbalanced (auto.leader.rebalance.enable).
    #[arg(long, env = "STROM_AUTO_LEADER_REBALANCE_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    auto_leader_rebalance_enable: bool,
    /// Share of a broker's preferred partitions that may be led elsewhere before they are
    /// elected back (leader.imbalance.per.broker.percentage).
    #[arg(
        long,
        env = "STROM_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE",
        default_value_t = 10
    )]
    leader_imbalance_per_broker_percentage: u32,
    /// How often the active controller checks the leader balance
    /// (leader.imbalance.check.interval.seconds).
    #[arg(
        long,
        env = "STROM_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS",
        default_value_t = 300
    )]
    leader_imbalance_check_interval_seconds: u64,
    /// Move replicas between brokers when their replica counts differ by more than one (a
    /// broker was added), through KIP-455 reassignments, one round at a time.
    #[arg(long, env = "STROM_AUTO_REPLICA_BALANCE_ENABLE", default_value_t = false, action = clap::ArgAction::Set)]
    auto_replica_balance_enable: bool,
    /// How often the active controller checks the replica balance.
    #[arg(
        long,
        env = "STROM_REPLICA_BALANCE_CHECK_INTERVAL_SECONDS",
        default_value_t = 30
    )]
    replica_balance_check_interval_seconds: u64,
    /// The most replicas one balancing round moves.
    #[arg(long, env = "STROM_REPLICA_BALANCE_MAX_MOVES", default_value_t = 10)]
    replica_balance_max_moves: usize,
    /// With --auto-replica-balance-enable: move replicas off a broker whose partitions fill
    /// more than this percentage of its capacity (as it reports it, --log-dir-capacity-bytes
    /// on the broker), and fill no broker past it; 0 balances replica counts only.
    #[arg(
        long,
        env = "STROM_REPLICA_BALANCE_DISK_THRESHOLD_PERCENT",
        default_value_t = 80,
        value_parser = clap::value_parser!(u64).range(0..=100)
    )]
    replica_balance_disk_threshold_percent: u64,
    /// The metadata.version a new cluster starts at, as a Kafka release (3.7, 4.0-IV3), as
    /// `kafka-storage.sh format --release-version` sets it; raise it later with
    /// `strom features upgrade`. Default: the newest this build supports.
    #[arg(long, env = "STROM_RELEASE_VERSION", value_parser = metadata_quorum::features::parse_release)]
    release_version: Option<i16>,
    /// Log output format.
    #[arg(long, env = "STROM_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Export a span per controller request over OTLP/HTTP (JSON) to this collector, e.g.
    /// http://127.0.0.1:4318 (spans go to its /v1/traces). Off when not given.
    #[arg(long, env = "STROM_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let node_id = match metadata_quorum::identity::resolve(cli.node_id, cli.node_id_from_hostname) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let telemetry = strom_telemetry::init_or_exit(strom_telemetry::Options {
        service: "strom-quorum",
        node_id: Some(node_id.to_string()),
        filter_env: "STROM_LOG",
        default_filter: "info,openraft=warn",
        json: cli.log_format == "json",
        otlp_endpoint: cli.otlp_endpoint.as_deref(),
    });
    let voters = match QuorumConfig::parse_voters(&cli.voters) {
        Ok(v) if v.contains_key(&node_id) != cli.join => v,
        Ok(_) if cli.join => {
            eprintln!("error: --join: --node-id {node_id} is already in --voters");
            std::process::exit(2);
        }
        Ok(_) => {
            eprintln!("error: --node-id {node_id} is not in --voters (to add a controller to a running quorum, start it with --join, then `strom metadata-quorum add-controller`)");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("error: --voters: {e}");
            std::process::exit(2);
        }
    };
    if cli.raft_heartbeat_ms == 0
        || cli.raft_heartbeat_ms * 3 > cli.raft_election_timeout_ms * 3 / 5
    {
        eprintln!("error: --raft-election-timeout-ms must be at least 5 x --raft-heartbeat-ms");
        std::process::exit(2);
    }
    if cli.num_partitions == 0 || cli.default_replication_factor == 0 {
        eprintln!("error: --num-partitions and --default-replication-factor must be at least 1");
        std::process::exit(2);
    }
    let tls = match (cli.tls, cli.ssl_certificate, cli.ssl_key, cli.ssl_ca) {
        (true, Some(certificate), Some(key), Some(ca)) => {
            match QuorumTls::load(&TlsFiles {
                certificate,
                key,
                ca,
            }) {
                Ok(t) => Some(t),
                Err(e) => {
                    eprintln!("error: --tls: {e}");
                    std::process::exit(2);
                }
            }
        }
        _ => None,
    };
    let running = QuorumNode::start(QuorumConfig {
        node_id,
        listen: cli.listen,
        voters,
        data_dir: cli.data_dir,
        broker_session_timeout: Duration::from_millis(cli.broker_session_timeout_ms),
        topic_defaults: TopicDefaults {
            num_partitions: cli.num_partitions,
            replication_factor: cli.default_replication_factor,
        },
        heartbeat_interval: Duration::from_millis(cli.raft_heartbeat_ms),
        election_timeout: (
            Duration::from_millis(cli.raft_election_timeout_ms * 3 / 5),
            Duration::from_millis(cli.raft_election_timeout_ms),
        ),
        tls,
        leader_balance: LeaderBalance {
            enabled: cli.auto_leader_rebalance_enable,
            per_broker_percentage: cli.leader_imbalance_per_broker_percentage,
            check_interval: Duration::from_secs(cli.leader_imbalance_check_interval_seconds),
        },
        replica_balance: ReplicaBalance {
            enabled: cli.auto_replica_balance_enable,
            check_interval: Duration::from_secs(cli.replica_balance_check_interval_seconds),
            max_moves: cli.replica_balance_max_moves,
            disk_threshold_percent: cli.replica_balance_disk_threshold_percent,
        },
        release_version: cli.release_version,
    })
    .await;
    let running = match running {
        Ok(r) => r,
        Err(metadata_quorum::quorum::StartError::Bind { addr, source }) => {
            let why = match source.kind() {
                std::io::ErrorKind::AddrInUse => "address in use".to_string(),
                _ => source.to_string(),
            };
            eprintln!("error: --listen {addr}: {why}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    shutdown_signal().await;
    running.shutdown().await;
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
