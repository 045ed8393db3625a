"""Liveness and readiness (`/healthz`, `/readyz`) of brokers and controllers, as a Kubernetes
probe or a load balancer uses them: 200 when the process can serve, 503 with the failing checks
when it cannot, and back to 200 once it can again.

* a broker is ready when it is registered and unfenced, its heartbeats are accepted and it has
  caught up with the metadata log; with its controller gone it turns 503 (heartbeating false)
  while `/healthz` stays 200, and it is ready again once the controller is back;
* a controller is ready when it is a voter that knows an active controller (as the active one,
  acknowledged by a majority); a controller left alone by the other two voters turns 503 and is
  ready again when one of them returns.
"""

import json
import signal
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import Broker, free_port, quorum_binary, wait_until


def get(port, path):
    """(HTTP status, JSON body) of GET http://127.0.0.1:port/path, whatever the status."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Controller:
    def __init__(self, root, node_id, port, voters):
        self.root, self.node_id, self.port, self.voters = root, node_id, port, voters
        self.proc = None

    def start(self):
        log = open(self.root / f"controller-{self.node_id}.log", "ab")
        self.proc = subprocess.Popen(
            [quorum_binary(), "--node-id", str(self.node_id),
             "--data-dir", str(self.root / f"controller-{self.node_id}"),
             "--listen", f"127.0.0.1:{self.port}", "--voters", self.voters,
             "--broker-session-timeout-ms", "1500"],
            stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self._answers(), what=f"controller {self.node_id} answering HTTP")
        return self

    def _answers(self):
        assert self.proc.poll() is None, f"controller {self.node_id} exited; see {self.root}"
        try:
            return get(self.port, "/healthz") == (200, {"status": "ok"})
        except OSError:
            return False

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.fixture
def one_controller_two_brokers(tmp_path):
    port = free_port()
    controller = Controller(tmp_path, 1, port, f"1@127.0.0.1:{port}").start()
    brokers = [Broker(tmp_path / f"broker-{i}", quorum=f"127.0.0.1:{port}", node_id=i,
                      extra_args=["--broker-heartbeat-interval-ms", "250",
                                  "--broker-session-timeout-ms", "1500"])
               for i in (1, 2)]
    for b in brokers:
        b.start()
    yield controller, brokers
    for b in brokers:
        b.stop()
    controller.stop()


def ready(port):
    status, body = get(port, "/readyz")
    return status == 200 and body["status"] == "ready"


def test_broker_is_ready_only_while_it_reaches_the_quorum(one_controller_two_brokers):
    controller, brokers = one_controller_two_brokers
    for b in brokers:
        assert get(b.http_port, "/healthz") == (200, {"status": "ok"})
        wait_until(lambda b=b: ready(b.http_port), what=f"broker {b.bootstrap} ready")
        status, body = get(b.http_port, "/readyz")
        checks = body["checks"]
        assert (status, checks["registered"], checks["fenced"], checks["heartbeating"],
                checks["caught_up"]) == (200, True, False, True, True), body
        assert checks["metadata_offset"] >= 1 and checks["millis_since_heartbeat"] < 1500, body
    status, body = get(controller.port, "/readyz")
    assert status == 200 and body["checks"]["leader"] == 1, body

    controller.kill9()
    for b in brokers:
        wait_until(lambda b=b: get(b.http_port, "/readyz")[0] == 503, timeout=15,
                   what=f"broker {b.bootstrap} not ready without its controller")
        status, body = get(b.http_port, "/readyz")
        assert body["status"] == "not_ready" and body["checks"]["heartbeating"] is False, body
        # Alive all the same: a liveness probe must not restart it for the quorum's sake.
        assert get(b.http_port, "/healthz") == (200, {"status": "ok"})

    controller.start()
    for b in brokers:
        wait_until(lambda b=b: ready(b.http_port), timeout=30,
                   what=f"broker {b.bootstrap} ready again with its controller back")


def test_controller_is_ready_only_with_a_quorum(tmp_path):
    ports = [free_port() for _ in range(3)]
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(ports, 1))
    controllers = [Controller(tmp_path, i, p, voters) for i, p in enumerate(ports, 1)]
    try:
        for c in controllers:
            c.start()

        def one_leader_all_ready():
            answers = [get(c.port, "/readyz") for c in controllers]
            leaders = {body["checks"]["leader"] for _, body in answers}
            return all(status == 200 for status, _ in answers) and len(leaders) == 1
        wait_until(one_leader_all_ready, what="three ready controllers agreeing on a leader")
        leader = get(controllers[0].port, "/readyz")[1]["checks"]["leader"]
        status, body = get(controllers[leader - 1].port, "/readyz")
        assert body["checks"]["millis_since_quorum_ack"] is not None, body

        # The active controller and one more go: the survivor has no quorum.
        survivor = next(c for c in controllers if c.node_id != leader)
        for c in controllers:
            if c is not survivor:
                c.kill9()
        wait_until(lambda: get(survivor.port, "/readyz")[0] == 503, timeout=15,
                   what="the lone controller not ready")
        status, body = get(survivor.port, "/readyz")
        assert body["status"] == "not_ready" and body["checks"]["leader_known"] is False, body
        assert get(survivor.port, "/healthz") == (200, {"status": "ok"})

        back = next(c for c in controllers if c is not survivor)
        back.start()
        for c in (survivor, back):
            wait_until(lambda c=c: ready(c.port), timeout=30,
                       what=f"controller {c.node_id} ready with a majority again")
    finally:
        for c in controllers:
            c.stop()
