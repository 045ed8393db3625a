"""Topic configs, retention, compaction, CreatePartitions and DeleteRecords with confluent-kafka."""

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewPartitions, NewTopic, ResourceType)

from conftest import Broker, wait_until


@pytest.fixture(scope="module")
def cleaner_broker(tmp_path_factory):
    """A broker whose retention/compaction check runs every 200 ms."""
    b = Broker(tmp_path_factory.mktemp("strom-cleaner") / "data",
               extra_args=["--log-retention-check-interval-ms", "200"]).start()
    yield b
    b.stop()


_ADMINS = {}


def admin(b):
    """One AdminClient per broker, kept alive: a dropped client cancels its futures."""
    if b.bootstrap not in _ADMINS:
        _ADMINS[b.bootstrap] = AdminClient({"bootstrap.servers": b.bootstrap})
    return _ADMINS[b.bootstrap]


def create(b, name, partitions=1, config=None):
    admin(b).create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(10)


def describe(b, name):
    res = ConfigResource(ResourceType.TOPIC, name)
    return admin(b).describe_configs([res])[res].result(10)


def produce(b, topic, records, flush_each=False):
    """records: (key, value, timestamp_ms); returns delivered offsets in order."""
    offsets, errors = [], []
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0 if flush_each else 5})
    for key, value, ts in records:
        p.produce(topic, key=key, value=value, timestamp=ts,
                  on_delivery=lambda e, m: errors.append(e) if e else offsets.append(m.offset()))
        if flush_each:
            p.flush(10)
    assert p.flush(30) == 0 and not errors, errors
    return offsets


def read_all(b, topic, partition=0, start=0, reset="earliest", timeout=10):
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"r-{uuid.uuid4()}",
                  "enable.auto.commit": False, "auto.offset.reset": reset,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, partition, start)])
    out, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                raise KafkaException(m.error())
            out.append(m)
    finally:
        c.close()
    return out


def watermarks(b, topic, partition=0):
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def now_ms():
    return int(time.time() * 1000)


def test_describe_alter_and_incremental_alter(cleaner_broker):
    b = cleaner_broker
    name = f"cfg-{uuid.uuid4().hex[:6]}"
    create(b, name, config={"retention.ms": "60000"})
    cfg = describe(b, name)
    assert cfg["retention.ms"].value == "60000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value

    res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.bytes", "100000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    admin(b).incremental_alter_configs([res])[res].result(10)
    cfg = describe(b, name)
    assert cfg["retention.bytes"].value == "100000"
    assert cfg["retention.ms"].value == "604800000"
    assert cfg["cleanup.policy"].value == "delete,compact"
    assert b.http(f"/v1/topics/{name}")["configs"] == {"retention.bytes": "100000", "cleanup.policy": "delete,compact"}

    # AlterConfigs replaces the whole set.
    res = ConfigResource(ResourceType.TOPIC, name, set_config={"max.message.bytes": "2000000"})
    admin(b).alter_configs([res])[res].result(10)
    cfg = describe(b, name)
    assert cfg["max.message.bytes"].value == "2000000"
    assert cfg["retention.bytes"].value == "-1"

    # Bad names and values: INVALID_CONFIG, nothing changed.
    for entry in (ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET),
                  ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET),
                  ConfigEntry("cleanup.policy", "shred", incremental_operation=AlterConfigOpType.SET)):
        bad = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[entry])
        with pytest.raises(KafkaException) as e:
            admin(b).incremental_alter_configs([bad])[bad].result(10)
        assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert b.http(f"/v1/topics/{name}")["configs"] == {"max.message.bytes": "2000000"}
    missing = ConfigResource(ResourceType.TOPIC, "no-such-topic")
    with pytest.raises(KafkaException):
        admin(b).describe_configs([missing])[missing].result(10)


def test_retention_by_time(cleaner_broker):
    b = cleaner_broker
    name = f"ret-time-{uuid.uuid4().hex[:6]}"
    create(b, name, config={"retention.ms": "60000"})
    old = now_ms() - 600_000
    produce(b, name, [(b"k", b"old-%d" % i, old + i) for i in range(100)])
    produce(b, name, [(b"k", b"new-%d" % i, now_ms()) for i in range(10)])
    wait_until(lambda: watermarks(b, name) == (100, 110), what="old batches to expire")
    # Below the log start: OFFSET_OUT_OF_RANGE, and auto.offset.reset=earliest lands on 100.
    got = read_all(b, name, start=5, reset="earliest")
    assert [m.offset() for m in got] == list(range(100, 110))
    assert got[0].value() == b"new-0"
    with pytest.raises(KafkaException) as e:
        read_all(b, name, start=5, reset="error")
    assert e.value.args[0].code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE)


def test_retention_by_size(cleaner_broker):
    b = cleaner_broker
    name = f"ret-size-{uuid.uuid4().hex[:6]}"
    create(b, name, config={"retention.bytes": "5000"})
    produce(b, name, [(b"k", b"x" * 1000, now_ms()) for _ in range(20)], flush_each=True)

    def trimmed():
        p = b.http(f"/v1/topics/{name}")["partitions"][0]
        return p["size_bytes"] <= 5000 and p["log_start_offset"] > 0 and p
    p = wait_until(trimmed, what="size retention")
    assert p["log_end_offset"] == 20
    assert watermarks(b, name) == (p["log_start_offset"], 20)


def test_compaction_keeps_latest_per_key_and_drops_tombstones_after_the_delay(cleaner_broker):
    b = cleaner_broker
    name = f"compact-{uuid.uuid4().hex[:6]}"
    create(b, name, config={"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                            "delete.retention.ms": "3000"})
    old = now_ms() - 3_600_000
    first = produce(b, name, [(b"k%d" % i, b"v1-%d" % i, old) for i in range(10)])
    second = produce(b, name, [(b"k%d" % i, b"v2-%d" % i, old) for i in range(10)])
    tomb = produce(b, name, [(b"k%d" % i, None, now_ms()) for i in range(3)])
    last = produce(b, name, [(b"tail", b"t", now_ms())])  # the newest batch is never compacted
    assert first == list(range(10)) and second == list(range(10, 20))

    def compacted():
        got = read_all(b, name)
        return len(got) == 11 and got
    got = wait_until(compacted, what="compaction", timeout=20)
    # Latest value per key, at the offset it was written at; tombstones still there.
    expected = {f"k{i}".encode(): (10 + i, f"v2-{i}".encode()) for i in range(3, 10)}
    for i in range(3):
        expected[f"k{i}".encode()] = (tomb[i], None)
    expected[b"tail"] = (last[0], b"t")
    assert {m.key(): (m.offset(), m.value()) for m in got} == expected
    assert [m.offset() for m in got] == sorted(m.offset() for m in got)

    def tombstones_gone():
        got = read_all(b, name)
        return len(got) == 8 and got
    got = wait_until(tombstones_gone, what="tombstones to expire", timeout=20)
    assert all(m.value() is not None for m in got)
    assert watermarks(b, name)[1] == last[0] + 1


def test_create_partitions_with_a_running_producer(cleaner_broker):
    b = cleaner_broker
    name = f"grow-{uuid.uuid4().hex[:6]}"
    create(b, name, partitions=2)
    stop, delivered, errors = threading.Event(), [], []

    def run():
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 1,
                      "topic.metadata.refresh.interval.ms": 200})
        i = 0
        while not stop.is_set():
            p.produce(name, key=b"key-%d" % i, value=b"v",
                      on_delivery=lambda e, m: errors.append(e) if e else delivered.append(m.partition()))
            p.poll(0)
            i += 1
            time.sleep(0.001)
        p.flush(30)

    t = threading.Thread(target=run)
    t.start()
    try:
        wait_until(lambda: len(delivered) > 200, what="records before growing")
        admin(b).create_partitions([NewPartitions(name, 4)])[name].result(10)
        wait_until(lambda: {2, 3} & set(delivered[-2000:]), what="records in the new partitions")
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors[:3]
    assert len(admin(b).list_topics(timeout=10).topics[name].partitions) == 4
    with pytest.raises(KafkaException) as e:
        admin(b).create_partitions([NewPartitions(name, 3)])[name].result(10)
    assert e.value.args[0].code() == KafkaError.INVALID_PARTITIONS


def test_delete_records(cleaner_broker):
    b = cleaner_broker
    name = f"delrec-{uuid.uuid4().hex[:6]}"
    create(b, name)
    produce(b, name, [(None, b"r%d" % i, now_ms()) for i in range(100)])
    res = admin(b).delete_records([TopicPartition(name, 0, 40)])
    assert list(res.values())[0].result(10).low_watermark == 40
    assert watermarks(b, name) == (40, 100)
    got = read_all(b, name, start=10, reset="earliest")
    assert got[0].offset() == 40 and len(got) == 60


@pytest.mark.parametrize("attempt", range(3))
def test_kill9_during_compaction_leaves_a_whole_log(tmp_path, attempt):
    b = Broker(tmp_path / "data", extra_args=["--log-retention-check-interval-ms", "50"],
               env={"STROM_LOG": "info,broker::log::cleaner=debug"}).start()
    try:
        name = "crash-compact"
        create(b, name)
        old = now_ms() - 3_600_000
        sent = [(b"key-%d" % (i % 50), b"value-%d" % i, old) for i in range(50_000)]
        p = Producer({"bootstrap.servers": b.bootstrap, "batch.num.messages": 200, "linger.ms": 5})
        offsets = {}
        for i, (k, v, ts) in enumerate(sent):
            p.produce(name, key=k, value=v, timestamp=ts,
                      on_delivery=lambda e, m, i=i: offsets.__setitem__(m.offset(), i))
            p.poll(0)
        assert p.flush(30) == 0 and len(offsets) == len(sent)
        produce(b, name, [(b"tail", b"t", now_ms())])
        res = ConfigResource(ResourceType.TOPIC, name, set_config={
            "cleanup.policy": "compact", "min.compaction.lag.ms": "0"})
        admin(b).alter_configs([res])[res].result(10)
        # Kill the moment the cleaner has planned its first pass and is rewriting batches.
        # A tight poll of the broker's log (the pass takes tens of milliseconds).
        deadline = time.monotonic() + 20
        with open(b.log_path, "rb") as log:
            seen = b""
            while b"compaction pass planned" not in seen:
                assert time.monotonic() < deadline, "compaction never started"
                seen = seen[-200:] + log.read()
                time.sleep(0.001)
        b.restart_after_kill9()

        got = read_all(b, name, timeout=30)
        assert [m.offset() for m in got] == sorted({m.offset() for m in got}), "offsets in order, once"
        for m in got[:-1]:
            k, v, _ = sent[offsets[m.offset()]]
            assert (m.key(), m.value()) == (k, v), f"offset {m.offset()} holds what was written there"
        latest = {}
        for off, i in sorted(offsets.items()):
            latest[sent[i][0]] = off
        present = {m.offset() for m in got}
        assert set(latest.values()) <= present, "every key's latest record survives"
        assert got[-1].key() == b"tail"
    finally:
        b.stop()
