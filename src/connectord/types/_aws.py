"""AWS plumbing shared by the file (S3) and serverless (Lambda) probes.

:func:`checked_resolver` and :func:`aws_config` make aiobotocore clients fail
within the timeout and connect only to egress-checked addresses;
:func:`map_botocore_error` is the one botocore error mapping.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connectord.model import ErrorKind
from connectord.network.endpoints import parse_http_url
from connectord.network.failures import first_in_chain, refused
from connectord.network.http import EgressResolver
from connectord.plugin import ProbeContext, ProbeError
from connectord.timing import timed

if TYPE_CHECKING:
    from connectord.network.egress import Destination

AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "IncompleteSignature",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "InvalidToken",
        "MissingAuthenticationToken",
        "NotAuthorized",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
NOT_FOUND_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "NotFound", "ResourceNotFoundException", "404"})
UNAVAILABLE_CODES = frozenset(
    {"ServiceUnavailable", "SlowDown", "Throttling", "ThrottlingException", "TooManyRequestsException"}
)


async def checked_resolver(
    ctx: ProbeContext, endpoint_url: str | None, phases: dict[str, float]
) -> EgressResolver:
    """The resolver for a test's AWS client: every host it looks up (AWS's own names
    included) goes through the egress policy; an ``endpoint_url``'s host is checked
    up front (``resolve_ms``), so a denied one fails before any client exists."""
    known: list[Destination] = []
    if endpoint_url:
        _, host, port, _ = parse_http_url(endpoint_url)
        with timed(phases, "resolve_ms"):
            known = await ctx.network.resolve(host, port)
    return ctx.network.resolver(known)


@dataclass
class _LoopSession:
    session: Any = None
    loaded: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSession] = weakref.WeakKeyDictionary()


async def aws_session(service: str) -> Any:
    """The event loop's one ``AioSession``, with ``service``'s data files already read.

    botocore parses its JSON data files when a session makes its first client, on
    the calling thread: with a fresh session per test, 16 parallel S3 tests held the
    event loop for seconds. The session is shared (its loader caches what it read),
    made and warmed in a thread (aiobotocore's ``warm_up_loader_caches``), once per
    service; the lock keeps a first burst of tests from each doing it.
    """
    from aiobotocore.session import AioSession

    entry = _SESSIONS.setdefault(asyncio.get_running_loop(), _LoopSession())
    if entry.session is None or service not in entry.loaded:
        async with entry.lock:
            if entry.session is None:
                entry.session = await asyncio.to_thread(AioSession)
            if service not in entry.loaded:
                await asyncio.to_thread(entry.session.warm_up_loader_caches, service)
                entry.loaded.add(service)
    return entry.session


def aws_config(timeout: float, resolver: EgressResolver) -> dict[str, Any]:
    """``AioConfig`` keyword arguments: one attempt, bounded waits, checked addresses, no proxy.

    Also keeps botocore's DEBUG records off: they print request headers, the
    session token (``X-Amz-Security-Token``) included.
    """
    for name in ("botocore", "aiobotocore", "s3fs"):
        aws_logger = logging.getLogger(name)
        if aws_logger.getEffectiveLevel() < logging.INFO:
            aws_logger.setLevel(logging.INFO)
    return {
        "connect_timeout": timeout,
        "read_timeout": timeout,
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "proxies": {},  # not None: None makes botocore read proxies from the environment
        "connector_args": resolver.connector_args(),
    }


def _botocore_kinds() -> tuple[tuple[type[BaseException], ErrorKind], ...]:
    from botocore import exceptions as bc

    return (
        (bc.SSLError, ErrorKind.TLS),
        (bc.ConnectTimeoutError, ErrorKind.TIMEOUT),
        (bc.ReadTimeoutError, ErrorKind.TIMEOUT),
        (bc.ProxyConnectionError, ErrorKind.UNAVAILABLE),
        (bc.ConnectionClosedError, ErrorKind.PROTOCOL),
        (bc.EndpointConnectionError, ErrorKind.UNAVAILABLE),
        (bc.HTTPClientError, ErrorKind.UNAVAILABLE),
        (bc.NoCredentialsError, ErrorKind.INVALID_CONFIG),
        (bc.PartialCredentialsError, ErrorKind.INVALID_CONFIG),
        (bc.NoRegionError, ErrorKind.INVALID_CONFIG),
        (bc.ParamValidationError, ErrorKind.INVALID_CONFIG),
        (bc.InvalidRegionError, ErrorKind.INVALID_CONFIG),
        (bc.InvalidEndpointConfigurationError, ErrorKind.INVALID_CONFIG),
        (bc.BotoCoreError, ErrorKind.PROTOCOL),
        (bc.ClientError, ErrorKind.UNEXPECTED_STATUS),
    )


def botocore_error_kind(exc_type: type[BaseException]) -> ErrorKind | None:
    """The error kind of a botocore exception class (client errors refine it by code)."""
    for cls, kind in _botocore_kinds():
        if issubclass(exc_type, cls):
            return kind
    return None


def map_botocore_error(
    exc: BaseException, service: str, resolver: EgressResolver | None = None
) -> ProbeError:
    """A botocore (or s3fs-translated) error as a :class:`ProbeError`; ``service`` names the API."""
    from botocore.exceptions import BotoCoreError, ClientError

    if resolver is not None and resolver.refusal is not None:
        return resolver.refusal
    # s3fs raises OSError subclasses caused by the ClientError.
    found: BaseException | None = first_in_chain(exc, (BotoCoreError, ClientError))
    if isinstance(found, ClientError):
        return _client_error(found, service)
    if found is None:
        if isinstance(exc, TimeoutError):
            return ProbeError(ErrorKind.TIMEOUT, f"{service} did not answer in time")
        if isinstance(exc, OSError):
            return ProbeError(ErrorKind.UNAVAILABLE, f"the {service} call failed ({type(exc).__name__})")
        return ProbeError(ErrorKind.INTERNAL, f"the {service} call failed ({type(exc).__name__})")
    if refused(found):
        return ProbeError(ErrorKind.REFUSED, f"connection refused by {service}")
    kind = botocore_error_kind(type(found)) or ErrorKind.INTERNAL
    messages = {
        ErrorKind.TLS: f"TLS with {service} failed",
        ErrorKind.TIMEOUT: f"{service} did not answer in time",
        ErrorKind.UNAVAILABLE: f"cannot connect to {service}",
        ErrorKind.PROTOCOL: f"{service} answered with something unexpected ({type(found).__name__})",
        ErrorKind.INVALID_CONFIG: f"invalid {service} settings ({type(found).__name__})",
    }
    return ProbeError(kind, messages.get(kind, f"the {service} call failed ({type(found).__name__})"))


def _client_error(exc: Any, service: str) -> ProbeError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    label = code if code and not code.isdigit() else f"HTTP {status or code}"
    if code in AUTH_CODES or status in (401, 403):
        return ProbeError(ErrorKind.AUTH, f"{service} refused the credentials ({label})")
    if code in NOT_FOUND_CODES or status == 404:
        return ProbeError(ErrorKind.NOT_FOUND, f"{service}: not found ({label})")
    if code in UNAVAILABLE_CODES or status in (429, 503):
        return ProbeError(ErrorKind.UNAVAILABLE, f"{service} is busy or unavailable ({label})")
    return ProbeError(ErrorKind.UNEXPECTED_STATUS, f"{service} answered an error ({label})")
