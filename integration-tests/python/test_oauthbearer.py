"""OAUTHBEARER with confluent-kafka and by hand: JWTs signed with RSA keys (made with the
openssl CLI), checked by the broker against a JWKS file; the token's subject is the principal
ACLs apply to; expired, wrongly addressed, unknown-key and symmetric tokens fail with
SASL_AUTHENTICATION_FAILED; a new key added to the JWKS file works without a restart."""

import base64
import hashlib
import hmac
import json
import socket
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   NewTopic, ResourcePatternType, ResourceType)

from conftest import Broker, free_port, wait_until
from test_security import authenticate, closed, failed_authentications, handshake

ISSUER = "https://idp.strom.test"
AUDIENCE = "strom"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Idp:
    """A token issuer: RSA keys in PEM files and the JWKS of their public halves."""

    def __init__(self, root):
        self.root = root
        self.jwks_path = root / "jwks.json"
        self.keys = {}

    def new_key(self, kid, publish=True):
        path = self.root / f"{kid}.pem"
        subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True,
                       capture_output=True)
        modulus = subprocess.run(["openssl", "rsa", "-in", str(path), "-noout", "-modulus"],
                                 check=True, capture_output=True, text=True).stdout
        n = bytes.fromhex(modulus.strip().split("=", 1)[1])
        self.keys[kid] = (path, {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                                 "n": b64url(n), "e": "AQAB"})
        if publish:
            self.publish()

    def publish(self, kids=None):
        keys = [jwk for kid, (_, jwk) in self.keys.items() if kids is None or kid in kids]
        self.jwks_path.write_text(json.dumps({"keys": keys}))

    def token(self, kid, sub="alice", lifetime=3600, aud=AUDIENCE, iss=ISSUER, alg="RS256"):
        now = int(time.time())
        claims = {"sub": sub, "iat": now, "exp": now + lifetime, "iss": iss, "aud": aud,
                  "scope": "kafka"}
        header = {"alg": alg, "typ": "JWT", "kid": kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        if alg == "HS256":
            sig = hmac.new(b"shared-secret", signing_input.encode(), hashlib.sha256).digest()
        else:
            sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.keys[kid][0])],
                                 input=signing_input.encode(), check=True,
                                 capture_output=True).stdout
        return f"{signing_input}.{b64url(sig)}", now + lifetime


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    i = Idp(tmp_path_factory.mktemp("idp"))
    i.new_key("k1")
    i.new_key("stranger", publish=False)
    i.publish(["k1"])
    return i


@pytest.fixture(scope="module")
def broker(tmp_path_factory, idp):
    b = Broker(tmp_path_factory.mktemp("oauth") / "data")
    b.sasl_port = free_port()
    b.extra_args = [
        "--listeners", f"PLAINTEXT://127.0.0.1:{b.kafka_port},SASL_PLAINTEXT://127.0.0.1:{b.sasl_port}",
        "--sasl-enabled-mechanisms", "SCRAM-SHA-512,OAUTHBEARER",
        "--sasl-oauthbearer-jwks-endpoint-url", f"file://{idp.jwks_path}",
        "--sasl-oauthbearer-expected-audience", AUDIENCE,
        "--sasl-oauthbearer-expected-issuer", ISSUER,
        "--authorizer", "--super-users", "User:ANONYMOUS",
    ]
    b.start()
    yield b
    b.stop()


def oauth_conf(broker, token_and_expiry, **extra):
    return {"bootstrap.servers": f"127.0.0.1:{broker.sasl_port}",
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
            "oauth_cb": lambda _config: token_and_expiry, **extra}


def produce(conf, topic):
    p = Producer({**conf, "message.timeout.ms": 15000})
    p.poll(0)  # runs oauth_cb
    errors = []
    p.produce(topic, b"v", on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    return errors[0] if errors else "no delivery report"


def test_a_signed_token_authenticates_confluent_kafka_as_its_subject(broker, idp):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in ("oauth-orders", "payments")]).values():
        f.result(timeout=30)
    for f in admin.create_acls([AclBinding(ResourceType.TOPIC, "oauth-", ResourcePatternType.PREFIXED,
                                           "User:alice", "*", AclOperation.WRITE,
                                           AclPermissionType.ALLOW)]).values():
        f.result(timeout=30)
    conf = oauth_conf(broker, idp.token("k1", sub="alice"))
    assert produce(conf, "oauth-orders") is None
    err = produce(conf, "payments")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err


@pytest.mark.parametrize("case", ["expired", "wrong-audience", "wrong-issuer", "unknown-key",
                                  "symmetric", "no-subject"])
def test_bad_tokens_fail_with_sasl_authentication_failed(broker, idp, case):
    token, _ = {
        "expired": lambda: idp.token("k1", lifetime=-120),
        "wrong-audience": lambda: idp.token("k1", aud="someone-else"),
        "wrong-issuer": lambda: idp.token("k1", iss="https://evil.test"),
        "unknown-key": lambda: idp.token("stranger"),
        "symmetric": lambda: idp.token("k1", alg="HS256"),
        "no-subject": lambda: idp.token("k1", sub=""),
    }[case]()
    failed = failed_authentications(broker)
    s = socket.create_connection(("127.0.0.1", broker.sasl_port), timeout=10)
    assert handshake(s, "OAUTHBEARER") == 0
    # RFC 7628: the error comes as a challenge, the client's lone separator ends the exchange.
    code, _, challenge = authenticate(s, f"n,,\x01auth=Bearer {token}\x01\x01".encode())
    assert code == 0 and json.loads(challenge) == {"status": "invalid_token"}
    code, message, _ = authenticate(s, b"\x01", cid=3)
    assert code == 58 and message.startswith("Authentication failed"), (code, message)
    assert closed(s)
    assert failed_authentications(broker) == failed + 1

    # confluent-kafka reports it as an authentication error.
    errors = []
    p = Producer({**oauth_conf(broker, (token, time.time() + 60)),
                  "error_cb": lambda e: errors.append(e)})
    wait_until(lambda: (p.poll(0.1), errors)[1], timeout=30, what="an authentication error")
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), [e.str() for e in errors]


def test_a_key_added_to_the_jwks_file_is_used_without_a_restart(broker, idp):
    idp.new_key("k2")  # published with k1
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic("oauth-rotated", 1, 1)]).values():
        f.result(timeout=30)
    assert produce(oauth_conf(broker, idp.token("k2", sub="alice")), "oauth-rotated") is None
