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
