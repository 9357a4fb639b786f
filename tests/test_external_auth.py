"""The EXTERNAL mechanism and the configured mechanism list, in process: which
mechanisms connection.start offers, and who gets in with a client certificate's name."""

from __future__ import annotations

from typing import Any

from pamqp import commands, frame

from amqp_broker.connection import Connection, ConnState
from amqp_broker.tls import NO_PEER_CERT, TLSSession

from inproc import PROTOCOL_HEADER, make_broker


def _session(login: str | None, refusal: str | None = None) -> TLSSession:
    return TLSSession(protocol="tlsv1.3", cipher="TLS_AES_256_GCM_SHA384",
                      peer_cert_subject=f"CN={login}" if login else None,
                      peer_cert_issuer="CN=ca", login=login, refusal=refusal)


def _replies(conn: Connection) -> list[Any]:
    data = conn.take_output()
    out = []
    while data:
        used, _, value = frame.unmarshal(data)
        out.append(value)
        data = data[used:]
    return out


def _start(conn: Connection) -> commands.Connection.Start:
    conn.receive(PROTOCOL_HEADER)
    (start,) = _replies(conn)
    assert isinstance(start, commands.Connection.Start)
    return start


def _start_ok(conn: Connection, mechanism: str, response: str = "") -> list[Any]:
    conn.receive(frame.marshal(commands.Connection.StartOk(
        client_properties={"capabilities": {"authentication_failure_close": True}},
        mechanism=mechanism, response=response), 0))
    return _replies(conn)


def test_plain_connections_are_offered_the_configured_password_mechanisms() -> None:
    broker = make_broker(auth_mechanisms=("PLAIN", "AMQPLAIN", "EXTERNAL"))
    assert _start(Connection(broker, ("127.0.0.1", 1))).mechanisms == "PLAIN AMQPLAIN"
    broker = make_broker(auth_mechanisms=("AMQPLAIN",))
    assert _start(Connection(broker, ("127.0.0.1", 1))).mechanisms == "AMQPLAIN"


def test_tls_connections_are_offered_external_when_configured() -> None:
    broker = make_broker(auth_mechanisms=("EXTERNAL", "PLAIN"))
    conn = Connection(broker, ("127.0.0.1", 1))
    conn.use_tls(_session("guest"))
    assert _start(conn).mechanisms == "EXTERNAL PLAIN"
    conn = Connection(make_broker(), ("127.0.0.1", 1))
    conn.use_tls(_session("guest"))
    assert _start(conn).mechanisms == "PLAIN AMQPLAIN"  # not configured: not offered


def test_external_logs_in_as_the_certificate_name() -> None:
    broker = make_broker(auth_mechanisms=("EXTERNAL",))
    conn = Connection(broker, ("127.0.0.1", 1))
    conn.use_tls(_session("guest"))
    _start(conn)
    replies = _start_ok(conn, "EXTERNAL")
    assert isinstance(replies[0], commands.Connection.Tune)
    assert conn.user == "guest"


def test_external_refuses_an_unknown_user_and_a_missing_certificate() -> None:
    for session in (_session("nobody"), _session(None, NO_PEER_CERT)):
        broker = make_broker(auth_mechanisms=("EXTERNAL",))
        conn = Connection(broker, ("127.0.0.1", 1))
        conn.use_tls(session)
        _start(conn)
        (close,) = _start_ok(conn, "EXTERNAL")
        assert isinstance(close, commands.Connection.Close)
        assert close.reply_code == 403
        assert close.reply_text == ("ACCESS_REFUSED - Login was refused using authentication "
                                    "mechanism EXTERNAL. For details see the broker logfile.")


def test_a_mechanism_not_offered_ends_the_handshake() -> None:
    broker = make_broker(auth_mechanisms=("PLAIN",))
    conn = Connection(broker, ("127.0.0.1", 1))
    _start(conn)
    assert _start_ok(conn, "AMQPLAIN") == []
    assert conn.state is ConnState.CLOSED
    assert "AMQPLAIN" in conn.close_reason
    # EXTERNAL on a plain connection is not offered either
    conn = Connection(make_broker(auth_mechanisms=("EXTERNAL", "PLAIN")), ("127.0.0.1", 1))
    _start(conn)
    assert _start_ok(conn, "EXTERNAL") == []
    assert conn.state is ConnState.CLOSED
