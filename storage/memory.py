"""An in-memory MessageStore: nothing survives a restart.

Used when the broker runs without a data directory and by unit tests; it keeps
the same contract as the durable store so the broker needs no special case.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .base import MessageStore, Recovery, StoreError, SyncCallback


class MemoryStore(MessageStore):
    def __init__(self) -> None:
        self._bodies: dict[int, bytes] = {}
        self._refs: dict[int, int] = {}
        self._queues: dict[str, set[int]] = {}
        self.definitions: dict[str, dict[str, Any]] = {}
        self._token = 0

    def open(self) -> Recovery:
        return Recovery()

    async def run(self) -> None:
        return None

    def close(self) -> None:
        return None

    def save_definition(self, key: str, record: dict[str, Any] | None) -> int:
        if record is None:
            self.definitions.pop(key, None)
        else:
            self.definitions[key] = record
        self._token += 1
        self.synced_token = self._token
        return self._token

    def publish(self, msg_id: int, exchange: str, routing_key: str, properties: bytes,
                body: bytes, queues: Sequence[str]) -> int:
        self._bodies[msg_id] = body
        self._refs[msg_id] = len(queues)
        for q in queues:
            self._queues.setdefault(q, set()).add(msg_id)
        self._token += 1
        self.synced_token = self._token
        return self._token

    def remove(self, queue: str, msg_ids: Iterable[int]) -> None:
        held = self._queues.get(queue)
        if held is None:
            return
        for msg_id in msg_ids:
            if msg_id in held:
                held.discard(msg_id)
                self._release(msg_id)

    def _release(self, msg_id: int) -> None:
        left = self._refs.get(msg_id, 1) - 1
        if left <= 0:
            self._refs.pop(msg_id, None)
            self._bodies.pop(msg_id, None)
        else:
            self._refs[msg_id] = left

    def mark_delivered(self, queue: str, msg_id: int) -> None:
        return None

    def delete_queue(self, queue: str) -> int:
        for msg_id in self._queues.pop(queue, set()):
            self._release(msg_id)
        self._token += 1
        self.synced_token = self._token
        return self._token

    def read_body(self, msg_id: int) -> bytes:
        try:
            return self._bodies[msg_id]
        except KeyError:
            raise StoreError(f"message {msg_id} is not stored") from None

    def on_sync(self, callback: SyncCallback) -> None:
        callback(self._token, True)

    @property
    def last_token(self) -> int:
        return self._token

    @property
    def stored_messages(self) -> int:
        return len(self._bodies)
