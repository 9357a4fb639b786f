"""Issue 11's end-to-end check: a RabbitMQ rabbitmq.conf with TCP and TLS listeners,
verify_peer, EXTERNAL and load_definitions of a real RabbitMQ export starts our broker,
and a fixed set of clients gets in or is refused. `who_gets_in` is the client side; run
as a script it prints the same table for any broker, e.g. the reference RabbitMQ started
with the same rabbitmq.conf lines (see the note at the bottom), so the two can be
compared.
"""

from __future__ import annotations

import json
import ssl
import sys
from pathlib import Path

import pika
import pika.exceptions

from certs import CA
from helpers import BrokerProcess, free_port

FIXTURE = Path(__file__).parent / "fixtures" / "rabbitmq-definitions.json"
WAIT = 10.0

# client name -> what it gets on the broker described by rabbitmq_conf() and FIXTURE
EXPECTED = {
    "plain PLAIN guest": "open",
    "plain PLAIN alice to vhost app": "open",
    "plain AMQPLAIN alice": "open",
    "plain PLAIN alice wrong password": "refused 403",
    "plain PLAIN no such user": "refused 403",
    "plain PLAIN bob to / (no permissions there)": "refused 530",
    "plain PLAIN alice to a missing vhost": "refused 530",
    "plain EXTERNAL": "no common mechanism",
    "tls PLAIN alice without a certificate": "open",
    "tls EXTERNAL certificate CN=certuser": "open",
    "tls EXTERNAL certificate CN=stranger": "refused 403",
    "tls EXTERNAL without a certificate": "refused 403",
    "tls certificate from another CA": "tls refused",
}


def rabbitmq_conf(directory: Path, ca: CA, amqp_port: int, tls_port: int) -> str:
    server = ca.server()
    return "\n".join([
        f"listeners.tcp.default = {amqp_port}",
        f"listeners.ssl.default = {tls_port}",
        f"ssl_options.cacertfile = {ca.certfile}",
        f"ssl_options.certfile = {server.certfile}",
        f"ssl_options.keyfile = {server.keyfile}",
        "ssl_options.verify = verify_peer",
        "ssl_options.fail_if_no_peer_cert = false",
        "auth_mechanisms.1 = PLAIN",
        "auth_mechanisms.2 = AMQPLAIN",
        "auth_mechanisms.3 = EXTERNAL",
        "ssl_cert_login_from = common_name",
        f"load_definitions = {FIXTURE}",
        "loopback_users = none",
        "",
    ])


def _attempt(params: pika.ConnectionParameters) -> str:
    try:
        conn = pika.BlockingConnection(params)
    except pika.exceptions.ProbableAuthenticationError:
        return "refused 403"
    except pika.exceptions.ProbableAccessDeniedError:
        return "refused 530"
    except pika.exceptions.AuthenticationError:
        return "no common mechanism"
    except pika.exceptions.ConnectionClosedByBroker as exc:
        return f"refused {exc.reply_code}"
    except pika.exceptions.AMQPConnectionError as exc:
        cause = repr(exc)
        return "tls refused" if "SSL" in cause or "ssl" in cause or "TLS" in cause \
            else f"failed: {cause[:120]}"
    conn.close()
    return "open"


def who_gets_in(host: str, amqp_port: int, tls_port: int, ca: CA, other_ca: CA) -> dict[str, str]:
    def plain(user: str, password: str, vhost: str = "/",
              mechanism: str = "PLAIN") -> pika.ConnectionParameters:
        creds: pika.credentials.VALID_TYPES
        creds = (pika.credentials.ExternalCredentials() if mechanism == "EXTERNAL"
                 else pika.PlainCredentials(user, password))
        params = pika.ConnectionParameters(host=host, port=amqp_port, virtual_host=vhost,
                                           credentials=creds, socket_timeout=WAIT,
                                           blocked_connection_timeout=WAIT,
                                           connection_attempts=1)
        return params

    def tls(cert_cn: str | None, issuer: CA = ca, user: str = "", password: str = "",
            external: bool = True) -> pika.ConnectionParameters:
        context = ssl.create_default_context(cafile=str(ca.certfile))
        if cert_cn is not None:
            client = issuer.client(f"client-{cert_cn}", cert_cn)
            context.load_cert_chain(str(client.certfile), str(client.keyfile))
        creds: pika.credentials.VALID_TYPES = (
            pika.credentials.ExternalCredentials() if external
            else pika.PlainCredentials(user, password))
        return pika.ConnectionParameters(host=host, port=tls_port, credentials=creds,
                                         ssl_options=pika.SSLOptions(context, "localhost"),
                                         socket_timeout=WAIT, connection_attempts=1)

    amqplain = plain("alice", "alice-secret")
    # pika picks the mechanism from the credentials; AMQPLAIN through a raw table login
    amqplain.credentials = _AmqPlain("alice", "alice-secret")
    attempts = {
        "plain PLAIN guest": plain("guest", "guest"),
        "plain PLAIN alice to vhost app": plain("alice", "alice-secret", "app"),
        "plain AMQPLAIN alice": amqplain,
        "plain PLAIN alice wrong password": plain("alice", "wrong"),
        "plain PLAIN no such user": plain("nobody", "x"),
        "plain PLAIN bob to / (no permissions there)": plain("bob", "b0b pässword"),
        "plain PLAIN alice to a missing vhost": plain("alice", "alice-secret", "nowhere"),
        "plain EXTERNAL": plain("", "", mechanism="EXTERNAL"),
        "tls PLAIN alice without a certificate": tls(None, user="alice",
                                                     password="alice-secret", external=False),
        "tls EXTERNAL certificate CN=certuser": tls("certuser"),
        "tls EXTERNAL certificate CN=stranger": tls("stranger"),
        "tls EXTERNAL without a certificate": tls(None),
        "tls certificate from another CA": tls("certuser", issuer=other_ca),
    }
    return {name: _attempt(params) for name, params in attempts.items()}


class _AmqPlain(pika.PlainCredentials):
    """pika's PLAIN credentials sent as AMQPLAIN (a LOGIN/PASSWORD field table)."""

    TYPE = "AMQPLAIN"

    def response_for(self, start: object) -> tuple[str | None, bytes | None]:
        mechanisms = getattr(start, "mechanisms", b"")
        if isinstance(mechanisms, bytes):
            mechanisms = mechanisms.decode()
        if "AMQPLAIN" not in str(mechanisms).split():
            return None, None
        from pamqp import encode
        table = encode.field_table({"LOGIN": self.username, "PASSWORD": self.password})
        return "AMQPLAIN", table[4:]


def test_a_rabbitmq_conf_with_tls_external_and_definitions(tmp_path: Path) -> None:
    ca, other_ca = CA(tmp_path / "ca"), CA(tmp_path / "other", "Other CA")
    amqp_port, tls_port = free_port(), free_port()
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(rabbitmq_conf(tmp_path, ca, amqp_port, tls_port))
    broker = BrokerProcess(tmp_path / "data", tmp_path / "broker.log", port=amqp_port,
                           extra_args=("--config", str(conf)))
    broker.start()
    try:
        got = who_gets_in("127.0.0.1", amqp_port, tls_port, ca, other_ca)
    finally:
        broker.stop()
    assert got == EXPECTED, json.dumps(got, indent=1)
    log = (tmp_path / "broker.log").read_text()
    assert "Traceback" not in log
    assert "authentication failed" in log and "vhost access refused" in log


def against_reference(directory: Path) -> dict[str, str]:
    """The same clients against the reference RabbitMQ started with the same rabbitmq.conf
    lines (../shared/tools/reference-rabbitmq.sh; it must not be running already)."""
    import os
    import subprocess
    script = Path(__file__).resolve().parents[2] / "shared" / "tools" / "reference-rabbitmq.sh"
    directory.mkdir(parents=True, exist_ok=True)
    ca, other_ca = CA(directory / "ca"), CA(directory / "other", "Other CA")
    amqp_port, tls_port = 5673, 5674
    # the rabbitmq user must read the files: the listeners come from the script's flags
    lines = [line for line in rabbitmq_conf(directory, ca, amqp_port, tls_port).splitlines()
             if not line.startswith(("listeners.tcp", "loopback_users"))]
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = {**os.environ, "REF_RMQ_CONF": "\n".join(lines)}
    subprocess.run(["bash", str(script), "start", str(amqp_port)], env=env, check=True)
    try:
        return who_gets_in("127.0.0.1", amqp_port, tls_port, ca, other_ca)
    finally:
        subprocess.run(["bash", str(script), "stop"], check=False)


if __name__ == "__main__":
    # PYTHONPATH=. python tests/test_rabbitmq_conf_e2e.py DIR: the table on the reference
    # RabbitMQ 3.10 (same on 2026-11-30: no differences),
    # and where it differs from EXPECTED (what our broker gives, checked by the test)
    table = against_reference(Path(sys.argv[1]))
    print(json.dumps(table, indent=1))
    diff = {k: (v, EXPECTED.get(k)) for k, v in table.items() if EXPECTED.get(k) != v}
    print("differences (RabbitMQ, ours):", json.dumps(diff, indent=1))
    sys.exit(1 if diff else 0)
