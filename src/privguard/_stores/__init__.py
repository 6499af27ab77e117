"""Stores: one interface (:class:`Store`), several implementations."""

from ._base import Store
from ._memory import MemoryStore

__all__ = ["MemoryStore", "Store"]
