"""kafka-python (pure Python client) against a live Strom broker."""

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

# An hour ago: recent enough that the default retention (7 days) keeps every record.
BASE_TS = int(time.time() * 1000) - 3_600_000


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_round_trip_with_codec(broker, codec):
    topic = f"kp-{codec or 'none'}"
    n = 1000
    # kafka-python 3 defaults to enable_idempotence=True (InitProducerId, sequences).
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec,
                             linger_ms=5, batch_size=16384)
    futures = [
        producer.send(topic, key=f"k{i % 11}".encode(), value=f"v{i}".encode() * 3,
                      headers=[("i", str(i).encode())], timestamp_ms=BASE_TS + i)
        for i in range(n)
    ]
    producer.flush(30)
    offsets = [f.get(timeout=30).offset for f in futures]
    producer.close()
    assert offsets == list(range(n))

    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=10_000)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    for msg in consumer:
        got.append(msg)
        if len(got) == n:
            break
    assert len(got) == n
    for i, m in enumerate(got):
        assert (m.offset, m.key, m.value, m.timestamp) == (i, f"k{i % 11}".encode(), f"v{i}".encode() * 3, BASE_TS + i)
        assert list(m.headers) == [("i", str(i).encode())]

    assert consumer.beginning_offsets([tp]) == {tp: 0}
    assert consumer.end_offsets([tp]) == {tp: n}
    found = consumer.offsets_for_times({tp: BASE_TS + 500})[tp]
    assert (found.offset, found.timestamp) == (500, BASE_TS + 500)
    assert consumer.offsets_for_times({tp: BASE_TS + n + 1})[tp] is None
    consumer.close()


def test_admin_client(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    name = f"kp-admin-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    assert name in admin.list_topics()
    described = admin.describe_topics([name])
    assert len(described[0]["partitions"]) == 3
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    admin.delete_topics([name])
    assert name not in admin.list_topics()
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([name])
    admin.close()


def test_incremental_fetch_sessions_deliver_everything_once(broker, caplog):
    """KIP-227: kafka-python opens a fetch session and then sends only what changed; every
    record still arrives once, in order per partition, and no answer is refused."""
    import logging
    import uuid as _uuid

    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic

    topic = f"sessions-{_uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, 12, 1)])
    admin.close()
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    for i in range(600):
        p.send(topic, value=b"%d" % i, partition=i % 12)
    p.flush(30)
    caplog.set_level(logging.DEBUG, logger="kafka.consumer.fetcher")
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                      group_id=None, fetch_max_wait_ms=100, max_partition_fetch_bytes=2048)
    seen = {}
    deadline = time.monotonic() + 60
    while sum(map(len, seen.values())) < 600 and time.monotonic() < deadline:
        for tp, records in c.poll(timeout_ms=200).items():
            seen.setdefault(tp.partition, []).extend(r.offset for r in records)
    # Late records reach a session that is already open.
    for i in range(600, 660):
        p.send(topic, value=b"%d" % i, partition=i % 12)
    p.flush(30)
    deadline = time.monotonic() + 60
    while sum(map(len, seen.values())) < 660 and time.monotonic() < deadline:
        for tp, records in c.poll(timeout_ms=200).items():
            seen.setdefault(tp.partition, []).extend(r.offset for r in records)
    c.close()
    p.close()
    assert {part: offs == list(range(55)) for part, offs in seen.items()} == \
        {part: True for part in range(12)}, seen
    text = caplog.text
    assert "created a new incremental fetch session" in text
    assert "incremental fetch response for session" in text
    assert "invalid" not in text.lower(), [l for l in text.splitlines() if "invalid" in l.lower()]
