"""One published message as the queues hold it."""

from __future__ import annotations

STORED = 1
PAGEABLE = 2


class Message:
    """One published message, shared by every queue it was routed to."""

    __slots__ = ("msg_id", "exchange_raw", "routing_key_raw", "properties", "body",
                 "stored", "body_size", "ttl")

    def __init__(self, msg_id: int, exchange_raw: bytes, routing_key_raw: bytes,
                 properties: bytes, body: bytes | None, body_size: int) -> None:
        self.msg_id = msg_id
        self.exchange_raw = exchange_raw  # short string with its length octet
        self.routing_key_raw = routing_key_raw  # idem
        self.properties = properties  # raw content-header properties
        self.body = body  # None while paged out to the store
        # 0: not in the store; STORED: in the store for some of its queues;
        # PAGEABLE: in the store for all of them, so the body may leave RAM
        self.stored = 0
        self.body_size = body_size
        # (published at, per-message deadline or None) in monotonic seconds, set
        # only while some queue has a TTL or the message has an expiration
        self.ttl: tuple[float, float | None] | None = None

    @property
    def exchange(self) -> str:
        return self.exchange_raw[1:].decode("utf-8", "surrogateescape")

    @property
    def routing_key(self) -> str:
        return self.routing_key_raw[1:].decode("utf-8", "surrogateescape")

    def __lt__(self, other: Message) -> bool:  # queue order for requeue
        return self.msg_id < other.msg_id
