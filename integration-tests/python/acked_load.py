"""The load and the checker the failover, reassignment and rolling-restart checks share: an
idempotent acks=all producer (librdkafka through confluent-kafka) writing numbered values
round-robin over a topic's partitions while a consumer group reads, and a reader that checks
the log afterwards: every delivered record exactly once, at the offset its delivery report
named, in send order per partition.

    load = AckedLoad(bootstrap, topic, partitions, group=True).start()
    ...faults...
    load.stop()            # stops producing, flushes, waits for the group to catch up
    report = load.check()  # reads the log; report.problems() lists what is wrong
"""

import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

RETRIABLE = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE)


class AckedLoad:
    def __init__(self, bootstrap, topic, partitions, group=True, producer_config=None,
                 prefix="v"):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.prefix = prefix.encode()
        self.delivered = {}
        self.failed = []
        self.client_errors = []
        self.sent = []
        self.group_seen = set()
        self._stop = threading.Event()
        self._consumer_stop = threading.Event()
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "acks": "all", "linger.ms": 5, "error_cb": self._on_error,
                                  **(producer_config or {})})
        self._threads = [threading.Thread(target=self._produce)]
        if group:
            self._threads.append(threading.Thread(target=self._consume))

    def _on_error(self, e):
        # Transport errors while a broker restarts are retriable and expected; anything
        # fatal or not retriable is a client-visible failure.
        if e.fatal() or not (e.retriable() or e.code() in RETRIABLE):
            self.client_errors.append(e)

    def _on_delivery(self, err, msg):
        if err is not None:
            self.failed.append(err)
        else:
            self.delivered[msg.value()] = (msg.partition(), msg.offset())

    def _produce(self):
        i = 0
        while not self._stop.is_set():
            value = self.prefix + b"-" + str(i).encode()
            try:
                self.producer.produce(self.topic, value=value, partition=i % self.partitions,
                                      on_delivery=self._on_delivery)
            except BufferError:
                self.producer.poll(0.1)
                continue
            self.sent.append(value)
            i += 1
            self.producer.poll(0)
            if i % 20 == 0:
                time.sleep(0.01)

    def _consume(self):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"{self.topic}-g",
                      "auto.offset.reset": "earliest", "error_cb": self._on_error,
                      "session.timeout.ms": 10000})
        c.subscribe([self.topic])
        while not self._consumer_stop.is_set():
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                self._on_error(msg.error())
                continue
            self.group_seen.add(msg.value())
        c.close()

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self, group_timeout=90):
        """Stops producing and flushes; then gives the group until `group_timeout` to read
        everything delivered."""
        self._stop.set()
        self._threads[0].join()
        self.undelivered = self.producer.flush(120)
        deadline = time.monotonic() + group_timeout
        while (len(self._threads) > 1 and time.monotonic() < deadline
               and not set(self.delivered) <= self.group_seen):
            time.sleep(0.5)
        self._consumer_stop.set()
        for t in self._threads[1:]:
            t.join()

    def check(self, timeout=90):
        """Reads every partition from the start to its end and compares with what was
        delivered."""
        reader = Consumer({"bootstrap.servers": self.bootstrap,
                           "group.id": f"{self.topic}-check-{uuid.uuid4().hex[:6]}",
                           "enable.partition.eof": True, "enable.auto.commit": False})
        reader.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        r = Report(self)
        deadline = time.monotonic() + timeout
        while len(r.eof) < self.partitions and time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    r.eof.add(msg.partition())
                continue
            if msg.value() in r.in_log:
                r.duplicates.append(msg.value())
            r.in_log[msg.value()] = (msg.partition(), msg.offset())
            r.order[msg.partition()].append(int(msg.value().rsplit(b"-", 1)[1]))
        reader.close()
        return r


class Report:
    def __init__(self, load):
        self.load = load
        self.in_log = {}
        self.duplicates = []
        self.order = {p: [] for p in range(load.partitions)}
        self.eof = set()

    def lost(self):
        """Acknowledged records the log does not hold where they were acknowledged. An ack
        without an offset (librdkafka's implicit ack: a request answered with an error, such
        as NOT_LEADER_OR_FOLLOWER from a leader that lost its leadership, whose records a
        later request of the same idempotent producer showed written; real Kafka answers the
        same) must be in the log on its partition, at whatever offset."""
        out = []
        for v, (partition, offset) in self.load.delivered.items():
            found = self.in_log.get(v)
            if found is None or found[0] != partition or (offset is not None and found[1] != offset):
                out.append(v)
        return out

    def problems(self, min_delivered=500, group=True):
        load = self.load
        lost = self.lost()
        out = []
        if len(self.eof) < load.partitions:
            out.append("did not read every partition to its end")
        if getattr(load, "undelivered", 0):
            out.append(f"{load.undelivered} records left undelivered")
        if lost:
            # Where each was acknowledged, and where (if anywhere) the log has it.
            where = [(v, load.delivered[v], self.in_log.get(v)) for v in lost[:3]]
            out.append(f"{len(lost)} lost or moved (value, acked at, found at), e.g. {where}")
        if self.duplicates:
            out.append(f"duplicated: {self.duplicates[:3]}")
        unordered = [p for p, seq in self.order.items() if seq != sorted(seq)]
        if unordered:
            out.append(f"out of send order: partitions {unordered}")
        if load.failed:
            out.append(f"delivery failures: {load.failed[:3]}")
        if group and len(load._threads) > 1 and not set(load.delivered) <= load.group_seen:
            out.append(f"the group never consumed {len(set(load.delivered) - load.group_seen)}")
        if load.client_errors:
            out.append(f"client errors: {load.client_errors[:3]}")
        if len(load.delivered) < min_delivered:
            out.append(f"only {len(load.delivered)} records delivered: the load did not run")
        return out

    def summary(self):
        load = self.load
        lost = len(self.lost())
        unknown = sum(1 for _, offset in load.delivered.values() if offset is None)
        return (f"{len(load.sent)} sent, {len(load.delivered)} delivered ({unknown} acked without "
                f"an offset), {len(self.in_log)} in the log, lost {lost}, duplicated {len(self.duplicates)}, delivery failures "
                f"{len(load.failed)}, group consumed "
                f"{len(load.group_seen & set(load.delivered))}/{len(load.delivered)}, "
                f"non-retriable client errors {len(load.client_errors)}")
