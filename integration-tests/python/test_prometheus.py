"""Metrics as an operator reads them: a real Prometheus (Debian's `prometheus`) scrapes a
controller and three brokers with the scrape config shipped in `docker/prometheus/`, and the
queries a Kafka dashboard or alert runs answer through Prometheus' HTTP API:

* the request-latency histogram of Produce (`histogram_quantile` over its buckets);
* bytes and records in per topic, matching what was produced;
* the lag of a consumer group that stopped consuming, which grows as records keep coming;
* the active controller count, and under-replicated partitions once a broker is killed.

And without Prometheus: `--metrics-enabled false` stops per-request recording but keeps the
gauges read at scrape time.
"""

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import ROOT, Broker, free_port, wait_until

TOPIC = "metrics-orders"
GROUP = "metrics-lag-group"
VALUE = b"v" * 200


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus is not installed: scripts/setup.sh installs Debian's package")
    return path


class Prometheus:
    """A real Prometheus scraping `targets` every second, with the repo's scrape config
    (its job names and relabelling) rewritten for these ports."""

    def __init__(self, root: Path, brokers, controllers):
        self.root = root
        self.port = free_port()
        template = (ROOT / "docker" / "prometheus" / "prometheus.yml").read_text()
        config = (template
                  .replace("scrape_interval: 15s", "scrape_interval: 1s")
                  .replace("['broker-1:9644', 'broker-2:9644', 'broker-3:9644']",
                           json.dumps(brokers))
                  .replace("['controller-1:9093', 'controller-2:9093', 'controller-3:9093']",
                           json.dumps(controllers)))
        assert json.dumps(brokers) in config, "the shipped scrape config changed shape"
        self.config = root / "prometheus.yml"
        self.config.write_text(config)
        self.proc = None

    def start(self):
        log = open(self.root / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [prometheus_binary(), f"--config.file={self.config}",
             f"--storage.tsdb.path={self.root / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self._api("/-/ready", raw=True), what="prometheus ready")
        return self

    def _api(self, path, raw=False):
        assert self.proc.poll() is None, f"prometheus exited; see {self.root / 'prometheus.log'}"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            body = r.read()
        return body if raw else json.loads(body)

    def query(self, promql):
        """The instant vector `promql` gives now: [(labels, value)]."""
        out = self._api("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert out["status"] == "success", out
        return [(r["metric"], float(r["value"][1])) for r in out["data"]["result"]]

    def value(self, promql):
        """The single value of `promql`, or None while it has no series."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return result[0][1] if result else None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.fixture
def observed(tmp_path, cluster):
    """The `cluster` fixture (a controller, three brokers) with a Prometheus scraping it."""
    prom = Prometheus(tmp_path,
                      [f"127.0.0.1:{b.http_port}" for b in cluster.brokers],
                      [f"127.0.0.1:{cluster.controller_port}"]).start()
    yield cluster, prom
    prom.stop()


def produce(bootstrap, n, start=0):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(start, start + n):
        p.produce(TOPIC, key=f"k{i}".encode(), value=VALUE)
    assert p.flush(30) == 0


def test_prometheus_reads_latency_bytes_in_lag_and_replication_health(observed):
    cluster, prom = observed
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=3)])[TOPIC].result(30)

    # Every target is scraped and up: three brokers and the controller.
    wait_until(lambda: prom.value("sum(up)") == 4, what="4 targets up")
    jobs = {m["job"] for m, _ in prom.query("up")}
    assert jobs == {"strom-broker", "strom-controller"}, jobs

    produce(cluster.bootstrap, 300)

    # The request-latency histogram: Produce's p99 is a number of milliseconds, from buckets
    # with every request in the +Inf one.
    wait_until(lambda: (prom.value(
        'sum(kafka_network_requestmetrics_requests_total{request="Produce"})') or 0) >= 1,
        what="Produce requests counted")
    p99 = prom.value('histogram_quantile(0.99, sum by (le) '
                     '(kafka_network_requestmetrics_totaltimems_bucket{request="Produce"}))')
    assert p99 is not None and 0 < p99 <= 30_000, p99
    # Each comparison is one query, so both sides come from the same scrapes: two queries
    # can straddle a scrape that counts another request.
    assert prom.value('sum(kafka_network_requestmetrics_totaltimems_count{request="Produce"})') >= 1
    assert prom.value('sum(kafka_network_requestmetrics_totaltimems_count{request="Produce"})'
                      ' - sum(kafka_network_requestmetrics_totaltimems_bucket'
                      '{request="Produce",le="+Inf"})') == 0
    # acks=all waits for followers: that wait is recorded as remote time.
    assert prom.value('sum(kafka_network_requestmetrics_remotetimems_count{request="Produce"})'
                      ' - sum(kafka_network_requestmetrics_totaltimems_count'
                      '{request="Produce"})') == 0
    assert prom.value('sum(kafka_network_requestmetrics_remotetimems_sum'
                      '{request="Produce"})') > 0

    # Bytes and records in for the topic, across its leaders.
    wait_until(lambda: prom.value(
        f'sum(kafka_server_brokertopicmetrics_messagesin_total{{topic="{TOPIC}"}})') == 300,
        what="300 records in")
    bytes_in = prom.value(f'sum(kafka_server_brokertopicmetrics_bytesin_total{{topic="{TOPIC}"}})')
    assert bytes_in >= 300 * len(VALUE), bytes_in

    # A group consumes 100 records, commits, and stops: its lag is what it left behind...
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": GROUP,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([TOPIC])
    taken = []
    deadline = time.monotonic() + 60
    while len(taken) < 100 and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            taken.append(m)
    assert len(taken) == 100
    last = {}
    for m in taken:
        last[m.partition()] = m.offset() + 1
    # Every partition gets a committed offset (0 where none was read), so every partition
    # has a lag: 300 produced less 100 consumed.
    c.commit(offsets=[TopicPartition(TOPIC, p, last.get(p, 0)) for p in range(3)],
             asynchronous=False)
    c.close()
    lag = f'sum(kafka_consumergroup_lag{{consumergroup="{GROUP}",topic="{TOPIC}"}})'
    wait_until(lambda: prom.value(lag) == 200, what="lag of 200")
    # ... and it grows while producers go on.
    produce(cluster.bootstrap, 150, start=300)
    wait_until(lambda: prom.value(lag) == 350, what="lag grown to 350")
    committed = prom.value(
        f'sum(kafka_consumergroup_current_offset{{consumergroup="{GROUP}",topic="{TOPIC}"}})')
    assert committed == 100, committed

    # Exactly one active controller; every partition has a leader.
    assert prom.value("sum(kafka_controller_kafkacontroller_activecontrollercount)") == 1
    assert prom.value("sum(kafka_controller_kafkacontroller_offlinepartitionscount)") == 0
    assert prom.value("sum(kafka_server_replicamanager_underreplicatedpartitions)") == 0

    # Memory, from jemalloc (the whole process's malloc, RocksDB's included): every broker
    # reports what is allocated, and the resident pages hold at least that.
    allocated = 'strom_allocator_bytes{job="strom-broker",stat="allocated"}'
    resident = 'strom_allocator_bytes{job="strom-broker",stat="resident"}'
    assert prom.value(f"count({allocated} > 1e6)") == 3
    assert prom.value(f"count({resident} >= ignoring(stat) {allocated})") == 3
    # Every broker counts the writes that waited for memtable room, and RocksDB's stops and
    # delays of writes.
    for name in (
        "strom.memtable-waits",
        "strom.memtable-wait-micros",
        "strom.write-stall-stops",
        "strom.write-stall-delays",
    ):
        waits = f'strom_rocksdb_property{{job="strom-broker",property="{name}"}}'
        assert prom.value(f"count({waits} >= 0)") == 3, name

    # The shipped Grafana dashboard: every query evaluates, and every metric it reads is
    # one the cluster exposes (bar those that appear only once something happens).
    dashboard = json.loads((ROOT / "docker" / "grafana" / "strom-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 25, exprs
    scraped = set(prom._api("/api/v1/label/__name__/values")["data"])
    only_when_it_happens = {"kafka_network_requestmetrics_errors_total",
                            "strom_quota_throttled_total"}
    for expr in exprs:
        prom.query(expr.replace("$__rate_interval", "1m"))
        for name in re.findall(r"\b((?:kafka|strom)_[a-z0-9_]+)", expr):
            assert name in scraped or name in only_when_it_happens, (name, expr)

    # A broker dies: the survivors report under-replicated partitions.
    cluster.brokers[2].kill9()
    wait_until(lambda: (prom.value(
        "sum(kafka_server_replicamanager_underreplicatedpartitions)") or 0) >= 3,
        timeout=60, what="under-replicated partitions after a broker died")
    assert prom.value("sum(up)") == 3
    assert (prom.value("sum(kafka_server_replicamanager_isrshrinks_total)") or 0) >= 3


def test_metrics_enabled_false_keeps_gauges_but_records_no_requests(tmp_path):
    b = Broker(tmp_path / "data", extra_args=["--metrics-enabled", "false"]).start()
    try:
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
        p.produce("quiet-topic", value=b"x")
        assert p.flush(30) == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            text = r.read().decode()
        assert "kafka_network_requestmetrics_requests_total{" not in text, text
        assert "kafka_server_brokertopicmetrics_bytesin_total{" not in text, text
        assert 'kafka_log_log_logendoffset{topic="quiet-topic",partition="0"} 1' in text, text
        assert "kafka_server_replicamanager_leadercount " in text, text
        assert text.rstrip().endswith("# EOF"), text[-200:]
    finally:
        b.stop()


def test_lag_covers_partitions_the_coordinator_holds_no_replica_of(cluster):
    """One partition on each broker (replication factor 1): whichever broker coordinates the
    group holds only one of them, and asks the other two leaders for their end offsets."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("remote-lag", num_partitions=3,
                                  replica_assignment=[[1], [2], [3]])])["remote-lag"].result(30)
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for partition in range(3):
        for i in range(5):
            p.produce("remote-lag", value=f"v{i}".encode(), partition=partition)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "remote-lag-group"})
    c.commit(offsets=[TopicPartition("remote-lag", i, 0) for i in range(3)], asynchronous=False)
    c.close()

    def coordinator():
        for b in cluster.brokers:
            try:
                return b, b.http("/v1/groups/remote-lag-group")
            except urllib.error.HTTPError:
                continue
        return None

    b, _ = wait_until(coordinator, what="the group's coordinator")
    wait_until(lambda: [o["lag"] for o in b.http("/v1/groups/remote-lag-group")["offsets"]]
               == [5, 5, 5], timeout=30, what="lag 5 on all three partitions")
    with urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    for partition in range(3):
        line = (f'kafka_consumergroup_lag{{consumergroup="remote-lag-group",topic="remote-lag",'
                f'partition="{partition}"}} 5')
        assert line in text, text
