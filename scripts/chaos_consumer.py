"""A consumer-group member for the chaos run: subscribes to a topic with confluent-kafka
(librdkafka), commits after processing, and appends every value it consumes to a file, one per
line, until SIGTERM. Several run in one group, so faults also move partitions between them.
    chaos_consumer.py BOOTSTRAP TOPIC GROUP OUT_FILE
"""

import signal
import sys

from confluent_kafka import Consumer

bootstrap, topic, group, out = sys.argv[1:5]
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
c = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "session.timeout.ms": 10000,
})
c.subscribe([topic])
n = 0
with open(out, "a", buffering=1) as f:
    while running:
        msg = c.poll(0.2)
        if msg is None or msg.error():
            continue
        f.write(msg.value().decode() + "\n")
        n += 1
        if n % 200 == 0:
            try:
                c.commit(asynchronous=True)
            except Exception:  # noqa: BLE001 - a commit during a rebalance; the next one counts
                pass
c.close()
