"""Method codec: every method round-trips; malformed payloads raise SYNTAX_ERROR."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp import frame as pframe

from amqp_broker.protocol import fast
from amqp_broker.protocol.errors import AMQPError
from amqp_broker.protocol.methods import METHODS, decode_method, encode_method

SAMPLE = {"octet": 9, "short": 513, "long": 70000, "longlong": 2**40 + 3, "shortstr": "näme",
          "longstr": b"\x00bytes", "bit": True, "table": {"k": 1, "s": "v", "n": {"x": False}},
          "timestamp": 1700000000}


@pytest.mark.parametrize("key", sorted(METHODS))
def test_every_method_round_trips(key: tuple[int, int]) -> None:
    _, fields = METHODS[key]
    values = {name: SAMPLE[kind] for name, kind in fields}
    got_key, args = decode_method(encode_method(key, **values))
    assert got_key == key
    assert args == values


def test_bits_pack_in_declaration_order() -> None:
    payload = encode_method((50, 10), queue="q", passive=False, durable=True, exclusive=False,
                            auto_delete=True, nowait=False)
    # reserved short, shortstr "q", then one octet of bits: durable=bit1, auto_delete=bit3
    assert payload[4:] == b"\x00\x00\x01q\x0a\x00\x00\x00\x00"


def test_decodes_what_pamqp_encodes() -> None:
    raw = pframe.marshal(commands.Basic.Consume(queue="q", consumer_tag="t", no_ack=True,
                                                arguments={"x-priority": 5}), 1)
    key, args = decode_method(raw[7:-1])
    assert key == (60, 20)
    assert (args["queue"], args["consumer_tag"], args["no_ack"], args["exclusive"]) == \
        ("q", "t", True, False)
    assert args["arguments"] == {"x-priority": 5}


def test_fast_publish_matches_generic() -> None:
    payload = encode_method((60, 40), exchange="ex", routing_key="a.b", mandatory=True)
    assert fast.decode_publish(payload) == ("ex", "a.b", 1)


def test_truncated_payload_is_syntax_error() -> None:
    payload = encode_method((50, 10), queue="a-queue-name")
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
