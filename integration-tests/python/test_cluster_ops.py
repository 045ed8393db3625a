"""Operating a cluster (issue #17): preferred leader election through confluent-kafka's
AdminClient.elect_leaders (ElectLeaders, what kafka-leader-election.sh sends), after a
failover moved leadership away from a broker that has since come back."""

from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until

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
