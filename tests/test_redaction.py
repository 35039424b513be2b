"""Redaction works on structure, not on one spelling (issue 9, items 2 and 8).

Unit tests of :mod:`connectord.redaction`, then end to end through the facade
against real loopback HTTP servers: an API key sent in the query string (in a
spelling yarl and ``quote()`` encode differently) and a server that echoes the
``Authorization`` header into its ``Server`` and ``Content-Type`` headers. No
encoding of the secret may appear in the result, the stored history or the logs.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connectord.admin import Admin
from connectord.facade import ConnectorsFacade
from connectord.redaction import MASK, encodings, redact_url, scrub, scrub_text
from connectord.settings import Settings

KEY = "k/y+z=1 ä&Secret"  # yarl, quote() and quote_plus() spell it three ways
TOKEN = "t0ken-Echoed-Secret"
PASSWORD = "pw-Echoed-Secret"


# --- units ----------------------------------------------------------------------------------


def test_urls_lose_userinfo_and_credential_parameters_by_name() -> None:
    url = "https://u:pw@api.example:8443/v1/x?page=2&API_KEY=abc%2Fdef&custom=zz&token=t&q=ok"
    shown = redact_url(url, ["custom"])
    assert shown == f"https://api.example:8443/v1/x?page=2&API_KEY={MASK}&custom={MASK}&token={MASK}&q=ok"
    assert redact_url("http://h/p") == "http://h/p"


def test_every_encoding_of_a_secret_is_scrubbed() -> None:
    from yarl import URL

    yarl_form = URL.build(query={"k": KEY}).raw_query_string.removeprefix("k=")
    texts = [
        KEY,
        yarl_form,
        json.dumps({"k": KEY}),
        base64.b64encode(KEY.encode()).decode(),
        "Basic " + base64.b64encode(f"someone:{KEY}".encode()).decode(),
    ]
    assert len(encodings(KEY)) >= 5
    for text in texts:
        scrubbed = scrub_text(f"before {text} after", [KEY])
        assert MASK in scrubbed, text
        assert text not in scrubbed
    assert scrub_text("connected to the server", ["ab"]) == "connected to the server"  # too short


def test_details_are_scrubbed_everywhere() -> None:
    details = {"server": f"echo {TOKEN}", "nested": [{"v": f"x{TOKEN}"}], "n": 3, TOKEN: "key"}
    assert TOKEN not in json.dumps(scrub(details, [TOKEN]))
    assert scrub(details, [TOKEN])["n"] == 3


# --- end to end -----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """``/key``: 200 with the key in the query, else 401. ``/echo``: Authorization echoed back."""

    def do_GET(self) -> None:
        if self.path.startswith("/echo"):
            echoed = self.headers.get("Authorization", "none")
            self.send_response(200)  # the Server header is version_string(): echoed too
            self.send_header("Content-Type", f"text/plain; x={echoed}")
        else:
            self.send_response(200 if "api_key=" in self.path else 401)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def version_string(self) -> str:
        return f"echo/{self.headers.get('Authorization', 'none')}"

    def log_message(self, *args: Any) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[tuple[ConnectorsFacade, str]]:
    settings = Settings(data_dir=tmp_path / "data", egress_allow=["127.0.0.1/32"])
    async with ConnectorsFacade(settings=settings) as facade:
        tenant, _ = await Admin(facade).create_tenant("redaction")
        yield facade, tenant.id


def _spellings(secret: str) -> set[str]:
    return encodings(secret) | {base64.b64encode(f"u:{secret}".encode()).decode()}


async def _assert_clean(
    facade: ConnectorsFacade,
    tenant: str,
    ctype: str,
    endpoint: str,
    config: dict[str, Any],
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> dict[str, Any]:
    unsaved = await facade.test_definition(tenant, "x", ctype, endpoint, config)
    info = await facade.register_connector(tenant, "x", ctype, endpoint, config)
    saved = await facade.test_connector(info.id, tenant)
    history = await facade.history(info.id, tenant)
    seen = json.dumps([unsaved.to_dict(), saved.to_dict(), [r.to_dict() for r in history.items]])
    seen += caplog.text
    leaked = [form for form in _spellings(secret) if form in seen]
    assert leaked == [], leaked
    return saved.to_dict()


async def test_an_api_key_in_the_query_never_comes_back(
    local: tuple[ConnectorsFacade, str], server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    facade, tenant = local
    caplog.set_level(logging.DEBUG)
    config = {"auth": {"kind": "api_key", "name": "api_key", "in": "query", "value": KEY}}
    result = await _assert_clean(facade, tenant, "http", f"{server_url}/key", config, KEY, caplog)
    assert result["success"] is True
    assert result["details"]["url"].endswith(f"/key?api_key={MASK}")


@pytest.mark.parametrize(
    ("auth", "secret"),
    [
        ({"kind": "bearer", "token": TOKEN}, TOKEN),
        ({"kind": "basic", "username": "u", "password": PASSWORD}, PASSWORD),
    ],
)
async def test_a_credential_echoed_by_the_server_is_scrubbed(
    local: tuple[ConnectorsFacade, str],
    server_url: str,
    caplog: pytest.LogCaptureFixture,
    auth: dict[str, str],
    secret: str,
) -> None:
    facade, tenant = local
    result = await _assert_clean(facade, tenant, "http", f"{server_url}/echo", {"auth": auth}, secret, caplog)
    assert result["success"] is True
    assert MASK in result["details"]["server"]
