"""A short-lived, in-process cache of API key lookups (``docs/security.md``, "API keys").

Every request authenticates its key; without a cache that is one store read
per request, about a fifth of a GET's cost. An entry lives ``ttl`` seconds
(``CONNECTORD_KEY_CACHE_TTL``), which is the revocation bound: a key revoked
by this process is forgotten at once, and one revoked by any other process
(another replica, the CLI on the same data dir) is refused everywhere within
``ttl``, on SQLite and PostgreSQL alike, with no channel between processes to
fail. Unknown keys are never cached, so a key made anywhere works at once.
The cache holds key hashes, never keys.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["KeyCache"]

P = TypeVar("P")


class KeyCache(Generic[P]):
    """Principals by key hash, each for at most ``ttl`` seconds; the least recently used
    goes first beyond ``max_entries``. ``ttl`` 0 turns the cache off."""

    def __init__(
        self, ttl: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, str, P]] = OrderedDict()

    def get(self, key_hash: str) -> P | None:
        """The cached principal of a key, or ``None`` when it is absent or expired."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        expires, _, principal = entry
        if self._clock() >= expires:
            del self._entries[key_hash]
            return None
        self._entries.move_to_end(key_hash)
        return principal

    def put(self, key_hash: str, key_id: str, principal: P) -> None:
        """Remember a key found in the store (a no-op with the cache off)."""
        if self.ttl <= 0:
            return
        self._entries[key_hash] = (self._clock() + self.ttl, key_id, principal)
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, key_id: str) -> None:
        """Drop a key this process revoked, so its next request is refused."""
        for key_hash in [h for h, (_, kid, _) in self._entries.items() if kid == key_id]:
            del self._entries[key_hash]

    def __len__(self) -> int:
        return len(self._entries)
