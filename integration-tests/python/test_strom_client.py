"""Strom's own client (the `strom` CLI on the strom-client library) against real Kafka
clients: keyed records land where the Java partitioner puts them both ways, and a Strom
consumer and a librdkafka consumer share one consumer group (each as the leader in turn)."""

import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, broker_binary, wait_until


def strom_binary() -> str:
    path = Path(broker_binary()).parent / "strom"
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `cargo build --bins`")
    return str(path)


def strom(broker, *args, stdin=None, check=True):
    r = subprocess.run([strom_binary(), "--bootstrap-server", broker.bootstrap, *args],
                       input=stdin, capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"strom {' '.join(args)} failed: {r.stderr}")
    return r


def murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2, as a signed 32-bit int."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[i * 4:i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = data[length // 4 * 4:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_the_reference_murmur2_is_javas():
    # Kafka's UtilsTest.testMurmur2.
    cases = {b"21": -973932308, b"foobar": -790332482,
             b"a-little-bit-long-string": -985981536,
             b"a-little-bit-longer-string": -1486304829,
             b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
             b"abc": 479470107}
    for data, expected in cases.items():
        assert murmur2(data) == expected, data


def create(broker, topic, partitions):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def read_all(broker, topic, partitions, n):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"read-{uuid.uuid4()}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.time() + 60
    while len(out) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            out.append(m)
    c.close()
    return out


def test_strom_producer_keys_land_where_java_puts_them_and_librdkafka_reads_them(broker):
    topic = f"interop-{uuid.uuid4().hex[:6]}"
    create(broker, topic, 6)
    lines = "".join(f"user-{i % 37}:event-{i}\n" for i in range(600))
    r = strom(broker, "produce", topic, "--key-separator", ":", "--header", "src=strom",
              "--compression", "lz4", stdin=lines)
    assert "produced 600 records" in r.stderr
    msgs = read_all(broker, topic, 6, 600)
    assert len(msgs) == 600
    last = {}
    for m in msgs:
        key = m.key()
        assert m.partition() == java_partition(key, 6), key
        assert m.headers() == [("src", b"strom")]
        n = int(m.value().decode().split("-")[1])
        assert int(key.decode().split("-")[1]) == n % 37
        assert n > last.get(m.partition(), -1), "send order within a partition"
        last[m.partition()] = n


def test_librdkafka_murmur2_records_match_stroms_partitioner_and_strom_reads_them(broker):
    topic = f"interop-{uuid.uuid4().hex[:6]}"
    create(broker, topic, 5)
    p = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random",
                  "compression.type": "zstd"})
    for i in range(500):
        p.produce(topic, key=f"order-{i % 41}".encode(), value=f"v{i}".encode(),
                  headers=[("n", str(i).encode())])
    assert p.flush(30) == 0
    out = strom(broker, "consume", topic, "--from-beginning",
                "--format", "%p %k %v %h\\n").stdout.splitlines()
    assert len(out) == 500
    placed = {}
    for line in out:
        part, key, value, header = line.split(" ")
        assert header == f"n={value[1:]}"
        placed.setdefault(key, set()).add(int(part))
    assert all(len(ps) == 1 for ps in placed.values()), "one partition per key"
    for key, ps in placed.items():
        assert ps == {java_partition(key.encode(), 5)}, key
    # The same keys through Strom's producer go to the same partitions librdkafka chose.
    topic2 = topic + "-strom"
    create(broker, topic2, 5)
    strom(broker, "produce", topic2, "--key-separator", ":",
          stdin="".join(f"{k}:x\n" for k in placed))
    for m in read_all(broker, topic2, 5, len(placed)):
        assert {m.partition()} == placed[m.key().decode()]


@pytest.fixture
def group_broker(tmp_path):
    b = Broker(tmp_path / "data", extra_args=["--group-initial-rebalance-delay-ms", "0"]).start()
    yield b
    b.stop()


def group_members(broker, group):
    """member id -> assigned partitions, from `strom groups describe`."""
    out = strom(broker, "groups", "describe", group).stdout
    members = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("member "):
            member = line.split()[1]
            assignment = line.rsplit("assignment ", 1)[1]
            parts = set()
            if assignment != "-":
                for chunk in assignment.split():
                    parts |= {int(p) for p in chunk.split(":")[1].split(",")}
            members[member] = parts
    return out, members


def test_a_strom_consumer_and_a_librdkafka_consumer_share_a_group(group_broker):
    broker = group_broker
    topic = f"mixed-{uuid.uuid4().hex[:6]}"
    group = f"g-{topic}"
    create(broker, topic, 4)
    # Strom first: it leads the group and computes the assignment for both.
    strom_out = open(broker.data_dir.parent / "strom-consume.out", "w+")
    # stderr to a file, not a pipe: a pipe nobody reads blocks the consumer once it fills.
    strom_err = open(broker.data_dir.parent / "strom-consume.err", "w+")
    proc = subprocess.Popen(
        [strom_binary(), "--bootstrap-server", broker.bootstrap, "consume", topic,
         "--group", group, "--from-beginning", "--follow", "--format", "%v\\n"],
        stdout=strom_out, stderr=strom_err, text=True)
    wait_until(lambda: len(group_members(broker, group)[1]) == 1, what="strom in the group")

    seen = []
    stop = threading.Event()
    assignment = []

    def run_librdkafka():
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                      "auto.offset.reset": "earliest", "partition.assignment.strategy": "range",
                      "enable.auto.commit": False, "session.timeout.ms": 10000})

        def on_assign(consumer, partitions):
            assignment[:] = [p.partition for p in partitions]

        c.subscribe([topic], on_assign=on_assign)
        while not stop.is_set():
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen.append(m.value().decode())
                c.commit(m, asynchronous=False)
        c.close()

    t = threading.Thread(target=run_librdkafka)
    t.start()
    try:
        wait_until(lambda: sorted(len(p) for p in group_members(broker, group)[1].values())
                   == [2, 2], timeout=60, what="two members with two partitions each")
        p = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(400):
            p.produce(topic, value=f"m-{i}".encode(), partition=i % 4)
        assert p.flush(30) == 0

        def strom_lines():
            # A file object of its own: seeking the one the child writes through would move
            # the child's offset too, and its next lines would overwrite the first.
            with open(strom_out.name) as f:
                return [l for l in f.read().splitlines() if l]

        try:
            wait_until(lambda: len(seen) + len(strom_lines()) >= 400, timeout=60,
                       what="both members to read the topic")
        except AssertionError as e:
            strom_err.seek(0)
            raise AssertionError(
                f"{e}: librdkafka read {len(seen)} (assigned {assignment}), strom read "
                f"{len(strom_lines())}; group: {group_members(broker, group)}; strom stderr: "
                f"{strom_err.read()[-3000:]}; broker log: {broker.log_path}") from None
        both = seen + strom_lines()
        assert sorted(both) == sorted(f"m-{i}" for i in range(400)), "each record once"
        assert seen and strom_lines(), "both members read"

        # Strom leaves (Ctrl-C: it commits and sends LeaveGroup): librdkafka takes all four.
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, strom_err.seek(0) or strom_err.read()
        wait_until(lambda: sorted(assignment) == [0, 1, 2, 3], timeout=30,
                   what="librdkafka to take every partition")
        before = len(seen)
        for i in range(400, 440):
            p.produce(topic, value=f"m-{i}".encode(), partition=i % 4)
        assert p.flush(30) == 0
        wait_until(lambda: len(seen) >= before + 40, timeout=30, what="the new records")
        # Nothing Strom committed is read again: its share resumed at its commits.
        assert sorted(seen + strom_lines()) == sorted(f"m-{i}" for i in range(440))
    finally:
        stop.set()
        t.join(30)
        if proc.poll() is None:
            proc.kill()
