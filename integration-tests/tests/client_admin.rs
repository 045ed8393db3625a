//! The library admin client (`strom_client::admin`) against a live broker: topics, configs,
//! partitions, offsets, records, the cluster, groups and their offsets, and the Kafka error
//! each refusal carries.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::BrokerProcess;
use kafka_protocol::ResponseError;
use strom_client::admin::{Admin, AdminError, ConfigOp, NewTopic, OffsetSpec};
use strom_client::consumer::{Consumer, ConsumerConfig, OffsetReset};
use strom_client::producer::{Producer, ProducerConfig, ProducerRecord};
use strom_client::TopicPartition;

fn code(e: &AdminError) -> i16 {
    e.code()
        .unwrap_or_else(|| panic!("not a broker refusal: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_configs_partitions_offsets_cluster_and_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BrokerProcess::start(
        &dir.path().join("data"),
        &[
            "--group-initial-rebalance-delay-ms",
            "0",
            "--auto-create-topics",
            "false",
        ],
    )
    .expect("start");
    let bootstrap = b.kafka.to_string();
    let mut admin = Admin::new(&bootstrap);

    // Topics.
    let created = admin
        .create_topic(&NewTopic::new("adm", 3, 1).with_config("retention.ms", "3600000"))
        .await
        .expect("create");
    assert_eq!((created.partitions, created.replication_factor), (3, 1));
    let again = admin
        .create_topic(&NewTopic::new("adm", 3, 1))
        .await
        .expect_err("exists");
    assert_eq!(code(&again), ResponseError::TopicAlreadyExists.code());
    let bad = admin
        .create_topic(&NewTopic::new("bad-config", 1, 1).with_config("retention.ms", "soon"))
        .await
        .expect_err("invalid");
    assert_eq!(code(&bad), ResponseError::InvalidConfig.code());
    let checked = admin
        .create_topic_with(&NewTopic::new("only-checked", 2, 1), true)
        .await
        .expect("validate only");
    assert_eq!(checked.partitions, 2);
    let names = admin.list_topics(false).await.expect("list");
    assert_eq!(
        names,
        ["adm"],
        "validate-only and refused topics were not created"
    );
    let d = admin.describe_topic("adm").await.expect("describe");
    assert_eq!(d.partitions.len(), 3);
    assert_eq!(d.topic_id, created.topic_id);
    assert!(d
        .partitions
        .iter()
        .all(|p| p.leader == 1 && p.isr == [1] && p.replicas == [1]));
    let missing = admin.describe_topic("nope").await.expect_err("missing");
    assert_eq!(
        code(&missing),
        ResponseError::UnknownTopicOrPartition.code()
    );

    // Configs.
    let configs = admin.describe_configs("adm").await.expect("configs");
    let retention = configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, "TOPIC_CONFIG");
    let cleanup = configs
        .iter()
        .find(|c| c.name == "cleanup.policy")
        .expect("cleanup.policy");
    assert_ne!(cleanup.source, "TOPIC_CONFIG");
    admin
        .alter_configs(
            "adm",
            &[
                ConfigOp::Set("max.message.bytes".into(), "2000000".into()),
                ConfigOp::Delete("retention.ms".into()),
            ],
        )
        .await
        .expect("alter");
    let configs = admin.describe_configs("adm").await.expect("configs");
    let get = |n: &str| {
        configs
            .iter()
            .find(|c| c.name == n)
            .cloned()
            .expect("config")
    };
    assert_eq!(get("max.message.bytes").value.as_deref(), Some("2000000"));
    assert_ne!(
        get("retention.ms").source,
        "TOPIC_CONFIG",
        "back to the default"
    );
    let refused = admin
        .alter_configs(
            "adm",
            &[ConfigOp::Set("min.insync.replicas".into(), "zero".into())],
        )
        .await
        .expect_err("invalid value");
    assert_eq!(code(&refused), ResponseError::InvalidConfig.code());

    // Partitions and offsets.
    admin.create_partitions("adm", 4).await.expect("grow");
    assert_eq!(
        admin
            .describe_topic("adm")
            .await
            .expect("describe")
            .partitions
            .len(),
        4
    );
    let shrink = admin.create_partitions("adm", 2).await.expect_err("shrink");
    assert_eq!(code(&shrink), ResponseError::InvalidPartitions.code());
    let producer = Producer::new(ProducerConfig::new(bootstrap.as_str()))
        .await
        .expect("producer");
    let t0 = strom_client::records::now_ms() - 10_000;
    for i in 0..20 {
        producer
            .send(
                ProducerRecord::new("adm", format!("v{i}"))
                    .with_partition(0)
                    .with_timestamp(t0 + i * 100),
            )
            .await
            .expect("queued")
            .await
            .expect("delivered");
    }
    producer.close().await;
    let tp = TopicPartition::new("adm", 0);
    assert_eq!(
        admin
            .list_offset(&tp, OffsetSpec::Earliest)
            .await
            .expect("earliest"),
        0
    );
    assert_eq!(
        admin
            .list_offset(&tp, OffsetSpec::Latest)
            .await
            .expect("latest"),
        20
    );
    assert_eq!(
        admin
            .list_offset(&tp, OffsetSpec::Timestamp(t0 + 550))
            .await
            .expect("by time"),
        6
    );
    assert_eq!(
        admin.delete_records(&tp, 5).await.expect("delete records"),
        5
    );
    assert_eq!(
        admin
            .list_offset(&tp, OffsetSpec::Earliest)
            .await
            .expect("earliest"),
        5
    );
    let gone = admin
        .list_offset(&TopicPartition::new("adm", 9), OffsetSpec::Latest)
        .await
        .expect_err("no partition 9");
    assert_eq!(code(&gone), ResponseError::UnknownTopicOrPartition.code());

    // The cluster.
    let cluster = admin.describe_cluster().await.expect("cluster");
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].port as u16, b.kafka.port());
    assert!(cluster.cluster_id.is_some());

    // Groups: a member reads and commits; describe, lag, list; then reset and delete.
    let mut cfg = ConsumerConfig::new(bootstrap.as_str());
    cfg.group_id = Some("adm-group".into());
    cfg.auto_offset_reset = OffsetReset::Earliest;
    cfg.enable_auto_commit = false;
    cfg.heartbeat_interval = Duration::from_millis(300);
    let mut c = Consumer::new(cfg).expect("consumer");
    c.subscribe(&["adm"]).expect("subscribe");
    let mut read = 0;
    while read < 15 {
        read += c
            .poll(Duration::from_millis(200))
            .await
            .expect("poll")
            .len();
    }
    c.commit_sync().await.expect("commit");
    let g = admin
        .describe_group("adm-group")
        .await
        .expect("describe group");
    assert_eq!(g.state, "Stable");
    assert_eq!(g.protocol_type, "consumer");
    assert_eq!(g.protocol, "range");
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.members[0].assignment.len(), 4);
    let listed = admin.list_groups().await.expect("list groups");
    assert!(listed
        .iter()
        .any(|l| l.group_id == "adm-group" && l.state == "Stable"));
    let lag = admin.group_lag("adm-group").await.expect("lag");
    let p0 = lag
        .iter()
        .find(|l| l.tp == tp)
        .expect("partition 0 committed");
    assert_eq!((p0.committed, p0.end, p0.lag), (20, Some(20), Some(0)));
    let busy = admin
        .delete_group("adm-group")
        .await
        .expect_err("members remain");
    assert_eq!(code(&busy), ResponseError::NonEmptyGroup.code());
    let active = admin
        .alter_group_offsets("adm-group", &BTreeMap::from([(tp.clone(), 7)]))
        .await
        .expect_err("an active member holds the group");
    assert!(
        [
            ResponseError::UnknownMemberId.code(),
            ResponseError::IllegalGeneration.code()
        ]
        .contains(&code(&active)),
        "{active}"
    );
    c.close().await;
    admin
        .alter_group_offsets("adm-group", &BTreeMap::from([(tp.clone(), 7)]))
        .await
        .expect("reset an empty group");
    assert_eq!(
        admin
            .list_group_offsets("adm-group")
            .await
            .expect("offsets")[&tp]
            .offset,
        7
    );
    admin.delete_group("adm-group").await.expect("delete group");
    assert!(admin
        .list_group_offsets("adm-group")
        .await
        .expect("offsets")
        .is_empty());

    admin.delete_topic("adm").await.expect("delete");
    let twice = admin.delete_topic("adm").await.expect_err("deleted");
    assert_eq!(code(&twice), ResponseError::UnknownTopicOrPartition.code());
    assert!(admin.list_topics(false).await.expect("list").is_empty());
}

/// A new cluster is named, with its feature levels, before anything else is committed: a
/// broker's registration, a topic or a producer id never precede them in the metadata log,
/// so no client can see a cluster without its `metadata.version` and `transaction.version`
/// (a transactional producer reading the levels right after start-up once saw none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_is_named_with_its_features_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("start");
    let mut admin = Admin::new(&broker.kafka.to_string());
    admin
        .create_topic(&NewTopic::new("early", 1, 1))
        .await
        .expect("create topic");
    let page = integration_tests::http_json(broker.http, "/v1/metadata/events?from=0")
        .expect("metadata events");
    let kinds: Vec<String> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["record"].as_object()?.keys().next().cloned())
        .collect();
    let first_other = kinds
        .iter()
        .position(|k| k != "InitCluster" && k != "FeatureLevel")
        .expect("the registration and the topic");
    assert_eq!(kinds[0], "InitCluster", "{kinds:?}");
    assert_eq!(
        kinds[..first_other]
            .iter()
            .filter(|k| *k == "FeatureLevel")
            .count(),
        3,
        "metadata.version, kraft.version and transaction.version first: {kinds:?}"
    );
    let features = admin.describe_features().await.expect("features");
    assert_eq!(features.finalized("transaction.version"), 2, "{features:?}");
}
