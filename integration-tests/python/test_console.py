"""The web console (`/ui`) in a real headless browser (Debian's chromium), against a
controller and three brokers: pages are loaded and their rendered DOM read as a user's
browser builds it, and screenshots are kept as artefacts in target/test-artifacts/console/.

* the topics page lists a new topic with its partitions;
* the message browser shows a record produced with headers, and filters records;
* the group page shows the lag of a consumer group that stopped consuming;
* killing a broker makes the topic's partitions show as under-replicated within seconds;
* the metadata timeline lists the records, and its event stream delivers new ones live.
"""

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import ROOT, Cluster, wait_until

TOPIC = "console-orders"
GROUP = "console-group"
ARTIFACTS = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "test-artifacts" / "console"


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed: scripts/setup.sh installs Debian's package")


def browse(url, screenshot=None, streams=False):
    """The DOM chromium renders for `url` after its scripts ran (and a screenshot of it).
    A page that holds an event stream open never lets virtual time run out: `streams` dumps
    it once loaded instead."""
    wait = "--timeout=5000" if streams else "--virtual-time-budget=1500"
    base = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", wait]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    if screenshot:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        subprocess.run([*base, "--window-size=1400,1000", f"--screenshot={ARTIFACTS / screenshot}",
                        url], capture_output=True, timeout=60, check=True)
        assert (ARTIFACTS / screenshot).stat().st_size > 0
    return dom


def text(dom):
    """The page's text, tags stripped, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)).replace("&quot;", '"')


def row(dom, first_cell):
    """The text of the table row whose first cell is `first_cell`."""
    for tr in re.findall(r"<tr>(.*?)</tr>", dom, re.S):
        cells = [text(c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
        if cells and cells[0] == first_cell:
            return cells
    return None


@pytest.fixture
def cluster3(tmp_path):
    c = Cluster(tmp_path, broker_args=["--broker-heartbeat-interval-ms", "250",
                                       "--replica-lag-time-max-ms", "3000"]).start()
    yield c
    c.stop()


def test_console_pages_in_a_real_browser(cluster3):
    b1 = cluster3.brokers[0]
    ui = f"http://127.0.0.1:{b1.http_port}/ui"
    admin = AdminClient({"bootstrap.servers": cluster3.bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=3)])[TOPIC].result(30)

    # The topics page lists the new topic with its 3 partitions, in sync.
    dom = wait_until(lambda: (d := browse(f"{ui}/topics")) and TOPIC in d and d,
                     what="topic on the topics page")
    cells = row(dom, TOPIC)
    assert cells is not None and cells[1:4] == ["3", "3", "in sync"], cells
    browse(f"{ui}/topics", screenshot="topics.png")

    # A record with headers, seen in the message browser of its partition.
    delivered = []
    p = Producer({"bootstrap.servers": cluster3.bootstrap, "acks": "all"})
    p.produce(TOPIC, key=b"order-1", value=json.dumps({"amount": 42}).encode(),
              headers=[("trace-id", b"abc-123"), ("source", b"console-test")],
              on_delivery=lambda err, m: delivered.append((err, m.partition(), m.offset())))
    for i in range(20):
        p.produce(TOPIC, key=f"other-{i}".encode(), value=b"filler")
    assert p.flush(30) == 0
    err, partition, offset = delivered[0]
    assert err is None
    url = f"{ui}/topics/{TOPIC}/messages?partition={partition}&format=json"
    dom = wait_until(lambda: (d := browse(url)) and "order-1" in d and d,
                     what="the record in the message browser")
    cells = row(dom, str(offset))
    assert cells is not None, text(dom)
    assert cells[2] == "order-1", cells
    assert '"amount": 42' in cells[3], cells
    assert "trace-id: abc-123" in cells[4] and "source: console-test" in cells[4], cells
    browse(url, screenshot="messages.png")
    # The filter keeps only matching records.
    filtered = browse(f"{ui}/topics/{TOPIC}/messages?partition={partition}&filter=abc-123")
    assert row(filtered, str(offset)) is not None
    assert "other-" not in text(filtered)

    # A group reads 5 records of each partition, commits, and stops: the lag it left
    # behind shows on its coordinator's group page.
    c = Consumer({"bootstrap.servers": cluster3.bootstrap, "group.id": GROUP,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, i, 0) for i in range(3)])
    c.commit(offsets=[TopicPartition(TOPIC, i, 0) for i in range(3)], asynchronous=False)
    c.close()
    coordinator = None
    for b in cluster3.brokers:
        try:
            b.http(f"/v1/groups/{GROUP}")
            coordinator = b
        except urllib.error.HTTPError:
            pass
    assert coordinator is not None
    group_url = f"http://127.0.0.1:{coordinator.http_port}/ui/groups/{GROUP}"
    dom = wait_until(lambda: (d := browse(group_url)) and 'id="total-lag">21<' in d and d,
                     what="a total lag of 21 on the group page")
    assert "Committed offsets and lag" in dom
    browse(group_url, screenshot="group.png")
    groups_dom = browse(f"http://127.0.0.1:{coordinator.http_port}/ui/groups")
    assert row(groups_dom, GROUP)[3] == "21", row(groups_dom, GROUP)
    # Another broker's console names the coordinator.
    other = next(b for b in cluster3.brokers if b is not coordinator)
    coordinator_id = cluster3.brokers.index(coordinator) + 1
    assert f"Its coordinator is broker {coordinator_id}" in text(browse(
        f"http://127.0.0.1:{other.http_port}/ui/groups/{GROUP}"))

    # A broker dies (not the one serving the console): the topic's partitions turn
    # under-replicated within seconds.
    victim = next(b for b in cluster3.brokers[1:] if b is not coordinator)
    victim.kill9()
    topic_url = f"{ui}/topics/{TOPIC}"
    dom = wait_until(lambda: (d := browse(topic_url)) and d.count(">under-replicated<") == 3
                     and d, timeout=60, what="3 under-replicated partitions")
    browse(topic_url, screenshot="under-replicated.png")
    assert "3 under-replicated" in text(browse(f"{ui}/topics"))
    cluster_dom = browse(f"{ui}/cluster", screenshot="cluster.png")
    victim_id = cluster3.brokers.index(victim) + 1
    assert row(cluster_dom, str(victim_id))[1] == "fenced", row(cluster_dom, str(victim_id))


def test_metadata_timeline_lists_records_and_streams_new_ones(cluster3):
    b1 = cluster3.brokers[0]
    dom = browse(f"http://127.0.0.1:{b1.http_port}/ui/events", screenshot="events.png",
                 streams=True)
    assert "RegisterBroker" in dom, text(dom)[:2000]
    nxt = int(re.search(r'data-next="(\d+)"', dom).group(1))

    # The stream delivers a topic created after the page was rendered.
    stream = urllib.request.urlopen(
        f"http://127.0.0.1:{b1.http_port}/ui/events/stream?from={nxt}", timeout=30)
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    admin = AdminClient({"bootstrap.servers": cluster3.bootstrap})
    admin.create_topics([NewTopic("timeline-topic", 1, 1)])["timeline-topic"].result(30)
    seen = []
    for line in stream:
        line = line.decode().strip()
        if line.startswith("data:"):
            event = json.loads(line[5:])
            seen.append(event)
            assert event["offset"] >= nxt
            if "timeline-topic" in event["detail"]:
                break
    stream.close()
    assert any(e["kind"] == "Topic" or "timeline-topic" in e["detail"] for e in seen), seen
    offsets = [e["offset"] for e in seen]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), offsets
