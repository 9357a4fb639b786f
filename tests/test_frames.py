"""Frame splitter: whole, byte at a time, with trailing data, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amqp_broker.protocol.errors import AMQPError, FrameError
from amqp_broker.protocol.frames import (
    BODY_VIEW_MIN,
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


def _normal(frames: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """Payloads as bytes (big body frames come as views)."""
    return [(t, c, bytes(p)) for t, c, p in frames]


BIG = [
    (FRAME_METHOD, 1, b"\x00\x3c\x00\x28abc"),
    (FRAME_BODY, 1, bytes(range(256)) * 80),  # 20 KiB: handed over as a view
    (FRAME_BODY, 2, b"small"),
    (FRAME_HEARTBEAT, 0, b""),
    (FRAME_BODY, 1, b"y" * (BODY_VIEW_MIN - 1)),  # just below: bytes
]
BIG_STREAM = b"".join(frame(t, c, p) for t, c, p in BIG)


@pytest.mark.parametrize("cut", sorted({*range(0, 40), *range(len(BIG_STREAM) - 40,
                                                            len(BIG_STREAM) + 1),
                                        *range(20400, 20500)}))
def test_stream_split_in_two_at_every_boundary(cut: int) -> None:
    """Whatever byte a read ends on (inside a header, a payload, just before the end
    octet), the same frames come out, and nothing is left over."""
    reader = FrameReader(131072)
    got = list(reader.feed(BIG_STREAM[:cut]))
    got += reader.feed(BIG_STREAM[cut:])
    assert _normal(got) == BIG
    assert len(reader) == 0


def test_stream_split_in_three_pieces_everywhere_in_small_frames() -> None:
    stream = STREAM * 2
    for a in range(len(stream) + 1):
        for b in range(a, len(stream) + 1):
            reader = FrameReader(4096)
            got = list(reader.feed(stream[:a]))
            got += reader.feed(stream[a:b])
            got += reader.feed(stream[b:])
            assert got == FRAMES * 2, (a, b)
            assert len(reader) == 0


def test_big_stream_byte_at_a_time_and_in_odd_chunks() -> None:
    for chunk in (1, 7, 8, 4093, 65536):
        reader = FrameReader(131072)
        got = []
        for i in range(0, len(BIG_STREAM), chunk):
            got.extend(reader.feed(BIG_STREAM[i:i + chunk]))
        assert _normal(got) == BIG, chunk


def test_big_body_frames_are_views_of_the_chunk_others_are_bytes() -> None:
    got = list(FrameReader(131072).feed(BIG_STREAM))
    kinds = [type(p) for _, _, p in got]
    assert kinds == [bytes, memoryview, bytes, bytes, bytes]
    view = got[1][2]
    assert isinstance(view, memoryview) and isinstance(view.obj, bytes)  # immutable


def test_a_bytearray_fed_is_never_viewed() -> None:
    """Only immutable bytes are viewed: a caller's bytearray is copied, so changing it
    after the feed cannot change a payload."""
    data = bytearray(BIG_STREAM)
    got = list(FrameReader(131072).feed(data))  # type: ignore[arg-type]
    data[:] = bytes(len(data))
    assert _normal(got) == BIG


def test_frames_held_while_paused_come_out_after() -> None:
    """A consumer that stops after one frame (input paused) finds the rest, and what
    was held meanwhile, on the next feed, in order."""
    reader = FrameReader(131072)
    frames = reader.feed(BIG_STREAM[:30000])
    first = next(frames)
    frames.close()  # the connection paused
    assert first == BIG[0]
    reader.hold(BIG_STREAM[30000:30010])
    reader.hold(BIG_STREAM[30010:])
    assert len(reader) == len(BIG_STREAM) - len(frame(*BIG[0]))
    assert _normal(list(reader.feed(b""))) == BIG[1:]
    assert len(reader) == 0


@pytest.mark.parametrize("frame_max", [4096, 131072])
def test_frame_max_edges(frame_max: int) -> None:
    """A payload of frame_max bytes is taken (RabbitMQ's fudge), one more is 501 with
    RabbitMQ's text as soon as the header is in, whole or split anywhere."""
    ok = frame(FRAME_BODY, 1, b"z" * frame_max)
    reader = FrameReader(frame_max)
    assert _normal(list(reader.feed(ok[:3]))) == []
    assert _normal(list(reader.feed(ok[3:]))) == [(FRAME_BODY, 1, b"z" * frame_max)]
    too_big = frame(FRAME_BODY, 1, b"z" * (frame_max + 1))
    for cut in (1, 6, 7):
        reader = FrameReader(frame_max)
        frames = reader.feed(ok + too_big[:cut])
        assert _normal([next(frames)]) == [(FRAME_BODY, 1, b"z" * frame_max)]
        with pytest.raises(FrameError) as info:
            list(frames)  # the header is complete: at once if it came in this read
            list(reader.feed(too_big[cut:7]))  # else at once when it does
        assert info.value.reply_code == 501
        assert info.value.reply_text == (
            f"FRAME_ERROR - type 3, all octets = <<>>: {{frame_too_large,{frame_max + 1},"
            f"{frame_max - 8}}}")


@pytest.mark.parametrize("cut", [1, 7, 100, 20000, 20487])
def test_bad_end_octet_and_type_across_reads_are_frame_errors(cut: int) -> None:
    body = frame(FRAME_BODY, 1, b"q" * 20480)
    bad_end = body[:-1] + b"\x00"
    reader = FrameReader(131072)
    list(reader.feed(bad_end[:cut]))
    with pytest.raises(FrameError, match="frame end octet missing"):
        list(reader.feed(bad_end[cut:]))
    bad_type = bytes([9]) + body[1:]
    reader = FrameReader(131072)
    list(reader.feed(bad_type[:cut]))
    with pytest.raises(FrameError, match="unknown frame type 9"):
        list(reader.feed(bad_type[cut:]))
