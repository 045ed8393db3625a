"""Load and checks around a rolling restart: an idempotent acks=all producer (librdkafka,
through confluent-kafka) and a consumer group run while ROLL_COMMAND restarts the brokers one
by one; then every delivered record must be in the log exactly once at the offset its delivery
report named, in send order per partition, the group must have consumed every one of them,
and no client may have seen an error other than a retriable one.

    python scripts/rolling_check.py BOOTSTRAP [--message-timeout-ms MS] -- ROLL_COMMAND...

Give a message timeout below the brokers' session timeout: then a restart that left
partitions leaderless until the session lapsed (no controlled shutdown) fails deliveries.
"""

import subprocess
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6


def main():
    sep = sys.argv.index("--")
    bootstrap = sys.argv[1]
    opts = sys.argv[2:sep]
    message_timeout_ms = 300000
    if opts[:1] == ["--message-timeout-ms"]:
        message_timeout_ms = int(opts[1])
    roll = sys.argv[sep + 1:]
    topic = f"rolling-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})])[
        topic].result(60)

    delivered, failed, client_errors = {}, [], []

    def on_error(e):
        # Transport errors while a broker restarts are retriable and expected; anything
        # fatal or not retriable is a client-visible failure.
        if e.fatal() or not (e.retriable() or e.code() in (
                KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE)):
            client_errors.append(e)

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 5, "error_cb": on_error,
                         "message.timeout.ms": message_timeout_ms})

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)
        else:
            delivered[msg.value()] = (msg.partition(), msg.offset())

    stop = threading.Event()
    sent = []

    def produce():
        i = 0
        while not stop.is_set():
            value = f"r-{i}".encode()
            try:
                producer.produce(topic, value=value, partition=i % PARTITIONS,
                                 on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.1)
                continue
            sent.append(value)
            i += 1
            producer.poll(0)
            if i % 20 == 0:
                time.sleep(0.01)

    group_seen = set()
    consumer_stop = threading.Event()

    def consume():
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-g",
                      "auto.offset.reset": "earliest", "error_cb": on_error,
                      "session.timeout.ms": 10000})
        c.subscribe([topic])
        while not consumer_stop.is_set():
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                on_error(msg.error())
                continue
            group_seen.add(msg.value())
        c.close()

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    started = time.monotonic()
    try:
        time.sleep(3)
        rolled = subprocess.run(roll)
        time.sleep(3)
    finally:
        stop.set()
        threads[0].join()
    assert producer.flush(120) == 0, "records left undelivered"
    # The group catches up with everything delivered.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not set(delivered) <= group_seen:
        time.sleep(0.5)
    consumer_stop.set()
    threads[1].join()
    elapsed = time.monotonic() - started

    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-check",
                       "enable.partition.eof": True, "enable.auto.commit": False})
    reader.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    in_log, duplicates, order, eof = {}, [], {p: [] for p in range(PARTITIONS)}, set()
    deadline = time.monotonic() + 90
    while len(eof) < PARTITIONS and time.monotonic() < deadline:
        msg = reader.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                eof.add(msg.partition())
            continue
        if msg.value() in in_log:
            duplicates.append(msg.value())
        in_log[msg.value()] = (msg.partition(), msg.offset())
        order[msg.partition()].append(int(msg.value()[2:]))
    reader.close()

    lost = [v for v in delivered if in_log.get(v) != delivered[v]]
    unordered = [p for p, seq in order.items() if seq != sorted(seq)]
    not_consumed = set(delivered) - group_seen
    print(f"rolling-check: {elapsed:.0f} s, {len(sent)} sent, {len(delivered)} delivered, "
          f"{len(in_log)} in the log; lost {len(lost)}, duplicated {len(duplicates)}, "
          f"partitions out of order {len(unordered)}; delivery failures {len(failed)}; "
          f"group consumed {len(group_seen & set(delivered))}/{len(delivered)}; "
          f"non-retriable client errors {len(client_errors)}")
    problems = []
    if rolled.returncode != 0:
        problems.append(f"the roll command failed ({rolled.returncode})")
    if len(eof) < PARTITIONS:
        problems.append("did not read every partition to its end")
    if lost:
        problems.append(f"lost or moved: {lost[:3]}")
    if duplicates:
        problems.append(f"duplicated: {duplicates[:3]}")
    if unordered:
        problems.append(f"out of send order: partitions {unordered}")
    if failed:
        problems.append(f"delivery failures: {failed[:3]}")
    if not_consumed:
        problems.append(f"the group never consumed {len(not_consumed)}")
    if client_errors:
        problems.append(f"client errors: {client_errors[:3]}")
    if len(delivered) < 1000:
        problems.append(f"only {len(delivered)} records delivered: the load did not run")
    for p in problems:
        print(f"rolling-check: FAIL {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
