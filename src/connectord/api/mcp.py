"""``/api/v1/mcp``: the MCP gateway's HTTP endpoint (``connectord.use.gateway``).

Every HTTP request is authenticated here before any MCP work, as the REST
routes are: ``Authorization: Bearer <key>`` with the ``connectors:use`` scope,
else a 401 or 403 problem document; a method other than POST is a 405 one, and
a key past its rate (the proxy's numbers, a bucket of its own) a 429 one. The
key's tenant, reach and actor then travel in the ASGI scope to the gateway,
which shows only what they cover.
"""

from __future__ import annotations

import contextlib

from starlette.types import Receive, Scope, Send

from connectord.admin import Admin
from connectord.api.limits import TestLimiter
from connectord.api.problems import error_problem
from connectord.errors import ConnectordError, MethodNotAllowedError, PermissionDeniedError
from connectord.model import Scope as KeyScope
from connectord.use.gateway import CALLER_KEY, Gateway, GatewayCaller

#: Where the gateway is served.
MCP_PATH = "/api/v1/mcp"


class McpEndpoint:
    """The ASGI app of :data:`MCP_PATH`: authenticate, then hand the request to the gateway."""

    def __init__(self, gateway: Gateway, admin: Admin, limiter: TestLimiter) -> None:
        self.gateway = gateway
        self.admin = admin
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scheme, _, token = _header(scope, b"authorization").partition(" ")
        hold = contextlib.AsyncExitStack()
        try:
            principal = await self.admin.authenticate(token.strip() if scheme.lower() == "bearer" else None)
            if KeyScope.USE not in principal.scopes:
                raise PermissionDeniedError(f"this API key lacks the {KeyScope.USE.value!r} scope")
            if scope["method"] != "POST":
                # A stateless gateway has no session to end (DELETE) and sends nothing unasked
                # (GET would hold a stream open for ever): the spec's answer to both is 405.
                raise MethodNotAllowedError("the MCP gateway answers POST requests only", ["POST"])
            await hold.enter_async_context(self.limiter.slot(principal.key_id))
        except ConnectordError as exc:
            request_id = scope.get("state", {}).get("request_id")
            await error_problem(exc, str(request_id) if request_id else None)(scope, receive, send)
            return
        scope[CALLER_KEY] = GatewayCaller(principal.tenant_id, principal.reach, principal.actor)
        async with hold:
            await self.gateway.handle(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""
