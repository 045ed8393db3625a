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


def request(port, method, path, fields=None, origin=None, host=None, cookie=None,
            set_cookie=None):
    """A request as a browser sends it, redirects not followed: (status, Location header,
    body). A POST carries `fields` as a form and an Origin (`origin` "" sends none);
    `cookie` is the console's sign-in cookie (name=token); `set_cookie`, a list, gets the Set-Cookie
    headers of the answer."""
    import http.client
    headers = {"Host": host or f"127.0.0.1:{port}"}
    body = None
    if method == "POST":
        body = urllib.parse.urlencode(fields or {})
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        if origin != "":
            headers["Origin"] = origin or f"http://127.0.0.1:{port}"
    if cookie:
        headers["Cookie"] = cookie
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    if set_cookie is not None:
        set_cookie.extend(r.headers.get_all("Set-Cookie") or [])
    out = (r.status, r.getheader("Location"), r.read().decode())
    conn.close()
    return out


def post(port, path, fields=None, origin=None, host=None, cookie=None):
    """A form POST as a browser sends it: (status, Location header, body)."""
    return request(port, "POST", path, fields, origin, host, cookie)


def get(port, path, cookie=None):
    return request(port, "GET", path, cookie=cookie)


def sign_in(port, user, password, next_page="/ui/cluster"):
    """(status, Location, body, the sign-in cookie as name=token, or None)."""
    cookies = []
    status, location, body = request(port, "POST", "/ui/login",
                                     {"username": user, "password": password,
                                      "next": next_page}, set_cookie=cookies)
    token = None
    for c in cookies:
        # Named after the broker: cookies are not kept apart by port.
        m = re.match(r"(strom_console_\d+=[0-9a-f]{64});", c)
        if m:
            assert "HttpOnly" in c and "SameSite=Strict" in c and "Path=/ui" in c, c
            token = m.group(1)
    return status, location, body, token


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

        # With the authoriser on, nobody signed in changes anything or sees a record: every
        # page leads to the sign-in form.
        status, location, _ = post(authz.http_port, "/ui/topics", {"name": "authz-topic"})
        assert (status, location) == (303, "/ui/login?next=%2Fui%2Ftopics"), (status, location)
        assert "authz-topic" not in {t["name"] for t in authz.http("/v1/topics")}
        pa = Producer({"bootstrap.servers": authz.bootstrap})
        pa.produce("authz-secret", value=b"secret-value")
        assert pa.flush(30) == 0
        page = urllib.request.urlopen(
            f"http://127.0.0.1:{authz.http_port}/ui/topics/authz-secret/messages", timeout=5)
        assert page.url.endswith("/ui/login?next=%2Fui%2Ftopics%2Fauthz-secret%2Fmessages")
        body = page.read().decode()
        assert "Sign in" in body and "secret-value" not in body
    finally:
        b.stop()
        authz.stop()


def test_signed_in_users_see_and_change_what_their_acls_allow(tmp_path):
    """With --authorizer and SCRAM users: the console asks for a password, then shows and
    changes what that user's ACLs allow, as a Kafka client signed in as the user would."""
    from confluent_kafka.admin import (AclOperation, ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    from conftest import free_port
    from test_acls import USERS, allow, conf, create_acls, secured_args
    b = Broker(tmp_path / "data")
    b.sasl_port = free_port()
    b.extra_args = secured_args(b.sasl_port, b.kafka_port)
    b.start()
    try:
        port = b.http_port
        admin = AdminClient(conf(b.sasl_port, "admin"))
        for f in admin.create_topics([NewTopic("alice-topic", 1, 1),
                                      NewTopic("bob-topic", 1, 1)]).values():
            f.result(30)
        p = Producer(conf(b.sasl_port, "admin"))
        p.produce("alice-topic", b"alice-record")
        p.produce("bob-topic", b"bob-secret")
        assert p.flush(30) == 0
        # Read implies Describe.
        create_acls(admin, [allow("User:alice", AclOperation.READ, name="alice-topic"),
                            allow("User:alice", AclOperation.ALTER_CONFIGS, name="alice-topic")])

        # Nobody signed in: the sign-in form, for pages and for changes.
        assert get(port, "/ui/topics")[:2] == (303, "/ui/login?next=%2Fui%2Ftopics")
        status, location, _ = post(port, "/ui/topics/alice-topic/configs",
                                   {"set": "retention.ms=1"})
        assert status == 303 and location.startswith("/ui/login"), (status, location)
        status, _, body = get(port, "/ui/login?next=%2Fui%2Ftopics")
        assert status == 200 and 'value="/ui/topics"' in body and 'type="password"' in body

        # A wrong password, an unknown user, a sign-in posted from another site: no cookie.
        for user, password in [("alice", "wrong"), ("mallory", "x")]:
            status, _, body, token = sign_in(port, user, password)
            assert (status, token) == (401, None) and "Invalid user name or password" in body
        cookies = []
        status, _, _ = request(port, "POST", "/ui/login",
                               {"username": "alice", "password": USERS["alice"]},
                               origin="http://evil.example", set_cookie=cookies)
        assert status == 403 and not cookies
        # Going on only to a console page, never to another site.
        status, location, _, alice = sign_in(port, "alice", USERS["alice"],
                                             next_page="https://evil.example/")
        assert (status, location) == (303, "/ui/cluster") and alice

        # Alice sees her topic only, and its records.
        status, _, body = get(port, "/ui/topics", cookie=alice)
        assert status == 200 and "signed in as User:alice" in body
        assert "alice-topic" in body and "bob-topic" not in body, text(body)
        status, _, body = get(port, "/ui/topics/alice-topic/messages?partition=0", cookie=alice)
        assert status == 200 and "alice-record" in body
        for path in ["/ui/topics/bob-topic/messages?partition=0", "/ui/topics/bob-topic",
                     "/ui/events"]:
            status, _, body = get(port, path, cookie=alice)
            assert status == 403 and "User:alice is not allowed" in body, (path, status)
            assert "bob-secret" not in body

        # Changes: what her ACLs allow, and nothing else.
        status, location, _ = post(port, "/ui/topics/alice-topic/configs",
                                   {"set": "retention.ms=60000", "remove": ""}, cookie=alice)
        assert (status, location) == (303, "/ui/topics/alice-topic"), status
        assert b.http("/v1/topics/alice-topic")["configs"]["retention.ms"] == "60000"
        refused = [("/ui/topics/bob-topic/configs", {"set": "retention.ms=1"}),
                   ("/ui/topics", {"name": "alice-made"}),
                   ("/ui/topics/alice-topic/delete", {"confirm": "alice-topic"})]
        for path, form in refused:
            status, _, body = post(port, path, form, cookie=alice)
            assert status == 403 and "not allowed" in body, (path, status, body)
        assert "retention.ms" not in b.http("/v1/topics/bob-topic")["configs"]
        assert {t["name"] for t in b.http("/v1/topics")} >= {"alice-topic", "bob-topic"}
        assert "alice-made" not in {t["name"] for t in b.http("/v1/topics")}
        # A bad config is refused and changes nothing.
        status, _, body = post(port, "/ui/topics/alice-topic/configs",
                               {"set": "retention.ms=soon"}, cookie=alice)
        assert status == 400 and "retention.ms" in body, (status, body)
        assert b.http("/v1/topics/alice-topic")["configs"]["retention.ms"] == "60000"

        # The super user may do anything: create, remove a config, delete.
        status, _, _, root = sign_in(port, "admin", USERS["admin"])
        assert status == 303 and root
        assert post(port, "/ui/topics", {"name": "admin-made", "partitions": "2"},
                    cookie=root)[:2] == (303, "/ui/topics/admin-made")
        assert len(b.http("/v1/topics/admin-made")["partitions"]) == 2
        assert post(port, "/ui/topics/alice-topic/configs", {"remove": "retention.ms"},
                    cookie=root)[0] == 303
        assert "retention.ms" not in b.http("/v1/topics/alice-topic")["configs"]
        assert get(port, "/ui/events", cookie=root)[0] == 200

        # A new password ends alice's sign-in; signing out ends the admin's.
        for f in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
                "alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096),
                b"alice-new-pw")]).values():
            f.result(30)
        wait_until(lambda: get(port, "/ui/topics", cookie=alice)[0] == 303,
                   what="alice's sign-in to end with her password change")
        assert sign_in(port, "alice", "alice-new-pw")[0] == 303
        # The admin's open event stream ends with the sign-out: the next metadata change is
        # not sent, the stream closes.
        import http.client
        stream = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        stream.request("GET", "/ui/events/stream", headers={"Cookie": root})
        events = stream.getresponse()
        assert events.status == 200
        assert post(port, "/ui/logout", cookie=root)[:2] == (303, "/ui/login")
        assert get(port, "/ui/topics", cookie=root)[0] == 303
        for f in admin.create_topics([NewTopic("after-sign-out", 1, 1)]).values():
            f.result(30)
        assert b"after-sign-out" not in events.read()
        stream.close()
    finally:
        b.stop()
