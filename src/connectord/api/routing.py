"""A lean route class: routes over one connector skip FastAPI's per-request dependency solving.

A route such as ``GET /connectors/{connector_id}`` takes path parameters and one
:class:`~connectord.api.deps.ScopedBearer`, and returns a ready ``Response``. For
it, FastAPI's handler still walks its dependency tree, looks for a body, and builds
an error context on every request: about a tenth of the request's CPU time in
bench/api.py's profile. :class:`LeanRoute` answers such a route with a handler made
once, which does what solving would: the key first (so a bad key answers 401 before
a bad id answers 422, as before), then each path parameter validated by its own field,
with FastAPI's error locations. The endpoint may also take the ``Request`` (the
proxy reads its body itself). Every other route keeps FastAPI's handler, and the
OpenAPI document is built from the same declarations, so it does not change. A lean
route does not consult ``app.dependency_overrides`` (connectord sets none).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from connectord.api.deps import ScopedBearer

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class LeanRoute(APIRoute):
    """An ``APIRoute`` answered by a lean handler where its declaration allows one."""

    def get_route_handler(self) -> Handler:
        """The lean handler, or FastAPI's where the route needs more than it does."""
        return _lean_handler(self) or super().get_route_handler()


def _lean_handler(route: APIRoute) -> Handler | None:
    dependant = route.dependant
    bearer = _only_bearer(dependant)
    call = dependant.call
    if bearer is None or route.body_field is not None or not _returns_response(call):
        return None
    assert call is not None
    assert bearer.name is not None
    authenticate, who = bearer.call, bearer.name
    assert isinstance(authenticate, ScopedBearer)
    fields = [(field, field.name, ("path", field.alias)) for field in dependant.path_params]
    takes_request = dependant.request_param_name

    async def handler(request: Request) -> Response:
        values: dict[str, Any] = {who: await authenticate(request)}
        if takes_request is not None:
            values[takes_request] = request
        given = request.path_params
        errors: list[Any] = []
        for field, name, loc in fields:
            value, wrong = field.validate(given[loc[1]], values, loc=loc)
            if wrong:
                errors.extend(wrong)
            else:
                values[name] = value
        if errors:
            raise RequestValidationError(errors)
        response: Response = await call(**values)
        return response

    return handler


def _only_bearer(dependant: Dependant) -> Dependant | None:
    """The route's one dependency if it is a ScopedBearer and the route takes nothing else
    but path parameters and the request (no query, header, cookie or body parameter)."""
    if (
        dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or len(dependant.dependencies) != 1
        or _special_params(dependant)
    ):
        return None
    sub = dependant.dependencies[0]
    if not isinstance(sub.call, ScopedBearer) or sub.dependencies or sub.path_params or sub.query_params:
        return None
    if sub.header_params or sub.cookie_params or sub.body_params:
        return None
    return sub


def _special_params(dependant: Dependant) -> bool:
    return any(
        name is not None
        for name in (
            dependant.websocket_param_name,
            dependant.http_connection_param_name,
            dependant.response_param_name,
            dependant.background_tasks_param_name,
            dependant.security_scopes_param_name,
        )
    )


def _returns_response(call: Callable[..., Any] | None) -> bool:
    """Whether the endpoint is a coroutine declared to return a ``Response`` (then FastAPI
    would pass its result through untouched, as the lean handler does)."""
    if call is None or not inspect.iscoroutinefunction(call):
        return False
    returned = typing.get_type_hints(call).get("return")
    return isinstance(returned, type) and issubclass(returned, Response)
