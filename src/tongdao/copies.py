"""Process-local copies of store state, each kept with the version it was read at.

A hot path (a gateway's usage report) can skip reading what it read last time when the store
says nothing changed since: the caller reads a version from the store (a row it locks anyway)
and uses the copy only when it was made at that version. A copy is replaced, never changed in
place, once the transaction that produced its new state has committed.

Bounded by the items held in all copies (each copy's ``len``); the least recently used go
first, and a copy larger than the whole bound is not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sized
from typing import Generic, TypeVar

V = TypeVar("V", bound=Sized)

__all__ = ["Copies"]


class Copies(Generic[V]):
    def __init__(self, limit: int = 1_000_000) -> None:
        self._lock = threading.Lock()
        self._data: OrderedDict[Hashable, tuple[int, V]] = OrderedDict()
        self._held = 0
        self._limit = limit

    def get(self, key: Hashable, version: int) -> V | None:
        """The copy for ``key`` if it was made at ``version``."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry[0] != version:
                return None
            self._data.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, version: int, value: V) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._held -= len(old[1])
            if len(value) > self._limit:
                return
            self._data[key] = (version, value)
            self._held += len(value)
            while self._held > self._limit:
                _key, (_version, dropped) = self._data.popitem(last=False)
                self._held -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._held = 0
