"""The ``http`` type's config: endpoint options, credential headers, auth kinds (``docs/http-probe.md``)."""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectord.network.tls import CaPem
from connectord.types.base import ConnectorConfig

MAX_REDIRECTS = 5
#: Header names that always hold credentials (compared lower-case).
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
#: A header whose name contains one of these is a credential too.
CREDENTIAL_WORDS = ("token", "secret", "key", "auth", "password", "passwd", "credential", "session", "cookie")
#: Headers that change how the request is framed or routed; the probe owns them.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect", "te", "trailer"}
)
#: An HTTP token (RFC 9110): a header name, an OAuth error code.
HTTP_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$")
_BAD_VALUE = re.compile(r"[\x00\r\n]")


def is_credential_header(name: str) -> bool:
    """True for a header name that carries credentials (stored encrypted)."""
    lowered = name.lower()
    return lowered in CREDENTIAL_HEADERS or any(word in lowered for word in CREDENTIAL_WORDS)


def _check_header(name: str, value: str) -> None:
    if not HTTP_TOKEN.match(name):
        raise ValueError(f"header name {name!r} is not a valid HTTP token")
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"header {name!r} is set by the probe and cannot be configured")
    if _BAD_VALUE.search(value) or len(value) > 8192:
        raise ValueError(f"header {name!r} has a line break, a NUL or more than 8192 characters")


# --- config ---------------------------------------------------------------------------


class _AuthModel(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class NoAuth(_AuthModel):
    """No authentication (a password in the endpoint URL still gives Basic auth)."""

    kind: Literal["none"] = Field(default="none", description="No authentication.")


class BasicAuth(_AuthModel):
    """HTTP Basic authentication (RFC 7617)."""

    kind: Literal["basic"] = Field(description="HTTP Basic authentication.")
    username: str = Field(max_length=256, pattern=r"^[^:\x00-\x1f]*$", description="User name (no colon).")
    password: SecretStr = Field(description="Password.")


class BearerAuth(_AuthModel):
    """A static bearer token (``Authorization: Bearer ...``)."""

    kind: Literal["bearer"] = Field(description="A static bearer token.")
    token: SecretStr = Field(description="The token.")


class ApiKeyAuth(_AuthModel):
    """An API key sent as a header or a query parameter."""

    model_config = ConfigDict(
        extra="forbid", hide_input_in_errors=True, validate_by_name=True, serialize_by_alias=True
    )

    kind: Literal["api_key"] = Field(description="An API key in a header or a query parameter.")
    name: str = Field(pattern=HTTP_TOKEN.pattern, description="Header or query parameter name.")
    value: SecretStr = Field(description="The key.")
    location: Literal["header", "query"] = Field(
        default="header", alias="in", description="Where the key goes: a header or the query string."
    )


class OAuth2ClientCredentials(_AuthModel):
    """OAuth 2.0 client credentials (RFC 6749 section 4.4): a token fetched for each test."""

    kind: Literal["oauth2_client_credentials"] = Field(description="OAuth 2.0 client credentials.")
    token_url: str = Field(
        max_length=2048,
        pattern=r"^https?://[^\s/?#]+[^\s]*$",
        description="Token endpoint (http or https); checked by the egress policy like the endpoint.",
    )
    client_id: str = Field(max_length=512, description="Client id.")
    client_secret: SecretStr = Field(description="Client secret.")
    scope: str | None = Field(default=None, max_length=2048, description="Space-separated scopes.")
    audience: str | None = Field(default=None, max_length=2048, description="Audience (Auth0, Okta...).")
    client_auth: Literal["basic", "body"] = Field(
        default="basic",
        description="How the client authenticates to the token endpoint: HTTP Basic or form fields.",
    )


class OAuth2RefreshToken(_AuthModel):
    """An OAuth 2.0 refresh token (RFC 6749 section 6) from an authorization-code connection
    made elsewhere: connectord exchanges it for access tokens, keeps them encrypted until
    they expire, and stores a rotated refresh token the server hands back (docs/use.md)."""

    kind: Literal["oauth2_refresh_token"] = Field(description="An OAuth 2.0 refresh token.")
    token_url: str = Field(
        max_length=2048,
        pattern=r"^https?://[^\s/?#]+[^\s]*$",
        description="Token endpoint (http or https); checked by the egress policy like the endpoint.",
    )
    client_id: str = Field(max_length=512, description="Client id.")
    client_secret: SecretStr | None = Field(
        default=None, description="Client secret (none for a public client)."
    )
    refresh_token: SecretStr = Field(description="The refresh token; replaced when the server rotates it.")
    scope: str | None = Field(default=None, max_length=2048, description="Space-separated scopes.")
    client_auth: Literal["basic", "body"] = Field(
        default="basic",
        description="How the client authenticates to the token endpoint: HTTP Basic or form fields.",
    )


#: The auth kinds whose access tokens come from a token endpoint.
OAuth2Auth = OAuth2ClientCredentials | OAuth2RefreshToken
#: The ``ProbeContext.options`` key of a saved connector's token source: an async callable
#: ``(auth, tls_verify, ca_pem) -> access token`` (the facade's broker, which keeps the
#: tokens with the connector). A refresh token is only ever spent through it, since a
#: rotated one must be stored; without it (an unsaved definition) the test is refused.
OAUTH_TOKEN = "oauth_token"  # noqa: S105 - an option name, not a token

HttpAuth = Annotated[
    NoAuth | BasicAuth | BearerAuth | ApiKeyAuth | OAuth2ClientCredentials | OAuth2RefreshToken,
    Field(discriminator="kind"),
]
#: Methods the proxy may forward; GET and HEAD always are (docs/use.md).
ProxyMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _read_only_methods() -> list[ProxyMethod]:
    return ["GET", "HEAD"]


class HttpConfig(ConnectorConfig):
    """Config of an ``http`` connector. The endpoint is the base URL (http or https)."""

    method: Literal["GET", "HEAD"] = Field(
        default="GET", description="Request method. Only GET and HEAD: a test never changes anything."
    )
    health_path: str | None = Field(
        default=None,
        max_length=2048,
        description="Path (and query) appended to the endpoint's path for the test, e.g. /healthz.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra request headers, not secret. Credential headers (Authorization, Cookie, "
        "X-Api-Key, or a name containing token, secret, key, auth, password, session...) are moved to "
        "secret_headers and stored encrypted.",
    )
    secret_headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Request headers that hold credentials; write-only."
    )
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Status codes that count as success (after redirects); default any 2xx or 3xx.",
    )
    follow_redirects: bool = Field(
        default=True,
        description=f"Follow up to {MAX_REDIRECTS} redirects, each checked by the egress policy.",
    )
    tls_verify: bool = Field(default=True, description="Verify the server certificate and its name.")
    ca_pem: CaPem = Field(
        default=None,
        max_length=65536,
        description="CA certificates (PEM text) to trust instead of the system store.",
    )
    auth: HttpAuth = Field(default_factory=NoAuth, description="How the probe authenticates.")
    proxy_methods: list[ProxyMethod] = Field(
        default_factory=_read_only_methods,
        max_length=7,
        description="Methods the proxy (/connectors/{id}/proxy/...) forwards; anything else is 405. "
        "GET and HEAD by default: a method that changes things must be opened on purpose.",
    )

    @model_validator(mode="before")
    @classmethod
    def _move_credential_headers(cls, data: Any) -> Any:
        """Headers that hold credentials become secret headers (docs/secrets.md)."""
        if not isinstance(data, dict) or not isinstance(data.get("headers"), dict):
            return data
        moved = {k: v for k, v in data["headers"].items() if is_credential_header(str(k))}
        if not moved:
            return data
        secret = data.get("secret_headers")
        secret = dict(secret) if isinstance(secret, dict) else {}
        lowered = {str(k).lower() for k in moved}
        secret = {k: v for k, v in secret.items() if str(k).lower() not in lowered}
        plain = {k: v for k, v in data["headers"].items() if k not in moved}
        return {**data, "headers": plain, "secret_headers": {**secret, **moved}}

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.startswith("/") or value.startswith("//") or re.search(r"[\x00-\x20\x7f\\#]", value)
        ):
            raise ValueError("must be a path starting with a single /, without spaces, backslashes or #")
        return value

    @model_validator(mode="after")
    def _valid_headers(self) -> HttpConfig:
        for name, value in self.headers.items():
            _check_header(name, value)
        for name, secret in self.secret_headers.items():
            _check_header(name, secret.get_secret_value())
        both = {n.lower() for n in self.headers} & {n.lower() for n in self.secret_headers}
        if both:
            raise ValueError(f"headers and secret_headers both set {', '.join(sorted(both))}")
        return self


# --- the credentials of a request: one place for the probe and the proxy ---------------


def basic_credentials(username: str, password: str) -> str:
    """An ``Authorization: Basic`` value (RFC 7617)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def auth_headers(
    config: HttpConfig, username: str | None, url_password: str | None, token: str | None = None
) -> dict[str, str]:
    """The headers that carry a connector's credentials: the OAuth 2.0 access ``token``
    when one is given, else its ``auth``, else Basic credentials from its ``password`` or
    the endpoint URL's user info (``username``, ``url_password``)."""
    auth = config.auth
    if token is not None:
        return {"Authorization": f"Bearer {token}"}
    if isinstance(auth, BasicAuth):
        return {"Authorization": basic_credentials(auth.username, auth.password.get_secret_value())}
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"Bearer {auth.token.get_secret_value()}"}
    if isinstance(auth, ApiKeyAuth) and auth.location == "header":
        return {auth.name: auth.value.get_secret_value()}
    password = config.password.get_secret_value() if config.password else url_password
    if isinstance(auth, NoAuth) and (password or username):
        return {"Authorization": basic_credentials(username or "", password or "")}
    return {}


def secret_values(config: HttpConfig, *extra: str | None) -> list[str]:
    """Every secret a request of this connector may carry (its secret headers, its secret
    fields and its auth's), and the ``extra`` ones given (a URL's password, a token):
    what is scrubbed from anything shown."""
    values = [s.get_secret_value() for s in config.secret_headers.values()]
    for holder in (config, config.auth):
        values += [v.get_secret_value() for v in vars(holder).values() if isinstance(v, SecretStr)]
    return values + [v for v in extra if v]
