"""KIP-848 consumer groups (`group.protocol=consumer`) with librdkafka against a 3-broker
cluster: the broker assigns partitions, members reconcile incrementally, static members
come back to their partitions, regex subscriptions follow new topics, and the admin API
describes and lists the groups."""

import json
import subprocess
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, Cluster, wait_until

# A member in its own process (so it can be killed): it prints what the group gives and
# takes, every record it gets, and every record whose offset it committed.
MEMBER = r"""
import json, sys
from confluent_kafka import Consumer, KafkaException
bootstrap, group, topic, instance, protocol = sys.argv[1:6]
conf = {"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": protocol,
        "auto.offset.reset": "earliest", "enable.auto.commit": False}
if protocol == "classic":
    conf.update({"partition.assignment.strategy": "cooperative-sticky",
                 "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
if instance != "-":
    conf["group.instance.id"] = instance
c = Consumer(conf)
def out(*ev):
    print(json.dumps(ev), flush=True)
c.subscribe([topic],
            on_assign=lambda _c, ps: out("assign", [p.partition for p in ps]),
            on_revoke=lambda _c, ps: out("revoke", [p.partition for p in ps]),
            on_lost=lambda _c, ps: out("lost", [p.partition for p in ps]))
try:
    while True:
        if sys.stdin in __import__("select").select([sys.stdin], [], [], 0)[0]:
            if sys.stdin.readline().strip() == "close":
                c.close()
                out("closed")
                break
        m = c.poll(0.1)
        if m is None or m.error():
            continue
        out("got", m.partition(), m.offset())
        try:
            c.commit(message=m, asynchronous=False)
            out("committed", m.partition(), m.offset())
        except KafkaException as e:
            out("commit-failed", m.partition(), m.offset(), str(e))
except KeyboardInterrupt:
    pass
"""


class Member:
    def __init__(self, bootstrap, group, topic, instance="-", protocol="consumer"):
        self.events = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MEMBER, bootstrap, group, topic, instance, protocol],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def assignment(self):
        """The partitions it holds now, from its assign/revoke/lost callbacks."""
        held = set()
        for ev in list(self.events):
            if ev[0] == "assign":
                held |= set(ev[1])
            elif ev[0] in ("revoke", "lost"):
                held -= set(ev[1])
        return held

    def revoked(self, since=0):
        return [p for ev in self.events[since:] if ev[0] in ("revoke", "lost") for p in ev[1]]

    def records(self, kind):
        return [(ev[1], ev[2]) for ev in list(self.events) if ev[0] == kind]

    def close(self):
        self.proc.stdin.write("close\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("strom-kip848"),
                broker_args=["--broker-heartbeat-interval-ms", "250",
                             "--group-consumer-heartbeat-interval-ms", "500",
                             "--group-consumer-session-timeout-ms", "6000"]).start()
    yield c
    c.stop()


def consumed_once_each(members, n):
    """Waits until `members` together got all `n` records; none was committed twice."""
    wait_until(lambda: len({r for m in members for r in m.records("got")}) == n,
               timeout=90, what=f"all {n} records consumed")
    committed = [r for m in members for r in m.records("committed")]
    assert len(committed) == len(set(committed)), "a record was committed twice"


def make_topic(c, partitions, name=None):
    name = name or f"kip848-{uuid.uuid4().hex[:6]}"
    a = AdminClient({"bootstrap.servers": c.bootstrap})
    a.create_topics([NewTopic(name, partitions, 3)])[name].result(20)
    return name


def produce(c, topic, start, n, partitions):
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(start, start + n):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % partitions)
    assert p.flush(30) == 0


def test_members_share_work_across_a_join_and_a_kill_each_record_once(cluster3):
    topic = make_topic(cluster3, 6)
    group = f"kip848-{uuid.uuid4().hex[:6]}"
    produce(cluster3, topic, 0, 300, 6)
    members = [Member(cluster3.bootstrap, group, topic) for _ in range(2)]
    try:
        wait_until(lambda: sorted(len(m.assignment()) for m in members) == [3, 3],
                   timeout=60, what="two members with three partitions each")
        marks = [len(m.events) for m in members]
        held = [m.assignment() for m in members]

        # A third member joins: each old member gives up only what moves to it.
        members.append(Member(cluster3.bootstrap, group, topic))
        wait_until(lambda: sorted(len(m.assignment()) for m in members) == [2, 2, 2],
                   timeout=60, what="three members with two partitions each")
        for m, mark, before in zip(members, marks, held):
            revoked = m.revoked(mark)
            assert len(revoked) == 1, f"more than the moving partition revoked: {revoked}"
            assert not set(revoked) & m.assignment()
            assert m.assignment() < before, "a member gained partitions it did not have"
        parts = [m.assignment() for m in members]
        assert set().union(*parts) == set(range(6)) and sum(map(len, parts)) == 6

        admin = AdminClient({"bootstrap.servers": cluster3.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(20)
        assert desc.type.name == "CONSUMER", desc
        assert desc.state.name == "STABLE", desc
        assert len(desc.members) == 3
        described = sorted(tp.partition for mb in desc.members
                           for tp in mb.assignment.topic_partitions)
        assert described == list(range(6))
        listed = admin.list_consumer_groups().result(20)
        assert any(g.group_id == group and g.type.name == "CONSUMER" for g in listed.valid)

        produce(cluster3, topic, 300, 300, 6)
        # A member dies without leaving: after the session timeout the others take over.
        victim = members.pop(1)
        victim.kill9()
        wait_until(lambda: sorted(len(m.assignment()) for m in members) == [3, 3],
                   timeout=60, what="two survivors with three partitions each")
        produce(cluster3, topic, 600, 300, 6)

        def all_got():
            got = {r for m in members + [victim] for r in m.records("got")}
            return len(got) == 900
        wait_until(all_got, timeout=90, what="all 900 records consumed")
        committed = [r for m in members + [victim] for r in m.records("committed")]
        assert len(committed) == len(set(committed)), "a record was committed twice"
        # Only what the killed member got but had not reported committed is seen twice.
        victim_got = set(victim.records("got"))
        seen = {}
        for m in members + [victim]:
            for r in m.records("got"):
                seen[r] = seen.get(r, 0) + 1
        twice = {r for r, n in seen.items() if n > 1}
        assert twice <= victim_got - set(victim.records("committed")), twice
        assert len(twice) <= 6
    finally:
        for m in members:
            m.proc.kill()


def test_a_static_member_restarts_without_the_others_noticing(cluster3):
    topic = make_topic(cluster3, 4)
    group = f"kip848-static-{uuid.uuid4().hex[:6]}"
    a = Member(cluster3.bootstrap, group, topic, "static-a")
    b = Member(cluster3.bootstrap, group, topic, "static-b")
    try:
        wait_until(lambda: sorted(len(m.assignment()) for m in (a, b)) == [2, 2],
                   timeout=60, what="two static members with two partitions each")
        had = b.assignment()
        mark = len(a.events)
        b.close()
        b2 = Member(cluster3.bootstrap, group, topic, "static-b")
        wait_until(lambda: b2.assignment() == had, timeout=30,
                   what="the restarted static member to get its partitions back")
        time.sleep(2)  # several heartbeats: a must not have been asked for anything
        assert a.revoked(mark) == [] and len(a.assignment()) == 2, a.events[mark:]
        # The group has the two instances, b's under its new member id.
        admin = AdminClient({"bootstrap.servers": cluster3.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(20)
        assert sorted(mb.group_instance_id for mb in desc.members) == ["static-a", "static-b"]
        b2.close()
    finally:
        for m in (a, b):
            m.proc.kill()


def test_regex_subscription_picks_up_new_topics(cluster3):
    prefix = f"rx{uuid.uuid4().hex[:4]}"
    make_topic(cluster3, 2, f"{prefix}-a")
    make_topic(cluster3, 1, f"{prefix}-b")
    produce(cluster3, f"{prefix}-a", 0, 10, 2)
    produce(cluster3, f"{prefix}-b", 0, 5, 1)
    c = Consumer({"bootstrap.servers": cluster3.bootstrap, "group.id": f"{prefix}-g",
                  "group.protocol": "consumer", "auto.offset.reset": "earliest",
                  "topic.metadata.refresh.interval.ms": 1000})
    c.subscribe([f"^{prefix}-.*"])
    got = {}

    def drain(n):
        def done():
            m = c.poll(0.2)
            if m is not None and not m.error():
                got.setdefault(m.topic(), set()).add((m.partition(), m.offset()))
            return sum(map(len, got.values())) >= n
        return done
    wait_until(drain(15), timeout=60, what="both matching topics consumed")
    make_topic(cluster3, 1, f"{prefix}-c")
    make_topic(cluster3, 1, f"x{prefix}-c")  # does not match: the whole name must
    produce(cluster3, f"{prefix}-c", 0, 4, 1)
    produce(cluster3, f"x{prefix}-c", 0, 4, 1)
    wait_until(drain(19), timeout=60, what="the new matching topic consumed")
    assert set(got) == {f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"}
    c.close()


def test_kafka_python_sees_a_consumer_group_in_the_classic_apis(cluster3):
    from kafka import KafkaAdminClient

    topic = make_topic(cluster3, 2)
    group = f"kip848-kp-{uuid.uuid4().hex[:6]}"
    c = Consumer({"bootstrap.servers": cluster3.bootstrap, "group.id": group,
                  "group.protocol": "consumer", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    wait_until(lambda: (c.poll(0.2), len(c.assignment()) == 2)[1], timeout=60,
               what="the member to get both partitions")
    admin = KafkaAdminClient(bootstrap_servers=cluster3.bootstrap)
    g = admin.describe_groups([group])[group]
    assert (g["group_state"], g["protocol_type"], g["protocol_data"]) == \
        ("Stable", "consumer", "uniform"), g
    assert len(g["members"]) == 1, g
    # ListGroups v5: the type is listed and filtered on.
    consumer_groups = admin.list_groups(types_filter=["consumer"])
    assert any(x[0] == group if isinstance(x, tuple) else x["group_id"] == group
               for x in consumer_groups), consumer_groups
    classic_groups = admin.list_groups(types_filter=["classic"])
    assert not any(x[0] == group if isinstance(x, tuple) else x["group_id"] == group
                   for x in classic_groups), classic_groups
    # The group is busy: deleting it is refused with NON_EMPTY_GROUP.
    def deleted():
        e = dict(admin.delete_groups([group]))[group]
        return e if isinstance(e, str) else type(e).__name__
    assert deleted() == "NonEmptyGroupError"
    c.close()
    assert deleted() in ("OK", "NoError")
    admin.close()


def test_members_carry_on_when_the_group_coordinator_dies(tmp_path):
    """The group's state is in __consumer_offsets: the next coordinator picks it up and the
    members keep their epochs and partitions (nobody is fenced, nothing is lost or
    committed twice)."""
    c = Cluster(tmp_path, broker_args=["--broker-heartbeat-interval-ms", "250",
                                       "--replica-lag-time-max-ms", "3000",
                                       "--group-consumer-heartbeat-interval-ms", "500",
                                       "--group-consumer-session-timeout-ms", "20000"]).start()
    members = []
    try:
        topic = make_topic(c, 4)
        group = f"kip848-fo-{uuid.uuid4().hex[:6]}"
        produce(c, topic, 0, 200, 4)
        members = [Member(c.bootstrap, group, topic) for _ in range(2)]
        wait_until(lambda: sorted(len(m.assignment()) for m in members) == [2, 2],
                   timeout=60, what="two members with two partitions each")
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(20)
        ids_before = {mb.member_id for mb in desc.members}
        time.sleep(1)  # a few ticks: the stable group is recorded
        coordinator = desc.coordinator.id
        victim = c.brokers[coordinator - 1]  # brokers are nodes 1..n in order
        victim.kill9()
        produce(c, topic, 200, 200, 4)

        def all_got():
            return len({r for m in members for r in m.records("got")}) == 400
        wait_until(all_got, timeout=120, what="all 400 records consumed after the failover")
        for m in members:
            assert not [ev for ev in m.events if ev[0] == "lost"], m.events

        # A member prints a record when it gets it, then commits it synchronously: the last
        # commits may still be waiting for an answer.
        def commit_outcomes():
            committed = [r for m in members for r in m.records("committed")]
            failed = [(ev[1], ev[2]) for m in members for ev in m.events
                      if ev[0] == "commit-failed"]
            return committed, failed
        wait_until(lambda: sum(map(len, commit_outcomes())) >= 400, timeout=60,
                   what="every consumed record's commit answered")
        committed, failed = commit_outcomes()
        assert len(committed) == len(set(committed)), "a record was committed twice"
        # A synchronous commit in flight when the coordinator dies can fail on the client's
        # side (its connection goes). Each such record must be covered by a later commit of
        # its partition, so the group's position loses nothing.
        assert len(committed) + len(failed) == 400, failed
        for p, o in failed:
            assert any(cp == p and co > o for cp, co in committed), (p, o, failed)
        survivors = ",".join(b.bootstrap for b in c.brokers if b is not victim)
        admin = AdminClient({"bootstrap.servers": survivors})
        desc = admin.describe_consumer_groups([group])[group].result(30)
        assert desc.coordinator.id != coordinator
        assert {mb.member_id for mb in desc.members} == ids_before
        from confluent_kafka import ConsumerGroupTopicPartitions
        offsets = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)])[group].result(30)
        assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == \
            [(p, 100) for p in range(4)], offsets.topic_partitions
    finally:
        for m in members:
            m.proc.kill()
        c.stop()


def test_a_rolling_upgrade_from_the_classic_protocol_with_both_kinds_in_one_group(cluster3):
    """Members restarted one by one with group.protocol=consumer: the classic group becomes a
    consumer group at the first one, classic and consumer members share it (the classic one
    gives up only what moves, by rejoining), and no record is committed twice."""
    topic = make_topic(cluster3, 4)
    group = f"kip848-upgrade-{uuid.uuid4().hex[:6]}"
    produce(cluster3, topic, 0, 200, 4)
    a = Member(cluster3.bootstrap, group, topic, protocol="classic")
    b = Member(cluster3.bootstrap, group, topic, protocol="classic")
    everyone = [a, b]
    try:
        wait_until(lambda: sorted(len(m.assignment()) for m in (a, b)) == [2, 2],
                   timeout=60, what="two classic members with two partitions each")
        admin = AdminClient({"bootstrap.servers": cluster3.bootstrap})
        assert admin.describe_consumer_groups([group])[group].result(20).type.name == "CLASSIC"

        # Restart a with the consumer protocol.
        a.close()
        wait_until(lambda: len(b.assignment()) == 4, timeout=60, what="b alone with four")
        mark = len(b.events)
        a2 = Member(cluster3.bootstrap, group, topic, protocol="consumer")
        everyone.append(a2)
        wait_until(lambda: sorted(len(m.assignment()) for m in (a2, b)) == [2, 2],
                   timeout=60, what="a consumer member and a classic member, two each")
        assert not a2.assignment() & b.assignment()
        # b (cooperative) gave up the two partitions that moved, not all four.
        assert sorted(b.revoked(mark)) == sorted(a2.assignment()), b.events[mark:]
        desc = admin.describe_consumer_groups([group])[group].result(20)
        assert desc.type.name == "CONSUMER", desc

        produce(cluster3, topic, 200, 200, 4)
        # Then b: the group is all consumer protocol.
        b.close()
        b2 = Member(cluster3.bootstrap, group, topic, protocol="consumer")
        everyone.append(b2)
        wait_until(lambda: sorted(len(m.assignment()) for m in (a2, b2)) == [2, 2],
                   timeout=60, what="two consumer members, two each")
        produce(cluster3, topic, 400, 200, 4)
        consumed_once_each(everyone, 600)
    finally:
        for m in everyone:
            m.proc.kill()


def test_a_rollback_to_the_classic_protocol_makes_the_group_classic_again(cluster3):
    """The way back (KIP-848's online downgrade, group.consumer.migration.policy
    bidirectional): members restarted one by one with group.protocol=classic. While a
    consumer-protocol member is left the group stays a consumer group; when it leaves, the
    classic members are a classic group again, which rebalances by JoinGroup/SyncGroup as
    before the upgrade, and no record is committed twice."""
    topic = make_topic(cluster3, 4)
    group = f"kip848-downgrade-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": cluster3.bootstrap})
    produce(cluster3, topic, 0, 200, 4)
    a = Member(cluster3.bootstrap, group, topic, protocol="consumer")
    b = Member(cluster3.bootstrap, group, topic, protocol="consumer")
    everyone = [a, b]
    try:
        wait_until(lambda: sorted(len(m.assignment()) for m in (a, b)) == [2, 2],
                   timeout=60, what="two consumer members with two partitions each")

        # Restart b with the classic protocol: it joins the consumer group as a classic member.
        b.close()
        b2 = Member(cluster3.bootstrap, group, topic, protocol="classic")
        everyone.append(b2)
        wait_until(lambda: sorted(len(m.assignment()) for m in (a, b2)) == [2, 2],
                   timeout=60, what="a consumer member and a classic member, two each")
        assert admin.describe_consumer_groups([group])[group].result(20).type.name == "CONSUMER"
        produce(cluster3, topic, 200, 200, 4)

        # Then a: the last consumer-protocol member leaves and the group is classic again.
        a.close()
        wait_until(lambda: admin.describe_consumer_groups([group])[group].result(20)
                   .type.name == "CLASSIC", timeout=30, what="the group classic again")
        wait_until(lambda: len(b2.assignment()) == 4, timeout=60, what="b2 alone with four")
        a2 = Member(cluster3.bootstrap, group, topic, protocol="classic")
        everyone.append(a2)
        wait_until(lambda: sorted(len(m.assignment()) for m in (a2, b2)) == [2, 2],
                   timeout=60, what="two classic members, two each")
        assert not a2.assignment() & b2.assignment()
        desc = admin.describe_consumer_groups([group])[group].result(20)
        assert desc.type.name == "CLASSIC", desc
        # A classic group's description: the assignor the members chose, both members.
        assert desc.partition_assignor == "cooperative-sticky", desc
        assert len(desc.members) == 2, desc
        listed = admin.list_consumer_groups().result(20)
        assert any(g.group_id == group and g.type.name == "CLASSIC" for g in listed.valid)
        produce(cluster3, topic, 400, 200, 4)
        consumed_once_each(everyone, 600)
        # Members kept committing across the conversion (the classic generation is the one
        # they hold).
        failed = [ev for m in everyone for ev in m.events if ev[0] == "commit-failed"]
        assert not failed, failed
    finally:
        for m in everyone:
            m.proc.kill()


def test_the_migration_policy_can_keep_a_classic_group_classic(tmp_path):
    """group.consumer.migration.policy=downgrade (from server.properties' name as a flag):
    a consumer-protocol member cannot upgrade a classic group with members; it gets no
    partitions and the classic members keep theirs."""
    b = Broker(tmp_path / "b", extra_args=["--group-consumer-migration-policy", "DOWNGRADE",
                                            "--group-consumer-heartbeat-interval-ms", "500"])
    b.start()
    try:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        topic = "policy-t"
        a.create_topics([NewTopic(topic, 2, 1)])[topic].result(20)
        group = "policy-g"
        classic = Member(b.bootstrap, group, topic, protocol="classic")
        newer = None
        try:
            wait_until(lambda: len(classic.assignment()) == 2, timeout=60,
                       what="the classic member with both partitions")
            newer = Member(b.bootstrap, group, topic, protocol="consumer")
            time.sleep(5)
            assert newer.proc.poll() is None, "the refused member is still running"
            assert newer.assignment() == set(), newer.events
            assert classic.assignment() == {0, 1}
            assert a.describe_consumer_groups([group])[group].result(20).type.name == "CLASSIC"
        finally:
            classic.proc.kill()
            if newer:
                newer.proc.kill()
    finally:
        b.stop()
