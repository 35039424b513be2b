"""Every class of the error tree round-trips: raised in the server, written as a problem
document by the REST API's own handlers, read back by the SDK as the same class (issue 10.3).

The server is the real application (``create_app``) with one extra route that
raises the class it is told, served over a real socket by uvicorn; the SDK's
reverse map reads the answers.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from connectord import errors as e
from connectord.api.app import create_app
from connectord.client._errors import error_from_response
from connectord.model import ErrorKind
from connectord.settings import Settings

MESSAGE = "what happened"


def _instance(cls: type[e.ConnectordError]) -> e.ConnectordError:
    """An instance of each class, built as the core builds it."""
    if cls is e.UnknownConnectorTypeError:
        return e.UnknownConnectorTypeError("teleport", ["http"])
    if issubclass(cls, e.ValidationError):
        return cls(MESSAGE, [e.FieldError(("config", "x"), "is wrong")])
    if issubclass(cls, e.VersionConflictError):
        return cls(MESSAGE, current_version=3)
    if issubclass(cls, e.RateLimitedError):
        return cls(MESSAGE, retry_after=2.0)
    if issubclass(cls, e.ProbeError):
        return cls(ErrorKind.TIMEOUT, MESSAGE)
    return cls(MESSAGE)


CLASSES = sorted(e.problem_classes().values(), key=lambda c: c.__name__)


@pytest.fixture
async def base_url(tmp_path: Path) -> AsyncIterator[str]:
    app = create_app(Settings(data_dir=tmp_path / "data"))
    by_name = {cls.__name__: cls for cls in CLASSES}

    @app.get("/raise/{name}")
    async def _raise(name: str) -> None:
        raise _instance(by_name[name])

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


def test_the_tree_is_complete() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"ProbeError", "TransportError", "ValidationError", "ConnectordError"} <= names
    assert len({cls.slug for cls in CLASSES}) == len(CLASSES)  # one slug per class


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
async def test_each_class_comes_back_as_itself(base_url: str, cls: type[e.ConnectordError]) -> None:
    sent = _instance(cls)
    async with httpx.AsyncClient(base_url=base_url) as http:
        resp = await http.get(f"/raise/{cls.__name__}")
    expected_status = 504 if isinstance(sent, e.ProbeError) else cls.status
    assert resp.status_code == expected_status
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["type"] == e.PROBLEM_TYPE_PREFIX + cls.slug
    if not isinstance(sent, e.ProbeError):  # a timeout has its own title and status
        assert body["title"] == cls.title
    back = error_from_response(resp, {"connector_type": "teleport"})
    assert type(back) is cls
    if cls.status < 500 or cls.public:
        assert back.message == sent.message
    for attr in ("errors", "current_version", "retry_after", "kind"):
        if hasattr(sent, attr):
            assert getattr(back, attr) == getattr(sent, attr), attr
