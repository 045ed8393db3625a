"""OTLP trace export (`--otlp-endpoint`): a broker sends a span per Kafka request, and its
embedded controller a span per controller request, to an OTLP/HTTP collector. The
collector here is a small HTTP server that reads OTLP/JSON at /v1/traces as a collector
does; the spans come from real confluent-kafka clients."""

import json
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from confluent_kafka import Consumer, Producer

from conftest import Broker, broker_binary, wait_until


def value(v):
    """An OTLP/JSON AnyValue as Python (intValue comes as a string)."""
    if "intValue" in v:
        return int(v["intValue"])
    for k in ("stringValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    return v


class Collector:
    """Receives OTLP/HTTP JSON: every span with its resource's and its own attributes."""

    def __init__(self):
        self.spans = []
        self.content_types = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.content_types.add(self.headers.get("Content-Type"))
                if self.path == "/v1/traces":
                    for rs in json.loads(body).get("resourceSpans", []):
                        resource = {a["key"]: value(a["value"])
                                    for a in rs.get("resource", {}).get("attributes", [])}
                        for ss in rs.get("scopeSpans", []):
                            for span in ss.get("spans", []):
                                attrs = {a["key"]: value(a["value"])
                                         for a in span.get("attributes", [])}
                                outer.spans.append((resource, span, attrs))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self, name, **attrs):
        return [s for s in list(self.spans)
                if s[1]["name"] == name and all(s[2].get(k) == v for k, v in attrs.items())]

    def close(self):
        self.server.shutdown()


def test_a_broker_exports_a_span_per_request(tmp_path):
    collector = Collector()
    b = Broker(tmp_path / "data", extra_args=["--otlp-endpoint", collector.endpoint]).start()
    try:
        p = Producer({"bootstrap.servers": b.bootstrap, "client.id": "otlp-producer"})
        for i in range(10):
            p.produce("otlp-topic", value=f"v{i}".encode())
        assert p.flush(30) == 0
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "otlp-group",
                      "client.id": "otlp-consumer", "auto.offset.reset": "earliest"})
        c.subscribe(["otlp-topic"])
        got = 0
        while got < 10:
            m = c.poll(10)
            assert m is not None, "the records were not consumed"
            got += m.error() is None
        c.close()

        produce = wait_until(lambda: collector.find("Produce", **{"kafka.client_id": "otlp-producer"}),
                             timeout=30, what="a Produce span")
        resource, span, attrs = produce[0]
        assert resource["service.name"] == "strom-broker"
        assert resource["strom.node.id"] == "1"
        assert attrs["kafka.api"] == "Produce" and attrs["kafka.listener"] == "PLAINTEXT"
        assert attrs["kafka.principal"] == "User:ANONYMOUS"
        assert isinstance(attrs["kafka.api_version"], int) and attrs["kafka.request_bytes"] > 0
        assert re.fullmatch(r"[0-9a-f]{32}", span["traceId"])
        assert re.fullmatch(r"[0-9a-f]{16}", span["spanId"])
        assert int(span["endTimeUnixNano"]) >= int(span["startTimeUnixNano"])
        assert collector.content_types == {"application/json"}
        # The consumer's fetches, group requests, and the embedded controller's requests.
        wait_until(lambda: collector.find("FetchConsumer", **{"kafka.client_id": "otlp-consumer"}),
                   timeout=30, what="a FetchConsumer span")
        wait_until(lambda: collector.find("JoinGroup", **{"kafka.client_id": "otlp-consumer"}),
                   timeout=30, what="a JoinGroup span")
        controller = wait_until(lambda: collector.find("CreateTopics",
                                                       **{"controller.request": "CreateTopics"}),
                                timeout=30, what="the controller's CreateTopics span")
        assert controller[0][2]["controller.leader"] is True
    finally:
        b.stop()
        collector.close()


def test_a_bad_endpoint_is_refused_at_start(tmp_path):
    r = subprocess.run([broker_binary(), "--dev", "--data-dir", str(tmp_path / "d"),
                        "--otlp-endpoint", "collector:4318"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert "--otlp-endpoint 'collector:4318' is not an http:// URL" in r.stderr
    r = subprocess.run([broker_binary(), "--dev", "--data-dir", str(tmp_path / "e"),
                        "--otlp-endpoint", "https://collector:4318"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no TLS client is built in" in r.stderr, r
