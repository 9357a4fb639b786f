"""protocol.handshake alone, h11's way: bytes and method payloads in, events out, with
stub callbacks for the login and the vhost; the header fed whole, byte by byte and with
trailing bytes; every transition and every refusal."""

from __future__ import annotations

from typing import Any

import pytest
from pamqp import commands

from amqp_broker.protocol import handshake
from amqp_broker.protocol.codec import encode_method, make
from amqp_broker.protocol.errors import AMQPError
from amqp_broker.protocol.frames import PROTOCOL_HEADER
from amqp_broker.protocol.handshake import (
    Closed,
    Closing,
    Handshake,
    LoggedIn,
    Opened,
    ProtocolHeader,
    Send,
    State,
    Tuned,
)

LIMITS = handshake.Limits(channel_max=2047, frame_max=131072, heartbeat=60)


def _login(mechanism: str, response: bytes) -> str:
    if mechanism != "PLAIN":
        raise ValueError(f"unsupported authentication mechanism {mechanism!r}")
    _, user, password = response.split(b"\x00")
    if password != b"secret":
        raise AMQPError(403, "Login was refused", 10, 11)
    return user.decode()


def _vhost(name: str) -> Any:
    if name != "/":
        raise AMQPError(530, f"vhost {name} not found", 10, 40)
    return {"vhost": name}


def machine() -> Handshake:
    return Handshake(server_properties={"product": "test"}, mechanisms=b"PLAIN",
                     limits=LIMITS, authenticate=_login, open_vhost=_vhost)


def payload(cls: type, **values: Any) -> bytes:
    return encode_method(make(cls, **values))


def started() -> Handshake:
    hs = machine()
    events, rest = hs.receive_header(PROTOCOL_HEADER)
    assert rest == b"" and hs.state is State.AWAIT_START_OK
    return hs


def opened() -> Handshake:
    hs = started()
    hs.receive(payload(commands.Connection.StartOk, mechanism="PLAIN",
                       response=b"\x00u\x00secret", client_properties={}))
    hs.receive(payload(commands.Connection.TuneOk, channel_max=10, frame_max=4096,
                       heartbeat=30))
    hs.receive(payload(commands.Connection.Open, virtual_host="/"))
    assert hs.state is State.OPEN
    return hs


def test_header_whole_gives_connection_start() -> None:
    hs = machine()
    events, rest = hs.receive_header(PROTOCOL_HEADER)
    (send,) = events
    assert isinstance(send, Send) and isinstance(send.method, commands.Connection.Start)
    assert send.method.mechanisms == b"PLAIN"
    assert send.method.server_properties == {"product": "test"}
    assert (send.method.version_major, send.method.version_minor) == (0, 9)
    assert rest == b""


def test_header_byte_by_byte_and_with_trailing_bytes() -> None:
    hs = machine()
    for i in range(7):
        events, rest = hs.receive_header(PROTOCOL_HEADER[i:i + 1])
        assert events == [] and rest == b"" and hs.state is State.AWAIT_HEADER
    events, rest = hs.receive_header(PROTOCOL_HEADER[7:] + b"more")
    assert isinstance(events[0], Send) and rest == b"more"
    assert hs.state is State.AWAIT_START_OK


@pytest.mark.parametrize("data", [b"HTTP/1.1", b"AMQP\x00\x00\x09\x00", b"AMQP\x01\x01\x00\x09",
                                  b"\x16\x03\x01"])
def test_another_protocol_gets_our_header_and_a_close(data: bytes) -> None:
    hs = machine()
    events, _ = hs.receive_header(data)
    assert [type(e) for e in events] == [ProtocolHeader, Closed]
    assert hs.state is State.CLOSED


def test_the_happy_path_event_by_event() -> None:
    hs = started()
    events = hs.receive(payload(commands.Connection.StartOk, mechanism="PLAIN",
                                response=b"\x00u\x00secret",
                                client_properties={"capabilities": {"x": True}}))
    assert isinstance(events[0], LoggedIn) and events[0].user == "u"
    assert isinstance(events[1], Send) and isinstance(events[1].method, commands.Connection.Tune)
    assert (events[1].method.channel_max, events[1].method.frame_max,
            events[1].method.heartbeat) == (2047, 131072, 60)
    assert hs.capability("x") and not hs.capability("y")
    assert hs.state is State.AWAIT_TUNE_OK
    events = hs.receive(payload(commands.Connection.TuneOk, channel_max=100, frame_max=0,
                                heartbeat=30))
    assert events == [Tuned(channel_max=100, frame_max=131072, heartbeat=30)]
    assert hs.state is State.AWAIT_OPEN
    events = hs.receive(payload(commands.Connection.Open, virtual_host="/"))
    assert isinstance(events[0].method, commands.Connection.OpenOk)  # type: ignore[union-attr]
    assert events[1] == Opened({"vhost": "/"})
    assert hs.state is State.OPEN


def test_refused_login_and_unknown_mechanism() -> None:
    hs = started()
    with pytest.raises(AMQPError) as info:
        hs.receive(payload(commands.Connection.StartOk, mechanism="PLAIN",
                           response=b"\x00u\x00wrong"))
    assert info.value.reply_code == 403 and hs.state is State.AWAIT_START_OK
    # without authentication_failure_close the socket is just closed
    assert hs.close(info.value) == [Closed("authentication failed")]
    hs = started()
    events = hs.receive(payload(commands.Connection.StartOk, mechanism="EXTERNAL"))
    assert events == [Closed("unsupported authentication mechanism 'EXTERNAL'",
                             handshake_error=True)]
    assert hs.state is State.CLOSED


def test_an_undecodable_start_ok_is_a_handshake_error() -> None:
    hs = started()
    events = hs.receive(b"\x00\x0a\x00\x0b\x00\x00\x00\x09")  # table runs past the end
    assert len(events) == 1 and isinstance(events[0], Closed) and events[0].handshake_error


@pytest.mark.parametrize("values, code", [
    ({"frame_max": 1000}, 502), ({"frame_max": 200000}, 502), ({"channel_max": 3000}, 530),
    ({"channel_max": 0}, 530)])  # 0 means 65535, over the broker's 2047
def test_tune_ok_outside_the_limits(values: dict[str, int], code: int) -> None:
    hs = started()
    hs.receive(payload(commands.Connection.StartOk, mechanism="PLAIN",
                       response=b"\x00u\x00secret"))
    fields = {"channel_max": 10, "frame_max": 4096, "heartbeat": 0, **values}
    with pytest.raises(AMQPError) as info:
        hs.receive(payload(commands.Connection.TuneOk, **fields))
    assert info.value.reply_code == code


def test_open_of_an_unknown_vhost_is_the_callbacks_error() -> None:
    hs = started()
    hs.receive(payload(commands.Connection.StartOk, mechanism="PLAIN",
                       response=b"\x00u\x00secret"))
    hs.receive(payload(commands.Connection.TuneOk, channel_max=10, frame_max=4096))
    with pytest.raises(AMQPError) as info:
        hs.receive(payload(commands.Connection.Open, virtual_host="nope"))
    assert info.value.reply_code == 530 and hs.state is State.AWAIT_OPEN


def test_methods_out_of_order() -> None:
    hs = started()
    with pytest.raises(AMQPError) as info:
        hs.receive(payload(commands.Connection.Open, virtual_host="/"))
    assert info.value.reply_code == 504  # before open: CHANNEL_ERROR, as rabbit_reader
    hs = opened()
    with pytest.raises(AMQPError) as info:
        hs.receive(payload(commands.Connection.TuneOk))
    assert info.value.reply_code == 503
    assert "connection.tune-ok" in info.value.reply_text


def test_client_close_and_broker_close() -> None:
    hs = opened()
    events = hs.receive(payload(commands.Connection.Close, reply_code=200, reply_text="bye"))
    assert isinstance(events[0].method, commands.Connection.CloseOk)  # type: ignore[union-attr]
    assert events[1] == Closed("client closed: 200 bye") and hs.state is State.CLOSED
    hs = opened()
    events = hs.close(AMQPError(320, "shutdown"))
    close = events[0].method  # type: ignore[union-attr]
    assert isinstance(close, commands.Connection.Close) and close.reply_code == 320
    assert events[1] == Closing("CONNECTION_FORCED - shutdown")
    assert hs.state is State.CLOSING
    assert hs.close(AMQPError(320, "again")) == []  # once
    # while closing: only close-ok (and a crossing close) count
    assert hs.receive(payload(commands.Connection.UpdateSecret)) == []
    events = hs.receive(payload(commands.Connection.Close, reply_code=200))
    assert isinstance(events[0].method, commands.Connection.CloseOk)  # type: ignore[union-attr]
    assert hs.receive(payload(commands.Connection.CloseOk)) == [Closed("closed by broker")]
    assert hs.state is State.CLOSED


def test_update_secret_and_blocked_when_open() -> None:
    hs = opened()
    (send,) = hs.receive(payload(commands.Connection.UpdateSecret, new_secret=b"x"))
    assert isinstance(send.method, commands.Connection.UpdateSecretOk)  # type: ignore[union-attr]
    assert hs.receive(payload(commands.Connection.Blocked, reason="x")) == []
    with pytest.raises(AMQPError) as info:
        hs.receive(payload(commands.Connection.CloseOk))
    assert info.value.reply_code == 504
