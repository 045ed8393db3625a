"""librdkafka's idempotent producer (enable.idempotence=true, acks=all) against a 3-broker
Strom cluster while the leader of a partition is killed and restarted: every delivered
record is read back exactly once, at the offset its delivery report named, in order."""

import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until


def leader_of(cluster, topic, partition):
    for b in cluster.brokers:
        if b.proc.poll() is not None:
            continue
        try:
            doc = b.http(f"/v1/topics/{topic}")
        except Exception:  # noqa: BLE001 - a broker restarting
            continue
        return doc["partitions"][partition]["leader"]
    return -1


def test_idempotent_librdkafka_producer_loses_nothing_across_leader_kills(cluster):
    topic = f"rep-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3,
                                            config={"min.insync.replicas": "2"})])
    futures[topic].result(timeout=30)

    delivered = {}  # value -> (partition, offset)
    failed = []
    fatal = []
    p = Producer({
        "bootstrap.servers": cluster.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120000,
        "error_cb": lambda e: fatal.append(e) if e.fatal() else None,
    })

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)
        else:
            delivered[msg.value()] = (msg.partition(), msg.offset())

    stop = threading.Event()
    sent = []

    def produce_loop():
        i = 0
        while not stop.is_set():
            value = f"m-{i}".encode()
            try:
                p.produce(topic, value=value, partition=i % 3, on_delivery=on_delivery)
                sent.append(value)
                i += 1
            except BufferError:
                p.poll(0.1)
                continue
            p.poll(0)
            if i % 100 == 0:
                time.sleep(0.01)

    t = threading.Thread(target=produce_loop)
    t.start()
    kills = 0
    try:
        for _ in range(3):
            time.sleep(3)
            leader = leader_of(cluster, topic, 0)
            assert leader >= 1
            victim = cluster.brokers[leader - 1]
            victim.kill9()
            kills += 1
            time.sleep(3)
            victim.start()
        time.sleep(2)
    finally:
        stop.set()
        t.join()
    remaining = p.flush(120)
    assert remaining == 0, f"{remaining} records undelivered"
    assert not fatal, f"fatal producer errors: {fatal}"
    assert not failed, f"delivery failures: {failed[:3]}"
    assert len(delivered) == len(sent) > 1000

    # Read everything back from the leaders.
    c = Consumer({
        "bootstrap.servers": cluster.bootstrap,
        "group.id": f"check-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    c.assign([TopicPartition(topic, i, 0) for i in range(3)])
    found = {}
    eof = set()
    order = {0: [], 1: [], 2: []}
    deadline = time.monotonic() + 60
    while len(eof) < 3 and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                eof.add(msg.partition())
                continue
            raise AssertionError(msg.error())
        assert msg.value() not in found, f"duplicate {msg.value()}"
        found[msg.value()] = (msg.partition(), msg.offset())
        order[msg.partition()].append(int(msg.value().decode().split("-")[1]))
    c.close()
    assert len(eof) == 3, "did not reach the end of every partition"
    lost = [v for v in delivered if v not in found]
    assert not lost, f"{len(lost)} delivered records lost, e.g. {lost[:3]}"
    moved = [(v, delivered[v], found[v]) for v in delivered if delivered[v] != found[v]]
    assert not moved, f"records not at their delivered offsets: {moved[:3]}"
    for part, seq in order.items():
        assert seq == sorted(seq), f"partition {part} out of send order"
    print(f"{kills} leader kills; {len(sent)} sent, {len(delivered)} delivered, {len(found)} read")


def test_group_coordinator_failover_keeps_committed_offsets(cluster):
    """Kill -9 the broker leading the group's __consumer_offsets partition mid-consumption:
    the consumer finds the new coordinator, the committed offsets are intact, and every
    record is consumed (duplicates only after the last commit before the kill)."""
    topic = f"grp-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3,
                                  config={"min.insync.replicas": "2"})])[topic].result(30)
    total = 3000
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                  "enable.idempotence": True})
    for i in range(total):
        p.produce(topic, value=f"r-{i}".encode(), partition=i % 3)
    assert p.flush(60) == 0

    def consumer():
        c = Consumer({
            "bootstrap.servers": cluster.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        })
        c.subscribe([topic])
        return c

    seen = []

    def consume(c, n, timeout=60):
        got = 0
        deadline = time.monotonic() + timeout
        while got < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            seen.append(msg.value())
            got += 1
            if got % 100 == 0:
                c.commit(asynchronous=False)
        if got % 100:
            c.commit(asynchronous=False)
        return got

    c = consumer()
    assert consume(c, 1500) == 1500
    committed_before = {tp.partition: tp.offset
                        for tp in c.committed([TopicPartition(topic, i) for i in range(3)],
                                              timeout=10)}
    assert sum(max(o, 0) for o in committed_before.values()) == 1500

    desc = admin.describe_consumer_groups([group])[group].result(10)
    coordinator = desc.coordinator.id
    victim = cluster.brokers[coordinator - 1]
    victim.kill9()

    # The group moves to the new leader of its offsets partition; offsets are there.
    def new_coordinator():
        d = admin.describe_consumer_groups([group])[group].result(10)
        return d.coordinator.id if d.coordinator.id != coordinator else None

    wait_until(new_coordinator, timeout=30, what="a new group coordinator")
    after = wait_until(
        lambda: {tp.partition: tp.offset for tp in c.committed(
            [TopicPartition(topic, i) for i in range(3)], timeout=5)},
        timeout=30, what="committed offsets from the new coordinator")
    assert after == committed_before, f"{after} != {committed_before}"

    # Consumption goes on to the end with the same consumer.
    remaining = total - len(set(seen))
    consume(c, remaining, timeout=90)
    c.close()
    assert len(set(seen)) == total, f"{total - len(set(seen))} records never consumed"
    # Everything was committed before the kill and after; no duplicates were needed.
    final = {tp.partition: tp.offset for tp in admin.list_consumer_group_offsets(
        [__import__("confluent_kafka").ConsumerGroupTopicPartitions(group)])[group]
        .result(10).topic_partitions}
    assert sum(final.values()) == total, final
    victim.start()
