"""Replies that promise durability wait here for the store's fsync.

A publisher confirm, a tx.commit-ok and the reply to a durable declare, bind or
delete all mean "this is on disk". Each names a store sync token (what it depends
on) and is released, in the order it was held, once the store has synced through
that token. One gate per connection; nothing here knows what a reply is: an entry
is (token, function, argument), released as function(argument, ok), where ok is
False when the write it waited for failed (disk full, read-only).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from .storage import MessageStore

log = structlog.get_logger("amqp_broker")
Release = Callable[[Any, bool], None]


class SyncGate:
    __slots__ = ("_registered", "after_release", "store", "waiting")

    def __init__(self, store: MessageStore, after_release: Callable[[], None]) -> None:
        self.store = store
        self.after_release = after_release  # called after each batch of releases
        self.waiting: deque[tuple[int, Release, Any]] = deque()
        self._registered = False

    def ready(self, token: int) -> bool:
        """True when a reply depending on token may go out now, ahead of nothing."""
        return not self.waiting and token <= self.store.synced_token

    def hold(self, token: int, release: Release, arg: Any) -> None:
        """Call release(arg, ok) once the store synced through token and every
        entry held before this one was released."""
        self.waiting.append((token, release, arg))
        if not self._registered:
            self._registered = True
            self.store.on_sync(self._synced)

    def clear(self) -> None:
        """Drop every held entry (the connection is gone)."""
        self.waiting.clear()

    def _synced(self, token: int, ok: bool) -> None:
        self._registered = False
        waiting = self.waiting
        if not waiting:
            return
        synced = self.store.synced_token
        while waiting and waiting[0][0] <= token:
            tok, release, arg = waiting.popleft()
            try:
                release(arg, ok or tok <= synced)
            except Exception:  # one bad reply must not strand the ones behind it
                log.exception("releasing a synced reply failed")
        if waiting and not self._registered:
            self._registered = True
            self.store.on_sync(self._synced)
        self.after_release()
