"""The API's documentation pages, served with no internet: Swagger UI at ``/docs`` and ReDoc
at ``/redoc`` (``/`` is the web console's, ``connectord.console``).

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine
without internet ``/docs`` was a blank page. The assets come from the
``fastapi-offline`` package (Swagger UI and ReDoc bundles, kept current, MIT);
only its files are used, the pages are FastAPI's own builders pointed at them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the assets are served (public, like the pages and the OpenAPI document).
ASSETS = "/docs-assets"


def _assets_dir() -> Path:
    import fastapi_offline  # the package is the assets' home; nothing of it runs

    return Path(fastapi_offline.__file__).parent / "static"


def add_docs(app: FastAPI, openapi_url: str) -> None:
    """Add ``/docs``, ``/redoc`` and their assets to ``app``."""
    app.mount(ASSETS, StaticFiles(directory=_assets_dir()), name="docs-assets")
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
