"""The OAuth 2.0 token broker: access tokens for connectors, obtained once across replicas.

Used by the HTTP proxy (:mod:`connectord.use.proxy`) and by a saved connector's
test (the facade hands the http probe a token source through ``ProbeContext.options``),
always the same way::

    token = await broker.access_token(tenant_id, connector_id, auth)
    # auth: the connector's OAuth2ClientCredentials or OAuth2RefreshToken (secrets revealed);
    # field: the config section holding it ("auth" for http), where a rotated refresh token goes.
    # After the upstream refused the token (401): access_token(..., refused=token).

It raises :class:`~connectord.errors.ProbeError`: ``auth`` when the token
endpoint refused the client or the grant (``invalid_grant`` also marks the
connector ``error``: the user must reconnect it), and the network's kinds
(``egress_denied``, ``timeout``, ``refused``...) when it could not be reached.

How it keeps its promises (``docs/use.md``, "OAuth2 tokens"):

- **Encrypted.** Tokens are stored in ``oauth_tokens`` sealed by the key ring
  (bound to the tenant and connector), with a keyed fingerprint of the auth
  settings they were obtained with: changed settings make them invalid.
- **Valid until expiry minus a margin** (a quarter of their life, at most a
  minute), so a token is refreshed before it expires, never after.
- **One refresh at a time, across requests and replicas.** In a process, one
  task per connector talks to the store and the others wait on it; across
  processes the row's lease (``UPDATE ... WHERE`` the lease is free or expired)
  lets one refresh while the others poll the row and read the new token. A lease
  outlives the token request's timeout, so a process that dies mid-refresh only
  delays the next one.
- **Rotation.** A refresh token the endpoint sends back replaces the
  connector's (in its encrypted secrets, in the same transaction as the new
  access token) and is the one used next time.
- **invalid_grant** marks the connector ``error`` (a failed result in its history,
  ``error_kind: auth``, saying the user must reconnect) and is remembered, so the
  endpoint is not asked again until the auth settings change.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from connectord.errors import ProbeError, SecretsError
from connectord.lifecycle import changes_after_test
from connectord.model import AuditEvent, ErrorKind, TestResult, new_id, utcnow
from connectord.network.egress import EgressPolicy
from connectord.network.http import EgressResolver, map_aiohttp_error, read_at_most
from connectord.network.tls import tls_context
from connectord.secret_refs import parse as parse_reference
from connectord.secrets import Ciphertext, KeyRing
from connectord.store.base import OAuthTokenRecord, Store
from connectord.types._http_config import HTTP_TOKEN, OAuth2Auth, OAuth2RefreshToken

__all__ = ["REFRESH_MARGIN_MAX", "TokenBroker"]

logger = logging.getLogger("connectord.oauth")

#: The most a token is refreshed ahead of its expiry (seconds); a quarter of its life if shorter.
REFRESH_MARGIN_MAX = 60.0
#: The lifetime assumed when the endpoint gives no ``expires_in`` (RFC 6749 leaves it open).
DEFAULT_LIFETIME = 300.0
_MAX_ANSWER = 64 * 1024
_POLL = 0.05
_REFUSED_MARK = "!"
REAUTHORIZE = "the user must reconnect the connector (authorize it again) to get a new refresh token"


@dataclass(frozen=True, slots=True)
class _Grant:
    access_token: str
    lifetime: float
    refresh_token: str | None


@dataclass(frozen=True, slots=True)
class _Cached:
    fingerprint: str
    token: str
    refresh_at: float  # time.monotonic()


class TokenBroker:
    """Access tokens of a store's connectors (see the module docstring for the interface).

    ``egress`` returns the policy in force; ``owner`` names this process in leases.
    """

    def __init__(
        self,
        store: Store,
        keyring: KeyRing,
        egress: Callable[[], EgressPolicy],
        *,
        timeout: float = 10.0,
        failure_threshold: int = 3,
        owner: str | None = None,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._egress = egress
        self._timeout = timeout
        self._failure_threshold = failure_threshold
        self.owner = owner or f"oauth-{os.getpid()}-{os.urandom(4).hex()}"
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._cache: dict[tuple[str, str], _Cached] = {}

    async def access_token(
        self,
        tenant_id: str,
        connector_id: str,
        auth: OAuth2Auth,
        *,
        force_refresh: bool = False,
        refused: str | None = None,
        field: str = "auth",
        tls_verify: bool = True,
        ca_pem: str | None = None,
        mark_refused: bool = True,
    ) -> str:
        """A valid access token of the connector: cached, stored, or obtained now.

        ``force_refresh`` obtains a new one whatever is stored; ``refused`` (a token
        the upstream refused) obtains a new one unless another request already
        replaced it. ``field`` is the config field holding ``auth`` (its rotated
        refresh token is written back there); ``tls_verify`` and ``ca_pem`` apply
        to the token endpoint. ``mark_refused=False`` leaves recording an ``invalid_grant``
        to the caller (a connector test records its own failed result).
        """
        key = (tenant_id, connector_id)
        fingerprint = self._fingerprint(auth)
        cached = self._cache.get(key)
        if cached is not None and self._fresh(cached, fingerprint, force_refresh, refused):
            return cached.token
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                cached = self._cache.get(key)
                if cached is not None and self._fresh(cached, fingerprint, force_refresh, refused):
                    return cached.token
                request = _Request(
                    tenant_id, connector_id, auth, fingerprint, field, tls_verify, ca_pem, mark_refused
                )
                token = await self._obtain(request, force_refresh, refused)
                return token
        finally:
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]

    def forget(self, tenant_id: str, connector_id: str) -> None:
        """Drop this process's cached token of a connector (the store's stays)."""
        self._cache.pop((tenant_id, connector_id), None)

    @staticmethod
    def _fresh(cached: _Cached, fingerprint: str, force: bool, refused: str | None) -> bool:
        return (
            not force
            and cached.fingerprint == fingerprint
            and cached.token != refused
            and time.monotonic() < cached.refresh_at
        )

    def _fingerprint(self, auth: OAuth2Auth) -> str:
        """A keyed hash of every auth setting (the refresh token too: a reconnection
        with another one must not reuse the old account's token)."""
        fields = auth.model_dump(mode="json", exclude={"client_secret", "refresh_token"})
        secrets = [auth.client_secret.get_secret_value() if auth.client_secret else ""]
        if isinstance(auth, OAuth2RefreshToken):
            secrets.append(auth.refresh_token.get_secret_value())
        return self._keyring.fingerprint(json.dumps([fields, secrets], sort_keys=True).encode())

    async def _obtain(self, request: _Request, force: bool, refused: str | None) -> str:
        deadline = time.monotonic() + self._lease_seconds() + self._timeout
        while True:
            row = await self._store.get_oauth_token(request.tenant_id, request.connector_id)
            token = self._usable(request, row, force, refused)
            if token is not None:
                return token
            now = utcnow()
            until = now + timedelta(seconds=self._lease_seconds())
            leased = await self._store.lease_oauth_token(
                request.tenant_id, request.connector_id, self.owner, now, until
            )
            if leased is not None:
                return await self._refresh_leased(request, leased, force, refused)
            if row is None and leased is None and not await self._connector_exists(request):
                raise ProbeError(ErrorKind.NOT_FOUND, "the connector no longer exists")
            if time.monotonic() > deadline:
                raise ProbeError(ErrorKind.TIMEOUT, "another process holds the token refresh for too long")
            # Another process refreshes right now: its token will be in the row shortly.
            await asyncio.sleep(_POLL)
            force = False  # what the other process obtains is new enough

    async def _connector_exists(self, request: _Request) -> bool:
        return await self._store.get_connector(request.tenant_id, request.connector_id) is not None

    def _lease_seconds(self) -> float:
        return self._timeout + 5.0

    def _usable(
        self, request: _Request, row: OAuthTokenRecord | None, force: bool, refused: str | None
    ) -> str | None:
        """The stored token if it may be used now; raise if the grant was refused for good."""
        if row is None:
            return None
        if row.fingerprint == _REFUSED_MARK + request.fingerprint[1:]:
            raise ProbeError(ErrorKind.AUTH, f"the token endpoint refused the refresh token: {REAUTHORIZE}")
        if force or row.token is None or row.fingerprint != request.fingerprint or row.refresh_at is None:
            return None
        if row.refresh_at <= utcnow():
            return None
        try:
            token = self._keyring.decrypt(row.token, _aad(request)).decode()
        except SecretsError:
            return None  # sealed with a key the ring no longer holds: a new one is cheap
        if token == refused:
            return None
        remaining = (row.refresh_at - utcnow()).total_seconds()
        self._cache[(request.tenant_id, request.connector_id)] = _Cached(
            request.fingerprint, token, time.monotonic() + remaining
        )
        return token

    async def _refresh_leased(
        self, request: _Request, leased: OAuthTokenRecord, force: bool, refused: str | None
    ) -> str:
        """Holding the lease: use a token stored meanwhile, or obtain, store and return one.

        The auth is the one stored now (a caller may hold a refresh token another
        process rotated since), and so is the fingerprint a stored token must match."""
        started = time.perf_counter()
        try:
            sealed_secrets, tree, auth = await self._current_auth(request)
            request = dataclasses.replace(request, auth=auth, fingerprint=self._fingerprint(auth))
            token = self._usable(request, leased, force, refused)
        except BaseException:
            await self._store.release_oauth_token(request.tenant_id, request.connector_id, self.owner)
            raise
        if token is not None:
            await self._store.release_oauth_token(request.tenant_id, request.connector_id, self.owner)
            return token
        try:
            grant = await self._grant(request, auth)
        except ProbeError as exc:
            refused_mark = None
            if exc.details.get("oauth_error") == "invalid_grant":
                refused_mark = _REFUSED_MARK + request.fingerprint[1:]
                if request.mark_refused:
                    elapsed = round((time.perf_counter() - started) * 1000)
                    await self._mark_reconnect(request, exc, elapsed)
            await self._store.release_oauth_token(
                request.tenant_id, request.connector_id, self.owner, refused=refused_mark
            )
            raise
        except BaseException:
            await self._store.release_oauth_token(request.tenant_id, request.connector_id, self.owner)
            raise
        await self._save(request, grant, sealed_secrets, tree)
        return grant.access_token

    async def _current_auth(
        self, request: _Request
    ) -> tuple[Ciphertext | None, dict[str, Any] | None, OAuth2Auth]:
        """The auth with the refresh token stored now (another process may have rotated it
        since the caller read the connector), and the secrets it came from."""
        auth = request.auth
        if not isinstance(auth, OAuth2RefreshToken):
            return None, None, auth
        sealed = await self._store.get_secret(request.tenant_id, request.connector_id)
        if sealed is None:
            return None, None, auth
        tree = self._keyring.open_tree(sealed, request.tenant_id, request.connector_id)
        section = tree.get(request.field)
        stored = section.get("refresh_token") if isinstance(section, Mapping) else None
        if not isinstance(stored, str) or parse_reference(stored) is not None:
            # A secret reference (env:, file:...) is resolved by the caller, never rewritten here.
            return None, None, auth
        current = auth.model_copy(update={"refresh_token": type(auth.refresh_token)(stored)})
        return sealed, tree, current

    async def _save(
        self, request: _Request, grant: _Grant, sealed: Ciphertext | None, tree: dict[str, Any] | None
    ) -> None:
        now = utcnow()
        margin = min(REFRESH_MARGIN_MAX, grant.lifetime / 4)
        refresh_at = now + timedelta(seconds=grant.lifetime - margin)
        fingerprint = request.fingerprint
        swap = None
        if grant.refresh_token is not None and isinstance(request.auth, OAuth2RefreshToken):
            rotated = request.auth.model_copy(
                update={"refresh_token": type(request.auth.refresh_token)(grant.refresh_token)}
            )
            fingerprint = self._fingerprint(rotated)
            if sealed is not None and tree is not None:
                section = dict(tree[request.field])
                section["refresh_token"] = grant.refresh_token
                new_tree = {**tree, request.field: section}
                swap = (sealed, self._keyring.seal_tree(new_tree, request.tenant_id, request.connector_id))
            else:
                logger.warning(
                    "connector %s: the token endpoint rotated the refresh token, but it is a secret "
                    "reference; the new one cannot be stored",
                    request.connector_id,
                )
        saved = await self._store.save_oauth_token(
            request.tenant_id,
            request.connector_id,
            self.owner,
            fingerprint=fingerprint,
            token=self._keyring.encrypt(grant.access_token.encode(), _aad(request)),
            refresh_at=refresh_at,
            expires_at=now + timedelta(seconds=grant.lifetime),
            now=now,
            secret_swap=swap,
        )
        if not saved:
            logger.warning(
                "connector %s: the token refresh lease expired before the token was stored",
                request.connector_id,
            )
        self._cache[(request.tenant_id, request.connector_id)] = _Cached(
            fingerprint, grant.access_token, time.monotonic() + grant.lifetime - margin
        )

    async def _mark_reconnect(self, request: _Request, exc: ProbeError, latency_ms: int) -> None:
        """Record the refused grant as a failed result: the connector becomes ``error``."""
        details = {
            "error_kind": ErrorKind.AUTH.value,
            "oauth_error": "invalid_grant",
            "phase": "token_refresh",
        }
        result = TestResult(False, request.connector_id, latency_ms, exc.message, details, utcnow())
        audit = AuditEvent(
            new_id(),
            request.tenant_id,
            "oauth",
            "connector.oauth_refused",
            request.connector_id,
            utcnow(),
            details,
        )
        await self._store.record_test(
            request.tenant_id,
            result,
            audit,
            lambda current: changes_after_test(current, result, None),
            failure_threshold=self._failure_threshold,
        )
        self.forget(request.tenant_id, request.connector_id)

    async def _grant(self, request: _Request, auth: OAuth2Auth) -> _Grant:
        """One token request to the endpoint, through the egress policy."""
        import aiohttp

        form: dict[str, str] = {}
        if isinstance(auth, OAuth2RefreshToken):
            form = {"grant_type": "refresh_token", "refresh_token": auth.refresh_token.get_secret_value()}
        else:
            form = {"grant_type": "client_credentials"}
            if auth.audience:
                form["audience"] = auth.audience
        if auth.scope:
            form["scope"] = auth.scope
        headers = {"Accept": "application/json"}
        secret = auth.client_secret.get_secret_value() if auth.client_secret else None
        if auth.client_auth == "basic" and secret is not None:  # RFC 6749 2.3.1: form-encode both
            basic = f"{quote(auth.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        else:
            form["client_id"] = auth.client_id
            if secret is not None:
                form["client_secret"] = secret
        resolver = EgressResolver(self._egress())
        tls: ssl.SSLContext | bool = False
        if auth.token_url.startswith("https:"):
            tls = tls_context(request.tls_verify, request.ca_pem)
        connector = aiohttp.TCPConnector(ssl=tls, force_close=True, limit=1, **resolver.connector_args())
        target = _where(auth.token_url)
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector,
                    timeout=aiohttp.ClientTimeout(total=self._timeout),
                    trust_env=False,
                    cookie_jar=aiohttp.DummyCookieJar(),
                ) as session,
                session.post(auth.token_url, data=form, headers=headers, allow_redirects=False) as response,
            ):
                body = await read_at_most(response, _MAX_ANSWER)
                status = response.status
        except (aiohttp.ClientError, OSError, TimeoutError, ssl.SSLError) as exc:
            error = map_aiohttp_error(exc, target, resolver)
            raise ProbeError(error.kind, f"the token endpoint: {error.message}", error.details) from None
        return _parse_grant(status, body)


@dataclass(frozen=True, slots=True)
class _Request:
    tenant_id: str
    connector_id: str
    auth: OAuth2Auth
    fingerprint: str
    field: str
    tls_verify: bool
    ca_pem: str | None
    mark_refused: bool = True


def _aad(request: _Request) -> bytes:
    return f"connectord/oauth/v1/{request.tenant_id}/{request.connector_id}".encode()


def _where(url: str) -> str:
    from yarl import URL

    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}"


def _parse_grant(status: int, body: bytes) -> _Grant:
    """The token endpoint's answer (RFC 6749 5.1, 5.2) as a grant, or a :class:`ProbeError`."""
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if status != 200 or not isinstance(payload, dict):
        code = payload.get("error") if isinstance(payload, dict) else None
        code = code if isinstance(code, str) and HTTP_TOKEN.match(code) else None
        details: dict[str, Any] = {"token_status": status}
        if code:
            details["oauth_error"] = code
        if code == "invalid_grant":
            raise ProbeError(
                ErrorKind.AUTH,
                f"the token endpoint refused the refresh token (invalid_grant): {REAUTHORIZE}",
                details,
            )
        kind = ErrorKind.AUTH if status in (400, 401, 403) else ErrorKind.UNEXPECTED_STATUS
        reason = f" ({code})" if code else ""
        raise ProbeError(kind, f"the token endpoint answered {status}{reason}: no access token", details)
    token = payload.get("access_token")
    token_type = str(payload.get("token_type", "bearer")).lower()
    if not isinstance(token, str) or not token or token_type != "bearer":  # noqa: S105 - a type name
        raise ProbeError(ErrorKind.PROTOCOL, "the token endpoint gave no bearer access_token")
    lifetime = payload.get("expires_in")
    try:
        seconds = float(lifetime) if lifetime is not None else DEFAULT_LIFETIME
    except (TypeError, ValueError):
        seconds = DEFAULT_LIFETIME
    rotated = payload.get("refresh_token")
    return _Grant(token, max(seconds, 1.0), rotated if isinstance(rotated, str) and rotated else None)
