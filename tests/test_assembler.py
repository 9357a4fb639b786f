"""The content assembler alone: frame payloads in, one publish command out, errors typed."""

from __future__ import annotations

import struct

import pytest
from pamqp import commands

from amqp_broker.protocol.assembler import ContentAssembler
from amqp_broker.protocol.errors import AMQPError

from inproc import encode_fields as encode_method


def publish(exchange: str = "x", routing_key: str = "k", mandatory: bool = False,
            immediate: bool = False) -> bytes:
    return encode_method((60, 40), exchange=exchange, routing_key=routing_key,
                         mandatory=mandatory, immediate=immediate)


def header(size: int, props: commands.Basic.Properties | None = None,
           class_id: int = 60) -> bytes:
    raw = (props or commands.Basic.Properties()).marshal()
    return struct.pack(">HHQ", class_id, 0, size) + raw


def test_empty_body_completes_at_the_header() -> None:
    a = ContentAssembler(1000)
    a.publish(publish(mandatory=True))
    assert a.expecting_content
    command = a.header(header(0, commands.Basic.Properties(delivery_mode=2)))
    assert command is not None
    ex_raw, rk_raw, exchange, routing_key, mandatory, props, body = command
    assert (ex_raw, rk_raw, exchange, routing_key, mandatory) == (b"\x01x", b"\x01k", "x", "k", 1)
    assert body == b"" and props == commands.Basic.Properties(delivery_mode=2).marshal()
    assert not a.expecting_content


@pytest.mark.parametrize("pieces", [[b"hello"], [b"he", b"llo"], [b"h", b"e", b"l", b"l", b"o"]])
def test_body_frames_are_joined(pieces: list[bytes]) -> None:
    a = ContentAssembler(1000)
    a.publish(publish())
    assert a.header(header(5)) is None
    results = [a.body(p) for p in pieces]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] is not None and results[-1][6] == b"hello"


def test_consecutive_publishes_share_names_and_properties() -> None:
    a = ContentAssembler(1000)
    out = []
    for _ in range(2):
        a.publish(publish("ex", "key"))
        out.append(a.header(header(0, commands.Basic.Properties(content_type="t"))))
    first, second = out
    assert first is not None and second is not None
    assert first[0] is second[0] and first[1] is second[1] and first[5] is second[5]


def code(fn: object, *args: object) -> tuple[int, str]:
    with pytest.raises(AMQPError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.reply_code, info.value.text


def test_out_of_order_frames_are_505() -> None:
    a = ContentAssembler(1000)
    assert code(a.header, header(1))[0] == 505  # header without publish
    assert code(a.body, b"x")[0] == 505  # body without publish
    a.publish(publish())
    assert code(a.body, b"x")[0] == 505  # body before the header
    assert code(a.publish, publish())[0] == 505  # a second publish before the content
    a.header(header(2))
    assert code(a.header, header(2))[0] == 505  # a second header


def test_body_beyond_its_header_is_501() -> None:
    a = ContentAssembler(1000)
    a.publish(publish())
    a.header(header(3))
    assert code(a.body, b"toolong")[0] == 501


def test_oversize_message_is_refused_at_the_header() -> None:
    a = ContentAssembler(10)
    a.publish(publish())
    assert code(a.header, header(11)) == (
        406, "message size 11 is larger than configured max size 10")
    assert not a.expecting_content  # the next publish starts afresh
    a.publish(publish())
    assert a.header(header(0)) is not None


def test_immediate_and_non_basic_headers() -> None:
    a = ContentAssembler(1000)
    assert code(a.publish, publish(immediate=True)) == (540, "immediate=true")
    a.publish(publish())
    assert code(a.header, header(0, class_id=50))[0] == 501


@pytest.mark.parametrize("cuts", [[], [5000], [1, 20000, 20001]])
def test_body_frames_given_as_views_make_a_body_of_its_own(cuts: list[int]) -> None:
    """Big body frames come from the frame reader as views of what it read: the body
    handed out is bytes of its own (one copy), whether one frame or several."""
    chunk = bytes(range(256)) * 100  # what the reader "read"
    bounds = [0, *cuts, len(chunk)]
    a = ContentAssembler(10**6)
    a.publish(publish())
    a.header(header(len(chunk)))
    command = None
    for start, end in zip(bounds, bounds[1:], strict=False):
        command = a.body(memoryview(chunk)[start:end])
    assert command is not None
    body = command[-1]
    assert type(body) is bytes and body == chunk
