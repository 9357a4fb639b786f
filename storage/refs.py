"""One queue's message references in RAM, as the disk store keeps them."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable

# QueueRefs flags
REMOVED = 1
DELIVERED = 2


class QueueRefs:
    """One queue's message references in msg_id order (RAM, 9 bytes each)."""

    __slots__ = ("flags", "head", "ids", "removed")

    def __init__(self) -> None:
        self.ids = array("q")
        self.flags = bytearray()
        self.head = 0  # no live reference before this index
        self.removed = 0

    def find(self, msg_id: int) -> int:
        ids, i = self.ids, self.head
        if i >= len(ids) or ids[i] != msg_id:
            i = bisect_left(ids, msg_id, i)
        if i < len(ids) and ids[i] == msg_id and not self.flags[i] & REMOVED:
            return i
        return -1

    def drop(self, i: int) -> None:
        flags = self.flags
        flags[i] |= REMOVED
        self.removed += 1
        while self.head < len(flags) and flags[self.head] & REMOVED:
            self.head += 1
        if self.removed > 1024 and self.removed * 2 > len(flags):
            self._compact()

    def _compact(self) -> None:
        if self.removed == self.head:  # the usual FIFO case: all removals are at the front
            del self.ids[:self.head]
            del self.flags[:self.head]
        else:
            keep = [i for i, f in enumerate(self.flags) if not f & REMOVED]
            self.ids = array("q", [self.ids[i] for i in keep])
            self.flags = bytearray(self.flags[i] for i in keep)
        self.head = self.removed = 0

    def live(self) -> Iterable[tuple[int, int]]:
        """(msg_id, flags) of every live reference."""
        flags = self.flags
        return ((m, flags[i]) for i, m in enumerate(self.ids) if not flags[i] & REMOVED)
