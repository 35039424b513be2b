"""Direct probe calls for a type's tests: a context, the details of a success, the error
of a failure. One harness serves every type module instead of a copy in each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectord.network import EgressPolicy, Network
from connectord.plugin import ConnectorType, ProbeContext, ProbeError
from tests.types.peers_vector import BlackHole

LOOPBACK = ["127.0.0.0/8", "::1/128"]


class ProbeHarness:
    """Calls one type's probe directly, as the facade would."""

    def __init__(self, ctype: ConnectorType) -> None:
        self.ctype = ctype

    def context(
        self,
        endpoint: str | None,
        *,
        timeout: float = 10.0,
        allow: bool = True,
        roots: tuple[str, ...] = (),
        **config: Any,
    ) -> ProbeContext:
        """A probe context; ``allow`` opens loopback in the egress policy."""
        return ProbeContext(
            endpoint=endpoint,
            config=self.ctype.config_model.model_validate(config),
            timeout=timeout,
            network=Network(EgressPolicy(LOOPBACK if allow else []), file_roots=roots),
        )

    async def probe(self, ctx: ProbeContext) -> dict[str, Any]:
        """The details of a probe that must succeed."""
        return (await self.ctype.probe(ctx)).details

    async def failure(self, ctx: ProbeContext) -> ProbeError:
        """The error of a probe that must fail."""
        with pytest.raises(ProbeError) as caught:
            await self.ctype.probe(ctx)
        return caught.value


def black_hole_listener() -> Iterator[BlackHole]:
    """A loopback listener that accepts and never answers (for timeout tests)."""
    hole = BlackHole()
    yield hole
    hole.close()
