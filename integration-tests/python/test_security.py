"""Security with real clients: TLS (rustls) and mTLS, SASL PLAIN and SCRAM-SHA-256/512,
SCRAM users managed through the Admin API, certificate reload, KIP-368 re-authentication,
and bad input at every step of the handshake.

One broker serves four listeners (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); certificates are
made with the openssl CLI for each run.
"""

import base64
import hashlib
import hmac
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time
import urllib.request

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from conftest import Broker, free_port, wait_until

ALICE = ("alice", "alice-secret")  # SCRAM-SHA-256 and -512, from --scram-user
BOB = ("bob", "bob-pw")            # SCRAM-SHA-256 only


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}", cwd=d)


def make_cert(d, name, subject, ca, san=None):
    """An X.509 v3 certificate signed by `ca`: a server's (with `san`) or a client's."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", subject, cwd=d)
    ext = ["basicConstraints=CA:FALSE"]
    if san:
        # Brokers present it as clients of each other too.
        ext += [f"subjectAltName={san}", "extendedKeyUsage=serverAuth,clientAuth"]
    else:
        ext += ["extendedKeyUsage=clientAuth"]
    (d / f"{name}.ext").write_text("\n".join(ext) + "\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
            cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "ca")
    make_cert(d, "server", "/CN=localhost", "ca", san="IP:127.0.0.1,DNS:localhost")
    make_cert(d, "client", "/O=Strom/OU=eng/CN=alice", "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "rogue", "/CN=mallory", "rogue-ca")
    return d


class SecureBroker(Broker):
    def __init__(self, data_dir, certs, client_auth="requested", extra=()):
        super().__init__(data_dir)
        self.ports = {name: free_port() for name in ("SSL", "SASL_PLAINTEXT", "SASL_SSL")}
        listeners = ",".join([f"PLAINTEXT://127.0.0.1:{self.kafka_port}"]
                             + [f"{n}://127.0.0.1:{p}" for n, p in self.ports.items()])
        self.extra_args = [
            "--listeners", listeners,
            "--ssl-certificate", str(certs / "server.pem"),
            "--ssl-key", str(certs / "server.key"),
            "--ssl-ca", str(certs / "ca.pem"),
            "--ssl-client-auth", client_auth,
            "--ssl-reload-interval-ms", "200",
            "--scram-user", f"{ALICE[0]}={ALICE[1]}",
            "--scram-user", f"{BOB[0]}={BOB[1]}:SCRAM-SHA-256",
            *extra,
        ]

    def addr(self, listener):
        return f"127.0.0.1:{self.ports[listener]}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory, certs):
    b = SecureBroker(tmp_path_factory.mktemp("secure") / "data", certs).start()
    yield b
    b.stop()


def sasl_ssl(broker, certs, mechanism="SCRAM-SHA-512", user=ALICE, **extra):
    return {"bootstrap.servers": broker.addr("SASL_SSL"), "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism, "sasl.username": user[0], "sasl.password": user[1],
            "ssl.ca.location": str(certs / "ca.pem"), **extra}


def mtls(broker, certs, cert="client", **extra):
    return {"bootstrap.servers": broker.addr("SSL"), "security.protocol": "SSL",
            "ssl.ca.location": str(certs / "ca.pem"),
            "ssl.certificate.location": str(certs / f"{cert}.pem"),
            "ssl.key.location": str(certs / f"{cert}.key"), **extra}


def round_trip(conf, topic, n=20):
    """Produces n records with `conf` and reads them back with the same settings."""
    p = Producer(conf)
    for i in range(n):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode())
    assert p.flush(30) == 0
    c = Consumer({**conf, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value().decode())
    c.close()
    assert got == [f"v{i}" for i in range(n)]


def test_confluent_kafka_over_sasl_ssl_with_scram_sha_512(broker, certs):
    conf = sasl_ssl(broker, certs)
    round_trip(conf, "sasl-ssl-512")
    # Metadata on the SASL_SSL listener names the brokers' SASL_SSL endpoints.
    md = AdminClient(conf).list_topics(timeout=10)
    assert [b.port for b in md.brokers.values()] == [broker.ports["SASL_SSL"]]


def test_kcat_over_sasl_ssl_with_scram_sha_512(broker, certs):
    opts = ["-b", broker.addr("SASL_SSL"), "-X", "security.protocol=SASL_SSL",
            "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", f"sasl.username={ALICE[0]}",
            "-X", f"sasl.password={ALICE[1]}", "-X", f"ssl.ca.location={certs / 'ca.pem'}"]
    subprocess.run(["kcat", *opts, "-P", "-t", "kcat-sasl"], input=b"one\ntwo\n",
                   check=True, timeout=60)
    out = subprocess.run(["kcat", *opts, "-C", "-t", "kcat-sasl", "-o", "beginning", "-e",
                          "-q"], check=True, capture_output=True, timeout=60).stdout
    assert out.split() == [b"one", b"two"]


def test_confluent_kafka_and_kcat_over_ssl_with_a_client_certificate(broker, certs):
    round_trip(mtls(broker, certs), "mtls")
    opts = ["-b", broker.addr("SSL"), "-X", "security.protocol=SSL",
            "-X", f"ssl.ca.location={certs / 'ca.pem'}",
            "-X", f"ssl.certificate.location={certs / 'client.pem'}",
            "-X", f"ssl.key.location={certs / 'client.key'}"]
    out = subprocess.run(["kcat", *opts, "-C", "-t", "mtls", "-o", "beginning", "-e", "-q"],
                         check=True, capture_output=True, timeout=60).stdout
    assert out.split() == [f"v{i}".encode() for i in range(20)]


def test_kafka_python_over_sasl_plaintext_with_plain_and_scram_sha_256(broker):
    from kafka import KafkaConsumer, KafkaProducer
    for mechanism, user in (("PLAIN", ALICE), ("PLAIN", BOB), ("SCRAM-SHA-256", BOB)):
        conf = dict(bootstrap_servers=broker.addr("SASL_PLAINTEXT"),
                    security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                    sasl_plain_username=user[0], sasl_plain_password=user[1])
        topic = f"kp-{mechanism.lower()}-{user[0]}"
        p = KafkaProducer(**conf)
        for i in range(10):
            p.send(topic, f"{mechanism}-{i}".encode()).get(timeout=30)
        p.close()
        c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000,
                          **conf)
        got = [m.value.decode() for m in c]
        c.close()
        assert got == [f"{mechanism}-{i}" for i in range(10)]


def test_a_wrong_password_fails_authentication(broker, certs):
    errors = []
    p = Producer({**sasl_ssl(broker, certs, user=("alice", "wrong")),
                  "error_cb": lambda e: errors.append(e)})
    with pytest.raises(KafkaException):
        p.list_topics(timeout=5)
    wait_until(lambda: (p.poll(0.1), errors)[1], timeout=30, what="an authentication error")
    assert any("Authentication failed" in e.str() for e in errors), [e.str() for e in errors]
    # BOB has no SCRAM-SHA-512 credential: the same failure.
    errors.clear()
    p3 = Producer({**sasl_ssl(broker, certs, user=BOB), "error_cb": lambda e: errors.append(e)})
    wait_until(lambda: (p3.poll(0.1), errors)[1], timeout=30,
               what="an authentication error for bob")
    round_trip(sasl_ssl(broker, certs), "after-wrong-passwords", n=3)


# ---- the wire, by hand -------------------------------------------------------------------

def frame(api_key, version, correlation_id, body):
    header = struct.pack(">hhih", api_key, version, correlation_id, 6) + b"python"
    msg = header + body
    return struct.pack(">i", len(msg)) + msg


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def kbytes(b):
    return struct.pack(">i", len(b)) + b


def read_frame(sock):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf
    head = exact(4)
    if head is None:
        return None
    return exact(struct.unpack(">i", head)[0])


def closed(sock, timeout=10):
    """Whether the broker closed the connection (EOF or reset) within `timeout`, reading past
    whatever it sent last (a TLS alert, say) but no Kafka response frame."""
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False
        if data == b"":
            return True


def handshake(sock, mechanism, cid=1):
    sock.sendall(frame(17, 1, cid, kstr(mechanism)))
    resp = read_frame(sock)
    assert resp is not None
    return struct.unpack(">h", resp[4:6])[0]


def authenticate(sock, token, cid=2):
    """SaslAuthenticate v0: (error code, error message, auth bytes)."""
    sock.sendall(frame(36, 0, cid, kbytes(token)))
    resp = read_frame(sock)
    assert resp is not None, "connection closed before the answer"
    code, mlen = struct.unpack(">hh", resp[4:8])
    message = resp[8:8 + mlen].decode() if mlen >= 0 else None
    rest = resp[8 + max(mlen, 0):]
    return code, message, rest[4:4 + struct.unpack(">i", rest[:4])[0]]


def metadata_request(cid=3):
    return frame(3, 1, cid, struct.pack(">i", -1))


def connect(broker, listener):
    return socket.create_connection(broker.addr(listener).split(":"), timeout=10)


def failed_authentications(broker):
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics",
                                     timeout=5).read().decode()
    return int(re.search(r"^kafka_server_socketservermetrics_failed_authentication_total (\d+)$", metrics, re.M).group(1))


def test_a_wrong_password_gets_sasl_authentication_failed_and_nothing_else(broker):
    s = connect(broker, "SASL_PLAINTEXT")
    assert handshake(s, "PLAIN") == 0
    failed = failed_authentications(broker)
    code, message, _ = authenticate(s, b"\0alice\0nope")
    assert code == 58, message  # SASL_AUTHENTICATION_FAILED
    assert "Invalid username or password" in message
    s.sendall(metadata_request())
    assert closed(s)
    assert failed_authentications(broker) == failed + 1


def test_requests_before_authentication_close_the_connection(broker):
    s = connect(broker, "SASL_PLAINTEXT")
    s.sendall(metadata_request())
    assert closed(s)
    # ApiVersions is allowed first, as clients send it before the handshake.
    s = connect(broker, "SASL_PLAINTEXT")
    s.sendall(frame(18, 0, 1, b""))
    assert read_frame(s) is not None
    assert handshake(s, "PLAIN", cid=2) == 0
    code, _, _ = authenticate(s, b"\0alice\0" + ALICE[1].encode(), cid=3)
    assert code == 0
    s.sendall(metadata_request(cid=4))
    assert read_frame(s) is not None


def test_sasl_frames_out_of_order_and_unknown_mechanisms_are_refused(broker):
    s = connect(broker, "SASL_PLAINTEXT")
    code, _, _ = authenticate(s, b"\0alice\0" + ALICE[1].encode())
    assert code == 34  # ILLEGAL_SASL_STATE
    assert closed(s)
    s = connect(broker, "SASL_PLAINTEXT")
    assert handshake(s, "GSSAPI") == 33  # UNSUPPORTED_SASL_MECHANISM
    assert closed(s)
    s = connect(broker, "SASL_PLAINTEXT")
    assert handshake(s, "PLAIN") == 0
    assert handshake(s, "PLAIN", cid=2) == 34
    assert closed(s)


def scram_client_final(first_bare, server_first, password, nonce_override=None):
    fields = dict(f.split("=", 1) for f in server_first.split(","))
    salt, iterations, nonce = base64.b64decode(fields["s"]), int(fields["i"]), fields["r"]
    nonce = nonce_override or nonce
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={nonce}"
    auth = f"{first_bare},{server_first},{without_proof}".encode()
    sig = hmac.new(stored, auth, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def test_scram_by_hand_and_a_client_final_with_a_wrong_nonce(broker):
    for tamper in (False, True):
        s = connect(broker, "SASL_PLAINTEXT")
        assert handshake(s, "SCRAM-SHA-256") == 0
        first_bare = "n=bob,r=fyko+d2lbbFgONRv9qkxdawL"
        code, _, server_first = authenticate(s, f"n,,{first_bare}".encode())
        assert code == 0
        server_first = server_first.decode()
        assert server_first.startswith("r=fyko+d2lbbFgONRv9qkxdawL")
        final = scram_client_final(first_bare, server_first, BOB[1],
                                   nonce_override="fyko+d2lbbFgONRv9qkxdawLXX" if tamper else None)
        code, message, server_final = authenticate(s, final, cid=3)
        if tamper:
            assert code == 58, message
            assert closed(s)
        else:
            assert code == 0, message
            assert server_final.startswith(b"v=")
            s.sendall(metadata_request(cid=4))
            assert read_frame(s) is not None


def test_an_oversize_sasl_token_closes_the_connection(broker, certs):
    s = connect(broker, "SASL_PLAINTEXT")
    assert handshake(s, "PLAIN") == 0
    try:
        s.sendall(frame(36, 0, 2, kbytes(b"\0" * (600 * 1024))))
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed while the token was still being sent
    assert closed(s)
    round_trip(sasl_ssl(broker, certs), "after-oversize", n=3)


def test_plain_tcp_and_garbage_on_a_tls_port_are_dropped(broker, certs):
    s = connect(broker, "SSL")
    s.sendall(frame(18, 0, 1, b""))  # a Kafka request where a TLS ClientHello belongs
    assert closed(s, timeout=20)  # at once, or when the 10 s handshake deadline passes
    s = connect(broker, "SASL_SSL")
    s.sendall(os.urandom(4096))
    assert closed(s)
    # A TLS client that never finishes its handshake is cut off too (after a timeout); the
    # broker meanwhile serves everyone else.
    idle = connect(broker, "SSL")
    round_trip(mtls(broker, certs), "after-garbage", n=3)
    idle.close()


def test_mtls_required_refuses_clients_without_a_trusted_certificate(tmp_path, certs):
    b = SecureBroker(tmp_path / "data", certs, client_auth="required").start()
    try:
        for cert in (None, "rogue"):
            conf = mtls(b, certs, cert=cert or "client")
            if cert is None:
                del conf["ssl.certificate.location"], conf["ssl.key.location"]
            errors = []
            p = Producer({**conf, "error_cb": lambda e: errors.append(e)})
            with pytest.raises(KafkaException):
                p.list_topics(timeout=5)
            wait_until(lambda: (p.poll(0.1), errors)[1], timeout=30, what=f"an error for {cert}")
        round_trip(mtls(b, certs), "mtls-required", n=3)
    finally:
        b.stop()


def peer_certificate_subject(addr, cafile):
    ctx = ssl.create_default_context(cafile=str(cafile))
    host, port = addr.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return dict(x[0] for x in s.getpeercert()["subject"])["commonName"]


def test_certificates_are_reloaded_without_dropping_connections(tmp_path, certs):
    live = tmp_path / "live"
    live.mkdir()
    for f in ("server.pem", "server.key", "ca.pem", "ca.key"):
        shutil.copy(certs / f, live / f)
    b = SecureBroker(tmp_path / "data", live)
    b.start()
    try:
        conf = sasl_ssl(b, certs)
        p = Producer(conf)
        p.produce("reload", b"before")
        assert p.flush(30) == 0
        assert peer_certificate_subject(b.addr("SSL"), certs / "ca.pem") == "localhost"
        make_cert(live, "next", "/CN=127.0.0.1", "ca", san="IP:127.0.0.1,DNS:localhost")
        shutil.copy(live / "next.key", live / "server.key.tmp")
        shutil.copy(live / "next.pem", live / "server.pem.tmp")
        os.replace(live / "server.key.tmp", live / "server.key")
        os.replace(live / "server.pem.tmp", live / "server.pem")
        wait_until(lambda: peer_certificate_subject(b.addr("SSL"), certs / "ca.pem")
                   == "127.0.0.1", timeout=20, what="the new certificate")
        # The producer's connection from before the reload still works.
        p.produce("reload", b"after")
        assert p.flush(30) == 0
    finally:
        b.stop()


def test_scram_users_are_managed_with_the_admin_api(broker, certs):
    admin = AdminClient(sasl_ssl(broker, certs))
    carol = ("carol", "carol-pw")
    futs = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512,
                                                                  8192), carol[1].encode()),
    ])
    for f in futs.values():
        f.result(timeout=30)
    described = admin.describe_user_scram_credentials(["carol"])
    info = described["carol"].result(timeout=30)
    assert [(i.mechanism, i.iterations) for i in info.scram_credential_infos] == \
        [(ScramMechanism.SCRAM_SHA_512, 8192)]
    everyone = admin.describe_user_scram_credentials().result(timeout=30)
    assert {"alice", "bob", "carol"} <= set(everyone)
    round_trip(sasl_ssl(broker, certs, user=carol), "carol", n=3)
    # PLAIN checks against the same store.
    s = connect(broker, "SASL_PLAINTEXT")
    assert handshake(s, "PLAIN") == 0
    assert authenticate(s, b"\0carol\0carol-pw")[0] == 0
    # Deleting it ends carol's logins; deleting it again is RESOURCE_NOT_FOUND.
    for f in admin.alter_user_scram_credentials([
            UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_512)]).values():
        f.result(timeout=30)
    errors = []
    p = Producer({**sasl_ssl(broker, certs, user=carol), "error_cb": lambda e: errors.append(e)})
    wait_until(lambda: (p.poll(0.1), errors)[1], timeout=30, what="carol refused")
    with pytest.raises(KafkaException) as e:
        for f in admin.alter_user_scram_credentials([
                UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_512)]).values():
            f.result(timeout=30)
    assert e.value.args[0].name() == "RESOURCE_NOT_FOUND"
    with pytest.raises(KafkaException) as e:
        admin.describe_user_scram_credentials(["nobody"])["nobody"].result(timeout=30)
    assert e.value.args[0].name() == "RESOURCE_NOT_FOUND"
    with pytest.raises(KafkaException) as e:
        for f in admin.alter_user_scram_credentials([
                UserScramCredentialUpsertion("dave", ScramCredentialInfo(
                    ScramMechanism.SCRAM_SHA_256, 100), b"pw")]).values():
            f.result(timeout=30)
    assert e.value.args[0].name() == "UNACCEPTABLE_CREDENTIAL"


def test_sessions_expire_and_clients_reauthenticate(tmp_path, certs):
    """KIP-368: with connections.max.reauth.ms the session has a lifetime; librdkafka
    re-authenticates on the same connection, a client that does not is disconnected."""
    b = SecureBroker(tmp_path / "data", certs,
                     extra=["--connections-max-reauth-ms", "1500"]).start()
    try:
        conf = {"bootstrap.servers": b.addr("SASL_PLAINTEXT"),
                "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": BOB[0], "sasl.password": BOB[1]}
        p = Producer(conf)
        deadline = time.monotonic() + 6
        sent = 0
        while time.monotonic() < deadline:
            p.produce("reauth", str(sent).encode())
            sent += 1
            p.poll(0.1)
        assert p.flush(30) == 0
        # librdkafka re-authenticated on its connections (not only reconnected).
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics",
                                         timeout=5).read().decode()
        reauths = int(re.search(r"^kafka_server_socketservermetrics_successful_reauthentication_total (\d+)$", metrics,
                                re.M).group(1))
        assert reauths >= 2, metrics
        s = socket.create_connection(("127.0.0.1", b.ports["SASL_PLAINTEXT"]), timeout=10)
        assert handshake(s, "PLAIN") == 0
        code, _, _ = authenticate(s, b"\0bob\0" + BOB[1].encode())
        assert code == 0
        s.sendall(metadata_request())
        assert read_frame(s) is not None
        time.sleep(2)
        s.sendall(metadata_request(cid=5))
        assert closed(s)
    finally:
        b.stop()


def test_the_strom_client_reauthenticates_on_its_connection(tmp_path, certs):
    """KIP-368 in the strom client: a producer that lives through several session lifetimes
    authenticates again on the same connection and loses nothing."""
    from test_strom_client import strom_binary
    b = SecureBroker(tmp_path / "data", certs,
                     extra=["--connections-max-reauth-ms", "1500"]).start()
    try:
        def metric(name):
            text = urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics",
                                          timeout=5).read().decode()
            return int(re.search(rf"^{name} (\d+)$", text, re.M).group(1))

        sasl = ["-b", b.addr("SASL_PLAINTEXT"), "-X", "security.protocol=SASL_PLAINTEXT",
                "-X", "sasl.mechanism=SCRAM-SHA-256", "-X", f"sasl.username={BOB[0]}",
                "-X", f"sasl.password={BOB[1]}"]
        subprocess.run([strom_binary(), *sasl, "topics", "create", "strom-reauth"], check=True,
                       capture_output=True, timeout=60)
        before = metric("kafka_server_socketservermetrics_successful_reauthentication_total")
        producer = subprocess.Popen([strom_binary(), *sasl, "produce", "strom-reauth"],
                                    stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(30):  # 6 s: four session lifetimes
            producer.stdin.write(f"line-{i}\n")
            producer.stdin.flush()
            time.sleep(0.2)
        producer.stdin.close()
        assert producer.wait(timeout=60) == 0, producer.stderr.read()
        assert metric("kafka_server_socketservermetrics_successful_reauthentication_total") >= before + 2
        out = subprocess.run([strom_binary(), *sasl, "consume", "strom-reauth",
                              "--from-beginning", "--count", "30"],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.split() == [f"line-{i}" for i in range(30)], out.stderr
    finally:
        b.stop()


def test_a_kafka_server_properties_file_with_secured_listeners_and_pem_stores(tmp_path, certs):
    """--config with Kafka's names: several listeners (the controller's left out), a protocol
    map, PEM key and trust stores, SASL settings; a SASL_SSL client then connects."""
    keystore = tmp_path / "broker-keystore.pem"
    keystore.write_text((certs / "server.pem").read_text() + (certs / "server.key").read_text())
    b = Broker(tmp_path / "data")
    sasl_ssl_port = free_port()
    props = tmp_path / "server.properties"
    props.write_text("\n".join([
        "process.roles=broker",
        f"listeners=PLAINTEXT://127.0.0.1:{b.kafka_port},SECURE://127.0.0.1:{sasl_ssl_port},"
        "CONTROLLER://:19093",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL,CONTROLLER:PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={keystore}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={certs / 'ca.pem'}",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "",
    ]))
    b.extra_args = ["--config", str(props), "--scram-user", f"{ALICE[0]}={ALICE[1]}"]
    b.start()
    try:
        conf = {"bootstrap.servers": f"127.0.0.1:{sasl_ssl_port}", "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": ALICE[0],
                "sasl.password": ALICE[1], "ssl.ca.location": str(certs / "ca.pem")}
        round_trip(conf, "from-properties", n=5)
    finally:
        b.stop()


def test_sasl_handshake_v0_takes_raw_tokens(broker):
    """Clients from before KIP-152 send the tokens as bare frames after SaslHandshake v0."""
    s = connect(broker, "SASL_PLAINTEXT")
    s.sendall(frame(17, 0, 1, kstr("PLAIN")))
    resp = read_frame(s)
    assert struct.unpack(">h", resp[4:6])[0] == 0
    token = b"\0alice\0" + ALICE[1].encode()
    s.sendall(struct.pack(">i", len(token)) + token)
    assert read_frame(s) == b""
    s.sendall(metadata_request())
    assert read_frame(s) is not None
    s = connect(broker, "SASL_PLAINTEXT")
    s.sendall(frame(17, 0, 1, kstr("PLAIN")))
    read_frame(s)
    token = b"\0alice\0no"
    s.sendall(struct.pack(">i", len(token)) + token)
    assert closed(s)


# ---- Strom's own client and CLI, and brokers talking to each other securely ---------------

def strom_cli(bootstrap, *args, props=(), stdin=None, check=True):
    from test_strom_client import strom_binary
    cmd = [strom_binary(), "--bootstrap-server", bootstrap]
    for p in props:
        cmd += ["-X", p]
    r = subprocess.run([*cmd, *args], input=stdin, capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"strom {' '.join(args)} failed: {r.stderr}")
    return r


def test_the_strom_cli_over_sasl_ssl_and_mtls_and_its_users_command(broker, certs, tmp_path):
    ca = f"ssl.ca.location={certs / 'ca.pem'}"
    admin_props = ["security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512",
                   f"sasl.username={ALICE[0]}", f"sasl.password={ALICE[1]}", ca]
    sasl = broker.addr("SASL_SSL")
    strom_cli(sasl, "topics", "create", "cli-secure", "--partitions", "2", props=admin_props)
    strom_cli(sasl, "produce", "cli-secure", props=admin_props, stdin="a\nb\nc\n")
    # The same settings from a properties file, as kafka-*.sh --command-config takes them.
    conf = tmp_path / "client.properties"
    conf.write_text("security.protocol=SSL\n"
                    f"ssl.truststore.location={certs / 'ca.pem'}\n"
                    f"ssl.certificate.location={certs / 'client.pem'}\n"
                    f"ssl.key.location={certs / 'client.key'}\n")
    out = strom_cli(broker.addr("SSL"), "--command-config", str(conf), "consume", "cli-secure",
                    "--from-beginning").stdout
    assert sorted(out.split()) == ["a", "b", "c"]
    # Users: add dave with one mechanism, list, log in as dave, remove.
    strom_cli(sasl, "users", "add", "dave", "--password", "dave-pw", "--mechanism",
              "SCRAM-SHA-256", props=admin_props)
    listed = strom_cli(sasl, "users", "list", props=admin_props).stdout
    assert "dave\tSCRAM-SHA-256\t8192" in listed
    assert "alice\tSCRAM-SHA-512\t4096" in listed
    dave = ["security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-256", "sasl.username=dave",
            "sasl.password=dave-pw", ca]
    assert "cli-secure" in strom_cli(sasl, "topics", "list", props=dave).stdout
    strom_cli(sasl, "users", "remove", "dave", props=admin_props)
    r = strom_cli(sasl, "topics", "list", props=dave, check=False)
    assert r.returncode != 0 and "SASL_AUTHENTICATION_FAILED" in r.stderr, r.stderr
    # A wrong password and a bad setting are one clear line each.
    r = strom_cli(sasl, "topics", "list", props=[*dave[:3], "sasl.password=x", ca], check=False)
    assert r.returncode == 1 and "authentication failed" in r.stderr, r.stderr
    r = strom_cli(sasl, "topics", "list", props=["security.protocol=TLS"], check=False)
    assert r.returncode == 1 and "security.protocol" in r.stderr, r.stderr


def test_brokers_replicate_over_sasl_ssl_with_client_certificates(tmp_path, certs):
    """Three brokers whose inter-broker listener is SASL_SSL (SCRAM-SHA-512, and mTLS):
    followers fetch over it, the ISR holds all three, and a leader kill loses nothing."""
    from conftest import Cluster
    c = Cluster(tmp_path, broker_args=[])
    for b in c.brokers:
        b.secure_port = free_port()
        b.extra_args = [
            "--broker-heartbeat-interval-ms", "250", "--replica-lag-time-max-ms", "3000",
            "--listeners", f"PLAINTEXT://127.0.0.1:{b.kafka_port},"
                           f"SASL_SSL://127.0.0.1:{b.secure_port}",
            "--inter-broker-listener-name", "SASL_SSL",
            "--ssl-certificate", str(certs / "server.pem"), "--ssl-key", str(certs / "server.key"),
            "--ssl-ca", str(certs / "ca.pem"), "--ssl-client-auth", "requested",
            "--scram-user", "broker=broker-secret", "--scram-user", f"{ALICE[0]}={ALICE[1]}",
            "--inter-broker-sasl-username", "broker", "--inter-broker-sasl-password",
            "broker-secret",
        ]
    c.start()
    try:
        conf = {"bootstrap.servers": ",".join(f"127.0.0.1:{b.secure_port}" for b in c.brokers),
                "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": ALICE[0], "sasl.password": ALICE[1],
                "ssl.ca.location": str(certs / "ca.pem")}
        admin = AdminClient(conf)
        for f in admin.create_topics([NewTopic("replicated", 1, 3)]).values():
            f.result(timeout=30)
        p = Producer({**conf, "acks": "all", "enable.idempotence": True})
        for i in range(200):
            p.produce("replicated", str(i).encode())
        assert p.flush(60) == 0
        wait_until(lambda: sorted(c.brokers[0].http("/v1/topics/replicated")["partitions"][0]
                                  ["isr"]) == [1, 2, 3], timeout=30, what="all three in the ISR")
        leader = c.brokers[0].http("/v1/topics/replicated")["partitions"][0]["leader"]
        log = re.sub(r"\x1b\[[0-9;]*m", "", c.brokers[leader - 1].log_path.read_text())
        assert "principal=User:broker" in log, "followers authenticated as the broker user"
        c.brokers[leader - 1].kill9()
        rest = [b for i, b in enumerate(c.brokers) if i != leader - 1]
        cons = Consumer({**conf, "bootstrap.servers": ",".join(
            f"127.0.0.1:{b.secure_port}" for b in rest), "group.id": "after-kill",
            "auto.offset.reset": "earliest"})
        cons.subscribe(["replicated"])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 200 and time.monotonic() < deadline:
            m = cons.poll(0.5)
            if m is not None and not m.error():
                got.append(int(m.value()))
        cons.close()
        assert sorted(got) == list(range(200))
    finally:
        c.stop()
