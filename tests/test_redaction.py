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
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from connectord.facade import ConnectorsFacade
from connectord.redaction import MASK, encodings, redact_url, scrub, scrub_text

KEY = "k/y+z=1 ä&Secret"  # yarl, quote() and quote_plus() spell it three ways
TOKEN = "t0ken-Echoed-Secret"
PASSWORD = "pw-Echoed-Secret"
CLIENT_SECRET = "client/Secret+1"
ACCESS_TOKEN = "fetched-Access-Token"


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


def test_fragments_semicolons_and_credential_shaped_names_are_masked() -> None:
    url = "http://h/cb?state=s;refresh_token=r&X-Goog-Signature=g&%61pi_key=a#access_token=t&x=2"
    assert redact_url(url) == (
        f"http://h/cb?state=s;refresh_token={MASK}&X-Goog-Signature={MASK}&%61pi_key={MASK}"
        f"#access_token={MASK}&x=2"
    )
    assert redact_url("http://[::1/x") == MASK  # unparseable: nothing of it is shown


def test_percent_escapes_match_in_either_case() -> None:
    lower = re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(KEY, safe=""))  # a server re-encoding
    assert lower != quote(KEY, safe="")
    assert scrub_text(f"Location: /next?api_key={lower}", [KEY]) == f"Location: /next?api_key={MASK}"


@pytest.mark.parametrize("prefix", ["", "u:", "ab:", "user:"])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_carrying_a_secret_at_any_offset_is_scrubbed(prefix: str, encode: Any) -> None:
    token = encode(f"{prefix}{TOKEN}".encode()).decode()
    scrubbed = scrub_text(f"Server: echo/{token}Z; other", [TOKEN])  # glued to base64 characters
    assert scrubbed.endswith("; other")
    assert MASK in scrubbed
    assert token.rstrip("=")[4:-4] not in scrubbed


def test_short_secrets_in_basic_credentials_are_found_by_decoding() -> None:
    basic = base64.b64encode(b"someone:pw1").decode()
    assert scrub_text(f"x=Basic {basic}", ["pw1"]) == f"x=Basic {MASK}"


def test_a_plus_encoded_secret_is_scrubbed() -> None:
    assert scrub_text(f"a {quote_plus(KEY)} b", [KEY]) == f"a {MASK} b"


def test_details_are_scrubbed_everywhere() -> None:
    details = {"server": f"echo {TOKEN}", "nested": [{"v": f"x{TOKEN}"}], "n": 3, TOKEN: "key"}
    assert TOKEN not in json.dumps(scrub(details, [TOKEN]))
    assert scrub(details, [TOKEN])["n"] == 3


# --- end to end -----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """``/key``: 200 with the key in the query, else 401. ``/echo``: Authorization echoed
    back in ``Server`` and ``Content-Type``; ``/deny`` does the same with a 401.
    ``POST /token``: an OAuth access token for any client."""

    def do_GET(self) -> None:
        if self.path.startswith(("/echo", "/deny")):
            echoed = self.headers.get("Authorization", "none")
            # The Server header is version_string(): echoed too.
            self.send_response(401 if self.path.startswith("/deny") else 200)
            self.send_header("Content-Type", f"text/plain; x={echoed}")
        else:
            self.send_response(200 if "api_key=" in self.path else 401)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"access_token": ACCESS_TOKEN, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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


def _spellings(secret: str) -> set[str]:
    """Every spelling to look for: :func:`encodings`, and the middle of the base64 of the
    secret behind a prefix of each length modulo 3 (as in ``Basic base64(user:secret)``)."""
    middles = {
        encode(f"{prefix}{secret}".encode()).decode().rstrip("=")[4:-4]
        for prefix in ("", "u:", "me:")
        for encode in (base64.b64encode, base64.urlsafe_b64encode)
    }
    return encodings(secret) | middles


async def _assert_clean(
    facade: ConnectorsFacade,
    tenant: str,
    endpoint: str,
    config: dict[str, Any],
    secrets: list[str],
    caplog: pytest.LogCaptureFixture,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Test ``config`` unsaved, then saved; no spelling of ``secrets`` (percent escapes in
    either case) in either result, the stored history or the logs. Both results."""
    caplog.set_level(logging.DEBUG)
    unsaved = await facade.test_definition(tenant, "x", "http", endpoint, config)
    info = await facade.register_connector(tenant, "x", "http", endpoint, config)
    saved = await facade.test_connector(info.id, tenant)
    history = await facade.history(info.id, tenant)
    assert len(history.items) == 1
    seen = json.dumps([unsaved.to_dict(), saved.to_dict(), [r.to_dict() for r in history.items]])
    seen = (seen + caplog.text).lower()
    leaked = [form for secret in secrets for form in _spellings(secret) if form.lower() in seen]
    assert leaked == [], leaked
    return unsaved.to_dict(), saved.to_dict()


async def test_an_api_key_in_the_query_never_comes_back(
    local: tuple[ConnectorsFacade, str], server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    facade, tenant = local
    config = {"auth": {"kind": "api_key", "name": "api_key", "in": "query", "value": KEY}}
    for result in await _assert_clean(facade, tenant, f"{server_url}/key", config, [KEY], caplog):
        assert result["success"] is True, result
        assert result["details"]["url"] == f"{server_url}/key?api_key={MASK}"


@pytest.mark.parametrize(
    ("auth", "secret"),
    [
        ({"kind": "bearer", "token": TOKEN}, TOKEN),
        ({"kind": "basic", "username": "u", "password": PASSWORD}, PASSWORD),
    ],
)
@pytest.mark.parametrize("path", ["/echo", "/deny"])
async def test_a_credential_echoed_by_the_server_is_scrubbed(
    local: tuple[ConnectorsFacade, str],
    server_url: str,
    caplog: pytest.LogCaptureFixture,
    auth: dict[str, str],
    secret: str,
    path: str,
) -> None:
    facade, tenant = local
    results = await _assert_clean(facade, tenant, server_url + path, {"auth": auth}, [secret], caplog)
    for result in results:
        assert result["success"] is (path == "/echo"), result
        assert result["details"]["server"] == f"echo/{auth['kind'].title()} {MASK}"
        assert result["details"]["content_type"] == f"text/plain; x={auth['kind'].title()} {MASK}"


async def test_an_access_token_fetched_during_the_test_is_scrubbed(
    local: tuple[ConnectorsFacade, str], server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The runner knows the connector's secrets only; the token the probe fetched is the probe's to hide.
    facade, tenant = local
    auth = {
        "kind": "oauth2_client_credentials",
        "token_url": f"{server_url}/token",
        "client_id": "me",
        "client_secret": CLIENT_SECRET,
    }
    secrets = [CLIENT_SECRET, ACCESS_TOKEN]
    for result in await _assert_clean(facade, tenant, f"{server_url}/echo", {"auth": auth}, secrets, caplog):
        assert result["success"] is True, result
        assert result["details"]["content_type"] == f"text/plain; x=Bearer {MASK}"
