"""Changing the metadata quorum's voters at run time (KIP-853, issue #17) while brokers work:
a two-voter quorum gets a third controller (`strom metadata-quorum add-controller`: it
catches up as a learner, then votes), then loses the original active controller
(`remove-controller`, then the process stops). Under an acks=all idempotent producer and a
consumer group nothing is lost, duplicated or reordered, and metadata changes keep working
on the new quorum."""

import subprocess
import time
import uuid

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from acked_load import AckedLoad
from conftest import Cluster, Controller, free_port, wait_until
from test_strom_client import strom_binary


@pytest.fixture
def two_voters(tmp_path):
    c = Cluster(tmp_path, n=3, controllers=2,
                broker_args=["--broker-heartbeat-interval-ms", "250",
                             "--replica-lag-time-max-ms", "5000"])
    c.start()
    yield c
    c.stop()


def quorum_cli(controller, *args):
    return subprocess.run([strom_binary(), "metadata-quorum", "--bootstrap-controller",
                           f"127.0.0.1:{controller.port}", *args],
                          capture_output=True, text=True, timeout=120)


def voter_ids(controller):
    return sorted(v["id"] for v in controller.http("/v1/quorum/voters")["voters"])


def test_add_a_third_voter_and_remove_the_active_one_under_load(two_voters, tmp_path):
    c = two_voters
    topic = f"voters-{uuid.uuid4().hex[:6]}"
    admin = KafkaAdminClient(bootstrap_servers=c.bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3,
                                  topic_configs={"min.insync.replicas": "2"})])
    first = c.controllers[0]
    assert voter_ids(first) == [1, 2]

    load = AckedLoad(c.bootstrap, topic, 3).start()
    try:
        time.sleep(2)
        # A third controller, started with the current voters (not itself): it waits.
        port = free_port()
        voters = ",".join(f"{x.node_id}@127.0.0.1:{x.port}" for x in c.controllers)
        third = Controller(tmp_path, 3, port, voters,
                           ["--join", "--broker-session-timeout-ms",
                            str(c.session_timeout_ms)]).start()
        c.controllers.append(third)
        wait_until(lambda: third.http("/v1/cluster")["node_id"] == 3, what="controller 3 serving")
        assert 3 not in voter_ids(first)

        r = quorum_cli(c.controllers[1], "add-controller", "--controller-id", "3",
                       "--controller-address", f"127.0.0.1:{port}")
        assert r.returncode == 0, r.stderr
        assert "voters are now [1@" in r.stdout and "3@127.0.0.1" in r.stdout, r.stdout
        for x in c.controllers:
            wait_until(lambda x=x: voter_ids(x) == [1, 2, 3], what=f"controller {x.node_id} "
                       "sees three voters")
        # The new voter has the whole metadata log.
        wait_until(lambda: third.http("/v1/cluster")["metadata_offset"]
                   >= first.http("/v1/cluster")["metadata_offset"], what="controller 3 caught up")

        # Remove the active controller, then stop it.
        active = c.active_controller()
        r = quorum_cli(active, "remove-controller", "--controller-id", str(active.node_id))
        assert r.returncode == 0, r.stderr
        rest = sorted(x.node_id for x in c.controllers if x is not active)
        survivor = next(x for x in c.controllers if x is not active)
        wait_until(lambda: voter_ids(survivor) == rest, what="two voters left")
        active.proc.terminate()
        active.proc.wait(timeout=15)
        wait_until(lambda: survivor.http("/v1/cluster")["controller_id"] in rest,
                   what="a remaining voter leads")

        # Refused: removing an unknown voter; the quorum keeps both.
        r = quorum_cli(survivor, "remove-controller", "--controller-id", "9")
        assert r.returncode != 0 and "is not a voter" in r.stderr, r
        assert voter_ids(survivor) == rest

        # Metadata changes go through the new quorum.
        late = f"late-{uuid.uuid4().hex[:6]}"
        admin.create_topics([NewTopic(late, 1, 3)])
        wait_until(lambda: c.brokers[0].http(f"/v1/topics/{late}"), what="a topic created")
        d = quorum_cli(survivor, "describe")
        assert d.returncode == 0 and "CurrentVoters:" in d.stdout, d
        time.sleep(2)
    finally:
        load.stop()
    report = load.check()
    print(f"voters: {report.summary()}")
    assert not report.problems(), report.problems()
