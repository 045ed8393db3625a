//! The `strom` command line: topics, cluster, produce, consume, groups and perf, over the
//! Kafka protocol, built on the library's [`Admin`](crate::admin::Admin),
//! [`Producer`](crate::producer::Producer) and [`Consumer`](crate::consumer::Consumer).
//!
//! Errors are one line: the Kafka error name, what it was about, and what to do. The exit
//! code is 1 for a failed operation and 2 for a bad command line (clap).
//!
//! One module per subcommand: `topics`, `produce`, `consume` (with the kcat-like output
//! templates), `groups`, `perf`.

mod acls;
mod cluster;
mod connect;
mod consume;
mod features;
mod groups;
mod http;
mod leader_election;
mod perf;
mod produce;
mod quorum;
mod quotas;
mod reassign;
mod topics;
mod transactions;
mod users;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;

use crate::admin::AdminError;
use crate::consumer::ConsumerError;
pub use crate::error_name;
use crate::producer::ProducerError;
use crate::{BrokerError, ClientError};

#[derive(Parser)]
#[command(
    name = "strom",
    version,
    about = "Strom's command line: topics, cluster, produce, consume, groups, perf"
)]
pub struct Cli {
    /// Brokers to bootstrap from, host:port[,host:port...].
    #[arg(
        long,
        short = 'b',
        env = "STROM_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap_server: String,
    /// Client settings for a secured cluster, as a Kafka client properties file
    /// (kafka-*.sh --command-config): security.protocol, sasl.mechanism, sasl.username,
    /// sasl.password or sasl.jaas.config, ssl.ca.location, ssl.certificate.location,
    /// ssl.key.location, ssl.endpoint.identification.algorithm.
    #[arg(long, env = "STROM_COMMAND_CONFIG", global = true)]
    pub command_config: Option<std::path::PathBuf>,
    /// One client setting, key=value, as kcat's -X (repeatable; wins over --command-config).
    #[arg(
        short = 'X',
        long = "property",
        global = true,
        value_name = "KEY=VALUE"
    )]
    pub property: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the CLI connects and how: the bootstrap servers and the security settings.
pub struct Target {
    pub bootstrap: String,
    pub security: crate::security::Security,
}

impl Target {
    /// From `--bootstrap-server`, `--command-config` and `-X`.
    pub fn from_cli(cli: &Cli) -> Result<Self, CliError> {
        let mut props = match &cli.command_config {
            Some(p) => crate::properties::load(p)
                .map_err(|e| CliError::Input(format!("--command-config {}: {e}", p.display())))?,
            None => Default::default(),
        };
        for kv in &cli.property {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| CliError::Input(format!("-X '{kv}' is not key=value")))?;
            props.insert(k.trim().to_string(), v.trim().to_string());
        }
        let security = crate::security::Security::from_settings(|k| props.get(k).cloned())
            .map_err(CliError::Input)?;
        Ok(Self {
            bootstrap: cli.bootstrap_server.clone(),
            security,
        })
    }

    pub fn admin(&self) -> crate::admin::Admin {
        crate::admin::Admin::with_security(&self.bootstrap, self.security.clone())
    }

    pub fn cluster(&self) -> crate::cluster::ClusterClient {
        crate::cluster::ClusterClient::with_security(&self.bootstrap, self.security.clone())
    }

    pub fn producer_config(&self) -> crate::producer::ProducerConfig {
        crate::producer::ProducerConfig::new(&self.bootstrap).with_security(self.security.clone())
    }

    pub fn consumer_config(&self) -> crate::consumer::ConsumerConfig {
        crate::consumer::ConsumerConfig::new(&self.bootstrap).with_security(self.security.clone())
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Brokers, the active controller, the cluster id and every partition's leader; or
    /// `decommission BROKER` to retire a broker.
    Cluster(ClusterArgs),
    /// Produce lines from stdin or a file, one record per line.
    Produce(ProduceArgs),
    /// Consume records and print them (alone, or as a member of a group).
    Consume(ConsumeArgs),
    /// Load tests, like kafka-producer-perf-test / kafka-consumer-perf-test.
    #[command(subcommand)]
    Perf(PerfCommand),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// List and describe transactions and the producers of a partition, like
    /// kafka-transactions.sh.
    #[command(subcommand)]
    Transactions(TransactionsCommand),
    /// Manage a Kafka Connect worker's connectors through its REST API (strom-connect or
    /// Kafka Connect).
    Connect(ConnectArgs),
    /// SCRAM users: list, add (or change a password), remove.
    #[command(subcommand)]
    Users(UsersCommand),
    /// ACLs, like kafka-acls.sh: list, add, remove.
    #[command(subcommand)]
    Acls(AclsCommand),
    /// Client quotas, like kafka-configs.sh --entity-type users|clients|ips: describe, alter.
    #[command(subcommand)]
    Quotas(QuotasCommand),
    /// Move partition leadership to the preferred replica (or, unclean, to any live replica of
    /// a leaderless partition), like kafka-leader-election.sh.
    LeaderElection(LeaderElectionArgs),
    /// Partition replica placement.
    #[command(subcommand)]
    Partitions(PartitionsCommand),
    /// The Raft metadata quorum, like kafka-metadata-quorum.sh: describe, add-controller,
    /// remove-controller (KIP-853).
    MetadataQuorum(QuorumArgs),
    /// Feature levels, like kafka-features.sh: describe, upgrade, downgrade.
    #[command(subcommand)]
    Features(FeaturesCommand),
}

#[derive(Subcommand)]
pub enum FeaturesCommand {
    /// Each feature's supported range and finalized level.
    Describe,
    /// Raise finalized levels.
    Upgrade(FeatureChangeArgs),
    /// Lower finalized levels (the controller refuses what it cannot undo safely).
    Downgrade(FeatureChangeArgs),
}

#[derive(Args)]
pub struct FeatureChangeArgs {
    /// The metadata.version as a Kafka release: 4.1, or 4.1-IV1.
    #[arg(long)]
    pub metadata: Option<String>,
    /// A feature and its level, name=level (repeatable).
    #[arg(long = "feature", value_parser = parse_feature)]
    pub features: Vec<(String, i16)>,
    /// Check with the controller without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// With downgrade: ask for an unsafe (lossy) downgrade instead of a safe one.
    #[arg(long)]
    pub unsafe_downgrade: bool,
}

fn parse_feature(s: &str) -> Result<(String, i16), String> {
    let (k, v) = parse_kv(s)?;
    let level = v
        .parse()
        .map_err(|_| format!("'{s}': the level must be a number"))?;
    Ok((k, level))
}

#[derive(Args)]
pub struct QuorumArgs {
    /// A controller's HTTP address (host:port); changes are forwarded to the active one.
    #[arg(
        long,
        env = "STROM_BOOTSTRAP_CONTROLLER",
        default_value = "127.0.0.1:9093"
    )]
    pub bootstrap_controller: String,
    #[command(subcommand)]
    pub command: QuorumCommand,
}

#[derive(Subcommand)]
pub enum QuorumCommand {
    /// The active controller, its term, the committed index and the voters.
    Describe,
    /// Make a running controller a voter: it catches up as a learner first (KIP-853
    /// AddRaftVoter). Start it with --join and --voters naming the current voters.
    AddController {
        #[arg(long)]
        controller_id: u64,
        /// Its quorum address (host:port, what it --listen s on).
        #[arg(long)]
        controller_address: String,
    },
    /// Remove a voter (KIP-853 RemoveRaftVoter); the last one cannot be removed.
    RemoveController {
        #[arg(long)]
        controller_id: u64,
    },
}

#[derive(Args, Clone)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub action: Option<ClusterCommand>,
}

#[derive(Subcommand, Clone)]
pub enum ClusterCommand {
    /// Move every replica off BROKER (KIP-455 reassignments, racks respected, load evened),
    /// wait for the moves, then unregister it so it can be stopped for good.
    Decommission(DecommissionArgs),
}

#[derive(Args, Clone)]
pub struct DecommissionArgs {
    /// The broker id to retire.
    pub broker: i32,
    /// How long to wait: for a fenced broker to come back when the plan needs it, and for
    /// the moves (which keep running after a timeout).
    #[arg(long, default_value_t = 600_000)]
    pub timeout_ms: u64,
    /// Move the replicas off but leave the broker registered.
    #[arg(long)]
    pub no_unregister: bool,
}

#[derive(Subcommand)]
pub enum PartitionsCommand {
    /// Move partitions between brokers, like kafka-reassign-partitions.sh.
    Reassign(ReassignArgs),
}

/// kafka-reassign-partitions.sh's options.
#[derive(Args, Clone)]
#[command(group(clap::ArgGroup::new("action").required(true)
    .args(["generate", "execute", "verify", "cancel", "list"])))]
pub struct ReassignArgs {
    /// Propose a balanced assignment of --topics-to-move-json-file (or --topics) over
    /// --broker-list, in Kafka's JSON.
    #[arg(long)]
    pub generate: bool,
    /// Start the reassignment in --reassignment-json-file.
    #[arg(long)]
    pub execute: bool,
    /// Report whether the reassignment in --reassignment-json-file is done (exit 1 if not).
    #[arg(long)]
    pub verify: bool,
    /// Cancel the reassignments of the partitions in --reassignment-json-file.
    #[arg(long)]
    pub cancel: bool,
    /// The reassignments in progress.
    #[arg(long)]
    pub list: bool,
    /// {"topics": [{"topic": "a"}], "version": 1}
    #[arg(long)]
    pub topics_to_move_json_file: Option<std::path::PathBuf>,
    /// The topics to move, comma-separated (instead of the JSON file).
    #[arg(long, value_delimiter = ',')]
    pub topics: Vec<String>,
    /// The brokers to place replicas on, e.g. 1,2,3,4.
    #[arg(long, value_delimiter = ',')]
    pub broker_list: Vec<i32>,
    /// With --generate: ignore the brokers' racks (by default a partition's replicas go to
    /// as many racks as there are).
    #[arg(long)]
    pub disable_rack_aware: bool,
    /// {"version": 1, "partitions": [{"topic", "partition", "replicas"}]}
    #[arg(long)]
    pub reassignment_json_file: Option<std::path::PathBuf>,
    /// With --execute: hold the moving replicas' catch-up to this many bytes per second
    /// (KIP-73: the brokers' leader/follower.replication.throttled.rate and the topics'
    /// throttled replica lists). --verify removes the throttle once every move is done.
    #[arg(long)]
    pub throttle: Option<u64>,
    /// With --verify: leave the throttle in place.
    #[arg(long)]
    pub preserve_throttles: bool,
}

/// kafka-leader-election.sh's options.
#[derive(Args, Clone)]
pub struct LeaderElectionArgs {
    /// PREFERRED or UNCLEAN (either case).
    #[arg(long, value_parser = ["PREFERRED", "UNCLEAN", "preferred", "unclean"])]
    pub election_type: String,
    /// One topic's partitions (all of them, or --partition's).
    #[arg(long, conflicts_with_all = ["all_topic_partitions", "path_to_json_file"])]
    pub topic: Option<String>,
    /// With --topic: only this partition.
    #[arg(long, requires = "topic")]
    pub partition: Option<i32>,
    /// Every partition of every topic.
    #[arg(long, conflicts_with = "path_to_json_file")]
    pub all_topic_partitions: bool,
    /// A JSON file {"partitions": [{"topic": "t", "partition": 0}, ...]}.
    #[arg(long)]
    pub path_to_json_file: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
pub enum QuotasCommand {
    /// The quotas of the entities named (exactly those), or of every entity.
    Describe(QuotaEntityArgs),
    /// Sets and removes quotas of one entity.
    Alter {
        #[command(flatten)]
        entity: QuotaEntityArgs,
        /// key=value,... with producer_byte_rate, consumer_byte_rate, request_percentage,
        /// controller_mutation_rate (users and clients) or connection_creation_rate (ips).
        #[arg(long, value_delimiter = ',')]
        add_config: Vec<String>,
        /// Keys to remove, comma-separated.
        #[arg(long, value_delimiter = ',')]
        delete_config: Vec<String>,
        /// Check the change without making it.
        #[arg(long)]
        validate_only: bool,
    },
}

/// A quota entity, as kafka-configs.sh names one: a user and/or a client id, or an IP; each
/// by name or as the default.
#[derive(Args, Clone, Default)]
pub struct QuotaEntityArgs {
    #[arg(long, conflicts_with = "user_default")]
    pub user: Option<String>,
    /// The default user entity (user=<default>).
    #[arg(long)]
    pub user_default: bool,
    #[arg(long, conflicts_with = "client_id_default")]
    pub client_id: Option<String>,
    /// The default client-id entity.
    #[arg(long)]
    pub client_id_default: bool,
    #[arg(long, conflicts_with = "ip_default")]
    pub ip: Option<String>,
    /// The default IP entity.
    #[arg(long)]
    pub ip_default: bool,
}

#[derive(Subcommand)]
pub enum AclsCommand {
    /// The ACLs matching the options (all without any).
    List(AclArgs),
    /// Adds an ACL for each operation and principal given.
    Add(AclArgs),
    /// Removes the ACLs matching the options.
    Remove(AclArgs),
}

/// kafka-acls.sh's options.
#[derive(Args, Clone)]
pub struct AclArgs {
    /// User:name the ACL allows (repeatable).
    #[arg(long)]
    pub allow_principal: Vec<String>,
    /// User:name the ACL denies (repeatable).
    #[arg(long)]
    pub deny_principal: Vec<String>,
    /// The host allowed principals connect from (default: any).
    #[arg(long)]
    pub allow_host: Option<String>,
    /// The host denied principals connect from (default: any).
    #[arg(long)]
    pub deny_host: Option<String>,
    /// Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs,
    /// AlterConfigs, IdempotentWrite or All (repeatable; add defaults to All).
    #[arg(long)]
    pub operation: Vec<String>,
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub group: Option<String>,
    /// The cluster resource (kafka-cluster).
    #[arg(long)]
    pub cluster: bool,
    #[arg(long)]
    pub transactional_id: Option<String>,
    /// literal (default) or prefixed; list and remove also take match and any.
    #[arg(long)]
    pub resource_pattern_type: Option<String>,
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Users and their SCRAM mechanisms (all, or those named).
    List { users: Vec<String> },
    /// Creates a user or sets its password, for SCRAM-SHA-256 and SCRAM-SHA-512 unless
    /// --mechanism names one.
    Add {
        user: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        mechanism: Option<String>,
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
    },
    /// Removes a user's SCRAM credentials (both mechanisms unless --mechanism names one).
    Remove {
        user: String,
        #[arg(long)]
        mechanism: Option<String>,
    },
}

#[derive(Args)]
pub struct ConnectArgs {
    /// The worker's REST URL.
    #[arg(
        long,
        env = "STROM_CONNECT_URL",
        default_value = "http://127.0.0.1:8083"
    )]
    pub url: String,
    #[command(subcommand)]
    pub command: ConnectCommand,
}

#[derive(Subcommand)]
pub enum ConnectCommand {
    /// Every connector with its type, state and tasks' states.
    List,
    /// A connector's state and each task's, with the error of a failed one.
    Status {
        name: String,
    },
    /// Create a connector from a .properties file or Kafka Connect's {"name", "config"} JSON.
    Create {
        file: String,
    },
    /// Create or update a connector from a file (PUT /connectors/{name}/config).
    Apply {
        file: String,
    },
    /// A connector's config, as JSON.
    Config {
        name: String,
    },
    /// A connector's offsets (KIP-875), as JSON.
    Offsets {
        name: String,
    },
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    /// Stop a connector's tasks (KIP-875), so its offsets can be altered.
    Stop {
        name: String,
    },
    Delete {
        name: String,
    },
    /// Restart a connector, with its tasks, or one task.
    Restart {
        name: String,
        #[arg(long)]
        include_tasks: bool,
        #[arg(long)]
        only_failed: bool,
        #[arg(long)]
        task: Option<u32>,
    },
    /// The connector plugins the worker has.
    Plugins,
}

#[derive(Subcommand)]
pub enum TransactionsCommand {
    /// Every transactional id, its producer id, state and coordinator.
    List,
    /// A transactional id's state, producer, timeout and partitions.
    Describe {
        #[arg(long)]
        transactional_id: String,
    },
    /// The producers a partition's leader knows, with their open transactions' start.
    DescribeProducers {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
    },
    /// Abort a hanging transaction on a partition by writing its ABORT marker (needs
    /// ClusterAction under the authorizer): the one starting at --start-offset, or the given
    /// producer's.
    #[command(group(clap::ArgGroup::new("which").required(true)
        .args(["start_offset", "producer_id"])))]
    Abort {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// Where the transaction starts (DescribeProducers' CurrentTransactionStartOffset).
        #[arg(long)]
        start_offset: Option<i64>,
        #[arg(long, requires_all = ["producer_epoch", "coordinator_epoch"])]
        producer_id: Option<i64>,
        #[arg(long)]
        producer_epoch: Option<i16>,
        #[arg(long)]
        coordinator_epoch: Option<i32>,
    },
}

#[derive(Subcommand)]
pub enum GroupsCommand {
    List,
    /// State, members, assignments, committed offsets and lag; for a share group, each
    /// share-partition's start offset against the end (like kafka-share-groups.sh).
    Describe {
        group: String,
    },
    /// Move an empty group's committed offsets, or an empty share group's start offsets
    /// (AlterShareGroupOffsets); a dry run unless --execute.
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        #[arg(long, group = "to", allow_negative_numbers = true)]
        to_offset: Option<i64>,
        #[arg(long)]
        execute: bool,
    },
    /// Make an empty share group forget topics (DeleteShareGroupOffsets, like
    /// kafka-share-groups.sh --delete-offsets): its next read of them starts where
    /// share.auto.offset.reset says.
    DeleteOffsets {
        group: String,
        /// A topic to forget (repeat for more).
        #[arg(long, required = true)]
        topic: Vec<String>,
    },
    /// Delete a group with no members, and its committed offsets.
    Delete {
        group: String,
    },
    /// The group's configs (share.auto.offset.reset, share.record.lock.duration.ms,
    /// consumer.session.timeout.ms, ...): its own and the broker's, like
    /// kafka-configs.sh --entity-type groups --describe.
    Configs {
        group: String,
    },
    /// Set or reset a group's configs, like kafka-configs.sh --entity-type groups --alter.
    /// The group need not exist yet.
    Alter {
        group: String,
        /// Set a config, key=value (repeatable).
        #[arg(long = "set", value_parser = parse_kv)]
        set: Vec<(String, String)>,
        /// Reset a config to the broker's (repeatable).
        #[arg(long = "delete")]
        delete: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum TopicsCommand {
    List {
        /// Include internal topics (__consumer_offsets).
        #[arg(long)]
        internal: bool,
    },
    /// Partitions (leader, epoch, replicas, ISR) and the configs set on the topic.
    Describe {
        topic: String,
    },
    Create {
        topic: String,
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// A topic config, key=value (repeatable).
        #[arg(long = "config", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
        /// Only check that the broker would accept it.
        #[arg(long)]
        validate_only: bool,
    },
    /// Set or reset topic configs, or add partitions.
    Alter {
        topic: String,
        /// Set a config, key=value (repeatable).
        #[arg(long = "set", value_parser = parse_kv)]
        set: Vec<(String, String)>,
        /// Reset a config to its default (repeatable).
        #[arg(long = "delete")]
        delete: Vec<String>,
        /// Grow the topic to this many partitions.
        #[arg(long)]
        partitions: Option<i32>,
    },
    Delete {
        topic: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<Codec> for Compression {
    fn from(c: Codec) -> Self {
        match c {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Progress {
    /// On a terminal, when reading a file.
    Auto,
    Always,
    Never,
}

#[derive(Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// Split each line into key and value at the first occurrence of this string.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// A header for every record, key=value (repeatable).
    #[arg(long = "header", value_parser = parse_kv)]
    pub headers: Vec<(String, String)>,
    /// Send everything to this partition (default: keyed records by murmur2, others spread).
    #[arg(long)]
    pub partition: Option<i32>,
    #[arg(long, value_enum, default_value = "none")]
    pub compression: Codec,
    /// -1 (all), 0 or 1.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_parser = clap::value_parser!(i16).range(-1..=1))]
    pub acks: i16,
    /// Records per batch at most.
    #[arg(long, default_value_t = 500)]
    pub batch_records: usize,
    /// A progress bar on stderr while reading a --file.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: Progress,
    /// Create the topic (with the broker's default partitions and replication) if it does
    /// not exist.
    #[arg(long)]
    pub create: bool,
}

#[derive(Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read as a member of this consumer group: partitions shared with its other members,
    /// positions committed (and resumed from) in the cluster.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Read as a member of this share group (KIP-932, a queue): records shared out one
    /// at a time among the group's members, any number per partition, each printed record
    /// accepted. Without --follow or --count it stops once a poll finds nothing.
    #[arg(long, conflicts_with_all = ["group", "partition", "offset", "from_beginning"])]
    pub share_group: Option<String>,
    /// Only this partition (default: all). Not with --group.
    #[arg(long, conflicts_with = "group")]
    pub partition: Option<i32>,
    /// Where to start: `beginning`, `end`, an offset N, or -N (N before the end). With
    /// --group, where a partition with no committed offset starts (`beginning` or `end`).
    #[arg(long, default_value = "end", allow_hyphen_values = true)]
    pub offset: String,
    /// Same as --offset beginning.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end (Ctrl-C stops, after
    /// committing with --group).
    #[arg(long)]
    pub follow: bool,
    /// `json`, or a template with %t topic, %p partition, %o offset, %k key, %v value,
    /// %T timestamp, %h headers (k=v,...), %K key length, %S value length, \n and \t.
    #[arg(long, default_value = "%v\\n")]
    pub format: String,
    /// The rack this consumer runs in (client.rack): a broker with a rack-aware replica
    /// selector has it read from an in-sync replica in that rack (KIP-392).
    #[arg(long)]
    pub client_rack: Option<String>,
}

#[derive(Subcommand)]
pub enum PerfCommand {
    /// Produce fixed-size records as fast as possible (or at --throughput).
    Produce {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        #[arg(long, default_value_t = 100)]
        record_size: usize,
        #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = clap::value_parser!(i16).range(-1..=1))]
        acks: i16,
        /// Records per second at most (-1: no cap).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        throughput: i64,
        #[arg(long, default_value_t = 1000)]
        batch_records: usize,
        #[arg(long, value_enum, default_value = "none")]
        compression: Codec,
        #[arg(long, default_value_t = 0)]
        partition: i32,
        /// Idempotent batches (a producer id, sequence numbers; needs --acks -1).
        #[arg(long)]
        idempotent: bool,
        /// Transactional batches under this transactional.id (implies --idempotent), in
        /// transactions of --transaction-records, each committed.
        #[arg(long)]
        transactional_id: Option<String>,
        #[arg(long, default_value_t = 1000)]
        transaction_records: u64,
        /// Create the topic (broker defaults) if it does not exist.
        #[arg(long)]
        create: bool,
    },
    /// Read a partition from the beginning.
    Consume {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 0)]
        partition: i32,
        #[arg(long)]
        records: u64,
        /// read_uncommitted or read_committed.
        #[arg(long, default_value = "read_uncommitted")]
        isolation_level: String,
    },
}

/// Creates `topic` with the broker's defaults unless it exists (`--create`).
async fn ensure_topic(target: &Target, topic: &str) -> Result<(), CliError> {
    match target
        .admin()
        .create_topic(&crate::admin::NewTopic::new(topic, -1, -1))
        .await
    {
        Ok(t) => {
            eprintln!("created topic {topic} ({} partitions)", t.partitions);
            Ok(())
        }
        Err(e) if e.code() == Some(kafka_protocol::ResponseError::TopicAlreadyExists.code()) => {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `--set key=value` and `--delete key` as the config operations they ask for.
fn config_ops(set: Vec<(String, String)>, delete: Vec<String>) -> Vec<crate::admin::ConfigOp> {
    use crate::admin::ConfigOp;
    set.into_iter()
        .map(|(k, v)| ConfigOp::Set(k, v))
        .chain(delete.into_iter().map(ConfigOp::Delete))
        .collect()
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("'{s}' is not key=value"))
}

/// A failure the CLI reports in one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{name}: {message}")]
    Kafka { name: String, message: String },
    #[error("{0}")]
    Input(String),
    /// No broker answered; `run` names the bootstrap servers it tried.
    #[error("cannot reach the cluster ({0})")]
    Unreachable(String),
}

/// What to do about a Kafka error, for the one line the CLI prints.
fn hint(code: i16) -> &'static str {
    use ResponseError as E;
    match ResponseError::try_from_code(code) {
        Some(E::UnknownTopicOrPartition) => "check the name with `strom topics list`",
        Some(E::TopicAlreadyExists) => "choose another name, or delete it first",
        Some(E::InvalidReplicationFactor) => {
            "the replication factor cannot exceed the live brokers (`strom cluster`)"
        }
        Some(E::InvalidConfig) => {
            "see docs/configs.md for the topic and group configs and their values"
        }
        Some(E::InvalidPartitions) => "partitions can only be added, never removed",
        Some(E::NonEmptyGroup) | Some(E::UnknownMemberId) => "stop the group's consumers first",
        Some(E::GroupIdNotFound) => "check the name with `strom groups list`",
        Some(E::CoordinatorNotAvailable) | Some(E::NotController) => {
            "is the cluster up? (`strom cluster`)"
        }
        Some(E::NotEnoughReplicas) => {
            "fewer in-sync replicas than min.insync.replicas: bring brokers back or use --acks 1"
        }
        Some(E::MessageTooLarge) | Some(E::RecordListTooLarge) => {
            "the record is over max.message.bytes"
        }
        Some(E::InvalidTopicException) => {
            "topic names are letters, digits, '.', '_' and '-'; internal topics are not writable"
        }
        _ => "",
    }
}

/// Kafka's UPPER_SNAKE name for an error code, the context, and the hint.
fn kafka(code: i16, message: Option<&str>, context: &str) -> CliError {
    let mut m = context.to_string();
    for part in [message.unwrap_or(""), hint(code)] {
        if !part.is_empty() {
            if !m.is_empty() {
                m.push_str("; ");
            }
            m.push_str(part);
        }
    }
    CliError::Kafka {
        name: error_name(code),
        message: m,
    }
}

pub(super) fn broker_error(e: BrokerError, context: &str) -> CliError {
    kafka(e.code, e.message.as_deref(), context)
}

fn connection_hint(what: String) -> CliError {
    CliError::Unreachable(what)
}

impl From<AdminError> for CliError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Broker { what, error } => broker_error(error, &what),
            AdminError::Connection(c) => connection_hint(c),
            AdminError::Decode(d) => CliError::Input(d),
        }
    }
}

impl From<ConsumerError> for CliError {
    fn from(e: ConsumerError) -> Self {
        match e {
            ConsumerError::Broker(b) => broker_error(b, ""),
            ConsumerError::UnknownTopic(t) => kafka(
                ResponseError::UnknownTopicOrPartition.code(),
                None,
                &format!("topic '{t}'"),
            ),
            ConsumerError::Connection(c) => connection_hint(c),
            other => CliError::Input(other.to_string()),
        }
    }
}

impl From<ProducerError> for CliError {
    fn from(e: ProducerError) -> Self {
        match e {
            ProducerError::Broker { code, message, .. } => kafka(code, message.as_deref(), ""),
            ProducerError::UnknownTopic(t) => CliError::Kafka {
                name: "UNKNOWN_TOPIC_OR_PARTITION".into(),
                message: format!("topic '{t}'; create it with `strom topics create`"),
            },
            ProducerError::Connection(c) => connection_hint(c),
            other => CliError::Input(other.to_string()),
        }
    }
}

pub async fn run(cli: Cli) -> Result<(), CliError> {
    let target = Target::from_cli(&cli)?;
    let t = &target;
    let bootstrap = cli.bootstrap_server.as_str();
    let result = match cli.command {
        Command::Topics(c) => topics::run(t, c).await,
        Command::Cluster(ClusterArgs { action: None }) => topics::cluster(t).await,
        Command::Cluster(ClusterArgs {
            action: Some(ClusterCommand::Decommission(a)),
        }) => cluster::decommission(t, a).await,
        Command::Produce(a) => produce::run(t, a).await,
        Command::Consume(a) => consume::run(t, a).await,
        Command::Perf(p) => perf::run(t, p).await,
        Command::Groups(g) => groups::run(t, g).await,
        Command::Transactions(c) => transactions::run(t, c).await,
        Command::Users(u) => users::run(t, u).await,
        Command::Acls(a) => acls::run(t, a).await,
        Command::Quotas(q) => quotas::run(t, q).await,
        Command::LeaderElection(a) => leader_election::run(t, a).await,
        Command::Partitions(PartitionsCommand::Reassign(a)) => reassign::run(t, a).await,
        Command::Connect(c) => return connect::run(c).await,
        Command::MetadataQuorum(q) => return quorum::run(q).await,
        Command::Features(c) => features::run(t, c).await,
    };
    result.map_err(|e| {
        let why = match e {
            CliError::Unreachable(why) => why,
            CliError::Client(c @ (ClientError::Io { .. } | ClientError::Closed)) => c.to_string(),
            other => return other,
        };
        CliError::Input(format!(
            "cannot reach the cluster at {bootstrap} ({why}); is a broker listening there? \
             (--bootstrap-server or STROM_BOOTSTRAP)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_one_line_with_the_kafka_name_and_a_hint() {
        let e = kafka(36, None, "topic 'x'");
        let line = e.to_string();
        assert!(
            line.starts_with("TOPIC_ALREADY_EXISTS: topic 'x'; choose another name"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let e = kafka(3, Some("no such partition"), "");
        assert_eq!(
            e.to_string(),
            "UNKNOWN_TOPIC_OR_PARTITION: no such partition; check the name with `strom topics list`"
        );
    }

    #[test]
    fn key_value_arguments() {
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_kv("=x").is_err());
        assert!(parse_kv("novalue").is_err());
    }
}
