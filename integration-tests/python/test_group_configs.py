"""Group configs (Kafka's GROUP config resource, type 32): set with stock admin clients
(confluent-kafka's IncrementalAlterConfigs, kafka-python's AlterConfigs and DescribeConfigs)
and the `strom` CLI, held by the metadata quorum, and applied by every broker: the share
group's start, lock duration and delivery limit at the partition leaders, a consumer
group's session timeout at its coordinator. Bad values are refused and change nothing."""

import time
import uuid

import pytest
from confluent_kafka import AcknowledgeType, KafkaException, Producer, ShareConsumer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic, ResourceType)
from kafka.admin import ConfigResource as KpResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

from conftest import Cluster, wait_until
from test_consumer_protocol import Member
from test_strom_client import strom


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    # The brokers keep Kafka's defaults (latest, 30 s locks, 5 deliveries, 45 s sessions):
    # everything below that differs comes from the groups' own configs.
    c = Cluster(tmp_path_factory.mktemp("strom-group-configs"),
                broker_args=["--broker-heartbeat-interval-ms", "250"]).start()
    yield c
    c.stop()


def set_group_configs(c, group, **configs):
    """IncrementalAlterConfigs SET through confluent-kafka; raises the broker's error."""
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    res = ConfigResource(ResourceType.GROUP, group, incremental_configs=[
        ConfigEntry(k.replace("_", "."), str(v), incremental_operation=AlterConfigOpType.SET)
        for k, v in configs.items()])
    admin.incremental_alter_configs([res])[res].result(20)


def group_configs(c, group):
    """{name: (value, source)} as kafka-python's DescribeConfigs reports them."""
    admin = KafkaAdminClient(bootstrap_servers=c.bootstrap)
    try:
        out = admin.describe_configs([KpResource(ConfigResourceType.GROUP, group)],
                                     include_synonyms=True, config_filter="all")
    finally:
        admin.close()
    return {k: (v["value"], v["config_source"]) for k, v in out["group"][group].items()}


def make_topic(c, partitions, n, timestamp=None):
    name = f"gc-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": c.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 3)])[name].result(20)
    produce(c, name, 0, n, partitions, timestamp)
    return name


def produce(c, topic, start, n, partitions, timestamp=None):
    p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(start, start + n):
        extra = {"timestamp": timestamp} if timestamp else {}
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % partitions, **extra)
    assert p.flush(30) == 0


def poll_some(consumer, into, until):
    """Polls into `into` until `until(into)` (a list of messages without errors)."""
    def step():
        into.extend(m for m in consumer.poll(0.5) if m.error() is None)
        return until(into)
    return step


def test_share_group_configs_from_stock_admin_clients_apply_on_every_broker(cluster3):
    # One partition: both members of the share group fetch from it.
    topic = make_topic(cluster3, 1, 20)
    group = f"gc-share-{uuid.uuid4().hex[:6]}"
    plain = f"gc-plain-{uuid.uuid4().hex[:6]}"
    # Before anything is set: the broker's values, as Kafka's defaults.
    before = group_configs(cluster3, group)
    assert before["share.auto.offset.reset"] == ("latest", "DEFAULT_CONFIG"), before
    assert before["share.record.lock.duration.ms"] == ("30000", "DEFAULT_CONFIG"), before
    set_group_configs(cluster3, group, share_auto_offset_reset="earliest",
                      share_record_lock_duration_ms=2000, share_heartbeat_interval_ms=500)
    # kafka-configs.sh habits through the CLI: set the delivery limit, read everything back.
    strom(cluster3, "groups", "alter", group, "--set", "share.delivery.count.limit=2")
    shown = strom(cluster3, "groups", "configs", group).stdout
    assert "share.delivery.count.limit=2 (GROUP_CONFIG)" in shown, shown
    assert "share.session.timeout.ms=45000 (DEFAULT_CONFIG)" in shown, shown
    after = group_configs(cluster3, group)
    assert after["share.auto.offset.reset"] == ("earliest", "DYNAMIC_GROUP_CONFIG"), after
    assert after["share.record.lock.duration.ms"] == ("2000", "DYNAMIC_GROUP_CONFIG"), after
    assert after["share.session.timeout.ms"] == ("45000", "DEFAULT_CONFIG"), after
    # ListConfigResources names the configured group.
    kp = KafkaAdminClient(bootstrap_servers=cluster3.bootstrap)
    try:
        listed = kp.list_config_resources([ConfigResourceType.GROUP])
    finally:
        kp.close()
    assert group in listed["group"], listed

    # earliest: the records written before the group existed are delivered. The holder
    # never acknowledges what its first poll got; after the 2 s lock (not 30 s) they come
    # to another member, which releases them; at their second delivery they are archived
    # (the group's limit is 2, not 5). Everything else it accepts.
    holder = ShareConsumer({"bootstrap.servers": cluster3.bootstrap, "group.id": group,
                            "share.acknowledgement.mode": "explicit"})
    holder.subscribe([topic])
    held = []
    wait_until(poll_some(holder, held, lambda x: len(x) > 0), timeout=30,
               what="the holder's first records")
    held = {(m.partition(), m.offset()) for m in held}
    assert min(o for _, o in held) == 0, held  # the earliest record, not the log end
    other = ShareConsumer({"bootstrap.servers": cluster3.bootstrap, "group.id": group,
                           "share.acknowledgement.mode": "explicit"})
    other.subscribe([topic])
    deliveries = {}

    def work():
        for m in other.poll(0.5):
            if m.error() is None:
                key = (m.partition(), m.offset())
                deliveries.setdefault(key, []).append(m.delivery_count())
                other.acknowledge(m, AcknowledgeType.RELEASE if key in held
                                  else AcknowledgeType.ACCEPT)
        other.commit_sync(10)
        return held <= deliveries.keys() and len(deliveries) >= 20
    wait_until(work, timeout=20, what="the held records back after the group's 2 s lock")
    end = time.monotonic() + 6
    while time.monotonic() < end:
        work()
    holder.close()
    other.close()
    assert set(deliveries) == {(0, i) for i in range(20)}, deliveries
    assert all(deliveries[k] == [2] for k in held), deliveries
    assert all(v == [1] for k, v in deliveries.items() if k not in held), deliveries

    # A group without configs keeps the brokers' `latest`: none of the old records.
    fresh = ShareConsumer({"bootstrap.servers": cluster3.bootstrap, "group.id": plain})
    fresh.subscribe([topic])
    seen = []
    end = time.monotonic() + 5
    while time.monotonic() < end:
        seen.extend(m for m in fresh.poll(0.5) if m.error() is None)
    assert seen == [], [(m.partition(), m.offset()) for m in seen]
    produce(cluster3, topic, 20, 2, 1)
    wait_until(poll_some(fresh, seen, lambda x: len(x) >= 2), timeout=30,
               what="records written after the plain group started")
    assert sorted(m.offset() for m in seen) == [20, 21]
    fresh.close()


def test_share_auto_offset_reset_by_duration_starts_at_that_time(cluster3):
    two_hours_ago = int(time.time() * 1000) - 2 * 3600 * 1000
    topic = make_topic(cluster3, 1, 5, timestamp=two_hours_ago)
    produce(cluster3, topic, 5, 3, 1)  # now
    group = f"gc-dur-{uuid.uuid4().hex[:6]}"
    set_group_configs(cluster3, group, share_auto_offset_reset="by_duration:PT1H")
    c = ShareConsumer({"bootstrap.servers": cluster3.bootstrap, "group.id": group})
    c.subscribe([topic])
    got = []
    wait_until(poll_some(c, got, lambda x: len(x) >= 3), timeout=30,
               what="the records of the last hour")
    end = time.monotonic() + 2
    while time.monotonic() < end:
        got.extend(m for m in c.poll(0.5) if m.error() is None)
    assert sorted(m.offset() for m in got) == [5, 6, 7]
    c.close()


def test_a_consumer_groups_own_session_timeout_decides_when_a_killed_member_goes(cluster3):
    topic = f"gc-kip848-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": cluster3.bootstrap})
    admin.create_topics([NewTopic(topic, 4, 3)])[topic].result(20)
    group = f"gc-consumer-{uuid.uuid4().hex[:6]}"
    # kafka-python's AlterConfigs (replaces the group's configs as a whole).
    kp = KafkaAdminClient(bootstrap_servers=cluster3.bootstrap)
    try:
        kp.alter_configs([KpResource(ConfigResourceType.GROUP, group, configs={
            "consumer.session.timeout.ms": "6000", "consumer.heartbeat.interval.ms": "500"})])
    finally:
        kp.close()
    a = Member(cluster3.bootstrap, group, topic)
    b = Member(cluster3.bootstrap, group, topic)
    try:
        wait_until(lambda: sorted(len(m.assignment()) for m in (a, b)) == [2, 2],
                   timeout=60, what="two members with two partitions each")
        b.kill9()
        killed = time.monotonic()
        # The brokers' session timeout is 45 s; the group's own is 6 s.
        wait_until(lambda: len(a.assignment()) == 4, timeout=25,
                   what="the survivor to get the killed member's partitions")
        assert time.monotonic() - killed < 25
        a.close()
    finally:
        for m in (a, b):
            m.proc.kill()


def test_bad_group_configs_are_refused_and_change_nothing(cluster3):
    group = f"gc-bad-{uuid.uuid4().hex[:6]}"
    set_group_configs(cluster3, group, share_record_lock_duration_ms=5000)
    for name, value, says in [
        ("share.no.such", "1", "unknown group config name"),
        ("share.record.lock.duration.ms", "999", "below the minimum 1000"),
        ("share.delivery.count.limit", "11", "above the maximum 10"),
        ("consumer.session.timeout.ms", "soon", "not an integer"),
        ("share.auto.offset.reset", "by_duration:-PT1H", "negative"),
        ("share.auto.offset.reset", "none", "not latest, earliest or by_duration"),
        # Kafka's rule on the configs as they would be, the brokers' for the rest (45 s).
        ("consumer.heartbeat.interval.ms", "45000",
         "must be greater than consumer.heartbeat.interval.ms (45000)"),
    ]:
        with pytest.raises(KafkaException) as e:
            # Each refused with a good change alongside it: all or nothing.
            set_group_configs(cluster3, group, share_heartbeat_interval_ms=1000,
                              **{name.replace(".", "_"): value})
        err = e.value.args[0]
        assert err.code() == 40 and says in err.str(), (name, value, err)  # INVALID_CONFIG
    configs = group_configs(cluster3, group)
    assert configs["share.record.lock.duration.ms"] == ("5000", "DYNAMIC_GROUP_CONFIG")
    assert configs["share.heartbeat.interval.ms"] == ("5000", "DEFAULT_CONFIG"), configs
    assert configs["share.delivery.count.limit"] == ("5", "DEFAULT_CONFIG"), configs
    # The CLI says what went wrong.
    r = strom(cluster3, "groups", "alter", group, "--set", "share.delivery.count.limit=1",
              check=False)
    assert r.returncode != 0 and "below the minimum 2" in r.stderr, r
