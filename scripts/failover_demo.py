"""The failover demo against the docker compose cluster (see scripts/failover-demo.sh).

A producer (idempotent, acks=all) and a consumer run on a new RF=3, min.insync.replicas=2
topic while the broker leading partition 0 is killed and started again, then while the
active controller is killed and started again. Prints a timeline read from the HTTP API and
the metadata event log, how long writes to partition 0 paused, and whether the consumer saw
every acknowledged record. Exits 1 if it did not.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

COMPOSE = os.environ.get("COMPOSE", "docker compose").split()
BOOTSTRAP = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
BROKER_HTTP = {1: 19644, 2: 19645, 3: 19646}
CONTROLLER_HTTP = {1: 19081, 2: 19082, 3: 19083}
T0 = time.time()
timeline = []


def say(what):
    line = f"[{time.time() - T0:7.2f}s] {what}"
    timeline.append(line)
    print(line, flush=True)


def http(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
        return json.loads(r.read())


def any_broker(path):
    for port in BROKER_HTTP.values():
        try:
            return http(port, path)
        except Exception:  # noqa: BLE001 - that broker is down
            continue
    raise RuntimeError("no broker answers HTTP")


def compose(*args):
    subprocess.run([*COMPOSE, *args], check=True, capture_output=True)


def partition0(topic):
    p = any_broker(f"/v1/topics/{topic}")["partitions"][0]
    return p["leader"], p["isr"], p["leader_epoch"]


def active_controller():
    for node, port in CONTROLLER_HTTP.items():
        try:
            doc = http(port, "/v1/cluster")
        except Exception:  # noqa: BLE001
            continue
        if doc["raft"]["state"] == "Leader":
            return node
    return None


def wait(what, predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = predicate()
            if v:
                return v
        except Exception:  # noqa: BLE001 - nodes come and go
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def read_everything(topic):
    """Every value in the topic's three partitions, read from offset 0 to the end."""
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"audit-{topic}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(3)])
    values, at_end, deadline = set(), set(), time.time() + 60
    while len(at_end) < 3 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(m.partition())
        else:
            values.add(m.value())
    c.close()
    return values


def main():
    topic = f"failover-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})])[
        topic].result(30)
    first_event = any_broker("/v1/metadata/events?from=0&limit=1")["next"]
    events_from = any_broker(f"/v1/metadata/events?from={first_event}&limit=100000")["next"]
    topic_id = wait("the topic on a broker", lambda: any_broker(f"/v1/topics/{topic}"))["topic_id"]
    say(f"topic {topic}: 3 partitions, RF=3, min.insync.replicas=2")

    acked = {}  # value -> (partition, offset, time)
    errors = []
    stop = threading.Event()
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 2, "message.timeout.ms": 120000})

    def delivered(err, msg):
        if err:
            errors.append(str(err))
        else:
            acked[msg.value()] = (msg.partition(), msg.offset(), time.time())

    flushed = threading.Event()

    def produce():
        i = 0
        while not stop.is_set():
            producer.produce(topic, value=f"v-{i}".encode(), partition=i % 3,
                             on_delivery=delivered)
            producer.poll(0)
            i += 1
            time.sleep(0.005)
        producer.flush(120)
        flushed.set()

    seen = set()

    def consume():
        c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"demo-{topic}",
                      "enable.auto.commit": False})
        c.assign([TopicPartition(topic, p, 0) for p in range(3)])
        # Until the producer has flushed (its last acknowledgements arrive during flush) and
        # every acknowledged value has been read, or 60 s after the stop.
        while not (flushed.is_set() and seen.issuperset(acked)):
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen.add(m.value())
            if stop.is_set() and time.time() > stop_time[0] + 60:
                break
        c.close()

    stop_time = [0.0]
    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    time.sleep(4)

    # --- A broker dies.
    leader, isr, epoch = partition0(topic)
    say(f"partition 0: leader {leader}, ISR {isr}, leader epoch {epoch}; "
        f"{len(acked)} records acknowledged so far")
    t_kill = time.time()
    say(f"docker kill broker-{leader}")
    compose("kill", f"broker-{leader}")
    new_leader, new_isr, new_epoch = wait("a new leader", lambda: (
        lambda p: p if p[0] not in (leader, -1) else None)(partition0(topic)))
    say(f"partition 0: new leader {new_leader} (epoch {new_epoch}), ISR {new_isr} "
        f"— {time.time() - t_kill:.2f}s after the kill")
    time.sleep(3)
    compose("start", f"broker-{leader}")
    say(f"docker compose start broker-{leader}")
    wait("the ISR to expand again", lambda: len(partition0(topic)[1]) == 3, timeout=90)
    say(f"partition 0: ISR {partition0(topic)[1]} again (broker {leader} caught up)")

    # --- The active controller dies.
    time.sleep(2)
    active = wait("an active controller", active_controller)
    say(f"active controller: {active}")
    t_ckill = time.time()
    say(f"docker kill controller-{active}")
    compose("kill", f"controller-{active}")
    new_active = wait("a new active controller",
                      lambda: (lambda a: a if a not in (None, active) else None)(
                          active_controller()))
    say(f"active controller: {new_active} — {time.time() - t_ckill:.2f}s after the kill")
    acked_before = len(acked)
    time.sleep(3)
    say(f"{len(acked) - acked_before} records acknowledged in the 3 s after")
    compose("start", f"controller-{active}")
    say(f"docker compose start controller-{active}")
    time.sleep(2)

    stop.set()
    stop_time[0] = time.time()
    for t in threads:
        t.join()

    # --- What the controller recorded, from the metadata event log.
    print("\nmetadata events during the demo (controller timestamps):")
    for e in any_broker(f"/v1/metadata/events?from={events_from}&limit=100000")["events"]:
        kind, body = next(iter(e["record"].items()))
        if kind in ("FenceBroker", "UnfenceBroker", "RegisterBroker") or (
                kind == "PartitionChange" and body.get("topic_id") == topic_id
                and body.get("partition") == 0):
            at = e["timestamp_ms"] / 1000 - T0
            detail = {k: v for k, v in body.items() if k in
                      ("broker_id", "leader", "isr", "leader_epoch", "partition_epoch")}
            print(f"  [{at:7.2f}s] {kind} {detail}")

    # --- Writes to partition 0: the longest pause around the broker kill.
    times = sorted(t for (p, _, t) in acked.values() if p == 0)
    gaps = [(b - a, a) for a, b in zip(times, times[1:]) if a >= t_kill - 1]
    pause, at = max(gaps) if gaps else (0, t_kill)
    print(f"\nwrites to partition 0 paused for {pause:.2f}s "
          f"(from {at - T0:.2f}s), around the kill at {t_kill - T0:.2f}s")
    missing = [v for v in acked if v not in seen]
    print(f"{len(acked)} records acknowledged, {len(seen)} consumed, "
          f"{len(missing)} acknowledged records not consumed, {len(errors)} delivery errors")
    if missing or errors:
        # Tell a lost write from a consumer that stopped early: read the whole log again.
        in_log = read_everything(topic)
        lost = [v for v in missing if v not in in_log]
        print(f"a fresh read of the topic holds {len(in_log)} records; "
              f"{len(lost)} of the missing ones are not in the log")
        print(f"FAILED: missing {missing[:5]} errors {errors[:3]}")
        sys.exit(1)
    print("OK: the consumer saw every acknowledged record")


if __name__ == "__main__":
    main()
