"""kcat (Debian's, built on librdkafka 2.0.2, which cannot parse non-default tagged fields)."""

import json
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")


def kcat(broker, *args, input=None):
    return subprocess.run(["kcat", "-b", broker.bootstrap, *args], input=input,
                          capture_output=True, check=True, timeout=60)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_and_consume_with_keys_and_headers(broker, codec):
    topic = f"kcat-{codec}"
    lines = "".join(f"key{i}:value {i}\n" for i in range(300)).encode()
    kcat(broker, "-P", "-t", topic, "-K", ":", "-H", "source=kcat", "-z", codec, input=lines)
    out = kcat(broker, "-C", "-t", topic, "-e", "-o", "beginning", "-f", "%o|%k|%s|%h\n").stdout.decode()
    rows = [r.split("|") for r in out.splitlines()]
    assert rows == [[str(i), f"key{i}", f"value {i}", "source=kcat"] for i in range(300)]


def test_metadata_listing(broker):
    kcat(broker, "-P", "-t", "kcat-listed", input=b"one\n")
    md = json.loads(kcat(broker, "-L", "-J").stdout)
    assert [b["id"] for b in md["brokers"]] == [1]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topics["kcat-listed"]["partitions"][0]["leader"] == 1


def test_query_offset_by_timestamp(broker):
    topic = "kcat-times"
    for value in (b"a\n", b"b\n", b"c\n"):  # three produces: three batches
        kcat(broker, "-P", "-t", topic, input=value)
    out = kcat(broker, "-C", "-t", topic, "-e", "-f", "%o %T\n").stdout.decode().split()
    ts = [int(out[i]) for i in (1, 3, 5)]
    # The first offset whose timestamp is at or after b's.
    expected = next(i for i, t in enumerate(ts) if t >= ts[1])
    res = kcat(broker, "-Q", "-t", f"{topic}:0:{ts[1]}").stdout.decode()
    assert f"offset {expected}" in res, res
