"""Partition reassignment (KIP-455, issue #17) through kafka-python's admin client
(alter_partition_reassignments / list_partition_reassignments, what
kafka-reassign-partitions.sh sends): an RF=3 topic on brokers 1-3 moves to 2-4 under an
idempotent acks=all producer and a consumer group, with the active controller killed half-way;
nothing is lost, duplicated or reordered, and broker 1 holds no replica afterwards."""

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTP
from kafka.admin import NewTopic
from kafka.errors import NoReassignmentInProgressError, UnknownTopicOrPartitionError

from conftest import Cluster, wait_until

PARTITIONS = 6


@pytest.fixture
def four(tmp_path):
    c = Cluster(tmp_path, n=4, controllers=3,
                broker_args=["--broker-heartbeat-interval-ms", "250",
                             "--replica-lag-time-max-ms", "5000"]).start()
    yield c
    c.stop()


def live_admin(c):
    return KafkaAdminClient(bootstrap_servers=",".join(b.bootstrap for b in c.brokers[:3]),
                            request_timeout_ms=30000)


def partitions(broker, topic):
    return broker.http(f"/v1/topics/{topic}")["partitions"]


def test_reassign_every_partition_under_load_across_a_controller_failover(four):
    c = four
    topic = f"move-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, replica_assignments={
        p: [1, 2, 3] for p in range(PARTITIONS)}, topic_configs={"min.insync.replicas": "2"})])
    watcher = c.brokers[1]
    wait_until(lambda: all(len(p["isr"]) == 3 for p in partitions(watcher, topic)),
               what="the topic in sync on 1-3")

    delivered, failed = {}, []
    producer = Producer({"bootstrap.servers": c.bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5})

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)
        else:
            delivered[msg.value()] = (msg.partition(), msg.offset())

    stop = threading.Event()
    sent = []

    def produce():
        i = 0
        while not stop.is_set():
            value = f"v-{i}".encode()
            try:
                producer.produce(topic, value=value, partition=i % PARTITIONS,
                                 on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.1)
                continue
            sent.append(value)
            i += 1
            producer.poll(0)
            if i % 20 == 0:
                time.sleep(0.01)

    group_seen = set()
    consumer_stop = threading.Event()

    def consume():
        cons = Consumer({"bootstrap.servers": c.bootstrap, "group.id": f"{topic}-g",
                         "auto.offset.reset": "earliest"})
        cons.subscribe([topic])
        while not consumer_stop.is_set():
            msg = cons.poll(0.2)
            if msg is not None and not msg.error():
                group_seen.add(msg.value())
        cons.close()

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        # Broker 4 is down when the move starts (registered, fenced): the reassignment is
        # accepted and waits for it, which makes "half-way" last as long as the test needs.
        b4 = c.brokers[3]
        b4.stop()
        wait_until(lambda: any(b["id"] == 4 and b["state"] == "fenced"
                               for b in watcher.http("/v1/brokers")), what="broker 4 fenced")
        # kafka-python sends to the broker that answered its metadata as "controller" and
        # caches it: a client of the live brokers.
        admin = live_admin(c)
        tps = [KTP(topic, p) for p in range(PARTITIONS)]
        result = admin.alter_partition_reassignments({tp: [2, 3, 4] for tp in tps})
        assert result == {tp: None for tp in tps}, result
        ongoing = admin.list_partition_reassignments()
        assert set(ongoing) == set(tps), ongoing
        for tp in tps:
            assert ongoing[tp] == {"replicas": [2, 3, 4, 1], "adding_replicas": [4],
                                   "removing_replicas": [1]}, ongoing[tp]
        # Asking for one partition, and for a topic that does not exist.
        one = admin.list_partition_reassignments([tps[0]])
        assert list(one) == [tps[0]]
        assert admin.list_partition_reassignments({"no-such-topic": [0]}) == {}

        # The active controller dies half-way; another takes over the reassignment.
        old = c.active_controller()
        old.kill9()
        wait_until(lambda: c.active_controller() is not old, timeout=30,
                   what="a new active controller")
        assert set(admin.list_partition_reassignments()) == set(tps), "survives the failover"

        b4.start()
        wait_until(lambda: admin.list_partition_reassignments() == {}, timeout=90,
                   what="every reassignment complete")
        time.sleep(2)
    finally:
        stop.set()
        threads[0].join()
    assert producer.flush(60) == 0
    for p in partitions(watcher, topic):
        assert p["replicas"] == [2, 3, 4], p
        assert sorted(p["isr"]) == [2, 3, 4], p
        assert p["leader"] in (2, 3, 4), p
    # Broker 1 dropped its copies.
    wait_until(lambda: not any(r.get("topic") == topic for r in
                               c.brokers[0].http("/v1/replicas")), what="broker 1 holds none")

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not set(delivered) <= group_seen:
        time.sleep(0.5)
    consumer_stop.set()
    threads[1].join()

    reader = Consumer({"bootstrap.servers": c.bootstrap, "group.id": f"{topic}-check",
                       "enable.partition.eof": True, "enable.auto.commit": False})
    reader.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    in_log, dups, order, eof = {}, [], {p: [] for p in range(PARTITIONS)}, set()
    deadline = time.monotonic() + 60
    while len(eof) < PARTITIONS and time.monotonic() < deadline:
        msg = reader.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                eof.add(msg.partition())
            continue
        if msg.value() in in_log:
            dups.append(msg.value())
        in_log[msg.value()] = (msg.partition(), msg.offset())
        order[msg.partition()].append(int(msg.value()[2:]))
    reader.close()
    lost = [v for v in delivered if in_log.get(v) != delivered[v]]
    print(f"reassignment: {len(sent)} sent, {len(delivered)} delivered, {len(in_log)} in the "
          f"log, lost {len(lost)}, duplicated {len(dups)}, group {len(group_seen)}")
    assert len(eof) == PARTITIONS
    assert not failed, failed[:3]
    assert len(delivered) > 500
    assert not lost, lost[:3]
    assert not dups, dups[:3]
    assert all(seq == sorted(seq) for seq in order.values())
    assert set(delivered) <= group_seen


def test_cancel_and_refusals(four):
    c = four
    topic = f"cancel-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, replica_assignments={0: [1, 2, 3]})])
    watcher = c.brokers[1]
    wait_until(lambda: len(partitions(watcher, topic)[0]["isr"]) == 3, what="in sync")
    tp = KTP(topic, 0)
    # Nothing to cancel; an unknown topic; an unregistered broker.
    assert admin.alter_partition_reassignments({tp: None})[tp] is NoReassignmentInProgressError
    missing = KTP("no-such-topic", 0)
    assert admin.alter_partition_reassignments({missing: [1]})[missing] \
        is UnknownTopicOrPartitionError
    bad = admin.alter_partition_reassignments({tp: [1, 2, 9]})[tp]
    assert bad is not None and bad.errno == 39, bad  # INVALID_REPLICA_ASSIGNMENT
    assert partitions(watcher, topic)[0]["replicas"] == [1, 2, 3]

    # Started towards a stopped broker, then cancelled: the old replicas stay, 4 is gone.
    c.brokers[3].stop()
    wait_until(lambda: any(b["id"] == 4 and b["state"] == "fenced"
                           for b in watcher.http("/v1/brokers")), what="broker 4 fenced")
    admin = live_admin(c)
    assert admin.alter_partition_reassignments({tp: [1, 2, 4]})[tp] is None
    assert admin.list_partition_reassignments() == {
        tp: {"replicas": [1, 2, 4, 3], "adding_replicas": [4], "removing_replicas": [3]}}
    assert admin.alter_partition_reassignments({tp: None})[tp] is None
    assert admin.list_partition_reassignments() == {}
    p = partitions(watcher, topic)[0]
    assert sorted(p["replicas"]) == [1, 2, 3] and sorted(p["isr"]) == [1, 2, 3], p

    # Shrinking to two replicas needs no catch-up: it completes at once.
    assert admin.alter_partition_reassignments({tp: [2, 1]})[tp] is None
    wait_until(lambda: partitions(watcher, topic)[0]["replicas"] == [2, 1],
               what="the shrink applied")
    wait_until(lambda: not any(r.get("topic") == topic for r in
                               c.brokers[2].http("/v1/replicas")), what="broker 3 holds none")
