"""`--storage-wal-dir`: the log store's write-ahead log in a directory of its own, standing in
for a tmpfs (decision 0029). A killed broker finds its WAL where it left it and loses
nothing; a stopped one leaves nothing only in the WAL; and a crash of the host, which takes
the tmpfs with it, loses nothing acknowledged to acks=all on three replicas."""

import re
import shutil
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, Cluster, wait_until
from test_replication import leader_of


def wal_files(directory):
    return sorted(p.name for p in directory.glob("*.log") if p.stem.isdigit())


def produce(bootstrap, topic, values, partitions=1):
    delivered = {}
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)
        else:
            delivered[msg.value()] = (msg.partition(), msg.offset())

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5})
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, value=v, partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0
    assert not failed, failed[:3]
    return delivered


def read_all(bootstrap, topic, partitions, timeout=60):
    """Every record of `topic`, value -> (partition, offset), read to the end of each
    partition; a value read twice fails."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4()}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, i, 0) for i in range(partitions)])
    found, eof = {}, set()
    deadline = time.monotonic() + timeout
    while len(eof) < partitions and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                eof.add(msg.partition())
                continue
            raise AssertionError(msg.error())
        assert msg.value() not in found, f"duplicate {msg.value()}"
        found[msg.value()] = (msg.partition(), msg.offset())
    c.close()
    assert len(eof) == partitions, "did not reach the end of every partition"
    return found


def test_kill9_loses_nothing_while_the_wal_dir_survives(tmp_path):
    wal = tmp_path / "wal"
    b = Broker(tmp_path / "data", extra_args=["--storage-wal-dir", str(wal)]).start()
    try:
        topic = f"wal-{uuid.uuid4().hex[:8]}"
        values = [f"v-{i}".encode() for i in range(5000)]
        delivered = produce(b.bootstrap, topic, values)
        assert wal_files(wal), "no WAL file in the WAL directory"
        assert not wal_files(tmp_path / "data" / "logs"), "WAL files in the data directory"
        b.kill9()
        b.start()
        assert read_all(b.bootstrap, topic, 1) == delivered
    finally:
        b.stop()


def test_a_stopped_broker_leaves_nothing_only_in_the_wal(tmp_path):
    """SIGTERM flushes every memtable: the WAL directory may then go whole (a new pod's
    tmpfs) and the broker starts with everything."""
    wal = tmp_path / "wal"
    b = Broker(tmp_path / "data", extra_args=["--storage-wal-dir", str(wal)]).start()
    try:
        topic = f"wal-{uuid.uuid4().hex[:8]}"
        values = [f"v-{i}".encode() for i in range(5000)]
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=3)])[topic].result(30)
        delivered = produce(b.bootstrap, topic, values, partitions=3)
        b.stop()
        assert b.proc.returncode == 0
        shutil.rmtree(wal)
        b.start()
        assert read_all(b.bootstrap, topic, 3) == delivered
    finally:
        b.stop()


def recovered_partitions(broker):
    """The partition count of each start's "partition logs recovered" line in its log."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", broker.log_path.read_text(errors="replace"))
    return [int(n) for n in re.findall(r"partition logs recovered\S* partitions=(\d+)", text)]


def test_a_host_crash_that_takes_the_wal_loses_nothing_acknowledged(tmp_path):
    """Three brokers, each with its WAL in a directory of its own; an idempotent acks=all
    producer on a topic of three replicas (min.insync.replicas=2). Three times the leader of
    partition 0 is killed and its WAL directory emptied, as a host crash empties a tmpfs:
    nothing was flushed (no idle flush, a budget the test never fills), so it comes back with
    no partition at all and catches up from the others. Every delivered record is read back
    at its offset, once."""
    cluster = Cluster(
        tmp_path,
        broker_args=["--broker-heartbeat-interval-ms", "250", "--replica-lag-time-max-ms", "3000",
                     "--memtable-idle-flush-ms", "0"],
        broker_args_of=lambda node_id: ["--storage-wal-dir", str(tmp_path / f"wal-{node_id}")],
    ).start()
    try:
        topic = f"walx-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3,
                                      config={"min.insync.replicas": "2"})])[topic].result(30)
        delivered, failed, fatal, sent = {}, [], [], []
        p = Producer({
            "bootstrap.servers": cluster.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 120000,
            "error_cb": lambda e: fatal.append(e) if e.fatal() else None,
        })

        def on_delivery(err, msg):
            if err is not None:
                failed.append(err)
            else:
                delivered[msg.value()] = (msg.partition(), msg.offset())

        stop = threading.Event()

        def produce_loop():
            i = 0
            while not stop.is_set():
                value = f"m-{i}".encode()
                try:
                    p.produce(topic, value=value, partition=i % 3, on_delivery=on_delivery)
                    sent.append(value)
                    i += 1
                except BufferError:
                    p.poll(0.1)
                    continue
                p.poll(0)
                if i % 100 == 0:
                    time.sleep(0.01)

        t = threading.Thread(target=produce_loop)
        t.start()
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
            stop.set()
            t.join()
        remaining = p.flush(120)
        assert remaining == 0, f"{remaining} records undelivered"
        assert not fatal, f"fatal producer errors: {fatal}"
        assert not failed, f"delivery failures: {failed[:3]}"
        assert len(delivered) == len(sent) > 1000

        found = read_all(cluster.bootstrap, topic, 3)
        lost = [v for v in delivered if v not in found]
        assert not lost, f"{len(lost)} delivered records lost, e.g. {lost[:3]}"
        moved = [(v, delivered[v], found[v]) for v in delivered if delivered[v] != found[v]]
        assert not moved, f"records not at their delivered offsets: {moved[:3]}"
        print(f"host crashes of brokers {crashes}; {len(sent)} sent, {len(delivered)} delivered")
    finally:
        cluster.stop()
