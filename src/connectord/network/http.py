"""aiohttp over egress-checked addresses, shared by the probes that speak HTTP.

- :class:`CheckedResolver`: an aiohttp resolver that answers only with
  addresses the egress policy checked, so every connection goes to a checked
  address while the URL, the ``Host`` header, SNI and the certificate check
  keep the name. :class:`EgressResolver` checks each name it is asked about
  (vector, serverless, and AWS clients, whose host names come from botocore);
  the http type pins the names it checked itself.
- :class:`CheckedHttp`: a small client for one base URL on top of it, with phase
  timings and :func:`map_aiohttp_error` for its failures.
"""

from __future__ import annotations

import abc
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp.abc import AbstractResolver, ResolveResult

from connectord.errors import ProbeError
from connectord.model import ErrorKind
from connectord.network.endpoints import host_key, parse_http_url
from connectord.network.failures import aiohttp_error_kind, error_text
from connectord.network.tls import tls_context
from connectord.timing import ms_since, timed

if TYPE_CHECKING:
    import aiohttp

    from connectord.network.egress import Destination, EgressPolicy

MAX_BODY_BYTES = 4 * 1024 * 1024


class CheckedResolver(AbstractResolver):
    """An aiohttp resolver that answers only with egress-checked addresses.

    aiohttp never asks a resolver about IP literals: check those up front with
    ``policy.resolve``. Subclasses say where the addresses come from.
    """

    @abc.abstractmethod
    async def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses of ``host``; ``OSError`` when it may not be reached."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The checked addresses of ``host``, as aiohttp wants them (numeric: no lookup follows)."""
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in await self.addresses(host, port)
        ]

    async def close(self) -> None:
        """Nothing to release."""


class EgressResolver(CheckedResolver):
    """A resolver that checks every name it is asked about with the egress policy.

    Given to aiohttp (or through aiobotocore's ``connector_args``), it covers
    every host the client looks up, redirects and AWS host names included.
    Clients wrap resolver errors in their own types, so a refusal is also kept
    in :attr:`refusal`.
    """

    def __init__(self, policy: EgressPolicy, known: Iterable[Destination] = ()) -> None:
        self._policy = policy
        self._known: dict[str, list[str]] = {}
        for dest in known:
            self._known.setdefault(host_key(dest.host), []).append(dest.address)
        self.refusal: ProbeError | None = None

    def socket_factory(self, addr_info: Any) -> socket.socket:
        """aiohttp's ``socket_factory``: the last check, at connect time, of the address itself.

        aiohttp never asks a resolver about an IP literal, so a redirect (or an
        address a library builds from a server's answer) to a literal would pass
        the resolver unseen; every socket is made here, so none does.
        """
        family, kind, proto, _, sockaddr = addr_info
        try:
            self._policy.check(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except ProbeError as exc:
            self.refusal = exc
            raise OSError(exc.message) from exc
        return socket.socket(family, kind, proto)

    def connector_args(self) -> dict[str, Any]:
        """The ``aiohttp.TCPConnector`` arguments that route every connection through the policy."""
        return {"resolver": self, "use_dns_cache": False, "socket_factory": self.socket_factory}

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses checked before, or checked now; ``OSError`` (and :attr:`refusal`) if denied."""
        found = self._known.get(host_key(host))
        if found is None:
            try:
                found = [d.address for d in await self._policy.resolve(host, port)]
            except ProbeError as exc:
                self.refusal = exc
                raise OSError(exc.message) from exc
            self._known[host_key(host)] = found
        return found


async def read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes of the body; the rest is dropped with the connection."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def map_aiohttp_error(exc: BaseException, target: str, resolver: EgressResolver | None = None) -> ProbeError:
    """An aiohttp error as a :class:`ProbeError`; ``target`` (``host:port``) names the server."""
    if resolver is not None and resolver.refusal is not None:
        return resolver.refusal
    kind = aiohttp_error_kind(exc) or ErrorKind.INTERNAL
    return ProbeError(kind, error_text(exc, kind, target))


def status_error(status: int, what: str) -> ProbeError | None:
    """The error for a non-2xx answer to ``what`` (a route), or ``None`` on 2xx."""
    if 200 <= status < 300:
        return None
    if status in (401, 403):
        return ProbeError(ErrorKind.AUTH, f"{what} refused the credentials (HTTP {status})")
    if status == 404:
        return ProbeError(ErrorKind.NOT_FOUND, f"{what} was not found (HTTP 404)")
    return ProbeError(ErrorKind.UNEXPECTED_STATUS, f"{what} answered HTTP {status}")


class CheckedHttp:
    """An aiohttp session that connects only to egress-checked addresses of one base URL.

    Redirects are not followed (an API route that redirects is a finding, not a
    detour). ``phases`` gets ``resolve_ms``, ``connect_ms`` (TCP and TLS) and
    ``probe_ms`` (the requests).
    """

    def __init__(
        self,
        policy: EgressPolicy,
        timeout: float,
        base_url: str,
        *,
        default_port: int = 80,
        headers: Mapping[str, str] | None = None,
        tls_verify: bool = True,
        ca_pem: str | None = None,
    ) -> None:
        self.scheme, self.host, self.port, self.base_path = parse_http_url(
            base_url, default_port=default_port
        )
        self.target = f"{self.host}:{self.port}"
        self.phases: dict[str, float] = {}
        self._policy = policy
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._tls_verify = tls_verify
        self._ca_pem = ca_pem
        self._session: aiohttp.ClientSession | None = None
        self.resolver: EgressResolver | None = None

    async def __aenter__(self) -> CheckedHttp:
        import aiohttp

        with timed(self.phases, "resolve_ms"):
            destinations = await self._policy.resolve(self.host, self.port)
        self.resolver = EgressResolver(self._policy, destinations)
        tls: ssl.SSLContext | bool = False
        if self.scheme == "https":
            tls = tls_context(self._tls_verify, self._ca_pem)
        trace = aiohttp.TraceConfig()
        marks: dict[str, float] = {}

        async def connect_start(*_: Any) -> None:
            marks["connect"] = time.perf_counter()

        async def connect_end(*_: Any) -> None:
            self.phases.setdefault("connect_ms", ms_since(marks["connect"]))

        trace.on_connection_create_start.append(connect_start)
        trace.on_connection_create_end.append(connect_end)
        # A literal IP in the URL is never given to the resolver: connect to the checked one.
        connector = aiohttp.TCPConnector(ssl=tls, force_close=True, limit=4, **self.resolver.connector_args())
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            trace_configs=[trace],
            trust_env=False,  # a proxy from the environment would bypass the egress check
            headers=self._headers,
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def origin(self) -> str:
        """``scheme://host:port`` (the name, not the address: TLS and ``Host`` use it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def url(self, path: str) -> str:
        """The absolute URL of a route below the base path."""
        return self.origin + self.base_path + path

    async def request(
        self, method: str, path: str, *, json_body: Any = None, url: str | None = None
    ) -> tuple[int, bytes, str]:
        """``(status, body, content type)`` of one request; network errors as :class:`ProbeError`."""
        import aiohttp

        assert self._session is not None, "use CheckedHttp as an async context manager"
        try:
            with timed(self.phases, "probe_ms"):
                async with self._session.request(
                    method, url or self.url(path), json=json_body, allow_redirects=False
                ) as response:
                    body = await read_at_most(response, MAX_BODY_BYTES + 1)
                    status, ctype = response.status, response.content_type
        except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError) as exc:
            raise map_aiohttp_error(exc, self.target, self.resolver) from exc
        if len(body) > MAX_BODY_BYTES:
            raise ProbeError(ErrorKind.PROTOCOL, f"{path} answered more than {MAX_BODY_BYTES} bytes")
        return status, body, ctype

    async def get_json(self, path: str, what: str | None = None) -> Any:
        """GET a route that must answer 2xx with JSON; its parsed body."""
        status, body, _ = await self.request("GET", path)
        error = status_error(status, what or path)
        if error is not None:
            raise error
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ProbeError(ErrorKind.PROTOCOL, f"{what or path} did not answer JSON") from exc
