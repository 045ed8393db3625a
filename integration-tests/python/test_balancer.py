"""The opt-in continuous replica balancer (issue #17): a fourth broker joins a busy
three-broker cluster and the active controller moves replicas onto it by itself, in rounds
of KIP-455 reassignments, until every broker holds within one replica of the others, while an
acks=all idempotent producer and a consumer group run: nothing is lost, duplicated or
reordered."""

import time
import uuid

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from acked_load import AckedLoad
from conftest import Broker, Cluster, wait_until


@pytest.fixture
def balanced(tmp_path):
    c = Cluster(tmp_path, n=3,
                controller_args=["--auto-replica-balance-enable", "true",
                                 "--replica-balance-check-interval-seconds", "1",
                                 "--replica-balance-max-moves", "8"],
                broker_args=["--broker-heartbeat-interval-ms", "250",
                             "--replica-lag-time-max-ms", "5000"]).start()
    yield c
    c.stop()


def replica_counts(broker):
    counts = {}
    for t in broker.http("/v1/topics"):
        for p in broker.http(f"/v1/topics/{t['name']}")["partitions"]:
            for r in p["replicas"]:
                counts[r] = counts.get(r, 0) + 1
    return counts


def test_a_new_broker_gets_its_share_without_a_command(balanced, tmp_path):
    c = balanced
    topic = f"grow-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, num_partitions=12, replication_factor=2,
                                  topic_configs={"min.insync.replicas": "1"})])
    watcher = c.brokers[0]
    load = AckedLoad(c.bootstrap, topic, 12).start()
    try:
        time.sleep(3)
        # Even on three brokers: the balancer has nothing to do.
        before = replica_counts(watcher)
        assert max(before.values()) - min(before.values()) <= 1, before

        quorum = ",".join(f"127.0.0.1:{x.port}" for x in c.controllers)
        fourth = Broker(tmp_path / "broker-4", extra_args=[
            "--broker-heartbeat-interval-ms", "250", "--replica-lag-time-max-ms", "5000"],
            quorum=quorum, node_id=4).start()
        c.brokers.append(fourth)

        def even():
            counts = replica_counts(watcher)
            return (len(counts) == 4 and max(counts.values()) - min(counts.values()) <= 1
                    and not any(p.get("adding_replicas") for t in watcher.http("/v1/topics")
                                for p in watcher.http(f"/v1/topics/{t['name']}")["partitions"]))
        wait_until(even, timeout=180, what="every broker within one replica of the others")
        after = replica_counts(watcher)
        print(f"balancer: {before} -> {after}")
        assert after[4] >= sum(after.values()) // 4 - 1
        time.sleep(2)
    finally:
        load.stop()
    report = load.check()
    print(f"balancer: {report.summary()}")
    assert not report.problems(), report.problems()
    # The controller said what it did.
    log = c.controllers[0].log_path.read_text()
    assert "replica imbalance: reassignments started" in log
