"""Kafka 3.x/4.x admin APIs through kafka-python 3's KafkaAdminClient on a three-broker
cluster: DescribeCluster, DescribeTopicPartitions (KIP-966, paginated), DescribeLogDirs and
DescribeQuorum."""

import time
import uuid

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from conftest import wait_until


def test_describe_cluster_topic_partitions_and_log_dirs(cluster):
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)

    described = admin.describe_cluster()
    ids = sorted(b["broker_id"] for b in described["brokers"])
    assert ids == [1, 2, 3], described
    assert described["cluster_id"] == cluster.brokers[0].http("/v1/cluster")["cluster_id"]
    assert described["controller_id"] in ids

    a, b = f"dtp-a-{uuid.uuid4().hex[:6]}", f"dtp-b-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(a, 3, 3), NewTopic(b, 2, 2)])
    wait_until(lambda: all(t["error_code"] == 0 and t["partitions"]
                           for t in admin.describe_topic_partitions([a, b])["topics"]),
               what="the topics' partitions")

    # Pages of two partitions: a-0 a-1 | a-2 b-0 | b-1, then no cursor.
    pages, cursor = [], None
    while True:
        page = admin.describe_topic_partitions([b, a, "no-such-topic"],
                                               response_partition_limit=2, cursor=cursor)
        pages.append([(t["name"], [p["partition_index"] for p in t["partitions"]])
                      for t in page["topics"] if t["error_code"] == 0])
        cursor = page["next_cursor"]
        if cursor is None:
            missing = [t for t in page["topics"] if t["name"] == "no-such-topic"]
            assert missing and missing[0]["error_code"] == 3  # UNKNOWN_TOPIC_OR_PARTITION
            break
        assert len(pages) < 10, pages
    assert pages == [[(a, [0, 1])], [(a, [2]), (b, [0])], [(b, [1])]], pages
    first = admin.describe_topic_partitions([a])["topics"][0]
    p0 = first["partitions"][0]
    assert sorted(p0["replica_nodes"]) == [1, 2, 3]
    assert p0["leader_id"] in p0["isr_nodes"]
    assert first["is_internal"] is False

    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    for i in range(300):
        producer.send(a, value=b"x" * 100, partition=i % 3)
    producer.flush(30)
    producer.close()

    def sizes():
        """{(broker log dir, topic, partition): size} from every broker."""
        out = {}
        for result in admin.describe_log_dirs(topic_partitions=[a]):
            for d in result["log_dirs"]:
                for t in d["topics"]:
                    for p in t["partitions"]:
                        key = (result["broker"], d["log_dir"], t["name"], p["partition_index"])
                        out[key] = p["partition_size"]
        return out

    # Every broker holds every partition of `a` (RF 3), each with the 100 records' bytes.
    got = wait_until(lambda: (lambda s: s if len(s) == 9 and min(s.values()) > 10_000 else None)(sizes()),
                     what="log dirs of all three replicas")
    assert {k[2] for k in got} == {a}
    assert {k[0] for k in got} == {1, 2, 3}
    assert all(k[1].endswith("/logs") for k in got)
    assert all(b["is_fenced"] is False for b in described["brokers"])
    admin.close()


def test_describe_metadata_quorum(cluster):
    """DescribeQuorum through kafka-python's admin client (it asks any broker; the broker asks
    the active controller): the controller leads, has caught up with its own high watermark,
    and the three brokers follow as observers, heard from within their session timeout."""
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    q = admin.describe_metadata_quorum()
    [topic] = q["topics"]
    assert topic["topic_name"] == "__cluster_metadata"
    [p] = topic["partitions"]
    assert p["error"] is None, p
    assert p["leader_id"] == 1 and p["leader_epoch"] >= 1, p
    assert p["high_watermark"] > 0, p
    [voter] = p["current_voters"]
    assert voter["replica_id"] == 1 and voter["log_end_offset"] >= p["high_watermark"], voter
    assert sorted(o["replica_id"] for o in p["observers"]) == [1, 2, 3], p["observers"]
    def heard_from_lately():
        observers = admin.describe_metadata_quorum()["topics"][0]["partitions"][0]["observers"]
        now_ms = time.time() * 1000
        return all(0 <= now_ms - o["last_fetch_timestamp"] < 10_000 for o in observers)

    wait_until(heard_from_lately, what="every broker's heartbeat seen by the controller")
    # v2: the controller's endpoint.
    nodes = q.get("nodes") or []
    assert [n["node_id"] for n in nodes] == [1], q
    assert nodes[0]["listeners"][0]["port"] == cluster.controller_port, nodes
    # The metadata log grows with a new topic: the high watermark moves.
    admin.create_topics([NewTopic(f"dq-{uuid.uuid4().hex[:6]}", 1, 1)])
    wait_until(lambda: admin.describe_metadata_quorum()["topics"][0]["partitions"][0]
               ["high_watermark"] > p["high_watermark"], what="a higher high watermark")
