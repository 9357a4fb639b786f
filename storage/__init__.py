"""Message stores behind one small interface (see storage.base)."""

from .base import MessageStore, RecoveredMessage, Recovery, StoreError
from .memory import MemoryStore

__all__ = ["MessageStore", "MemoryStore", "RecoveredMessage", "Recovery", "StoreError"]
