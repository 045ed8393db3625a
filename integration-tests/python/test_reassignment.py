"""Partition reassignment (KIP-455, issue #17) through kafka-python's admin client
(alter_partition_reassignments / list_partition_reassignments, what
kafka-reassign-partitions.sh sends): an RF=3 topic on brokers 1-3 moves to 2-4 under an
idempotent acks=all producer and a consumer group, with the active controller killed half-way;
nothing is lost, duplicated or reordered, and broker 1 holds no replica afterwards."""

import json
import subprocess
import time
import uuid

import pytest
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTP
from kafka.admin import NewTopic
from kafka.errors import NoReassignmentInProgressError, UnknownTopicOrPartitionError

from acked_load import AckedLoad
from conftest import Cluster, wait_until
from test_strom_client import strom_binary

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

    load = AckedLoad(c.bootstrap, topic, PARTITIONS).start()
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
        load.stop()
    for p in partitions(watcher, topic):
        assert p["replicas"] == [2, 3, 4], p
        assert sorted(p["isr"]) == [2, 3, 4], p
        assert p["leader"] in (2, 3, 4), p
    # Broker 1 dropped its copies.
    wait_until(lambda: not any(r.get("topic") == topic for r in
                               c.brokers[0].http("/v1/replicas")), what="broker 1 holds none")

    # The three new replicas hold the same bytes below the high watermark.
    for p in range(PARTITIONS):
        def digests():
            hws = [r["high_watermark"] for b in c.brokers[1:] for r in b.http("/v1/replicas")
                   if r.get("topic") == topic and r["partition"] == p]
            below = min(hws)
            return [r["digest"] for b in c.brokers[1:]
                    for r in b.http(f"/v1/replicas?digest_below={below}")
                    if r.get("topic") == topic and r["partition"] == p]

        def same():
            d = digests()
            return len(d) == 3 and len(set(d)) == 1
        wait_until(same, what=f"{topic}-{p} identical on 2, 3, 4")

    report = load.check()
    print(f"reassignment: {report.summary()}")
    assert not report.problems(), report.problems()


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


def test_strom_cli_plans_executes_and_verifies(four, tmp_path):
    """`strom partitions reassign` with kafka-reassign-partitions.sh's options and JSON."""
    c = four
    topic = f"cli-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, replica_assignments={
        p: [1, 2, 3] for p in range(4)})])
    watcher = c.brokers[1]
    wait_until(lambda: all(len(p["isr"]) == 3 for p in partitions(watcher, topic)),
               what="in sync")

    def strom(*args, check=True):
        r = subprocess.run([strom_binary(), "-b", c.bootstrap, "partitions", "reassign", *args],
                           capture_output=True, text=True, timeout=60)
        if check:
            assert r.returncode == 0, (r.stdout, r.stderr)
        return r

    gen = strom("--generate", "--topics", topic, "--broker-list", "2,3,4").stdout
    current_json, proposed_json = gen.split("Proposed partition reassignment configuration\n")
    current = json.loads(current_json.split("Current partition replica assignment\n")[1])
    assert [p["replicas"] for p in current["partitions"]] == [[1, 2, 3]] * 4
    proposed = json.loads(proposed_json)
    assert proposed["version"] == 1
    assert all(1 not in p["replicas"] and len(p["replicas"]) == 3 for p in proposed["partitions"])
    assert len({p["replicas"][0] for p in proposed["partitions"]}) == 3, "leaders spread"
    plan = tmp_path / "plan.json"
    plan.write_text(proposed_json)

    out = strom("--execute", "--reassignment-json-file", str(plan)).stdout
    assert "Save this to use as the --reassignment-json-file option during rollback" in out
    assert ("Successfully started partition reassignments for "
            + ",".join(f"{topic}-{p}" for p in range(4))) in out, out
    wait_until(lambda: strom("--verify", "--reassignment-json-file", str(plan),
                             check=False).returncode == 0, timeout=60, what="verified")
    verified = strom("--verify", "--reassignment-json-file", str(plan)).stdout
    assert verified.count("is completed.") == 4, verified
    assert [p["replicas"] for p in partitions(watcher, topic)] == \
        [p["replicas"] for p in proposed["partitions"]]
    assert "No partition reassignments found." in strom("--list").stdout
    assert "None of the specified partition reassignments are active." in strom(
        "--cancel", "--reassignment-json-file", str(plan)).stdout
    # Mid-way: moving partition 0 back onto broker 1 while it is stopped stays in progress,
    # shows in --list, fails --verify, and --cancel undoes it.
    c.brokers[0].stop()
    wait_until(lambda: any(b["id"] == 1 and b["state"] == "fenced"
                           for b in watcher.http("/v1/brokers")), what="broker 1 fenced")
    before = partitions(watcher, topic)[0]["replicas"]
    back = tmp_path / "back.json"
    back.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": [1] + before[1:]}]}))
    strom("--execute", "--reassignment-json-file", str(back))
    listed = strom("--list").stdout
    assert f"{topic}-0: replicas: " in listed and f"adding: 1. removing: {before[0]}." in listed, \
        listed
    pending = strom("--verify", "--reassignment-json-file", str(back), check=False)
    assert pending.returncode == 1 and "is still in progress." in pending.stdout, pending
    cancelled = strom("--cancel", "--reassignment-json-file", str(back)).stdout
    assert f"Successfully cancelled partition reassignments for: {topic}-0" in cancelled
    assert "No partition reassignments found." in strom("--list").stdout
    assert sorted(partitions(watcher, topic)[0]["replicas"]) == sorted(before)

    bad = strom("--generate", "--topics", topic, "--broker-list", "2,3", check=False)
    assert bad.returncode == 1 and "only 2 brokers" in bad.stderr, bad
