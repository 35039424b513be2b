"""What every console page shares: the signed-in viewer, rendering, security headers,
and the one place where the core's errors become error pages.

A page handler is ``async def handler(view: View) -> Response``; :func:`page`
wraps it in the checks every page has: a live session whose key still
authenticates (through :meth:`connectord.admin.Admin.authenticate`, the REST
API's own path), the CSRF token of every form post, the scope the page needs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup, escape
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectord.admin import Admin, Principal
from connectord.console import chart
from connectord.console.batch import Batches, Limiter
from connectord.console.forms import FormSpec, form_spec
from connectord.console.sessions import SESSION_COOKIE, Session, SessionTable, same_token
from connectord.errors import (
    AuthenticationError,
    ConnectordError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from connectord.facade import ConnectorsFacade
from connectord.model import Scope as KeyScope

logger = logging.getLogger("connectord.console")

#: Headers of every console answer. The policy allows our own script and stylesheet
#: only: no inline script or style, no framing, forms posting to this origin alone.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
#: Pages show a tenant's data: no cache keeps them.
_PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
#: Form fields at most (a connector form has a few dozen).
MAX_FORM_FIELDS = 500


def secured(response: Response) -> Response:
    """``response`` with the console's security headers (and no caching)."""
    for name, value in _PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class SecurityHeaders:
    """ASGI wrapper giving the console's static files the same security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self._headers]
            await send(message)

        await self.app(scope, receive, with_headers)


def is_https(request: Request) -> bool:
    """Whether the browser reached us over HTTPS (uvicorn applies trusted proxy headers)."""
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int | None) -> None:
    """A cookie script cannot read, sent to this site only, and only over HTTPS when the
    page came over HTTPS."""
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, samesite="strict", secure=is_https(request)
    )


@dataclass
class Services:
    """What the pages work with: the facade, the admin, the limiter, sessions, batches, templates."""

    facade: ConnectorsFacade
    admin: Admin
    #: The API's per-tenant test limiter: a test from the console counts as one from the API.
    limiter: Limiter
    sessions: SessionTable
    batches: Batches
    templates: jinja2.Environment
    _specs: dict[str, FormSpec] = field(default_factory=dict)

    def spec(self, connector_type: str) -> FormSpec:
        """The form of a registered type's config (built once per type)."""
        spec = self._specs.get(connector_type)
        if spec is None:
            registry = self.facade.registry
            schema = registry.describe(registry.get(connector_type))["config_schema"]
            spec = self._specs[connector_type] = form_spec(connector_type, schema)
        return spec

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        """A page from a template, with the security headers."""
        html = self.templates.get_template(template).render(**context)
        return secured(HTMLResponse(html, status_code=status))


@dataclass
class View:
    """A request of a signed-in person: their session, their key's principal, the form posted."""

    request: Request
    services: Services
    session: Session
    principal: Principal
    form: FormData | None = None

    @property
    def facade(self) -> ConnectorsFacade:
        """The facade every page calls."""
        return self.services.facade

    @property
    def tenant_id(self) -> str:
        """The key's tenant: every call is scoped to it."""
        return self.principal.tenant_id

    @property
    def actor(self) -> str:
        """The audit actor: the key, through the console."""
        return self.principal.actor

    def can(self, scope: KeyScope) -> bool:
        """Whether the key has ``scope``."""
        return scope.value in self.principal.scopes

    @property
    def can_read(self) -> bool:
        """May list and read connectors."""
        return self.can(KeyScope.READ)

    @property
    def can_write(self) -> bool:
        """May register, edit and delete connectors, and manage webhooks."""
        return self.can(KeyScope.WRITE)

    @property
    def can_test(self) -> bool:
        """May test connectors."""
        return self.can(KeyScope.TEST)

    @property
    def is_admin(self) -> bool:
        """May manage tenants and keys."""
        return self.can(KeyScope.ADMIN)

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        """A page, with the navigation, this session's CSRF token and its messages."""
        return self.services.render(
            template,
            status,
            view=self,
            csrf_token=self.session.csrf_token,
            flashes=self.session.take_flashes(),
            **context,
        )

    def redirect(self, url: str, message: str | None = None, kind: str = "ok") -> Response:
        """See other (303) to ``url``, with a message shown there once."""
        if message:
            self.session.flash(message, kind)
        return secured(RedirectResponse(url, status_code=303))

    def field(self, name: str, max_length: int = 2048) -> str:
        """A posted form field as text (empty when absent), cut to ``max_length``."""
        value = self.form.get(name) if self.form is not None else None
        return value[:max_length] if isinstance(value, str) else ""

    def query(self, name: str, max_length: int = 200) -> str | None:
        """A query parameter (``None`` when absent or empty), cut to ``max_length``."""
        value = self.request.query_params.get(name)
        return value[:max_length] if value else None


Handler = Callable[[View], Awaitable[Response]]


def sign_in_url(request: Request, ended: bool = False) -> str:
    """The sign-in page, coming back to this page after."""
    target = request.url.path
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    url = "/?next=" + quote(target, safe="")
    return url + "&ended=1" if ended else url


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a path of this site only (never ``//host`` or a URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/connectors"
    return target


def page(
    services: Services, handler: Handler, scope: KeyScope | None = KeyScope.READ
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint running ``handler`` for a signed-in person whose key has
    ``scope``; a form post must carry the session's CSRF token."""

    async def endpoint(request: Request) -> Response:
        session = services.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return secured(RedirectResponse(sign_in_url(request), status_code=303))
        try:
            principal = await services.admin.authenticate(session.api_key)
        except AuthenticationError:
            # The key was revoked (or its tenant removed): the session ends with it.
            services.sessions.end(session.id)
            response = RedirectResponse(sign_in_url(request, ended=True), status_code=303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return secured(response)
        view = View(request, services, session, principal)
        if request.method == "POST":
            try:
                view.form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
            except HTTPException:  # Starlette's answer to a form it cannot parse
                return error_page(view, 400, "Form refused", "This form could not be read.")
            if not same_token(session.csrf_token, view.form.get("csrf_token")):
                return error_page(
                    view,
                    403,
                    "Form refused",
                    "This form has expired or came from another site. Reload and try again.",
                )
        if scope is not None and not view.can(scope):
            return error_page(view, 403, "Not allowed", f"This API key lacks the {scope.value} scope.")
        try:
            return secured(await handler(view))
        except ConnectordError as exc:
            return core_error_page(view, exc)

    return endpoint


def core_error_page(view: View, exc: ConnectordError) -> Response:
    """The error page of a core error the page did not handle itself."""
    if isinstance(exc, NotFoundError):
        return error_page(view, 404, "Not found", "There is nothing here in your tenant.")
    if isinstance(exc, PermissionDeniedError):
        return error_page(view, 403, "Not allowed", exc.message)
    if isinstance(exc, RateLimitedError):
        return error_page(view, 429, "Too many tests", f"{exc.message}. Try again in a moment.")
    if exc.status >= 500:
        logger.warning("console page failed: %s", type(exc).__name__)
    message = exc.message if exc.status < 500 or exc.public else "Try again in a moment."
    return error_page(view, exc.status, exc.title, message)


def error_page(view: View, status: int, title: str, message: str) -> Response:
    """An error page in the console's frame."""
    return view.render("error.html", status, title=title, message=message)


# --- template filters ----------------------------------------------------------------------


def when(value: datetime | None) -> str:
    """A time, readable: ``2026-12-03 12:54 UTC``."""
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago: ``just now``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    if value is None:
        return "never"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{round(seconds / 60)} min ago"
    if seconds < 86400:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} d ago"


def time_tag(value: datetime | None) -> Markup:
    """A ``<time>`` element: how long ago, the exact time as its title (``never`` for none).
    A filter rather than a macro: list pages call it for every row."""
    if value is None:
        return Markup("never")
    # Built from escaped parts: Markup.format costs ten times more, once per row.
    iso, exact, since = escape(value.isoformat()), escape(when(value)), escape(ago(value))
    return Markup(f'<time datetime="{iso}" title="{exact}">{since}</time>')  # noqa: S704 - escaped


def badge(status: object) -> Markup:
    """A status badge (its class colours it; the text says it)."""
    text = escape(str(status))
    return Markup(f'<span class="badge status-{text}">{text}</span>')  # noqa: S704 - escaped


def percent(value: float | None) -> str:
    """A share as a percentage (``99.5%``), a dash when there is none."""
    if value is None:
        return "\N{EN DASH}"
    shown = f"{value * 100:.1f}".removesuffix(".0")
    return f"{shown}%"


def pretty(value: Any) -> str:
    """A config value as short text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(pretty(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {pretty(v)}" for k, v in value.items() if v is not None)
    return "" if value is None else str(value)


def environment() -> jinja2.Environment:
    """The console's templates (inside the package), escaped by default."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("connectord.console", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(when=when, ago=ago, percent=percent, pretty=pretty, time_tag=time_tag, badge=badge)
    env.globals.update(phases=chart.phases, phase_bar=chart.phase_bar)
    return env
