"""Run: source scripts/env.sh; .venv/bin/python scripts/bench_fetch_sessions.py

Idle fetch cost with and without incremental fetch sessions (KIP-227): a kafka-python
consumer assigned every partition of a 500-partition topic, nothing produced, 30 s; the
broker's CPU seconds (from /proc) and the Fetch requests it served."""
import os, re, sys, time, urllib.request, shutil
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests" / "python"))
from conftest import Broker
from kafka import KafkaConsumer, TopicPartition, KafkaAdminClient
from kafka.admin import NewTopic

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().split(")")[-1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def wchar(pid):
    for l in open(f"/proc/{pid}/io"):
        if l.startswith("wchar:"):
            return int(l.split()[1])

def fetches(b):
    t = urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics").read().decode()
    m = re.search(r'kafka_network_requestmetrics_requests_total\{request="FetchConsumer"\} (\d+)', t)
    return int(m.group(1)) if m else 0

for label, args in [("sessions", []), ("no sessions", ["--max-incremental-fetch-session-cache-slots", "0"])]:
    root = Path("/tmp/fsbench"); shutil.rmtree(root, ignore_errors=True); root.mkdir()
    b = Broker(root / "data", extra_args=args).start()
    try:
        a = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        a.create_topics([NewTopic("wide", 500, 1)]); a.close()
        time.sleep(2)
        c = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=None, fetch_max_wait_ms=100)
        c.assign([TopicPartition("wide", p) for p in range(500)])
        c.seek_to_beginning()
        end = time.monotonic() + 5
        while time.monotonic() < end:
            c.poll(timeout_ms=100)
        c0, f0, t0, w0 = cpu(b.proc.pid), fetches(b), time.monotonic(), wchar(b.proc.pid)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            c.poll(timeout_ms=100)
        c1, f1, t1, w1 = cpu(b.proc.pid), fetches(b), time.monotonic(), wchar(b.proc.pid)
        n = f1 - f0
        print(f"{label}: {n} fetches in {t1-t0:.1f} s, broker CPU {c1-c0:.2f} s, {1e3*(c1-c0)/max(n,1):.2f} ms CPU per fetch, {(w1-w0)/max(n,1)/1024:.1f} KiB written per fetch")
        c.close()
    finally:
        b.stop()
