"""Drive a sans-IO Connection in-process: pamqp frames in, decoded frames out.

No sockets and no event loop: what the broker sends is whatever the Connection
queued, read with `frames()`. `ManualSyncStore` is a MemoryStore whose writes
reach "disk" only when a test calls `sync()`, so replies that must wait for an
fsync can be observed before and after it.
"""

from __future__ import annotations

from typing import Any

from pamqp import commands, frame, header
from pamqp.body import ContentBody
from pamqp.exceptions import UnmarshalingException

from amqp_broker.broker import Broker
from amqp_broker.config import Config
from amqp_broker.connection import Connection
from amqp_broker.protocol.codec import CLASSES, decode_method, encode_method, make
from amqp_broker.storage import MemoryStore
from amqp_broker.storage.base import SyncCallback

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


class ManualSyncStore(MemoryStore):
    """Everything given to the store is pending until sync() (or fail())."""

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[SyncCallback] = []
        self.synced = 0

    def publish(self, *args: Any, **kwargs: Any) -> int:
        token = super().publish(*args, **kwargs)
        self.synced_token = self.synced
        return token

    def save_definition(self, key: str, record: dict[str, Any] | None) -> int:
        token = super().save_definition(key, record)
        self.synced_token = self.synced
        return token

    def delete_queue(self, queue: str) -> int:
        token = super().delete_queue(queue)
        self.synced_token = self.synced
        return token

    def on_sync(self, callback: SyncCallback) -> None:
        if self.synced >= self._token:
            callback(self._token, True)
        else:
            self._callbacks.append(callback)

    @property
    def pending(self) -> bool:
        return self.synced < self._token

    def sync(self, ok: bool = True) -> None:
        """The group commit finished: everything so far is on disk (or failed)."""
        callbacks, self._callbacks = self._callbacks, []
        if ok:
            self.synced = self.synced_token = self._token
        for cb in callbacks:
            cb(self._token, ok)


def make_broker(store: MemoryStore | None = None, **config: Any) -> Broker:
    config.setdefault("data_dir", None)
    return Broker(Config(**config), store if store is not None else MemoryStore())


class Client:
    """One client connection to an in-process broker."""

    def __init__(self, broker: Broker, vhost: str = "/", user: str = "guest",
                 password: str = "guest") -> None:
        self.conn = Connection(broker, ("127.0.0.1", 40000))
        self.conn.receive(PROTOCOL_HEADER)
        self.send(commands.Connection.StartOk(
            client_properties={"capabilities": {"consumer_cancel_notify": True}},
            mechanism="PLAIN", response=f"\x00{user}\x00{password}", locale="en_US"))
        self.send(commands.Connection.TuneOk(channel_max=2047, frame_max=131072, heartbeat=0))
        self.send(commands.Connection.Open(virtual_host=vhost))
        opened = self.frames()
        assert any(isinstance(v, commands.Connection.OpenOk) for _, v in opened), opened

    def encode(self, value: Any, channel: int = 0) -> bytes:
        return frame.marshal(value, channel)

    def send(self, value: Any, channel: int = 0) -> None:
        self.conn.receive(self.encode(value, channel))

    def send_many(self, data: list[bytes]) -> None:
        """Several frames in one read, as one TCP segment would bring them."""
        self.conn.receive(b"".join(data))

    def publish_frames(self, channel: int, exchange: str, routing_key: str, body: bytes,
                       **props: Any) -> list[bytes]:
        return [
            self.encode(commands.Basic.Publish(exchange=exchange, routing_key=routing_key),
                        channel),
            self.encode(header.ContentHeader(0, len(body), commands.Basic.Properties(**props)),
                        channel),
            self.encode(ContentBody(body), channel),
        ]

    def publish(self, channel: int, exchange: str, routing_key: str, body: bytes,
                **props: Any) -> None:
        self.send_many(self.publish_frames(channel, exchange, routing_key, body, **props))

    def frames(self) -> list[tuple[int, Any]]:
        """Every frame the broker queued for this client since the last call. A method
        pamqp cannot decode (non-UTF-8 short strings) comes as a RawMethod."""
        data = self.conn.take_output()
        out: list[tuple[int, Any]] = []
        while data:
            try:
                used, channel, value = frame.unmarshal(data)
            except UnmarshalingException:
                size = int.from_bytes(data[3:7], "big")
                channel = int.from_bytes(data[1:3], "big")
                key, method = decode_method(data[7:7 + size])
                used, value = size + 8, RawMethod(key, dict(method))
            out.append((channel, value))
            data = data[used:]
        return out

    def open_channel(self, channel: int = 1) -> None:
        self.send(commands.Channel.Open(), channel)
        got = self.frames()
        assert any(isinstance(v, commands.Channel.OpenOk) for _, v in got), got


def encode_fields(key: tuple[int, int], **values: Any) -> bytes:
    """A method frame payload from (class id, method id) and field values (pamqp's
    field names); for frames real clients would not send."""
    return encode_method(make(CLASSES[key], **values))


class RawMethod:
    """A method frame decoded by the broker's own codec: (class, method) and arguments."""

    def __init__(self, key: tuple[int, int], args: dict[str, Any]) -> None:
        self.key = key
        self.args = args

    def __repr__(self) -> str:
        return f"RawMethod({self.key}, {self.args!r})"


def of_type(frames: list[tuple[int, Any]], kind: type) -> list[tuple[int, Any]]:
    return [(ch, v) for ch, v in frames if isinstance(v, kind)]
