"""Frame splitter: whole, byte at a time, with trailing data, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amqp_broker.protocol.errors import AMQPError, FrameError
from amqp_broker.protocol.frames import (
    FRAME_BODY,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    HEARTBEAT_FRAME,
    FrameReader,
    content_frames,
    frame,
)

FRAMES = [
    (FRAME_METHOD, 1, b"\x00\x3c\x00\x28abc"),
    (FRAME_BODY, 7, b"x" * 100),
    (FRAME_HEARTBEAT, 0, b""),
    (FRAME_BODY, 65535, b""),
]
STREAM = b"".join(frame(t, c, p) for t, c, p in FRAMES)


def test_whole_stream_in_one_feed() -> None:
    reader = FrameReader(4096)
    assert list(reader.feed(STREAM)) == FRAMES
    assert len(reader) == 0


def test_byte_at_a_time() -> None:
    reader = FrameReader(4096)
    got = []
    for i in range(len(STREAM)):
        got.extend(reader.feed(STREAM[i:i + 1]))
    assert got == FRAMES


def test_trailing_partial_frame_stays_buffered() -> None:
    reader = FrameReader(4096)
    tail = frame(FRAME_BODY, 3, b"tail")
    got = list(reader.feed(STREAM + tail[:5]))
    assert got == FRAMES
    assert len(reader) == 5
    assert list(reader.feed(tail[5:])) == [(FRAME_BODY, 3, b"tail")]


def test_heartbeat_frame_constant() -> None:
    assert list(FrameReader().feed(HEARTBEAT_FRAME)) == [(FRAME_HEARTBEAT, 0, b"")]


def test_oversize_frame_is_frame_error_before_payload_arrives() -> None:
    reader = FrameReader(4096)
    head = frame(FRAME_BODY, 1, b"x" * 5000)[:7]
    with pytest.raises(FrameError) as info:
        list(reader.feed(head))
    assert info.value.reply_code == 501


def test_missing_frame_end_is_frame_error() -> None:
    bad = frame(FRAME_BODY, 1, b"abc")[:-1] + b"\x00"
    with pytest.raises(FrameError):
        list(FrameReader().feed(bad))


def test_unknown_frame_type_is_frame_error() -> None:
    with pytest.raises(FrameError):
        list(FrameReader().feed(frame(9, 0, b"")))


def test_content_frames_split_on_frame_max() -> None:
    body = bytes(range(256)) * 40  # 10240 bytes
    parts = b"".join(content_frames(1, b"\x00\x00", body, 4096))
    frames = list(FrameReader(4096).feed(parts))
    assert frames[0][0] == 2
    bodies = [p for t, _, p in frames[1:]]
    assert all(t == FRAME_BODY for t, _, _ in frames[1:])
    assert all(len(p) <= 4096 - 8 for p in bodies)
    assert b"".join(bodies) == body


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_fuzz_any_input_parses_or_raises_typed_error(data: bytes, chunk: int) -> None:
    reader = FrameReader(4096)
    try:
        for i in range(0, len(data), chunk):
            for frame_type, channel, _payload in reader.feed(data[i:i + chunk]):
                assert frame_type in (1, 2, 3, 8)
                assert 0 <= channel <= 65535
    except AMQPError:
        pass


@pytest.mark.parametrize("size", [0, 10, 16 * 1024 - 1, 16 * 1024, 131072 - 8, 131072 - 7,
                                  3 * 131072])
def test_deliver_frames_match_the_generic_encoding(size: int) -> None:
    """The hand-written basic.deliver frames, whether one buffer or (big bodies) the body
    apart from its frames, are byte for byte what the generic codec gives."""
    from pamqp import commands

    from amqp_broker.protocol import fast
    from amqp_broker.protocol.codec import encode_method, make
    from amqp_broker.protocol.frames import method_frame

    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    props = b"\x10\x00\x02"
    got = fast.deliver_frames(3, fast.shortstr("ctag"), 7, True, fast.shortstr("ex"),
                              fast.shortstr("rk"), props, body, 131072)
    if fast.BIG_BODY <= size <= 131072 - 8:
        assert isinstance(got, list) and got[1] is body  # not copied
    elif size > 131072 - 8:  # several body frames: views of the body, not copies
        assert isinstance(got, list)
        assert all(part.obj is body for part in got if isinstance(part, memoryview))
        assert sum(len(part) for part in got if isinstance(part, memoryview)) == size
    else:
        assert isinstance(got, bytes)
    joined = got if isinstance(got, bytes) else b"".join(got)
    expected = method_frame(3, encode_method(make(
        commands.Basic.Deliver, consumer_tag="ctag", delivery_tag=7, redelivered=True,
        exchange="ex", routing_key="rk"))) + b"".join(content_frames(3, props, body, 131072))
    assert joined == expected
