"""One pure-ASGI middleware for every request: request id, body limit, metrics, access log.

Pure ASGI rather than ``BaseHTTPMiddleware``: it adds a few microseconds per
request instead of a task and a memory stream.
"""

from __future__ import annotations

import logging
import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectord.api.metrics import Metrics
from connectord.api.problems import class_problem
from connectord.errors import ConnectordError, PayloadTooLargeError

access_log = logging.getLogger("connectord.access")
logger = logging.getLogger("connectord.api")
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
#: The HTTP proxy bounds its bodies itself (CONNECTORD_PROXY_MAX_BODY, docs/use.md).
_OWN_BODY_LIMIT = re.compile(r"^/api/v1/connectors/[^/]+/proxy(/|$)")


class RequestMiddleware:
    """Tags each request with an id (``X-Request-Id``), refuses bodies over the limit
    with 413, and records metrics and one access-log line."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = b""
        length: int | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _REQUEST_ID.match(value):
                request_id = value
            elif name == b"content-length":
                length = int(value) if value.isdigit() else -1
        if not request_id:
            request_id = os.urandom(8).hex().encode()
        rid = request_id.decode()
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        try:
            if (
                scope["method"] in _BODY_METHODS
                and (length is None or length < 0 or length > self.max_body)
                and not _OWN_BODY_LIMIT.match(scope["path"])
            ):
                receive = await self._buffer(receive, length)
            await self.app(scope, receive, send_with_id)
        except _TooLarge:
            detail = f"the body exceeds {self.max_body} bytes"
            response = class_problem(PayloadTooLargeError, detail, request_id=rid)
            await response(scope, receive, send_with_id)
        except Exception as exc:
            # Answered here rather than by Starlette's outermost handler, so the 500
            # still carries X-Request-Id. The class name only: a message could hold a secret.
            logger.error("unhandled %s", type(exc).__name__, extra={"request_id": rid})
            if started:
                raise
            response = class_problem(ConnectordError, ConnectordError.title, request_id=rid)
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.observe_request(template, scope["method"], status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={"request_id": rid, "status": status, "duration_ms": round(elapsed * 1000, 3)},
                )

    async def _buffer(self, receive: Receive, length: int | None) -> Receive:
        """Read the whole body (chunked or over the limit) before the app sees it."""
        if length is not None and length > self.max_body:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


class _TooLarge(Exception):  # noqa: N818 - internal control flow, never escapes
    pass
