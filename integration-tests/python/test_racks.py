"""Rack awareness and decommissioning (issue #17).

- `--broker-rack`: the controller places each partition's replicas on different racks and
  spreads leaders; kafka-python's describe_cluster reports the racks.
- Fetch from the closest replica (KIP-392): with Kafka's RackAwareReplicaSelector, a
  librdkafka consumer with `client.rack` reads from the in-sync follower in its rack (the
  brokers' BytesOut per topic show who served it), gets every record in order, and a
  consumer without a rack, or in the leader's rack, reads from the leader.
- `strom cluster decommission 1` under an acks=all idempotent producer and a consumer group:
  every replica (internal topics too) leaves broker 1, the broker is unregistered, and the
  checker finds nothing lost, duplicated or reordered.
"""

import re
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from acked_load import AckedLoad
from conftest import Cluster, wait_until
from test_strom_client import strom_binary

SELECTOR = "org.apache.kafka.common.replica.RackAwareReplicaSelector"
RACKS = {1: "rack-a", 2: "rack-a", 3: "rack-b", 4: "rack-b"}


@pytest.fixture
def racked(tmp_path):
    c = Cluster(tmp_path, n=4,
                broker_args=["--broker-heartbeat-interval-ms", "250",
                             "--replica-lag-time-max-ms", "5000",
                             "--replica-selector-class", SELECTOR],
                broker_args_of=lambda i: ["--broker-rack", RACKS[i]]).start()
    yield c
    c.stop()


def bytes_out(broker, topic):
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'^kafka_server_brokertopicmetrics_bytesout_total\{topic="'
                  + re.escape(topic) + r'"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def partitions(broker, topic):
    return broker.http(f"/v1/topics/{topic}")["partitions"]


def consume_all(bootstrap, topic, expected, rack=None):
    conf = {"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest", "enable.auto.commit": False}
    if rack:
        conf["client.rack"] = rack
    c = Consumer(conf)
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < expected and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None or msg.error():
            continue
        got.append(msg.value())
    c.close()
    return got


def test_replicas_spread_over_racks_and_consumers_read_from_their_rack(racked):
    c = racked
    admin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
    described = admin.describe_cluster()
    assert {b["broker_id"]: b["rack"] for b in described["brokers"]} == RACKS, described

    # Placement: RF 2 over two racks of two brokers; every partition on both racks, every
    # broker leading two of the eight.
    spread = f"spread-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(spread, num_partitions=8, replication_factor=2)])
    placed = wait_until(lambda: partitions(c.brokers[0], spread), what="the topic")
    for p in placed:
        assert {RACKS[r] for r in p["replicas"]} == {"rack-a", "rack-b"}, p
    leaders = [p["replicas"][0] for p in placed]
    assert sorted(leaders.count(b) for b in RACKS) == [2, 2, 2, 2], leaders

    # Fetch from follower: the leader is broker 1 (rack-a), its follower broker 3 (rack-b).
    topic = f"closest-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic, replica_assignments={0: [1, 3]})])
    wait_until(lambda: sorted(partitions(c.brokers[0], topic)[0]["isr"]) == [1, 3],
               what="both replicas in sync")
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
    values = [f"r-{i}".encode() for i in range(2000)]
    for v in values:
        p.produce(topic, value=v)
    assert p.flush(30) == 0
    # The follower has learnt the high watermark once it fetches again.
    wait_until(lambda: any(r.get("topic") == topic and r["high_watermark"] == 2000
                           for r in c.brokers[2].http("/v1/replicas")),
               what="the follower's high watermark at 2000")
    leader, follower = c.brokers[0], c.brokers[2]
    assert bytes_out(leader, topic) == 0 and bytes_out(follower, topic) == 0

    got = consume_all(c.bootstrap, topic, len(values), rack="rack-b")
    assert got == values, "every record once, in order, from the follower"
    assert bytes_out(follower, topic) > 0, "the rack-b consumer read from broker 3"
    assert bytes_out(leader, topic) == 0, "and not from the leader"

    # Strom's own consumer follows the leader's pointer too.
    before = bytes_out(follower, topic)
    r = subprocess.run([strom_binary(), "-b", c.bootstrap, "consume", topic, "--from-beginning",
                        "--count", str(len(values)), "--client-rack", "rack-b"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [v.decode() for v in values]
    assert bytes_out(follower, topic) > before
    assert bytes_out(leader, topic) == 0

    # In the leader's rack, or naming none: the leader serves.
    assert consume_all(c.bootstrap, topic, len(values), rack="rack-a") == values
    after_a = bytes_out(leader, topic)
    assert after_a > 0
    assert consume_all(c.bootstrap, topic, len(values)) == values
    assert bytes_out(leader, topic) > after_a
    # No replica in the consumer's rack: the leader too.
    before = bytes_out(leader, topic)
    assert consume_all(c.bootstrap, topic, len(values), rack="rack-z") == values
    assert bytes_out(leader, topic) > before


def strom(c, *args):
    return subprocess.run([strom_binary(), "-b", c.bootstrap, *args],
                          capture_output=True, text=True, timeout=300)


def test_decommission_moves_everything_off_then_unregisters_under_load(racked):
    c = racked
    topic = f"retire-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, replica_assignments={
        p: [1, 2, 3] for p in range(6)}, topic_configs={"min.insync.replicas": "2"})])
    watcher = c.brokers[1]
    wait_until(lambda: all(len(p["isr"]) == 3 for p in partitions(watcher, topic)),
               what="the topic in sync on 1-3")

    # An unknown broker is refused without a change.
    r = strom(c, "cluster", "decommission", "9")
    assert r.returncode != 0 and "broker 9 is not a registered broker" in r.stderr, r

    load = AckedLoad(c.bootstrap, topic, 6).start()
    try:
        time.sleep(3)
        r = strom(c, "cluster", "decommission", "1")
        assert r.returncode == 0, (r.stdout, r.stderr)
        print(r.stdout)
        assert re.search(r"moving \d+ replica\(s\) off broker 1", r.stdout), r.stdout
        assert "broker 1 unregistered" in r.stdout, r.stdout
        time.sleep(2)
    finally:
        load.stop()

    # No partition of any topic (the group's __consumer_offsets too) names broker 1.
    everything = watcher.http("/v1/topics")
    names = [t["name"] if isinstance(t, dict) else t for t in everything]
    assert topic in names and "__consumer_offsets" in names, names
    for name in names:
        for p in partitions(watcher, name):
            assert 1 not in p["replicas"], (name, p)
            assert len(p["replicas"]) == len(set(p["replicas"])), (name, p)
    # Broker 1's slot went to the one broker not already there, in place.
    for p in partitions(watcher, topic):
        assert p["replicas"] == [4, 2, 3], p
    assert {b["id"] for b in watcher.http("/v1/brokers")} == {2, 3, 4}
    wait_until(lambda: {b["broker_id"] for b in KafkaAdminClient(
        bootstrap_servers=watcher.bootstrap).describe_cluster()["brokers"]} == {2, 3, 4},
        what="clients no longer see broker 1")
    # The still-running broker 1 stays out (its incarnation may not register again).
    time.sleep(1.5)
    assert {b["id"] for b in watcher.http("/v1/brokers")} == {2, 3, 4}
    assert "this broker was unregistered from the cluster" in c.brokers[0].log_path.read_text()

    report = load.check()
    print(f"decommission: {report.summary()}")
    assert not report.problems(), report.problems()


def test_decommission_waits_for_a_fenced_broker_to_take_the_replicas(tmp_path):
    """The only broker that can take broker 1's replica misses its heartbeats (SIGSTOP, as a
    starved container would): decommission waits for it instead of failing, then finishes
    once it is back, with every record still there."""
    c = Cluster(tmp_path, n=3, broker_args=["--broker-heartbeat-interval-ms", "250"]).start()
    stopped = False
    try:
        topic = f"fenced-{uuid.uuid4().hex[:6]}"
        admin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
        admin.create_topics([NewTopic(topic, replica_assignments={0: [1, 2]})])
        watcher = c.brokers[1]
        wait_until(lambda: sorted(partitions(watcher, topic)[0]["isr"]) == [1, 2],
                   what="the topic in sync on 1-2")
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
        values = [f"v-{i}".encode() for i in range(500)]
        for v in values:
            p.produce(topic, value=v)
        assert p.flush(30) == 0

        c.brokers[2].proc.send_signal(signal.SIGSTOP)
        stopped = True
        wait_until(lambda: {b["id"]: b["state"] for b in watcher.http("/v1/brokers")}[3]
                   == "fenced", what="broker 3 fenced")
        live = f"{c.brokers[0].bootstrap},{c.brokers[1].bootstrap}"
        proc = subprocess.Popen([strom_binary(), "-b", live, "cluster", "decommission", "1",
                                 "--timeout-ms", "120000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        assert proc.poll() is None, proc.communicate()
        c.brokers[2].proc.send_signal(signal.SIGCONT)
        stopped = False
        out, err = proc.communicate(timeout=120)
        print(out)
        assert proc.returncode == 0, (out, err)
        assert "waiting for fenced broker(s) [3] to come back" in out, out
        assert "broker 1 unregistered" in out, out
        assert partitions(watcher, topic)[0]["replicas"] == [3, 2]
        assert consume_all(f"{c.brokers[1].bootstrap},{c.brokers[2].bootstrap}", topic,
                           len(values)) == values
    finally:
        if stopped:
            c.brokers[2].proc.send_signal(signal.SIGCONT)
        c.stop()
