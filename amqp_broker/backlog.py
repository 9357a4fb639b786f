"""A queued message as a spool record (storage/spool.py holds the records).

    u64 msg_id | u32 body_size | u32 props_len | u8 flags | u8 exchange_len
    | u8 routing_key_len | f64 published | f64 deadline
    | exchange | routing_key | properties | body (absent when in the store)

flags: REDELIVERED (was delivered before, comes back redelivered=true), IN_STORE
(a persistent message of a durable queue: the body is read from the message
store at delivery), TTL (published and deadline hold the message's TTL times in
monotonic seconds, deadline NaN for none). Little-endian; the record only lives
as long as the broker process, so the format has no version.
"""

from __future__ import annotations

import math
import struct

from .message import PAGEABLE, Message

_HEAD = struct.Struct("<QIIBBBdd")
HEAD_SIZE = _HEAD.size
REDELIVERED = 1
IN_STORE = 2
TTL = 4
_NAN = math.nan


def encode(msg: Message, redelivered: bool, in_store: bool) -> bytes:
    ex = msg.exchange_raw
    rk = msg.routing_key_raw
    flags = (REDELIVERED if redelivered else 0) | (IN_STORE if in_store else 0)
    published = deadline = _NAN
    if msg.ttl is not None:
        flags |= TTL
        published = msg.ttl[0]
        if msg.ttl[1] is not None:
            deadline = msg.ttl[1]
    head = _HEAD.pack(msg.msg_id, msg.body_size, len(msg.properties), flags, ex[0], rk[0],
                      published, deadline)
    if in_store:
        return b"".join((head, ex[1:], rk[1:], msg.properties))
    body = msg.body
    assert body is not None, "a body not in the store is in RAM"
    return b"".join((head, ex[1:], rk[1:], msg.properties, body))


def decode(record: bytes) -> tuple[Message, bool]:
    """(message, redelivered) from a record."""
    msg_id, body_size, props_len, flags, ex_n, rk_n, published, deadline = (
        _HEAD.unpack_from(record))
    pos = HEAD_SIZE
    ex = bytes((ex_n,)) + record[pos:pos + ex_n]
    pos += ex_n
    rk = bytes((rk_n,)) + record[pos:pos + rk_n]
    pos += rk_n
    props = record[pos:pos + props_len]
    pos += props_len
    if flags & IN_STORE:
        msg = Message(msg_id, ex, rk, props, None, body_size)
        msg.stored = PAGEABLE
    else:
        msg = Message(msg_id, ex, rk, props, record[pos:pos + body_size], body_size)
    if flags & TTL:
        msg.ttl = (published, None if math.isnan(deadline) else deadline)
    return msg, bool(flags & REDELIVERED)


def msg_id_of(record: bytes) -> tuple[int, bool]:
    """(msg_id, body in the store) without decoding the rest."""
    msg_id, _size, _plen, flags = struct.unpack_from("<QIIB", record)
    return msg_id, bool(flags & IN_STORE)
