"""The console in a real browser: Debian's chromium driven by Playwright, against a
``connectord serve`` process started here (one per module), and a local HTTP server
for its connectors to reach.

Every page a test visits goes through :meth:`Console.visit`'s checks: no script or
style inline (the Content-Security-Policy forbids them), the security headers, an
axe-core run with no serious or critical violation, and a screenshot saved under
:data:`SCREENSHOTS` (``make test`` prints the folder). The HTML of every page is
kept, so a test can assert that a secret it typed never came back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import (
    Browser,
    BrowserContext,
    BrowserType,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.api.conftest import Server, Tenant, create_key, create_tenant, run_server

ROOT = Path(__file__).resolve().parents[2]
#: Where the tests save a screenshot of each page they visit (``make test`` prints it).
SCREENSHOTS = Path(os.environ.get("CONNECTORD_SCREENSHOTS", ROOT / "build" / "screenshots" / "console"))
#: Set to 1 to refresh the README's screenshot of the connector page (``docs/images``).
UPDATE_DOCS_IMAGES = os.environ.get("CONNECTORD_UPDATE_DOCS_IMAGES") == "1"
DOCS_IMAGES = ROOT / "docs" / "images"
#: The axe-core impacts a page may not have.
BLOCKING = ("serious", "critical")
_AXE = Axe()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's chromium: Playwright's own browser download does not work here."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is needed: apt-get install -y chromium (make test installs it)")
    return {**browser_type_launch_args, "executable_path": executable}


# Playwright's sync API keeps an event loop running in this thread while it is started:
# asyncio.run and pytest-asyncio's tests cannot run then. pytest-playwright starts it for
# the whole session; here it lives as long as a module that uses the browser, and the
# tests after it run as usual.


@pytest.fixture(scope="module")
def playwright(_pw_api_request_contexts: Any) -> Iterator[Playwright]:
    """Playwright, for one module (pytest-playwright's, scoped to the module)."""
    pw = sync_playwright().start()
    if _pw_api_request_contexts:
        _pw_api_request_contexts.instrument(pw)
    yield pw
    pw.stop()


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    """The browser type of ``--browser`` (chromium)."""
    browser_type: BrowserType = getattr(playwright, browser_name)
    return browser_type


@pytest.fixture(scope="module")
def launch_browser(
    browser_type_launch_args: dict[str, Any], browser_type: BrowserType
) -> Callable[..., Browser]:
    """Launches the browser with the launch arguments above."""

    def launch(**kwargs: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="module")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    """One browser for the module's tests (each test has its own context)."""
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def browser_context_args(base_url: None) -> dict[str, Any]:
    """No extra context arguments."""
    return {}


@pytest.fixture(scope="session")
def base_url() -> None:
    """No base URL for Playwright's contexts (pages are opened by full URL). Defined here:
    pytest-playwright's own fallback is a fixture method pytest deprecates."""
    return None


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The screenshots folder, emptied once per run."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


class _Target(BaseHTTPRequestHandler):
    """A local HTTP API the connectors test against: 200 to any GET or HEAD, and it
    remembers the Authorization headers it was sent."""

    seen_auth: list[str] = []

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("Authorization") or "")
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:  # webhook deliveries
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Target:
    """The local HTTP API: its base URL and what it saw."""

    url: str
    handler: type[_Target]


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """A local HTTP server on a free loopback port, for the module's connectors."""
    handler = type("Target", (_Target,), {"seen_auth": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Target(f"http://127.0.0.1:{httpd.server_address[1]}", handler)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``connectord serve`` on SQLite, shared by the module (each test has its own tenants).
    Started from a thread: Playwright's sync API runs an event loop in this one, and the
    launcher prepares the store with ``asyncio.run``."""
    launcher = run_server("sqlite", tmp_path_factory.mktemp("console"), request)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(launcher.__enter__).result()
    try:
        yield running
    finally:
        launcher.__exit__(None, None, None)


@dataclass
class Console:
    """A browser page on the console, signed in or not, with the checks of every visit."""

    server: Server
    page: Page
    shots: Path
    #: The HTML of every page visited, in order.
    seen: list[str] = field(default_factory=list)
    #: Whether the page runs script: axe-core needs it (the pages without it are the
    #: same markup, checked with it in the other tests).
    javascript: bool = True

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.server.base_url

    def check(self, name: str, *, axe: bool = True) -> str:
        """Check the page as it is now (after navigating, or after a form post): its
        markup, an axe-core run, a screenshot; its HTML."""
        page = self.page
        page.wait_for_load_state("load")
        html = page.content()
        self.seen.append(html)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
        assert not re.search(r"\son[a-z]+\s*=", html), "an inline event handler"
        # (axe-core leaves empty style attributes behind in the DOM it checked)
        inline = re.search(r"\sstyle\s*=\s*\"[^\"]+\"", html)
        assert inline is None, "an inline style: " + html[max(inline.start() - 200, 0) : inline.end() + 80]
        if axe and self.javascript:
            results = _AXE.run(page)
            blocking = [v for v in results.response["violations"] if v["impact"] in BLOCKING]
            assert not blocking, f"{name}: {results.generate_report()}"
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)
        return html

    def visit(self, path: str, name: str, *, status: int = 200, axe: bool = True) -> str:
        """Open a console page, check its answer and the page; its HTML."""
        response = self.page.goto(self.url + path)
        assert response is not None
        assert response.status == status, f"{path}: {response.status}"
        headers = response.headers
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"], path
        return self.check(name, axe=axe)

    def sign_in(self, key: str, name: str | None = None) -> None:
        """Sign in with ``key``; the connectors list follows."""
        self.visit("/", name or "sign-in")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page).to_have_url(re.compile(r"/connectors$"))

    def csrf_token(self) -> str:
        """The session's CSRF token, as the page's forms carry it."""
        token = self.page.locator('input[name="csrf_token"]').first.get_attribute("value")
        assert token
        return token

    def save_docs_image(self, name: str) -> None:
        """Copy a screenshot into docs/images when asked (``CONNECTORD_UPDATE_DOCS_IMAGES=1``)."""
        if UPDATE_DOCS_IMAGES:
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.shots / f"{name}.png", DOCS_IMAGES / f"{name}.png")


@pytest.fixture
def console(server: Server, context: BrowserContext, page: Page, screenshots: Path) -> Console:
    """A fresh browser context on the module's server."""
    page.set_default_timeout(15_000)
    return Console(server, page, screenshots)


@contextlib.contextmanager
def other_context(browser: Browser, server: Server, screenshots: Path, **options: Any) -> Iterator[Console]:
    """A second browser context (another person, a phone, or no JavaScript)."""
    context = browser.new_context(**options)
    context.set_default_timeout(15_000)
    try:
        yield Console(
            server, context.new_page(), screenshots, javascript=options.get("java_script_enabled", True)
        )
    finally:
        context.close()


@pytest.fixture
def tenant(server: Server) -> Tenant:
    """A fresh tenant (its first key reads, writes and tests)."""
    return create_tenant(server, "console")


def unique(prefix: str) -> str:
    """A connector name no other test uses."""
    return f"{prefix}-{secrets.token_hex(3)}"


__all__ = ["Console", "Target", "create_key", "other_context", "unique"]
