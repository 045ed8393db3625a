"""confluent-kafka (librdkafka) against a live Strom broker."""

import signal
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 2000  # 5 codecs x 2000 = 10,000 records
# An hour ago: recent enough that the default retention (7 days) keeps every record.
BASE_TS = int(time.time() * 1000) - 3_600_000


def produce(bootstrap, topic, records, **config):
    """Produces (key, value, headers, timestamp) tuples; returns the delivered (partition, offset)s."""
    delivered, failed = [], []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)
        else:
            delivered.append((msg.partition(), msg.offset()))

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    for key, value, headers, ts in records:
        p.produce(topic, key=key, value=value, headers=headers, timestamp=ts, on_delivery=on_delivery)
        p.poll(0)
    remaining = p.flush(30)
    assert remaining == 0, f"{remaining} records were not delivered"
    assert not failed, f"delivery failed: {failed[:3]}"
    return delivered


def consume_all(bootstrap, topic, partition, count, start=0, timeout=30):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    })
    c.assign([TopicPartition(topic, partition, start)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            out.append(msg)
    finally:
        c.close()
    return out


def records_for(codec, n):
    return [
        (
            f"key-{i % 37}".encode(),
            f"{codec}-value-{i}-".encode() * (1 + i % 5),
            [("idx", str(i).encode()), ("codec", codec.encode()), ("empty", b"")],
            BASE_TS + i,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_round_trips_key_value_headers_timestamp_offset_and_order(broker, codec):
    topic = f"conf-{codec}"
    sent = records_for(codec, PER_CODEC)
    delivered = produce(broker.bootstrap, topic, sent, **{"compression.type": codec, "batch.num.messages": 300})
    assert sorted(o for _, o in delivered) == list(range(PER_CODEC))

    got = consume_all(broker.bootstrap, topic, 0, PER_CODEC)
    assert len(got) == PER_CODEC
    for i, (msg, (key, value, headers, ts)) in enumerate(zip(got, sent)):
        assert msg.offset() == i
        assert msg.key() == key
        assert msg.value() == value
        assert msg.headers() == headers
        assert msg.timestamp() == (1, ts)  # (TIMESTAMP_CREATE_TIME, ts)


def test_watermarks_and_offsets_for_times(broker):
    topic = "conf-offsets"
    sent = records_for("none", 500)
    produce(broker.bootstrap, topic, sent, **{"batch.num.messages": 50})
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "offsets"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 500)
        wanted = [TopicPartition(topic, 0, BASE_TS + 123)]
        assert c.offsets_for_times(wanted, timeout=10)[0].offset == 123
        before = [TopicPartition(topic, 0, BASE_TS - 10_000)]
        assert c.offsets_for_times(before, timeout=10)[0].offset == 0
        after = [TopicPartition(topic, 0, BASE_TS + 10_000)]
        # No record that new: librdkafka reports the end (-1 from the broker becomes OFFSET_END).
        assert c.offsets_for_times(after, timeout=10)[0].offset in (-1, 500)
    finally:
        c.close()


def test_admin_create_describe_delete(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    name = f"admin-{uuid.uuid4().hex[:8]}"
    futures = admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1,
                                            config={"retention.ms": "60000"})])
    futures[name].result(10)
    md = admin.list_topics(timeout=10)
    assert len(md.topics[name].partitions) == 4
    assert all(p.leader == 1 for p in md.topics[name].partitions.values())
    topic = broker.http(f"/v1/topics/{name}")
    assert topic["configs"] == {"retention.ms": "60000"}
    assert len(topic["partitions"]) == 4

    again = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    with pytest.raises(KafkaException) as e:
        again[name].result(10)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    bad_rf = admin.create_topics([NewTopic("rf-too-big", num_partitions=1, replication_factor=3)])
    with pytest.raises(KafkaException) as e:
        bad_rf["rf-too-big"].result(10)
    assert e.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR

    bad_cfg = admin.create_topics([NewTopic("bad-cfg", 1, 1, config={"no.such.thing": "1"})])
    with pytest.raises(KafkaException) as e:
        bad_cfg["bad-cfg"].result(10)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG

    dry = admin.create_topics([NewTopic("dry-run", 1, 1)], validate_only=True)
    dry["dry-run"].result(10)
    assert "dry-run" not in admin.list_topics(timeout=10).topics

    admin.delete_topics([name])[name].result(10)
    wait_until(lambda: name not in admin.list_topics(timeout=10).topics, what="topic deleted")
    missing = admin.delete_topics(["never-existed"])
    with pytest.raises(KafkaException) as e:
        missing["never-existed"].result(10)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_idempotent_producer(broker):
    topic = "conf-idempotent"
    sent = records_for("zstd", 3000)
    delivered = produce(broker.bootstrap, topic, sent, **{"enable.idempotence": True,
                                                           "compression.type": "zstd",
                                                           "max.in.flight.requests.per.connection": 5})
    assert sorted(o for _, o in delivered) == list(range(3000))
    got = consume_all(broker.bootstrap, topic, 0, 3000)
    assert [m.value() for m in got] == [v for _, v, _, _ in sent]


def test_acks_zero_and_all(broker):
    for acks in ("0", "all"):
        topic = f"conf-acks-{acks}"
        produce(broker.bootstrap, topic, records_for("none", 200), acks=acks)
        got = consume_all(broker.bootstrap, topic, 0, 200)
        assert [m.offset() for m in got] == list(range(200))


def test_oversize_batch_is_refused_and_nothing_is_written(broker):
    topic = "conf-too-large"
    produce(broker.bootstrap, topic, records_for("none", 1))
    errors = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 5_000_000})
    p.produce(topic, value=b"x" * 2_000_000, on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "too-large"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 1)
    finally:
        c.close()


def test_kill9_then_restart_loses_nothing_acknowledged(fresh_broker):
    topic = "durable"
    sent = records_for("lz4", 5000)
    delivered = produce(fresh_broker.bootstrap, topic, sent, **{"compression.type": "lz4", "acks": "1"})
    assert len(delivered) == 5000
    fresh_broker.restart_after_kill9()
    got = consume_all(fresh_broker.bootstrap, topic, 0, 5000)
    assert [(m.offset(), m.key(), m.value()) for m in got] == [
        (i, k, v) for i, (k, v, _, _) in enumerate(sent)
    ]
    # And the log keeps going at the right offset after the restart.
    more = produce(fresh_broker.bootstrap, topic, records_for("none", 10))
    assert sorted(o for _, o in more) == list(range(5000, 5010))


def test_sigint_shuts_down_cleanly_and_keeps_everything(fresh_broker):
    topic = "graceful"
    produce(fresh_broker.bootstrap, topic, records_for("gzip", 500))
    fresh_broker.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert fresh_broker.proc.wait(timeout=15) == 0, "clean exit"
    fresh_broker.start()
    got = consume_all(fresh_broker.bootstrap, topic, 0, 500)
    assert [m.offset() for m in got] == list(range(500))


def test_librdkafka_asks_for_its_telemetry_subscription_and_gets_none(broker):
    """KIP-714: librdkafka (enable.metrics.push, on by default) asks for its subscription;
    Strom answers as Kafka does with no client-metrics subscription, so nothing fails and
    nothing is pushed."""
    import re
    import urllib.request

    def count(api):
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics",
                                    timeout=5) as r:
            text = r.read().decode()
        m = re.search(r'kafka_network_requestmetrics_requests_total\{request="%s"\} (\d+)' % api,
                      text)
        errors = re.findall(r'kafka_network_requestmetrics_errors_total\{request="%s",[^}]*\} (\d+)'
                            % api, text)
        return (int(m.group(1)) if m else 0), sum(int(e) for e in errors)

    before, _ = count("GetTelemetrySubscriptions")
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("telemetry-probe", b"x")
    assert p.flush(10) == 0
    wait_until(lambda: count("GetTelemetrySubscriptions")[0] > before, timeout=20,
               what="librdkafka's GetTelemetrySubscriptions")
    assert count("GetTelemetrySubscriptions")[1] == 0
    # A client pushes at its interval or when it closes: closed, it has had its chance.
    del p
    time.sleep(1)
    assert count("PushTelemetry")[0] == 0, "pushed although no metric was asked for"
