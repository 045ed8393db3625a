"""The opt-in continuous replica balancer (issue #17): a fourth broker joins a busy
three-broker cluster and the active controller moves replicas onto it by itself, in rounds
of KIP-455 reassignments, until every broker holds within one replica of the others, while an
acks=all idempotent producer and a consumer group run: nothing is lost, duplicated or
reordered."""

import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
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


MB = 1_000_000


def test_a_broker_past_its_disk_threshold_gives_replicas_away(tmp_path):
    """Each broker reports its partitions' sizes; broker 1 holds 8 MB of data against a
    12 MB capacity with a 50 % threshold, so the active controller moves a replica off it
    (to a broker with room, which stays under the threshold) without any command; every
    acknowledged record is still there, in order."""
    c = Cluster(tmp_path, n=3,
                controller_args=["--auto-replica-balance-enable", "true",
                                 "--replica-balance-check-interval-seconds", "1",
                                 "--replica-balance-disk-threshold-percent", "50"],
                broker_args=["--broker-heartbeat-interval-ms", "250",
                             "--log-dir-report-interval-ms", "300",
                             "--log-dir-capacity-bytes", str(12 * MB)]).start()
    try:
        topic = f"disk-{uuid.uuid4().hex[:6]}"
        admin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
        # Two single-replica partitions per broker: the counts are even from the start.
        admin.create_topics([NewTopic(topic, replica_assignments={
            p: [p % 3 + 1] for p in range(6)})])
        watcher = c.brokers[1]
        controller = c.controllers[0]

        def log_dir(broker_id):
            return {b["id"]: b["log_dir"] for b in controller.http("/v1/brokers")}[broker_id]

        reported = wait_until(lambda: log_dir(1), what="broker 1's log dir report")
        assert reported["capacity_bytes"] == 12 * MB and reported["fs_total_bytes"] > 0

        # 4 MB into each of broker 1's partitions (0 and 3), a little into the others.
        producer = Producer({"bootstrap.servers": c.bootstrap, "acks": "all",
                             "enable.idempotence": True, "linger.ms": 20})
        sent = {p: [] for p in range(6)}
        failed = []

        def delivered(err, _msg):
            if err is not None:
                failed.append(err)
        for i in range(2000):
            for p in (0, 3):
                v = f"{p}-{i}-".encode() + b"x" * 2000
                producer.produce(topic, value=v, partition=p, on_delivery=delivered)
                sent[p].append(v)
            if i % 100 == 0:
                for p in (1, 2, 4, 5):
                    v = f"{p}-{i}".encode()
                    producer.produce(topic, value=v, partition=p, on_delivery=delivered)
                    sent[p].append(v)
            producer.poll(0)
        assert producer.flush(60) == 0

        def moved_off():
            parts = watcher.http(f"/v1/topics/{topic}")["partitions"]
            if any(p.get("adding_replicas") or p.get("removing_replicas") for p in parts):
                return None
            on_1 = [p["partition"] for p in parts if 1 in p["replicas"]]
            used = log_dir(1)["used_bytes"]
            # A big partition went (the report may lag the move by an interval).
            gone = not {0, 3} <= set(on_1)
            return (on_1, used) if gone and used <= 6 * MB and on_1 else None

        on_1, used = wait_until(moved_off, timeout=120, what="broker 1 under 50 % of 12 MB")
        print(f"disk balance: broker 1 now holds {on_1} of the topic, {used} bytes")
        assert used > 3 * MB, "one big partition stays"
        # The broker that took it is under its threshold too.
        for b in (2, 3):
            assert log_dir(b)["used_bytes"] <= 6 * MB, (b, log_dir(b))

        log = controller.log_path.read_text()
        assert "broker disk above the balancing threshold" in log
        assert "replica imbalance: reassignments started" in log

        # Every acknowledged record, in order, from wherever each partition lives now.
        for p, values in sent.items():
            got = read_partition(c.bootstrap, topic, p, len(values))
            assert got == values, (p, len(got), len(values))
    finally:
        c.stop()


def read_partition(bootstrap, topic, partition, expected):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.append(msg.value())
    consumer.close()
    return got
