//! `strom-broker --config server.properties`: a Kafka property file configures the broker;
//! flags given on the command line win over it.

use integration_tests::{free_port, http_json, BrokerProcess};
use strom_client::admin::{Admin, NewTopic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_property_file_configures_the_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("server.properties");
    std::fs::write(
        &file,
        format!(
            "# written as for Kafka\n\
             node.id=5\n\
             num.partitions=4\n\
             log.retention.ms=123456\n\
             num.io.threads=8\n\
             listeners=PLAINTEXT://127.0.0.1:{}\n",
            free_port().expect("port")
        ),
    )
    .expect("write");
    // The harness gives --kafka-listen itself: the command line wins over `listeners`.
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &["--config", file.to_str().expect("utf-8 path")],
    )
    .expect("start");
    let cluster = http_json(broker.http, "/v1/cluster").expect("cluster");
    assert_eq!(cluster["broker_id"], 5, "node.id from the file: {cluster}");
    let mut admin = Admin::new(&broker.kafka.to_string());
    let created = admin
        .create_topic(&NewTopic::new("from-defaults", -1, -1))
        .await
        .expect("create");
    assert_eq!(created.partitions, 4, "num.partitions from the file");
    let configs = admin
        .describe_configs("from-defaults")
        .await
        .expect("configs");
    let retention = configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("123456"));
}
