"""Fixtures that run a real strom-broker process for the real-client tests.

The binary comes from $STROM_BROKER_BIN (scripts/test.sh sets it) or the cargo target dir.
Every broker gets its own data dir and free 127.0.0.1 ports; tests may kill -9 it and start
it again on the same data dir.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def broker_binary() -> str:
    explicit = os.environ.get("STROM_BROKER_BIN")
    if explicit:
        return explicit
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / "strom-broker"
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `cargo build --bins` or set STROM_BROKER_BIN")
    return str(path)


def quorum_binary() -> str:
    explicit = os.environ.get("STROM_QUORUM_BIN")
    if explicit:
        return explicit
    path = Path(broker_binary()).parent / "strom-quorum"
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `cargo build --bins` or set STROM_QUORUM_BIN")
    return str(path)


_next_port = [20_000 + (os.getpid() % 100) * 120]


def free_port() -> int:
    """A port to listen on, below Linux's ephemeral range (32768+): a port bind(0) hands out
    can be taken again as some outgoing connection's source port before the broker binds it."""
    for _ in range(12_000):
        port = 20_000 + (_next_port[0] - 20_000) % 12_000
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def wait_until(predicate, timeout=30.0, what="condition"):
    """Polls `predicate` until it returns a truthy value or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - polling through transient failures
            last_error = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last error: {last_error!r}")


class Broker:
    def __init__(self, data_dir: Path, extra_args=(), env=None, quorum=None, node_id=1):
        """A `--dev` broker, or with `quorum` (host:port of controllers) one of a cluster."""
        self.data_dir = data_dir
        self.kafka_port = free_port()
        self.http_port = free_port()
        self.quorum_port = free_port()
        if quorum is None:
            self.mode_args = ["--dev", "--quorum-listen", f"127.0.0.1:{self.quorum_port}"]
        else:
            self.mode_args = ["--node-id", str(node_id), "--quorum", quorum]
        self.extra_args = list(extra_args)
        self.env = {**os.environ, **(env or {})}
        self.proc = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                broker_binary(),
                *self.mode_args,
                "--data-dir", str(self.data_dir),
                "--kafka-listen", self.bootstrap,
                "--http-listen", f"127.0.0.1:{self.http_port}",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        wait_until(self._ready, what=f"broker on {self.bootstrap} (log: {self.log_path})")
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"broker exited with {self.proc.returncode}; see {self.log_path}")
        with socket.create_connection(("127.0.0.1", self.kafka_port), timeout=1):
            pass
        return self.http("/v1/cluster")

    def http(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart_after_kill9(self):
        self.kill9()
        return self.start()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("strom") / "data").start()
    yield b
    b.stop()


@pytest.fixture
def fresh_broker(tmp_path):
    """A broker of the test's own, for tests that kill or restart it."""
    b = Broker(tmp_path / "data").start()
    yield b
    b.stop()


class Controller:
    """One `strom-quorum` voter of a Cluster; may be killed and started again."""

    def __init__(self, root: Path, node_id: int, port: int, voters: str, args):
        self.node_id = node_id
        self.port = port
        suffix = "" if node_id == 1 else f"-{node_id}"
        self.data_dir = root / f"controller{suffix}"
        self.log_path = root / f"controller{suffix}.log"
        self.args = [
            quorum_binary(),
            "--node-id", str(node_id),
            "--data-dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{port}",
            "--voters", voters,
            *args,
        ]
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=open(self.log_path, "ab"),
                                     stderr=subprocess.STDOUT)
        return self

    def http(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


class Cluster:
    """`controllers` controllers (`strom-quorum`, one by default) and `n` brokers on
    127.0.0.1."""

    def __init__(self, root: Path, n=3, broker_args=(), controller_args=(),
                 session_timeout_ms=1500, controllers=1, broker_args_of=lambda node_id: ()):
        self.root = root
        self.session_timeout_ms = session_timeout_ms
        ports = [free_port() for _ in range(controllers)]
        self.controller_port = ports[0]
        voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(ports))
        args = ["--broker-session-timeout-ms", str(session_timeout_ms), *controller_args]
        self.controllers = [Controller(root, i + 1, p, voters, args) for i, p in enumerate(ports)]
        quorum = ",".join(f"127.0.0.1:{p}" for p in ports)
        self.brokers = [
            Broker(root / f"broker-{i}", extra_args=[*broker_args, *broker_args_of(i)],
                   quorum=quorum, node_id=i)
            for i in range(1, n + 1)
        ]

    @property
    def controller(self):
        return self.controllers[0].proc

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def active_controller(self) -> Controller:
        """The voter the live controllers name as active (waits for one)."""
        found = []

        def known():
            for c in self.controllers:
                if c.proc.poll() is None:
                    try:
                        leader = c.http("/v1/cluster")["controller_id"]
                    except Exception:  # noqa: BLE001 - starting or electing
                        continue
                    if leader is not None:
                        found[:] = [self.controllers[leader - 1]]
                        return True
            return False

        wait_until(known, what="an active controller")
        return found[0]

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        for c in self.controllers:
            c.start()
        for b in self.brokers:
            b.start()
        wait_until(
            lambda: sum(x["state"] == "alive" for x in self.brokers[0].http("/v1/brokers"))
            == len(self.brokers),
            what="every broker registered",
        )
        return self

    def stop(self):
        for b in self.brokers:
            b.stop()
        for c in self.controllers:
            if c.proc and c.proc.poll() is None:
                c.proc.terminate()
                c.proc.wait(timeout=15)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, broker_args=["--broker-heartbeat-interval-ms", "250",
                                       "--replica-lag-time-max-ms", "3000"]).start()
    yield c
    c.stop()
