"""ACLs with real clients: a broker with --authorizer, SCRAM users over SASL_PLAINTEXT, ACLs
made with confluent-kafka's AdminClient and the strom CLI, and three brokers enforcing an ACL
added through one of them."""

import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, NewTopic, ResourcePatternType, ResourceType)

from conftest import Broker, Cluster, free_port, wait_until

USERS = {"admin": "admin-pw", "alice": "alice-pw", "bob": "bob-pw"}


def secured_args(sasl_port, plain_port):
    return ["--listeners", f"PLAINTEXT://127.0.0.1:{plain_port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
            "--authorizer", "--super-users", "User:admin",
            *[a for u, p in USERS.items() for a in ("--scram-user", f"{u}={p}")]]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("acls") / "data")
    b.sasl_port = free_port()
    b.extra_args = secured_args(b.sasl_port, b.kafka_port)
    b.start()
    yield b
    b.stop()


def conf(port, user, **extra):
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user,
            "sasl.password": USERS[user], **extra}


def allow(principal, op, rt=ResourceType.TOPIC, name="*", pattern=ResourcePatternType.LITERAL,
          permission=AclPermissionType.ALLOW):
    return AclBinding(rt, name, pattern, principal, "*", op, permission)


def create_acls(admin, acls):
    for f in admin.create_acls(acls).values():
        f.result(timeout=30)


def produce_one(c, topic):
    """The delivery error of one record (None when it was written)."""
    p = Producer({**c, "message.timeout.ms": 10000})
    errors = []
    p.produce(topic, b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(20)
    return errors[0] if errors else "no delivery report"


def test_prefixed_write_acls_deny_beats_allow_and_hidden_topics(broker):
    admin = AdminClient(conf(broker.sasl_port, "admin"))
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in
                                  ("orders-eu", "orders-secret", "payments")]).values():
        f.result(timeout=30)
    create_acls(admin, [
        allow("User:alice", AclOperation.WRITE, name="orders-", pattern=ResourcePatternType.PREFIXED),
        allow("User:alice", AclOperation.ALL, name="orders-secret",
              permission=AclPermissionType.DENY),
    ])
    alice = conf(broker.sasl_port, "alice")
    assert produce_one(alice, "orders-eu") is None
    err = produce_one(alice, "payments")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    err = produce_one(alice, "orders-secret")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # Metadata shows alice what she may describe (Write implies Describe), nothing else.
    topics = set(AdminClient(alice).list_topics(timeout=10).topics)
    assert "orders-eu" in topics and "payments" not in topics and "orders-secret" not in topics
    # The ACLs as DescribeAcls lists them.
    listed = admin.describe_acls(AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None, AclOperation.ANY,
        AclPermissionType.ANY)).result(timeout=30)
    assert {(a.name, a.resource_pattern_type, a.operation, a.permission_type) for a in listed} == {
        ("orders-", ResourcePatternType.PREFIXED, AclOperation.WRITE, AclPermissionType.ALLOW),
        ("orders-secret", ResourcePatternType.LITERAL, AclOperation.ALL, AclPermissionType.DENY),
    }
    # Without Alter on the cluster alice may not change ACLs.
    with pytest.raises(KafkaException) as e:
        create_acls(AdminClient(alice), [allow("User:alice", AclOperation.ALL)])
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_a_consumer_without_read_on_its_group_is_refused(broker):
    admin = AdminClient(conf(broker.sasl_port, "admin"))
    for f in admin.create_topics([NewTopic("audit", 1, 1)]).values():
        f.result(timeout=30)
    p = Producer(conf(broker.sasl_port, "admin"))
    for i in range(5):
        p.produce("audit", str(i).encode())
    assert p.flush(20) == 0
    create_acls(admin, [allow("User:bob", AclOperation.READ, name="audit")])
    bob = conf(broker.sasl_port, "bob", **{"group.id": "auditors", "auto.offset.reset": "earliest"})

    def consume(n, timeout=30):
        c = Consumer(bob)
        c.subscribe(["audit"])
        got, errors = [], []
        deadline = time.monotonic() + timeout
        while len(got) < n and not errors and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                errors.append(m.error())
            else:
                got.append(m.value())
        c.close()
        return got, errors

    got, errors = consume(5)
    assert not got and errors and errors[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED, errors
    create_acls(admin, [allow("User:bob", AclOperation.READ, rt=ResourceType.GROUP,
                              name="auditors")])
    got, errors = consume(5)
    assert not errors and len(got) == 5
    # Deleting the group ACL takes it away again.
    deleted = admin.delete_acls([AclBindingFilter(
        ResourceType.GROUP, "auditors", ResourcePatternType.LITERAL, "User:bob", "*",
        AclOperation.READ, AclPermissionType.ALLOW)])
    assert [len(f.result(timeout=30)) for f in deleted.values()] == [1]
    got, errors = consume(1, timeout=20)
    assert errors and errors[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED


def test_admin_requests_are_checked_per_resource(broker):
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    admin = AdminClient(conf(broker.sasl_port, "admin"))
    for f in admin.create_topics([NewTopic("configs-a", 1, 1), NewTopic("configs-b", 1, 1)]).values():
        f.result(timeout=30)
    create_acls(admin, [
        allow("User:bob", AclOperation.DESCRIBE_CONFIGS, name="configs-a"),
        allow("User:bob", AclOperation.DESCRIBE, rt=ResourceType.GROUP, name="bobs-",
              pattern=ResourcePatternType.PREFIXED),
    ])
    bob = AdminClient(conf(broker.sasl_port, "bob"))
    got = bob.describe_configs([ConfigResource("topic", "configs-a")])
    assert "retention.ms" in list(got.values())[0].result(timeout=30)
    with pytest.raises(KafkaException) as e:
        list(bob.describe_configs([ConfigResource("topic", "configs-b")]).values())[0].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Altering needs AlterConfigs; deleting a group needs Delete on it.
    with pytest.raises(KafkaException) as e:
        list(bob.incremental_alter_configs([ConfigResource(
            "topic", "configs-a", incremental_configs=[ConfigEntry(
                "retention.ms", "1000",
                incremental_operation=AlterConfigOpType.SET)])]).values())[0].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as e:
        list(bob.delete_consumer_groups(["bobs-group"]).values())[0].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED


def strom(port, *args, user="admin", check=True):
    from test_strom_client import strom_binary
    r = subprocess.run([strom_binary(), "-b", f"127.0.0.1:{port}",
                        "-X", "security.protocol=SASL_PLAINTEXT",
                        "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", f"sasl.username={user}",
                        "-X", f"sasl.password={USERS[user]}", *args],
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"strom {' '.join(args)}: {r.stderr}")
    return r


def test_the_strom_acls_command(broker):
    strom(broker.sasl_port, "acls", "add", "--allow-principal", "User:bob", "--operation", "Read",
          "--operation", "Describe", "--topic", "reports-", "--resource-pattern-type", "prefixed")
    out = strom(broker.sasl_port, "acls", "list", "--topic", "reports-",
                "--resource-pattern-type", "prefixed").stdout
    assert "Topic:PREFIXED:reports-\tUser:bob\t*\tRead\tALLOW" in out
    assert "Topic:PREFIXED:reports-\tUser:bob\t*\tDescribe\tALLOW" in out
    r = strom(broker.sasl_port, "acls", "add", "--allow-principal", "User:bob", "--topic", "x",
              user="bob", check=False)
    assert r.returncode == 1 and "CLUSTER_AUTHORIZATION_FAILED" in r.stderr, r.stderr
    r = strom(broker.sasl_port, "acls", "add", "--allow-principal", "bob", "--topic", "x",
              check=False)
    assert r.returncode == 1 and "INVALID_REQUEST" in r.stderr, r.stderr
    strom(broker.sasl_port, "acls", "remove", "--allow-principal", "User:bob", "--topic",
          "reports-", "--resource-pattern-type", "prefixed")
    out = strom(broker.sasl_port, "acls", "list", "--allow-principal", "User:bob").stdout
    assert "reports-" not in out


def test_an_operator_aborts_a_hanging_transaction(broker):
    """kafka-transactions.sh abort: a transactional producer wrote to a partition and went
    quiet with its transaction open (and its timeout far off), holding the last stable offset
    back. `strom transactions abort --start-offset` writes the ABORT marker: refused to bob,
    who may read the topic but has no ClusterAction; done by the super user, after which a
    read_committed consumer gets past the transaction and never sees its records."""
    topic = f"hanging-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(conf(broker.sasl_port, "admin"))
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    stuck = Producer({**conf(broker.sasl_port, "admin"), "transactional.id": f"t-{topic}",
                      "transaction.timeout.ms": 600000})
    stuck.init_transactions(30)
    stuck.begin_transaction()
    for i in range(5):
        stuck.produce(topic, f"open-{i}".encode())
    assert stuck.flush(30) == 0
    plain = Producer(conf(broker.sasl_port, "admin"))
    plain.produce(topic, b"after")
    assert plain.flush(30) == 0

    def committed_values():
        c = Consumer({**conf(broker.sasl_port, "admin"), "group.id": f"g-{uuid.uuid4().hex[:6]}",
                      "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                      "enable.auto.commit": False})
        c.subscribe([topic])
        got, deadline = [], time.monotonic() + 5
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value())
        c.close()
        return got

    assert committed_values() == [], "the open transaction holds everything back"
    out = strom(broker.sasl_port, "transactions", "describe-producers", "--topic", topic,
                "--partition", "0").stdout
    assert any(line.split("\t")[-1] == "0" for line in out.splitlines()[1:]), out

    strom(broker.sasl_port, "acls", "add", "--allow-principal", "User:bob", "--operation", "Read",
          "--topic", topic)
    args = ["transactions", "abort", "--topic", topic, "--partition", "0", "--start-offset", "0"]
    r = strom(broker.sasl_port, *args, user="bob", check=False)
    assert r.returncode != 0 and "CLUSTER_AUTHORIZATION_FAILED" in r.stderr, (r.stdout, r.stderr)
    assert committed_values() == [], "bob changed nothing"

    r = strom(broker.sasl_port, *args)
    assert "aborted the transaction of producer" in r.stdout, r.stdout
    assert committed_values() == [b"after"]
    r = strom(broker.sasl_port, *args, check=False)
    assert r.returncode != 0 and "no open transaction starts at offset 0" in r.stderr, r.stderr


def test_an_acl_added_through_one_broker_holds_on_all_three_within_a_second(tmp_path):
    c = Cluster(tmp_path)
    for b in c.brokers:
        b.sasl_port = free_port()
        b.extra_args = ["--broker-heartbeat-interval-ms", "250",
                        *secured_args(b.sasl_port, b.kafka_port)]
    c.start()
    try:
        admin = AdminClient(conf(c.brokers[0].sasl_port, "admin"))
        for f in admin.create_topics([NewTopic("ledger", 1, 1)]).values():
            f.result(timeout=30)

        def visible_to_alice(b):
            out = strom(b.sasl_port, "topics", "list", user="alice").stdout
            return "ledger" in out.split()

        assert not any(visible_to_alice(b) for b in c.brokers)
        create_acls(admin, [allow("User:alice", AclOperation.DESCRIBE, name="ledger")])
        added = time.monotonic()
        for b in c.brokers:
            wait_until(lambda: visible_to_alice(b), timeout=max(0.05, added + 1.0 - time.monotonic()),
                       what=f"the ACL on broker {b.bootstrap}")
    finally:
        c.stop()


def test_authorized_operations_are_reported_as_kip_430_says(broker):
    from confluent_kafka import TopicCollection
    admin = AdminClient(conf(broker.sasl_port, "admin"))
    for f in admin.create_topics([NewTopic("ops-orders", 1, 1)]).values():
        f.result(timeout=30)
    create_acls(admin, [
        allow("User:bob", AclOperation.WRITE, name="ops-orders"),
        allow("User:bob", AclOperation.DESCRIBE_CONFIGS, name="ops-orders"),
        allow("User:bob", AclOperation.DESCRIBE, rt=ResourceType.BROKER, name="kafka-cluster"),
        allow("User:bob", AclOperation.READ, rt=ResourceType.GROUP, name="ops-group"),
    ])
    bob = AdminClient(conf(broker.sasl_port, "bob"))
    cluster = bob.describe_cluster(include_authorized_operations=True).result(timeout=30)
    assert set(cluster.authorized_operations) == {AclOperation.DESCRIBE}
    everything = admin.describe_cluster(include_authorized_operations=True).result(timeout=30)
    assert {AclOperation.ALTER, AclOperation.CLUSTER_ACTION, AclOperation.CREATE,
            AclOperation.IDEMPOTENT_WRITE} <= set(everything.authorized_operations)
    # Write implies Describe; DescribeConfigs is its own.
    topic = bob.describe_topics(TopicCollection(["ops-orders"]),
                                include_authorized_operations=True)["ops-orders"].result(timeout=30)
    assert set(topic.authorized_operations) == {
        AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS}
    group = bob.describe_consumer_groups(["ops-group"], include_authorized_operations=True)
    ops = group["ops-group"].result(timeout=30).authorized_operations
    assert set(ops) == {AclOperation.READ, AclOperation.DESCRIBE}
    # Not asked for: not reported.
    assert bob.describe_cluster().result(timeout=30).authorized_operations is None


def test_share_groups_need_read_on_the_group_and_the_topic(broker):
    """KIP-932 under the authorizer: bob's share consumer is refused until he may read the
    group, then gets the records of the topic he may read."""
    from confluent_kafka import ShareConsumer

    admin = AdminClient(conf(broker.sasl_port, "admin"))
    admin.create_topics([NewTopic("queue-acl", 1, 1)])["queue-acl"].result(timeout=30)
    create_acls(admin, [allow("User:bob", AclOperation.READ, name="queue-acl")])

    def errors_and_records(group, seconds, produce=False):
        c = ShareConsumer(conf(broker.sasl_port, "bob", **{"group.id": group}))
        c.subscribe(["queue-acl"])
        errors, values = [], []
        end = time.monotonic() + seconds
        produced = False
        while time.monotonic() < end:
            try:
                for m in c.poll(0.3):
                    if m.error():
                        errors.append(m.error().code())
                    else:
                        values.append(m.value())
            except KafkaException as e:
                errors.append(e.args[0].code())
                break
            if produce and not produced and time.monotonic() > end - seconds + 3:
                assert produce_one(conf(broker.sasl_port, "admin"), "queue-acl") is None
                produced = True
            if values:
                break
        try:
            c.close()
        except KafkaException:
            pass
        return errors, values

    errors, values = errors_and_records("bobs-queue", 5)
    assert KafkaError.GROUP_AUTHORIZATION_FAILED in errors, errors
    assert values == []
    create_acls(admin, [allow("User:bob", AclOperation.READ, rt=ResourceType.GROUP,
                              name="bobs-queue")])
    errors, values = errors_and_records("bobs-queue", 20, produce=True)
    assert values == [b"x"], (errors, values)


def test_a_regex_subscription_matches_only_topics_the_member_may_describe(broker):
    """KIP-848 regex subscriptions are matched by the broker: under the authorizer, only
    against the topics the member's principal may describe."""
    admin = AdminClient(conf(broker.sasl_port, "admin"))
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in ("rx-open", "rx-secret")]).values():
        f.result(timeout=30)
    create_acls(admin, [allow("User:bob", AclOperation.READ, name="rx-open"),
                        allow("User:bob", AclOperation.READ, rt=ResourceType.GROUP,
                              name="bobs-regex")])
    for t in ("rx-open", "rx-secret"):
        assert produce_one(conf(broker.sasl_port, "admin"), t) is None
    c = Consumer(conf(broker.sasl_port, "bob", **{"group.id": "bobs-regex",
                                                  "group.protocol": "consumer",
                                                  "auto.offset.reset": "earliest"}))
    c.subscribe(["^rx-.*"])
    got = []
    end = time.monotonic() + 20
    while time.monotonic() < end and not got:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.topic())
    # A few more seconds: nothing from the secret topic arrives.
    end = time.monotonic() + 3
    while time.monotonic() < end:
        m = c.poll(0.3)
        if m is not None and m.error() is None:
            got.append(m.topic())
    assert got == ["rx-open"], got
    assert {tp.topic for tp in c.assignment()} == {"rx-open"}
    c.close()
