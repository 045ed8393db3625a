"""Consumer groups with real clients: shared partitions, rebalances, committed offsets."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer

from conftest import Broker, wait_until


@pytest.fixture(scope="module")
def gbroker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("strom-groups") / "data",
               extra_args=["--group-initial-rebalance-delay-ms", "300"]).start()
    yield b
    b.stop()


def make_topic(b, partitions, n_records):
    name = f"grp-{uuid.uuid4().hex[:6]}"
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic(name, partitions, 1)])[name].result(10)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
    for i in range(n_records):
        p.produce(name, key=b"k%d" % i, value=b"v%d" % i, partition=i % partitions)
    assert p.flush(30) == 0
    return name


def consumer(b, group, assignor="range"):
    return Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                     "partition.assignment.strategy": assignor})


def poll_all(consumers, rounds=1):
    got = []
    for _ in range(rounds):
        for c in consumers:
            m = c.poll(0.05)
            if m is not None and not m.error():
                got.append((c, m))
    return got


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_members_share_partitions_commit_and_rebalance(gbroker, assignor):
    topic = make_topic(gbroker, 6, 600)
    group = f"g-{uuid.uuid4().hex[:6]}"
    cs = [consumer(gbroker, group, assignor) for _ in range(3)]
    for c in cs:
        c.subscribe([topic])
    seen = {}

    def balanced():
        for c, m in poll_all(cs):
            seen[(m.partition(), m.offset())] = c
            c.commit(message=m, asynchronous=False)
        return [len(c.assignment()) for c in cs] == [2, 2, 2]
    wait_until(balanced, timeout=60, what="three members with two partitions each")
    parts = [{tp.partition for tp in c.assignment()} for c in cs]
    assert set().union(*parts) == set(range(6)) and sum(len(p) for p in parts) == 6

    def everything():
        for c, m in poll_all(cs):
            seen[(m.partition(), m.offset())] = c
            c.commit(message=m, asynchronous=False)
        return len(seen) == 600
    wait_until(everything, timeout=60, what="all 600 records consumed once")
    committed = cs[0].committed([tp for c in cs for tp in c.assignment()], timeout=10)
    assert sorted(tp.offset for tp in committed) == [100] * 6
    doc = gbroker.http(f"/v1/groups/{group}")
    assert doc["state"] == "Stable" and len(doc["members"]) == 3, doc
    assigned = sorted(p for m in doc["members"] for a in m["assignment"] for p in a["partitions"])
    assert assigned == list(range(6)), doc["members"]
    assert len(doc["offsets"]) == 6 and all(o["lag"] == 0 for o in doc["offsets"]), doc["offsets"]
    assert any(g["group_id"] == group for g in gbroker.http("/v1/groups"))

    # One member leaves: the other two take its partitions.
    cs[2].close()
    wait_until(lambda: (poll_all(cs[:2]), [len(c.assignment()) for c in cs[:2]] == [3, 3])[1],
               timeout=60, what="two members with three partitions each")
    for c in cs[:2]:
        c.close()


def test_kafka_python_auto_commit_resumes_at_the_committed_offset(gbroker):
    topic = make_topic(gbroker, 1, 200)
    group = f"kp-{uuid.uuid4().hex[:6]}"

    def read(n):
        c = KafkaConsumer(topic, bootstrap_servers=gbroker.bootstrap, group_id=group,
                          auto_offset_reset="earliest", enable_auto_commit=True,
                          auto_commit_interval_ms=100, consumer_timeout_ms=15_000)
        out = []
        for m in c:
            out.append(m.offset)
            if len(out) == n:
                break
        c.close(autocommit=True)
        return out

    assert read(120) == list(range(120))
    assert read(80) == list(range(120, 200)), "the second consumer resumes where the first committed"


def test_committed_offsets_survive_kill9(tmp_path):
    from confluent_kafka import TopicPartition
    b = Broker(tmp_path / "data", extra_args=["--group-initial-rebalance-delay-ms", "0"]).start()
    try:
        topic = make_topic(b, 2, 10)
        group = "durable-group"
        c = consumer(b, group)
        c.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 7)], asynchronous=False)
        c.close()
        b.restart_after_kill9()
        c = consumer(b, group)
        got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        assert [tp.offset for tp in got] == [4, 7]
        c.close()
    finally:
        b.stop()


def test_killed_member_partitions_move_within_the_session_timeout(gbroker, tmp_path):
    """A member in another process is killed -9; the survivor gets its partitions."""
    import subprocess
    import sys
    topic = make_topic(gbroker, 4, 40)
    group = f"kill-{uuid.uuid4().hex[:6]}"
    script = tmp_path / "member.py"
    script.write_text(
        "import sys, time\n"
        "from confluent_kafka import Consumer\n"
        "c = Consumer({'bootstrap.servers': sys.argv[1], 'group.id': sys.argv[2],\n"
        "              'session.timeout.ms': 3000, 'heartbeat.interval.ms': 300,\n"
        "              'auto.offset.reset': 'earliest'})\n"
        "c.subscribe([sys.argv[3]])\n"
        "while True:\n"
        "    c.poll(0.1)\n"
        "    if c.assignment():\n"
        "        print('assigned', flush=True)\n")
    other = subprocess.Popen([sys.executable, str(script), gbroker.bootstrap, group, topic],
                             stdout=subprocess.PIPE, text=True)
    survivor = consumer(gbroker, group)
    survivor.subscribe([topic])
    try:
        wait_until(lambda: (survivor.poll(0.1), len(survivor.assignment()) == 2)[1],
                   timeout=60, what="two members sharing four partitions")
        assert other.stdout.readline().strip() == "assigned"
        other.kill()  # SIGKILL: no LeaveGroup, only the session timeout tells
        other.wait()
        t0 = time.monotonic()
        wait_until(lambda: (survivor.poll(0.1), len(survivor.assignment()) == 4)[1],
                   timeout=30, what="the survivor to own all four partitions")
        assert time.monotonic() - t0 < 3.0 + 10.0, "session timeout plus a rebalance"
    finally:
        other.kill()
        survivor.close()


def test_admin_lists_describes_and_deletes_groups(gbroker):
    from confluent_kafka import KafkaException, TopicPartition
    topic = make_topic(gbroker, 2, 20)
    group = f"adm-{uuid.uuid4().hex[:6]}"
    c = consumer(gbroker, group)
    c.subscribe([topic])
    wait_until(lambda: (c.poll(0.1), len(c.assignment()) == 2)[1], timeout=60, what="assignment")
    c.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    listed = admin.list_consumer_groups().result(10)
    assert group in [g.group_id for g in listed.valid]
    described = admin.describe_consumer_groups([group])[group].result(10)
    assert len(described.members) == 1
    assert {tp.partition for tp in described.members[0].assignment.topic_partitions} == {0, 1}
    with pytest.raises(KafkaException) as e:
        admin.delete_consumer_groups([group])[group].result(10)
    assert "NON_EMPTY_GROUP" in str(e.value) or e.value.args[0].code() == 68
    c.close()
    admin.delete_consumer_groups([group])[group].result(10)
    fresh = consumer(gbroker, group)
    assert fresh.committed([TopicPartition(topic, 0)], timeout=10)[0].offset < 0, "offsets deleted"
    fresh.close()


def test_static_member_restarts_without_a_rebalance_and_a_fourth_member_spreads(gbroker):
    topic = make_topic(gbroker, 6, 60)
    group = f"static-{uuid.uuid4().hex[:6]}"
    assigns = []

    def static(instance):
        c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": group,
                      "group.instance.id": instance, "session.timeout.ms": 30000,
                      "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        return c

    dynamic = consumer(gbroker, group)
    dynamic.subscribe([topic], on_assign=lambda c, ps: assigns.append(sorted(p.partition for p in ps)))
    # The dynamic member forms the group first and leads; the restarting static member is a
    # follower here (the static leader's case is the next test).
    wait_until(lambda: (poll_all([dynamic]), len(dynamic.assignment()) == 6)[1],
               timeout=60, what="the first member to own the topic")
    a = static("member-a")
    wait_until(lambda: (poll_all([a, dynamic]), [len(c.assignment()) for c in (a, dynamic)] == [3, 3])[1],
               timeout=60, what="two members with three partitions each")
    mine = sorted(tp.partition for tp in a.assignment())
    rebalances = len(assigns)
    a.close()  # a static member does not leave the group on close
    a = static("member-a")
    wait_until(lambda: (poll_all([a, dynamic]), sorted(tp.partition for tp in a.assignment()) == mine)[1],
               timeout=60, what="the restarted static member to get its partitions back")
    poll_all([a, dynamic], rounds=5)
    assert len(assigns) == rebalances, "the other member saw no rebalance"

    # A new member joins: the six partitions spread over three.
    c = consumer(gbroker, group)
    c.subscribe([topic])
    wait_until(lambda: (poll_all([a, dynamic, c]), sorted(len(x.assignment()) for x in (a, dynamic, c)) == [2, 2, 2])[1],
               timeout=60, what="three members with two partitions each")
    for x in (a, dynamic, c):
        x.close()


def test_a_restarted_static_leader_gets_its_partitions_back_without_a_rebalance(gbroker):
    """librdkafka: the static member that leads the group closes and comes back within the
    session timeout; as with Kafka, it gets its old assignment and the other member sees no
    revocation and no new assignment."""
    topic = make_topic(gbroker, 4, 40)
    group = f"static-leader-{uuid.uuid4().hex[:6]}"
    events = []

    def static(instance):
        c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": group,
                      "group.instance.id": instance, "session.timeout.ms": 30000,
                      "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        return c

    leader = static("leader")
    wait_until(lambda: (poll_all([leader]), len(leader.assignment()) == 4)[1],
               timeout=60, what="the static leader to own the topic")
    other = consumer(gbroker, group)
    other.subscribe([topic], on_assign=lambda c, ps: events.append(("assign", len(ps))),
                    on_revoke=lambda c, ps: events.append(("revoke", len(ps))))
    wait_until(lambda: (poll_all([leader, other]),
                        [len(c.assignment()) for c in (leader, other)] == [2, 2])[1],
               timeout=60, what="two members with two partitions each")
    mine = sorted(tp.partition for tp in leader.assignment())
    seen = list(events)
    leader.close()  # a static member does not leave the group on close
    leader = static("leader")
    wait_until(lambda: (poll_all([leader, other]),
                        sorted(tp.partition for tp in leader.assignment()) == mine)[1],
               timeout=60, what="the restarted static leader to get its partitions back")
    poll_all([leader, other], rounds=20)
    assert events == seen, f"the other member was rebalanced: {events[len(seen):]}"
    assert len(other.assignment()) == 2
    leader.close()
    other.close()


def test_committing_offsets_of_a_missing_topic_is_refused_per_partition(gbroker):
    """librdkafka committing for a topic that does not exist gets UNKNOWN_TOPIC_OR_PARTITION,
    as from Kafka; the partitions that exist are committed all the same."""
    from confluent_kafka import KafkaError, KafkaException, TopicPartition

    real = make_topic(gbroker, 1, 3)
    group = f"missing-{uuid.uuid4().hex[:6]}"
    c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    missing = f"nope-{uuid.uuid4().hex[:6]}"
    with pytest.raises(KafkaException) as raised:
        c.commit(offsets=[TopicPartition(real, 0, 2), TopicPartition(missing, 0, 5)],
                 asynchronous=False)
    assert raised.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, raised.value
    got = c.committed([TopicPartition(real, 0), TopicPartition(missing, 0)], timeout=10)
    assert [(tp.topic, tp.offset) for tp in got] == [(real, 2), (missing, -1001)]
    c.close()


def test_cooperative_consumer_closes_promptly_after_its_topic_is_deleted(gbroker):
    """librdkafka, cooperative-sticky: the subscribed topic is deleted, the consumer sees its
    partitions lost, and closing it still completes at once (the defect issue #18 reported:
    close not completing within 30 s)."""
    import time as _time

    topic = make_topic(gbroker, 3, 30)
    group = f"coop-deleted-{uuid.uuid4().hex[:6]}"
    events = []
    c = Consumer({"bootstrap.servers": gbroker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest",
                  "partition.assignment.strategy": "cooperative-sticky",
                  "topic.metadata.refresh.interval.ms": 1000})
    c.subscribe([topic], on_assign=lambda _c, ps: events.append(("assign", len(ps))),
                on_lost=lambda _c, ps: events.append(("lost", len(ps))))
    consumed = []
    wait_until(lambda: (consumed.extend(m for _c, m in poll_all([c])), len(consumed) >= 30)[1],
               timeout=60, what="every record consumed")
    admin = AdminClient({"bootstrap.servers": gbroker.bootstrap})
    admin.delete_topics([topic])[topic].result(10)
    wait_until(lambda: (poll_all([c]), ("lost", 3) in events)[1], timeout=30,
               what="the deleted topic's partitions to be lost")
    start = _time.monotonic()
    c.close()
    assert _time.monotonic() - start < 10, "close hung"
