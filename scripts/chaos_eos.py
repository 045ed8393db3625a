"""An exactly-once consume-transform-produce pipeline for the chaos run, with confluent-kafka
(librdkafka), written the way confluent-kafka documents it (examples/eos_transactions.py, and
librdkafka's examples/transactions.c for the error handling); TransformLoop in
integration-tests/python/test_transactions.py is the same loop as a bounded test.

* A group member reads INPUT (read_committed, enable.auto.commit false) and sends each value,
  upper-cased, to the same partition of OUTPUT inside a transaction; every BATCH records or
  every COMMIT_INTERVAL seconds the consumer's positions go into the transaction
  (send_offsets_to_transaction) and it commits.
* Retriable errors repeat the call; an abortable one aborts and rewinds the consumer to the
  group's committed offsets; a fatal one replaces the producer (a new one with the same
  transactional.id: init_transactions fences the old one and aborts its transaction) and
  rewinds. An error that is neither aborts, and replaces the producer if the abort fails.
  A call still running HANG_AFTER seconds (far past its own timeout) counts as fatal.
* Partitions revoked or lost in a rebalance abort the open transaction: whoever gets them next
  starts from the committed offsets.
* SIGTERM: the open transaction is committed (if that fails it is aborted, or after a fatal
  error left to the coordinator's timeout), the consumer leaves the group, the counters go to
  STATS_FILE as JSON, and the process exits 0. Everything committed before stands. SIGUSR1
  dumps the Python stacks to stderr.

Several run in one group with distinct transactional ids, so faults move partitions between
them too; the chaos run also kills one with SIGKILL mid-transaction and restarts it with the
same transactional id. Events go to stderr, one line each.
    chaos_eos.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID STATS_FILE
"""

import faulthandler
import json
import signal
import sys
import threading
import time
from collections import Counter

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer

BATCH = 200  # records per transaction at most
COMMIT_INTERVAL = 0.5  # seconds a transaction stays open at most while records arrive
CALL_TIMEOUT = 10  # seconds, for each transactional API call
RETRY_FOR = 60  # seconds a call is retried before it counts as failed
# Shorter than the default 60 s so a transaction stranded by a fault is aborted by the
# coordinator well within the chaos run's drain; far longer than a healthy one lasts.
TRANSACTION_TIMEOUT_MS = 20000
# A call still running this long (each has a timeout of CALL_TIMEOUT) is stuck: librdkafka
# 2.16's send_offsets_to_transaction can wait forever for a group coordinator that left the
# metadata and came back (confluentinc/librdkafka#5511, #5456). The producer is then replaced.
HANG_AFTER = 30

bootstrap, source, sink, group, txn_id, stats_file = sys.argv[1:7]


def log(what):
    """One line to stderr, stamped with UTC wall-clock time like the brokers' logs."""
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
    print(f"{stamp} {txn_id}: {what}", file=sys.stderr, flush=True)


class Hung(Exception):
    """A client call that did not return long after its own timeout."""


def bounded(what, call):
    """call() on a thread of its own, waited for at most HANG_AFTER seconds: its result, its
    exception, or Hung (the thread is left behind, stuck in librdkafka)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            outcome["error"] = e
    t = threading.Thread(target=run, name=what, daemon=True)
    t.start()
    t.join(HANG_AFTER)
    if t.is_alive():
        raise Hung(f"{what} still running after {HANG_AFTER}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class Pipeline:
    def __init__(self):
        self.running = True
        self.closing = False
        self.stats = Counter()
        self.in_txn = False
        self.txn_started = 0.0
        self.pending = 0  # records produced in the open transaction
        self.consumer = None
        self.producer = None

    def start(self):
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
        })
        self.producer = self._new_producer()
        self.consumer.subscribe([source], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    def stop(self, *_):
        self.running = False

    def run(self):
        while self.running:
            msg = self.consumer.poll(0.1)
            if msg is None:
                if self.in_txn and time.monotonic() - self.txn_started >= COMMIT_INTERVAL:
                    self._commit()
                continue
            if msg.error():
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                self.stats["consumer_errors"] += 1
                continue
            self.stats["consumed"] += 1
            self._process(msg)
            if self.in_txn and (self.pending >= BATCH
                                or time.monotonic() - self.txn_started >= COMMIT_INTERVAL):
                self._commit()
        log("SIGTERM: finishing the open transaction" if self.in_txn else "SIGTERM")
        if self.in_txn:
            self._commit(stopping=True)
        self.closing = True
        self.consumer.close()
        log(f"stopped: {json.dumps(dict(self.stats), sort_keys=True)}")

    def _new_producer(self):
        """A transactional producer with our id, initialised; keeps trying (a fault can make
        init_transactions fail for a while) unless we are stopping."""
        while True:
            p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                          "linger.ms": 5, "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS})
            try:
                self._retry("init_transactions", lambda: p.init_transactions(CALL_TIMEOUT))
                return p
            except (KafkaException, Hung) as e:
                self.stats["init_failed"] += 1
                self.stats["hung_calls"] += isinstance(e, Hung)
                log(f"init_transactions failed: {e.args[0]}")
                if not self.running:
                    raise
                time.sleep(0.5)

    def _retry(self, what, call, any_error=False):
        """Repeats `call` while it fails retriably (or, with any_error, at all), for at most
        RETRY_FOR seconds; raises Hung for a call stuck past HANG_AFTER."""
        deadline = time.monotonic() + RETRY_FOR
        while True:
            try:
                return bounded(what, call)
            except KafkaException as e:
                err = e.args[0]
                retriable = any_error or (isinstance(err, KafkaError) and err.retriable())
                if not retriable or time.monotonic() > deadline:
                    raise
                self.stats["retried"] += 1
                log(f"{what}: {err}; retrying")
                time.sleep(0.05)

    def _process(self, msg):
        value = msg.value().upper()
        try:
            if not self.in_txn:
                self.producer.begin_transaction()
                self.in_txn = True
                self.txn_started = time.monotonic()
            while True:
                try:
                    self.producer.produce(sink, key=msg.key(), value=value,
                                          partition=msg.partition())
                    break
                except BufferError:
                    self.producer.poll(0.1)
            self.producer.poll(0)
        except KafkaException as e:
            self._recover("produce", e)
            return
        self.pending += 1

    def _commit(self, stopping=False):
        assignment = self.consumer.assignment()
        # Positions of partitions rewound and not read since are invalid (-1001): the group
        # already has their committed offset.
        positions = [tp for tp in self.consumer.position(assignment) if tp.offset >= 0]
        if not positions:
            # The partitions are gone: their positions are not ours to commit.
            self._abort("no partitions to commit")
            return
        try:
            self._retry("send_offsets_to_transaction",
                        lambda: self.producer.send_offsets_to_transaction(
                            positions, self.consumer.consumer_group_metadata(), CALL_TIMEOUT))
            self._retry("commit_transaction",
                        lambda: self.producer.commit_transaction(CALL_TIMEOUT))
        except (KafkaException, Hung) as e:
            self._recover("commit", e, stopping=stopping)
            return
        self.stats["commits"] += 1
        self.stats["committed_records"] += self.pending
        log(f"committed {self.pending} records, offsets "
            f"{sorted((tp.partition, tp.offset) for tp in positions)}")
        self._transaction_over()

    def _recover(self, during, exc, stopping=False):
        """The transaction failed: abort it (or, for a fatal error, a failed abort, or an error
        outside a transaction, replace the producer, which aborts what it had open too) and go
        back to the committed offsets. When stopping after a fatal error, nothing more: the
        producer was fenced by a newer incarnation, which aborted the transaction, or the
        coordinator aborts it after its timeout."""
        err = exc.args[0] if isinstance(exc, KafkaException) else exc
        known = isinstance(err, KafkaError)
        fatal = isinstance(exc, Hung) or (known and err.fatal())
        abortable = known and err.txn_requires_abort()
        self.stats["hung_calls"] += isinstance(exc, Hung)
        log(f"{during} failed: {err} (fatal {fatal}, abortable {abortable})")
        if fatal and stopping:
            self.stats["fatal"] += 1
            self._transaction_over()
            return
        if fatal:
            self.stats["fatal"] += 1
            self._replace_producer()
        elif abortable or self.in_txn:
            self.stats["abortable" if abortable else "other_errors"] += 1
            self._abort(during, force=True)
        else:  # begin_transaction itself failed: the producer is in no state to go on
            self.stats["other_errors"] += 1
            self._replace_producer()
        if not stopping:
            self._rewind()

    def _abort(self, why, force=False):
        """Aborts the open transaction (with `force`, also when the producer's state is all
        that is left of it)."""
        if self.in_txn or force:
            try:
                self._retry("abort_transaction",
                            lambda: self.producer.abort_transaction(CALL_TIMEOUT))
                self.stats["aborts"] += 1
                log(f"aborted a transaction of {self.pending} records ({why})")
            except (KafkaException, Hung) as e:
                self.stats["abort_failed"] += 1
                self.stats["hung_calls"] += isinstance(e, Hung)
                log(f"abort failed: {e.args[0]}")
                self._replace_producer()
        self._transaction_over()

    def _replace_producer(self):
        old, self.producer = self.producer, None
        try:
            bounded("purge", old.purge)
        except (KafkaException, Hung):
            pass
        del old  # a call stuck in it keeps it alive (and fenced) on its thread
        self.producer = self._new_producer()
        self.stats["producers_replaced"] += 1
        log(f"replaced the producer (dropping an open transaction of {self.pending} records)")
        self._transaction_over()

    def _rewind(self):
        """Seeks every assigned partition back to the group's committed offset."""
        assignment = self.consumer.assignment()
        if not assignment:
            return

        def committed():
            got = self.consumer.committed(assignment, timeout=CALL_TIMEOUT)
            failed = [tp.error for tp in got if tp.error is not None]
            if failed:  # not "no offset": seeking to the beginning would duplicate output
                raise KafkaException(failed[0])
            return got
        offsets = []
        for tp in self._retry("committed", committed, any_error=True):
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
            self._retry("seek", lambda tp=tp: self.consumer.seek(tp), any_error=True)
            offsets.append((tp.partition, tp.offset))
        self.stats["rewinds"] += 1
        log(f"rewound to {sorted(offsets)}")

    def _transaction_over(self):
        self.in_txn = False
        self.pending = 0

    def _on_assign(self, consumer, partitions):
        self.stats["assignments"] += 1
        log(f"assigned {sorted(tp.partition for tp in partitions)}")

    def _on_revoke(self, consumer, partitions):
        log(f"revoked {sorted(tp.partition for tp in partitions)}")
        if self.in_txn and not self.closing:
            self.stats["revoked_mid_transaction"] += 1
            self._abort("partitions revoked")

    def _on_lost(self, consumer, partitions):
        log(f"lost {sorted(tp.partition for tp in partitions)}")
        if self.in_txn and not self.closing:
            self.stats["lost_mid_transaction"] += 1
            self._abort("partitions lost")


def main():
    # The chaos run sends SIGUSR1 to a pipeline that does not stop: where it is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    pipeline = Pipeline()
    signal.signal(signal.SIGTERM, pipeline.stop)
    try:
        pipeline.start()
        pipeline.run()
    finally:
        with open(stats_file, "w") as f:
            json.dump(dict(pipeline.stats), f, sort_keys=True)


if __name__ == "__main__":
    main()
