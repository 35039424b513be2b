"""What both clients share: the server URL, the key, timeouts and the retry policy."""

from __future__ import annotations

import os
import random
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from connectord.client._calls import Call
from connectord.client._errors import TransportError, retry_after_of
from connectord.errors import ConfigurationError

API_PREFIX = "/api/v1"
RETRY_STATUSES = frozenset({502, 503, 504})
DEFAULT_TIMEOUT = 30.0
#: Server-side probes are bounded by ``CONNECTORD_PROBE_TIMEOUT_MAX`` (60 s by default).
DEFAULT_TEST_TIMEOUT = 90.0
MAX_BACKOFF = 10.0
#: How often ``health(wait=...)`` asks a server that is starting.
WAIT_STEP = 0.2


def _api_url(base_url: str | None) -> str:
    url = base_url or os.environ.get("CONNECTORD_URL")
    if not url:
        raise ConfigurationError("no server URL: pass base_url or set CONNECTORD_URL")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("the server URL must be http:// or https:// with a host")
    path = parts.path.rstrip("/")
    if not path.endswith(API_PREFIX):
        path += API_PREFIX
    # The trailing slash makes relative paths join under the prefix.
    return urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


def _display(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _user_agent() -> str:
    try:
        return f"connectord-sdk/{version('connectord')}"
    except PackageNotFoundError:
        return "connectord-sdk"


def _retryable(exc: httpx.TransportError) -> bool:
    return not isinstance(exc, httpx.UnsupportedProtocol | httpx.ProxyError | httpx.LocalProtocolError)


class ClientBase:
    """Settings shared by both clients: where, who, how long, how often to retry."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        timeout: float,
        test_timeout: float,
        retries: int,
        backoff: float,
    ) -> None:
        self.base_url = _api_url(base_url)
        self.root_url = self.base_url.removesuffix(API_PREFIX[1:] + "/")
        key = api_key if api_key is not None else os.environ.get("CONNECTORD_API_KEY")
        self._headers = {"User-Agent": _user_agent(), "Accept": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self.timeout = timeout
        self.test_timeout = test_timeout
        self.retries = max(0, retries)
        self.backoff = backoff

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={_display(self.base_url)!r}>"

    def _delay(self, attempt: int, resp: httpx.Response | None) -> float:
        hinted = retry_after_of(resp, {}) if resp is not None else None
        if hinted is not None:
            return min(hinted, MAX_BACKOFF)
        return min(MAX_BACKOFF, self.backoff * 2.0**attempt) * random.uniform(0.5, 1.0)  # noqa: S311

    def _unreachable(self, exc: httpx.TransportError) -> TransportError:
        what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        return TransportError(
            f"the connection to {_display(self.base_url)} {what} ({type(exc).__name__}); "
            "is the server running?"
        )

    def _proxy_args(self, connector_id: str, verify: bool | str, options: dict[str, Any]) -> dict[str, Any]:
        """The arguments of an httpx client on a connector's proxy (``proxy()``): its base
        URL, this client's key and user agent (no ``Accept``: the upstream's formats are
        the caller's choice), the request timeout; ``options`` override them."""
        headers = {k: v for k, v in self._headers.items() if k != "Accept"}
        headers |= options.pop("headers", None) or {}
        base = f"{self.base_url}connectors/{quote(connector_id, safe='')}/proxy/"
        return {"base_url": base, "headers": headers, "timeout": self.timeout, "verify": verify, **options}

    def _request_args(self, call: Call[Any]) -> dict[str, Any]:
        return {
            "params": call.params,
            "json": call.body,
            "headers": call.headers,
            "timeout": self.test_timeout if call.slow else self.timeout,
        }

    def _retry_status(self, call: Call[Any], resp: httpx.Response, attempt: int) -> bool:
        return call.retry and attempt < self.retries and resp.status_code in RETRY_STATUSES

    def _retry_error(self, call: Call[Any], exc: httpx.TransportError, attempt: int) -> bool:
        return call.retry and attempt < self.retries and _retryable(exc)
