"""Phase timings of probes, in milliseconds."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


def ms_between(start: float, end: float) -> float:
    """Milliseconds between two ``time.perf_counter()`` marks."""
    return round((end - start) * 1000, 3)


def ms_since(start: float) -> float:
    """Milliseconds since a ``time.perf_counter()`` mark."""
    return ms_between(start, time.perf_counter())


@contextlib.contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the time the block takes to ``phases[name]`` (ms), also when it raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = round(phases.get(name, 0.0) + ms_since(start), 3)
