"""TLS beyond the Kafka listeners: the broker's HTTP API over https (`--http-tls`), and the
controller link over mutual TLS (`strom-quorum --tls`, `strom-broker --quorum-tls`): brokers
register, follow the metadata log and forward admin requests over it, and nobody without a
certificate of the cluster's CA gets through."""

import http.client
import json
import ssl
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, Cluster, wait_until
from test_security import certs  # noqa: F401  (the fixture)


# What a plain-HTTP client sees from a TLS port: a reset, or a TLS alert it cannot parse.
PLAIN_REFUSED = (urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError)


def get(url, context=None):
    with urllib.request.urlopen(url, timeout=5, context=context) as r:
        return json.loads(r.read())


def tls_args(certs):
    return ["--ssl-certificate", str(certs / "server.pem"), "--ssl-key", str(certs / "server.key"),
            "--ssl-ca", str(certs / "ca.pem")]


class HttpsBroker(Broker):
    """A broker whose HTTP API answers only over TLS."""

    def __init__(self, data_dir, certs, extra=()):
        super().__init__(data_dir, extra_args=["--http-tls", *tls_args(certs), *extra])
        self.context = ssl.create_default_context(cafile=str(certs / "ca.pem"))

    def http(self, path):
        return get(f"https://127.0.0.1:{self.http_port}{path}", self.context)


def test_the_http_api_answers_over_https_only(tmp_path, certs):
    b = HttpsBroker(tmp_path / "data", certs).start()
    try:
        assert b.http("/v1/cluster")["broker_id"] == 1
        with pytest.raises(PLAIN_REFUSED):
            get(f"http://127.0.0.1:{b.http_port}/v1/cluster")
        # A client that does not trust the CA refuses the broker's certificate.
        with pytest.raises(urllib.error.URLError) as e:
            get(f"https://127.0.0.1:{b.http_port}/v1/cluster", ssl.create_default_context())
        assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)
        # The broker goes on serving.
        assert b.http("/v1/brokers")
    finally:
        b.stop()


def test_brokers_reach_the_controller_over_mutual_tls(tmp_path, certs):
    c = Cluster(tmp_path, n=2,
                broker_args=["--broker-heartbeat-interval-ms", "250", "--quorum-tls",
                             *tls_args(certs)],
                controller_args=["--tls", *tls_args(certs)])
    c.start()
    try:
        admin = AdminClient({"bootstrap.servers": c.bootstrap})
        for f in admin.create_topics([NewTopic("over-mtls", 2, 2)]).values():
            f.result(timeout=30)
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
        for i in range(20):
            p.produce("over-mtls", str(i).encode())
        assert p.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": c.bootstrap, "group.id": "mtls",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe(["over-mtls"])
        got = []
        wait_until(lambda: (got.extend(m for m in consumer.consume(20, 0.5) if not m.error()),
                            len(got) >= 20)[1], what="the records back")
        consumer.close()

        addr = f"127.0.0.1:{c.controller_port}"
        # Plain HTTP gets nowhere.
        with pytest.raises(PLAIN_REFUSED):
            get(f"http://{addr}/v1/cluster")
        # TLS without a client certificate of the CA is refused in the handshake.
        no_cert = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            get(f"https://{addr}/v1/cluster", no_cert)
        rogue = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        rogue.load_cert_chain(str(certs / "rogue.pem"), str(certs / "rogue.key"))
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            get(f"https://{addr}/v1/cluster", rogue)
        # With one, the controller answers.
        member = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        member.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
        assert get(f"https://{addr}/v1/cluster", member)
    finally:
        c.stop()


def test_quorum_tls_needs_the_certificates(tmp_path, certs):
    import subprocess
    from conftest import broker_binary
    r = subprocess.run([broker_binary(), "--dev", "--data-dir", str(tmp_path / "d"),
                        "--quorum-tls", "--ssl-certificate", str(certs / "server.pem"),
                        "--ssl-key", str(certs / "server.key")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--ssl-ca" in r.stderr, r.stderr


def test_a_dev_broker_serves_its_embedded_controller_over_mutual_tls(tmp_path, certs):
    b = Broker(tmp_path / "data", extra_args=["--quorum-tls", *tls_args(certs)]).start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for f in admin.create_topics([NewTopic("dev-mtls", 1, 1)]).values():
            f.result(timeout=30)
        with pytest.raises(PLAIN_REFUSED):
            get(f"http://127.0.0.1:{b.quorum_port}/v1/cluster")
    finally:
        b.stop()
