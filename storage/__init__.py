"""Message stores behind one small interface (see storage.base)."""

from .base import MessageStore, RecoveredMessage, Recovery, StoreError
from .disk import DiskStore
from .memory import MemoryStore

__all__ = ["DiskStore", "MemoryStore", "MessageStore", "RecoveredMessage", "Recovery",
           "StoreError"]
