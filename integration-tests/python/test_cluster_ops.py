"""Operating a cluster (issue #17): preferred leader election through confluent-kafka's
AdminClient.elect_leaders (ElectLeaders, what kafka-leader-election.sh sends) after a failover
moved leadership away from a broker that has since come back; the controller doing the same
by itself (auto.leader.rebalance.enable); and a controlled shutdown on SIGTERM."""

import json
import subprocess
import time
import uuid

from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from acked_load import AckedLoad
from conftest import Cluster, wait_until
from test_strom_client import strom_binary

TOPIC = "elect-me"


def partitions(broker):
    return broker.http(f"/v1/topics/{TOPIC}")["partitions"]


def test_preferred_leaders_return_after_a_failover(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=6, replication_factor=3)])[TOPIC].result(30)
    watcher = cluster.brokers[1]
    wait_until(lambda: all(p["leader"] == p["replicas"][0] for p in partitions(watcher)),
               what="every partition led by its preferred replica")

    # Nothing to do while every preferred replica leads: each partition says so.
    tps = [TopicPartition(TOPIC, i) for i in range(6)]
    done = admin.elect_leaders(ElectionType.PREFERRED, tps).result(30)
    assert len(done) == 6
    for tp, err in done.items():
        assert err is not None and "ELECTION_NOT_NEEDED" in str(err), (tp, err)

    # Broker 1 dies: its partitions fail over; it comes back as a follower.
    b1 = cluster.brokers[0]
    preferred_1 = [p["partition"] for p in partitions(watcher) if p["replicas"][0] == 1]
    assert preferred_1
    b1.kill9()
    wait_until(lambda: all(partitions(watcher)[i]["leader"] not in (1, -1) for i in preferred_1),
               what="failover away from broker 1")
    # Its preferred replica is dead: the election is refused for those partitions.
    dead = admin.elect_leaders(ElectionType.PREFERRED,
                               [TopicPartition(TOPIC, i) for i in preferred_1]).result(30)
    for tp, err in dead.items():
        assert err is not None and "PREFERRED_LEADER_NOT_AVAILABLE" in str(err), (tp, err)
    b1.start()
    wait_until(lambda: all(1 in partitions(watcher)[i]["isr"] for i in preferred_1), timeout=60,
               what="broker 1 back in the ISR")
    assert all(partitions(watcher)[i]["leader"] != 1 for i in preferred_1)

    # Preferred election for every partition (None): the moved ones go back to broker 1, and
    # only they are reported.
    back = admin.elect_leaders(ElectionType.PREFERRED, None).result(30)
    assert sorted(tp.partition for tp in back if tp.topic == TOPIC) == sorted(preferred_1), back
    assert all(err is None for err in back.values()), back
    wait_until(lambda: all(p["leader"] == p["replicas"][0] for p in partitions(watcher)),
               what="preferred leaders again")

    # A partition that does not exist is named as such.
    missing = admin.elect_leaders(ElectionType.PREFERRED,
                                  [TopicPartition("no-such-topic", 0)]).result(30)
    [err] = missing.values()
    assert err is not None and "UNKNOWN_TOPIC_OR_PART" in str(err), err


def test_unclean_election_is_not_needed_while_leaders_live(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("unclean-me", 1, 3)])["unclean-me"].result(30)
    wait_until(lambda: cluster.brokers[0].http("/v1/topics/unclean-me")["partitions"][0]["leader"] > 0,
               what="a leader")
    result = admin.elect_leaders(ElectionType.UNCLEAN,
                                 [TopicPartition("unclean-me", 0)]).result(30)
    [err] = result.values()
    assert err is not None and "ELECTION_NOT_NEEDED" in str(err), err


def leaders(broker, topic):
    return {p["partition"]: p["leader"] for p in broker.http(f"/v1/topics/{topic}")["partitions"]}


def test_sigterm_hands_leadership_over_before_the_broker_exits(tmp_path):
    """Controlled shutdown: SIGTERM to a broker leading partitions under an acks=all
    idempotent producer. The session timeout is 30 s and the producer's message timeout 10 s,
    so were leadership to move only when the session lapsed, deliveries would fail: none may,
    and every delivered record is read back once."""
    c = Cluster(tmp_path, session_timeout_ms=30000,
                broker_args=["--broker-heartbeat-interval-ms", "250",
                             "--replica-lag-time-max-ms", "5000"]).start()
    try:
        topic = f"term-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=3,
                                      config={"min.insync.replicas": "2"})])[topic].result(30)
        watcher = c.brokers[1]
        wait_until(lambda: all(len(p["isr"]) == 3 and p["leader"] > 0 for p in
                               watcher.http(f"/v1/topics/{topic}")["partitions"]),
                   what="every partition fully in sync")
        led_by_1 = [p for p, l in leaders(watcher, topic).items() if l == 1]
        assert led_by_1, "broker 1 leads some partitions"

        load = AckedLoad(c.bootstrap, topic, 6, group=False,
                         producer_config={"message.timeout.ms": 10000}).start()
        try:
            time.sleep(2)
            b1 = c.brokers[0]
            sigterm_at = time.monotonic()
            b1.stop()
            exited_after = time.monotonic() - sigterm_at
            assert b1.proc.returncode == 0, f"broker 1 exited with {b1.proc.returncode}"
            now = leaders(watcher, topic)
            moved_after = time.monotonic() - sigterm_at
            # Handed over before the exit, not 30 s later when the session lapses.
            assert all(now[p] not in (1, -1) for p in led_by_1), now
            time.sleep(3)
        finally:
            load.stop()
        log = b1.log_path.read_text()
        assert "controlled shutdown: leaderships handed over" in log, log[-2000:]
        report = load.check()
        assert not report.problems(), report.problems()
        print(f"SIGTERM: exit after {exited_after:.2f} s, leaders seen moved {moved_after:.2f} s "
              f"after it; {report.summary()}")
    finally:
        c.stop()


def test_preferred_leaders_come_back_without_being_asked(tmp_path):
    """auto.leader.rebalance.enable: after a failover and the broker's return, the active
    controller elects the preferred replicas again within
    leader.imbalance.check.interval.seconds; with it off, nothing moves."""

    for enabled in (False, True):
        c = Cluster(tmp_path / f"auto-{enabled}",
                    broker_args=["--broker-heartbeat-interval-ms", "250",
                                 "--replica-lag-time-max-ms", "3000"],
                    controller_args=["--auto-leader-rebalance-enable", str(enabled).lower(),
                                     "--leader-imbalance-check-interval-seconds", "2"])
        (tmp_path / f"auto-{enabled}").mkdir()
        c.start()
        try:
            admin = AdminClient({"bootstrap.servers": c.bootstrap})
            admin.create_topics([NewTopic("balance", 6, 3)])["balance"].result(30)
            watcher = c.brokers[1]
            parts = lambda: watcher.http("/v1/topics/balance")["partitions"]  # noqa: E731
            wait_until(lambda: all(p["leader"] == p["replicas"][0] and len(p["isr"]) == 3
                                   for p in parts()), what="preferred leaders, in sync")
            preferred_1 = [p["partition"] for p in parts() if p["replicas"][0] == 1]
            c.brokers[0].kill9()
            wait_until(lambda: all(parts()[i]["leader"] not in (1, -1) for i in preferred_1),
                       what="failover away from broker 1")
            c.brokers[0].start()
            wait_until(lambda: all(1 in parts()[i]["isr"] for i in preferred_1), timeout=60,
                       what="broker 1 back in the ISR")
            if enabled:
                wait_until(lambda: all(parts()[i]["leader"] == 1 for i in preferred_1),
                           timeout=30, what="broker 1 leading its preferred partitions again")
                log = (c.root / "controller.log").read_text()
                assert "preferred replicas lead again" in log
            else:
                # Several check intervals pass; with balancing off, nothing moves back.
                time.sleep(6)
                assert all(parts()[i]["leader"] != 1 for i in preferred_1), parts()
                # Until an operator asks, with kafka-leader-election.sh's options.
                r = subprocess.run([strom_binary(), "-b", c.bootstrap, "leader-election",
                                    "--election-type", "PREFERRED", "--all-topic-partitions"],
                                   capture_output=True, text=True, timeout=60)
                assert r.returncode == 0, r.stderr
                moved = ", ".join(f"balance-{i}" for i in sorted(preferred_1))
                assert f"Successfully completed leader election (PREFERRED) for partitions {moved}" \
                    in r.stdout, r.stdout
                assert all(parts()[i]["leader"] == 1 for i in preferred_1), parts()
                again = subprocess.run([strom_binary(), "-b", c.bootstrap, "leader-election",
                                        "--election-type", "preferred", "--topic", "balance",
                                        "--partition", str(preferred_1[0])],
                                       capture_output=True, text=True, timeout=60)
                assert again.returncode == 0, again.stderr
                assert f"Valid replica already elected for partitions balance-{preferred_1[0]}" \
                    in again.stdout, again.stdout
                missing = subprocess.run([strom_binary(), "-b", c.bootstrap, "leader-election",
                                          "--election-type", "preferred", "--topic", "nope",
                                          "--partition", "0"],
                                         capture_output=True, text=True, timeout=60)
                assert missing.returncode == 1
                assert "Error completing leader election (PREFERRED) for partition: nope-0: " \
                    "UNKNOWN_TOPIC_OR_PARTITION" in missing.stdout, missing.stdout
        finally:
            c.stop()


def test_a_prestop_request_hands_leadership_over_before_sigterm(cluster):
    """What the Kubernetes preStop hook does: POST /v1/admin/controlled-shutdown on the
    broker's own HTTP port hands every leadership over and answers once the broker leads
    nothing; the SIGTERM that follows has nothing left to do."""
    import urllib.request

    topic = f"prestop-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=3)])[topic].result(30)
    watcher = cluster.brokers[1]
    parts = lambda: watcher.http(f"/v1/topics/{topic}")["partitions"]  # noqa: E731
    wait_until(lambda: any(p["leader"] == 1 for p in parts()) and all(
        len(p["isr"]) == 3 for p in parts()), what="broker 1 leading, all in sync")
    b1 = cluster.brokers[0]

    def post():
        req = urllib.request.Request(
            f"http://127.0.0.1:{b1.http_port}/v1/admin/controlled-shutdown", data=b"",
            method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    answer = post()
    assert answer["node_id"] == 1 and answer["leading"] == 0, answer
    # The watcher's metadata may trail broker 1's by a moment.
    wait_until(lambda: not any(p["leader"] == 1 for p in parts()), timeout=10,
               what="every leadership moved away from broker 1, as the watcher sees it")
    wait_until(lambda: any(b["id"] == 1 and b["state"] == "fenced"
                           for b in watcher.http("/v1/brokers")), timeout=10,
               what="broker 1 fenced, as the watcher sees it")
    assert post()["leading"] == 0, "a second request is harmless"
    # SIGTERM now: a clean exit (stop() kills it if it takes longer than 15 s).
    b1.stop()
    assert b1.proc.returncode == 0
    log = b1.log_path.read_text()
    assert log.count("controlled shutdown: leaderships handed over") == 1, "once, on the request"
