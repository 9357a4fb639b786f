"""Method codec (protocol.codec): checked against pamqp's own marshal and unmarshal
as an independent oracle; malformed payloads raise the typed protocol error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp import frame as pframe

from amqp_broker.protocol import fast
from amqp_broker.protocol.codec import CLASSES, decode_method, encode_method, fields, make, name_of
from amqp_broker.protocol.errors import AMQPError

from inproc import encode_fields

# values pamqp's codec round-trips unchanged (its tables turn other types into its own)
SAMPLE = {"octet": 9, "short": 513, "long": 70000, "longlong": 2**40 + 3, "shortstr": "näme",
          "longstr": "long string", "bit": True, "table": {"a": 1, "b": "v", "c": {"x": False}},
          "timestamp": 1700000000}


def _values(key: tuple[int, int]) -> dict[str, object]:
    return {name: SAMPLE[kind] for name, kind in fields(CLASSES[key])}


def _pamqp_payload(method: commands.base.Frame) -> bytes:
    return pframe.marshal(method, 1)[7:-1]


def _oracle(key: tuple[int, int], monkeypatch: pytest.MonkeyPatch
            ) -> tuple[type, dict[str, object], commands.base.Frame]:
    """The method class, sample values and a pamqp object holding them; pamqp's value
    checks (name patterns, reserved fields) are not what is compared, so they are off."""
    cls = CLASSES[key]
    monkeypatch.setattr(cls, "validate", lambda self: None)
    values = _values(key)
    oracle = cls.__new__(cls)
    for name, value in values.items():
        setattr(oracle, name, value)
    return cls, values, oracle


@pytest.mark.parametrize("key", sorted(CLASSES))
def test_every_method_encodes_as_pamqp_does(key: tuple[int, int],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cls, values, oracle = _oracle(key, monkeypatch)
    assert encode_method(make(cls, **values)) == _pamqp_payload(oracle)


@pytest.mark.parametrize("key", sorted(CLASSES))
def test_every_method_decodes_what_pamqp_encodes(key: tuple[int, int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cls, values, oracle = _oracle(key, monkeypatch)
    got_key, method = decode_method(_pamqp_payload(oracle))
    assert got_key == key and type(method) is cls
    for name, value in values.items():
        got = getattr(method, name)
        # long strings stay bytes: they are SASL responses and opaque values
        assert (got.decode() if isinstance(got, bytes) else got) == value, name
    # and pamqp reads back what we encode
    again = cls.__new__(cls)
    again.unmarshal(encode_method(method)[4:])
    assert dict(again) == dict(oracle)


def test_method_names_as_rabbitmq_writes_them() -> None:
    assert name_of((50, 10)) == "queue.declare"
    assert name_of((60, 71)) == "basic.get-ok"
    assert name_of((10, 70)) == "connection.update-secret"
    assert name_of((99, 1)) == "99.1"


def test_make_refuses_a_field_the_method_does_not_have() -> None:
    with pytest.raises(TypeError, match="type"):
        make(commands.Exchange.Declare, type="direct")


def test_binary_names_round_trip() -> None:
    name = b"q\xff\xfe".decode("utf-8", "surrogateescape")
    payload = encode_method(make(commands.Queue.Declare, queue=name))
    assert b"\x03q\xff\xfe" in payload
    assert decode_method(payload)[1].queue == name


def test_bits_pack_in_declaration_order() -> None:
    payload = encode_fields((50, 10), queue="q", passive=False, durable=True, exclusive=False,
                            auto_delete=True, nowait=False)
    # reserved short, shortstr "q", then one octet of bits: durable=bit1, auto_delete=bit3
    assert payload[4:] == b"\x00\x00\x01q\x0a\x00\x00\x00\x00"


def test_decodes_what_pamqp_encodes() -> None:
    raw = pframe.marshal(commands.Basic.Consume(queue="q", consumer_tag="t", no_ack=True,
                                                arguments={"x-priority": 5}), 1)
    key, method = decode_method(raw[7:-1])
    assert key == (60, 20) and isinstance(method, commands.Basic.Consume)
    assert (method.queue, method.consumer_tag, method.no_ack, method.exclusive) == \
        ("q", "t", True, False)
    assert method.arguments == {"x-priority": 5}


def test_fast_publish_matches_generic() -> None:
    payload = encode_fields((60, 40), exchange="ex", routing_key="a.b", mandatory=True)
    assert fast.decode_publish(payload) == ("ex", "a.b", 1)


def test_truncated_payload_is_syntax_error() -> None:
    payload = encode_fields((50, 10), queue="a-queue-name")
    for cut in range(4, len(payload) - 1):
        with pytest.raises(AMQPError) as info:
            decode_method(payload[:cut])
        assert info.value.reply_code in (502, 501)


def test_unknown_method_is_frame_error() -> None:
    with pytest.raises(AMQPError) as info:
        decode_method(b"\x00\x3c\x03\xe7")
    assert info.value.reply_code == 501


def test_delivery_mode_read_from_raw_properties() -> None:
    props = commands.Basic.Properties(content_type="text/plain", headers={"a": "b"},
                                      delivery_mode=2, priority=3).marshal()
    assert fast.delivery_mode(props) == 2
    assert fast.delivery_mode(commands.Basic.Properties().marshal()) == 0
    assert fast.message_headers(props) == {"a": "b"}


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=4, max_size=80))
def test_fuzz_decode_parses_or_raises_typed_error(data: bytes) -> None:
    try:
        decode_method(data)
    except AMQPError:
        pass
