"""TLS: the amqps listener (amqp_broker.server) and amqp_broker.tls (the SSLContext from the
configuration, the EXTERNAL login name from a client certificate).

Certificates are made per test (tests/certs.py). The broker runs in this process, in a
thread of its own (Server(handle_signals=False) behind an anyio blocking portal), so a
test can shorten tls.HANDSHAKE_TIMEOUT and read the server's log lines directly; the
clients are real (pika, the ssl module, raw sockets) over 127.0.0.1. The last tests run
the command line as a process (BrokerProcess) with a configuration file. Every wait is
bounded; nothing asserts on elapsed time.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from anyio.from_thread import start_blocking_portal
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from amqp_broker import tls
from amqp_broker.config import Config
from amqp_broker.connection import Connection
from amqp_broker.server import Server

from certs import CA, Issued, name
from helpers import PROTOCOL_HEADER, BrokerProcess, consume_n, free_port, port_open

WAIT = 5.0  # bound on any one wait


# --- the broker in a thread -------------------------------------------------------------

class LogRecorder:
    """Stands in for the server's structlog logger: records (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def record(event: str, *args: Any, **fields: Any) -> None:
            self.lines.append((level, event, fields))
        return record

    def events(self, event: str) -> list[dict[str, Any]]:
        return [fields for _, e, fields in list(self.lines) if e == event]


@contextmanager
def broker(config: Config) -> Iterator[tuple[Server, LogRecorder]]:
    server = Server(config, handle_signals=False)
    log = LogRecorder()
    server.log = server.broker.log = log
    started: list[Server] = []
    with start_blocking_portal() as portal:
        future = portal.start_task_soon(server.run, started.append)
        try:
            _wait_for(lambda: bool(started) or future.done(), "the broker to listen")
            if future.done():
                future.result()  # raises what stopped it
            yield server, log
        finally:
            portal.call(server.stop)
            future.result(timeout=WAIT)


def _wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return CA(tmp_path / "pki")


@pytest.fixture
def server_cert(ca: CA) -> Issued:
    return ca.server()


def tls_config(ca: CA, server_cert: Issued, **fields: Any) -> Config:
    settings: dict[str, Any] = {
        "host": "127.0.0.1", "port": 0, "data_dir": None, "metrics_port": 0,
        "tls_port": free_port(), "tls_certfile": str(server_cert.certfile),
        "tls_keyfile": str(server_cert.keyfile), "tls_cacertfile": str(ca.certfile)}
    return Config(**{**settings, **fields})


def client_context(ca: CA, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.certfile))
    if client is not None:
        context.load_cert_chain(str(client.certfile), str(client.keyfile))
    return context


def pika_tls(server: Server, context: ssl.SSLContext, **kwargs: Any) -> pika.BlockingConnection:
    assert server.tls_port
    return pika.BlockingConnection(pika.ConnectionParameters(
        host="127.0.0.1", port=server.tls_port,
        ssl_options=pika.SSLOptions(context, server_hostname="localhost"),
        credentials=pika.PlainCredentials("guest", "guest"), socket_timeout=WAIT,
        stack_timeout=WAIT, blocked_connection_timeout=WAIT, connection_attempts=1, **kwargs))


def open_connections(server: Server) -> list[Connection]:
    return [c for c in list(server.broker.connections) if isinstance(c, Connection)]


def socket_closed(sock: socket.socket) -> bool:
    """True once the broker closed the socket (EOF or reset) within WAIT; data is dropped."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def no_tracebacks(log: LogRecorder) -> None:
    """Nothing logged with a traceback, and no error but a failed TLS handshake."""
    bad = [line for line in list(log.lines) if line[0] in ("exception", "critical")
           or (line[0] == "error" and line[1] != "TLS handshake failed")]
    assert not bad, bad


# --- the listener -----------------------------------------------------------------------

def test_pika_over_tls_publishes_and_consumes(ca: CA, server_cert: Issued) -> None:
    """verify_none: pika over TLS declares, publishes and consumes; the connection knows it
    is TLS (and has no certificate for EXTERNAL); the plain port serves on beside it."""
    with broker(tls_config(ca, server_cert)) as (server, log):
        assert server.tls_port and server.tls_port != server.port
        listening = log.events("listening")
        assert listening and listening[0]["amqps_port"] == server.tls_port
        # the start-up line also says which users and vhosts were loaded
        assert listening[0]["users"] == 1 and listening[0]["vhosts"] == "/"
        conn = pika_tls(server, client_context(ca))
        try:
            ch = conn.channel()
            ch.queue_declare("tls-q")
            for i in range(3):
                ch.basic_publish("", "tls-q", f"m{i}".encode())
            got = consume_n(ch, "tls-q", 3, timeout=WAIT, auto_ack=True)
            assert [body for _, _, body in got] == [b"m0", b"m1", b"m2"]
            (c,) = open_connections(server)
            assert c.tls is True
            assert c.peer_cert_login is None
            assert c.peer_cert_refusal == tls.NO_PEER_CERT
            session = c.tls_session
            assert session.protocol in ("tlsv1.2", "tlsv1.3") and session.cipher
            plain = pika.BlockingConnection(pika.ConnectionParameters(
                host="127.0.0.1", port=server.port, socket_timeout=WAIT,
                connection_attempts=1))
            try:
                plain_conn = [x for x in open_connections(server) if x is not c]
                assert len(plain_conn) == 1
                assert plain_conn[0].tls is False
                assert plain_conn[0].peer_cert_refusal == tls.NOT_TLS
                plain.channel().queue_declare("tls-q", passive=True)
            finally:
                plain.close()
        finally:
            conn.close()
        no_tracebacks(log)


def test_fail_if_no_peer_cert_refuses_a_client_without_one(ca: CA, server_cert: Issued) -> None:
    config = tls_config(ca, server_cert, tls_verify_peer=True, tls_fail_if_no_peer_cert=True)
    with broker(config) as (server, log):
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika_tls(server, client_context(ca)).close()
        _wait_for(lambda: log.events("TLS handshake failed"), "the handshake failure log")
        (failure,) = log.events("TLS handshake failed")
        assert "certificate" in failure["error"]
        assert failure["peer"].startswith("127.0.0.1:")
        assert not open_connections(server)
        no_tracebacks(log)


def test_verified_client_certificate_gives_the_login_name(ca: CA, server_cert: Issued) -> None:
    config = tls_config(ca, server_cert, tls_verify_peer=True, tls_fail_if_no_peer_cert=True)
    client = ca.client()
    with broker(config) as (server, log):
        conn = pika_tls(server, client_context(ca, client))
        try:
            conn.channel().queue_declare("", exclusive=True)
            (c,) = open_connections(server)
            assert c.tls is True
            assert c.peer_cert_login == "CN=client,O=Example,C=GB"
            assert not c.peer_cert_refusal
            session = c.tls_session
            assert session.peer_cert_subject == "CN=client,O=Example,C=GB"
            assert session.peer_cert_issuer == "CN=Test CA,O=amqp-broker tests"
        finally:
            conn.close()
        assert not log.events("TLS handshake failed")


def test_common_name_login_and_optional_certificate(ca: CA, server_cert: Issued) -> None:
    """verify_peer without fail_if_no_peer_cert: a client may come without a certificate;
    with one, ssl_cert_login_from=common_name gives its CN."""
    config = tls_config(ca, server_cert, tls_verify_peer=True,
                        ssl_cert_login_from="common_name")
    with broker(config) as (server, log):
        for client, login in ((ca.client(common_name="alice"), "alice"), (None, None)):
            conn = pika_tls(server, client_context(ca, client))
            try:
                (c,) = open_connections(server)
                assert c.peer_cert_login == login
                if client is None:
                    assert c.peer_cert_refusal == tls.NO_PEER_CERT
                else:
                    assert not c.peer_cert_refusal
            finally:
                conn.close()
            _wait_for(lambda: not open_connections(server), "the connection to end")


def test_certificate_from_another_ca_is_refused(ca: CA, server_cert: Issued,
                                                tmp_path: Path) -> None:
    stranger = CA(tmp_path / "other", common_name="Other CA").client()
    config = tls_config(ca, server_cert, tls_verify_peer=True)
    with broker(config) as (server, log):
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika_tls(server, client_context(ca, stranger)).close()
        _wait_for(lambda: log.events("TLS handshake failed"), "the handshake failure log")
        assert "certificate" in log.events("TLS handshake failed")[0]["error"]
        no_tracebacks(log)


NOT_TLS_EVENT = "client is connecting to the amqps listener without using TLS"


def test_plain_amqp_to_the_tls_port_is_closed(ca: CA, server_cert: Issued) -> None:
    """A plain AMQP client on the amqps port: the socket is closed (no TLS bytes sent to
    it) and one warning names the peer, as RabbitMQ's "without using TLS" line."""
    with broker(tls_config(ca, server_cert)) as (server, log):
        assert server.tls_port
        with socket.create_connection(("127.0.0.1", server.tls_port), timeout=WAIT) as sock:
            sock.sendall(PROTOCOL_HEADER)
            sock.settimeout(WAIT)
            assert sock.recv(100) == b""
            port = sock.getsockname()[1]
        _wait_for(lambda: log.events(NOT_TLS_EVENT), "the warning")
        assert log.events(NOT_TLS_EVENT) == [{"peer": f"127.0.0.1:{port}"}]
        assert ("warning", NOT_TLS_EVENT, {"peer": f"127.0.0.1:{port}"}) in log.lines
        assert not log.events("TLS handshake failed")
        assert not open_connections(server)
        no_tracebacks(log)


def test_connect_and_close_on_the_tls_port_is_not_a_warning(ca: CA,
                                                             server_cert: Issued) -> None:
    """A TCP health check (connect, close) is logged at debug level only, as RabbitMQ
    keeps it out of the log; a ClientHello cut short likewise."""
    with broker(tls_config(ca, server_cert)) as (server, log):
        assert server.tls_port
        socket.create_connection(("127.0.0.1", server.tls_port), timeout=WAIT).close()
        with socket.create_connection(("127.0.0.1", server.tls_port), timeout=WAIT) as sock:
            sock.sendall(b"\x16\x03\x01\x00\xff\x01")  # the start of a ClientHello
        _wait_for(lambda: len(log.events("connection closed during the TLS handshake")) == 2,
                  "both closes")
        _wait_for(lambda: server.sockets == 0, "the socket count to drop")
        assert not [line for line in log.lines if line[0] in ("warning", "error")]


def test_tls_to_the_plain_port_is_closed(ca: CA, server_cert: Issued) -> None:
    """A TLS ClientHello to the amqp port is a bad protocol header: the broker answers
    with AMQP's header and closes, so the client's handshake fails at once."""
    with broker(tls_config(ca, server_cert)) as (server, log):
        context = client_context(ca)
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as raw:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                context.wrap_socket(raw, server_hostname="localhost")
        _wait_for(lambda: not open_connections(server) and server.sockets == 0,
                  "the socket to close")
        assert not log.events("TLS handshake failed")
        no_tracebacks(log)


def test_silent_client_on_the_tls_port_hits_the_handshake_timeout(
        ca: CA, server_cert: Issued, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "HANDSHAKE_TIMEOUT", 0.2)
    with broker(tls_config(ca, server_cert)) as (server, log):
        assert server.tls_port
        with socket.create_connection(("127.0.0.1", server.tls_port), timeout=WAIT) as sock:
            port = sock.getsockname()[1]
            assert socket_closed(sock)
        _wait_for(lambda: log.events("TLS handshake failed"), "the timeout log")
        (failure,) = log.events("TLS handshake failed")
        assert failure == {"peer": f"127.0.0.1:{port}", "error": "no TLS handshake within 0.2s"}
        _wait_for(lambda: server.sockets == 0, "the socket count to drop")
        no_tracebacks(log)


def test_stopping_with_a_handshake_pending(ca: CA, server_cert: Issued) -> None:
    """A client still in its TLS handshake does not hold up the broker's shutdown: its
    socket is closed and counted off."""
    with socket.socket() as sock:
        with broker(tls_config(ca, server_cert)) as (server, log):
            assert server.tls_port
            sock.connect(("127.0.0.1", server.tls_port))
            _wait_for(lambda: server.sockets == 1, "the socket to be accepted")
        assert server.sockets == 0
        assert socket_closed(sock)


def test_no_tls_listener_without_tls_port() -> None:
    with broker(Config(host="127.0.0.1", port=0, data_dir=None, metrics_port=0)) as (server, log):
        assert server.tls_context is None and server.tls_port is None
        assert "amqps_port" not in log.events("listening")[0]


# --- the context: errors name the file ---------------------------------------------------

def test_context_verify_modes(ca: CA, server_cert: Issued) -> None:
    def mode(**fields: Any) -> ssl.VerifyMode:
        context = tls.server_context(tls_config(ca, server_cert, **fields))
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        return context.verify_mode
    assert mode() == ssl.CERT_NONE
    assert mode(tls_verify_peer=True) == ssl.CERT_OPTIONAL
    assert mode(tls_verify_peer=True, tls_fail_if_no_peer_cert=True) == ssl.CERT_REQUIRED
    assert mode(tls_cacertfile=None) == ssl.CERT_NONE


def _error(config: Config) -> str:
    with pytest.raises(tls.TLSConfigError) as info:
        tls.server_context(config)
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_context_errors_name_the_file(ca: CA, server_cert: Issued, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    other_key = ca.client("other").keyfile
    locked = ca.issue("locked", name((NameOID.COMMON_NAME, "localhost")), server=True,
                      password=b"secret")

    text = _error(tls_config(ca, server_cert, tls_certfile=str(missing)))
    assert str(missing) in text and "cannot read" in text
    text = _error(tls_config(ca, server_cert, tls_certfile=str(garbage)))
    assert str(garbage) in text and "certificate" in text
    text = _error(tls_config(ca, server_cert, tls_keyfile=str(garbage)))
    assert str(garbage) in text and "private key" in text
    text = _error(tls_config(ca, server_cert, tls_keyfile=str(other_key)))
    assert str(other_key) in text and "does not match" in text
    text = _error(tls_config(ca, server_cert, tls_certfile=str(locked.certfile),
                             tls_keyfile=str(locked.keyfile)))
    assert str(locked.keyfile) in text and "encrypted" in text
    text = _error(tls_config(ca, server_cert, tls_cacertfile=str(garbage)))
    assert str(garbage) in text and "CA" in text
    text = _error(tls_config(ca, server_cert, tls_cacertfile=None, tls_verify_peer=True))
    assert "tls_cacertfile" in text
    text = _error(tls_config(ca, server_cert, tls_fail_if_no_peer_cert=True))
    assert "tls_verify_peer" in text
    text = _error(tls_config(ca, server_cert, tls_certfile=None))
    assert "tls_certfile" in text


def test_server_refuses_to_start_with_a_bad_tls_file(ca: CA, server_cert: Issued,
                                                     tmp_path: Path) -> None:
    """Checked when the Server is made, before anything listens; an OSError, which the
    command line reports as one line."""
    with pytest.raises(OSError, match="missing.pem"):
        Server(tls_config(ca, server_cert, tls_keyfile=str(tmp_path / "missing.pem")),
               handle_signals=False)


# --- the login name: RabbitMQ's formats --------------------------------------------------

def _rdn(*attributes: x509.NameAttribute) -> x509.RelativeDistinguishedName:
    return x509.RelativeDistinguishedName(list(attributes))


def _cert(ca: CA, subject: x509.Name) -> Issued:
    return ca.issue("subject", subject)


def test_dn_is_reversed_and_matches_rfc4514_for_plain_names(ca: CA) -> None:
    client = _cert(ca, name((NameOID.COUNTRY_NAME, "GB"), (NameOID.STATE_OR_PROVINCE_NAME, "X"),
                            (NameOID.LOCALITY_NAME, "Y"), (NameOID.ORGANIZATION_NAME, "Example"),
                            (NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops"),
                            (NameOID.COMMON_NAME, "client")))
    dn = tls.cert_login_name(None, client.der, "distinguished_name")
    assert dn == "CN=client,OU=Ops,O=Example,L=Y,ST=X,C=GB"
    assert dn == client.cert.subject.rfc4514_string()
    assert tls.cert_login_name(None, client.der, "common_name") == "client"


def test_dn_attribute_names_multi_valued_rdns_and_escaping(ca: CA) -> None:
    """RabbitMQ's own names (EMAILADDRESS, UID, SERIALNUMBER; dotted OIDs for the rest,
    streetAddress included), '+' inside a multi-valued RDN, and its escaping: leading
    space or '#', trailing space, the RFC 4514 specials, and every byte of non-ASCII,
    control characters and '~' as \\XX."""
    A = x509.NameAttribute
    subject = x509.Name([
        _rdn(A(NameOID.COMMON_NAME, "a"), A(NameOID.USER_ID, "b")),
        _rdn(A(NameOID.EMAIL_ADDRESS, "x@example.com")),
        _rdn(A(NameOID.DOMAIN_COMPONENT, "com")),
        _rdn(A(NameOID.SERIAL_NUMBER, "42")),
        _rdn(A(NameOID.STREET_ADDRESS, "1 Road")),
        _rdn(A(x509.ObjectIdentifier("1.2.3.4"), "other")),
        _rdn(A(NameOID.ORGANIZATION_NAME, "\u03a9mega", _type=_ASN1Type.BMPString)),
        _rdn(A(NameOID.ORGANIZATIONAL_UNIT_NAME, "#hash")),
        _rdn(A(NameOID.COMMON_NAME, ' #a,b+c"d\\e;f<g>h=~\u00fc\n ')),
    ])
    cert = _cert(ca, subject)
    expected = ("CN=\\ #a\\,b\\+c\\\"d\\\\e\\;f\\<g\\>h=\\7E\\C3\\BC\\0A\\ ,"
                "OU=\\#hash,O=\\CE\\A9mega,1.2.3.4=other,2.5.4.9=1 Road,SERIALNUMBER=42,"
                "DC=com,EMAILADDRESS=x@example.com,CN=a+UID=b")
    assert tls.cert_login_name(None, cert.der, "distinguished_name") == expected
    # common_name: every CN in certificate order, joined by ",", not escaped
    assert tls.cert_login_name(None, cert.der, "common_name") == \
        'a, #a,b+c"d\\e;f<g>h=~\u00fc\n '
    # the getpeercert() dict gives the same (Python decodes it as getpeercert() does)
    decoded = ssl._ssl._test_decode_cert(str(cert.certfile))  # type: ignore[attr-defined]
    assert tls.cert_login_name(decoded, None, "distinguished_name") == expected


@pytest.mark.parametrize("value, escaped", [
    ("plain", "plain"), (" ", "\\ "), ("  ", "\\ \\ "), ("#", "\\#"), ("a#", "a#"),
    ("a ", "a\\ "), ("a b", "a b"), ("=", "="), ("\x7f", "\\7F"), ("\x00", "\\00"),
    ("caf\u00e9", "caf\\C3\\A9"), ("", ""),
])
def test_escape_dn_value(value: str, escaped: str) -> None:
    assert tls.escape_dn_value(value) == escaped


def test_teletex_is_latin1_and_no_cn_gives_none(ca: CA) -> None:
    """RabbitMQ reads a teletexString's bytes as Latin-1; cryptography writes the UTF-8
    of "café" there (63 61 66 c3 a9), so each of those two bytes becomes a character."""
    A = x509.NameAttribute
    cert = _cert(ca, x509.Name([A(NameOID.ORGANIZATION_NAME, "caf\u00e9",
                                  _type=_ASN1Type.T61String)]))
    assert tls.cert_login_name(None, cert.der, "distinguished_name") == \
        "O=caf\\C3\\83\\C2\\A9"
    assert tls.cert_login_name(None, cert.der, "common_name") is None


def test_no_certificate_or_garbage_gives_none() -> None:
    assert tls.cert_login_name(None, None, "distinguished_name") is None
    assert tls.cert_login_name(None, b"\x30\x03\x02\x01\x00", "common_name") is None
    assert tls.cert_login_name(None, b"\xff" * 40, "distinguished_name") is None
    with pytest.raises(ValueError):
        tls.cert_login_name(None, None, "subject_alternative_name")


def test_session_refusals(ca: CA) -> None:
    client = ca.client()
    assert tls.session_of(None, None, "TLSv1.3", None, True,
                          "distinguished_name").refusal == tls.NO_PEER_CERT
    assert tls.session_of(client.der, None, "TLSv1.3", None, False,
                          "distinguished_name").refusal == tls.UNSAFE
    nameless = _cert(ca, name((NameOID.ORGANIZATION_NAME, "x")))
    s = tls.session_of(nameless.der, None, "TLSv1.2", ("ECDHE", "TLSv1.2", 128), True,
                       "common_name")
    assert (s.login, s.refusal, s.protocol, s.cipher) == (None, tls.NO_NAME, "tlsv1.2", "ECDHE")


def test_refused_client_is_told_why(ca: CA, server_cert: Issued) -> None:
    """The broker's alert reaches a client refused for want of a certificate (not a bare
    EOF): with TLS 1.3 it surfaces on the client's first read."""
    config = tls_config(ca, server_cert, tls_verify_peer=True, tls_fail_if_no_peer_cert=True)
    with broker(config) as (server, log):
        assert server.tls_port
        with socket.create_connection(("127.0.0.1", server.tls_port), timeout=WAIT) as raw:
            with pytest.raises(ssl.SSLError, match="certificate"):
                with client_context(ca).wrap_socket(raw, server_hostname="localhost") as sock:
                    sock.sendall(PROTOCOL_HEADER)
                    sock.recv(100)
        _wait_for(lambda: log.events("TLS handshake failed"), "the handshake failure log")
        assert "certificate" in log.events("TLS handshake failed")[0]["error"]


# --- the command line: a config file, a broker process ------------------------------------

def _toml_config(path: Path, ca: CA, server_cert: Issued, tls_port: int,
                 keyfile: Path | None = None) -> Path:
    path.write_text(
        "[listeners.amqps]\n"
        f"port = {tls_port}\n"
        "[tls]\n"
        f'certfile = "{server_cert.certfile}"\n'
        f'keyfile = "{keyfile or server_cert.keyfile}"\n'
        f'cacertfile = "{ca.certfile}"\n'
        "verify_peer = true\n"
        "fail_if_no_peer_cert = true\n")
    return path


def test_broker_process_serves_amqps_from_a_config_file(ca: CA, server_cert: Issued,
                                                         tmp_path: Path) -> None:
    tls_port = free_port()
    config = _toml_config(tmp_path / "broker.toml", ca, server_cert, tls_port)
    proc = BrokerProcess(data_dir=None, log_path=tmp_path / "broker.log",
                         extra_args=("--config", str(config)))
    proc.start()
    try:
        _wait_for(lambda: port_open(tls_port), "the amqps port")
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=tls_port,
            ssl_options=pika.SSLOptions(client_context(ca, ca.client()),
                                        server_hostname="localhost"),
            socket_timeout=WAIT, stack_timeout=WAIT, connection_attempts=1))
        try:
            ch = conn.channel()
            ch.queue_declare("over-tls")
            ch.basic_publish("", "over-tls", b"secret")
            got = consume_n(ch, "over-tls", 1, timeout=WAIT, auto_ack=True)
            assert [body for _, _, body in got] == [b"secret"]
        finally:
            conn.close()
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pika.BlockingConnection(pika.ConnectionParameters(
                host="127.0.0.1", port=tls_port,
                ssl_options=pika.SSLOptions(client_context(ca), server_hostname="localhost"),
                socket_timeout=WAIT, stack_timeout=WAIT, connection_attempts=1)).close()
        _wait_for(lambda: "TLS handshake failed" in proc.log(), "the refusal in the log")
    finally:
        proc.stop()
    assert "Traceback" not in proc.log()


def test_broker_process_with_a_bad_key_exits_with_one_line(ca: CA, server_cert: Issued,
                                                           tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    config = _toml_config(tmp_path / "broker.toml", ca, server_cert, free_port(),
                          keyfile=garbage)
    proc = BrokerProcess(data_dir=None, log_path=tmp_path / "broker.log",
                         extra_args=("--config", str(config)))
    try:
        with pytest.raises(RuntimeError, match="exited with 1"):
            proc.start()
    finally:
        proc.stop()
    log = proc.log()
    assert "Traceback" not in log
    assert "cannot start" in log and str(garbage) in log and "private key" in log
