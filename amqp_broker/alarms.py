"""The memory alarm's decision, kept apart from clocks and processes so it can be
driven by explicit numbers.

The broker counts what it holds (`Broker.memory_held`: message bodies in RAM, a
per-message overhead, unacknowledged deliveries, output buffers, bodies the store
has not fsync'd yet). Those bytes set the alarm above the watermark and clear it
below CLEAR of it. The process RSS is a backstop for whatever the count misses,
but RSS need not fall when memory is freed (glibc keeps freed heap, Python keeps
arenas), so RSS alone never keeps the alarm on for good: once the held bytes are
below LOW of the watermark and only RSS holds it, freed memory is handed back
(malloc_trim) and, if RSS then stops falling for FLAT_CHECKS checks, that RSS is
taken as the broker's floor: the backstop moves to floor + half the watermark
(following RSS back down later) and the alarm clears.

Freed memory is also handed back, alarm or not, when the held bytes fell by
TRIM_STEP, or when RSS grew TRIM_STEP past what the held bytes explain (a burst
churns the heap: bodies read, stored, freed) and no trim ran for TRIM_EVERY checks.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

CLEAR = 0.9  # the alarm clears below this fraction of the watermark (hysteresis)
LOW = 0.5  # held bytes below this fraction: RSS alone may no longer keep the alarm on
FLAT_CHECKS = 8  # checks without RSS falling before RSS is taken as the floor
TRIM_STEP = 64 * 1024 * 1024  # held bytes that fell this much are worth a malloc_trim
TRIM_EVERY = 8  # at most one trim for unexplained RSS growth per this many checks


class MemoryAlarm:
    """Whether publishers must be blocked for memory, from held bytes and RSS."""

    def __init__(self, watermark: int) -> None:
        self.watermark = watermark
        self.rss_limit = watermark  # RSS above this sets the alarm (the backstop)
        self.on = False
        self._peak = 0  # highest held bytes since the last trim
        self._trim_due = False
        self._unexplained = -1  # RSS minus held bytes after the last trim; -1: not seen yet
        self._since_trim = 0  # checks since the last trim
        self._flat = -1  # checks since RSS last fell while only RSS holds the alarm; -1: none
        self._rss_low = 0  # the lowest RSS seen meanwhile

    def wants_trim(self, held: int, rss: int | None) -> bool:
        """True when freed memory is worth handing back to the OS now: the held bytes
        fell by TRIM_STEP (or a quarter of the watermark, if smaller) since the last
        trim, RSS grew that much more than they explain, or only RSS keeps the alarm
        on. After trimming, call trimmed() with the new RSS."""
        step = min(TRIM_STEP, self.watermark // 4)
        self._since_trim += 1
        if held > self._peak:
            self._peak = held
        if rss is not None:
            unexplained = max(0, rss - held)
            if self._unexplained < 0 or unexplained < self._unexplained:
                self._unexplained = unexplained  # the lowest since the last trim
        return (self._trim_due or self._peak - held >= step
                or (rss is not None and self._since_trim >= TRIM_EVERY
                    and rss - held - self._unexplained >= step))

    def trimmed(self, held: int, rss: int | None) -> None:
        """Freed memory was handed back; rss is what is left."""
        self._trim_due = False
        self._peak = held
        self._since_trim = 0
        if rss is not None:
            self._unexplained = max(0, rss - held)

    def update(self, held: int, rss: int | None) -> bool:
        """One check: the bytes the broker holds and the RSS (None: unknown).
        Returns whether the alarm is on."""
        w = self.watermark
        if rss is not None:
            # a floor raised for stuck RSS follows RSS back down, never below the watermark
            self.rss_limit = max(w, min(self.rss_limit, rss + w // 2))
        if not self.on:
            if held > w or (rss is not None and rss > self.rss_limit):
                self.on = True
                self._flat = -1
            return self.on
        if held >= CLEAR * w:
            self._flat = -1
            return True
        if rss is None or rss < CLEAR * self.rss_limit:
            self.on = False
            return False
        if held >= LOW * w:  # RSS is high with much held: it is what is held
            self._flat = -1
            return True
        # only RSS holds the alarm: give freed memory back, then wait for RSS to fall
        if self._flat < 0:
            self._trim_due = True
            self._flat = 0
            self._rss_low = rss
        elif rss < self._rss_low:
            self._rss_low = rss
            self._flat = 0
        else:
            self._flat += 1
            if self._flat >= FLAT_CHECKS:
                self.rss_limit = rss + w // 2
                self.on = False
        return self.on


def _load_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_malloc_trim: Callable[[int], int] | None | bool = False  # False: not looked up yet


def trim_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim; a no-op elsewhere)."""
    global _malloc_trim
    if _malloc_trim is False:
        _malloc_trim = _load_trim()
    if callable(_malloc_trim):
        _malloc_trim(0)
