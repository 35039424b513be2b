"""The network policy of probes, in one place, handed to each probe as ``ctx.network``.

- :mod:`.egress`: may a probe connect to this address (the SSRF guard)?
- :mod:`.files`: may a probe read this local path (the file roots)?
- :mod:`.http`: an aiohttp client and resolver that connect only to checked addresses.
- :mod:`.tls`: client TLS contexts (the pinned-name one too), CA PEM fields, TLS errors.
- :mod:`.endpoints`, :mod:`.failures`: endpoint parsing, checked TCP connects, and
  connection failures as error kinds.

A probe never builds a policy of its own: the runner makes one :class:`Network`
per test (the tenant's file roots resolved) and the probe asks it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from connectord.network.egress import Destination, EgressPolicy
from connectord.network.files import path_in_roots
from connectord.network.http import CheckedHttp, EgressResolver
from connectord.network.tls import PinnedNameContext, pinned_tls_context, tls_context


@dataclass(frozen=True, slots=True)
class Network:
    """What a probe may reach: the egress policy and the tenant's file roots."""

    egress: EgressPolicy
    #: The folders file probes may read (the tenant's, already resolved).
    file_roots: tuple[str, ...] = ()
    #: Folders never served even inside a root (the server's data directory).
    file_denied: tuple[str, ...] = ()

    async def resolve(self, host: str, port: int) -> list[Destination]:
        """The checked addresses of ``host`` (``egress_denied`` if any may not be reached):
        connect to one of these, never to the name again."""
        return await self.egress.resolve(host, port)

    def local_path(self, path: str) -> str:
        """The real path of ``path`` if the file roots allow it; ``egress_denied`` otherwise."""
        return path_in_roots(path, self.file_roots, self.file_denied)

    def resolver(self, known: Iterable[Destination] = ()) -> EgressResolver:
        """An aiohttp resolver that checks every name it is asked about (``known`` are checked)."""
        return EgressResolver(self.egress, known)

    def http(
        self,
        base_url: str,
        timeout: float,
        *,
        default_port: int = 80,
        headers: Mapping[str, str] | None = None,
        tls_verify: bool = True,
        ca_pem: str | None = None,
    ) -> CheckedHttp:
        """A client for one base URL that connects only to checked addresses."""
        return CheckedHttp(
            self.egress,
            timeout,
            base_url,
            default_port=default_port,
            headers=headers,
            tls_verify=tls_verify,
            ca_pem=ca_pem,
        )

    @staticmethod
    def tls(verify: bool, ca_pem: str | None, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
        """A shared client TLS context (see :func:`.tls.tls_context`)."""
        return tls_context(verify, ca_pem, alpn)

    @staticmethod
    def pinned_tls(host: str, verify: bool, ca_pem: str | None) -> PinnedNameContext:
        """A client TLS context that verifies ``host`` whatever name a driver passes."""
        return pinned_tls_context(host, verify, ca_pem)


__all__ = ["Destination", "EgressPolicy", "Network"]
