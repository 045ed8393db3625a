"""Load and checks around a rolling restart: an idempotent acks=all producer (librdkafka,
through confluent-kafka) and a consumer group run while ROLL_COMMAND restarts the brokers one
by one; then every delivered record must be in the log exactly once at the offset its delivery
report named, in send order per partition, the group must have consumed every one of them,
and no client may have seen an error other than a retriable one
(integration-tests/python/acked_load.py).

    python scripts/rolling_check.py BOOTSTRAP [--message-timeout-ms MS] [--label NAME] \
        -- ROLL_COMMAND...

(scripts/scale-demo.sh runs its steps the same way, labelled scale-check.)

Give a message timeout below the brokers' session timeout: then a restart that left
partitions leaderless until the session lapsed (no controlled shutdown) fails deliveries.
"""

import os
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration-tests", "python"))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from acked_load import AckedLoad  # noqa: E402

PARTITIONS = 6


def main():
    sep = sys.argv.index("--")
    bootstrap = sys.argv[1]
    opts = sys.argv[2:sep]
    message_timeout_ms = 300000
    label = "rolling-check"
    while opts:
        if opts[0] == "--message-timeout-ms":
            message_timeout_ms = int(opts[1])
        elif opts[0] == "--label":
            label = opts[1]
        else:
            sys.exit(f"unknown option {opts[0]}")
        opts = opts[2:]
    roll = sys.argv[sep + 1:]
    topic = f"{label.split('-')[0]}-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 3, config={"min.insync.replicas": "2"})])[
        topic].result(60)

    load = AckedLoad(bootstrap, topic, PARTITIONS, prefix="r",
                     producer_config={"message.timeout.ms": message_timeout_ms}).start()
    started = time.monotonic()
    try:
        time.sleep(3)
        rolled = subprocess.run(roll)
        time.sleep(3)
    finally:
        load.stop()
    report = load.check()
    problems = report.problems(min_delivered=1000)
    if rolled.returncode != 0:
        problems.insert(0, f"the roll command failed ({rolled.returncode})")
    print(f"{label}: {time.monotonic() - started:.0f} s, {report.summary()}")
    for p in problems:
        print(f"{label}: FAIL {p}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
