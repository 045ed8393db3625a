"""Replication throttles (KIP-73, issue #17): `strom partitions reassign --execute --throttle`
sets the brokers' leader/follower.replication.throttled.rate and the topic's throttled
replica lists, as kafka-reassign-partitions.sh does; a 50 MB catch-up of a new replica then
runs at the throttle (within 20%), and --verify clears the throttle once the move is done.
The throttle rates are dynamic broker configs any Kafka admin client can set and describe."""

import json
import subprocess
import time
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry
from confluent_kafka.admin import ConfigResource as CKResource
from confluent_kafka.admin import ResourceType as CKResourceType
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from conftest import Cluster, wait_until
from test_strom_client import strom_binary

RATE = 1_000_000
TOTAL = 50 * 1_000_000
VALUE = 10_000


@pytest.fixture
def three(tmp_path):
    c = Cluster(tmp_path, n=3,
                broker_args=["--broker-heartbeat-interval-ms", "250",
                             "--replica-lag-time-max-ms", "5000"]).start()
    yield c
    c.stop()


def size_on(broker, topic):
    p = broker.http(f"/v1/topics/{topic}")["partitions"][0]
    return p.get("size_bytes", 0), p.get("log_end_offset", 0)


def described(ca, resource_type, name):
    res = CKResource(resource_type, name)
    return {k: e.value for k, e in ca.describe_configs([res])[res].result(30).items()}


def broker_config(ca, broker, name):
    return described(ca, CKResourceType.BROKER, str(broker))[name]


def test_a_throttled_move_catches_up_at_the_rate_and_verify_clears_it(three, tmp_path):
    c = three
    topic = f"thr-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, replica_assignments={0: [1, 2]})])
    wait_until(lambda: sorted(c.brokers[0].http(f"/v1/topics/{topic}")["partitions"][0]["isr"])
               == [1, 2], what="in sync on 1 and 2")

    # Static broker configs are flags: refused, nothing changes.
    ca = AdminClient({"bootstrap.servers": c.bootstrap})
    static = CKResource(CKResourceType.BROKER, "1", incremental_configs=[
        ConfigEntry("log.retention.ms", "1",
                    incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as refused:
        ca.incremental_alter_configs([static])[static].result(30)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG, refused.value

    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 20,
                  "batch.size": 1_000_000, "compression.type": "none"})
    payload = b"x" * VALUE
    for _ in range(TOTAL // VALUE):
        while True:
            try:
                p.produce(topic, value=payload)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(120) == 0
    leader_size, end = size_on(c.brokers[0], topic)
    assert leader_size >= TOTAL and end == TOTAL // VALUE

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": [1, 2, 3]}]}))

    def strom(*args):
        return subprocess.run([strom_binary(), "-b", c.bootstrap, "partitions", "reassign",
                               *args, "--reassignment-json-file", str(plan)],
                              capture_output=True, text=True, timeout=60)

    started = time.monotonic()
    out = strom("--execute", "--throttle", str(RATE))
    assert out.returncode == 0, out.stderr
    assert f"The inter-broker throttle limit was set to {RATE} B/s" in out.stdout, out.stdout
    # What any Kafka admin client sees: the rates on the brokers, the lists on the topic.
    for b in (1, 2, 3):
        assert broker_config(ca, b, "leader.replication.throttled.rate") == str(RATE)
    topic_configs = described(ca, CKResourceType.TOPIC, topic)
    assert topic_configs["leader.replication.throttled.replicas"] == "0:1,0:2"
    assert topic_configs["follower.replication.throttled.replicas"] == "0:3"

    # Broker 3's copy grows at the throttle's pace until it holds everything.
    new = c.brokers[2]
    wait_until(lambda: size_on(new, topic)[1] == end, timeout=300, what="broker 3 caught up")
    elapsed = time.monotonic() - started
    rate = size_on(new, topic)[0] / elapsed
    print(f"throttled catch-up: {leader_size} bytes in {elapsed:.1f} s = {rate / 1e6:.3f} MB/s "
          f"(throttle {RATE / 1e6:.3f} MB/s)")
    assert 0.8 * RATE <= rate <= 1.2 * RATE, rate

    wait_until(lambda: strom("--verify").returncode == 0, timeout=60, what="verified")
    # Done: verify removed the throttle everywhere.
    cleared = strom("--verify").stdout
    assert "Clearing broker-level throttles on brokers 1,2,3" in cleared, cleared
    assert f"Clearing topic-level throttles on topic {topic}" in cleared, cleared
    for b in (1, 2, 3):
        assert broker_config(ca, b, "leader.replication.throttled.rate") == \
            "9223372036854775807"
    assert described(ca, CKResourceType.TOPIC, topic)[
        "follower.replication.throttled.replicas"] == ""

