"""Client quotas with real clients: limits set with the strom CLI and with kafka-python's
AlterClientQuotas/DescribeClientQuotas messages, a confluent-kafka producer and consumer held
to their byte rates (KIP-219 throttle_time_ms and a muted connection), request-time quotas,
and the per-IP connection creation rate (KIP-612)."""

import json
import socket
import struct
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaAdminClient
from kafka.protocol.admin import AlterClientQuotasRequest, DescribeClientQuotasRequest
from kafka.protocol.metadata import MetadataRequest

from conftest import Broker, wait_until
from test_strom_client import strom_binary

MIB = 1024 * 1024
INVALID_REQUEST = 42
CLUSTER_AUTHORIZATION_FAILED = 31


@pytest.fixture
def quota_broker(tmp_path):
    b = Broker(tmp_path / "data").start()
    yield b
    b.stop()


def strom(broker, *args, check=True):
    r = subprocess.run([strom_binary(), "-b", broker.bootstrap, *args],
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"strom {' '.join(args)}: {r.stderr}")
    return r


def metric(broker, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def alter(admin, entity, ops, validate_only=False):
    E = AlterClientQuotasRequest.EntryData
    req = AlterClientQuotasRequest(entries=[E(
        entity=[E.EntityData(entity_type=t, entity_name=n) for t, n in entity],
        ops=[E.OpData(key=k, value=v if v is not None else 0.0, remove=v is None) for k, v in ops],
    )], validate_only=validate_only)
    r = admin._manager.run(admin._manager.send, req)
    return r.entries[0].error_code, r.entries[0].error_message


def describe(admin, components, strict=False):
    C = DescribeClientQuotasRequest.ComponentData
    req = DescribeClientQuotasRequest(
        components=[C(entity_type=t, match_type=m, match=n) for t, m, n in components], strict=strict)
    r = admin._manager.run(admin._manager.send, req)
    assert r.error_code == 0, r
    return {tuple((e.entity_type, e.entity_name) for e in entry.entity):
            {v.key: v.value for v in entry.values} for entry in r.entries}


def test_quotas_are_altered_and_described_by_kafka_python_and_the_cli(quota_broker):
    admin = KafkaAdminClient(bootstrap_servers=quota_broker.bootstrap)
    try:
        assert alter(admin, [("user", "alice"), ("client-id", None)],
                     [("producer_byte_rate", 1048576.0), ("request_percentage", 25.5)]) == (0, None)
        strom(quota_broker, "quotas", "alter", "--user-default",
              "--add-config", "consumer_byte_rate=2097152")
        strom(quota_broker, "quotas", "alter", "--ip", "127.0.0.9",
              "--add-config", "connection_creation_rate=50")
        assert describe(admin, []) == {
            (("user", "alice"), ("client-id", None)): {"producer_byte_rate": 1048576.0,
                                                       "request_percentage": 25.5},
            (("user", None),): {"consumer_byte_rate": 2097152.0},
            (("ip", "127.0.0.9"),): {"connection_creation_rate": 50.0},
        }
        # EXACT, DEFAULT and ANY matches; strict leaves out entities with more types.
        assert list(describe(admin, [("user", 0, "alice")])) == [
            (("user", "alice"), ("client-id", None))]
        assert describe(admin, [("user", 0, "alice")], strict=True) == {}
        assert list(describe(admin, [("user", 1, None)], strict=True)) == [(("user", None),)]
        assert len(describe(admin, [("user", 2, None)])) == 2
        out = strom(quota_broker, "quotas", "describe", "--user", "alice",
                    "--client-id-default").stdout
        assert "user=alice,client-id=<default>\tproducer_byte_rate=1048576,request_percentage=25.5" in out

        # Bad input: a clear error, and nothing changes.
        before = describe(admin, [])
        for entity, ops in [
            ([("user", "bob")], [("fly_rate", 1.0)]),
            ([("user", "bob"), ("ip", None)], [("producer_byte_rate", 1.0)]),
            ([("ip", "not-an-address")], [("connection_creation_rate", 1.0)]),
            ([("user", "bob")], [("producer_byte_rate", 1.5)]),
            ([("user", "bob")], [("producer_byte_rate", -1.0)]),
            ([("group", "g")], [("producer_byte_rate", 1.0)]),
        ]:
            code, message = alter(admin, entity, ops)
            assert code == INVALID_REQUEST and message, (entity, ops, code)
        r = strom(quota_broker, "quotas", "alter", "--user", "bob",
                  "--add-config", "connection_creation_rate=5", check=False)
        assert r.returncode == 1 and "INVALID_REQUEST" in r.stderr, r.stderr
        assert alter(admin, [("user", "bob")], [("producer_byte_rate", 5.0)],
                     validate_only=True) == (0, None)
        assert describe(admin, []) == before

        # Removing the last key forgets the entity.
        strom(quota_broker, "quotas", "alter", "--user-default", "--delete-config",
              "consumer_byte_rate")
        assert (("user", None),) not in describe(admin, [])
    finally:
        admin.close()


def produce_for(bootstrap, client_id, seconds, value=b"x" * 1000):
    """Produces as fast as the broker lets one producer for `seconds`; returns the delivery
    times (monotonic) and the largest throttle librdkafka reported."""
    delivered = []
    throttles = []

    def on_delivery(err, msg):
        assert err is None, err
        delivered.append(time.monotonic())

    def on_stats(js):
        for b in json.loads(js).get("brokers", {}).values():
            throttles.append(b.get("throttle", {}).get("max", 0))

    p = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "linger.ms": 5,
                  "acks": "all", "statistics.interval.ms": 1000, "stats_cb": on_stats,
                  "queue.buffering.max.kbytes": 4096})
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            p.produce("quota-topic", value, on_delivery=on_delivery)
        except BufferError:
            p.poll(0.05)
        p.poll(0)
    p.flush(60)
    return start, delivered, max(throttles, default=0)


def test_a_producer_limited_to_1_mb_per_second_is_held_within_10_percent_of_it(quota_broker):
    strom(quota_broker, "topics", "create", "quota-topic", "--partitions", "1")
    strom(quota_broker, "quotas", "alter", "--client-id", "limited",
          "--add-config", f"producer_byte_rate={MIB}")
    start, delivered, throttle = produce_for(quota_broker.bootstrap, "limited", 32)
    # A quota allows one burst of the window's worth (11 s of the limit, at once), then the
    # limit: judged after the burst.
    window = [t for t in delivered if start + 12 <= t < start + 32]
    rate = len(window) * 1000 / 20
    print(f"producer held to {rate / MIB:.3f} MiB/s of values")
    assert abs(rate - MIB) / MIB < 0.10, f"{rate / MIB:.3f} MiB/s of values"
    assert throttle > 0, "librdkafka never saw throttle_time_ms"
    assert metric(quota_broker, 'strom_quota_throttled_total{quota="produce"}') > 0

    # Another client id has no quota: it is not held to the limit.
    start, delivered, throttle = produce_for(quota_broker.bootstrap, "free", 4)
    assert len(delivered) * 1000 / 4 > 5 * MIB
    assert throttle == 0


def test_a_consumer_limited_to_1_mb_per_second_is_held_within_10_percent_of_it(quota_broker):
    strom(quota_broker, "topics", "create", "quota-topic", "--partitions", "1")
    p = Producer({"bootstrap.servers": quota_broker.bootstrap, "linger.ms": 5})
    for _ in range(60_000):
        while True:
            try:
                p.produce("quota-topic", b"y" * 1000)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(60)
    strom(quota_broker, "quotas", "alter", "--client-id", "slow-reader",
          "--add-config", f"consumer_byte_rate={MIB}")
    c = Consumer({"bootstrap.servers": quota_broker.bootstrap, "group.id": "q",
                  "client.id": "slow-reader", "enable.auto.commit": False})
    c.assign([TopicPartition("quota-topic", 0, 0)])
    start = time.monotonic()
    times = []
    while time.monotonic() - start < 30:
        for m in c.consume(500, timeout=0.5):
            assert m.error() is None, m.error()
            times.append(time.monotonic())
    c.close()
    window = [t for t in times if start + 12 <= t < start + 30]
    rate = len(window) * 1000 / 18
    print(f"consumer held to {rate / MIB:.3f} MiB/s of values")
    assert abs(rate - MIB) / MIB < 0.10, f"{rate / MIB:.3f} MiB/s of values"
    assert metric(quota_broker, 'strom_quota_throttled_total{quota="fetch"}') > 0


def test_a_request_time_quota_throttles_a_busy_client(quota_broker):
    strom(quota_broker, "quotas", "alter", "--client-id", "busy",
          "--add-config", "request_percentage=0.001")
    admin = KafkaAdminClient(bootstrap_servers=quota_broker.bootstrap, client_id="busy")
    free = KafkaAdminClient(bootstrap_servers=quota_broker.bootstrap, client_id="other")
    try:
        throttles = []
        for _ in range(40):
            r = admin._manager.run(admin._manager.send, MetadataRequest(topics=[]))
            throttles.append(r.throttle_time_ms)
            if r.throttle_time_ms > 0:
                break
        assert max(throttles) > 0, throttles
        # Request-time throttles are capped at one window (1 s), as Kafka caps them.
        assert max(throttles) <= 1000
        r = free._manager.run(free._manager.send, MetadataRequest(topics=[]))
        assert r.throttle_time_ms == 0
    finally:
        admin.close()
        free.close()


def api_versions_answered(sockets):
    """Sends ApiVersions v0 on every socket, then says which got an answer."""
    frame = struct.pack(">hhi", 18, 0, 7) + struct.pack(">h", 1) + b"q"
    for s in sockets:
        s.sendall(struct.pack(">i", len(frame)) + frame)
    answered = []
    for s in sockets:
        s.settimeout(5)
        try:
            answered.append(len(s.recv(4)) == 4)
        except OSError:
            answered.append(False)
        s.close()
    return answered


def connect_many(port, n, source):
    out = []
    for _ in range(n):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        out.append(s)
    return out


def test_the_connection_creation_rate_is_limited_per_ip(quota_broker):
    strom(quota_broker, "quotas", "alter", "--ip-default",
          "--add-config", "connection_creation_rate=2")
    strom(quota_broker, "quotas", "alter", "--ip", "127.0.0.2",
          "--add-config", "connection_creation_rate=1000")
    answered = api_versions_answered(connect_many(quota_broker.kafka_port, 40, "127.0.0.1"))
    # Two a second with a window's worth (22) of burst: about twenty get in (the CLI's own
    # connection counted too); the rest are held, unanswered, then closed.
    assert 15 <= sum(answered) <= 24, sum(answered)
    # Another address with its own, higher limit is not affected.
    assert all(api_versions_answered(connect_many(quota_broker.kafka_port, 40, "127.0.0.2")))
    assert metric(quota_broker, 'strom_quota_throttled_total{quota="connection"}') >= 16
    # The broker keeps serving.
    wait_until(lambda: quota_broker.http("/v1/cluster"), what="the broker answering")


def test_the_controller_mutation_rate_refuses_topics_once_spent(quota_broker):
    from kafka.protocol.admin import CreateTopicsRequest
    strom(quota_broker, "quotas", "alter", "--client-id", "creator",
          "--add-config", "controller_mutation_rate=1")
    admin = KafkaAdminClient(bootstrap_servers=quota_broker.bootstrap, client_id="creator")
    try:
        T = CreateTopicsRequest.CreatableTopic
        req = CreateTopicsRequest(topics=[
            T(name=f"mutated-{i}", num_partitions=5, replication_factor=1, assignments=[],
              configs=[]) for i in range(6)], timeout_ms=30000, validate_only=False)
        r = admin._manager.run(admin._manager.send, req)
        codes = {t.name: t.error_code for t in r.topics}
        # 11 partitions of credit (1 a second, 11 s of burst): the third topic spends it and
        # goes through; the rest are refused untouched (THROTTLING_QUOTA_EXCEEDED, 89).
        assert codes == {"mutated-0": 0, "mutated-1": 0, "mutated-2": 0,
                         "mutated-3": 89, "mutated-4": 89, "mutated-5": 89}, codes
        assert r.throttle_time_ms > 0
        topics = quota_broker.http("/v1/topics")
        names = {t["name"] for t in topics} if isinstance(topics, list) else set(topics)
        assert not any(f"mutated-{i}" in str(names) for i in (3, 4, 5))
    finally:
        admin.close()
