"""Console sessions and CSRF tokens.

The API key a person signs in with stays on the server: the browser holds only a
random session id, in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure``
when the request came over HTTPS). The table lives in this process's memory, so
a restart signs everyone out, and several workers or replicas need sticky
sessions (``docs/console.md``). Each request re-checks the key through the same
path the REST API uses, so a revoked key ends its sessions at once.

Every form carries the session's CSRF token (a synchronizer token); the sign-in
form, which comes before any session, carries a token that must match a cookie
set with the form (a double-submit token).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

#: The cookie holding the session id.
SESSION_COOKIE = "connectord_session"
#: The cookie holding the sign-in form's token (before any session exists).
SIGN_IN_COOKIE = "connectord_sign_in"
#: A session unused for this long ends (seconds).
IDLE_SECONDS = 8 * 3600.0
#: A session ends this long after sign-in, used or not (seconds).
MAX_AGE_SECONDS = 24 * 3600.0
#: The most sessions kept; beyond, the least recently used ends (the table is memory).
MAX_SESSIONS = 10_000


def new_token() -> str:
    """A random token of 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def same_token(expected: str, given: object) -> bool:
    """Whether a token sent by the browser is the expected one (in constant time)."""
    return isinstance(given, str) and bool(given) and hmac.compare_digest(expected, given)


@dataclass(slots=True)
class Session:
    """A signed-in browser: its key (never sent back), its CSRF token, one-shot messages."""

    id: str
    api_key: str = field(repr=False)
    csrf_token: str = field(repr=False)
    tenant_name: str
    created: float
    last_seen: float
    #: Messages shown once on the next page (``(kind, text)``, kind ``ok`` or ``error``).
    flashes: list[tuple[str, str]] = field(default_factory=list)

    def flash(self, text: str, kind: str = "ok") -> None:
        """Show ``text`` on the next page rendered for this session."""
        self.flashes.append((kind, text))

    def take_flashes(self) -> list[tuple[str, str]]:
        """The messages to show now; they are shown once."""
        taken, self.flashes = self.flashes, []
        return taken


class SessionTable:
    """The sessions of this process, least recently used first."""

    def __init__(
        self,
        *,
        idle_seconds: float = IDLE_SECONDS,
        max_age_seconds: float = MAX_AGE_SECONDS,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_age_seconds = max_age_seconds
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, api_key: str, tenant_name: str) -> Session:
        """A new session for a key that was just checked; always a fresh id (so an id
        planted in a browser before sign-in is never the one signed in)."""
        now = time.monotonic()
        session = Session(new_token(), api_key, new_token(), tenant_name, now, now)
        self._sessions[session.id] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id, or ``None`` (unknown, idle too long or too old)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen > self.idle_seconds or now - session.created > self.max_age_seconds:
            del self._sessions[session_id]
            return None
        session.last_seen = now
        self._sessions.move_to_end(session_id)
        return session

    def end(self, session_id: str) -> None:
        """End a session (sign-out, or its key no longer authenticates)."""
        self._sessions.pop(session_id, None)
