"""Kafka Connect's REST API on strom-connect, driven with curl as a Kafka Connect user would.

Two distributed workers share a group; the test creates, reads, updates, patches, pauses,
resumes, stops, restarts and deletes connectors through every endpoint, including the
404/409/400 error bodies and per-field validation errors, and checks that data really flows:
FileStreamSource -> topic -> FileStreamSink. Writes sent to the follower reach the leader.
A sink with errors.tolerance=all sends a record its converter cannot parse to the dead letter
queue, with the context headers, while the rest flows.
"""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from conftest import broker_binary, free_port, wait_until


def connect_binary() -> str:
    explicit = os.environ.get("STROM_CONNECT_BIN")
    if explicit:
        return explicit
    path = Path(broker_binary()).parent / "strom-connect"
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `cargo build --bins` or set STROM_CONNECT_BIN")
    return str(path)


class Worker:
    def __init__(self, root: Path, name: str, bootstrap: str, group="connect-cluster"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.props = root / f"{name}.properties"
        self.props.write_text(
            "\n".join(
                [
                    f"bootstrap.servers={bootstrap}",
                    f"group.id={group}",
                    f"listeners=http://127.0.0.1:{self.port}",
                    "config.storage.topic=connect-configs",
                    "offset.storage.topic=connect-offsets",
                    "status.storage.topic=connect-status",
                    "config.storage.replication.factor=1",
                    "offset.storage.replication.factor=1",
                    "status.storage.replication.factor=1",
                    "key.converter=org.apache.kafka.connect.storage.StringConverter",
                    "value.converter=org.apache.kafka.connect.storage.StringConverter",
                    "offset.flush.interval.ms=500",
                    "session.timeout.ms=6000",
                    "heartbeat.interval.ms=1000",
                    "task.restart.backoff.ms=500",
                ]
            )
            + "\n"
        )
        self.log = root / f"{name}.log"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [connect_binary(), "distributed", str(self.props)],
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: self._ready(), timeout=60, what=f"worker {self.url} (log {self.log})")
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited; log:\n{self.log.read_text()[-3000:]}")
        code, _ = curl("GET", f"{self.url}/")
        return code == 200

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def curl(method, url, body=None):
    """(status, parsed JSON body or None) from the curl command line. A 409 for a rebalance
    in progress is retried, as a Kafka Connect user's script would."""
    deadline = time.monotonic() + 30
    while True:
        code, out = _curl(method, url, body)
        if code == 409 and "rebalance" in (out or {}).get("message", "") and time.monotonic() < deadline:
            time.sleep(0.5)
            continue
        return code, out


def _curl(method, url, body=None):
    args = ["curl", "-s", "-X", method, "-w", "\n%{http_code}", url]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60).stdout
    text, _, code = out.rpartition("\n")
    return int(code), (json.loads(text) if text.strip() else None)


@pytest.fixture(scope="module")
def workers(broker, tmp_path_factory):
    root = tmp_path_factory.mktemp("connect")
    a = Worker(root, "worker-a", broker.bootstrap).start()
    b = Worker(root, "worker-b", broker.bootstrap).start()
    yield root, a, b
    a.stop()
    b.stop()


def wait_state(url, name, state, tasks=None, timeout=60):
    def check():
        code, s = curl("GET", f"{url}/connectors/{name}/status")
        if code != 200 or s["connector"]["state"] != state:
            return None
        if tasks is not None and [t["state"] for t in s["tasks"]] != tasks:
            return None
        return s

    return wait_until(check, timeout=timeout, what=f"{name} to be {state} with tasks {tasks}")


def consume(bootstrap, topic, n, timeout=60):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{topic}-{time.time()}",
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            out.append(m)
    c.close()
    return out


def test_root_and_plugins(workers):
    _, a, _ = workers
    code, root = curl("GET", f"{a.url}/")
    assert code == 200 and "version" in root and root["kafka_cluster_id"]
    code, plugins = curl("GET", f"{a.url}/connector-plugins")
    assert code == 200
    classes = {p["class"]: p["type"] for p in plugins}
    assert classes["org.apache.kafka.connect.file.FileStreamSourceConnector"] == "source"
    assert classes["org.apache.kafka.connect.file.FileStreamSinkConnector"] == "sink"
    code, everything = curl("GET", f"{a.url}/connector-plugins?connectorsOnly=false")
    kinds = {p["type"] for p in everything}
    assert {"transformation", "predicate", "converter"} <= kinds


def test_validation_names_each_bad_field(workers):
    _, a, _ = workers
    code, v = curl("PUT", f"{a.url}/connector-plugins/FileStreamSource/config/validate",
                   {"connector.class": "FileStreamSource", "name": "v", "tasks.max": "zero",
                    "batch.size": "0", "errors.tolerance": "some"})
    assert code == 200
    errors = {c["value"]["name"]: c["value"]["errors"] for c in v["configs"] if c["value"]["errors"]}
    assert v["error_count"] == len(sum(errors.values(), []))
    assert set(errors) == {"tasks.max", "topic", "batch.size", "errors.tolerance"}, errors
    assert "Missing required configuration \"topic\"" in errors["topic"][0]
    assert "at least 1" in errors["batch.size"][0]
    assert "none, all" in errors["errors.tolerance"][0]
    good = {"connector.class": "FileStreamSource", "name": "v", "topic": "t"}
    code, v = curl("PUT", f"{a.url}/connector-plugins/FileStreamSourceConnector/config/validate", good)
    assert code == 200 and v["error_count"] == 0
    code, e = curl("PUT", f"{a.url}/connector-plugins/NoSuchConnector/config/validate", good)
    assert code == 400 and e["error_code"] == 400


def test_connector_lifecycle_through_every_endpoint(workers, broker):
    root, a, b = workers
    src_file = root / "input.txt"
    src_file.write_text("".join(f"line-{i}\n" for i in range(100)))
    sink_file = root / "output.txt"
    source = {"connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
              "tasks.max": "1", "file": str(src_file), "topic": "lines",
              # KIP-158: the worker creates the topic.
              "topic.creation.default.replication.factor": "1", "topic.creation.default.partitions": "1"}

    # Errors first: unknown connector, bad config, missing name.
    code, e = curl("GET", f"{a.url}/connectors/nope")
    assert (code, e) == (404, {"error_code": 404, "message": "Connector nope not found"})
    code, e = curl("POST", f"{a.url}/connectors", {"name": "bad", "config": {"connector.class": "FileStreamSource"}})
    assert code == 400 and e["error_code"] == 400
    assert "contains the following 1 error(s)" in e["message"] and "\"topic\"" in e["message"]
    code, e = curl("POST", f"{a.url}/connectors", {"config": source})
    assert code == 400
    code, e = curl("GET", f"{a.url}/no/such/path")
    assert code == 404 and e["error_code"] == 404

    # Create through the follower: the write reaches the leader either way.
    code, created = curl("POST", f"{b.url}/connectors", {"name": "file-source", "config": source})
    assert code == 201, created
    assert created["name"] == "file-source" and created["type"] == "source"
    assert created["config"]["file"] == str(src_file)
    code, e = curl("POST", f"{a.url}/connectors", {"name": "file-source", "config": source})
    assert (code, e["error_code"]) == (409, 409) and "already exists" in e["message"]

    status = wait_state(a.url, "file-source", "RUNNING", ["RUNNING"])
    assert status["type"] == "source"
    assert status["tasks"][0]["worker_id"] in (f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}")
    assert len(consume(broker.bootstrap, "lines", 100)) == 100

    code, names = curl("GET", f"{b.url}/connectors")
    assert code == 200 and names == ["file-source"]
    code, expanded = curl("GET", f"{a.url}/connectors?expand=status&expand=info")
    assert expanded["file-source"]["status"]["connector"]["state"] == "RUNNING"
    assert expanded["file-source"]["info"]["config"]["topic"] == "lines"
    code, info = curl("GET", f"{a.url}/connectors/file-source")
    assert code == 200 and info["tasks"] == [{"connector": "file-source", "task": 0}]
    code, config = curl("GET", f"{a.url}/connectors/file-source/config")
    assert code == 200 and config["topic"] == "lines" and config["name"] == "file-source"
    code, tasks = curl("GET", f"{a.url}/connectors/file-source/tasks")
    assert code == 200 and tasks[0]["id"] == {"connector": "file-source", "task": 0}
    assert tasks[0]["config"]["file"] == str(src_file)
    code, ts = curl("GET", f"{a.url}/connectors/file-source/tasks/0/status")
    assert code == 200 and ts["id"] == 0 and ts["state"] == "RUNNING"
    code, e = curl("GET", f"{a.url}/connectors/file-source/tasks/5/status")
    assert code == 404 and e["error_code"] == 404
    code, topics = curl("GET", f"{a.url}/connectors/file-source/topics")
    assert code == 200 and topics == {"file-source": {"topics": ["lines"]}}

    # Offsets: the position after the last line, once flushed.
    expected_end = src_file.stat().st_size

    def stored():
        c, o = curl("GET", f"{a.url}/connectors/file-source/offsets")
        return c == 200 and o["offsets"] and o["offsets"][0]["offset"]["position"] == expected_end and o

    o = wait_until(stored, timeout=30, what="the source offset")
    assert o["offsets"][0]["partition"] == {"filename": str(src_file)}
    code, e = curl("PATCH", f"{a.url}/connectors/file-source/offsets", {"offsets": []})
    assert code == 400 and "STOPPED" in e["message"]

    # Pause, resume, stop (KIP-875), move the offset back, resume: the tail is read again.
    code, _ = curl("PUT", f"{b.url}/connectors/file-source/pause")
    assert code == 202
    wait_state(a.url, "file-source", "PAUSED", ["PAUSED"])
    code, _ = curl("PUT", f"{a.url}/connectors/file-source/resume")
    assert code == 202
    wait_state(a.url, "file-source", "RUNNING", ["RUNNING"])
    code, _ = curl("PUT", f"{a.url}/connectors/file-source/stop")
    assert code == 202
    wait_state(a.url, "file-source", "STOPPED", [])
    code, info = curl("GET", f"{a.url}/connectors/file-source")
    assert info["tasks"] == []
    ninety = len("".join(f"line-{i}\n" for i in range(90)))
    code, m = curl("PATCH", f"{b.url}/connectors/file-source/offsets",
                   {"offsets": [{"partition": {"filename": str(src_file)}, "offset": {"position": ninety}}]})
    assert code == 200 and "altered successfully" in m["message"], m
    code, o = curl("GET", f"{a.url}/connectors/file-source/offsets")
    assert o["offsets"][0]["offset"] == {"position": ninety}
    code, _ = curl("PUT", f"{a.url}/connectors/file-source/resume")
    assert code == 202
    wait_state(a.url, "file-source", "RUNNING", ["RUNNING"])
    values = [m.value().decode() for m in consume(broker.bootstrap, "lines", 110)]
    assert values[100:] == [f"line-{i}" for i in range(90, 100)]

    # Update the config with PUT (200 for an existing one), then PATCH a key.
    newer = dict(source, **{"batch.size": "10"})
    code, updated = curl("PUT", f"{b.url}/connectors/file-source/config", newer)
    assert code == 200 and updated["config"]["batch.size"] == "10"
    code, e = curl("PUT", f"{a.url}/connectors/file-source/config", dict(newer, name="other"))
    assert code == 400 and "doesn't match" in e["message"]
    code, patched = curl("PATCH", f"{a.url}/connectors/file-source/config", {"batch.size": "20", "tasks.max": None})
    assert code == 200 and patched["config"]["batch.size"] == "20" and "tasks.max" not in patched["config"]
    wait_state(a.url, "file-source", "RUNNING", ["RUNNING"])

    # Restarts.
    code, _ = curl("POST", f"{a.url}/connectors/file-source/restart")
    assert code == 204
    code, s = curl("POST", f"{b.url}/connectors/file-source/restart?includeTasks=true&onlyFailed=false")
    assert code == 202 and s["name"] == "file-source"
    code, _ = curl("POST", f"{a.url}/connectors/file-source/tasks/0/restart")
    assert code == 204
    code, e = curl("POST", f"{a.url}/connectors/file-source/tasks/9/restart")
    assert code == 404
    wait_state(a.url, "file-source", "RUNNING", ["RUNNING"])

    # A sink created with PUT (201 for a new one) writes the topic to a file.
    sink = {"connector.class": "FileStreamSink", "tasks.max": "1", "file": str(sink_file), "topics": "lines"}
    code, created = curl("PUT", f"{a.url}/connectors/file-sink/config", sink)
    assert code == 201 and created["type"] == "sink"
    wait_until(lambda: sink_file.exists() and len(sink_file.read_text().splitlines()) >= 110,
               timeout=60, what="the sink file")
    assert sink_file.read_text().splitlines()[:3] == ["line-0", "line-1", "line-2"]
    code, o = wait_until(lambda: (lambda r: r if r[1]["offsets"] else None)(
        curl("GET", f"{a.url}/connectors/file-sink/offsets")), timeout=30, what="sink offsets")
    assert o["offsets"][0]["partition"]["kafka_topic"] == "lines"
    assert o["offsets"][0]["offset"]["kafka_offset"] > 0

    # Delete both: 204, then 404.
    for name in ["file-source", "file-sink"]:
        code, _ = curl("DELETE", f"{b.url}/connectors/{name}")
        assert code == 204
        code, e = curl("GET", f"{a.url}/connectors/{name}")
        assert code == 404
    code, names = curl("GET", f"{a.url}/connectors")
    assert names == []
    # Writes went to both workers: the follower's were forwarded to the leader.
    logs = a.log.read_text() + b.log.read_text()
    assert "forwarding a write to the leader" in logs


def test_dead_letter_queue_takes_what_the_converter_cannot_parse(workers, broker):
    root, a, _ = workers
    p = Producer({"bootstrap.servers": broker.bootstrap})
    good = {"schema": {"type": "string", "optional": False}, "payload": "ok"}
    for i in range(10):
        value = b"{not json" if i == 4 else json.dumps(dict(good, payload=f"ok-{i}")).encode()
        p.produce("json-in", value=value, key=f"k{i}".encode())
    p.flush()
    out = root / "dlq-sink.txt"
    config = {"connector.class": "FileStreamSink", "topics": "json-in", "file": str(out),
              "value.converter": "org.apache.kafka.connect.json.JsonConverter",
              "errors.tolerance": "all", "errors.log.enable": "true",
              "errors.deadletterqueue.topic.name": "json-dlq",
              "errors.deadletterqueue.context.headers.enable": "true"}
    code, _ = curl("POST", f"{a.url}/connectors", {"name": "dlq-sink", "config": config})
    assert code == 201
    wait_until(lambda: out.exists() and len(out.read_text().splitlines()) == 9, timeout=60, what="9 good records")
    assert out.read_text().splitlines() == [f"ok-{i}" for i in range(10) if i != 4]
    [dead] = consume(broker.bootstrap, "json-dlq", 1)
    assert dead.value() == b"{not json" and dead.key() == b"k4"
    headers = {k: v.decode() for k, v in dead.headers()}
    assert headers["__connect.errors.topic"] == "json-in"
    assert headers["__connect.errors.offset"] == "4"
    assert headers["__connect.errors.stage"] == "VALUE_CONVERTER"
    assert headers["__connect.errors.connector.name"] == "dlq-sink"
    s = wait_state(a.url, "dlq-sink", "RUNNING", ["RUNNING"])
    assert s["tasks"][0]["state"] == "RUNNING"

    # Without tolerance the same record fails the task, which is restarted with backoff
    # (and fails again), its status FAILED with the converter's error.
    strict = dict(config, **{"errors.tolerance": "none", "file": str(root / "strict.txt")})
    code, _ = curl("POST", f"{a.url}/connectors", {"name": "strict-sink", "config": strict})
    assert code == 201

    def failed():
        c, s = curl("GET", f"{a.url}/connectors/strict-sink/status")
        return c == 200 and s["tasks"] and s["tasks"][0]["state"] == "FAILED" and s

    s = wait_until(failed, timeout=60, what="the strict sink to fail")
    assert "schemas.enable" in s["tasks"][0]["trace"] or "serialization" in s["tasks"][0]["trace"]
    def metrics():
        return "".join(
            subprocess.run(["curl", "-s", f"{w.url}/metrics"], capture_output=True,
                           text=True).stdout
            for w in workers[1:]
        )

    assert 'kafka_connect_task_error_metrics_total_record_errors_total{connector="dlq-sink",task="0"} 1' \
        in metrics(), metrics()
    # The failed task is restarted (with backoff), and each restart is counted.
    wait_until(lambda: re.search(r'^strom_connect_task_restarts_total\{connector="strict-sink"\} [1-9]',
                                 metrics(), re.M), timeout=60, what="a counted restart")
    for name in ["dlq-sink", "strict-sink"]:
        assert curl("DELETE", f"{a.url}/connectors/{name}")[0] == 204


def test_strom_connect_cli(workers):
    """`strom connect ...` drives the same API from the command line."""
    root, a, b = workers
    strom = str(Path(broker_binary()).parent / "strom")

    def run(*args, ok=True):
        r = subprocess.run([strom, "connect", "--url", a.url, *args], capture_output=True, text=True, timeout=60)
        assert (r.returncode == 0) == ok, (args, r.stdout, r.stderr)
        return r.stdout + r.stderr

    data = root / "cli-input.txt"
    data.write_text("x\ny\n")
    props = root / "cli-source.properties"
    props.write_text(
        "# a connector as Kafka Connect's standalone files write it\n"
        "name=cli-source\nconnector.class=FileStreamSource\n"
        f"file={data}\ntopic=cli-lines\n"
        "topic.creation.default.replication.factor=1\ntopic.creation.default.partitions=1\n"
    )
    assert "Created connector cli-source." in run("create", str(props))
    assert "409" in run("create", str(props), ok=False)
    wait_state(b.url, "cli-source", "RUNNING", ["RUNNING"])
    listing = run("list")
    assert "cli-source\tsource\tRUNNING\t0:RUNNING" in listing, listing
    assert "task 0: RUNNING" in run("status", "cli-source")
    assert json.loads(run("config", "cli-source"))["topic"] == "cli-lines"
    assert "FileStreamSourceConnector" in run("plugins")
    run("pause", "cli-source")
    wait_state(a.url, "cli-source", "PAUSED", ["PAUSED"])
    run("resume", "cli-source")
    wait_state(a.url, "cli-source", "RUNNING", ["RUNNING"])
    assert "Restarting cli-source task 0." in run("restart", "cli-source", "--task", "0")
    props.write_text(props.read_text() + "batch.size=5\n")
    assert "Updated connector cli-source." in run("apply", str(props))
    assert json.loads(run("config", "cli-source"))["batch.size"] == "5"
    assert "Deleted connector cli-source." in run("delete", "cli-source")
    assert "404: Connector cli-source not found" in run("status", "cli-source", ok=False)


def test_http_sink_retries_batches_and_dead_letters_a_poison_record(workers, broker):
    """The HTTP sink POSTs JSON batches; the server fails the first requests (retried) and
    refuses any body holding the poison record, which ends in the DLQ while the rest flows."""
    import http.server
    import threading

    received, attempts = [], [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            attempts[0] += 1
            if attempts[0] <= 2:
                code = 503
            elif "poison" in body:
                code = 400
            else:
                code = 200
                received.extend(json.loads(body))
            assert self.headers["X-Source"] == "strom"
            self.send_response(code)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _, a, _ = workers
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        p.produce("http-in", key=f"k{i}".encode(),
                  value=json.dumps({"id": i, "poison": True} if i == 7 else {"id": i}).encode())
    p.flush()
    config = {"connector.class": "io.confluent.connect.http.HttpSinkConnector", "topics": "http-in",
              "http.api.url": f"http://127.0.0.1:{server.server_port}/events",
              "headers": "X-Source:strom", "request.body.format": "json",
              "batch.max.size": "5", "batch.prefix": "[", "batch.suffix": "]",
              "retry.on.status.codes": "500-", "max.retries": "5", "retry.backoff.ms": "100",
              "behavior.on.error": "log", "errors.tolerance": "all",
              "errors.deadletterqueue.topic.name": "http-dlq",
              "errors.deadletterqueue.context.headers.enable": "true",
              "value.converter": "org.apache.kafka.connect.json.JsonConverter",
              "value.converter.schemas.enable": "false"}
    code, _ = curl("POST", f"{a.url}/connectors", {"name": "http-sink", "config": config})
    assert code == 201
    wait_until(lambda: len(received) >= 19, timeout=60, what="19 records at the HTTP server")
    assert sorted(r["id"] for r in received) == [i for i in range(20) if i != 7]
    [dead] = consume(broker.bootstrap, "http-dlq", 1)
    assert dead.key() == b"k7"
    headers = {k: v.decode() for k, v in dead.headers()}
    assert headers["__connect.errors.stage"] == "TASK_PUT"
    assert "HTTP 400" in headers["__connect.errors.exception.message"]
    wait_state(a.url, "http-sink", "RUNNING", ["RUNNING"])
    assert curl("DELETE", f"{a.url}/connectors/http-sink")[0] == 204
    server.shutdown()


def test_the_brokers_console_shows_the_workers_and_connectors(workers, broker, tmp_path):
    """The broker's console (/ui/connect) reads the cluster from its group (workers, REST
    URLs, the leader) and from its config and status topics (connectors, tasks, states)."""
    import urllib.request
    root, a, b = workers
    src = tmp_path / "console-input.txt"
    src.write_text("one\ntwo\n")
    config = {"connector.class": "FileStreamSource", "tasks.max": "1", "file": str(src),
              "topic": "console-lines", "topic.creation.default.replication.factor": "1",
              "topic.creation.default.partitions": "1"}
    code, _ = curl("POST", f"{a.url}/connectors", {"name": "console-source", "config": config})
    assert code == 201
    status = wait_state(a.url, "console-source", "RUNNING", ["RUNNING"])
    task_worker = status["tasks"][0]["worker_id"]

    def page():
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/ui/connect",
                                    timeout=10) as r:
            return re.sub(r"\s+", " ", r.read().decode())

    def shows(*cells):
        html = page()
        return all(c in html for c in cells) and html

    html = wait_until(lambda: shows(
        "<h2>Connect cluster connect-cluster</h2>", "<dd>connect-status</dd>",
        f'<a href="http://127.0.0.1:{a.port}/connectors?expand=status">',
        f'<a href="http://127.0.0.1:{b.port}/connectors?expand=status">',
        "<th scope=\"row\">console-source</th><td>FileStreamSource</td><td class=\"ok\">RUNNING</td>",
        f"0: RUNNING on {task_worker}"), timeout=30, what="the connector on the console")
    assert html.count("<td>leader</td>") == 1, html
    # A pause shows as soon as the workers report it.
    assert curl("PUT", f"{a.url}/connectors/console-source/pause")[0] == 202
    wait_until(lambda: shows("<th scope=\"row\">console-source</th><td>FileStreamSource</td><td>PAUSED</td>"),
               timeout=30, what="the paused connector on the console")
    assert curl("DELETE", f"{a.url}/connectors/console-source")[0] == 204
    wait_until(lambda: "console-source" not in page(), timeout=30,
               what="the deleted connector to leave the console")
