"""A per-process cache of what a caller makes of opened connectors, while each is unchanged.

Below the facade (:meth:`connectord.facade.ConnectorsFacade.use_connector_cached`
fills and checks it); the HTTP proxy keeps its parsed upstreams in one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from connectord.model import InUse

__all__ = ["Made", "UseCache"]

#: What a cache's ``derive`` makes of an opened connector.
Made = TypeVar("Made")


class UseCache(Generic[Made]):
    """What a caller makes of opened connectors, kept per process while each connector
    is unchanged (:meth:`ConnectorsFacade.use_connector_cached`; the proxy keeps its
    parsed config, target and headers so).

    An entry holds the stamp it was made from: the connector's version, timestamps,
    endpoint, public config and sealed secret, so any write (an update, a rotated key
    or refresh token, a restore) misses on the next use. An entry made from secret
    references lives at most the references' TTL, as the resolver's own values do.
    ``derive`` must not answer ``None``; ``size`` bounds the entries (oldest out first).
    """

    def __init__(self, derive: Callable[[InUse], Made], *, size: int = 1024) -> None:
        self.derive = derive
        self.size = size
        self._entries: dict[tuple[str, str], tuple[tuple[Any, ...], float, Made]] = {}

    def get(self, key: tuple[str, str], stamp: tuple[Any, ...]) -> Made | None:
        """The value made from this very stamp, if it has not expired."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != stamp or entry[1] <= time.monotonic():
            return None
        return entry[2]

    def put(self, key: tuple[str, str], stamp: tuple[Any, ...], made: Made, ttl: float | None) -> None:
        """Keep ``made`` for ``stamp`` (``ttl`` seconds, or until the connector changes)."""
        self._entries.pop(key, None)
        while len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        expires = float("inf") if ttl is None else time.monotonic() + ttl
        self._entries[key] = (stamp, expires, made)

    def discard(self, key: tuple[str, str]) -> None:
        """Forget one connector's entry."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every entry (revealed secrets included)."""
        self._entries.clear()
