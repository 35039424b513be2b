"""MCP servers for the mcp probe tests, built with the SDK's ``MCPServer``.

Run as a script, this module serves one variant (the tests start it as a
subprocess on a free loopback port and stop it by its PID):

- ``streamable-http PORT``: three tools (one annotated read-only) and a resource;
- ``sse PORT``: the same over the legacy SSE transport;
- ``auth PORT``: read-only tools only, behind a middleware that requires
  ``Authorization: Bearer $MCP_TEST_TOKEN``, served by uvicorn over HTTPS
  with the certificate and key in ``$MCP_TEST_CERT`` and ``$MCP_TEST_KEY``;
- ``gateway PORT``: the MCP gateway's peer, named ``$MCP_TEST_NAME``: tools (one
  with a name MCP clients refuse, one with a 60-character name, one that waits as
  long as it is told), resources, a resource template and a prompt, over
  streamable HTTP; with ``$MCP_TEST_TOKEN`` set it requires ``Authorization:
  Bearer $MCP_TEST_TOKEN`` and has a tool whose answer echoes the token (as a
  careless server might echo a header); with ``$MCP_TEST_TOKEN_CHECK`` set it
  requires a bearer token that URL accepts (an OAuth token server's API); with
  ``$MCP_TEST_DELAY`` set every request waits that many seconds;
- ``refusing PORT``: a low-level server that offers tools but answers their
  listing with a JSON-RPC error (and any call with a text).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _full_server() -> Any:
    from mcp.server.mcpserver import MCPServer
    from mcp_types import ToolAnnotations

    server = MCPServer("connectord-test-server")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    def remember(text: str) -> str:
        """Pretend to store a note (a tool with side effects)."""
        return text

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def clock() -> str:
        """The server's time."""
        return time.strftime("%H:%M:%S")

    @server.resource("test://greeting")
    def greeting() -> str:
        return "hello"

    return server


def _read_only_server() -> Any:
    from mcp.server.mcpserver import MCPServer
    from mcp_types import ToolAnnotations

    server = MCPServer("connectord-auth-server")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def lookup(key: str) -> str:
        """Read a value."""
        return key.upper()

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def count() -> int:
        """Count something."""
        return 3

    return server


#: The 60-character tool name of the gateway peer.
LONG_TOOL = "measure_" + "x" * 52
#: The gateway peer's tool whose name MCP clients refuse (a dot and a space).
ODD_TOOL = "read.file v2"


def _gateway_server(name: str, token: str | None) -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name)

    @server.tool()
    def whoami() -> str:
        """Which server answers."""
        return name

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool(name=ODD_TOOL)
    def read_file(path: str) -> str:
        """Pretend to read a file."""
        return f"{name} read {path}"

    @server.tool()
    async def wait(seconds: float) -> str:
        """Answer after ``seconds`` (to test the gateway's timeout)."""
        await asyncio.sleep(seconds)
        return "waited"

    @server.tool(name=LONG_TOOL)
    def measure() -> str:
        """A tool with a long name."""
        return "measured"

    if token is not None:

        @server.tool()
        def leak() -> str:
            """Answer with the credential the server was given."""
            return f"the token is {token}"

    @server.resource("test://greeting")
    def greeting() -> str:
        return f"hello from {name}"

    @server.resource("test://items/{item}")
    def item(item: str) -> str:
        return f"{name} item {item}"

    @server.prompt()
    def review(code: str) -> str:
        """Ask for a review."""
        return f"Review this code from {name}: {code}"

    return server


def _refusing_server() -> Any:
    """A server that offers tools but answers its listing with a JSON-RPC error."""
    import mcp_types as types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError

    async def refuse(ctx: Any, params: Any) -> Any:
        raise MCPError(types.INTERNAL_ERROR, "the tool registry is broken")

    async def call(ctx: Any, params: Any) -> Any:
        return types.CallToolResult(content=[types.TextContent(type="text", text="called anyway")])

    return Server("connectord-refusing-server", on_list_tools=refuse, on_call_tool=call)


class SlowDown:
    """ASGI middleware: every HTTP request waits ``seconds`` before it is served."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(self.seconds)
        await self.app(scope, receive, send)


class RequireBearer:
    """ASGI middleware: 401 unless ``Authorization: Bearer <token>`` matches."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != self.expected:
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"www-authenticate", b"Bearer")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b'{"error": "unauthorized"}'})
            return
        await self.app(scope, receive, send)


class RequireValidToken:
    """ASGI middleware: 401 unless the bearer token opens ``check_url`` (the test's OAuth
    token server answers 200 there for a token it issued that has not expired)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], check_url: str) -> None:
        self.app = app
        self.check_url = check_url

    def _valid(self, authorization: str) -> bool:
        request = urllib.request.Request(self.check_url, headers={"Authorization": authorization})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return bool(answer.status == 200)
        except urllib.error.HTTPError:
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = dict(scope["headers"]).get(b"authorization", b"").decode() if scope["type"] == "http" else ""
        if scope["type"] == "http" and not await asyncio.to_thread(self._valid, header):
            await RequireBearer(self.app, "")(scope, receive, send)  # its 401
            return
        await self.app(scope, receive, send)


def serve(variant: str, port: int) -> None:
    """Serve one variant until killed."""
    if variant == "auth":
        import uvicorn

        app = RequireBearer(_read_only_server().streamable_http_app(), os.environ["MCP_TEST_TOKEN"])
        uvicorn.run(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            ssl_certfile=os.environ["MCP_TEST_CERT"],
            ssl_keyfile=os.environ["MCP_TEST_KEY"],
        )
    elif variant == "gateway":
        import uvicorn

        token = os.environ.get("MCP_TEST_TOKEN")
        check_url = os.environ.get("MCP_TEST_TOKEN_CHECK")
        gateway_app = _gateway_server(os.environ["MCP_TEST_NAME"], token).streamable_http_app()
        served: Any = gateway_app if token is None else RequireBearer(gateway_app, token)
        if check_url is not None:
            served = RequireValidToken(gateway_app, check_url)
        if "MCP_TEST_DELAY" in os.environ:
            served = SlowDown(served, float(os.environ["MCP_TEST_DELAY"]))
        uvicorn.run(served, host="127.0.0.1", port=port, log_level="warning")
    elif variant == "refusing":
        import uvicorn

        uvicorn.run(
            _refusing_server().streamable_http_app(), host="127.0.0.1", port=port, log_level="warning"
        )
    else:
        _full_server().run(variant, host="127.0.0.1", port=port)  # type: ignore[call-overload]


@dataclass
class McpPeer:
    """A running server subprocess."""

    url: str
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """End the subprocess by its PID."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start(variant: str, port: int, path: str, env: dict[str, str] | None = None) -> McpPeer:
    """Start ``variant`` on ``port`` and wait until it listens."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__)), variant, str(port)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peer = McpPeer(f"http://127.0.0.1:{port}{path}", port, proc)
    try:
        wait_listening(port, proc)
    except RuntimeError:
        peer.stop()
        raise
    return peer


def wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    """Return once something accepts connections on ``port``; fail if ``proc`` exits first."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"test server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"test server did not listen on {port} within {seconds} s")


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
