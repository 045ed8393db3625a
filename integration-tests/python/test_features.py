"""Feature levels (KIP-584, issues #17 and #18): DescribeFeatures (ApiVersions v3) and
UpdateFeatures through kafka-python 3's admin client and `strom features` (kafka-features.sh's
commands and output) on a three-broker cluster whose controller was formatted at
metadata.version 3.7 (`strom-quorum --release-version 3.7`): the upgrade reaches every broker,
refused changes (downgrades, unknown features, levels out of range) change nothing, and a
truncated UpdateFeatures closes only its own connection."""

import socket
import struct
import subprocess

import pytest
from kafka import KafkaAdminClient
from kafka.errors import InvalidUpdateVersionError

from conftest import Cluster, wait_until
from test_strom_client import strom_binary


@pytest.fixture
def cluster_at_3_7(tmp_path):
    c = Cluster(tmp_path, n=3, controller_args=["--release-version", "3.7"])
    c.start()
    yield c
    c.stop()


def features_cli(bootstrap, *args):
    return subprocess.run([strom_binary(), "--bootstrap-server", bootstrap, "features", *args],
                          capture_output=True, text=True, timeout=60)


def described(bootstrap):
    """{feature: (supported min, supported max, finalized)} from `strom features describe`
    against one broker."""
    out = features_cli(bootstrap, "describe")
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        fields = dict(f.split(": ", 1) for f in line.split("\t"))
        rows[fields["Feature"]] = (fields["SupportedMinVersion"], fields["SupportedMaxVersion"],
                                   fields["FinalizedVersionLevel"])
    return rows


def test_describe_upgrade_and_refusals(cluster_at_3_7):
    c = cluster_at_3_7
    admin = KafkaAdminClient(bootstrap_servers=c.bootstrap)

    features = admin.describe_features()
    mv = features["metadata.version"]
    assert mv["supported"] == (7, 27), features
    # 3.7's last level is 3.7-IV4 (19).
    assert mv["finalized"] == (19, 19), features
    # kraft.version 1 needs 3.9-IV0: a cluster formatted at 3.7 starts at 0 (not finalized).
    assert "finalized" not in features["kraft.version"], features
    # transaction.version 2 (KIP-890 part 2) needs 4.0-IV2: not finalized either.
    assert features["transaction.version"]["supported"] == (0, 2), features
    assert "finalized" not in features["transaction.version"], features
    epoch = mv["finalized_epoch"]
    assert isinstance(epoch, int) and epoch >= 0, features

    for b in c.brokers:
        assert described(b.bootstrap)["metadata.version"] == ("3.3-IV3", "4.1-IV1", "3.7-IV4")

    # Refused, and nothing changes: a downgrade, an unknown feature, a level out of range,
    # and a downgrade asked for as an upgrade.
    for update in ({"metadata.version": ("SAFE_DOWNGRADE", 17)},
                   {"metadata.version": ("UNSAFE_DOWNGRADE", 15)},
                   {"group.version": 1},
                   {"metadata.version": 40},
                   {"metadata.version": 15},
                   {"kraft.version": 1},
                   {"transaction.version": 2},
                   {"transaction.version": 3}):
        with pytest.raises(InvalidUpdateVersionError):
            admin.update_features(update)
    out = features_cli(c.brokers[1].bootstrap, "downgrade", "--metadata", "3.6")
    assert out.returncode != 0
    assert "refusing to downgrade metadata.version" in out.stderr, out.stderr
    out = features_cli(c.brokers[1].bootstrap, "upgrade", "--metadata", "2.8")
    assert out.returncode != 0 and "--metadata 2.8" in out.stderr, out.stderr

    # validate_only: accepted, nothing changes.
    assert admin.update_features({"metadata.version": 25}, validate_only=True) == \
        {"metadata.version": "OK"}
    out = features_cli(c.brokers[2].bootstrap, "upgrade", "--metadata", "4.0", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "metadata.version can be upgraded to 4.0-IV3"
    assert admin.describe_features()["metadata.version"]["finalized"] == (19, 19)

    # The upgrade, through the CLI of one broker, reaches every broker's ApiVersions.
    out = features_cli(c.brokers[2].bootstrap, "upgrade", "--metadata", "4.1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "metadata.version was upgraded to 4.1-IV1"
    for b in c.brokers:
        wait_until(lambda b=b: described(b.bootstrap)["metadata.version"][2] == "4.1-IV1",
                   what=f"{b.bootstrap} at 4.1-IV1")
    after = admin.describe_features()["metadata.version"]
    assert after["finalized"] == (27, 27)
    assert after["finalized_epoch"] > epoch
    # Upgrading to where it is already is a no-op that succeeds.
    assert admin.update_features({"metadata.version": 27}) == {"metadata.version": "OK"}
    # Now kraft.version can follow.
    out = features_cli(c.brokers[0].bootstrap, "upgrade", "--feature", "kraft.version=1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "kraft.version was upgraded to 1"
    wait_until(lambda: described(c.brokers[1].bootstrap)["kraft.version"][2] == "1",
               what="kraft.version 1 on another broker")
    # And transaction version 2, which transactional clients then use.
    out = features_cli(c.brokers[0].bootstrap, "upgrade", "--feature", "transaction.version=2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "transaction.version was upgraded to 2"
    wait_until(lambda: described(c.brokers[2].bootstrap)["transaction.version"][2] == "2",
               what="transaction.version 2 on another broker")
    assert admin.describe_features()["transaction.version"]["finalized"] == (2, 2)
    admin.close()


def test_a_truncated_update_features_closes_only_its_connection(cluster_at_3_7):
    c = cluster_at_3_7
    port = int(c.brokers[0].bootstrap.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port))
    # UpdateFeatures v1, header v2 (flexible): a timeout and then half an update array.
    header = struct.pack(">hhi", 57, 1, 3) + struct.pack(">h", 1) + b"q" + b"\x00"
    body = struct.pack(">i", 30000) + b"\x02\x05"
    frame = header + body
    s.sendall(struct.pack(">i", len(frame)) + frame)
    s.settimeout(10)
    assert s.recv(4) == b"", "the connection is closed"
    s.close()
    admin = KafkaAdminClient(bootstrap_servers=c.brokers[0].bootstrap)
    assert admin.describe_features()["metadata.version"]["finalized"] == (19, 19)
    admin.close()
