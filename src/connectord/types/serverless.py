"""The ``serverless`` type: HTTP functions and AWS Lambda (``docs/serverless-probe.md``).

``http``: a ``GET`` to the function's health path; a ``POST`` of ``{}`` only
when the user opts in with ``invoke`` (an invoke may have side effects).
``aws_lambda``: ``GetFunction``, then ``Invoke`` with ``InvocationType=DryRun``
(the service checks the request and the permissions; the function code never runs).

This module also holds the network plumbing the vector and file probes share
until a common module exists (see the doc):

- :class:`EgressResolver`: an aiohttp resolver that answers only with
  egress-checked addresses, so every connection (redirects and AWS host names
  included) goes to a checked address while TLS still verifies the name;
- :class:`CheckedHttp`: a small aiohttp client built on it, with phase timings.

The AWS plumbing (client settings, botocore error mapping) lives in ``file.py``.
"""

from __future__ import annotations

import enum
import json
import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import Field, SecretStr, field_validator, model_validator

from connectord.model import Capability, ErrorKind
from connectord.types.base import ConnectorConfig, ConnectorType, ProbeContext, ProbeError, ProbeOutcome
from connectord.types.custom import tls_context

if TYPE_CHECKING:
    import aiohttp

    from connectord.egress import Destination, EgressPolicy

MAX_BODY_BYTES = 4 * 1024 * 1024
HTTP_PORTS = {"http": 80, "https": 443}


def ms_since(start: float) -> float:
    """Milliseconds since a ``time.perf_counter()`` mark."""
    return round((time.perf_counter() - start) * 1000, 3)


def check_pem(value: str | None) -> str | None:
    """A field validator body: CA certificates must be PEM text, never a path."""
    if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
        raise ValueError("must be PEM text (-----BEGIN CERTIFICATE-----), not a file path")
    return value


def parse_http_url(url: str | None, *, default_port: int = 80) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path)`` of an http(s) URL; a bare ``host[:port]`` means http on
    ``default_port`` (a provider's usual port)."""
    if not url:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint is required (an http:// or https:// URL)")
    bare = "://" not in url
    parts = urlsplit(f"http://{url}" if bare else url)
    scheme = parts.scheme.lower()
    if scheme not in HTTP_PORTS:
        raise ProbeError(ErrorKind.INVALID_CONFIG, f"unsupported scheme {scheme!r}: use http:// or https://")
    try:
        port = parts.port or (default_port if bare else HTTP_PORTS[scheme])
    except ValueError as exc:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint's port is not a number") from exc
    if parts.username or parts.password:
        raise ProbeError(
            ErrorKind.INVALID_CONFIG, "put credentials in the config's secret fields, not the URL"
        )
    if not parts.hostname:
        raise ProbeError(ErrorKind.INVALID_CONFIG, "the endpoint needs a host")
    return scheme, parts.hostname, port, parts.path.rstrip("/")


# --- egress-checked name resolution --------------------------------------------------


class EgressResolver(AbstractResolver):
    """An aiohttp resolver that answers only with addresses the egress policy allows.

    Given to aiohttp (or through aiobotocore's ``connector_args``), it makes the
    client connect to checked addresses only, while TLS still verifies the name.
    aiohttp never asks a resolver about IP literals: check those up front with
    ``policy.resolve`` (as :class:`CheckedHttp` does). Clients wrap resolver
    errors in their own types, so a refusal is also kept in :attr:`refusal`.
    """

    def __init__(self, policy: EgressPolicy, known: Iterable[Destination] = ()) -> None:
        self._policy = policy
        self._known: dict[str, list[str]] = {}
        for dest in known:
            self._known.setdefault(dest.host.lower(), []).append(dest.address)
        self.refusal: ProbeError | None = None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The checked addresses of ``host``; ``OSError`` (and :attr:`refusal`) if denied."""
        addresses = self._known.get(host.lower())
        if addresses is None:
            try:
                addresses = [d.address for d in await self._policy.resolve(host, port)]
            except ProbeError as exc:
                self.refusal = exc
                raise OSError(exc.message) from exc
            self._known[host.lower()] = addresses
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        """Nothing to release."""


# --- a small HTTP client over checked addresses --------------------------------------


def _aiohttp_kinds() -> tuple[tuple[type[BaseException], ErrorKind], ...]:
    import aiohttp

    # Most specific first: the first class an exception is an instance of wins.
    return (
        (aiohttp.ClientConnectorCertificateError, ErrorKind.TLS),
        (aiohttp.ServerFingerprintMismatch, ErrorKind.TLS),
        (aiohttp.ClientSSLError, ErrorKind.TLS),
        (aiohttp.ClientConnectorDNSError, ErrorKind.DNS),
        (aiohttp.ConnectionTimeoutError, ErrorKind.TIMEOUT),
        (aiohttp.SocketTimeoutError, ErrorKind.TIMEOUT),
        (aiohttp.ServerTimeoutError, ErrorKind.TIMEOUT),
        (aiohttp.InvalidURL, ErrorKind.INVALID_CONFIG),
        (aiohttp.ClientConnectorError, ErrorKind.UNAVAILABLE),
        (aiohttp.ServerDisconnectedError, ErrorKind.PROTOCOL),
        (aiohttp.ClientResponseError, ErrorKind.PROTOCOL),
        (aiohttp.ClientPayloadError, ErrorKind.PROTOCOL),
        (aiohttp.ClientConnectionError, ErrorKind.UNAVAILABLE),
        (aiohttp.ClientError, ErrorKind.PROTOCOL),
        (aiohttp.WSMessageTypeError, ErrorKind.PROTOCOL),
        (TimeoutError, ErrorKind.TIMEOUT),
        (ssl.SSLError, ErrorKind.TLS),
        (ConnectionRefusedError, ErrorKind.REFUSED),
        (OSError, ErrorKind.UNAVAILABLE),
    )


def aiohttp_error_kind(exc_type: type[BaseException]) -> ErrorKind | None:
    """The error kind of an aiohttp (or socket) exception class; ``None`` if unknown."""
    for cls, kind in _aiohttp_kinds():
        if issubclass(exc_type, cls):
            return kind
    return None


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then what it wraps (``__cause__``, an aiohttp ``os_error``, a botocore
    ``error``). Safe on cycles: drivers write ``raise e from e``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < 16:
        seen.add(id(exc))
        yield exc
        inner = getattr(exc, "os_error", None) or (getattr(exc, "kwargs", None) or {}).get("error")
        exc = inner if isinstance(inner, BaseException) and id(inner) not in seen else exc.__cause__


def first_in_chain(exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
    """The first exception in ``exc``'s :func:`chain` that is one of ``kinds``, or ``None``."""
    return next((e for e in chain(exc) if isinstance(e, kinds)), None)


def refused(exc: BaseException | None) -> bool:
    """True when a connection refusal is somewhere in the exception's chain."""
    return any(isinstance(e, ConnectionRefusedError) for e in chain(exc))


def map_aiohttp_error(exc: BaseException, target: str, resolver: EgressResolver | None = None) -> ProbeError:
    """An aiohttp error as a :class:`ProbeError`; ``target`` (``host:port``) names the server."""
    if resolver is not None and resolver.refusal is not None:
        return resolver.refusal
    if refused(exc):
        return ProbeError(ErrorKind.REFUSED, f"connection refused by {target}")
    kind = aiohttp_error_kind(type(exc)) or ErrorKind.INTERNAL
    messages = {
        ErrorKind.TLS: f"TLS with {target} failed: {_tls_reason(exc)}",
        ErrorKind.DNS: f"cannot resolve {target}",
        ErrorKind.TIMEOUT: f"{target} did not answer in time",
        ErrorKind.INVALID_CONFIG: "the URL is not valid",
        ErrorKind.UNAVAILABLE: f"cannot connect to {target}",
        ErrorKind.PROTOCOL: f"{target} answered with something that is not valid HTTP",
    }
    return ProbeError(kind, messages.get(kind, f"the request to {target} failed ({type(exc).__name__})"))


def _tls_reason(exc: BaseException) -> str:
    cert_error = getattr(exc, "certificate_error", None)
    reason = getattr(cert_error, "verify_message", None) or getattr(exc, "reason", None)
    return str(reason) if reason else "handshake failed"


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
        ctx: ProbeContext,
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
        self._ctx = ctx
        self._headers = dict(headers or {})
        self._tls_verify = tls_verify
        self._ca_pem = ca_pem
        self._session: aiohttp.ClientSession | None = None
        self.resolver: EgressResolver | None = None

    async def __aenter__(self) -> CheckedHttp:
        import aiohttp

        start = time.perf_counter()
        destinations = await self._ctx.egress.resolve(self.host, self.port)
        self.phases["resolve_ms"] = ms_since(start)
        self.resolver = EgressResolver(self._ctx.egress, destinations)
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
        connector = aiohttp.TCPConnector(
            resolver=self.resolver, ssl=tls, use_dns_cache=False, force_close=True, limit=4
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._ctx.timeout),
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
        start = time.perf_counter()
        try:
            async with self._session.request(
                method, url or self.url(path), json=json_body, allow_redirects=False
            ) as response:
                body = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    body.extend(chunk)
                    if len(body) > MAX_BODY_BYTES:
                        raise ProbeError(
                            ErrorKind.PROTOCOL, f"{path} answered more than {MAX_BODY_BYTES} bytes"
                        )
                status, ctype = response.status, response.content_type
        except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError) as exc:
            raise map_aiohttp_error(exc, self.target, self.resolver) from exc
        finally:
            self.phases["probe_ms"] = round(self.phases.get("probe_ms", 0.0) + ms_since(start), 3)
        return status, bytes(body), ctype

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


# --- the serverless type ------------------------------------------------------------


class ServerlessProvider(enum.StrEnum):
    """Where the function runs."""

    HTTP = "http"
    AWS_LAMBDA = "aws_lambda"


class HttpAuth(enum.StrEnum):
    """How an HTTP function authenticates a caller."""

    NONE = "none"
    BEARER = "bearer"
    API_KEY = "api_key"


class ServerlessConfig(ConnectorConfig):
    """Config of a ``serverless`` connector. ``http``: the endpoint is the function URL.
    ``aws_lambda``: ``function_name`` and ``region`` (the endpoint is not used)."""

    provider: ServerlessProvider = Field(
        default=ServerlessProvider.HTTP, description="http (a function URL) or aws_lambda."
    )
    health_path: str = Field(
        default="/health",
        max_length=2048,
        pattern=r"^[^\s]*$",
        description="http: the route the test GETs, relative to the function URL (absolute path allowed).",
    )
    invoke: bool = Field(
        default=False,
        description="http: POST an empty JSON object ({}) to the function URL instead of the health GET. "
        "Opt-in only: an invoke runs the function and may have side effects.",
    )
    auth: HttpAuth = Field(default=HttpAuth.NONE, description="http: none, bearer or api_key.")
    bearer_token: SecretStr | None = Field(default=None, description="http: the bearer token (auth=bearer).")
    api_key: SecretStr | None = Field(default=None, description="http: the API key (auth=api_key).")
    api_key_header: str = Field(
        default="X-API-Key",
        pattern=r"^[A-Za-z0-9-]{1,128}$",
        description="http: the header that carries the API key.",
    )
    tls_verify: bool = Field(default=True, description="Verify the server certificate and name.")
    ca_pem: str | None = Field(
        default=None, max_length=65536, description="http: CA certificates (PEM text) to trust."
    )
    function_name: str | None = Field(
        default=None, max_length=256, description="aws_lambda: the function's name or ARN."
    )
    region: str | None = Field(default=None, max_length=64, description="aws_lambda: the AWS region.")
    endpoint_url: str | None = Field(
        default=None,
        max_length=2048,
        description="aws_lambda: a Lambda-compatible API URL (LocalStack, moto); default: AWS.",
    )
    access_key_id: str | None = Field(default=None, max_length=256, description="aws_lambda: access key id.")
    secret_access_key: SecretStr | None = Field(default=None, description="aws_lambda: secret access key.")
    session_token: SecretStr | None = Field(
        default=None, description="aws_lambda: session token of temporary credentials."
    )

    @field_validator("ca_pem")
    @classmethod
    def _pem_text(cls, value: str | None) -> str | None:
        return check_pem(value)

    @model_validator(mode="after")
    def _provider_fields(self) -> ServerlessConfig:
        if self.password is not None:
            raise ValueError("password is not used by serverless connectors: use bearer_token or api_key")
        if self.auth is HttpAuth.BEARER and self.bearer_token is None:
            raise ValueError("auth=bearer needs bearer_token")
        if self.auth is HttpAuth.API_KEY and self.api_key is None:
            raise ValueError("auth=api_key needs api_key")
        if self.provider is ServerlessProvider.AWS_LAMBDA:
            if not self.function_name or not self.region:
                raise ValueError("aws_lambda needs function_name and region")
            if not self.access_key_id or self.secret_access_key is None:
                # Never fall back to the server's own AWS credentials.
                raise ValueError("aws_lambda needs access_key_id and secret_access_key")
        return self


class ServerlessType(ConnectorType):
    """Serverless functions: HTTP functions and AWS Lambda."""

    name: ClassVar[str] = "serverless"
    description: ClassVar[str] = "Serverless functions: HTTP functions and AWS Lambda."
    config_model: ClassVar[type[ConnectorConfig]] = ServerlessConfig
    default_capabilities: ClassVar[tuple[Capability, ...]] = (Capability.QUERY,)

    async def probe(self, ctx: ProbeContext) -> ProbeOutcome:
        """Health GET (or opted-in invoke) of an HTTP function; GetFunction and a DryRun invoke on Lambda."""
        config = ctx.config
        assert isinstance(config, ServerlessConfig)
        if config.provider is ServerlessProvider.AWS_LAMBDA:
            return await _probe_lambda(ctx, config)
        return await _probe_http_function(ctx, config)


async def _probe_http_function(ctx: ProbeContext, config: ServerlessConfig) -> ProbeOutcome:
    headers = {"Accept": "application/json, */*;q=0.5", "User-Agent": "connectord-probe"}
    if config.auth is HttpAuth.BEARER and config.bearer_token is not None:
        headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
    elif config.auth is HttpAuth.API_KEY and config.api_key is not None:
        headers[config.api_key_header] = config.api_key.get_secret_value()
    async with CheckedHttp(
        ctx, ctx.endpoint or "", headers=headers, tls_verify=config.tls_verify, ca_pem=config.ca_pem
    ) as http:
        if config.invoke:
            method, url = "POST", http.url("")
            status, body, ctype = await http.request("POST", "", json_body={}, url=url)
        else:
            # An absolute health path replaces the URL's path; a relative one extends it.
            path = config.health_path
            method = "GET"
            url = http.origin + path if path.startswith("/") else http.url("/" + path)
            status, body, ctype = await http.request("GET", path, url=url)
        target = "the function" if config.invoke else f"the health route {config.health_path}"
        error = status_error(status, target)
        if error is not None:
            error.details.update({"status_code": status, "phases": http.phases})
            raise error
        details: dict[str, Any] = {
            "provider": str(config.provider),
            "method": method,
            "status_code": status,
            "content_type": ctype,
            "response_bytes": len(body),
            "phases": http.phases,
        }
    return ProbeOutcome(details=details)


async def _probe_lambda(ctx: ProbeContext, config: ServerlessConfig) -> ProbeOutcome:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    from connectord.types.file import aws_config, map_botocore_error

    phases: dict[str, float] = {}
    known: list[Destination] = []
    if config.endpoint_url:
        _, host, port, _ = parse_http_url(config.endpoint_url)
        start = time.perf_counter()
        known = await ctx.egress.resolve(host, port)
        phases["resolve_ms"] = ms_since(start)
    resolver = EgressResolver(ctx.egress, known)
    assert config.secret_access_key is not None  # the model requires it
    session = AioSession()
    client_args: dict[str, Any] = {
        "region_name": config.region,
        "endpoint_url": config.endpoint_url,
        "aws_access_key_id": config.access_key_id,
        "aws_secret_access_key": config.secret_access_key.get_secret_value(),
        "aws_session_token": config.session_token.get_secret_value() if config.session_token else None,
        "verify": config.tls_verify,
        "config": AioConfig(**aws_config(ctx.timeout, resolver)),
    }
    service = "AWS Lambda"
    try:
        async with session.create_client("lambda", **client_args) as client:
            start = time.perf_counter()
            found = await client.get_function(FunctionName=config.function_name)
            phases["get_function_ms"] = ms_since(start)
            start = time.perf_counter()
            dry_run = await client.invoke(FunctionName=config.function_name, InvocationType="DryRun")
            phases["dry_run_ms"] = ms_since(start)
    except Exception as exc:
        raise map_botocore_error(exc, service, resolver) from exc
    function = found.get("Configuration", {})
    details: dict[str, Any] = {
        "provider": str(config.provider),
        "function_name": function.get("FunctionName"),
        "runtime": function.get("Runtime"),
        "state": function.get("State"),
        "last_modified": function.get("LastModified"),
        "memory_mb": function.get("MemorySize"),
        "package_type": function.get("PackageType"),
        "dry_run_status": dry_run.get("StatusCode"),
        "phases": phases,
    }
    return ProbeOutcome(details=details)
