"""The console's routes, sign-in and sign-out; :func:`console_routes` hands them to the
API's app (``connectord.api.app``), which serves them beside ``/api/v1``."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from connectord.admin import Admin
from connectord.console import connectors, editing, manage
from connectord.console.batch import Batches, Limiter
from connectord.console.sessions import SESSION_COOKIE, SIGN_IN_COOKIE, SessionTable, new_token, same_token
from connectord.console.web import (
    Handler,
    SecurityHeaders,
    Services,
    View,
    environment,
    page,
    safe_next,
    secured,
    set_cookie,
)
from connectord.errors import AuthenticationError
from connectord.facade import ConnectorsFacade
from connectord.model import Scope

#: Where the stylesheet and script are served.
STATIC_PATH = "/static/console"
_STATIC_DIR = Path(__file__).parent / "static"
#: How long a sign-in form stays valid (seconds).
SIGN_IN_SECONDS = 3600


class Console:
    """The web console of one app: its sessions, batches and templates, over the facade."""

    def __init__(self, facade: ConnectorsFacade, admin: Admin, limiter: Limiter) -> None:
        self.services = Services(facade, admin, limiter, SessionTable(), Batches(limiter), environment())

    async def close(self) -> None:
        """Stop the batches still running (their finished tests stay recorded)."""
        await self.services.batches.close()

    def routes(self) -> list[BaseRoute]:
        """Every console route (the API's app puts them after its own)."""
        s = self.services

        def get(path: str, handler: Handler, scope: Scope | None = Scope.READ) -> Route:
            return Route(path, page(s, handler, scope), methods=["GET"], include_in_schema=False)

        def post(path: str, handler: Handler, scope: Scope | None) -> Route:
            return Route(path, page(s, handler, scope), methods=["POST"], include_in_schema=False)

        return [
            Route("/", self.sign_in_page, methods=["GET"], include_in_schema=False),
            Route("/sign-in", self.sign_in, methods=["POST"], include_in_schema=False),
            post("/sign-out", self.sign_out, None),
            get("/connectors", connectors.list_page),
            post("/connectors/test-selected", connectors.test_selected, Scope.TEST),
            get("/connectors/new", editing.new_page, Scope.WRITE),
            post("/connectors/new", editing.new_post, Scope.WRITE),
            get("/connectors/{connector_id}", connectors.connector_page),
            post("/connectors/{connector_id}/test", connectors.test_now, Scope.TEST),
            post("/connectors/{connector_id}/delete", connectors.delete, Scope.WRITE),
            get("/connectors/{connector_id}/edit", editing.edit_page, Scope.WRITE),
            post("/connectors/{connector_id}/edit", editing.edit_post, Scope.WRITE),
            get("/tests/{batch_id}", connectors.batch_page),
            get("/tests/{batch_id}/progress", connectors.batch_progress),
            get("/types", manage.types_page),
            get("/audit", manage.audit_page),
            get("/webhooks", manage.webhooks_page, Scope.WRITE),
            post("/webhooks", manage.webhook_create, Scope.WRITE),
            get("/webhooks/{webhook_id}", manage.webhook_page, Scope.WRITE),
            post("/webhooks/{webhook_id}/enabled", manage.webhook_toggle, Scope.WRITE),
            post("/webhooks/{webhook_id}/delete", manage.webhook_delete, Scope.WRITE),
            get("/keys", manage.tenants_page, Scope.ADMIN),
            post("/keys", manage.tenant_create, Scope.ADMIN),
            get("/keys/{tenant_id}", manage.keys_page, Scope.ADMIN),
            post("/keys/{tenant_id}", manage.key_create, Scope.ADMIN),
            post("/keys/{tenant_id}/{key_id}/revoke", manage.key_revoke, Scope.ADMIN),
            Mount(
                STATIC_PATH, app=SecurityHeaders(StaticFiles(directory=_STATIC_DIR)), name="console-static"
            ),
        ]

    # --- sign-in and sign-out ------------------------------------------------------------

    async def sign_in_page(self, request: Request) -> Response:
        """The sign-in form, or the connectors for someone signed in already."""
        if self.services.sessions.get(request.cookies.get(SESSION_COOKIE)) is not None:
            return secured(RedirectResponse(safe_next(request.query_params.get("next")), status_code=303))
        ended = request.query_params.get("ended") == "1"
        return self._sign_in_form(
            request, 200, "Your session ended: its API key is no longer valid." if ended else None
        )

    def _sign_in_form(self, request: Request, status: int, error: str | None) -> Response:
        token = request.cookies.get(SIGN_IN_COOKIE) or ""
        if len(token) != 43:  # not one of ours (new_token's length): a fresh one
            token = new_token()
        response = self.services.render(
            "sign_in.html",
            status,
            csrf_token=token,
            next=safe_next(request.query_params.get("next")),
            error=error,
            view=None,
            flashes=[],
        )
        set_cookie(response, request, SIGN_IN_COOKIE, token, SIGN_IN_SECONDS)
        return response

    async def sign_in(self, request: Request) -> Response:
        """Check the key, then open a session (a fresh id) and go where the person was going."""
        form = await request.form(max_files=0, max_fields=10)
        if not same_token(request.cookies.get(SIGN_IN_COOKIE) or "", form.get("csrf_token")):
            return self._sign_in_form(request, 403, "The sign-in form expired. Please sign in again.")
        api_key = form.get("api_key")
        try:
            principal = await self.services.admin.authenticate(api_key if isinstance(api_key, str) else None)
        except AuthenticationError:
            return self._sign_in_form(request, 401, "This API key is not valid (or it was revoked).")
        if principal.reach.narrowed:
            # The console's pages are the whole tenant's (its audit, webhooks, batch tests):
            # a key made for some connectors works through the API, the SDK and the CLI.
            return self._sign_in_form(
                request,
                403,
                "This API key is narrowed to some connectors: use it with the API, not the console.",
            )
        tenant = await self.services.admin.get_tenant(principal.tenant_id)
        assert isinstance(api_key, str)  # authenticate accepted it
        session = self.services.sessions.create(
            api_key, tenant.name if tenant is not None else principal.tenant_id
        )
        given = form.get("next")
        target = safe_next(given if isinstance(given, str) else None)
        if target == "/connectors" and Scope.READ not in principal.scopes and Scope.ADMIN in principal.scopes:
            target = "/keys"  # an operator's key that reads no connectors: where it can work
        response = secured(RedirectResponse(target, status_code=303))
        set_cookie(response, request, SESSION_COOKIE, session.id, None)
        response.delete_cookie(SIGN_IN_COOKIE, path="/")
        return response

    async def sign_out(self, view: View) -> Response:
        """End the session; the key itself stays valid."""
        self.services.sessions.end(view.session.id)
        response = secured(RedirectResponse("/", status_code=303))
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def console_routes(
    facade: ConnectorsFacade, admin: Admin, limiter: Limiter
) -> tuple[Console, list[BaseRoute]]:
    """A console over ``facade`` and its routes, for an app to serve."""
    console = Console(facade, admin, limiter)
    return console, console.routes()
