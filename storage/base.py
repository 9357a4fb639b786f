"""The narrow interface between the broker and a message store.

The broker owns queues and their order in RAM; a store only makes persistent
messages in durable queues, and durable definitions, survive a restart.

Identity:
  * msg_id   - a positive int the broker assigns, increasing in publish order.
  * queue    - an opaque str the broker builds from vhost and queue name.
  * def key  - an opaque str naming one durable definition (exchange, queue,
               binding); its record is a JSON-serialisable dict.

Durability: publish/remove/mark_delivered/save_definition return at once; the
data reaches disk in the store's group commit. `publish`, `save_definition` and
`delete_queue` return a token (an increasing int; `last_token` is the newest);
callbacks registered with `on_sync` are called on the event loop with (token, ok)
once everything up to that token is fsync'd (ok=True), or could not be written
(ok=False, e.g. disk full). `synced_token` is the highest token known to be on
disk. Every reply that promises durability (publisher confirms, tx.commit-ok,
durable declare/bind/delete) waits for a token this way (amqp_broker.syncgate). The
store never raises from publish for an I/O failure; it reports it through the callback
and sets `failed` so the broker can raise the disk alarm.

Damage: `open` recovers what is readable and logs the rest; it raises StoreError only
for data it must not misread (a newer format) or a directory in use. A definition or a
queue deletion lost to a corrupt record must not be lost to the store (the disk store
keeps them twice); a lost ack or list of live messages may bring an acknowledged message
back (at-least-once), never lose an unacknowledged one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

SyncCallback = Callable[[int, bool], None]


@dataclass(slots=True)
class RecoveredMessage:
    """One message of one queue as found on disk; body is read lazily."""

    msg_id: int
    exchange: str
    routing_key: str
    properties: bytes  # raw content-header property bytes: flags then values
    body_size: int
    delivered: bool  # was handed to a consumer before the stop: redelivered=true


@dataclass
class Recovery:
    """What a store found when it opened."""

    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    queues: dict[str, list[RecoveredMessage]] = field(default_factory=dict)  # in msg_id order
    next_msg_id: int = 1
    seconds: float = 0.0
    skipped_records: int = 0  # corrupt records that were logged and skipped


class StoreError(Exception):
    """The store cannot do what was asked (unreadable body, closed store)."""


class MessageStore(ABC):
    """A place where persistent messages and durable definitions survive restarts."""

    #: True once a write or fsync failed (disk full, read-only); cleared when writes succeed
    failed: bool = False
    #: every token up to this one is on disk
    synced_token: int = 0
    #: bytes of message bodies given to the store and not yet on disk (held in RAM)
    unsynced_bytes: int = 0

    @abstractmethod
    def open(self) -> Recovery:
        """Open (creating if needed) and recover; called once before anything else."""

    @abstractmethod
    async def run(self) -> None:
        """The group-commit loop; runs in the broker's task group until close()."""

    @abstractmethod
    def close(self) -> None:
        """Flush and fsync what is pending, then release files. Idempotent."""

    # --- definitions -------------------------------------------------------
    @abstractmethod
    def save_definition(self, key: str, record: dict[str, Any] | None) -> int:
        """Create or replace (record) or delete (None) one durable definition;
        returns a sync token."""

    # --- messages ----------------------------------------------------------
    @abstractmethod
    def publish(self, msg_id: int, exchange: str, routing_key: str, properties: bytes,
                body: bytes, queues: Sequence[str]) -> int:
        """Store the message once and enqueue it on each queue; returns a sync token."""

    @abstractmethod
    def remove(self, queue: str, msg_ids: Iterable[int]) -> None:
        """The messages left the queue for good (ack, reject without requeue, purge, expiry)."""

    @abstractmethod
    def mark_delivered(self, queue: str, msg_id: int) -> None:
        """The message was handed to a consumer; after a crash it comes back redelivered."""

    @abstractmethod
    def delete_queue(self, queue: str) -> int:
        """Forget the queue and every message reference it holds; returns a sync token."""

    @abstractmethod
    def read_body(self, msg_id: int) -> bytes:
        """The body of a stored message (also one not yet fsync'd). StoreError if unreadable."""

    @abstractmethod
    def on_sync(self, callback: SyncCallback) -> None:
        """Call callback(token, ok) after the next group commit that covers all
        tokens issued so far (at once if nothing is pending)."""

    @property
    @abstractmethod
    def last_token(self) -> int:
        """The token of the most recent publish."""

    # --- other files synced with the store (stream logs) --------------------
    def sync_with(self, key: str, sync: Callable[[], None]) -> int:
        """Run sync() (an fsync of a file the broker wrote itself, e.g. a stream log) in
        the next group commit, once per key per commit, before its callbacks; returns the
        token a reply depending on it waits for. sync raises OSError when it fails (the
        commit is then retried, as for the store's own writes). This default runs sync at
        once, for stores that have no group commit."""
        sync()
        return self.last_token

    def stream_root(self) -> str | None:
        """The directory stream logs live under; None: they are kept in memory."""
        return None
