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
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import ROOT, Broker, wait_until

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


def test_console_pages_in_a_real_browser(cluster):
    b1 = cluster.brokers[0]
    ui = f"http://127.0.0.1:{b1.http_port}/ui"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=3)])[TOPIC].result(30)

    # The topics page lists the new topic with its 3 partitions, in sync.
    dom = wait_until(lambda: (d := browse(f"{ui}/topics")) and TOPIC in d and d,
                     what="topic on the topics page")
    cells = row(dom, TOPIC)
    assert cells is not None and cells[1:4] == ["3", "3", "in sync"], cells
    browse(f"{ui}/topics", screenshot="topics.png")

    # A record with headers, seen in the message browser of its partition.
    delivered = []
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    p.produce(TOPIC, key=b"order-1", value=json.dumps({"amount": 42}).encode(),
              headers=[("trace-id", b"abc-123"), ("source", b"console-test")],
              on_delivery=lambda err, m: delivered.append((err, m.partition(), m.offset())))
    for i in range(20):
        p.produce(TOPIC, key=f"other-{i}".encode(), value=b"filler")
    # Keys and headers are data, never markup.
    p.produce(TOPIC, key=b"<img src=x onerror=alert(1)>", value=b"<script>alert(2)</script>",
              headers=[("<b>h</b>", b"<i>v</i>")], partition=0)
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
    hostile = browse(f"{ui}/topics/{TOPIC}/messages?partition=0&filter=onerror")
    assert "&lt;img src=x onerror=alert(1)&gt;" in hostile, text(hostile)
    assert "<img" not in hostile and "<script>alert" not in hostile and "<b>h</b>" not in hostile
    # The filter keeps only matching records.
    filtered = browse(f"{ui}/topics/{TOPIC}/messages?partition={partition}&filter=abc-123")
    assert row(filtered, str(offset)) is not None
    assert "other-" not in text(filtered)

    # A group reads 5 records of each partition, commits, and stops: the lag it left
    # behind shows on its coordinator's group page.
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": GROUP,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, i, 0) for i in range(3)])
    c.commit(offsets=[TopicPartition(TOPIC, i, 0) for i in range(3)], asynchronous=False)
    c.close()
    coordinator = None
    for b in cluster.brokers:
        try:
            b.http(f"/v1/groups/{GROUP}")
            coordinator = b
        except urllib.error.HTTPError:
            pass
    assert coordinator is not None
    group_url = f"http://127.0.0.1:{coordinator.http_port}/ui/groups/{GROUP}"
    dom = wait_until(lambda: (d := browse(group_url)) and 'id="total-lag">22<' in d and d,
                     what="a total lag of 22 on the group page")
    assert "Committed offsets and lag" in dom
    browse(group_url, screenshot="group.png")
    groups_dom = browse(f"http://127.0.0.1:{coordinator.http_port}/ui/groups")
    assert row(groups_dom, GROUP)[3] == "22", row(groups_dom, GROUP)
    # Another broker's console names the coordinator.
    other = next(b for b in cluster.brokers if b is not coordinator)
    coordinator_id = cluster.brokers.index(coordinator) + 1
    assert f"Its coordinator is broker {coordinator_id}" in text(browse(
        f"http://127.0.0.1:{other.http_port}/ui/groups/{GROUP}"))

    # A broker dies (not the one serving the console): the topic's partitions turn
    # under-replicated within seconds.
    victim = next(b for b in cluster.brokers[1:] if b is not coordinator)
    victim.kill9()
    topic_url = f"{ui}/topics/{TOPIC}"
    dom = wait_until(lambda: (d := browse(topic_url)) and d.count(">under-replicated<") == 3
                     and d, timeout=60, what="3 under-replicated partitions")
    browse(topic_url, screenshot="under-replicated.png")
    assert "3 under-replicated" in text(browse(f"{ui}/topics"))
    cluster_dom = browse(f"{ui}/cluster", screenshot="cluster.png")
    victim_id = cluster.brokers.index(victim) + 1
    assert row(cluster_dom, str(victim_id))[1] == "fenced", row(cluster_dom, str(victim_id))


def test_metadata_timeline_lists_records_and_streams_new_ones(cluster):
    b1 = cluster.brokers[0]
    dom = browse(f"http://127.0.0.1:{b1.http_port}/ui/events", screenshot="events.png",
                 streams=True)
    assert "RegisterBroker" in dom, text(dom)[:2000]
    nxt = int(re.search(r'data-next="(\d+)"', dom).group(1))

    # The stream delivers a topic created after the page was rendered.
    stream = urllib.request.urlopen(
        f"http://127.0.0.1:{b1.http_port}/ui/events/stream?from={nxt}", timeout=30)
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
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


def post(port, path, fields=None, origin=None, host=None):
    """A form POST as a browser sends it: (status, Location header, body). `origin` ""
    sends none."""
    import http.client
    body = urllib.parse.urlencode(fields or {})
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Host": host or f"127.0.0.1:{port}"}
    if origin != "":
        headers["Origin"] = origin or f"http://127.0.0.1:{port}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=body, headers=headers)
    r = conn.getresponse()
    out = (r.status, r.getheader("Location"), r.read().decode())
    conn.close()
    return out


def test_console_creates_and_deletes_topics_and_resets_offsets(tmp_path):
    b = Broker(tmp_path / "data").start()
    authz = Broker(tmp_path / "authz", extra_args=["--authorizer",
                                                    "--allow-everyone-if-no-acl-found"]).start()
    try:
        port = b.http_port
        # Create: redirected to the new topic's page, which chromium renders.
        status, location, _ = post(port, "/ui/topics", {
            "name": "console-made", "partitions": "4", "replication_factor": "1",
            "configs": "retention.ms=60000\ncleanup.policy=delete"})
        assert (status, location) == (303, "/ui/topics/console-made"), (status, location)
        made = b.http("/v1/topics/console-made")
        assert len(made["partitions"]) == 4 and made["configs"]["retention.ms"] == "60000"
        dom = browse(f"http://127.0.0.1:{port}{location}")
        assert row(dom, "retention.ms") == ["retention.ms", "60000"]

        # Bad input changes nothing and says why.
        status, _, body = post(port, "/ui/topics", {"name": "bad-one", "partitions": "four"})
        assert status == 400 and "four" in body, (status, body)
        status, _, body = post(port, "/ui/topics", {"name": "bad-two", "configs": "no.such.config=1"})
        assert status == 400 and "no.such.config" in body, (status, body)
        status, _, body = post(port, "/ui/topics", {"name": "console-made"})
        assert status == 400 and "exists" in body, (status, body)
        # A form not posted from the console's pages is refused: another site's Origin, no
        # Origin, an opaque one, and a DNS name rebound to this address.
        status, _, _ = post(port, "/ui/topics", {"name": "csrf-topic"}, origin="http://evil.example")
        assert status == 403
        assert post(port, "/ui/topics", {"name": "csrf-topic"}, origin="")[0] == 403
        assert post(port, "/ui/topics", {"name": "csrf-topic"}, origin="null")[0] == 403
        assert post(port, "/ui/topics", {"name": "csrf-topic"}, origin="http://evil.example:1",
                    host="evil.example:1")[0] == 403
        names = {t["name"] for t in b.http("/v1/topics")}
        assert not names & {"bad-one", "bad-two", "csrf-topic"}, names

        # Delete needs the name typed again.
        status, _, _ = post(port, "/ui/topics/console-made/delete", {"confirm": "console"})
        assert status == 400
        assert "console-made" in {t["name"] for t in b.http("/v1/topics")}
        status, location, _ = post(port, "/ui/topics/console-made/delete", {"confirm": "console-made"})
        assert (status, location) == (303, "/ui/topics")
        wait_until(lambda: "console-made" not in {t["name"] for t in b.http("/v1/topics")},
                   what="topic deleted")

        # Reset a group's offsets: preview, then apply; refused while the group has members.
        p = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(10):
            p.produce("reset-topic", value=f"r{i}".encode())
        assert p.flush(30) == 0
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "reset-group",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe(["reset-topic"])
        got = 0
        while got < 10:
            m = c.poll(5)
            assert m is not None
            got += m.error() is None
        c.commit(asynchronous=False)
        query = "topic=reset-topic&to=earliest&value="
        status, _, body = post(port, f"/ui/groups/reset-group/reset?{query}")
        assert status == 409 and "stop its consumers" in body, (status, body)
        c.close()
        preview = browse(f"http://127.0.0.1:{port}/ui/groups/reset-group/reset?{query}")
        assert row(preview, "0") == ["0", "10", "0"], text(preview)
        assert b.http("/v1/groups/reset-group")["offsets"][0]["committed_offset"] == 10
        status, location, _ = post(port, f"/ui/groups/reset-group/reset?{query}")
        assert (status, location) == (303, "/ui/groups/reset-group"), status
        offsets = b.http("/v1/groups/reset-group")["offsets"]
        assert [(o["committed_offset"], o["lag"]) for o in offsets] == [(0, 10)], offsets

        # With the authoriser on, the console changes nothing and shows no records.
        status, _, body = post(authz.http_port, "/ui/topics", {"name": "authz-topic"})
        assert status == 403 and "--authorizer" in body
        assert "authz-topic" not in {t["name"] for t in authz.http("/v1/topics")}
        pa = Producer({"bootstrap.servers": authz.bootstrap})
        pa.produce("authz-secret", value=b"secret-value")
        assert pa.flush(30) == 0
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(
                f"http://127.0.0.1:{authz.http_port}/ui/topics/authz-secret/messages", timeout=5)
        assert denied.value.code == 403
        assert b"secret-value" not in denied.value.read()
    finally:
        b.stop()
        authz.stop()
