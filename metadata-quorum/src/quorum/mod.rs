//! One controller of the metadata quorum.
//!
//! ```text
//!            +------------------- QuorumNode -------------------+
//!  HTTP ---> | api: /raft/* (openraft RPC)                      |
//!            |      /controller (broker RPC, forwarded to leader)|
//!            |      /controller/records (metadata long-poll)     |
//!            |      /v1/* (JSON), /metrics                       |
//!            | raft: LogStore (RocksDB) + StateMachine (image)   |
//!            | liveness: heartbeats -> fence/unfence (leader)    |
//!            +---------------------------------------------------+
//! ```

pub mod api;
pub mod client;
mod log_store;
mod network;
pub mod rpc;
mod state_machine;
pub mod tls;
pub mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::controller::{self, ControllerResult as Decision, TopicDefaults};
use crate::{MetadataError, MetadataImage};
use rpc::{ControllerError, ControllerRequest, ControllerResponse, LogDirReport};
pub use state_machine::MetadataState;
use types::{NodeId, Proposal, Raft};

/// Configuration of one controller.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: NodeId,
    /// Address the HTTP server binds (Raft RPC, controller RPC, JSON API).
    pub listen: SocketAddr,
    /// Every voter: id -> host:port (this node included).
    pub voters: BTreeMap<NodeId, String>,
    pub data_dir: PathBuf,
    /// A broker that has not heartbeat for this long is fenced.
    pub broker_session_timeout: Duration,
    pub topic_defaults: TopicDefaults,
    pub heartbeat_interval: Duration,
    pub election_timeout: (Duration, Duration),
    /// Mutual TLS on the quorum's HTTP (served and used to reach the other voters).
    pub tls: Option<tls::QuorumTls>,
    pub leader_balance: LeaderBalance,
    /// Continuous replica balancing (off by default).
    pub replica_balance: ReplicaBalance,
    /// The metadata.version a new cluster starts at (`kafka-storage.sh format
    /// --release-version`); None: the newest this build supports.
    pub release_version: Option<i16>,
}

/// Automatic preferred leader balancing by the active controller.
#[derive(Debug, Clone, Copy)]
pub struct LeaderBalance {
    /// `auto.leader.rebalance.enable`.
    pub enabled: bool,
    /// `leader.imbalance.per.broker.percentage`: a broker whose preferred partitions are led
    /// elsewhere more than this share has them elected back.
    pub per_broker_percentage: u32,
    /// `leader.imbalance.check.interval.seconds`.
    pub check_interval: Duration,
}

impl Default for LeaderBalance {
    /// Kafka's defaults: on, 10 %, every 300 s.
    fn default() -> Self {
        Self {
            enabled: true,
            per_broker_percentage: 10,
            check_interval: Duration::from_secs(300),
        }
    }
}

/// Continuous replica balancing ([`crate::balancer`]): moves replicas through reassignments
/// off brokers whose disks pass a threshold, and when the live brokers' replica counts
/// differ by more than one (a broker was added).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaBalance {
    pub enabled: bool,
    /// How often the active controller looks.
    pub check_interval: Duration,
    /// The most replicas one round moves.
    pub max_moves: usize,
    /// The share of a broker's reported capacity its partitions may fill (0 leaves disks
    /// out of the balancing).
    pub disk_threshold_percent: u64,
}

impl Default for ReplicaBalance {
    /// Off; when on, every 30 s, up to 10 moves a round, disks kept under 80 % (Cruise
    /// Control's `disk.capacity.threshold`).
    fn default() -> Self {
        Self {
            enabled: false,
            check_interval: Duration::from_secs(30),
            max_moves: 10,
            disk_threshold_percent: 80,
        }
    }
}

impl QuorumConfig {
    /// Parses `1@host:port,2@host:port,...`.
    pub fn parse_voters(s: &str) -> Result<BTreeMap<NodeId, String>, String> {
        let mut out = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part
                .split_once('@')
                .ok_or_else(|| format!("'{part}' is not id@host:port"))?;
            let id: NodeId = id.parse().map_err(|_| format!("'{id}' is not a node id"))?;
            if !addr.contains(':') {
                return Err(format!("'{addr}' is not host:port"));
            }
            if out.insert(id, addr.to_string()).is_some() {
                return Err(format!("voter {id} is listed twice"));
            }
        }
        if out.is_empty() {
            return Err("no voters".into());
        }
        Ok(out)
    }
}

/// Producer ids handed to a broker at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("raft log store: {0}")]
    LogStore(#[from] rocksdb::Error),
    #[error("state machine: {0}")]
    StateMachine(#[from] types::StorageError),
    #[error("raft config: {0}")]
    Config(#[from] openraft::ConfigError),
    #[error("raft: {0}")]
    Raft(#[from] openraft::error::Fatal<NodeId>),
    #[error("http client: {0}")]
    Http(String),
}

/// Heartbeat bookkeeping of the active controller. Not replicated: a new leader gives every
/// broker a fresh session.
#[derive(Default)]
struct Liveness {
    last_seen: HashMap<i32, Instant>,
    leader_since: Option<Instant>,
    /// Incarnations in a controlled shutdown: a heartbeat that was already on its way when
    /// the broker asked to stop does not unfence it. A new registration clears it.
    shutting_down: HashMap<i32, Uuid>,
    /// When the leader balance was last checked.
    balance_checked: Option<Instant>,
    replicas_balanced: Option<Instant>,
    /// Each broker's last log directory report, with the incarnation that sent it and when
    /// it came (this term only: a new active controller starts without any).
    log_dirs: HashMap<i32, (Uuid, Instant, LogDirReport)>,
}

pub struct QuorumNode {
    pub id: NodeId,
    pub raft: Raft,
    pub state: Arc<MetadataState>,
    config: QuorumConfig,
    http: tls::QuorumHttp,
    write_lock: tokio::sync::Mutex<()>,
    liveness: Mutex<Liveness>,
}

/// What `/readyz` reports for a controller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub node_id: NodeId,
    /// The Raft core has not stopped on a fatal error.
    pub running: bool,
    /// This node is a voter of the current membership.
    pub voter: bool,
    /// The active controller as this node sees it.
    pub leader: Option<NodeId>,
    /// There is an active controller: another node, or this one with a majority behind it.
    pub leader_known: bool,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// As the active controller: how long ago a majority last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    /// Records applied to this node's metadata image.
    pub metadata_offset: u64,
}

/// A running controller: its node, bound address and the means to stop it.
pub struct RunningQuorum {
    pub node: Arc<QuorumNode>,
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningQuorum {
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.node.raft.shutdown().await;
        info!(node_id = self.node.id, "controller stopped");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl QuorumNode {
    /// Opens storage, starts openraft, initializes the cluster on first start, and serves HTTP.
    pub async fn start(config: QuorumConfig) -> Result<RunningQuorum, StartError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr()?;
        let log_store = log_store::LogStore::open(&config.data_dir.join("raft-log"))?;
        let (sm, state) = state_machine::StateMachine::open(&config.data_dir.join("state"))?;
        let raft_config = openraft::Config {
            cluster_name: "strom".into(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: config.election_timeout.0.as_millis() as u64,
            election_timeout_max: config.election_timeout.1.as_millis() as u64,
            install_snapshot_timeout: 5_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5_000),
            max_in_snapshot_log_to_keep: 1_000,
            ..Default::default()
        };
        let raft_config = Arc::new(raft_config.validate()?);
        let http = tls::QuorumHttp::new(
            config.tls.as_ref().map(|t| &t.client),
            Some(Duration::from_secs(30)),
        )
        .map_err(StartError::Http)?;
        let raft = Raft::new(
            config.node_id,
            raft_config,
            network::HttpNetwork::new(http.clone()),
            log_store,
            sm,
        )
        .await?;
        if !config.voters.contains_key(&config.node_id) {
            // Not among the first voters: a controller joining a running quorum (KIP-853),
            // which stays a bystander until the active controller adds it.
            info!(
                node_id = config.node_id,
                "not in --voters: waiting to be added (strom metadata-quorum add-controller)"
            );
        } else if !raft.is_initialized().await? {
            let members: BTreeMap<NodeId, BasicNode> = config
                .voters
                .iter()
                .map(|(id, a)| (*id, BasicNode { addr: a.clone() }))
                .collect();
            // Every voter initializes with the same membership; openraft accepts that.
            if let Err(e) = raft.initialize(members).await {
                info!(error = %e, "membership already initialized");
            }
        }
        let node = Arc::new(QuorumNode {
            id: config.node_id,
            raft,
            state,
            config,
            http,
            write_lock: tokio::sync::Mutex::new(()),
            liveness: Mutex::new(Liveness::default()),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(api::serve(
                node.clone(),
                listener,
                node.config.tls.as_ref().map(|t| t.server.clone()),
                shutdown_rx.clone(),
            )),
            tokio::spawn(node.clone().leader_duties(shutdown_rx)),
        ];
        info!(node_id = node.id, %addr, voters = ?node.config.voters, "controller started");
        Ok(RunningQuorum {
            node,
            addr,
            shutdown,
            tasks,
        })
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.state.image()
    }

    /// The active controller as this node sees it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        leads(&self.raft.metrics().borrow(), self.id)
    }

    fn leader_addr(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let node = m.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node.addr))
    }

    /// Handles a controller request here if this node leads, or forwards it to the leader,
    /// in a `controller.request` span (exported with `--otlp-endpoint`).
    pub async fn handle(
        &self,
        req: ControllerRequest,
        forwarded: bool,
    ) -> Result<ControllerResponse, ControllerError> {
        use tracing::Instrument;
        let span = tracing::span!(
            target: strom_telemetry::REQUEST_TARGET,
            tracing::Level::TRACE,
            "controller.request",
            otel.name = req.kind(),
            controller.request = req.kind(),
            controller.node_id = self.id,
            controller.leader = self.is_leader(),
            controller.forwarded = forwarded,
        );
        self.handle_here(req, forwarded).instrument(span).await
    }

    async fn handle_here(
        &self,
        req: ControllerRequest,
        forwarded: bool,
    ) -> Result<ControllerResponse, ControllerError> {
        if !self.is_leader() {
            return match (self.leader_addr(), forwarded) {
                (Some((leader, addr)), false) if leader != self.id => {
                    client::call_controller(&self.http, &addr, &req, true).await
                }
                (leader, _) => Err(ControllerError::NotController {
                    leader: leader.map(|(id, _)| id),
                }),
            };
        }
        match req {
            ControllerRequest::RegisterBroker {
                broker_id,
                incarnation,
                endpoints,
                rack,
            } => {
                // A fresh session starts now, before the fencing check can run again.
                {
                    let mut l = self.liveness.lock();
                    l.last_seen.insert(broker_id, Instant::now());
                    l.shutting_down.remove(&broker_id);
                    // The new incarnation reports its own log dir.
                    l.log_dirs.remove(&broker_id);
                }
                let (registered, offset) = self
                    .propose(|image| {
                        // Live: heard from within a session (not merely unfenced in the image,
                        // which after a controller change says nothing).
                        let live = |b: i32| {
                            let l = self.liveness.lock();
                            l.last_seen
                                .get(&b)
                                .is_some_and(|t| t.elapsed() <= self.config.broker_session_timeout)
                        };
                        controller::register_broker(
                            image,
                            broker_id,
                            incarnation,
                            endpoints,
                            rack,
                            &live,
                        )
                    })
                    .await?;
                if let Err(e) = registered {
                    info!(broker_id, %incarnation, error = %e, "broker registration refused");
                    return Ok(ControllerResponse::Changed {
                        result: Err(e),
                        metadata_offset: offset,
                    });
                }
                info!(broker_id, %incarnation, "broker registered");
                Ok(ControllerResponse::Registered {
                    metadata_offset: offset,
                })
            }
            ControllerRequest::AlterBrokerConfigs {
                broker,
                ops,
                replace,
                validate_only,
            } => {
                let (result, metadata_offset) = self
                    .propose(|image| {
                        controller::alter_broker_configs(image, broker, &ops, replace)
                            .validate_only(validate_only)
                    })
                    .await?;
                Ok(ControllerResponse::Changed {
                    result,
                    metadata_offset,
                })
            }
            ControllerRequest::AlterGroupConfigs {
                group,
                ops,
                replace,
                validate_only,
            } => {
                let (result, metadata_offset) = self
                    .propose(|image| {
                        controller::alter_group_configs(image, &group, &ops, replace)
                            .validate_only(validate_only)
                    })
                    .await?;
                Ok(ControllerResponse::Changed {
                    result,
                    metadata_offset,
                })
            }
            ControllerRequest::UpdateFeatures {
                updates,
                validate_only,
            } => {
                let (result, metadata_offset) = self
                    .propose(|image| {
                        controller::update_features(image, &updates).validate_only(validate_only)
                    })
                    .await?;
                Ok(ControllerResponse::Changed {
                    result,
                    metadata_offset,
                })
            }
            ControllerRequest::AddVoter { id, addr } => self.add_voter(id, addr).await,
            ControllerRequest::RemoveVoter { id } => self.remove_voter(id).await,
            ControllerRequest::ReportLogDir {
                broker_id,
                incarnation,
                report,
            } => {
                let image = self.image();
                let known = image
                    .brokers
                    .get(&broker_id)
                    .is_some_and(|b| b.incarnation == incarnation);
                let result = if known {
                    debug!(
                        broker_id,
                        used_bytes = report.used_bytes(),
                        capacity_bytes = report.capacity_bytes,
                        partitions = report.partitions.len(),
                        "log dir report"
                    );
                    let mut l = self.liveness.lock();
                    let was_zero = l
                        .log_dirs
                        .get(&broker_id)
                        .is_some_and(|(_, _, r)| r.capacity_bytes == 0);
                    if report.capacity_bytes == 0 && !was_zero {
                        warn!(
                            broker_id,
                            "broker reports no log dir capacity (its file system size could not be read): set --log-dir-capacity-bytes on it; disks are left out of replica balancing until then"
                        );
                    }
                    l.log_dirs
                        .insert(broker_id, (incarnation, Instant::now(), report));
                    Ok(())
                } else {
                    Err(MetadataError::BrokerIdNotRegistered {
                        reason: format!("broker {broker_id} is not registered under {incarnation}"),
                    })
                };
                Ok(ControllerResponse::Changed {
                    result,
                    metadata_offset: image.offset,
                })
            }
            ControllerRequest::UnregisterBroker { broker_id } => {
                let (result, metadata_offset) = self
                    .propose(|image| controller::unregister_broker(image, broker_id))
                    .await?;
                match &result {
                    Ok(()) => {
                        let mut l = self.liveness.lock();
                        l.last_seen.remove(&broker_id);
                        l.log_dirs.remove(&broker_id);
                        info!(broker_id, "broker unregistered");
                    }
                    Err(e) => info!(broker_id, error = %e, "broker unregistration refused"),
                }
                Ok(ControllerResponse::Changed {
                    result,
                    metadata_offset,
                })
            }
            ControllerRequest::Heartbeat {
                broker_id,
                incarnation,
            } => self.heartbeat(broker_id, incarnation).await,
            ControllerRequest::ControlledShutdown {
                broker_id,
                incarnation,
            } => self.controlled_shutdown(broker_id, incarnation).await,
            ControllerRequest::AlterReassignments { reassignments } => {
                let (results, metadata_offset) = self
                    .propose(|image| {
                        controller::alter_partition_reassignments(image, &reassignments)
                    })
                    .await?;
                for ((name, index), target) in &reassignments {
                    match results.iter().find(|(k, _)| k.0 == *name && k.1 == *index) {
                        Some((_, Ok(()))) => info!(
                            topic = %name,
                            partition = index,
                            target = ?target,
                            "partition reassignment {}",
                            if target.is_some() { "started" } else { "cancelled" }
                        ),
                        Some((_, Err(e))) => {
                            info!(topic = %name, partition = index, error = %e, "partition reassignment refused")
                        }
                        None => {}
                    }
                }
                // The same answer type as ElectLeaders: per partition, in request order.
                Ok(ControllerResponse::Elected {
                    results,
                    metadata_offset,
                })
            }
            ControllerRequest::CreateTopics {
                topics,
                validate_only,
            } => {
                let defaults = self.config.topic_defaults;
                let (results, metadata_offset) = self
                    .propose(|image| {
                        controller::create_topics(image, &topics, defaults, Uuid::new_v4)
                            .validate_only(validate_only)
                    })
                    .await?;
                Ok(ControllerResponse::CreateTopics {
                    results,
                    metadata_offset,
                })
            }
            ControllerRequest::AlterConfigs {
                topic,
                ops,
                replace,
                validate_only,
            } => {
                let (result, metadata_offset) = self
                    .propose(|image| {
                        controller::alter_topic_configs(image, &topic, &ops, replace)
                            .validate_only(validate_only)
                    })
                    .await?;
                Ok(ControllerResponse::Changed {
                    result,
                    metadata_offset,
                })
            }
            ControllerRequest::CreatePartitions {
                topic,
                total,
                assignments,
                validate_only,
            } => {
                let (result, metadata_offset) = self
                    .propose(|image| {
                        controller::create_partitions(image, &topic, total, assignments.as_deref())
                            .validate_only(validate_only)
                    })
                    .await?;
                Ok(ControllerResponse::Changed {
                    result,
                    metadata_offset,
                })
            }
            ControllerRequest::DescribeQuorum => Ok(ControllerResponse::Quorum(self.describe())),
            ControllerRequest::ElectLeaders {
                unclean,
                partitions,
            } => {
                let (results, metadata_offset) = self
                    .propose(|image| {
                        controller::elect_leaders(image, unclean, partitions.as_deref())
                    })
                    .await?;
                for ((topic, partition), r) in &results {
                    if r.is_ok() {
                        info!(%topic, partition, unclean, "leader elected on request");
                    }
                }
                Ok(ControllerResponse::Elected {
                    results,
                    metadata_offset,
                })
            }
            ControllerRequest::AllocateProducerIds { broker_id } => {
                let ((first_id, count), _) = self
                    .propose(|image| {
                        controller::allocate_producer_ids(image, broker_id, PRODUCER_ID_BLOCK)
                    })
                    .await?;
                Ok(ControllerResponse::ProducerIds { first_id, count })
            }
            ControllerRequest::AlterPartition { broker_id, changes } => {
                let (results, metadata_offset) = self
                    .propose(|image| controller::alter_partition(image, broker_id, &changes))
                    .await?;
                for (c, r) in changes.iter().zip(&results) {
                    match r {
                        Ok(l) => info!(
                            broker_id,
                            topic_id = %c.topic_id,
                            partition = c.partition,
                            isr = ?l.isr,
                            partition_epoch = l.partition_epoch,
                            "ISR changed"
                        ),
                        Err(e) => info!(
                            broker_id,
                            topic_id = %c.topic_id,
                            partition = c.partition,
                            error = %e,
                            "ISR change refused"
                        ),
                    }
                }
                Ok(ControllerResponse::AlterPartition {
                    results,
                    metadata_offset,
                })
            }
            ControllerRequest::AlterScramCredentials { changes } => {
                let (results, metadata_offset) = self
                    .propose(|image| controller::alter_scram_credentials(image, &changes))
                    .await?;
                for (user, r) in &results {
                    match r {
                        Ok(()) => info!(user = %user, "SCRAM credentials changed"),
                        Err(e) => info!(user = %user, error = %e, "SCRAM change refused"),
                    }
                }
                Ok(ControllerResponse::PerUser {
                    results,
                    metadata_offset,
                })
            }
            ControllerRequest::CreateAcls { bindings } => {
                let (results, metadata_offset) = self
                    .propose(|image| controller::create_acls(image, &bindings))
                    .await?;
                for (b, r) in bindings.iter().zip(&results) {
                    match r {
                        Ok(()) => info!(acl = ?b, "ACL created"),
                        Err(e) => info!(acl = ?b, error = %e, "ACL refused"),
                    }
                }
                Ok(ControllerResponse::AclsCreated {
                    results,
                    metadata_offset,
                })
            }
            ControllerRequest::DeleteAcls { filters } => {
                let (deleted, metadata_offset) = self
                    .propose(|image| controller::delete_acls(image, &filters))
                    .await?;
                info!(
                    deleted = deleted.iter().map(Vec::len).sum::<usize>(),
                    "ACLs deleted"
                );
                Ok(ControllerResponse::AclsDeleted {
                    deleted,
                    metadata_offset,
                })
            }
            ControllerRequest::AlterClientQuotas {
                alterations,
                validate_only,
            } => {
                let (results, metadata_offset) = self
                    .propose(|_| crate::quota::alter_client_quotas(&alterations, validate_only))
                    .await?;
                for (a, r) in alterations.iter().zip(&results) {
                    match r {
                        Ok(()) if !validate_only => {
                            info!(entity = ?a.entity, ops = ?a.ops, "client quotas changed")
                        }
                        Ok(()) => {}
                        Err(e) => {
                            info!(entity = ?a.entity, error = %e, "client quota change refused")
                        }
                    }
                }
                Ok(ControllerResponse::QuotasAltered {
                    results,
                    metadata_offset,
                })
            }
            ControllerRequest::DeleteTopics { topics } => {
                let (results, metadata_offset) = self
                    .propose(|image| controller::delete_topics(image, &topics))
                    .await?;
                Ok(ControllerResponse::DeleteTopics {
                    results,
                    metadata_offset,
                })
            }
        }
    }

    async fn heartbeat(
        &self,
        broker_id: i32,
        incarnation: Uuid,
    ) -> Result<ControllerResponse, ControllerError> {
        let image = self.image();
        let Some(b) = image
            .brokers
            .get(&broker_id)
            .filter(|b| b.incarnation == incarnation)
        else {
            return Ok(ControllerResponse::Heartbeat {
                unknown: true,
                fenced: true,
                metadata_offset: image.offset,
            });
        };
        let shutting_down = {
            let mut l = self.liveness.lock();
            l.last_seen.insert(broker_id, Instant::now());
            l.shutting_down.get(&broker_id) == Some(&incarnation)
        };
        if shutting_down {
            return Ok(ControllerResponse::Heartbeat {
                unknown: false,
                fenced: b.fenced,
                metadata_offset: image.offset,
            });
        }
        if b.fenced {
            info!(broker_id, "fenced broker is heartbeating again; unfencing");
            // Decided again under the write lock: a controlled shutdown committed since the
            // check above wins.
            self.propose(|image| {
                if self.liveness.lock().shutting_down.get(&broker_id) == Some(&incarnation) {
                    return Decision {
                        records: vec![],
                        response: (),
                    };
                }
                controller::unfence_broker(image, broker_id)
            })
            .await?;
        }
        Ok(ControllerResponse::Heartbeat {
            unknown: false,
            fenced: false,
            metadata_offset: self.image().offset,
        })
    }

    /// Controlled shutdown: the broker is fenced now rather than when its session lapses, so
    /// each partition it leads moves to another in-sync replica at once and it leaves every
    /// ISR it is not the last member of (what a lapsed session does, without the wait).
    async fn controlled_shutdown(
        &self,
        broker_id: i32,
        incarnation: Uuid,
    ) -> Result<ControllerResponse, ControllerError> {
        let image = self.image();
        if image
            .brokers
            .get(&broker_id)
            .is_none_or(|b| b.incarnation != incarnation)
        {
            return Ok(ControllerResponse::ShutDown {
                unknown: true,
                metadata_offset: image.offset,
                offline: 0,
            });
        }
        let (offline, metadata_offset) = self
            .propose(|image| {
                self.liveness
                    .lock()
                    .shutting_down
                    .insert(broker_id, incarnation);
                let decision = controller::fence_broker(image, broker_id);
                let offline = decision
                    .records
                    .iter()
                    .filter(|r| {
                        matches!(r, crate::MetadataRecord::PartitionChange { leader: -1, .. })
                    })
                    .count();
                Decision {
                    records: decision.records,
                    response: offline,
                }
            })
            .await?;
        info!(
            broker_id,
            offline, "broker in controlled shutdown: leaderships handed over"
        );
        Ok(ControllerResponse::ShutDown {
            unknown: false,
            metadata_offset,
            offline,
        })
    }

    /// Switches reassignments whose joining replicas are all in sync (checked every tick).
    async fn complete_reassignments(&self) {
        if controller::complete_reassignments(&self.image()).is_empty() {
            return;
        }
        let result = self
            .propose(|image| {
                let records = controller::complete_reassignments(image);
                for r in &records {
                    if let crate::MetadataRecord::PartitionReassignment {
                        topic_id,
                        partition,
                        replicas,
                        leader,
                        ..
                    } = r
                    {
                        info!(%topic_id, partition, ?replicas, leader, "partition reassignment completed");
                    }
                }
                Decision {
                    records,
                    response: (),
                }
            })
            .await;
        if let Err(e) = result {
            warn!(error = %e, "could not complete reassignments");
        }
    }

    /// Preferred leader balancing, every `leader.imbalance.check.interval.seconds` on the
    /// active controller.
    async fn balance_leaders(&self) {
        let balance = self.config.leader_balance;
        if !balance.enabled
            || !due(
                &mut self.liveness.lock().balance_checked,
                balance.check_interval,
            )
        {
            return;
        }
        let named = controller::imbalanced_partitions(&self.image(), balance.per_broker_percentage);
        if named.is_empty() {
            return;
        }
        // Decided again on the image the proposal sees; partitions whose preferred replica
        // is not in the ISR are left alone.
        let result = self
            .propose(|image| {
                let named = controller::imbalanced_partitions(image, balance.per_broker_percentage);
                controller::elect_leaders(image, false, Some(&named))
            })
            .await;
        match result {
            Ok((results, _)) => {
                let moved: Vec<String> = results
                    .iter()
                    .filter(|(_, r)| r.is_ok())
                    .map(|((t, p), _)| format!("{t}-{p}"))
                    .collect();
                if !moved.is_empty() {
                    info!(
                        count = moved.len(),
                        partitions = ?moved,
                        percentage = balance.per_broker_percentage,
                        "leader imbalance: preferred replicas lead again"
                    );
                }
            }
            Err(e) => warn!(error = %e, "leader balancing failed"),
        }
    }

    /// Continuous replica balancing, every `check_interval` on the active controller when
    /// enabled: starts the reassignments [`crate::balancer::replica_moves`] plans.
    async fn balance_replicas(&self) {
        let balance = self.config.replica_balance;
        if !balance.enabled
            || !due(
                &mut self.liveness.lock().replicas_balanced,
                balance.check_interval,
            )
        {
            return;
        }
        let disk = self.disk_view();
        let image = self.image();
        if let (Some(view), false) = (
            &disk,
            image
                .topics()
                .any(|t| t.partitions.iter().any(|p| p.reassigning())),
        ) {
            match crate::balancer::disk_fill(&image, view) {
                Some(fill) => {
                    for f in fill.values().filter(|f| f.over()) {
                        warn!(
                            broker_id = f.broker,
                            used_bytes = f.used_bytes,
                            capacity_bytes = f.capacity_bytes,
                            threshold_percent = balance.disk_threshold_percent,
                            "broker disk above the balancing threshold"
                        );
                    }
                }
                None => debug!(
                    "replica balancing waits: not every live broker has a fresh log dir report"
                ),
            }
        }
        if crate::balancer::replica_moves(&image, balance.max_moves, disk.as_ref()).is_empty() {
            return;
        }
        // Planned again on the image the proposal sees.
        let mut planned = Vec::new();
        let result = self
            .propose(|image| {
                planned = crate::balancer::replica_moves(image, balance.max_moves, disk.as_ref());
                controller::alter_partition_reassignments(image, &planned)
            })
            .await;
        match result {
            Ok((results, _)) => {
                let started: Vec<String> = planned
                    .iter()
                    .filter(|((t, p), _)| {
                        results
                            .iter()
                            .any(|((rt, rp), r)| rt == t && rp == p && r.is_ok())
                    })
                    .map(|((t, p), target)| format!("{t}-{p}->{target:?}"))
                    .collect();
                info!(
                    count = started.len(),
                    moves = ?started,
                    "replica imbalance: reassignments started"
                );
            }
            Err(e) => warn!(error = %e, "replica balancing failed"),
        }
    }

    /// Confirms leadership with a quorum and waits until everything committed is applied, so a
    /// decision sees the latest image. openraft gives each follower one heartbeat interval
    /// (50 ms by default) to answer the check, and a busy machine misses that now and then
    /// without the quorum being lost, so a round that fell short is tried again, with a short
    /// pause, until `budget` is spent. Another leader is reported at once.
    async fn confirm_leadership(&self, budget: Duration) -> Result<(), ControllerError> {
        let deadline = tokio::time::Instant::now() + budget;
        let mut pause = Duration::from_millis(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let failure = match tokio::time::timeout(left, self.raft.ensure_linearizable()).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => check_leader_error(e),
                Err(_) => ControllerError::NoQuorum {
                    reason: format!("a quorum did not confirm leadership within {budget:?}"),
                },
            };
            let retriable = matches!(failure, ControllerError::NoQuorum { .. });
            if !retriable || tokio::time::Instant::now() + pause >= deadline {
                return Err(failure);
            }
            debug!(error = %failure, "leadership not confirmed by a quorum; checking again");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// The records that name a cluster not named yet (a new id, and the feature levels a new
    /// cluster starts at); none once it is named.
    fn init_cluster_records(&self, image: &MetadataImage) -> Vec<crate::MetadataRecord> {
        if !image.cluster_id.is_empty() {
            return vec![];
        }
        let cluster_id = Uuid::new_v4().simple().to_string();
        let mut records = vec![crate::MetadataRecord::InitCluster { cluster_id }];
        records.extend(crate::features::bootstrap_records(
            image,
            self.config.release_version,
        ));
        records
    }

    /// Decides against the current image and commits the records, one decision at a time.
    async fn propose<T>(
        &self,
        decide: impl FnOnce(&MetadataImage) -> Decision<T>,
    ) -> Result<(T, u64), ControllerError> {
        let _one_at_a_time = self.write_lock.lock().await;
        self.confirm_leadership(Duration::from_secs(5)).await?;
        let image = self.image();
        // A new cluster is named, with its feature levels, in the first proposal of all: no
        // broker ever sees a topic (or anything) before the cluster's id and features. The
        // decision is made on the image as it will be once they apply (an UpdateFeatures
        // must see the levels the cluster starts at, not none).
        let mut records = self.init_cluster_records(&image);
        let named;
        let decided_on: &MetadataImage = if records.is_empty() {
            &image
        } else {
            named = image
                .replay(&records)
                .map_err(|e| ControllerError::Internal {
                    reason: format!("naming the cluster: {e}"),
                })?;
            &named
        };
        let decision = decide(decided_on);
        if records.is_empty() && decision.records.is_empty() {
            return Ok((decision.response, image.offset));
        }
        records.extend(decision.records);
        let proposal = Proposal {
            records,
            timestamp_ms: now_ms(),
        };
        let written =
            tokio::time::timeout(Duration::from_secs(5), self.raft.client_write(proposal))
                .await
                .map_err(|_| ControllerError::NoQuorum {
                    reason: "the proposal was not committed within 5 s".into(),
                })?
                .map_err(client_write_error)?;
        if let Some(e) = written.data.error {
            return Err(ControllerError::Internal { reason: e });
        }
        Ok((decision.response, written.data.metadata_offset))
    }

    /// What only the active controller does, checked every 100 ms: name the cluster, fence
    /// brokers whose session lapsed, and (less often) balance leadership.
    async fn leader_duties(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if !self.is_leader() {
                self.liveness.lock().leader_since = None;
                continue;
            }
            let image = self.image();
            let expired: Vec<i32> = {
                let mut l = self.liveness.lock();
                let now = Instant::now();
                if l.leader_since.is_none() {
                    // A new active controller: every broker gets a full session from now.
                    l.leader_since = Some(now);
                    l.last_seen.clear();
                    l.log_dirs.clear();
                    // The first balance check comes one interval after taking office, as
                    // Kafka's, so returning brokers have time to catch up.
                    l.balance_checked = Some(now);
                    l.replicas_balanced = Some(now);
                    info!(node_id = self.id, "became the active controller");
                }
                let since = l.leader_since.unwrap_or(now);
                image
                    .live_brokers()
                    .filter(|b| {
                        let seen = l.last_seen.get(&b.broker_id).copied().unwrap_or(since);
                        now.duration_since(seen) > self.config.broker_session_timeout
                    })
                    .map(|b| b.broker_id)
                    .collect()
            };
            if image.cluster_id.is_empty() {
                // `propose` names the cluster before anything else it commits.
                match self
                    .propose(|_| Decision {
                        records: vec![],
                        response: (),
                    })
                    .await
                {
                    Ok(_) => info!(cluster_id = %self.image().cluster_id, "cluster named"),
                    Err(e) => warn!(error = %e, "could not name the cluster"),
                }
            }
            for broker_id in expired {
                // Decided again under the write lock: a registration or heartbeat that landed
                // since the check above keeps the broker alive.
                let result = self
                    .propose(|img| {
                        if !self.session_lapsed(broker_id) {
                            return Decision {
                                records: vec![],
                                response: (),
                            };
                        }
                        warn!(
                            broker_id,
                            timeout_ms = self.config.broker_session_timeout.as_millis() as u64,
                            "broker session lapsed; fencing"
                        );
                        controller::fence_broker(img, broker_id)
                    })
                    .await;
                if let Err(e) = result {
                    warn!(broker_id, error = %e, "could not fence broker");
                }
            }
            self.complete_reassignments().await;
            self.balance_leaders().await;
            self.balance_replicas().await;
        }
    }

    fn session_lapsed(&self, broker_id: i32) -> bool {
        let l = self.liveness.lock();
        let now = Instant::now();
        let seen = l
            .last_seen
            .get(&broker_id)
            .copied()
            .or(l.leader_since)
            .unwrap_or(now);
        now.duration_since(seen) > self.config.broker_session_timeout
    }

    /// The voters of the current Raft membership with their addresses (which KIP-853
    /// changes at run time; `--voters` only seeds the first membership).
    pub fn voters(&self) -> Vec<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .map(|id| {
                let addr = membership
                    .get_node(&id)
                    .map(|n| n.addr.clone())
                    .or_else(|| self.config.voters.get(&id).cloned())
                    .unwrap_or_default();
                (id, addr)
            })
            .collect()
    }

    /// KIP-853 AddRaftVoter on the active controller: the new controller catches up as a
    /// learner (openraft's `add_learner`, waiting until it has the log), then the membership
    /// changes to include it (joint consensus). Adding a voter twice changes nothing.
    async fn add_voter(
        &self,
        id: NodeId,
        addr: String,
    ) -> Result<ControllerResponse, ControllerError> {
        // Not under the write lock: metadata changes go on while the learner catches up, and
        // openraft runs one membership change at a time.
        let mut voters = self.members();
        if voters.contains(&id) {
            return Ok(self.voters_changed(Ok(())));
        }
        info!(voter = id, %addr, "adding a controller: catching it up as a learner");
        let caught_up = tokio::time::timeout(
            Duration::from_secs(60),
            self.raft.add_learner(id, BasicNode { addr }, true),
        )
        .await;
        match caught_up {
            Err(_) => {
                return Ok(self.voters_changed(Err(MetadataError::InvalidRequest {
                    reason: format!("controller {id} did not catch up within 60 s; is it running and reachable at that address?"),
                })))
            }
            Ok(Err(e)) => return Err(client_write_error(e)),
            Ok(Ok(_)) => {}
        }
        // Read again: a removal that committed while the learner caught up stays removed.
        voters = self.members();
        voters.insert(id);
        self.raft
            .change_membership(voters.clone(), false)
            .await
            .map_err(client_write_error)?;
        info!(voters = ?voters, "controller added to the voters");
        Ok(self.voters_changed(Ok(())))
    }

    /// KIP-853 RemoveRaftVoter on the active controller. The last voter cannot be removed;
    /// removing the active controller itself hands leadership to another voter once the new
    /// membership commits.
    async fn remove_voter(&self, id: NodeId) -> Result<ControllerResponse, ControllerError> {
        let mut voters = self.members();
        if !voters.contains(&id) {
            return Ok(self.voters_changed(Err(MetadataError::InvalidRequest {
                reason: format!("controller {id} is not a voter (voters: {voters:?})"),
            })));
        }
        if voters.len() == 1 {
            return Ok(self.voters_changed(Err(MetadataError::InvalidRequest {
                reason: format!("controller {id} is the last voter"),
            })));
        }
        voters.remove(&id);
        self.raft
            .change_membership(voters.clone(), false)
            .await
            .map_err(client_write_error)?;
        info!(removed = id, voters = ?voters, "controller removed from the voters");
        Ok(self.voters_changed(Ok(())))
    }

    fn voters_changed(&self, result: Result<(), MetadataError>) -> ControllerResponse {
        ControllerResponse::Voters {
            result: result.map(|()| self.voters()),
        }
    }

    /// The quorum as this (active) controller sees it: each voter's replicated index, the
    /// registered brokers as observers with their last heartbeat.
    fn describe(&self) -> rpc::QuorumDescription {
        let m = self.raft.metrics().borrow().clone();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let index = |l: Option<&openraft::LogId<NodeId>>| l.map_or(-1, |l| l.index as i64);
        let voters = self
            .voters()
            .into_iter()
            .map(|(id, _)| {
                let log_end_offset = if id == self.id {
                    m.last_log_index.map_or(-1, |i| i as i64)
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id))
                        .map_or(-1, |l| index(l.as_ref()))
                };
                rpc::ReplicaProgress {
                    replica_id: id as i32,
                    log_end_offset,
                    last_fetch_timestamp: if id == self.id { now_ms } else { -1 },
                }
            })
            .collect();
        // Every registered broker follows the log; when it was last heard from is known once
        // it heartbeated to this controller.
        let ages = self.heartbeat_ages();
        let observers = self
            .image()
            .brokers
            .keys()
            .map(|broker| rpc::ReplicaProgress {
                replica_id: *broker,
                log_end_offset: -1,
                last_fetch_timestamp: ages.get(broker).map_or(-1, |a| now_ms - *a as i64),
            })
            .collect();
        rpc::QuorumDescription {
            leader_id: self.id as i32,
            leader_epoch: m.current_term as i32,
            high_watermark: index(m.last_applied.as_ref()),
            voters,
            observers,
            voter_addrs: self
                .voters()
                .into_iter()
                .map(|(id, addr)| (id as i32, addr))
                .collect(),
        }
    }

    /// The disks as the registered brokers last reported them (their current incarnations
    /// only), for the balancer; None when disks are left out of it.
    fn disk_view(&self) -> Option<crate::balancer::DiskView> {
        let threshold = self.config.replica_balance.disk_threshold_percent;
        if threshold == 0 {
            return None;
        }
        let image = self.image();
        let l = self.liveness.lock();
        Some(crate::balancer::DiskView::from_reports(
            threshold,
            l.log_dirs
                .iter()
                .filter_map(|(&b, (incarnation, at, report))| {
                    let current = image.brokers.get(&b)?.incarnation == *incarnation;
                    // Three intervals without a report: the broker's view is stale.
                    let interval = Duration::from_millis(report.report_interval_ms.max(1000));
                    (current && at.elapsed() <= 3 * interval).then_some((b, report))
                }),
        ))
    }

    /// Each broker's last log directory report, known only to the active controller.
    pub fn log_dir_reports(&self) -> BTreeMap<i32, LogDirReport> {
        self.liveness
            .lock()
            .log_dirs
            .iter()
            .map(|(&b, (_, _, r))| (b, r.clone()))
            .collect()
    }

    /// Milliseconds since each broker's last heartbeat, known only to the active controller.
    pub fn heartbeat_ages(&self) -> BTreeMap<i32, u64> {
        let l = self.liveness.lock();
        let now = Instant::now();
        l.last_seen
            .iter()
            .map(|(b, t)| (*b, now.duration_since(*t).as_millis() as u64))
            .collect()
    }

    /// Whether this controller can serve (`/readyz`): its Raft is running, it is a voter, it
    /// knows an active controller, and as the active controller a majority acknowledged it
    /// within an election timeout.
    pub fn readiness(&self) -> Readiness {
        let m = self.raft.metrics().borrow().clone();
        let running = m.running_state.is_ok();
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id);
        let quorum_ack_ms = if leads(&m, self.id) {
            m.millis_since_quorum_ack
        } else {
            None
        };
        let leader_known = match quorum_ack_ms {
            Some(ms) => ms <= self.config.election_timeout.1.as_millis() as u64,
            // Not leading: another node must be named (this one, not leading, does not count).
            None => m.current_leader.is_some_and(|l| l != self.id),
        };
        Readiness {
            ready: running && voter && leader_known,
            node_id: self.id,
            running,
            voter,
            leader: m.current_leader,
            leader_known,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            millis_since_quorum_ack: quorum_ack_ms,
            metadata_offset: self.image().offset,
        }
    }

    /// Members of the current Raft membership.
    pub fn members(&self) -> BTreeSet<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }
}

/// Whether the node `id` whose metrics these are is the active controller.
fn leads(m: &openraft::RaftMetrics<NodeId, BasicNode>, id: NodeId) -> bool {
    m.state == ServerState::Leader && m.current_leader == Some(id)
}

fn check_leader_error(
    e: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>,
) -> ControllerError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
            ControllerError::NotController {
                leader: f.leader_id,
            }
        }
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => ControllerError::NoQuorum {
            reason: q.to_string(),
        },
        RaftError::Fatal(f) => ControllerError::Internal {
            reason: f.to_string(),
        },
    }
}

/// Whether a periodic duty is due (never run, or last run `interval` ago or more); if so it
/// counts as run now.
fn due(last: &mut Option<Instant>, interval: Duration) -> bool {
    let now = Instant::now();
    match *last {
        Some(t) if now.duration_since(t) < interval => false,
        _ => {
            *last = Some(now);
            true
        }
    }
}

fn client_write_error(
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> ControllerError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ControllerError::NotController {
                leader: f.leader_id,
            }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            ControllerError::Internal {
                reason: c.to_string(),
            }
        }
        RaftError::Fatal(f) => ControllerError::Internal {
            reason: f.to_string(),
        },
    }
}
