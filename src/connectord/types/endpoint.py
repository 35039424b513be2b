"""What endpoint a connector type accepts, checked when a definition is saved or tested.

Each type declares an :class:`EndpointRule` (the schemes, whether a bare
``host:port`` or a path will do, where a host is needed, whether credentials may
be written in the URL). :func:`check_endpoint` holds an endpoint to it and
answers a :class:`~connectord.errors.ValidationError` on the ``endpoint`` field
naming what is allowed, so ``file:///etc/passwd`` for an ``http`` connector is
refused at registration rather than failing at its first test. The rule is
published in the type's description (``GET /v1/connector-types``).

A password written in a URL is moved into the config's ``password`` secret (for
types whose rule allows credentials); every other credential-shaped part of an
endpoint (a user name standing for a token, ``?access_token=``) is refused,
never stored in clear.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

from connectord.errors import FieldError, ValidationError
from connectord.redaction import CREDENTIAL_PARAMETERS

_FIELD = ("endpoint",)


@dataclass(frozen=True, slots=True)
class EndpointRule:
    """The endpoints a type accepts."""

    #: URL schemes accepted (lower case); empty: any scheme, with a host.
    schemes: tuple[str, ...] = ()
    #: Schemes whose URLs name no host (``file:///path``, ``sqlite:///path``).
    hostless: tuple[str, ...] = ()
    #: A ``host[:port]`` without a scheme is accepted.
    bare: bool = False
    #: A file-system path (``/data/app.db``) is accepted.
    path: bool = False
    #: A user name (and a password, moved to the ``password`` secret) may be in the URL.
    credentials: bool = False
    #: A user name alone is a user name (``postgresql://app@host``), not a token.
    user_alone: bool = False
    #: ``scheme+driver`` spellings (``postgresql+asyncpg://``) are accepted.
    driver_suffix: bool = False

    def describe(self) -> dict[str, Any]:
        """The published form (``endpoint`` in a type's description)."""
        return {
            "schemes": list(self.schemes),
            "hostless_schemes": list(self.hostless),
            "bare_host_port": self.bare,
            "path": self.path,
            "credentials_in_url": self.credentials,
            "user_name_alone": self.user_alone,
            "driver_suffix": self.driver_suffix,
        }

    @classmethod
    def from_description(cls, described: Mapping[str, Any]) -> EndpointRule:
        """The rule a type's description publishes (what a client such as ``apply`` checks)."""
        return cls(
            schemes=tuple(described.get("schemes", ())),
            hostless=tuple(described.get("hostless_schemes", ())),
            bare=bool(described.get("bare_host_port", False)),
            path=bool(described.get("path", False)),
            credentials=bool(described.get("credentials_in_url", False)),
            user_alone=bool(described.get("user_name_alone", False)),
            driver_suffix=bool(described.get("driver_suffix", False)),
        )

    def allowed(self) -> str:
        """The accepted forms, as a field error names them."""
        forms = [f"{s}://" for s in self.schemes] if self.schemes else ["a URL with a host"]
        if self.bare:
            forms.append("host:port")
        if self.path:
            forms.append("an absolute path")
        return ", ".join(forms)


def _refuse(message: str) -> ValidationError:
    return ValidationError("invalid endpoint", [FieldError(_FIELD, message)])


def split_credentials(endpoint: str, rule: EndpointRule, type_name: str) -> tuple[str, dict[str, str]]:
    """Check ``endpoint`` against the ``rule`` of a ``type_name`` connector; the endpoint to
    store and the secrets moved out of it (``{"password": ...}``).

    :class:`ValidationError` on the ``endpoint`` field when it does not fit.
    """
    what = f"{'an' if type_name[:1] in 'aeiou' else 'a'} {type_name} connector's endpoint is {rule.allowed()}"
    if "\x00" in unquote(endpoint):
        raise _refuse("must not hold a NUL byte (%00)")
    if "://" not in endpoint:
        return _check_schemeless(endpoint, rule, what)
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise _refuse("is not a valid URL (check the port)") from None
    scheme = parts.scheme.lower()
    base = scheme.split("+", 1)[0] if rule.driver_suffix else scheme
    if rule.schemes and base not in rule.schemes:
        raise _refuse(f"has the scheme {scheme!r}; {what}")
    if base in rule.hostless:
        if parts.netloc:
            raise _refuse(f"a {scheme}:// endpoint names no host: {scheme}:///absolute/path")
    elif not parts.hostname:
        raise _refuse(f"needs a host; {what}")
    _check_query(parts)
    return _move_password(endpoint, parts, rule)


def _check_schemeless(endpoint: str, rule: EndpointRule, what: str) -> tuple[str, dict[str, str]]:
    if endpoint.startswith("/"):
        if not rule.path:
            raise _refuse(f"is a path; {what}")
        return endpoint, {}
    if not rule.bare:
        raise _refuse(f"has no scheme; {what}")
    try:
        parts = urlsplit(f"//{endpoint}")
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise _refuse("is not host:port (check the port)") from None
    if not parts.hostname:
        raise _refuse("needs a host (host:port)")
    _check_query(parts)
    stored, moved = _move_password(endpoint, parts, rule)
    return stored.removeprefix("//"), moved


def _check_query(parts: SplitResult) -> None:
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if name.lower() in CREDENTIAL_PARAMETERS:
            raise _refuse(f"carries a credential in ?{name}=: put it in the config's secret fields")


def _move_password(endpoint: str, parts: SplitResult, rule: EndpointRule) -> tuple[str, dict[str, str]]:
    """The endpoint as given (``//host`` when bare) without its password, and the password."""
    given = endpoint if "://" in endpoint else f"//{endpoint}"
    if "@" not in parts.netloc:
        return given, {}
    if not rule.credentials:
        raise _refuse("must not carry credentials (user@ or user:password@): use the config's secret fields")
    if parts.password is None:
        return given, {}
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    # The URL carries the password percent-encoded; the secret is the password itself.
    stored = parts._replace(netloc=f"{user}@{host}" if user else host)
    return urlunsplit(stored), {"password": unquote(parts.password)}


def check_user_alone(endpoint: str, rule: EndpointRule, has_password: bool) -> None:
    """Refuse a user name with no password (``https://TOKEN@host``) where the rule reads
    it as a token: it would be stored and shown in clear."""
    if rule.user_alone or has_password or "@" not in endpoint.partition("://")[2].split("/", 1)[0]:
        return
    raise _refuse("has a user name but no password, which reads as a token: use the config's secret fields")
