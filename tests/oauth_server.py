"""Loopback HTTP peers for the proxy and OAuth tests: an aiohttp app served from a thread
(:class:`AppThread`), and :class:`TokenServer`, an OAuth 2.0 authorization server with
short-lived tokens and the API those tokens open.

The token server speaks RFC 6749 section 4.4 (client credentials, the client
authenticated by HTTP Basic or form fields) and section 6 (refresh tokens, rotated
when asked, revoked on demand: then ``invalid_grant``). Its ``/api/{tail}`` answers
200 for an access token it issued and that has not expired, 401 otherwise, and
records every token presented after its expiry, so a test can tell "refreshed before
expiry" from "retried after a 401".
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import web


class AppThread:
    """Serves an aiohttp application on loopback (127.0.0.1 unless told, a free port) from its
    own thread and loop."""

    def __init__(
        self, app: web.Application, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1"
    ) -> None:
        self._app = app
        self._ssl = ssl_context
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    def start(self) -> AppThread:
        """Start listening; returns once the port is bound."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        # No access log: the tests read the server's log, never this one.
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, backlog=1024, ssl_context=self._ssl)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    @staticmethod
    async def _stop(runner: web.AppRunner) -> None:
        await runner.cleanup()
        # Closed transports finish closing on the loop's next turns: let them, before it stops.
        await asyncio.sleep(0.05)

    def url(self, path: str = "") -> str:
        """``http://HOST:PORT`` followed by ``path``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        """Close the listener, every connection, and the loop's thread."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._stop(self._runner), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class _Client:
    secret: str | None
    #: Refresh tokens issued to this client that are still valid.
    refresh_tokens: set[str] = field(default_factory=set)


@dataclass
class TokenServer:
    """An OAuth 2.0 token endpoint (``/token``) and the API its tokens open (``/api/...``).

    ``ttl`` is the lifetime of access tokens (``expires_in``); ``rotate`` makes each
    refresh hand back a new refresh token (the old one then refused); ``delay`` holds
    each token request that long (a slow endpoint makes concurrent refreshes overlap).
    """

    ttl: float = 2.0
    rotate: bool = False
    delay: float = 0.0
    #: Every token request that issued a token: (grant type, client id).
    grants: list[tuple[str, str]] = field(default_factory=list)
    #: Token requests refused, with the OAuth error code.
    refusals: list[str] = field(default_factory=list)
    #: Access tokens issued: token -> expiry (time.monotonic()).
    issued: dict[str, float] = field(default_factory=dict)
    #: Access tokens presented to /api after their expiry (never, when refreshed in time).
    expired_uses: list[str] = field(default_factory=list)
    #: The Authorization header of every /api request, in order.
    api_calls: list[str] = field(default_factory=list)
    _clients: dict[str, _Client] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _thread: AppThread | None = None

    # --- set-up, from the test -------------------------------------------------------

    def add_client(self, client_id: str, secret: str | None) -> None:
        """Register a client (``secret`` None: a public client)."""
        self._clients[client_id] = _Client(secret)

    def issue_refresh_token(self, client_id: str) -> str:
        """A refresh token for the client, as an authorization-code exchange would give."""
        token = "rt-" + secrets.token_hex(16)
        self._clients[client_id].refresh_tokens.add(token)
        return token

    def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token: its next use gets ``invalid_grant``."""
        for client in self._clients.values():
            client.refresh_tokens.discard(refresh_token)

    def refresh_tokens(self, client_id: str) -> set[str]:
        """The client's refresh tokens still valid."""
        return set(self._clients[client_id].refresh_tokens)

    def grant_count(self, grant_type: str | None = None) -> int:
        """How many tokens were issued (of that grant type)."""
        with self._lock:
            return sum(1 for kind, _ in self.grants if grant_type in (None, kind))

    # --- serving ---------------------------------------------------------------------

    def start(self) -> TokenServer:
        """Serve on a free loopback port."""
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_route("*", "/api/{tail:.*}", self._api)
        self._thread = AppThread(app).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._thread is not None:
            self._thread.stop()

    @property
    def token_url(self) -> str:
        """The token endpoint."""
        assert self._thread is not None
        return self._thread.url("/token")

    def api_url(self, path: str = "") -> str:
        """The protected API's base URL (a connector's endpoint)."""
        assert self._thread is not None
        return self._thread.url("/api" + path)

    def secrets_used(self) -> list[str]:
        """Every secret this server handed out or was given (for the leak checks)."""
        values = [c.secret for c in self._clients.values() if c.secret]
        values += list(self.issued)
        for client in self._clients.values():
            values += list(client.refresh_tokens)
        return values

    def _authenticate(self, request: web.Request, form: dict[str, str]) -> _Client | str:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            client_id, secret = unquote(client_id), unquote(secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self._clients.get(client_id)
        if client is None or (client.secret is not None and client.secret != secret):
            return "invalid_client"
        return client

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        if self.delay:
            await asyncio.sleep(self.delay)
        client = self._authenticate(request, form)
        if isinstance(client, str):
            return self._refuse(401, client)
        grant_type = form.get("grant_type", "")
        answer: dict[str, object] = {}
        if grant_type == "refresh_token":
            presented = form.get("refresh_token", "")
            with self._lock:
                if presented not in client.refresh_tokens:
                    return self._refuse(400, "invalid_grant")
                if self.rotate:
                    client.refresh_tokens.discard(presented)
                    rotated = "rt-" + secrets.token_hex(16)
                    client.refresh_tokens.add(rotated)
                    answer["refresh_token"] = rotated
        elif grant_type != "client_credentials":
            return self._refuse(400, "unsupported_grant_type")
        token = "at-" + secrets.token_hex(16)
        with self._lock:
            self.issued[token] = time.monotonic() + self.ttl
            self.grants.append((grant_type, self._client_id(client)))
        answer |= {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl}
        return web.json_response(answer, headers={"Cache-Control": "no-store"})

    def _client_id(self, client: _Client) -> str:
        return next(k for k, v in self._clients.items() if v is client)

    def _refuse(self, status: int, code: str) -> web.Response:
        with self._lock:
            self.refusals.append(code)
        return web.json_response({"error": code}, status=status)

    async def _api(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        with self._lock:
            self.api_calls.append(header)
            token = header.removeprefix("Bearer ")
            expiry = self.issued.get(token)
            if expiry is not None and time.monotonic() >= expiry:
                self.expired_uses.append(token)
                expiry = None
        if expiry is None:
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"ok": True, "path": request.path})


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
