"""``/docs`` and ``/redoc`` work without internet: every asset they load is served by the
server itself (issue 10.8); ``/`` is the web console's sign-in page (issue 13)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.conftest import Server


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_page_loads_only_local_assets(server: Server, page: str) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        html = http.get(page)
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        assert "cdn" not in html.text.lower()
        assert not re.search(r"(src|href)=['\"]https?://", html.text), "an asset from another site"
        local = re.findall(r"(?:src|href)=['\"](/[^'\"]+)['\"]", html.text)
        assert any(a.endswith(".js") for a in local), local
        for asset in local:
            got = http.get(asset)
            assert got.status_code == 200, asset
            assert len(got.content) > 1000, asset
        assert http.get("/openapi.json").json()["info"]["title"] == "connectord"


def test_the_root_is_the_console_sign_in(server: Server) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        response = http.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'name="api_key"' in response.text
