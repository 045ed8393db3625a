//! # broker: the Strom broker
//!
//! ```text
//!   TCP :9092 --> server::connection (frames, in-order answers)
//!                      |
//!                      v
//!                 protocol (decode) --> handlers::<api> --> log::PartitionLog --> LogStore
//!                                          |                                     (RocksDB)
//!                                          +--> metadata (image reads, controller writes)
//!   TCP :9644 --> http (axum, JSON)  ------^
//! ```
//!
//! [`Broker::start`] builds the pieces from a [`BrokerConfig`] and runs them; the binary
//! `strom-broker` only parses flags and calls it. Metadata comes from the Raft quorum through
//! a [`RemoteController`]; `--dev` starts a single-voter quorum inside this process and talks
//! to it the same way, so there is one code path.

pub mod config;
pub mod console;
pub mod error;
pub mod group;
pub mod handlers;
pub mod http;
pub mod lag;
pub mod log;
pub mod log_dir;
pub mod metrics;
pub mod properties;
pub mod protocol;
pub mod quota;
pub mod replica;
pub mod security;
pub mod server;
pub mod share;
pub mod topic_config;
pub mod txn;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metadata_quorum::controller::TopicDefaults;
use metadata_quorum::quorum::client::{BrokerRegistration, RemoteController};
use metadata_quorum::quorum::{QuorumConfig, QuorumNode, RunningQuorum};
use metadata_quorum::{Endpoint, MetadataImage};
use strom_storage::{RocksLogStore, RocksOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

pub use config::BrokerConfig;

/// Everything a request handler can reach.
pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    pub controller: Arc<RemoteController>,
    pub logs: log::LogManager,
    pub metrics: metrics::Metrics,
    /// The group coordinator (for the groups whose offsets partition this broker leads).
    pub groups: group::GroupCoordinator,
    /// Which `__consumer_offsets` partitions are loaded into `groups`.
    pub groups_loaded: group::Loaded,
    /// Share groups (KIP-932): membership for the groups this broker coordinates, and the
    /// share-partitions of the partitions it leads.
    pub share: share::ShareState,
    /// Client instances known to client telemetry (KIP-714).
    pub telemetry: handlers::telemetry::TelemetryClients,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: handlers::fetch_session::FetchSessions,
    /// The producer id block being handed out: (next, end).
    pub producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Follower fetchers, one per leader this broker replicates from.
    pub replicas: replica::ReplicaManager,
    /// The transaction coordinator (for the transactional ids whose `__transaction_state`
    /// partition this broker leads).
    pub txns: txn::TxnCoordinator,
    /// How an mTLS client's certificate subject becomes its user name.
    pub principal_rules: security::principal::MappingRules,
    /// The SASL mechanisms the SASL listeners offer.
    pub sasl_mechanisms: Vec<security::sasl::SaslMechanism>,
    /// What OAUTHBEARER tokens are checked with, when it is enabled.
    pub oauth: Option<Arc<security::oauth::JwksValidator>>,
    /// How this broker connects to the others' inter-broker listener.
    pub inter_broker_security: strom_client::security::Security,
    /// Who may do what (`--authorizer`).
    pub authorizer: security::authorizer::Authorizer,
    /// Client quota sensors (limits are in the metadata image).
    pub quotas: quota::QuotaManager,
    /// The leader side's replication throttle (KIP-73; the follower side's is the
    /// fetchers').
    pub leader_throttle: replica::throttle::ReplicationThrottle,
    /// A controlled shutdown has handed everything over (it runs until it does, once at a
    /// time).
    pub shut_down: tokio::sync::Mutex<bool>,
    /// End offsets of partitions with no replica here, for group lag.
    pub remote_ends: lag::RemoteEnds,
    /// Who is signed in to the console (with `--authorizer`).
    pub console_logins: console::Logins,
    /// Set once every partition this broker hosts has had it in the ISR since it started
    /// (part of `/readyz`, so a rolling restart waits for a restarted broker to catch up).
    pub replicas_caught_up: std::sync::atomic::AtomicBool,
}

/// Where this broker's replicas stand, for `/readyz`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplicaReadiness {
    /// Every hosted partition had this broker in its ISR (latched: set once, it stays set).
    pub caught_up: bool,
    /// Hosted partitions with a leader that do not have this broker in the ISR yet.
    pub out_of_sync: usize,
    /// Hosted partitions without a leader: nothing to catch up from, so they do not count.
    pub offline: usize,
}

/// A group's committed offset of one partition, with the partition's end and the lag.
#[derive(Debug, Clone)]
pub struct GroupLag {
    pub topic: String,
    pub partition: i32,
    pub committed: group::Committed,
    /// The high watermark of this broker's replica (the leader's, or a follower's a fetch
    /// behind it), else the leader's as last asked ([`lag`]); None until it is known.
    pub end: Option<i64>,
    pub lag: Option<i64>,
}

impl Broker {
    /// Whether this broker has caught up with every partition it hosts since it started.
    pub fn replica_readiness(&self) -> ReplicaReadiness {
        use std::sync::atomic::Ordering;
        let image = self.image();
        let (mut out_of_sync, mut offline) = (0, 0);
        for p in image
            .topics()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.replicas.contains(&self.node_id))
        {
            if p.leader < 0 {
                offline += 1;
            } else if !p.isr.contains(&self.node_id) {
                out_of_sync += 1;
            }
        }
        let registered = image.brokers.get(&self.node_id).is_some_and(|b| !b.fenced);
        if out_of_sync == 0 && registered {
            self.replicas_caught_up.store(true, Ordering::Relaxed);
        }
        ReplicaReadiness {
            caught_up: self.replicas_caught_up.load(Ordering::Relaxed),
            out_of_sync,
            offline,
        }
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    /// The committed offsets of `group` (held here when this broker coordinates it), each with
    /// its partition's end offset and lag: what `/v1/groups/{id}`, the console and the
    /// `kafka_consumergroup_lag` metric show.
    pub fn group_lag(&self, group: &str) -> Vec<GroupLag> {
        let image = self.image();
        self.groups
            .committed_all(group)
            .into_iter()
            .map(|(topic, partition, committed)| {
                let end = image
                    .topic(&topic)
                    .zip(u32::try_from(partition).ok())
                    .and_then(|(t, p)| {
                        self.logs
                            .get(&strom_storage::TopicPartition::new(t.topic_id, p))
                    })
                    .map(|l| l.high_watermark())
                    .or_else(|| self.remote_ends.get(&topic, partition));
                GroupLag {
                    lag: end.map(|e| (e - committed.offset).max(0)),
                    topic,
                    partition,
                    committed,
                    end,
                }
            })
            .collect()
    }

    /// Brings partition logs, leadership and follower fetchers in step with `image`.
    pub fn sync_partitions(&self, image: &MetadataImage) {
        let (shrinks, expands) = self.logs.sync(image);
        self.metrics.isr_shrinks.inc_by(shrinks);
        self.metrics.isr_expands.inc_by(expands);
        self.replicas.sync(image, &self.logs, &self.controller);
        // Group coordination follows leadership of the `__consumer_offsets` partitions.
        if let Some(t) = image.topic(group::OFFSETS_TOPIC) {
            for p in &t.partitions {
                if p.leader != self.node_id {
                    self.groups.unload(&self.groups_loaded, p.partition as i32);
                }
            }
        }
        if let Some(t) = image.topic(txn::TRANSACTION_TOPIC) {
            for p in &t.partitions {
                if p.leader != self.node_id {
                    self.txns.unload(p.partition as i32);
                }
            }
        }
    }

    /// Opens storage, joins the quorum (in `--dev` mode, one embedded in this process), binds
    /// both listeners and serves until [`RunningBroker::shutdown`].
    pub async fn start(config: BrokerConfig) -> anyhow::Result<RunningBroker> {
        config.validate()?;
        if config.unsafe_ack_before_replication {
            warn!("UNSAFE: acks=all is answered before the in-sync replicas have the batch (testing only)");
        }
        std::fs::create_dir_all(&config.data_dir)?;
        let replication = config
            .advertised_replication
            .as_deref()
            .map(|r| config::host_port("--advertised-replication", r))
            .transpose()?;
        // A start-up error names the setting and the address, as an operator reads it.
        let bind = |flag: String, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("{flag} {addr}: {}", bind_reason(&e)))
        };
        let tls = match (&config.ssl_certificate, &config.ssl_key) {
            (Some(certificate), Some(key)) => Some(Arc::new(
                security::tls::TlsContext::load(security::tls::TlsFiles {
                    certificate: certificate.clone(),
                    key: key.clone(),
                    ca: config.ssl_ca.clone(),
                    client_auth: config.ssl_client_auth,
                })
                .map_err(|e| anyhow::anyhow!("--ssl-certificate: {e}"))?,
            )),
            _ => None,
        };
        let quorum_tls = if config.quorum_tls {
            let files = metadata_quorum::quorum::tls::TlsFiles {
                certificate: config.ssl_certificate.clone().unwrap_or_default(),
                key: config.ssl_key.clone().unwrap_or_default(),
                ca: config.ssl_ca.clone().unwrap_or_default(),
            };
            Some(
                metadata_quorum::quorum::tls::QuorumTls::load(&files)
                    .map_err(|e| anyhow::anyhow!("--quorum-tls: {e}"))?,
            )
        } else {
            None
        };
        let specs = config.listeners()?;
        let inter_broker = config.inter_broker_listener(&specs)?.name.clone();
        let mut listeners = Vec::new();
        for mut spec in specs {
            let flag = if config.listeners.is_some() {
                format!("--listeners {}", spec.name)
            } else {
                "--kafka-listen".to_string()
            };
            let socket = bind(flag, spec.bind).await?;
            let addr = socket.local_addr()?;
            // With port 0 the advertised port is the one the OS gave.
            if spec.advertised.1 == 0 {
                spec.advertised.1 = addr.port();
            }
            spec.bind = addr;
            listeners.push(server::Listener {
                tls: spec.protocol.tls().then(|| tls.clone()).flatten(),
                spec,
                socket,
            });
        }
        let http = bind("--http-listen".into(), config.http_listen).await?;
        let http_addr = http.local_addr()?;
        let listener_addrs: Vec<(String, SocketAddr)> = listeners
            .iter()
            .map(|l| (l.spec.name.clone(), l.spec.bind))
            .collect();
        let kafka_addr = listener_addrs[0].1;
        let (host, port) = listeners
            .iter()
            .find(|l| l.spec.name == inter_broker)
            .map(|l| l.spec.advertised.clone())
            .expect("the inter-broker listener is one of the listeners");
        let listener_endpoints: Vec<Endpoint> = listeners
            .iter()
            .map(|l| Endpoint {
                name: l.spec.name.clone(),
                host: l.spec.advertised.0.clone(),
                port: l.spec.advertised.1,
            })
            .collect();

        let store = RocksLogStore::open(
            &config.data_dir.join("logs"),
            &RocksOptions {
                block_cache_bytes: config.block_cache_mb << 20,
                total_write_buffer_bytes: config.write_buffer_mb.max(8) << 20,
                write_buffer_bytes: (config.write_buffer_mb.max(8) << 20).min(64 << 20),
                direct_io: config.storage_direct_io,
                partition_families: config.storage_partition_families,
                wal_dir: config.storage_wal_dir.clone(),
                ..RocksOptions::default()
            },
        )?;
        let logs = log::LogManager::open(config.node_id, Arc::new(store))?;

        let (embedded, quorum) = if config.dev {
            let q = QuorumNode::start(QuorumConfig {
                node_id: 1,
                listen: config.quorum_listen,
                voters: BTreeMap::from([(1, config.quorum_listen.to_string())]),
                data_dir: config.data_dir.join("quorum"),
                broker_session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
                topic_defaults: TopicDefaults {
                    num_partitions: config.num_partitions,
                    replication_factor: config.default_replication_factor,
                },
                // One voter: elections are instant; these only pace its own timers.
                heartbeat_interval: Duration::from_millis(50),
                election_timeout: (Duration::from_millis(300), Duration::from_millis(500)),
                tls: quorum_tls.clone(),
                leader_balance: Default::default(),
                replica_balance: Default::default(),
                release_version: config.release_version,
            })
            .await
            .map_err(|e| match e {
                metadata_quorum::quorum::StartError::Bind { addr, source } => {
                    anyhow::anyhow!("--quorum-listen {addr}: {}", bind_reason(&source))
                }
                other => other.into(),
            })?;
            let addr = q.addr.to_string();
            (Some(q), vec![addr])
        } else {
            (None, config.quorum.clone())
        };
        let controller = RemoteController::connect(
            quorum,
            BrokerRegistration {
                broker_id: config.node_id,
                endpoints: vec![
                    Endpoint {
                        name: "kafka".into(),
                        host: host.clone(),
                        port,
                    },
                    Endpoint {
                        name: "http".into(),
                        host: http_addr.ip().to_string(),
                        port: http_addr.port(),
                    },
                ]
                .into_iter()
                .chain(replication.map(|(host, port)| Endpoint {
                    name: "replication".into(),
                    host,
                    port,
                }))
                .chain(listener_endpoints)
                .collect(),
                rack: config.rack(),
                heartbeat_interval: Duration::from_millis(config.broker_heartbeat_interval_ms),
            },
            Duration::from_secs(60),
            quorum_tls.map(|t| t.client),
        )
        .await?;
        add_scram_users(&config, &controller).await?;
        let principal_rules =
            security::principal::MappingRules::parse(&config.ssl_principal_mapping_rules)
                .map_err(|e| anyhow::anyhow!("--ssl-principal-mapping-rules: {e}"))?;
        let sasl_mechanisms = config.sasl_mechanisms()?;
        let oauth = if sasl_mechanisms.contains(&security::sasl::SaslMechanism::OAuthBearer) {
            let validator = security::oauth::JwksValidator::load(config.oauth()?)
                .map_err(|e| anyhow::anyhow!("--sasl-oauthbearer-jwks-endpoint-url: {e}"))?;
            Some(Arc::new(validator))
        } else {
            None
        };
        let authorizer = security::authorizer::Authorizer::new(
            config.authorizer,
            &config.super_users,
            config.allow_everyone_if_no_acl_found,
        );
        let config_initial_delay = config.group_initial_rebalance_delay_ms;
        let fetch_session_slots = config.max_incremental_fetch_session_cache_slots;
        let share_config = share::ShareConfig {
            lock_duration: Duration::from_millis(config.group_share_record_lock_duration_ms),
            delivery_count_limit: config.group_share_delivery_count_limit,
            max_in_flight: config.group_share_partition_max_record_locks,
            session_timeout: Duration::from_millis(config.group_share_session_timeout_ms),
            heartbeat_interval: Duration::from_millis(config.group_share_heartbeat_interval_ms),
            auto_offset_reset: config.share_auto_offset_reset,
            read_committed: false,
        };
        let consumer_groups = group::ConsumerGroupConfig {
            session_timeout: Duration::from_millis(config.group_consumer_session_timeout_ms),
            heartbeat_interval: Duration::from_millis(config.group_consumer_heartbeat_interval_ms),
            migration: config.group_consumer_migration_policy,
        };
        let config_quota_window = (
            config.quota_window_num,
            config.quota_window_size_seconds * 1000,
        );
        let inter_broker_security = config
            .inter_broker_security()
            .map_err(|e| anyhow::anyhow!("--inter-broker-listener-name: {e}"))?;
        let replicas = replica::ReplicaManager::new(replica::FetcherConfig {
            node_id: config.node_id,
            max_wait: Duration::from_millis(config.replica_fetch_wait_max_ms),
            security: inter_broker_security.clone(),
            throttle: Default::default(),
        });
        let metrics = metrics::Metrics::new(config.metrics_enabled);
        let group_configs = group::GroupConfigs::new(controller.subscribe());
        let broker = Arc::new(Broker {
            node_id: config.node_id,
            config,
            controller,
            logs,
            metrics,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            groups: group::GroupCoordinator::new(Duration::from_millis(config_initial_delay))
                .with_consumer_config(consumer_groups)
                .with_group_configs(group_configs.clone()),
            groups_loaded: group::Loaded::default(),
            share: share::ShareState::new(share_config).with_group_configs(group_configs),
            telemetry: Default::default(),
            fetch_sessions: handlers::fetch_session::FetchSessions::new(fetch_session_slots),
            replicas,
            txns: txn::TxnCoordinator::default(),
            principal_rules,
            sasl_mechanisms,
            oauth,
            inter_broker_security,
            authorizer,
            quotas: quota::QuotaManager::new(quota::QuotaWindow {
                samples: config_quota_window.0,
                sample_ms: config_quota_window.1,
            }),
            remote_ends: lag::RemoteEnds::default(),
            console_logins: console::Logins::default(),
            replicas_caught_up: std::sync::atomic::AtomicBool::new(false),
            leader_throttle: Default::default(),
            shut_down: Default::default(),
        });
        broker.sync_partitions(&broker.image());

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(follow_metadata(broker.clone(), shutdown_rx.clone()));
        tasks.spawn(clean_logs(broker.clone(), shutdown_rx.clone()));
        if broker.config.memtable_idle_flush_ms > 0 {
            tasks.spawn(flush_idle_memtables(broker.clone(), shutdown_rx.clone()));
        }
        tasks.spawn(tick_groups(broker.clone(), shutdown_rx.clone()));
        tasks.spawn(persist_share_states(broker.clone(), shutdown_rx.clone()));
        tasks.spawn(log_dir::report_loop(broker.clone(), shutdown_rx.clone()));
        tasks.spawn(maintain_isr(broker.clone(), shutdown_rx.clone()));
        tasks.spawn(lag::refresh_loop(broker.clone(), shutdown_rx.clone()));
        tasks.spawn(txn::ops::tick(broker.clone(), shutdown_rx.clone()));
        if let Some(tls) = &tls {
            tasks.spawn(tls.clone().watch(
                Duration::from_millis(broker.config.ssl_reload_interval_ms),
                shutdown_rx.clone(),
            ));
        }
        for l in listeners {
            info!(
                listener = %l.spec.name,
                protocol = l.spec.protocol.name(),
                bind = %l.spec.bind,
                advertised = %format!("{}:{}", l.spec.advertised.0, l.spec.advertised.1),
                "kafka listener"
            );
            tasks.spawn(server::serve(broker.clone(), l, shutdown_rx.clone()));
        }
        let http_tls = if broker.config.http_tls {
            tls.clone()
        } else {
            None
        };
        tasks.spawn(http::serve(broker.clone(), http, http_tls, shutdown_rx));
        info!(
            node_id = broker.node_id,
            kafka = %kafka_addr,
            inter_broker = %format!("{inter_broker} {host}:{port}"),
            http = %http_addr,
            cluster_id = %broker.image().cluster_id,
            "broker started"
        );
        Ok(RunningBroker {
            broker,
            kafka_addr,
            listener_addrs,
            http_addr,
            embedded,
            shutdown: shutdown_tx,
            tasks,
        })
    }
}

/// Creates the `--scram-user` credentials a user does not have yet (an existing credential is
/// kept: a restart does not reset a password changed since).
async fn add_scram_users(
    config: &BrokerConfig,
    controller: &RemoteController,
) -> anyhow::Result<()> {
    use metadata_quorum::controller::{ScramChange, ScramSecret};
    use strom_client::auth::scram::{Credential, MIN_ITERATIONS};
    let image = controller.image();
    let mut changes = Vec::new();
    for u in &config.scram_users {
        let u = config::parse_scram_user(u)?;
        for m in u.mechanisms {
            if image.scram.contains_key(&(u.user.clone(), m.code())) {
                continue;
            }
            let c = Credential::new(m, &u.password, MIN_ITERATIONS);
            changes.push(ScramChange {
                user: u.user.clone(),
                mechanism: m.code(),
                credential: Some(ScramSecret {
                    salt: c.salt,
                    iterations: c.iterations,
                    stored_key: c.stored_key,
                    server_key: c.server_key,
                }),
            });
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    for (user, result) in controller.alter_scram_credentials(changes).await? {
        result.map_err(|e| anyhow::anyhow!("--scram-user {user}: {e}"))?;
        info!(user = %user, "SCRAM user created");
    }
    Ok(())
}

/// Why a listener could not bind, in an operator's words.
pub fn bind_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "address in use".into(),
        std::io::ErrorKind::AddrNotAvailable => "no such local address".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// A started broker: its addresses and the means to stop it.
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    /// The first listener's bound address.
    pub kafka_addr: SocketAddr,
    /// Every listener's name and bound address.
    pub listener_addrs: Vec<(String, SocketAddr)>,
    pub http_addr: SocketAddr,
    embedded: Option<RunningQuorum>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningBroker {
    /// Stops accepting, lets open requests finish, and waits for every task. First, unless
    /// disabled or no other broker is alive to take over, a controlled shutdown hands this
    /// broker's leaderships over.
    pub async fn shutdown(mut self) {
        self.controlled_shutdown().await;
        let _ = self.shutdown.send(true);
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                warn!(error = %e, "a broker task ended abnormally");
            }
        }
        self.broker.replicas.stop();
        for log in self.broker.logs.all() {
            if let Err(e) = log.checkpoint_high_watermark() {
                warn!(tp = %log.topic_partition(), error = %e, "high watermark checkpoint failed");
            }
        }
        // Nothing left only in the WAL: the next start replays nothing, and a WAL kept in
        // memory (--storage-wal-dir) may go with the host or the pod.
        if let Err(e) = self.broker.logs.close() {
            warn!(error = %e, "flushing the log store at shutdown failed");
        }
        self.broker.controller.stop();
        if let Some(q) = self.embedded.take() {
            q.shutdown().await;
        }
        info!("broker stopped");
    }
}

impl RunningBroker {
    async fn controlled_shutdown(&self) {
        self.broker.controlled_shutdown().await;
    }
}

impl Broker {
    /// Controlled shutdown (controlled.shutdown.enable): stop heartbeating and have the
    /// controller hand every leadership to another in-sync replica, waiting until this
    /// broker's image shows it. Once per process: SIGTERM, or before it a Kubernetes preStop
    /// hook (`POST /v1/admin/controlled-shutdown`), whichever comes first; the broker then
    /// serves nothing it leads and is fenced, and only stopping it remains. A second caller
    /// (SIGTERM while the hook's request runs) waits for the first; one that failed or was
    /// cut short runs again.
    pub async fn controlled_shutdown(&self) {
        let b = self;
        if !b.config.controlled_shutdown_enable {
            return;
        }
        let mut done = b.shut_down.lock().await;
        if *done {
            return;
        }
        let image = b.image();
        if !image
            .live_brokers()
            .any(|other| other.broker_id != b.node_id)
        {
            *done = true;
            return;
        }
        let before = image
            .topics()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.leader == b.node_id)
            .count();
        let started = std::time::Instant::now();
        let timeout = Duration::from_millis(b.config.controlled_shutdown_timeout_ms);
        match b.controller.controlled_shutdown(timeout).await {
            Ok(outcome) if outcome.applied => {
                *done = true;
                info!(
                    led_before = before,
                    offline = outcome.offline,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "controlled shutdown: leaderships handed over"
                )
            }
            Ok(outcome) => warn!(
                led_before = before,
                offline = outcome.offline,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "controlled shutdown: the controller moved the leaderships, but this broker's image did not show it in time"
            ),
            Err(e) => warn!(
                error = %e,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "controlled shutdown failed; stopping anyway (the controller fences this broker when its session lapses)"
            ),
        }
    }
}

/// Leader duties of replication: sends due ISR changes to the controller (AlterPartition)
/// and checkpoints moved high watermarks once a second.
async fn maintain_isr(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let lag = broker.config.replica_lag_time_max_ms;
    let period = Duration::from_millis((lag / 4).clamp(10, 250));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_checkpoint = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = log::now_ms();
        let mut changes = Vec::new();
        let mut logs = Vec::new();
        let image = broker.image();
        // A fenced broker is never proposed back into an ISR (the controller refuses it).
        let eligible = |b: i32| image.brokers.get(&b).is_some_and(|x| !x.fenced);
        for l in broker.logs.all() {
            if let Some(c) = l.isr_change_due(now, lag as i64, eligible) {
                info!(
                    tp = %l.topic_partition(),
                    new_isr = ?c.new_isr,
                    partition_epoch = c.partition_epoch,
                    "proposing ISR change"
                );
                changes.push(c);
                logs.push(l);
            }
        }
        if !changes.is_empty() {
            match broker.controller.alter_partition(changes).await {
                Ok((results, _)) => {
                    for (l, r) in logs.iter().zip(results) {
                        if let Err(e) = r {
                            warn!(tp = %l.topic_partition(), error = %e, "ISR change refused");
                            l.isr_change_failed();
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "ISR change not sent");
                    for l in &logs {
                        l.isr_change_failed();
                    }
                }
            }
        }
        if last_checkpoint.elapsed() >= Duration::from_secs(1) {
            last_checkpoint = tokio::time::Instant::now();
            let b = broker.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for l in b.logs.all() {
                    if let Err(e) = l.checkpoint_high_watermark() {
                        warn!(tp = %l.topic_partition(), error = %e, "high watermark checkpoint failed");
                    }
                }
            })
            .await;
        }
    }
}

/// Every half second: the share-partitions whose state changed, made durable at their
/// groups' coordinators.
async fn persist_share_states(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                handlers::persist_states(&broker, None).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Completes group joins at their deadlines, expires silent members, and writes the group
/// records that changes left pending.
async fn tick_groups(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                handlers::write_group_records(&broker, broker.groups.tick_writes());
                broker
                    .share
                    .groups
                    .expire(std::time::Instant::now(), |g| broker.share.config_of(g));
                // Share-partitions live with leadership at one epoch: one led elsewhere, or
                // led here again at a later epoch, is set up again from its durable state.
                let image = broker.image();
                let node = broker.node_id;
                broker.share.retain_partitions(|t, p, epoch| {
                    image
                        .topic_by_id(t)
                        .and_then(|x| x.partitions.get(p.max(0) as usize))
                        .is_some_and(|x| x.leader == node && x.leader_epoch == epoch)
                });
                broker.share.groups.forget(|g| {
                    image
                        .topic(group::OFFSETS_TOPIC)
                        .and_then(|t| t.partitions.get(group::offsets_partition(g) as usize))
                        .is_some_and(|x| x.leader != node)
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Every `--memtable-idle-flush-ms`: the memtables that took no write since the last look are
/// written out, so what idle partitions held goes back.
async fn flush_idle_memtables(broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(broker.config.memtable_idle_flush_ms);
    every_blocking(broker, period, shutdown, "idle memtable flush", |b| {
        let n = b.logs.flush_idle();
        if n > 0 {
            tracing::debug!(memtables = n, "idle memtables flushed");
        }
    })
    .await
}

/// Every `log.retention.check.interval.ms`: retention and compaction of every partition log,
/// by its topic's effective configs (RocksDB I/O and batch decoding).
async fn clean_logs(broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(broker.config.log_retention_check_interval_ms);
    every_blocking(broker, period, shutdown, "log cleaner", clean_once).await
}

/// Runs `work` every `period` on a blocking thread (one run at a time; a late run delays the
/// next) until the broker shuts down.
async fn every_blocking(
    broker: Arc<Broker>,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    work: fn(&Broker),
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let b = broker.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || work(&b)).await {
            warn!(task = what, error = %e, "periodic task failed");
        }
    }
}

fn clean_once(broker: &Broker) {
    use metadata_quorum::configs as c;
    let image = broker.image();
    let now_ms = log::now_ms();
    for log in broker.logs.all() {
        let tp = log.topic_partition();
        let Some(topic) = image.topic_by_id(&tp.topic_id) else {
            continue;
        };
        let t = Some(topic.as_ref());
        let cfg = |name| topic_config::int(&broker.config, t, name).unwrap_or(-1);
        let policy = topic_config::value(&broker.config, t, c::CLEANUP_POLICY).unwrap_or_default();
        let (delete, compact) = c::cleanup_policy(&policy);
        if compact {
            if let Err(e) = log.compact(
                now_ms,
                cfg(c::MIN_COMPACTION_LAG_MS).max(0),
                cfg(c::DELETE_RETENTION_MS).max(0),
            ) {
                warn!(%tp, error = %e, "compaction failed");
            }
        }
        if delete {
            if let Err(e) =
                log.apply_retention(now_ms, cfg(c::RETENTION_MS), cfg(c::RETENTION_BYTES))
            {
                warn!(%tp, error = %e, "retention failed");
            }
        }
    }
}

/// Keeps partition logs in step with every new metadata image.
async fn follow_metadata(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut images = broker.controller.subscribe();
    // An image published between the first sync (in `start`) and this subscription counts
    // as seen already: sync once more so it is not left until the next one.
    images.mark_changed();
    loop {
        tokio::select! {
            changed = images.changed() => {
                if changed.is_err() {
                    return;
                }
                let image = images.borrow_and_update().clone();
                broker.sync_partitions(&image);
            }
            _ = shutdown.changed() => return,
        }
    }
}
