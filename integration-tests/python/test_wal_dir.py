"""`--storage-wal-dir`: the log store's write-ahead log in a directory of its own, standing in
for a tmpfs (decision 0029). A killed broker finds its WAL where it left it and loses
nothing; a stopped one leaves nothing only in the WAL; and a crash of the host, which takes
the tmpfs with it, loses nothing acknowledged to acks=all on three replicas. The load and
its check are acked_load's: every delivered record read back once, at its offset, in order."""

import re
import shutil
import time
import uuid

from confluent_kafka.admin import AdminClient, NewTopic

from acked_load import AckedLoad
from conftest import Broker, Cluster, wait_until
from test_replication import leader_of


def wal_files(directory):
    return sorted(p.name for p in directory.glob("*.log") if p.stem.isdigit())


def create_topic(bootstrap, topic, partitions, replicas=1, config=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=replicas,
                                  config=config or {})])[topic].result(30)


def survives(tmp_path, partitions, restart):
    """One broker with its WAL in `tmp_path/wal`: an acked load on a topic of `partitions`
    for 2 s, then `restart(broker, wal)`; every delivered record must be back."""
    wal = tmp_path / "wal"
    b = Broker(tmp_path / "data", extra_args=["--storage-wal-dir", str(wal)]).start()
    try:
        topic = f"wal-{uuid.uuid4().hex[:8]}"
        create_topic(b.bootstrap, topic, partitions)
        load = AckedLoad(b.bootstrap, topic, partitions, group=False).start()
        time.sleep(2)
        load.stop()
        restart(b, wal)
        report = load.check()
        assert not report.problems(group=False), report.problems(group=False)
    finally:
        b.stop()


def test_kill9_loses_nothing_while_the_wal_dir_survives(tmp_path):
    def kill9(b, wal):
        assert wal_files(wal), "no WAL file in the WAL directory"
        assert not wal_files(b.data_dir / "logs"), "WAL files in the data directory"
        b.kill9()
        b.start()

    survives(tmp_path, 1, kill9)


def test_a_stopped_broker_leaves_nothing_only_in_the_wal(tmp_path):
    """SIGTERM flushes every memtable: the WAL directory may then go whole (a new pod's
    tmpfs) and the broker starts with everything."""
    def stop_and_lose_the_wal(b, wal):
        b.stop()
        assert b.proc.returncode == 0
        shutil.rmtree(wal)
        b.start()

    survives(tmp_path, 3, stop_and_lose_the_wal)


def recovered_partitions(broker):
    """The partition count of each start's "partition logs recovered" line in its log."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", broker.log_path.read_text(errors="replace"))
    return [int(n) for n in re.findall(r"partition logs recovered\S* partitions=(\d+)", text)]


def test_a_host_crash_that_takes_the_wal_loses_nothing_acknowledged(tmp_path):
    """Three brokers, each with its WAL in a directory of its own; an idempotent acks=all
    producer and a consumer group on a topic of three replicas (min.insync.replicas=2).
    Three times the leader of partition 0 is killed and its WAL directory emptied, as a host
    crash empties a tmpfs: nothing was flushed (no idle flush, a budget the test never
    fills), so it comes back with no partition at all and catches up from the others."""
    cluster = Cluster(
        tmp_path,
        broker_args=["--broker-heartbeat-interval-ms", "250", "--replica-lag-time-max-ms", "3000",
                     "--memtable-idle-flush-ms", "0"],
        broker_args_of=lambda node_id: ["--storage-wal-dir", str(tmp_path / f"wal-{node_id}")],
    ).start()
    try:
        topic = f"walx-{uuid.uuid4().hex[:8]}"
        create_topic(cluster.bootstrap, topic, 3, replicas=3,
                     config={"min.insync.replicas": "2"})
        load = AckedLoad(cluster.bootstrap, topic, 3).start()
        crashes = []
        try:
            for _ in range(3):
                time.sleep(3)
                leader = leader_of(cluster, topic, 0)
                assert leader >= 1
                victim = cluster.brokers[leader - 1]
                wal = tmp_path / f"wal-{leader}"
                victim.kill9()
                assert wal_files(wal), "the WAL directory held nothing to lose"
                shutil.rmtree(wal)
                crashes.append(leader)
                time.sleep(2)
                victim.start()
                # It lost every partition it held: nothing had been flushed.
                assert recovered_partitions(victim)[-1] == 0, recovered_partitions(victim)
                # Back in every ISR before the next crash, so that each crash takes a replica
                # that had caught up.
                wait_until(lambda: all(
                    leader in part["isr"]
                    for part in cluster.brokers[leader % 3].http(f"/v1/topics/{topic}")["partitions"]
                ), timeout=60, what=f"broker {leader} back in the ISRs")
            time.sleep(2)
        finally:
            load.stop()
        report = load.check()
        assert not report.problems(), report.problems()
        print(f"host crashes of brokers {crashes}; {report.summary()}")
    finally:
        cluster.stop()
