//! Broker configuration: one typed struct, every field a clap flag with a `STROM_*` env var.
//! Names follow Kafka's (`num.partitions` is `--num-partitions`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct BrokerConfig {
    /// Run one process holding both the metadata controller and the broker (the embedded,
    /// single-node default).
    #[arg(long, env = "STROM_DEV")]
    pub dev: bool,

    /// Controllers to join, as host:port,... (their --listen addresses). Not with --dev.
    #[arg(long, env = "STROM_QUORUM", value_delimiter = ',')]
    pub quorum: Vec<String>,

    /// In --dev mode, the address of the embedded single-voter controller.
    #[arg(long, env = "STROM_QUORUM_LISTEN", default_value = "127.0.0.1:9093")]
    pub quorum_listen: SocketAddr,

    /// In --dev mode, the Kafka release whose `metadata.version` (and the feature levels it
    /// allows) a new embedded controller finalizes, as `kafka-storage.sh format
    /// --release-version` does: "3.9" or "4.0-IV1". Default: the newest this build supports.
    /// Ignored once the cluster exists; raise it with `strom features upgrade`.
    #[arg(long, env = "STROM_RELEASE_VERSION", value_parser = metadata_quorum::features::parse_release)]
    pub release_version: Option<i16>,

    /// In --dev mode, how long a silent broker keeps its session (broker.session.timeout.ms).
    #[arg(long, env = "STROM_BROKER_SESSION_TIMEOUT_MS", default_value_t = 3000)]
    pub broker_session_timeout_ms: u64,

    /// How often this broker heartbeats the controller (broker.heartbeat.interval.ms).
    #[arg(
        long,
        env = "STROM_BROKER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 500
    )]
    pub broker_heartbeat_interval_ms: u64,

    /// This broker's id (Kafka's node.id).
    #[arg(long, env = "STROM_NODE_ID", default_value_t = 1)]
    pub node_id: i32,

    /// Take the node id from the hostname's trailing ordinal (`strom-broker-2` is broker 2),
    /// as a Kubernetes StatefulSet names its pods. Not with --node-id.
    #[arg(long, env = "STROM_NODE_ID_FROM_HOSTNAME", conflicts_with = "node_id")]
    pub node_id_from_hostname: bool,

    /// This broker's rack (Kafka's broker.rack): the replicas of a partition are placed on
    /// as many racks as there are, and a consumer naming its rack (client.rack) may read from
    /// a replica there (KIP-392, see --replica-selector-class). Empty means no rack, so an
    /// environment variable filled from an absent Kubernetes label leaves it unset.
    #[arg(long, env = "STROM_BROKER_RACK")]
    pub broker_rack: Option<String>,

    /// Which replica a consumer that names its rack reads from (Kafka's
    /// replica.selector.class): `org.apache.kafka.common.replica.RackAwareReplicaSelector`
    /// (or `rack-aware`) sends it to an in-sync replica in its rack; unset, or Kafka's
    /// `LeaderSelector`, it reads from the leader.
    #[arg(long, env = "STROM_REPLICA_SELECTOR_CLASS", value_parser = parse_replica_selector, default_value = "")]
    pub replica_selector_class: ReplicaSelector,

    /// Where partition logs and metadata live.
    #[arg(long, env = "STROM_DATA_DIR", default_value = "./strom-data")]
    pub data_dir: PathBuf,

    /// The bytes of partition data this broker is meant to hold at most, which the
    /// controller's replica balancer keeps it under (with --auto-replica-balance-enable on the
    /// quorum); by default the size of the file system holding --data-dir.
    #[arg(long, env = "STROM_LOG_DIR_CAPACITY_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub log_dir_capacity_bytes: Option<u64>,

    /// How often this broker reports its partitions' sizes to the controller.
    #[arg(
        long,
        env = "STROM_LOG_DIR_REPORT_INTERVAL_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(100..)
    )]
    pub log_dir_report_interval_ms: u64,

    /// Address the Kafka protocol listener binds.
    #[arg(long, env = "STROM_KAFKA_LISTEN", default_value = "127.0.0.1:9092")]
    pub kafka_listen: SocketAddr,

    /// host:port clients are told to connect to (Kafka's advertised.listeners); defaults to
    /// --kafka-listen, which must then not be a wildcard address.
    #[arg(long, env = "STROM_ADVERTISED_KAFKA")]
    pub advertised_kafka: Option<String>,

    /// host:port other brokers replicate from (Kafka's inter-broker listener), when it
    /// differs from what clients use, e.g. inside a container network; defaults to the
    /// advertised Kafka address.
    #[arg(long, env = "STROM_ADVERTISED_REPLICATION")]
    pub advertised_replication: Option<String>,

    /// Address the HTTP API binds.
    #[arg(long, env = "STROM_HTTP_LISTEN", default_value = "127.0.0.1:9644")]
    pub http_listen: SocketAddr,

    /// Create a topic when a client first asks for it in Metadata or Produce
    /// (auto.create.topics.enable).
    #[arg(long, env = "STROM_AUTO_CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,

    /// Partitions of an auto-created topic, or of one created with -1 (num.partitions).
    #[arg(long, env = "STROM_NUM_PARTITIONS", default_value_t = 1)]
    pub num_partitions: u32,

    /// Replicas of an auto-created topic (default.replication.factor).
    #[arg(long, env = "STROM_DEFAULT_REPLICATION_FACTOR", default_value_t = 1)]
    pub default_replication_factor: u16,

    /// Largest record batch accepted, in bytes (message.max.bytes; Kafka's default).
    #[arg(long, env = "STROM_MESSAGE_MAX_BYTES", default_value_t = 1_048_588)]
    pub message_max_bytes: usize,

    /// The most record bytes one Fetch answer carries, whatever the request asks (Kafka's
    /// broker fetch.max.bytes; at least one batch is always returned). Kafka's default is
    /// 55 MiB; 16 MiB bounds what a catch-up read holds in memory per fetch.
    #[arg(
        long,
        env = "STROM_FETCH_MAX_BYTES",
        default_value_t = 16 << 20,
        value_parser = clap::value_parser!(u64).range(1024..=i32::MAX as u64)
    )]
    pub fetch_max_bytes: u64,

    /// Largest request frame accepted, in bytes (socket.request.max.bytes).
    #[arg(
        long,
        env = "STROM_SOCKET_REQUEST_MAX_BYTES",
        default_value_t = 104_857_600
    )]
    pub socket_request_max_bytes: usize,

    /// Default retention of a partition's batches by age, in ms (log.retention.ms; -1: forever).
    #[arg(
        long,
        env = "STROM_LOG_RETENTION_MS",
        default_value_t = 604_800_000,
        allow_negative_numbers = true
    )]
    pub log_retention_ms: i64,

    /// Default retention of a partition by size, in bytes (log.retention.bytes; -1: no limit).
    #[arg(long, env = "STROM_LOG_RETENTION_BYTES", default_value_t = -1, allow_negative_numbers = true)]
    pub log_retention_bytes: i64,

    /// Default cleanup.policy: delete, compact, or compact,delete (log.cleanup.policy).
    #[arg(long, env = "STROM_LOG_CLEANUP_POLICY", default_value = "delete")]
    pub log_cleanup_policy: String,

    /// Default min.insync.replicas for acks=all.
    #[arg(long, env = "STROM_MIN_INSYNC_REPLICAS", default_value_t = 1)]
    pub min_insync_replicas: u16,

    /// How often retention and compaction look at every partition (log.retention.check.interval.ms).
    #[arg(
        long,
        env = "STROM_LOG_RETENTION_CHECK_INTERVAL_MS",
        default_value_t = 300_000
    )]
    pub log_retention_check_interval_ms: u64,

    /// How long a new consumer group waits for more members before its first rebalance
    /// (group.initial.rebalance.delay.ms).
    #[arg(
        long,
        env = "STROM_GROUP_INITIAL_REBALANCE_DELAY_MS",
        default_value_t = 3000
    )]
    pub group_initial_rebalance_delay_ms: u64,

    /// How long a member of a consumer-protocol group (KIP-848, `group.protocol=consumer`)
    /// may go without a heartbeat before it is removed (group.consumer.session.timeout.ms).
    #[arg(
        long,
        env = "STROM_GROUP_CONSUMER_SESSION_TIMEOUT_MS",
        default_value_t = 45_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub group_consumer_session_timeout_ms: u64,

    /// How often members of a consumer-protocol group heartbeat
    /// (group.consumer.heartbeat.interval.ms); it is also how soon a member learns that
    /// partitions it waits for were released.
    #[arg(
        long,
        env = "STROM_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 5_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub group_consumer_heartbeat_interval_ms: u64,

    /// Which conversions between classic and consumer-protocol groups happen online
    /// (group.consumer.migration.policy): `bidirectional` (the default), `upgrade` (a classic
    /// group becomes a consumer group at its first consumer-protocol member), `downgrade` (a
    /// consumer group whose last consumer-protocol member left becomes classic again), or
    /// `disabled`.
    #[arg(
        long,
        env = "STROM_GROUP_CONSUMER_MIGRATION_POLICY",
        default_value = "bidirectional",
        value_parser = migration_policy
    )]
    pub group_consumer_migration_policy: crate::group::MigrationPolicy,

    /// Incremental fetch sessions (KIP-227) kept at once
    /// (max.incremental.fetch.session.cache.slots); 0 turns them off.
    #[arg(
        long,
        env = "STROM_MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS",
        default_value_t = 1000
    )]
    pub max_incremental_fetch_session_cache_slots: usize,

    /// How long a share-group member holds the records a ShareFetch gave it before they go
    /// to another member (group.share.record.lock.duration.ms).
    #[arg(
        long,
        env = "STROM_GROUP_SHARE_RECORD_LOCK_DURATION_MS",
        default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(metadata_quorum::configs::MIN_SHARE_RECORD_LOCK_DURATION_MS..=metadata_quorum::configs::MAX_SHARE_RECORD_LOCK_DURATION_MS)
    )]
    pub group_share_record_lock_duration_ms: u64,

    /// How many times a record is delivered to a share group before it is archived
    /// (group.share.delivery.count.limit).
    #[arg(
        long,
        env = "STROM_GROUP_SHARE_DELIVERY_COUNT_LIMIT",
        default_value_t = 5,
        value_parser = clap::value_parser!(i16).range(metadata_quorum::configs::MIN_SHARE_DELIVERY_COUNT_LIMIT as i64..=metadata_quorum::configs::MAX_SHARE_DELIVERY_COUNT_LIMIT as i64)
    )]
    pub group_share_delivery_count_limit: i16,

    /// Records in flight per share-partition (group.share.partition.max.record.locks).
    #[arg(
        long,
        env = "STROM_GROUP_SHARE_PARTITION_MAX_RECORD_LOCKS",
        default_value_t = 2000,
        value_parser = clap::value_parser!(i64).range(metadata_quorum::configs::MIN_SHARE_PARTITION_MAX_RECORD_LOCKS..=metadata_quorum::configs::MAX_SHARE_PARTITION_MAX_RECORD_LOCKS)
    )]
    pub group_share_partition_max_record_locks: i64,

    /// How long a share-group member may go without a heartbeat
    /// (group.share.session.timeout.ms).
    #[arg(
        long,
        env = "STROM_GROUP_SHARE_SESSION_TIMEOUT_MS",
        default_value_t = 45_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub group_share_session_timeout_ms: u64,

    /// How often share-group members heartbeat (group.share.heartbeat.interval.ms).
    #[arg(
        long,
        env = "STROM_GROUP_SHARE_HEARTBEAT_INTERVAL_MS",
        default_value_t = 5_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub group_share_heartbeat_interval_ms: u64,

    /// Where a share group starts reading a partition it has not read before
    /// (share.auto.offset.reset, the default of the group config of that name): `latest`
    /// (the log end, Kafka's default), `earliest`, or `by_duration:<ISO-8601 duration>` (the
    /// first record at or after that long ago, e.g. `by_duration:PT1H`).
    #[arg(
        long,
        env = "STROM_SHARE_AUTO_OFFSET_RESET",
        default_value = "latest",
        value_parser = share_auto_offset_reset
    )]
    pub share_auto_offset_reset: metadata_quorum::configs::ShareAutoOffsetReset,

    /// The longest transaction timeout a producer may ask for (transaction.max.timeout.ms);
    /// InitProducerId above it is refused with INVALID_TRANSACTION_TIMEOUT.
    #[arg(
        long,
        env = "STROM_TRANSACTION_MAX_TIMEOUT_MS",
        default_value_t = 900_000
    )]
    pub transaction_max_timeout_ms: i32,

    /// KIP-890 produce-time verification (transaction.partition.verification.enable): before
    /// appending a transactional batch that opens its producer's transaction on a partition,
    /// the leader asks the coordinator whether the partition is in the transaction, so a late
    /// or stray batch cannot leave a transaction hanging.
    #[arg(long, env = "STROM_TRANSACTION_PARTITION_VERIFICATION_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub transaction_partition_verification_enable: bool,

    /// How often the transaction coordinator aborts transactions that outlived their
    /// timeout (transaction.abort.timed.out.transaction.cleanup.interval.ms).
    #[arg(
        long,
        env = "STROM_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS",
        default_value_t = 10_000
    )]
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: u64,

    /// A transactional id unused for this long is forgotten (transactional.id.expiration.ms).
    #[arg(
        long,
        env = "STROM_TRANSACTIONAL_ID_EXPIRATION_MS",
        default_value_t = 604_800_000
    )]
    pub transactional_id_expiration_ms: i64,

    /// Replication factor of `__transaction_state` (transaction.state.log.replication.factor),
    /// capped at the live brokers when it is created.
    #[arg(
        long,
        env = "STROM_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        default_value_t = 3
    )]
    pub transaction_state_log_replication_factor: i16,

    /// A follower not caught up with the leader for this long leaves the ISR
    /// (replica.lag.time.max.ms).
    #[arg(long, env = "STROM_REPLICA_LAG_TIME_MAX_MS", default_value_t = 30_000)]
    pub replica_lag_time_max_ms: u64,

    /// How long a follower's fetch waits at the leader for new records
    /// (replica.fetch.wait.max.ms).
    #[arg(long, env = "STROM_REPLICA_FETCH_WAIT_MAX_MS", default_value_t = 500)]
    pub replica_fetch_wait_max_ms: u64,

    /// Record per-request and per-topic metrics (request counts and times, bytes in and out).
    /// Off, `/metrics` still serves the gauges read at scrape time; the switch exists to
    /// measure what recording costs.
    #[arg(long, env = "STROM_METRICS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_enabled: bool,

    /// On SIGTERM, hand every leadership to another in-sync replica through the controller
    /// before closing (controlled.shutdown.enable), so clients move without an error.
    #[arg(long, env = "STROM_CONTROLLED_SHUTDOWN_ENABLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub controlled_shutdown_enable: bool,

    /// How long a controlled shutdown waits for the controller before the broker stops anyway.
    #[arg(
        long,
        env = "STROM_CONTROLLED_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub controlled_shutdown_timeout_ms: u64,

    /// TESTING ONLY, loses data: answer acks=all as soon as the leader has the batch, before
    /// the in-sync replicas do. It exists so the consistency checker can prove it notices.
    #[arg(long, hide = true, env = "STROM_UNSAFE_ACK_BEFORE_REPLICATION")]
    pub unsafe_ack_before_replication: bool,

    /// Block cache of the log store, in MiB.
    #[arg(long, env = "STROM_BLOCK_CACHE_MB", default_value_t = 64)]
    pub block_cache_mb: usize,

    /// Memory all partitions' memtables may use together, in MiB; past it the oldest is
    /// flushed to disk. At twice this (memtables waiting for a slow disk), writes wait for
    /// the running flushes.
    #[arg(long, env = "STROM_WRITE_BUFFER_MB", default_value_t = 128)]
    pub write_buffer_mb: usize,

    /// Write out a memtable of 4 MiB or more once it has taken no write for between one and
    /// two of these intervals, giving its memory back (after a burst, idle partitions would
    /// otherwise hold up to --write-buffer-mb until the WAL limit or a restart). 0: never.
    #[arg(long, env = "STROM_MEMTABLE_IDLE_FLUSH_MS", default_value_t = 30_000)]
    pub memtable_idle_flush_ms: u64,

    /// How many partitions keep their batches in a RocksDB column family of their own (where
    /// a flushed file is never rewritten); the rest share one. 0: all share.
    #[arg(long, env = "STROM_STORAGE_PARTITION_FAMILIES", default_value_t = 128)]
    pub storage_partition_families: usize,

    /// Write the log store's table files with O_DIRECT, bypassing the page cache, when the
    /// data directory's file system takes it.
    #[arg(long, env = "STROM_STORAGE_DIRECT_IO", default_value_t = true, action = clap::ArgAction::Set)]
    pub storage_direct_io: bool,

    /// Keep the log store's write-ahead log in this directory instead of the data directory:
    /// meant for a tmpfs that outlives the broker process but not the host, so that the WAL
    /// never reaches the disk. A crash of the host then loses what was written since the last
    /// flush (left to the other replicas, as Kafka leaves its unflushed page cache); every
    /// flush writes all partitions at once, and --memtable-idle-flush-ms bounds how long a
    /// write stays only in memory (two intervals). The directory is this broker's only, and
    /// should hold four times --write-buffer-mb (docs/decisions/0029-wal-on-tmpfs.md).
    #[arg(long, env = "STROM_STORAGE_WAL_DIR")]
    pub storage_wal_dir: Option<PathBuf>,

    /// Kafka listeners as NAME://host:port,... (listeners), e.g.
    /// PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094. Replaces --kafka-listen.
    #[arg(long, env = "STROM_LISTENERS")]
    pub listeners: Option<String>,

    /// What clients are told per listener, NAME://host:port,... (advertised.listeners);
    /// a listener not named here advertises the address it binds.
    #[arg(long, env = "STROM_ADVERTISED_LISTENERS")]
    pub advertised_listeners: Option<String>,

    /// Security protocols of listeners not named after one, NAME:PROTOCOL,...
    /// (listener.security.protocol.map).
    #[arg(long, env = "STROM_LISTENER_SECURITY_PROTOCOL_MAP")]
    pub listener_security_protocol_map: Option<String>,

    /// The listener other brokers replicate from (inter.broker.listener.name); defaults to
    /// PLAINTEXT if there is one, else the first listener.
    #[arg(long, env = "STROM_INTER_BROKER_LISTENER_NAME")]
    pub inter_broker_listener_name: Option<String>,

    /// PEM certificate chain of the SSL and SASL_SSL listeners.
    #[arg(long, env = "STROM_SSL_CERTIFICATE")]
    pub ssl_certificate: Option<PathBuf>,

    /// PEM private key of --ssl-certificate.
    #[arg(long, env = "STROM_SSL_KEY")]
    pub ssl_key: Option<PathBuf>,

    /// PEM CA certificates that client certificates must chain to (ssl.truststore).
    #[arg(long, env = "STROM_SSL_CA")]
    pub ssl_ca: Option<PathBuf>,

    /// Whether TLS clients present a certificate (ssl.client.auth).
    #[arg(
        long,
        env = "STROM_SSL_CLIENT_AUTH",
        value_enum,
        default_value = "none"
    )]
    pub ssl_client_auth: crate::security::tls::ClientAuth,

    /// How an mTLS client's certificate subject becomes its user name
    /// (ssl.principal.mapping.rules): RULE:pattern/replacement/[LU],...,DEFAULT.
    #[arg(
        long,
        env = "STROM_SSL_PRINCIPAL_MAPPING_RULES",
        default_value = "DEFAULT"
    )]
    pub ssl_principal_mapping_rules: String,

    /// How often the TLS files are checked for changes, in ms.
    #[arg(long, env = "STROM_SSL_RELOAD_INTERVAL_MS", default_value_t = 2000)]
    pub ssl_reload_interval_ms: u64,

    /// SASL mechanisms the SASL listeners offer (sasl.enabled.mechanisms).
    #[arg(
        long,
        env = "STROM_SASL_ENABLED_MECHANISMS",
        value_delimiter = ',',
        default_value = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    )]
    pub sasl_enabled_mechanisms: Vec<String>,

    /// A SCRAM user to create at start-up if it has no credential yet, as
    /// NAME=PASSWORD[:MECHANISM] (repeatable); without a mechanism both SCRAM-SHA-256 and
    /// SCRAM-SHA-512 are created (kafka-storage format --add-scram).
    #[arg(long = "scram-user", env = "STROM_SCRAM_USERS", value_delimiter = ';')]
    pub scram_users: Vec<String>,

    /// A SASL session lasts this long before the client must re-authenticate
    /// (connections.max.reauth.ms, KIP-368); 0: forever.
    #[arg(long, env = "STROM_CONNECTIONS_MAX_REAUTH_MS", default_value_t = 0)]
    pub connections_max_reauth_ms: u64,

    /// Enforce ACLs on every request (authorizer.class.name set, in Kafka).
    #[arg(long, env = "STROM_AUTHORIZER")]
    pub authorizer: bool,

    /// Principals no ACL applies to, User:name;User:other (super.users).
    #[arg(long, env = "STROM_SUPER_USERS", value_delimiter = ';')]
    pub super_users: Vec<String>,

    /// With the authoriser on, allow what no ACL speaks of (allow.everyone.if.no.acl.found).
    #[arg(long, env = "STROM_ALLOW_EVERYONE_IF_NO_ACL_FOUND")]
    pub allow_everyone_if_no_acl_found: bool,

    /// The SASL mechanism brokers use on a SASL inter-broker listener
    /// (sasl.mechanism.inter.broker.protocol).
    #[arg(
        long,
        env = "STROM_SASL_MECHANISM_INTER_BROKER_PROTOCOL",
        default_value = "SCRAM-SHA-512"
    )]
    pub sasl_mechanism_inter_broker_protocol: String,

    /// The user brokers authenticate as on a SASL inter-broker listener.
    #[arg(long, env = "STROM_INTER_BROKER_SASL_USERNAME")]
    pub inter_broker_sasl_username: Option<String>,

    /// Its password.
    #[arg(long, env = "STROM_INTER_BROKER_SASL_PASSWORD", hide_env_values = true)]
    pub inter_broker_sasl_password: Option<String>,

    /// Largest request accepted before a connection has authenticated
    /// (sasl.server.max.receive.size).
    #[arg(
        long,
        env = "STROM_SASL_SERVER_MAX_RECEIVE_SIZE",
        default_value_t = 524_288
    )]
    pub sasl_server_max_receive_size: usize,

    /// The JWKS that OAUTHBEARER tokens are checked against: file:///path or a path
    /// (sasl.oauthbearer.jwks.endpoint.url).
    #[arg(long, env = "STROM_SASL_OAUTHBEARER_JWKS_ENDPOINT_URL")]
    pub sasl_oauthbearer_jwks_endpoint_url: Option<String>,

    /// Audiences an OAUTHBEARER token must name one of, comma-separated
    /// (sasl.oauthbearer.expected.audience); none: not checked.
    #[arg(
        long,
        env = "STROM_SASL_OAUTHBEARER_EXPECTED_AUDIENCE",
        value_delimiter = ','
    )]
    pub sasl_oauthbearer_expected_audience: Vec<String>,

    /// The issuer an OAUTHBEARER token must name (sasl.oauthbearer.expected.issuer).
    #[arg(long, env = "STROM_SASL_OAUTHBEARER_EXPECTED_ISSUER")]
    pub sasl_oauthbearer_expected_issuer: Option<String>,

    /// The claim that names the user (sasl.oauthbearer.sub.claim.name).
    #[arg(
        long,
        env = "STROM_SASL_OAUTHBEARER_SUB_CLAIM_NAME",
        default_value = "sub"
    )]
    pub sasl_oauthbearer_sub_claim_name: String,

    /// Leeway for a token's exp, in seconds (sasl.oauthbearer.clock.skew.seconds).
    #[arg(
        long,
        env = "STROM_SASL_OAUTHBEARER_CLOCK_SKEW_SECONDS",
        default_value_t = 30
    )]
    pub sasl_oauthbearer_clock_skew_seconds: u64,

    /// How often the JWKS file is checked for changes, in ms; a token naming an unknown key
    /// also makes it re-read (sasl.oauthbearer.jwks.endpoint.refresh.ms).
    #[arg(
        long,
        env = "STROM_SASL_OAUTHBEARER_JWKS_ENDPOINT_REFRESH_MS",
        default_value_t = 3_600_000
    )]
    pub sasl_oauthbearer_jwks_endpoint_refresh_ms: u64,

    /// Serve the HTTP API over TLS, with --ssl-certificate and --ssl-key (and
    /// --ssl-client-auth, as the Kafka listeners).
    #[arg(long, env = "STROM_HTTP_TLS")]
    pub http_tls: bool,

    /// Reach the controllers (and, with --dev, serve the embedded one) over mutual TLS:
    /// --ssl-certificate and --ssl-key identify this node, --ssl-ca is the CA of every peer.
    #[arg(long, env = "STROM_QUORUM_TLS")]
    pub quorum_tls: bool,

    /// How many samples a quota's rate is measured over (quota.window.num).
    #[arg(long, env = "STROM_QUOTA_WINDOW_NUM", default_value_t = 11)]
    pub quota_window_num: u32,

    /// How long each quota sample lasts, in seconds (quota.window.size.seconds).
    #[arg(long, env = "STROM_QUOTA_WINDOW_SIZE_SECONDS", default_value_t = 1)]
    pub quota_window_size_seconds: u64,
}

/// replica.selector.class: where a consumer naming its rack reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicaSelector {
    /// Always the leader (Kafka's default, and its `LeaderSelector`).
    #[default]
    Leader,
    /// An in-sync replica in the consumer's rack when there is one (`RackAwareReplicaSelector`).
    RackAware,
}

fn parse_replica_selector(s: &str) -> Result<ReplicaSelector, String> {
    match s.trim() {
        "" | "org.apache.kafka.common.replica.LeaderSelector" | "leader" => {
            Ok(ReplicaSelector::Leader)
        }
        "org.apache.kafka.common.replica.RackAwareReplicaSelector" | "rack-aware" => {
            Ok(ReplicaSelector::RackAware)
        }
        other => Err(format!(
            "unknown replica selector '{other}': use org.apache.kafka.common.replica.RackAwareReplicaSelector (rack-aware) or leave it unset"
        )),
    }
}

impl BrokerConfig {
    /// --broker-rack, with an empty value meaning none.
    pub fn rack(&self) -> Option<String> {
        self.broker_rack
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
    }
}

/// A `--scram-user`: the user, the password and the mechanisms to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    pub user: String,
    pub password: String,
    pub mechanisms: Vec<strom_client::auth::scram::Mechanism>,
}

/// Parses NAME=PASSWORD[:MECHANISM].
pub fn parse_scram_user(s: &str) -> Result<ScramUser, ConfigError> {
    use strom_client::auth::scram::Mechanism;
    let invalid = |reason: &str| ConfigError::Invalid {
        flag: "--scram-user",
        reason: reason.to_string(),
    };
    let (user, rest) = s
        .split_once('=')
        .ok_or_else(|| invalid("expected NAME=PASSWORD[:MECHANISM]"))?;
    let (password, mechanisms) = match rest.rsplit_once(':') {
        Some((p, m)) if Mechanism::from_name(m).is_some() => {
            (p, vec![Mechanism::from_name(m).expect("checked")])
        }
        _ => (rest, Mechanism::ALL.to_vec()),
    };
    if user.is_empty() || password.is_empty() {
        return Err(invalid("the name and the password must not be empty"));
    }
    Ok(ScramUser {
        user: user.to_string(),
        password: password.to_string(),
        mechanisms,
    })
}

/// Parses `host:port` for `flag`.
pub fn host_port(flag: &'static str, a: &str) -> Result<(String, u16), ConfigError> {
    let (host, port) = a.rsplit_once(':').ok_or_else(|| ConfigError::Invalid {
        flag,
        reason: format!("'{a}' is not host:port"),
    })?;
    let port = port.parse().map_err(|_| ConfigError::Invalid {
        flag,
        reason: format!("'{port}' is not a port"),
    })?;
    if host.is_empty() {
        return Err(ConfigError::Invalid {
            flag,
            reason: "the host is empty".into(),
        });
    }
    Ok((host.to_string(), port))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{flag}: {reason}")]
    Invalid { flag: &'static str, reason: String },
}

impl BrokerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |flag, reason: &str| {
            Err(ConfigError::Invalid {
                flag,
                reason: reason.to_string(),
            })
        };
        match (self.dev, self.quorum.is_empty()) {
            (true, false) => {
                return invalid(
                    "--quorum",
                    "not with --dev, which embeds its own controller",
                )
            }
            (false, true) => {
                return invalid(
                    "--quorum",
                    "give the controllers (host:port,...) or start a single node with --dev",
                )
            }
            _ => {}
        }
        if self.transaction_max_timeout_ms <= 0 {
            return invalid("--transaction-max-timeout-ms", "must be above 0");
        }
        if self.transaction_abort_timed_out_transaction_cleanup_interval_ms == 0 {
            return invalid(
                "--transaction-abort-timed-out-transaction-cleanup-interval-ms",
                "must be above 0",
            );
        }
        if self.transaction_state_log_replication_factor < 1 {
            return invalid(
                "--transaction-state-log-replication-factor",
                "must be at least 1",
            );
        }
        if self.replica_lag_time_max_ms == 0 {
            return invalid("--replica-lag-time-max-ms", "must be above 0");
        }
        if self.replica_fetch_wait_max_ms == 0
            || self.replica_fetch_wait_max_ms >= self.replica_lag_time_max_ms
        {
            return invalid(
                "--replica-fetch-wait-max-ms",
                "must be above 0 and below --replica-lag-time-max-ms",
            );
        }
        if self.quorum.iter().any(|q| !q.contains(':')) {
            return invalid("--quorum", "each controller is host:port");
        }
        if self.broker_heartbeat_interval_ms == 0
            || self.broker_heartbeat_interval_ms >= self.broker_session_timeout_ms
        {
            return invalid(
                "--broker-heartbeat-interval-ms",
                "must be above 0 and below --broker-session-timeout-ms",
            );
        }
        if self.node_id < 0 {
            return invalid("--node-id", "must be 0 or more");
        }
        if self.num_partitions == 0 {
            return invalid("--num-partitions", "must be at least 1");
        }
        if self.default_replication_factor == 0 {
            return invalid("--default-replication-factor", "must be at least 1");
        }
        if self.message_max_bytes < 128 {
            return invalid("--message-max-bytes", "must be at least 128");
        }
        if self.socket_request_max_bytes < self.message_max_bytes {
            return invalid(
                "--socket-request-max-bytes",
                "must be at least --message-max-bytes",
            );
        }
        for (name, value) in self.topic_config_defaults() {
            if let Err(e) = metadata_quorum::configs::validate(name, &value) {
                return Err(ConfigError::Invalid {
                    flag: "a topic default",
                    reason: e.to_string(),
                });
            }
        }
        if self.log_retention_check_interval_ms == 0 {
            return invalid("--log-retention-check-interval-ms", "must be above 0");
        }
        if self.socket_request_max_bytes > i32::MAX as usize {
            return invalid("--socket-request-max-bytes", "must fit in 31 bits");
        }
        if let Some(r) = &self.advertised_replication {
            host_port("--advertised-replication", r)?;
        }
        for u in &self.scram_users {
            parse_scram_user(u)?;
        }
        for s in &self.super_users {
            if !s.trim().is_empty() && !s.trim().contains(':') {
                return invalid("--super-users", "each super user is a principal, User:name");
            }
        }
        if self
            .sasl_mechanisms()?
            .contains(&crate::security::sasl::SaslMechanism::OAuthBearer)
        {
            self.oauth()?;
        }
        if let Err(reason) =
            crate::security::principal::MappingRules::parse(&self.ssl_principal_mapping_rules)
        {
            return invalid("--ssl-principal-mapping-rules", &reason);
        }
        if self.ssl_reload_interval_ms == 0 {
            return invalid("--ssl-reload-interval-ms", "must be above 0");
        }
        if (self.http_tls || self.quorum_tls)
            && (self.ssl_certificate.is_none() || self.ssl_key.is_none())
        {
            return invalid(
                "--ssl-certificate",
                "--http-tls and --quorum-tls need --ssl-certificate and --ssl-key",
            );
        }
        if self.quorum_tls && self.ssl_ca.is_none() {
            return invalid(
                "--ssl-ca",
                "--quorum-tls needs the CA of the controllers' and brokers' certificates",
            );
        }
        if self.quota_window_num < 2 {
            return invalid("--quota-window-num", "must be at least 2");
        }
        if self.quota_window_size_seconds == 0 {
            return invalid("--quota-window-size-seconds", "must be at least 1");
        }
        if self.sasl_server_max_receive_size < 1024 {
            return invalid("--sasl-server-max-receive-size", "must be at least 1024");
        }
        let listeners = self.listeners()?;
        if listeners.iter().any(|l| l.protocol.tls()) {
            if self.ssl_certificate.is_none() || self.ssl_key.is_none() {
                return invalid(
                    "--ssl-certificate",
                    "an SSL or SASL_SSL listener needs --ssl-certificate and --ssl-key",
                );
            }
            if self.ssl_client_auth != crate::security::tls::ClientAuth::None
                && self.ssl_ca.is_none()
            {
                return invalid(
                    "--ssl-ca",
                    "--ssl-client-auth needs the CA of client certificates",
                );
            }
        }
        self.inter_broker_listener(&listeners)?;
        if let Err(reason) = self.inter_broker_settings() {
            return invalid("--inter-broker-listener-name", &reason);
        }
        Ok(())
    }

    /// How this broker connects to the others' inter-broker listener: TLS trusting --ssl-ca
    /// (presenting this broker's own certificate when client certificates are asked for),
    /// SASL as --inter-broker-sasl-username.
    pub fn inter_broker_security(&self) -> Result<strom_client::security::Security, String> {
        let (protocol, tls, sasl) = self.inter_broker_settings()?;
        strom_client::security::Security::new(protocol, tls.as_ref(), sasl)
    }

    /// What [`Self::inter_broker_security`] is built from, checked without reading files.
    #[allow(clippy::type_complexity)]
    fn inter_broker_settings(
        &self,
    ) -> Result<
        (
            strom_client::security::Protocol,
            Option<strom_client::security::TlsFiles>,
            Option<strom_client::security::SaslCredentials>,
        ),
        String,
    > {
        use strom_client::auth::scram::Mechanism;
        use strom_client::security::{Protocol, SaslCredentials, TlsFiles};
        let listeners = self.listeners().map_err(|e| e.to_string())?;
        let inter = self
            .inter_broker_listener(&listeners)
            .map_err(|e| e.to_string())?;
        let protocol = Protocol::from_name(inter.protocol.name()).unwrap_or_default();
        let tls = TlsFiles {
            ca: self.ssl_ca.clone(),
            certificate: (self.ssl_client_auth != crate::security::tls::ClientAuth::None)
                .then(|| self.ssl_certificate.clone())
                .flatten(),
            key: (self.ssl_client_auth != crate::security::tls::ClientAuth::None)
                .then(|| self.ssl_key.clone())
                .flatten(),
            skip_hostname_check: false,
        };
        if inter.protocol.tls() && self.ssl_ca.is_none() {
            return Err(format!(
                "the inter-broker listener {} uses TLS: give --ssl-ca, the CA of the brokers' certificates",
                inter.name
            ));
        }
        let sasl = if inter.protocol.sasl() {
            let m = &self.sasl_mechanism_inter_broker_protocol;
            let scram = if m.eq_ignore_ascii_case("PLAIN") {
                None
            } else {
                Some(Mechanism::from_name(m).ok_or_else(|| {
                    format!("--sasl-mechanism-inter-broker-protocol '{m}' is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
                })?)
            };
            match (&self.inter_broker_sasl_username, &self.inter_broker_sasl_password) {
                (Some(u), Some(p)) => Some(SaslCredentials {
                    scram,
                    username: u.clone(),
                    password: p.clone(),
                }),
                _ => {
                    return Err(format!(
                        "the inter-broker listener {} uses SASL: give --inter-broker-sasl-username and --inter-broker-sasl-password",
                        inter.name
                    ))
                }
            }
        } else {
            None
        };
        Ok((protocol, inter.protocol.tls().then_some(tls), sasl))
    }

    /// The SASL mechanisms to offer, checked.
    pub fn sasl_mechanisms(
        &self,
    ) -> Result<Vec<crate::security::sasl::SaslMechanism>, ConfigError> {
        self.sasl_enabled_mechanisms
            .iter()
            .map(|m| {
                crate::security::sasl::SaslMechanism::from_name(m.trim()).ok_or_else(|| {
                    ConfigError::Invalid {
                        flag: "--sasl-enabled-mechanisms",
                        reason: format!(
                            "'{m}' is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"
                        ),
                    }
                })
            })
            .collect()
    }

    /// What OAUTHBEARER tokens are checked with, when OAUTHBEARER is enabled.
    pub fn oauth(&self) -> Result<crate::security::oauth::OAuthConfig, ConfigError> {
        use crate::security::oauth::OAuthConfig;
        let flag = "--sasl-oauthbearer-jwks-endpoint-url";
        let url = self
            .sasl_oauthbearer_jwks_endpoint_url
            .as_deref()
            .ok_or_else(|| ConfigError::Invalid {
                flag,
                reason: "OAUTHBEARER needs the JWKS its tokens are checked against".into(),
            })?;
        Ok(OAuthConfig {
            jwks_path: OAuthConfig::jwks_path(url)
                .map_err(|reason| ConfigError::Invalid { flag, reason })?,
            expected_audience: self
                .sasl_oauthbearer_expected_audience
                .iter()
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect(),
            expected_issuer: self.sasl_oauthbearer_expected_issuer.clone(),
            sub_claim: self.sasl_oauthbearer_sub_claim_name.clone(),
            clock_skew: std::time::Duration::from_secs(self.sasl_oauthbearer_clock_skew_seconds),
            refresh: std::time::Duration::from_millis(
                self.sasl_oauthbearer_jwks_endpoint_refresh_ms.max(1),
            ),
        })
    }

    /// The Kafka listeners: `--listeners`, or one PLAINTEXT listener on `--kafka-listen`.
    /// Ports may be 0 (the OS picks; the advertised port follows once bound).
    pub fn listeners(&self) -> Result<Vec<crate::security::ListenerSpec>, ConfigError> {
        use crate::security::{self as sec, ListenerSpec, SecurityProtocol};
        let Some(list) = &self.listeners else {
            return Ok(vec![ListenerSpec {
                name: "PLAINTEXT".into(),
                protocol: SecurityProtocol::Plaintext,
                bind: self.kafka_listen,
                advertised: self.advertised()?,
            }]);
        };
        let map = sec::parse_protocol_map(self.listener_security_protocol_map.as_deref())?;
        let advertised = match &self.advertised_listeners {
            Some(a) => sec::parse_listener_list("--advertised-listeners", a)?,
            None => vec![],
        };
        let listeners = sec::parse_listener_list("--listeners", list)?;
        for (name, _, _) in &advertised {
            if !listeners.iter().any(|(n, _, _)| n == name) {
                return Err(ConfigError::Invalid {
                    flag: "--advertised-listeners",
                    reason: format!("{name} is not one of --listeners"),
                });
            }
        }
        listeners
            .into_iter()
            .map(|(name, host, port)| {
                let protocol = map
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, p)| *p)
                    .ok_or_else(|| ConfigError::Invalid {
                        flag: "--listener-security-protocol-map",
                        reason: format!("no security protocol for listener {name}"),
                    })?;
                let bind = sec::bind_address("--listeners", &host, port)?;
                // --advertised-kafka stands for the PLAINTEXT listener's entry (so an overlay
                // can add --listeners to a setup that has it).
                let legacy = match (&self.advertised_kafka, name.as_str()) {
                    (Some(a), "PLAINTEXT") => Some(host_port("--advertised-kafka", a)?),
                    _ => None,
                };
                let advertised = match advertised.iter().find(|(n, _, _)| *n == name) {
                    Some((_, h, p)) if !h.is_empty() => (h.clone(), *p),
                    _ if legacy.is_some() => legacy.expect("checked"),
                    _ if bind.ip().is_unspecified() => {
                        return Err(ConfigError::Invalid {
                            flag: "--advertised-listeners",
                            reason: format!(
                            "listener {name} binds a wildcard address: say what clients connect to"
                        ),
                        })
                    }
                    _ => (bind.ip().to_string(), port),
                };
                Ok(ListenerSpec {
                    name,
                    protocol,
                    bind,
                    advertised,
                })
            })
            .collect()
    }

    /// The listener brokers use between themselves.
    pub fn inter_broker_listener<'a>(
        &self,
        listeners: &'a [crate::security::ListenerSpec],
    ) -> Result<&'a crate::security::ListenerSpec, ConfigError> {
        match &self.inter_broker_listener_name {
            Some(n) => listeners
                .iter()
                .find(|l| l.name.eq_ignore_ascii_case(n))
                .ok_or_else(|| ConfigError::Invalid {
                    flag: "--inter-broker-listener-name",
                    reason: format!("{n} is not one of the listeners"),
                }),
            None => Ok(listeners
                .iter()
                .find(|l| l.name == "PLAINTEXT")
                .unwrap_or(&listeners[0])),
        }
    }

    /// Topic configs whose broker-wide default comes from a flag, by topic config name.
    pub fn topic_config_defaults(&self) -> Vec<(&'static str, String)> {
        use metadata_quorum::configs as c;
        vec![
            (c::RETENTION_MS, self.log_retention_ms.to_string()),
            (c::RETENTION_BYTES, self.log_retention_bytes.to_string()),
            (c::CLEANUP_POLICY, self.log_cleanup_policy.clone()),
            (c::MIN_INSYNC_REPLICAS, self.min_insync_replicas.to_string()),
            (c::MAX_MESSAGE_BYTES, self.message_max_bytes.to_string()),
        ]
    }

    /// The (host, port) clients are told to use.
    pub fn advertised(&self) -> Result<(String, u16), ConfigError> {
        match &self.advertised_kafka {
            Some(a) => host_port("--advertised-kafka", a),
            None if self.kafka_listen.ip().is_unspecified() => Err(ConfigError::Invalid {
                flag: "--advertised-kafka",
                reason: "required when --kafka-listen is a wildcard address".into(),
            }),
            None => Ok((self.kafka_listen.ip().to_string(), self.kafka_listen.port())),
        }
    }
}

/// `--group-consumer-migration-policy`: Kafka's values, in any case.
fn migration_policy(s: &str) -> Result<crate::group::MigrationPolicy, String> {
    crate::group::MigrationPolicy::parse(s)
        .ok_or_else(|| format!("{s:?} is not one of disabled, upgrade, downgrade, bidirectional"))
}

fn share_auto_offset_reset(
    s: &str,
) -> Result<metadata_quorum::configs::ShareAutoOffsetReset, String> {
    metadata_quorum::configs::share_auto_offset_reset(s).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: BrokerConfig,
    }

    fn parse(args: &[&str]) -> BrokerConfig {
        Cli::try_parse_from(std::iter::once("strom-broker").chain(args.iter().copied()))
            .expect("parse")
            .config
    }

    #[test]
    fn defaults_are_valid_in_dev_mode() {
        let c = parse(&["--dev"]);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.advertised(), Ok(("127.0.0.1".to_string(), 9092)));
        assert!(c.auto_create_topics);
    }

    #[test]
    fn listeners_carry_protocols_and_advertised_addresses() {
        let c = parse(&["--dev"]);
        let l = c.listeners().expect("default");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, "PLAINTEXT");
        let c = parse(&[
            "--dev",
            "--listeners",
            "PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9094,INTERNAL://127.0.0.1:9095",
            "--advertised-listeners",
            "SASL_SSL://kafka.example:19094",
            "--listener-security-protocol-map",
            "INTERNAL:PLAINTEXT",
            "--inter-broker-listener-name",
            "internal",
            "--ssl-certificate",
            "c.pem",
            "--ssl-key",
            "k.pem",
        ]);
        assert_eq!(c.validate(), Ok(()));
        let l = c.listeners().expect("listeners");
        assert_eq!(l[1].protocol, crate::security::SecurityProtocol::SaslSsl);
        assert_eq!(l[1].advertised, ("kafka.example".to_string(), 19094));
        assert_eq!(l[2].advertised, ("127.0.0.1".to_string(), 9095));
        assert_eq!(c.inter_broker_listener(&l).expect("inter").name, "INTERNAL");

        let refused = |args: &[&str]| {
            let mut all = vec!["--dev"];
            all.extend_from_slice(args);
            parse(&all).validate().expect_err("refused")
        };
        // TLS without a certificate; a wildcard without an advertised address; an unknown
        // listener name; brokers over SASL (not built yet); client auth without a CA.
        refused(&["--listeners", "SSL://127.0.0.1:9093"]);
        refused(&["--listeners", "PLAINTEXT://0.0.0.0:9092"]);
        // --advertised-kafka (from an older setup) is the PLAINTEXT listener's address.
        let c = parse(&[
            "--dev",
            "--listeners",
            "PLAINTEXT://0.0.0.0:9092",
            "--advertised-kafka",
            "kafka.example:19092",
        ]);
        assert_eq!(
            c.listeners().expect("listeners")[0].advertised,
            ("kafka.example".to_string(), 19092)
        );
        refused(&["--listeners", "OTHER://127.0.0.1:9092"]);
        refused(&["--listeners", "SASL_PLAINTEXT://127.0.0.1:9092"]);
        refused(&[
            "--listeners",
            "SSL://127.0.0.1:9093,PLAINTEXT://127.0.0.1:9092",
            "--ssl-certificate",
            "c",
            "--ssl-key",
            "k",
            "--ssl-client-auth",
            "required",
        ]);
        refused(&["--sasl-enabled-mechanisms", "PLAIN,GSSAPI"]);
        refused(&["--scram-user", "alice"]);
        refused(&["--ssl-principal-mapping-rules", "RULE:oops"]);
    }

    #[test]
    fn scram_users_parse_with_and_without_a_mechanism() {
        use strom_client::auth::scram::Mechanism;
        let u = parse_scram_user("alice=pa:ss=word").expect("both");
        assert_eq!(
            (u.user.as_str(), u.password.as_str()),
            ("alice", "pa:ss=word")
        );
        assert_eq!(u.mechanisms, Mechanism::ALL.to_vec());
        let u = parse_scram_user("bob=pw:SCRAM-SHA-512").expect("one");
        assert_eq!(u.password, "pw");
        assert_eq!(u.mechanisms, vec![Mechanism::Sha512]);
        assert!(parse_scram_user("=pw").is_err());
        assert!(parse_scram_user("carol=").is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(
            parse(&[]).validate().is_err(),
            "--dev or --quorum is required"
        );
        assert!(parse(&["--quorum", "127.0.0.1:9093,127.0.0.1:9094"])
            .validate()
            .is_ok());
        assert!(parse(&["--dev", "--quorum", "127.0.0.1:9093"])
            .validate()
            .is_err());
        assert!(parse(&["--quorum", "nohostport"]).validate().is_err());
        assert!(parse(&["--dev", "--num-partitions", "0"])
            .validate()
            .is_err());
        assert!(parse(&["--dev", "--kafka-listen", "0.0.0.0:9092"])
            .validate()
            .is_err());
        assert!(parse(&[
            "--dev",
            "--kafka-listen",
            "0.0.0.0:9092",
            "--advertised-kafka",
            "h:1"
        ])
        .validate()
        .is_ok());
        assert!(parse(&["--dev", "--advertised-kafka", "nohost"])
            .validate()
            .is_err());
        assert!(!parse(&["--dev", "--auto-create-topics", "false"]).auto_create_topics);
    }
}
