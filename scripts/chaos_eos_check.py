"""The client side of the chaos run's exactly-once check, with confluent-kafka (librdkafka):
the Rust chaos driver calls it and compares what it writes with the input log.

    chaos_eos_check.py caught-up BOOTSTRAP INPUT GROUP TIMEOUT_S
        Polls until the group's committed offsets (OffsetFetch with require_stable, so no
        transaction is still deciding them) equal the input's end offsets, then prints them
        and exits 0; exits 1 with the last state seen after TIMEOUT_S.
    chaos_eos_check.py read-committed BOOTSTRAP OUTPUT OUT_FILE TIMEOUT_S
        Reads every partition of OUTPUT from the start with isolation.level read_committed
        until the position reaches the high watermark (which needs every transaction in the
        partition decided) and writes "partition offset value" lines to OUT_FILE; exits 1 if
        that does not happen within TIMEOUT_S.
"""

import sys
import time

from confluent_kafka import (OFFSET_BEGINNING, ConsumerGroupTopicPartitions, Consumer,
                             IsolationLevel, TopicPartition)
from confluent_kafka.admin import AdminClient, OffsetSpec


def partitions_of(admin, topic):
    md = admin.list_topics(topic, timeout=10).topics[topic]
    if md.error is not None:
        raise RuntimeError(f"{topic}: {md.error}")
    return sorted(md.partitions)


def end_offsets(admin, topic, partitions):
    wanted = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}
    futures = admin.list_offsets(wanted, isolation_level=IsolationLevel.READ_UNCOMMITTED,
                                 request_timeout=5)
    return {tp.partition: f.result().offset for tp, f in futures.items()}


def committed_offsets(admin, group, topic, partitions):
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])]
    result = admin.list_consumer_group_offsets(request, require_stable=True,
                                               request_timeout=5)[group].result()
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def caught_up(bootstrap, topic, group, timeout):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    started = time.monotonic()
    deadline = started + timeout
    ends, committed, last_error = None, None, None
    while time.monotonic() < deadline:
        try:
            parts = partitions_of(admin, topic)
            ends = end_offsets(admin, topic, parts)
            committed = committed_offsets(admin, group, topic, parts)
            if committed == ends:
                print(f"committed offsets reached the input's end {ends} "
                      f"after {time.monotonic() - started:.1f}s")
                return 0
        except Exception as e:  # noqa: BLE001 - polling through faults' after-effects
            last_error = e
        time.sleep(0.5)
    print(f"the group's committed offsets {committed} did not reach the input's end {ends} "
          f"in {timeout}s; last error {last_error!r}")
    return 1


def read_committed(bootstrap, topic, out, timeout):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    parts = partitions_of(admin, topic)
    ends = end_offsets(admin, topic, parts)
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"chaos-eos-reader-{time.time_ns()}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    tps = [TopicPartition(topic, p) for p in parts]
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    deadline = time.monotonic() + timeout
    n, last_error = 0, None
    try:
        with open(out, "w") as f:
            while True:
                # Control records move the position without reaching the application, so a
                # position reaches a high watermark that ends in a marker once it is decided.
                pos = {tp.partition: tp.offset for tp in c.position(tps)}
                if all(ends[p] == 0 or pos[p] >= ends[p] for p in parts):
                    break
                if time.monotonic() > deadline:
                    print(f"read_committed positions {pos} did not reach the high watermarks "
                          f"{ends} in {timeout}s ({n} records read); last error {last_error}")
                    return 1
                msg = c.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    last_error = msg.error()
                    continue
                f.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")
                n += 1
    finally:
        c.close()
    print(f"read {n} committed records of {topic} up to {ends}")
    return 0


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "caught-up":
        bootstrap, topic, group, timeout = args
        return caught_up(bootstrap, topic, group, float(timeout))
    if command == "read-committed":
        bootstrap, topic, out, timeout = args
        return read_committed(bootstrap, topic, out, float(timeout))
    print(f"unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
