//! Client telemetry (KIP-714) and ListConfigResources over the wire, as Kafka answers with
//! no client-metrics subscription: an instance id, nothing to push; pushes are checked.

use integration_tests::BrokerProcess;
use kafka_protocol::messages::{
    CreateTopicsRequest, GetTelemetrySubscriptionsRequest, ListConfigResourcesRequest,
    PushTelemetryRequest,
};
use strom_client::Connection;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_subscriptions_pushes_and_config_resources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[]).expect("start");
    let mut conn = Connection::connect(broker.kafka).await.expect("connect");

    // A new client (nil instance id) gets an id and no metrics to send.
    let sub = conn
        .send(GetTelemetrySubscriptionsRequest::default(), 0)
        .await
        .expect("subscriptions");
    assert_eq!(sub.error_code, 0);
    assert!(!sub.client_instance_id.is_nil());
    assert!(sub.requested_metrics.is_empty());
    assert!(sub.push_interval_ms > 0 && sub.telemetry_max_bytes > 0);
    assert!(sub.accepted_compression_types.contains(&4)); // zstd
    let id = sub.client_instance_id;
    // The same id asked again keeps it.
    let again = conn
        .send(
            GetTelemetrySubscriptionsRequest::default().with_client_instance_id(id),
            0,
        )
        .await
        .expect("subscriptions");
    assert_eq!(again.client_instance_id, id);

    let push = |instance: Uuid, subscription: i32, compression: i8, size: usize| {
        PushTelemetryRequest::default()
            .with_client_instance_id(instance)
            .with_subscription_id(subscription)
            .with_compression_type(compression)
            .with_metrics(vec![0u8; size].into())
    };
    let cases = [
        (
            "a known client's push",
            push(id, sub.subscription_id, 0, 10),
            0,
        ),
        ("an unknown instance", push(Uuid::new_v4(), 0, 0, 10), 117),
        ("a nil instance", push(Uuid::nil(), 0, 0, 10), 42),
        (
            "another subscription",
            push(id, sub.subscription_id + 1, 0, 10),
            117,
        ),
        (
            "an unknown compression",
            push(id, sub.subscription_id, 9, 10),
            76,
        ),
        (
            "too large",
            push(id, sub.subscription_id, 0, (1 << 20) + 1),
            118,
        ),
    ];
    for (what, req, code) in cases {
        let r = conn.send(req, 0).await.expect("push");
        assert_eq!(r.error_code, code, "{what}");
    }
    // A terminating push forgets the instance.
    let r = conn
        .send(
            push(id, sub.subscription_id, 0, 0).with_terminating(true),
            0,
        )
        .await
        .expect("push");
    assert_eq!(r.error_code, 0);
    let r = conn
        .send(push(id, sub.subscription_id, 0, 0), 0)
        .await
        .expect("push");
    assert_eq!(r.error_code, 117);

    // ListConfigResources: v0 lists client-metrics resources (none), v1 topics and brokers.
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    conn.send(
        CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("listed")))
                .with_num_partitions(1)
                .with_replication_factor(1)])
            .with_timeout_ms(10_000),
        7,
    )
    .await
    .expect("create");
    let v0 = conn
        .send(ListConfigResourcesRequest::default(), 0)
        .await
        .expect("list v0");
    assert_eq!((v0.error_code, v0.config_resources.len()), (0, 0));
    let v1 = conn
        .send(
            ListConfigResourcesRequest::default().with_resource_types(vec![2, 4]),
            1,
        )
        .await
        .expect("list v1");
    let listed: Vec<(String, i8)> = v1
        .config_resources
        .iter()
        .map(|r| (r.resource_name.to_string(), r.resource_type))
        .collect();
    assert!(listed.contains(&("listed".to_string(), 2)), "{listed:?}");
    assert!(listed.contains(&("1".to_string(), 4)), "{listed:?}");
    let bad = conn
        .send(
            ListConfigResourcesRequest::default().with_resource_types(vec![99]),
            1,
        )
        .await
        .expect("list bad type");
    assert_eq!(bad.error_code, 42);
    broker.kill9().expect("kill");
}
